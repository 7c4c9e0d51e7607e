"""The compiled scan of an event's candidates (``_ccompare.scan``) finds what its Python definition finds
(``fuzzy.candidates_python``): the same best record per profile, the same totals bit for bit, the same levels
and frequency adjustments, the same errors; and deciding with it logs what deciding without it logs, under
every setting the scan reads. The records carry addresses and towns too: the scan leaves a record before its
address is compared when nothing the address could weigh would bring it to the review threshold."""

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
from schemas.channel import ChannelEvent
from tests.test_shards import DOB, FIRST, LAST, POSTCODE, corpus, in_order

compiled = pytest.mark.skipif(fuzzy._scan is None, reason="the compiled comparison was not built (no C compiler)")

SETTINGS = {
    "shipped": {},
    "no date-of-birth guard": {"dob_conflict": False},
    "different first names link": {"link_different_first_names": True},
    "no frequency adjustments": {"frequency_adjustments": False},
}


ADDRESSES = ["1 Main St", "12 High Street", "12a High Street", "7 Mill Lane", "Flat 2 7 Mill Lane", "40 Oak Road",
             "40 Oak Rd"]
CITIES = ["London", "Londn", "Leeds", "Manchester"]


def with_places(events: list[ChannelEvent], rnd: random.Random) -> list[ChannelEvent]:
    """The events with an address and a town on most records that carry attributes: a household (a surname)
    shares one, written otherwise now and then, and a few records give another's."""
    out = []
    for e in events:
        attrs = dict(e.attributes)
        if attrs and rnd.random() < 0.8:
            last = attrs.get("last_name", "")
            home = ADDRESSES[sum(map(ord, last)) % len(ADDRESSES)]
            roll = rnd.random()
            attrs["address"] = home if roll < 0.75 else rnd.choice(ADDRESSES) if roll < 0.9 else home.replace(" ", "  ", 1)
            if rnd.random() < 0.7:
                attrs["city"] = CITIES[len(last) % 2] if rnd.random() > 0.1 else rnd.choice(CITIES)
        out.append(e.model_copy(update={"attributes": attrs}))
    return out


def _fuzzy_decisions(log: list[list[dict]]) -> list[dict]:
    return [d for entry in log for d in entry if d["type"] in ("probable_link", "possible_match")]


@compiled
@pytest.mark.parametrize("places", [False, True], ids=["names and dates", "with addresses and towns"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_deciding_with_the_compiled_scan_logs_what_the_definition_logs(name, places, monkeypatch):
    config = replace(ResolverConfig(), **SETTINGS[name])
    events = corpus(random.Random(29), 1500, people=120)
    if places:
        events = with_places(events, random.Random(3))
    compiled_log = in_order(events, config)
    monkeypatch.setattr(fuzzy, "_scan", None)
    assert in_order(events, config) == compiled_log
    found = {d["type"] for d in _fuzzy_decisions(compiled_log)}
    assert found == {"probable_link", "possible_match"}, "the corpus must make the matcher link and queue"


@pytest.fixture(scope="module")
def decided() -> Resolver:
    """A resolver that has decided a corpus where every guard and the matcher act (a re-estimated model)."""
    resolver = Resolver(ResolverConfig())
    for event in with_places(corpus(random.Random(5), 1200, people=90), random.Random(6)):
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
    lambda first, last, dob, postcode, address, city: AttributeRecord.from_attributes(_NORMALIZE(
        {k: v for k, v in (("first_name", first), ("last_name", last), ("date_of_birth", dob),
                           ("postcode", postcode), ("address", address), ("city", city)) if v is not None})),
    _near(FIRST), _near(LAST),
    st.one_of(st.none(), st.sampled_from(DOB), st.sampled_from([d[:8] + d[9] + d[8] for d in DOB])),
    st.one_of(st.none(), st.sampled_from(POSTCODE)), _near(ADDRESSES), _near(CITIES))


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


def _a_held_record(decided: Resolver):
    """The context, the state, a node holding a record, that record, and ``candidates``' arguments for it."""
    ctx, st_ = decided._ctx, decided.state
    node = next(n for n, records in st_.records.items() if records)
    rec = st_.records[node][0]
    return ctx, st_, node, rec, (ctx, ctx.model, rec, blocking_keys(rec), "p_elsewhere")


@compiled
def test_an_error_in_what_the_scan_calls_is_raised_as_by_the_definition(decided, monkeypatch):
    ctx, st_, node, rec, args = _a_held_record(decided)

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
    _, st_, _, _, args = _a_held_record(decided)
    expected = fuzzy.candidates_python(*args)
    assert expected
    monkeypatch.setattr(st_, "node_profile", tuple(st_.node_profile))
    called = []
    monkeypatch.setattr(fuzzy, "candidates_python", lambda *a: called.append(1) or expected)
    assert fuzzy.candidates(*args) is expected and called


@compiled
def test_a_candidate_taken_out_of_its_list_while_it_is_scored_is_scored_as_by_the_definition(decided, monkeypatch):
    # (what the scan calls back, the date-of-birth guard or a frequency adjustment, may change the state's lists;
    # the definition's loop still holds the record it took, and so must the scan: it once read a freed one)
    ctx, st_ = decided._ctx, decided.state
    node, held = next((n, recs) for n, recs in st_.records.items()
                      if len(recs) == 1 and recs[0].date_of_birth and recs[0].first_name)
    fields = tuple(getattr(held[0], f) for f in RECORD_FIELDS)
    # (its date one digit off, so that the guard's full check is called and the record still reaches review)
    dob = fields[2][:9] + ("2" if fields[2][9] == "1" else "1")
    rec = AttributeRecord.from_attributes(_NORMALIZE({"first_name": fields[0], "last_name": fields[1] or "x",
                                                      "date_of_birth": dob}))
    keys = [k for k in blocking_keys(rec) if node in st_.blocks.get(k, ())]
    assert keys, "the record must find the node through a blocking key"
    junk = []

    def emptying(a, b):  # (the guard's full check, which then drops the node's records: the last reference)
        st_.records[node].clear()
        junk.extend(AttributeRecord(*(["zz"] * len(fields))) for _ in range(200))  # (memory reused at once)
        return True

    results = []
    for scan in (fuzzy.candidates, fuzzy.candidates_python):
        monkeypatch.setitem(st_.records, node, [AttributeRecord(*fields)])  # (held by the list alone)
        monkeypatch.setattr(fuzzy, "dates_compatible", emptying)
        results.append(_outcome(scan, ctx, ctx.model, rec, keys, "p_elsewhere"))
        monkeypatch.undo()
    assert results[0] == results[1]
    assert isinstance(results[0], dict) and node in {n for _, n, _, _ in results[0].values()}


@compiled
def test_a_damaged_record_fails_with_the_definition_s_error_when_the_event_has_no_date_of_birth(decided,
                                                                                                 monkeypatch):
    ctx, st_ = decided._ctx, decided.state
    node, held = next((n, recs) for n, recs in st_.records.items() if recs and recs[0].first_name)
    half = object.__new__(AttributeRecord)
    object.__setattr__(half, "first_name", held[0].first_name)  # (its other slots never set)
    monkeypatch.setitem(st_.records, node, [half])
    rec = AttributeRecord.from_attributes(_NORMALIZE({"first_name": held[0].first_name, "last_name": "x"}))
    keys = [k for k in blocking_keys(rec) if node in st_.blocks.get(k, ())] or list(st_.blocks)[:1]
    monkeypatch.setitem(st_.blocks, keys[0], [node])
    c, py = (_outcome(f, ctx, ctx.model, rec, keys, "p_elsewhere") for f in (fuzzy.candidates, fuzzy.candidates_python))
    assert c == py and c[0] is AttributeError and "date_of_birth" in c[1]


@compiled
@pytest.mark.parametrize("frequencies", [True, False])
def test_records_the_compiled_comparison_leaves_to_the_definition_are_scored_as_by_it(decided, frequencies):
    # (a field longer than the compiled code reads, or an address of more words than it holds: the Python
    # definition compares, and the scan weighs and adjusts its levels as it does its own)
    ctx, st_ = decided._ctx, decided.state
    ctx.config = replace(decided.config, frequency_adjustments=frequencies)
    try:
        found = 0
        for node, records in list(st_.records.items())[:150]:
            for held in records:
                for long_ in ({"address": "flat 2 " + "long " * 60 + "lane"}, {"address": " ".join(["7"] * 80)},
                              {"city": "x" * 300}):
                    rec = AttributeRecord.from_attributes(_NORMALIZE({**{f: getattr(held, f) for f in RECORD_FIELDS
                                                                         if getattr(held, f) is not None}, **long_}))
                    best = fuzzy.candidates(ctx, ctx.model, rec, blocking_keys(rec), "p_elsewhere")
                    _same(best, fuzzy.candidates_python(ctx, ctx.model, rec, blocking_keys(rec), "p_elsewhere"))
                    found += len(best)
        assert found > 100
    finally:
        ctx.config = decided.config
