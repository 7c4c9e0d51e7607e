"""Training: u from random pairs, m by EM over blocked candidate pairs (what ``idres train`` runs).

``distinct_records`` picks what a model is trained on; ``train_model`` estimates it, the way Splink
trains one.
"""

from __future__ import annotations

import math
import random
from array import array
from operator import itemgetter
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from resolver.matching.blocking import BLOCKING_RULES, blocking_keys, candidate_codes_by_rule, union_codes
from resolver.matching.canonical import AttributeRecord
from resolver.matching.comparisons import FIELD_LEVELS, FIELDS, NULL
from resolver.matching.estimation import (
    Mapper, _normalized_counts, chunks_of, count_vectors, estimate_m_em_counts, estimate_u, in_order, places_counter,
    vectors_chunk,
)
from resolver.matching.model import DEPENDENT_FIELDS, MatchModel, default_model
from resolver.matching.sampling import group_pair_codes, sample_sorted


def distinct_records(attribute_sets: Iterable[Mapping[str, Any]],
                     normalize: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> list[AttributeRecord]:
    """The distinct records, in first-seen order, of raw attribute sets that have something to match on
    (a blocking key); ``normalize`` is ``Normalizer.attributes``. What a model is trained on."""
    seen: dict[AttributeRecord, None] = {}
    for attributes in attribute_sets:
        normalized = normalize(attributes)
        if not normalized:
            continue
        record = AttributeRecord.from_attributes(normalized)
        if record not in seen and blocking_keys(record):
            seen[record] = None
    return list(seen)


RECORDS_AT_ONCE = 4_096  # records whose blocking keys are one chunk


def keys_chunk(records: list[AttributeRecord], span: tuple[int, int]) -> list[list[str]]:
    """The blocking keys of ``records[start:stop]``."""
    return [blocking_keys(rec) for rec in records[span[0]:span[1]]]


_ADDRESS_AND_CITY = itemgetter(FIELDS.index("address"), FIELDS.index("city"))


def _conditional_u(records: Sequence[AttributeRecord], pairs_sample: int, seed: int,
                   model: MatchModel, mapper: Mapper = in_order) -> MatchModel:
    """u of ``address`` and ``city`` among random pairs of records in the same postcode: the fields
    depend on the postcode, and unconditional u values would count one agreement two or three times."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        if rec.postcode is not None:
            groups.setdefault(rec.postcode, []).append(i)
    usable = [g for _, g in sorted(groups.items()) if len(g) >= 2]
    total_pairs = sum(len(g) * (len(g) - 1) // 2 for g in usable)
    if total_pairs < 1000:
        return model  # too few to say; keep the model's values
    codes = group_pair_codes(random.Random(seed + 1), usable, len(records), pairs_sample)
    counts = {"address": {}, "city": {}}  # type: dict[str, dict[str, float]]
    # (counted first, then each pair of levels' count added: whole numbers, so the same sums)
    for (address, city), times in count_vectors(records, codes, _ADDRESS_AND_CITY, mapper).items():
        for f, level in (("address", address), ("city", city)):
            if level != NULL:
                counts[f][level] = counts[f].get(level, 0.0) + times
    u = {f: dict(model.u[f]) for f in FIELDS}
    for f, c in counts.items():
        if sum(c.values()) >= 100:
            u[f] = _normalized_counts(c, FIELD_LEVELS[f], 0.5)
    return model.with_params(u=u)


def train_model(records: Sequence[AttributeRecord], seed: int = 0, pairs_sample: int = 1_000_000,
                max_block_size: int = 64, em_iterations: int = 25, start: Optional[MatchModel] = None,
                version: Optional[str] = None, link_probability: float = 0.95,
                review_probability: float = 0.5, max_pairs: Optional[int] = None,
                mapper: Mapper = in_order) -> tuple[MatchModel, dict[str, Any]]:
    """A model estimated from distinct attribute records, the way Splink trains one.

    1. u from seeded random pairs (address and city among pairs in one postcode: they depend on it).
    2. m by EM once per blocking rule over the pairs that rule finds, leaving out the fields the rule
       blocks on; each field's m is the mean over the rules that estimated it.
    3. The match share among all candidate pairs (EM on the prior alone), and from it the chance that two
       random records match. The thresholds are the weights at which a pair's match probability reaches
       ``link_probability`` and ``review_probability`` for a data set of this size. (More records make
       any one pair less likely to match, so re-train as the customer base grows severalfold.)

    ``max_pairs``: the candidate pairs read per rule (and for the match share) at most, a seeded sample
    of them when there are more (a town everyone shares makes many).

    ``mapper``: how the parts that split into chunks are run (``estimation.in_order``, or one that runs them
    in other processes: ``streams.training_jobs``); the model is the same whichever runs them.
    """
    base = start if start is not None else default_model()
    listed = records if type(records) is list else list(records)  # (compare_codes reads a list)
    model = estimate_u(listed, pairs_sample, seed, base, mapper=mapper)
    model = _conditional_u(listed, pairs_sample, seed, model, mapper)
    sums: dict[str, dict[str, float]] = {f: {} for f in FIELDS}
    estimated: dict[str, int] = {f: 0 for f in FIELDS}
    per_rule: dict[str, int] = {}
    n = len(listed)
    keys = [k for part in mapper(keys_chunk, listed, [(start, min(start + RECORDS_AT_ONCE, n))
                                                      for start in range(0, n, RECORDS_AT_ONCE)]) for k in part]
    # (a pair (i, j) as the number i * n + j: see ``candidate_codes_by_rule``)
    rng = random.Random(seed + 2)

    def at_most(pairs: list[int]) -> list[int]:
        return sample_sorted(rng, pairs, max_pairs) if max_pairs is not None and len(pairs) > max_pairs else pairs

    by_rule = candidate_codes_by_rule(listed, max_block_size, keys)
    read_by_rule: dict[str, list[int]] = {}
    for rule in BLOCKING_RULES:
        per_rule[rule] = len(by_rule[rule])
        read_by_rule[rule] = at_most(by_rule[rule])
    all_pairs = union_codes(list(by_rule.values()), n)
    read = at_most(all_pairs)
    # every pair read compared once (whatever rules find it), in chunks a mapper may hand out
    needed = union_codes([read, *(pairs for pairs in read_by_rule.values() if len(pairs) >= 10)], n)
    chunks = chunks_of(needed)
    one: dict[tuple[str, ...], int] = {}  # each distinct vector -> its number
    at = array("q")  # the number of each needed pair's vector, in their order
    for distinct, places in mapper(vectors_chunk, listed, chunks):
        numbers = [one.setdefault(vector, len(one)) for vector in distinct]
        at.extend(map(numbers.__getitem__, places))
    count = places_counter(array("q", needed), at)
    table = list(one)
    del needed, chunks

    def counted(pairs: list[int]) -> dict[tuple[str, ...], int]:
        """The vectors of ``pairs`` (codes among those compared), counted, in the order they are first seen."""
        return {table[number]: times for number, times in count(pairs).items()}

    for rule, blocked in BLOCKING_RULES.items():
        pairs = read_by_rule[rule]
        if len(pairs) < 10:
            continue
        fitted = estimate_m_em_counts(counted(pairs), model, iterations=em_iterations, prior=base.prior,
                                      fixed_fields=blocked)
        for f in FIELDS:
            if f not in blocked:
                estimated[f] += 1
                for lv, v in fitted.m[f].items():
                    sums[f][lv] = sums[f].get(lv, 0.0) + v
    m = {f: ({lv: v / estimated[f] for lv, v in sums[f].items()} if estimated[f] else dict(model.m[f]))
         for f in FIELDS}
    model = model.with_params(m=m)
    # the match share among all candidate pairs, m and u fixed
    groups = counted(read)
    weights = [(model.weight_of(vec)[0], count) for vec, count in groups.items()]
    lam = base.prior
    for _ in range(100):
        logit = math.log2(lam / (1.0 - lam))
        new = sum(count / (1.0 + 2.0 ** -(w + logit)) for w, count in weights) / max(len(read), 1)
        new = min(max(new, 1e-6), 1.0 - 1e-6)
        if abs(new - lam) < 1e-9:
            break
        lam = new
    total_pairs = n * (n - 1) / 2
    matches = lam * len(all_pairs)
    random_share = min(max(matches / total_pairs, 1e-12), 0.5) if total_pairs else 1e-6
    prior_logit = math.log2(random_share / (1.0 - random_share))
    link = math.log2(link_probability / (1.0 - link_probability)) - prior_logit
    review = min(math.log2(review_probability / (1.0 - review_probability)) - prior_logit, link)
    model = model.with_params(prior=lam, link_threshold=round(link, 3), review_threshold=round(review, 3))
    model = model.with_params(version=version or f"trained-{model.fingerprint()}")
    report = {
        "records": n,
        "candidate_pairs": len(all_pairs),
        "candidate_pairs_by_rule": per_rule,
        "expected_matching_pairs": round(matches, 1),
        "random_pair_match_share": random_share,
        "prior": model.prior,
        "link_threshold": model.link_threshold,
        "review_threshold": model.review_threshold,
        "weights": {f: {lv: round(model.level_weight(f, lv), 3) for lv in FIELD_LEVELS[f]} for f in FIELDS},
        "weights_postcode_apart": {f: {lv: round(model.level_weight(f, lv, postcode_agrees=False), 3)
                                       for lv in FIELD_LEVELS[f]} for f in DEPENDENT_FIELDS},
    }
    return model, report
