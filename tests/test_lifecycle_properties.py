"""Properties of the customer lifecycle over any sequence of events and a person's decisions (reviews
accepted or rejected, unmerges, lifts): the changelog applied to an empty table is always the views'
identifier -> profile mapping; replay gives the same state; no ban ever has both sides in one profile."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.changelog import Table, changes_of
from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from resolver.errors import IdresError
from tests.resolver_helpers import Run, ev, one_card

AT = "2025-02-01T10:00:00.000000Z"
PEOPLE = [
    {"first_name": "Jane", "last_name": "Doe", "date_of_birth": "1985-03-07", "postcode": "SW1A 1AA",
     "address": "12 High Street", "city": "London"},
    {"first_name": "John", "last_name": "Doe", "date_of_birth": "1980-01-02", "postcode": "SW1A 1AA",
     "address": "12 High Street", "city": "London"},
    {"first_name": "Janet", "last_name": "Doe", "date_of_birth": "1985-03-07", "postcode": "SW1A 1AA"},
    {"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"},
]
POOL = ([("email", f"m{i}@mailbox.org") for i in range(4)] + [("phone", f"+4477009001{i:02d}") for i in range(3)]
        + [("loyalty_id", f"L-{i}") for i in range(2)] + [("device_id", f"dev{i}") for i in range(2)])

event_st = st.tuples(st.lists(st.sampled_from(POOL), max_size=3, unique=True),
                     st.one_of(st.none(), st.sampled_from(PEOPLE)), st.integers(-3, 5))
step_st = st.one_of(
    st.tuples(st.just("event"), event_st),
    st.tuples(st.just("event"), event_st),
    st.tuples(st.just("event"), event_st),
    st.tuples(st.just("event"), event_st),
    st.tuples(st.just("review"), st.tuples(st.integers(0, 1000), st.booleans())),
    st.tuples(st.just("unmerge"), st.tuples(st.integers(0, 1000), st.integers(1, 1000))),
    st.tuples(st.just("lift"), st.integers(0, 1000)),
)


def _apply(run: Run, decisions: list[dict]) -> None:
    run.views.apply_entry(len(run.log), decisions)
    run.log.append(decisions)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_st, min_size=10, max_size=50), one_card_rules=st.booleans())
def test_changelog_replay_and_bans_hold_for_any_lifecycle(steps, one_card_rules):
    run = Run(one_card() if one_card_rules else None)
    minute = 0
    for i, (kind, arg) in enumerate(steps):
        state = run.resolver.state
        try:
            if kind == "event":
                ids, person, dt = arg
                if not ids and person is None:
                    continue
                minute += dt
                run.feed([ev(f"e{i}", minute, attrs=person, **dict(ids))])
            elif kind == "review" and state.reviews:
                rid = sorted(state.reviews)[arg[0] % len(state.reviews)]
                _apply(run, run.resolver.decide_review(rid, arg[1], "ana", AT))
            elif kind == "unmerge":
                profiles = sorted((p for p in state.profiles.values() if len(p.nodes) > 1), key=lambda p: p.id)
                if profiles:
                    prof = profiles[arg[0] % len(profiles)]
                    keys = sorted(state.node_keys[n] for n in prof.nodes)
                    named = keys[:1 + arg[1] % (len(keys) - 1)]
                    _apply(run, run.resolver.unmerge(prof.id, [tuple(k.split(":", 1)) for k in named], "ana",
                                                     f"2025-02-01T10:{i:02d}:00.000000Z"))
            elif kind == "lift" and state.bans:
                _apply(run, run.resolver.lift_ban(sorted(state.bans)[arg % len(state.bans)], "bo", AT))
        except IdresError:
            pass  # (a command that does not apply: refused without changing anything)
    views, state = run.views, run.resolver.state
    table = Table()
    for seq, entry in enumerate(run.log):
        table.apply(changes_of(seq, entry))
    assert table.owner == {views.node_keys[i]: pid for i, pid in enumerate(views.node_profile)
                           if pid is not None and i not in views.shared}
    again = Resolver(run.resolver.config or ResolverConfig(), ResolverState())
    for entry in run.log:
        again.apply_all(entry)
    assert (again.state.node_profile, again.state.aliases, again.state.bans) == \
        (state.node_profile, state.aliases, state.bans)
    for one, two, _ in state.bans.values():
        assert not ({state.node_profile[n] for n in one} - {None}) & ({state.node_profile[n] for n in two} - {None})
