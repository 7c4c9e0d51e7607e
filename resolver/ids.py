"""Names: identifier node keys, profile IDs and the engine's timestamps. Imports nothing of the resolver."""

from __future__ import annotations

import hashlib
import unicodedata
import zlib
from datetime import timezone
from sys import intern

import orjson

# Node type of an event that carries attributes to match on but no identifier (``record:<event_id>``).
RECORD_TYPE = "record"
RECORD_PRIORITY = 1000  # taken after every identifier type
# An identifier whose key was shredded by an erasure reads back as ``type:erased~KID`` (``streams.sealing``).
ERASED = "erased~"


# What an identifier type's name may not hold: the ':' that ends it in a node key (type "member_no:a" with value
# "b" would be type "member_no" with value "a:b"), and characters that cannot be told apart when read: controls,
# invisible formatting (bidi marks and isolates, zero widths, tags), separators other than a plain space
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))


def type_name_problem(id_type: str) -> str | None:
    """Why ``id_type`` cannot name an identifier type (its values would be read as another type's, or it is
    the anonymous records' own, or it holds what cannot be seen), or None."""
    if id_type == RECORD_TYPE:
        return f"identifier type {RECORD_TYPE!r} is reserved for anonymous records; send it under another name"
    if id_type.isascii() and id_type.isprintable() and ":" not in id_type:
        return None  # (the usual name: printable ASCII, spaces included)
    for c in id_type:
        if c == ":" or (c != " " and unicodedata.category(c) in _INVISIBLE):
            what = "':'" if c == ":" else f"the character U+{ord(c):04X}"
            return (f"identifier type {id_type!r} holds {what} (a type's name has no ':', control, invisible or "
                    "separator character but the space); send it under another name")
    return None


def node_key(id_type: str, value: str) -> str:
    """An identifier as a node of the identity graph: ``"type:normalized value"``."""
    return f"{id_type}:{value}"


def node_type(key: str) -> str:
    return intern(key.split(":", 1)[0])


def utc_iso(dt) -> str:
    """A fixed-width UTC timestamp (``2025-03-07T14:03:11.000000Z``), so string order is time order.
    (A naive time is the machine's local time, as ``datetime.astimezone`` reads it.)"""
    off = dt.utcoffset()
    if off is None:
        dt = dt.astimezone(timezone.utc)
    elif off:
        dt = dt - off  # (what astimezone does, without its work for another zone; OverflowError alike)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second,
                                                    dt.microsecond)


def event_digest(event, occurred_at: str | None = None) -> int:
    """A 32-bit checksum of what a raw event says (its time as a UTC instant, channel, type, identifiers,
    attributes and payload as sent, key order aside): the same event re-sent has the same one, another
    event under its ID most likely not. The log keeps it, not the raw values it was computed from."""
    return zlib.crc32(orjson.dumps([occurred_at or utc_iso(event.occurred_at), event.channel, event.event_type, event.identifiers,
                                    event.attributes, event.payload], option=orjson.OPT_SORT_KEYS))


def short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()
