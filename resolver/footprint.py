"""Footprints: what deciding an event may read or change, and which events of a window are independent.

Deciding an event reads and changes the state of its identifiers, of the profiles they belong to, of the
blocking keys of its attribute record and of the profiles of the records filed under them, of the
identifiers its weak identifiers remember (the customers who used them) and, if it names a person, those
its shared identifiers remember (it may be one of theirs: ``linking.attribute_by_name``; an event that
names nobody reads none of them, which keeps the events of a shop terminal's or a family mailbox's many
customers from joining up through it), and of those the weak
identifiers of its profiles remember while anonymous events wait on them (linking may find one of those
tied two people together and hand its anonymous events to the customers who used it: ``linking.flag``). Everything else it
reads is a statistic over all events, read as it stood at the start of the epoch (``resolver.epochs``).

An event's *footprint* names all of that, as the state stands before the window of events it belongs to
is decided: ``e:`` its ID, ``k:`` identifiers, ``b:`` blocking keys, ``p:`` profiles. Two events whose
footprints share nothing are independent: deciding either first gives both the same decisions, because
neither reads anything the other changes (an event can reach a profile only through an identifier or a
blocking key in its footprint, and a profile another event creates or changes is one that event named).
Events that share an item, directly or through other events of the window, form a *chain*, decided in
order. The chains of a window can be decided at once, each on its own copy of the state, and the result
is the one of deciding every event in order (``streams.shards``).

A footprint may name more than the event turns out to touch: that only joins chains that could have run
apart. It must never name less; the property tests decide corpora both ways and compare the logs.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

from resolver.guards import MAX_CULPRIT_SEARCH
from resolver.partition import NodePart, ProfilePart
from resolver.state import Profile, ResolverState


def items(st: ResolverState, event_id: str, node_keys: Iterable[str], blocks: Iterable[str],
          names: bool = True) -> set[str]:
    """The footprint of an event with these identifier keys and blocking keys, against ``st``; ``names``:
    whether it names a person (``linking.names_a_person``)."""
    index, node_keys_of = st.node_index, st.node_keys

    def node(key: str) -> Optional[_NodeView]:
        idx = index.get(key)
        return _NodeView(st, idx) if idx is not None else None

    def block(key: str) -> Optional[list[str]]:
        filed = st.blocks.get(key)
        return [node_keys_of[n] for n in filed] if filed is not None else None

    def profile(pid: str) -> _ProfileView:
        return _ProfileView(st, pid)

    return items_of_parts(event_id, node_keys, blocks, node, block, profile, names)  # type: ignore[arg-type]


class _NodeView:
    """What a footprint reads of an identifier of a whole state, as ``NodePart`` names it."""

    __slots__ = ("st", "idx")

    def __init__(self, st: ResolverState, idx: int) -> None:
        self.st, self.idx = st, idx

    @property
    def profile(self) -> Optional[str]:
        return self.st.node_profile[self.idx]

    @property
    def shared_users(self) -> Optional[list[str]]:
        return self.st.shared_users.get(self.idx)

    @property
    def session_last(self) -> Optional[tuple[str, str]]:
        return self.st.session_last.get(self.idx)

    @property
    def weak_uses(self) -> Optional[list[tuple[str, str]]]:
        return self.st.weak_uses.get(self.idx)

    @property
    def refused(self) -> Optional[set[str]]:
        return self.st.refused.get(self.idx)


class _ProfileView:
    """What a footprint reads of a profile of a whole state, as ``ProfilePart`` names it."""

    __slots__ = ("st", "pid")

    def __init__(self, st: ResolverState, pid: str) -> None:
        self.st, self.pid = st, pid

    @property
    def waiting(self) -> list[str]:
        return waiting_users(self.st, self.st.profiles[self.pid])


def waiting_users(st: ResolverState, prof: Profile) -> list[str]:
    """The customers who used a weak identifier of ``prof`` with anonymous events waiting on it, if linking
    may flag one of its identifiers (``guards.culprit``: a profile of at most ``MAX_CULPRIT_SEARCH``)."""
    if len(prof.nodes) > MAX_CULPRIT_SEARCH or not st.weak_anon:
        return []
    waiting, uses = st.weak_anon, st.weak_uses
    return sorted({user for n in prof.nodes if n in waiting for _, user in uses.get(n, ())})


def items_of_parts(event_id: str, node_keys: Iterable[str], blocks: Iterable[str],
                   node: Callable[[str], Optional[NodePart]],
                   block: Callable[[str], Optional[list[str]]],
                   profile: Callable[[str], Optional[ProfilePart]], names: bool = True) -> set[str]:
    """``items``, read from parts of the state (``resolver.partition``): ``node(key)``, ``block(key)`` and
    ``profile(id)`` give what the state holds of an identifier, a blocking key and a profile, or None;
    ``names``: whether the event names a person."""
    out = {"e:" + event_id}

    def reach(key: str) -> Optional[NodePart]:
        out.add("k:" + key)
        part = node(key)
        if part is not None and part.profile is not None:
            out.add("p:" + part.profile)
        return part

    for key in node_keys:
        part = reach(key)
        if part is None:
            continue
        if names:
            for user in part.shared_users or ():
                reach(user)
        if part.session_last is not None:
            reach(part.session_last[1])
        for _, user in part.weak_uses or ():
            reach(user)
        for partner in part.refused or ():
            reach(partner)
        if part.profile is not None:
            prof = profile(part.profile)
            for user in prof.waiting if prof is not None else ():
                reach(user)
    for key in blocks:
        out.add("b:" + key)
        for k in block(key) or ():
            part = node(k)
            if part is not None and part.profile is not None:
                out.add("p:" + part.profile)
            else:
                out.add("k:" + k)
    return out


def chains(footprints: Sequence[Iterable[str]]) -> list[list[int]]:
    """The events of a window (their footprints, in the order they are decided) grouped into chains of
    events that share a footprint item, directly or through others; each chain in order, the chains in
    order of their first event."""
    return chains_of(len(footprints), links(enumerate(footprints)))


def links(footprints: Iterable[tuple[int, Iterable[str]]]) -> list[tuple[int, int]]:
    """For ``(event, footprint)`` pairs in event order, the pairs of events that share an item: each event
    with the first one naming the item. Items may be taken in any grouping (by the shard owning them, say):
    ``chains_of`` over the union of every group's pairs is the same."""
    first: dict[str, int] = {}
    out = []
    for i, fp in footprints:
        for item in fp:
            j = first.get(item)
            if j is None:
                first[item] = i
            elif j != i:
                out.append((j, i))
    return out


def chains_of(events: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """``events`` events grouped into the chains the ``pairs`` of linked events make; each chain in order,
    the chains in order of their first event."""
    parent = list(range(events))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for j, i in pairs:
        a, b = root(j), root(i)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(events):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])
