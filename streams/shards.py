"""Deciding on several shards at once, with the result of deciding every event in order.

The records are taken in *windows*: consecutive records whose accepted events lie within one epoch
(``resolver.epochs``). Each shard holds a copy of the state as it stands before the window. A window goes
in two rounds:

1. **footprints**: each shard validates a share of the window's records and says, for each valid one, its
   event ID, digest and footprint (``resolver.footprint``). The coordinator keeps the events not decided
   before nor repeated, gives them their positions, and groups them into *chains* of events whose
   footprints share something, directly or through others;
2. **decisions**: each chain goes to one shard, which decides the chain's events in order, each at its
   position.

The coordinator puts the window's entries together in the order of its records (a window that starts an
epoch begins with the epoch's decisions, which the coordinator makes first, on its own copy), and every
shard applies the entries it did not decide before the next window. The log is the one deciding every
record in order would write: same decisions, same order.

This module holds that logic without any transport: ``ShardWorker`` (a shard's side); ``begin``, ``plan``,
``assign``, ``work_of`` and ``entry_of`` (the coordinator's steps); and ``LocalShards``, which runs them in
this process (tests, and the reference). ``streams.shard_pool`` runs shards as worker processes (``idres ingest --shards N``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from resolver import footprint
from resolver.engine import Resolver, conflict_detail
from resolver.ids import event_digest
from schemas.channel import CONFLICTING_DUPLICATE, ChannelEvent
from streams.pipeline import BLANK, MAX_RECORD_BYTES, VALID, RecordPipeline

Entry = list[dict[str, Any]]


@dataclass(slots=True)
class Verdict:
    """A shard's word on one record of a window: valid (its event ID, digest and footprint) or not (the
    rejection's reason, detail and the event ID if one could be read); blank records are not sent."""

    valid: bool
    event_id: Optional[str] = None
    digest: int = 0
    footprint: frozenset[str] = frozenset()
    reason: Optional[str] = None
    detail: Optional[str] = None


@dataclass(slots=True)
class ShardResult:
    """What a shard decided: each event's decisions by index in the window, up to the defect it met, if any."""

    decided: dict[int, Entry] = field(default_factory=dict)
    error: Optional[BaseException] = None
    deciding: float = 0.0  # seconds spent deciding (for benchmarks)


class ShardWorker:
    """A shard: a copy of the state. ``catch_up`` applies what was decided elsewhere; ``verdicts`` and
    ``decide`` are the two rounds of a window."""

    def __init__(self, resolver: Resolver, max_bytes: int = MAX_RECORD_BYTES):
        self.resolver = resolver
        self.pipeline = RecordPipeline(resolver, max_bytes=max_bytes)
        self._parsed: dict[int, ChannelEvent] = {}

    def catch_up(self, decisions: Entry) -> None:
        self.resolver.apply_all(decisions)

    def verdicts(self, items: list[tuple[int, bytes]]) -> list[tuple[int, Verdict]]:
        """Validates records (by their index in the window) and gives the footprints of the valid ones."""
        out = []
        self._parsed = {}
        check = self.pipeline.check
        resolver = self.resolver
        for b, raw in items:
            outcome = check(raw)
            if outcome.kind == VALID:
                event = outcome.event
                self._parsed[b] = event
                out.append((b, Verdict(True, event.event_id, event_digest(event),
                                       frozenset(resolver.footprint(event)))))
            elif outcome.kind != BLANK:
                out.append((b, Verdict(False, outcome.event_id, reason=outcome.reason, detail=outcome.detail)))
        return out

    def decide(self, position: int, chains: list[list[tuple[int, int, bytes, Optional[dict[str, Any]]]]]) -> ShardResult:
        """Decides chains of ``(index among the window's events, index among its records, raw record,
        source)``, each event at ``position`` plus its index."""
        result = ShardResult()
        resolver = self.resolver
        parsed = self._parsed
        try:
            for chain in chains:
                for k, b, raw, source in chain:
                    event = parsed.get(b)
                    if event is None:
                        event = self.pipeline.check(raw).event
                    result.decided[k] = resolver.decide(event, source, position=position + k)
        except Exception as exc:  # (a defect: the coordinator decides the window again, in order)
            result.error = exc
        self._parsed = {}
        return result


@dataclass(slots=True)
class Slot:
    """One record of a window, in input order, as the coordinator sees it after the first round."""

    index: int  # among the window's records
    kind: str  # "event" (accepted, decided on a shard), "duplicate", "rejected" or "blank"
    event_id: Optional[str] = None
    reason: Optional[str] = None
    detail: Optional[str] = None
    event: int = -1  # "event": index among the window's events


def plan(verdicts: dict[int, Verdict], records: int,
         known: Callable[[str], Optional[int]]) -> tuple[list[Slot], list[list[int]]]:
    """The coordinator's first step: each record's slot, in order, and the chains of the window's events.

    ``verdicts``: by record index (blank records have none); ``known(event_id)``: the digest of an event
    decided before under that ID (-1: unknown), or None."""
    slots, prints = slots_of(verdicts, records, known)
    return slots, footprint.chains(prints)


def slots_of(verdicts: dict[int, Verdict], records: int,
             known: Callable[[str], Optional[int]]) -> tuple[list[Slot], list[frozenset[str]]]:
    """``plan``'s slots, and the footprints of the window's events (by their index among its events)."""
    slots: list[Slot] = []
    window: dict[str, int] = {}  # event ID -> digest, of the window's events
    prints: list[frozenset[str]] = []
    for b in range(records):
        v = verdicts.get(b)
        if v is None:
            slots.append(Slot(b, "blank"))
            continue
        if not v.valid:
            slots.append(Slot(b, "rejected", v.event_id, v.reason, v.detail))
            continue
        eid = v.event_id
        assert eid is not None
        before = window.get(eid)
        if before is None:
            before = known(eid)
        if before is None:
            window[eid] = v.digest
            slots.append(Slot(b, "event", eid, event=len(prints)))
            prints.append(v.footprint)
            continue
        if before < 0 or before == v.digest:  # (a re-delivery)
            slots.append(Slot(b, "duplicate", eid))
        else:
            slots.append(Slot(b, "rejected", eid, CONFLICTING_DUPLICATE, conflict_detail(eid)))
    return slots, prints


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


def work_of(chains: list[list[int]], picks: list[list[int]],
            item: Callable[[int], Any]) -> tuple[list[list[list[Any]]], list[int]]:
    """What each shard is sent to decide (``picks[s]``: its chains, from ``assign``): its chains, each as
    ``item(k)`` of its events; and the shard that decides each event."""
    owner = [-1] * sum(map(len, chains))
    work = []
    for s, mine in enumerate(picks):
        for c in mine:
            for k in chains[c]:
                owner[k] = s
        work.append([[item(k) for k in chains[c]] for c in mine])
    return work, owner


def begin(resolver: Resolver, position: int, records: list[bytes]) -> Entry:
    """The decisions that begin the epoch a window at ``position`` starts (none unless it starts one),
    made on the coordinator's state: attributed to the window's first new event."""
    from resolver import epochs

    if not epochs.starts(position):
        return []
    first = first_new_event(resolver, records)
    return resolver.begin_epoch(position, first) if first is not None else []


def entry_of(slot: Slot, decided: dict[int, Entry], begun: Entry) -> Entry:
    """An event's log entry: what its shard decided, after the epoch's decisions for the window's first."""
    mine = decided[slot.event]
    return begun + mine if slot.event == 0 else mine


class LocalShards:
    """The coordinator and ``n`` shards in this process, each built by ``make`` (a fresh ``Resolver``):
    ``decide(records)`` gives the log entries of deciding the raw records in order (rejections included,
    keyed ``record:<index>``), window by window of at most ``max_window`` records."""

    def __init__(self, make: Any, n: int, max_window: int = 1024, assigner: Any = assign):
        self.coordinator = make()
        self.shards = [ShardWorker(make()) for _ in range(n)]
        self._behind: list[Entry] = [[] for _ in range(n)]
        self._assign = assigner
        self.max_window = max_window

    def decide(self, records: list[bytes]) -> list[Entry]:
        from resolver import epochs

        resolver = self.coordinator
        st = resolver.state
        n = len(self.shards)
        out: list[Entry] = []
        i = 0
        while i < len(records):
            position = len(st.seen_events)
            take = records[i:i + epochs.room(position, self.max_window)]
            begun = begin(resolver, position, take)
            verdicts: dict[int, Verdict] = {}
            for s, shard in enumerate(self.shards):
                shard.catch_up(self._behind[s] + begun)
                self._behind[s] = []
                verdicts.update(shard.verdicts([(b, take[b]) for b in range(s, len(take), n)]))
            slots, chains = plan(verdicts, len(take), st.seen_events.get)
            events = [slot for slot in slots if slot.kind == "event"]
            decided: dict[int, Entry] = {}
            work, owner = work_of(chains, self._assign(chains, n),
                                  lambda k: (k, events[k].index, take[events[k].index], None))
            for s, chains_of_s in enumerate(work):
                got = self.shards[s].decide(position, chains_of_s)
                if got.error is not None:
                    raise RuntimeError(f"shard {s} failed") from got.error
                decided.update(got.decided)
            for slot in slots:
                if slot.kind == "event":
                    mine = decided[slot.event]
                    resolver.apply_all(mine)
                    for s in range(n):
                        if s != owner[slot.event]:
                            self._behind[s].extend(mine)
                    out.append(entry_of(slot, decided, begun))
                elif slot.kind == "rejected":
                    entry = resolver.reject(f"record:{i + slot.index}", {}, slot.reason or "", "",
                                            slot.event_id, slot.detail)
                    if entry:
                        out.append(entry)
                        for s in range(n):
                            self._behind[s].extend(entry)
            i += len(take)
        return out


def first_new_event(resolver: Resolver, records: list[bytes]) -> Optional[ChannelEvent]:
    """The first valid record among ``records`` whose event was not decided before (what a window that
    starts an epoch attributes the epoch's decisions to)."""
    check = RecordPipeline(resolver).check
    for raw in records:
        outcome = check(raw)
        if outcome.kind == VALID and not resolver.is_duplicate(outcome.event.event_id):
            return outcome.event
    return None


def in_order(records: list[bytes], resolver: Resolver) -> list[Entry]:
    """The reference every way of deciding on shards is held to: the log entries of deciding the raw
    records one after the other on ``resolver`` (rejections keyed ``record:<index>``, as ``LocalShards``
    keys them)."""
    from streams.pipeline import ACCEPTED, DUPLICATE

    pipeline = RecordPipeline(resolver)
    out = []
    for i, raw in enumerate(records):
        outcome = pipeline.process(raw)
        if outcome.kind == ACCEPTED:
            out.append(outcome.decisions)
        elif outcome.kind not in (BLANK, DUPLICATE):
            entry = resolver.reject(f"record:{i}", {}, outcome.reason, "", outcome.event_id, outcome.detail)
            if entry:
                out.append(entry)
    return out

