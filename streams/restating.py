"""Restating the log after late events (``resolver.restate``): the driver's side, transport aside.

``Restatement`` is given the entries to decide again (the log from the restatement's first entry on, as it
reads now), and the resolver state they were decided on; it notes what they touch and who held it, then,
given a resolver brought back to the state before them, yields their entries decided again in canonical
order and makes the markers. The entries wait in an anonymous temporary file, not in memory.
"""

from __future__ import annotations

import mmap
import tempfile
from array import array
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import orjson

from resolver import decisions, restate
from resolver.decisions import record_of
from resolver.state import ResolverState


class Restatement:
    def __init__(self, start: int, late_events: int, spool_dir: Optional[Path] = None):
        self.start = start
        self.late_events = late_events
        self.spool = tempfile.TemporaryFile(dir=spool_dir, prefix=".idres-restate-")
        self.keys: list[restate.Key] = []
        self.offsets = array("q")
        self.size = 0
        self.superseded = 0
        self.nodes: set[str] = set()
        self.profiles: set[str] = set()
        self.aliases: list[list[str]] = []  # of restatements among the entries: carried over
        self.before: dict[str, Optional[str]] = {}
        self.homes: dict[str, list[str]] = {}
        # the identifier each ID was named by (``resolver.naming``), then the other identifiers of the event that
        # named it, where known: what the ID resolves to after
        self.anchors: dict[str, list[str]] = {}
        self.begun_seq = -1
        self.id = ""

    def take(self, entries: Iterable[list[dict[str, Any]]]) -> None:
        """The entries from ``start`` on (those the restatement supersedes)."""
        for entry in entries:
            self.superseded += 1
            rec = record_of(entry)
            nodes, profiles = restate.touched([entry])
            self.nodes |= nodes
            self.profiles |= profiles
            if rec["type"] in restate.RESTATE_TYPES:
                self.aliases.extend(rec.get("aliases", ()))
                continue  # (an earlier restatement's own entries: its aliases are carried over, not decided again)
            blob = orjson.dumps(rec)
            self.keys.append(restate.key_of(rec))
            self.offsets.append(self.size)
            self.spool.write(blob)
            self.size += len(blob)

    def note(self, st: ResolverState) -> None:
        """What the entries touch and who held it in ``st``, the state they were decided on (which the caller
        may then drop)."""
        self.profiles |= {old for old, _ in self.aliases}
        scope = restate.scope(st, self.nodes, self.profiles)
        self.before = restate.owners(st, scope)
        held = {st.resolve_alias(p) for p in self.profiles} | {p for p in self.before.values() if p is not None}
        homes = restate.first_nodes(st, held)
        # every ID the entries named, and every profile that held what they touched: still resolvable after
        self.homes = {p: homes[st.resolve_alias(p)] for p in self.profiles | held if st.resolve_alias(p) in homes}
        self.anchors = restate.anchors_of(st, held)
        self.nodes = set()

    def begun(self, rewound: ResolverState, begun_seq: int, decided_at: str) -> list[dict[str, Any]]:
        """The begun marker, for entry ``begun_seq``, and the parts after it (one entry each), given the state
        before the entries (``rewound``)."""
        self.begun_seq = begun_seq
        self.id = restate.restate_id(self.start, begun_seq)
        nodes, owners = restate.changed(self.before, restate.owners(rewound, self.before))
        return [decisions.log_restate_begun(self.id, self.start, self.late_events, decided_at),
                *restate.parts(self.id, nodes, owners)]

    def records(self) -> Iterator[dict[str, Any]]:
        """The records of the entries, in canonical order."""
        if not self.keys:
            return
        self.spool.flush()
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        ends = self.offsets[1:] + array("q", [self.size])
        with mmap.mmap(self.spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            for i in order:
                yield orjson.loads(mapped[self.offsets[i]:ends[i]])

    def decide(self, redo: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        """The entries decided again (``redo``: a record's decisions on the rewound resolver, applied)."""
        wanted = set(self.homes)
        for rec in self.records():
            if wanted and rec["type"] == "interaction_recorded":
                restate.named_by(rec, wanted, self.anchors)
            yield redo(rec)

    @property
    def entries(self) -> int:
        return len(self.keys)

    def done(self, new: ResolverState, decided_at: str) -> list[dict[str, Any]]:
        """The parts naming the aliases and the end marker (one entry each), given the state after the entries
        decided again."""
        aliases = restate.aliases(self.homes, new, self.anchors)
        return [*restate.parts(self.id, [], [], aliases),
                decisions.log_restated(self.id, self.start, self.begun_seq, self.entries, self.superseded,
                                       self.late_events, decided_at)]

    def close(self) -> None:
        self.spool.close()


def abandoned(st: ResolverState, begun: dict[str, Any], begun_seq: int, entries: Iterable[list[dict[str, Any]]],
              decided_at: str) -> list[dict[str, Any]]:
    """What closes a restatement cut short (one entry each): parts giving, for every identifier its entries
    named and every identifier of the profiles they named (a merge names profiles, not the identifiers it
    moves), the profile that holds it in ``st`` (the log as it reads without them), then the abandoned marker."""
    nodes, profiles = restate.touched(entries)
    keys = sorted(restate.scope(st, nodes, profiles))
    held = restate.owners(st, keys)
    return [*restate.parts(begun["restate_id"], keys, [held[k] for k in keys]),
            decisions.log_restate_abandoned(begun["restate_id"], begun_seq, decided_at)]


class Unrestated:
    """Late events a log holds without their restatement, found while it is folded: the live entries after its
    last person's command whose event is older than a live event before them. A resolve worker restates for late
    events a while after it notes them; one stopped in between (killed, or its partition given to another) left
    them decided out of order, and nothing in the log says so. ``take(seq, entry)`` for every entry in order
    (``skips``: the entries restatements superseded, which readers skip); then ``earliest`` (the canonical key of
    the earliest such event, None if none) and ``count``. ``streams.embedded`` finds the same from its views."""

    def __init__(self, skips: list[tuple[int, int]]) -> None:
        self.skips = skips
        self.skip = 0  # (the first range not wholly before the last entry taken: ``seq`` only grows)
        self.newest: Optional[restate.Key] = None
        self.earliest: Optional[restate.Key] = None
        self.count = 0

    def take(self, seq: int, entry: list[dict[str, Any]]) -> None:
        skips = self.skips
        while self.skip < len(skips) and skips[self.skip][1] <= seq:
            self.skip += 1
        superseded = self.skip < len(skips) and skips[self.skip][0] <= seq
        if not entry or entry[0]["type"] in restate.MARKER_TYPES or superseded:
            return
        rec = next((d for d in reversed(entry) if d["type"] in decisions.RECORD_TYPES), None)
        if rec is None:
            return
        if rec["type"] in restate.BARRIER_TYPES:  # (a restatement starts after the last one: so does this)
            self.newest, self.earliest, self.count = None, None, 0
        elif rec["type"] == "interaction_recorded":
            key = restate.event_key(rec["occurred_at"], rec["event_id"])
            if self.newest is None or key >= self.newest:
                self.newest = key
            else:
                self.count += 1
                if self.earliest is None or key < self.earliest:
                    self.earliest = key
