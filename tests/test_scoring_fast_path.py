"""The matcher's fast path scores exactly as the plain computation does: the same totals, bit for bit, and
the same frequency adjustments, whether computed afresh or taken from the epoch's cache."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from resolver.config import ResolverConfig
from resolver.context import Context
from resolver.matching import FIELD_LEVELS, FIELDS, NULL, default_model
from resolver.matching.model import MatchModel
from tests.test_shards import corpus, in_order

_LEVELS = st.tuples(*(st.sampled_from((NULL, *FIELD_LEVELS[f])) for f in FIELDS))


def _models() -> list[MatchModel]:
    """The shipped model and one re-weighted at random (other weights, other rounding of the sums)."""
    base = default_model()
    rnd = random.Random(3)

    def shaken(table):
        out = {}
        for f, row in table.items():
            row = {lv: p * rnd.uniform(0.5, 1.5) for lv, p in row.items()}
            out[f] = {lv: p / sum(row.values()) for lv, p in row.items()}
        return out

    return [base, MatchModel(shaken(base.m), shaken(base.u), u_apart=shaken(base.u_apart))]


@settings(max_examples=300, deadline=None)
@given(levels=_LEVELS)
def test_total_of_is_the_sum_weight_of_gives(levels):
    for model in _models():
        total, parts = model.weight_of(levels)
        assert model.total_of(levels) == total  # (bit for bit: the ranking compares these floats)
        assert abs(total - sum(parts.values())) < 1e-9


def _decide_all(events, config, cached: bool, monkeypatch) -> list:
    if not cached:  # every adjustment computed afresh from the counts
        monkeypatch.setattr(Context, "frequency_cache", lambda self: {})
    try:
        return in_order(events, config)
    finally:
        monkeypatch.undo()


def test_cached_frequency_adjustments_decide_as_computing_them_afresh(monkeypatch):
    """Over epochs (the counts move on at each start) and re-estimations of the model (a new model: other
    adjustments), the cache gives the decisions of computing every adjustment from the counts."""
    events = corpus(random.Random(11), 2500, people=150)
    config = ResolverConfig()
    fresh = _decide_all(events, config, cached=False, monkeypatch=monkeypatch)
    cached = _decide_all(events, config, cached=True, monkeypatch=monkeypatch)
    assert cached == fresh
    adjusted = [d for entry in fresh for d in entry if d["type"] in ("probable_link", "possible_match")
                and any("frequency_adjustment" in f for f in d["fields"].values())]
    estimated = [d for entry in fresh for d in entry if d["type"] == "model_estimated"]
    assert adjusted, "the corpus must make frequency adjustments count in links"
    assert len(estimated) >= 2, "the corpus must span re-estimations of the model"
