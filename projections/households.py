"""Households: customers who share a home, as a relationship between profiles instead of a merge.

The resolver keeps a family mailbox, a household landline or a shared tablet from merging the people who
use it (it is *shared*: ``resolver.traits``). This projection records who they are. Two customer profiles
are in one household when

- they used one shared identifier that at most ``MAX_MEMBERS`` customers used (more: a shop's kiosk or a
  lent card, a public place, not a home). A device counts only when it was found shared because people
  with different names or dates of birth used it (a family tablet): a till or a kiosk is used by a few
  customers a day too; or
- their golden records give the same address and postcode.

A household is a connected group of such profiles, of at most ``MAX_MEMBERS`` (the closest ties, those
of fewer customers, are taken first; a tie that would make a bigger group is left out); its ID is named
by the identifier that tied it first (by when it was first given; with none, by its smallest address), so it
stays the same as its members' profiles merge or new members join. Everything here is
computed from the customer views on demand (``households(views)``), so it never disagrees with them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Optional

from projections.customer import PACE_EVERY  # (steps of the computation between two calls of ``pace``)
from resolver.matching import canonical_address, canonical_postcode

if TYPE_CHECKING:
    from projections.customer import CustomerViews

MAX_MEMBERS = 8
HOME_REASONS = ("different first names", "different dates of birth")  # why a device may be a family's
# the share of its time a reader that keeps households up to date (the lookup API, the project role) spends
# computing them while the log grows: a computation takes a pass over every event, so it is made less often
# as the log grows, not more of the time
SHARE = 0.1


def rest_after(interval: float, took: float) -> float:
    """Seconds from the end of a computation of the households that took ``took`` to the start of the next,
    for a reader that recomputes them every ``interval`` seconds while the log grows: at least ``interval``,
    and long enough that computing them takes at most ``SHARE`` of its time."""
    return max(interval, took * (1 - SHARE) / SHARE)


def device_types(config: Any = None) -> frozenset[str]:
    """The device-like identifier types of ``config`` (a ``ResolverConfig``; default: the built-in rules)."""
    if config is None:
        from resolver.config import ResolverConfig

        config = ResolverConfig()
    return frozenset(t for t, rule in config.identifier_types.items() if rule.weak)


def _hid(tie: str) -> str:
    return "h_" + hashlib.blake2b(tie.encode("utf-8"), digest_size=8).hexdigest()


_HOME_FIELDS = ("address", "postcode")  # what of the golden record ties a home


def households(views: "CustomerViews", weak_types: frozenset[str] | None = None,
               pace: Optional[Callable[[], None]] = None) -> dict[str, dict[str, Any]]:
    """Profile ID -> ``{"household_id", "members": [profile IDs], "via": [what ties them]}`` for every
    customer in a household of two or more. ``weak_types``: the device-like identifier types (default:
    those of the built-in rules). ``pace``: called every ``PACE_EVERY`` steps (the lookup API rests there,
    so that requests sharing the interpreter do not wait behind the whole computation)."""
    weak = device_types() if weak_types is None else weak_types
    customers = {pid for pid, prof in views.profiles.items() if prof.nodes and prof.events}
    homely = {idx for idx, flag in views.shared.items()
              if views.node_keys[idx].partition(":")[0] not in weak or any(r in flag["reason"] for r in HOME_REASONS)}
    ties: dict[str, set[str]] = {}  # what ties -> the customers it ties
    since: dict[str, int] = {}  # an identifier that ties -> when it was first given (what names the household)
    ev_profile, node_keys, ev_nodes, ev_at = views.ev_profile, views.node_keys, views.ev_nodes, views.ev_at
    step = max(len(ev_nodes), 1) if pace is None else PACE_EVERY
    for start in range(0, len(ev_nodes), step):
        if pace is not None:
            pace()
        for i, idx in ev_nodes.hits(homely, start, start + step):  # (few events: most tie no home)
            pid = ev_profile[i]
            if pid in customers:
                key = node_keys[idx]
                ties.setdefault(key, set()).add(pid)
                if key not in since or ev_at[i] < since[key]:
                    since[key] = ev_at[i]
    # (any order: each tie's members are a set; the ties are sorted below)
    for n, (pid, home) in enumerate(views.golden_values(_HOME_FIELDS, customers, pace).items()):
        if pace is not None and not n % PACE_EVERY:
            pace()
        address, postcode = canonical_address(home.get("address")), canonical_postcode(home.get("postcode"))
        if address and postcode:
            ties.setdefault(f"address:{address}|{postcode}", set()).add(pid)

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    size: dict[str, int] = {}
    used: dict[str, list[str]] = {}
    # the closest ties first; those of one customer, or of more than a home holds, tie nobody (left out
    # before sorting: most addresses are one customer's, and a long sort would hold up the lookup API)
    useful = [(len(held), t) for t, held in ties.items() if 2 <= len(held) <= MAX_MEMBERS]
    useful.sort()
    for _, tie in useful:
        members = sorted(ties[tie])
        roots = sorted({find(m) for m in members})
        if sum(size.get(r, 1) for r in roots) > MAX_MEMBERS:
            continue  # it would chain homes into something no home is
        for r in roots[1:]:
            parent[r] = roots[0]
        size[roots[0]] = sum(size.get(r, 1) for r in roots)
        used.setdefault(members[0], []).append(tie)
    groups: dict[str, list[str]] = {}
    for pid in parent:
        groups.setdefault(find(pid), []).append(pid)
    out: dict[str, dict[str, Any]] = {}
    for root, members in groups.items():
        members.sort()
        if len(members) < 2:
            continue
        via = sorted(t for m in members for t in used.get(m, ()))
        # (named by the identifier that tied it first, else by its smallest address: a member joining later, by a
        # tie given later or by an address, leaves the name as it was)
        name = min(via, key=lambda t: (t not in since, since.get(t, 0), t))
        house = {"household_id": _hid(name), "members": members, "via": via}
        for m in members:
            out[m] = house
    return out


def household_of(houses: dict[str, dict[str, Any]], profile_id: str) -> Optional[dict[str, Any]]:
    """The household of one customer as ``idres lookup``/``show`` and the API give it:
    ``{"household_id", "others": [the other members' profile IDs], "via": [what ties them]}``, or None.
    ``houses``: what ``households`` returned."""
    house = houses.get(profile_id)
    if house is None:
        return None
    return {"household_id": house["household_id"], "others": [m for m in house["members"] if m != profile_id],
            "via": list(house["via"])}


def household_rows(views: "CustomerViews", weak_types: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """The snapshot's ``households`` table: one row per member (``weak_types`` as ``households`` takes them)."""
    rows = []
    for pid, house in sorted(households(views, weak_types).items()):
        rows.append({"household_id": house["household_id"], "profile_id": pid,
                     "members": len(house["members"]), "via": house["via"]})
    return sorted(rows, key=lambda r: (r["household_id"], r["profile_id"]))
