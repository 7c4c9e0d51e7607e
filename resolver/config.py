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
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from resolver.errors import ConfigError
from resolver.matching import MatchModel


@dataclass(frozen=True)
class IdentifierRule:
    """How one identifier type links.

    priority: lower is stronger; it orders an event's identifiers and decides which one is blamed
        when an event would join two people.
    kind: normalizer to use: email, phone, loyalty, device, handle or text.
    weak: a weak identifier (a device, a cookie) may attach anonymous activity to a known customer,
        but never joins two profiles that each already hold a different value of a strong type.
    max_per_profile: how many values of this type one person may hold (None: no limit).
    max_cooccurring: data-driven guard. A value seen on events together with more than N distinct
        values of another type (or N distinct dates of birth, key ``date_of_birth``) is taken to be
        shared by several people and stops linking.
    blocked_values: placeholders staff type; compared after normalization, never linked.
    """

    priority: int = 50
    kind: str = "text"
    weak: bool = False
    max_per_profile: Optional[int] = None
    max_cooccurring: dict[str, int] = field(default_factory=dict)
    blocked_values: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


def _default_rules() -> dict[str, IdentifierRule]:
    return {
        "loyalty_id": IdentifierRule(
            priority=10,
            kind="loyalty",
            max_per_profile=1,
            max_cooccurring={"email": 3, "phone": 3, "date_of_birth": 1},
            prefixes=("LOY", "LOYALTY", "CARD"),
        ),
        "email": IdentifierRule(
            priority=20,
            kind="email",
            max_per_profile=3,
            max_cooccurring={"loyalty_id": 1, "phone": 3, "date_of_birth": 1},
        ),
        "phone": IdentifierRule(
            priority=30,
            kind="phone",
            max_per_profile=3,
            max_cooccurring={"loyalty_id": 1, "email": 3, "date_of_birth": 1},
        ),
        "social_handle": IdentifierRule(
            priority=40,
            kind="handle",
            max_per_profile=3,
            max_cooccurring={"loyalty_id": 1, "email": 3, "date_of_birth": 1},
        ),
        "device_id": IdentifierRule(
            priority=60,
            kind="device",
            weak=True,
            max_cooccurring={"loyalty_id": 1, "email": 2, "phone": 2, "date_of_birth": 1},
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
    # Probabilistic matching on personal attributes (``resolver.matching``): an event whose attributes
    # are new to its profile is scored against earlier records found through the blocking index.
    fuzzy_matching: bool = True
    # The Fellegi-Sunter parameters and thresholds; None: the shipped defaults. The drivers read it from
    # the JSON file named by ``match_model = "model.json"`` in the TOML file.
    match_model: Optional[MatchModel] = None
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

    def fingerprint(self) -> str:
        """A short hash of the rules, recorded with decisions so a change of rules is visible."""
        blob = json.dumps(asdict(self), sort_keys=True, default=_jsonable).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "ResolverConfig":
        base = cls()
        reject_unknown(data, cls.__dataclass_fields__, where, "setting")
        updates: dict[str, Any] = {}
        for key, value in data.items():
            if key == "identifier_types":
                rules = dict(base.identifier_types)
                for id_type, spec in value.items():
                    rules[id_type] = _rule_from(spec, rules.get(id_type, base.other_types), f"{where}: {id_type}")
                updates[key] = rules
            elif key == "match_model":
                if isinstance(value, dict):
                    value = MatchModel.from_dict(value, f"{where}: match_model")
                elif value is not None and not isinstance(value, MatchModel):
                    raise ConfigError(f"{where}: match_model must be a match model file's path or contents")
                updates[key] = value
            elif key == "other_types":
                updates[key] = _rule_from(value, base.other_types, f"{where}: other_types")
            elif isinstance(getattr(base, key), tuple):
                updates[key] = tuple(value)
            else:
                updates[key] = value
        config = replace(base, **updates)
        if not isinstance(config.max_block_size, int) or config.max_block_size < 1:
            raise ConfigError(f"{where}: max_block_size must be a positive integer")
        if config.date_order not in ("mdy", "dmy"):
            raise ConfigError(f"{where}: date_order must be 'mdy' or 'dmy', not {config.date_order!r}")
        return config


def _jsonable(value: Any) -> Any:
    if isinstance(value, MatchModel):
        return value.to_dict()
    return list(value)


def reject_unknown(data: dict[str, Any], known: Any, where: str, what: str = "setting") -> None:
    """A ConfigError naming every key of ``data`` that is not in ``known``, and the keys that are."""
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {sorted(unknown)}; known: {sorted(known)}")


def _rule_from(spec: dict[str, Any], base: IdentifierRule, where: str) -> IdentifierRule:
    reject_unknown(spec, IdentifierRule.__dataclass_fields__, where, "rule setting")
    values = dict(spec)
    for key in ("blocked_values", "prefixes"):
        if key in values:
            values[key] = tuple(values[key])
    if values.get("kind", base.kind) not in ("email", "phone", "loyalty", "device", "handle", "text"):
        raise ConfigError(f"{where}: kind must be one of email, phone, loyalty, device, handle, text")
    return replace(base, **values)
