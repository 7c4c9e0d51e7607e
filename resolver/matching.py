"""Probabilistic matching on personal attributes: blocking, field comparisons, Fellegi-Sunter weights.

Deterministic identifiers (emails, phones, loyalty cards) leave some events unlinked: a caller who gives
only a name, a date of birth and an unknown phone; a store purchase with a name and a postcode. This
module scores how likely two attribute records describe the same person. It is pure and deterministic:
no clock, no unseeded randomness, no iteration over unordered sets whose order reaches a result. Only
``load_model`` and ``save_model`` touch files; the resolver never calls them.

The pieces:

* ``AttributeRecord``: first name, last name, date of birth (ISO), address, postcode, city, each
  canonicalized for matching on construction (accents folded, case folded, street abbreviations).
* ``blocking_keys(record)``: the sorted keys under which a record is indexed, so that candidates are found
  by key look-up instead of a scan: pairs of fields (surname Soundex, first-name nickname group, date of
  birth, postcode, city, address), so a typo or a gap in one field leaves others to find the record by.
  Dates in keys ignore a day/month swap.
* ``compare(a, b)``: one agreement level per field (``FIELD_LEVELS``, best first), or ``"null"`` when a
  side is missing.
* ``MatchModel``: m = P(level | same person) and u = P(level | different people) per field and level;
  ``weight(a, b)`` is the Fellegi-Sunter total ``sum(log2(m/u))`` over non-null fields, with the per-field
  contributions that explain it. Two thresholds: ``link_threshold`` (link automatically) and
  ``review_threshold`` (a possible match for review). ``default_model()`` ships sensible values.
* ``estimate_u`` (u from seeded random pairs) and ``estimate_m_em`` (EM for m and the match proportion
  over candidate pairs, u fixed).
* ``hard_conflict(a, b)``: dates of birth that clearly differ. A fuzzy score never overrides it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import unicodedata
from datetime import date as _date
from functools import lru_cache
from dataclasses import dataclass, fields as dc_fields
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler

from resolver.errors import ConfigError

MODEL_FORMAT = "idres-match-model"
MODEL_FORMAT_VERSION = 1
# Bump when the meaning of a comparison level changes: a model estimated under other definitions is refused.
COMPARISONS_VERSION = 4

NULL = "null"
FIELDS: tuple[str, ...] = ("first_name", "last_name", "date_of_birth", "postcode", "address", "city")
FIELD_INDEX: dict[str, int] = {f: i for i, f in enumerate(FIELDS)}  # position in a comparison vector
_POSTCODE_INDEX = FIELD_INDEX["postcode"]
# Fields that mostly agree because the postcode does (a postcode lies in one town): their u is kept twice,
# given the postcodes agree (exact or a typo: ``MatchModel.u``) and given they do not or one is unknown
# (``MatchModel.u_apart``), so that an agreeing postcode is not counted twice, and an agreeing town still
# counts when the postcode is missing or mistyped. (The address's u is always taken given an agreeing
# postcode: an address agreeing where the postcode does not must not weigh more than all three agreeing.)
DEPENDENT_FIELDS: tuple[str, ...] = ("city",)
POSTCODE_AGREES: frozenset[str] = frozenset({"exact", "typo"})
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

# --------------------------------------------------------------------------------------------------
# Canonical forms
# --------------------------------------------------------------------------------------------------
_NON_LETTER = re.compile(r"[^a-z ]+")
_NON_ALNUM_SPACE = re.compile(r"[^0-9a-z ]+")
_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_WS = re.compile(r"\s+")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

_STREET_WORDS = {
    "street": "st", "str": "st", "road": "rd", "avenue": "ave", "av": "ave", "lane": "ln", "drive": "dr",
    "court": "ct", "place": "pl", "square": "sq", "crescent": "cres", "close": "cl", "terrace": "ter",
    "gardens": "gdns", "garden": "gdn", "boulevard": "blvd", "highway": "hwy", "parkway": "pkwy",
    "apartment": "apt", "suite": "ste", "building": "bldg", "house": "ho", "mount": "mt", "north": "n",
    "south": "s", "east": "e", "west": "w", "saint": "st", "grove": "gr", "park": "pk",
}


def _fold(value: str) -> str:
    """Accents removed, case folded, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WS.sub(" ", stripped.casefold()).strip()


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


# --------------------------------------------------------------------------------------------------
# Nicknames and phonetic keys
# --------------------------------------------------------------------------------------------------
# Each group: the formal name first, then its common short forms. A name may sit in several groups.
# These are merged with the nicknames package's hand-curated list (English names; Apache-2.0).
_OWN_NICKNAME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("robert", "bob", "bobby", "rob", "robbie", "bert"),
    ("william", "bill", "billy", "will", "willy", "liam"),
    ("richard", "rick", "ricky", "rich", "dick"),
    ("elizabeth", "elisabeth", "liz", "lizzie", "beth", "betty", "eliza", "libby"),
    ("margaret", "maggie", "meg", "peggy", "marge", "greta"),
    ("james", "jim", "jimmy", "jamie"),
    ("john", "jon", "johnny", "jack"),
    ("jonathan", "jon", "jonny"),
    ("michael", "mike", "mick", "mickey", "mikey"),
    ("katherine", "catherine", "kathryn", "kate", "katie", "kathy", "cathy", "kat"),
    ("thomas", "tom", "tommy"),
    ("anthony", "tony"),
    ("christopher", "chris", "kit"),
    ("christine", "christina", "chris", "tina"),
    ("alexander", "alex", "sandy", "xander"),
    ("alexandra", "alex", "sandra", "sandy", "lexi"),
    ("edward", "ed", "eddie", "ted", "ned"),
    ("daniel", "dan", "danny"),
    ("david", "dave", "davy"),
    ("joseph", "joe", "joey"),
    ("samuel", "sam", "sammy"),
    ("samantha", "sam", "sammy"),
    ("benjamin", "ben", "benny"),
    ("nicholas", "nick", "nicky"),
    ("matthew", "matt"),
    ("andrew", "andy", "drew"),
    ("stephen", "steven", "steve"),
    ("patrick", "pat", "paddy"),
    ("patricia", "pat", "patty", "trish"),
    ("susan", "sue", "susie"),
    ("deborah", "debbie", "deb"),
    ("jennifer", "jen", "jenny"),
    ("rebecca", "becky", "becca"),
    ("victoria", "vicky", "tori"),
    ("charles", "charlie", "chuck"),
    ("henry", "harry", "hank"),
    ("peter", "pete"),
    ("timothy", "tim"),
    ("gregory", "greg"),
    ("jacob", "jake"),
    ("joshua", "josh"),
    ("zachary", "zach", "zack"),
    ("frederick", "fred", "freddie"),
    ("francis", "frank"),
    ("abigail", "abby"),
)


def _nickname_groups() -> tuple[tuple[tuple[str, ...], ...], str]:
    """Our groups merged with the ``nicknames`` package's ``names.csv`` (formal name -> nicknames),
    one group per formal name, sorted; and a digest of the package data (it is part of what decisions
    depend on, so the engine's state format includes it)."""
    from importlib.resources import files

    data = files("nicknames").joinpath("names.csv").read_bytes()
    merged: dict[str, set[str]] = {}
    for group in _OWN_NICKNAME_GROUPS:
        merged.setdefault(group[0], set()).update(group[1:])
    for line in data.decode("utf-8").splitlines()[1:]:
        parts = line.strip().split(",")
        if len(parts) != 3 or parts[1] != "has_nickname":
            continue
        formal, nick = canonical_name(parts[0]), canonical_name(parts[2])
        if formal and nick and formal != nick:
            merged.setdefault(formal, set()).add(nick)
    groups = tuple((formal, *sorted(nicks - {formal})) for formal, nicks in sorted(merged.items()))
    return groups, hashlib.sha256(data).hexdigest()[:12]


NICKNAME_GROUPS, NICKNAMES_DIGEST = _nickname_groups()

_NICK_INDEX: dict[str, tuple[int, ...]] = {}
for _gid, _group in enumerate(NICKNAME_GROUPS):
    for _name in _group:
        _NICK_INDEX[_name] = _NICK_INDEX.get(_name, ()) + (_gid,)


def nickname_equivalent(a: str, b: str) -> bool:
    """True when two canonical first names share a nickname group (Bob / Robert)."""
    ga = _NICK_INDEX.get(a)
    gb = _NICK_INDEX.get(b)
    return bool(ga and gb and set(ga).intersection(gb))


_SOUNDEX_CODES = {
    **dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"),
    "l": "4", **dict.fromkeys("mn", "5"), "r": "6",
}


def soundex(name: Optional[str]) -> Optional[str]:
    """American Soundex of a canonical name (``"smith"``, ``"smyth"`` -> ``"S530"``); spaces ignored."""
    if not name:
        return None
    letters = [c for c in name if "a" <= c <= "z"]
    if not letters:
        return None
    out = [letters[0].upper()]
    last = _SOUNDEX_CODES.get(letters[0], "")
    for c in letters[1:]:
        code = _SOUNDEX_CODES.get(c, "")
        if code and code != last:
            out.append(code)
            if len(out) == 4:
                break
        if c not in "hw":  # h and w do not separate equal codes; vowels do
            last = code
    return "".join(out).ljust(4, "0")


def _first_name_keys(first: str) -> list[str]:
    groups = _NICK_INDEX.get(first)
    if groups:
        return [NICKNAME_GROUPS[g][0] for g in groups]
    code = soundex(first)
    return [code] if code else []


def _dob_key(dob: str) -> str:
    """The date with day and month in numeric order, so a swap lands in the same block."""
    y, m, d = dob[:4], dob[5:7], dob[8:10]
    lo, hi = sorted((m, d))
    return f"{y}-{lo}-{hi}"


def blocking_keys(record: AttributeRecord) -> list[str]:
    """Index keys of a record, sorted and unique. Two records are candidates when they share a key.

    Each key pairs two fields, so that a typo or a gap in any one field leaves other keys to find the
    record by: surname + date of birth, first name + date of birth, surname + postcode, surname + city,
    first name + postcode, first name + city, date of birth + postcode, date of birth + city, address +
    postcode, first name + surname, and the first letters of both names (three, or two with the year
    of birth). Names are keyed by Soundex (first names also by nickname group), dates ignore a day/month
    swap."""
    keys: set[str] = set()
    first = record.first_name
    surname = soundex(record.last_name)
    first_sound = soundex(first)
    last = surname or first_sound  # one name alone may be a surname in the first-name field
    dob = _dob_key(record.date_of_birth) if record.date_of_birth else None
    postcode, city = record.postcode, record.city
    first_keys = _first_name_keys(first) if first else []
    if last:
        if dob:
            keys.add(f"ln_dob:{last}:{dob}")
        if postcode:
            keys.add(f"ln_pc:{last}:{postcode}")
        if city:
            keys.add(f"ln_city:{last}:{city}")
        # names entered the other way round: the first name's code also stands in for the surname's
        if first_sound and first_sound != last:
            if dob:
                keys.add(f"ln_dob:{first_sound}:{dob}")
            if postcode:
                keys.add(f"ln_pc:{first_sound}:{postcode}")
    if first_sound:  # (one key each: a name in many nickname groups would make many)
        if postcode:
            keys.add(f"fn_pc:{first_sound}:{postcode}")
        if city:
            keys.add(f"fn_city:{first_sound}:{city}")
    for fk in first_keys:
        if dob:
            keys.add(f"fn_dob:{fk}:{dob}")
        if surname and (dob or postcode or record.address or city):
            # the name alone, for records whose date or postcode is mistyped; only with something else
            # to compare on, and capped per key like every block (a common name fills it quickly)
            keys.add(f"fn_ln:{fk}:{surname}")
    if dob:
        if postcode:
            keys.add(f"dob_pc:{dob}:{postcode}")
        if city:
            keys.add(f"dob_city:{dob}:{city}")
    if first and record.last_name:
        # typos late in both names: their first letters (with the year of birth, for a mistyped day or
        # month; without it, for a record without a date or with a mistyped one)
        if record.date_of_birth:
            keys.add(f"fl2:{first[:2]}:{record.last_name[:2]}:{record.date_of_birth[:4]}")
        keys.add(f"fl3:{first[:3]}:{record.last_name[:3]}")
    if record.address and postcode:
        keys.add(f"addr_pc:{record.address}:{postcode}")
    return sorted(keys)


# --------------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------------
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
    if (ya != yb) + (ma != mb) + (da != db) == 1 or _one_typo(a, b):
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


def compare_address(a: Optional[str], b: Optional[str]) -> str:
    """exact; token-set ratio >= 90; >= 75; different. House numbers that disagree (neither address's
    numbers contain the other's) make the addresses different whatever the street."""
    if a is None or b is None:
        return NULL
    if a == b:
        return "exact"
    nums_a = {t for t in a.split() if any(c.isdigit() for c in t)}
    nums_b = {t for t in b.split() if any(c.isdigit() for c in t)}
    if nums_a and nums_b and not (nums_a <= nums_b or nums_b <= nums_a):
        return "different"
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
    first = compare_first_name(a.first_name, b.first_name)
    last = compare_last_name(a.last_name, b.last_name)
    if first == "exact" and last == "exact":
        return first, last
    if a.first_name and a.last_name and b.first_name and b.last_name:
        # (symmetric in a and b: the better crossed level is credited to the first name)
        cross = sorted((compare_last_name(a.first_name, b.last_name), compare_last_name(a.last_name, b.first_name)),
                       key=_LEVEL_RANK.__getitem__)
        if _LEVEL_RANK[cross[0]] + _LEVEL_RANK[cross[1]] < _LEVEL_RANK[first] + _LEVEL_RANK[last]:
            return cross[0], cross[1]
    elif last == NULL and first != NULL and first != "exact":
        # one name given, in the first-name field, and it is the other record's surname
        lone, other = (a, b) if a.last_name is None else (b, a)
        if lone.last_name is None and other.last_name:
            moved = compare_last_name(lone.first_name, other.last_name)
            if _LEVEL_RANK[moved] < _LEVEL_RANK[first]:
                return NULL, moved
    return first, last


def compare(a: AttributeRecord, b: AttributeRecord) -> tuple[str, ...]:
    """The comparison vector: one agreement level per field of ``FIELDS``, in that order."""
    return (
        *_names(a, b),
        compare_date_of_birth(a.date_of_birth, b.date_of_birth),
        compare_postcode(a.postcode, b.postcode),
        compare_address(a.address, b.address),
        compare_city(a.city, b.city),
    )


def compare_fields(a: AttributeRecord, b: AttributeRecord) -> dict[str, str]:
    """``compare`` as a dict field -> level."""
    return dict(zip(FIELDS, compare(a, b)))


def hard_conflict(a: AttributeRecord, b: AttributeRecord) -> Optional[str]:
    """Why two records cannot be one person whatever their other fields say, or None.

    Dates of birth conflict when both are known and not ``dates_compatible``.
    """
    da, db = a.date_of_birth, b.date_of_birth
    if da is None or db is None or dates_compatible(da, db):
        return None
    lo, hi = sorted((da, db))
    return f"dates of birth differ: {lo} vs {hi}"


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
    level = compare_date_of_birth(a, b)  # (it parses the dates only when it must: at most once)
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


# --------------------------------------------------------------------------------------------------
# Term frequencies: agreeing on a rare name is stronger evidence than agreeing on a common one
# --------------------------------------------------------------------------------------------------
# Fields whose exact agreement is weighed by how common the agreed value is.
FREQUENCY_FIELDS: tuple[str, ...] = ("first_name", "last_name", "city")
# Pseudo-records at the model's u: while few records are known the adjustment stays near zero.
FREQUENCY_PSEUDO_RECORDS = 1000.0
# The largest adjustment either way, in bits (a value seen once is not proof of identity).
MAX_FREQUENCY_ADJUSTMENT = 6.0


def frequency_adjustment(model: "MatchModel", field: str, count: int, total: int,
                         postcode_agrees: bool = False) -> float:
    """The bits to add to an exact agreement on a value that ``count`` of ``total`` known records hold:
    ``log2(u / u_value)``, where u is the model's chance that two random records agree exactly on the
    field and ``u_value`` the value's share among known records, smoothed towards u by
    ``FREQUENCY_PSEUDO_RECORDS`` and bounded by ``MAX_FREQUENCY_ADJUSTMENT`` (Splink's term-frequency
    adjustment, from counts the resolver keeps as records arrive). A town agreeing where the postcodes
    agree is implied by them: no adjustment then."""
    if field in DEPENDENT_FIELDS:
        if postcode_agrees:
            return 0.0
        u = model.u_apart[field]["exact"]
    else:
        u = model.u[field]["exact"]
    u_value = (count + FREQUENCY_PSEUDO_RECORDS * u) / (total + FREQUENCY_PSEUDO_RECORDS)
    bits = math.log2(u / u_value)
    return max(-MAX_FREQUENCY_ADJUSTMENT, min(MAX_FREQUENCY_ADJUSTMENT, bits))


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
Table = dict[str, dict[str, float]]

_DEFAULT_M: Table = {
    "first_name": {"exact": 0.80, "nickname": 0.05, "jw_92": 0.07, "jw_80": 0.04, "different": 0.04},
    "last_name": {"exact": 0.85, "jw_92": 0.07, "jw_80": 0.03, "different": 0.05},
    "date_of_birth": {"exact": 0.89, "swapped": 0.02, "one_off": 0.05, "year": 0.01, "month": 0.005,
                      "decade": 0.01, "different": 0.015},
    "postcode": {"exact": 0.82, "typo": 0.04, "prefix": 0.06, "different": 0.08},
    "address": {"exact": 0.70, "tsr_90": 0.12, "tsr_75": 0.06, "different": 0.12},
    "city": {"exact": 0.88, "jw_92": 0.04, "different": 0.08},
}
# u of address and city are taken given that the postcode agrees (about one address in twenty within a
# postcode; the city then mostly agrees too): the fields are dependent, and unconditional u values would
# count one agreement two or three times. (``train_model`` measures them among pairs in one postcode.)
_DEFAULT_U: Table = {
    "first_name": {"exact": 0.01, "nickname": 0.002, "jw_92": 0.004, "jw_80": 0.03, "different": 0.954},
    "last_name": {"exact": 0.003, "jw_92": 0.002, "jw_80": 0.02, "different": 0.975},
    "date_of_birth": {"exact": 0.0001, "swapped": 0.0001, "one_off": 0.005, "year": 0.001, "month": 0.002,
                      "decade": 0.12, "different": 0.8718},
    "postcode": {"exact": 0.002, "typo": 0.002, "prefix": 0.02, "different": 0.976},
    "address": {"exact": 0.05, "tsr_90": 0.02, "tsr_75": 0.03, "different": 0.90},
    "city": {"exact": 0.15, "jw_92": 0.01, "different": 0.84},
}
# u of the city among pairs whose postcodes do not agree (or are unknown): as for any two records.
_DEFAULT_U_APART: Table = {
    "city": {"exact": 0.02, "jw_92": 0.003, "different": 0.977},
}
DEFAULT_LINK_THRESHOLD = 24.0
DEFAULT_REVIEW_THRESHOLD = 10.0
DEFAULT_PRIOR = 0.01
_EPS = 1e-9


class MatchModel:
    """Fellegi-Sunter parameters: m and u per field and level, the match proportion among candidate pairs
    (``prior``), and the two decision thresholds on the total log2 weight. Immutable by convention: the
    ``with_*`` methods and the estimators return new models."""

    __slots__ = ("version", "m", "u", "u_apart", "prior", "link_threshold", "review_threshold", "_weights",
                 "_vector", "_vector_apart")

    def __init__(self, m: Mapping[str, Mapping[str, float]], u: Mapping[str, Mapping[str, float]], *,
                 u_apart: Optional[Mapping[str, Mapping[str, float]]] = None,
                 version: str = "custom", prior: float = DEFAULT_PRIOR,
                 link_threshold: float = DEFAULT_LINK_THRESHOLD,
                 review_threshold: float = DEFAULT_REVIEW_THRESHOLD):
        self.m: Table = _table(m, "m")
        self.u: Table = _table(u, "u")
        # (without u_apart, the fields weigh the same whatever the postcode does)
        self.u_apart: Table = _table(u_apart if u_apart is not None else self.u, "u_apart", DEPENDENT_FIELDS)
        if not (0.0 < prior < 1.0):
            raise ConfigError(f"match model: prior must be in (0, 1), not {prior!r}")
        if review_threshold > link_threshold:
            raise ConfigError("match model: review_threshold must not exceed link_threshold")
        self.version = str(version)
        self.prior = float(prior)
        self.link_threshold = float(link_threshold)
        self.review_threshold = float(review_threshold)
        self._weights: dict[str, dict[str, float]] = {
            f: {NULL: 0.0, **{lv: math.log2(self.m[f][lv] / self.u[f][lv]) for lv in FIELD_LEVELS[f]}}
            for f in FIELDS
        }
        self._vector = tuple(self._weights[f] for f in FIELDS)
        self._vector_apart = tuple(
            {NULL: 0.0, **{lv: math.log2(self.m[f][lv] / self.u_apart[f][lv]) for lv in FIELD_LEVELS[f]}}
            if f in DEPENDENT_FIELDS else self._weights[f] for f in FIELDS)

    # -- scoring -----------------------------------------------------------------------------------
    def level_weight(self, field: str, level: str, postcode_agrees: bool = True) -> float:
        """log2(m/u) of one field's level; 0 for ``null``. The city weighs more when the postcodes do not
        agree (``postcode_agrees`` False): then its agreement is not implied by the postcode's."""
        if postcode_agrees or field not in DEPENDENT_FIELDS:
            return self._weights[field][level]
        return self._vector_apart[FIELD_INDEX[field]][level]

    def weight_of(self, levels: Sequence[str]) -> tuple[float, dict[str, float]]:
        """Total and per-field log2 weights of a comparison vector (``compare`` output)."""
        vector = self._vector if levels[_POSTCODE_INDEX] in POSTCODE_AGREES else self._vector_apart
        parts = {f: w[lv] for f, w, lv in zip(FIELDS, vector, levels)}
        total = 0.0
        for value in parts.values():  # fixed field order: the float sum is reproducible
            total += value
        return total, parts

    def weight(self, a: AttributeRecord, b: AttributeRecord) -> tuple[float, dict[str, float]]:
        """Fellegi-Sunter match weight of two records and each field's contribution."""
        return self.weight_of(compare(a, b))

    def match_probability(self, total_weight: float) -> float:
        """P(same person | weight) for a candidate pair, from the prior match proportion."""
        log_odds = total_weight + math.log2(self.prior / (1.0 - self.prior))
        if log_odds >= 0:
            return 1.0 / (1.0 + 2.0 ** -log_odds)
        z = 2.0 ** log_odds
        return z / (1.0 + z)

    def classify(self, total_weight: float) -> str:
        """``"link"`` at or above the link threshold, ``"review"`` at or above the review threshold,
        else ``"non_match"``."""
        if total_weight >= self.link_threshold:
            return "link"
        if total_weight >= self.review_threshold:
            return "review"
        return "non_match"

    def is_monotone(self) -> bool:
        """True when, in every field, a better level never weighs less than a worse one (the town: where
        the postcodes do not agree; where they agree its weights are near zero)."""
        for f, w in zip(FIELDS, self._vector_apart):
            ws = [w[lv] for lv in FIELD_LEVELS[f]]
            if any(ws[i] < ws[i + 1] - 1e-9 for i in range(len(ws) - 1)):  # (pooled levels tie, to rounding)
                return False
        return True

    # -- copies ------------------------------------------------------------------------------------
    def with_params(self, *, m: Optional[Mapping] = None, u: Optional[Mapping] = None,
                    u_apart: Optional[Mapping] = None,
                    prior: Optional[float] = None, version: Optional[str] = None,
                    link_threshold: Optional[float] = None,
                    review_threshold: Optional[float] = None) -> "MatchModel":
        return MatchModel(
            self.m if m is None else m, self.u if u is None else u,
            u_apart=self.u_apart if u_apart is None else u_apart,
            version=self.version if version is None else version,
            prior=self.prior if prior is None else prior,
            link_threshold=self.link_threshold if link_threshold is None else link_threshold,
            review_threshold=self.review_threshold if review_threshold is None else review_threshold,
        )

    # -- serialization -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "comparisons_version": COMPARISONS_VERSION,
            "version": self.version,
            "prior": self.prior,
            "link_threshold": self.link_threshold,
            "review_threshold": self.review_threshold,
            "fields": {f: {lv: {"m": self.m[f][lv], "u": self.u[f][lv],
                                **({"u_apart": self.u_apart[f][lv]} if f in DEPENDENT_FIELDS else {})}
                           for lv in FIELD_LEVELS[f]}
                       for f in FIELDS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "match model") -> "MatchModel":
        if not isinstance(data, Mapping) or data.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{where}: not an idres match model (format must be {MODEL_FORMAT!r})")
        if data.get("format_version") != MODEL_FORMAT_VERSION:
            raise ConfigError(f"{where}: format_version {data.get('format_version')!r} is not supported "
                              f"(expected {MODEL_FORMAT_VERSION})")
        if data.get("comparisons_version") != COMPARISONS_VERSION:
            raise ConfigError(f"{where}: estimated for comparisons version {data.get('comparisons_version')!r},"
                              f" this build compares with version {COMPARISONS_VERSION}; re-estimate it")
        try:
            spec = data["fields"]
            m = {f: {lv: spec[f][lv]["m"] for lv in FIELD_LEVELS[f]} for f in FIELDS}
            u = {f: {lv: spec[f][lv]["u"] for lv in FIELD_LEVELS[f]} for f in FIELDS}
            u_apart = {f: {lv: spec[f][lv]["u_apart"] for lv in FIELD_LEVELS[f]} for f in DEPENDENT_FIELDS}
            return cls(m, u, u_apart=u_apart, version=data["version"], prior=float(data["prior"]),
                       link_threshold=float(data["link_threshold"]),
                       review_threshold=float(data["review_threshold"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: missing or malformed entry ({type(exc).__name__}: {exc}); "
                              f"write the model again with `idres train`") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "match model") -> "MatchModel":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON: {exc}") from None
        return cls.from_dict(data, where)

    def fingerprint(self) -> str:
        """A short hash of the parameters, to record with decisions made under this model."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatchModel) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"MatchModel(version={self.version!r}, prior={self.prior!r}, fingerprint={self.fingerprint()})"


def _table(t: Mapping[str, Mapping[str, float]], name: str, fields: Sequence[str] = FIELDS) -> Table:
    out: Table = {}
    for f in fields:
        if f not in t:
            raise ConfigError(f"match model: {name} has no entry for field {f!r}")
        row = {}
        for lv in FIELD_LEVELS[f]:
            value = t[f].get(lv) if isinstance(t[f], Mapping) else None
            if not isinstance(value, (int, float)) or not (0.0 < value <= 1.0):
                raise ConfigError(f"match model: {name}[{f}][{lv}] must be a probability in (0, 1], "
                                  f"not {value!r}")
            row[lv] = float(value)
        total = sum(row.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"match model: {name}[{f}] sums to {total!r}, not 1")
        extra = set(t[f]) - set(FIELD_LEVELS[f])
        if extra:
            raise ConfigError(f"match model: {name}[{f}] has unknown level(s) {sorted(extra)}")
        out[f] = row
    return out


def default_model() -> MatchModel:
    """The shipped parameters: to use until there is data to estimate from."""
    return MatchModel(_DEFAULT_M, _DEFAULT_U, u_apart=_DEFAULT_U_APART, version="default-2")


# --------------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------------
def _normalized_counts(counts: Mapping[str, float], levels: tuple[str, ...], pseudo: float) -> dict[str, float]:
    total = sum(counts.get(lv, 0.0) for lv in levels) + pseudo * len(levels)
    return {lv: (counts.get(lv, 0.0) + pseudo) / total for lv in levels}


def estimate_u(records: Sequence[AttributeRecord], pairs_sample: int, seed: int,
               model: Optional[MatchModel] = None, pseudo_count: float = 0.5,
               version: Optional[str] = None) -> MatchModel:
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
    rng = random.Random(seed)
    counts: list[dict[str, float]] = [{} for _ in FIELDS]
    dependent = tuple(f in DEPENDENT_FIELDS for f in FIELDS)
    for _ in range(pairs_sample):
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        if j >= i:
            j += 1
        levels = compare(records[i], records[j])
        apart = levels[_POSTCODE_INDEX] not in POSTCODE_AGREES
        for k, level in enumerate(levels):
            if level != NULL and (apart or not dependent[k]):
                counts[k][level] = counts[k].get(level, 0.0) + 1.0
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
    fixed = set(fixed_fields)
    mask = tuple(f in fixed for f in FIELDS)
    # a vector and whether its postcodes agree (which u the address and city are weighed with)
    groups: dict[tuple[tuple[str, ...], bool], int] = {}
    for a, b in candidate_pairs:
        key = compare(a, b)
        apart = key[_POSTCODE_INDEX] not in POSTCODE_AGREES
        if fixed:
            key = tuple(NULL if skip else lv for skip, lv in zip(mask, key))
        groups[(key, apart)] = groups.get((key, apart), 0) + 1
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


# --------------------------------------------------------------------------------------------------
# Training: u from random pairs, m by EM over blocked candidate pairs
# --------------------------------------------------------------------------------------------------
# Blocking rules: each key prefix and the fields its records agree on by construction.
BLOCKING_RULES: dict[str, tuple[str, ...]] = {
    "ln_dob": ("last_name", "date_of_birth"),
    "fn_dob": ("first_name", "date_of_birth"),
    "ln_pc": ("last_name", "postcode"),
    "ln_city": ("last_name", "city"),
    "fn_pc": ("first_name", "postcode"),
    "fn_city": ("first_name", "city"),
    "dob_pc": ("date_of_birth", "postcode"),
    "dob_city": ("date_of_birth", "city"),
    "addr_pc": ("address", "postcode"),
    "fn_ln": ("first_name", "last_name"),
    "fl2": ("first_name", "last_name"),
    "fl3": ("first_name", "last_name"),
}


def candidate_pairs(records: Sequence[AttributeRecord], max_block_size: int,
                    rule: Optional[str] = None) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of records sharing a blocking key (of ``rule`` only, if given),
    as the engine would find them: a key holds at most ``max_block_size`` records (the first ones).
    Sorted, without repeats."""
    blocks: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        for key in blocking_keys(rec):
            if rule is not None and not key.startswith(rule + ":"):
                continue
            block = blocks.setdefault(key, [])
            if len(block) < max_block_size:
                block.append(i)
    pairs: set[tuple[int, int]] = set()
    for block in blocks.values():
        for x in range(len(block)):
            for y in range(x + 1, len(block)):
                pairs.add((block[x], block[y]))
    return sorted(pairs)


def _conditional_u(records: Sequence[AttributeRecord], pairs_sample: int, seed: int,
                   model: MatchModel) -> MatchModel:
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
    rng = random.Random(seed + 1)
    cumulative: list[int] = []
    running = 0
    for g in usable:
        running += len(g) * (len(g) - 1) // 2
        cumulative.append(running)
    import bisect

    counts = {"address": {}, "city": {}}  # type: dict[str, dict[str, float]]
    for _ in range(pairs_sample):
        g = usable[bisect.bisect_right(cumulative, rng.randrange(total_pairs))]
        i = rng.randrange(len(g))
        j = rng.randrange(len(g) - 1)
        if j >= i:
            j += 1
        a, b = records[g[i]], records[g[j]]
        for f, level in (("address", compare_address(a.address, b.address)), ("city", compare_city(a.city, b.city))):
            if level != NULL:
                counts[f][level] = counts[f].get(level, 0.0) + 1.0
    u = {f: dict(model.u[f]) for f in FIELDS}
    for f, c in counts.items():
        if sum(c.values()) >= 100:
            u[f] = _normalized_counts(c, FIELD_LEVELS[f], 0.5)
    return model.with_params(u=u)


def train_model(records: Sequence[AttributeRecord], seed: int = 0, pairs_sample: int = 1_000_000,
                max_block_size: int = 64, em_iterations: int = 25, start: Optional[MatchModel] = None,
                version: Optional[str] = None, link_probability: float = 0.95,
                review_probability: float = 0.5) -> tuple[MatchModel, dict[str, Any]]:
    """A model estimated from distinct attribute records, the way Splink trains one.

    1. u from seeded random pairs (address and city among pairs in one postcode: they depend on it).
    2. m by EM once per blocking rule over the pairs that rule finds, leaving out the fields the rule
       blocks on; each field's m is the mean over the rules that estimated it.
    3. The match share among all candidate pairs (EM on the prior alone), and from it the chance that two
       random records match. The thresholds are the weights at which a pair's match probability reaches
       ``link_probability`` and ``review_probability`` for a data set of this size. (More records make
       any one pair less likely to match, so re-train as the customer base grows severalfold.)
    """
    base = start if start is not None else default_model()
    model = estimate_u(records, pairs_sample, seed, base)
    model = _conditional_u(records, pairs_sample, seed, model)
    sums: dict[str, dict[str, float]] = {f: {} for f in FIELDS}
    estimated: dict[str, int] = {f: 0 for f in FIELDS}
    per_rule: dict[str, int] = {}
    for rule, blocked in BLOCKING_RULES.items():
        pairs = candidate_pairs(records, max_block_size, rule)
        per_rule[rule] = len(pairs)
        if len(pairs) < 10:
            continue
        fitted = estimate_m_em(((records[i], records[j]) for i, j in pairs), model, iterations=em_iterations,
                               prior=base.prior, fixed_fields=blocked)
        for f in FIELDS:
            if f not in blocked:
                estimated[f] += 1
                for lv, v in fitted.m[f].items():
                    sums[f][lv] = sums[f].get(lv, 0.0) + v
    m = {f: ({lv: v / estimated[f] for lv, v in sums[f].items()} if estimated[f] else dict(model.m[f]))
         for f in FIELDS}
    model = model.with_params(m=m)
    # the match share among all candidate pairs, m and u fixed
    all_pairs = candidate_pairs(records, max_block_size)
    groups: dict[tuple[str, ...], int] = {}
    for i, j in all_pairs:
        key = compare(records[i], records[j])
        groups[key] = groups.get(key, 0) + 1
    weights = [(model.weight_of(vec)[0], count) for vec, count in groups.items()]
    lam = base.prior
    for _ in range(100):
        logit = math.log2(lam / (1.0 - lam))
        new = sum(count / (1.0 + 2.0 ** -(w + logit)) for w, count in weights) / max(len(all_pairs), 1)
        new = min(max(new, 1e-6), 1.0 - 1e-6)
        if abs(new - lam) < 1e-9:
            break
        lam = new
    n = len(records)
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
