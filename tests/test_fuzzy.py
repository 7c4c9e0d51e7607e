"""Probabilistic matching wired into the engine: links, the review queue, guards, replay, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from resolver.errors import ReviewError
from resolver.matching import FIELD_LEVELS, FIELDS, default_model
from schemas.decisions import LogEntry
from tests.cli_helpers import run_cli
from tests.resolver_helpers import Run, ev, one_card

JANE = {"first_name": "Jane", "last_name": "Doe", "date_of_birth": "1985-03-07", "postcode": "SW1A 1AA",
        "address": "12 High Street", "city": "London"}


def decisions_of(run: Run, event_id: str) -> list[dict]:
    return next(entry for entry in run.log if entry[-1].get("event_id") == event_id)


def test_caller_with_new_phone_name_and_birth_date_joins_the_known_customer():
    run = Run().feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        # the call centre: an unknown phone, a misspelt first name, the same birth date
        ev("call1", 5, channel="call_center", phone="+44 7700 900123",
           attrs={"first_name": "Jayne", "last_name": "Doe", "date_of_birth": "1985-03-07"}),
    ])
    assert run.profile_of("call1") == run.profile_of("web1")
    link = next(d for d in decisions_of(run, "call1") if d["type"] == "probable_link")
    assert link["rule"] == "probable_match"
    assert link["node"] == "phone:+447700900123" and link["other"] == "email:jane.doe@example.co.uk"
    assert link["weight"] >= link["link_threshold"]
    assert set(link["fields"]) == {"first_name", "last_name", "date_of_birth"}
    assert link["fields"]["first_name"]["level"] == "jw_92"
    assert sum(f["weight"] for f in link["fields"].values()) == pytest.approx(link["weight"], abs=1e-3)
    merge = next(d for d in decisions_of(run, "call1") if d["type"] == "profiles_merged")
    assert merge["rule"] == "probable_match" and merge["survivor_id"] == run.profile_of("web1")
    for seq, entry in enumerate(run.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})


def test_event_with_only_attributes_is_accepted_and_founds_or_joins_a_profile():
    run = Run().feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("store1", 3, channel="store", event_type="purchase",
           attrs={"first_name": "JANE", "last_name": "doe", "date_of_birth": "03/07/1985", "postcode": "sw1a1aa"}),
        ev("store2", 4, channel="store", event_type="purchase",
           attrs={"first_name": "Omar", "last_name": "Haddad", "postcode": "E1 6AN"}),
    ])
    assert run.profile_of("store1") == run.profile_of("web1")
    recorded = decisions_of(run, "store1")[-1]
    assert recorded["nodes"] == ["record:store1"]
    # a stranger with nothing to match against is a customer of their own, found again by later events
    assert run.profile_of("store2") not in (run.profile_of("web1"),)
    assert run.views.lookup_node("record:store2")["profile_id"] == run.profile_of("store2")
    # anonymous records are not shown as identifiers of the customer
    view = run.views.customer(run.profile_of("web1"))
    assert "record" not in view["identifiers"]


def test_middle_band_goes_to_review_and_a_verdict_is_an_event():
    run = Run().feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        # name and postcode only: likely, not certain (a relative may share both)
        ev("store1", 3, channel="store", event_type="purchase",
           attrs={"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"}),
    ])
    assert run.profile_of("store1") != run.profile_of("web1")
    queue = run.views.review_queue()
    assert len(queue) == 1
    item = queue[0]
    assert item["status"] == "pending"
    assert item["review_threshold"] <= item["weight"] < item["link_threshold"]
    assert {item["profile_id"], item["other_profile_id"]} == {run.profile_of("store1"), run.profile_of("web1")}

    decisions = run.resolver.decide_review(item["review_id"], True, "ana", "2025-02-01T10:00:00.000000Z", "same card")
    run.views.apply_entry(len(run.log), decisions)
    run.log.append(decisions)
    assert [d["type"] for d in decisions] == ["probable_link", "profiles_merged", "review_decided"]
    assert decisions[-1]["outcome"] == "linked" and decisions[-1]["reviewer"] == "ana"
    assert run.profile_of("store1") == run.profile_of("web1")
    assert run.views.review_queue() == []
    assert run.views.review_queue(include_decided=True)[0]["status"] == "linked"
    with pytest.raises(ReviewError, match="already decided"):
        run.resolver.decide_review(item["review_id"], False, "ana", "2025-02-01T10:01:00.000000Z")


def test_rejected_pair_is_neither_queued_again_nor_linked():
    run = Run().feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("store1", 3, channel="store", attrs={"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"}),
    ])
    review_id = run.views.review_queue()[0]["review_id"]
    decisions = run.resolver.decide_review(review_id, False, "ana", "2025-02-01T10:00:00.000000Z")
    run.views.apply_entry(len(run.log), decisions)
    run.log.append(decisions)
    assert decisions[-1]["outcome"] == "rejected"
    # the same anonymous customer comes back with a fuller record under the email that was rejected
    run.feed([ev("web2", 9, email="jane.doe@example.co.uk",
                 attrs={"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA", "city": "London",
                        "address": "12 High St"})])
    assert run.profile_of("store1") != run.profile_of("web1")
    assert run.views.review_queue() == []


@pytest.mark.parametrize("second", [
    # two different loyalty cards where one customer may hold one (``one_card``): same name, birth date, address
    {"loyalty_id": "LOY-2222", "attrs": JANE},
    # birth dates that clearly differ (not a swap, not a typo)
    {"email": "jd@example.org", "attrs": {**JANE, "date_of_birth": "1991-11-23"}},
])
def test_fuzzy_match_never_overrides_a_hard_conflict(second):
    first = ev("s1", 0, loyalty_id="LOY-1111", attrs=JANE) if "loyalty_id" in second else \
        ev("s1", 0, email="jane.doe@example.co.uk", attrs=JANE)
    ids = {k: v for k, v in second.items() if k != "attrs"}
    run = Run(one_card()).feed([first, ev("s2", 5, attrs=second["attrs"], **ids)])
    assert run.profile_of("s1") != run.profile_of("s2")
    assert not [d for entry in run.log for d in entry if d["type"] in ("probable_link", "possible_match")]


def test_without_the_birth_date_guard_a_different_date_is_only_evidence():
    events = [ev("s1", 0, email="jane.doe@example.co.uk", attrs=JANE),
              ev("s2", 5, email="jd@example.org", attrs={**JANE, "date_of_birth": "1991-11-23"})]
    run = Run(replace(ResolverConfig(), dob_conflict=False)).feed(events)
    assert run.profile_of("s1") == run.profile_of("s2")  # everything else agrees
    link = next(d for d in decisions_of(run, "s2") if d["type"] == "probable_link")
    assert link["fields"]["date_of_birth"]["level"] == "decade" and link["fields"]["date_of_birth"]["weight"] < 0


def test_birth_date_typo_or_swap_is_not_a_conflict():
    run = Run().feed([
        ev("a", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("b", 1, phone="+44 7700 900124", attrs={**JANE, "date_of_birth": "1985-07-03"}),  # day/month swapped
        ev("c", 2, phone="+44 7700 900125", attrs={**JANE, "date_of_birth": "1985-03-17"}),  # one digit
    ])
    assert run.profile_of("a") == run.profile_of("b") == run.profile_of("c")


def test_household_members_are_not_merged_on_surname_and_address():
    run = Run().feed([
        ev("a", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("b", 1, email="john.doe@example.co.uk",
           attrs={**JANE, "first_name": "John", "date_of_birth": "1983-10-30"}),
        # a twin: everything agrees but the first name
        ev("c", 2, email="amy.doe@example.co.uk", attrs={**JANE, "first_name": "Amy"}),
    ])
    assert len({run.profile_of(e) for e in "abc"}) == 3
    twin = [r for r in run.views.review_queue() if r["identifier"] == "email:amy.doe@example.co.uk"]
    assert len(twin) == 1 and twin[0]["weight"] >= twin[0]["link_threshold"]
    assert twin[0]["fields"]["first_name"]["level"] == "different"


def test_explain_shows_each_field_weight_of_a_fuzzy_link():
    run = Run().feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("call1", 5, phone="+44 7700 900123", attrs={"first_name": "Jane", "last_name": "Doe",
                                                        "date_of_birth": "1985-03-07"}),
    ])
    result = run.views.explain(run.profile_of("web1"))
    fuzzy = [link for link in result["links"] if link["rule"] == "probable_match"]
    assert len(fuzzy) == 1
    assert fuzzy[0]["fields"]["date_of_birth"] == {"level": "exact",
                                                   "weight": pytest.approx(default_model().level_weight(
                                                       "date_of_birth", "exact"), abs=1e-3)}
    text = "\n".join(result["summary"])
    assert "attribute evidence" in text and "date_of_birth exact +" in text


def test_replayed_state_equals_the_live_state():
    events = [
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("call1", 5, phone="+44 7700 900123", attrs={"first_name": "Jayne", "last_name": "Doe",
                                                        "date_of_birth": "1985-03-07"}),
        ev("store1", 6, attrs={"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"}),
        ev("store2", 7, attrs={"first_name": "Omar", "last_name": "Haddad", "postcode": "E1 6AN"}),
        ev("kiosk", 8, device_id="dev-1", email="x.y@example.co.uk", attrs={"first_name": "X", "last_name": "Y",
                                                                         "postcode": "E1 6AN"}),
    ]
    run = Run().feed(events)
    replayed = Resolver(ResolverConfig(), ResolverState())
    for entry in run.log:
        replayed.apply_all(json.loads(json.dumps(entry)))
    live, again = run.resolver.state, replayed.state
    for name in ("records", "blocks", "fuzzy", "reviews", "review_pairs", "node_profile", "node_keys"):
        assert getattr(again, name) == getattr(live, name), name
    assert {p: sorted(v.nodes) for p, v in again.profiles.items()} == \
        {p: sorted(v.nodes) for p, v in live.profiles.items()}


def test_block_size_is_capped():
    config = replace(ResolverConfig(), max_block_size=5)
    run = Run(config).feed([
        ev(f"s{i}", i, attrs={"first_name": f"Name{chr(97 + i)}x", "last_name": "Smith", "postcode": "E1 6AN"})
        for i in range(12)
    ])
    block = run.resolver.state.blocks["ln_pc:S530:E16AN"]
    assert len(block) == 5


def test_matching_can_be_switched_off():
    run = Run(replace(ResolverConfig(), fuzzy_matching=False)).feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("store1", 3, attrs={"first_name": "Jane", "last_name": "Doe", "date_of_birth": "1985-03-07",
                               "postcode": "SW1A 1AA"}),
    ])
    assert run.profile_of("store1") != run.profile_of("web1")
    assert decisions_of(run, "store1")[-1]["nodes"] == []
    assert run.resolver.state.blocks == {}


def test_identifier_type_record_is_reserved():
    run = Run().feed([ev("x", 0, record="abc", email="a.b@example.co.uk")])
    recorded = run.log[0][-1]
    assert recorded["nodes"] == ["email:a.b@example.co.uk"]
    assert "reserved" in recorded["ignored"][0]["reason"]


def test_a_type_name_holding_a_colon_is_not_read_as_another_types_value():
    # ("member_no:a" = "b" would be the node "member_no:a:b", which "member_no" = "a:b" also is)
    run = Run().feed([ev("ann", 0, member_no="a:b", email="ann.smith@example.co.uk"),
                      ev("bob", 1, **{"member_no:a": "b", "email": "bob.jones@example.co.uk"})])
    assert run.profile_of("ann") != run.profile_of("bob")
    recorded = decisions_of(run, "bob")[-1]
    assert recorded["nodes"] == ["email:bob.jones@example.co.uk"]
    assert "':'" in recorded["ignored"][0]["reason"]


# ---------------------------------------------------------------------------------------------- CLI
def _write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _event(event_id: str, minute: int, identifiers: dict, attributes: dict, channel: str = "web") -> dict:
    return {"event_id": event_id, "occurred_at": f"2025-01-01T00:{minute:02d}:00Z", "channel": channel,
            "event_type": "visit", "identifiers": identifiers, "attributes": attributes}


def test_review_cli_lists_accepts_and_replay_reproduces_it(tmp_path):
    data = str(tmp_path / "data")
    events = _write(tmp_path / "e.jsonl", [
        _event("web1", 0, {"email": "jane.doe@example.co.uk"}, JANE),
        _event("store1", 1, {}, {"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"}, "store"),
        _event("store2", 2, {}, {"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA",
                                 "address": "12 High St"}, "store"),
    ])
    run_cli("ingest", str(events), "--data-dir", data)
    listed = json.loads(run_cli("review", "--json", "--data-dir", data).stdout)
    assert listed and all(r["status"] == "pending" for r in listed)
    text = run_cli("review", "--data-dir", data).stdout
    assert listed[0]["review_id"] in text and "last_name exact" in text

    first = listed[0]["review_id"]
    out = run_cli("review", "accept", first, "--by", "ana", "--note", "checked", "--data-dir", data).stdout
    assert f"{first}: linked" in out
    again = run_cli("review", "accept", first, "--by", "bo", "--data-dir", data, check=False)
    assert again.returncode == 2 and "already decided" in again.stderr and again.stderr.count("\n") == 1
    missing = run_cli("review", "accept", "--data-dir", data, check=False)
    assert missing.returncode == 2 and "name the review" in missing.stderr

    lookup = json.loads(run_cli("lookup", "email=jane.doe@example.co.uk", "--data-dir", data).stdout)
    explain = run_cli("explain", lookup["profile_id"], "--data-dir", data).stdout
    assert "linked by a reviewer" in explain or "attribute evidence" in explain
    run_cli("replay", "--verify", "--data-dir", data)

    snap = str(tmp_path / "s.duckdb")
    run_cli("snapshot", "--out", snap, "--data-dir", data)
    con = duckdb.connect(snap, read_only=True)
    statuses = dict(con.execute("SELECT review_id, status FROM review_queue").fetchall())
    assert statuses[first] == "linked"
    rules = {r[0] for r in con.execute("SELECT rule FROM links").fetchall()}
    assert "review_accepted" in rules
    reviewer = con.execute("SELECT reviewer, note FROM review_queue WHERE review_id = ?", [first]).fetchone()
    assert reviewer == ("ana", "checked")
    # the quality figures tell a person's verdicts from reviews that went moot (they were one count)
    quality = dict(con.execute("SELECT figure, value FROM identity_quality").fetchall())
    assert quality["reviews decided by a person"] == 1  # (ana's)
    assert quality["reviews moot or linked by the model"] == sum(1 for s in statuses.values() if s != "pending") - 1


def test_train_writes_a_model_that_the_config_uses(tmp_path):
    people = [("Jane", "Doe", "1985-03-07", "SW1A 1AA"), ("Omar", "Haddad", "1979-12-01", "E1 6AN"),
              ("Li", "Wei", "1990-05-05", "M1 1AE"), ("Ana", "Silva", "1966-02-14", "B1 1AA")]
    rows = []
    for i in range(400):
        first, last, dob, pc = people[i % len(people)]
        rows.append(_event(f"e{i}", i % 60, {}, {"first_name": first if i % 7 else first + "a",
                                                  "last_name": f"{last}{i // 40}", "date_of_birth": dob,
                                                  "postcode": pc}, "store"))
    events = _write(tmp_path / "e.jsonl", rows)
    model_path = tmp_path / "conf" / "model.json"
    model_path.parent.mkdir()
    done = run_cli("train", str(events), "--out", str(model_path), "--pairs", "5000", "--version", "shop-1")
    out = done.stdout
    assert "idres: warning: only 4 candidate pairs: a rough estimate" in done.stderr  # (8 distinct records)
    assert "shop-1" in out and "date_of_birth" in out and "city, where the postcodes do not agree" in out
    saved = json.loads(model_path.read_text())
    assert saved["version"] == "shop-1" and saved["format"] == "idres-match-model"
    (tmp_path / "conf" / "rules.toml").write_text('match_model = "model.json"\n')
    data = str(tmp_path / "data")
    run_cli("ingest", str(events), "--data-dir", data, "--config", str(tmp_path / "conf" / "rules.toml"))
    log = b"".join(p.read_bytes() for p in sorted((Path(data) / "log").glob("*")))
    assert b'"model":"shop-1/' in log.replace(b" ", b"")
    bad = run_cli("train", str(tmp_path / "nope.jsonl"), "--out", str(model_path), check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_train_refuses_to_write_over_its_input_or_another_file_and_to_estimate_from_too_few_pairs(tmp_path):
    """`idres train F --out F` replaced the events with the model, and `--out rules.toml` the rules; on two
    records it wrote a model that weighed every agreement as proof (about +20 bits a field), under which two
    strangers sharing a name and a postcode were linked outright. (On a few pairs it warns: the test above.)"""
    two = [_event("t1", 1, {"email": "a@x.com"}, {"first_name": "Ann", "last_name": "Lee", "postcode": "AB1 2CD"}),
           _event("t2", 2, {"email": "b@x.com"}, {"first_name": "Bob", "last_name": "Zed", "postcode": "ZZ9 9ZZ"})]
    events = _write(tmp_path / "two.jsonl", two)
    before = events.read_bytes()
    rules = tmp_path / "rules.toml"
    rules.write_text("fuzzy_matching = true\n")
    for out, said in ((events, "is one of the inputs"), (rules, "is one of the inputs"),
                      (tmp_path / "notes.txt", "exists and is not a match model")):
        if out.name == "notes.txt":
            out.write_text("my notes\n")
        done = run_cli("train", str(events), "--out", str(out), "--config", str(rules), check=False)
        assert done.returncode == 2 and said in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert events.read_bytes() == before and rules.read_text() == "fuzzy_matching = true\n"
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
    model = tmp_path / "m.json"
    done = run_cli("train", str(events), "--out", str(model), check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith("idres: error: no candidate pairs among 2 distinct")
    assert "Nothing was written" in done.stderr and not model.exists()


def _crowd(n: int) -> list:
    """n customers called Smith, a fifth of them in London, each with their own first name and email."""
    return [ev(f"crowd{i}", 0, email=f"c{i}@x.org",
               attrs={"first_name": f"Name{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}",
                      "last_name": "Smith", "city": "London" if i % 5 == 0 else f"Town {i % 50}"})
            for i in range(n)]


@pytest.mark.parametrize("adjust", [True, False])
def test_a_rare_name_is_stronger_evidence_than_a_common_one(adjust):
    names_and_city = default_model().weight_of(("exact", "exact", "null", "null", "null", "exact"))[0]
    model = default_model().with_params(link_threshold=names_and_city + 0.5, review_threshold=names_and_city - 9)
    # (3,072 events fill whole epochs: the pairs below are scored with frequencies counted over all of them)
    run = Run(replace(ResolverConfig(), match_model=model, frequency_adjustments=adjust)).feed(_crowd(3072))
    run.feed([
        ev("q1", 1, email="zq@x.org", attrs={"first_name": "Zebedee", "last_name": "Quark", "city": "London"}),
        ev("q2", 2, email="zebedee@y.org", attrs={"first_name": "Zebedee", "last_name": "Quark", "city": "London"}),
        ev("s1", 3, email="js@x.org", attrs={"first_name": "John", "last_name": "Smith", "city": "London"}),
        ev("s2", 4, email="john@y.org", attrs={"first_name": "John", "last_name": "Smith", "city": "London"}),
    ])
    assert run.profile_of("s1") != run.profile_of("s2")
    smith = [d for d in decisions_of(run, "s2") if d["type"] in ("possible_match", "probable_link")]
    if not adjust:
        # the same evidence either way: both pairs wait for a person
        assert run.profile_of("q1") != run.profile_of("q2")
        assert [d["type"] for d in decisions_of(run, "q2")].count("possible_match") == 1
        assert [d["type"] for d in smith] == ["possible_match"]
        assert "frequency_adjustment" not in smith[0]["fields"]["last_name"]
        return
    assert run.profile_of("q1") == run.profile_of("q2")
    quark = next(d for d in decisions_of(run, "q2") if d["type"] == "probable_link")
    assert quark["fields"]["last_name"]["frequency_adjustment"] > 0
    assert quark["fields"]["city"]["frequency_adjustment"] < 0  # London is common
    assert sum(f["weight"] for f in quark["fields"].values()) == pytest.approx(quark["weight"], abs=1e-3)
    text = "\n".join(run.views.explain(run.profile_of("q1"))["summary"])
    assert "last_name exact" in text and "(rare value +" in text and "(common value -" in text
    assert [d["type"] for d in smith] == ["possible_match"]  # one more John Smith in London: a person decides
    assert smith[0]["fields"]["last_name"]["frequency_adjustment"] < 0
    assert smith[0]["weight"] < quark["weight"]
    # replay rebuilds the counts: the same log decides the same again
    replayed = Resolver(run.resolver.config, ResolverState())
    for entry in run.log:
        replayed.apply_all(entry)
    assert replayed.state.value_counts == run.resolver.state.value_counts


def test_a_shared_identifier_not_the_name_vouches_for_a_mistyped_date_of_birth():
    """Two records of Jane Doe, dates of birth three years apart: on attributes alone they are namesakes
    (no link, no review); the same two on one email are one person with a mistyped date."""
    apart = Run().feed([ev("s1", 0, email="jane.doe@example.co.uk", attrs=JANE),
                        ev("s2", 5, email="jd@example.org", attrs={**JANE, "date_of_birth": "1988-11-02"})])
    assert apart.profile_of("s1") != apart.profile_of("s2")
    assert not [d for entry in apart.log for d in entry if d["type"] in ("probable_link", "possible_match")]
    together = Run().feed([ev("s1", 0, email="jane.doe@example.co.uk", attrs=JANE),
                           ev("s2", 5, email="jane.doe@example.co.uk", phone="+44 20 7946 0018",
                              attrs={**JANE, "date_of_birth": "1988-11-02"})])
    assert together.profile_of("s1") == together.profile_of("s2")
    assert together.views.lookup_node("email:jane.doe@example.co.uk")["status"] == "found"


_LEVELS_OF = {f: [*FIELD_LEVELS[f], "null"] for f in FIELDS}


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_links_evidence_is_each_fields_weight_rounded_and_equal_evidence_is_one_object(data):
    """``fuzzy.evidence``: each field compared (not null) with its level and weight (with its frequency
    adjustment, when it has one), rounded to 4 places, whatever evidence came before; and evidence equal to
    an earlier link's shares its objects (a link's evidence is kept as long as the views keep the link)."""
    from types import SimpleNamespace

    import orjson

    from resolver import fuzzy
    from resolver.evidence import shared as shared_evidence

    model = default_model()
    ctx = SimpleNamespace(model=model, model_id="a-model")
    levels = tuple(data.draw(st.sampled_from(_LEVELS_OF[f])) for f in FIELDS)
    adjustable = [f for f, lv in zip(FIELDS, levels) if lv != "null"]
    small = st.floats(-1e-4, 1e-4)  # (some round to -0.0: written so, even after a 0.0 was)
    deltas = data.draw(st.dictionaries(st.sampled_from(adjustable), st.one_of(small, st.floats(-20, 20)))
                       if adjustable else st.just({})) or None
    _, parts = model.weight_of(levels)
    expected = {}
    for f, lv in zip(FIELDS, levels):
        if lv == "null":
            continue
        if deltas and f in deltas:
            expected[f] = {"level": lv, "weight": round(parts[f] + deltas[f], 4),
                           "frequency_adjustment": round(deltas[f], 4)}
        else:
            expected[f] = {"level": lv, "weight": round(parts[f], 4)}
    first = fuzzy.evidence(ctx, levels, 0.0, deltas)
    again = fuzzy.evidence(ctx, levels, 0.0, dict(deltas) if deltas else None)
    assert orjson.dumps(first["fields"]) == orjson.dumps(expected)  # (the same text: -0.0 stays -0.0)
    assert again["fields"] is first["fields"] and again == first
    # read back from the log (the views share what they read as the resolver shares what it makes)
    read = orjson.loads(orjson.dumps(first["fields"]))
    assert shared_evidence(read) is first["fields"]
    other = {**read, "x": {"level": "exact", "weight": 1}}  # (a weight written as a whole number: kept as it is)
    assert shared_evidence(other) is other


def test_a_weight_of_minus_zero_is_written_so_after_a_weight_of_zero():
    from types import SimpleNamespace

    import orjson

    from resolver import fuzzy

    model = default_model()
    ctx = SimpleNamespace(model=model, model_id="a-model")
    levels = tuple("null" if f != "first_name" else "exact" for f in FIELDS)
    _, parts = model.weight_of(levels)
    plus = fuzzy.evidence(ctx, levels, 0.0, {"first_name": -parts["first_name"]})
    minus = fuzzy.evidence(ctx, levels, 0.0, {"first_name": -parts["first_name"] - 1e-9})
    assert orjson.dumps(plus["fields"]) == b'{"first_name":{"level":"exact","weight":0.0,"frequency_adjustment":' + \
        orjson.dumps(round(-parts["first_name"], 4)) + b"}}"
    assert b'"weight":-0.0' in orjson.dumps(minus["fields"])
