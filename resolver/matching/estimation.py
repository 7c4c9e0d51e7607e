"""Estimation: u from seeded random pairs (``estimate_u``), m and the match proportion by EM over
candidate pairs with u fixed (``estimate_m_em``)."""

from __future__ import annotations

import math
import random
from array import array
from collections import Counter
from typing import Any, Callable, Hashable, Iterable, Mapping, Optional, Sequence

from resolver.matching.canonical import AttributeRecord
from resolver.matching.comparisons import FIELD_LEVELS, FIELDS, NULL, _ccompare, compare, compare_codes
from resolver.matching.model import (
    DEPENDENT_FIELDS, POSTCODE_AGREES, _EPS, _POSTCODE_INDEX, MatchModel, Table, default_model,
)
from resolver.matching.sampling import random_pair_codes


def _normalized_counts(counts: Mapping[str, float], levels: tuple[str, ...], pseudo: float) -> dict[str, float]:
    total = sum(counts.get(lv, 0.0) for lv in levels) + pseudo * len(levels)
    return {lv: (counts.get(lv, 0.0) + pseudo) / total for lv in levels}


Mapper = Callable[[Callable[[list[AttributeRecord], Any], Any], list[AttributeRecord], list[Any]], list[Any]]


def in_order(function: Callable[[list[AttributeRecord], Any], Any], records: list[AttributeRecord],
             chunks: list[Any]) -> list[Any]:
    """``[function(records, chunk) for chunk in chunks]``: how training's parts that split into chunks
    (comparing pairs, counting their vectors, the records' blocking keys) are run in one process. A mapper
    that runs the chunks elsewhere (processes, a model's shards) returns the same list, so the model
    estimated is the same."""
    return [function(records, chunk) for chunk in chunks]


PAIRS_AT_ONCE = 16_384  # pairs in one chunk (what is held while they are compared, and what a mapper hands out)


def chunks_of(codes: Sequence[int], size: Optional[int] = None) -> list[array]:
    """``codes`` in chunks of ``size`` (``PAIRS_AT_ONCE``), as ``array('q')`` (8 bytes a code)."""
    size = size or PAIRS_AT_ONCE
    whole = codes if isinstance(codes, array) else array("q", codes)
    return [whole[start:start + size] for start in range(0, len(whole), size)]


def _vectors_of(records: list[AttributeRecord], codes: array) -> list[tuple[str, ...]]:
    """The comparison vectors of the pairs ``codes``, in their order (each pair compared once)."""
    listed = codes.tolist()
    compared: dict[int, tuple[str, ...]] = {}
    compare_codes(records, listed, len(records), compared)
    return [compared[code] for code in listed]


def counted_chunk(records: list[AttributeRecord],
                  chunk: tuple[array, Optional[Callable[[tuple[str, ...]], Hashable]]]) -> Counter:
    """The vectors (or ``part`` of each) of the pairs ``codes`` of ``chunk = (codes, part)``, counted in order."""
    codes, part = chunk
    vectors = _vectors_of(records, codes)
    return Counter(vectors if part is None else map(part, vectors))


def vectors_chunk(records: list[AttributeRecord], codes: array) -> tuple[list[tuple[str, ...]], array]:
    """The comparison vectors of the pairs ``codes``: the distinct vectors, and for each pair in order the
    place of its vector among them (few distinct vectors: what a mapper sends back is small)."""
    places: dict[tuple[str, ...], int] = {}
    at = array("l", [places.setdefault(vector, len(places)) for vector in _vectors_of(records, codes)])
    return list(places), at


def count_places_python(codes: array, at: array, pairs: list[int]) -> dict[int, int]:
    """How many of ``pairs`` (each one of ``codes``) have each number of ``at`` (the number of each code, in the
    codes' order), in the order the numbers are first seen among ``pairs``: the definition of ``count_places``."""
    return _counted_places(dict(zip(codes, at)), pairs)


def _counted_places(where: dict[int, int], pairs: Iterable[int]) -> dict[int, int]:
    return dict(Counter(map(where.__getitem__, pairs)))


def count_places(codes: array, at: array, pairs: list[int]) -> dict[int, int]:
    """``count_places_python`` (``codes``: sorted, without repeats, and ``at`` as ``array('q')``), compiled
    where it was built."""
    return places_counter(codes, at)(pairs)


def places_counter(codes: array, at: array) -> Callable[[list[int]], dict[int, int]]:
    """``count_places`` of any pairs over these ``codes`` and ``at`` (without the compiled counting, the codes'
    places are looked up in one dict made once)."""
    if _COUNT is not None:
        count = _COUNT.count_places
        return lambda pairs: count(codes, at, pairs if type(pairs) is list else list(pairs))
    where = dict(zip(codes, at))
    return lambda pairs: _counted_places(where, pairs)


_COUNT = _ccompare if _ccompare is not None and hasattr(_ccompare, "count_places") else None


def count_vectors(records: Sequence[AttributeRecord], codes: Sequence[int],
                  part: Optional[Callable[[tuple[str, ...]], Hashable]] = None,
                  mapper: Mapper = in_order) -> Counter:
    """How many times each comparison vector (or ``part`` of it) comes among the pairs ``codes`` (``i * n + j``,
    ``n = len(records)``), counted in the pairs' order: ``Counter(compare(records[i], records[j]) ...)``. (The
    chunks' counts are added in their order: each vector first seen where it is first seen among all the pairs.)"""
    listed = records if type(records) is list else list(records)  # (compare_codes reads a list)
    counted: Counter = Counter()
    for got in mapper(counted_chunk, listed, [(chunk, part) for chunk in chunks_of(codes)]):
        counted.update(got)
    return counted


def estimate_u(records: Sequence[AttributeRecord], pairs_sample: int, seed: int,
               model: Optional[MatchModel] = None, pseudo_count: float = 0.5,
               version: Optional[str] = None, mapper: Mapper = in_order) -> MatchModel:
    """u from ``pairs_sample`` random pairs of distinct records drawn with ``random.Random(seed)``:
    random pairs are almost all of different people. Returns ``model`` (default: ``default_model()``)
    with u replaced; a field never known on both sides of a pair keeps its old u. Each level gets
    ``pseudo_count`` extra observations so that no u is 0. The city: ``u_apart``, from the pairs whose
    postcodes do not agree (its u given an agreeing postcode needs pairs within one postcode, which random
    pairs seldom are: ``train_model`` samples those, as for the address)."""
    base = model if model is not None else default_model()
    n = len(records)
    if n < 2 or pairs_sample <= 0:
        return base
    counts: list[dict[str, float]] = [{} for _ in FIELDS]
    dependent = tuple(f in DEPENDENT_FIELDS for f in FIELDS)
    codes = random_pair_codes(random.Random(seed), n, pairs_sample)
    # (few distinct vectors: counted first, then each vector's count added; whole numbers, so the same sums)
    for levels, times in count_vectors(records, codes, mapper=mapper).items():
        apart = levels[_POSTCODE_INDEX] not in POSTCODE_AGREES
        for k, level in enumerate(levels):
            if level != NULL and (apart or not dependent[k]):
                counts[k][level] = counts[k].get(level, 0.0) + times
    u: Table = {}
    u_apart: Table = {}
    for k, f in enumerate(FIELDS):
        if dependent[k]:
            u[f] = dict(base.u[f])
            u_apart[f] = (_normalized_counts(counts[k], FIELD_LEVELS[f], pseudo_count) if counts[k]
                          else dict(base.u_apart[f]))
        else:
            u[f] = _normalized_counts(counts[k], FIELD_LEVELS[f], pseudo_count) if counts[k] else dict(base.u[f])
    estimated = base.with_params(u=u, u_apart=u_apart)
    return estimated.with_params(version=version or f"u-{estimated.fingerprint()}")


def estimate_m_em(candidate_pairs: Iterable[tuple[AttributeRecord, AttributeRecord]], model: MatchModel,
                  iterations: int = 20, prior: Optional[float] = None, pseudo_count: float = 0.01,
                  monotone: bool = True, version: Optional[str] = None,
                  fixed_fields: Iterable[str] = ()) -> MatchModel:
    """m and the match proportion by expectation-maximization over candidate pairs, u kept fixed.

    Starts from ``model``'s m and ``prior`` (or the given ``prior``). Start with a prior below the
    expected share of matches: matches are a minority of candidate pairs, and a start near 0.5 can
    converge to the wrong cluster (pairs that merely share a postcode). Identical comparison vectors are
    grouped in first-seen order, so the result depends only on the pairs and their order. With
    ``monotone`` the m of each field is pooled (pool-adjacent-violators over m/u, weighted by u) so that
    a better level never weighs less than a worse one; the pooling keeps each field's m summing to 1.
    ``fixed_fields`` are left out of the estimation and keep their m: the fields the candidate pairs were
    blocked on agree by construction, so they say nothing about who matches among them (Splink's rule).
    """
    return estimate_m_em_levels((compare(a, b) for a, b in candidate_pairs), model, iterations, prior,
                                pseudo_count, monotone, version, fixed_fields)


def estimate_m_em_levels(compared: Iterable[tuple[str, ...]], model: MatchModel, iterations: int = 20,
                         prior: Optional[float] = None, pseudo_count: float = 0.01, monotone: bool = True,
                         version: Optional[str] = None, fixed_fields: Iterable[str] = ()) -> MatchModel:
    """``estimate_m_em`` over the comparison vectors (``compare`` output) of the candidate pairs."""
    return estimate_m_em_counts(Counter(compared), model, iterations, prior, pseudo_count, monotone, version,
                                fixed_fields)


def estimate_m_em_counts(counted: Mapping[tuple[str, ...], int], model: MatchModel, iterations: int = 20,
                         prior: Optional[float] = None, pseudo_count: float = 0.01, monotone: bool = True,
                         version: Optional[str] = None, fixed_fields: Iterable[str] = ()) -> MatchModel:
    """``estimate_m_em_levels`` over the distinct comparison vectors of the candidate pairs, each with the number
    of pairs that have it, in the order they are first seen among the pairs (a ``Counter`` of them)."""
    fixed = set(fixed_fields)
    mask = tuple(f in fixed for f in FIELDS)
    # a vector and whether its postcodes agree (which u the address and city are weighed with)
    groups: dict[tuple[tuple[str, ...], bool], int] = {}
    # (few distinct vectors, counted first: each masked once; groups keep their first-seen order)
    for key, count in counted.items():
        apart = key[_POSTCODE_INDEX] not in POSTCODE_AGREES
        group = (tuple(NULL if skip else lv for skip, lv in zip(mask, key)) if fixed else key, apart)
        groups[group] = groups.get(group, 0) + count
    if not groups:
        return model
    vectors = [(vec, count) for (vec, _), count in groups.items()]
    contexts = [apart for vec, apart in groups]
    n_pairs = float(sum(groups.values()))
    m: Table = {f: dict(model.m[f]) for f in FIELDS}
    u = model.u
    log_u = {f: {lv: math.log(v) for lv, v in u[f].items()} for f in FIELDS}
    log_u_apart = {**log_u, **{f: {lv: math.log(v) for lv, v in model.u_apart[f].items()} for f in DEPENDENT_FIELDS}}
    lam = model.prior if prior is None else float(prior)
    for _ in range(max(0, iterations)):
        # E-step: P(match | vector) per distinct vector.
        log_m = {f: {lv: math.log(v) for lv, v in m[f].items()} for f in FIELDS}
        logit_prior = math.log(lam) - math.log1p(-lam)
        posts: list[float] = []
        for (vec, _count), apart in zip(vectors, contexts):
            lu = log_u_apart if apart else log_u
            s = logit_prior
            for f, lv in zip(FIELDS, vec):
                if lv != NULL:
                    s += log_m[f][lv] - lu[f][lv]
            posts.append(_sigmoid(s))
        # M-step.
        matched = 0.0
        sums: list[dict[str, float]] = [{} for _ in FIELDS]
        for (vec, count), p in zip(vectors, posts):
            w = count * p
            matched += w
            for k, lv in enumerate(vec):
                if lv != NULL:
                    sums[k][lv] = sums[k].get(lv, 0.0) + w
        for k, f in enumerate(FIELDS):
            if sum(sums[k].values()) > _EPS:
                m[f] = _normalized_counts(sums[k], FIELD_LEVELS[f], pseudo_count)
                if monotone:
                    # (the town by its u where the postcodes do not agree: where they do, it adds little)
                    m[f] = _pool_monotone(m[f], model.u_apart[f] if f in DEPENDENT_FIELDS else u[f],
                                          FIELD_LEVELS[f])
        lam = min(max(matched / n_pairs, 1e-6), 1.0 - 1e-6)
    estimated = model.with_params(m=m, prior=lam)
    return estimated.with_params(version=version or f"em-{estimated.fingerprint()}")


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _pool_monotone(m: dict[str, float], u: Mapping[str, float], levels: tuple[str, ...]) -> dict[str, float]:
    """Pool adjacent levels whose m/u ratio rises toward worse levels; a pooled block gets one ratio."""
    blocks: list[list[Any]] = []  # [m_sum, u_sum, [levels]]
    for lv in levels:
        blocks.append([m[lv], u[lv], [lv]])
        while len(blocks) >= 2 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            ms, us, lvs = blocks.pop()
            blocks[-1][0] += ms
            blocks[-1][1] += us
            blocks[-1][2].extend(lvs)
    out: dict[str, float] = {}
    for ms, us, lvs in blocks:
        for lv in lvs:
            out[lv] = u[lv] * ms / us
    total = sum(out.values())
    return {lv: out[lv] / total for lv in levels}
