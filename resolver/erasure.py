"""A person's erasure of a customer (the right to be forgotten).

``idres erase TYPE=VALUE`` names an identifier; the customer behind it is the profile holding it, and all
of that profile is erased: its identifiers leave the graph (their edges, probable links, records, traits,
pending reviews and places in connection bans go with them) and the profile and its aliases are gone, so a
lookup of any of them finds nothing. An identifier in no profile (one found shared: a family mailbox, a
kiosk) is erased alone, and what it tied together falls apart (the household it made). The decision names
the events and rejected records whose contents the driver shreds with the identifiers' keys
(``streams.sealing``); the events stay known by ID, so a re-delivered one is still recognized and does not
bring the customer back. Erasures are explicit orderings by a person, decided where they are given.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from resolver import decisions
from resolver.context import Context
from resolver.errors import NothingToErase
from resolver.ids import node_type, short_hash


def scope(ctx: Context, keys: list[str]) -> tuple[list[str], list[str]]:
    """The profiles and the identifiers an erasure of ``keys`` (node keys) removes. Raises ``NothingToErase``
    when none of them is known."""
    st = ctx.state
    profiles: set[str] = set()
    nodes: set[int] = set()
    for key in keys:
        idx = st.node_index.get(key)
        if idx is None:
            continue
        pid = st.node_profile[idx]
        if pid is not None:
            profiles.add(pid)
            nodes |= st.profiles[pid].nodes
        else:
            nodes.add(idx)
    if not nodes:
        raise NothingToErase(f"no customer holds {', '.join(keys)}: nothing to erase (look it up with "
                           "`idres lookup TYPE=VALUE`)")
    return sorted(profiles), sorted(st.node_keys[n] for n in nodes)


def erase(ctx: Context, keys: list[str], events: Iterable[str], rejected: Iterable[str], by: str, decided_at: str,
          reason: Optional[str] = None, unusable: Iterable[Sequence[str]] = ()) -> None:
    """Emits the erasure of the customers holding ``keys``; ``events``, ``rejected`` (record keys) and
    ``unusable`` (``[type, value]``: values events gave that they could not use then and that read as an erased
    identifier now): what of theirs the driver found in its views, to be shredded with them."""
    profiles, nodes = scope(ctx, keys)
    # (named by what of it is no one's personal data: a hash of the identifiers would let whoever reads the log
    # confirm a guess of who asked to be forgotten, which the identifiers' sealing exists to prevent)
    # (and, for an identifier in no profile with no events of its own, the earliest event that gave it: two such
    # erasures decided at one instant had one ID)
    st = ctx.state
    firsts = sorted(str(st.node_first.get(st.node_index[k])) for k in nodes if k in st.node_index)
    erasure = "x_" + short_hash("|".join([*profiles, *sorted(set(events)), *sorted(map(node_type, nodes)), *firsts,
                                          decided_at]))
    ctx.emit(decisions.customer_erased(erasure, profiles, nodes, sorted(set(events)), sorted(set(rejected)), by,
                                       decided_at, reason, sorted({(t, v) for t, v in unusable})))
