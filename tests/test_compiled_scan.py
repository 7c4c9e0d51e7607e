"""The compiled scan of an event's candidates (``_ccompare.scan``) finds what its Python definition finds
(``fuzzy.candidates_python``): the same best record per profile, the same totals bit for bit, the same levels
and frequency adjustments, the same errors; and deciding with it logs what deciding without it logs, under
every setting the scan reads."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from resolver import fuzzy
from resolver.config import ResolverConfig
from resolver.engine import Resolver
from resolver.matching import AttributeRecord, blocking_keys
from resolver.matching.canonical import RECORD_FIELDS
from resolver.normalize import Normalizer
from tests.test_shards import DOB, FIRST, LAST, POSTCODE, corpus, in_order

compiled = pytest.mark.skipif(fuzzy._scan is None, reason="the compiled comparison was not built (no C compiler)")

SETTINGS = {
    "shipped": {},
    "no date-of-birth guard": {"dob_conflict": False},
    "different first names link": {"link_different_first_names": True},
    "no frequency adjustments": {"frequency_adjustments": False},
}


def _fuzzy_decisions(log: list[list[dict]]) -> list[dict]:
    return [d for entry in log for d in entry if d["type"] in ("probable_link", "possible_match")]


@compiled
@pytest.mark.parametrize("name", list(SETTINGS))
def test_deciding_with_the_compiled_scan_logs_what_the_definition_logs(name, monkeypatch):
    config = replace(ResolverConfig(), **SETTINGS[name])
    events = corpus(random.Random(29), 1500, people=120)
    compiled_log = in_order(events, config)
    monkeypatch.setattr(fuzzy, "_scan", None)
    assert in_order(events, config) == compiled_log
    found = {d["type"] for d in _fuzzy_decisions(compiled_log)}
    assert found == {"probable_link", "possible_match"}, "the corpus must make the matcher link and queue"


@pytest.fixture(scope="module")
def decided() -> Resolver:
    """A resolver that has decided a corpus where every guard and the matcher act (a re-estimated model)."""
    resolver = Resolver(ResolverConfig())
    for event in corpus(random.Random(5), 1200, people=90):
        resolver.decide(event)
    assert resolver.state.model is not None, "the corpus must re-estimate the model"
    return resolver


def _near(pool: list[str]):
    """A value of ``pool`` as written, with a typo, or missing."""
    def typo(v: str, i: int, c: str) -> str:
        i %= len(v)
        return v[:i] + c + v[i + 1:]
    return st.one_of(st.none(), st.sampled_from(pool),
                     st.builds(typo, st.sampled_from(pool), st.integers(0, 20), st.sampled_from("aeiouxz")))


_NORMALIZE = Normalizer(ResolverConfig()).attributes
_RECORDS = st.builds(
    lambda first, last, dob, postcode: AttributeRecord.from_attributes(_NORMALIZE(
        {k: v for k, v in (("first_name", first), ("last_name", last), ("date_of_birth", dob),
                           ("postcode", postcode)) if v is not None})),
    _near(FIRST), _near(LAST),
    st.one_of(st.none(), st.sampled_from(DOB), st.sampled_from([d[:8] + d[9] + d[8] for d in DOB])),
    st.one_of(st.none(), st.sampled_from(POSTCODE)))


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for p in a:
        (ta, na, la, da), (tb, nb, lb, db) = a[p], b[p]
        assert (ta, math.copysign(1.0, ta), na, la, da) == (tb, math.copysign(1.0, tb), nb, lb, db), p


@compiled
@settings(max_examples=300, deadline=None)
@given(rec=_RECORDS, own=st.integers(0, 10_000), guard=st.booleans(), first_names=st.booleans(),
       frequencies=st.booleans())
def test_each_record_s_candidates_are_the_definition_s(decided, rec, own, guard, first_names, frequencies):
    keys = blocking_keys(rec)
    st_ = decided.state
    pid = st_.node_profile[own % len(st_.node_profile)]  # (the profile the record would be in)
    ctx = decided._ctx
    ctx.config = replace(decided.config, dob_conflict=guard, link_different_first_names=first_names,
                         frequency_adjustments=frequencies)
    try:
        model = ctx.model
        _same(fuzzy.candidates(ctx, model, rec, keys, pid), fuzzy.candidates_python(ctx, model, rec, keys, pid))
    finally:
        ctx.config = decided.config


@compiled
def test_the_scan_finds_candidates_for_the_corpus_s_own_records(decided):
    ctx, st_ = decided._ctx, decided.state
    found = 0
    for node, records in list(st_.records.items())[:300]:
        for rec in records:
            pid = st_.node_profile[node]
            best = fuzzy.candidates(ctx, ctx.model, rec, blocking_keys(rec), pid)
            _same(best, fuzzy.candidates_python(ctx, ctx.model, rec, blocking_keys(rec), pid))
            found += len(best)
    assert found > 100  # (the comparison is of something)


def _outcome(f, *args):
    try:
        return f(*args)
    except Exception as exc:
        return type(exc), str(exc)


@compiled
def test_an_error_in_what_the_scan_calls_is_raised_as_by_the_definition(decided, monkeypatch):
    ctx, st_ = decided._ctx, decided.state
    node = next(n for n, records in st_.records.items() if records)
    rec = st_.records[node][0]
    args = (ctx, ctx.model, rec, blocking_keys(rec), "p_elsewhere")

    def broken(*_):
        raise RuntimeError("adjustment failed")

    monkeypatch.setattr(fuzzy, "value_adjustment", broken)
    monkeypatch.setattr(ctx, "_tf", {})
    monkeypatch.setattr(ctx, "_tf_stamp", None)
    assert _outcome(fuzzy.candidates, *args) == _outcome(fuzzy.candidates_python, *args) == \
        (RuntimeError, "adjustment failed")
    monkeypatch.undo()
    # a record held in the state that is not one (a damaged state): the same error either way
    odd = object.__new__(AttributeRecord)
    for name, value in zip(RECORD_FIELDS, (rec.first_name, rec.last_name, 19, None, None, None)):
        object.__setattr__(odd, name, value)
    monkeypatch.setitem(st_.records, node, [odd])
    c, py = _outcome(fuzzy.candidates, *args), _outcome(fuzzy.candidates_python, *args)
    assert c == py


@compiled
def test_a_state_held_otherwise_is_scanned_by_the_definition(decided, monkeypatch):
    # (shards hold their slices in other containers: the compiled scan takes only a whole state's)
    ctx, st_ = decided._ctx, decided.state
    node = next(n for n, records in st_.records.items() if records)
    rec = st_.records[node][0]
    args = (ctx, ctx.model, rec, blocking_keys(rec), "p_elsewhere")
    expected = fuzzy.candidates_python(*args)
    assert expected
    monkeypatch.setattr(st_, "node_profile", tuple(st_.node_profile))
    called = []
    monkeypatch.setattr(fuzzy, "candidates_python", lambda *a: called.append(1) or expected)
    assert fuzzy.candidates(*args) is expected and called
