"""Storage that cannot lie: every log entry checked on every read, a log cut short detected, a checkpoint
that runs no code and is never read damaged, one writer whatever is deleted, private files, and no debris
of killed runs."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import time

import orjson
import pytest

from streams.embedded import STATE_TYPES, EmbeddedEngine
from streams.log import DecisionLog, LogError, load_checkpoint, save_checkpoint, seal
from tests.cli_helpers import run_cli

EVENTS = [
    {"event_id": f"e{i}", "occurred_at": f"2025-01-{1 + i % 28:02d}T10:00:00Z", "channel": "web", "event_type": "visit",
     "identifiers": {"email": f"customer{i % 5}@mailbox.org", "device_id": f"d{i}"},
     "attributes": {"first_name": "Ana"}}
    for i in range(40)
]


@pytest.fixture()
def data(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(e) for e in EVENTS) + b"\n")
    with EmbeddedEngine(tmp_path / "data") as engine:
        engine.ingest_file(src)
        engine.checkpoint(force=True)
    return tmp_path / "data"


def segment(data):
    return next((data / "log").glob("*.jsonl"))


def one_error(proc, *parts):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines and lines[-1].startswith("idres: error:"), proc.stderr
    for part in parts:
        assert part in lines[-1], lines[-1]


# ------------------------------------------------------------------------------------------ the log
def test_one_changed_letter_in_the_log_is_found_by_every_reader(data, tmp_path):
    seg = segment(data)
    text = seg.read_bytes()
    assert b'"channel":"web"' in text
    seg.write_bytes(text.replace(b'"channel":"web"', b'"channel":"wec"', 1))
    (data / "checkpoint.pickle").unlink()  # (with it, a reader reads only the tail)
    for command in (["snapshot", "--out", str(tmp_path / "s.duckdb")], ["replay"], ["lookup", "email=a@b.org"]):
        proc = run_cli(*command, "--data-dir", str(data), check=False)
        one_error(proc, "is damaged (its bytes do not match its checksum)", "restore the data directory")
    with pytest.raises(LogError, match="damaged"):
        EmbeddedEngine(data).close()


def test_a_failing_replay_leaves_the_good_checkpoint(data):
    # an edit that keeps each line's checksum right (what the checksum cannot see): replay disagrees
    seg = segment(data)
    lines = seg.read_bytes().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if b"interaction_recorded" in line)
    entry = orjson.loads(lines[i])
    del entry["crc"]
    recorded = next(d for d in entry["decisions"] if d["type"] == "interaction_recorded")
    recorded["event_id"] += "-edited"  # (what is sealed cannot be edited unseen: its key's tag checks it)
    lines[i] = seal(orjson.dumps(entry))
    seg.write_bytes(b"".join(lines))
    before = (data / "checkpoint.pickle").read_bytes()
    for _ in range(2):  # a second replay fails too: the checkpoint was not replaced by the first
        proc = run_cli("replay", "--data-dir", str(data), check=False)
        assert proc.returncode == 1 and "the checkpoint was left as it was" in proc.stderr
        assert (data / "checkpoint.pickle").read_bytes() == before


@pytest.mark.parametrize("cut", ["last entries", "whole segment", "the log directory"])
def test_a_log_shorter_than_what_was_written_is_an_error(data, tmp_path, cut):
    seg = segment(data)
    if cut == "last entries":
        seg.write_bytes(b"".join(seg.read_bytes().splitlines(keepends=True)[:-10]))
    elif cut == "whole segment":
        seg.unlink()
    else:  # (readers said there was no idres data, and to ingest: which then said entries are missing)
        shutil.rmtree(data / "log")
    for command in (["snapshot", "--out", str(tmp_path / "s.duckdb")], ["ingest", "-"], ["replay"],
                    ["lookup", "email=someone@mailbox.org"], ["changes"]):
        proc = run_cli(*command, "--data-dir", str(data), check=False, stdin="")
        one_error(proc, "entries are missing")
    # without the count the writer recorded, the checkpoint still says so (replay too, which does not read
    # the checkpoint's state)
    recorded = (data / "LOCK").read_bytes()
    (data / "LOCK").unlink()
    for command in (["snapshot", "--out", str(tmp_path / "s.duckdb")], ["replay"]):
        proc = run_cli(*command, "--data-dir", str(data), check=False)
        one_error(proc, "the checkpoint was taken at entry", "entries are missing")
    (data / "LOCK").write_bytes(recorded)
    # without the checkpoint, the count the writer recorded still says so
    (data / "checkpoint.pickle").unlink()
    proc = run_cli("snapshot", "--out", str(tmp_path / "s.duckdb"), "--data-dir", str(data), check=False)
    one_error(proc, "were written to it", "entries are missing")


# ------------------------------------------------------------------------------------------ the checkpoint
class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_log_rebuilds_the_state(data, tmp_path, caplog):
    marker = tmp_path / "ran"
    with EmbeddedEngine(data) as engine:
        fingerprint, length, digest = engine.fingerprint, len(engine.log), engine.views.digest()
    save_checkpoint(data, length, fingerprint, Payload(marker))  # (a well-formed file, checksum and all)
    assert load_checkpoint(data, fingerprint, length) is None
    assert not marker.exists()
    assert "names posix.system" in caplog.text or "names os.system" in caplog.text
    with EmbeddedEngine(data) as engine:
        assert engine.folded_from_checkpoint == 0 and engine.views.digest() == digest
    assert not marker.exists()


def test_a_damaged_checkpoint_is_never_read(data):
    with EmbeddedEngine(data) as engine:
        digest, length = engine.views.digest(), len(engine.log)
    path = data / "checkpoint.pickle"
    blob = bytearray(path.read_bytes())
    at = blob.find(b"customer3@mailbox.org")
    assert at > 0
    blob[at] = ord("C")  # one letter, in a pickled string: still a valid pickle
    path.write_bytes(bytes(blob))
    with EmbeddedEngine(data) as engine:
        assert engine.folded_from_checkpoint == 0  # rebuilt from the log
        assert engine.views.digest() == digest and len(engine.log) == length
    proc = run_cli("lookup", "email=customer3@mailbox.org", "--data-dir", str(data), check=False)
    assert "checkpoint.pickle is not used: its bytes do not match its checksum" in proc.stderr
    # said once a command, though an ingest reads the checkpoint's parts one at a time (it was said three times)
    proc = run_cli("ingest", "-", "--data-dir", str(data), stdin="")
    assert proc.stderr.count("checkpoint.pickle is not used") == 1, proc.stderr


def test_every_class_of_a_real_checkpoint_is_allowed(data):
    with EmbeddedEngine(data) as engine:
        assert engine.folded_from_checkpoint == len(engine.log) > 0


# ------------------------------------------------------------------------------------------ one writer
def test_deleting_the_lock_file_does_not_let_a_second_writer_in(data):
    with DecisionLog(data):
        (data / "LOCK").unlink()
        with pytest.raises(LogError, match="another idres process is writing"):
            DecisionLog(data)


# ------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("mode", [None, "640"])
def test_files_holding_personal_data_are_private(tmp_path, monkeypatch, mode):
    if mode is not None:
        monkeypatch.setenv("IDRES_FILE_MODE", mode)
    old = os.umask(0o022)
    try:
        src = tmp_path / "in.jsonl"
        src.write_bytes(b"\n".join(orjson.dumps(e) for e in EVENTS) + b"\n")
        with EmbeddedEngine(tmp_path / "data") as engine:
            engine.ingest_file(src)
            engine.checkpoint(force=True)
        from projections.snapshot import write_snapshot

        with EmbeddedEngine(tmp_path / "data", writer=False) as engine:
            write_snapshot(engine.views, tmp_path / "customers.duckdb")
    finally:
        os.umask(old)
    expected = 0o600 if mode is None else 0o640
    data = tmp_path / "data"
    for path in (segment(data), data / "checkpoint.pickle", data / "LOCK", tmp_path / "customers.duckdb"):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_a_file_mode_that_locks_the_owner_out_is_refused(data, tmp_path):
    proc = run_cli("snapshot", "--out", str(tmp_path / "s.duckdb"), "--data-dir", str(data), check=False,
                   env={"IDRES_FILE_MODE": "444"})
    one_error(proc, "IDRES_FILE_MODE='444'", "such as 600 or 640")


def test_a_file_mode_that_lets_everyone_write_is_refused(data, tmp_path):
    # (777 was taken as 666: every user of the machine could rewrite the decision log)
    for mode in ("777", "666", "0o602"):
        proc = run_cli("snapshot", "--out", str(tmp_path / "s.duckdb"), "--data-dir", str(data), check=False,
                       env={"IDRES_FILE_MODE": mode})
        one_error(proc, f"IDRES_FILE_MODE={mode!r}", "without write for others")
        assert not (tmp_path / "s.duckdb").exists()
    from projections.storage import file_mode

    assert file_mode({"IDRES_FILE_MODE": "660"}) == 0o660 and file_mode({"IDRES_FILE_MODE": "0644"}) == 0o644


def test_debris_of_killed_runs_is_removed_by_the_next(data, tmp_path):
    dead = 2 ** 22 + 12345  # above the kernel's pid limit here: no such process
    leftovers = [data / f".checkpoint.pickle.{dead}.tmp", tmp_path / f".customers.duckdb.{dead}.tmp",
                 tmp_path / f".customers.duckdb.{dead}.tmp.wal"]
    for path in leftovers:
        path.write_bytes(b"customer rows")
    rows = tmp_path / f".idres-snapshot-{dead}-abc"
    rows.mkdir()
    (rows / "profiles.jsonl").write_text('{"email": "customer3@mailbox.org"}\n')
    mine = data / f".checkpoint.pickle.{os.getpid()}.tmp"  # a live writer's: kept
    mine.write_bytes(b"in progress")
    # a writer long gone whose number a live process has now (this one, started since): it held the customer
    # readable, and was kept for as long as that process lived
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        reused = data / f".checkpoint.pickle.{sleeper.pid}.tmp"
        reused.write_bytes(b"zebulon quixtable")
        os.utime(reused, (time.time() - 3600, time.time() - 3600))
        with EmbeddedEngine(data):
            pass
        assert not leftovers[0].exists() and mine.exists() and not reused.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    run_cli("snapshot", "--out", str(tmp_path / "customers.duckdb"), "--data-dir", str(data))
    assert not any(p.exists() for p in leftovers) and not rows.exists()
    assert (tmp_path / "customers.duckdb").exists()


def test_a_snapshot_killed_midway_leaves_the_last_one_whole_and_the_next_one_right(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import duckdb

    from streams.synthetic import SyntheticConfig, write_dataset
    from tests.cli_helpers import ROOT

    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    write_dataset(events, truth, SyntheticConfig(people=400, seed=5))
    data, out = tmp_path / "data", tmp_path / "snap" / "customers.duckdb"
    run_cli("ingest", str(events), "--data-dir", str(data))
    run_cli("snapshot", "--data-dir", str(data), "--out", str(out))

    def counts() -> dict:
        with duckdb.connect(str(out), read_only=True) as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("profiles", "events", "identifiers", "rejected_events")}

    before = counts()
    for delay in (0.6, 0.9, 1.2):
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "snapshot", "--data-dir", str(data), "--out",
                                 str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert counts() == before  # the file in place is always a whole snapshot
    run_cli("snapshot", "--data-dir", str(data), "--out", str(out))
    assert counts() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["customers.duckdb"]  # no debris left


def test_a_log_that_cannot_be_opened_keeps_no_lock(data, monkeypatch):
    from resolver.errors import ConfigError

    monkeypatch.setenv("IDRES_FILE_MODE", "444")
    with pytest.raises(ConfigError):
        DecisionLog(data)
    monkeypatch.delenv("IDRES_FILE_MODE")
    with DecisionLog(data):  # (in the same process: the failed open released its lock)
        pass


def test_a_reader_opened_before_a_writer_checkpointed_loads_the_newer_checkpoint(data):

    reader = DecisionLog(data, writer=False)
    seen = len(reader)
    with EmbeddedEngine(data) as engine:
        engine.log.append([[{"type": "event_rejected", "key": f"k{i}", "source": {"name": "x", "position": i},
                             "reason": "x", "raw": "x"}] for i in range(5)])
        engine.fold(seen)
        engine.checkpoint(force=True)
    with EmbeddedEngine(data, writer=False) as engine:
        fingerprint = engine.fingerprint
    loaded = load_checkpoint(data, fingerprint, seen, recount=lambda: (reader.refresh(), len(reader))[1],
                             state_types=STATE_TYPES)
    assert loaded is not None and loaded[0] == seen + 5
    reader.close()


def test_a_checkpoint_that_changes_a_class_while_loading_is_refused_and_the_class_restored(data, caplog):
    from resolver.state import ResolverState

    with EmbeddedEngine(data) as engine:
        fingerprint, length, digest = engine.fingerprint, len(engine.log), engine.views.digest()
    original = ResolverState.__init__
    # a pickle that sets ResolverState.__init__ to None through BUILD's slot state on the class object
    evil = (b"\x80\x04" + b"cresolver.state\nResolverState\n" + b"N}\x8c\x08__init__Ns\x86b" + b"0"
            + pickle.dumps({"version": 2, "seq": length, "fingerprint": fingerprint, "state": None},
                           protocol=4)[2:])
    import crc32c

    (data / "checkpoint.pickle").write_bytes(evil + b"IDRESCRC" + b"%08x" % crc32c.crc32c(evil))
    assert load_checkpoint(data, fingerprint, length) is None
    assert ResolverState.__init__ is original and "changes the class(es) resolver.state.ResolverState" in caplog.text
    with EmbeddedEngine(data) as engine:
        assert engine.views.digest() == digest


@pytest.mark.parametrize("record", [b"garbage\n", b"-3 entries\n", b"12x entries in the decision log\n"])
def test_a_damaged_record_of_the_log_s_length_is_an_error_not_a_check_left_out(data, tmp_path, record):
    # (the record is what tells a log cut short after the checkpoint: read as no record, that would go unnoticed)
    (data / "LOCK").write_bytes(record)
    for command in (["snapshot", "--out", str(tmp_path / "s.duckdb")], ["ingest", "-"],
                    ["lookup", "email=customer1@mailbox.org"]):
        proc = run_cli(*command, "--data-dir", str(data), check=False, stdin="")
        one_error(proc, "LOCK", "is damaged", "restore the data directory from a backup, or delete that file")
    assert (data / "LOCK").read_bytes() == record  # (a writer that refused to open did not write over it)


@pytest.mark.parametrize("record", [b"", b"\0" * 90])
def test_an_empty_record_of_the_log_s_length_as_a_crash_leaves_it_is_no_record(data, tmp_path, record):
    (data / "LOCK").write_bytes(record)
    proc = run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data))
    assert orjson.loads(proc.stdout)["identifiers"]["email"] == ["customer1@mailbox.org"]
    seg = segment(data)  # (and a log cut short is still told by the checkpoint)
    seg.write_bytes(b"".join(seg.read_bytes().splitlines(keepends=True)[:-10]))
    proc = run_cli("snapshot", "--out", str(tmp_path / "s.duckdb"), "--data-dir", str(data), check=False)
    one_error(proc, "entries are missing")


def _record_damaged(text: bytes, how: str) -> bytes:
    count = text.split(b" ", 1)[0]
    return {
        "a letter changed": text[:42] + bytes([text[42] ^ 1]) + text[43:],
        "cut short": text[:42],
        "its last bytes lost": text[:-3] + b"\n",
        "its count changed": (b"%d" % (int(count) - 1)) + text[len(count):],
        "more after it": text + b"12 entries\n",
    }[how]


@pytest.mark.parametrize("how", ["a letter changed", "cut short", "its last bytes lost", "its count changed",
                                 "more after it"])
def test_the_record_of_the_log_s_length_is_read_whole_and_checked(data, how):
    """The record was read by its first words: damage after them (and a count changed) went unnoticed, where a
    smaller count hides a log cut short. It is read whole, with a checksum of its count."""
    record = (data / "LOCK").read_bytes()
    (data / "LOCK").write_bytes(_record_damaged(record, how))
    proc = run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data), check=False)
    one_error(proc, "LOCK", "is damaged")


def test_a_record_of_the_log_s_length_written_before_it_had_a_checksum_is_read(data, tmp_path):
    record = (data / "LOCK").read_bytes()
    count = int(record.split(b" ", 1)[0])
    old = b"%d entries in the decision log (written by idres, read to detect a log cut short)\n"
    (data / "LOCK").write_bytes(old % count)
    proc = run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data))
    assert orjson.loads(proc.stdout)["identifiers"]["email"] == ["customer1@mailbox.org"]
    # ...and as it was written for a day, with a checksum of its count alone
    from crc32c import crc32c

    (data / "LOCK").write_bytes(old[:-1] % count + b" %08x\n" % crc32c(b"%d" % count))
    proc = run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data))
    assert orjson.loads(proc.stdout)["identifiers"]["email"] == ["customer1@mailbox.org"]
    (data / "LOCK").write_bytes(old[:-1] % count + b" %08x\n" % crc32c(b"%d" % (count + 1)))
    one_error(run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data), check=False), "is damaged")
    (data / "LOCK").write_bytes(old % count)
    (data / "checkpoint.pickle").unlink()  # (the record alone then tells the log is short of what it says)
    (data / "LOCK").write_bytes(old % (count + 5))
    one_error(run_cli("snapshot", "--out", str(tmp_path / "s.duckdb"), "--data-dir", str(data), check=False),
              "entries are missing")


def test_files_of_the_data_directory_that_are_directories_are_named(data, tmp_path, caplog):
    """What a data directory keeps in files, found a directory (or the log's directory found a file): the record
    of the log's length and the log's place are damage, said so (they were read as nothing there, or said to
    give the path of a file); the checkpoint is a cache: readers rebuild the state, a writer says to remove it."""
    record = (data / "LOCK").read_bytes()
    (data / "LOCK").unlink()
    (data / "LOCK").mkdir()
    for command in (["lookup", "email=customer1@mailbox.org"], ["ingest", "-"]):
        one_error(run_cli(*command, "--data-dir", str(data), check=False, stdin=""), "LOCK",
                  "cannot be read (Is a directory)")
    (data / "LOCK").rmdir()
    (data / "LOCK").write_bytes(record)

    (data / "checkpoint.pickle").unlink()
    (data / "checkpoint.pickle").mkdir()
    proc = run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data))
    assert orjson.loads(proc.stdout)["identifiers"]["email"] == ["customer1@mailbox.org"]
    assert "checkpoint.pickle is not used: it cannot be read as a file" in proc.stderr
    more = tmp_path / "more.jsonl"
    more.write_bytes(orjson.dumps({**EVENTS[0], "event_id": "more-1"}) + b"\n")
    one_error(run_cli("ingest", str(more), "--data-dir", str(data), check=False), "checkpoint.pickle is not a file",
              "remove it")
    (data / "checkpoint.pickle").rmdir()

    for entry in (data / "log").iterdir():
        entry.unlink()
    (data / "log").rmdir()
    (data / "log").write_bytes(b"")
    for command in (["lookup", "email=customer1@mailbox.org"], ["ingest", str(more)], ["replay"]):
        one_error(run_cli(*command, "--data-dir", str(data), check=False), "log is not a directory",
                  "restore the data directory")


def test_a_log_with_an_entry_twice_or_a_segment_past_its_end_says_what_to_do(data):
    seg = segment(data)
    lines = seg.read_bytes().splitlines(keepends=True)
    (data / "checkpoint.pickle").unlink()
    seg.write_bytes(b"".join(lines + lines[-1:]))
    one_error(run_cli("replay", "--data-dir", str(data), check=False), "out of order", "restore the data directory")
    seg.write_bytes(b"".join(lines))
    (data / "log" / "00000000000000009999.jsonl").write_bytes(b"")
    one_error(run_cli("replay", "--data-dir", str(data), check=False), "a segment of it is missing",
              "restore the data directory")



def test_a_data_directory_whose_writer_appended_nothing_opens_again(tmp_path):
    """A writer records the log's length as it opens, before the key store is open: that record names no store,
    and reads back as a record (it was taken for damage, so a new directory an ingest of nothing, or a killed one,
    had left could not be opened again)."""
    data = tmp_path / "data"
    run_cli("ingest", "-", "--data-dir", str(data), stdin="")
    assert (data / "LOCK").read_bytes().startswith(b"0 entries in the decision log")
    run_cli("ingest", "-", "--data-dir", str(data), stdin="")
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(EVENTS[0]) + b"\n")
    run_cli("ingest", str(src), "--data-dir", str(data))
    proc = run_cli("lookup", "email=customer0@mailbox.org", "--data-dir", str(data))
    assert orjson.loads(proc.stdout)["identifiers"]["email"] == ["customer0@mailbox.org"]


def test_files_in_the_log_s_directory_not_named_as_segments_are_not_read(data, tmp_path):
    """A copy a file manager makes, or a note dropped beside the segments: every command stopped with an internal
    error (its name read as a number)."""
    first = segment(data)
    (data / "log" / "notes.jsonl").write_text("hi\n")
    shutil.copy2(first, data / "log" / f"{first.stem} (copy).jsonl")
    proc = run_cli("replay", "--data-dir", str(data), check=False)
    assert proc.returncode == 0, proc.stderr
    with DecisionLog(data, writer=False) as log:
        assert len(log) == sum(1 for _ in first.open("rb"))
    src = tmp_path / "in.jsonl"
    again = run_cli("ingest", str(src), "--data-dir", str(data), check=False)
    assert again.returncode == 0, again.stderr
    with DecisionLog(data, writer=False) as log:
        assert len(log) == sum(1 for _ in first.open("rb"))  # (the events were in the log: nothing new)


def test_a_checkpoint_copied_from_another_data_directory_is_not_used(data, tmp_path):
    """Its rules and its entry count fit, but it is the state of another log: snapshot and lookup stopped with an
    internal error (a profile its views held that the log here never made), and ingest too."""
    other = tmp_path / "other.jsonl"
    other.write_bytes(b"\n".join(orjson.dumps({**e, "event_id": f"x{i}", "identifiers": {"email": f"z{i}@mailbox.org"}})
                                 for i, e in enumerate(EVENTS[:10])) + b"\n")
    with EmbeddedEngine(tmp_path / "small") as engine:
        engine.ingest_file(other)
        engine.checkpoint(force=True)
    for args in (["lookup", "email=customer1@mailbox.org"], ["snapshot", "--out", str(tmp_path / "s.duckdb"),
                                                            "--no-predict"],
                 ["replay"], ["ingest", str(tmp_path / "in.jsonl")]):
        shutil.copy2(tmp_path / "small" / "checkpoint.pickle", data / "checkpoint.pickle")
        proc = run_cli(*args, "--data-dir", str(data), check=False)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "holds the state of another data directory's decision log" in proc.stderr, (args, proc.stderr)
    with EmbeddedEngine(data, writer=False) as engine:
        assert sorted(engine.views.ev_id) == sorted(e["event_id"] for e in EVENTS)


def test_an_entry_of_the_data_directory_made_otherwise_is_named_as_the_directory_s(data, tmp_path):
    """A marker made a directory, a segment a dangling link: the line said "give the path of a file" or "check that
    the path exists", of a path the user never gave."""
    (data / "FILE_ORDER").mkdir()
    one_error(run_cli("ingest", str(tmp_path / "in.jsonl"), "--data-dir", str(data), check=False),
              str(data / "FILE_ORDER"), f"that entry of the data directory {data} is not as idres left it")
    (data / "FILE_ORDER").rmdir()
    first = segment(data)
    first.rename(tmp_path / "segment")
    first.symlink_to(tmp_path / "nowhere")
    one_error(run_cli("lookup", "email=customer1@mailbox.org", "--data-dir", str(data), check=False),
              str(first), "restore the directory from a backup")
    # (a path the user gives keeps its own advice)
    from streams.cli import os_error_line

    assert os_error_line(IsADirectoryError(21, "Is a directory", str(tmp_path))).endswith("give the path of a file")
