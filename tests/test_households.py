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
    steps = len(run.views.ev_nodes) + sum(1 for p in run.views.profiles.values() if p.nodes and p.events)
    assert len(calls) >= steps // PACE_EVERY
