"""Person traits: an identifier used by people who are clearly different (first names that are no
variants of each other, dates of birth that clearly differ) is a household's or a shop's, and never
merges them; one person's variants never split her."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from resolver import traits as person
from resolver.config import ResolverConfig
from resolver.state import MAX_SHARED_USERS
from schemas.decisions import LogEntry
from tests.resolver_helpers import Run, ev


def trait(first=None, last=None, dob=None) -> str:
    (t,) = person.event_traits({"first_name": first, "last_name": last, "date_of_birth": dob}, True, True)
    return t


@pytest.mark.parametrize("a,b", [
    (("Katherine", "Smith"), ("Kate", "Smith")), (("Steven",), ("Stephen",)), (("Siobhan",), ("Shivaun",)),
    (("Catherine",), ("Kathryn",)), (("Alexander",), ("Alex",)), (("Jon",), ("John",)), (("J",), ("John",)),
    (("Smith", "John"), ("John", "Smith")),  # entered the other way round
    (("Chen",), ("Tony", "Chen")),  # a lone surname in the first-name field
    (("Mrs Ann",), ("Ann",)),
])
def test_one_persons_spellings_are_compatible(a, b):
    assert person.compatible(trait(*a), trait(*b), person.FIRST_NAME)
    assert person.distinct({trait(*a): 3, trait(*b): 3}, person.FIRST_NAME) == 1


@pytest.mark.parametrize("a,b", [(("Ana",), ("Luis",)), (("Maria", "Garcia"), ("Sofia", "Garcia")),
                                 (("Priya",), ("Rahul",))])
def test_clearly_different_first_names_are_two_people(a, b):
    assert not person.compatible(trait(*a), trait(*b), person.FIRST_NAME)
    assert person.conflict([trait(*a)], [trait(*b)]) == person.FIRST_NAME


def test_a_shared_birthday_keeps_a_used_and_a_legal_name_together():
    """Hao goes by Tony: with the same date of birth the names do not make two people (twins would not
    be told apart either, as before); with different dates they are two whatever the names."""
    assert person.compatible(trait("Tony", "Chen", "1960-10-31"), trait("Hao", None, "1960-10-31"),
                             person.FIRST_NAME)
    assert not person.compatible(trait("Tony", "Chen", "1960-10-31"), trait("Tony", "Chen", "1990-01-05"),
                                 person.DOB)


def test_a_person_counts_once_named_twice_or_about_as_often_as_the_others():
    owner, gift = trait("Shreya", "Patel"), trait("Arun", "Verma")
    assert person.distinct({owner: 5, gift: 1}, person.FIRST_NAME) == 1  # one order for someone else
    assert person.distinct({owner: 5, gift: 2}, person.FIRST_NAME) == 2
    assert person.distinct({owner: 1, gift: 1}, person.FIRST_NAME) == 2  # a landline: each called once
    assert person.distinct({trait(dob="1970-01-02"): 9, trait(dob="2004-05-06"): 1}, person.DOB) == 2


names = st.sampled_from(["ann", "anne", "annie", "bob", "robert", "rob", "luis", "lewis", "kate", "katherine",
                         "maria", "mario", "sofia", "sophie", "j", "smith"])
traits_st = st.builds(lambda f, l, d: f"{d}|{f}|{l}", names, st.sampled_from(["", "smith", "garcia"]),
                      st.sampled_from(["", "1970-01-02", "1970-02-01", "1985-06-07", "2001-12-30"]))


@settings(max_examples=300)
@given(st.dictionaries(traits_st, st.integers(min_value=1, max_value=5), max_size=6),
       st.sampled_from(person.KINDS))
def test_people_counted_are_bounded_and_symmetric(counts, which):
    n = person.distinct(counts, which)
    assert 0 <= n <= len(person.carry(counts, which))
    for a in counts:
        for b in counts:
            assert person.compatible(a, b, which) == person.compatible(b, a, which)
        assert person.compatible(a, a, which)


def the_garcias() -> list:
    """Ana and Luis Garcia share a mailbox; Luis's loyalty card comes in two spellings."""
    return [
        ev("1", 0, channel="web", event_type="signup", email="thegarcias@mail.es", phone="+34 612 345 678",
           attrs={"first_name": "Ana", "last_name": "Garcia"}),
        ev("2", 1, channel="call_center", email="thegarcias@mail.es", loyalty_id="LY-1111-2222",
           attrs={"first_name": "Luis", "last_name": "Garcia"}),
        ev("3", 2, channel="store", email="thegarcias@mail.es", loyalty_id="ly11112222",
           attrs={"first_name": "Luis", "last_name": "Garcia"}),
    ]


def test_a_family_mailbox_is_found_shared_and_does_not_merge_the_family():
    run = Run().feed(the_garcias())
    status = run.views.lookup_node("email:thegarcias@mail.es")
    assert status["status"] == "shared" and "2 different first names" in status["reason"]
    assert run.profile_of("1") != run.profile_of("2")
    assert run.profile_of("2") == run.profile_of("3")  # Luis's card, in two spellings, is one card


def test_one_persons_variants_and_one_gift_order_keep_her_email():
    """Four events name Kate in four spellings; one order names its recipient: her email stays hers."""
    run = Run().feed([
        ev("0", 0, email="kate@x.org", channel="call_center", attrs={"first_name": "Cathy", "last_name": "Moore"}),
        ev("1", 0, email="kate@x.org", attrs={"first_name": "Katherine", "last_name": "Moore"}),
        ev("2", 1, email="kate@x.org", attrs={"first_name": "Kate"}),
        ev("3", 2, email="kate@x.org", phone="+44 20 7946 0018", attrs={"first_name": "Katie", "last_name": "Moore"}),
        ev("4", 3, email="kate@x.org", event_type="purchase", attrs={"first_name": "Tom", "last_name": "Hill"}),
        ev("5", 4, phone="0044 20 7946 0018", attrs={"first_name": "Moore", "last_name": "Katherine"}),
    ])
    assert run.views.lookup_node("email:kate@x.org")["status"] == "found"
    assert len({run.profile_of(e) for e in "012345"}) == 1


def test_an_event_that_brings_two_people_together_is_refused_not_blamed_on_the_later_identifier():
    """A lent loyalty card at a till with Sarah's email: the card's holder is someone else, so the
    card is not linked on that event; Sarah's email stays hers (it is not found shared)."""
    run = Run().feed([
        ev("1", 0, email="sarah@x.org", attrs={"first_name": "Sarah", "last_name": "Bailey"}),
        ev("2", 1, loyalty_id="LY-5555-0001", attrs={"first_name": "Margaret", "last_name": "Okafor"}),
        ev("3", 2, channel="store", loyalty_id="LY55550001", email="sarah@x.org"),
    ])
    assert run.views.lookup_node("email:sarah@x.org")["status"] == "found"
    assert run.profile_of("1") != run.profile_of("2")
    refused = [d for entry in run.log for d in entry if d["type"] == "link_refused"]
    assert [d["node"] for d in refused] == ["email:sarah@x.org"] and "first names" in refused[0]["reason"]


def test_name_conflict_off_leaves_names_to_the_matcher():
    events = [ev("1", 0, email="fam@x.org", attrs={"first_name": "Ana"}),
              ev("2", 1, email="fam@x.org", attrs={"first_name": "Luis"})]
    run = Run(ResolverConfig(name_conflict=False)).feed(events)
    assert run.views.lookup_node("email:fam@x.org")["status"] == "found"
    assert run.profile_of("1") == run.profile_of("2")


def test_a_name_on_an_order_counts_only_once_named_twice():
    owner = trait("Shreya", "Patel")
    (gift,) = person.event_traits({"first_name": "Arun", "last_name": "Verma"}, True, True, hearsay=True)
    assert person.distinct({owner: 1, gift: 1}, person.FIRST_NAME) == 1  # a call would have made two
    assert person.distinct({owner: 1, gift: 2}, person.FIRST_NAME) == 2
    assert person.conflict([gift], [owner]) is None  # an order's name never keeps profiles apart
    assert not person.names(gift, [owner]) and person.names(gift, [trait("Arun")])


JONATHAN = {"first_name": "Jonathan", "last_name": "Williams", "address": "4 Mill Lane", "postcode": "LS6 2AB",
            "city": "Leeds"}


def test_a_present_for_someone_else_neither_splits_nor_links_the_buyer():
    """Katherine, named once, sends Jonathan a present: her email stays hers, and the order's record
    (his name and address) does not link her to Jonathan's own profile."""
    run = Run().feed([
        ev("j1", 0, channel="store", loyalty_id="LY-7777-0001", attrs=JONATHAN),
        ev("j2", 5, channel="store", loyalty_id="LY-7777-0001", attrs=JONATHAN),
        ev("k1", 10, channel="web", event_type="signup", email="kjackson@mail.co.uk",
           attrs={"first_name": "Katherine", "last_name": "Jackson"}),
        ev("k2", 20, channel="web", event_type="purchase", email="kjackson@mail.co.uk", attrs=JONATHAN),
        ev("k3", 30, channel="call_center", email="kjackson@mail.co.uk", phone="+44 113 496 0000",
           attrs={"first_name": "Kate", "last_name": "Jackson"}),
    ])
    assert run.views.lookup_node("email:kjackson@mail.co.uk")["status"] == "found"
    assert run.profile_of("k1") == run.profile_of("k2") == run.profile_of("k3")
    assert run.profile_of("k2") != run.profile_of("j1")
    assert not [d for entry in run.log for d in entry if d["type"] in ("probable_link", "possible_match")]


def test_the_same_present_as_a_call_would_be_a_second_person():
    """The rule is the event's type: the same two names on a call centre contact make the email shared."""
    run = Run().feed([
        ev("k1", 10, channel="web", event_type="signup", email="kjackson@mail.co.uk",
           attrs={"first_name": "Katherine", "last_name": "Jackson"}),
        ev("k2", 20, channel="call_center", event_type="call", email="kjackson@mail.co.uk", attrs=JONATHAN),
    ])
    assert run.views.lookup_node("email:kjackson@mail.co.uk")["status"] == "shared"


@pytest.mark.parametrize("channel,extra", [("store", {}), ("web", {"date_of_birth": "1988-02-03"})])
def test_an_order_in_person_or_with_a_date_of_birth_names_the_buyer(channel, extra):
    """At a till the buyer is there, and a date of birth comes from the buyer's account: not hearsay."""
    run = Run().feed([
        ev("k1", 10, channel="web", event_type="signup", email="kjackson@mail.co.uk",
           attrs={"first_name": "Katherine", "last_name": "Jackson", "date_of_birth": "1980-05-06"}),
        ev("k2", 20, channel=channel, event_type="purchase", email="kjackson@mail.co.uk", attrs={**JONATHAN, **extra}),
    ])
    assert run.views.lookup_node("email:kjackson@mail.co.uk")["status"] == "shared"


def test_an_event_on_a_family_mailbox_that_names_one_of_the_family_is_theirs():
    """After the Garcias' mailbox is found shared, an email naming Luis goes to Luis; one naming nobody
    of theirs, or a name two of them could have, stays apart."""
    run = Run().feed([
        *the_garcias(),
        ev("4", 3000, channel="email", event_type="message", email="thegarcias@mail.es",
           attrs={"first_name": "Luis"}),
        ev("5", 3001, channel="email", event_type="message", email="thegarcias@mail.es",
           attrs={"first_name": "Marta"}),
    ])
    assert run.views.lookup_node("email:thegarcias@mail.es")["status"] == "shared"
    assert run.profile_of("4") == run.profile_of("2") != run.profile_of("1")
    assert run.profile_of("5") not in {run.profile_of("1"), run.profile_of("2")}
    (named,) = [d for e in run.log for d in e if d.get("attributed", {}).get("rule") == "same_name"]
    assert named["event_id"] == "4" and named["attributed"]["node"] == "loyalty_id:11112222"
    explained = run.views.explain(run.profile_of("4"))
    assert any("it names this customer" in line for line in explained["summary"])
    for seq, entry in enumerate(run.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})


def test_a_mistyped_date_of_birth_is_outweighed_by_the_full_name_a_generation_is_not():
    """Jane Doe's email with two dates of birth three years apart stays hers (one is mistyped); the
    Smiths' landline, John Smith and John Smith born 30 years apart, is a father's and a son's."""
    jane = Run().feed([
        ev("1", 0, email="jane@x.org", attrs={"first_name": "Jane", "last_name": "Doe", "date_of_birth": "1985-03-07"}),
        ev("2", 9, email="jane@x.org", phone="+44 20 7946 0018",
           attrs={"first_name": "Jane", "last_name": "Doe", "date_of_birth": "1988-11-02"}),
    ])
    assert jane.views.lookup_node("email:jane@x.org")["status"] == "found"
    assert jane.profile_of("1") == jane.profile_of("2")
    smiths = Run().feed([
        ev("1", 0, phone="+44 20 7946 0019", attrs={"first_name": "John", "last_name": "Smith", "date_of_birth": "1960-03-07"}),
        ev("2", 9, phone="+44 20 7946 0019", attrs={"first_name": "John", "last_name": "Smith", "date_of_birth": "1990-11-02"}),
    ])
    assert smiths.views.lookup_node("phone:+442079460019")["status"] == "shared"
    assert person.distinct({trait("Jane", "Doe", "1985-03-07"): 1, trait("Jane", "Roe", "1988-11-02"): 1}, person.DOB) == 2


def test_a_person_is_every_spelling_of_them_not_only_the_first():
    spellings = {trait("Camille"): 2, trait("Camille", "Rousseau"): 2, trait("Rousseau"): 2}
    assert person.distinct(spellings, person.FIRST_NAME) == 1  # "Rousseau" is Camille Rousseau's surname
    assert person.distinct({trait("John"): 2, trait("James"): 2, trait("J"): 2}, person.FIRST_NAME) == 2


def test_an_order_is_matched_on_attributes_only_when_it_names_the_holder():
    """Maria's email never named her; her order for Katherine does not link Maria to Katherine."""
    katherine = {"first_name": "Katherine", "last_name": "Lopez", "address": "9 Calle Mayor", "postcode": "28013",
                 "city": "Madrid"}
    run = Run().feed([
        ev("k1", 0, channel="store", loyalty_id="LY-2222-0001", attrs=katherine),
        ev("k2", 5, channel="store", loyalty_id="LY-2222-0001", attrs=katherine),
        ev("m1", 10, channel="email", event_type="open", email="maria.g@mail.es"),
        ev("m2", 20, channel="web", event_type="purchase", email="maria.g@mail.es", attrs=katherine),
    ])
    assert run.profile_of("m1") == run.profile_of("m2") != run.profile_of("k1")


FIRST_NAMES = ["Ada", "Bea", "Cai", "Dev", "Eli", "Fay", "Gus", "Hal", "Ida", "Jon", "Kit", "Lea", "Max", "Ned",
               "Oda", "Pia", "Quy", "Rex"]


@pytest.mark.parametrize("customers", [MAX_SHARED_USERS - 1, MAX_SHARED_USERS])
def test_a_name_is_attributed_only_among_all_the_customers_an_identifier_had(customers):
    """A shop's kiosk used by more customers than are remembered: one named among those remembered may not
    be the only one so named, so an anonymous event naming her is nobody's; among a few, it is hers."""
    run = Run().feed([ev(f"c{k}", k, device_id="kiosk-9", loyalty_id=f"3000{k:02d}",
                         attrs={"first_name": FIRST_NAMES[k]}) for k in range(customers)] +
                     [ev("named", 600, device_id="kiosk-9", attrs={"first_name": "Cai"})])
    assert run.views.lookup_node("device_id:kiosk-9")["status"] == "shared"
    named = [d for e in run.log for d in e if d.get("attributed", {}).get("rule") == "same_name"]
    if customers < MAX_SHARED_USERS:
        assert [d["attributed"]["node"] for d in named] == ["loyalty_id:300002"]
        assert run.profile_of("named") == run.profile_of("c2")
    else:
        assert not named
        assert run.profile_of("named") not in {run.profile_of(f"c{k}") for k in range(customers)}
