"""What applying decisions touches (``resolver.touch``): every part of the state that differs before and after
an event's decisions, or a person's command's, is among the parts noted."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from resolver.config import ResolverConfig
from resolver.engine import Resolver
from resolver.owner import stores_of
from resolver.touch import Touched
from streams.pipeline import ACCEPTED, RecordPipeline
from tests.test_key_shards import _a_command
from tests.test_shards import corpus, with_noise


def _parts(state) -> dict:
    """Every part of ``state`` by kind and name, as one owner holds them (``stores_of``)."""
    store = stores_of(state, 1)[0]
    out = {}
    out.update({("k", k): p for k, p in store.nodes.items()})
    out.update({("p", k): p for k, p in store.profiles.items()})
    out.update({("a", k): p for k, p in store.aliases.items()})
    out.update({("b", k): p for k, p in store.blocks.items()})
    # (a value's count; and its count at the epoch's start, which an owner reads only within that epoch)
    out.update({("v", k): (v[0], v[1] if v[2] == state.tf_epoch else None) for k, v in store.values.items()})
    return out


def _differing(before: dict, after: dict) -> set:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def _noted(touched: Touched, state) -> set:
    nodes, profiles = touched.names(state)
    return ({("k", k) for k in nodes} | {("p", p) for p in profiles} | {("a", p) for p in profiles} |
            {("b", b) for b in touched.blocks} | {("v", v) for v in touched.values})


def _check_every_event(records: list[bytes], config: ResolverConfig, commands_after: int = 0,
                       rnd: random.Random = random.Random(0)) -> set[str]:
    """Decides ``records`` in order, one event at a time with what it touches noted, and checks each event's
    differing parts against what was noted; then as many of a person's commands; the kinds of decisions met."""
    from resolver.errors import IdresError
    from streams.commands import decide

    resolver = Resolver(config)
    pipeline = RecordPipeline(resolver)
    met: set[str] = set()
    for raw in records:
        before = _parts(resolver.state)
        epoch = resolver.state.tf_epoch
        touched = Touched()
        resolver.track(touched)
        outcome = pipeline.process(raw)
        resolver.track(None)
        if outcome.kind == ACCEPTED:
            met |= {d["type"] for d in outcome.decisions}
        after = _parts(resolver.state)
        if resolver.state.tf_epoch != epoch:  # (a new epoch: no count at its start is read from the one before)
            before = {k: (v[0], None) if k[0] == "v" else v for k, v in before.items()}
        missed = _differing(before, after) - _noted(touched, resolver.state)
        assert not missed, (outcome.decisions if outcome.kind == ACCEPTED else outcome.kind, sorted(missed)[:5])
    for at in range(commands_after):
        command = _a_command(resolver.state, rnd, at)
        if command is None:
            break
        before = _parts(resolver.state)
        touched = Touched()
        resolver.track(touched)
        try:
            entry = decide(resolver, command)
        except IdresError:
            continue
        finally:
            resolver.track(None)
        met |= {d["type"] for d in entry}
        missed = _differing(before, _parts(resolver.state)) - _noted(touched, resolver.state)
        assert not missed, (entry, sorted(missed)[:5])
    return met


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(40, 260), st.integers(8, 80))
def test_every_part_an_event_changes_is_among_what_its_decisions_touched(seed, n, people):
    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    _check_every_event(records, ResolverConfig(), commands_after=6, rnd=random.Random(seed))


def test_what_is_touched_is_checked_on_every_kind_of_decision():
    """The property above on a fixed corpus that meets every kind of decision an event or a command makes
    (so it cannot pass by meeting none), erasures aside: an erasure notes ``everything``."""
    records = with_noise(corpus(random.Random(11), 600, people=120), random.Random(11))
    met = _check_every_event(records, ResolverConfig(), commands_after=40, rnd=random.Random(5))
    assert {"interaction_recorded", "profile_created", "identifiers_attached", "identifiers_linked",
            "profiles_merged", "identifier_flagged", "profile_split", "profile_renamed", "link_refused",
            "probable_link", "possible_match", "model_estimated", "review_decided", "connection_banned",
            "ban_lifted"} <= met


def test_an_erasure_notes_that_it_touches_everything():
    from streams.commands import decide

    resolver = Resolver(ResolverConfig())
    RecordPipeline(resolver).process(b'{"event_id": "e1", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", '
                                     b'"event_type": "visit", "identifiers": {"email": "a@mailbox.org"}}')
    touched = Touched()
    resolver.track(touched)
    decide(resolver, {"command": "erase", "identifiers": [["email", "a@mailbox.org"]], "by": "ana",
                      "decided_at": "2025-01-02T00:00:00Z"})
    assert touched.everything
