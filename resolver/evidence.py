"""A link's evidence, shared: each field's level and weight (``fuzzy.evidence``), one object per distinct value.

Every probable link and possible match holds its evidence, and the log's views keep it for ``idres explain``:
a dict per field per link. Equal field entries (the same level, weight and frequency adjustment) are one
object, and so are equal whole evidences, shared by the decisions that hold them (read only, as every decision
is once made), whether the resolver made them or the views read them back from the log. -0.0 counts apart from
0.0 (it is written "-0.0"). The tables are bounded: cleared when full.
"""

from __future__ import annotations

import math
from typing import Any, Optional

SHARED = 1 << 16  # entries (and evidences) held at most

_entries: dict[tuple[str, str, float, Optional[float], float, float], dict[str, Any]] = {}
_fields: dict[tuple[int, ...], dict[str, dict[str, Any]]] = {}
_made: dict[int, dict[str, dict[str, Any]]] = {}  # id -> each evidence of ``_fields`` (found as itself at once)


def entry(f: str, level: str, weight: float, adjustment: Optional[float]) -> dict[str, Any]:
    """The entry of field ``f``: ``{"level", "weight"}``, and ``"frequency_adjustment"`` unless None."""
    key = (f, level, weight, adjustment, math.copysign(1.0, weight),
           0.0 if adjustment is None else math.copysign(1.0, adjustment))
    found = _entries.get(key)
    if found is None:
        if len(_entries) >= SHARED:
            _entries.clear()
            _fields.clear()
            _made.clear()
        found = {"level": level, "weight": weight}
        if adjustment is not None:
            found["frequency_adjustment"] = adjustment
        _entries[key] = found
    return found


def fields_of(entries: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The evidence of these (field, ``entry``) pairs, in their order."""
    key = tuple(id(e) for _, e in entries)  # (entries are held by ``_entries`` while this key is in ``_fields``)
    found = _fields.get(key)
    if found is None:
        if len(_fields) >= SHARED:
            _fields.clear()
            _made.clear()
        found = _fields[key] = dict(entries)
        _made[id(found)] = found
    return found


def shared(fields: Any) -> Any:
    """Evidence read back from the log, as the shared object equal to it (the object itself, when it is one:
    what the resolver made, folded as it is decided); anything else (an entry of another shape, a weight that
    is not a float) as it is."""
    if not isinstance(fields, dict) or _made.get(id(fields)) is fields:
        return fields
    entries = []
    for f, e in fields.items():
        if not isinstance(e, dict):
            return fields
        level, weight, adjustment = e.get("level"), e.get("weight"), e.get("frequency_adjustment")
        if not isinstance(level, str) or type(weight) is not float or \
                (adjustment is not None and type(adjustment) is not float) or len(e) != 2 + (adjustment is not None):
            return fields
        entries.append((f, entry(f, level, weight, adjustment)))
    return fields_of(entries)
