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

A name on an order may be its recipient's (a present sent to someone else), so an event of a *delivery*
type (``ResolverConfig.delivery_event_types``) gives a *hearsay* trait, marked by a leading ``~``: it
counts as another person using the identifier only once named ``HEARSAY_SUPPORT`` times (never as a
minority), it makes no conflict between profiles, and it does not say who the identifier's holder is
(``names``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Optional

from resolver.matching import canonical_first_name, canonical_name, dates_compatible, first_names_compatible
from resolver.matching.compatibility import generation_apart

DOB = "date_of_birth"  # the kinds, named as the attributes they come from (and the max_cooccurring keys)
FIRST_NAME = "first_name"
KINDS = (DOB, FIRST_NAME)
WHAT = {DOB: "dates of birth", FIRST_NAME: "first names"}
# Dates of birth judged by the dates alone, no names vouching for a mistyped one: the matcher's veto
DATES_ALONE = "dates_alone"
# Events that surely name a person as one of an identifier's users: a date of birth is rarely anyone
# else's, a name on an order may be the recipient's.
SUPPORT = {DOB: 1, FIRST_NAME: 2}
MINORITY = 3  # fewer events than SUPPORT count when the person named most has at most this many times as many
HEARSAY = "~"  # marks the trait of a delivery event
HEARSAY_SUPPORT = 2  # delivery events that name a person before they count as one of the identifier's users


def event_traits(attributes: Mapping[str, Any], dates: bool, names: bool, hearsay: bool = False) -> tuple[str, ...]:
    """The trait of an event's normalized attributes (``Normalizer.attributes``), with its date of
    birth when ``dates`` and its names when ``names``; empty when that leaves nothing to tell by.
    ``hearsay``: the event is of a delivery type (its names may be a recipient's)."""
    dob = attributes.get("date_of_birth") if dates else None
    first = attributes.get("first_name") if names else None
    if not dob and not first:
        return ()
    found = _trait(dob or "", first, attributes.get("last_name") if first else None)
    return (HEARSAY + found[0],) if hearsay and found else found


def direct(traits: Iterable[str]) -> list[str]:
    """The traits that are not hearsay."""
    return [t for t in traits if t[0] != HEARSAY]


@lru_cache(maxsize=65_536)
def _trait(dob: str, first: Optional[str], last: Optional[str]) -> tuple[str, ...]:
    first = canonical_first_name(first) or ""
    if not dob and not first:
        return ()
    last = (canonical_name(last) or "") if first else ""
    return (f"{dob}|{first}|{last}",)


def _parts(trait: str) -> tuple[str, str, str]:
    dob, first, last = (trait[1:] if trait[0] == HEARSAY else trait).split("|")
    return dob, first, last


def _dates_differ(a: str, b: str) -> bool:
    """Two people by their dates of birth: both known and not compatible, unless the full names agree
    (first names compatible, the same surname) and the dates are less than a generation apart: then one
    of them is mistyped (a strong sign against, outweighed by the name on identifiers they share); a
    parent and a child of the same name stay two."""
    if not _dates_apart(a, b):
        return False
    da, fa, la = _parts(a)
    db, fb, lb = _parts(b)
    if la and la == lb and fa and fb and first_names_compatible(fa, la, fb, lb):
        return generation_apart(da, db)
    return True


def _dates_apart(a: str, b: str) -> bool:
    """Both dates of birth known and not ``dates_compatible``."""
    da, db = _parts(a)[0], _parts(b)[0]
    return bool(da and db) and not dates_compatible(da, db)


def _names_differ(a: str, b: str) -> bool:
    da, fa, la = _parts(a)
    db, fb, lb = _parts(b)
    if not fa or not fb or first_names_compatible(fa, la or None, fb, lb or None):
        return False
    return not (da and db and dates_compatible(da, db))


_DIFFER: dict[str, Callable[[str, str], bool]] = {DOB: _dates_differ, FIRST_NAME: _names_differ,
                                                  DATES_ALONE: _dates_apart}


def carry(traits: Iterable[str], which: str) -> list[str]:
    """The traits that carry ``which`` (a date of birth, a first name)."""
    i = 1 if which == FIRST_NAME else 0
    return [t for t in traits if _parts(t)[i]]


@lru_cache(maxsize=262_144)
def compatible(a: str, b: str, which: str) -> bool:
    """Whether two traits may be one person's, judged by ``which`` (pure: memoized)."""
    return a == b or not _DIFFER[which](a, b)


def conflict(a: Iterable[str], b: Iterable[str], kinds: Iterable[str] = KINDS) -> str | None:
    """The first of ``kinds`` by which the two sets are two people: both hold traits that carry it and
    no trait of one may be the same person as any of the other. None when they may be one. Hearsay
    traits are left out."""
    a, b = direct(a), direct(b)
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
    any trait of one already counted is that person's (one that fits two joins them, a bare initial
    excepted); a person counts once named ``SUPPORT[which]`` times, or a
    ``MINORITY``-th as often as the person named most; a person named only by hearsay, once named
    ``HEARSAY_SUPPORT`` times."""
    people: list[list[Any]] = []  # [traits, events, named other than by hearsay]
    for t in sorted(carry(counts, which), key=lambda t: (t[0] == HEARSAY, t)):
        # the person of any of their spellings ("camille", "camille rousseau", "rousseau"); a spelling
        # that fits several people joins them, unless it is a bare initial (J fits John and James)
        fits = [p for p in people if any(compatible(t, u, which) for u in p[0])]
        if not fits:
            people.append([[t], counts[t], t[0] != HEARSAY])
            continue
        if len(fits) > 1 and which == FIRST_NAME and len(_parts(t)[1]) <= 1:
            fits = fits[:1]
        first = fits[0]
        for p in fits[1:]:
            first[0].extend(p[0])
            first[1] += p[1]
            first[2] = first[2] or p[2]
            people.remove(p)
        first[0].append(t)
        first[1] += counts[t]
        first[2] = first[2] or t[0] != HEARSAY
    need = SUPPORT[which]
    top = max((n for _, n, _ in people), default=0)
    return sum(1 for _, n, plain in people
               if ((n >= need or n * MINORITY >= top) if plain else n >= max(need, HEARSAY_SUPPORT)))


def shown(traits: Iterable[str], which: str) -> list[str]:
    """The values of ``which`` in the traits, as a person reads them (``1985-03-07``, ``tony chen``)."""
    out = set()
    for t in carry(traits, which):
        dob, first, last = _parts(t)
        out.add(dob if which == DOB else " ".join(p for p in (first, last) if p))
    return sorted(out)


def same_person(a: Iterable[str], b: Iterable[str]) -> Optional[str]:
    """The person both sets name with more than a first name (compatible first names and the same
    surname, or the same date of birth), as a person reads it; None if there is none. Hearsay is left out."""
    for x in sorted(direct(a)):
        dx, fx, lx = _parts(x)
        if not fx:
            continue
        for y in sorted(direct(b)):
            dy, fy, ly = _parts(y)
            if not fy or not ((lx and lx == ly) or (dx and dx == dy)):
                continue
            if first_names_compatible(fx, lx or None, fy, ly or None) and not _dates_differ(x, y):
                return " ".join(p for p in (fx, lx, dx if dx == dy else "") if p)
    return None


def names(trait: str, holder: Iterable[str]) -> bool:
    """Whether ``trait`` names the person the ``holder`` traits describe: a first name compatible with
    one of theirs (not merely unknown), and no date of birth that differs from all of theirs."""
    plain = trait[1:] if trait[0] == HEARSAY else trait
    holder = direct(holder)
    first = _parts(plain)[1]
    if not first or conflict([plain], holder, (DOB,)) is not None:
        return False
    _, f, l = _parts(plain)
    for t in holder:
        _, fo, lo = _parts(t)
        if fo and first_names_compatible(f, l or None, fo, lo or None):
            return True
    return False
