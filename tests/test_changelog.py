"""The identity changelog: applied in order to an empty table it gives exactly the snapshot's identifier ->
profile mapping, from the CLI (once, resumed, followed) and from the API (paged, long-polled)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from projections.changelog import TYPES, Table, changes_of
from streams.embedded import EmbeddedEngine
from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import ROOT, run_cli
from tests.test_api import start_server


def snapshot_mapping(data: str, tmp: Path) -> dict[str, str]:
    snap = tmp / f"snap-{time.monotonic_ns()}.duckdb"
    run_cli("snapshot", "--data-dir", data, "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        rows = con.execute("SELECT id_type || ':' || id_value, profile_id FROM identifiers "
                           "WHERE status = 'linked' AND profile_id IS NOT NULL").fetchall()
    return dict(rows)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 generated people (households, shared devices and landlines, placeholders: splits and shared
    identifiers happen), then an unmerge and a later event that the ban keeps apart."""
    tmp = tmp_path_factory.mktemp("changes")
    events = tmp / "events.jsonl"
    write_dataset(events, tmp / "truth.csv", SyntheticConfig(people=300, seed=5))
    data = str(tmp / "data")
    run_cli("ingest", str(events), "--data-dir", data)
    with EmbeddedEngine(Path(data)) as engine:
        views = engine.views
        pid, prof = next((p, v) for p, v in sorted(views.profiles.items()) if len(v.nodes) >= 3)
        key = sorted(views.node_keys[n] for n in prof.nodes)[0]
        engine.unmerge(pid, [tuple(key.split(":", 1))], "ana", "test")
    return data, tmp


def test_the_changelog_applied_to_an_empty_table_gives_the_snapshot(data):
    data_dir, tmp = data
    changes = lines(run_cli("changes", "--data-dir", data_dir).stdout)
    kinds = {c["type"] for c in changes}
    assert {"profile_created", "identifiers_added", "profiles_merged", "identifier_shared", "profile_split",
            "unmerged"} <= kinds <= set(TYPES)
    assert [(c["seq"], c["n"]) for c in changes] == sorted((c["seq"], c["n"]) for c in changes)
    table = Table()
    table.apply(changes)
    assert table.owner == snapshot_mapping(data_dir, tmp)
    # resumed from a position: the rest, and applied again from the start, repeats are skipped
    middle = changes[len(changes) // 2]["seq"]
    rest = lines(run_cli("changes", "--from", str(middle), "--data-dir", data_dir).stdout)
    assert rest == [c for c in changes if c["seq"] >= middle]
    again = Table()
    again.apply([c for c in changes if c["seq"] < middle])
    again.apply(changes)
    assert again.owner == table.owner
    # at the log's end: nothing yet; past it, a position of another log, said as the API's 409 says it
    from streams.log import DecisionLog

    with DecisionLog(Path(data_dir), writer=False) as log:
        end = len(log)
    assert run_cli("changes", "--from", str(end), "--data-dir", data_dir).stdout == ""
    past = run_cli("changes", "--from", str(end + 1), "--data-dir", data_dir, check=False)
    assert past.returncode == 2 and past.stdout == ""
    assert past.stderr.startswith(f"idres: error: --from {end + 1} is beyond this decision log's end ({end} entries")


def test_the_changes_of_an_entry_do_not_depend_on_anything_but_the_entry():
    entry = [{"type": "profile_created", "profile_id": "p_1", "created_at": "t", "event_id": "e", "nodes": ["email:a"]},
             {"type": "interaction_recorded", "event_id": "e", "occurred_at": "2025-01-01T00:00:00.000000Z",
              "channel": "web", "event_type": "visit", "nodes": ["email:a"]}]
    assert changes_of(7, entry) == [{"v": 1, "seq": 7, "n": 0, "type": "profile_created", "profile_id": "p_1",
                                     "at": "2025-01-01T00:00:00.000000Z", "identifiers": ["email:a"]}]


def test_follow_mode_prints_changes_as_they_are_logged(data, tmp_path):
    data_dir, _ = data
    end = max(c["seq"] for c in lines(run_cli("changes", "--data-dir", data_dir).stdout)) + 1
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "changes", "--follow", "--from", str(end),
                             "--data-dir", data_dir], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        more = tmp_path / "more.jsonl"
        more.write_text(json.dumps({"event_id": "late-1", "occurred_at": "2030-01-01T00:00:00Z", "channel": "web",
                                    "event_type": "signup", "identifiers": {"email": "new.person@mailbox.org"}}) + "\n")
        run_cli("ingest", str(more), "--data-dir", data_dir)
        first = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)
    assert first["type"] == "profile_created" and first["identifiers"] == ["email:new.person@mailbox.org"]
    assert first["seq"] >= end


def test_the_api_pages_and_long_polls_the_changelog(data, tmp_path):
    data_dir, tmp = data
    server = start_server(Path(data_dir))
    try:
        with httpx.Client(base_url=server.base, timeout=30) as client:
            table, start = Table(), 0
            while True:
                page = client.get("/v1/changes", params={"from": start, "limit": 500}).json()
                if not page["changes"] and page["next"] == start:
                    break
                table.apply(page["changes"])
                start = page["next"]
            assert table.owner == snapshot_mapping(data_dir, tmp)
            # a long poll at the end answers when a change is logged
            more = tmp_path / "more.jsonl"
            more.write_text(json.dumps({"event_id": "late-2", "occurred_at": "2030-01-02T00:00:00Z", "channel": "web",
                                        "event_type": "signup", "identifiers": {"email": "other.new@mailbox.org"}})
                            + "\n")
            ingest = subprocess.Popen([sys.executable, "-m", "streams.cli", "ingest", str(more), "--data-dir", data_dir],
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                started = time.monotonic()
                page = client.get("/v1/changes", params={"from": start, "wait": 20}).json()
            finally:
                ingest.wait(60)
            assert time.monotonic() - started < 20
            assert [c["identifiers"] for c in page["changes"] if c["type"] == "profile_created"] == \
                [["email:other.new@mailbox.org"]]
            empty = client.get("/v1/changes", params={"from": page["next"], "wait": 0.3}).json()
            assert empty == {"changes": [], "next": page["next"]}
            # a position beyond the log's end (another log's: a data directory rebuilt since) is said, not echoed
            ahead = client.get("/v1/changes", params={"from": page["next"] + 8})
            assert ahead.status_code == 409 and ahead.json()["error"] == "ahead_of_log"
            assert f"beyond this decision log's end ({page['next']})" in ahead.json()["detail"]
    finally:
        server.stop()
