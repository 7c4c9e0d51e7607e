"""Deterministic linking: the decisions one event's identifiers lead to.

Identifiers seen together on an event are linked, strongest first (``priority``). Before that, an
identifier the event would show with more partners than one person has is flagged shared (its edges
are revoked and its profile re-split). An identifier that would join conflicting profiles is refused:
a weak one (a device) or one that would join differently named people is not linked on this event
(``link_refused``); any other is flagged shared, after looking inside the other profile for the
identifier that really tied two people together (``guards.culprit``).
"""

from __future__ import annotations

from typing import Any, Optional

from resolver import bans, decisions, graph, naming, sessions
from resolver import traits as person
from resolver.context import Context
from resolver.guards import Acc, conflict, cooccurrence_breach, culprit, nothing_new
from resolver.ids import node_type
from resolver.state import MAX_SHARED_USERS


def link(ctx: Context, event_id: str, occurred_at: str, node_keys: list[str], traits: tuple[str, ...]) -> list[str]:
    """Links the event's identifiers; returns those that stay active but were not linked on it."""
    st = ctx.state
    cfg = ctx.config
    existing = [st.node_index.get(k) for k in node_keys]
    if nothing_new(st, existing, traits):
        return []

    # 1. Data-driven guard: would this event show an identifier with more partners than one
    #    person could have? Then that identifier is shared, whatever order events came in.
    for key, idx in zip(node_keys, existing):
        if idx is None or idx in st.shared:
            continue
        rule = cfg.rule(st.node_types[idx])
        if not rule.max_cooccurring:
            continue
        reason = cooccurrence_breach(st, idx, node_keys, traits, rule.max_cooccurring)
        if reason:
            flag(ctx, key, event_id, reason[0], reason[1])

    # 2. Link the event's identifiers strongest first; refuse the one that would join conflicting
    #    profiles, and flag it shared.
    acc = Acc(st, traits, occurred_at, (i for i in existing if i is not None))
    accepted: list[str] = []
    refused: list[str] = []
    carried: dict[str, str] = {}  # weak identifier -> the person both sides name, which let it join
    for key in node_keys:
        idx = st.node_index.get(key)
        if idx is not None and idx in st.shared:
            continue
        pid = st.node_profile[idx] if idx is not None else None
        if pid is not None:
            prof = st.profiles[pid]
            if any(p is prof for p in acc.profiles):
                accepted.append(key)
                continue
            counts, known, side = prof.counts, prof.traits, prof.nodes
        else:
            counts, known = {node_type(key): 1}, st.node_traits.get(idx, ()) if idx is not None else ()
            side = (idx,)
        if not acc.empty() or acc.own:
            found = conflict(cfg, acc, counts, known, node_type(key), side=side)
            if found and pid is not None:
                # The conflict may come from inside the other profile: an identifier there (a
                # landline, a family email) that tied two people together. Cut the weakest one.
                guilty = culprit(ctx, acc, idx, st.profiles[pid])
                if guilty != idx:
                    flag(ctx, st.node_keys[guilty], event_id,
                         f"ties together customers that conflict: {found[0]}", found[1])
                    pid = st.node_profile[idx]
                    prof = st.profiles[pid]
                    counts, known, side = prof.counts, prof.traits, prof.nodes
                    found = conflict(cfg, acc, counts, known, node_type(key), side=side)
            if found and found[1].get("weak") and cfg.rule(node_type(key)).weak:
                # Evidence adds up: a device alone does not join two known customers, a device and the
                # same person named on both sides (full name, or first name and date of birth) does.
                who = person.same_person(acc.traits | acc.own, known)
                if who is not None and conflict(cfg, acc, counts, known, node_type(key), person_agrees=True,
                                                side=side) is None:
                    found = None
                    carried[key] = who
            if found:
                if (cfg.rule(node_type(key)).weak and found[1].get("weak")) or person.FIRST_NAME in found[1]:
                    # A device seen with a second known customer: not proof it is shared (one person
                    # may use two emails). Nor is an event that brings identifiers of two differently
                    # named people together (a card lent at a till): which of them is shared only
                    # their own history can tell. Do not link it here; the co-occurrence limits decide.
                    ctx.emit(decisions.link_refused(key, event_id, [k for k in node_keys if k != key], found[0]))
                    refused.append(key)
                else:
                    flag(ctx, key, event_id, found[0], found[1])
                continue
        if st.ban_sides and not acc.empty():
            # a person said the two sides are different customers (``resolver.bans``): not on this event
            why = bans.breach(st, acc.profiles, [st.profiles[pid]] if pid is not None else [],
                              [st.node_index.get(k) for k in acc.new_nodes], [] if pid is not None else [idx])
            if why is not None:
                ctx.emit(decisions.link_refused(key, event_id, [k for k in node_keys if k != key], why))
                refused.append(key)
                continue
        acc.add(counts, known)
        if pid is not None:
            acc.profiles.append(st.profiles[pid])
        else:
            acc.new_nodes.append(key)
        accepted.append(key)

    if not accepted:
        return refused
    new_keys = acc.new_nodes
    if not acc.profiles:
        # named by its earliest event: this one, and the first of its identifiers among the event's
        first = (occurred_at, event_id, sorted(node_keys).index(min(new_keys)))
        pid = naming.name_of(first)
        if not naming.free(st, pid):
            pid = graph.new_profile_id(st, naming.seed(first))
        ctx.emit(decisions.profile_created(pid, occurred_at, event_id, new_keys))
    else:
        ordered = sorted(acc.profiles, key=naming.order_key)
        survivor = ordered[0]
        if len(ordered) > 1:
            absorbed = [p.id for p in ordered[1:]]
            if carried:
                ctx.emit(decisions.profiles_merged(
                    survivor.id, absorbed, event_id, occurred_at, accepted, "weak_identifier_and_person",
                    {"weak": sorted(carried), "person": sorted(set(carried.values()))}))
            else:
                ctx.emit(decisions.profiles_merged(survivor.id, absorbed, event_id, occurred_at, accepted,
                                                   "shared_identifier"))
        if new_keys:
            ctx.emit(decisions.identifiers_attached(survivor.id, event_id, new_keys))
    if len(accepted) > 1 and graph.has_new_edge(st, accepted):
        ctx.emit(decisions.identifiers_linked(event_id, accepted))
    return refused


def flag(ctx: Context, key: str, event_id: str, reason: str, evidence: dict[str, Any]) -> None:
    """Flags an identifier shared (its edges are revoked) and re-splits the profile it held together."""
    st = ctx.state
    idx = st.node_index.get(key)
    pid = st.node_profile[idx] if idx is not None else None
    anonymous = st.weak_anon.get(idx) if idx is not None else None
    sessions_of = sessions.reattribution(anonymous, st.weak_uses.get(idx, ())) if anonymous else []
    ctx.emit(decisions.identifier_flagged(key, event_id, reason, evidence))
    if pid is not None:
        _resplit(ctx, pid, key, event_id, reason)
    for anchor, events in sessions_of:
        # the anonymous events of a weak identifier now found shared go to the customer who used it
        # within a session of each, if that customer's identifier still stands
        if graph.linked(st, anchor) is not None:
            ctx.emit(decisions.events_attributed(event_id, anchor, key, events))


def _resplit(ctx: Context, pid: str, key: str, event_id: str, reason: str) -> None:
    st = ctx.state
    prof = st.profiles[pid]
    if len(prof.nodes) < 2:
        return
    components = graph.components(st, prof.nodes)
    if len(components) < 2:
        return
    parts = naming.parts(st, prof, components, f"split:{event_id}")
    ctx.emit(decisions.profile_split(pid, event_id, f"a {node_type(key)} identifier is shared: {reason}", parts))


def attribute_sessions(ctx: Context, event_id: str, occurred_at: str, node_keys: list[str],
                       refused: list[str], by_session: bool = True) -> Optional[dict[str, Any]]:
    """Session attribution on the event's shared identifiers (``resolver.sessions``): an anonymous
    event's attribution, or None; an identified event claims the anonymous ones waiting. ``by_session``:
    whether the event's channel allows attributing it so (``ResolverConfig.by_session``: an anonymous
    purchase at a shop's till is nobody's by session)."""
    st = ctx.state
    shared = graph.shared_of(st, node_keys)
    if not shared:
        return _other_customer(ctx, node_keys, occurred_at) if by_session else None
    anchor = graph.representative(st, node_keys, refused)
    if anchor is None:
        if not by_session:
            return None
        found = sessions.attribution(st.session_last, shared, occurred_at, st.node_keys)
        if found is not None and graph.linked(st, found["node"]) is not None:
            return found
        return None
    for via, events in sessions.claims(st.session_pending, shared, occurred_at, st.node_keys):
        ctx.emit(decisions.events_attributed(event_id, st.node_keys[anchor], via, events))
    return None


def _other_customer(ctx: Context, node_keys: list[str], occurred_at: str) -> Optional[dict[str, Any]]:
    """An anonymous event on a device that a second customer was seen using (``link_refused``) but that
    is not (yet) found shared: it is the customer's who signed in on it within a session before, if that
    is another customer than the device's own; None otherwise (it stays with the device's profile)."""
    st = ctx.state
    anchor = graph.representative(st, node_keys, ())
    if anchor is None or anchor not in st.refused or anchor not in st.weak_uses:
        return None
    for key in node_keys:  # every other identifier of the event is shared or not linked
        idx = graph.linked(st, key)
        if idx is not None and idx != anchor:
            return None
    found = sessions.latest_use(st.weak_uses[anchor], occurred_at)
    if found is None:
        return None
    at, customer = found
    idx = graph.linked(st, customer)
    if idx is None or st.node_profile[idx] == st.node_profile[anchor]:
        return None
    return {"node": customer, "via": st.node_keys[anchor], "rule": sessions.RULE,
            "seconds": int(sessions.gap_seconds(at, occurred_at))}


def names_a_person(traits: tuple[str, ...]) -> bool:
    """Whether an event with these traits (``traits.event_traits``) names a person by whom
    ``attribute_by_name`` may attribute it: a first name, not on a delivery. Nothing else of an event
    makes it read the customers its shared identifiers remember (``resolver.footprint``)."""
    return bool(traits) and traits[0][0] != person.HEARSAY and bool(person.carry(traits[:1], person.FIRST_NAME))


def attribute_by_name(ctx: Context, node_keys: list[str], traits: tuple[str, ...]) -> Optional[dict[str, Any]]:
    """An event that carries only shared identifiers and names a person (``names_a_person``): the customer
    among those who used one of its shared identifiers (a family mailbox's members) whom it names, when
    exactly one is (first names compatible, dates of birth not different); None otherwise, and when an
    identifier has had more customers than are remembered (a shop's till: ``MAX_SHARED_USERS``), since
    one named among those remembered may not be the only one."""
    if not names_a_person(traits):
        return None
    trait = traits[0]
    st = ctx.state
    found: dict[str, tuple[str, str]] = {}  # profile -> (customer's identifier, shared identifier)
    for key in node_keys:
        idx = st.node_index.get(key)
        if idx is None or idx not in st.shared:
            return None  # (only for events that nothing else identifies)
        users = st.shared_users.get(idx, ())
        if len(users) >= MAX_SHARED_USERS:
            return None
        for user in users:
            u = graph.linked(st, user)
            if u is None:
                continue
            pid = st.node_profile[u]
            if pid not in found and person.names(trait, st.profiles[pid].traits):
                found[pid] = (user, key)
    if len(found) != 1:
        return None
    user, via = next(iter(found.values()))
    return {"node": user, "via": via, "rule": "same_name"}
