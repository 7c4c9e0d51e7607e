"""Reads of the identity graph: neighbours, reachable sets, components, and which node stands for an event."""

from __future__ import annotations

from typing import Iterable, Optional

from resolver.ids import short_hash
from resolver.state import ResolverState


def neighbours(st: ResolverState, n: int) -> Iterable[int]:
    """Nodes linked to ``n`` by an identifier edge or a probable link."""
    a = st.adj.get(n)
    f = st.fuzzy.get(n)
    if f is None:
        return a or ()
    if a is None:
        return f
    return [*a, *f]


def reachable(st: ResolverState, start: int, nodes: set[int], without: int) -> set[int]:
    """The nodes of ``nodes`` reachable from ``start`` without passing ``without``."""
    seen = {start}
    stack = [start]
    while stack:
        n = stack.pop()
        for m in neighbours(st, n):
            if m != without and m in nodes and m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


def components(st: ResolverState, nodes: set[int]) -> list[list[int]]:
    """Connected components of the active graph over ``nodes``, each sorted by identifier, in order of
    first identifier (not by node number: that depends on the order the state was built in)."""
    left = set(nodes)
    out: list[list[int]] = []
    by_key = st.node_keys.__getitem__
    for start in sorted(nodes, key=by_key):
        if start not in left:
            continue
        left.discard(start)
        comp = [start]
        stack = [start]
        while stack:
            n = stack.pop()
            for m in neighbours(st, n):
                if m in left:
                    left.discard(m)
                    comp.append(m)
                    stack.append(m)
        comp.sort(key=by_key)
        out.append(comp)
    return out


def has_new_edge(st: ResolverState, keys: list[str]) -> bool:
    """True when some pair of ``keys`` is not yet an identifier edge."""
    idxs = [st.node_index[k] for k in keys]
    for i, a in enumerate(idxs):
        na = st.adj.get(a)
        for b in idxs[i + 1:]:
            if na is None or b not in na:
                return True
    return False


def shared_of(st: ResolverState, node_keys: Iterable[str]) -> list[int]:
    """The event's identifiers that are flagged shared."""
    out = []
    for k in node_keys:
        idx = st.node_index.get(k)
        if idx is not None and idx in st.shared:
            out.append(idx)
    return out


def linked(st: ResolverState, key: str) -> Optional[int]:
    """The node of an identifier that stands: known, not shared, in a profile; else None."""
    idx = st.node_index.get(key)
    if idx is None or idx in st.shared or st.node_profile[idx] is None:
        return None
    return idx


def representative(st: ResolverState, node_keys: list[str], refused: Iterable[str]) -> Optional[int]:
    """The node an event's attribute record is filed under: its strongest active, linked identifier."""
    for key in node_keys:
        idx = linked(st, key)
        if idx is not None and key not in refused:
            return idx
    return None


def new_profile_id(st: ResolverState, seed: str) -> str:
    """A profile ID named by ``seed`` that no profile or alias holds yet."""
    pid = "p_" + short_hash(seed)
    n = 0
    while pid in st.profiles or pid in st.aliases:
        n += 1
        pid = "p_" + short_hash(f"{seed}#{n}")
    return pid
