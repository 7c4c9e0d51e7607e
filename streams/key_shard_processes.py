"""Key shards in worker processes: each shard's parts held by a process of its own, which decides there the
chains it is sent.

``streams.key_shards`` holds the logic of deciding on shards that each own part of the state by key, in one
process. Here the same coordinator (``KeyShardProcesses``, a ``LocalKeyShards``) keeps no part: every shard
is a worker process (``ShardServer``, forked) holding its ``PartStore``, and what the coordinator did to the
stores it asks of their owners, one request per shard at a time, sent to all before any answer is read:

* ``known`` / ``seen``: the event IDs decided, at their owners (not for a caller that gives only new events:
  ``LocalKeyShards.new_only``);
* ``read``: a round's questions of a footprint (the coordinator's) or of the start of an epoch, from every
  reader whose questions the owner answers, in one message (a footprint reads only what it needs of a part);
* ``collect``: the footprint items and record values of the chains a shard is to decide, whose slice it then
  reads round by round: the coordinator passes each round's questions on to their owners (``read_for``,
  with every other shard's) and the answers back (``answers``), pickled by each owner for the shard that
  asked and passed on unread, so a part crosses once. The first round's questions follow from the items
  alone: the coordinator asks them itself and sends the answers with ``collect``;
* the chains' events, sent with ``collect``, which the shard decides in order on the slice as soon as it has
  collected it (on its own core); it answers, in place of its next questions, with the decisions, the profile
  IDs the slice asked about without holding them, which the coordinator checks at their owners, and what
  deciding changed, routed and pickled by the shard for each owner, which the coordinator passes on as
  ``apply_shares``, ahead of its next request to each owner (``then``; only the statistics' increments come
  to it), or drops (the window is then decided in order on the whole state, read with ``parts``, and its
  changes sent as ``apply``);
* ``held_records``, ``reviewing``, ``estimate_from`` and ``chunk``: re-estimating the match model, whose
  heavy parts the shards work.

A pipe between processes carries the requests (about 0.06 ms a round trip on this machine:
``benchmarks/round_trips.py``). The result is the log of deciding every event in order, as for
``LocalKeyShards``; the tests compare the two.
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import pickle
import traceback
from typing import Any, Optional

from resolver.calibration import distinct_of
from resolver.config import ResolverConfig
from resolver.engine import Resolver
from resolver.owner import PartStore, owner_of, route
from resolver.partition import Ask, Changes, NodePart, Patch, ProfilePart, Slice, collecting
from resolver.state import ResolverState
from schemas.channel import ChannelEvent
from streams.key_shards import _all_known, LocalKeyShards, _name_questions, _reads_of
from streams.shard_pool import end_with_parent, forking_parent
from streams.shards import Entry


# ------------------------------------------------------------------------------------ what crosses
# (what a shard reads from a message: on Kafka, from a topic anyone with access may write to)
_SAFE_BUILTINS = frozenset({"set", "frozenset", "slice", "complex", "bytearray", "range"})
_SAFE_MODULES = ("resolver.", "schemas.")  # (the resolver is pure: nothing there does I/O)
_SAFE_NAMES = frozenset({
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("collections", "Counter"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("collections", "deque"), ("array", "array"), ("array", "_array_reconstructor"), ("operator", "itemgetter"),
    ("pydantic_core._pydantic_core", "TzInfo"),
})


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if "." not in name:
            if (module == "builtins" and name in _SAFE_BUILTINS) or (module, name) in _SAFE_NAMES:
                return super().find_class(module, name)
            if module.startswith(_SAFE_MODULES):
                # (only what is defined there: not a module or function it imported)
                obj = super().find_class(module, name)
                if str(getattr(obj, "__module__", "")).startswith(_SAFE_MODULES):
                    return obj
        raise pickle.UnpicklingError(f"a key shard message names {module}.{name}, which it may not carry")


def restricted_loads(blob: bytes) -> Any:
    """``pickle.loads``, refusing any global but the classes a key shard message is made of."""
    return _Restricted(io.BytesIO(blob)).load()


class ShardServer:
    """One shard's worker: the parts it owns, and deciding the chains it is sent on their slices."""

    def __init__(self, config: ResolverConfig, shard: int, n: int, store: Optional[PartStore] = None) -> None:
        self.store = store if store is not None else PartStore(shard, n)
        self.resolver = Resolver(config)
        self.records: Optional[list] = None  # (the records a re-estimation works from)
        self.collecting: Any = None  # (the reading of the next slice, round by round)
        self.deciding: Optional[tuple] = None  # (...and where, and the events to decide on it once read)

    def handle(self, request: tuple) -> Any:
        kind = request[0]
        store = self.store
        if kind == "then":  # ([requests whose answers nothing waits for], a request): the answer to the last
            for first in request[1]:
                self.handle(first)
            return self.handle(request[2])
        if kind == "read":  # (epoch, {reader: questions}, for a footprint) -> {reader: answers}
            _, epoch, questions, brief = request
            return {at: [self._part(what, name, epoch, brief) for what, name in asks] for at, asks in questions.items()}
        if kind == "known":
            return [store.seen.get(eid) for eid in request[1]]
        if kind == "seen":
            store.seen.update(request[1])
            return None
        if kind == "apply":  # (changes, epoch, stamp)
            store.apply(request[1], request[2], request[3])
            return None
        if kind == "collect":  # (position, footprint items, record values, shared, [(index in the window, event)],
            # the answers to the first round's questions, which the coordinator asked of their owners itself):
            # the next round's questions (``_next_round``)
            _, position, items, values, shared, events, first = request
            self.collecting = collecting(items, values, shared, position, _slice_args)
            self.deciding = (position, events)
            state, asked = self._next_round(None)
            if state == "decided" or first is None:  # (a reading that asked nothing; or no answers sent)
                return state, asked
            return self._next_round(_read_back(first))
        if kind == "answers":  # (each owner's answers to this shard's questions, pickled): the next round's
            return self._next_round(_read_back(request[1]))
        if kind == "read_for":  # (epoch, {reader: questions}): each reader's answers, pickled for it to read
            _, epoch, questions = request
            return {at: pickle.dumps({ask: self._part(*ask, epoch, False) for ask in asks}, pickle.HIGHEST_PROTOCOL)
                    for at, asks in questions.items()}
        if kind == "apply_shares":  # ([pickled changes], epoch, stamp)
            for blob in request[1]:
                store.apply(restricted_loads(blob), request[2], request[3])
            return None
        if kind == "since":  # (position,): the names changes of events from there on were written to
            return store.written_since(request[1])
        if kind == "put":  # (patch, stamp): parts replaced; what decides anew works out its statistics anew
            store.put(request[1], request[2])
            self.resolver = Resolver(self.resolver.config)
            return None
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

    def _next_round(self, got: Optional[dict]) -> tuple[str, Any]:
        """``("asks", questions)`` for the next round of collecting the slice; once it is collected, the events
        decided on it at once: ``("decided", _decide(...))``."""
        try:
            return "asks", next(self.collecting) if got is None else self.collecting.send(got)
        except StopIteration as done:
            self.collecting = None
            (position, events), self.deciding = self.deciding, None
            return "decided", self._decide(done.value, position, events)

    def _decide(self, args: tuple, position: int, events: list[tuple[int, Any]]) -> tuple:
        """The chains' events decided in order on the slice collected (``args``): the decisions, the names the
        slice asked about (``Slice.asked``), each owner's share of what deciding changed, pickled for it (with
        its count of parts), and the increments. Nothing is applied here: the coordinator sends the shares on
        (``apply_shares``), or drops them and decides the window in order (a name asked about is held
        elsewhere). (Deciding and the changes were requests of their own: two round trips a window.)"""
        part = Slice(*args)
        self.resolver.use(part.state)
        decided = {k: self.resolver.decide(event, position=position + k) for k, event in events}
        changes = part.changes()
        shares = {owner: (pickle.dumps(mine, pickle.HIGHEST_PROTOCOL), mine.written())
                  for owner, mine in route(changes, self.store.n).items()}
        return decided, part.asked(), shares, Changes(
            [], [], [], {}, [], {}, {}, changes.totals, changes.records_filed, changes.phone_total,
            changes.phone_regions)

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


def _read_back(blobs: list[bytes]) -> dict:
    """A round's answers to a shard's questions, from each owner's blob (pickled by the owner for it)."""
    got: dict = {}
    for blob in blobs:
        got.update(restricted_loads(blob))
    return got


def _serve(conn: Any, inherited: list[Any], parent: tuple[int, bool], config: ResolverConfig, shard: int, n: int,
           store: PartStore) -> None:
    end_with_parent(parent, inherited)  # (the coordinator's ends closed: a coordinator gone is an EOF)
    gc.disable()  # (as the resolver runs elsewhere: nothing it builds forms cycles)
    server = ShardServer(config, shard, n, store)
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
    """What a shard's slice changed, as ``LocalKeyShards._commit`` reads a slice (here only the statistics'
    increments: the parts went to their owners from the shard)."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes

    def changes(self) -> Changes:
        return self._changes


def _slice_args(*args: Any) -> tuple:
    return args


class RemoteKeyShards(LocalKeyShards):
    """The coordinator of ``n`` shards whose parts are held elsewhere (each by a ``ShardServer``): what it did
    to the stores it asks of their owners, as requests. ``_asked_all`` carries them (a subclass's transport:
    pipes to forked processes, or a broker's topics); ``close()`` (or leaving a ``with``) stops it."""

    def __init__(self, config: ResolverConfig, n: int, max_window: int = 1024, assigner: Any = None,
                 wait: float = 600.0, state: Optional[ResolverState] = None, new_only: bool = False):
        super().__init__(config, n, max_window, assigner, state=state, new_only=new_only)
        self.wait = wait  # seconds a shard may take to answer a request (a window's deciding, a chunk of pairs)
        self._seed, self.stores = self.stores, []  # (the parts, to be handed to their holders: then dropped here)
        self._broken: Optional[str] = None
        # requests whose answers nothing waits for (a window's changes to their owners), each sent ahead of the
        # next request to its shard, in the same message (``then``): a shard handles its requests in order, so
        # it has applied them before it answers anything else (a round trip a window less)
        self._deferred: dict[int, list[tuple]] = {}

    def __enter__(self) -> "RemoteKeyShards":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._broken = self._broken or "they were closed"

    def _ask(self, requests: dict[int, tuple]) -> dict[int, Any]:
        """Each shard's answer to its request: all sent, then all read (the shards work meanwhile). Once a
        request fails, the shards answer no more: answers left unread would answer the next requests, and a
        window left half applied cannot be applied again."""
        if self._broken is not None:
            raise RuntimeError(f"the key shards stopped: {self._broken}")
        if self._deferred:
            requests = {s: self._after_deferred(s, request) for s, request in requests.items()}
        try:
            return self._asked_all(requests)
        except BaseException as e:
            self._broken = f"{type(e).__name__}: {e}".splitlines()[0]
            # changes sent ahead of a failed request may or may not have reached their owners: what they name is
            # sent again as it is by a session that follows the state (``follow``)
            for request in requests.values():
                if request[0] == "then":
                    for ahead in request[1]:
                        if ahead[0] == "apply":
                            self._unsure.update(ahead[1].names())
                        elif ahead[0] == "apply_shares":  # (each a shard's share, pickled by the shard)
                            for blob in ahead[1]:
                                self._unsure.update(restricted_loads(blob).names())
            raise

    def _asked_all(self, requests: dict[int, tuple]) -> dict[int, Any]:
        raise NotImplementedError

    def _defer(self, requests: dict[int, tuple]) -> None:
        """Requests sent ahead of the next request to each shard (``_deferred``)."""
        for s, request in requests.items():
            self._deferred.setdefault(s, []).append(request)

    def _after_deferred(self, s: int, request: tuple) -> tuple:
        deferred = self._deferred.pop(s, None)
        if deferred is None or request[0] == "load":  # (parts loaded anew replace what was deferred)
            return request
        return ("then", deferred, request)

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
                owner = self._owner_of(what, name)
                to = asked.setdefault(owner, {}).setdefault(at, [])
                mine.append((owner, len(to)))
                to.append((what, name))
                self._count_read(owner, at)
        got = self._ask({owner: ("read", self._epoch, mine, bool(brief)) for owner, mine in asked.items()})
        return {at: [got[owner][at][k] for owner, k in places[at]] for at in questions}

    def _written_since(self, position: int) -> set[tuple[str, Any]]:
        return _all_known(self._ask({s: ("since", position) for s in range(self.n)}).values(), position)

    def _put(self, routed: dict[int, Patch], stamp: int) -> None:
        for owner, mine in routed.items():
            self._count_writes(owner, -1, mine.written())
        self._ask({owner: ("put", mine, stamp) for owner, mine in routed.items()})

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

    def _apply(self, routed: dict[int, Changes], sender: int, epoch: int, ahead: bool = False) -> None:
        for owner, mine in routed.items():
            self._count_writes(owner, sender, mine.written())
        requests = {owner: ("apply", mine, epoch, self._stamp) for owner, mine in routed.items()}
        if ahead:  # (each owner handles its requests in order: it has applied them before it answers another)
            self._defer(requests)
        else:
            self._ask(requests)

    def _on_shards(self, function: Any, records: list, chunks: list) -> list:
        if records is not self._sent_records:
            self._sent_records = records
            self._ask({s: ("estimate_from", records) for s in range(self.n)})
        out = []
        for start in range(0, len(chunks), self.n):  # (one chunk to each shard at a time)
            wave = chunks[start:start + self.n]
            got = self._ask({s: ("chunk", function, chunk) for s, chunk in enumerate(wave)})
            out.extend(got[s] for s in range(len(wave)))
        return out

    # ------------------------------------------------------------------------------ deciding on the shards
    def _collect(self, mine: list[tuple[int, list[int]]], work: list[tuple[Any, Any, frozenset[str]]],
                 position: int) -> dict[int, tuple]:
        """Each shard collects its chains' slice, round by round: its questions of a round, sent on to their
        owners together with every other shard's, and the answers, pickled by each owner for the shard that
        asked, passed back unread. (Through this coordinator a round is two waits on the pipes, counted as the
        one round trip a transport between the shards would take.) Once a shard's slice is read, it decides its
        chains' events on it at once: what each shard decided (``ShardServer._decide``)."""
        # The first round's questions follow from what the chains read alone: the coordinator asks them of
        # their owners itself, and sends each shard its chains with the answers (a round trip a window less)
        # (the items in order: a set read back in another process need not iterate as it did here)
        reads, first = {}, {}
        for s, events in mine:
            items, values = _reads_of(events, work)
            reads[s] = sorted(items), values
            try:
                first[s] = next(collecting(*reads[s], self.shared, position, _slice_args))
            except StopIteration:  # (it asks nothing: the shard decides at once)
                pass
        blobs = self._read_for(first) if first else {}
        replies = self._ask({s: ("collect", position, *reads[s], self.shared, [(k, work[k][0]) for k in events],
                                 [held[s] for held in blobs.values() if s in held] if s in first else None)
                             for s, events in mine})
        decided: dict[int, tuple] = {}
        while True:
            decided.update((s, got) for s, (state, got) in replies.items() if state == "decided")
            asking = {s: asks for s, (state, asks) in replies.items() if state == "asks"}
            if not asking:
                return decided
            blobs = self._read_for(asking)
            replies = self._ask({at: ("answers", [held[at] for held in blobs.values() if at in held])
                                 for at in asking})

    def _read_for(self, asking: dict[int, list[Ask]]) -> dict[int, dict[int, bytes]]:
        """Each shard's questions of a round read at their owners, all at once: by owner, each reader's answers
        as the owner pickled them for it."""
        asked: dict[int, dict[int, list[Ask]]] = {}
        for at, asks in asking.items():
            for what, name in dict.fromkeys(asks):  # (a question once, however often the reading asks it)
                owner = self._owner_of(what, name)
                asked.setdefault(owner, {}).setdefault(at, []).append((what, name))
                self._count_read(owner, at)
        if any(owner != reader for owner, reader in self._asked):
            self._trips += 1
        self._send()
        return self._ask({owner: ("read_for", self._epoch, mine) for owner, mine in asked.items()})

    def _on_slices(self, position: int, epoch: int, chains: list[list[int]],
                   work: list[tuple[ChannelEvent, list[tuple[str, str]], frozenset[str]]]) -> Optional[dict[int, Entry]]:
        mine = self._handed(chains, work)
        replies = self._collect(mine, work, position)
        decided: dict[int, Entry] = {}
        questions: dict[int, list[Ask]] = {}
        for s, _ in mine:
            got, (profiles, aliases), _, _ = replies[s]
            decided.update(got)
            questions[s] = _name_questions(profiles, aliases)
        if self._any_held(questions):
            return None  # (the shares are dropped: nothing was applied)
        # each shard's changes go to their owners as the shard pickled them; the statistics' increments come here
        shares: dict[int, list[bytes]] = {}
        for s, _ in mine:
            for owner, (blob, writes) in replies[s][2].items():
                shares.setdefault(owner, []).append(blob)
                self._count_writes(owner, s, writes)
        self._defer({owner: ("apply_shares", blobs, epoch, self._stamp) for owner, blobs in shares.items()})
        self._commit([(s, _Changed(replies[s][3])) for s, _ in mine], epoch)  # type: ignore[misc]
        return decided


class KeyShardProcesses(RemoteKeyShards):
    """``n`` shards in as many worker processes, and their coordinator in this one: ``decide(records)`` gives
    the log entries of deciding the raw records in order. ``close()`` (or leaving a ``with``) stops the
    workers."""

    def __init__(self, config: ResolverConfig, n: int, max_window: int = 1024, assigner: Any = None,
                 wait: float = 600.0, state: Optional[ResolverState] = None, new_only: bool = False):
        super().__init__(config, n, max_window, assigner, wait, state=state, new_only=new_only)
        stores, self._seed = self._seed, []  # (each worker is given its own by the fork)
        ctx = multiprocessing.get_context("fork")
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        for s in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(there, [*self._conns, here], forking_parent(), config, s, n, stores[s]),
                               daemon=True, name=f"idres-key-shard-{s}")
            proc.start()
            there.close()
            self._conns.append(here)
            self._procs.append(proc)

    def close(self) -> None:
        """Stops the workers: asked to, or killed when a request failed (one may be stuck in it)."""
        polite = self._broken is None
        super().close()
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive() and polite:
                try:
                    conn.send(("stop",))
                    if conn.poll(5):
                        conn.recv()
                except (OSError, EOFError):
                    pass
            if not polite:
                proc.kill()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            conn.close()
        self._conns, self._procs = [], []

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
                if self._conns[s].poll(self.wait):
                    ok, got = self._conns[s].recv()
                else:
                    ok, got = False, f"key shard {s} did not answer within {self.wait:g} s"
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
