"""Profile IDs named by the cluster's own events, not by arrival order.

Each identifier remembers the earliest event that used it (``ResolverState.node_first``: its time, its
ID, and the identifier's rank among the event's sorted identifiers, so that two clusters holding
identifiers of the same event get different names). A profile's name is derived from the earliest of
its identifiers' first events: ``p_`` + hash of ``p:<event_id>`` (``p:<event_id>#<rank>`` when the
identifier is not the event's first). The set of events decides it, whatever order they came in; a
late, older event that joins a cluster renames it (``profile_renamed``), and the old ID stays
resolvable as an alias. A name an absorbed profile left behind is taken back when its cluster lives
again (after a split).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from resolver import decisions
from resolver.graph import new_profile_id
from resolver.ids import short_hash
from resolver.state import Profile, ResolverState

First = tuple[str, str, int]  # (occurred_at, event_id, rank of the identifier among the event's)


def seed(first: First) -> str:
    _, event_id, rank = first
    return f"p:{event_id}" if rank == 0 else f"p:{event_id}#{rank}"


def name_of(first: First) -> str:
    return "p_" + short_hash(seed(first))


def names_of(event_id: str, identifiers: int) -> list[str]:
    """The profile IDs an event with this many identifiers may name a profile by (``name_of`` of each rank),
    first choices only (``graph.new_profile_id`` goes on when one is taken)."""
    return [name_of(("", event_id, rank)) for rank in range(max(identifiers, 1))]


def first_of(st: "ResolverState", nodes: Iterable[int]) -> Optional[First]:
    """The earliest first use among ``nodes`` (None when none was used by an event yet)."""
    get = st.node_first.get
    best = None
    for n in nodes:
        f = get(n)
        if f is not None and (best is None or f < best):
            best = f
    return best


def order_key(prof: Profile) -> tuple:
    """Orders profiles by their earliest event (``Profile.first``, kept by the fold), then ID: the first of
    them is a merge's survivor."""
    first = prof.first
    return (0, first, prof.id) if first is not None else (1, (prof.created_at, "", 0), prof.id)


def free(st: ResolverState, name: str) -> bool:
    """Whether a profile may take ``name``: no live profile holds it (an alias may be taken back)."""
    return name not in st.profiles


def settle(ctx: Any, event_id: str, emitted: list[dict[str, Any]]) -> None:
    """Renames every live profile the decisions ``emitted`` (or the event's identifiers) touch whose name
    is not the one its events give it."""
    st = ctx.state
    touched: set[str] = set()
    for d in emitted:
        for field in ("profile_id", "survivor_id"):
            pid = d.get(field)
            if isinstance(pid, str):
                touched.add(pid)
        for part in d.get("parts", ()):
            touched.add(part["profile_id"])
        if d["type"] == "interaction_recorded":
            for key in d["nodes"]:
                idx = st.node_index.get(key)
                if idx is not None and st.node_profile[idx] is not None:
                    touched.add(st.node_profile[idx])
    for pid in sorted(touched):
        prof = st.profiles.get(pid)
        if prof is None or not prof.nodes:
            continue
        first = prof.first  # (kept by the fold)
        if first is None or first == prof.named:
            continue  # its earliest event has not changed since its name was checked
        name = name_of(first)
        if name == pid:
            prof.named = first  # (a cache of a fact of the state: a replay without it finds the same)
        elif free(st, name):
            ctx.emit(decisions.profile_renamed(pid, name, event_id))
        # (a name another profile holds: checked again whenever this profile is touched)


def parts(st: ResolverState, prof: Profile, components: list[list[int]], seed: str) -> list[decisions.SplitPart]:
    """The parts a split leaves of ``prof``, named: the part holding the profile's earliest event keeps its ID;
    every other part is named by its own earliest event (taking back a name it left when absorbed), else by
    ``seed`` and its first identifier. Also sorts ``components`` into that order."""
    components.sort(key=lambda comp: (first_of(st, comp) or ("\uffff", "", 0), st.node_keys[comp[0]]))
    out: list[decisions.SplitPart] = [{"profile_id": prof.id, "created_at": prof.created_at,
                                  "nodes": [st.node_keys[n] for n in components[0]]}]
    taken = {prof.id}
    for comp in components[1:]:
        first = first_of(st, comp)
        name = name_of(first) if first is not None else None
        if name is None or not free(st, name) or name in taken:
            name = new_profile_id(st, f"{seed}:{st.node_keys[comp[0]]}")
        taken.add(name)
        out.append({"profile_id": name, "created_at": first[0] if first is not None else prof.created_at,
                    "nodes": [st.node_keys[n] for n in comp]})
    return out
