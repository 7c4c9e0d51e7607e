"""Normalization of identifiers and attributes: pure functions of the value and the configuration.

``normalize_identifier`` answers ``(value, None)`` for a usable value or ``(None, reason)`` for one that
must not link: invalid (cannot be a phone number) or a placeholder (``test@test.com``, ``0000000000``).
Phone parsing is memoized: a pure function, so the cache changes speed, never results.
"""

from __future__ import annotations

import gc
import re
import sys
import unicodedata
from datetime import date
from functools import lru_cache
from typing import Optional

import phonenumbers

from resolver.config import IdentifierRule, ResolverConfig
from resolver.errors import without_tracebacks
from resolver.ids import RECORD_TYPE, node_key, type_name_problem

GENERIC_PLACEHOLDERS = frozenset(
    {"", "null", "none", "unknown", "n/a", "na", "-", "--", "0", "undefined", "nan", "test", "x", "xxx", "?"}
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WS = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")
MAX_READINGS = 4  # times a value is read as an identifier at most, to find the value that stays (``identifier``)
MAX_IDENTIFIER_LENGTH = 1024  # characters of a value as given (an e-mail address has at most 254)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # (tab, line feed and return aside: whitespace)
# marks that show nothing (a soft hyphen, zero-width spaces and joiners, direction marks, a byte-order mark): a value
# copied with one is the same value
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_type_problem = lru_cache(maxsize=4096)(type_name_problem)
_DIGITS = re.compile(r"\D")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_SLASH_DATE = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_YEAR = re.compile(r"^(1[89]\d{2}|20\d{2})$")
_DAY_MONTH_NAME = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?[ \-/.]*([^\W\d_]+)\.?,?[ \-/.]*(\d{4})$")
_MONTH_NAME_DAY = re.compile(r"^([^\W\d_]+)\.?[ \-/.]*(\d{1,2})(?:st|nd|rd|th)?,?[ \-/.]*(\d{4})$")
# Month names and their usual abbreviations: English, French, German, Spanish, Italian, Dutch,
# Portuguese (the first letters are enough where they are unambiguous).
_MONTHS = {name: i for i, names in enumerate((
    "january jan janvier janv januar janner jänner enero ene gennaio gen januari janeiro",
    "february feb feb. fevrier février fevr févr februar febrero febbraio februari fevereiro fev",
    "march mar mars marz märz maerz marzo maart marco março",
    "april apr avril avr abril aprile",
    "may mai mayo maggio mei maio",
    "june jun juin juni junio giugno junho",
    "july jul juillet juil juli julio luglio lug julho",
    "august aug aout août agosto ago augustus",
    "september sep sept septembre septiembre settembre set setembro",
    "october oct octobre oktober okt octubre ottobre ott outubro out",
    "november nov novembre noviembre novembro",
    "december dec decembre décembre dezember dez diciembre dic dicembre december dezembro",
), start=1) for name in names.split()}
TWO_DIGIT_YEAR_PIVOT = 30  # 05/03/29 is 2029, 05/03/30 is 1930: a fixed rule, never the clock
_SEQUENCES = ("0123456789", "1234567890", "9876543210", "0987654321")
_LETTERS_THEN_DIGITS = re.compile(r"^[A-Z]{1,6}(\d{4,})$")  # LY69905496: a programme's prefix, then the number

Result = tuple[Optional[str], Optional[str]]


def _dns_label(label: str) -> str:
    """A domain's label as its letters: ``xn--strae-oqa`` is ``straße`` (punycode, label by label: the ``idna``
    codec's IDNA 2003 refuses ß and a few other letters)."""
    if not label.startswith("xn--"):
        return label
    try:
        letters = unicodedata.normalize("NFC", label[4:].encode("ascii").decode("punycode").lower())
        # (only a label that is the DNS form of the letters it stands for, as they are read: "xn--gmail-" decodes
        # to "gmail", "xn--mller-2pa" to "mÜller", which would have made anyone's address at them another's)
        if not letters or letters.isascii() or letters.encode("punycode").decode("ascii") != label[4:]:
            return label
        return letters
    except (UnicodeError, ValueError):
        return label


class Normalizer:
    """Normalizes identifiers and attributes under one ``ResolverConfig``."""

    def __init__(self, config: ResolverConfig):
        self.config = config
        self._dotless = frozenset(config.dotless_email_domains)
        self._email_locals = frozenset(config.placeholder_email_locals)
        self._email_domains = frozenset(config.placeholder_email_domains)
        self.learned_regions: tuple[str, ...] = ()  # (``resolver.formats``)
        self._blocked: dict[str, frozenset[str]] = {}
        for id_type, rule in config.identifier_types.items():
            self._blocked[id_type] = self._normalized_blocklist(id_type, rule)

    def learn_regions(self, regions: tuple[str, ...]) -> None:
        """Countries whose national numbers are read as theirs when they cannot be the default region's
        (``resolver.formats``; learned from the data, in the decision log)."""
        self.learned_regions = regions

    def reads_by_learned(self, id_type: str, raw: object) -> bool:
        """Whether ``identifier(id_type, raw)`` may read ``raw`` otherwise with other formats learned
        (``resolver.formats``): a phone number not written in international form. A decision keeps such a
        value as written, for the identifier to be read again as it was written, with the formats known at
        its place (``resolver.restate``)."""
        if not isinstance(raw, str) or self.config.rule(id_type).kind != "phone":
            return False
        value = raw.strip()
        return not (value.startswith("+") and self._phone(raw)[0] == "+" + _DIGITS.sub("", value))

    def _normalized_blocklist(self, id_type: str, rule: IdentifierRule) -> frozenset[str]:
        out = set()
        for raw in rule.blocked_values:
            value, _ = self._by_kind(rule, raw)
            out.add(value if value is not None else raw.strip().lower())
        return frozenset(out)

    # -- identifiers -------------------------------------------------------------------------------
    def node_key(self, id_type: str, raw: object) -> Result:
        """A person's ``TYPE=VALUE`` as the node key events give that identifier, or None and why; an
        anonymous event's record is named by its event ID, as given (``record=EVENT_ID``)."""
        if id_type == RECORD_TYPE:
            return node_key(id_type, str(raw)), None
        value, why = self.identifier(id_type, raw)
        return (node_key(id_type, value), None) if value is not None else (None, why or "not a usable value")

    def reads_as(self, id_type: str, raw: object, regions: tuple[str, ...] = ()) -> Optional[str]:
        """The node key ``raw`` gives (``node_key``), or, for a phone number, the one it would give were the
        countries ``regions`` learned too: a national number an event gave that cannot be read yet is its
        country's (an erasure finds it with the country of the number erased, learned or not)."""
        key, _ = self.node_key(id_type, raw)
        if key is not None or not regions or not isinstance(raw, str) or self.config.rule(id_type).kind != "phone" \
                or raw.strip().lower() in GENERIC_PLACEHOLDERS:
            return key
        value, _ = _phone_read(raw, self.config.default_region,
                               tuple(dict.fromkeys((*self.learned_regions, *regions))))
        return node_key(id_type, value) if value is not None else None

    def identifier(self, id_type: str, raw: object) -> Result:
        """The value ``raw`` gives as an identifier of ``id_type``, or None and why not. Normalizing a value this
        gives gives it again (a restatement decides events again from the values the log holds): a value one
        reading changes is read again until it stays (``"N.A."`` reads ``NA``, a placeholder; a capital and a
        combining mark lower to a letter that composes), and one that never stays is refused."""
        if raw is None:
            return None, "empty"
        if not isinstance(raw, str):
            raw = str(raw)
        value, reason = self._identifier_once(id_type, raw)
        if value is None or value == raw:
            return value, reason
        for _ in range(MAX_READINGS - 1):
            again, reason = self._identifier_once(id_type, value)
            if again is None or again == value:
                return again, reason
            value = again
        return None, "a value that changes each time it is read"

    def _identifier_once(self, id_type: str, raw: str) -> Result:
        problem = _type_problem(id_type)
        if problem is not None:
            return None, problem
        rule = self.config.rule(id_type)
        if not raw.isascii():  # (one value however its characters were composed, invisible marks aside)
            raw = unicodedata.normalize("NFC", _INVISIBLE.sub("", raw))
        if raw.strip().lower() in GENERIC_PLACEHOLDERS:
            return None, "placeholder value"
        if len(raw) > MAX_IDENTIFIER_LENGTH:
            return None, f"longer than {MAX_IDENTIFIER_LENGTH:,} characters"
        if _CONTROL.search(raw):
            return None, "control characters in the value"  # (a NUL or an escape sequence is no one's identifier)
        value, reason = self._by_kind(rule, raw)
        if value is None:
            return None, reason
        blocked = self._blocked.get(id_type)
        if blocked and value in blocked:
            return None, "blocked value (configured)"
        return value, None

    def _by_kind(self, rule: IdentifierRule, raw: str) -> Result:
        kind = rule.kind
        if kind == "email":
            return self.email(raw)
        if kind == "phone":
            return self._phone(raw)
        if kind == "loyalty":
            return loyalty(raw, rule.prefixes)
        if kind == "device":
            return device(raw)
        if kind == "handle":
            return handle(raw)
        return text(raw)

    def email(self, raw: str) -> Result:
        value = raw.strip().lower()
        if value.startswith("mailto:"):
            value = value[7:]
        if not _EMAIL_RE.match(value):
            return None, "not an email address"
        local, _, domain = value.rpartition("@")
        if "xn--" in domain:  # (an internationalized domain as DNS spells it: the same domain as its letters)
            domain = ".".join(_dns_label(label) for label in domain.split("."))
        domain = self.config.email_domain_aliases.get(domain, domain)
        if self.config.strip_email_tags and "+" in local:
            local = local.split("+", 1)[0]
        if domain in self._dotless:
            local = local.replace(".", "")
        if not local:
            return None, "not an email address"
        if local in self._email_locals or domain in self._email_domains:
            return None, "placeholder email"
        return f"{local}@{domain}", None

    def _phone(self, raw: str) -> Result:
        return _phone_cached(raw, self.config.default_region, self.learned_regions)

    # -- attributes --------------------------------------------------------------------------------
    def attributes(self, attrs: dict[str, Optional[str]]) -> dict[str, str]:
        """The attributes normalized; normalizing what this gives gives it again (a restatement decides entries
        again from the attributes the log holds): a value one reading changes is read again until it stays
        ("teſt" upper-cases to the placeholder TEST; a title-cased "İBRAHİM" title-cases otherwise again), and
        one that never stays is dropped."""
        out = self._attributes_once(attrs)
        for _ in range(MAX_READINGS - 1):
            again = self._attributes_once(out)
            if again == out:
                return out
            out = again
        return {k: v for k, v in out.items() if self._attributes_once({k: v}) == {k: v}}

    def _attributes_once(self, attrs: dict[str, Optional[str]]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, raw in attrs.items():
            if raw is None:
                continue
            value = _WS.sub(" ", str(raw)).strip()
            if not value or value.lower() in GENERIC_PLACEHOLDERS:
                continue
            if key in ("first_name", "last_name", "city", "middle_name"):
                value = value.title()
            elif key == "date_of_birth":
                parsed = self.date(value)
                if parsed is None:
                    continue
                value = parsed
            elif key == "postcode":
                value = value.upper()
            out[key] = value
        return out

    def date(self, raw: str) -> Optional[str]:
        """A date of birth as ISO ``YYYY-MM-DD``, or None when it is not a real date."""
        raw = raw.strip()
        if len(raw) > 10 and raw[10] in "Tt " and _ISO_DATE.match(raw[:10]):
            raw = raw[:10]  # an ISO date-time: its date
        m = _ISO_DATE.match(raw) or _COMPACT_DATE.match(raw)
        if m:
            return _iso(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        m = _SLASH_DATE.match(raw)
        if m:
            a, b, y = int(m.group(1)), int(m.group(2)), _full_year(m.group(3))
            month_first = self.config.date_order == "mdy" and "." not in raw  # 07.03.1985: day first, always
            first, second = ((a, b), (b, a)) if month_first else ((b, a), (a, b))
            # in the configured order (dots: day first, as wherever they are written); a date that
            # cannot be read so (31/10/1960 in a month-first configuration) is in the other order:
            # formats mix, and a lost date helps nobody
            return _iso(y, *first) or _iso(y, *second)
        m = _YEAR.match(raw)
        if m:
            return _iso(int(raw), 1, 1)  # only the year known: 1 January, as the matcher reads it
        m = _DAY_MONTH_NAME.match(raw)
        if m:
            month = _month(m.group(2))
            return _iso(int(m.group(3)), month, int(m.group(1))) if month else None
        m = _MONTH_NAME_DAY.match(raw)
        if m:
            month = _month(m.group(1))
            return _iso(int(m.group(3)), month, int(m.group(2))) if month else None
        return None


def _iso(year: int, month: int, day: int) -> Optional[str]:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _full_year(digits: str) -> int:
    if len(digits) == 4:
        return int(digits)
    yy = int(digits)
    return (2000 if yy < TWO_DIGIT_YEAR_PIVOT else 1900) + yy


def _month(name: str) -> Optional[int]:
    return _MONTHS.get(name.lower())


@lru_cache(maxsize=262_144)
def _phone_cached(raw: str, default_region: str, regions: tuple[str, ...]) -> Result:
    """``_phone_read``, memoized (a pure function: the cache changes speed, never results). A module's function,
    not each normalizer's: a cache made of a normalizer's own method holds the normalizer and is held by it, a
    cycle that only the garbage collector frees, and the engine pauses it while it builds its state
    (``streams.log.bulk_work``): each resolver let go of kept its normalizer's cache for the rest of the run."""
    return _phone_read(raw, default_region, regions)


def _phone_read(raw: str, default_region: str, regions: tuple[str, ...]) -> Result:
    digits = _DIGITS.sub("", raw)
    if len(digits) < 6:
        return None, "not a phone number"
    tail = digits[-10:]
    if len(set(tail)) == 1 or tail in _SEQUENCES:
        return None, "placeholder phone"
    number = _parse_phone(raw, default_region)
    if number is None or not phonenumbers.is_possible_number(number):
        # written in international form without the +: 00 (the international prefix of most of the
        # world, whatever the default region's is), or the country code alone when that makes a
        # valid number (a possible one is not enough: any digits are possible somewhere)
        alternative = _parse_phone("+" + digits[2:], None) if digits.startswith("00") else None
        if alternative is not None and phonenumbers.is_possible_number(alternative):
            number = alternative
        else:
            bare = None if raw.lstrip().startswith("+") else _parse_phone("+" + digits, None)
            if bare is not None and phonenumbers.is_valid_number(bare):
                number = bare
            else:
                learned = _learned(raw, regions) if regions and not raw.lstrip().startswith("+") else None
                if learned is None:
                    return None, "not a phone number" if number is None else "not a possible phone number"
                number = learned
    elif (regions and digits[0] == "0" and not raw.lstrip().startswith("+")
          and not phonenumbers.is_valid_number(number)):
        # a trunk 0 the default region does not use: a learned country's national form
        number = _learned(raw, regions) or number
    national = str(number.national_number)
    if len(set(national)) == 1 or national in _SEQUENCES:
        return None, "placeholder phone"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _learned(raw: str, regions: tuple[str, ...]) -> Optional[phonenumbers.PhoneNumber]:
    for region in regions:
        number = _parse_phone(raw, region)
        if number is not None and phonenumbers.is_valid_number(number):
            return number
    return None


def _parse_phone(raw: str, region: Optional[str]) -> Optional[phonenumbers.PhoneNumber]:
    # (``phonenumbers.parse`` keeps an exception it handles and its traceback in locals, ``_, e, _ =
    # sys.exc_info()``: a cycle with its frame, which holds every caller's, the pipeline and the resolver's state
    # among them, and only the cyclic collector frees it, which the engine pauses while it builds its state
    # (``streams.log.bulk_work``): each such number kept them for the rest of a run. When the number fails,
    # the frames are let go of here; when the library recovers (a plus, then no country code: it reads the
    # digits again without the plus) the cycle is unreachable once it returns, and a collection of the youngest
    # generation frees it, that generation emptied first so that it holds only what the call made. Neither
    # changes a result.)
    recovers = _may_recover(raw)
    handled = sys.exc_info()[1]
    if recovers:
        gc.collect(0)
    try:
        return phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        without_tracebacks(exc, handled)
        return None
    finally:
        if recovers:
            gc.collect(0)


def _may_recover(raw: str) -> bool:
    """Whether ``phonenumbers.parse`` may recover from an error of its own on ``raw``: a number with a plus
    whose digits after it begin with no country code (or one not read as plainly as that)."""
    if "+" not in raw and "\uff0b" not in raw:
        return False
    text = raw.lstrip()
    if text[:1] != "+" or any(c.isalpha() for c in text):
        return True
    digits = _DIGITS.sub("", text)
    if not digits.isascii() or digits[:1] in ("", "0"):
        return True
    return not any(int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE for n in (1, 2, 3) if len(digits) >= n)


def loyalty(raw: str, prefixes: tuple[str, ...]) -> Result:
    """A card number as its digits: separators, case, the configured prefixes, any other short letter
    prefix before the digits (a programme prints its cards ``LY-6990-5496``, its tills keep ``69905496``)
    and leading zeros (lost by spreadsheets) are formatting, and a formatting difference must never make
    one card look like two. A value with letters inside its digits is kept as it is (upper case)."""
    value = _NON_ALNUM.sub("", raw).upper()
    ordered = sorted(prefixes, key=len, reverse=True)
    stripped = True
    while stripped:  # until no prefix is left, so that normalizing twice changes nothing
        stripped = False
        for prefix in ordered:
            if value.startswith(prefix) and len(value) > len(prefix):
                value = value[len(prefix):]
                stripped = True
                break
    m = _LETTERS_THEN_DIGITS.match(value)
    if m:
        value = m.group(1)
    if value.isdigit():
        value = value.lstrip("0")
    if not value:
        return None, "placeholder loyalty id"
    return value, None


def device(raw: str) -> Result:
    value = raw.strip().lower()
    if not value or set(_NON_ALNUM.sub("", value)) <= {"0"}:
        return None, "placeholder device id"
    return value, None


def handle(raw: str) -> Result:
    value = raw.strip().lower().lstrip("@")
    if not value:
        return None, "empty handle"
    return value, None


def text(raw: str) -> Result:
    value = _WS.sub(" ", raw).strip().casefold()
    if value in GENERIC_PLACEHOLDERS:
        return None, "placeholder value"
    return value, None
