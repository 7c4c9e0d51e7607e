"""Canonical forms: names, addresses, postcodes and dates as they are compared, and the attribute record.

``AttributeRecord`` holds first name, last name, date of birth (ISO), address, postcode and city, each
canonicalized for matching on construction (accents folded, case folded, street abbreviations).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields as dc_fields
from functools import lru_cache
from operator import attrgetter
from typing import Any, Mapping, Optional

_NON_LETTER = re.compile(r"[^a-z ]+")
_NON_ALNUM_SPACE = re.compile(r"[^0-9a-z ]+")
_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_WS = re.compile(r"\s+")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

_CACHED = 1 << 15  # canonical names and postcodes kept (they repeat: a customer base has few thousand of each)

_STREET_WORDS = {
    "street": "st", "str": "st", "road": "rd", "avenue": "ave", "av": "ave", "lane": "ln", "drive": "dr",
    "court": "ct", "place": "pl", "square": "sq", "crescent": "cres", "close": "cl", "terrace": "ter",
    "gardens": "gdns", "garden": "gdn", "boulevard": "blvd", "highway": "hwy", "parkway": "pkwy",
    "apartment": "apt", "suite": "ste", "building": "bldg", "house": "ho", "mount": "mt", "north": "n",
    "south": "s", "east": "e", "west": "w", "saint": "st", "grove": "gr", "park": "pk",
}


def _fold(value: str) -> str:
    """Accents removed, case folded, whitespace collapsed."""
    if value.isascii():  # (nothing to decompose, no combining marks, and casefold is lower: ``_fold_any``'s)
        return _WS.sub(" ", value.lower()).strip()
    return _fold_any(value)


def _fold_any(value: str) -> str:
    """``_fold`` of any text."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WS.sub(" ", stripped.casefold()).strip()


@lru_cache(maxsize=_CACHED)
def canonical_name(value: Optional[str]) -> Optional[str]:
    """``"O'Brien-Smith"`` -> ``"obrien smith"``: letters only, hyphens become spaces."""
    if value is None:
        return None
    folded = _fold(value).replace("'", "").replace("\u2019", "").replace("-", " ")
    out = _WS.sub(" ", _NON_LETTER.sub(" ", folded)).strip()
    return out or None


# Words that address a person rather than name them: a first name that is only a title is unknown.
TITLES = frozenset({
    "mr", "mrs", "ms", "miss", "mx", "mstr", "master", "dr", "doctor", "prof", "professor", "sir", "dame",
    "lady", "lord", "rev", "revd", "reverend", "fr", "father", "sr", "sister", "madam", "madame", "mme",
    "mlle", "capt", "captain", "col", "colonel", "major", "gen", "general", "hon", "rt",
})


@lru_cache(maxsize=_CACHED)
def canonical_first_name(value: Optional[str]) -> Optional[str]:
    """``canonical_name`` without leading titles: ``"Mrs Ann"`` -> ``"ann"``, ``"Sir"`` -> None."""
    name = canonical_name(value)
    if name is None:
        return None
    tokens = name.split()
    while tokens and tokens[0] in TITLES:
        tokens.pop(0)
    return " ".join(tokens) or None


def canonical_address(value: Optional[str]) -> Optional[str]:
    """``"12, High Street"`` -> ``"12 high st"``: punctuation dropped, street words abbreviated."""
    if value is None:
        return None
    tokens = _NON_ALNUM_SPACE.sub(" ", _fold(value).replace("'", "")).split()
    out = " ".join(_STREET_WORDS.get(t, t) for t in tokens)
    return out or None


@lru_cache(maxsize=_CACHED)
def canonical_postcode(value: Optional[str]) -> Optional[str]:
    """``"sw1a 1aa"`` -> ``"SW1A1AA"``."""
    if value is None:
        return None
    out = _NON_ALNUM.sub("", _fold(value).upper())
    return out or None


def canonical_date(value: Optional[str]) -> Optional[str]:
    """An ISO date ``YYYY-MM-DD`` with a plausible month and day, else None."""
    if value is None:
        return None
    m = _ISO.match(value.strip()[:10])
    if not m or not (1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31):
        return None
    return m.group(0)


@dataclass(frozen=True, slots=True)
class AttributeRecord:
    """Personal attributes of one event or profile, canonicalized for matching on construction.

    Any field may be None (unknown). Construction is idempotent: canonical values stay as they are.
    """

    first_name: Optional[str] = None
    last_name: Optional[str] = None
    date_of_birth: Optional[str] = None
    address: Optional[str] = None
    postcode: Optional[str] = None
    city: Optional[str] = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "first_name", canonical_first_name(self.first_name))
        set_(self, "last_name", canonical_name(self.last_name))
        set_(self, "date_of_birth", canonical_date(self.date_of_birth))
        set_(self, "address", canonical_address(self.address))
        set_(self, "postcode", canonical_postcode(self.postcode))
        set_(self, "city", canonical_name(self.city))

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> "AttributeRecord":
        """From ``Normalizer.attributes`` output (other keys are ignored)."""
        return cls(**{k: (str(attributes[k]) if attributes.get(k) is not None else None) for k in RECORD_FIELDS})


# The record's fields in constructor order (``AttributeRecord(*values)``).
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dc_fields(AttributeRecord))

_record_values = attrgetter(*RECORD_FIELDS)
_record_setters = tuple(AttributeRecord.__dict__[name].__set__ for name in RECORD_FIELDS)  # (the slots, bypassing frozen)


class _CanonicalRecord:
    """Makes a record of values that are canonical already (a pickled record read back), without
    canonicalizing them again: ``_CanonicalRecord(*values)`` is an ``AttributeRecord``. (A class, not a
    function: a checkpoint reader may name only classes, whose attributes it restores after reading.)"""

    __slots__ = ()

    def __new__(cls, *values: Optional[str]) -> AttributeRecord:  # type: ignore[misc]
        record = object.__new__(AttributeRecord)
        for put, value in zip(_record_setters, values):
            put(record, value)
        return record


def _reduce_record(record: AttributeRecord) -> tuple[Any, tuple[Optional[str], ...]]:
    # (pickled as its values for ``_CanonicalRecord``: the default pickles and reads back the slots' state
    # in Python, with ``dataclasses.fields`` each way; records cross between shards in every part and fill
    # checkpoints. Pickles of the default's form still read.)
    return _CanonicalRecord, _record_values(record)


AttributeRecord.__reduce__ = _reduce_record  # type: ignore[method-assign,assignment]
