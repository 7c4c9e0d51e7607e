"""Seeded random pairs of records: the pairs u is estimated from (``estimate_u``, and ``train_model``'s u of
the address and the city within a postcode).

A pair is drawn with ``random.Random.randrange`` as the two loops below draw it; they are the definition. The
compiled draws (``_ccompare.random_pairs`` and ``group_pairs``) take the generator's 32-bit words in bulk and
make the same pairs from them, without a Python call per draw; they are used only where they draw what this
interpreter's ``randrange`` draws (checked once, on import), else the loops are. Either way the generator is
spent: a caller makes one for these draws alone.

Training also reads a seeded sample of the candidate pairs where they are many (``sample_sorted``: what
``random.Random.sample`` draws, sorted; compiled in the same way, and the generator left where the Python call
leaves it, since one generator draws every rule's sample in turn).

Pairs come as the codes ``i * n + j`` of ``compare_codes`` (record ``i`` compared with record ``j``), in an
``array('q')``: 8 bytes a pair.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from typing import Optional, Sequence

from resolver.matching.comparisons import _ccompare

_MAX_RECORDS = 3_000_000_000  # (the compiled draws' pair codes, below n * n, are 64-bit integers)


def random_pair_codes_python(rng: random.Random, n: int, count: int) -> array:
    """``count`` pairs of two different records of ``n``: ``i = randrange(n)``, then ``j = randrange(n - 1)``,
    one more if it is not below ``i``."""
    draw = rng.randrange
    out = array("q")
    for _ in range(count):
        i = draw(n)
        j = draw(n - 1)
        if j >= i:
            j += 1
        out.append(i * n + j)
    return out


def group_pair_codes_python(rng: random.Random, groups: Sequence[Sequence[int]], n: int, count: int) -> array:
    """``count`` pairs of two different records of one of ``groups`` (lists of record numbers below ``n``,
    each of at least two): a pair number below the groups' number of pairs, the group it falls in, then two
    records of that group as ``random_pair_codes_python`` draws them."""
    cumulative: list[int] = []
    running = 0
    for g in groups:
        running += len(g) * (len(g) - 1) // 2
        cumulative.append(running)
    draw = rng.randrange
    out = array("q")
    for _ in range(count):
        g = groups[bisect_right(cumulative, draw(running))]
        i = draw(len(g))
        j = draw(len(g) - 1)
        if j >= i:
            j += 1
        out.append(g[i] * n + g[j])
    return out


def random_pair_codes(rng: random.Random, n: int, count: int) -> array:
    """``random_pair_codes_python``, compiled where it draws the same."""
    if _DRAWS is None or n > _MAX_RECORDS:
        return random_pair_codes_python(rng, n, count)
    return array("q", _DRAWS.random_pairs(rng.getrandbits, n, count))


def group_pair_codes(rng: random.Random, groups: Sequence[Sequence[int]], n: int, count: int) -> array:
    """``group_pair_codes_python``, compiled where it draws the same."""
    if _DRAWS is None or n > _MAX_RECORDS:
        return group_pair_codes_python(rng, groups, n, count)
    members = array("q")
    ends = array("q")
    for g in groups:
        members.extend(g)
        ends.append(len(members))
    return array("q", _DRAWS.group_pairs(rng.getrandbits, members, ends, n, count))


def sample_sorted_python(rng: random.Random, population: list[int], k: int) -> list[int]:
    """``sorted(rng.sample(population, k))``: the definition of ``sample_sorted``."""
    return sorted(rng.sample(population, k))


def _sample_pools(n: int, k: int) -> bool:
    """Whether ``random.Random.sample`` draws ``k`` of ``n`` by shuffling a copy of the places (else by drawing
    places again until one was not chosen before): its own rule, the same arithmetic."""
    setsize = 21
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    return n <= setsize


def sample_sorted(rng: random.Random, population: list[int], k: int) -> list[int]:
    """``sample_sorted_python`` of a list of ints from 0 below 2**63, compiled where it draws the same (checked
    once, on import); either way ``rng`` is left where the Python call leaves it. (The compiled draws read the
    generator's words in bulk: it is put back as it was, then moved on by the words the sample took.)"""
    if _SAMPLES is None or type(population) is not list:
        return sample_sorted_python(rng, population, k)
    return _sample_sorted_with(_SAMPLES, rng, population, k)


def _sample_sorted_with(module, rng: random.Random, population: list[int], k: int) -> list[int]:
    state = rng.getstate()
    out, taken = module.sample_codes(rng.getrandbits, population, k, _sample_pools(len(population), k))
    rng.setstate(state)
    if taken:
        rng.getrandbits(32 * taken)
    return out


# Bounds at which a draw takes another number of words (1, 2, powers of two and their neighbours, past 32 bits).
_SELF_CHECK = (1, 2, 3, 5, 7, 1000, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1,
               10 ** 12, 2 ** 62 + 1, 2 ** 63 - 1)


def _draws_as_python(module) -> bool:
    """Whether the compiled draws are this interpreter's ``randrange`` (a Python whose ``random`` draws
    otherwise, or a machine whose words come in another order, uses the loops)."""
    try:
        for seed in (0, 1, 2 ** 40 + 7):
            for bound in _SELF_CHECK:
                rng = random.Random(seed)
                want = [rng.randrange(bound) for _ in range(40)]
                if list(array("q", module.draws(random.Random(seed).getrandbits, bound, 40))) != want:
                    return False
        return True
    except Exception:  # pragma: no cover (a build from before the draws)
        return False


_DRAWS: Optional[object] = _ccompare if _ccompare is not None and _draws_as_python(_ccompare) else None
COMPILED = _DRAWS is not None


def _samples_as_python(module) -> bool:
    """Whether the compiled samples are this interpreter's ``random.Random.sample`` sorted, and leave the
    generator where it does (both ways of drawing, bounds of one word and of two)."""
    try:
        for seed, n, k in ((0, 10, 3), (1, 1000, 999), (2, 5000, 40), (3, 2 ** 33 // 2 ** 20, 6),
                           (4, 3000, 2000), (5, 70_000, 100), (6, 7, 0)):
            population = [(i * 7919) % (2 ** 40) + (i % 3) * 2 ** 35 for i in range(n)]
            want_rng, got_rng = random.Random(seed), random.Random(seed)
            want = sample_sorted_python(want_rng, population, k)
            if (_sample_sorted_with(module, got_rng, population, k) != want
                    or got_rng.random() != want_rng.random()):
                return False
        return True
    except Exception:  # pragma: no cover (a build from before the samples)
        return False


_SAMPLES: Optional[object] = (_DRAWS if _DRAWS is not None and hasattr(_DRAWS, "sample_codes")
                              and _samples_as_python(_DRAWS) else None)
