"""Event times as integers: microseconds since 1970-01-01 UTC.

The log writes an event's time as fixed-width UTC text (``resolver.ids.utc_iso``: ``2025-03-07T14:03:11.000000Z``),
whose string order is time order. The views keep the number that text names instead: 8 bytes in an array where
a string costs 76 and an object, in the same order, and written back as the same text where it is shown.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1)
_MICRO = timedelta(microseconds=1)


def micros(iso: str) -> int:
    """The microseconds since 1970 (UTC) of a time as the log writes it (``utc_iso``; any ISO 8601 time is
    read, one without an offset as UTC, and a year of fewer than four digits as the earliest logs wrote one
    before the year 1000)."""
    text = iso[:-1] if iso.endswith(("Z", "z")) else iso
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        year, dash, rest = text.partition("-")
        if not (dash and year.isdigit() and len(year) < 4):
            raise
        when = datetime.fromisoformat(f"{year:0>4}-{rest}")
    offset = when.utcoffset()
    if offset is not None:
        when = when.replace(tzinfo=None) - offset
    return (when - _EPOCH) // _MICRO


def iso(us: int) -> str:
    """The log's text (``utc_iso``) of a time given in microseconds since 1970 (UTC): ``micros``'s inverse."""
    days, rest = divmod(us, _DAY)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date.fromordinal(_EPOCH_DAY + days).isoformat()}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:06d}Z"
