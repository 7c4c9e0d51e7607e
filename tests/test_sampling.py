"""The seeded random pairs u is estimated from (``resolver.matching.sampling``): the compiled draws are the
interpreter's ``random.Random.randrange`` draws, pair for pair, and the estimates made from them are the
definition's."""

from __future__ import annotations

import random
import shutil
import sysconfig
from array import array
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from resolver.matching import comparisons, estimation, sampling, training
from resolver.matching.comparisons import compare
from resolver.matching.model import default_model
from streams.synthetic import SyntheticConfig, generate_lines
from resolver.config import ResolverConfig
from resolver.matching import distinct_records
from resolver.normalize import Normalizer

ccompare = sampling._DRAWS
compiled = pytest.mark.skipif(ccompare is None, reason="the compiled draws were not built, or draw otherwise here")


@compiled
@given(st.integers(0, 2 ** 64), st.integers(1, 2 ** 63 - 1) | st.sampled_from(sampling._SELF_CHECK),
       st.integers(0, 3000))
@settings(max_examples=150, deadline=None)
def test_a_compiled_draw_is_randrange_s(seed, bound, count):
    rng = random.Random(seed)
    assert list(array("q", ccompare.draws(random.Random(seed).getrandbits, bound, count))) == \
        [rng.randrange(bound) for _ in range(count)]


@compiled
@given(st.integers(0, 2 ** 40), st.integers(2, 3_000_000_000) | st.sampled_from([2, 3, 4, 2 ** 16, 2 ** 31 + 1]),
       st.integers(0, 2500))
@settings(max_examples=120, deadline=None)
def test_random_pairs_are_the_definition_s(seed, n, count):
    got = sampling.random_pair_codes(random.Random(seed), n, count)
    assert got == sampling.random_pair_codes_python(random.Random(seed), n, count)
    assert all(code // n != code % n for code in got)


@compiled
@given(st.integers(0, 2 ** 40), st.lists(st.integers(2, 40), min_size=1, max_size=12), st.integers(0, 2000),
       st.randoms(use_true_random=False))
@settings(max_examples=120, deadline=None)
def test_pairs_within_groups_are_the_definition_s(seed, sizes, count, shuffle):
    n = sum(sizes) + 7
    numbers = list(range(n))
    shuffle.shuffle(numbers)
    groups, at = [], 0
    for size in sizes:
        groups.append(numbers[at:at + size])
        at += size
    got = sampling.group_pair_codes(random.Random(seed), groups, n, count)
    assert got == sampling.group_pair_codes_python(random.Random(seed), groups, n, count)
    group_of = {x: k for k, g in enumerate(groups) for x in g}
    assert all(group_of[code // n] == group_of[code % n] and code // n != code % n for code in got)


@compiled
def test_pairs_within_a_group_of_more_than_two_to_the_32_pairs_are_the_definition_s():
    # (a draw below the groups' total then takes two words of the generator)
    groups = [list(range(0, 100_000)), list(range(100_000, 100_003))]
    assert sum(len(g) * (len(g) - 1) // 2 for g in groups) > 2 ** 32
    got = sampling.group_pair_codes(random.Random(5), groups, 100_003, 3000)
    assert got == sampling.group_pair_codes_python(random.Random(5), groups, 100_003, 3000)


@compiled
def test_bad_arguments_are_refused():
    bits = random.Random(1).getrandbits
    for args, error in [((bits, 1, 5), ValueError), ((bits, 3_000_000_001, 5), ValueError),
                        ((bits, 10, -1), ValueError), ((None, 10, 5), TypeError)]:
        with pytest.raises(error):
            ccompare.random_pairs(*args)
    for members, ends, n, error in [(array("q", [0, 1, 2]), array("q", [1, 3]), 5, ValueError),  # a group of 1
                                    (array("q", [0, 9]), array("q", [2]), 5, ValueError),  # a number past n
                                    (array("q", [0, 1]), array("q", [3]), 5, ValueError),  # ends past the members
                                    (array("q"), array("q"), 5, ValueError),  # no group
                                    (array("i", [0, 1]), array("q", [2]), 5, TypeError),
                                    ([0, 1], array("q", [2]), 5, TypeError)]:
        with pytest.raises(error):
            ccompare.group_pairs(bits, members, ends, n, 5)

    for broken, error in [(lambda k: -1, OverflowError), (lambda k: "1", ValueError), (lambda k: 1 << (k + 8), OverflowError)]:
        with pytest.raises(error):
            ccompare.draws(broken, 10, 5)


def test_the_compiled_draws_are_used_where_a_compiler_is_found():
    # (a build whose draws differ from this interpreter's is left unused by the check on import: that must not
    # happen here, where they were written against it)
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler here: the Python definition is used")
    assert sampling.COMPILED and sampling._DRAWS is comparisons._ccompare


@compiled
def test_arrays_changed_while_drawing_are_not_read():
    # (the draws call getrandbits, Python code: what it does to the arrays given must not reach the draws)
    members, ends = array("q", [0, 1, 2, 3]), array("q", [4])
    rng = random.Random(0)

    def getrandbits(k):
        ends[0] = 4_000_000_000
        members[1] = 9
        return rng.getrandbits(k)

    got = array("q", ccompare.group_pairs(getrandbits, members, ends, 10, 3000))
    assert got == sampling.group_pair_codes_python(random.Random(0), [[0, 1, 2, 3]], 10, 3000)


def test_compiled_draws_that_differ_from_the_interpreter_s_are_not_used():
    class Reversed:  # (as on a machine whose words came the other way round)
        @staticmethod
        def draws(getrandbits, bound, count):
            return array("q", reversed([random.Random(0).randrange(bound) for _ in range(count)])).tobytes()

    assert not sampling._draws_as_python(Reversed)
    if ccompare is not None:
        assert sampling._draws_as_python(ccompare)


def _records(people: int, seed: int):
    events = []
    for line, person in generate_lines(SyntheticConfig(people=people, seed=seed)):
        if person is not None:
            events.append(orjson.loads(line))
    return distinct_records((e.get("attributes") or {} for e in events),
                            Normalizer(ResolverConfig()).attributes)


def test_vectors_are_counted_as_compared_in_the_pairs_order():
    records = _records(120, 4)
    n = len(records)
    codes = sampling.random_pair_codes_python(random.Random(3), n, 2000)
    codes.extend(codes[:300])  # (a pair drawn again counts again)
    want = Counter(compare(records[c // n], records[c % n]) for c in codes)
    got = estimation.count_vectors(records, codes)
    assert got == want and list(got) == list(want)
    small = estimation.count_vectors(tuple(records), codes, lambda v: v[0])
    assert list(small.items()) == list(Counter(v[0] for v in want.elements()).items())


@pytest.mark.parametrize("people,seed", [(150, 1), (400, 2)])
def test_estimates_from_the_compiled_draws_are_the_definition_s(people, seed, monkeypatch):
    records = _records(people, seed)
    model = default_model()
    both = []
    for draws in (ccompare, None):
        monkeypatch.setattr(sampling, "_DRAWS", draws)
        u = estimation.estimate_u(records, 5000, seed, model)
        both.append((u.to_dict(), training._conditional_u(records, 5000, seed, u).to_dict(),
                     training.train_model(records, seed=seed, pairs_sample=4000)[0].to_dict()))
    assert both[0] == both[1]
    assert both[0][0] != model.to_dict()  # (the draws were read)


samples = pytest.mark.skipif(sampling._SAMPLES is None, reason="the compiled samples were not built, or draw otherwise here")


@samples
@given(st.integers(0, 2 ** 64), st.lists(st.integers(0, 2 ** 63 - 1) | st.integers(0, 50), max_size=400),
       st.data())
@settings(max_examples=200, deadline=None)
def test_a_compiled_sample_is_the_interpreter_s_and_leaves_the_generator_where_it_does(seed, population, data):
    k = data.draw(st.integers(0, len(population)))
    want_rng, got_rng = random.Random(seed), random.Random(seed)
    want = sampling.sample_sorted_python(want_rng, population, k)
    assert sampling.sample_sorted(got_rng, population, k) == want
    assert [got_rng.getrandbits(40) for _ in range(3)] == [want_rng.getrandbits(40) for _ in range(3)]


@samples
@pytest.mark.parametrize("n,k", [(85, 6), (86, 6), (1_048_597, 100_000), (1_048_598, 100_000), (3, 3), (2 ** 20, 1)])
def test_both_ways_random_sample_draws_are_followed(n, k):
    # (sample shuffles a copy of the places up to a bound that depends on k, and draws places again above it)
    population = list(range(0, 3 * n, 3))
    want_rng, got_rng = random.Random(n), random.Random(n)
    assert sampling.sample_sorted(got_rng, population, k) == sampling.sample_sorted_python(want_rng, population, k)
    assert got_rng.random() == want_rng.random()
    assert sampling._sample_pools(n, k) == (n <= {6: 85, 100_000: 1_048_597, 3: 21, 1: 21}[k])


@samples
def test_bad_samples_are_refused():
    bits = random.Random(1).getrandbits
    for args, error in [((bits, [1, 2], 3, True), ValueError), ((bits, [1, 2], -1, False), ValueError),
                        ((bits, [1, -2], 1, True), ValueError), ((bits, (1, 2), 1, True), TypeError),
                        ((bits, [1, "2"], 1, True), TypeError), ((None, [1, 2], 1, True), TypeError)]:
        with pytest.raises(error):
            ccompare.sample_codes(*args)


def test_compiled_samples_that_differ_from_the_interpreter_s_are_not_used():
    class Unsorted:  # (as a build that drew the same places and forgot to sort them)
        @staticmethod
        def sample_codes(getrandbits, population, k, pool):
            rng = random.Random()
            rng.getrandbits = getrandbits
            return random.Random(0).sample(population, k), 0

    assert not sampling._samples_as_python(Unsorted)
    if sampling._SAMPLES is not None:
        assert sampling._samples_as_python(sampling._SAMPLES)


counting = pytest.mark.skipif(estimation._COUNT is None, reason="the compiled counting was not built")


@counting
@given(st.lists(st.integers(0, 2 ** 62), min_size=1, max_size=300, unique=True), st.data())
@settings(max_examples=150, deadline=None)
def test_places_are_counted_as_the_definition_counts_them(codes, data):
    codes = sorted(codes)
    at = array("q", data.draw(st.lists(st.integers(0, 40), min_size=len(codes), max_size=len(codes))))
    pairs = data.draw(st.lists(st.sampled_from(codes), max_size=500))
    want = estimation.count_places_python(array("q", codes), at, pairs)
    got = estimation.count_places(array("q", codes), at, pairs)
    assert got == want and list(got) == list(want)  # (the same counts, in the order first seen)
    assert sum(got.values()) == len(pairs)
    absent = max(codes) + 1
    for count in (estimation.count_places, estimation.count_places_python):
        with pytest.raises(KeyError):
            count(array("q", codes), at, [*pairs, absent])


@counting
def test_bad_places_are_refused():
    for codes, at, pairs, error in [(array("q", [1, 2]), array("q", [0]), [1], TypeError),  # lengths differ
                                    (array("i", [1, 2]), array("i", [0, 0]), [1], TypeError),
                                    (array("q", [2, 1]), array("q", [0, 0]), [1], ValueError),  # not sorted
                                    (array("q", [1, 1]), array("q", [0, 0]), [1], ValueError),  # a repeat
                                    (array("q", [1, 2]), array("q", [0, -1]), [1], ValueError),
                                    (array("q", [1, 2]), array("q", [0, 0]), (1,), TypeError)]:
        with pytest.raises(error):
            ccompare.count_places(codes, at, pairs)


def _crowded_records(n: int, seed: int):
    """Records from few names, dates, postcodes and towns: blocks with many candidate pairs."""
    rng = random.Random(seed)
    normalize = Normalizer(ResolverConfig()).attributes
    raw = [{"first_name": rng.choice(["Ann", "Anne", "Bob", "Robert", "Cara", "Dev", "Eve", "Finn"]),
            "last_name": rng.choice(["Smith", "Smyth", "Jones", "Patel", "Khan", "Brown"]),
            "date_of_birth": f"19{rng.randint(70, 74)}-0{rng.randint(1, 3)}-1{rng.randint(0, 2)}",
            "postcode": rng.choice(["SW1A 1AA", "SW1A 2AB", "M1 1AE", "LS2 9JT", "B1 1BB"]),
            "city": rng.choice(["London", "Leeds", "Birmingham"]),
            "address": f"{rng.randint(1, 30)} {rng.choice(['High', 'Mill', 'Station'])} Road"} for _ in range(n)]
    return distinct_records(raw, normalize)


@pytest.mark.parametrize("n,seed,max_pairs", [(400, 5, 500), (900, 6, 2000)])
def test_a_model_trained_on_samples_of_the_candidate_pairs_is_the_definition_s(n, seed, max_pairs, monkeypatch):
    # (each rule's candidate pairs, then all of them, are sampled from one generator in turn: a sample that left
    # it elsewhere would change every later one)
    records = _crowded_records(n, seed)
    models = []
    for compiled_parts in (True, False):
        if not compiled_parts:
            monkeypatch.setattr(sampling, "_SAMPLES", None)
            monkeypatch.setattr(estimation, "_COUNT", None)
        model, report = training.train_model(records, seed=seed, pairs_sample=3000, max_pairs=max_pairs)
        models.append(model.to_dict())
        by_rule = report["candidate_pairs_by_rule"].values()
        assert sum(pairs > max_pairs for pairs in by_rule) >= 3  # (several samples were drawn in turn)
    assert models[0] == models[1]
