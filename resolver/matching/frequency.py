"""Term frequencies: agreeing on a rare name is stronger evidence than agreeing on a common one."""

from __future__ import annotations

import math
from typing import Any

from resolver.matching.model import DEPENDENT_FIELDS, MatchModel

# Fields whose exact agreement is weighed by how common the agreed value is.
FREQUENCY_FIELDS: tuple[str, ...] = ("first_name", "last_name", "city")
# Pseudo-records at the model's u: while few records are known the adjustment stays near zero.
FREQUENCY_PSEUDO_RECORDS = 1000.0
# The largest adjustment either way, in bits (a value seen once is not proof of identity).
MAX_FREQUENCY_ADJUSTMENT = 6.0


def frequency_values(record: Any) -> list[tuple[str, str]]:
    """The ``(field, value)`` pairs of an attribute record whose counts frequency adjustments read."""
    return [(f, v) for f in FREQUENCY_FIELDS if (v := getattr(record, f)) is not None]


def frequency_adjustment(model: "MatchModel", field: str, count: int, total: int,
                         postcode_agrees: bool = False) -> float:
    """The bits to add to an exact agreement on a value that ``count`` of ``total`` known records hold:
    ``log2(u / u_value)``, where u is the model's chance that two random records agree exactly on the
    field and ``u_value`` the value's share among known records, smoothed towards u by
    ``FREQUENCY_PSEUDO_RECORDS`` and bounded by ``MAX_FREQUENCY_ADJUSTMENT`` (Splink's term-frequency
    adjustment, from counts the resolver keeps as records arrive). A town agreeing where the postcodes
    agree is implied by them: no adjustment then."""
    if field in DEPENDENT_FIELDS:
        if postcode_agrees:
            return 0.0
        u = model.u_apart[field]["exact"]
    else:
        u = model.u[field]["exact"]
    u_value = (count + FREQUENCY_PSEUDO_RECORDS * u) / (total + FREQUENCY_PSEUDO_RECORDS)
    bits = math.log2(u / u_value)
    return max(-MAX_FREQUENCY_ADJUSTMENT, min(MAX_FREQUENCY_ADJUSTMENT, bits))
