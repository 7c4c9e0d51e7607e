"""Slices: each chain of a window decided on the slice of its footprint alone gives the log of deciding every
event in order on the whole state (``resolver.slices``)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from resolver import epochs, footprint, slices
from resolver.config import ResolverConfig
from resolver.engine import Resolver
from schemas.channel import ChannelEvent
from tests.test_shards import corpus, in_order


def on_slices(events: list[ChannelEvent], config: ResolverConfig, window: int,
              order: random.Random) -> tuple[list[list[dict]], int, list[int]]:
    """The log of deciding ``events`` window by window, each chain on a fresh resolver holding only the slice
    of the chain's footprint (the chains in a random order); how many chains asked about a profile name the
    slice did not hold and the whole state did (decided again on the whole state); the slices' sizes."""
    whole = Resolver(config)
    out: list[list[dict]] = []
    asked_elsewhere = 0
    sizes: list[int] = []
    i = 0
    while i < len(events):
        position = len(whole.state.seen_events)
        take = events[i:i + epochs.room(position, window)]
        begun = whole.begin_epoch(position, take[0]) if epochs.starts(position) else []
        reads = [whole.reads(e) for e in take]
        chains = footprint.chains([r[0] for r in reads])
        order.shuffle(chains)
        decided: dict[int, list[dict]] = {}
        for chain in chains:
            part = slices.extract(whole.state, set().union(*(reads[k][0] for k in chain)),
                                  [v for k in chain for v in reads[k][1]], position)
            sizes.append(len(part.node_keys))
            resolver = Resolver(config, state=part)
            for k in chain:
                decided[k] = resolver.decide(take[k], position=position + k)
            if slices.unknown_names(part, whole.state):
                asked_elsewhere += 1
        if asked_elsewhere:  # (what a driver does then: the window decided in order on the whole state)
            decided = {k: whole.decide(e, position=position + k) for k, e in enumerate(take)}
        else:
            for k in range(len(take)):
                whole.apply_all(decided[k])
        for k in range(len(take)):
            out.append(begun + decided[k] if k == 0 else decided[k])
        i += len(take)
    return out, asked_elsewhere, sizes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(40, 260), st.integers(1, 300), st.integers(8, 120),
       st.randoms(use_true_random=False))
def test_chains_decided_on_their_slices_give_the_log_of_deciding_in_order(seed, n, window, people, rnd):
    events = corpus(random.Random(seed), n, people=people)
    config = ResolverConfig()
    got, _, _ = on_slices(events, config, window, rnd)
    assert got == in_order(events, config)


def test_slices_of_a_long_corpus_where_every_guard_acts():
    events = corpus(random.Random(3), 1500, people=120)
    config = ResolverConfig()
    expected = in_order(events, config)
    kinds = {d["type"] for entry in expected for d in entry}
    assert {"identifier_flagged", "link_refused", "profile_split", "probable_link", "possible_match",
            "profiles_merged", "model_estimated", "profile_renamed"} <= kinds
    got, asked_elsewhere, sizes = on_slices(events, config, 97, random.Random(4))
    assert got == expected and asked_elsewhere == 0
    whole = Resolver(config)
    for e in events:
        whole.decide(e)
    assert max(sizes) < len(whole.state.node_keys)


def _visit(eid: str, minute: int, **ids: str) -> ChannelEvent:
    return ChannelEvent(event_id=eid, occurred_at=f"2025-03-01T10:{minute:02d}:00Z", channel="web",
                        event_type="visit", identifiers=ids)


def test_a_slice_holds_the_events_customers_and_not_the_others():
    resolver = Resolver(ResolverConfig())
    resolver.decide(_visit("a", 0, email="ann@x.org", phone="+14155550100"))
    resolver.decide(_visit("b", 1, email="bob@x.org", phone="+14155550199"))
    event = _visit("c", 2, email="ann@x.org")
    items, values = resolver.reads(event)
    part = slices.extract(resolver.state, items, values)
    assert sorted(part.node_keys) == ["email:ann@x.org", "phone:+14155550100"]
    ann = resolver.state.node_profile[resolver.state.node_index["email:ann@x.org"]]
    assert list(part.profiles) == [ann]
    assert part.events_before == 2
    # deciding on the slice changes the slice, not the whole state
    on_part = Resolver(ResolverConfig(), state=part).decide(event, position=2)
    assert on_part == Resolver(ResolverConfig(), state=slices.extract(resolver.state, items, values)).decide(
        event, position=2)
    assert "c" not in resolver.state.seen_events
    assert on_part == resolver.decide(event)


def test_a_name_asked_of_a_slice_and_held_elsewhere_is_reported():
    resolver = Resolver(ResolverConfig())
    resolver.decide(_visit("a", 0, email="ann@x.org"))
    resolver.decide(_visit("b", 1, email="bob@x.org"))
    st_ = resolver.state
    bob = st_.node_profile[st_.node_index["email:bob@x.org"]]
    items, values = resolver.reads(_visit("c", 2, email="ann@x.org"))
    part = slices.extract(st_, items, values)
    assert bob not in part.profiles  # (asked: a slice cannot tell whether the name is free)
    assert "p_nobody" not in part.aliases
    assert slices.unknown_names(part, st_) == [bob]
    ann = st_.node_profile[st_.node_index["email:ann@x.org"]]
    assert ann in part.profiles and slices.unknown_names(part, st_) == [bob]
