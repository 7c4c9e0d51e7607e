"""Properties of the resolver that must hold for any input, checked with hypothesis."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from projections.customer import CustomerViews
from resolver import graph, naming
from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from tests.resolver_helpers import Run, ev, one_card

ID_TYPES = ("email", "phone", "loyalty_id", "device_id")


def _value(id_type: str, n: int) -> str:
    return {
        "email": f"person{n}@mailbox.org",
        "phone": f"+1415555{n:04d}",
        "loyalty_id": f"L{n + 1:05d}",  # (L00000 is all zeros: a placeholder card)
        "device_id": f"device-{n}",
    }[id_type]


@st.composite
def clean_events(draw):
    """Events of distinct people, each with at most one value per identifier type (no traps)."""
    people = draw(st.integers(min_value=1, max_value=6))
    events = []
    for i in range(draw(st.integers(min_value=1, max_value=30))):
        person = draw(st.integers(min_value=0, max_value=people - 1))
        types = draw(st.lists(st.sampled_from(ID_TYPES), min_size=1, max_size=4, unique=True))
        events.append(ev(f"e{i}", i, **{t: _value(t, person) for t in types}))
    return events


def _components(events) -> set[frozenset[str]]:
    """Connected components of events through shared identifiers: the answer without any guard."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for e in events:
        keys = [f"{t}:{v}" for t, v in e.identifiers.items()]
        find("event:" + e.event_id)
        for k in keys:
            parent[find(k)] = find("event:" + e.event_id)
    groups: dict[str, set[str]] = {}
    for e in events:
        groups.setdefault(find("event:" + e.event_id), set()).add(e.event_id)
    return {frozenset(g) for g in groups.values()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_events(), st.randoms(use_true_random=False))
def test_clean_data_clusters_do_not_depend_on_arrival_order(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = Run().feed(events), Run().feed(shuffled)
    assert a.partition() == b.partition() == _components(events)
    # and the same names: a cluster is named by its earliest event, whatever arrived first
    by_time = Run().feed(sorted(events, key=lambda e: (e.occurred_at, e.event_id)))
    assert a.profile_ids() == b.profile_ids() == by_time.profile_ids()
    # every name given on the way still leads to the profile of the event it was given for
    for entry in b.log:
        for d in entry:
            if d["type"] == "profile_created":
                assert b.views.resolve(d["profile_id"]) == b.profile_of(d["event_id"])


def test_a_late_older_event_renames_its_cluster_and_the_old_id_still_leads_there():
    later = [ev("e2", 10, email="jo@mailbox.org"), ev("e3", 20, email="jo@mailbox.org", phone="+14155550100")]
    run = Run().feed(later)
    before = run.profile_of("e2")
    # an older event, on the phone only, arrives last
    run.feed([ev("e1", 1, phone="+14155550100")])
    after = run.profile_of("e1")
    assert after != before and {run.profile_of(e) for e in ("e1", "e2", "e3")} == {after}
    assert after == Run().feed([ev("e1", 1, phone="+14155550100"), *later]).profile_of("e1")
    renamed = [d for d in run.log[-1] if d["type"] == "profile_renamed"]
    assert [(d["profile_id"], d["new_profile_id"]) for d in renamed] == [(before, after)]
    assert run.views.resolve(before) == after and run.resolver.state.resolve_alias(before) == after


@st.composite
def messy_events(draw):
    """Identifiers drawn from small pools so that strangers collide, with dates of birth."""
    events = []
    for i in range(draw(st.integers(min_value=1, max_value=40))):
        types = draw(st.lists(st.sampled_from(ID_TYPES), min_size=1, max_size=4, unique=True))
        ids = {t: _value(t, draw(st.integers(min_value=0, max_value=4))) for t in types}
        attrs = {}
        if draw(st.booleans()):
            attrs["date_of_birth"] = draw(st.sampled_from(["1980-01-01", "1990-02-02", "2000-03-03"]))
        events.append(ev(f"e{i}", draw(st.integers(min_value=0, max_value=500)), attrs=attrs, **ids))
    return events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_events())
def test_guards_hold_whatever_the_input(events):
    run = Run(one_card()).feed(events)  # strict limits: a replaced card's are checked when it joins
    state = run.resolver.state
    config = run.resolver.config
    for prof in state.profiles.values():
        types: dict[str, int] = {}
        for idx in prof.nodes:
            assert idx not in state.shared
            assert state.node_profile[idx] == prof.id
            types[state.node_types[idx]] = types.get(state.node_types[idx], 0) + 1
        for t, n in types.items():
            limit = config.rule(t).max_per_profile
            assert limit is None or n <= limit, (prof.id, t, n)
        assert len({t.split("|")[0] for t in prof.traits} - {""}) <= 1  # one person's date of birth
        if prof.nodes:  # one connected component of evidence edges
            assert len(graph.components(run.resolver.state, prof.nodes)) == 1
        # the earliest first use the fold keeps is that of its identifiers now (merges choose by it)
        assert prof.first == naming.first_of(state, prof.nodes), prof.id
    # every event sits in exactly one profile of the views
    assert sorted(i for p in run.views.profiles.values() for i in p.events) == list(range(len(events)))


def _state_summary(state: ResolverState):
    return (
        {k: state.node_profile[i] for k, i in state.node_index.items()},
        {state.node_keys[i] for i in state.shared},
        {pid: ({state.node_keys[i] for i in p.nodes}, p.created_at, frozenset(p.traits), dict(p.counts))
         for pid, p in state.profiles.items()},
        {state.node_keys[i]: dict(t) for i, t in state.node_traits.items()},
        {state.node_keys[i]: u for i, u in state.session_last.items()},
        {state.node_keys[i]: list(w) for i, w in state.session_pending.items()},
        dict(state.aliases),
        {state.node_keys[a]: {state.node_keys[b]: e for b, e in nb.items()} for a, nb in state.adj.items()},
        set(state.seen_events),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_events())
def test_replaying_the_log_rebuilds_the_same_state_and_views(events):
    run = Run().feed(events)
    rebuilt = Resolver(ResolverConfig(), ResolverState())
    views = CustomerViews()
    for seq, entry in enumerate(run.log):
        rebuilt.apply_all(entry)
        views.apply_entry(seq, entry)
    assert _state_summary(rebuilt.state) == _state_summary(run.resolver.state)
    assert views.digest() == run.views.digest()
    # and deciding the same events again from scratch gives the same decisions, byte for byte
    assert Run().feed(events).log == run.log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_events(), st.randoms(use_true_random=False))
def test_redelivered_events_change_nothing(events, rnd):
    run = Run().feed(events)
    digest, entries = run.views.digest(), len(run.log)
    again = list(events)
    rnd.shuffle(again)
    run.feed(again)
    assert len(run.log) == entries
    assert run.views.digest() == digest
