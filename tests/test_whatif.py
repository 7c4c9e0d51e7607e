"""What-if replay: the log's inputs decided again under other rules into a scratch directory; the report
says what changes, and the live data is not touched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from streams.embedded import EmbeddedEngine
from streams.synthetic import SyntheticConfig, write_dataset
from streams.whatif import compare
from tests.cli_helpers import run_cli
from tests.resolver_helpers import Run, ev


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whatif")
    events, truth = tmp / "events.jsonl", tmp / "truth.csv"
    write_dataset(events, truth, SyntheticConfig(people=250, seed=11))
    data = tmp / "data"
    run_cli("ingest", str(events), "--data-dir", str(data))
    # a person's decisions among the events: a review rejected, an unmerge
    with EmbeddedEngine(data) as engine:
        review = engine.views.review_queue()[0]["review_id"]
        engine.review(review, False, "ana")
        pid, prof = next((p, v) for p, v in sorted(engine.views.profiles.items()) if len(v.nodes) >= 3)
        key = sorted(engine.views.node_keys[n] for n in prof.nodes if not engine.views.node_keys[n].startswith("record:"))[0]
        engine.unmerge(pid, [tuple(key.split(":", 1))], "ana")
    return tmp, data, truth


def test_the_same_rules_change_nothing_and_the_live_data_is_untouched(live, tmp_path):
    tmp, data, truth = live
    before = tree_digest(data)
    out = json.loads(run_cli("whatif", "--data-dir", str(data), "--scratch", str(tmp_path / "s"), "--truth",
                             str(truth), "--json").stdout)
    assert (out["links_added"], out["links_removed"], out["profiles_split"], out["profiles_joined"]) == (0, 0, 0, 0)
    assert out["reviews"]["added"] == out["reviews"]["removed"] == 0 and out["newly_shared_count"] == 0
    assert out["replay"]["commands_skipped"] == 0
    assert out["accuracy"]["live"] == out["accuracy"]["new"]
    assert tree_digest(data) == before


def test_stricter_rules_are_reported_as_links_removed_and_profiles_split(live, tmp_path):
    tmp, data, truth = live
    rules = tmp_path / "strict.toml"
    rules.write_text("fuzzy_matching = false\n")
    before = tree_digest(data)
    out = json.loads(run_cli("whatif", "--config", str(rules), "--data-dir", str(data), "--scratch",
                             str(tmp_path / "s"), "--truth", str(truth), "--json").stdout)
    assert out["links_removed"] > 0 and out["profiles_split"] > 0 and out["links_added"] == 0
    assert out["reviews"]["new"] == 0 and out["reviews"]["removed"] == out["reviews"]["live"]
    assert out["accuracy"]["new"]["recall"] < out["accuracy"]["live"]["recall"]
    assert out["replay"]["commands_skipped"] >= 1  # (the rejected review is never queued without the matcher)
    sample = out["sample"][0]
    assert sample["change"] == "split" and len(sample["new"]) > 1 and sample["live"][0]["summary"]
    # the scratch directory is a data directory of its own, and the live one did not change
    scratch_pid = sample["new"][0]["profile_id"]
    assert run_cli("explain", scratch_pid, "--data-dir", str(tmp_path / "s")).returncode == 0
    assert tree_digest(data) == before
    text = run_cli("whatif", "--config", str(rules), "--data-dir", str(data), "--scratch", str(tmp_path / "s")).stdout
    assert "profiles split" in text and f"-{out['links_removed']:,} unlinked" in text


def test_a_scratch_directory_that_is_not_one_is_refused(live, tmp_path):
    _, data, _ = live
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    proc = run_cli("whatif", "--data-dir", str(data), "--scratch", str(precious), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("idres: error:") and "not a what-if scratch" in proc.stderr
    assert (precious / "keep.txt").read_text() == "mine"


def test_a_negative_sample_is_refused_not_read_as_a_slice_from_the_end(live, tmp_path):
    _, data, _ = live
    proc = run_cli("whatif", "--data-dir", str(data), "--scratch", str(tmp_path / "s"), "--sample=-1", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("idres: error: --sample -1: give how many")
    assert not (tmp_path / "s").exists()


def test_compare_counts_pairs_from_the_table_of_profiles():
    """Hand-built: live {1,2,3} {4}; new {1,2} {3,4}: one pair kept (1-2), 1-3 and 2-3 removed, 3-4 added."""
    live = Run().feed([ev("1", 0, email="a@mailbox.org"), ev("2", 1, email="a@mailbox.org"),
                       ev("3", 2, email="a@mailbox.org", loyalty_id="C1"), ev("4", 3, email="d@mailbox.org")])
    new = Run().feed([ev("1", 0, email="a@mailbox.org"), ev("2", 1, email="a@mailbox.org"),
                      ev("3", 2, email="d@mailbox.org", loyalty_id="C1"), ev("4", 3, email="d@mailbox.org")])
    out = compare(live.views, new.views)
    assert (out["links_added"], out["links_removed"], out["profiles_split"], out["profiles_joined"]) == (1, 2, 1, 1)


def test_a_scratch_directory_holding_the_data_directory_is_refused(tmp_path):
    data = tmp_path / "outer" / "data"
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({"event_id": "e1", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                                  "event_type": "visit", "identifiers": {"email": "a.b@mailbox.org"}}) + "\n")
    run_cli("ingest", str(events), "--data-dir", str(data))
    (tmp_path / "outer" / ".idres-whatif").write_text("")  # (as if an earlier what-if had been written there)
    for scratch in (tmp_path / "outer", data / "whatif"):
        proc = run_cli("whatif", "--data-dir", str(data), "--scratch", str(scratch), check=False)
        assert proc.returncode == 2 and "outside the data directory" in proc.stderr
    assert (data / "log").is_dir()
