"""Probabilistic links: an event's attribute record scored against earlier records of other profiles.

Candidates come from the blocking index kept in the state; each pair is compared field by field and
weighed by the match model (``resolver.matching``), with term-frequency adjustments for common values.
At or above the link threshold the profiles merge (``probable_link`` records the weight and each
field's contribution); between the review and link thresholds a ``possible_match`` waits for a person.
A fuzzy score never overrides a guard (``guards.fuzzy_conflict``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Optional

from resolver import bans, decisions, graph, naming
from resolver import evidence as shared_evidence
from resolver import traits as person
from resolver.context import Context
from resolver.guards import Acc, fuzzy_conflict
from resolver.ids import short_hash
from resolver.matching import FIELD_INDEX, FIELDS, FREQUENCY_FIELDS, POSTCODE_AGREES, AttributeRecord, \
    MatchModel, frequency_adjustment, hard_conflict
from resolver.matching.comparisons import COMPILED, _ccompare
from resolver.matching.compatibility import dates_compatible


def match(ctx: Context, event_id: str, occurred_at: str, node_keys: list[str], refused: list[str],
          rec: AttributeRecord, keys: list[str], hearsay: Optional[str] = None) -> None:
    """Scores the event's record against earlier records in other profiles that share a blocking
    key; links at or above the link threshold, queues possible matches for review. ``hearsay``: the
    trait of a delivery event, whose record is matched only when it names the holder."""
    st = ctx.state
    cfg = ctx.config
    rep = graph.representative(st, node_keys, refused)
    if rep is None:
        return
    if hearsay is not None and not person.names(hearsay, st.profiles[st.node_profile[rep]].traits):
        return  # an order for someone else, or for whom the holder's own name does not tell: not matched
    known = st.records.get(rep)
    if known is not None and rec in known:
        return  # matched when this record was first seen on this identifier
    pid = st.node_profile[rep]
    model = ctx.model
    best = candidates(ctx, model, rec, keys, pid)
    node_profile = st.node_profile
    # (in rank order; all are at or above the review threshold)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    if not ranked:
        return
    own = st.profiles[pid]
    acc = Acc(st, now=occurred_at)
    acc.add(own.counts, own.traits)
    acc.profiles.append(own)
    links: list[tuple[str, float, int, tuple[str, ...], Optional[dict[str, float]]]] = []
    reviews: list[tuple[str, float, int, tuple[str, ...], Optional[dict[str, float]]]] = []
    for p, (total, n, levels, deltas) in ranked:
        pair = (rep, n) if rep < n else (n, rep)
        if pair in st.review_pairs and (total < model.link_threshold or pair in st.review_rejected):
            continue  # already queued, or a person said these are different customers
        target = st.profiles[p]
        if fuzzy_conflict(cfg, acc, target) is not None:
            continue  # a guard keeps them apart whatever the attributes say
        if st.ban_sides and bans.breach(st, acc.profiles, (target,)) is not None:
            continue  # so does a person (``resolver.bans``)
        if total >= model.link_threshold:
            acc.add(target.counts, target.traits)
            acc.profiles.append(target)
            links.append((p, total, n, levels, deltas))
        elif len(reviews) < cfg.max_reviews_per_event:
            reviews.append((p, total, n, levels, deltas))
    rep_key = st.node_keys[rep]
    if links:
        for p, total, n, levels, deltas in links:
            ctx.emit(decisions.probable_link(event_id, rep_key, st.node_keys[n], p, "probable_match",
                                             **evidence(ctx, levels, total, deltas)))
        ordered = sorted(acc.profiles, key=naming.order_key)
        ctx.emit(decisions.profiles_merged(
            ordered[0].id, [q.id for q in ordered[1:]], event_id, occurred_at,
            [rep_key, *(st.node_keys[n] for _, _, n, _, _ in links)], "probable_match"))
    for p, total, n, levels, deltas in reviews:
        other_key = st.node_keys[n]
        ctx.emit(decisions.possible_match("r_" + short_hash(f"{event_id}|{other_key}"), event_id, occurred_at,
                                          rep_key, other_key, node_profile[rep], node_profile[n],
                                          **evidence(ctx, levels, total, deltas)))



Best = dict[str, tuple[float, int, tuple[str, ...], Optional[dict[str, float]]]]


def candidates(ctx: Context, model: MatchModel, rec: AttributeRecord, keys: list[str], pid: str) -> Best:
    """For each other profile holding a record that shares a blocking key (``keys``) with ``rec`` (in profile
    ``pid``) and scores at or above the review threshold: its best-scoring record's ``(total, node, levels,
    frequency adjustments)`` (``score``), records whose dates of birth rule them out (the guard, its cheap
    cases) left out. Compiled where the comparison is (``_ccompare.scan``: the same figures, summed in the same
    order; a record whose other fields and their adjustments cannot reach the review threshold with the best
    address is not compared on its address), else ``candidates_python``."""
    st = ctx.state
    if _scan is None or type(st.blocks) is not dict or type(st.node_profile) is not list or \
            type(st.records) is not dict or not isinstance(st.shared, (set, frozenset)) or \
            not model.compiled_totals():
        return candidates_python(ctx, model, rec, keys, pid)
    cfg = ctx.config
    tf = ctx.frequency_cache() if cfg.frequency_adjustments else None  # (one epoch and model throughout)
    spec = (*model.weight_vectors(), POSTCODE_AGREES, model.link_threshold,
            math.nextafter(model.link_threshold, -math.inf), not cfg.link_different_first_names,
            _SAME_FIRST, _SAME_DOB, _FREQUENCY_SPEC, model.review_threshold)
    return _scan(rec, keys, st.blocks, st.node_profile, st.records, st.shared, pid, spec, tf,
                 partial(value_adjustment, ctx), dates_compatible if cfg.dob_conflict else None)


def candidates_python(ctx: Context, model: MatchModel, rec: AttributeRecord, keys: list[str], pid: str) -> Best:
    """``candidates``, the definition."""
    st = ctx.state
    cfg = ctx.config
    best: Best = {}
    dob_guard = cfg.dob_conflict
    rec_dob = rec.date_of_birth
    visited: set[int] = set()
    node_profile = st.node_profile
    shared = st.shared
    review_cap = math.nextafter(model.link_threshold, -math.inf)
    review_threshold = model.review_threshold
    tf = ctx.frequency_cache() if cfg.frequency_adjustments else None  # (one epoch and model throughout)
    for key in keys:
        for n in st.blocks.get(key, ()):
            if n in visited:
                continue
            visited.add(n)
            p = node_profile[n]
            if p is None or p == pid or n in shared:
                continue
            for other in st.records.get(n, ()):
                if dob_guard:  # (``hard_conflict``, its cheap cases first)
                    dob = other.date_of_birth
                    if dob is not None and rec_dob is not None and dob != rec_dob and \
                            not dates_compatible(rec_dob, dob):
                        continue
                total, levels, deltas = score(ctx, model, rec, other, review_cap, tf)
                if not total >= review_threshold:
                    continue  # neither linked nor queued
                cur = best.get(p)
                if cur is None or total > cur[0]:
                    best[p] = (total, n, levels, deltas)
    return best


def score(ctx: Context, model: MatchModel, rec: AttributeRecord, other: AttributeRecord, review_cap: float,
          tf: Optional[dict[tuple[str, str, bool], float]] = None
          ) -> tuple[float, tuple[str, ...], Optional[dict[str, float]]]:
    """The weight two records are ranked by (frequency adjustments included; ``review_cap``, just under
    the link threshold, when first names differ and that needs a person), their levels and adjustments.
    ``tf``: ``ctx.frequency_cache()``, if already at hand."""
    levels, total = model.compare_total(rec, other)
    deltas = frequency_deltas(ctx, rec, other, levels, tf) if ctx.config.frequency_adjustments else None
    if deltas:
        for d in deltas.values():
            total += d
    if total >= model.link_threshold and not ctx.config.link_different_first_names and not names_one_person(levels):
        total = review_cap  # a person decides: twins, or a household, agree on everything else
    return total, levels, deltas


_FIRST = FIELD_INDEX["first_name"]
_DOB = FIELD_INDEX["date_of_birth"]
# levels at which a first name or a date of birth is the same person's (typos and variants included)
_SAME_FIRST = frozenset({"exact", "nickname", "jw_92", "jw_80"})
_SAME_DOB = frozenset({"exact", "swapped", "one_off", "year", "month"})


def names_one_person(levels: tuple[str, ...]) -> bool:
    """Whether two records agree on something only one member of a household has: the first name (or
    both are missing and the dates of birth agree). Surname, address, postcode and town are a household's:
    agreeing on those alone, or with first names that differ, is for a person to judge."""
    first = levels[_FIRST]
    if first == "null":
        return levels[_DOB] in _SAME_DOB
    return first in _SAME_FIRST


def rescore(ctx: Context, event_id: str, occurred_at: str) -> None:
    """Scores each pending possible match again under the current model (just re-estimated: see
    ``resolver.calibration``) and links the pairs that now reach the link threshold, unless a guard
    forbids it now, as ``model_rescored`` links that close their review."""
    st = ctx.state
    cfg = ctx.config
    model = ctx.model
    review_cap = math.nextafter(model.link_threshold, -math.inf)
    node_profile = st.node_profile
    for review_id, (a, b) in sorted(st.reviews.items()):
        pa, pb = node_profile[a], node_profile[b]
        if pa is None or pb is None or pa == pb:
            continue  # one side found shared, or already one customer: the review is moot
        best: Optional[tuple[float, tuple[str, ...], Optional[dict[str, float]]]] = None
        for rec in st.records.get(a, ()):
            for other in st.records.get(b, ()):
                if cfg.dob_conflict and hard_conflict(rec, other):
                    continue
                scored = score(ctx, model, rec, other, review_cap)
                if best is None or scored[0] > best[0]:
                    best = scored
        if best is None or best[0] < model.link_threshold:
            continue
        total, levels, deltas = best
        join(ctx, event_id, occurred_at, a, b, "model_rescored", occurred_at, review_id=review_id,
             **evidence(ctx, levels, total, deltas))


def join(ctx: Context, event_id: str, at: str, a: int, b: int, rule: str, now: Optional[str] = None,
         **link: Any) -> Optional[str]:
    """Links the profiles of nodes ``a`` and ``b`` (a pair scored again, or one a person accepted) unless a
    guard forbids it now: emits the ``probable_link`` (with ``link``: its evidence or review) and the merge,
    and returns None; else returns the guard's reason and emits nothing. ``now``: when the linking event
    happened (None for a person's verdict)."""
    st = ctx.state
    first, second = st.profiles[st.node_profile[a]], st.profiles[st.node_profile[b]]
    acc = Acc(st, now=now)
    acc.add(first.counts, first.traits)
    acc.profiles.append(first)
    reason = fuzzy_conflict(ctx.config, acc, second) or bans.breach(st, (first,), (second,))
    if reason is not None:
        return reason
    key_a, key_b = st.node_keys[a], st.node_keys[b]
    ctx.emit(decisions.probable_link(event_id, key_a, key_b, second.id, rule, **link))
    ordered = sorted((first, second), key=naming.order_key)
    ctx.emit(decisions.profiles_merged(ordered[0].id, [ordered[1].id], event_id, at, [key_a, key_b], rule))
    return None


def frequency_deltas(ctx: Context, a: AttributeRecord, b: AttributeRecord, levels: tuple[str, ...],
                     cache: Optional[dict[tuple[str, str, bool], float]] = None) -> Optional[dict[str, float]]:
    """Frequency adjustments (bits per field) of the fields on which ``a`` and ``b`` agree exactly.
    ``cache``: ``ctx.frequency_cache()``, if already at hand."""
    out: Optional[dict[str, float]] = None
    postcode_agrees = levels[_POSTCODE] in POSTCODE_AGREES
    for f, i in _FREQUENCY_INDEX:
        if levels[i] != "exact":
            continue
        value = getattr(a, f)
        if value is None or value != getattr(b, f):
            continue  # (names agreeing the other way round are not adjusted)
        if cache is None:
            cache = ctx.frequency_cache()
        key = (f, value, postcode_agrees)
        bits = cache.get(key)
        if bits is None:
            bits = cache[key] = value_adjustment(ctx, f, value, postcode_agrees)
        if bits:
            if out is None:
                out = {}
            out[f] = bits
    return out


_POSTCODE = FIELD_INDEX["postcode"]
_FREQUENCY_INDEX = tuple((f, FIELD_INDEX[f]) for f in FREQUENCY_FIELDS)
# (for ``_ccompare.scan``: each frequency field, its level's place in a comparison vector and its place among the
# fields the compiled code reads from a record)
_FREQUENCY_SPEC = tuple((f, FIELD_INDEX[f], ("first_name", "last_name", "date_of_birth", "address", "postcode",
                                             "city").index(f)) for f in FREQUENCY_FIELDS)
_scan = getattr(_ccompare, "scan", None) if COMPILED else None  # (None: a build from before it)


def value_adjustment(ctx: Context, f: str, value: str, postcode_agrees: bool) -> float:
    """The frequency adjustment of an exact agreement on ``value`` in field ``f``: how common the value is
    among records other than the one it was found in, as counted at the start of the epoch
    (``resolver.epochs``)."""
    st = ctx.state
    count = st.tf_before.get((f, value))
    if count is None:
        count = st.value_counts.get((f, value), 0)
    total = st.tf_totals_before.get(f)
    if total is None:
        total = st.value_totals.get(f, 0)
    return frequency_adjustment(ctx.model, f, max(count - 1, 0), max(total - 1, 0), postcode_agrees)


def evidence(ctx: Context, levels: tuple[str, ...], total: float,
             deltas: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """What a probable link or possible match records: each field's level and weight (with its
    frequency adjustment, if any); ``total`` is the weight it was ranked by (below the true one when
    first names differ)."""
    model = ctx.model
    weight, parts = model.weight_of(levels)
    entries: list[tuple[str, dict[str, Any]]] = []
    for f, lv in zip(FIELDS, levels):
        if lv == "null":
            continue
        w = parts[f]
        if deltas and f in deltas:
            entry = shared_evidence.entry(f, lv, round(w + deltas[f], 4), round(deltas[f], 4))
        else:
            entry = shared_evidence.entry(f, lv, round(w, 4), None)
        entries.append((f, entry))
    fields = shared_evidence.fields_of(entries)
    if deltas:
        for d in deltas.values():
            weight += d
    out = {"weight": round(weight, 4), "link_threshold": model.link_threshold,
           "review_threshold": model.review_threshold, "fields": fields, "model": ctx.model_id}
    if weight != total:
        out["note"] = ("first names differ: queued for review instead of linked" if levels[_FIRST] == "different"
                       else "nothing but a household's fields agree (surname, address, postcode, town): queued "
                            "for review instead of linked")
    return out
