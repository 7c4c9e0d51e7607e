"""The compiled comparison of attribute records (``resolver/matching/_ccompare.c``) gives the levels of the
Python definition (``compare_python``) for every pair: generated texts near each other, odd records, and
the records of both channel-event generators."""

from __future__ import annotations

import random
import shutil
import sys
import sysconfig
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from rapidfuzz.distance import OSA, JaroWinkler

from resolver.matching import comparisons
from resolver.matching.canonical import RECORD_FIELDS, AttributeRecord
from resolver.matching.comparisons import FIELD_LEVELS, FIELDS
from resolver.matching.model import POSTCODE_AGREES, MatchModel
from streams.synthetic import SyntheticConfig, generate_lines

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import crm_corpus  # noqa: E402

ccompare = comparisons._ccompare
compare_py = comparisons.compare_python
compare_c = ccompare.compare if ccompare is not None else None
compiled = pytest.mark.skipif(ccompare is None, reason="the compiled comparison was not built (no C compiler)")


def test_compare_is_the_compiled_one_where_a_compiler_is_found():
    # (setup.py builds it where it can and the resolver then uses it: a build that fails where a compiler is
    # found would lose its speed silently)
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler here: the Python definition is used")
    assert comparisons.COMPILED and comparisons.compare is compare_c


def _raw(*values) -> AttributeRecord:
    """A record holding exactly ``values`` (not canonicalized: what a damaged or foreign state could hold)."""
    rec = object.__new__(AttributeRecord)
    for name, value in zip(RECORD_FIELDS, values):
        object.__setattr__(rec, name, value)
    return rec


def _outcome(compare, a, b):
    try:
        return compare(a, b)
    except Exception as exc:  # (a record the definition cannot compare: the same error either way)
        return type(exc)


def _same(a: AttributeRecord, b: AttributeRecord) -> None:
    assert _outcome(compare_c, a, b) == _outcome(compare_py, a, b), (a, b)
    assert _outcome(compare_c, b, a) == _outcome(compare_py, b, a), (b, a)


def _pairs(values: list) -> list[tuple]:
    """Every ordered pair of ``values``, each with itself too. The properties below draw a few values and
    compare all their pairs: drawing is most of hypothesis's time, so that gives about three times the pairs
    in a third of the time that drawing each pair on its own took."""
    return [(a, b) for a in values for b in values]


def _same_pairs(records: list[AttributeRecord]) -> None:
    """``_same`` for every pair of ``records``, each with itself too (``_same`` compares both ways, so each
    unordered pair once)."""
    for i, a in enumerate(records):
        for b in records[i:]:
            _same(a, b)


@compiled
def test_a_compiled_jaro_winkler_that_disagrees_with_rapidfuzz_is_not_used():
    # (a rapidfuzz release that computed otherwise must not make levels depend on whether a compiler was found)
    assert comparisons._agrees(ccompare)

    class Off:  # the compiled module with a cut-off read as a 64-bit float
        @staticmethod
        def jaro_winkler(a, b, cut=0.0):
            sim = JaroWinkler.similarity(a, b)
            return sim if sim >= cut else 0.0

    assert not comparisons._agrees(Off)


# -- the pieces against rapidfuzz ---------------------------------------------------------------------------

@compiled
@settings(max_examples=600, deadline=None)
@given(st.lists(st.text("abcdeé😀 ", max_size=14), min_size=2, max_size=7),
       st.sampled_from([0.0, 0.8, 0.92, 0.7, 0.5]) | st.floats(0.0, 1.0))
def test_jaro_winkler_is_rapidfuzz_s(texts, cutoff):
    for a, b in _pairs(texts):
        assert ccompare.jaro_winkler(a, b, cutoff) == JaroWinkler.similarity(a, b, score_cutoff=cutoff)
        assert ccompare.jaro_winkler(a, b) == JaroWinkler.similarity(a, b)


@compiled
def test_jaro_winkler_at_the_threshold():
    # JW of exactly 0.8: rapidfuzz takes the cutoff 0.8 as a 32-bit float (0.800000012) and refuses it
    assert JaroWinkler.similarity("tompkins", "thompson") == 0.8
    assert JaroWinkler.similarity("tompkins", "thompson", score_cutoff=0.8) == 0.0
    assert ccompare.jaro_winkler("tompkins", "thompson", 0.8) == 0.0
    assert compare_c(AttributeRecord(last_name="Tompkins"), AttributeRecord(last_name="Thompson"))[1] == "different"


@compiled
@settings(max_examples=600, deadline=None)
@given(st.lists(st.text("ab1é", max_size=9), min_size=2, max_size=7))
def test_within_one_edit_is_rapidfuzz_s_osa(texts):
    for a, b in _pairs(texts):
        assert ccompare.osa_within_one(a, b) == (OSA.distance(a, b, score_cutoff=1) <= 1), (a, b)


# -- whole records ------------------------------------------------------------------------------------------

NAMES = ["ann", "anne", "anna", "annie", "bob", "robert", "rob", "roberta", "smith", "smyth", "smithe", "jon",
         "john", "jonathan", "jonahtan", "mary", "marie", "mayra", "a", "j", "r", "lee", "le", "li", "tompkins",
         "thompson", "o brien", "obrien", "van der berg", "vandenberg", "müller", "muller", "żak"]
ADDRESSES = ["12 high st", "12 high st flat 3", "14 high st", "12 hihg st", "12a high st", "12 church ln",
             "12 church rd", "flat 3 12 high st", "99 lime gr", "high st", "apt 4 2 park rd", "2 park rd apt 4",
             "١٢ high st", "12 high\u00a0st", "12\u2003high st 3"]
POSTCODES = ["SW1A1AA", "SW1A1AB", "SW1P3BU", "10001", "10003", "10010", "4570", "4507", "AB", "AB1", "E1", "SW1"]
CITIES = ["london", "londn", "leeds", "manchester", "manchster", "anytown", "anytiwn"]


@st.composite
def dates(draw) -> str:
    base = draw(st.dates(date(1, 1, 1), date(9999, 12, 31)))
    text = base.isoformat()
    change = draw(st.sampled_from(["none", "days", "digit", "swap", "invalid", "year_only", "dm_swap"]))
    if change == "days":
        text = (base + timedelta(days=draw(st.integers(-4000, 4000)))).isoformat() \
            if date(1, 1, 1) + timedelta(days=4000) < base < date(9999, 12, 31) - timedelta(days=4000) else text
    elif change == "digit":
        k = draw(st.sampled_from([0, 1, 2, 3, 5, 6, 8, 9]))
        text = text[:k] + draw(st.sampled_from("0123456789")) + text[k + 1:]
    elif change == "swap":
        k = draw(st.sampled_from([0, 1, 2, 5, 8]))
        text = text[:k] + text[k + 1] + text[k] + text[k + 2:]
    elif change == "invalid":
        text = text[:5] + draw(st.sampled_from(["02-30", "02-29", "04-31", "13-01", "00-10", "01-00"]))
        text = draw(st.sampled_from([text, "0000" + text[4:]]))
    elif change == "year_only":
        text = text[:5] + "01-01"
    elif change == "dm_swap":
        text = text[:5] + text[8:10] + "-" + text[5:7]
    return text


fields = st.fixed_dictionaries({
    "first_name": st.none() | st.sampled_from(NAMES) | st.text("abnr ", min_size=1, max_size=8),
    "last_name": st.none() | st.sampled_from(NAMES) | st.text("abst ", min_size=1, max_size=8),
    "date_of_birth": st.none() | dates(),
    "address": st.none() | st.sampled_from(ADDRESSES) | st.text("12ab ", min_size=1, max_size=12),
    "postcode": st.none() | st.sampled_from(POSTCODES) | st.text("AB12", min_size=1, max_size=6),
    "city": st.none() | st.sampled_from(CITIES),
})


@compiled
@settings(max_examples=800, deadline=None)
@given(st.lists(fields, min_size=2, max_size=7))
def test_records_compare_alike(drawn):
    _same_pairs([AttributeRecord(**r) for r in drawn])


@compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(fields, min_size=2, max_size=7))
def test_records_as_held_compare_alike(drawn):
    # values as given (not canonicalized): dates in other forms, upper case, long and empty texts
    _same_pairs([_raw(*r.values()) for r in drawn])


@compiled
@settings(max_examples=600, deadline=None)
@given(st.lists(st.none() | dates() | st.text("0129-", max_size=11), min_size=2, max_size=7))
def test_a_date_of_birth_level_is_the_definition_s(drawn):
    # (the level the date guard reads: ``dates_compatible``)
    for a, b in _pairs(drawn):
        assert comparisons.date_of_birth_level(a, b) == comparisons.compare_date_of_birth(a, b), (a, b)


def _model(seed: int) -> MatchModel:
    """A model whose weights are all different numbers, none of them round (a seeded draw of m and u)."""
    rng = random.Random(seed)

    def table() -> dict:
        out = {}
        for f in FIELDS:
            drawn = {lv: rng.uniform(0.01, 1.0) for lv in FIELD_LEVELS[f]}
            out[f] = {lv: v / sum(drawn.values()) for lv, v in drawn.items()}
        return out

    return MatchModel(table(), table(), u_apart=table())


@compiled
@settings(max_examples=400, deadline=None)
@given(st.lists(fields, min_size=2, max_size=7), st.integers(0, 50))
def test_a_pair_s_total_is_the_sum_the_model_makes(drawn, seed):
    # (the levels compared in C and their weights summed there, in field order: the same float to the last bit)
    model = _model(seed)
    for ra, rb in _pairs([AttributeRecord(**r) for r in drawn]):
        levels, total = model.compare_total(ra, rb)
        assert levels == compare_py(ra, rb)
        assert total == model.total_of(levels) == model.weight_of(levels)[0]
        assert comparisons.compare_total(ra, rb, model._vector, model._vector_apart, POSTCODE_AGREES) == \
            (levels, total)


@compiled
@pytest.mark.parametrize("a,b", [
    (("", "smith", None, None, None, None), ("a", "smith", None, None, None, None)),
    (("ann", "", None, None, None, None), ("ann", "lee", None, None, None, None)),
    (("ann", "lee", "1985-3-7", None, None, None), ("ann", "lee", "1985-03-07", None, None, None)),
    (("ann", "lee", "١٩٨٥-٠٣-٠٧", None, None, None), ("ann", "lee", "1985-03-07", None, None, None)),
    (("ann" * 100, "lee", None, None, None, None), ("ann" * 99, "lee", None, None, None, None)),
    ((None, None, None, " ".join(f"{i}a" for i in range(70)), None, None),
     (None, None, None, " ".join(f"{i}a" for i in range(69)), None, None)),
    ((None, None, None, None, None, "x" * 300), (None, None, None, None, None, "x" * 299)),
])
def test_what_the_compiled_code_does_not_expect_is_compared_by_the_definition(a, b):
    _same(_raw(*a), _raw(*b))


@compiled
@pytest.mark.parametrize("days", [0, 1, 30, 31, 32, 365, 3652, 3653, 3654, 4000])
def test_dates_at_the_bounds_of_a_level(days):
    for start in (date(1984, 2, 29), date(1999, 12, 31), date(1, 1, 1), date(2000, 1, 1)):
        later = (start + timedelta(days=days)).isoformat()
        _same(AttributeRecord(date_of_birth=start.isoformat()), AttributeRecord(date_of_birth=later))


@compiled
@pytest.mark.parametrize("a,b", [
    ("١٢ high st", "14 high st"), ("١٢ high st", "12 high st"), ("12 high st", "12\u00a0high st"),
    ("12\u2003high st 3", "3 high st 12"), ("12\u2003high st", "12 high st"), ("²3 high st", "3 high st"),
    ("12 high st\x1f4", "12 high st 4"), ("12  high   st", "12 high st"),
])
def test_house_numbers_read_as_python_reads_them(a, b):
    # (words split where str.split() splits, a digit wherever str.isdigit() finds one)
    _same(_raw(None, None, None, a, None, None), _raw(None, None, None, b, None, None))


@compiled
def test_a_field_that_is_no_text_fails_as_in_the_definition():
    a, b = _raw(1, "lee", None, None, None, None), _raw("1", "lee", None, None, None, None)
    with pytest.raises(TypeError):
        compare_py(a, b)
    with pytest.raises(TypeError):
        compare_c(a, b)


@compiled
def test_fields_read_from_their_slots_or_through_python_alike():
    # (an AttributeRecord's fields are read from its slots; anything else, and a slot never set, through Python)
    class Mine(AttributeRecord):
        __slots__ = ()

    a, b = AttributeRecord("Ann", "Lee", "1980-01-02"), AttributeRecord("Anne", "Lee", "1980-02-01")
    assert compare_c(Mine("Ann", "Lee", "1980-01-02"), b) == compare_c(a, b) == compare_py(a, b)
    empty = object.__new__(AttributeRecord)
    for left, right in ((empty, b), (b, empty)):
        with pytest.raises(AttributeError):
            compare_py(left, right)
        with pytest.raises(AttributeError):
            compare_c(left, right)


def _records(events) -> list[AttributeRecord]:
    seen: dict[AttributeRecord, None] = {}
    for event in events:
        if event.get("attributes"):
            try:
                seen.setdefault(AttributeRecord.from_attributes(event["attributes"]), None)
            except (TypeError, AttributeError):
                continue
    return list(seen)


@compiled
def test_the_generators_records_compare_alike(tmp_path):
    own = [orjson.loads(line) for line, person in generate_lines(SyntheticConfig(people=400, seed=5))
           if person is not None]
    crm_corpus.write_corpus(tmp_path / "e.jsonl", tmp_path / "t.csv", people=150, seed=9)
    other = []
    for line in (tmp_path / "e.jsonl").read_bytes().splitlines():
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # (the corpus holds broken lines on purpose)
        if isinstance(event, dict) and isinstance(event.get("attributes"), dict):
            other.append(event)
    for records in (_records(own), _records(other)):
        assert len(records) > 150
        differ = [(a, b) for a in records for b in records if compare_c(a, b) != compare_py(a, b)]
        assert differ == []


@compiled
@settings(max_examples=500, deadline=None)
@given(st.integers(1, 10**9).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.lists(st.integers(0, n - 1), max_size=12), max_size=6))))
def test_blocks_pair_codes_are_the_definition_s(drawn):
    # (training's candidate pairs: i * n + j for i before j in each block, sorted, without repeats)
    from resolver.matching.blocking import block_pair_codes, block_pair_codes_python, union_codes, union_codes_python

    n, blocks = drawn
    codes = block_pair_codes(blocks, n)
    assert codes == block_pair_codes_python(blocks, n)
    halves = [block_pair_codes(blocks[:2], n), block_pair_codes(blocks[2:], n), codes]
    assert union_codes(halves, n) == union_codes_python(halves) == codes
    with pytest.raises(ValueError):
        block_pair_codes([[0, n]], n)  # (a record number beyond the records)


@compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(fields, min_size=1, max_size=8).flatmap(
    lambda rs: st.tuples(st.just(rs), st.lists(st.integers(0, len(rs) ** 2 - 1), max_size=20))))
def test_pairs_compared_by_code_are_the_definition_s(drawn):
    # (training's comparisons: each pair code compared once, what is already known kept as it is)
    raw, codes = drawn
    records = [AttributeRecord(**r) for r in raw]
    n = len(records)
    known = {codes[0]: ("kept",)} if codes else {}
    compiled_out, python_out = dict(known), dict(known)
    ccompare.compare_codes(records, codes, n, compiled_out)
    comparisons.compare_codes_python(records, codes, n, python_out)
    assert compiled_out == python_out
    assert all(compiled_out[c] == compare_py(records[c // n], records[c % n]) for c in codes[1:] if c != codes[0])
    with pytest.raises(ValueError):
        ccompare.compare_codes(records, [n * n], n, {})  # (a code beyond the records' pairs)


_WITHOUT_COMPILER = r"""
import sys
sys.modules["resolver.matching._ccompare"] = None  # (as where no C compiler built it)
from resolver.matching import comparisons
assert not comparisons.COMPILED and comparisons.compare is comparisons.compare_python
"""

_TRAIN_AND_COMPARE = r"""
import hashlib, json
import orjson
from resolver.matching import distinct_records, train_model
from resolver.matching.comparisons import compare
from resolver.matching.model import default_model
from resolver.normalize import Normalizer
from resolver.config import ResolverConfig
from streams.synthetic import SyntheticConfig, generate_lines
events = [orjson.loads(line) for line, person in generate_lines(SyntheticConfig(people=300, seed=3)) if person]
records = distinct_records((e.get("attributes") or {} for e in events), Normalizer(ResolverConfig()).attributes)
model, report = train_model(records, seed=0, pairs_sample=3000)
default = default_model()
pairs = [(compare(a, b), default.compare_total(a, b)) for a in records[:150] for b in records[:150]]
print(json.dumps([model.fingerprint(), len(records),
                  hashlib.sha256(json.dumps(pairs).encode()).hexdigest()]))
"""


def test_without_the_compiled_code_the_same_model_and_levels():
    # (a machine with no C compiler: the Python definitions give what the compiled code gives)
    import json
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)
    outs = []
    for prefix in (_WITHOUT_COMPILER, ""):
        done = subprocess.run([sys.executable, "-c", prefix + _TRAIN_AND_COMPARE], cwd=root, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outs.append(json.loads(done.stdout))
    assert outs[0] == outs[1]
    assert outs[0][1] > 100
