"""The checkpoint in parts: readers that need only the views read only them, and `idres replay` compares the
state it folds with the checkpoint's by the digest the checkpoint was saved with, not by reading it."""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import pickletools
from pathlib import Path

import pytest
from crc32c import crc32c
from hypothesis import given, strategies as st

from projections.customer import CustomerViews, ProfileView
from resolver.state import NO_TRAITS, Profile
from streams.embedded import EmbeddedEngine
import streams.log as log
from projections.runs import Runs
from streams.log import CHECKPOINTS, _Checked, checkpoint_header, load_checkpoint, save_checkpoint
from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import run_cli


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=80, seed=3))
    lines = events.read_bytes().splitlines(keepends=True)
    (tmp_path / "first.jsonl").write_bytes(b"".join(lines[: len(lines) * 2 // 3]))
    (tmp_path / "rest.jsonl").write_bytes(b"".join(lines[len(lines) * 2 // 3:]))
    data = tmp_path / "data"
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(tmp_path / "first.jsonl")
        engine.checkpoint(force=True)
    return data, tmp_path / "rest.jsonl"


class Refused:
    """No idres checkpoint holds it: unpickling it is refused."""


def test_a_reader_stops_after_the_parts_it_needs(tmp_path):
    save_checkpoint(tmp_path, 3, "rules", ({"views": 1}, Refused()))
    assert load_checkpoint(tmp_path, "rules", 10, parts=1) == (3, ({"views": 1},))  # (the second is never read)
    assert load_checkpoint(tmp_path, "rules", 10) is None  # (reading it all meets the refused part)
    header = checkpoint_header(tmp_path, "rules")
    assert header is not None and header["seq"] == 3 and header["parts"] == 2
    assert checkpoint_header(tmp_path, "other rules") is None


def test_a_reader_reads_any_part_alone(tmp_path):
    save_checkpoint(tmp_path, 3, "rules", (Refused(), {"state": 2}))
    assert load_checkpoint(tmp_path, "rules", 10, parts=(1,)) == (3, ({"state": 2},))  # (the first is never read)
    assert load_checkpoint(tmp_path, "rules", 10, parts=1) is None


def test_parts_written_in_any_order_are_read_back_in_theirs(tmp_path):
    writer = log.CheckpointWriter(tmp_path, 4, "rules", 3)
    for index in (2, 0, 1):
        writer.write(index, {"part": index, "filler": [index] * 10_000})
    writer.commit(info={"said": "so"})
    _, parts = load_checkpoint(tmp_path, "rules", 4)
    assert [p["part"] for p in parts] == [0, 1, 2] and all(p["filler"] == [p["part"]] * 10_000 for p in parts)
    assert [p["part"] for p in load_checkpoint(tmp_path, "rules", 4, parts=(2, 0))[1]] == [2, 0]
    assert checkpoint_header(tmp_path, "rules")["info"] == {"said": "so"}


def test_a_checkpoint_with_a_part_not_written_is_not_committed(tmp_path):
    save_checkpoint(tmp_path, 1, "rules", ({"old": 1},))
    writer = log.CheckpointWriter(tmp_path, 2, "rules", 2)
    writer.write(1, {"new": 2})
    with pytest.raises(ValueError):
        writer.write(1, {"new": 2})
    with pytest.raises(ValueError):
        writer.commit()
    assert load_checkpoint(tmp_path, "rules", 5) == (1, ({"old": 1},))  # (the one before stands)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINTS[0]]  # (and the unfinished file is gone)


def test_the_views_alone_are_the_views_of_the_whole_state(data):
    data_dir, rest = data
    with EmbeddedEngine(data_dir, writer=False) as whole, EmbeddedEngine(data_dir, writer=False, load="views") as views:
        assert views.resolver is None and views.folded_from_checkpoint == whole.folded_from_checkpoint > 0
        assert views.views.digest() == whole.views.digest()
    with EmbeddedEngine(data_dir) as engine:  # (more entries after the checkpoint: folded into the views only)
        engine.ingest_file(rest)
        live = engine.views.digest()
    with EmbeddedEngine(data_dir, writer=False, load="views") as views:
        assert views.views.digest() == live and views.checkpoint_seq < len(views.log)
    with pytest.raises(ValueError):
        EmbeddedEngine(data_dir, load="views")  # (a writer decides: it needs the resolver's state)


def _replay(data_dir: Path) -> tuple[int, dict]:
    proc = run_cli("replay", "--data-dir", str(data_dir), check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_replay_leaves_a_checkpoint_of_the_whole_log_as_it_is_and_writes_one_that_was_behind(data):
    data_dir, rest = data
    path = data_dir / CHECKPOINTS[0]
    before = path.stat()
    code, out = _replay(data_dir)
    assert code == 0 and out["identical_to_live_views"] is True
    after = path.stat()  # (not written again: it would hold the same state)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    with EmbeddedEngine(data_dir) as engine:
        engine.ingest_file(rest)
        length, live = len(engine.log), engine.views.digest()
        seq = checkpoint_header(data_dir, engine.fingerprint)["seq"]
    assert seq < length  # (too few entries for the ingest to checkpoint again)
    code, out = _replay(data_dir)
    assert code == 0 and out["identical_to_live_views"] is True and out["digest"] == live
    with EmbeddedEngine(data_dir, writer=False) as engine:
        assert checkpoint_header(data_dir, engine.fingerprint)["seq"] == length == engine.folded_from_checkpoint


def test_replay_that_disagrees_with_the_checkpoint_fails_and_leaves_it(data):
    """A checkpoint whose views are not what the log folds into (saved by a defect, say): replay says so,
    exits 1, and keeps the checkpoint for inspection."""
    data_dir, _ = data
    with EmbeddedEngine(data_dir) as engine:
        engine.views.ev_profile[0] = "p_not_what_the_log_says"
        engine.checkpoint(force=True)
    path = data_dir / CHECKPOINTS[0]
    before, mtime = path.read_bytes(), os.stat(path).st_mtime_ns
    code, out = _replay(data_dir)
    assert code == 1 and out["identical_to_live_views"] is False
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == mtime


def test_replay_verify_reads_the_checkpoint_s_views_back(data):
    """`replay --verify` also reads the checkpoint's views and checks them against the digest it was saved
    with (plain replay compares the log's views with that digest only)."""
    data_dir, _ = data
    code, out = _replay_verify(data_dir)
    assert code == 0 and out["checkpoint_as_saved"] is True and out["identical_to_live_views"] is True
    with EmbeddedEngine(data_dir) as engine:  # views that are not what the digest beside them says
        seq, fingerprint, digest = len(engine.log), engine.fingerprint, engine.views.digest()
        engine.views.ev_profile[0] = "p_not_what_the_log_says"
        save_checkpoint(data_dir, seq, fingerprint, (engine.views, engine.resolver.state),
                        info={"views_digest": digest})
    code, out = _replay_verify(data_dir)
    assert out["identical_to_live_views"] is True  # (the log's views have the digest)
    assert code == 1 and out["checkpoint_as_saved"] is False


def _replay_verify(data_dir: Path) -> tuple[int, dict]:
    proc = run_cli("replay", "--verify", "--data-dir", str(data_dir), check=False)
    return proc.returncode, json.loads(proc.stdout)


profile_fields = st.tuples(st.text(max_size=8), st.text(max_size=8), st.sets(st.integers(0, 2**40), max_size=4))


@given(st.lists(profile_fields, max_size=20), st.lists(st.integers(0, 2**40), max_size=5),
       st.dictionaries(st.sampled_from(["email", "phone"]), st.integers(0, 9), max_size=2),
       st.frozensets(st.text(max_size=5), max_size=3), st.one_of(st.none(), st.tuples(st.text(), st.text(), st.integers())))
def test_profiles_come_back_from_a_checkpoint_as_they_went_in(fields, events, counts, traits, first):
    views = [ProfileView(pid, at, nodes, list(events)) for pid, at, nodes in fields]
    profiles = [Profile(pid, at, nodes, dict(counts), traits or NO_TRAITS, first, first) for pid, at, nodes in fields]
    back = _Checked(io.BytesIO(pickle.dumps((views, profiles), protocol=pickle.HIGHEST_PROTOCOL))).load()
    assert back == (views, profiles)


def test_a_profile_is_pickled_without_a_dict_of_its_fields():
    # (each dict the pickle holds is one the checkpoint's pickler made and kept until it was done: one per
    # profile, at the peak of an ingest's memory, when a profile was pickled as the default's dict of its slots)
    views = [ProfileView(f"p{i}", "2025-01-01T00:00:00.000000Z", {i}, [i]) for i in range(50)]
    profiles = [Profile(f"p{i}", "2025-01-01T00:00:00.000000Z", {i}, {"email": 1}) for i in range(50)]

    def dicts(obj):
        return sum(op.name == "EMPTY_DICT" for op, _, _ in pickletools.genops(pickle.dumps(obj, protocol=5)))

    assert dicts(views) == 0
    assert dicts(profiles) == 50  # (their counts)


def test_a_profile_pickled_as_before_is_read_back():
    # (the earlier form, Python's default for a slots class: the class, then a dict of its slots)
    class AsBefore(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, (ProfileView, Profile)):
                return copyreg.__newobj__, (type(obj),), (None, {n: getattr(obj, n) for n in type(obj).__slots__})
            return NotImplemented

    view, profile = ProfileView("p9", "t", {3}, [4]), Profile("p8", "t", {5}, {"email": 1})
    out = io.BytesIO()
    AsBefore(out, protocol=pickle.HIGHEST_PROTOCOL).dump((view, profile))
    assert sum(op.name == "EMPTY_DICT" for op, _, _ in pickletools.genops(out.getvalue())) == 3  # (2 + counts)
    assert _Checked(io.BytesIO(out.getvalue())).load() == (view, profile)


@pytest.fixture
def full_disk(monkeypatch):
    """Checkpoints written to ``/dev/full``: every write fails, as on a full disk."""
    if not Path("/dev/full").exists():
        pytest.skip("writes to /dev/full to fail a write")
    monkeypatch.setattr(log, "private_file", lambda path, mode, buffering=-1: open("/dev/full", mode, buffering=buffering))


def test_the_events_identifiers_grow_again_after_a_checkpoint_write_failed(tmp_path, full_disk):
    # (large arrays are handed to the file as they lie; a write that fails keeps its traceback, and with it what it
    # was given: that must not stop the array from growing)
    runs = Runs((n,) for n in range(200_000))
    with pytest.raises(OSError) as failed:
        save_checkpoint(tmp_path, 1, "rules", (runs,))
    runs.append((7,))
    assert runs[-1] == (7,) and len(runs) == 200_001 and failed.value is not None


def _containers(root):
    """Every list, dict, set and object reachable from ``root`` (through tuples too), with how often it is reached."""
    found: dict[int, list] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if isinstance(obj, (str, bytes, int, float, type(None), frozenset)):
            continue
        if not isinstance(obj, tuple):
            seen = found.setdefault(id(obj), [obj, 0])
            seen[1] += 1
            if seen[1] > 1:
                continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
        elif hasattr(type(obj), "__slots__"):
            stack.extend(getattr(obj, name) for name in type(obj).__slots__ if hasattr(obj, name))
    return found


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """An engine's state after a corpus on which every guard and the matcher act, and the generator's events."""
    from tests.test_shards import every_guard_corpus

    tmp = tmp_path_factory.mktemp("guarded")
    records, _, _ = every_guard_corpus()
    (tmp / "guards.jsonl").write_bytes(b"\n".join(records) + b"\n")
    write_dataset(tmp / "events.jsonl", tmp / "truth.csv", SyntheticConfig(people=120, seed=5))
    engine = EmbeddedEngine(tmp / "data")
    engine.ingest_files([tmp / "guards.jsonl", tmp / "events.jsonl"])
    yield engine
    engine.close()


def test_the_bulk_columns_hold_nothing_another_column_holds_nor_two_entries_alike(guarded):
    # (what a checkpoint writes apart comes back as equal copies: a list, dict or set two places held would
    # come back as two, and a change to one would no longer be seen through the other)
    for part in (guarded.views, guarded.resolver.state):
        bulk = log.bulk_columns(part)
        assert set(bulk) == set(type(part).CHECKPOINT_BULK)
        other = guarded.resolver.state if part is guarded.views else guarded.views
        for name in bulk:
            elsewhere = {}  # (what every other column of both parts holds, the other bulk columns too)
            for value in [v for k, v in vars(part).items() if k != name] + list(vars(other).values()):
                elsewhere.update(_containers(value))
            column = getattr(part, name)
            assert column, f"{type(part).__name__}.{name} is empty on this corpus: the test proves nothing of it"
            held = _containers(column)
            twice = [obj for obj, times in held.values() if times > 1]
            assert not twice, f"{type(part).__name__}.{name} holds {twice[0]!r} twice"
            shared = [held[i][0] for i in held if i in elsewhere and held[i][0] is not column]
            assert not shared, f"{type(part).__name__}.{name} holds {shared[0]!r}, which another column holds"


def test_a_checkpoint_gives_back_the_bulk_columns_equal_and_the_rest_shared(guarded, tmp_path):
    views, state = guarded.views, guarded.resolver.state
    save_checkpoint(tmp_path, 1, "rules", (views, state))
    _, (views_back, state_back) = load_checkpoint(tmp_path, "rules", 1)
    for part, back in ((views, views_back), (state, state_back)):
        for name in type(part).CHECKPOINT_BULK:
            assert getattr(back, name) == getattr(part, name)
            assert type(getattr(back, name)) is type(getattr(part, name))
    assert views_back.digest() == views.digest()
    # (what the bulk columns hold that the rest holds too comes back as the rest's: a profile's ID is the one of
    # the events' profiles column; an event ID in an identifier's links, held by two bulk columns, comes back equal)
    some = next(iter(views_back.profiles))
    assert any(some is pid for pid in views_back.ev_profile)
    event_id = next(iter(next(iter(views_back.links.values())).values()))
    assert event_id in set(views_back.ev_id)


def _memoized(data: bytes) -> int:
    """How many objects the pickles in ``data``, one after the other, remember (MEMOIZE opcodes): a header, a part,
    then its bulk columns' chunks and the None after each."""
    stream, n = io.BytesIO(data), 0
    while stream.tell() < len(data):
        n += sum(op.name == "MEMOIZE" for op, _, _ in pickletools.genops(stream))
    return n


def test_the_bulk_columns_are_written_without_the_pickler_s_memo(tmp_path):
    views = CustomerViews()
    views.ev_payload = [f"payload {i}" for i in range(20_000)]
    save_checkpoint(tmp_path, 1, "rules", (views,))
    body = (tmp_path / CHECKPOINTS[0]).read_bytes()[:-len(log._TRAILER) - 8 - len(log._END) - 16]
    assert _memoized(body) < 200  # (against one for each of the 20,000 strings with the memo)
    _, (back,) = load_checkpoint(tmp_path, "rules", 1)
    assert back.ev_payload == views.ev_payload


def _crafted(tmp_path, columns, chunks=None):
    """A checkpoint of empty views whose header lists ``columns`` as their bulk columns, each followed by
    its ``chunks`` (by default none), checksum and all: only what it holds can make it unusable."""
    out = io.BytesIO()
    views = CustomerViews()
    pickle.dump({"version": log.CHECKPOINT_VERSION, "seq": 1, "fingerprint": "rules", "parts": 1}, out)
    at = out.tell()
    pickler = log._CheckpointPickler(out, views, log.bulk_columns(views))
    pickler.dump({"bulk": [columns]})
    pickler.dump(views)  # (without its bulk columns)
    for name in columns:
        for chunk in (chunks or {}).get(name, []):
            pickler.dump(chunk)
        pickler.dump(None)
    footer = out.tell()
    pickle.dump({"offsets": [at], "info": {}}, out)
    out.write(log._END + b"%016x" % footer)
    body = out.getvalue()
    (tmp_path / CHECKPOINTS[0]).write_bytes(body + log._TRAILER + b"%08x" % crc32c(body))
    return load_checkpoint(tmp_path, "rules", 1)


def test_a_checkpoint_whose_bulk_columns_are_not_the_class_s_is_not_used(tmp_path, caplog):
    declared = dict(CustomerViews.CHECKPOINT_BULK)
    loaded = _crafted(tmp_path, declared, {"ev_payload": [["a", None]], "links": [[3, {4: "e1"}]]})
    assert loaded is not None  # (as written: the control)
    assert loaded[1][0].ev_payload == ["a", None] and loaded[1][0].links == {3: {4: "e1"}}
    assert "is not used" not in caplog.text
    for columns, chunks in [
            ({**declared, "links": "list"}, {}),  # (a column of another kind)
            ({**declared, "node_keys": "list"}, {}),  # (a column the class does not name)
            ({k: v for k, v in declared.items() if k != "links"}, {}),  # (one left out: the part would lack it)
            ({}, {}),
            (declared, {"ev_payload": [("a",)]}),  # (a chunk that is not a list)
            (declared, {"links": [[3, {4: "e1"}, 5]]}),  # (a dict's chunk with a key and no value)
            (["ev_payload"], {})]:  # (not a mapping)
        caplog.clear()
        assert _crafted(tmp_path, columns, chunks) is None, (columns, chunks)
        assert "is not used" in caplog.text


@pytest.mark.parametrize("column", ["ev_payload", "ev_id"])  # (a bulk column; one written with the part)
def test_a_failed_checkpoint_write_keeps_no_pickler_in_its_traceback(tmp_path, full_disk, column):
    # (a pickler's memo holds every object it wrote, millions at the end of an ingest: a kept exception must not
    # keep it, wherever the write failed)
    views = CustomerViews()
    setattr(views, column, [f"event {i:06d} " * 4 for i in range(100_000)])  # (over the file's 1 MiB buffer)
    with pytest.raises(OSError) as failed:
        save_checkpoint(tmp_path, 1, "rules", (views,))
    held, error = [], failed.value
    while error is not None:
        tb = error.__traceback__
        while tb is not None:
            held += [v for v in tb.tb_frame.f_locals.values() if isinstance(v, pickle.Pickler)]
            tb = tb.tb_next
        error = error.__context__
    assert not held


def test_each_bulk_column_s_chunks_are_its_own_whatever_order_they_are_read_in():
    class Part:
        CHECKPOINT_BULK = {"a": "list", "b": "list", "c": "dict", "d": "dict"}

    part = Part()
    part.a, part.b = list(range(3 * log.BULK_CHUNK + 5)), ["b"] * 7
    part.c, part.d = {i: -i for i in range(2 * log.BULK_CHUNK + 1)}, {"d": 1}
    a, b, c, d = log._bulk_chunks(part, log.bulk_columns(part))
    assert list(d) == [["d", 1]] and list(b) == [["b"] * 7]
    assert [len(chunk) for chunk in c] == [2 * log.BULK_CHUNK, 2 * log.BULK_CHUNK, 2]  # (keys and values)
    assert [x for chunk in a for x in chunk] == part.a


def test_a_worker_s_state_and_views_in_memory_come_back_as_a_checkpoint_gives_them(guarded):
    # (a Kafka worker keeps rewind points of its state and views pickled in memory, as the checkpoint writes them)
    from streams.stream_app import pickled, unpickled

    views, state = guarded.views, guarded.resolver.state
    views_back, state_back = unpickled(pickled(views)), unpickled(pickled(state))
    assert views_back.digest() == views.digest()
    assert vars(views_back).keys() == vars(views).keys() and vars(state_back).keys() == vars(state).keys()
    for part, back in ((views, views_back), (state, state_back)):
        for name in type(part).CHECKPOINT_BULK:
            assert getattr(back, name) == getattr(part, name)
    assert state_back.profiles == state.profiles and state_back.seen_events == state.seen_events
    plain = _memoized(pickle.dumps(views, protocol=pickle.HIGHEST_PROTOCOL))
    unique = sum(1 for payload in views.ev_payload if payload)  # (strings nothing else holds)
    assert _memoized(pickled(views)) <= plain - unique, (plain, unique)


def _with_footer(tmp_path, footer) -> None:
    """The checkpoint in ``tmp_path`` with ``footer`` in place of its own, checksum and all."""
    path = tmp_path / CHECKPOINTS[0]
    body = path.read_bytes()[:-len(log._TRAILER) - 8]
    at = int(body[-16:], 16)
    body = body[:at] + pickle.dumps(footer) + log._END + b"%016x" % at
    path.write_bytes(body + log._TRAILER + b"%08x" % crc32c(body))


def test_a_checkpoint_whose_footer_misplaces_its_parts_is_not_used(tmp_path, caplog):
    save_checkpoint(tmp_path, 2, "rules", ({"views": 1}, {"state": 2}))
    header = checkpoint_header(tmp_path, "rules")
    offsets = log._footer(open(tmp_path / CHECKPOINTS[0], "rb"), header)["offsets"]
    _with_footer(tmp_path, {"offsets": offsets, "info": {"said": 1}})  # (the control: as written, but for its info)
    assert load_checkpoint(tmp_path, "rules", 2) == (2, ({"views": 1}, {"state": 2}))
    assert checkpoint_header(tmp_path, "rules")["info"] == {"said": 1} and "is not used" not in caplog.text
    for footer in ({"offsets": [offsets[0], offsets[1] + 1], "info": {}},  # (inside a part)
                   {"offsets": offsets[:1], "info": {}},  # (a part missing)
                   {"offsets": [offsets[0], 10 ** 9], "info": {}},  # (past the footer)
                   {"offsets": offsets}):  # (no info)
        _with_footer(tmp_path, footer)
        caplog.clear()
        assert load_checkpoint(tmp_path, "rules", 2) is None and "is not used" in caplog.text, footer


def test_a_state_put_aside_reads_back_as_it_was_and_refuses_damage_and_leaves_no_file(data, tmp_path):
    from resolver.errors import IdresError

    data_dir, _ = data
    with EmbeddedEngine(data_dir) as engine:
        state = engine.resolver.state
        spill_dir = tmp_path / "spill"
        spill_dir.mkdir()
        kept = log.Spilled(spill_dir, state)
        assert list(spill_dir.iterdir()) == []  # (the file has no name)
        back = kept.take()
        assert back is not state
        def profiles(st):
            return {pid: (sorted(p.nodes), p.counts, p.first, sorted(p.traits)) for pid, p in st.profiles.items()}

        assert profiles(back) == profiles(state) and len(state.profiles) > 10
        assert back.node_profile == state.node_profile and back.aliases == state.aliases
        assert back.node_keys == state.node_keys and back.seen_events == state.seen_events
        damaged = log.Spilled(spill_dir, state)
        size = os.fstat(damaged._fh.fileno()).st_size
        byte = os.pread(damaged._fh.fileno(), 1, size // 2)
        os.pwrite(damaged._fh.fileno(), bytes([byte[0] ^ 0xFF]), size // 2)
        with pytest.raises(IdresError, match=r"^a part of the state put aside in a temporary file in .*spill was damaged on disk .*: check the disk"):
            damaged.take()
        assert damaged._fh.closed


def test_a_checkpoint_not_accepted_is_not_read_past_its_header(data, monkeypatch):
    data_dir, _ = data
    with EmbeddedEngine(data_dir, writer=False) as engine:
        fingerprint, length = engine.fingerprint, len(engine.log)
    read, load_part = [], log.load_part

    def counting(unpickler):
        read.append(1)
        return load_part(unpickler)

    monkeypatch.setattr(log, "load_part", counting)
    seen: list[int] = []
    assert load_checkpoint(data_dir, fingerprint, length, accept=lambda at: seen.append(at) or False) is None
    assert read == [] and len(seen) == 1 and 0 < seen[0] <= length
    loaded = load_checkpoint(data_dir, fingerprint, length, accept=lambda at: True)
    assert loaded is not None and loaded[0] == seen[0] and len(read) == 2  # (both parts, once accepted)


def test_memory_let_go_of_is_given_back_to_the_system():
    """What a large structure held, once let go of, leaves the process's resident memory when
    ``give_back_memory`` is called (an ingest calls it between writing the resolver's state and folding the views),
    even where something allocated after it keeps the heap from shrinking on its own."""
    import ctypes

    from streams.log import _malloc_trim, give_back_memory

    if _malloc_trim() is None:
        pytest.skip("no malloc_trim in this C library (glibc only): nothing to give back with")

    def resident() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    ctypes.CDLL(None).malloc_trim(0)
    held = [bytes(2048 + (i % 7)) for i in range(60_000)]  # (~120 MB, each block from the C allocator)
    pin = [bytes(2048) for _ in range(16)]  # (made after: the heap's top stays in use)
    full = resident()
    del held
    let_go = resident()
    give_back_memory()
    given = resident()
    assert full - let_go < 40 << 20  # (letting go alone gave little back)
    assert let_go - given > 80 << 20
    assert pin


def test_the_checkpoint_format_changes_with_the_code_of_every_class_a_checkpoint_holds(monkeypatch):
    """A checkpoint holds objects of the classes ``CHECKPOINT_CLASSES`` names: a change to the code of any of their
    modules must make older checkpoints unusable (``_state_format`` names the code they were written by)."""
    import importlib

    from streams.embedded import _state_format
    from streams.log import CHECKPOINT_CLASSES

    before = _state_format()
    modules = sorted({module for module, _ in CHECKPOINT_CLASSES if module != "array"})
    assert "projections.texts" in modules
    real = Path.read_bytes
    for module in modules:
        changed = Path(importlib.import_module(module).__file__).resolve()
        monkeypatch.setattr(Path, "read_bytes",
                            lambda self, changed=changed: real(self) + (b"\n# changed" if self.resolve() == changed else b""))
        assert _state_format() != before, f"{module}'s code is not in the checkpoint format"
        monkeypatch.setattr(Path, "read_bytes", real)
