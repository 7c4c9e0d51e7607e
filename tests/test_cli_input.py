"""Input shapes through the real command line: gzip, a byte-order mark, a JSON array, a directory; the
summary of rejection reasons; and `idres evaluate`'s checks of its truth file."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from schemas.decisions import LogEntry
from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import ROOT, run_cli

idres = run_cli

SEGMENT = ("log", "00000000000000000000.jsonl")


def one_error_line(proc: subprocess.CompletedProcess, *parts: str) -> str:
    """The command failed with exactly one stderr line, `idres: error: ...`, holding every part."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("idres: error:"), proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def log_entries(data) -> list[dict]:
    """The complete entries of the log; a kill can leave the last line half written, which recovery drops."""
    seg = data.joinpath(*SEGMENT)
    if not seg.exists():
        return []
    return [json.loads(line) for line in seg.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")]


def decided(data) -> dict[str, int]:
    """How many times each raw event was recorded and each bad record kept, in the log of ``data``."""
    counts: dict[str, int] = {}
    for entry in log_entries(data):
        for d in entry["decisions"]:
            if d["type"] in ("interaction_recorded", "event_rejected"):
                key = d["event_id"] if d["type"] == "interaction_recorded" else "rejected:" + d["key"]
                counts[key] = counts.get(key, 0) + 1
    return counts


def event_profiles(data, tmp_path) -> list[tuple]:
    out = tmp_path / f"{data.name}.duckdb"
    idres("snapshot", "--data-dir", str(data), "--out", str(out))
    with duckdb.connect(str(out), read_only=True) as con:
        return con.execute("SELECT event_id, profile_id FROM events ORDER BY event_id").fetchall()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("input")
    events, truth = root / "events.jsonl", root / "truth.csv"
    stats = write_dataset(events, truth, SyntheticConfig(people=150, seed=11))
    gz = root / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(events.read_bytes()))
    plain = root / "plain"
    report = json.loads(idres("ingest", str(events), "--data-dir", str(plain)).stdout)["ingested"]
    return root, events, truth, gz, plain, report, stats


# ------------------------------------------------------------------------------------------ gzip
def test_gzip_file_is_read_as_its_text_and_a_second_read_changes_nothing(dataset, tmp_path):
    root, events, _, gz, plain, plain_report, stats = dataset
    data = tmp_path / "gz"
    first = json.loads(idres("ingest", str(gz), "--data-dir", str(data)).stdout)["ingested"]
    for k in ("lines", "accepted", "duplicates", "rejected", "blank"):
        assert first[k] == plain_report[k], k
    assert first["accepted"] > 0 and first["rejected"] == stats["malformed"] > 0
    # positions are line numbers of the decompressed text, as for the plain file
    plain_rejected = {(d["source"]["position"], d["raw"]) for e in log_entries(plain) for d in e["decisions"]
                      if d["type"] == "event_rejected"}
    gz_rejected = {(d["source"]["position"], d["raw"]) for e in log_entries(data) for d in e["decisions"]
                   if d["type"] == "event_rejected"}
    assert gz_rejected == plain_rejected
    entries = len(log_entries(data))

    again = json.loads(idres("ingest", str(gz), "--data-dir", str(data)).stdout)["ingested"]
    assert again["accepted"] == 0 and again["rejected"] == 0
    assert again["duplicates"] == first["accepted"] + first["duplicates"]
    assert again["rejected_before"] == first["rejected"]
    assert len(log_entries(data)) == entries
    assert max(decided(data).values()) == 1
    assert event_profiles(data, tmp_path) == event_profiles(plain, tmp_path)
    # the plain file it was compressed from, read after it, is the same input too: its rejected records were
    # kept a second time (the input was known by its compressed bytes)
    after = json.loads(idres("ingest", str(events), "--data-dir", str(data)).stdout)["ingested"]
    assert after["rejected"] == 0 and after["rejected_before"] == first["rejected"]
    assert len(log_entries(data)) == entries


def test_gzip_on_standard_input(dataset, tmp_path):
    _, _, _, gz, plain, plain_report, _ = dataset
    data = tmp_path / "stdin"
    report = json.loads(idres("ingest", "-", "--data-dir", str(data), stdin=gz.read_bytes(), text=False).stdout)
    assert report["ingested"]["accepted"] == plain_report["accepted"]
    assert report["ingested"]["rejected"] == plain_report["rejected"]


@pytest.mark.parametrize("share", [0.5, 0.05])  # cut past, and within, the first 64 KiB of text
def test_a_gzip_file_cut_short_ingests_what_it_holds_and_says_so(dataset, tmp_path, share):
    root, _, _, gz, plain, plain_report, _ = dataset
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gz.read_bytes()[: int(gz.stat().st_size * share)])
    data = tmp_path / "cut"
    proc = idres("ingest", str(cut), "--data-dir", str(data), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()  # the summary of what was rejected, then the error
    assert [line for line in lines if line.startswith("idres: error:")] == lines[-1:]
    assert "cut.jsonl.gz: the gzip data ends early" in lines[-1] and "the lines before it were ingested" in lines[-1]
    first = json.loads(proc.stdout)["ingested"]
    assert 0 < first["accepted"] < plain_report["accepted"]
    assert len(log_entries(data)) == first["accepted"] + first["rejected"]  # what was read is in the log
    raws = [d["raw"] for e in log_entries(data) for d in e["decisions"] if d["type"] == "event_rejected"]
    plain_raws = [d["raw"] for e in log_entries(plain) for d in e["decisions"] if d["type"] == "event_rejected"]
    assert set(raws) <= set(plain_raws)  # no half line kept as a rejected record

    # the whole file afterwards: the rest is added, nothing counted twice
    rest = json.loads(idres("ingest", str(gz), "--data-dir", str(data)).stdout)["ingested"]
    assert first["accepted"] + rest["accepted"] == plain_report["accepted"]
    assert max(decided(data).values()) == 1
    assert event_profiles(data, tmp_path) == event_profiles(plain, tmp_path)


def test_sigkill_mid_gzip_ingest_resumes_without_loss_or_double_counting(tmp_path):
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    write_dataset(events, truth, SyntheticConfig(people=1000, seed=5))
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(events.read_bytes()))
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    whole = json.loads(idres("ingest", str(gz), "--data-dir", str(clean)).stdout)["ingested"]
    assert whole["accepted"] > 10 * whole["rejected"] > 0  # the gzip file is read as events

    env = dict(os.environ, IDRES_BATCH_SIZE="200")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "ingest", str(gz), "--data-dir", str(crashed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seg = crashed.joinpath(*SEGMENT)
    deadline = time.time() + 120
    while time.time() < deadline and (not seg.exists() or seg.stat().st_size < 400_000):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    total = len(log_entries(clean))
    assert 0 < len(log_entries(crashed)) < total, "the kill should land mid-stream"

    idres("ingest", str(gz), "--data-dir", str(crashed))
    counts = decided(crashed)
    assert counts == decided(clean) and max(counts.values()) == 1  # same records, each once
    assert len(log_entries(crashed)) == total
    assert event_profiles(crashed, tmp_path) == event_profiles(clean, tmp_path)


# ------------------------------------------------------------------------------------------ BOM
def test_a_utf8_byte_order_mark_is_skipped(dataset, tmp_path):
    _, events, _, _, plain, plain_report, _ = dataset
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + events.read_bytes())
    data = tmp_path / "bom"
    report = json.loads(idres("ingest", str(bom), "--data-dir", str(data)).stdout)["ingested"]
    assert (report["accepted"], report["rejected"]) == (plain_report["accepted"], plain_report["rejected"])
    first = json.loads(events.read_bytes().split(b"\n", 1)[0])
    recorded = [d for e in log_entries(data) for d in e["decisions"] if d["type"] == "interaction_recorded"]
    assert recorded[0]["event_id"] == first["event_id"] and recorded[0]["source"]["position"] == 1


def test_a_byte_order_mark_where_files_were_joined_with_cat_rejects_its_record_saying_so(dataset, tmp_path):
    """``cat a.jsonl b.jsonl`` of two exported files puts b's byte-order mark at the start of a line: that record
    was rejected as "not valid JSON: expected value at line 1 column 1", saying nothing of the mark."""
    _, events, _, _, plain, plain_report, _ = dataset
    lines = events.read_bytes().splitlines(keepends=True)
    joined = tmp_path / "joined.jsonl"
    joined.write_bytes(b"".join(lines[:5]) + b"\xef\xbb\xbf" + b"".join(lines[5:]))
    data = tmp_path / "joined"
    report = json.loads(idres("ingest", str(joined), "--data-dir", str(data)).stdout)["ingested"]
    assert (report["accepted"], report["rejected"]) == (plain_report["accepted"] - 1, plain_report["rejected"] + 1)
    from streams.embedded import EmbeddedEngine

    with EmbeddedEngine(data, writer=False) as engine:
        rejected = [d for d in engine.views.rejected if d["source"]["position"] == 6]
    assert len(rejected) == 1 and "begins with a byte-order mark" in rejected[0]["detail"], rejected


def test_gzip_with_a_byte_order_mark_for_training(dataset, tmp_path):
    _, events, _, _, _, _, _ = dataset
    src = tmp_path / "bom.jsonl.gz"
    src.write_bytes(gzip.compress(b"\xef\xbb\xbf" + events.read_bytes()))
    from_plain = idres("train", str(events), "--out", str(tmp_path / "a.json"), "--pairs", "2000").stderr
    from_gz = idres("train", str(src), "--out", str(tmp_path / "b.json"), "--pairs", "2000").stderr
    assert "distinct attribute records" in from_gz and from_gz == from_plain
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


# ------------------------------------------------------------------------------------------ refused shapes
@pytest.fixture()
def array_file(dataset, tmp_path):
    _, events, _, _, _, _, _ = dataset
    records = [json.loads(line) for line in events.read_bytes().splitlines()[:20]]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(records, indent=2))
    return path


def test_a_json_array_is_refused_before_anything_is_ingested(dataset, array_file, tmp_path):
    _, events, _, _, _, _, _ = dataset
    data = tmp_path / "data"
    # checked up front: the good file given first is not ingested either
    proc = idres("ingest", str(events), str(array_file), "--data-dir", str(data), check=False)
    one_error_line(proc, f"{array_file} holds one JSON array, not JSON lines (one event per line)",
                   f"jq -c '.[]' {array_file} > {tmp_path / 'events.jsonl'}")
    assert proc.stdout == "" and log_entries(data) == []

    proc = idres("ingest", "-", "--data-dir", str(data), stdin=array_file.read_text(), check=False)
    one_error_line(proc, "standard input holds one JSON array")
    gz = tmp_path / "events.json.gz"
    gz.write_bytes(gzip.compress(array_file.read_bytes()))
    one_error_line(idres("ingest", str(gz), "--data-dir", str(data), check=False),
                   f"gunzip -c {gz} | jq -c '.[]' > {tmp_path / 'events.jsonl'}")
    one_error_line(idres("train", str(array_file), "--out", str(tmp_path / "m.json"), check=False),
                   "holds one JSON array")
    assert log_entries(data) == []


def test_json_lines_whose_first_record_is_an_array_are_read_as_json_lines(tmp_path):
    """A JSON-lines file whose first record happens to be an array (a malformed record, first once records are put
    in time order) was refused whole as "one JSON array"; its first line is a whole JSON value with records after
    it, so it is JSON lines: that record is rejected with its reason and the others are ingested."""
    event = {"event_id": "after-1", "occurred_at": "2024-01-02T10:00:00Z", "channel": "web", "event_type": "signup",
             "identifiers": {"email": "after.one@example.org"}}
    path, data = tmp_path / "events.jsonl", tmp_path / "data"
    path.write_text(json.dumps([{"event_id": "in-an-array"}]) + "\n" + json.dumps(event) + "\n")
    proc = idres("ingest", str(path), "--data-dir", str(data))
    assert "1 rejected" in proc.stderr or '"rejected": 1' in proc.stdout, (proc.stdout, proc.stderr)
    counts = decided(data)
    assert counts.get("after-1") == 1 and sum(1 for k in counts if k.startswith("rejected:")) == 1, counts
    # ...while an array on one line alone, or spread over lines, is still one JSON array
    for text in (json.dumps([event]) + "\n", "[\n" + json.dumps(event) + "\n]\n", json.dumps([event]) + ",\n"
                 + json.dumps(event) + "\n"):
        path.write_text(text)
        one_error_line(idres("ingest", str(path), "--data-dir", str(tmp_path / "other"), check=False),
                       "holds one JSON array")


def test_json_lines_on_a_pipe_whose_first_record_is_an_array_are_read_once_what_follows_comes(tmp_path):
    """On a pipe the first line may come alone; whether a first line ``[...]`` is one JSON array or the first
    record of JSON lines is judged once what follows it has begun to come (or the input ended)."""
    event = {"event_id": "piped-1", "occurred_at": "2024-01-02T10:00:00Z", "channel": "web", "event_type": "signup",
             "identifiers": {"email": "piped.one@example.org"}}
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "ingest", "-", "--data-dir", str(data)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"[1, 2]\n")
    proc.stdin.flush()
    time.sleep(0.5)
    out, err = proc.communicate(json.dumps(event).encode() + b"\n", timeout=60)
    assert proc.returncode == 0, err
    counts = decided(data)
    assert counts.get("piped-1") == 1 and sum(1 for k in counts if k.startswith("rejected:")) == 1, counts


def test_a_json_array_is_refused_by_produce_before_connecting(array_file):
    proc = idres("produce", str(array_file), "--bootstrap", "127.0.0.1:9", "--timeout", "1", check=False)
    one_error_line(proc, "holds one JSON array")


def test_a_directory_is_named_as_such(tmp_path):
    one_error_line(idres("ingest", str(tmp_path), "--data-dir", str(tmp_path / "d"), check=False),
                   f"{tmp_path} is a directory; give a JSON-lines file")
    one_error_line(idres("train", str(tmp_path), "--out", str(tmp_path / "m.json"), check=False),
                   f"{tmp_path} is a directory; give a JSON-lines file")


@pytest.mark.parametrize("name, content, message", [
    ("u16.jsonl", '{"event_id": "1"}\n'.encode("utf-16"), "is UTF-16 text; idres reads UTF-8"),
    ("pretty.json", b'{\n  "event_id": "1"\n}\n', "holds JSON spread over several lines"),
    # laid out for reading as the README's own example is: the first line opens the object and goes on
    ("example.json", b'{"event_id": "evt-1", "occurred_at": "2025-03-07T14:03:11Z",\n "channel": "web",\n'
                     b' "identifiers": {"email": "a@b.org"}}\n', "holds JSON spread over several lines"),
    ("events.zip", b"PK\x03\x04" + b"\0" * 40, "is a zip archive"),
    ("events.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 40, "is zstd-compressed"),
])
def test_other_shapes_are_refused_with_what_to_do(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    one_error_line(idres("ingest", str(path), "--data-dir", str(tmp_path / "d"), check=False), message)


# ------------------------------------------------------------------------------------------ reasons
BAD_LINES = [
    '{"event_id": "a1", "occurred_at": ',                                   # not valid JSON, column 32
    'not json',                                                             # not valid JSON, column 1
    '{"event_id": "a2" "x"}',                                               # not valid JSON, column 19
    '{"event_id": "a3", "channel": "web", "event_type": "view", "identifiers": {"email": "a@b.org"}}',
    '{"event_id": "a4", "channel": "web", "event_type": "view", "identifiers": {"email": "c@d.org"}}',
    '{"event_id": "a5", "occurred_at": "yesterday", "channel": "web", "event_type": "view",'
    ' "identifiers": {"email": "e@f.org"}}',
    '[1, 2]',
    '{"event_id": "a6", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", "event_type": "view"}',
    '{"event_id": "ok", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", "event_type": "view",'
    ' "identifiers": {"email": "g@h.org"}}',
]


def test_ingest_summarizes_rejections_by_reason_and_the_snapshot_groups_them(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(BAD_LINES) + "\n")
    data = tmp_path / "data"
    proc = idres("ingest", str(src), "--data-dir", str(data))
    expected = {"not valid JSON": 3, "missing occurred_at": 2, "not a JSON object": 1, "nothing to match on": 1,
                "occurred_at is not a date-time": 1}
    report = json.loads(proc.stdout)["ingested"]
    assert report["rejected"] == 8 and report["accepted"] == 1
    assert report["rejected_reasons"] == expected
    assert list(report["rejected_reasons"])[:2] == ["not valid JSON", "missing occurred_at"]  # commonest first
    assert proc.stderr.strip().splitlines()[-1] == (
        "idres: 8 lines rejected: 3 not valid JSON, 2 missing occurred_at, 1 not a JSON object, "
        "1 nothing to match on, 1 occurred_at is not a date-time; "
        "see the rejected_events table of the snapshot (`idres snapshot`)")

    for entry in log_entries(data):  # the records match the published schema of a log entry
        LogEntry.model_validate(entry)

    snap = tmp_path / "s.duckdb"
    idres("snapshot", "--data-dir", str(data), "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        assert dict(con.execute("SELECT reason, count(*) FROM rejected_events GROUP BY reason").fetchall()) == expected
        details = [r[0] for r in con.execute(
            "SELECT detail FROM rejected_events WHERE reason = 'not valid JSON' ORDER BY position").fetchall()]
    assert len(set(details)) == 3 and all(d.startswith("not valid JSON: ") and "column" in d for d in details)

    again = idres("ingest", str(src), "--data-dir", str(data))
    assert json.loads(again.stdout)["ingested"]["rejected_reasons"] == expected
    assert "8 lines rejected (8 of them kept on an earlier run): 3 not valid JSON" in again.stderr


def test_a_clean_ingest_prints_no_rejection_summary(tmp_path):
    src = tmp_path / "ok.jsonl"
    src.write_text(BAD_LINES[-1] + "\n")
    proc = idres("ingest", str(src), "--data-dir", str(tmp_path / "d"))
    assert json.loads(proc.stdout)["ingested"]["rejected_reasons"] == {}
    assert "rejected" not in proc.stderr


def test_records_kept_before_reasons_had_categories_are_grouped_in_the_snapshot(tmp_path):
    """A log written before ``detail`` existed holds the message in ``reason``: the snapshot derives the category."""
    from streams.embedded import EmbeddedEngine

    data = tmp_path / "data"
    old = [("not valid JSON: Invalid JSON: expected value at line 1 column 1", "not valid JSON"),
           ("not valid JSON: Invalid JSON: EOF while parsing an object at line 1 column 9", "not valid JSON"),
           ("occurred_at: Field required", "missing occurred_at"),
           ("occurred_at: Input should be a valid datetime or date, input is too short",
            "occurred_at is not a date-time"),
           ("channel: String should match pattern '^[a-z][a-z0-9_]*$'", "invalid channel"),
           ("event: Input should be an object", "not a JSON object"),
           ("record is 2000000 bytes; the limit is 1048576", "record too large"),
           ("internal error while resolving (KeyError: 'x'); please report it", "internal error")]
    with EmbeddedEngine(data) as engine:
        engine.commit([[{"type": "event_rejected", "key": f"k{i}", "source": {"name": "old.jsonl", "position": i},
                          "reason": reason, "raw": "x"}] for i, (reason, _) in enumerate(old, 1)])
        assert engine.verify_decisions() is None
    snap = tmp_path / "s.duckdb"
    idres("snapshot", "--data-dir", str(data), "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        rows = con.execute("SELECT reason, detail FROM rejected_events ORDER BY position").fetchall()
    assert rows == [(category, reason) for reason, category in old]


def test_a_defect_seen_again_on_a_second_read_writes_no_empty_entry(tmp_path, monkeypatch):
    from resolver.engine import Resolver
    from streams.embedded import EmbeddedEngine

    src = tmp_path / "in.jsonl"
    src.write_text(BAD_LINES[-1] + "\n")
    real = Resolver.decide

    def broken(self, event, source=None):
        if event.event_id == "ok":
            raise RuntimeError("boom")
        return real(self, event, source)

    monkeypatch.setattr(Resolver, "decide", broken)
    with EmbeddedEngine(tmp_path / "data") as engine:
        first = engine.ingest_file(src)
        assert first.internal_errors == 1 and first.rejected_reasons == {"internal error": 1}
        assert len(engine.log) == 1
        again = engine.ingest_file(src)
        assert again.internal_errors == 1 and len(engine.log) == 1
        assert engine.verify_decisions() is None
        (rejected,) = engine.views.rejected
        assert rejected["reason"] == "internal error" and "RuntimeError: boom" in rejected["detail"]


# ------------------------------------------------------------------------------------------ evaluate
def write_truth(path, rows, header=("event_id", "person_id")) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)


def truth_rows(truth) -> list[list[str]]:
    with open(truth, newline="") as fh:
        return [[r["event_id"], r["person_id"]] for r in csv.DictReader(fh)]


def test_evaluate_reports_what_it_scored(dataset):
    root, _, truth, _, plain, report, _ = dataset
    out = json.loads(idres("evaluate", "--truth", str(truth), "--data-dir", str(plain)).stdout)
    assert out["events_scored"] == out["items"] == report["accepted"]
    assert out["truth_events_not_in_log"] == 0 and out["log_events_not_in_truth"] == 0
    assert 0.5 < out["f1"] <= 1.0


def test_evaluate_refuses_an_events_file_as_truth(dataset):
    _, events, _, gz, plain, _, _ = dataset
    for wrong in (events, gz):
        one_error_line(idres("evaluate", "--truth", str(wrong), "--data-dir", str(plain), check=False),
                       f"{wrong} holds JSON (an events file?), not a truth CSV", "event_id,person_id")


def test_evaluate_refuses_a_csv_without_the_header(dataset, tmp_path):
    _, _, truth, _, plain, _, _ = dataset
    bare = tmp_path / "bare.csv"
    write_truth(bare, truth_rows(truth), header=None)
    one_error_line(idres("evaluate", "--truth", str(bare), "--data-dir", str(plain), check=False),
                   "is not a truth CSV", "event_id and person_id")
    # the columns are found by name, in any order, with others beside them
    swapped = tmp_path / "swapped.csv"
    write_truth(swapped, [[p, "x", e] for e, p in truth_rows(truth)], header=("person_id", "note", "event_id"))
    a = json.loads(idres("evaluate", "--truth", str(swapped), "--data-dir", str(plain)).stdout)
    b = json.loads(idres("evaluate", "--truth", str(truth), "--data-dir", str(plain)).stdout)
    assert a == b


def test_evaluate_refuses_another_data_sets_truth(dataset, tmp_path):
    _, _, _, _, plain, _, _ = dataset
    other_events, other_truth = tmp_path / "other.jsonl", tmp_path / "other.csv"
    write_dataset(other_events, other_truth, SyntheticConfig(people=150, seed=12))
    one_error_line(idres("evaluate", "--truth", str(other_truth), "--data-dir", str(plain), check=False),
                   "none of the", f"events in {other_truth} is in the log of {plain}",
                   "give the truth file of the events you ingested")

    # a little overlap, by chance or a mix-up: under half of each side in common is refused too
    ours = truth_rows(dataset[2])
    mixed = tmp_path / "mixed.csv"
    write_truth(mixed, ours[: len(ours) // 5] + truth_rows(other_truth))
    one_error_line(idres("evaluate", "--truth", str(mixed), "--data-dir", str(plain), check=False),
                   f"only {len(ours) // 5:,} of the", "probably another data set's")


def test_evaluate_scores_a_partial_overlap_with_a_warning(dataset, tmp_path):
    _, _, truth, _, plain, report, _ = dataset
    rows = truth_rows(truth)
    part = tmp_path / "part.csv"
    write_truth(part, rows[: len(rows) // 3] + [["evt-not-in-log", "person-x"]])
    proc = idres("evaluate", "--truth", str(part), "--data-dir", str(plain))
    out = json.loads(proc.stdout)
    n = len(rows) // 3
    assert out["events_scored"] == out["items"] == n
    assert out["truth_events_not_in_log"] == 1 and out["log_events_not_in_truth"] == report["accepted"] - n
    warning = proc.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0] == (
        f"idres: warning: scoring only the {n:,} events found in both: 1 of the {n + 1:,} events in {part} are "
        f"not in the log, and {report['accepted'] - n:,} of the log's {report['accepted']:,} events are not in "
        f"the truth file")


def test_evaluate_names_a_bad_truth_line(dataset, tmp_path):
    _, _, truth, _, plain, _, _ = dataset
    rows = truth_rows(truth)
    bad = tmp_path / "bad.csv"
    write_truth(bad, rows[:3] + [[rows[0][0], "someone-else"]])
    one_error_line(idres("evaluate", "--truth", str(bad), "--data-dir", str(plain), check=False),
                   f"{bad}:5: event {rows[0][0]!r} is given to")
    one_error_line(idres("evaluate", "--truth", str(tmp_path), "--data-dir", str(plain), check=False),
                   f"{tmp_path} is a directory; give the truth CSV")


# ------------------------------------------------------------------------------------------ Kafka
kafka_warnings = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")


@kafka_warnings
def test_produce_reads_gzip_and_skips_a_byte_order_mark(kafka_bootstrap, dataset, tmp_path):
    from collections import Counter

    from tests.kafka_broker import unique_name
    from tests.test_kafka_produce import consume_all

    _, events, _, _, _, _, _ = dataset
    src = tmp_path / "events.jsonl.gz"
    src.write_bytes(gzip.compress(b"\xef\xbb\xbf" + events.read_bytes()))
    lines = events.read_bytes().split(b"\n")[:-1]
    topic = unique_name("gz") + ".raw"
    out = json.loads(idres("produce", str(src), "--bootstrap", kafka_bootstrap, "--topic", topic,
                           "--partitions", "1").stdout)
    assert out["messages"] == len(lines) and out["bytes"] == sum(map(len, lines)) and out["failed"] == 0
    records = consume_all(kafka_bootstrap, [topic], len(lines))
    assert Counter(r.value for r in records) == Counter(lines)  # the text, not the compressed bytes


@kafka_warnings
def test_dead_letters_carry_the_same_reason_categories(kafka_bootstrap, tmp_path):
    from streams.kafka_io import KafkaSettings
    from streams.stream_app import read_to_end
    from tests.kafka_broker import unique_name
    from tests.test_stream import Worker, wait_until

    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(BAD_LINES) + "\n")
    prefix = unique_name("reasons") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    idres("produce", str(src), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
          "--topic", settings.topics.raw(), "--partitions", "1")
    worker = Worker(tmp_path, kafka_bootstrap, prefix, "validate")
    try:
        wait_until(lambda: worker.metrics().get("idres_validate_rejected_total") == 8, 120,
                   "the bad lines dead-lettered", [worker])
    finally:
        worker.stop()
    dead = []
    read_to_end(settings, settings.topics.deadletter, dead.append)
    headers = [{k: v.decode() for k, v in r.headers} for r in dead]
    embedded = json.loads(idres("ingest", str(src), "--data-dir", str(tmp_path / "d")).stdout)["ingested"]
    reasons: dict[str, int] = {}
    for h in headers:
        reasons[h["reason"]] = reasons.get(h["reason"], 0) + 1
    assert reasons == embedded["rejected_reasons"]
    assert all(h["detail"] for h in headers)

    snap = tmp_path / "s.duckdb"
    idres("snapshot", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        grouped = dict(con.execute("SELECT reason, count(*) FROM rejected_events GROUP BY reason").fetchall())
        details = con.execute("SELECT count(*) FROM rejected_events WHERE detail LIKE 'not valid JSON: %'").fetchone()
    assert grouped == embedded["rejected_reasons"] and details[0] == 3


@pytest.mark.parametrize("compress", [False, True])
def test_progress_adds_up_to_the_file_size(tmp_path, compress):
    """The progress bar's total is the file's size (compressed bytes for gzip): what it is told, in all,
    must be exactly that, the shape check's look ahead included."""
    from streams.embedded import EmbeddedEngine

    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=120, seed=5))
    if compress:
        gz = tmp_path / "events.jsonl.gz"
        gz.write_bytes(gzip.compress(events.read_bytes()))
        events = gz
    told: list[int] = []
    with EmbeddedEngine(tmp_path / "data", batch_size=100) as engine:
        engine.ingest_file(events, progress=told.append)
    assert len(told) > 1 and all(n > 0 for n in told)
    assert sum(told) == events.stat().st_size


def test_the_rejection_summary_names_a_single_remaining_reason():
    """Beyond the five commonest reasons the rest are counted; one reason left is named, not "1 other reasons"."""
    from streams.embedded import IngestReport

    report = IngestReport()
    report.rejected_reasons = {f"reason {c}": n for c, n in zip("abcdef", (9, 8, 7, 6, 5, 1))}
    line = report.rejection_summary()
    assert line.startswith("36 lines rejected: 9 reason a, 8 reason b, 7 reason c, 6 reason d, 5 reason e, 1 reason f;")
    report.rejected_reasons["reason g"] = 2
    assert ", 3 for 2 other reasons;" in report.rejection_summary()


def test_idres_predict_takes_only_yes_or_no(tmp_path, monkeypatch):
    import pytest as _pytest

    from projections.customer import CustomerViews
    from projections.snapshot import write_snapshot
    from resolver.errors import ConfigError

    monkeypatch.setenv("IDRES_PREDICT", "maybe")
    with _pytest.raises(ConfigError, match="IDRES_PREDICT='maybe': expected 1 or 0"):
        write_snapshot(CustomerViews(), tmp_path / "s.duckdb")
    assert not (tmp_path / "s.duckdb").exists()


def test_an_identifier_type_spelt_like_a_configured_one_is_warned_about(tmp_path):
    """A channel sending "Email" instead of "email" makes a type of its own that never links with e-mails: the
    ingest says so."""
    from tests.cli_helpers import run_cli

    lines = [{"event_id": "a", "occurred_at": "2025-01-01T10:00:00Z", "channel": "web", "event_type": "visit",
              "identifiers": {"email": "ana@mailbox.org"}},
             {"event_id": "b", "occurred_at": "2025-01-01T11:00:00Z", "channel": "store", "event_type": "visit",
              "identifiers": {"Email": "ana@mailbox.org", "loyaltyId": "LY-1"}}]
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_cli("ingest", str(path), "--data-dir", str(tmp_path / "d"))
    warned = [line for line in done.stderr.splitlines() if line.startswith("idres: warning: identifier type")]
    assert warned == [
        "idres: warning: identifier type 'Email' is not 'email': its values are kept apart from the email values "
        "(they never link); send 'email', or configure 'Email'",
        "idres: warning: identifier type 'loyaltyId' is not 'loyalty_id': its values are kept apart from the "
        "loyalty_id values (they never link); send 'loyalty_id', or configure 'loyaltyId'"]


@pytest.mark.parametrize("compressed", [False, True])
def test_a_line_far_longer_than_a_record_may_be_is_never_held_whole(tmp_path, compressed):
    """A 40 MB line (a file's tail of NULs after a crash, one runaway record) was read whole into memory before
    being rejected as too large: a gigabyte's line held a gigabyte. It is read past in pieces; what is held of it
    is at most a record's limit, and it is still rejected, with the lines around it decided."""
    import tracemalloc

    from streams.embedded import LINE_HELD, EmbeddedEngine
    from streams.inputs import open_input

    good = [json.dumps({"event_id": f"e{n}", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                        "event_type": "login", "identifiers": {"email": f"p{n}@mailbox.org"}}).encode() for n in (1, 2)]
    text = good[0] + b"\n" + b"\x00" * (40 << 20) + b"\n" + good[1] + b"\n"
    path = tmp_path / ("in.jsonl.gz" if compressed else "in.jsonl")
    path.write_bytes(gzip.compress(text, compresslevel=1) if compressed else text)
    del text
    tracemalloc.start()
    try:
        with open_input(path, max_line=LINE_HELD) as inp:
            lengths = [len(line) for line in inp]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lengths == [len(good[0]) + 1, LINE_HELD, len(good[1]) + 1]
    assert peak < 8 << 20, peak
    with EmbeddedEngine(tmp_path / "data") as engine:
        report = engine.ingest_file(path)
        assert (report.accepted, report.rejected) == (2, 1)
        assert engine.views.rejected[0]["detail"] == "record is more than 1,048,576 bytes (the limit)"


@pytest.mark.parametrize("blanks", [1, 2, 3 << 20])
def test_a_long_record_after_blanks_is_too_large_and_a_short_one_is_read(tmp_path, blanks):
    """Blanks before a cut record were stripped before it was weighed: with two, a 2 MB record read as `not valid
    JSON`; with megabytes of them, what was held was blanks alone, a blank line, and the record was dropped."""
    from streams.embedded import EmbeddedEngine

    def record(n: int, note: int) -> bytes:
        return json.dumps({"event_id": f"e{n}", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                           "event_type": "login", "identifiers": {"email": f"p{n}@mailbox.org"},
                           "payload": {"note": "x" * note}}).encode()

    path = tmp_path / "in.jsonl"
    path.write_bytes(b" " * blanks + record(1, 2 << 20) + b"\n" + b" " * blanks + record(2, 10) + b"\n")
    with EmbeddedEngine(tmp_path / "data") as engine:
        report = engine.ingest_file(path)
        assert (report.accepted, report.rejected, report.blank) == (1, 1, 0)
        assert engine.views.rejected[0]["reason"] == "record too large"


def test_a_small_file_grown_by_appending_keeps_its_rejected_records_once(tmp_path):
    """A file of less than 64 KiB was known by all of its bytes: grown by a line, it was another input, and its
    rejected records were kept a second time. One that only begins like it (the same first line) is another."""
    from streams.embedded import EmbeddedEngine

    ok = [json.dumps({"event_id": f"e{n}", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                      "event_type": "login", "identifiers": {"email": f"p{n}@mailbox.org"}}) for n in range(3)]
    path = tmp_path / "f.jsonl"
    path.write_text(ok[0] + "\nnot json\n")
    other = tmp_path / "g.jsonl"
    other.write_text(ok[0] + "\nnot json either\n")
    with EmbeddedEngine(tmp_path / "data") as engine:
        first = engine.ingest_file(path)
        with open(path, "a") as fh:
            fh.write(ok[1] + "\n")
        grown = engine.ingest_file(path)
        with open(path, "a") as fh:
            fh.write("still not json\n" + ok[2] + "\n")
        again = engine.ingest_file(path)
        elsewhere = engine.ingest_file(other)
        assert (first.rejected, grown.rejected_before, grown.rejected, grown.accepted) == (1, 1, 0, 1)
        assert (again.rejected_before, again.rejected, again.accepted) == (1, 1, 1)
        assert elsewhere.rejected == 1
        assert len(engine.views.rejected) == 3


def test_two_streams_on_standard_input_are_two_inputs_unless_they_are_the_same(tmp_path):
    """Every stream on standard input was the input "stdin": a next day's export piped in with the same header line
    at line 1 had that line's rejection dropped as kept before. A stream is known by its beginning, as a file is."""
    data = str(tmp_path / "data")
    ok = [json.dumps({"event_id": f"e{n}", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                      "event_type": "login", "identifiers": {"email": f"p{n}@mailbox.org"}}) for n in range(2)]
    day1, day2 = "event_id,occurred_at\n" + ok[0] + "\n", "event_id,occurred_at\n" + ok[1] + "\n"
    reports = [json.loads(run_cli("ingest", "-", "--data-dir", data, stdin=text).stdout)["ingested"]
               for text in (day1, day2, day2)]
    assert [(r["rejected"], r["rejected_before"]) for r in reports] == [(1, 0), (1, 0), (0, 1)]
    assert json.loads(run_cli("ingest", "-", "--data-dir", data, stdin=day1).stdout)["totals"]["rejected"] == 2


def test_a_header_line_alone_does_not_make_later_files_its_growth_and_an_earlier_identity_is_kept(tmp_path):
    """A header-only export claimed every later day's file that began with the header, and the second day's bad
    line was dropped as the first day's. A small file known (before) by ``sha1-64k:`` keeps that identity."""
    import hashlib

    from streams.embedded import EmbeddedEngine, identity_of

    header = "event_id,occurred_at\n"
    days = []
    for n in range(1, 3):
        ok = json.dumps({"event_id": f"e{n}", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                         "event_type": "login", "identifiers": {"email": f"p{n}@mailbox.org"}})
        days.append(header + ok + "\nN/A\n")
    paths = [tmp_path / f"d{n}.csv.jsonl" for n in range(3)]
    for path, text in zip(paths, [header, *days]):
        path.write_text(text)
    with EmbeddedEngine(tmp_path / "data") as engine:
        reports = [engine.ingest_file(p) for p in paths]
    assert [(r.rejected, r.rejected_before) for r in reports] == [(1, 0), (2, 0), (2, 0)]
    small = days[0].encode()
    legacy = "sha1-64k:" + hashlib.sha1(small).hexdigest()[:16]
    assert identity_of(small, {legacy}) == legacy and identity_of(small).startswith(f"sha1-{len(small)}:")
