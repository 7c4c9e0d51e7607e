"""A shard's own part of the state, keyed by name (``resolver.partition``).

With the state split among ``n`` shards, every name is owned by one of them (``owner_of``): an identifier by
its key, a profile and the alias of that ID by the ID, a blocking key, an attribute value. A ``PartStore``
holds what its shard owns, answers for it and applies the changes deciding makes to it. Nothing here is
read by more than the owner: a chain decided elsewhere reads copies (a slice) and sends its changes back.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable, Optional

from resolver.partition import Changes, NodePart, Patch, ProfilePart, node_part, profile_part, review_parts
from resolver.state import ResolverState


def owner_of(kind: str, name: str, n: int) -> int:
    """The shard, of ``n``, owning ``name`` of this ``kind`` (``k`` identifier, ``p`` profile ID or alias,
    ``b`` blocking key, ``v`` attribute value as ``field=value``, ``e`` event ID): a hash every process computes
    alike."""
    if n == 1:
        return 0
    return zlib.crc32(f"{kind}:{name}".encode()) % n


UNKNOWN = 1 << 62  # (the stamp of a change whose events are not known: later than any)
# A store notes the stamp of each name it was written, gone names too (``PartStore.written``). Once they outnumber
# twice the names it holds (and this many), the older half of the notes is dropped: the store then cannot say what
# was written by events before the newest stamp dropped, and a restatement from before it loads the shards anew.
WRITTEN_SLACK = 65_536
WRITTEN_PER_NAME = 2  # (notes kept per name held)


def value_name(key: tuple[str, str]) -> str:
    return f"{key[0]}={key[1]}"


class PartStore:
    def __init__(self, shard: int, n: int) -> None:
        self.shard = shard
        self.n = n
        self.nodes: dict[str, NodePart] = {}
        self.profiles: dict[str, ProfilePart] = {}
        self.aliases: dict[str, str] = {}
        self.blocks: dict[str, list[str]] = {}
        # (field, value) -> [records holding it, how many did at the start of epoch ``epoch``, ``epoch``]
        self.values: dict[tuple[str, str], list[int]] = {}
        self.reviewing: set[str] = set()  # identifiers that are a side of a pending review
        self.seen: dict[str, int] = {}  # event ID -> the digest of the event decided under it (-1: not logged)
        # (kind, name) -> the stamp of the last change written to it since the store was loaded (``k`` an
        # identifier, ``p`` a profile, ``a`` an alias, ``b`` a blocking key, ``v`` a value): the position after
        # the events whose deciding made it (what a restatement from before there may have to undo:
        # ``written_since``)
        self.written: dict[tuple[str, Any], int] = {}
        self.forgotten = -1  # ``written`` holds every name written by deciding events at this position or after
        self._notes_limit = WRITTEN_SLACK

    def value(self, key: tuple[str, str], epoch: int) -> tuple[int, Optional[int]]:
        """How many records hold the value, and how many did at the start of ``epoch`` if that changed
        since (None: it did not)."""
        held = self.values.get(key)
        if held is None:
            return 0, None
        return held[0], held[1] if held[2] == epoch else None

    def apply(self, changes: Changes, epoch: int, stamp: Optional[int] = None) -> None:
        """Applies ``changes`` (this shard's share of them: ``route``), values counted at the start of ``epoch``;
        ``stamp``: the position after the events whose deciding made them (None: not known, taken as later than
        any)."""
        written = self.written
        at = UNKNOWN if stamp is None else stamp
        for part in changes.nodes:
            self._node(part, at)
        for pid in changes.gone_profiles:
            self.profiles.pop(pid, None)
            written["p", pid] = at
        for prof in changes.profiles:
            self.profiles[prof.id] = prof
            written["p", prof.id] = at
        for name in changes.gone_aliases:
            self.aliases.pop(name, None)
            written["a", name] = at
        self.aliases.update(changes.aliases)
        self.blocks.update(changes.blocks)
        for name in changes.aliases:
            written["a", name] = at
        for key in changes.blocks:
            written["b", key] = at
        for key, d in changes.values.items():
            written["v", key] = at
            held = self.values.get(key)
            if held is None:
                held = self.values[key] = [0, 0, epoch]
            elif held[2] != epoch:
                held[1], held[2] = held[0], epoch
            held[0] += d
        self._bound_notes()

    def _node(self, part: NodePart, stamp: int) -> None:
        self.nodes[part.key] = part
        self.written["k", part.key] = stamp
        if part.reviews:
            self.reviewing.add(part.key)
        else:
            self.reviewing.discard(part.key)

    def written_since(self, position: int) -> Optional[list[tuple[str, Any]]]:
        """The names written since the store was loaded by deciding any event at ``position`` or after; None if
        the store no longer knows (``position`` is before the notes it kept: ``forgotten``)."""
        if position < self.forgotten:
            return None
        return [name for name, at in self.written.items() if at > position]

    def _bound_notes(self) -> None:
        """Drops the older half of ``written`` (by stamp) once the notes outnumber twice the names held (and
        ``WRITTEN_SLACK``), so that they stay within twice the most names held however many names were written
        and are gone since the store was loaded."""
        written = self.written
        if len(written) <= self._notes_limit:
            return
        held = len(self.nodes) + len(self.profiles) + len(self.aliases) + len(self.blocks) + len(self.values)
        if len(written) <= WRITTEN_PER_NAME * held:  # (a store loaded with many names: its notes may grow as far)
            self._notes_limit = WRITTEN_PER_NAME * held
            return
        stamps = sorted(at for at in written.values() if at != UNKNOWN)
        if stamps:
            horizon = stamps[len(stamps) // 2]
            self.written = {name: at for name, at in written.items() if at > horizon}
            self.forgotten = max(self.forgotten, horizon)
        self._notes_limit = max(WRITTEN_SLACK, WRITTEN_PER_NAME * held, 2 * len(self.written))

    def put(self, patch: Patch, stamp: int) -> None:
        """Replaces the parts ``patch`` holds (this shard's share of it: ``route_patch``), and drops the names it
        says are gone; each noted as written at ``stamp``."""
        written = self.written
        for key in patch.gone_nodes:
            self.nodes.pop(key, None)
            self.reviewing.discard(key)
            written["k", key] = stamp
        for part in patch.nodes:
            self._node(part, stamp)
        for held, gone, kind in ((self.profiles, patch.gone_profiles, "p"), (self.aliases, patch.gone_aliases, "a"),
                                 (self.blocks, patch.gone_blocks, "b"), (self.values, patch.gone_values, "v")):
            for name in gone:
                held.pop(name, None)  # type: ignore[attr-defined]
                written[kind, name] = stamp
        for prof in patch.profiles:
            self.profiles[prof.id] = prof
            written["p", prof.id] = stamp
        for kind, held, parts in (("a", self.aliases, patch.aliases), ("b", self.blocks, patch.blocks),
                                  ("v", self.values, patch.values)):
            for name, part in parts.items():
                held[name] = part  # type: ignore[index]
                written[kind, name] = stamp
        self.seen.update(patch.seen)
        self._bound_notes()


def patch_of(st: ResolverState, nodes: Iterable[str], profiles: Iterable[str], blocks: Iterable[str],
             values: Iterable[tuple[str, str]], seen: Optional[dict[str, int]] = None) -> Patch:
    """The parts of ``st`` under these names, as ``stores_of`` gives them, and the names it does not hold
    (``profiles``: profile IDs and alias names both)."""
    patch = Patch(seen=dict(seen or {}))
    index = st.node_index
    parts = {}
    for key in sorted(set(nodes)):
        idx = index.get(key)
        if idx is None:
            patch.gone_nodes.append(key)
        else:
            parts[idx] = node_part(st, idx)
    review_parts(st, set(parts), parts)
    patch.nodes = list(parts.values())
    for pid in sorted(set(profiles)):
        prof = st.profiles.get(pid)
        if prof is None:
            patch.gone_profiles.append(pid)
        else:
            patch.profiles.append(profile_part(st, prof))
        target = st.aliases.get(pid)
        if target is None:
            patch.gone_aliases.append(pid)
        else:
            patch.aliases[pid] = target
    keys = st.node_keys
    for key in sorted(set(blocks)):
        filed = st.blocks.get(key)
        if filed is None:
            patch.gone_blocks.append(key)
        else:
            patch.blocks[key] = [keys[m] for m in filed]
    for key in sorted(set(values)):
        count = st.value_counts.get(key)
        if count is None:
            patch.gone_values.append(key)
        else:
            patch.values[key] = _value_part(st, key, count)
    return patch


def _value_part(st: ResolverState, key: tuple[str, str], count: int) -> list[int]:
    """A value count as its owner holds it: with the count at the epoch's start, if it changed since."""
    before = st.tf_before.get(key)
    return [count, count, -1] if before is None else [count, before, st.tf_epoch]


def route_patch(patch: Patch, n: int) -> dict[int, Patch]:
    """``patch`` split by the shard owning each name."""
    return _routed(patch, n, Patch, _PATCH_FIELDS)


def stores_of(st: ResolverState, n: int, seen: bool = True, only: Optional[Iterable[int]] = None) -> list[PartStore]:
    """A whole state split among ``n`` shards, each part at its owner: what the owners hold once they have
    decided the same events (so shards can take over a state decided in order, as from a checkpoint).
    ``seen``: with each event ID's digest at its owner (what a lookup of event IDs asks for). ``only``: the shards
    whose stores are filled (the others are left empty: a lost holder's shards loaded anew)."""
    stores = [PartStore(s, n) for s in range(n)]
    mine = set(range(n)) if only is None else set(only)
    every = len(mine) == n
    keys = st.node_keys
    parts = {idx: node_part(st, idx) for idx in range(len(keys))
             if every or owner_of("k", keys[idx], n) in mine}
    review_parts(st, set(parts), parts)
    for part in parts.values():
        store = stores[owner_of("k", part.key, n)]
        store.nodes[part.key] = part
        if part.reviews:
            store.reviewing.add(part.key)
    for pid, prof in st.profiles.items():
        owner = owner_of("p", pid, n)
        if owner in mine:
            stores[owner].profiles[pid] = profile_part(st, prof)
    for name, target in st.aliases.items():
        owner = owner_of("p", name, n)
        if owner in mine:
            stores[owner].aliases[name] = target
    for key, filed in st.blocks.items():
        owner = owner_of("b", key, n)
        if owner in mine:
            stores[owner].blocks[key] = [keys[m] for m in filed]
    for key, count in st.value_counts.items():
        owner = owner_of("v", value_name(key), n)
        if owner in mine:
            stores[owner].values[key] = _value_part(st, key, count)
    for eid, digest in (st.seen_events.items() if seen else ()):
        owner = owner_of("e", eid, n)
        if owner in mine:
            stores[owner].seen[eid] = digest
    return stores


def route(changes: Changes, n: int) -> dict[int, Changes]:
    """``changes`` split by the shard owning each part (the statistics' increments go to none of them)."""
    return _routed(changes, n, lambda: Changes([], [], [], {}, [], {}, {}, {}, 0, 0, {}), _CHANGES_FIELDS)


def _by_key(part: NodePart) -> str:
    return part.key


def _by_id(prof: ProfilePart) -> str:
    return prof.id


# (field, the kind of name its owner is found by, the name of an item of a list: None for a list of names; a
# dict's items are found by their key)
_CHANGES_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("nodes", "k", _by_key), ("gone_profiles", "p", None), ("profiles", "p", _by_id), ("gone_aliases", "p", None),
    ("aliases", "p", None), ("blocks", "b", None), ("values", "v", None))
_PATCH_FIELDS = _CHANGES_FIELDS + (("gone_nodes", "k", None), ("gone_blocks", "b", None),
                                   ("gone_values", "v", None), ("seen", "e", None))


def _routed(whole: Any, n: int, empty: Any, fields: tuple[tuple[str, str, Any], ...]) -> dict[int, Any]:
    """``whole`` (``Changes`` or ``Patch``) split by the shard owning each item of ``fields``, each shard's
    share made by ``empty()``."""
    out: dict[int, Any] = {}
    for name, kind, of in fields:
        items = getattr(whole, name)
        keyed = isinstance(items, dict)
        for item in items:
            key = of(item) if of is not None else item
            s = owner_of(kind, value_name(key) if kind == "v" else key, n)
            got = out.get(s)
            if got is None:
                got = out[s] = empty()
            if keyed:
                getattr(got, name)[item] = items[item]
            else:
                getattr(got, name).append(item)
    return out
