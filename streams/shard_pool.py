"""Resolve shards as worker processes on one machine (``idres ingest --shards N``).

Each worker is forked from the driver when the pool starts, so it begins with a copy of the driver's
resolver state; from then on it applies the entries the other shards decided (``streams.shards``). For each
window the driver asks every worker for the verdicts on a share of the records (validation and
footprints), then sends each the chains it is to decide; in between it does its own work (applying the
last window to its state, logging, the views). A worker that fails (a defect) reports it; the driver then
stops the pool and decides the rest in order.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any, Optional

from resolver.engine import Resolver
from streams.shards import Entry, ShardResult, ShardWorker, Verdict


def forking_parent() -> tuple[int, bool]:
    """What ``end_with_parent`` is given, taken in the parent before it forks: its process ID, and whether the
    forking thread is its main one."""
    import threading

    return os.getpid(), threading.current_thread() is threading.main_thread()


def end_with_parent(parent: tuple[int, bool], inherited: list[Any]) -> None:
    """In a worker forked from a process (``parent``: ``forking_parent()``): ends it when that process ends, however
    it ends. The parent's ends of the pipes the fork copied (``inherited``) are closed, so that its end is an EOF
    here; and on Linux, where the parent forked from its main thread, the kernel kills this process when the
    parent dies (``PR_SET_PDEATHSIG``: it acts when the thread that forked ends, which for any other thread may be
    long before the process), so a worker busy or stuck does not outlive it either. (A worker left behind kept every
    file the parent had open: the data directory's lock among them, so that no command could open it again until
    someone killed the worker.)"""
    for end in inherited:
        end.close()
    pid, main_thread = parent
    if not main_thread:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # (PR_SET_PDEATHSIG)
    except (OSError, AttributeError):  # (not Linux: the EOF alone ends it, once it reads)
        pass
    if os.getppid() != pid:  # (the parent ended before the kernel was asked)
        os._exit(1)


def _serve(conn: Any, inherited: list[Any], parent: tuple[int, bool], resolver: Resolver, max_bytes: int) -> None:
    end_with_parent(parent, inherited)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the driver stops the pool)
    import gc

    gc.disable()  # (as the driver: nothing the resolver builds forms cycles)
    worker = ShardWorker(resolver, max_bytes)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        started = time.perf_counter()
        if msg[0] == "verdicts":
            _, behind, items = msg
            worker.catch_up(behind)
            caught_up = time.perf_counter()
            try:
                reply: Any = (worker.verdicts(items), None, caught_up - started, time.perf_counter() - caught_up)
            except Exception as exc:  # (a defect)
                reply = ([], exc, caught_up - started, 0.0)
        else:
            _, position, chains = msg
            reply = worker.decide(position, chains)
            reply.deciding = time.perf_counter() - started
        conn.send(reply)


class ShardPool:
    """``n`` worker processes, each a copy of ``resolver``'s state as it is when the pool starts."""

    def __init__(self, resolver: Resolver, n: int, max_bytes: int):
        ctx = multiprocessing.get_context("fork")
        self.n = n
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._behind: list[Entry] = [[] for _ in range(n)]
        # seconds: the driver waiting for the workers; each worker catching up and working (benchmarks)
        self.waited = 0.0
        self.catching_up = [0.0] * n
        self.working = [0.0] * n
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, [*self._conns, parent], forking_parent(), resolver, max_bytes),
                               daemon=True, name="idres-shard")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def catch_up(self, decisions: Entry, owner: int = -1) -> None:
        """Decisions, in log order, that every worker but ``owner`` (the one that decided them, -1: none)
        is to apply before its next window."""
        for s in range(self.n):
            if s != owner:
                self._behind[s].extend(decisions)

    def ask_verdicts(self, begun: Entry, shares: list[list[tuple[int, bytes]]]) -> None:
        """Sends each worker what it is behind on, the epoch's decisions ``begun``, and its share of records."""
        for s in range(self.n):
            behind, self._behind[s] = self._behind[s] + begun, []
            self._conns[s].send(("verdicts", behind, shares[s]))

    def _receive(self) -> list[Any]:
        """Every worker's reply, in the order of the workers (the time waited for them is counted)."""
        started = time.perf_counter()
        replies = [conn.recv() for conn in self._conns]
        self.waited += time.perf_counter() - started
        return replies

    def verdicts(self) -> tuple[dict[int, Verdict], Optional[BaseException]]:
        out: dict[int, Verdict] = {}
        error: Optional[BaseException] = None
        for s, (got, exc, catching_up, working) in enumerate(self._receive()):
            self.catching_up[s] += catching_up
            self.working[s] += working
            out.update(got)
            error = error or exc
        return out, error

    def ask_decide(self, position: int, work: list[list[Any]]) -> None:
        for s in range(self.n):
            self._conns[s].send(("decide", position, work[s]))

    def results(self) -> tuple[dict[int, Entry], Optional[BaseException]]:
        decided: dict[int, Entry] = {}
        error: Optional[BaseException] = None
        result: ShardResult
        for s, result in enumerate(self._receive()):
            self.working[s] += result.deciding
            decided.update(result.decided)
            error = error or result.error
        return decided, error

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
