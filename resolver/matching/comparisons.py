"""Comparisons: one agreement level per field of two attribute records.

``compare(a, b)`` is the comparison vector: one level per field of ``FIELDS`` (``FIELD_LEVELS``, best
first), or ``"null"`` when a side is missing.
"""

from __future__ import annotations

from datetime import date as _date
from functools import lru_cache
from typing import Optional

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler

from resolver.matching.canonical import AttributeRecord
from resolver.matching.names import _NICK_INDEX, nickname_equivalent

# Bump when the meaning of a comparison level changes: a model estimated under other definitions is refused.
COMPARISONS_VERSION = 4

NULL = "null"
FIELDS: tuple[str, ...] = ("first_name", "last_name", "date_of_birth", "postcode", "address", "city")
FIELD_INDEX: dict[str, int] = {f: i for i, f in enumerate(FIELDS)}  # position in a comparison vector
# Agreement levels per field, best first (``null`` is not listed: it always weighs 0).
FIELD_LEVELS: dict[str, tuple[str, ...]] = {
    "first_name": ("exact", "nickname", "jw_92", "jw_80", "different"),
    "last_name": ("exact", "jw_92", "jw_80", "different"),
    "date_of_birth": ("exact", "swapped", "one_off", "year", "month", "decade", "different"),
    "postcode": ("exact", "typo", "prefix", "different"),
    "address": ("exact", "tsr_90", "tsr_75", "different"),
    "city": ("exact", "jw_92", "different"),
}
JW_HIGH = 0.92
JW_LOW = 0.80
TSR_HIGH = 90.0
TSR_LOW = 75.0
POSTCODE_PREFIX = 3


def compare_first_name(a: Optional[str], b: Optional[str]) -> str:
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    if nickname_equivalent(a, b):
        return "nickname"
    if (len(a) == 1 or len(b) == 1) and a[0] == b[0]:
        return "jw_80"  # an initial that fits: weak agreement, never a clear difference
    return _jw_level(a, b)


def compare_last_name(a: Optional[str], b: Optional[str]) -> str:
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    return _jw_level(a, b)


def _jw_level(a: str, b: str) -> str:
    sim = JaroWinkler.similarity(a, b, score_cutoff=JW_LOW)
    if sim >= JW_HIGH:
        return "jw_92"
    if sim >= JW_LOW:
        return "jw_80"
    return "different"


def compare_date_of_birth(a: Optional[str], b: Optional[str]) -> str:
    """exact; swapped (day and month exchanged); one_off (one of year, month, day differs, or one
    digit typo or transposition); year (the same year, one date a 1 January that stands for "only the
    year is known", as many systems record it); month (at most 31 days apart); decade (at most ten years
    apart); different."""
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    ya, ma, da = a[:4], a[5:7], a[8:10]
    yb, mb, db = b[:4], b[5:7], b[8:10]
    if ya == yb and ma == db and da == mb:
        return "swapped"
    differ = (ya != yb) + (ma != mb) + (da != db)
    # (one typo changes at most two adjacent digits, so at most two of year, month and day: with all three
    # differing in two dates of the canonical form, ``AttributeRecord``'s, the digits are not one typo apart)
    if differ == 1 or ((differ < 3 or len(a) != 10 or len(b) != 10) and _one_typo(a, b)):
        return "one_off"
    if ya == yb and (a[5:] == _YEAR_ONLY or b[5:] == _YEAR_ONLY):
        return "year"
    try:
        days = abs((_date.fromisoformat(a) - _date.fromisoformat(b)).days)
    except ValueError:  # (a 31 February: canonical dates check ranges only)
        return "different"
    if days <= 31:
        return "month"
    return "decade" if days <= 3653 else "different"


_YEAR_ONLY = "01-01"  # month and day of a date of which only the year is known


def _one_typo(a: str, b: str) -> bool:
    """The dates' digits are one substitution or one adjacent transposition apart."""
    return OSA.distance(a.replace("-", ""), b.replace("-", ""), score_cutoff=1) <= 1


def compare_postcode(a: Optional[str], b: Optional[str]) -> str:
    """exact; typo (one character wrong, missing, extra, or two adjacent ones swapped: 4570 / 4507);
    prefix (the first three characters agree); different."""
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    if min(len(a), len(b)) >= 4 and OSA.distance(a, b, score_cutoff=1) <= 1:
        return "typo"
    if len(a) >= POSTCODE_PREFIX and a[:POSTCODE_PREFIX] == b[:POSTCODE_PREFIX]:
        return "prefix"
    return "different"


@lru_cache(maxsize=65_536)
def _house_numbers(address: str) -> frozenset[str]:
    """The words of an address that hold a digit (a pure function of the text: cached)."""
    return frozenset(t for t in address.split() if any(c.isdigit() for c in t))


def compare_address(a: Optional[str], b: Optional[str]) -> str:
    """exact; token-set ratio >= 90; >= 75; different. House numbers that disagree (neither address's
    numbers contain the other's) make the addresses different whatever the street."""
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    nums_a, nums_b = _house_numbers(a), _house_numbers(b)
    if nums_a and nums_b and not (nums_a <= nums_b or nums_b <= nums_a):
        return "different"
    return _token_set_level(a, b)


def _token_set_level(a: str, b: str) -> str:
    """The address level from rapidfuzz's token-set ratio (house numbers apart)."""
    ratio = fuzz.token_set_ratio(a, b, score_cutoff=TSR_LOW)
    if ratio >= TSR_HIGH:
        return "tsr_90"
    if ratio >= TSR_LOW:
        return "tsr_75"
    return "different"


def compare_city(a: Optional[str], b: Optional[str]) -> str:
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    return "jw_92" if JaroWinkler.similarity(a, b) >= JW_HIGH else "different"


_LEVEL_RANK = {"exact": 0, "nickname": 1, "jw_92": 2, "jw_80": 3, "different": 4, NULL: 5}


def _names(a: AttributeRecord, b: AttributeRecord) -> tuple[str, str]:
    """First- and last-name levels; when one side's names were entered the other way round (first name
    in the surname field), the crossed comparison counts if it agrees better."""
    fa, la, fb, lb = a.first_name, a.last_name, b.first_name, b.last_name
    first = compare_first_name(fa, fb)
    last = compare_last_name(la, lb)
    if first == "exact" and last == "exact":
        return first, last
    rank = _LEVEL_RANK
    if fa and la and fb and lb:
        # (symmetric in a and b: the better crossed level is credited to the first name)
        one, two = compare_last_name(fa, lb), compare_last_name(la, fb)
        r1, r2 = rank[one], rank[two]
        if r1 + r2 < rank[first] + rank[last]:
            return (one, two) if r1 <= r2 else (two, one)
    elif last == NULL and first != NULL and first != "exact":
        # one name given, in the first-name field, and it is the other record's surname
        lone, other = (a, b) if la is None else (b, a)
        if lone.last_name is None and other.last_name:
            moved = compare_last_name(lone.first_name, other.last_name)
            if rank[moved] < rank[first]:
                return NULL, moved
    return first, last


def compare_python(a: AttributeRecord, b: AttributeRecord) -> tuple[str, ...]:
    """The comparison vector: one agreement level per field of ``FIELDS``, in that order. The definition;
    ``compare`` is the compiled one where it was built (``_ccompare.c``), with the same levels."""
    return (
        *_names(a, b),
        compare_date_of_birth(a.date_of_birth, b.date_of_birth),
        compare_postcode(a.postcode, b.postcode),
        compare_address(a.address, b.address),
        compare_city(a.city, b.city),
    )


try:  # (built by ``pip install``, where a C compiler is found: see setup.py)
    from resolver.matching import _ccompare
except ImportError:  # pragma: no cover (the definition is then used as it is)
    _ccompare = None


# Pairs on which an implementation of Jaro-Winkler can differ from another: cut-offs met exactly (as
# rapidfuzz 3 reads them, a 32-bit float: 0.8 is 0.800000012), transpositions, prefixes, Unicode.
_SELF_CHECK = (("tompkins", "thompson"), ("martha", "marhta"), ("dwayne", "duane"), ("dixon", "dicksonx"),
               ("jon", "john"), ("a", "a"), ("ab", "ba"), ("crate", "trace"), ("zoë", "zoe"),
               ("müller", "mueller"), ("catherine", "kathryn"), ("smith", "smyth"), ("o'neil", "oneil"))


def _agrees(module) -> bool:
    """Whether the compiled Jaro-Winkler gives the installed rapidfuzz's figures: if a rapidfuzz
    release computes otherwise, the Python definition is used, so levels never depend on the build."""
    return all(module.jaro_winkler(a, b, cut) == JaroWinkler.similarity(a, b, score_cutoff=cut)
               for a, b in _SELF_CHECK for cut in (0.0, JW_LOW, JW_HIGH, 0.7, 0.85))


if _ccompare is not None and not _agrees(_ccompare):  # pragma: no cover
    _ccompare = None


def compare_codes_python(records: list[AttributeRecord], codes: list[int], n: int,
                         compared: dict[int, tuple[str, ...]]) -> None:
    """For each pair code ``i * n + j`` in ``codes`` not yet in ``compared``: ``compared[code] = compare(records[i],
    records[j])`` (``n``: the number of records)."""
    for code in codes:
        if code not in compared:
            i, j = divmod(code, n)
            compared[code] = compare(records[i], records[j])


_POSTCODE = FIELDS.index("postcode")

COMPILED = _ccompare is not None and _POSTCODE == 3  # (the compiled code reads the postcode's level there)
if COMPILED:
    _ccompare.configure(
        {lv: lv for lv in {NULL, *(lv for levels in FIELD_LEVELS.values() for lv in levels)}},
        _NICK_INDEX, compare_python, _token_set_level, JW_HIGH, JW_LOW, compare_date_of_birth,
        AttributeRecord)
    compare = _ccompare.compare
    compare_total = _ccompare.compare_total
    compare_codes = _ccompare.compare_codes
    date_of_birth_level = _ccompare.date_of_birth  # (``compare_date_of_birth``)
else:  # pragma: no cover
    _ccompare = None
    compare = compare_python
    compare_total = None  # (``MatchModel.compare_total`` then compares and sums in Python)
    compare_codes = compare_codes_python
    date_of_birth_level = compare_date_of_birth


def compare_fields(a: AttributeRecord, b: AttributeRecord) -> dict[str, str]:
    """``compare`` as a dict field -> level."""
    return dict(zip(FIELDS, compare(a, b)))
