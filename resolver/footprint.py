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

from itertools import chain, repeat
from typing import Any, Iterable, Optional, Sequence

from resolver.guards import MAX_CULPRIT_SEARCH
from resolver.partition import NodePart, Rounds, read_through
from resolver.state import MAX_SHARED_USERS, Profile, ResolverState


def items(st: ResolverState, event_id: str, node_keys: Iterable[str], blocks: Iterable[str],
          names: bool = True, sessions: bool = True) -> set[str]:
    """The footprint of an event with these identifier keys and blocking keys, against ``st``; ``names``:
    whether it names a person (``linking.names_a_person``); ``sessions``: whether its channel allows
    attributing it by session (``ResolverConfig.by_session``)."""
    return read_through(items_in_rounds(event_id, node_keys, blocks, names, sessions, asking=False), _InState(st))


class _InState:
    """The answers to a footprint's questions, read from a whole state as they are looked up."""

    __slots__ = ("st",)

    def __init__(self, st: ResolverState) -> None:
        self.st = st

    def __getitem__(self, ask: tuple[str, str]) -> Any:
        what, name = ask
        st = self.st
        if what == "nodes":
            idx = st.node_index.get(name)
            return _NodeView(st, idx) if idx is not None else None
        if what == "blocks":
            filed = st.blocks.get(name)
            keys = st.node_keys
            return [keys[n] for n in filed] if filed is not None else None
        return _ProfileView(st, name)


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


def of_command(st: ResolverState, command: dict[str, Any]) -> Optional[set[str]]:
    """The footprint of a person's command (``streams.commands``), against the state before it is decided:
    the identifiers it reads and changes (``k:``) and their profiles (``p:``), which a slice collects whole
    with every identifier's bans and both their sides (``partition.collecting``): a review's two identifiers,
    an unmerged profile's identifiers (and ``a:`` the aliases its ID is resolved through), a lifted ban's two
    sides. None for an erasure, which reaches what no footprint names (the blocks, the value counts), for a
    kind not known here, and for a command naming what the state does not hold (it changes nothing: it fails
    wherever it is decided)."""
    kind = command.get("command")
    out: set[str] = set()
    nodes: Iterable[int]
    if kind == "review":
        pair = st.reviews.get(command.get("review_id"))  # type: ignore[arg-type]
        if pair is None:
            return None
        nodes = pair
    elif kind == "unmerge":
        pid = command.get("profile_id")
        for _ in range(len(st.aliases)):  # (a chain of renames and merges: each link at most once)
            if pid not in st.aliases:
                break
            out.add(f"a:{pid}")
            pid = st.aliases[pid]  # type: ignore[index]
        prof = st.profiles.get(pid)  # type: ignore[arg-type]
        if prof is None:
            return None
        nodes = prof.nodes
    elif kind == "lift":
        ban = st.bans.get(command.get("ban_id"))  # type: ignore[arg-type]
        if ban is None:
            return None
        nodes = [*ban[0], *ban[1]]
    else:
        return None
    for n in nodes:
        out.add("k:" + st.node_keys[n])
        pid = st.node_profile[n]
        if pid is not None:
            out.add("p:" + pid)
    return out


def items_in_rounds(event_id: str, node_keys: Iterable[str], blocks: Iterable[str], names: bool = True,
                    sessions: bool = True, asking: bool = True) -> Rounds:
    """``items``, read from parts of the state (``resolver.partition``) in three rounds
    (``resolver.partition.Rounds``; a question is answered by a ``NodePart``, a blocking key's identifier keys
    or a ``ProfilePart``, or None): the event's identifiers and blocking keys; the identifiers they lead to
    (what is filed under the blocking keys, the customers its identifiers remember) and their profiles; the
    customers those profiles' weak identifiers remember.
    ``asking``: whether each round says what it asks (not for a reader answering as it looks answers up:
    each round then yields None)."""
    out = {"e:" + event_id}
    node_keys, blocks = list(node_keys), list(blocks)
    got = yield chain(zip(repeat("nodes"), node_keys), zip(repeat("blocks"), blocks)) if asking else None
    reached: list[str] = []  # (identifiers whose key and profile are in the footprint)
    profiles: list[str] = []  # (profiles whose waiting customers are)
    filed: list[str] = []
    for key in node_keys:
        out.add("k:" + key)
        part = got["nodes", key]
        if part is None:
            continue
        pid = part.profile
        if pid is not None:
            out.add("p:" + pid)
            profiles.append(pid)
        if names:
            users = part.shared_users
            if users and len(users) < MAX_SHARED_USERS:  # (more: none is attributed by name)
                reached += users
        last = part.session_last
        if last is not None and sessions:  # (an event in person is nobody's by session: it reads no last use)
            reached.append(last[1])
        uses = part.weak_uses
        if uses:
            reached += [user for _, user in uses]
        refused = part.refused
        if refused:
            reached += refused
    for key in blocks:
        out.add("b:" + key)
        held = got["blocks", key]
        if held:
            filed += held
    if not (reached or filed or profiles):
        return out
    got = yield chain(zip(repeat("nodes"), reached), zip(repeat("nodes"), filed),
                      zip(repeat("profiles"), profiles)) if asking else None
    for key in reached:
        _reach(out, key, got["nodes", key])
    for key in filed:
        part = got["nodes", key]
        if part is not None and part.profile is not None:
            out.add("p:" + part.profile)
        else:
            out.add("k:" + key)
    waiting: list[str] = []
    for pid in profiles:
        prof = got["profiles", pid]
        if prof is not None:
            users = prof.waiting
            if users:
                waiting += users
    if waiting:
        got = yield zip(repeat("nodes"), waiting) if asking else None
        for user in waiting:
            _reach(out, user, got["nodes", user])
    return out


def _reach(out: set[str], key: str, part: Optional[NodePart]) -> None:
    """Puts an identifier a footprint reaches in it, and its profile."""
    out.add("k:" + key)
    if part is not None and part.profile is not None:
        out.add("p:" + part.profile)


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
