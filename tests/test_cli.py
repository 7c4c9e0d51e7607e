"""End to end through the real command line: JSON lines in, DuckDB snapshot out, queried with duckdb."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from resolver.measures import pairwise_scores
from schemas.decisions import DECISION_SCHEMA_VERSION
from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import ROOT, run_cli



idres = run_cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    events, truth = root / "events.jsonl", root / "truth.csv"
    stats = write_dataset(events, truth, SyntheticConfig(people=300, seed=3))
    return root, events, truth, stats


@pytest.fixture(scope="module")
def ingested(dataset):
    root, events, truth, stats = dataset
    data = root / "data"
    out = json.loads(idres("ingest", str(events), "--data-dir", str(data)).stdout)
    snap = root / "snap.duckdb"
    idres("snapshot", "--data-dir", str(data), "--out", str(snap))
    return data, snap, out


def test_ingest_accounts_for_every_line(dataset, ingested):
    _, events, truth, stats = dataset
    _, _, out = ingested
    report = out["ingested"]
    lines = sum(1 for line in events.read_bytes().splitlines() if line.strip())
    assert report["lines"] == lines
    assert report["accepted"] + report["duplicates"] + report["rejected"] == lines
    with open(truth) as fh:
        assert report["accepted"] == sum(1 for _ in csv.DictReader(fh))
    assert report["rejected"] == stats["malformed"]
    assert report["duplicates"] == stats["duplicates"]


def test_snapshot_tables_agree_with_the_engine(dataset, ingested):
    _, _, truth, _ = dataset
    data, snap, out = ingested
    con = duckdb.connect(str(snap), read_only=True)
    n_events, n_profiles = con.execute("SELECT count(*), count(DISTINCT profile_id) FROM events").fetchone()
    assert n_events == out["ingested"]["accepted"]
    assert con.execute("SELECT count(*) FROM profiles").fetchone()[0] == n_profiles
    assert con.execute("SELECT count(*) FROM events WHERE profile_id IS NULL").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM events e ANTI JOIN profiles p USING (profile_id)").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM rejected_events WHERE reason IS NULL OR reason = ''").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM rejected_events").fetchone()[0] == out["ingested"]["rejected"]
    assert con.execute("SELECT sum(event_count) FROM profiles").fetchone()[0] == n_events
    assert con.execute("SELECT count(*) FROM merges").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM identifiers WHERE status = 'shared'").fetchone()[0] > 0
    # every alias points at a live profile, and merges say which identifiers did it
    assert con.execute("SELECT count(*) FROM aliases a ANTI JOIN profiles p USING (profile_id)").fetchone()[0] == 0
    assert con.execute("SELECT min(len(via)) FROM merges").fetchone()[0] >= 2
    # lifetime value in profiles is its purchases less its refunds in events, in the report currency (no rates
    # are configured: other currencies are left out), never below 0
    ltv = con.execute("""
        SELECT max(abs(p.lifetime_value - greatest(coalesce(e.v, 0), 0))) FROM profiles p LEFT JOIN (
          SELECT profile_id, sum(CASE WHEN event_type IN ('return','refund') THEN -abs(amount) ELSE amount END) v
          FROM events
          WHERE event_type IN ('purchase','store_purchase','order','order_placed','return','refund')
            AND coalesce(currency, (SELECT report_currency FROM metric_settings))
                = (SELECT report_currency FROM metric_settings)
          GROUP BY ALL) e USING (profile_id)""").fetchone()[0]
    assert ltv < 0.01
    # the snapshot's clusters are the engine's, and they are good
    predicted = dict(con.execute("SELECT event_id, profile_id FROM events").fetchall())
    with open(truth) as fh:
        truth_map = {r["event_id"]: r["person_id"] for r in csv.DictReader(fh)}
    scores = pairwise_scores(predicted, truth_map)
    assert scores["precision"] >= 0.97 and scores["recall"] >= 0.6, scores
    evaluated = json.loads(idres("evaluate", "--truth", str(truth), "--data-dir", str(data)).stdout)
    assert evaluated["f1"] == pytest.approx(scores["f1"])


def test_lookup_any_identifier_format_finds_the_same_customer(ingested):
    data, snap, _ = ingested
    con = duckdb.connect(str(snap), read_only=True)
    pid, phone = con.execute("""SELECT profile_id, phones[1] FROM profiles
                            WHERE len(phones) = 1 AND len(emails) >= 1 ORDER BY event_count DESC LIMIT 1""").fetchone()
    digits = phone[2:]  # +1AAABBBCCCC -> AAABBBCCCC
    pretty = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    for spelled in (phone, digits, pretty):
        view = json.loads(idres("lookup", f"phone={spelled}", "--data-dir", str(data)).stdout)
        assert view["profile_id"] == pid
    email = con.execute("SELECT emails[1] FROM profiles WHERE profile_id = ?", [pid]).fetchone()[0]
    view = json.loads(idres("lookup", f"email=  {email.upper()} ", "--data-dir", str(data)).stdout)
    assert view["profile_id"] == pid
    assert view["event_count"] == con.execute("SELECT count(*) FROM events WHERE profile_id = ?", [pid]).fetchone()[0]
    assert {"identifiers", "golden_record", "channels", "timeline", "lifetime_value", "open_cases"} <= set(view)


def test_merged_away_id_still_resolves(ingested):
    data, snap, _ = ingested
    con = duckdb.connect(str(snap), read_only=True)
    alias, survivor = con.execute("SELECT alias_id, profile_id FROM aliases LIMIT 1").fetchone()
    view = json.loads(idres("show", alias, "--data-dir", str(data)).stdout)
    assert view["profile_id"] == survivor and view["requested_id"] == alias


def test_explain_names_the_evidence(ingested):
    data, snap, _ = ingested
    con = duckdb.connect(str(snap), read_only=True)
    pid = con.execute("SELECT profile_id FROM links GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()[0]
    text = idres("explain", pid, "--data-dir", str(data)).stdout
    assert f"Profile {pid}" in text and "were given together on event" in text
    full = json.loads(idres("explain", pid, "--json", "--data-dir", str(data)).stdout)
    assert full["links"] and all(link["event_id"] for link in full["links"])


def test_shared_identifier_lookup_says_so(ingested):
    data, snap, _ = ingested
    con = duckdb.connect(str(snap), read_only=True)
    t, v = con.execute("SELECT id_type, id_value FROM identifiers WHERE status = 'shared' LIMIT 1").fetchone()
    proc = idres("lookup", f"{t}={v}", "--data-dir", str(data), check=False)
    assert proc.returncode == 4
    assert json.loads(proc.stdout)["status"] == "shared"


def test_replay_is_identical_and_decisions_are_reproduced(ingested):
    data, _, _ = ingested
    out = json.loads(idres("replay", "--verify", "--data-dir", str(data)).stdout)
    assert out["identical_to_live_views"] is True and out["decisions_reproduced"] is True


def test_reingesting_the_same_file_changes_nothing(dataset, ingested, tmp_path):
    _, events, _, _ = dataset
    data, snap, _ = ingested
    again = json.loads(idres("ingest", str(events), "--data-dir", str(data)).stdout)["ingested"]
    assert again["accepted"] == 0 and again["rejected"] == 0
    snap2 = tmp_path / "again.duckdb"
    idres("snapshot", "--data-dir", str(data), "--out", str(snap2))
    q = "SELECT event_id, profile_id FROM events ORDER BY event_id"
    assert duckdb.connect(str(snap), read_only=True).execute(q).fetchall() == \
        duckdb.connect(str(snap2), read_only=True).execute(q).fetchall()


@pytest.mark.parametrize("args, message", [
    (["lookup", "email=a@b.org", "--data-dir", "/nonexistent/idres"], "no idres data in /nonexistent/idres"),
    (["lookup", "emaila@b.org"], "expected TYPE=VALUE"),
    (["lookup", "phone=12"], "cannot be looked up: not a phone number"),
    (["ingest", "/nonexistent/events.jsonl"], "input file /nonexistent/events.jsonl not found"),
    (["lookup", "email=a@b.org", "--timeline", "-5"], "argument --timeline: expected a whole number, 0 or more, not '-5'"),
    (["show", "p_0", "--timeline", "-1"], "argument --timeline: expected a whole number, 0 or more"),
    (["lookup", "phone=" + "1" * 100_000], "'" + "1" * 120 + "'... (100,000 characters) cannot be looked up"),
    (["lookup", "x" * 5_000], "expected TYPE=VALUE (for example email=jane@example.com), got 'xxx"),
])
def test_errors_are_one_clear_line(ingested, args, message):
    if "--data-dir" not in args:
        args = [*args, "--data-dir", str(ingested[0])]
    proc = idres(*args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idres: error:") and message in lines[0], proc.stderr
    assert len(lines[0]) < 600  # (a value the user gave is repeated cut short)


def test_a_lookup_that_finds_nobody_repeats_a_long_value_cut_short(ingested):
    proc = idres("lookup", "email=" + "z" * 900 + "@mailbox.org", "--data-dir", str(ingested[0]), check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("idres: no customer has 'email:zzz") and "(918 characters)" in proc.stderr
    assert len(proc.stderr) < 300 + len(str(ingested[0]))
    assert proc.stderr.rstrip().endswith(f" in {ingested[0]}")  # (which data directory said so)
    for command in (["show", "p_0000000000000000"], ["explain", "p_0000000000000000"]):
        proc = idres(*command, "--data-dir", str(ingested[0]), check=False)
        assert proc.returncode == 3 and proc.stderr == f"idres: no profile 'p_0000000000000000' in {ingested[0]}\n"


def test_generate_refuses_one_file_for_the_events_and_the_truth(tmp_path):
    same = tmp_path / "both.jsonl"
    proc = idres("generate", "--people", "3", "--out", str(same), "--truth", str(same), check=False)
    assert proc.returncode == 2 and "the events and the ground truth need a file each" in proc.stderr
    assert not same.exists()


def test_schema_export(tmp_path):
    idres("schema", "--out", str(tmp_path))
    schema = json.loads((tmp_path / "channel_event.v1.schema.json").read_text())
    assert {"event_id", "occurred_at", "channel", "event_type"} <= set(schema["required"])
    assert (tmp_path / f"decision_log_entry.v{DECISION_SCHEMA_VERSION}.schema.json").exists()


def test_demo_runs_and_scores(tmp_path):
    proc = idres("demo", "--people", "150", "--dir", str(tmp_path / "demo"))
    assert "pairwise F1" in proc.stdout
    f1 = float(next(line.split()[-1] for line in proc.stdout.splitlines() if "pairwise F1" in line))
    precision = float(next(line.split()[-1] for line in proc.stdout.splitlines() if "pairwise precision" in line))
    assert precision >= 0.97 and f1 > 0.5
    con = duckdb.connect(str(tmp_path / "demo" / "customers.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM profiles").fetchone()[0] > 0


def test_sigkill_mid_ingest_loses_nothing_and_applies_nothing_twice(tmp_path):
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    write_dataset(events, truth, SyntheticConfig(people=1000, seed=5))
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    idres("ingest", str(events), "--data-dir", str(clean))

    env = dict(os.environ, IDRES_BATCH_SIZE="200")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "ingest", str(events), "--data-dir", str(crashed)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seg = crashed / "log" / "00000000000000000000.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not seg.exists() or seg.stat().st_size < 400_000):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sum(1 for _ in open(seg, "rb"))
    total = sum(1 for line in open(clean / "log" / "00000000000000000000.jsonl", "rb"))
    assert 0 < written < total, "the kill should land mid-stream"

    idres("ingest", str(events), "--data-dir", str(crashed))
    # each raw event decided exactly once, each bad record kept exactly once
    ids: dict[str, int] = {}
    for line in open(seg, "rb"):
        for d in json.loads(line)["decisions"]:
            if d["type"] in ("interaction_recorded", "event_rejected"):
                key = d.get("event_id") if d["type"] == "interaction_recorded" else d["key"]
                ids[key] = ids.get(key, 0) + 1
    assert ids and max(ids.values()) == 1
    assert sum(1 for _ in open(seg, "rb")) == total
    # and the result is the one an uninterrupted run gives, profile IDs included
    snaps = []
    for data in (clean, crashed):
        out = tmp_path / f"{data.name}.duckdb"
        idres("snapshot", "--data-dir", str(data), "--out", str(out))
        snaps.append(duckdb.connect(str(out), read_only=True).execute(
            "SELECT event_id, profile_id FROM events ORDER BY event_id").fetchall())
    assert snaps[0] == snaps[1]


def test_query_runs_sql_on_a_snapshot(ingested):
    _, snap, out = ingested
    text = idres("query", str(snap), "SELECT count(*) AS n FROM events").stdout.splitlines()
    assert text[0].strip() == "n" and int(text[2]) == out["ingested"]["accepted"]
    rows = json.loads(idres("query", str(snap), "SELECT channel, count(*) AS c FROM events GROUP BY 1",
                            "--json").stdout)
    assert sum(r["c"] for r in rows) == out["ingested"]["accepted"]
    bad = idres("query", str(snap), "SELECT nope FROM events", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("idres: error: query failed:")


def test_ingest_and_replay_leave_the_state_they_built_out_of_the_collectors_sight(tmp_path):
    # (the collector is paused while they build it; run again as it was, its first collection would scan
    # every object built, seconds at a million events, for nothing: the state forms no cycles)
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    write_dataset(events, truth, SyntheticConfig(people=200, seed=4))
    code = ("import gc, sys\nfrom streams import cli\n"
            "rc = cli.main(sys.argv[1:])\n"
            "print('RESULT', rc, gc.isenabled(), gc.get_freeze_count(), len(gc.get_objects()))\n")
    data = str(tmp_path / "data")
    for command in (["ingest", str(events)], ["replay"]):
        proc = subprocess.run([sys.executable, "-c", code, *command, "--data-dir", data], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        rc, enabled, frozen, seen = proc.stdout.rsplit("RESULT", 1)[1].split()
        assert (rc, enabled) == ("0", "True")
        # (what the collector still looks at is what was made after: a few objects against the state's many)
        assert int(seen) * 20 < int(frozen), (command, seen, frozen)


def test_an_output_path_that_is_not_ours_is_refused_before_any_work(dataset, ingested, tmp_path):
    """`snapshot --out` renamed its new file over whatever was there: a user's events file was replaced, and a
    device (run as root, /dev/full) became a regular file. Such paths are refused now, with what to do; a snapshot
    written before is replaced as always."""
    data = ingested[0]
    victim = tmp_path / "events.jsonl"
    victim.write_text('{"event_id": "mine"}\n')
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out in (victim, fifo):
        done = run_cli("snapshot", "--data-dir", str(data), "--out", str(out), check=False)
        assert done.returncode == 2 and done.stderr.startswith("idres: error: ") and done.stderr.count("\n") == 1
        assert "give" in done.stderr or "remove it" in done.stderr
    assert victim.read_text() == '{"event_id": "mine"}\n' and fifo.is_fifo()
    snap = tmp_path / "s.duckdb"
    for _ in range(2):  # (the second run replaces the first's snapshot)
        run_cli("snapshot", "--data-dir", str(data), "--out", str(snap), "--no-predict")
    done = run_cli("train", str(dataset[1]), "--out", str(tmp_path / "missing" / "m.json"), check=False)
    assert done.returncode == 2 and "does not exist: create it" in done.stderr and done.stderr.count("\n") == 1


def test_a_system_error_is_one_line_with_what_to_do(tmp_path):
    """Any system error (a full disk, a read-only file system, a file where a directory should be) is one line
    naming the path and what to do, not an internal error; a temporary file is named by its directory."""
    import errno

    from streams.cli import os_error_line

    full = os_error_line(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".s.duckdb.123.tmp")))
    assert full == f"No space left on device: writing in {tmp_path}: free space on that disk or write somewhere " \
                   "else, then run the command again"
    assert os_error_line(OSError(errno.EROFS, "Read-only file system", "/mnt/ro/d")).endswith("give a path on a "
                                                                                            "writable one")
    assert os_error_line(OSError(errno.ENOEXEC, "Exec format error")) == \
        "Exec format error: check the path, the disk and its permissions, then run the command again"
    (tmp_path / "afile").write_text("")
    done = run_cli("ingest", str(tmp_path / "afile"), "--data-dir", str(tmp_path / "afile" / "x"), check=False)
    assert done.returncode == 2 and done.stderr.startswith("idres: error: Not a directory: ")
    assert "a part of that path is a file" in done.stderr and done.stderr.count("\n") == 1


def test_errors_of_serve_whatif_and_query_say_what_to_do(ingested, tmp_path):
    import socket

    data, snap, _ = ingested
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("serve", "--data-dir", str(data), "--port", str(port), check=False, timeout=60)
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1].endswith(
        "Address already in use: another process listens there: give another --port, or stop that process")
    done = run_cli("whatif", "--data-dir", str(data), "--scratch", str(tmp_path / "w"), "--model",
                   str(tmp_path / "none.json"), check=False)
    assert done.returncode == 2 and "write one with `idres train FILE --out" in done.stderr
    unreadable = tmp_path / "copy.duckdb"
    unreadable.write_bytes(snap.read_bytes())
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):  # (root reads it whatever its mode)
        done = run_cli("query", str(unreadable), "SELECT 1", check=False)
        assert done.returncode == 2 and "permission denied" in done.stderr


def test_a_text_table_shows_control_characters_as_escapes():
    from streams.cli import shown

    assert shown("Rich\x1b[31Mred") == "Rich\\x1b[31Mred" and shown("a\tb\nc") == "a\\tb\\nc"
    assert shown("Zoë O'Brien") == "Zoë O'Brien"


def test_an_anonymous_event_s_record_is_looked_up_by_its_event_id_as_given(tmp_path):
    """`record=EVENT_ID` names an anonymous event's record where unmerge and erase take it; a lookup read the ID
    as a value to normalize (lower case) and found nobody; the API's lookup too."""
    from streams.api import Follower

    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"event_id": "CC814171698885", "occurred_at": "2025-01-01T10:00:00Z",
                                  "channel": "store", "event_type": "store_purchase",
                                  "attributes": {"first_name": "Ida", "last_name": "Quill", "postcode": "ZZ9 9ZZ"}})
                      + "\n")
    data = tmp_path / "data"
    run_cli("ingest", str(events), "--data-dir", str(data))
    found = json.loads(run_cli("lookup", "record=CC814171698885", "--data-dir", str(data)).stdout)
    assert [e["event_id"] for e in found["timeline"]] == ["CC814171698885"]
    follower = Follower(data, poll_interval=0.05)
    follower.start()
    try:
        assert follower.ready.wait(30) and follower.error is None
        key, why = follower.lookup_key("record", "CC814171698885")
        assert (key, why) == ("record:CC814171698885", None)
        assert follower.views.lookup_node(key)["profile_id"] == found["profile_id"]
    finally:
        follower.stop()
