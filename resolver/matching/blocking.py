"""Blocking: the keys under which a record is indexed, so that candidates are found by key look-up
instead of a scan, and the candidate pairs those keys make.

Keys pair two fields (surname Soundex, first-name nickname group, date of birth, postcode, city,
address), so a typo or a gap in one field leaves others to find the record by. Dates in keys ignore a
day/month swap. ``BLOCKING_RULES`` names each key prefix and the fields its records agree on.
"""

from __future__ import annotations

from itertools import combinations
from typing import Optional, Sequence

from resolver.matching.canonical import AttributeRecord
from resolver.matching.comparisons import _ccompare
from resolver.matching.names import NICKNAME_GROUPS, _NICK_INDEX, soundex


def _first_name_keys(first: str) -> list[str]:
    groups = _NICK_INDEX.get(first)
    if groups:
        return [NICKNAME_GROUPS[g][0] for g in groups]
    code = soundex(first)
    return [code] if code else []


def _dob_key(dob: str) -> str:
    """The date with day and month in numeric order, so a swap lands in the same block."""
    y, m, d = dob[:4], dob[5:7], dob[8:10]
    lo, hi = sorted((m, d))
    return f"{y}-{lo}-{hi}"


def blocking_keys(record: AttributeRecord) -> list[str]:
    """Index keys of a record, sorted and unique. Two records are candidates when they share a key.

    Each key pairs two fields, so that a typo or a gap in any one field leaves other keys to find the
    record by: surname + date of birth, first name + date of birth, surname + postcode, surname + city,
    first name + postcode, first name + city, date of birth + postcode, date of birth + city, address +
    postcode, first name + surname, and the first letters of both names (three, or two with the year
    of birth). Names are keyed by Soundex (first names also by nickname group), dates ignore a day/month
    swap."""
    keys: set[str] = set()
    first = record.first_name
    surname = soundex(record.last_name)
    first_sound = soundex(first)
    last = surname or first_sound  # one name alone may be a surname in the first-name field
    dob = _dob_key(record.date_of_birth) if record.date_of_birth else None
    postcode, city = record.postcode, record.city
    first_keys = _first_name_keys(first) if first else []
    if last:
        if dob:
            keys.add(f"ln_dob:{last}:{dob}")
        if postcode:
            keys.add(f"ln_pc:{last}:{postcode}")
        if city:
            keys.add(f"ln_city:{last}:{city}")
        # names entered the other way round: the first name's code also stands in for the surname's
        if first_sound and first_sound != last:
            if dob:
                keys.add(f"ln_dob:{first_sound}:{dob}")
            if postcode:
                keys.add(f"ln_pc:{first_sound}:{postcode}")
    if first_sound:  # (one key each: a name in many nickname groups would make many)
        if postcode:
            keys.add(f"fn_pc:{first_sound}:{postcode}")
        if city:
            keys.add(f"fn_city:{first_sound}:{city}")
    for fk in first_keys:
        if dob:
            keys.add(f"fn_dob:{fk}:{dob}")
        if surname and (dob or postcode or record.address or city):
            # the name alone, for records whose date or postcode is mistyped; only with something else
            # to compare on, and capped per key like every block (a common name fills it quickly)
            keys.add(f"fn_ln:{fk}:{surname}")
    if dob:
        if postcode:
            keys.add(f"dob_pc:{dob}:{postcode}")
        if city:
            keys.add(f"dob_city:{dob}:{city}")
    if first and record.last_name:
        # typos late in both names: their first letters (with the year of birth, for a mistyped day or
        # month; without it, for a record without a date or with a mistyped one)
        if record.date_of_birth:
            keys.add(f"fl2:{first[:2]}:{record.last_name[:2]}:{record.date_of_birth[:4]}")
        keys.add(f"fl3:{first[:3]}:{record.last_name[:3]}")
    if record.address and postcode:
        keys.add(f"addr_pc:{record.address}:{postcode}")
    return sorted(keys)


# Blocking rules: each key prefix and the fields its records agree on by construction.
BLOCKING_RULES: dict[str, tuple[str, ...]] = {
    "ln_dob": ("last_name", "date_of_birth"),
    "fn_dob": ("first_name", "date_of_birth"),
    "ln_pc": ("last_name", "postcode"),
    "ln_city": ("last_name", "city"),
    "fn_pc": ("first_name", "postcode"),
    "fn_city": ("first_name", "city"),
    "dob_pc": ("date_of_birth", "postcode"),
    "dob_city": ("date_of_birth", "city"),
    "addr_pc": ("address", "postcode"),
    "fn_ln": ("first_name", "last_name"),
    "fl2": ("first_name", "last_name"),
    "fl3": ("first_name", "last_name"),
}


def candidate_pairs_by_rule(records: Sequence[AttributeRecord], max_block_size: int,
                            keys: Optional[Sequence[list[str]]] = None) -> dict[str, list[tuple[int, int]]]:
    """Per rule of ``BLOCKING_RULES``, the index pairs ``(i, j)``, ``i < j``, of records sharing a key of that
    rule, as the engine would find them: a key holds at most ``max_block_size`` records (the first ones).
    Sorted, without repeats. ``keys``: each record's ``blocking_keys``, if already known."""
    n = len(records)
    return {rule: [divmod(code, n) for code in codes]
            for rule, codes in candidate_codes_by_rule(records, max_block_size, keys).items()}


def candidate_codes_by_rule(records: Sequence[AttributeRecord], max_block_size: int,
                            keys: Optional[Sequence[list[str]]] = None) -> dict[str, list[int]]:
    """``candidate_pairs_by_rule`` with each pair ``(i, j)`` as the number ``i * len(records) + j`` (sorted
    as the pairs are: a set and a sort of numbers cost a fraction of those of tuples)."""
    n = len(records)
    blocks: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        for key in (keys[i] if keys is not None else blocking_keys(rec)):
            block = blocks.setdefault(key, [])
            if len(block) < max_block_size:
                block.append(i)
    by_rule: dict[str, list[list[int]]] = {rule: [] for rule in BLOCKING_RULES}
    for key, block in blocks.items():
        if len(block) >= 2:
            by_rule[key.partition(":")[0]].append(block)
    return {rule: block_pair_codes(rule_blocks, n) for rule, rule_blocks in by_rule.items()}


def block_pair_codes_python(blocks: list[list[int]], n: int) -> list[int]:
    """The codes ``i * n + j`` of every pair ``i``, ``j`` (``i`` before ``j``) of each block, sorted, without
    repeats. (A block's records are in index order: each pair comes as (i, j) with i < j.)"""
    found: set[int] = set()
    for block in blocks:
        found.update([x * n + y for x, y in combinations(block, 2)])
    return sorted(found)


def union_codes_python(lists: list[list[int]]) -> list[int]:
    """The numbers of the lists, sorted, without repeats."""
    return sorted(set().union(*lists))


def block_pair_codes(blocks: list[list[int]], n: int) -> list[int]:
    """``block_pair_codes_python``, compiled where it was built and the codes fit in 64 bits."""
    if _ccompare is None or n > _COMPILED_MAX_RECORDS:
        return block_pair_codes_python(blocks, n)
    return _ccompare.block_pair_codes(blocks, n)


def union_codes(lists: list[list[int]], n: int) -> list[int]:
    """``union_codes_python`` of pair codes of ``n`` records, compiled where ``block_pair_codes`` is."""
    if _ccompare is None or n > _COMPILED_MAX_RECORDS:
        return union_codes_python(lists)
    return _ccompare.union_codes(lists)


_COMPILED_MAX_RECORDS = 3_000_000_000  # (the compiled code's pair codes, below n * n, are 64-bit integers)
