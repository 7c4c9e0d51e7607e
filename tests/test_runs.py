"""``Runs``, the events' identifiers held flat, against the list of tuples it stands for."""

import pickle
import sys

import pytest
from hypothesis import given, strategies as st

from projections.runs import Runs

runs_lists = st.lists(st.lists(st.integers(0, 2**32 - 1), max_size=5).map(tuple), max_size=40)


@given(runs_lists)
def test_runs_read_back_as_the_tuples_appended(expected):
    runs = Runs()
    for run in expected:
        runs.append(run)
    assert len(runs) == len(expected)
    assert list(runs) == expected
    assert [runs[i] for i in range(len(expected))] == expected
    assert [runs[-k] for k in range(1, len(expected) + 1)] == [expected[-k] for k in range(1, len(expected) + 1)]
    for bad in (len(expected), -len(expected) - 1):
        with pytest.raises(IndexError):
            runs[bad]


@given(runs_lists, st.integers(-3, 45), st.integers(-3, 45))
def test_mapped_gives_each_run_of_a_range_mapped(expected, start, end):
    runs = Runs(expected)
    start = max(start, 0)
    assert runs.mapped(start, end, lambda v: -v) == [[-v for v in run] for run in expected[start:max(end, 0)]]


@given(runs_lists, st.sets(st.integers(0, 2**32 - 1)), st.integers(0, 45), st.one_of(st.none(), st.integers(0, 45)))
def test_hits_are_every_wanted_value_with_its_run_in_order(expected, extra, start, end):
    wanted = set(extra)
    for run in expected[::3]:  # (values that occur, and some that may not)
        wanted.update(run[:1])
    stop = len(expected) if end is None else end
    assert list(Runs(expected).hits(wanted, start, end)) == [
        (i, v) for i in range(start, min(stop, len(expected))) for v in expected[i] if v in wanted]


@given(runs_lists)
def test_runs_pickle_to_the_same_runs(expected):
    runs = Runs(expected)
    again = pickle.loads(pickle.dumps(runs, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == runs and list(again) == expected
    again.append((7,))  # (and it still grows)
    assert again[-1] == (7,) and list(runs) == expected


def test_pickled_runs_are_little_endian_bytes():
    runs = Runs([(1, 258), (), (3,)])
    values, ends = runs.__getstate__()
    assert values == b"".join(v.to_bytes(4, "little") for v in (1, 258, 3))
    assert ends == b"".join(e.to_bytes(8, "little") for e in (2, 2, 3))
    assert sys.getsizeof(values) < 100


def test_runs_whose_ends_do_not_fit_their_values_are_refused():
    runs = Runs()
    with pytest.raises(ValueError, match="do not fit"):
        runs.__setstate__(((5).to_bytes(4, "little"), (2).to_bytes(8, "little")))
    with pytest.raises(ValueError, match="do not fit"):
        runs.__setstate__(((5).to_bytes(4, "little"), b""))


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_runs_pickle_with_any_protocol_and_still_grow_after(protocol):
    runs = Runs([(1, 2**32 - 1), ()])
    data = pickle.dumps(runs, protocol=protocol)  # (protocol 5 writes the arrays where they lie)
    runs.append((5,))
    assert list(pickle.loads(data)) == [(1, 2**32 - 1), ()]
    assert list(runs) == [(1, 2**32 - 1), (), (5,)]
