"""Self-calibration: the match model re-estimated from the records the engine has seen.

The shipped model's thresholds fit a large population; a data set of a thousand records, or one whose
names and dates are noisier than the defaults assume, needs other weights. Unless the configuration fixes
a model (``match_model``, from ``idres train``) or turns this off (``self_calibration = false``), the
engine re-estimates its model the way ``idres train`` does (``resolver.matching.train_model``: u from
seeded random pairs, m by EM over blocked pairs, thresholds from the match share), from the distinct
attribute records in its state:

* at the start of an epoch (``resolver.epochs``) once ``CALIBRATION_FIRST`` records have been filed, then
  each time their number has doubled, so the work stays proportional to the records seen (at most ``CALIBRATION_SAMPLE`` records, a sample
  seeded by their number, are read each time);
* always starting from the shipped model, so an estimate depends on the records alone, not on the
  estimates before it;
* recorded as a ``model_estimated`` decision holding the whole model: the fold adopts it, so replay and
  a restart use the same model at the same point without estimating again, and every later
  ``probable_link`` and ``possible_match`` names the model it was scored under;
* a pending possible match is scored again under the new model and linked if it now reaches the link
  threshold and no guard forbids it (rule ``model_rescored``): the pairs waiting were scored under what
  was known then. Links made under an earlier model stay (the thresholds fall as a small data set is
  recognised as small; undoing links is a person's call, in review).

The estimate depends on the records seen so far, so on their order: the same events in another order may
be scored under a model estimated from other records until the next re-estimation.
"""

from __future__ import annotations

import random
from typing import Iterable, Optional

from resolver import decisions, fuzzy
from resolver.context import Context
from resolver.matching import AttributeRecord, MatchModel, train_model

CALIBRATION_SAMPLE = 32_768  # records one re-estimation reads at most
CALIBRATION_PAIRS = 50_000  # random pairs u is estimated from
PAIRS_PER_RECORD = 20  # ...at most this many per record
CANDIDATE_PAIRS = 100_000  # candidate pairs read per blocking rule (a seeded sample of them above it)
MIN_CANDIDATE_PAIRS = 100  # fewer blocked pairs than this say too little: the model is kept


def due(ctx: Context) -> bool:
    """Whether the model is to be re-estimated at the start of this epoch (``resolver.epochs``)."""
    return (ctx.calibrating and ctx.state.records_filed >= ctx.state.next_calibration)


def distinct(ctx: Context) -> list[AttributeRecord]:
    """The distinct attribute records in the state, sorted (so that the sample does not depend on the
    order in which the state was built)."""
    return distinct_of(ctx.state.records.values())


def distinct_of(held: Iterable[Iterable[AttributeRecord]]) -> list[AttributeRecord]:
    """The distinct records of ``held`` (records of identifiers), sorted as ``distinct`` sorts them."""
    seen: set[AttributeRecord] = set()
    for known in held:
        seen.update(known)
    return sorted(seen, key=_order)


def _order(rec: AttributeRecord) -> tuple[tuple[bool, str], ...]:
    return tuple((v is not None, v or "") for v in (rec.first_name, rec.last_name, rec.date_of_birth,
                                                   rec.address, rec.postcode, rec.city))


def estimate(ctx: Context, records: list[AttributeRecord]) -> tuple[MatchModel, dict, int]:
    """The model estimated from ``records`` (a seeded sample when there are more than
    ``CALIBRATION_SAMPLE``), the training report, and the number of records read."""
    n = len(records)
    sample = random.Random(n).sample(records, CALIBRATION_SAMPLE) if n > CALIBRATION_SAMPLE else records
    # (random pairs in proportion to the records while they are few: there are few pairs to tell apart)
    pairs = min(CALIBRATION_PAIRS, PAIRS_PER_RECORD * len(sample))
    model, report = train_model(sample, seed=n, pairs_sample=pairs,
                                max_block_size=ctx.config.max_block_size, start=ctx.base_model,
                                max_pairs=CANDIDATE_PAIRS,
                                version=f"self-calibrated-{n}", mapper=ctx.mapper)
    return model, report, len(sample)


def calibrate(ctx: Context, event_id: str, occurred_at: str,
              records: Optional[list[AttributeRecord]] = None) -> Optional[MatchModel]:
    """Re-estimates the model (``model_estimated``) and scores the pending possible matches again under
    it (``fuzzy.rescore``). Returns the new model, or None when there is nothing to estimate from.
    ``records``: ``distinct`` of the whole state, when ``ctx``'s state is a slice of it."""
    st = ctx.state
    if records is None:
        records = distinct(ctx)
    previous = ctx.model_id
    note = None
    try:
        model, report, read = estimate(ctx, records)
    except Exception as exc:  # (a defect in estimating must not stop every later event: the model is kept)
        model, report, read = ctx.model, {"candidate_pairs": 0, "expected_matching_pairs": 0.0}, 0
        note = f"the estimate failed ({type(exc).__name__}: {exc}): the model is kept"
    if note is None and report["candidate_pairs"] < MIN_CANDIDATE_PAIRS:
        model = ctx.model
        note = f"{report['candidate_pairs']} candidate pairs are too few to estimate from: the model is kept"
    ctx.emit(decisions.model_estimated(event_id, st.records_filed, len(records), read,
                                       report["candidate_pairs"], report["expected_matching_pairs"],
                                       previous, f"{model.version}/{model.fingerprint()}", model.to_dict(),
                                       note))
    fuzzy.rescore(ctx, event_id, occurred_at)
    return model
