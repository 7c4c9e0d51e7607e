"""Unmerge that sticks: a person's unmerge parts identifiers from a profile, and the connection ban it leaves
(like a rejected review's) holds for every later event, probable link, accepted review and merge, follows
the identifiers rather than the profile IDs, and replays identically; until it is lifted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from resolver.errors import CommandError
from tests.cli_helpers import run_cli
from tests.resolver_helpers import Run, ev

AT = "2025-02-01T10:00:00.000000Z"
JANE = {"first_name": "Jane", "last_name": "Doe", "date_of_birth": "1985-03-07", "postcode": "SW1A 1AA",
        "address": "12 High Street", "city": "London"}
EMAIL, PHONE, CARD = "email:jane.doe@example.co.uk", "phone:+447700900123", "loyalty_id:L100"


def command(run: Run, decisions: list[dict]) -> list[dict]:
    run.views.apply_entry(len(run.log), decisions)
    run.log.append(decisions)
    return decisions


def profile_of_key(run: Run, key: str) -> str:
    return run.views.lookup_node(key)["profile_id"]


def replayed(run: Run) -> Resolver:
    again = Resolver(ResolverConfig(), ResolverState())
    for entry in run.log:
        again.apply_all(entry)
    return again


def reviewed() -> tuple[Run, dict]:
    """Jane's email, and a caller with a name and postcode like hers (likely, not certain): one review."""
    run = Run().feed([
        ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
        ev("call1", 3, channel="call_center", phone="+44 7700 900123",
           attrs={"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"}),
    ])
    [item] = run.views.review_queue()
    assert {item["identifier"], item["other_identifier"]} == {EMAIL, PHONE}
    return run, item


def test_a_rejected_review_pair_is_not_merged_by_a_later_event_carrying_both_identifiers():
    run, item = reviewed()
    command(run, run.resolver.decide_review(item["review_id"], False, "ana", AT, "different people"))
    # one event carrying both identifiers: a person said they are different customers, so it does not join them
    run.feed([ev("app1", 9, channel="app", email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    assert profile_of_key(run, EMAIL) != profile_of_key(run, PHONE)
    refused = [d for d in run.log[-1] if d["type"] == "link_refused"]
    assert len(refused) == 1 and item["review_id"] in refused[0]["reason"] and "ana" in refused[0]["reason"]
    # nor do two events that go through an identifier new to both (the ban follows the identifiers)
    run.feed([ev("store1", 12, channel="store", email="jane.doe@example.co.uk", loyalty_id="L-100"),
              ev("store2", 15, channel="store", phone="+44 7700 900123", loyalty_id="L-100")])
    assert profile_of_key(run, EMAIL) != profile_of_key(run, PHONE)
    assert replayed(run).state.node_profile == run.resolver.state.node_profile


def joined(run: Run) -> str:
    """Jane's email, phone and card in one profile, through two events."""
    run.feed([ev("web1", 0, email="jane.doe@example.co.uk", phone="+44 7700 900123", attrs=JANE),
              ev("store1", 5, channel="store", email="jane.doe@example.co.uk", loyalty_id="L-100")])
    pid = profile_of_key(run, EMAIL)
    assert profile_of_key(run, PHONE) == pid == profile_of_key(run, CARD)
    return pid


def test_unmerge_parts_the_identifiers_and_later_events_merges_and_matches_keep_them_apart():
    run = Run()
    pid = joined(run)
    out = command(run, run.resolver.unmerge(pid, [("phone", "+44 7700 900123")], "ana", AT, "her son's phone"))
    split = next(d for d in out if d["type"] == "profile_split")
    ban = next(d for d in out if d["type"] == "connection_banned")
    assert ban["nodes"] == [PHONE] and ban["others"] == sorted([EMAIL, CARD]) and ban["by"] == "ana"
    assert sorted(sorted(p["nodes"]) for p in split["parts"]) == [sorted([CARD, EMAIL]), [PHONE]]
    assert profile_of_key(run, EMAIL) == pid and profile_of_key(run, PHONE) != pid
    assert run.views.explain(pid)["bans"][0]["ban_id"] == ban["ban_id"]

    # the same evidence again: not joined
    run.feed([ev("web2", 20, email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    assert profile_of_key(run, PHONE) != profile_of_key(run, EMAIL)
    # the phone's side grows (a new email) and that email then meets the card: still apart
    run.feed([ev("app1", 25, channel="app", phone="+44 7700 900123", email="sam.doe@example.co.uk"),
              ev("store2", 30, channel="store", email="sam.doe@example.co.uk", loyalty_id="L-100")])
    assert profile_of_key(run, "email:sam.doe@example.co.uk") == profile_of_key(run, PHONE) != profile_of_key(run, CARD)
    # attributes that match Jane's record exactly on the phone's side: no probable link across the ban
    run.feed([ev("call1", 40, channel="call_center", phone="+44 7700 900123", attrs=JANE)])
    assert profile_of_key(run, PHONE) != profile_of_key(run, EMAIL)
    assert not [d for d in run.log[-1] if d["type"] == "probable_link"]
    assert replayed(run).state.node_profile == run.resolver.state.node_profile


def test_without_the_ban_the_same_attributes_would_have_linked():
    """The control for the test above: the probable link it expects not to see is one the matcher makes."""
    run = Run().feed([ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
                      ev("call1", 40, channel="call_center", phone="+44 7700 900123", attrs=JANE)])
    assert profile_of_key(run, PHONE) == profile_of_key(run, EMAIL)


def test_an_unmerged_profile_gets_back_the_id_it_had_before_it_was_absorbed():
    run = Run().feed([ev("web1", 0, email="jane.doe@example.co.uk"),
                      ev("call1", 5, channel="call_center", phone="+44 7700 900123")])
    phone_pid = profile_of_key(run, PHONE)
    run.feed([ev("app1", 9, channel="app", email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    pid = profile_of_key(run, EMAIL)
    assert profile_of_key(run, PHONE) == pid != phone_pid and run.views.resolve(phone_pid) == pid
    command(run, run.resolver.unmerge(pid, [("phone", "+447700900123")], "ana", AT))
    assert profile_of_key(run, PHONE) == phone_pid and run.views.resolve(phone_pid) == phone_pid
    assert profile_of_key(run, EMAIL) == pid


def test_an_accepted_review_is_undone_by_unmerging_and_not_matched_again():
    run, item = reviewed()
    command(run, run.resolver.decide_review(item["review_id"], True, "ana", AT))
    pid = profile_of_key(run, EMAIL)
    assert profile_of_key(run, PHONE) == pid
    command(run, run.resolver.unmerge(pid, [("phone", "+447700900123")], "bo", AT, "accepted by mistake"))
    assert profile_of_key(run, PHONE) != profile_of_key(run, EMAIL)
    run.feed([ev("call2", 30, channel="call_center", phone="+44 7700 900123", attrs=JANE)])
    assert profile_of_key(run, PHONE) != profile_of_key(run, EMAIL)


def test_a_lifted_ban_lets_later_evidence_join_the_sides_again():
    run = Run()
    pid = joined(run)
    out = command(run, run.resolver.unmerge(pid, [("phone", "+447700900123")], "ana", AT))
    ban = out[-1]["ban_id"] if out[-1]["type"] == "connection_banned" else out[-2]["ban_id"]
    lifted = command(run, run.resolver.lift_ban(ban, "bo", AT, "checked again: one person"))
    assert [d["type"] for d in lifted] == ["ban_lifted"]
    assert profile_of_key(run, PHONE) != profile_of_key(run, EMAIL)  # (a lift joins nothing by itself)
    assert run.views.bans_of() == [] and run.views.bans_of(lifted=True)[0]["lifted"]["by"] == "bo"
    run.feed([ev("web2", 20, email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    assert profile_of_key(run, PHONE) == profile_of_key(run, EMAIL)
    with pytest.raises(CommandError, match="no connection ban"):
        run.resolver.lift_ban(ban, "bo", AT)


def test_explain_names_a_lifted_ban_that_let_its_sides_be_one_customer_again():
    """After a lift and an event joining the sides, explain listed no ban, and still said the two were not linked
    because a person said they were different customers: nothing told why they were one profile now."""
    run = Run()
    pid = joined(run)
    out = command(run, run.resolver.unmerge(pid, [("phone", "+447700900123")], "ana", AT, "son's phone"))
    ban = next(d for d in out if d["type"] == "connection_banned")["ban_id"]
    command(run, run.resolver.lift_ban(ban, "bo", "2025-02-02T10:00:00.000000Z", "checked again: one person"))
    run.feed([ev("web2", 20, email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    now = profile_of_key(run, PHONE)
    assert now == profile_of_key(run, EMAIL)
    explained = run.views.explain(now)
    assert [(b["ban_id"], b["lifted"]["by"]) for b in explained["bans"]] == [(ban, "bo")]
    line = next(t for t in explained["summary"] if t.startswith(f"Kept apart (unmerge, {ban}"))
    assert line.endswith("until lifted by bo at 2025-02-02T10:00:00.000000Z (checked again: one person).")
    assert "idres unmerge --lift" not in line


def test_an_unmerge_that_names_what_is_not_there_changes_nothing():
    run = Run()
    pid = joined(run)
    before = list(run.resolver.state.node_profile)
    with pytest.raises(CommandError, match="no profile"):
        run.resolver.unmerge("p_nobody", [("phone", "+447700900123")], "ana", AT)
    with pytest.raises(CommandError, match="is not an identifier of profile"):
        run.resolver.unmerge(pid, [("email", "ann.other@mailbox.org")], "ana", AT)
    with pytest.raises(CommandError, match="some but not all"):
        run.resolver.unmerge(pid, [("phone", "+447700900123"), ("email", "jane.doe@example.co.uk"),
                                   ("loyalty_id", "L-100")], "ana", AT)
    with pytest.raises(CommandError, match="phone="):
        run.resolver.unmerge(pid, [("phone", "not a number")], "ana", AT)
    assert run.resolver.state.node_profile == before and run.resolver.state.bans == {}


# ------------------------------------------------------------------------------------------- property
EMAILS = [f"email=mail{i}@mailbox.org" for i in range(4)]
PHONES = [f"phone=+4477009001{i:02d}" for i in range(4)]
CARDS = [f"loyalty_id=L-{i}" for i in range(3)]
POOL = EMAILS + PHONES + CARDS
events_st = st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True), min_size=1, max_size=12)


def _events(groups: list[list[str]], start: int, prefix: str) -> list:
    out = []
    for i, group in enumerate(groups):
        ids = dict(spec.split("=", 1) for spec in group)
        out.append(ev(f"{prefix}{i}", start + i, **ids))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=events_st, after=events_st, pick=st.integers(0, 10_000), cut=st.integers(1, 10_000))
def test_for_any_events_no_profile_ever_holds_both_sides_of_a_ban_and_replay_agrees(before, after, pick, cut):
    run = Run().feed(_events(before, 0, "a"))
    st_ = run.resolver.state
    profiles = sorted((p for p in st_.profiles.values() if len(p.nodes) > 1), key=lambda p: p.id)
    if not profiles:
        return
    prof = profiles[pick % len(profiles)]
    keys = sorted(st_.node_keys[n] for n in prof.nodes)
    named = keys[:1 + cut % (len(keys) - 1)]
    command(run, run.resolver.unmerge(prof.id, [tuple(k.split(":", 1)) for k in named], "ana", AT))
    run.feed(_events(after, 100, "b"))
    st_ = run.resolver.state
    for one, two, _ in st_.bans.values():
        held_one = {st_.node_profile[n] for n in one} - {None}
        held_two = {st_.node_profile[n] for n in two} - {None}
        assert not held_one & held_two
    again = replayed(run).state
    assert again.node_profile == st_.node_profile and again.aliases == st_.aliases


# ------------------------------------------------------------------------------------------- drivers
def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


FIRST = [
    {"event_id": "web1", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", "event_type": "signup",
     "identifiers": {"email": "jane.doe@example.co.uk", "phone": "+44 7700 900123"}},
    {"event_id": "store1", "occurred_at": "2025-01-02T00:00:00Z", "channel": "store", "event_type": "purchase",
     "identifiers": {"email": "jane.doe@example.co.uk", "loyalty_id": "L-100"}},
]
SECOND = [
    {"event_id": "app1", "occurred_at": "2025-01-05T00:00:00Z", "channel": "app", "event_type": "login",
     "identifiers": {"email": "jane.doe@example.co.uk", "phone": "+44 7700 900123"}},
]


def test_cli_unmerge_lists_and_lifts_and_the_log_verifies(tmp_path):
    data = str(tmp_path / "data")
    run_cli("ingest", str(_write(tmp_path / "first.jsonl", FIRST)), "--data-dir", data)
    pid = json.loads(run_cli("lookup", "email=jane.doe@example.co.uk", "--data-dir", data).stdout)["profile_id"]
    out = run_cli("unmerge", pid, "phone=+44 7700 900123", "--by", "ana", "--note", "son's phone",
                  "--data-dir", data).stdout
    assert "kept apart" in out and PHONE in out
    bans = json.loads(run_cli("unmerge", "--list", "--json", "--data-dir", data).stdout)
    assert [(b["kind"], b["by"], b["note"], b["sides"][0]) for b in bans] == [("unmerge", "ana", "son's phone", [PHONE])]
    run_cli("ingest", str(_write(tmp_path / "second.jsonl", SECOND)), "--data-dir", data)
    phone_pid = json.loads(run_cli("lookup", "phone=+447700900123", "--data-dir", data).stdout)["profile_id"]
    assert phone_pid != pid
    explained = json.loads(run_cli("explain", pid, "--json", "--data-dir", data).stdout)
    assert explained["bans"][0]["ban_id"] == bans[0]["ban_id"]
    # the text says so too (only --json and the API did): the split and the ban, with who and why
    text = run_cli("explain", pid, "--data-dir", data).stdout
    assert f"Split by ban {bans[0]['ban_id']} (unmerged by ana) into " in text  # (the split's cause: no event)
    assert explained["splits"][0]["parts"][0] in text
    assert f"Kept apart (unmerge, {bans[0]['ban_id']}, by ana" in text and "son's phone" in text and PHONE in text
    wrong = run_cli("unmerge", pid, "email=ann.other@mailbox.org", "--by", "ana", "--data-dir", data, check=False)
    assert wrong.returncode == 2 and wrong.stderr.startswith("idres: error:") and "is not an identifier" in wrong.stderr
    # the views rebuilt from the log, and every record (the unmerge too) re-decided, agree with the log
    replay = json.loads(run_cli("replay", "--verify", "--data-dir", data).stdout)
    assert replay["identical_to_live_views"] and replay["decisions_reproduced"]
    run_cli("unmerge", "--lift", bans[0]["ban_id"], "--by", "bo", "--data-dir", data)
    assert json.loads(run_cli("unmerge", "--list", "--json", "--data-dir", data).stdout) == []
    snap = tmp_path / "snap.duckdb"
    run_cli("snapshot", "--data-dir", data, "--out", str(snap))
    rows = json.loads(run_cli("query", str(snap), "SELECT ban_id, kind, side_a, decided_by, lifted_by FROM bans",
                              "--json").stdout)
    assert rows == [{"ban_id": bans[0]["ban_id"], "kind": "unmerge", "side_a": [PHONE], "decided_by": "ana", "lifted_by": "bo"}]


def test_on_kafka_an_unmerge_goes_through_the_resolve_worker_and_gives_what_the_embedded_engine_gives(
        kafka_bootstrap, tmp_path):
    import duckdb

    from streams.embedded import EmbeddedEngine
    from tests.kafka_broker import unique_name
    from tests.test_stream import Worker, idres, wait_until

    first, second = _write(tmp_path / "first.jsonl", FIRST), _write(tmp_path / "second.jsonl", SECOND)
    with EmbeddedEngine(tmp_path / "embedded") as engine:
        engine.ingest_file(first)
        pid = engine.views.lookup_node(EMAIL)["profile_id"]
        engine.unmerge(pid, [("phone", "+44 7700 900123")], "ana")
        engine.ingest_file(second)
        expected = sorted(zip(engine.views.ev_id, engine.views.ev_profile))
        owners = {k: engine.views.lookup_node(k)["profile_id"] for k in (EMAIL, PHONE, CARD)}
    assert owners[PHONE] != owners[EMAIL]

    prefix = unique_name("unmerge") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    idres("produce", str(first), *kafka)
    worker = Worker(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        written = lambda n: lambda: worker.metrics().get("idres_log_entries_written_total") == n  # noqa: E731
        wait_until(written(2), 120, "both events decided", [worker])
        assert "submitted" in idres("unmerge", pid, "phone=+44 7700 900123", "--by", "ana", *kafka).stdout
        wait_until(written(3), 60, "the unmerge recorded", [worker])
        idres("produce", str(second), *kafka)
        wait_until(written(4), 60, "the later event decided", [worker])
        bans = json.loads(idres("unmerge", "--list", "--json", *kafka).stdout)
        assert [(b["by"], b["sides"][0]) for b in bans] == [("ana", [PHONE])]
        bad = idres("unmerge", pid, "email=ann.other@mailbox.org", "--by", "ana", *kafka, check=False)
        assert bad.returncode == 2 and "is not an identifier of profile" in bad.stderr
    finally:
        worker.stop()
    # what-if on the Kafka log, under the same rules: the same customers, the unmerge applied again
    same = json.loads(idres("whatif", *kafka, "--scratch", str(tmp_path / "whatif"), "--json").stdout)
    assert (same["links_added"], same["links_removed"], same["replay"]["commands_skipped"]) == (0, 0, 0)
    snap = tmp_path / "kafka.duckdb"
    idres("snapshot", *kafka, "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        assert con.execute("SELECT event_id, profile_id FROM events ORDER BY event_id").fetchall() == expected


def test_an_anonymous_record_is_unmerged_by_its_event_id_as_given():
    run = Run().feed([ev("web1", 0, email="jane.doe@example.co.uk", attrs=JANE),
                      ev("Call-7", 5, channel="call_center", attrs=JANE)])
    pid = profile_of_key(run, EMAIL)
    assert profile_of_key(run, "record:Call-7") == pid
    command(run, run.resolver.unmerge(pid, [("record", "Call-7")], "ana", AT))
    assert profile_of_key(run, "record:Call-7") != pid


def test_rejecting_a_pair_linked_since_by_other_evidence_says_so_and_bans_nothing():
    run, item = reviewed()
    run.feed([ev("app1", 9, channel="app", email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    out = command(run, run.resolver.decide_review(item["review_id"], False, "ana", AT))
    assert out[-1]["outcome"] == "already_linked" and "idres unmerge" in out[-1]["reason"]
    assert run.resolver.state.bans == {} and run.views.bans_of() == []


def test_lifting_a_rejected_reviews_ban_lets_the_matcher_link_the_pair_again():
    run, item = reviewed()
    command(run, run.resolver.decide_review(item["review_id"], False, "ana", AT))
    command(run, run.resolver.lift_ban(item["review_id"], "bo", AT))
    run.feed([ev("call2", 30, channel="call_center", phone="+44 7700 900123", attrs=JANE)])
    assert profile_of_key(run, PHONE) == profile_of_key(run, EMAIL)
    assert replayed(run).state.node_profile == run.resolver.state.node_profile


@pytest.mark.parametrize("command", [["review", "reject", "r_0000000000000000"], ["unmerge", "--lift", "b_0000"],
                                     ["erase", "email=jane.doe@example.co.uk"]])
def test_a_person_s_decision_with_no_name_to_record_is_refused(tmp_path, command):
    """With no --by and no $USER (a container), verdicts, unmerges and erasures were recorded as "unknown"."""
    data = str(tmp_path / "data")
    run_cli("ingest", str(_write(tmp_path / "first.jsonl", FIRST)), "--data-dir", data)
    done = run_cli(*command, "--data-dir", data, check=False, env={"USER": None, "LOGNAME": None})
    assert done.returncode == 2 and done.stderr.startswith("idres: error: say who decides with --by NAME")
    assert done.stderr.count("\n") == 1
    named = run_cli(*command, "--data-dir", data, check=False, env={"USER": "ana", "LOGNAME": None})
    assert "say who decides" not in named.stderr


def test_a_part_an_unmerge_leaves_with_no_event_is_a_row_of_the_snapshot_s_profiles(tmp_path):
    """The phone was only ever given beside the email: unmerged, its profile holds it and no event. It was in
    the identifiers table and not in profiles (which skipped profiles without events), so the two did not join
    and the snapshot counted one profile fewer than the API."""
    import duckdb

    data = str(tmp_path / "data")
    run_cli("ingest", str(_write(tmp_path / "first.jsonl", FIRST)), "--data-dir", data)
    pid = json.loads(run_cli("lookup", "email=jane.doe@example.co.uk", "--data-dir", data).stdout)["profile_id"]
    run_cli("unmerge", pid, "phone=+44 7700 900123", "--by", "ana", "--data-dir", data)
    part = json.loads(run_cli("lookup", "phone=+447700900123", "--data-dir", data).stdout)
    assert part["profile_id"] != pid and part["event_count"] == 0
    snap = tmp_path / "s.duckdb"
    run_cli("snapshot", "--out", str(snap), "--data-dir", data)
    with duckdb.connect(str(snap), read_only=True) as con:
        row = con.execute("SELECT event_count, channel_count, channels, purchase_count, phones, first_seen "
                          "FROM profiles WHERE profile_id = ?", [part["profile_id"]]).fetchall()
        assert row == [(0, 0, [], 0, [PHONE.partition(":")[2]], None)]
        assert con.execute("SELECT count(*) FROM identifiers WHERE profile_id NOT IN "
                           "(SELECT profile_id FROM profiles)").fetchone() == (0,)


def test_a_review_whose_sides_an_unmerge_keeps_apart_is_not_asked_again():
    """A pending review made moot by other evidence joining its sides came back as pending once an unmerge
    parted them: a person was asked about a pair a ban already keeps apart, and accepting it was blocked."""
    run, item = reviewed()
    run.feed([ev("app1", 9, channel="app", email="jane.doe@example.co.uk", loyalty_id="L-7"),
              ev("store1", 10, channel="store", phone="+44 7700 900123", loyalty_id="L-7")])
    pid = profile_of_key(run, EMAIL)
    assert profile_of_key(run, PHONE) == pid and run.views.review_queue() == []
    command(run, run.resolver.unmerge(pid, [("phone", "+44 7700 900123")], "ana", AT))
    assert profile_of_key(run, PHONE) != profile_of_key(run, EMAIL)
    assert run.views.review_queue() == []
    [moot] = [r for r in run.views.review_queue(include_decided=True) if r["review_id"] == item["review_id"]]
    assert moot["status"] == "moot"
    # lifted, the ban keeps nothing apart: the pair is a person's to judge again
    [ban] = run.views.bans_of()
    command(run, run.resolver.lift_ban(ban["ban_id"], "bo", AT))
    assert [r["review_id"] for r in run.views.review_queue()] == [item["review_id"]]


def test_explain_says_which_link_was_refused_on_an_event_of_the_profile_whichever_side_holds_the_identifier():
    """A link refused on an event (a rejected review's ban) was listed only under the profile holding the refused
    identifier, not under the profile holding the event: its explain said nothing was left unlinked."""
    run, item = reviewed()
    command(run, run.resolver.decide_review(item["review_id"], False, "ana", AT, "different people"))
    run.feed([ev("app1", 9, channel="app", email="jane.doe@example.co.uk", phone="+44 7700 900123")])
    [refused] = [d for d in run.log[-1] if d["type"] == "link_refused"]
    views = run.views
    holder = views.ev_profile[views.ev_id.index("app1")]
    for pid in {profile_of_key(run, EMAIL), profile_of_key(run, PHONE)}:
        said = [n for n in views.explain(pid)["not_linked"] if n["event_id"] == "app1"]
        assert len(said) == 1 and said[0]["identifier"] == refused["node"], pid
        assert item["review_id"] in said[0]["why"] and said[0]["why"].startswith("not linked to ")
    assert holder in {profile_of_key(run, EMAIL), profile_of_key(run, PHONE)}


@pytest.mark.parametrize("args, said", [
    (["unmerge", "PID", "phone=12", "--by", "ana"],
     "phone=12: not a phone number (name one the customer has: `idres show PROFILE_ID --bootstrap ...` lists them)"),
    (["unmerge", "--lift", "b_0000", "--by", "ana"],
     "no connection ban 'b_0000' in force (list them with `idres unmerge --list --bootstrap ...`)"),
    (["unmerge", "p_0000000000000000", "phone=+44 7700 900123", "--by", "ana"],
     "no profile p_0000000000000000 (look it up with `idres lookup TYPE=VALUE --bootstrap ...`)"),
    (["erase", "email=zed.quill@post.net", "--by", "dpo"],
     "no customer holds email=zed.quill@post.net: nothing to erase (look it up with `idres lookup TYPE=VALUE "
     "--bootstrap ...`)"),
])
def test_a_command_refused_on_kafka_says_what_to_do_next_as_on_a_data_directory(tmp_path, monkeypatch, capsys,
                                                                                   args, said):
    """The Kafka forms of unmerge, lift and erase said why a command was refused but not what to do next (the
    data directory's forms did), and an erasure refused did not name the identifier."""
    from streams import cli
    from streams.embedded import EmbeddedEngine

    data = tmp_path / "data"
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(_write(tmp_path / "first.jsonl", FIRST))
        views = engine.views
    monkeypatch.setattr(cli, "_kafka_views", lambda a: (views, 0, 0))  # (the decision-log topic's views)
    pid = views.lookup_node(EMAIL)["profile_id"]
    code = cli.main([a.replace("PID", pid) for a in args] + ["--bootstrap", "127.0.0.1:9"])
    assert code == 2 and capsys.readouterr().err == f"idres: error: {said}\n"
