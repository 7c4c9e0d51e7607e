"""Resolve shards as worker processes on one machine (``idres ingest --shards N``).

Each worker is forked from the driver when the pool starts, so it begins with a copy of the driver's
resolver state; from then on it applies the entries the other shards decided (``streams.shards``). The
driver plans each window, sends every worker the chains it is to decide with what it has to catch up on,
and collects what they decided. A worker that fails on an event (a defect) reports it; the driver then
stops the pool and decides the rest in order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from typing import Any, Optional

from resolver.engine import Resolver
from schemas.channel import parse_event
from streams.shards import Entry, ShardResult, Window


def _worker(conn: Any, resolver: Resolver) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the driver stops the pool)
    import gc

    gc.disable()  # (as the driver: nothing the resolver builds forms cycles)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        started = time.perf_counter()
        behind, position, items, chains = msg
        resolver.apply_all(behind)
        result = ShardResult()
        caught_up = time.perf_counter()
        result.catching_up = caught_up - started
        events = {i: (parse_event(raw, len(raw) + 1), source) for i, raw, source in items}
        try:
            for chain in chains:
                for i in chain:
                    event, source = events[i]
                    result.failed = i
                    result.decided[i] = resolver.decide(event, source, position=position + i)
            result.failed = None
        except Exception as exc:
            result.error = RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        result.deciding = time.perf_counter() - caught_up
        conn.send(result)


class ShardPool:
    """``n`` worker processes, each a copy of ``resolver``'s state as it is when the pool starts."""

    def __init__(self, resolver: Resolver, n: int):
        ctx = multiprocessing.get_context("fork")
        self.n = n
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._behind: list[Entry] = [[] for _ in range(n)]
        # seconds: the driver waiting for the workers; each worker catching up and deciding (benchmarks)
        self.waited = 0.0
        self.catching_up = [0.0] * n
        self.deciding = [0.0] * n
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, resolver), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def catch_up(self, decisions: Entry, owner: int = -1) -> None:
        """Decisions, in log order, that every worker but ``owner`` (the one that decided them, -1: none)
        is to apply before its next chains."""
        for s in range(self.n):
            if s != owner:
                self._behind[s].extend(decisions)

    def decide(self, window: Window, raws: list[bytes], picks: list[list[int]]) -> tuple[dict[int, Entry], list[int], Optional[ShardResult]]:
        """Sends each worker its chains of ``window`` (``picks[s]``: chain indexes) and the raw records
        of their events; returns the decisions by event index, the worker of each event, and the first
        failed result (or None)."""
        owner = [-1] * len(window.events)
        for s in range(self.n):
            chains = [window.chains[c] for c in picks[s]]
            items = []
            for chain in chains:
                for i in chain:
                    owner[i] = s
                    items.append((i, raws[i], window.events[i][1]))
            behind, self._behind[s] = self._behind[s] + window.begun, []
            self._conns[s].send((behind, window.position, items, chains))
        decided: dict[int, Entry] = {}
        failed: Optional[ShardResult] = None
        started = time.perf_counter()
        for s in range(self.n):
            result: ShardResult = self._conns[s].recv()
            self.catching_up[s] += result.catching_up
            self.deciding[s] += result.deciding
            if result.error is not None and failed is None:
                failed = result
            decided.update(result.decided)
        self.waited += time.perf_counter() - started
        return decided, owner, failed

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
                conn.close()
            except (OSError, ValueError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join()
        self._conns, self._procs = [], []
