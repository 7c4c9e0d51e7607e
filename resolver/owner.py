"""A shard's own part of the state, keyed by name (``resolver.partition``).

With the state split among ``n`` shards, every name is owned by one of them (``owner_of``): an identifier by
its key, a profile and the alias of that ID by the ID, a blocking key, an attribute value. A ``PartStore``
holds what its shard owns, answers for it and applies the changes deciding makes to it. Nothing here is
read by more than the owner: a chain decided elsewhere reads copies (a slice) and sends its changes back.
"""

from __future__ import annotations

import zlib
from typing import Optional

from resolver.partition import Changes, NodePart, ProfilePart, node_part, profile_part, review_parts
from resolver.state import ResolverState


def owner_of(kind: str, name: str, n: int) -> int:
    """The shard, of ``n``, owning ``name`` of this ``kind`` (``k`` identifier, ``p`` profile ID or alias,
    ``b`` blocking key, ``v`` attribute value as ``field=value``, ``e`` event ID): a hash every process computes
    alike."""
    if n == 1:
        return 0
    return zlib.crc32(f"{kind}:{name}".encode()) % n


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

    def value(self, key: tuple[str, str], epoch: int) -> tuple[int, Optional[int]]:
        """How many records hold the value, and how many did at the start of ``epoch`` if that changed
        since (None: it did not)."""
        held = self.values.get(key)
        if held is None:
            return 0, None
        return held[0], held[1] if held[2] == epoch else None

    def apply(self, changes: Changes, epoch: int) -> None:
        """Applies ``changes`` (this shard's share of them: ``route``), values counted at the start of ``epoch``."""
        for part in changes.nodes:
            self.nodes[part.key] = part
            if part.reviews:
                self.reviewing.add(part.key)
            else:
                self.reviewing.discard(part.key)
        for pid in changes.gone_profiles:
            self.profiles.pop(pid, None)
        for prof in changes.profiles:
            self.profiles[prof.id] = prof
        for name in changes.gone_aliases:
            self.aliases.pop(name, None)
        self.aliases.update(changes.aliases)
        self.blocks.update(changes.blocks)
        for key, d in changes.values.items():
            held = self.values.get(key)
            if held is None:
                held = self.values[key] = [0, 0, epoch]
            elif held[2] != epoch:
                held[1], held[2] = held[0], epoch
            held[0] += d


def stores_of(st: ResolverState, n: int, seen: bool = True) -> list[PartStore]:
    """A whole state split among ``n`` shards, each part at its owner: what the owners hold once they have
    decided the same events (so shards can take over a state decided in order, as from a checkpoint).
    ``seen``: with each event ID's digest at its owner (what a lookup of event IDs asks for)."""
    stores = [PartStore(s, n) for s in range(n)]
    keys = st.node_keys
    parts = {idx: node_part(st, idx) for idx in range(len(keys))}
    review_parts(st, set(parts), parts)
    for part in parts.values():
        store = stores[owner_of("k", part.key, n)]
        store.nodes[part.key] = part
        if part.reviews:
            store.reviewing.add(part.key)
    for pid, prof in st.profiles.items():
        stores[owner_of("p", pid, n)].profiles[pid] = profile_part(st, prof)
    for name, target in st.aliases.items():
        stores[owner_of("p", name, n)].aliases[name] = target
    for key, filed in st.blocks.items():
        stores[owner_of("b", key, n)].blocks[key] = [keys[m] for m in filed]
    for key, count in st.value_counts.items():  # (with the count at the epoch's start, if it changed since)
        before = st.tf_before.get(key)
        stores[owner_of("v", value_name(key), n)].values[key] = \
            [count, count, -1] if before is None else [count, before, st.tf_epoch]
    for eid, digest in (st.seen_events.items() if seen else ()):
        stores[owner_of("e", eid, n)].seen[eid] = digest
    return stores


def route(changes: Changes, n: int) -> dict[int, Changes]:
    """``changes`` split by the shard owning each part (the statistics' increments go to none of them)."""
    out: dict[int, Changes] = {}

    def to(kind: str, name: str) -> Changes:
        s = owner_of(kind, name, n)
        got = out.get(s)
        if got is None:
            got = out[s] = Changes([], [], [], {}, [], {}, {}, {}, 0, 0, {})
        return got

    for part in changes.nodes:
        to("k", part.key).nodes.append(part)
    for pid in changes.gone_profiles:
        to("p", pid).gone_profiles.append(pid)
    for prof in changes.profiles:
        to("p", prof.id).profiles.append(prof)
    for name in changes.gone_aliases:
        to("p", name).gone_aliases.append(name)
    for name, target in changes.aliases.items():
        to("p", name).aliases[name] = target
    for key, nodes in changes.blocks.items():
        to("b", key).blocks[key] = nodes
    for key, d in changes.values.items():
        to("v", value_name(key)).values[key] = d
    return out
