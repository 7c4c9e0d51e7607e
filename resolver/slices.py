"""Slices: the part of the state a chain of events reads, as a state of its own.

Deciding an event reads the state of the items of its footprint (``resolver.footprint``: its identifiers,
the profiles they belong to, its blocking keys and what is filed under them) and statistics over all
events as they stood at the start of the epoch. ``extract`` copies exactly that out of a state into a new,
small ``ResolverState``: the chain's events decided on the slice, at their positions, give the decisions
they get on the whole state. So a shard needs no copy of the whole state to decide a chain, only the
slice of its footprint; that is what lets the state be split among shards by key.

What a slice holds:

* the *core*: every identifier named by the footprint, every identifier of the profiles it names, every
  identifier filed under its blocking keys, each with all the state has of it, and those profiles and
  blocks whole;
* the *edge*: identifiers the core's edges, probable links, bans and reviews point to, by key, type and
  profile only (deciding never reads more of them: if it did, the footprint would have to name them);
* the counts of the attribute values the chain's records and the core's records hold, as they stood at
  the start of the epoch, and the statistics every event reads (field totals, the match model, learned
  formats, calibration counters).

Profile IDs are one namespace over the whole state: naming a profile reads whether a name is taken by any
live profile or alias. A slice holds the names of its own profiles; the names it was asked about and does
not hold are kept in ``ScopedNames.asked`` so the caller checks them against the whole namespace
(``unknown_names``): a name taken elsewhere means the chain must be decided on the whole state.
"""

from __future__ import annotations

from typing import Iterable, Optional

from resolver.partition import NodePart, ProfilePart, ScopedNames, Slice, collect, node_part, profile_part, \
    review_parts, shared_of
from resolver.state import ResolverState


def extract(st: ResolverState, items: Iterable[str], values: Iterable[tuple[str, str]] = (),
            position: Optional[int] = None) -> ResolverState:
    """The slice of ``st`` that deciding events with these footprint ``items`` reads; ``values``: the
    ``(field, value)`` pairs of their attribute records; ``position``: the number of events decided
    before the first of them (default: all of ``st``'s)."""
    return extract_slice(st, items, values, position).state


def extract_slice(st: ResolverState, items: Iterable[str], values: Iterable[tuple[str, str]] = (),
                  position: Optional[int] = None) -> Slice:
    """``extract``, as a ``Slice`` (which also says what deciding on it changed)."""
    return collect(_Whole(st), items, values, shared_of(st), len(st.seen_events) if position is None else position)


class _Whole:
    """A whole state as the source of a slice's parts (``partition.Source``)."""

    def __init__(self, st: ResolverState) -> None:
        self.st = st
        self._reviews: Optional[dict[int, NodePart]] = None  # (each reviewed identifier's reviews, once)

    def node(self, key: str) -> Optional[NodePart]:
        st = self.st
        idx = st.node_index.get(key)
        if idx is None:
            return None
        part = node_part(st, idx)
        if st.reviews or st.review_pairs or st.review_rejected:
            if self._reviews is None:
                sides = {n for pairs in (st.reviews.values(), st.review_pairs, st.review_rejected)
                         for pair in pairs for n in pair}
                self._reviews = {n: NodePart(st.node_keys[n]) for n in sides}
                review_parts(st, sides, self._reviews)
            held = self._reviews.get(idx)
            if held is not None:
                part.reviews, part.review_pairs, part.review_rejected = \
                    held.reviews, held.review_pairs, held.review_rejected
        return part

    def profile(self, pid: str) -> Optional[ProfilePart]:
        prof = self.st.profiles.get(pid)
        return profile_part(self.st, prof) if prof is not None else None

    def block(self, key: str) -> Optional[list[str]]:
        filed = self.st.blocks.get(key)
        return [self.st.node_keys[n] for n in filed] if filed is not None else None

    def alias(self, pid: str) -> Optional[str]:
        return self.st.aliases.get(pid)

    def value(self, key: tuple[str, str]) -> tuple[int, Optional[int]]:
        return self.st.value_counts.get(key, 0), self.st.tf_before.get(key)


def unknown_names(part: ResolverState, whole: ResolverState) -> list[str]:
    """The profile names deciding on the slice ``part`` asked about that ``whole`` holds and the slice did
    not (as a live profile, or as an alias): each one means a decision may differ from deciding on
    ``whole`` (none, nearly always)."""
    found: set[str] = set()
    for names, held in ((part.profiles, whole.profiles), (part.aliases, whole.aliases)):
        if isinstance(names, ScopedNames):
            found.update(n for n in names.asked if n in held)
    return sorted(found)
