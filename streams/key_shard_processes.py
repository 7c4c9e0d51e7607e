"""Key shards in worker processes: each shard's parts held by a process of its own, which decides there the
chains it is sent.

``streams.key_shards`` holds the logic of deciding on shards that each own part of the state by key, in one
process. Here the same coordinator (``KeyShardProcesses``, a ``LocalKeyShards``) keeps no part: every shard
is a worker process (``ShardServer``, forked) holding its ``PartStore``, and what the coordinator did to the
stores it asks of their owners, one request per shard at a time, sent to all before any answer is read:

* ``known`` / ``seen``: the event IDs decided, at their owners;
* ``read``: a round's questions of a footprint or a slice (``resolver.partition.Rounds``), from every reader
  whose questions the owner answers, in one message (a footprint reads only what it needs of a part);
* ``decide``: the parts of a chain's slice, collected by the coordinator round by round, and the chain's
  events, which the shard decides in order on the slice it builds (on its own core); it answers with the
  decisions and the profile IDs the slice asked about without holding them, which the coordinator checks at
  their owners, and then ``changes`` (what deciding changed, which the coordinator hands to the owners as
  ``apply``) or ``drop`` (the window is then decided in order on the whole state, read with ``parts``);
* ``held_records``, ``reviewing``, ``estimate_from`` and ``chunk``: re-estimating the match model, whose
  heavy parts the shards work.

A pipe between processes carries the requests (about 0.06 ms a round trip on this machine:
``benchmarks/round_trips.py``). The result is the log of deciding every event in order, as for
``LocalKeyShards``; the tests compare the two.
"""

from __future__ import annotations

import gc
import multiprocessing
import traceback
from typing import Any, Optional

from resolver.calibration import distinct_of
from resolver.config import ResolverConfig
from resolver.engine import Resolver
from resolver.owner import PartStore, owner_of, value_name
from resolver.partition import Ask, Changes, NodePart, ProfilePart, Slice, collecting
from schemas.channel import ChannelEvent
from streams.key_shards import _KINDS, LocalKeyShards
from streams.shards import Entry


class ShardServer:
    """One shard's worker: the parts it owns, and deciding the chains it is sent on their slices."""

    def __init__(self, config: ResolverConfig, shard: int, n: int) -> None:
        self.store = PartStore(shard, n)
        self.resolver = Resolver(config)
        self.records: Optional[list] = None  # (the records a re-estimation works from)
        self.pending: Optional[Slice] = None  # (the slice decided on, until its changes are asked for or dropped)

    def handle(self, request: tuple) -> Any:
        kind = request[0]
        store = self.store
        if kind == "read":  # (epoch, {reader: questions}, for a footprint) -> {reader: answers}
            _, epoch, questions, brief = request
            return {at: [self._part(what, name, epoch, brief) for what, name in asks] for at, asks in questions.items()}
        if kind == "known":
            return [store.seen.get(eid) for eid in request[1]]
        if kind == "seen":
            store.seen.update(request[1])
            return None
        if kind == "apply":
            store.apply(request[1], request[2])
            return None
        if kind == "decide":  # (position, the slice's arguments, [(index in the window, event)])
            _, position, args, events = request
            part = Slice(*args)
            self.resolver.use(part.state)
            decided = {k: self.resolver.decide(event, position=position + k) for k, event in events}
            self.pending = part
            return decided, part.asked()
        if kind in ("changes", "drop"):
            part, self.pending = self.pending, None
            return part.changes() if kind == "changes" and part is not None else None
        if kind == "held_records":
            return distinct_of(p.records for p in store.nodes.values() if p.records)
        if kind == "reviewing":
            return set(store.reviewing)
        if kind == "parts":
            epoch = request[1]
            return (list(store.nodes.values()), list(store.profiles.values()), dict(store.aliases),
                    dict(store.blocks), {key: store.value(key, epoch) for key in store.values})
        if kind == "estimate_from":
            self.records = request[1]
            return None
        if kind == "chunk":
            return request[1](self.records, request[2])
        raise ValueError(f"a key shard was sent a request it does not know: {kind!r}")

    def _part(self, what: str, name: Any, epoch: int, brief: bool) -> Any:
        store = self.store
        if what == "values":
            return store.value(name, epoch)
        got = getattr(store, what).get(name)
        if not brief or got is None:
            return got
        if what == "nodes":  # (what a footprint reads of an identifier: ``footprint.items_in_rounds``)
            return NodePart(got.key, got.profile, refused=got.refused, session_last=got.session_last,
                            weak_uses=got.weak_uses, shared_users=got.shared_users)
        if what == "profiles":  # (...and of a profile)
            return ProfilePart(got.id, got.created_at, frozenset(), {}, frozenset(), waiting=got.waiting)
        return got


def _serve(conn: Any, inherited: list[Any], config: ResolverConfig, shard: int, n: int) -> None:
    for end in inherited:  # (the coordinator's ends, copied by the fork: closed, a coordinator gone is an EOF)
        end.close()
    gc.disable()  # (as the resolver runs elsewhere: nothing it builds forms cycles)
    server = ShardServer(config, shard, n)
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] == "stop":
            conn.send((True, None))
            return
        try:
            conn.send((True, server.handle(request)))
        except Exception:  # (a defect: the coordinator raises it with the shard's traceback)
            conn.send((False, traceback.format_exc(limit=8)))


class _Changed:
    """What a shard's slice changed, as ``LocalKeyShards._commit`` reads a slice."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes

    def changes(self) -> Changes:
        return self._changes


def _slice_args(*args: Any) -> tuple:
    return args


class KeyShardProcesses(LocalKeyShards):
    """``n`` shards in as many worker processes, and their coordinator in this one: ``decide(records)`` gives
    the log entries of deciding the raw records in order. ``close()`` (or leaving a ``with``) stops the
    workers."""

    def __init__(self, config: ResolverConfig, n: int, max_window: int = 1024, assigner: Any = None):
        super().__init__(config, n, max_window, assigner)
        self.stores = []  # (the parts are held by the workers)
        ctx = multiprocessing.get_context("fork")
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._broken: Optional[str] = None
        for s in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(there, [*self._conns, here], config, s, n), daemon=True,
                               name=f"idres-key-shard-{s}")
            proc.start()
            there.close()
            self._conns.append(here)
            self._procs.append(proc)
        self._estimating: Optional[list] = None

    def __enter__(self) -> "KeyShardProcesses":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._broken = self._broken or "they were closed"
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive():
                try:
                    conn.send(("stop",))
                    conn.recv()
                except (OSError, EOFError):
                    pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()
            conn.close()
        self._conns, self._procs = [], []

    def _ask(self, requests: dict[int, tuple]) -> dict[int, Any]:
        """Each shard's answer to its request: all sent, then all read (the shards work meanwhile). Once a
        request fails, the shards answer no more: answers left unread would answer the next requests, and a
        window left half applied cannot be applied again."""
        if self._broken is not None:
            raise RuntimeError(f"the key shards stopped: {self._broken}")
        try:
            return self._asked_all(requests)
        except BaseException as e:
            self._broken = f"{type(e).__name__}: {e}".splitlines()[0]
            raise

    def _asked_all(self, requests: dict[int, tuple]) -> dict[int, Any]:
        sent = []
        failed = None
        for s, request in requests.items():
            try:
                self._conns[s].send(request)
                sent.append(s)
            except OSError:  # (a broken pipe: the process ended)
                failed = failed or self._ended(s)
        out = {}
        for s in sent:
            try:
                ok, got = self._conns[s].recv()
            except (EOFError, OSError):
                ok, got = False, self._ended(s)
            if ok:
                out[s] = got
            elif failed is None:
                failed = got
        if failed is not None:
            raise RuntimeError(f"a key shard failed:\n{failed}")
        return out

    def _ended(self, s: int) -> str:
        self._procs[s].join(1)
        return f"key shard {s}'s process ended (exit code {self._procs[s].exitcode})"

    # ------------------------------------------------------------------------------ what the owners hold
    def _known(self, event_ids: list[str]) -> list[Optional[int]]:
        mine: dict[int, list[str]] = {}
        for eid in event_ids:
            mine.setdefault(owner_of("e", eid, self.n), []).append(eid)
        got = self._ask({s: ("known", ids) for s, ids in mine.items()})
        digests = {eid: d for s, ids in mine.items() for eid, d in zip(ids, got[s])}
        return [digests[eid] for eid in event_ids]

    def _note_seen(self, digests: dict[str, int]) -> None:
        mine: dict[int, dict[str, int]] = {}
        for eid, digest in digests.items():
            mine.setdefault(owner_of("e", eid, self.n), {})[eid] = digest
        self._ask({s: ("seen", d) for s, d in mine.items()})

    def _answer(self, questions: dict[int, list[Ask]], brief: dict[str, Any],
                spent: Optional[dict[int, float]]) -> dict[int, list[Any]]:
        # each owner is sent the questions it answers, of every reader at once
        asked: dict[int, dict[int, list[Ask]]] = {}
        places: dict[int, list[tuple[int, int]]] = {}  # (reader -> (owner, place in its questions to it))
        for at, asks in questions.items():
            mine = places[at] = []
            for what, name in asks:
                owner = owner_of(_KINDS[what], value_name(name) if what == "values" else name, self.n)
                to = asked.setdefault(owner, {}).setdefault(at, [])
                mine.append((owner, len(to)))
                to.append((what, name))
                self.stats["reads"] += 1
                if owner != at:
                    self.stats["remote_reads"] += 1
                    self._asked.add((owner, at))
        got = self._ask({owner: ("read", self._epoch, mine, bool(brief)) for owner, mine in asked.items()})
        return {at: [got[owner][at][k] for owner, k in places[at]] for at in questions}

    def _held_records(self) -> list[list[Any]]:
        got = self._ask({s: ("held_records",) for s in range(self.n)})
        return [got[s] for s in range(self.n)]

    def _reviewing(self) -> set[str]:
        return set().union(*self._ask({s: ("reviewing",) for s in range(self.n)}).values())

    def _all_parts(self, epoch: int) -> tuple[list[NodePart], list[ProfilePart], dict[str, str],
                                              dict[str, list[str]], dict[tuple[str, str], tuple[int, Optional[int]]]]:
        got = self._ask({s: ("parts", epoch) for s in range(self.n)})
        out: tuple[list, list, dict, dict, dict] = ([], [], {}, {}, {})
        for s in range(self.n):
            for into, part in zip(out, got[s]):
                if isinstance(into, list):
                    into.extend(part)
                else:
                    into.update(part)
        return out

    def _apply(self, routed: dict[int, Changes], sender: int, epoch: int) -> None:
        for owner, mine in routed.items():
            writes = len(mine.nodes) + len(mine.profiles) + len(mine.blocks) + len(mine.values)
            self.stats["writes"] += writes
            if owner != sender:
                self.stats["remote_writes"] += writes
        self._ask({owner: ("apply", mine, epoch) for owner, mine in routed.items()})

    def _on_shards(self, function: Any, records: list, chunks: list) -> list:
        if records is not self._estimating:
            self._estimating = records
            self._ask({s: ("estimate_from", records) for s in range(self.n)})
        out = []
        for start in range(0, len(chunks), self.n):  # (one chunk to each shard at a time)
            wave = chunks[start:start + self.n]
            got = self._ask({s: ("chunk", function, chunk) for s, chunk in enumerate(wave)})
            out.extend(got[s] for s in range(len(wave)))
        return out

    # ------------------------------------------------------------------------------ deciding on the shards
    def _any_held(self, questions: dict[int, list[Ask]]) -> bool:
        """Whether any profile ID or alias name the slices asked about is held at its owner (one round)."""
        held = bool(questions) and any(got is not None for answers in self._answer(questions, {}, None).values()
                                       for got in answers)
        self._send()
        return held

    def _on_slices(self, position: int, epoch: int, chains: list[list[int]],
                   work: list[tuple[ChannelEvent, list[tuple[str, str]], frozenset[str]]]) -> Optional[dict[int, Entry]]:
        picks = self._picks(chains, work)
        self._trips += 2  # (as ``LocalKeyShards``: the chains out, the decisions back; the names checked)
        mine = [(s, [k for c in picked for k in chains[c]]) for s, picked in enumerate(picks) if picked]
        collected = self._rounds([(s, collecting(set().union(*(work[k][2] for k in events)),
                                                 [v for k in events for v in work[k][1]], self.shared, position,
                                                 _slice_args))
                                  for s, events in mine])
        replies = self._ask({s: ("decide", position, args, [(k, work[k][0]) for k in events])
                             for (s, events), args in zip(mine, collected)})
        decided: dict[int, Entry] = {}
        questions: dict[int, list[Ask]] = {}
        for s, _ in mine:
            got, (profiles, aliases) = replies[s]
            decided.update(got)
            questions[s] = [("profiles", pid) for pid in sorted(profiles)] + \
                [("aliases", name) for name in sorted(aliases)]
        if self._any_held({s: asks for s, asks in questions.items() if asks}):
            self._ask({s: ("drop",) for s, _ in mine})
            return None
        changes = self._ask({s: ("changes",) for s, _ in mine})
        self._commit([(s, _Changed(changes[s])) for s, _ in mine], epoch)  # type: ignore[misc]
        return decided
