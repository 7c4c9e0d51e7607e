"""Person traits: what an event says about *who* used its identifiers, and whether two such statements
can be one person.

An event's trait is one string, so that sets of them are cheap to keep per identifier and per profile:
its date of birth, canonical first name and canonical surname, ``|``-separated, each empty when unknown
(``1985-03-07|tony|chen``, ``|tony|``). An event with neither a date of birth nor a first name has none.

Two traits are judged by kind, each on the traits that carry it:
- dates of birth: two people when both are known and not compatible (equal, swapped, a typo or days
  apart: ``matching.dates_compatible``);
- first names: two people when both are known and not compatible (equal, variants, nicknames, a short
  form, alike in sound, or the names entered the other way round: ``matching.first_names_compatible``),
  unless both dates of birth are known and compatible: the legal and the used name of one person
  (Hao / Tony) share a birthday, and so do twins, whom names alone cannot tell from them.

An identifier seen with traits of more people than its limit is used by several people (a family
mailbox, a household landline, a shared tablet). A person counts there once the identifier's events
name them ``SUPPORT`` times, or about as often as anyone else (a third as often as the person named most):
one order with a gift's recipient's name on it does not make a mailbox a family's, but a landline on
which each of two people called once is theirs. A link that would bring traits of two people into one
profile would join them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Optional

from resolver.matching import canonical_first_name, canonical_name, dates_compatible, first_names_compatible

DOB = "date_of_birth"  # the kinds, named as the attributes they come from (and the max_cooccurring keys)
FIRST_NAME = "first_name"
KINDS = (DOB, FIRST_NAME)
WHAT = {DOB: "dates of birth", FIRST_NAME: "first names"}
# Events that surely name a person as one of an identifier's users: a date of birth is rarely anyone
# else's, a name on an order may be the recipient's.
SUPPORT = {DOB: 1, FIRST_NAME: 2}
MINORITY = 3  # fewer events than SUPPORT count when the person named most has at most this many times as many


def event_traits(attributes: Mapping[str, Any], dates: bool, names: bool) -> tuple[str, ...]:
    """The trait of an event's normalized attributes (``Normalizer.attributes``), with its date of
    birth when ``dates`` and its names when ``names``; empty when that leaves nothing to tell by."""
    dob = attributes.get("date_of_birth") if dates else None
    first = attributes.get("first_name") if names else None
    if not dob and not first:
        return ()
    return _trait(dob or "", first, attributes.get("last_name") if first else None)


@lru_cache(maxsize=65_536)
def _trait(dob: str, first: Optional[str], last: Optional[str]) -> tuple[str, ...]:
    first = canonical_first_name(first) or ""
    if not dob and not first:
        return ()
    last = (canonical_name(last) or "") if first else ""
    return (f"{dob}|{first}|{last}",)


def _parts(trait: str) -> tuple[str, str, str]:
    dob, first, last = trait.split("|")
    return dob, first, last


def _dates_differ(a: str, b: str) -> bool:
    da, db = _parts(a)[0], _parts(b)[0]
    return bool(da and db) and not dates_compatible(da, db)


def _names_differ(a: str, b: str) -> bool:
    da, fa, la = _parts(a)
    db, fb, lb = _parts(b)
    if not fa or not fb or first_names_compatible(fa, la or None, fb, lb or None):
        return False
    return not (da and db and dates_compatible(da, db))


_DIFFER: dict[str, Callable[[str, str], bool]] = {DOB: _dates_differ, FIRST_NAME: _names_differ}


def carry(traits: Iterable[str], which: str) -> list[str]:
    """The traits that carry ``which`` (a date of birth, a first name)."""
    i = 0 if which == DOB else 1
    return [t for t in traits if _parts(t)[i]]


def compatible(a: str, b: str, which: str) -> bool:
    """Whether two traits may be one person's, judged by ``which``."""
    return a == b or not _DIFFER[which](a, b)


def conflict(a: Iterable[str], b: Iterable[str], kinds: Iterable[str] = KINDS) -> str | None:
    """The first of ``kinds`` by which the two sets are two people: both hold traits that carry it and
    no trait of one may be the same person as any of the other. None when they may be one."""
    a, b = list(a), list(b)
    if not a or not b:
        return None
    for which in kinds:
        xa, xb = carry(a, which), carry(b, which)
        if xa and xb and not any(compatible(x, y, which) for x in xa for y in xb):
            return which
    return None


def distinct(counts: Mapping[str, int], which: str) -> int:
    """How many people the traits of an identifier's events describe, judged by ``which``: ``counts``
    holds how many events gave each trait. Taken in sorted order, a trait that may be the same person as
    one already counted is that person's; a person counts once named ``SUPPORT[which]`` times, or a
    ``MINORITY``-th as often as the person named most."""
    people: list[list[Any]] = []  # [first trait, events]
    for t in sorted(carry(counts, which)):
        for p in people:
            if compatible(t, p[0], which):
                p[1] += counts[t]
                break
        else:
            people.append([t, counts[t]])
    need = SUPPORT[which]
    top = max((n for _, n in people), default=0)
    return sum(1 for _, n in people if n >= need or n * MINORITY >= top)


def shown(traits: Iterable[str], which: str) -> list[str]:
    """The values of ``which`` in the traits, as a person reads them (``1985-03-07``, ``tony chen``)."""
    out = set()
    for t in carry(traits, which):
        dob, first, last = _parts(t)
        out.add(dob if which == DOB else " ".join(p for p in (first, last) if p))
    return sorted(out)
