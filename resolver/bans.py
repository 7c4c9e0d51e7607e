"""Connection bans: identifiers a person said belong to different customers (cannot-link constraints).

A ban has two sides, each a set of identifiers, fixed when a person decides it: an unmerge (the
identifiers named, and the rest of the profile they left) or a rejected review (the pair's two
identifiers). The ban follows the identifiers, not the profile IDs: no profile may come to hold an
identifier of one side and one of the other, whatever later event, probable link, accepted review or
merge would join them, and whichever profiles they have grown into, until a person lifts it. A join that
would is refused (``link_refused`` on an event, a verdict ``blocked``, a probable link not made).

A profile that already holds both sides does not breach the ban by growing: the ban bars bringing the
sides together (a review rejected after its pair was linked by other evidence records no ban: its outcome
is ``already_linked``, and an unmerge separates them).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from resolver.state import Profile, ResolverState

Marks = dict[str, int]  # ban ID -> the sides present: 1 (the first), 2 (the second), 3 (both)


def marks(st: ResolverState, profiles: Iterable[Profile], nodes: Iterable[Optional[int]] = ()) -> Marks:
    """The sides of bans that ``profiles`` and the loose ``nodes`` (identifiers in no profile yet) hold."""
    out: Marks = {}
    sides = st.ban_sides
    if not sides:
        return out
    profiles = list(profiles)
    if sum(len(p.nodes) for p in profiles) > len(sides):
        ids = {p.id for p in profiles}
        held: Iterable[int] = [n for n in sides if st.node_profile[n] in ids]
    else:
        held = [n for p in profiles for n in p.nodes if n in sides]
    for n in [*held, *(n for n in nodes if n is not None and n in sides)]:
        for ban, side in sides[n].items():
            out[ban] = out.get(ban, 0) | side
    return out


def crossed(a: Marks, b: Marks) -> Optional[str]:
    """The ban joining ``a`` and ``b`` would breach (the smallest ID, so the reason does not depend on
    order), or None."""
    found = [ban for ban, ma in a.items() if ma != 3 and (mb := b.get(ban, 0)) and mb != 3 and ma | mb == 3]
    return min(found) if found else None


def reason(st: ResolverState, ban: str) -> str:
    return f"a person said these are different customers (ban {ban} by {st.bans[ban][2]})"


def breach(st: ResolverState, left: Iterable[Profile], right: Iterable[Profile],
           left_nodes: Iterable[Optional[int]] = (), right_nodes: Iterable[Optional[int]] = ()) -> Optional[str]:
    """Why joining ``left`` and ``right`` (profiles and loose nodes) would breach a ban, or None."""
    if not st.ban_sides:
        return None
    ban = crossed(marks(st, left, left_nodes), marks(st, right, right_nodes))
    return reason(st, ban) if ban is not None else None


# ------------------------------------------------------------------------------------------- the fold
def add(st: ResolverState, ban: str, first: Iterable[int], second: Iterable[int], by: str) -> None:
    """Records a ban and cuts the links that cross it (identifier edges and probable links)."""
    one, two = frozenset(first), frozenset(second)
    st.bans[ban] = (one, two, by)
    for side, nodes in ((1, one), (2, two)):
        for n in nodes:
            st.ban_sides.setdefault(n, {})[ban] = st.ban_sides.get(n, {}).get(ban, 0) | side
    small, large = (one, two) if len(one) <= len(two) else (two, one)
    for edges in (st.adj, st.fuzzy):
        for n in small:
            out = edges.get(n)
            if not out:
                continue
            for m in [m for m in out if m in large]:
                del out[m]
                back = edges.get(m)
                if back is not None:
                    back.pop(n, None)
                    if not back:
                        del edges[m]
            if not out:
                del edges[n]


def lift(st: ResolverState, ban: str) -> None:
    one, two, _ = st.bans.pop(ban)
    for n in one | two:
        held = st.ban_sides.get(n)
        if held is not None:
            held.pop(ban, None)
            if not held:
                del st.ban_sides[n]


def described(st: ResolverState, ban: str) -> dict[str, Any]:
    one, two, by = st.bans[ban]
    keys = st.node_keys
    return {"ban_id": ban, "by": by, "sides": [sorted(keys[n] for n in one), sorted(keys[n] for n in two)]}
