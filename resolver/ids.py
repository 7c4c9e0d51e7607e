"""Names: identifier node keys, profile IDs and the engine's timestamps. Imports nothing of the resolver."""

from __future__ import annotations

import hashlib
import zlib
from datetime import timezone
from sys import intern

import orjson

# Node type of an event that carries attributes to match on but no identifier (``record:<event_id>``).
RECORD_TYPE = "record"
RECORD_PRIORITY = 1000  # taken after every identifier type


def node_key(id_type: str, value: str) -> str:
    """An identifier as a node of the identity graph: ``"type:normalized value"``."""
    return f"{id_type}:{value}"


def node_type(key: str) -> str:
    return intern(key.split(":", 1)[0])


def utc_iso(dt) -> str:
    """A fixed-width UTC timestamp (``2025-03-07T14:03:11.000000Z``), so string order is time order."""
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def content_digest(occurred_at: str, channel: str, event_type: str, node_keys: list[str],
                   attributes: dict[str, str], payload: dict) -> int:
    """A 32-bit checksum of what an event says, normalized (its time as a UTC instant, channel, type,
    usable identifiers, attributes and payload): the same event re-sent has the same one, whatever the
    formatting; another event under its ID most likely not. (Reproduced from the log by re-deciding.)"""
    return zlib.crc32(orjson.dumps([occurred_at, channel, event_type, sorted(node_keys), attributes, payload],
                                   option=orjson.OPT_SORT_KEYS))


def short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
