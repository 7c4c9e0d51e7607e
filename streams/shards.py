"""Deciding on several shards at once, with the result of deciding every event in order.

The events are cut into *windows*: consecutive accepted events within one epoch (``resolver.epochs``). A
*planner*, holding the state as it stands before the window, begins the epoch if the window starts one,
computes each event's footprint and groups the window's events into chains (``resolver.footprint``). Each
chain goes to one shard, a copy of the state that decides the chain's events in order, each at its
position in the window. The window's entries are then put together in the order of its events, the
epoch's decisions first, and every copy of the state applies the entries it did not decide itself. The
log is the one deciding the events one after the other would write: same decisions, same order.

This module holds that logic without any transport: ``Planner`` (the coordinator's side) and ``Shard``
(a copy of the state). ``LocalShards`` runs shards in this process (tests, and the reference);
``streams.shard_pool`` runs them in worker processes; the Kafka jobs run them as resolve shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from resolver import epochs, footprint
from resolver.engine import Resolver
from schemas.channel import ChannelEvent

Entry = list[dict[str, Any]]


@dataclass(slots=True)
class Window:
    """A planned window: its first event's position, its events (with their sources), the decisions
    that begin its epoch, and its chains (indexes into ``events``)."""

    position: int
    events: list[tuple[ChannelEvent, Optional[dict[str, Any]]]]
    begun: Entry
    chains: list[list[int]]


@dataclass(slots=True)
class ShardResult:
    """What a shard decided: each event's decisions by index; or the index it failed on, and why."""

    decided: dict[int, Entry] = field(default_factory=dict)
    failed: Optional[int] = None
    error: Optional[BaseException] = None
    # seconds spent catching up on what others decided, and deciding (for benchmarks)
    catching_up: float = 0.0
    deciding: float = 0.0


class Planner:
    """The coordinator's copy of the state: cuts windows, plans them, and applies what was decided."""

    def __init__(self, resolver: Resolver, max_window: int = epochs.EPOCH_EVENTS):
        self.resolver = resolver
        self.max_window = max(1, max_window)

    @property
    def position(self) -> int:
        """Events decided so far: the position of the next one."""
        return len(self.resolver.state.seen_events)

    def room(self) -> int:
        """How many events the next window may hold (it ends with its epoch)."""
        p = self.position
        return min(self.max_window, epochs.end_of(p) - p)

    def plan(self, events: list[tuple[ChannelEvent, Optional[dict[str, Any]]]]) -> Window:
        """Plans a window of at most ``room()`` events, none of them decided before nor repeated."""
        if not events or len(events) > self.room():
            raise ValueError("a window holds 1 to room() events")
        position = self.position
        begun = self.resolver.begin_epoch(position, events[0][0])
        prints = [self.resolver.footprint(event) for event, _ in events]
        return Window(position, events, begun, footprint.chains(prints))

    def entries(self, window: Window, results: dict[int, Entry]) -> list[Entry]:
        """The window's log entries, in the order of its events (the epoch's decisions first), applied to
        the planner's state."""
        out: list[Entry] = []
        for i in range(len(window.events)):
            decided = results[i]
            self.resolver.apply_all(decided)
            out.append(window.begun + decided if i == 0 else decided)
        return out


class Shard:
    """A copy of the state that decides chains. ``catch_up`` applies the entries decided elsewhere."""

    def __init__(self, resolver: Resolver):
        self.resolver = resolver

    def catch_up(self, decisions: Entry) -> None:
        self.resolver.apply_all(decisions)

    def decide(self, window: Window, chains: list[list[int]]) -> ShardResult:
        """Decides ``chains`` of ``window`` (whose epoch's decisions this copy has applied)."""
        result = ShardResult()
        resolver = self.resolver
        for chain in chains:
            for i in chain:
                event, source = window.events[i]
                try:
                    result.decided[i] = resolver.decide(event, source, position=window.position + i)
                except Exception as exc:  # (a defect: the coordinator decides the window again, in order)
                    result.failed, result.error = i, exc
                    return result
        return result


def assign(chains: list[list[int]], shards: int) -> list[list[int]]:
    """Which chains each shard decides: the longest first, each to the shard with the least work so far
    (ties to the lowest shard), so that the window ends as early as it can."""
    load = [0] * shards
    out: list[list[int]] = [[] for _ in range(shards)]
    for c in sorted(range(len(chains)), key=lambda c: (-len(chains[c]), c)):
        s = min(range(shards), key=lambda k: (load[k], k))
        out[s].append(c)
        load[s] += len(chains[c])
    for picks in out:
        picks.sort()
    return out


class LocalShards:
    """Shards in this process: the planner and ``n`` copies of the state, each built by ``make``."""

    def __init__(self, make: Any, n: int, max_window: int = epochs.EPOCH_EVENTS, assigner: Any = assign):
        self.planner = Planner(make(), max_window)
        self.shards = [Shard(make()) for _ in range(n)]
        self._behind: list[Entry] = [[] for _ in range(n)]
        self._assign = assigner

    def decide(self, events: list[tuple[ChannelEvent, Optional[dict[str, Any]]]]) -> list[Entry]:
        """Decides events (accepted: valid, not decided before, not repeated) window by window; returns
        the log entries in order."""
        out: list[Entry] = []
        i = 0
        while i < len(events):
            take = events[i:i + self.planner.room()]
            i += len(take)
            window = self.planner.plan(take)
            picks = self._assign(window.chains, len(self.shards))
            results: dict[int, Entry] = {}
            for s, shard in enumerate(self.shards):
                shard.catch_up(self._behind[s] + window.begun)
                self._behind[s] = []
                got = shard.decide(window, [window.chains[c] for c in picks[s]])
                if got.failed is not None:
                    raise RuntimeError(f"shard {s} failed") from got.error
                results.update(got.decided)
            for s in range(len(self.shards)):
                mine = {j for c in picks[s] for j in window.chains[c]}
                self._behind[s].extend(d for j in range(len(take)) if j not in mine for d in results[j])
            out.extend(self.planner.entries(window, results))
        return out
