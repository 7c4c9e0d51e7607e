"""The raw channel event: the input contract every channel producer writes (schema version 1).

One JSON object per event. Producers in other languages can validate against the exported JSON
Schema (``idres schema --out DIR``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1

Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]

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
        default_factory=dict,
        description="Identifier type -> raw value: email, phone, loyalty_id, device_id, social_handle, ...",
    )
    attributes: dict[Key, Optional[str]] = Field(
        default_factory=dict,
        description="first_name, last_name, date_of_birth, address, postcode, city, ...",
    )
    payload: dict[str, Any] = Field(default_factory=dict, description="amount, currency, case_id, csat, ...")
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if not isinstance(value, (str, datetime)):
            raise ValueError("must be an ISO-8601 date-time string, e.g. 2025-03-07T14:03:11+00:00")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class RejectedInput(Exception):
    """A raw record that cannot be accepted; ``reason`` is one line a person can act on."""

    def __init__(self, reason: str, event_id: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "event"
    return f"{where}: {err.get('msg', 'invalid')}"


def parse_event(raw: bytes | str) -> ChannelEvent:
    """Parses and validates one JSON line; raises RejectedInput with a one-line reason."""
    try:
        event = ChannelEvent.model_validate_json(raw)
    except ValidationError as exc:
        event_id = None
        if exc.errors()[0].get("type") == "json_invalid":
            raise RejectedInput("not valid JSON: " + str(exc.errors()[0].get("msg", "")).strip()) from None
        try:
            import orjson

            obj = orjson.loads(raw)
            if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
                event_id = obj["event_id"]
        except Exception:
            pass
        raise RejectedInput(_first_error(exc), event_id) from None
    has_identifier = any(v is not None and str(v).strip() for v in event.identifiers.values())
    has_attribute = any(v is not None and str(v).strip() for v in event.attributes.values())
    if not has_identifier and not has_attribute:
        raise RejectedInput("nothing to match on: no identifier and no attribute", event.event_id)
    return event
