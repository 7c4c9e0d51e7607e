"""Guards: what keeps strangers apart. Pure reads of the state that say why a link would be wrong.

* ``cooccurrence_breach``: an identifier seen with more distinct values of another type, or more
  distinct people (dates of birth, first names), than one person could have is shared;
* ``conflict``: joining a profile would break ``max_per_profile``, join different dates of birth or
  first names, or let a weak identifier join two known customers;
* ``culprit``: the identifier inside a profile that tied two conflicting people together;
* ``fuzzy_conflict``: the hard rules a probabilistic link may not break.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from resolver import graph
from resolver import traits as person
from resolver.config import ResolverConfig
from resolver.context import Context
from resolver.ids import node_type
from resolver.state import Profile, ResolverState

MAX_CULPRIT_SEARCH = 200


class Acc:
    """The profile an event is building while its identifiers are taken in priority order."""

    __slots__ = ("profiles", "new_nodes", "counts", "traits", "own", "state", "now", "used")

    def __init__(self, state: ResolverState, own: Iterable[str] = (), now: Optional[str] = None,
                 used: Iterable[int] = ()) -> None:
        self.profiles: list[Profile] = []
        self.new_nodes: list[str] = []
        self.counts: dict[str, int] = {}
        self.traits: set[str] = set()  # of the profiles and identifiers taken so far
        self.own: frozenset[str] = frozenset(own)  # of the event itself
        self.state = state
        self.now = now  # when the event happened (None: a reviewer's verdict)
        self.used: frozenset[int] = frozenset(used)  # the known identifiers the event itself carries

    def empty(self) -> bool:
        return not self.profiles and not self.new_nodes

    def add(self, counts: dict[str, int], traits: Iterable[str]) -> None:
        for t, c in counts.items():
            self.counts[t] = self.counts.get(t, 0) + c
        self.traits.update(traits)


def over_limit(rule: Any, id_type: str, count: int) -> Optional[str]:
    """Why ``count`` values of ``id_type`` are more than one customer may hold (``max_per_profile``)."""
    if rule.max_per_profile is not None and count > rule.max_per_profile:
        return f"would give one customer {count} {id_type} values (limit {rule.max_per_profile})"
    return None


def limit_breach(acc: Acc, rule: Any, id_type: str, count: int, side: Iterable[Optional[int]]) -> Optional[str]:
    """Why joining ``acc`` and the nodes ``side`` (None: an identifier new on this event) would give one
    customer more values of ``id_type`` than ``max_per_profile``; for a ``successive`` type, more in
    use at the same time."""
    breach = over_limit(rule, id_type, count)
    if breach is None or not rule.successive:
        return breach
    n = at_once(acc, id_type, side)
    if n <= rule.max_per_profile:
        return None  # one after the other: a lost card and its replacement
    return f"would give one customer {n} {id_type} values in use at the same time (limit {rule.max_per_profile})"


def at_once(acc: Acc, id_type: str, side: Iterable[Optional[int]]) -> int:
    """The most values of ``id_type`` of ``acc`` and ``side`` in use at one time (their first to last use)."""
    st = acc.state
    spans: list[tuple[str, str]] = []

    def add(idx: Optional[int]) -> None:
        span = st.node_span.get(idx) if idx is not None else None
        if acc.now is not None:
            if span is None:
                span = (acc.now, acc.now)
            elif idx in acc.used:  # used on this event too: its span reaches now
                span = (min(span[0], acc.now), max(span[1], acc.now))
        if span is not None:
            spans.append(span)

    for prof in acc.profiles:
        for n in prof.nodes:
            if st.node_types[n] == id_type:
                add(n)
    for key in acc.new_nodes:
        if node_type(key) == id_type:
            add(st.node_index.get(key))
    for n in side:
        if n is None or st.node_types[n] == id_type:
            add(n)
    edges = sorted([(a, 0) for a, _ in spans] + [(b, 1) for _, b in spans])  # a start before an end at one time
    most = live = 0
    for _, end in edges:
        live += -1 if end else 1
        most = max(most, live)
    return most


def nothing_new(st: ResolverState, idxs: list[Optional[int]], traits: tuple[str, ...]) -> bool:
    """True when the event only repeats what is known: every identifier already linked, all in one
    profile, every pair already an edge, and its date of birth and name (if any) already on each.
    Then the full path would decide nothing; this answers the common case cheaply."""
    pid = None
    for i in idxs:
        if i is None or i in st.shared:
            return False
        p = st.node_profile[i]
        if p is None or (pid is not None and p != pid):
            return False
        pid = p
        if traits:
            known = st.node_traits.get(i, {})
            for t in traits:
                if known.get(t, 0) < person.SUPPORT[person.FIRST_NAME]:
                    return False  # new, or it may yet make the identifier a second person's
    if len(idxs) > 1:
        adj = st.adj
        for n, a in enumerate(idxs):
            na = adj.get(a)
            if na is None:
                return False
            for b in idxs[n + 1:]:
                if b not in na:
                    return False
    return True


def cooccurrence_breach(st: ResolverState, idx: int, node_keys: list[str], traits: tuple[str, ...],
                        limits: dict[str, int]) -> Optional[tuple[str, dict[str, Any]]]:
    """Why the event would show identifier ``idx`` with more partners than one person has, or None."""
    neighbours = st.adj.get(idx, {})
    refused = st.refused.get(idx, ())
    for t, limit in limits.items():
        if t in person.KINDS:
            incoming = person.carry(traits, t)
            if not incoming:
                continue
            known = st.node_traits.get(idx, {})
            if known.get(incoming[0], 0) >= person.SUPPORT[t]:
                continue  # a person already counted, named again: no one new
            seen = dict(known)
            seen[incoming[0]] = seen.get(incoming[0], 0) + 1
            distinct = person.distinct(seen, t)
            if distinct > limit:
                return (f"seen with {distinct} different {person.WHAT[t]} (limit {limit})", {t: distinct})
            continue
        incoming = [k for k in node_keys if node_type(k) == t]
        if not incoming:
            continue
        values = {st.node_keys[n] for n in neighbours if st.node_types[n] == t}
        values.update(k for k in refused if node_type(k) == t)
        if incoming[0] in values or len(values) + 1 <= limit:
            continue
        seen = sorted(values | {incoming[0]})
        if _owners(st, seen, incoming[0], traits) <= limit:
            continue  # several values of one person's (her two emails, named the same on both)
        return (f"seen with {len(seen)} different {t} values (limit {limit})", {t: seen[:10]})
    return None


def _owners(st: ResolverState, keys: list[str], incoming: str, traits: tuple[str, ...]) -> int:
    """How many people hold ``keys``: values in one profile, or in profiles that name the same person
    with more than a first name (``traits.same_person``), are one person's. ``traits``: the event's,
    for ``incoming`` when it is new."""
    groups: list[tuple[set[Optional[str]], set[str]]] = []  # (profiles, people named)
    for key in keys:
        idx = st.node_index.get(key)
        pid = st.node_profile[idx] if idx is not None else None
        if pid is not None:
            named: set[str] = st.profiles[pid].traits
        elif idx is not None and idx in st.node_traits:
            named = set(st.node_traits[idx])
        else:
            named = set(traits) if key == incoming else set()
        for profiles, people in groups:
            if (pid is not None and pid in profiles) or (named and person.same_person(named, people)):
                profiles.add(pid)
                people.update(named)
                break
        else:
            groups.append(({pid}, set(named)))
    return len(groups)


def conflict(cfg: ResolverConfig, acc: Acc, counts: dict[str, int], known: Iterable[str],
             bridge_type: str, person_agrees: bool = False,
             side: Iterable[Optional[int]] = ()) -> Optional[tuple[str, dict[str, Any]]]:
    """Why adding identifiers with ``counts`` and people ``known`` to ``acc`` through an identifier of
    ``bridge_type`` would join customers that conflict, with the evidence; None if it would not.
    ``person_agrees``: the two sides name one person (``traits.same_person``), so a weak identifier
    may join them. ``side``: the nodes ``counts`` counts (None: an identifier new on this event)."""
    bridge_rule = cfg.rule(bridge_type)
    for t in sorted(counts):  # (by type: the reason does not depend on the order the profile was built in)
        c = counts[t]
        have = acc.counts.get(t, 0)
        if not have:
            continue
        rule = cfg.rule(t)
        if bridge_rule.weak and not rule.weak and not person_agrees:
            return (f"weak identifier {bridge_type} would join two customers with different {t} values",
                    {"type": t, "weak": True})
        breach = limit_breach(acc, rule, t, have + c, side)
        if breach:
            return breach, {"type": t, "count": have + c}
    known = set(known)
    # Dates of birth: the event's own date counts too (a call on a landline known with another date
    # of birth shows the landline is shared). First names only where the event joins identifiers
    # already known with other names: a name on one event may be a gift's recipient's, which the
    # co-occurrence limits weigh.
    mine = acc.traits | acc.own
    which = person.conflict(mine, known, (person.DOB,))
    if which is None and not acc.empty():
        which = person.conflict(acc.traits, known, (person.FIRST_NAME,))
    if which is not None:
        return (f"would join customers with different {person.WHAT[which]}",
                {which: len(person.shown(mine | known, which))})
    return None


def culprit(ctx: Context, acc: Acc, idx: int, prof: Profile) -> int:
    """The identifier to stop linking so that ``idx`` can join ``acc``: the weakest node of
    ``prof`` whose removal leaves ``idx`` in a part compatible with ``acc``, else ``idx`` itself."""
    st = ctx.state
    if len(prof.nodes) > MAX_CULPRIT_SEARCH:
        return idx
    bridge_type = st.node_types[idx]
    priority = ctx.priority

    def rank(n: int) -> tuple[int, int, str]:
        return (-priority(st.node_types[n]), -len(st.adj.get(n, ())), st.node_keys[n])

    best = idx
    for x in sorted(prof.nodes):
        if x == idx or rank(x) >= rank(best):
            continue
        part = graph.reachable(st, idx, prof.nodes, x)
        counts: dict[str, int] = {}
        known: set[str] = set()
        for n in part:
            t = st.node_types[n]
            counts[t] = counts.get(t, 0) + 1
            nt = st.node_traits.get(n)
            if nt:
                known.update(nt)
        if conflict(ctx.config, acc, counts, known, bridge_type, side=part) is None:
            best = x
    return best


def fuzzy_conflict(cfg: ResolverConfig, acc: Acc, target: Profile) -> Optional[str]:
    """Why two profiles may not merge on attribute evidence (a hard rule), or None."""
    for t in sorted(target.counts):
        c = target.counts[t]
        have = acc.counts.get(t, 0)
        if not have:
            continue
        breach = limit_breach(acc, cfg.rule(t), t, have + c, target.nodes)
        if breach:
            return breach
    # (dates of birth only: first names that differ are for the matcher to weigh, and at most queue a
    # pair for review, since twins agree on everything else; and by the dates alone, as ``hard_conflict``:
    # on attribute evidence the names do not vouch for a date years out, namesakes share them)
    if cfg.dob_conflict and person.conflict(acc.traits, target.traits, (person.DATES_ALONE,)):
        return f"dates of birth differ ({len(person.shown(acc.traits | target.traits, person.DOB))} different)"
    return None
