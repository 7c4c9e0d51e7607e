"""Small builders shared by the resolver tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional

from projections.customer import CustomerViews
from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from schemas.channel import ChannelEvent

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def one_card() -> ResolverConfig:
    """The built-in rules for a business whose customers hold one loyalty card each, ever (no card
    replaces a lost one: ``successive`` off)."""
    from dataclasses import replace

    config = ResolverConfig()
    rules = dict(config.identifier_types)
    rules["loyalty_id"] = replace(rules["loyalty_id"], max_per_profile=1, successive=False)
    for t in ("email", "phone"):
        rules[t] = replace(rules[t], max_cooccurring={**rules[t].max_cooccurring, "loyalty_id": 1})
    return replace(config, identifier_types=rules)


def ev(event_id: str, minute: int = 0, channel: str = "web", event_type: str = "visit",
       attrs: Optional[dict[str, str]] = None, payload: Optional[dict[str, Any]] = None, **ids: str) -> ChannelEvent:
    return ChannelEvent(event_id=event_id, occurred_at=T0 + timedelta(minutes=minute), channel=channel,
                        event_type=event_type, identifiers=ids, attributes=attrs or {}, payload=payload or {})


class Run:
    """A resolver plus the views folded from exactly what it decided, like the embedded driver."""

    def __init__(self, config: Optional[ResolverConfig] = None):
        self.resolver = Resolver(config or ResolverConfig(), ResolverState())
        self.views = CustomerViews()
        self.log: list[list[dict[str, Any]]] = []

    def feed(self, events: Iterable[ChannelEvent]) -> "Run":
        for e in events:
            decisions = self.resolver.decide(e)
            if decisions:
                self.views.apply_entry(len(self.log), decisions)
                self.log.append(decisions)
        return self

    def profile_of(self, event_id: str) -> str:
        return self.views.ev_profile[self.views.ev_id.index(event_id)]

    def partition(self) -> set[frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for eid, pid in zip(self.views.ev_id, self.views.ev_profile):
            groups.setdefault(pid, set()).add(eid)
        return {frozenset(g) for g in groups.values()}

    def profile_ids(self) -> dict[str, str]:
        return dict(zip(self.views.ev_id, self.views.ev_profile))
