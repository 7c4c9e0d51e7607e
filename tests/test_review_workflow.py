"""The review queue as a person uses it from the command line: pages, one review side by side, verdicts in
bulk by weight, a review whose side was found shared shown as such."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import run_cli
from tests.test_api_decisions import EVENTS


@pytest.fixture
def data(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    data = str(tmp_path / "data")
    run_cli("ingest", str(events), "--data-dir", data)
    return data


def test_the_queue_is_listed_page_by_page(data):
    everything = json.loads(run_cli("review", "--json", "--data-dir", data).stdout)
    assert len(everything) >= 5
    first = run_cli("review", "--limit", "2", "--data-dir", data).stdout
    second = run_cli("review", "--limit", "2", "--offset", "2", "--data-dir", data).stdout
    ids = [r["review_id"] for r in everything]
    assert [i for i in ids if i in first] == ids[:2] and [i for i in ids if i in second] == ids[2:4]
    assert f"Showing 1-2 of {len(ids)}; next page: --offset 2." in first
    page = json.loads(run_cli("review", "--json", "--limit", "2", "--offset", "4", "--data-dir", data).stdout)
    assert [r["review_id"] for r in page] == ids[4:6]
    bad = run_cli("review", "--offset", "-1", "--data-dir", data, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("idres: error:")


def test_one_review_side_by_side(data):
    first = json.loads(run_cli("review", "--json", "--data-dir", data).stdout)[0]
    text = run_cli("review", "show", first["review_id"], "--data-dir", data).stdout
    row = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:] if line.strip()}
    assert row["identifier"] == [first["identifier"], first["other_identifier"]]
    assert row["last_name"][:2] == ["Zebedee", "Zebedee"] and row["date_of_birth"] == ["1985-03-07"]
    assert "address" in row and "12" in row["address"]
    detail = json.loads(run_cli("review", "show", first["review_id"], "--json", "--data-dir", data).stdout)
    assert detail["sides"][0]["record"]["last_name"] == "Zebedee"
    missing = run_cli("review", "show", "r_nothing", "--data-dir", data, check=False)
    assert missing.returncode == 2 and "no review" in missing.stderr


def test_verdicts_in_bulk_by_weight_name_the_reviewer(data):
    rows = json.loads(run_cli("review", "--json", "--data-dir", data).stdout)
    weights = sorted({r["weight"] for r in rows})
    # the listing takes the range a verdict in bulk would (it listed every pending review, whatever the range)
    above = json.loads(run_cli("review", "--json", "--min-weight", str(weights[-1]), "--data-dir", data).stdout)
    assert above and {r["review_id"] for r in above} == {r["review_id"] for r in rows if r["weight"] >= weights[-1]}
    assert json.loads(run_cli("review", "--json", "--min-weight", str(weights[-1] + 1), "--data-dir", data).stdout) == []
    out = run_cli("review", "reject", "--min-weight", str(weights[0]), "--by", "ana", "--note", "not her",
                  "--data-dir", data).stdout
    assert out.count(": rejected") == len(rows)
    decided = json.loads(run_cli("review", "--all", "--json", "--data-dir", data).stdout)
    assert {(r["status"], r["reviewer"], r["note"]) for r in decided} == {("rejected", "ana", "not her")}
    none = run_cli("review", "accept", "--min-weight", "0", "--data-dir", data).stdout
    assert "No pending review" in none
    # a range with no start, or upside down, said nothing useful ("No pending review ...", or a usage line)
    alone = run_cli("review", "accept", "--max-weight", "10", "--by", "ana", "--data-dir", data, check=False)
    assert alone.returncode == 2 and "give --min-weight W too" in alone.stderr and alone.stderr.count("\n") == 1
    upside = run_cli("review", "accept", "--min-weight", "10", "--max-weight", "5", "--by", "ana", "--data-dir", data,
                     check=False)
    assert upside.returncode == 2 and "is below --min-weight 10" in upside.stderr


def test_a_review_whose_side_was_found_shared_shows_it(tmp_path):
    """A possible match between a caller and Jane, then the caller's phone used by four differently named
    people: the phone is shared and in no profile; the listing says so instead of a missing profile."""
    lines = [EVENTS[0], EVENTS[1]] + [
        {"event_id": f"other-{i}", "occurred_at": f"2025-06-1{i}T00:00:00Z", "channel": "call_center",
         "event_type": "call", "identifiers": {"phone": "+44 7700 900123"},
         "attributes": {"first_name": name, "last_name": "Smith", "date_of_birth": f"19{60 + i}-01-0{i + 1}"}}
        for i, name in enumerate(["Omar", "Lena", "Piotr", "Ines"])]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    data = str(tmp_path / "data")
    run_cli("ingest", str(events), "--data-dir", data)
    rows = json.loads(run_cli("review", "--all", "--json", "--data-dir", data).stdout)
    caller = next(r for r in rows if r["identifier"] == "phone:+447700900123")
    assert caller["profile_id"] is None
    text = run_cli("review", "--all", "--data-dir", data).stdout
    assert "None" not in text and "[shared: in no profile]" in text


def test_a_review_reads_back_the_decision_it_was_made_from_and_is_kept_compact(tmp_path):
    """The review queue keeps each possible match as its two identifiers and the rest of the decision as compact
    JSON: it reads back as the log holds it, field for field (floats to the bit), and the checkpoint's pickler
    remembers a few objects per review instead of one per field and nested value (as dicts, 135,000 reviews of the
    CRM corpus at 125,000 people were 1.5 million of the 3.8 million objects the views' pickler remembered)."""
    import pickle

    from projections.customer import review_match
    from streams.embedded import EmbeddedEngine

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    for fold_views in ("live", "after"):
        with EmbeddedEngine(tmp_path / fold_views, fold_views=fold_views) as engine:
            engine.ingest_file(events)
            logged = {d["review_id"]: d for _, entry in engine.log.read() for d in entry if d["type"] == "possible_match"}
            reviews = engine.views.reviews
            assert len(reviews) >= 5 and set(reviews) == set(logged)
            for review_id, review in reviews.items():
                assert review_match(review_id, review) == logged[review_id]
                assert review["node"] is engine.views.node_keys[engine.views.node_index[review["node"]]]

            class Null:
                def write(self, data):
                    pass

            pickler = pickle.Pickler(Null(), pickle.HIGHEST_PROTOCOL)
            pickler.dump(engine.views.node_keys)  # (as in the views' checkpoint: the identifiers' strings first)
            before = len(pickler.memo.copy())
            pickler.dump(reviews)
            remembered = len(pickler.memo.copy()) - before - len(reviews)  # (beside the review IDs)
            assert remembered <= 2 * len(reviews) + 8  # (its dict and its match's text; the key names once)
