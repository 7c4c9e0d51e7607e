"""Households: the people a shared home identifier (a family mailbox, a landline, a family tablet) or an
address keeps apart are related, not merged; a shop's till is no home."""

from __future__ import annotations

import duckdb

from projections.households import MAX_MEMBERS, PACE_EVERY, households
from projections.snapshot import write_snapshot
from tests.resolver_helpers import Run, ev


def garcia_family() -> list:
    return [
        ev("ana-1", 0, channel="web", event_type="signup", phone="+34 612 345 678", attrs={"first_name": "Ana"}),
        ev("ana-2", 1, channel="web", email="thegarcias@mail.es", phone="+34 612 345 678", social_handle="@ana.g",
           attrs={"first_name": "Ana", "last_name": "Garcia"}),
        ev("luis-1", 2, channel="store", loyalty_id="LY-1111-2222", attrs={"first_name": "Luis", "last_name": "Garcia"}),
        ev("luis-2", 3, channel="call_center", email="thegarcias@mail.es", loyalty_id="ly11112222",
           attrs={"first_name": "Luis", "last_name": "Garcia"}),
    ]


def test_a_family_mailbox_makes_a_household_not_a_customer():
    run = Run().feed(garcia_family())
    ana, luis = run.profile_of("ana-1"), run.profile_of("luis-1")
    assert ana != luis
    houses = households(run.views)
    assert houses[ana] == houses[luis]
    assert houses[ana]["members"] == sorted([ana, luis]) and houses[ana]["via"] == ["email:thegarcias@mail.es"]
    assert houses[ana]["household_id"].startswith("h_")


def test_a_till_used_by_many_is_no_home_and_homes_do_not_chain():
    events = [ev(f"c{i}", i, channel="store", device_id="till-3", email=f"c{i}@x.org",
                 attrs={"first_name": name}) for i, name in enumerate(
        ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jo", "Kim"])]
    run = Run().feed(events)
    assert run.views.lookup_node("device_id:till-3")["status"] == "shared"
    assert households(run.views) == {}
    assert MAX_MEMBERS < 11


def test_the_households_table_of_the_snapshot(tmp_path):
    run = Run().feed(garcia_family())
    out = tmp_path / "s.duckdb"
    write_snapshot(run.views, out)
    with duckdb.connect(str(out), read_only=True) as con:
        rows = con.execute("SELECT household_id, profile_id, members, via FROM households ORDER BY profile_id").fetchall()
    assert [r[1] for r in rows] == sorted([run.profile_of("ana-1"), run.profile_of("luis-1")])
    assert {r[0] for r in rows} == {households(run.views)[rows[0][1]]["household_id"]}
    assert all(r[2] == 2 and r[3] == ["email:thegarcias@mail.es"] for r in rows)


def test_a_paced_computation_finds_the_same_households_and_lets_others_in_often():
    """The lookup API computes households in slices (``pace`` called between them): the result is the
    unpaced one, and no slice is longer than ``PACE_EVERY`` steps."""
    from schemas.channel import ChannelEvent
    from streams.synthetic import SyntheticConfig, generate_lines

    events = []
    for line, person in generate_lines(SyntheticConfig(people=400, seed=2)):
        if person is not None:
            try:
                events.append(ChannelEvent.model_validate_json(line))
            except ValueError:
                pass  # (a malformed line of the generator's)
    run = Run().feed(events)
    calls = []
    paced = households(run.views, pace=lambda: calls.append(1))
    assert paced == households(run.views) and paced  # (the generated people have households)
    # (a step: an event looked at for a shared identifier, or, with attributes, for an address)
    steps = len(run.views.ev_nodes) + sum(1 for a in run.views.ev_attrs if a)
    assert len(calls) >= steps // PACE_EVERY


def test_no_events_make_no_households_paced_or_not():
    from projections.customer import CustomerViews

    calls = []
    assert households(CustomerViews()) == {} == households(CustomerViews(), pace=lambda: calls.append(1))
    assert calls == []


def _golden_pairs(views, customers) -> dict:
    """What households read of each customer's golden record (``golden_values``): address and postcode."""
    return {pid: (v["address"], v["postcode"]) for pid, v in views.golden_values(("address", "postcode"), customers).items()
            if "address" in v and "postcode" in v}


def _golden_homes(views) -> dict:
    """Each customer's golden address and postcode as the customer's answer gives them (``golden_record``)."""
    out = {}
    for pid, prof in views.profiles.items():
        if prof.nodes and prof.events:
            golden = views.golden_record(prof)
            if "address" in golden and "postcode" in golden:
                out[pid] = (golden["address"]["value"], golden["postcode"]["value"])
    return out


def test_the_address_a_household_is_tied_by_is_the_golden_record_s_after_merges_splits_and_an_erasure(tmp_path):
    """Households read the addresses from the events that carry one, credited to their profiles, not from
    each customer's golden record: the same addresses, whatever merged, split or was erased (people of the
    generator move house, give addresses on untrusted channels, share homes and devices)."""
    from streams.embedded import EmbeddedEngine
    from streams.synthetic import SyntheticConfig, write_dataset

    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=600, seed=5))
    with EmbeddedEngine(tmp_path / "data") as engine:
        engine.ingest_file(events)
        views = engine.views
        expected = _golden_homes(views)
        customers = {pid for pid, prof in views.profiles.items() if prof.nodes and prof.events}
        assert _golden_pairs(views, customers) == expected
        assert len(expected) >= 50  # (the generator's people give addresses)
        assert sum(len(views.profiles[pid].events) > 1 for pid in expected) >= 25  # (profiles of several events)
        # an erasure: a customer with an address whose identifiers are forgotten, events and attributes with them
        pid = next(p for p in sorted(expected) if views.identifiers_of(views.profiles[p]).get("email"))
        email = views.identifiers_of(views.profiles[pid])["email"][0]
        engine.erase([("email", email)], "dpo")
        views = engine.views
        customers = {p for p, prof in views.profiles.items() if prof.nodes and prof.events}
        after = _golden_pairs(views, customers)
        assert after == _golden_homes(views) and pid not in after


def test_the_address_a_household_is_tied_by_is_the_trusted_one_as_in_the_golden_record():
    """An address given later on an untrusted channel (social) does not replace one given in a store; an
    untrusted one counts where no trusted channel gave any."""

    run = Run().feed([
        ev("a1", 0, channel="store", email="ana@x.org", attrs={"first_name": "Ana", "address": "1 High St",
                                                               "postcode": "AB1 2CD"}),
        ev("a2", 5, channel="social", email="ana@x.org", attrs={"address": "9 Low Rd", "postcode": "ZZ9 9ZZ"}),
        ev("b1", 1, channel="social", email="bo@x.org", attrs={"first_name": "Bo", "address": "9 Low Rd",
                                                               "postcode": "ZZ9 9ZZ"}),
        ev("b2", 2, channel="web", email="bo@x.org", attrs={"address": "2 Mill Ln"}),
    ])
    ana, bo = run.profile_of("a1"), run.profile_of("b1")
    customers = {ana, bo}
    assert _golden_pairs(run.views, customers) == {ana: ("1 High St", "AB1 2CD"), bo: ("2 Mill Ln", "ZZ9 9ZZ")}
    assert _golden_pairs(run.views, customers) == _golden_homes(run.views)


def test_households_rest_at_least_every_pace_every_customers_while_reading_addresses(monkeypatch):
    """The lookup API rests at each ``pace``: no stretch between two may canonicalize more than
    ``PACE_EVERY`` customers' addresses."""
    import projections.households as module

    events = [ev(f"c{i}", i, channel="store", email=f"c{i}@x.org",
                 attrs={"first_name": f"N{i}", "address": f"{i // 2} High St", "postcode": f"AB{i // 2} 1CD"})
              for i in range(3 * PACE_EVERY + 7)]
    run = Run().feed(events)
    unpaced = households(run.views)
    stretch, longest = [0], [0]
    real = module.canonical_address

    def counted(value):
        stretch[0] += 1
        longest[0] = max(longest[0], stretch[0])
        return real(value)

    monkeypatch.setattr(module, "canonical_address", counted)
    houses = households(run.views, pace=lambda: stretch.__setitem__(0, 0))
    assert houses == unpaced and houses  # (pacing changes nothing; two customers at each address make homes)
    assert 0 < longest[0] <= PACE_EVERY
