"""Anonymous activity on a shared identifier belongs to the customer who used it in the same session;
outside a session it stays apart, and no rule chains strangers at a kiosk."""

from __future__ import annotations

from projections.customer import CustomerViews
from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from schemas.decisions import LogEntry
from tests.resolver_helpers import Run, ev


def family_tablet() -> list:
    """A tablet two people sign in on: it is shared (seen with two people's emails and names)."""
    return [
        ev("mum-1", 0, channel="app", event_type="login", device_id="tablet-7", email="mum@x.org",
           attrs={"first_name": "Ruth"}),
        ev("kid-1", 60, channel="app", event_type="login", device_id="tablet-7", email="kid@x.org",
           attrs={"first_name": "Leo"}),
        ev("kid-2", 120, channel="app", event_type="login", device_id="tablet-7", email="kid@x.org",
           attrs={"first_name": "Leo"}),
    ]


def test_browsing_after_a_sign_in_belongs_to_who_signed_in():
    run = Run().feed(family_tablet() + [
        ev("mum-2", 600, channel="app", event_type="login", device_id="tablet-7", email="mum@x.org"),
        ev("view-1", 610, channel="app", event_type="page_view", device_id="tablet-7"),
        ev("view-2", 625, channel="app", event_type="page_view", device_id="tablet-7"),
    ])
    assert run.views.lookup_node("device_id:tablet-7")["status"] == "shared"
    assert run.profile_of("view-1") == run.profile_of("view-2") == run.profile_of("mum-1")
    recorded = [d for entry in run.log for d in entry
                if d["type"] == "interaction_recorded" and d["event_id"] == "view-2"][0]
    assert recorded["attributed"] == {"node": "email:mum@x.org", "via": "device_id:tablet-7",
                                      "rule": "same_session", "seconds": 25 * 60}
    for seq, entry in enumerate(run.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})


def test_browsing_before_a_sign_in_is_claimed_by_it():
    run = Run().feed(family_tablet() + [
        ev("view-1", 1000, channel="app", event_type="page_view", device_id="tablet-7"),
        ev("view-2", 1010, channel="app", event_type="page_view", device_id="tablet-7"),
    ])
    alone = run.profile_of("view-1")
    assert alone not in (run.profile_of("mum-1"), run.profile_of("kid-1"))
    run.feed([ev("kid-3", 1020, channel="app", event_type="login", device_id="tablet-7", email="kid@x.org")])
    assert run.profile_of("view-1") == run.profile_of("view-2") == run.profile_of("kid-1")
    claims = [d for entry in run.log for d in entry if d["type"] == "events_attributed"]
    assert [(c["event_id"], c["node"], c["events"]) for c in claims] == [("kid-3", "email:kid@x.org",
                                                                          ["view-1", "view-2"])]
    assert run.views.resolve(alone) == run.profile_of("kid-1")  # the anonymous profile's ID still leads there


def test_outside_a_session_anonymous_events_stay_apart():
    run = Run().feed(family_tablet() + [
        ev("view-1", 600, channel="app", event_type="page_view", device_id="tablet-7"),  # 8 hours after
        ev("kid-3", 700, channel="app", event_type="login", device_id="tablet-7", email="kid@x.org"),  # 100 min
    ])
    assert run.profile_of("view-1") not in (run.profile_of("mum-1"), run.profile_of("kid-1"))
    assert not [d for entry in run.log for d in entry if d["type"] == "events_attributed"]


def test_an_anonymous_event_with_a_name_on_a_shared_identifier_is_matched_on_its_attributes():
    """A call from a household landline (shared) by someone who gives her name and date of birth is
    not a profile of its own: its record is matched like any other."""
    attrs = {"first_name": "Ruth", "last_name": "Okafor", "date_of_birth": "1971-04-09", "postcode": "LS18 6SS",
             "address": "4 Mill Lane", "city": "Leeds"}
    run = Run().feed([
        ev("1", 0, channel="web", event_type="signup", email="ruth@x.org", attrs=attrs),
        ev("2", 10, channel="call_center", phone="+44 113 496 0000", email="ruth@x.org",
           attrs={"first_name": "Ruth", "date_of_birth": "1971-04-09"}),
        ev("3", 20, channel="call_center", phone="+44 113 496 0000", email="sam@x.org",
           attrs={"first_name": "Sam", "date_of_birth": "2003-01-30"}),
        ev("4", 9000, channel="call_center", phone="0044 113 496 0000",
           attrs={**attrs, "first_name": "Ruthie"}),
    ])
    assert run.views.lookup_node("phone:+441134960000")["status"] == "shared"
    assert run.profile_of("4") == run.profile_of("1")


def test_explain_says_why_an_anonymous_event_is_the_customers():
    run = Run().feed(family_tablet() + [
        ev("view-1", 1000, channel="app", event_type="page_view", device_id="tablet-7"),
        ev("kid-3", 1010, channel="app", event_type="login", device_id="tablet-7", email="kid@x.org"),
        ev("view-2", 1015, channel="app", event_type="page_view", device_id="tablet-7"),
    ])
    explained = run.views.explain(run.profile_of("kid-1"))
    assert explained["attributed"] == [
        {"event_id": "view-1", "via": "device_id:tablet-7", "node": "email:kid@x.org", "rule": "same_session",
         "claimed_by": "kid-3"},
        {"event_id": "view-2", "via": "device_id:tablet-7", "node": "email:kid@x.org", "rule": "same_session"},
    ]
    assert any("view-1 carried only device_id:tablet-7" in line and "kid-3" in line for line in explained["summary"])


def test_a_claimed_event_goes_back_to_its_own_profile_when_its_customers_identifier_is_found_shared():
    """The anonymous profile's ID led to the customer while the event was theirs; once the customer's
    identifier is shared, the event is on its own again and the ID names it, not a dead alias."""
    from projections.customer import event_profile_id

    run = Run().feed(family_tablet() + [
        ev("view-1", 1000, channel="app", event_type="page_view", device_id="tablet-7"),
        ev("kid-3", 1010, channel="app", event_type="login", device_id="tablet-7", email="kid@x.org"),
    ])
    own = event_profile_id("view-1")
    assert run.profile_of("view-1") == run.profile_of("kid-3") == run.views.resolve(own) != own
    run.feed([ev("kid-4", 1020, email="kid@x.org", attrs={"first_name": "Ruth", "last_name": "Hill"}),
              ev("kid-5", 1030, email="kid@x.org", attrs={"first_name": "Ruth", "last_name": "Hill"})])
    assert run.views.lookup_node("email:kid@x.org")["status"] == "shared"
    assert run.profile_of("view-1") == own and run.views.resolve(own) == own
    assert run.views.customer(own) is not None


def test_a_session_at_the_start_of_time_is_not_an_error():
    from resolver import sessions

    assert sessions.session_start("0001-01-01T00:10:00.000000Z") == ""
    assert sessions.attribution({0: ("0001-01-01T00:00:00.000000Z", "email:a@x.org")}, [0],
                                "0001-01-01T00:10:00.000000Z", ["device_id:d"])["seconds"] == 600


def test_an_anonymous_event_never_lands_in_the_customer_who_inherited_the_profile_it_founded():
    """A till purchase founds a profile on the till's device; a customer's email joins it; the till is
    then found shared. The profile's ID stays with the customer's email, and the purchase is on its own."""
    day = 86_400
    run = Run().feed([
        ev("till-0", 0, channel="store", event_type="purchase", device_id="pos-1"),
        ev("a-1", 2 * day, channel="store", event_type="purchase", device_id="pos-1", email="a@x.org"),
        ev("b-1", 4 * day, channel="store", event_type="purchase", device_id="pos-1", email="b@x.org"),
        ev("c-1", 6 * day, channel="store", event_type="purchase", device_id="pos-1", email="c@x.org"),
    ])
    assert run.views.lookup_node("device_id:pos-1")["status"] == "shared"
    customer_a = run.views.lookup_node("email:a@x.org")["profile_id"]
    assert run.profile_of("a-1") == customer_a
    assert run.profile_of("till-0") not in {customer_a, run.profile_of("b-1"), run.profile_of("c-1")}
    assert run.views.customer(run.profile_of("till-0"))["event_count"] == 1


def test_when_a_device_is_found_shared_its_earlier_browsing_goes_to_who_signed_in_around_it():
    """Ana's tablet looked like hers until Luis signed in on it days later. Her browsing right after her
    sign-in stays hers, browsing hours away from any sign-in stands alone, Luis's browsing is his; and
    the log folded again gives the same customers."""
    day = 24 * 60
    run = Run().feed([
        ev("ana-1", 0, channel="app", event_type="login", device_id="tab-1", email="ana@x.org",
           attrs={"first_name": "Ana"}),
        ev("view-1", 5, channel="app", event_type="page_view", device_id="tab-1"),
        ev("view-2", 200, channel="app", event_type="page_view", device_id="tab-1"),
        ev("luis-1", 3 * day, channel="app", event_type="login", device_id="tab-1", email="luis@x.org",
           attrs={"first_name": "Luis"}),
        ev("view-3", 3 * day + 5, channel="app", event_type="page_view", device_id="tab-1"),
    ])
    assert run.views.lookup_node("device_id:tab-1")["status"] == "shared"
    ana, luis = run.profile_of("ana-1"), run.profile_of("luis-1")
    assert ana != luis
    assert run.profile_of("view-1") == ana
    assert run.profile_of("view-2") not in {ana, luis}
    assert run.profile_of("view-3") == luis
    claimed = [d for entry in run.log for d in entry if d["type"] == "events_attributed"]
    assert claimed == [{"type": "events_attributed", "event_id": "luis-1", "node": "email:ana@x.org",
                        "via": "device_id:tab-1", "rule": "same_session", "events": ["view-1"]}]
    for seq, entry in enumerate(run.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})
    replayed = CustomerViews()
    for seq, entry in enumerate(run.log):
        replayed.apply_entry(seq, entry)
    assert replayed.ev_profile == run.views.ev_profile
    again = Resolver(ResolverConfig(), ResolverState())
    again.apply_all(d for entry in run.log for d in entry)
    assert again.state.session_pending == run.resolver.state.session_pending


def test_an_event_attributed_by_session_is_not_handed_out_again_when_its_device_is_found_shared():
    run = Run().feed([
        ev("a1", 0, channel="app", event_type="login", device_id="tab-2", email="a@x.org"),
        ev("b1", 60, channel="app", event_type="login", device_id="tab-2", email="b@x.org"),
        ev("anon", 70, channel="app", event_type="page_view", device_id="tab-2"),
        ev("a2", 71, channel="app", event_type="login", device_id="tab-2", email="a@x.org"),
        ev("c1", 75, channel="app", event_type="login", device_id="tab-2", email="c@x.org"),
    ])
    assert run.views.lookup_node("device_id:tab-2")["status"] == "shared"
    assert run.profile_of("anon") == run.profile_of("b1")
    said = [d["attributed"]["node"] for e in run.log for d in e if d.get("event_id") == "anon" and "attributed" in d]
    said += [d["node"] for e in run.log for d in e if d["type"] == "events_attributed" and "anon" in d["events"]]
    assert said == ["email:b@x.org"]  # one attribution, never a second one that contradicts it


def _till(channel: str, event_type: str) -> list:
    """A shop's till two loyalty customers paid at (so it is shared), then anonymous use of it around a third
    customer's identified purchase: a minute before, and three minutes after."""
    return [
        ev("ann-1", 0, channel="store", event_type="store_purchase", device_id="till-3", loyalty_id="L100001"),
        ev("bob-1", 5, channel="store", event_type="store_purchase", device_id="till-3", loyalty_id="L100002"),
        ev("anon-before", 59, channel=channel, event_type=event_type, device_id="till-3"),
        ev("cat-1", 60, channel="store", event_type="store_purchase", device_id="till-3", loyalty_id="L100003"),
        ev("anon-after", 63, channel=channel, event_type=event_type, device_id="till-3"),
    ]


def test_anonymous_use_in_person_at_a_shared_till_is_nobodys_by_session():
    """At a till, strangers follow one another: an anonymous purchase minutes after (or before) an identified
    one is another customer's as often as not, so in person (``in_person_channels``) nothing is attributed by
    session; the same use from a screen (a page view on the shop's kiosk) is, as on a family tablet."""
    run = Run().feed(_till("store", "store_purchase"))
    assert run.views.lookup_node("device_id:till-3")["status"] == "shared"
    cat = run.profile_of("cat-1")
    alone = {run.profile_of("anon-before"), run.profile_of("anon-after")}
    assert cat not in alone and len(alone) == 2
    assert not [d for e in run.log for d in e if d["type"] == "events_attributed" or "attributed" in d]
    assert not run.resolver.state.session_pending  # (nothing waits to be claimed)

    screen = Run().feed(_till("web", "page_view"))
    assert screen.profile_of("anon-before") == screen.profile_of("anon-after") == screen.profile_of("cat-1")

    anywhere = Run(ResolverConfig(in_person_channels=())).feed(_till("store", "store_purchase"))
    assert anywhere.profile_of("anon-before") == anywhere.profile_of("anon-after") == anywhere.profile_of("cat-1")


def test_anonymous_purchases_at_a_till_found_shared_later_stay_apart():
    """A till that looked like one customer's device until a second customer paid at it: the anonymous
    purchases around the first customer's are not handed to anyone when it is found shared."""
    run = Run().feed([
        ev("ann-1", 0, channel="store", event_type="store_purchase", device_id="till-4", loyalty_id="L200001"),
        ev("anon-1", 3, channel="store", event_type="store_purchase", device_id="till-4"),
        ev("bob-1", 6, channel="store", event_type="store_purchase", device_id="till-4", loyalty_id="L200002"),
    ])
    assert run.views.lookup_node("device_id:till-4")["status"] == "shared"
    assert run.profile_of("anon-1") not in (run.profile_of("ann-1"), run.profile_of("bob-1"))
    assert not [d for e in run.log for d in e if d["type"] == "events_attributed"]
