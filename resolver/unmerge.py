"""A person's unmerge, and the lifting of the connection ban it leaves (``resolver.bans``).

Unmerging identifiers from a profile parts them from the rest of it: the links between the two sides
(identifier edges and probable links) are cut, each side falls into its connected parts (a part that
held the profile's earliest event keeps its ID; every other is named by its own earliest event, so a
profile that was absorbed earlier gets its ID back), and a ban keeps the two sides apart from then on.
"""

from __future__ import annotations

from typing import Optional

from resolver import decisions, graph, naming
from resolver.context import Context
from resolver.errors import CommandError
from resolver.ids import short_hash


def unmerge(ctx: Context, profile_id: str, keys: list[str], by: str, decided_at: str,
            note: Optional[str] = None) -> None:
    """Emits the split and the ban. Raises ``CommandError`` when the profile is unknown, an identifier is
    not in it, or the identifiers named are the whole profile."""
    st = ctx.state
    pid = st.resolve_alias(profile_id)
    prof = st.profiles.get(pid)
    if prof is None:
        raise CommandError(f"no profile {profile_id!r} (look it up with `idres lookup TYPE=VALUE`)")
    named: set[int] = set()
    for key in keys:
        idx = st.node_index.get(key)
        if idx is None or st.node_profile[idx] != pid:
            raise CommandError(f"{key} is not an identifier of profile {pid} (see `idres show {pid}`)")
        named.add(idx)
    rest = prof.nodes - named
    if not named or not rest:
        raise CommandError(f"name some but not all of the identifiers of profile {pid}: the named ones leave "
                           f"it and the rest stay (see `idres show {pid}`)")
    ban = "b_" + short_hash(f"{pid}|{'|'.join(sorted(st.node_keys[n] for n in named))}|{decided_at}")
    side_keys = sorted(st.node_keys[n] for n in named)
    rest_keys = sorted(st.node_keys[n] for n in rest)
    # the parts, as the graph will be once the ban has cut the links between the sides
    parts = [*graph.components(st, named), *graph.components(st, rest)]
    out = naming.parts(st, prof, parts, f"unmerge:{ban}")
    ctx.emit(decisions.profile_split(pid, ban, f"unmerged by {by}", out))
    ctx.emit(decisions.connection_banned(ban, pid, side_keys, rest_keys, by, decided_at, note))


def lift(ctx: Context, ban: str, by: str, decided_at: str, note: Optional[str] = None) -> None:
    """Emits the lift. Raises ``CommandError`` for a ban that is unknown or already lifted."""
    if ban not in ctx.state.bans:
        raise CommandError(f"no connection ban {ban!r} in force (list them with `idres unmerge --list`)")
    ctx.emit(decisions.ban_lifted(ban, by, decided_at, note))
