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

from resolver.partition import ScopedNames, Slice, neighbours_of, node_part, profile_part, review_parts, \
    shared_of, wanted_values
from resolver.state import Profile, ResolverState


def extract(st: ResolverState, items: Iterable[str], values: Iterable[tuple[str, str]] = (),
            position: Optional[int] = None) -> ResolverState:
    """The slice of ``st`` that deciding events with these footprint ``items`` reads; ``values``: the
    ``(field, value)`` pairs of their attribute records; ``position``: the number of events decided
    before the first of them (default: all of ``st``'s)."""
    return extract_slice(st, items, values, position).state


def extract_slice(st: ResolverState, items: Iterable[str], values: Iterable[tuple[str, str]] = (),
                  position: Optional[int] = None) -> Slice:
    """``extract``, as a ``Slice`` (which also says what deciding on it changed)."""
    items = list(items)
    node_index, node_profile, profiles = st.node_index, st.node_profile, st.profiles
    core: set[int] = set()
    names: list[str] = []
    blocks: dict[str, list[str]] = {}
    keys = st.node_keys
    for item in items:
        kind, _, name = item.partition(":")
        if kind == "k":
            idx = node_index.get(name)
            if idx is not None:
                core.add(idx)
                pid = node_profile[idx]
                if pid is not None:
                    names.append(pid)
        elif kind == "p":
            names.append(name)
        elif kind == "b":
            filed = st.blocks.get(name)
            if filed is not None:
                core.update(filed)
                blocks[name] = [keys[n] for n in filed]
    held: dict[str, Profile] = {}
    for pid in names:
        prof = profiles.get(pid)
        if prof is not None and pid not in held:
            held[pid] = prof
            core.update(prof.nodes)
    for n in list(core):  # (a block's identifier brings its profile)
        pid = node_profile[n]
        if pid is not None and pid not in held:
            held[pid] = profiles[pid]
            core.update(held[pid].nodes)
    parts = {n: node_part(st, n) for n in core}
    if st.reviews or st.review_pairs or st.review_rejected:
        review_parts(st, core, parts)
    bans = sorted({ban for p in parts.values() if p.ban_sides for ban in p.ban_sides})
    shared = shared_of(st, bans)
    edge: dict[str, Optional[str]] = {}
    inside = {keys[n] for n in core}
    pointed = [k for p in parts.values() for k in neighbours_of(p)]
    pointed += [k for one, two, _ in shared.bans.values() for k in (*one, *two)]
    for k in pointed:
        if k not in inside and k not in edge:
            edge[k] = node_profile[node_index[k]]
    wanted = set(values) | wanted_values(parts.values())
    counts, before = st.value_counts, st.tf_before
    return Slice(parts.values(), edge, [profile_part(st, p) for p in held.values()],
                 {pid: st.aliases[pid] for pid in held if pid in st.aliases}, blocks,
                 {key: (counts.get(key, 0), before.get(key)) for key in wanted}, shared,
                 len(st.seen_events) if position is None else position)


def unknown_names(part: ResolverState, whole: ResolverState) -> list[str]:
    """The profile names deciding on the slice ``part`` asked about that ``whole`` holds and the slice did
    not (as a live profile, or as an alias): each one means a decision may differ from deciding on
    ``whole`` (none, nearly always)."""
    found: set[str] = set()
    for names, held in ((part.profiles, whole.profiles), (part.aliases, whole.aliases)):
        if isinstance(names, ScopedNames):
            found.update(n for n in names.asked if n in held)
    return sorted(found)
