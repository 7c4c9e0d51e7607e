"""Short runs of non-negative integers, one run per event (its identifiers), held in two flat arrays.

A list of tuples costs a tuple and an int object per identifier: about 90 bytes for an event with one, and each
of them an object the checkpoint's pickler has to remember while it writes. ``Runs`` keeps every value in one
array and where each run ends in another: 4 bytes a value and 8 a run, and two objects in all.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from pickle import PickleBuffer
from typing import Any, Callable, Container, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Runs:
    """A list of tuples of ints (each in 0 .. 2**32 - 1) that can only grow: ``append`` a run, read run ``i``
    as a tuple, or scan the values for the runs holding some of them (``hits``)."""

    __slots__ = ("values", "ends")

    def __init__(self, runs: Iterable[Iterable[int]] = ()) -> None:
        self.values = array("I")  # every run's values, run after run
        self.ends = array("Q")  # run i is values[ends[i - 1]:ends[i]] (from 0 for the first)
        for run in runs:
            self.append(run)

    def append(self, run: Iterable[int]) -> None:
        self.values.extend(run)
        self.ends.append(len(self.values))

    def __len__(self) -> int:
        return len(self.ends)

    def _bounds(self, i: int) -> tuple[int, int]:
        n = len(self.ends)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("run index out of range")
        return (self.ends[i - 1] if i else 0), self.ends[i]

    def __getitem__(self, i: int) -> tuple[int, ...]:
        start, end = self._bounds(i)
        return tuple(self.values[start:end])

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        values, start = self.values, 0
        for end in self.ends:
            yield tuple(values[start:end])
            start = end

    def mapped(self, start: int, end: int, f: Callable[[int], T]) -> list[list[T]]:
        """Runs ``start`` to ``end`` (``end`` excluded), each as a list of ``f`` of its values."""
        end = min(end, len(self.ends))
        if start >= end:
            return []
        first = self.ends[start - 1] if start else 0
        flat = list(map(f, self.values[first:self.ends[end - 1]]))
        out = []
        at = 0
        for stop in self.ends[start:end]:
            stop -= first
            out.append(flat[at:stop])
            at = stop
        return out

    def hits(self, wanted: Container[int], start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
        """``(run, value)`` for each value in ``wanted`` held by runs ``start`` to ``end`` (excluded), in
        order (a run holding several yields each)."""
        ends = self.ends
        end = len(ends) if end is None else min(end, len(ends))
        if start >= end:
            return
        first = ends[start - 1] if start else 0
        run = start
        for pos, value in enumerate(self.values[first:ends[end - 1]], first):
            if value in wanted:
                run = bisect_right(ends, pos, run, end)
                yield run, value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Runs) and self.ends == other.ends and self.values == other.values

    def __repr__(self) -> str:
        return f"Runs({list(self)!r})"

    # (pickled as two byte strings, little-endian whatever the machine, so that a checkpoint names no class
    # but this one; with pickle's protocol 5 the arrays are written from where they lie, not copied first: a
    # checkpoint is written when memory is at its highest)
    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if isinstance(protocol, int) and protocol >= 5 and sys.byteorder == "little":
            return Runs, (), (PickleBuffer(self.values), PickleBuffer(self.ends))
        return Runs, (), self.__getstate__()

    def __getstate__(self) -> tuple[bytes, bytes]:
        values, ends = self.values, self.ends
        if sys.byteorder == "big":
            values, ends = array("I", values), array("Q", ends)
            values.byteswap()
            ends.byteswap()
        return values.tobytes(), ends.tobytes()

    def __setstate__(self, state: Any) -> None:
        raw_values, raw_ends = state
        values, ends = array("I"), array("Q")
        values.frombytes(raw_values)
        ends.frombytes(raw_ends)
        if sys.byteorder == "big":
            values.byteswap()
            ends.byteswap()
        if (ends[-1] if ends else 0) != len(values):
            raise ValueError("the runs' ends do not fit their values")
        self.values, self.ends = values, ends
