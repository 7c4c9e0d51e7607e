"""Compatibility: whether two people may be one person whatever a score says.

``hard_conflict(a, b)``: dates of birth that clearly differ; a fuzzy score never overrides it.
``first_names_compatible`` and ``dates_compatible``: the tolerant tests behind it and behind the traits.
"""

from __future__ import annotations

from datetime import date as _date
from functools import lru_cache
from typing import Optional

from resolver.matching.canonical import AttributeRecord
from resolver.matching.comparisons import compare_first_name, compare_last_name, date_of_birth_level, _one_typo
from resolver.matching.names import soundex


GENERATION_YEARS = 12  # dates of birth this far apart are two people's, whatever else agrees


def hard_conflict(a: AttributeRecord, b: AttributeRecord) -> Optional[str]:
    """Why two records cannot be one person whatever their other fields say, or None.

    Dates of birth conflict when both are known and not ``dates_compatible``, whatever the names: on
    attribute evidence alone a date years out is another person's (namesakes in one town, a cousin named
    after the same grandparent). Only the identifier guards let the full names vouch for a mistyped date
    less than a generation apart (``resolver.traits``): there the shared identifier is the evidence.
    """
    da, db = a.date_of_birth, b.date_of_birth
    if da is None or db is None or dates_compatible(da, db):
        return None
    lo, hi = sorted((da, db))
    return f"dates of birth differ: {lo} vs {hi}"


def generation_apart(a: str, b: str) -> bool:
    """Whether two ISO dates are at least ``GENERATION_YEARS`` years apart (or not dates at all)."""
    try:
        return abs(int(a[:4]) - int(b[:4])) >= GENERATION_YEARS
    except ValueError:
        return True


# Letters that begin names which sound alike (Catherine / Kathryn, Sean / Shaun): Soundex keeps the first
# letter, so these are compared as one.
_SAME_SOUND_INITIAL = {"k": "c", "q": "c", "z": "s", "y": "i", "g": "j", "p": "f", "w": "v"}


def _sound(name: str) -> Optional[str]:
    code = soundex(name)
    if code is None:
        return None
    first = code[0].lower()
    return _SAME_SOUND_INITIAL.get(first, first) + code[1:]


@lru_cache(maxsize=131_072)
def first_names_compatible(first_a: str, last_a: Optional[str], first_b: str, last_b: Optional[str]) -> bool:
    """Whether two people named so may be one person: their first names are equal, variants or
    nicknames of each other, a short form, an initial that fits, a typo, or alike in sound (names taken down by ear:
    Siobhan / Shivaun, Steven / Stephen); or the names were entered the other way round, or a lone name
    in the first-name field is the other's surname. Canonical names (``canonical_first_name``)."""
    if compare_first_name(first_a, first_b) != "different":
        return True
    short, long_ = sorted((first_a, first_b), key=len)
    if len(short) >= 3 and long_.startswith(short):
        return True  # a short form: Alex / Alejandro, Chris / Christopher
    sound = _sound(first_a)
    if sound is not None and sound == _sound(first_b):
        return True
    if last_a and last_b:
        return (compare_last_name(first_a, last_b) != "different"
                and compare_last_name(last_a, first_b) != "different")
    if last_a is None and last_b:
        return compare_last_name(first_a, last_b) != "different"
    if last_b is None and last_a:
        return compare_last_name(first_b, last_a) != "different"
    return False


def dates_compatible(a: str, b: str) -> bool:
    """Whether two ISO dates of birth may be one person's: equal, day and month swapped, one typo (one
    digit, or two adjacent digits transposed) apart, one of them 1 January of the other's year (only the
    year known), or at most 31 days apart (a mistyped day or month that crosses a month; no two siblings
    but twins are born that close, and twins share the date)."""
    level = date_of_birth_level(a, b)  # (``compare_date_of_birth``; it parses the dates only when it must)
    if level in ("exact", "swapped", "year", "month"):
        return True
    if level != "one_off":
        return False  # more than 31 days apart, or not a real date
    if _one_typo(a, b):
        return True
    try:  # one field differs: a day or month mistyped, within a month or not
        return abs((_date.fromisoformat(a) - _date.fromisoformat(b)).days) <= 31
    except ValueError:
        return False
