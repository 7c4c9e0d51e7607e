"""The resolver's behaviour on the situations that break naive identity graphs."""

from __future__ import annotations

from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from schemas.decisions import LogEntry
from tests.resolver_helpers import Run, ev, one_card


def test_anonymous_session_joins_the_customer_who_logs_in_later():
    run = Run().feed([
        ev("a1", 0, device_id="dev-1"),
        ev("a2", 1, device_id="dev-1"),
        ev("b1", 5, channel="email", email="jane@mailbox.org"),
        ev("a3", 10, event_type="login", device_id="dev-1", email="Jane@Mailbox.org"),
    ])
    assert len({run.profile_of(e) for e in ("a1", "a2", "b1", "a3")}) == 1
    # the anonymous profile is older, so the merged customer keeps its ID
    assert run.profile_of("b1") == run.profile_of("a1")
    assert len(run.views.merges) == 1 and run.views.merges[0]["via"] == ["email:jane@mailbox.org", "device_id:dev-1"]


def test_new_email_is_linked_through_the_loyalty_card():
    run = Run().feed([
        ev("1", 0, channel="store", loyalty_id="LOY-1", email="old@mailbox.org"),
        ev("2", 60, channel="web", email="new@mailbox.org"),
        ev("3", 120, channel="store", loyalty_id="loy 1", email="new@mailbox.org"),
    ])
    assert run.profile_of("1") == run.profile_of("2") == run.profile_of("3")
    view = run.views.customer(run.profile_of("2"))
    assert view["identifiers"]["email"] == ["old@mailbox.org", "new@mailbox.org"]


def test_placeholder_values_never_chain_strangers():
    run = Run().feed([
        ev("1", 0, channel="store", email="test@test.com", loyalty_id="111"),
        ev("2", 1, channel="store", email="test@test.com", loyalty_id="222"),
        ev("3", 2, channel="call_center", phone="0000000000", loyalty_id="111"),
        ev("4", 3, channel="call_center", phone="000-000-0000", loyalty_id="333"),
    ])
    assert run.profile_of("1") == run.profile_of("3")
    assert len({run.profile_of(e) for e in ("1", "2", "4")}) == 3
    assert run.views.lookup_node("email:test@test.com")["status"] == "unknown"


def test_store_kiosk_is_detected_from_the_data_and_stops_linking():
    events = [ev(f"k{i}", i, channel="store", device_id="pos-17", loyalty_id=f"{1000 + i}") for i in range(6)]
    run = Run().feed(events)
    assert len({run.profile_of(e.event_id) for e in events}) == 6
    assert run.views.lookup_node("device_id:pos-17")["status"] == "shared"


def test_kiosk_detected_late_splits_what_it_had_joined():
    # a kiosk seen with two emails is still within the device's limits: the second email is not
    # linked through a weak identifier, and a third shows the kiosk is shared.
    run = Run().feed([
        ev("1", 0, channel="store", device_id="kiosk", email="a@x.org"),
        ev("2", 1, channel="store", device_id="kiosk"),
        ev("3", 2, channel="store", device_id="kiosk", email="b@x.org"),
        ev("4", 3, channel="store", device_id="kiosk", email="c@x.org"),
    ])
    assert run.profile_of("1") != run.profile_of("3") != run.profile_of("4")
    assert run.views.lookup_node("device_id:kiosk")["status"] == "shared"


def test_shared_identifier_found_late_splits_the_profile_and_keeps_the_id_on_the_oldest_part():
    run = Run(one_card()).feed([
        ev("1", 0, channel="call_center", phone="4155550100", email="mum@x.org"),
        ev("2", 1, channel="call_center", phone="4155550100", email="kid@x.org"),
        ev("3", 2, channel="store", email="mum@x.org", loyalty_id="L-1"),
        ev("4", 3, channel="store", email="kid@x.org", loyalty_id="L-2"),
    ])
    # events 1-3 were one profile until event 4 showed the landline ties two loyalty cards
    assert run.profile_of("1") == run.profile_of("3")
    assert run.profile_of("2") == run.profile_of("4")
    assert run.profile_of("1") != run.profile_of("2")
    assert run.views.lookup_node("phone:+14155550100")["status"] == "shared"
    split = run.views.splits[-1]
    assert split["parts"][0]["profile_id"] == split["profile_id"]
    assert "email:mum@x.org" in split["parts"][0]["nodes"]


def test_household_landline_with_different_birth_dates_does_not_merge():
    run = Run().feed([
        ev("1", 0, channel="call_center", phone="(415) 555-0177", email="ann@x.org",
           attrs={"date_of_birth": "1970-01-02"}),
        ev("2", 1, channel="call_center", email="bob@x.org", attrs={"date_of_birth": "2004-05-06"}),
        ev("3", 2, channel="call_center", phone="415 555 0177", email="bob@x.org"),
    ])
    assert run.profile_of("1") != run.profile_of("2")
    assert run.views.lookup_node("phone:+14155550177")["status"] == "shared"


def test_a_mistyped_birth_date_is_not_another_person():
    """A date one typo (or a day/month swap, or days) away from the known one is the same person's: the
    email is not flagged, and the landline still joins the two records; a date years away is another's."""
    run = Run().feed([
        ev("1", 0, channel="call_center", phone="(415) 555-0178", email="ann@x.org",
           attrs={"date_of_birth": "1970-01-02"}),
        ev("2", 1, channel="web", email="ann@x.org", attrs={"date_of_birth": "1970-01-12"}),  # one digit
        ev("3", 2, channel="store", email="ann@x.org", attrs={"date_of_birth": "1970-02-01"}),  # swapped
        ev("4", 3, channel="call_center", phone="415 555 0178", loyalty_id="L-7",
           attrs={"date_of_birth": "1970-01-03"}),
    ])
    assert run.views.lookup_node("email:ann@x.org")["status"] == "found"
    assert len({run.profile_of(e) for e in "1234"}) == 1
    run.feed([ev("5", 4, channel="web", email="ann@x.org", attrs={"date_of_birth": "2001-07-30"})])
    flagged = run.views.lookup_node("email:ann@x.org")
    assert flagged["status"] == "shared"
    # the four dates above count as one person's: the breach names two
    reasons = [d["reason"] for entry in run.log for d in entry if d["type"] == "identifier_flagged"]
    assert reasons == ["seen with 2 different dates of birth (limit 1)"]


def test_family_tablet_cannot_join_two_known_customers():
    run = Run().feed([
        ev("1", 0, channel="app", device_id="tablet", email="mum@x.org"),
        ev("2", 1, channel="app", device_id="tablet", email="kid@x.org"),
        ev("3", 2, channel="app", device_id="tablet"),
    ])
    assert run.profile_of("1") != run.profile_of("2")
    refused = [d for entry in run.log for d in entry if d["type"] == "link_refused"]
    assert [(d["node"], d["others"]) for d in refused] == [("device_id:tablet", ["email:kid@x.org"])]
    assert "weak identifier" in refused[0]["reason"]
    # one second customer is not proof the tablet is shared: it stays with its first customer, but the
    # browsing right after the second customer signed in on it is the second customer's (same session)...
    assert run.profile_of("3") == run.profile_of("2")
    assert [d["attributed"] for entry in run.log for d in entry if d.get("attributed")] == [
        {"node": "email:kid@x.org", "via": "device_id:tablet", "rule": "same_session", "seconds": 60}]
    run.feed([ev("3b", 300, channel="app", device_id="tablet")])
    assert run.profile_of("3b") == run.profile_of("1")
    # ...until a third person logs in on it: then it is shared and links nobody
    run.feed([ev("4", 301, channel="app", device_id="tablet", email="dad@x.org")])
    assert run.views.lookup_node("device_id:tablet")["status"] == "shared"
    assert len({run.profile_of(e) for e in "124"}) == 3


def test_one_person_with_two_emails_on_one_device_joins_when_strong_evidence_arrives():
    run = Run().feed([
        ev("1", 0, channel="app", device_id="phone-app", email="me@home.org"),
        ev("2", 1, channel="app", device_id="phone-app", email="me@work.org"),
        ev("3", 2, channel="store", loyalty_id="L-9", email="me@home.org"),
        ev("4", 3, channel="store", loyalty_id="L-9", email="me@work.org"),
    ])
    assert len({run.profile_of(e) for e in "1234"}) == 1
    assert run.views.lookup_node("device_id:phone-app")["status"] == "found"


def test_one_loyalty_card_per_customer():
    run = Run(one_card()).feed([
        ev("1", 0, channel="store", loyalty_id="L1", email="a@x.org"),
        ev("2", 1, channel="store", loyalty_id="L2", email="b@x.org"),
        ev("3", 2, channel="web", email="a@x.org", phone="4155550111"),
        ev("4", 3, channel="web", email="b@x.org", phone="4155550111"),
    ])
    assert run.profile_of("1") == run.profile_of("3")
    assert run.profile_of("2") == run.profile_of("4")
    assert run.profile_of("1") != run.profile_of("2")


def test_a_card_that_replaced_a_lost_one_is_the_same_customers_two_cards_in_use_at_once_are_two():
    day = 24 * 60
    replaced = Run().feed([
        ev("1", 0, channel="store", loyalty_id="L1", email="a@x.org"),
        ev("2", 10 * day, channel="store", loyalty_id="L1", phone="4155550111"),
        ev("3", 40 * day, channel="store", loyalty_id="L2", phone="4155550111"),  # the card was lost
        ev("4", 50 * day, channel="store", loyalty_id="L2", email="a@x.org"),
    ])
    assert len({replaced.profile_of(e) for e in "1234"}) == 1
    assert not replaced.views.shared

    household = Run().feed([
        ev("1", 0, channel="store", loyalty_id="L1", email="a@x.org"),
        ev("2", 1 * day, channel="store", loyalty_id="L2", email="b@x.org"),
        ev("3", 2 * day, channel="store", loyalty_id="L1", email="a@x.org"),
        ev("4", 3 * day, channel="store", loyalty_id="L2", email="b@x.org"),
        ev("5", 4 * day, channel="web", email="a@x.org", phone="4155550111"),
        ev("6", 5 * day, channel="web", email="b@x.org", phone="4155550111"),  # their landline
    ])
    assert household.profile_of("1") != household.profile_of("2")  # both cards in use the same days
    refusal = household.views.lookup_node("phone:+14155550111")
    assert refusal["status"] == "shared" and "in use at the same time" in refusal["reason"]


def test_merge_keeps_the_older_id_and_the_absorbed_id_still_resolves():
    run = Run().feed([
        ev("late", 100, email="a@x.org"),
        ev("early", 1, phone="4155550123"),  # processed second, but happened first
        ev("join", 200, email="a@x.org", phone="4155550123"),
    ])
    survivor = run.profile_of("join")
    merge = run.views.merges[0]
    assert merge["survivor_id"] == survivor
    assert survivor == merge["survivor_id"] and merge["absorbed_ids"] != [survivor]
    absorbed = merge["absorbed_ids"][0]
    assert run.views.resolve(absorbed) == survivor
    assert run.views.customer(absorbed)["profile_id"] == survivor
    assert run.views.customer(absorbed)["requested_id"] == absorbed
    created = {d["profile_id"]: d["created_at"] for e in run.log for d in e if d["type"] == "profile_created"}
    assert created[survivor] < created[absorbed]


def test_duplicate_event_is_a_no_op():
    r = Resolver(ResolverConfig(), ResolverState())
    e = ev("x", 0, email="a@x.org", phone="4155550123")
    assert r.decide(e)
    assert r.decide(e) == []
    assert r.decide(ev("x", 5, email="other@x.org")) == []


def test_attribute_only_event_is_accepted_as_its_own_profile():
    run = Run().feed([ev("1", 0, channel="store", attrs={"first_name": "Ann", "postcode": "94107"})])
    pid = run.profile_of("1")
    assert run.views.customer(pid)["golden_record"] == {"first_name": "Ann", "postcode": "94107"}


def test_every_decision_matches_the_published_schema():
    run = Run(one_card()).feed([
        ev("1", 0, channel="call_center", phone="4155550100", email="mum@x.org", attrs={"first_name": "A"}),
        ev("2", 1, channel="call_center", phone="4155550100", email="kid@x.org"),
        ev("3", 2, channel="store", email="mum@x.org", loyalty_id="L-1", payload={"amount": 3.5}),
        ev("4", 3, channel="store", email="kid@x.org", loyalty_id="L-2"),
        ev("5", 4, channel="web", device_id="d", email="test@test.com"),
        ev("6", 5, channel="web", device_id="d", phone="4155550100"),
    ])
    seen = set()
    for seq, entry in enumerate(run.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})
        seen |= {d["type"] for d in entry}
    assert {"interaction_recorded", "profile_created", "identifiers_attached", "identifiers_linked",
            "identifier_flagged", "profile_split"} <= seen


def test_explain_gives_the_evidence_for_each_link():
    run = Run().feed([
        ev("1", 0, channel="web", device_id="dev-9"),
        ev("2", 1, channel="app", event_type="login", device_id="dev-9", email="z@x.org"),
        ev("3", 2, channel="call_center", email="z@x.org", phone="4155550199"),
    ])
    out = run.views.explain(run.profile_of("3"))
    pairs = {(link["a"], link["b"], link["event_id"]) for link in out["links"]}
    assert pairs == {("device_id:dev-9", "email:z@x.org", "2"), ("email:z@x.org", "phone:+14155550199", "3")}
    assert any("given together on event 3 on call_center" in line for line in out["summary"])


def test_a_device_and_the_same_person_on_both_sides_join_two_customers_a_device_alone_does_not():
    """Evidence adds up: Anjali's phone app (her gmail) and her hotmail signed in on the same device
    join when both name Anjali Patel; a device and a first name alone, or another person, do not."""
    def run_with(second_name: dict) -> Run:
        return Run().feed([
            ev("1", 0, channel="app", event_type="login", device_id="dev-9", email="apatel@gmail.com",
               attrs={"first_name": "Anjali", "last_name": "Patel"}),
            ev("2", 60, channel="web", event_type="signup", email="anjali.patel80@hotmail.com", attrs=second_name),
            ev("3", 120, channel="app", event_type="login", device_id="dev-9", email="anjali.patel80@hotmail.com"),
        ])

    same = run_with({"first_name": "Anjali", "last_name": "Patel"})
    assert same.profile_of("1") == same.profile_of("2") == same.profile_of("3")
    (merge,) = same.views.merges
    assert merge["rule"] == "weak_identifier_and_person"
    assert merge["evidence"] == {"weak": ["device_id:dev-9"], "person": ["anjali patel"]}
    for seq, entry in enumerate(same.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})

    for other in ({"first_name": "Anjali"}, {"first_name": "Ravi", "last_name": "Patel"}, {}):
        apart = run_with(other)
        assert apart.profile_of("1") != apart.profile_of("2"), other
        assert [d["type"] for entry in apart.log for d in entry if d["type"] == "link_refused"] == ["link_refused"]
    explained = same.views.explain(same.profile_of("1"))
    assert any("device_id:dev-9 alone would not have: both sides name anjali patel" in line
               for line in explained["summary"])


def test_a_device_seen_with_three_emails_of_one_named_person_is_not_a_shared_device():
    def run_with(names: list[str]) -> Run:
        return Run().feed([
            ev(f"{i}", i * 60, channel="app", event_type="login", device_id="phone-1", email=f"{n.lower()}{i}@x.org",
               attrs={"first_name": n, "last_name": "Lima"})
            for i, n in enumerate(names)])

    one = run_with(["Ana", "Ana", "Ana"])
    assert one.views.lookup_node("device_id:phone-1")["status"] == "found"
    three = run_with(["Ana", "Rui", "Eva"])
    assert three.views.lookup_node("device_id:phone-1")["status"] == "shared"


def test_a_cards_use_on_the_joining_event_counts_in_its_span_whatever_came_first():
    """Card L1 used again on day 60, when L2 (days 40-50) has replaced it: both are in use then, so the
    phone that would join them is shared, whether or not L1's day-60 use came on an earlier event."""
    day = 24 * 60
    head = [ev("1", 0, channel="store", loyalty_id="L1", email="a@x.org"),
            ev("2", 40 * day, channel="store", loyalty_id="L2", phone="4155550111"),
            ev("3", 50 * day, channel="store", loyalty_id="L2", phone="4155550111")]
    direct = Run().feed([*head, ev("4", 60 * day, channel="store", loyalty_id="L1", phone="4155550111")])
    earlier = Run().feed([*head, ev("4a", 60 * day, channel="store", loyalty_id="L1"),
                          ev("4", 60 * day + 1, channel="store", loyalty_id="L1", phone="4155550111")])
    for run in (direct, earlier):
        assert run.profile_of("1") != run.profile_of("2")
        assert run.views.lookup_node("phone:+14155550111")["status"] == "shared"


def test_an_id_merged_away_and_a_profile_again_is_not_listed_as_merged():
    """A till's anonymous purchase (its own profile) joins a customer through the till's terminal; the terminal is
    found shared (a second card on it) and the purchase is its own profile again, under its first ID. That ID
    leads to itself now: the customer no longer lists it among the IDs merged into theirs (they said "each still
    resolves here"; the lookup API answered it as a profile of its own)."""
    from tests.resolver_helpers import Run, ev

    run = Run().feed([ev("x", 0, channel="store", loyalty_id="LY-1001"),
                      ev("a", 300, channel="store", device_id="POS-7"),
                      ev("b", 900, channel="store", loyalty_id="LY-1001", device_id="POS-7")])
    customer, till = run.profile_of("x"), run.views.ev_id.index("a")
    anonymous = next(m["absorbed_ids"][0] for m in run.views.merges if m["survivor_id"] == customer)
    assert run.views.ev_profile[till] == customer and run.views.customer(customer)["merged_ids"] == [anonymous]
    run.feed([ev("c", 1500, channel="store", loyalty_id="LY-2002", device_id="POS-7")])
    assert run.views.ev_profile[till] == anonymous and run.views.resolve(anonymous) == anonymous
    assert anonymous not in run.views.customer(customer)["merged_ids"]
