"""Training's chunks in worker processes: what ``idres train --jobs N`` hands ``train_model`` as its mapper.

``train_model`` splits its heaviest parts into chunks (the random pairs u is estimated from, the blocked pairs
EM reads, the records' blocking keys: ``resolver.matching.estimation.in_order``) and a mapper runs them. This
one runs them in a pool of processes that each hold the records (given once, when the pool starts) and
returns their results in the chunks' order, so the model is the one training in one process estimates.

Each worker starts sharing the records' memory with this process, and comes to hold its own copy of what it
reads (reading an object writes its reference count): with N workers, up to N more copies of the records.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Optional

from resolver.matching import AttributeRecord
from resolver.matching.estimation import in_order

_RECORDS: list[AttributeRecord] = []  # (in a worker: the records its pool was started with)


def _hold(records: list[AttributeRecord]) -> None:
    global _RECORDS
    _RECORDS = records


def _run(function: Callable[[list[AttributeRecord], Any], Any], chunk: Any) -> Any:
    return function(_RECORDS, chunk)


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def default_jobs() -> int:
    """The processes ``idres train`` compares pairs in unless told: the usable cores, at most 4 (each comes to
    hold a copy of the records)."""
    return min(usable_cores(), 4)


class ProcessMapper:
    """A mapper (``estimation.Mapper``) over ``jobs`` worker processes; ``close()`` stops them. One chunk,
    or one job, is run here, in order."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool: Optional[ProcessPoolExecutor] = None
        self._records: Optional[list[AttributeRecord]] = None

    def __call__(self, function: Callable[[list[AttributeRecord], Any], Any], records: list[AttributeRecord],
                 chunks: list[Any]) -> list[Any]:
        if self.jobs < 2 or len(chunks) < 2:
            return in_order(function, records, chunks)
        if records is not self._records:
            self.close()
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            # (forked workers share the records' pages with this process; others are sent them once each)
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_hold, initargs=(records,))
            self._records = records
        assert self._pool is not None
        try:
            return list(self._pool.map(_run, [function] * len(chunks), chunks))
        except BrokenProcessPool:  # (a worker died: the next call starts another pool)
            self.close()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        self._records = None

    def __enter__(self) -> "ProcessMapper":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
