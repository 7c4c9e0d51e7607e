"""Event times as integers: microseconds since 1970-01-01 UTC.

The log writes an event's time as fixed-width UTC text (``resolver.ids.utc_iso``: ``2025-03-07T14:03:11.000000Z``),
whose string order is time order. The views keep the number that text names instead: 8 bytes in an array where
a string costs 76 and an object, in the same order, and written back as the same text where it is shown.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)


def micros(text: str) -> int:
    """The microseconds since 1970 (UTC) of an ISO 8601 time (``Z``, an offset, or none: UTC). Raises
    ValueError (or OverflowError) for text that is not one."""
    when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - _EPOCH) // _MICRO


def logged_micros(text: str) -> int:
    """``micros`` of a time the log holds; the earliest logs wrote a year before 1000 with fewer than four
    digits (``999-05-01T...``), read as the same instant."""
    try:
        return micros(text)
    except ValueError:
        year, dash, rest = text.partition("-")
        if not (dash and year.isdigit() and len(year) < 4):
            raise
        return micros(f"{year:0>4}-{rest}")


def iso(us: int) -> str:
    """The log's text (``utc_iso``) of a time given in microseconds since 1970 (UTC): ``micros``'s inverse."""
    days, rest = divmod(us, _DAY)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date.fromordinal(_EPOCH_DAY + days).isoformat()}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:06d}Z"
