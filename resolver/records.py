"""An event's attribute record for probabilistic matching: canonical fields and blocking keys.

A pure function of the attribute values, memoized (the cache changes speed, not results).
"""

from __future__ import annotations

from typing import Optional

from resolver.matching import RECORD_FIELDS, AttributeRecord, blocking_keys

RECORD_CACHE_SIZE = 250_000


class RecordMaker:
    def __init__(self) -> None:
        self._cache: dict[tuple[Optional[str], ...], tuple[Optional[AttributeRecord], list[str]]] = {}

    def __call__(self, attributes: dict[str, str]) -> Optional[tuple[AttributeRecord, list[str]]]:
        """The record and its blocking keys, or None when the attributes give nothing to match on."""
        values = tuple(attributes.get(f) for f in RECORD_FIELDS)
        hit = self._cache.get(values)
        if hit is None:
            if len(self._cache) >= RECORD_CACHE_SIZE:
                self._cache.clear()
            rec = AttributeRecord(*values)
            keys = blocking_keys(rec)
            hit = self._cache[values] = (rec, keys) if keys else (None, [])
        return hit if hit[0] is not None else None  # type: ignore[return-value]
