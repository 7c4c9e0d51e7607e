"""Resolver configuration: per identifier type, how strong it is and what a single person can hold.

Everything here is data; the drivers load it from a TOML file (``idres ... --config rules.toml``)::

    default_region = "GB"

    [identifier_types.loyalty_id]
    priority = 10
    max_per_profile = 1
    prefixes = ["LOY", "CARD"]

    [identifier_types.device_id]
    weak = true
    blocked_values = ["kiosk-01"]
    max_cooccurring = { email = 2, loyalty_id = 1 }
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, NoReturn, Optional

from resolver.errors import ConfigError
from resolver.matching import MatchModel
from resolver.ids import type_name_problem


@dataclass(frozen=True)
class IdentifierRule:
    """How one identifier type links.

    priority: lower is stronger; it orders an event's identifiers and decides which one is blamed
        when an event would join two people.
    kind: normalizer to use: email, phone, loyalty, device, handle or text.
    weak: a weak identifier (a device, a cookie) may attach anonymous activity to a known customer,
        but never joins two profiles that each already hold a different value of a strong type.
    max_per_profile: how many values of this type one person may hold (None: no limit).
    successive: values of this type used one after the other (a lost loyalty card and the one that
        replaced it: the first's last use before the second's first use) count once toward
        ``max_per_profile``: it limits the values in use at the same time.
    max_cooccurring: data-driven guard. A value seen on events together with more than N distinct
        values of another type (or N distinct dates of birth or first names, keys ``date_of_birth`` and
        ``first_name``) is taken to be
        shared by several people and stops linking.
    blocked_values: placeholders staff type; compared after normalization, never linked.
    """

    priority: int = 50
    kind: str = "text"
    weak: bool = False
    max_per_profile: Optional[int] = None
    successive: bool = False
    max_cooccurring: dict[str, int] = field(default_factory=dict)
    blocked_values: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


def _default_rules() -> dict[str, IdentifierRule]:
    return {
        "loyalty_id": IdentifierRule(
            priority=10,
            kind="loyalty",
            max_per_profile=1,
            successive=True,  # a lost card and its replacement are one customer's
            max_cooccurring={"email": 3, "phone": 3, "date_of_birth": 1, "first_name": 1},
            prefixes=("LOY", "LOYALTY", "CARD"),
        ),
        "email": IdentifierRule(
            priority=20,
            kind="email",
            max_per_profile=3,
            max_cooccurring={"loyalty_id": 2, "phone": 3, "date_of_birth": 1, "first_name": 1},
        ),
        "phone": IdentifierRule(
            priority=30,
            kind="phone",
            max_per_profile=3,
            max_cooccurring={"loyalty_id": 2, "email": 3, "date_of_birth": 1, "first_name": 1},
        ),
        "social_handle": IdentifierRule(
            priority=40,
            kind="handle",
            max_per_profile=3,
            max_cooccurring={"loyalty_id": 1, "email": 3, "date_of_birth": 1, "first_name": 1},
        ),
        "device_id": IdentifierRule(
            priority=60,
            kind="device",
            weak=True,
            max_cooccurring={"loyalty_id": 1, "email": 2, "phone": 2, "date_of_birth": 1, "first_name": 1},
        ),
    }


@dataclass(frozen=True)
class ResolverConfig:
    """All the resolver's rules. Two engines with equal configs make the same decisions."""

    default_region: str = "US"
    identifier_types: dict[str, IdentifierRule] = field(default_factory=_default_rules)
    other_types: IdentifierRule = field(default_factory=lambda: IdentifierRule(priority=50, kind="text"))
    # Email provider rules: remove dots in the local part for these domains, drop "+tag" everywhere.
    dotless_email_domains: tuple[str, ...] = ("gmail.com", "googlemail.com")
    email_domain_aliases: dict[str, str] = field(default_factory=lambda: {"googlemail.com": "gmail.com"})
    strip_email_tags: bool = True
    # Placeholder detection that applies to every data set.
    placeholder_email_locals: tuple[str, ...] = (
        "test", "none", "noemail", "no-email", "na", "n/a", "null", "unknown", "noreply", "no-reply",
        "donotreply", "do-not-reply", "nobody", "email", "abc", "asdf", "xxx", "x",
    )
    placeholder_email_domains: tuple[str, ...] = (
        "test.com", "example.com", "example.org", "example.net", "noemail.com", "none.com", "na.com",
        "email.com", "invalid", "test", "localhost",
    )
    # Dates of birth written with slashes: "mdy" (03/07/1985 is March 7) or "dmy".
    date_order: str = "mdy"
    # Dates of birth that clearly differ (not a typo, a day/month swap or days apart) make a hard
    # conflict: two profiles whose dates all differ so never merge, on identifiers or on attributes.
    # Off: dates of birth are only evidence (a weight) for the matcher.
    dob_conflict: bool = True
    # First names that clearly differ (not a variant, nickname, short form, typo or alike in sound, nor
    # the names entered the other way round) are two people too: an identifier seen with two such names
    # is shared (a family mailbox, a household landline: ``max_cooccurring`` key ``first_name``), and no
    # identifier joins two profiles whose names all differ so. Off: names are only evidence for the matcher.
    name_conflict: bool = True
    # Event types whose names may be someone else's: an order delivered to its recipient (a present). Their
    # date of birth and names count as another person on the identifier only when named so twice, make no
    # conflict between profiles, and their attribute record is not matched as the identifier holder's when
    # its first name is not the holder's (``resolver.traits``).
    delivery_event_types: tuple[str, ...] = ("purchase", "order", "order_placed")
    # ...except on channels where the customer is there in person, and for an order that gives a date of
    # birth (from the buyer's account: a present's recipient's is not asked for). In person, an anonymous event
    # is not attributed by session either (``by_session``).
    in_person_channels: tuple[str, ...] = ("store",)

    def by_session(self, channel: str) -> bool:
        """Whether an anonymous event on this channel may be attributed by session to the customer who used the
        same shared identifier just before or after it (``resolver.sessions``): not in person, where strangers
        follow one another at a till or counter and each transaction is its own."""
        return channel not in self.in_person_channels

    def hearsay(self, channel: str, event_type: str, attributes: dict[str, str]) -> bool:
        """Whether an event's names may be someone else's than its identifiers' holder's (``resolver.traits``)."""
        return (event_type in self.delivery_event_types and channel not in self.in_person_channels
                and not attributes.get("date_of_birth"))
    # Probabilistic matching on personal attributes (``resolver.matching``): an event whose attributes
    # are new to its profile is scored against earlier records found through the blocking index.
    fuzzy_matching: bool = True
    # The Fellegi-Sunter parameters and thresholds; None: the shipped defaults. The drivers read it from
    # the JSON file named by ``match_model = "model.json"`` in the TOML file.
    match_model: Optional[MatchModel] = None
    # Without a fixed ``match_model``, the engine re-estimates its model from the records it has seen
    # (``resolver.calibration``): at 256 attribute records, then each time their number doubles. Off: the
    # shipped defaults throughout.
    self_calibration: bool = True
    # At most this many records per blocking key; a key shared by more (a popular surname in a large
    # postcode) stops taking new records, so the cost of a look-up stays bounded as the graph grows.
    max_block_size: int = 64
    # Records whose first names clearly differ (not a nickname, not a typo) are at most queued for
    # review, whatever else agrees: twins share a surname, an address and a date of birth.
    link_different_first_names: bool = False
    # At most this many possible matches queued for review per event (the highest weights).
    max_reviews_per_event: int = 3
    # Exact agreement on a first name, surname or city weighs more when the value is rare among the
    # records seen so far and less when it is common (Smith, London), as in Splink's term-frequency
    # adjustments. The counts are part of the resolver state, so replay weighs identically.
    frequency_adjustments: bool = True

    def rule(self, id_type: str) -> IdentifierRule:
        return self.identifier_types.get(id_type, self.other_types)

    def lookalike(self, id_type: str) -> Optional[str]:
        """The configured identifier type ``id_type`` is spelt like but is not (``Email``, ``e-mail``, ``loyaltyId``
        for ``email``, ``loyalty_id``): its values are another type's, kept apart from that one's. None if it
        is configured, or like none."""
        if id_type in self.identifier_types:
            return None
        bare = "".join(c for c in id_type.casefold() if c.isalnum())
        return next((t for t in sorted(self.identifier_types) if "".join(c for c in t if c.isalnum()) == bare), None)

    @property
    def calibrating(self) -> bool:
        """Whether the match model is re-estimated from the data (``resolver.calibration``): no model fixed,
        self-calibration on, and matching on."""
        return self.match_model is None and self.self_calibration and self.fuzzy_matching

    def fingerprint(self) -> str:
        """A short hash of the rules, recorded with decisions so a change of rules is visible."""
        blob = json.dumps(asdict(self), sort_keys=True, default=_jsonable).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "ResolverConfig":
        """The config from a TOML file's (or any) dict, every value type-checked: a wrong one is a
        ConfigError naming ``where``, the key's full path, the value and what is expected."""
        base = cls()
        check_table(data, "", where, "a table of settings")
        reject_unknown(data, cls.__dataclass_fields__, where, "setting")
        updates: dict[str, Any] = {}
        for key, value in data.items():
            if key == "identifier_types":
                check_table(value, key, where, "a table of identifier types, such as [identifier_types.email]")
                rules = dict(base.identifier_types)
                for id_type, spec in value.items():
                    problem = type_name_problem(id_type)
                    if problem is not None:
                        raise ConfigError(f"{where}: {config_path(key, id_type)}: {problem}")
                    rules[id_type] = _rule_from(spec, rules.get(id_type, base.other_types), where,
                                                config_path(key, id_type))
                updates[key] = rules
            elif key == "other_types":
                updates[key] = _rule_from(value, base.other_types, where, key)
            elif key == "match_model":
                if isinstance(value, dict):
                    value = MatchModel.from_dict(value, f"{where}: match_model")
                elif value is not None and not isinstance(value, MatchModel):
                    config_error(where, key, value, 'the path of a match model file (from `idres train`), '
                                                    'such as "model.json"')
                updates[key] = value
            else:
                updates[key] = _SETTINGS[key](value, key, where)
        return replace(base, **updates)


def _jsonable(value: Any) -> Any:
    if isinstance(value, MatchModel):
        return value.to_dict()
    return list(value)


def reject_unknown(data: dict[str, Any], known: Any, where: str, what: str = "setting") -> None:
    """A ConfigError naming every key of ``data`` that is not in ``known``, and the keys that are."""
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {sorted(unknown)}; known: {sorted(known)}")


def _rule_from(spec: Any, base: IdentifierRule, where: str, path: str) -> IdentifierRule:
    check_table(spec, path, where, f"a table of rule settings, such as [{path}] with priority = 10")
    reject_unknown(spec, IdentifierRule.__dataclass_fields__, f"{where}: {path}", "rule setting")
    return replace(base, **{key: _RULE[key](value, config_path(path, key), where) for key, value in spec.items()})


# ------------------------------------------------------------------------------------------ validation
# A check takes (value, its key's full path, where) and returns the value as the runtime types want it,
# or raises the ConfigError of ``config_error``.
Check = Callable[[Any, str, str], Any]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def config_path(parent: str, *keys: str) -> str:
    """``identifier_types.loyalty_id.max_per_profile``: the path ``parent`` and then ``keys`` as TOML
    writes them (quoted when not bare)."""
    return ".".join([parent, *(_key(k) for k in keys)])


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml(key)


def shown(value: Any, limit: int = 60) -> str:
    """A value as TOML spells it, on one line, cut at ``limit`` characters."""
    text = _toml(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in json.dumps(value, ensure_ascii=False))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    if value is None:
        return "(nothing)"
    if isinstance(value, (int, float)):
        return str(value)
    if hasattr(value, "isoformat"):  # a TOML date or time
        return value.isoformat()
    return _toml(str(value))


def config_error(where: str, path: str, value: Any, expected: str) -> NoReturn:
    raise ConfigError(f"{where}: {path or 'the file'} = {shown(value)}: expected {expected}")


def check_table(value: Any, path: str, where: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        config_error(where, path, value, expected)
    return value


def whole_number(minimum: Optional[int] = None, note: str = "", optional: bool = False) -> Check:
    """A whole number (TOML ``true`` is not 1, ``3.0`` is not 3) of at least ``minimum``."""
    expected = ("a whole number" + (f" >= {minimum}" if minimum is not None else "") + (f" {note}" if note else ""))

    def check(value: Any, path: str, where: str) -> Optional[int]:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            config_error(where, path, value, expected)
        return value

    return check


def boolean(value: Any, path: str, where: str) -> bool:
    if not isinstance(value, bool):
        config_error(where, path, value, "true or false")
    return value


def one_of(*choices: str) -> Check:
    def check(value: Any, path: str, where: str) -> str:
        if not isinstance(value, str) or value not in choices:
            config_error(where, path, value, "one of " + ", ".join(json.dumps(c) for c in choices))
        return value

    return check


def strings(example: str) -> Check:
    """A list of strings, as a tuple."""
    def check(value: Any, path: str, where: str) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            config_error(where, path, value, f"a list of strings, such as {example}")
        return tuple(value)

    return check


_CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_]*")  # (as an event's channel must be: ``schemas.channel``)


def is_channel_name(value: Any) -> bool:
    """Whether ``value`` is a channel's name as an event gives it."""
    return isinstance(value, str) and _CHANNEL_NAME.fullmatch(value) is not None


def channel_names(example: str) -> Check:
    """A list of channel names as events give them (lower case), as a tuple: "Store" would match no event."""
    def check(value: Any, path: str, where: str) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not all(is_channel_name(v) for v in value):
            config_error(where, path, value, f"a list of channel names as events give them (lower-case letters, "
                                             f"digits and _), such as {example}")
        return tuple(value)

    return check


def table_of(item: Check, expected: str) -> Check:
    """A table of name = value, each value checked by ``item`` (its path: the table's path and its key)."""
    def check(value: Any, path: str, where: str) -> dict[str, Any]:
        check_table(value, path, where, expected)
        return {k: item(v, config_path(path, k), where) for k, v in value.items()}

    return check


def _text(value: Any, path: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        config_error(where, path, value, "a non-empty string")
    return value


def _region(value: Any, path: str, where: str) -> str:
    import phonenumbers

    if not isinstance(value, str) or value not in phonenumbers.SUPPORTED_REGIONS:
        hint = (f' (upper case: "{value.upper()}")' if isinstance(value, str)
                and value.upper() in phonenumbers.SUPPORTED_REGIONS else "")
        config_error(where, path, value, f'a region code phone numbers are read by (ISO 3166, two letters), such as '
                                         f'"US" or "GB"{hint}')
    return value


KINDS = ("email", "phone", "loyalty", "device", "handle", "text")

_RULE: dict[str, Check] = {
    "priority": whole_number(note="(lower is stronger), such as 10"),
    "kind": one_of(*KINDS),
    "weak": boolean,
    "max_per_profile": whole_number(1, "(or leave it out for no limit)", optional=True),
    "successive": boolean,
    "max_cooccurring": table_of(whole_number(1), "a table of identifier type (or date_of_birth, first_name) = whole number "
                                                 ">= 1, such as { email = 2, date_of_birth = 1 }"),
    "blocked_values": strings('["kiosk-01"]'),
    "prefixes": strings('["LOY", "CARD"]'),
}

# every top-level setting but identifier_types, other_types and match_model (checked in from_dict)
_SETTINGS: dict[str, Check] = {
    "default_region": _region,
    "dotless_email_domains": strings('["gmail.com"]'),
    "email_domain_aliases": table_of(_text, 'a table of domain = domain, such as { "googlemail.com" = "gmail.com" }'),
    "strip_email_tags": boolean,
    "placeholder_email_locals": strings('["test", "noemail"]'),
    "placeholder_email_domains": strings('["example.com"]'),
    "date_order": one_of("mdy", "dmy"),
    "dob_conflict": boolean,
    "name_conflict": boolean,
    "delivery_event_types": strings('["purchase", "order"]'),
    "in_person_channels": channel_names('["store"]'),
    "fuzzy_matching": boolean,
    "self_calibration": boolean,
    "max_block_size": whole_number(1),
    "link_different_first_names": boolean,
    "max_reviews_per_event": whole_number(0),
    "frequency_adjustments": boolean,
}
