"""The raw channel event: the input contract every channel producer writes (schema version 1).

One JSON object per event. Producers in other languages can validate against the exported JSON
Schema (``idres schema --out DIR``).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1

Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_IDENTIFIERS = 64  # identifiers per event (more is no customer's, and costs every later step)
MAX_ATTRIBUTES = 64
MAX_AMOUNT = 1e15  # a payload's amount, either way (a billion events of it still add up to a finite value)
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what the decision log (JSON, 64-bit integers) stores


def _unstorable(value: Any) -> Optional[str]:
    """Where a payload holds a number the decision log cannot store faithfully, and why; else None."""
    # (every value is looked at, but a path is spelt out only for the one found wrong)
    stack: list[tuple[Any, tuple]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is dict:
            stack.extend((v, (where, k)) for k, v in item.items())
        elif kind is list:
            stack.extend((v, (where, i)) for i, v in enumerate(item))
        elif kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                return f"{_path(where)} is an integer beyond 64 bits ({str(item)[:40]}); send it as a string"
        elif kind is float and not math.isfinite(item):
            return f"{_path(where)} is {item!r}, not a finite number; leave it out or send it as a string"
    return None


def _path(where: tuple) -> str:
    parts: list[str] = []
    while where:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".")

KNOWN_CHANNELS = ("web", "app", "email", "call_center", "store", "loyalty", "chat", "social")


class ChannelEvent(BaseModel):
    """One thing a customer did on one channel, as the channel saw it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Field(min_length=1, max_length=256, description="Unique per event; a re-sent duplicate is a no-op.")
    occurred_at: datetime = Field(description="ISO-8601; a value without a timezone is taken as UTC.")
    channel: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Lower-case channel name: " + ", ".join(KNOWN_CHANNELS) + ", or another configured one.",
    )
    event_type: str = Field(min_length=1, max_length=128)
    identifiers: dict[Key, Optional[str]] = Field(
        default_factory=dict, max_length=MAX_IDENTIFIERS,
        description="Identifier type -> raw value: email, phone, loyalty_id, device_id, social_handle, ... "
                    f"(at most {MAX_IDENTIFIERS})",
    )
    attributes: dict[Key, Optional[str]] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES,
        description=f"first_name, last_name, date_of_birth, address, postcode, city, ... (at most {MAX_ATTRIBUTES})",
    )
    payload: dict[str, Any] = Field(default_factory=dict,
                                    description="amount, currency, case_id, csat, ...: any JSON whose numbers are "
                                                "finite and whose integers fit in 64 bits")
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if type(value) is str and ":" in value:
            return value  # (a time of day: no number holds a colon)
        if not isinstance(value, (str, datetime)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
            given = ("null" if value is None else "a number of seconds" if isinstance(value, (int, float, str))
                     and not isinstance(value, bool) else f"a JSON {type(value).__name__}".replace("dict", "object")
                     .replace("list", "array").replace("bool", "boolean"))
            raise ValueError(f"must be an ISO-8601 date-time string, e.g. 2025-03-07T14:03:11+00:00 (not {given})")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        if 1 < value.year < 9999:
            return value  # (an offset is less than a day: only the first and last years can leave the range in UTC)
        try:
            value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None
        return value

    @field_validator("payload")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = _unstorable(value)
        if where is not None:
            raise ValueError(where)
        amount = value.get("amount")
        if isinstance(amount, (int, float, str)) and not isinstance(amount, bool):
            try:
                number = float(amount)
            except ValueError:
                number = None  # (not a number: no amount, as a report reads it)
            if number is not None and not (math.isfinite(number) and abs(number) <= MAX_AMOUNT):
                raise ValueError(f"amount is {str(amount)[:40]}: an amount is a finite number from -{MAX_AMOUNT:.0e} to "
                                 f"{MAX_AMOUNT:.0e} (customer values add them up)")
        return value


class RejectedInput(Exception):
    """A raw record that cannot be accepted.

    ``reason`` is its category, a short stable phrase that groups like records (``not valid JSON``,
    ``missing occurred_at``, ``occurred_at is not a date-time``, ...); ``detail`` is the one line a
    person acts on, with the position of a JSON syntax error or the value the validator refused.
    """

    def __init__(self, reason: str, event_id: Optional[str] = None, *, detail: Optional[str] = None):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason
        self.event_id = event_id


NOT_JSON = "not valid JSON"
NOT_AN_OBJECT = "not a JSON object"
TOO_LARGE = "record too large"
NOTHING_TO_MATCH = "nothing to match on"
INTERNAL_ERROR = "internal error"
BAD_DATE = "occurred_at is not a date-time"
CONFLICTING_DUPLICATE = "event_id already used by another event"
UNDECODABLE_BATCH = "undecodable record batch"  # (Kafka) a compressed batch no record of which can be read
DUPLICATE_KEY = "a key twice in one object"

try:  # (compiled where it was built: setup.py; else the definition below, the same answers)
    from schemas._cjson import duplicate_keys as _duplicate_keys
except ImportError:  # pragma: no cover
    _duplicate_keys = None


class _Twice(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Twice(key)
        seen.add(key)
    return dict(pairs)


def duplicate_key(raw: bytes | str) -> Optional[str]:
    """The first key written twice in one object of the JSON text ``raw`` (one that parses), else None. JSON
    leaves such an object to the reader, and most keep the last value without a word; a record that holds one
    is rejected, since which value was meant cannot be told. (The compiled scan answers most records in one pass;
    the text is parsed with every object's pairs where it cannot tell, or to name the key.)"""
    if _duplicate_keys is not None and _duplicate_keys(raw) == 0:
        return None
    import json

    try:
        json.loads(raw, object_pairs_hook=_pairs)
    except _Twice as twice:
        return str(twice.args[0])
    except (ValueError, RecursionError):  # (parsed by the reader of records, not by this one: not told)
        return None
    return None


def _category(loc: tuple[Any, ...], error_type: str) -> str:
    """The grouping key of a validation error: one per field and kind, never per value or position."""
    if not loc:
        return NOT_AN_OBJECT if error_type == "model_type" else "invalid event"
    field = str(loc[0])
    if error_type == "missing":
        return f"missing {field}"
    if field == "occurred_at":
        return BAD_DATE
    return f"invalid {field}"


def reason_category(reason: str) -> str:
    """The category of a reason written before rejections had one (their ``reason`` was the detail);
    a category is returned unchanged."""
    if reason.startswith(NOT_JSON):
        return NOT_JSON
    if reason.startswith("record is ") and "the limit is" in reason:
        return TOO_LARGE
    if reason.startswith(NOTHING_TO_MATCH):
        return NOTHING_TO_MATCH
    if reason.startswith("internal error while resolving"):
        return INTERNAL_ERROR
    where, sep, msg = reason.partition(": ")
    if sep and where and " " not in where:
        if where == "event":
            return NOT_AN_OBJECT if msg.startswith("Input should be an object") else "invalid event"
        return _category(tuple(where.split(".")), "missing" if msg == "Field required" else "")
    return reason


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors(include_url=False)[0]
    loc = tuple(err.get("loc", ()))
    where = ".".join(str(p) for p in loc) or "event"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return _category(loc, err.get("type", "")), f"{where}: {msg}"


def _loose_json(raw: bytes | str) -> Any:
    """The record read as JSON however it can be, to name its event in a rejection (the standard library takes
    what the fast reader refuses: NaN, an integer beyond 64 bits); None if it cannot be read."""
    import json

    import orjson

    try:
        return orjson.loads(raw)
    except Exception:
        pass
    try:
        return json.loads(raw)
    except Exception:
        return None


def parse_event(raw: bytes | str, max_bytes: Optional[int] = None) -> ChannelEvent:
    """Parses and validates one JSON line; raises RejectedInput with a reason category and a one-line
    detail. A record longer than ``max_bytes`` is rejected without being parsed."""
    if max_bytes is not None and len(raw) > max_bytes:
        if len(raw) == max_bytes + 2 and raw.endswith(b"\x1a" if isinstance(raw, bytes) else "\x1a"):
            # (cut there as it was read: ``streams.inputs.InputStream``'s ``max_line``; the rest was not held)
            raise RejectedInput(TOO_LARGE, detail=f"record is more than {max_bytes:,} bytes (the limit)")
        raise RejectedInput(TOO_LARGE, detail=f"record is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        event = ChannelEvent.model_validate_json(raw)
    except ValidationError as exc:
        event_id = None
        if exc.errors()[0].get("type") == "json_invalid":
            msg = str(exc.errors()[0].get("msg", "")).strip().removeprefix("Invalid JSON:").strip()
            if "number out of range" in msg:
                msg += " (a number too long to read: send it as a string)"
            elif raw[:3] == b"\xef\xbb\xbf" or raw[:1] == "\ufeff":  # (a file's, where files were joined)
                msg = ("the record begins with a byte-order mark, as a file joined to another with `cat` has where "
                       "they meet: give the files to idres separately, or remove the mark")
            raise RejectedInput(NOT_JSON, detail=f"{NOT_JSON}: {msg}") from None
        obj = _loose_json(raw)
        if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
            event_id = obj["event_id"]
        category, detail = _first_error(exc)
        raise RejectedInput(category, event_id, detail=detail) from None
    twice = duplicate_key(raw)
    if twice is not None:
        raise RejectedInput(DUPLICATE_KEY, event.event_id,
                            detail=f"{DUPLICATE_KEY}: {twice!r} (which of its values is meant cannot be told)")
    has_identifier = any(v is not None and str(v).strip() for v in event.identifiers.values())
    has_attribute = any(v is not None and str(v).strip() for v in event.attributes.values())
    if not has_identifier and not has_attribute:
        raise RejectedInput(NOTHING_TO_MATCH, event.event_id,
                            detail=f"{NOTHING_TO_MATCH}: no identifier and no attribute with a value")
    return event
