"""Formats learned from the data: the countries whose phone numbers customers write nationally.

A phone number written in national form (``07887 899111``) is read in the configured
``default_region``. A business whose customers live in several countries sees most of them in
international form too (``+44 7887 899111``), so the data says which other countries matter: once a
country holds at least ``LEARN_MIN`` distinct numbers and ``LEARN_SHARE`` of all numbers seen, it is
*learned* at the start of the next epoch (``resolver.epochs``: a ``phone_region_learned`` decision, so
replay learns it at the same point), and from then on a national number that cannot be the default region's but is a valid number of a learned country
is read as that country's (learned countries are tried in the order they were learned).

Numbers decided before a country was learned are not re-read.
"""

from __future__ import annotations

from typing import Any, Optional

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

LEARN_MIN = 20  # distinct numbers of a country before it is learned
LEARN_SHARE = 0.05  # and its share of all distinct numbers seen


def region_of(value: str) -> Optional[str]:
    """The main region of an E.164 number's country code (``+447887899111`` -> ``GB``), or None."""
    if not value.startswith("+"):
        return None
    for n in (1, 2, 3):
        regions = COUNTRY_CODE_TO_REGION_CODE.get(int(value[1:1 + n])) if value[1:1 + n].isdigit() else None
        if regions:
            return regions[0] if regions[0] != "001" else None  # (001: non-geographic numbers)
    return None


def fold_number(st: Any, idx: int, value: str) -> None:
    """Counts a phone number node the first time it is seen."""
    if idx in st.phone_counted:
        return
    st.phone_counted.add(idx)
    st.phone_total += 1
    region = region_of(value)
    if region is not None:
        st.phone_regions[region] = st.phone_regions.get(region, 0) + 1


def learnable(st: Any, region: Optional[str], default: Optional[str]) -> Optional[dict[str, Any]]:
    """The evidence for learning ``region`` now (``numbers``, ``share``), or None."""
    if region is None or region == default or region in st.learned_regions:
        return None
    numbers = st.phone_regions.get(region, 0)
    if numbers < LEARN_MIN or numbers < LEARN_SHARE * st.phone_total:
        return None
    return {"numbers": numbers, "share": round(numbers / st.phone_total, 4)}
