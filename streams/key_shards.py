"""Deciding on shards that each own part of the state, with the result of deciding every event in order.

``streams.shards`` gives every shard a whole copy of the state and has every copy apply every decision. Here
no process holds the whole state: every identifier, profile (and alias), blocking key and attribute value
is owned by one shard (``resolver.owner``), and a shard holds only what it owns. A window of records goes:

1. **footprints**: each valid event's identifiers and blocking keys are looked up at their owners (and the
   identifiers they lead to: a shared identifier's customers, a blocking key's identifiers), which gives
   its footprint (``resolver.footprint.items_in_rounds``); the coordinator groups the events into chains;
2. **slices**: each chain goes to one shard, which collects the parts its footprint names from their owners
   (the profiles and all their identifiers, the blocks, the counts of the values its records hold),
   builds the slice (``resolver.partition``) and decides the chain's events in order on it;
3. **changes**: each shard sends what deciding changed to the owners (value counts and statistics as
   increments), and the coordinator logs the window's entries in the order of its records.

A slice that asked whether a profile ID was free, and the ID's owner holds it, means a chain may have decided
otherwise than in order (rare: the name of an absorbed profile taken back); the window is then decided in
order on the whole state. (The names its events may give new profiles are read with the slice: those found
free need no such question, so most windows ask none.) So is the start of an epoch that re-estimates the
match model, which reads all records and every pending review. What the coordinator keeps is the event IDs
decided (duplicates), the rejected records and the statistics every event reads (``resolver.partition.Shared``).

A person's review verdicts, unmerges and lifts of bans are decided on a slice of what they name
(``decide_command``, their footprint given by ``footprint.of_command``). Erasures are not: they reach what no
footprint names (blocking keys, value counts). A restatement (every entry after a place in the log decided
again) is decided on the caller's whole state and followed here (``follow``): the owners are sent that
state's parts under the names its decisions touched (``resolver.touch``) and those they were sent changes of
by the events from that place on (``PartStore.written_since``). So are events the caller decided in order
without the shards from a place on (while they could not answer; a run that failed part way, whose changes
some owners took, among them).

What a footprint or a slice reads, it reads in rounds (``resolver.partition.Rounds``): the questions of a
round depend only on the answers before, so a window asks all its events' questions of a round together,
one message from each reader to each owner, and waits for a fixed number of round trips (at most twelve,
six more at the start of an epoch re-estimating the model), however many events it holds.

This module holds that logic without transport, in one process (``LocalKeyShards``): the reference the tests
compare with deciding in order, and what ``benchmarks/key_shards.py`` measures (parts read and written at
other shards per event, each shard's work).
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import time
import weakref
from typing import Any, Iterable, Optional

from resolver import epochs, footprint, naming
from resolver.calibration import distinct_of
from resolver.config import ResolverConfig
from resolver.engine import Resolver
from resolver.ids import event_digest
from resolver.owner import owner_of, patch_of, route, route_patch, stores_of, value_name
from resolver.partition import Ask, Changes, NodePart, Patch, ProfilePart, Rounds, Slice, collecting, shared_of
from resolver.state import ResolverState
from resolver.touch import Touched
from schemas.channel import ChannelEvent
from streams.pipeline import BLANK, VALID, RecordPipeline
from streams.shards import Entry, Verdict, entry_of, slots_of


def _all_known(answers: Iterable[Optional[Iterable[Any]]], position: int) -> set[tuple[str, Any]]:
    """The names in every owner's answer to ``written_since(position)``, as tuples; ``ValueError`` if an owner
    answered that it no longer knows."""
    names: set[tuple[str, Any]] = set()
    for answer in answers:
        if answer is None:
            raise ValueError(f"a key shard no longer notes what was written from position {position} on")
        names.update(tuple(name) for name in answer)
    return names


class LocalKeyShards:
    """``n`` shards owning the state by key, and their coordinator, in this process: ``decide(records)`` gives
    the log entries of deciding the raw records in order (rejections keyed ``record:<index>``)."""

    reloaded = 0  # (shards loaded anew by ``follow``, their holders lost: over a broker, ``KafkaKeyShards``)

    def __init__(self, config: ResolverConfig, n: int, max_window: int = 1024, assigner: Any = None,
                 transport: bool = False, state: Optional[ResolverState] = None, new_only: bool = False):
        self.config = config
        self.n = n
        self.max_window = max_window
        # ``state``: events decided before (in order, as a checkpoint holds them), whose parts the owners take
        start = state if state is not None else ResolverState()
        # ``new_only``: for a caller that gives ``decide`` only valid events whose IDs it checked against a whole
        # state of its own (the Kafka resolve worker): their IDs are then neither looked up nor noted at their
        # owners (two round trips a window), and the owners are not given the IDs decided before (what they
        # hold of them is asked for by those lookups alone)
        self.new_only = new_only
        self.stores = stores_of(start, n, seen=not new_only)
        # validates and normalizes records, and keeps the rejected ones' keys: it holds no identifier
        self.reader = Resolver(config, state=ResolverState())
        self.pipeline = RecordPipeline(self.reader)
        self._take_statistics(start)  # (``shared``, ``decided``: events decided, each ID's digest at its owner)
        # names whose changes may or may not have reached their owners (sent ahead of a request that failed): sent
        # again as the state holds them when the session follows it (``follow``)
        self._unsure: set[tuple[str, Any]] = set()
        # (the owners note what they were sent to change since: a state gone on from here can be followed, ``follow``)
        self.loaded_at = self.decided
        self._stamp = self.decided  # (the position after the events whose changes are being sent: ``_apply``)
        self._assign = assigner
        self._fresh_deciders()
        self._sent_records: Optional[list] = None  # (the records the shards were last sent to estimate from)
        # ``transport``: what crosses from one shard to another is pickled and read back, as a message would be
        # (the parts of a window's reads one message from each owner to each reader)
        # (for benchmarks: its cost is counted in the work of the shards that send and receive it)
        self.transport = transport
        # what crosses between shards (parts read from and written to another shard than the deciding one; the
        # coordinator's lookups count as remote), the bytes of it, the messages asking for it (one per round
        # from each reader to each owner it asks), how often a window was decided in order on the whole
        # state; and per window the seconds of work: the coordinator's alone (planning, logging), the work any
        # shard may take a share of (validating, normalizing, footprint lookups), each shard's; and the
        # window's round trips between processes, waited for one after the other
        self.stats: dict[str, Any] = {"events": 0, "chains": 0, "reads": 0, "remote_reads": 0, "writes": 0,
                                      "remote_writes": 0, "bytes": 0, "messages": 0, "in_order_windows": 0,
                                      "calibrations": 0, "calibration_seconds": 0.0, "heaviest": [],
                                      "windows": []}
        self._work = [0.0] * n
        self._lent = 0.0  # seconds of a timed stretch spent by other shards (pickling what they send)
        # parts read at another shard, not yet sent: (owner, reader) -> the parts (one message each, ``_send``)
        self._outbox: dict[tuple[int, int], list[Any]] = {}
        self._asked: set[tuple[int, int]] = set()  # (owner, reader) of the reads since the last send
        self._trips = 0  # round trips between processes in the window being decided
        self._epoch = -1
        self._counted_not_run = 0.0  # seconds in ``_work`` that this process did not spend (run once for all)

    def _on_shards(self, function: Any, records: list, chunks: list) -> list:
        """A mapper for re-estimating the model (``estimation.in_order``): chunk k is worked by shard k mod n,
        after the records estimated from are sent to every shard (once per estimate: pickled once by the
        coordinator, read back by each shard), and its result sent back to the coordinator."""
        if records is not self._sent_records:
            self._sent_records = records
            data = pickle.dumps(records, pickle.HIGHEST_PROTOCOL) if self.transport else b""
            started = time.perf_counter()
            if self.transport:
                pickle.loads(data)
            spent = time.perf_counter() - started
            self.stats["bytes"] += len(data) * self.n
            for s in range(self.n):  # (each shard reads them back: read once here, counted for each)
                self._work[s] += spent
            self._counted_not_run += spent * (self.n - 1)
        out = []
        for k, chunk in enumerate(chunks):
            s = k % self.n
            sent = self._carry(chunk, -1) if self.transport else chunk
            started = time.perf_counter()
            got = function(records, sent)
            self._work[s] += time.perf_counter() - started
            out.append(self._carry(got, s) if self.transport else got)
        return out

    # ------------------------------------------------------------------------------ reads at owners
    def _carry(self, got: Any, sender: int) -> Any:
        """``got`` as another shard receives it from shard ``sender`` (who is charged the pickling; the one
        waiting for it, the reading back)."""
        started = time.perf_counter()
        data = pickle.dumps(got, pickle.HIGHEST_PROTOCOL)
        if sender >= 0:
            spent = time.perf_counter() - started
            self._work[sender] += spent
            self._lent += spent
        self.stats["bytes"] += len(data)
        return pickle.loads(data)

    def _send(self, spent: Optional[dict[int, float]] = None) -> None:
        """The parts read at other shards since the last send, carried as one message from each owner to
        each reader (as a transport sends each round of a window's reads: ``_carry``); ``spent``: where the
        seconds each reader takes to read its messages back are added up."""
        self.stats["messages"] += sum(1 for owner, reader in self._asked if owner != reader)
        self._asked = set()
        for (owner, reader), parts in self._outbox.items():
            started, lent = time.perf_counter(), self._lent
            self._carry(parts, owner)
            if spent is not None:
                spent[reader] = spent.get(reader, 0.0) + time.perf_counter() - started - (self._lent - lent)
        self._outbox = {}

    def _rounds(self, readings: list[tuple[int, Rounds]], brief: Optional[dict[str, Any]] = None,
                spent: Optional[dict[int, float]] = None) -> list[Any]:
        """What each reading in rounds (``resolver.partition.Rounds``) returns, read from shard ``at`` (-1: the
        coordinator) for each ``(at, rounds)``, all of them together: each round, every reader's distinct
        questions are read at their owners and carried as one message from each owner to each reader, and
        counted as one round trip of the window (unless every question was one's own); ``brief``: what of a
        part crosses, by what is asked (as ``_read``); ``spent``: each reader's seconds, added up."""
        out: list[Any] = [None] * len(readings)
        live: list[tuple[int, int, Rounds, list[Ask]]] = []

        def step(i: int, at: int, rounds: Rounds, got: Optional[dict[Ask, Any]]) -> None:
            try:
                live.append((i, at, rounds, next(rounds) if got is None else rounds.send(got)))
            except StopIteration as done:
                out[i] = done.value

        for i, (at, rounds) in enumerate(readings):
            started = time.perf_counter()
            step(i, at, rounds, None)
            if spent is not None:
                spent[at] = spent.get(at, 0.0) + time.perf_counter() - started
        brief = brief or {}
        while live:
            asked, live = live, []
            questions: dict[int, dict[Ask, None]] = {}  # (each reader's distinct questions, asked once)
            for _, at, _, asks in asked:
                questions.setdefault(at, {}).update(dict.fromkeys(asks))
            got = self._answer({at: list(q) for at, q in questions.items()}, brief, spent)
            answers = {at: dict(zip(q, got[at])) for at, q in questions.items()}
            for i, at, rounds, asks in asked:
                started = time.perf_counter()
                step(i, at, rounds, answers[at])
                if spent is not None:
                    spent[at] = spent.get(at, 0.0) + time.perf_counter() - started
            if any(owner != reader for owner, reader in self._asked):  # (else all read where they are held)
                self._trips += 1
            self._send(spent)
        return out

    def _read(self, what: str, name: Any, at: int, brief: Any = None) -> Any:
        """What the owner of ``name`` holds under ``what``, read from shard ``at`` (-1: the coordinator);
        ``brief``: what of it crosses, when not all of it does (carried by the next ``_send``: the reader
        works on the owner's part meanwhile, which nothing changes before it is sent)."""
        s = self._owner_of(what, name)
        store = self.stores[s]
        got = store.value(name, self._epoch) if what == "values" else getattr(store, what).get(name)
        self._count_read(s, at)
        if s != at and self.transport and got is not None:
            self._outbox.setdefault((s, at), []).append(brief(got) if brief is not None else got)
        return got

    def _owner_of(self, what: str, name: Any) -> int:
        """The shard that answers a question (``Ask``)."""
        kind = _KINDS[what]
        return owner_of(kind, value_name(name) if kind == "v" else name, self.n)

    def _count_read(self, owner: int, at: int) -> None:
        """A question read at ``owner`` from ``at``, in the statistics and this round's messages."""
        self._asked.add((owner, at))
        self.stats["reads"] += 1
        if owner != at:
            self.stats["remote_reads"] += 1

    def _count_writes(self, owner: int, sender: int, writes: int) -> None:
        """Parts written at ``owner`` by ``sender``, in the statistics."""
        self.stats["writes"] += writes
        if owner != sender:
            self.stats["remote_writes"] += writes

    # ------------------------------------------------------------------------------ what the owners hold
    # (what a transport carries to the owners: here, in this process)
    def _known(self, event_ids: list[str]) -> list[Optional[int]]:
        """For each event ID, the digest of the event decided under it (-1: not logged), at the ID's owner, or
        None."""
        return [self.stores[owner_of("e", eid, self.n)].seen.get(eid) for eid in event_ids]

    def _note_seen(self, digests: dict[str, int]) -> None:
        """Each event ID's digest to its owner."""
        for eid, digest in digests.items():
            self.stores[owner_of("e", eid, self.n)].seen[eid] = digest

    def _answer(self, questions: dict[int, list[Ask]], brief: dict[str, Any],
                spent: Optional[dict[int, float]]) -> dict[int, list[Any]]:
        """A round's answers, for each reader (-1: the coordinator) to its questions, in order, read at their
        owners (``brief``: as ``_rounds``; ``spent``: each reader's seconds, added up)."""
        out = {}
        for at, asks in questions.items():
            started = time.perf_counter()
            out[at] = [self._read(what, name, at, brief.get(what)) for what, name in asks]
            if spent is not None:
                spent[at] = spent.get(at, 0.0) + time.perf_counter() - started
        return out

    def _held_records(self) -> list[list[Any]]:
        """Each shard's distinct records (``calibration.distinct_of``), as it sends them."""
        held = []
        for store in self.stores:
            started = time.perf_counter()
            mine = distinct_of(p.records for p in store.nodes.values() if p.records)
            self._work[store.shard] += time.perf_counter() - started
            held.append(self._carry(mine, store.shard) if self.transport else mine)
        return held

    def _reviewing(self) -> set[str]:
        """The identifiers that are a side of a pending review, at their owners."""
        return {key for store in self.stores for key in store.reviewing}

    def _all_parts(self, epoch: int) -> tuple[list[NodePart], list[ProfilePart], dict[str, str],
                                              dict[str, list[str]], dict[tuple[str, str], tuple[int, Optional[int]]]]:
        """Every part of every shard: identifiers, profiles, aliases, blocks, value counts."""
        return ([p for store in self.stores for p in store.nodes.values()],
                [p for store in self.stores for p in store.profiles.values()],
                {a: t for store in self.stores for a, t in store.aliases.items()},
                {b: nodes for store in self.stores for b, nodes in store.blocks.items()},
                {key: store.value(key, epoch) for store in self.stores for key in store.values})

    def _apply(self, routed: dict[int, Changes], sender: int, epoch: int, ahead: bool = False) -> None:
        """Each owner's share of what deciding on a slice changed, from shard ``sender`` (-1: the coordinator);
        ``ahead``: a transport may send it ahead of the next request to each owner instead of waiting for the
        owners to say they applied it (here it is applied at once either way)."""
        for owner, mine in routed.items():
            started, lent = time.perf_counter(), self._lent
            self._count_writes(owner, sender, mine.written())
            if owner != sender and self.transport:
                mine = self._carry(mine, sender)
            self.stores[owner].apply(mine, epoch, self._stamp)
            self._work[owner] += time.perf_counter() - started - (self._lent - lent)

    def decide(self, records: list[bytes], checked: Optional[dict[int, Any]] = None) -> list[Entry]:
        """``checked``: records the caller validated already (``RecordPipeline.check``'s outcomes, by index)."""
        out: list[Entry] = []
        i = 0
        checked = dict(checked or {})  # (records validated ahead of their window, by index)
        while i < len(records):
            position = self.decided
            started = time.perf_counter()
            # the window: records up to the end of the epoch, counted in new events (validated here, and
            # their event IDs looked up at their owners: work any shard may take a share of)
            room, j = epochs.room(position, self.max_window), i
            outcomes: list[Any] = []
            known: dict[str, Optional[int]] = {}
            new: set[str] = set()
            first: Optional[ChannelEvent] = None
            self._trips = 0
            while j < len(records) and len(new) < room and j - i < 4 * self.max_window:
                # the IDs of as many valid records as there is room for new events, and an eighth more (some
                # may have been decided before), looked up together; the records after the window are kept
                # validated for the next (the same window as looking the IDs up one by one)
                want = room - len(new)
                want += want // 8 + 8
                k, valid = j, 0
                while k < len(records) and valid < want and k - i < 4 * self.max_window:
                    if k not in checked:
                        checked[k] = self.pipeline.check(records[k])
                    valid += checked[k].kind == VALID
                    k += 1
                ids = list(dict.fromkeys(checked[b].event.event_id for b in range(j, k)
                                         if checked[b].kind == VALID and checked[b].event.event_id not in known))
                if ids and self.new_only:
                    known.update(dict.fromkeys(ids))
                elif ids:
                    self._trips += 1
                    known.update(zip(ids, self._known(ids)))
                while j < k and len(new) < room:
                    outcome = checked.pop(j)
                    outcomes.append(outcome)
                    if outcome.kind == VALID:
                        eid = outcome.event.event_id
                        if known[eid] is None and eid not in new:
                            new.add(eid)
                            if first is None:
                                first = outcome.event
                    j += 1
            take = records[i:j]
            validating = time.perf_counter() - started
            self._work = [0.0] * self.n
            epoch = self._epoch = epochs.epoch_of(position)
            if first is not None and epoch != self.shared.tf_epoch:
                # (an epoch starts with its first event, as the fold's: a window of events decided before, at its
                # start, leaves the statistics of the epoch before as they are)
                self.shared.tf_epoch = epoch
                self.shared.tf_totals_before = {}
            self._counted_not_run = 0.0
            self._stamp = position + len(new)
            begun = self._begin(position, first, epoch)
            # (the owners applying what the epoch's start changed, and the shards' part of re-estimating)
            applied = sum(self._work) - self._counted_not_run
            shared_work, lent = time.perf_counter(), self._lent
            verdicts: dict[int, Verdict] = {}
            parsed: dict[int, tuple[ChannelEvent, list[tuple[str, str]]]] = {}
            readings: list[tuple[int, Rounds]] = []
            for b, outcome in enumerate(outcomes):
                if outcome.kind == VALID:
                    event = outcome.event
                    node_keys, blocks, values, names, by_session = self.reader.keys_of(event)
                    readings.append((-1, footprint.items_in_rounds(event.event_id, node_keys, blocks, names,
                                                                   by_session)))
                    parsed[b] = (event, values)
                elif outcome.kind != BLANK:
                    verdicts[b] = Verdict(False, outcome.event_id, reason=outcome.reason, detail=outcome.detail)
            # (the footprints of all the window's events looked up together, round by round)
            for b, items in zip(parsed, self._rounds(readings, _FOOTPRINT_READS)):
                event = parsed[b][0]
                verdicts[b] = Verdict(True, event.event_id, event_digest(event), frozenset(items))
            shared_work = time.perf_counter() - shared_work - (self._lent - lent) + validating
            slots, prints = slots_of(verdicts, len(take), known.get)
            # the pairs of events sharing an item, found by the items' owners (each one its own items; here
            # all at once: the same pairs), then joined into chains
            linking = time.perf_counter()
            pairs = footprint.links(enumerate(prints))
            shared_work += time.perf_counter() - linking
            chains = footprint.chains_of(len(prints), pairs)
            events = [slot for slot in slots if slot.kind == "event"]
            work = [(parsed[slot.index][0], parsed[slot.index][1], prints[slot.event]) for slot in events]
            on_shards = time.perf_counter()
            decided = self._on_slices(position, epoch, chains, work)
            if decided is None:
                self.stats["in_order_windows"] += 1
                decided = self._in_order(position, epoch, [w[0] for w in work])
            on_shards = time.perf_counter() - on_shards
            self.stats["events"] += len(events)
            self.stats["chains"] += len(chains)
            for slot in slots:
                if slot.kind == "event":
                    out.append(entry_of(slot, decided, begun))
                elif slot.kind == "rejected":
                    entry = self.reader.reject(f"record:{i + slot.index}", {}, slot.reason or "", "",
                                               slot.event_id, slot.detail)
                    if entry:
                        out.append(entry)
            # each event ID's digest to its owner (its own share for each)
            recording = time.perf_counter()
            if not self.new_only:
                self._note_seen({d["event_id"]: d.get("digest", -1) for slot in events for d in decided[slot.event]
                                 if d["type"] == "interaction_recorded"})
            self.decided += len(events)
            # the window's parsed events let go of here: they are held where they were validated and decided
            # (freeing them is that work's, not the coordinator's, whose part would otherwise count it)
            del work, parsed, outcomes, readings
            recording = time.perf_counter() - recording
            shared_work += recording
            total = time.perf_counter() - started
            self.stats["windows"].append((total - shared_work - on_shards - applied, shared_work, list(self._work),
                                          self._trips))
            i += len(take)
        return out

    def _begin(self, position: int, first: Optional[ChannelEvent], epoch: int) -> Entry:
        """The decisions that begin the epoch a window at ``position`` starts (none unless it starts one),
        attributed to ``first``, the window's first new event: when the match model is due to be
        re-estimated, from every distinct record and on a slice of the pending reviews; else on the
        statistics alone."""
        if not epochs.starts(position) or first is None:
            return []
        records = None
        if self.config.calibrating and self.shared.records_filed >= self.shared.next_calibration:
            # the match model is re-estimated from every distinct record (each shard sends its own), and
            # the pending reviews are scored again: on a slice of their identifiers and profiles
            self.stats["calibrations"] += 1
            calibrating = time.perf_counter()
            # (what the shards work meanwhile is theirs: it is taken out of the coordinator's seconds below)
            shards_before = sum(self._work) - self._counted_not_run
            records = distinct_of(self._held_records())  # (each shard finds its own distinct records)
            reviewing = {"k:" + key for key in self._reviewing()}
            part = self._rounds([(-1, collecting(reviewing, (), self.shared, position))])[0]
            self._trips += 1  # (the taken check below)
        else:
            part = Slice([], {}, [], {}, {}, {}, self.shared, position)
        self._coordinating.use(part.state)
        begun = self._coordinating.begin_epoch(position, first, records)
        if records is not None and self._taken(-1, part):  # (as a window's: then on the whole state)
            self.stats["in_order_windows"] += 1
            part = self._whole(position, epoch)
            self._coordinating.use(part.state)
            begun = self._coordinating.begin_epoch(position, first, records)
        if records is not None:  # (the coordinator's part: what the shards worked is theirs)
            on_shards = sum(self._work) - self._counted_not_run - shards_before
            self.stats["calibration_seconds"] += time.perf_counter() - calibrating - on_shards
        self._commit([(-1, part)], epoch)
        st = part.state
        self.shared.model = st.model
        self.shared.next_calibration = st.next_calibration
        self.shared.learned_regions = list(st.learned_regions)
        self.reader.state.learned_regions = list(st.learned_regions)
        return begun

    def _on_slices(self, position: int, epoch: int, chains: list[list[int]],
                   work: list[tuple[ChannelEvent, list[tuple[str, str]], frozenset[str]]]) -> Optional[dict[int, Entry]]:
        """Each shard decides the chains ``assign`` gives it, in order, on one slice of their footprints; None
        when a slice asked about a profile ID it did not hold and its owner does (nothing is changed then)."""
        decided: dict[int, Entry] = {}
        done: list[tuple[int, Slice]] = []
        mine = self._handed(chains, work)
        spent: dict[int, float] = {}
        parts = self._rounds([(s, collecting(*_reads_of(events, work), self.shared, position)) for s, events in mine],
                             spent=spent)
        for (s, events), part in zip(mine, parts):
            started, lent = time.perf_counter(), self._lent
            resolver = self._deciders[s]
            resolver.use(part.state)
            for k in events:
                decided[k] = resolver.decide(work[k][0], position=position + k)
            taken = self._taken(s, part)
            self._work[s] += spent.get(s, 0.0) + time.perf_counter() - started - (self._lent - lent)
            if taken:
                return None
            done.append((s, part))
        self._commit(done, epoch)
        return decided

    def _handed(self, chains: list[list[int]], work: list[tuple[Any, Any, frozenset[str]]]) -> list[tuple[int, list[int]]]:
        """Each shard given chains, and their events in order (``_picks``). (The chains are sent to their shards,
        which collect their slices together, round by round, decide on them, ask the owners whether the
        profile IDs they asked about are held, and send back what they decided: two round trips besides the
        slices'.)"""
        self._trips += 2
        return [(s, [k for c in picked for k in chains[c]]) for s, picked in enumerate(self._picks(chains, work))
                if picked]

    def _picks(self, chains: list[list[int]], work: list[tuple[Any, Any, frozenset[str]]]) -> list[list[int]]:
        """Which chains each shard decides (``assign``)."""
        if self._assign is not None:
            return self._assign(chains, self.n)
        weights = [sum(len(work[k][2]) for k in c) for c in chains]  # (what a shard collects grows with them)
        if weights:
            self.stats["heaviest"].append(max(weights) / sum(weights))
        return assign_weighted(chains, weights, self.n)

    def _in_order(self, position: int, epoch: int, events: list[ChannelEvent]) -> dict[int, Entry]:
        whole = self._whole(position, epoch)
        resolver = self._coordinating
        resolver.use(whole.state)
        decided = {k: resolver.decide(event, position=position + k) for k, event in enumerate(events)}
        self._commit([(-1, whole)], epoch)
        return decided

    # ------------------------------------------------------------------------------ a person's commands
    def decide_command(self, command: dict[str, Any], items: Iterable[str]) -> Optional[Entry]:
        """A person's command (``streams.commands``) decided on a slice of ``items``, its footprint against the
        state before it (``footprint.of_command``), and what it changed sent to the owners: the entry deciding
        it on the whole state gives, which keeps the owners in step with that state at the cost of a slice's
        rounds (loading them anew sends every part). None, with nothing changed, when the slice asked about a
        profile ID or alias it did not hold and its owner holds it; a command that does not apply raises as it
        does on the whole state, with nothing changed."""
        from streams.commands import decide

        # (the value counts as the state reads them now: those changed in its epoch with their count before)
        epoch = self._epoch = self.shared.tf_epoch
        self._stamp = self.decided
        part = self._rounds([(-1, collecting(sorted(items), (), self.shared, self.decided))])[0]
        resolver = self._coordinating
        resolver.use(part.state)
        entry = decide(resolver, command)
        if self._taken(-1, part):
            return None
        self._commit([(-1, part)], epoch, ahead=True)  # (a round trip a command less)
        self.shared.bans = _bans_after(self.shared.bans, part.state)
        return entry

    # ------------------------------------------------------------------------------ following the caller's state
    def follow(self, st: ResolverState, since: int, touched: Touched) -> int:
        """Follows the caller's whole state, ``st``, where it went on without the shards from position ``since``
        (the owners were in step with it there): a restatement (``resolver.restate``) that decided again every event
        from ``since`` on, or events decided in order while the shards could not answer (a run that failed part
        way, whose changes some owners took, among them); ``touched`` noted what its decisions touched from the
        state at ``since`` on (``resolver.touch``). The owners are sent ``st``'s parts under every name those
        decisions touched and every name the owners were sent changes of by deciding events at ``since`` or after
        (what decisions since superseded or left half sent changed), or sent ahead of a request that failed (they
        may not have arrived: ``_unsure``), which are all the parts that can differ; the
        statistics are ``st``'s. The owners then hold what loading them from ``st`` gives, for the parts that
        decided sent alone. Returns how many parts were sent. Raises ``ValueError`` when it cannot be followed (a
        place before the owners were loaded, or before what they still note of what was written, ``PartStore.forgotten``;
        an erasure among the decisions): nothing was changed then, and the caller loads anew."""
        if since < self.loaded_at or touched.everything:
            raise ValueError("a place before the key shards were loaded, or an erasure")
        return self._follow(st, since, touched)

    def _follow(self, st: ResolverState, since: int, touched: Touched) -> int:
        written = self._written_since(since) | self._unsure
        nodes, profiles = touched.names(st)
        nodes.update(name for kind, name in written if kind == "k")
        profiles.update(name for kind, name in written if kind in ("p", "a"))
        blocks = touched.blocks | {name for kind, name in written if kind == "b"}
        values = touched.values | {name for kind, name in written if kind == "v"}
        seen: dict[str, int] = {}
        if not self.new_only:  # (the events from ``since`` on, the late ones among them)
            seen = dict(itertools.islice(st.seen_events.items(), max(since - st.events_before, 0), None))
        patch = patch_of(st, nodes, profiles, blocks, values, seen)
        routed = route_patch(patch, self.n)
        self._take_statistics(st)
        self._epoch = self.shared.tf_epoch
        # every shard is sent its share, an empty one too (what a shard works out from the statistics goes),
        # noted as written by the last event: as late as anything in it was changed
        self._put({s: routed.get(s, Patch()) for s in range(self.n)}, self.decided)
        self._unsure.clear()
        self._fresh_deciders()
        return patch.written()

    def _take_statistics(self, st: ResolverState) -> None:
        """The statistics, the events decided, the learned formats and the rejected records' keys of a whole
        state (one loaded, or one followed)."""
        self.shared = shared_of(st)
        self.decided = st.position
        self.reader.state.learned_regions = list(st.learned_regions)
        self.reader.state.rejected_keys = set(st.rejected_keys)

    def _written_since(self, position: int) -> set[tuple[str, Any]]:
        """The names any owner was sent changes of by deciding events at ``position`` or after. Raises
        ``ValueError`` when an owner no longer knows (``PartStore.forgotten``): the caller loads anew."""
        return _all_known((store.written_since(position) for store in self.stores), position)

    def _put(self, routed: dict[int, Patch], stamp: int) -> None:
        """Each owner's share of a patch (``PartStore.put``), noted as written at ``stamp``."""
        for owner, mine in routed.items():
            self._count_writes(owner, -1, mine.written())
            self.stores[owner].put(self._carry(mine, -1) if self.transport else mine, stamp)

    def _fresh_deciders(self) -> None:
        """Each shard's resolver (moved from slice to slice) and the coordinator's (the start of epochs, windows on
        the whole state), with nothing worked out from statistics before (their epoch's frequency adjustments)."""
        self._deciders = [Resolver(self.config) for _ in range(self.n)]
        self._coordinating = Resolver(self.config)
        # re-estimating the model hands its chunks (comparing pairs, counting vectors, blocking keys) to the shards
        # (through a weak reference: the coordinator's resolver holding these shards would make a reference cycle)
        shards = weakref.ref(self)
        self._coordinating._ctx.mapper = lambda function, records, chunks: shards()._on_shards(  # type: ignore[union-attr]
            function, records, chunks)

    # ------------------------------------------------------------------------------ a shard's work
    def _taken(self, s: int, part: Slice) -> bool:
        """Whether a profile ID the slice asked about and did not hold is held at its owner."""
        return self._any_held({s: _name_questions(*part.asked())})

    def _any_held(self, questions: dict[int, list[Ask]]) -> bool:
        """Whether any profile ID or alias name the slices asked about is held at its owner (one round; the
        questions by the shard that asks them)."""
        questions = {s: asks for s, asks in questions.items() if asks}
        held = bool(questions) and any(got is not None for answers in self._answer(questions, {}, None).values()
                                       for got in answers)
        self._send()
        return held

    def _whole(self, position: int, epoch: int) -> Slice:
        """The whole state as one slice (every part of every shard)."""
        nodes, profiles, aliases, blocks, values = self._all_parts(epoch)
        return Slice(nodes, {}, profiles, aliases, blocks, values, self.shared, position)

    def _commit(self, done: list[tuple[int, Slice]], epoch: int, ahead: bool = False) -> None:
        """Each slice's changes sent to their owners (from shard ``s``; -1: the coordinator), and the
        statistics' increments to the coordinator; ``ahead``: sent ahead of the next request to each owner
        (``_apply``)."""
        shared = self.shared
        self._trips += 1  # (the changes sent to their owners, who say they applied them)
        for s, part in done:
            started = time.perf_counter()
            changes = part.changes()
            routed = route(changes, self.n)
            if s >= 0:
                self._work[s] += time.perf_counter() - started
            self._apply(routed, s, epoch, ahead)
            for f, d in changes.totals.items():
                t = shared.value_totals.get(f, 0)
                if f not in shared.tf_totals_before:
                    shared.tf_totals_before[f] = t
                shared.value_totals[f] = t + d
            shared.records_filed += changes.records_filed
            shared.phone_total += changes.phone_total
            for region, d in changes.phone_regions.items():
                shared.phone_regions[region] = shared.phone_regions.get(region, 0) + d


def assign_weighted(chains: list[list[int]], weights: list[int], shards: int) -> list[list[int]]:
    """Which chains each shard decides: the heaviest first, each to the shard with the least weight so far
    (ties to the lowest shard); each shard's chains in order."""
    load = [(0, s) for s in range(shards)]  # (a heap of (weight so far, shard))
    out: list[list[int]] = [[] for _ in range(shards)]
    for c in sorted(range(len(chains)), key=lambda c: (-weights[c], c)):
        w, s = heapq.heappop(load)
        out[s].append(c)
        heapq.heappush(load, (w + weights[c], s))
    for picks in out:
        picks.sort()
    return out


def _bans_after(bans: dict[str, tuple[frozenset[str], frozenset[str], str]], st: ResolverState
                ) -> dict[str, tuple[frozenset[str], frozenset[str], str]]:
    """The connection bans (``Shared.bans``, by identifier key) after a command decided on a slice whose state is
    ``st``: those the slice held (both sides in it, ``Slice``) as the command left them, the others as they
    were, in the order the whole state keeps them (a ban lifted goes, a new one comes last)."""
    index, keys = st.node_index, st.node_keys
    out = {b: ban for b, ban in bans.items() if not all(k in index for side in ban[:2] for k in side)
           or b in st.bans}
    for b, (one, two, by) in st.bans.items():
        out[b] = (frozenset(keys[n] for n in one), frozenset(keys[n] for n in two), by)
    return out


def _reads_of(events: list[int], work: list[tuple[Any, list[tuple[str, str]], frozenset[str]]]
              ) -> tuple[set[str], list[tuple[str, str]]]:
    """What a slice deciding these events of the window reads: their footprints' items, the profile IDs they
    may name profiles by (``naming.names_of``: read with the footprint, those found free need no question
    once the slice is decided, ``_taken``) and their records' values (``partition.collecting``'s first
    arguments)."""
    items = set().union(*(work[k][2] for k in events))
    for k in events:
        event = work[k][0]
        items.update("n:" + name for name in naming.names_of(event.event_id, len(event.identifiers)))
    return items, [v for k in events for v in work[k][1]]


def _name_questions(profiles: Iterable[str], aliases: Iterable[str]) -> list[Ask]:
    """The questions asking whether these profile IDs and alias names are held."""
    return [("profiles", pid) for pid in sorted(profiles)] + [("aliases", name) for name in sorted(aliases)]


# which owner answers what is asked (``resolver.owner.owner_of``'s kinds)
_KINDS = {"nodes": "k", "profiles": "p", "aliases": "p", "blocks": "b", "values": "v"}
# what crosses of the parts a footprint reads (``resolver.footprint.items_in_rounds``)
_FOOTPRINT_READS: dict[str, Any] = {
    "nodes": lambda p: (p.profile, p.shared_users, p.session_last, p.weak_uses, p.refused),
    "profiles": lambda p: p.waiting}
