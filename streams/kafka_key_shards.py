"""Key shards over Kafka: the requests of ``streams.key_shard_processes`` carried by two topics instead of pipes,
so a shard's parts can be held, and its chains decided, on another machine.

``PREFIXkeyshard.requests`` has one partition per shard; the *holders* (``KeyShardHolder``, run by ``serve``)
share its partitions through their consumer group, as every worker shares its topics. ``PREFIXkeyshard.answers``
has one partition, read by the coordinator (``KafkaKeyShards``). A request or an answer is pickled and cut into
frames of at most ``FRAME_BYTES``, each a record whose headers name the coordinator's *session*, the request's
number in it, the shard, and the frame's place; a reader puts a message together from its frames and ignores
what another session or an earlier request sent (a coordinator that restarted, an answer that came late).

A session begins by giving each shard its parts (``load``: the parts of the state the coordinator was given,
as ``resolver.owner.stores_of`` splits it, or none). A holder keeps the parts of the shards it was loaded for,
by session; a request of a session it holds no parts of (its worker restarted, or the group gave the partition
to another worker) is answered with that reason, and the coordinator raises ``PartsLost``: a session cannot go
on without them. Its caller decides in order meanwhile and then has the session follow its state
(``KafkaKeyShards.follow``): only those shards are loaded anew, and the others are sent what changed (the resolve
role does, ``streams.stream_app``). A session that ends tells its holders to drop its parts (``drop``), so none
of its data stays in their memory (after an erasure, what it erased) until a new session's load replaces them.

What crosses is unpickled only into the classes the resolver's parts, requests and events are made of
(``restricted_loads``): a record someone else wrote on these topics cannot run code in a worker. Give only
idres workers the right to write them (Kafka ACLs), as for the decision log.
"""

from __future__ import annotations

import pickle
import time
import uuid
from typing import Any, Callable, Iterable, Optional

from resolver.config import ResolverConfig
from resolver.owner import stores_of
from resolver.state import ResolverState
from streams.kafka_io import KafkaIOError, KafkaSettings
from streams.key_shard_processes import RemoteKeyShards, ShardServer, restricted_loads

FRAME_BYTES = 512 * 1024  # (under the 1 MiB a broker takes in a message by default)
# the version of the requests and answers a coordinator and a holder exchange, sent with a session's load: a
# holder of another version answers that it cannot hold the session (during a rolling upgrade the resolve role
# then decides in order, and loads a new session once every worker runs one version). Raised whenever a request
# or an answer changes shape (2: a change's stamp, ``PartStore.written_since``; and ``since`` and ``put``; 3: ``since``
# answers None when the holder no longer notes so far back)
PROTOCOL = 3
OTHER_PROTOCOL = "speaks another version of the key shards' requests"
# how long a fetch of the key shards' topics waits when there is nothing to read: a broker answers a fetch as
# soon as a record arrives, so this only bounds how often an idle holder or a waiting coordinator asks again
WAIT_MS = 500
RESEND_S = 10.0  # a request not answered in this long is sent again (then after twice as long, and so on)


def requests_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}keyshard.requests"


def answers_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}keyshard.answers"


def group_of(settings: KafkaSettings) -> str:
    return f"{settings.prefix}key-shards"


# ------------------------------------------------------------------------------------ what crosses
def frames(blob: bytes) -> list[bytes]:
    return [blob[i:i + FRAME_BYTES] for i in range(0, len(blob), FRAME_BYTES)] or [b""]


def _headers(session: str, seq: int, shard: int, i: int, count: int) -> list[tuple[str, bytes]]:
    return [("session", session.encode()), ("seq", str(seq).encode()), ("shard", str(shard).encode()),
            ("frame", f"{i}/{count}".encode())]


def _header_of(record: Any) -> Optional[tuple[str, int, int, int, int]]:
    try:
        h = {k: v.decode() for k, v in (record.headers or ())}
        i, count = h["frame"].split("/")
        return h["session"], int(h["seq"]), int(h["shard"]), int(i), int(count)
    except (KeyError, ValueError, AttributeError, UnicodeDecodeError):
        return None  # (not a key shard frame: ignored)


class Assembler:
    """Puts messages together from their frames, by (session, request, shard)."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int, int], list[Optional[bytes]]] = {}

    def add(self, record: Any) -> Optional[tuple[str, int, int, bytes]]:
        """The whole message (session, request number, shard, bytes) once its last frame came, else None."""
        head = _header_of(record)
        if head is None:
            return None
        session, seq, shard, i, count = head
        key = (session, seq, shard)
        got = self._parts.setdefault(key, [None] * count)
        if len(got) != count or not 0 <= i < count:
            self._parts.pop(key, None)
            return None
        got[i] = record.value or b""
        if any(g is None for g in got):
            return None
        del self._parts[key]
        return session, seq, shard, b"".join(got)  # type: ignore[arg-type]

    def forget_before(self, session: str, seq: int) -> None:
        for key in [k for k in self._parts if k[0] != session or k[1] < seq]:
            del self._parts[key]


def _producer(settings: KafkaSettings) -> Any:
    from streams.kafka_io import producer

    return producer(settings, linger_ms=0, acks=1, enable_idempotence=False, compression_type=None,
                    max_request_size=2 * FRAME_BYTES)


def _send(prod: Any, topic: str, partition: int, session: str, seq: int, shard: int, blob: bytes) -> list[Any]:
    parts = frames(blob)
    return [prod.send(topic, value=frame, partition=partition, headers=_headers(session, seq, shard, i, len(parts)))
            for i, frame in enumerate(parts)]


# ------------------------------------------------------------------------------------ a holder's side
class KeyShardHolder:
    """A worker's key shards: the parts of each shard it was loaded for (by the coordinator's session), and the
    answer to each request."""

    def __init__(self, config: ResolverConfig, counted: Callable[[], None] = lambda: None,
                 assigned: Callable[[int], None] = lambda n: None) -> None:
        self.config = config
        self.servers: dict[int, tuple[str, ShardServer]] = {}
        self.counted = counted  # (called for each request answered)
        self.assigned = assigned  # (called with the number of shards the group gives this holder, as it changes)
        # (shard, session) -> (request, answer) answered last; a shard's entries of other sessions go when it
        # is loaded for a new one
        self.last: dict[tuple[int, str], tuple[int, bytes]] = {}

    def answered(self, session: str, seq: int, shard: int) -> Optional[bytes]:
        """What to send for a request of a session read again (after a rebalance, or sent again by a
        coordinator that got no answer): the answer given last when it is that request (an answer can be lost
        on its way), ``b""`` (nothing) for an earlier one, None for a request not answered yet."""
        last = self.last.get((shard, session))
        if last is None or seq > last[0]:
            return None
        return last[1] if seq == last[0] else b""

    def answer(self, session: str, seq: int, shard: int, blob: bytes) -> bytes:
        """The answer to a request (pickled), noted as this shard's last of its session."""
        out = pickle.dumps(self.handle(session, shard, blob), pickle.HIGHEST_PROTOCOL)
        held = self.servers.get(shard)
        if held is not None and held[0] == session:  # (loaded for it, now or before: the others' go)
            for key in [k for k in self.last if k[0] == shard and k[1] != session]:
                del self.last[key]
        self.last[(shard, session)] = (seq, out)
        return out

    def handle(self, session: str, shard: int, blob: bytes) -> tuple[bool, Any]:
        """(True, answer) or (False, the reason it could not answer)."""
        try:
            request = restricted_loads(blob)
            if request[0] == "load":  # ("load", n, store, protocol): a session's parts of this shard
                if len(request) != 4 or request[3] != PROTOCOL:
                    theirs = request[3] if len(request) >= 4 else 1
                    return False, (f"key shard {shard} {OTHER_PROTOCOL}: this worker speaks version {PROTOCOL}, the "
                                   f"coordinator version {theirs}; run one version of idres on every worker")
                _, n, store, _ = request
                self.servers[shard] = (session, ShardServer(self.config, shard, n, store))
                return True, None
            held = self.servers.get(shard)
            if request[0] == "drop":  # (the session ended: its parts, and the answers kept, go now)
                if held is not None and held[0] == session:
                    del self.servers[shard]
                self.last.pop((shard, session), None)
                return True, None
            if held is None or held[0] != session:
                return False, (f"key shard {shard} {NO_PARTS} (its worker restarted, or the group gave the shard "
                               f"to another worker)")
            self.counted()
            return True, held[1].handle(request)
        except Exception as exc:  # (a defect: the coordinator raises it with the reason)
            import traceback

            return False, f"key shard {shard} failed: {type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=8)


class KeptThrough:
    """Which shards keep their parts through a rebalance (``servers``: a holder's parts, by shard). Every rebalance
    takes each partition away before it gives them out again; a shard given back to this holder keeps its parts,
    unless another holder read its requests meanwhile (and handled them on parts of its own, loaded for the
    session): then the first request read here after the rebalance is not the one after the last read here, and
    the parts go before it is handled (the coordinator, told so, loads the shard anew). A shard given to another
    holder loses them at once."""

    def __init__(self, servers: dict[int, Any]) -> None:
        self.servers = servers
        self.after: dict[int, int] = {}  # (shard -> the offset after the last of its records read here)
        self.check: set[int] = set()  # (shards given back, whose first record read since is still to be checked)

    def assigned(self, mine: set[int]) -> None:
        """The group gave this holder the shards ``mine`` (all it holds from now on)."""
        for shard in [s for s in self.servers if s not in mine]:
            del self.servers[shard]
        self.after = {s: at for s, at in self.after.items() if s in mine}
        self.check = {s for s in self.servers if s in mine}

    def read(self, shard: int, offset: int) -> None:
        """A record of ``shard`` at ``offset`` is read here, before it is handled."""
        if shard in self.check:
            self.check.discard(shard)
            if offset != self.after.get(shard):  # (another holder read on it meanwhile, or it was read again)
                self.servers.pop(shard, None)
        self.after[shard] = offset + 1


def serve(settings: KafkaSettings, config: ResolverConfig, stopped: Callable[[], bool] = lambda: False,
          session_timeout_ms: int = 10_000, holder: Optional[KeyShardHolder] = None) -> KeyShardHolder:
    """Holds key shards for as long as ``stopped()`` says no: the partitions of the requests topic the group
    gives this worker, each request answered in order on the answers topic. A shard the group gives another
    holder loses its parts here (a holder given it back answers that it holds none: the coordinator loads it
    anew); one the group gives back to this holder at once keeps them, unless another holder read its requests
    meanwhile. A request read again (after a rebalance, or sent again by a coordinator that got no answer) is not
    handled twice: its answer is sent again."""
    from kafka import ConsumerRebalanceListener
    from kafka.errors import KafkaError

    from streams.stream_app import reader

    holder = holder if holder is not None else KeyShardHolder(config)
    consumer = reader(settings, group_id=group_of(settings), enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=WAIT_MS,
                      max_partition_fetch_bytes=4 * FRAME_BYTES,
                      session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=min(3000, session_timeout_ms // 3))

    kept = KeptThrough(holder.servers)

    class Moved(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            kept.assigned({tp.partition for tp in assigned})

    consumer.subscribe([requests_topic(settings)], listener=Moved())
    prod = _producer(settings)
    assembler = Assembler()
    answers = answers_topic(settings)
    held = -1
    try:
        while not stopped():
            batches = consumer.poll(timeout_ms=100, max_records=200)
            if len(consumer.assignment()) != held:  # (said once a poll has placed the consumer on them)
                held = len(consumer.assignment())
                holder.assigned(held)
            for tp, records in sorted(batches.items(), key=lambda kv: kv[0].partition):
                for record in records:
                    kept.read(tp.partition, record.offset)
                    whole = assembler.add(record)
                    if whole is None:
                        continue
                    session, seq, shard, blob = whole
                    if shard != tp.partition:
                        continue
                    answer = holder.answered(session, seq, shard)
                    if answer is None:
                        answer = holder.answer(session, seq, shard, blob)
                    if answer:
                        _send(prod, answers, 0, session, seq, shard, answer)
                prod.flush()
                try:
                    consumer.commit({tp: _offset_after(records[-1])})
                except KafkaError:  # (a rebalance: read again, a request answered already is skipped)
                    pass
    finally:
        consumer.close(autocommit=False)
        prod.close(timeout=2)
    return holder


def _offset_after(record: Any) -> Any:
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(record.offset + 1, "", -1)


# ------------------------------------------------------------------------------ the coordinator's side
NO_PARTS = "holds no parts of this coordinator's session"


class PartsLost(RuntimeError):
    """A shard's holder holds no parts of the session (its worker was lost, or the group gave the shard to
    another): the session can go on once those shards are loaded anew (``KafkaKeyShards.follow``), at once.
    ``shards``: the shards whose holders said so."""

    def __init__(self, message: str, shards: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.shards = frozenset(shards)


class Interrupted(RuntimeError):
    """The coordinator stopped waiting for answers (its worker is stopping, or its group rebalancing, which
    waits for the work in hand); the session cannot go on."""


class KafkaKeyShards(RemoteKeyShards):
    """``n`` key shards held by the workers that ``serve`` the requests topic, and their coordinator here:
    ``decide(records)`` gives the log entries of deciding the raw records in order, as ``LocalKeyShards``.
    ``wait``: seconds a shard may take to answer (a holder that does not is taken for gone)."""

    def __init__(self, settings: KafkaSettings, config: ResolverConfig, n: int, max_window: int = 1024,
                 assigner: Any = None, wait: float = 60.0, state: Optional[ResolverState] = None,
                 stopped: Optional[Callable[[], bool]] = None, new_only: bool = False):
        from kafka import TopicPartition

        from streams.stream_app import high_water, reader

        super().__init__(config, n, max_window, assigner, wait, state=state, new_only=new_only)
        self.settings = settings
        self.stopped = stopped  # (asked while waiting for answers: True stops the wait with ``Interrupted``)
        self.session = uuid.uuid4().hex
        self.seq = 0
        self.round_trips = 0
        self.resent = 0  # (requests sent again, unanswered)
        self.reloaded = 0  # (shards loaded anew in this session, their holders lost: ``follow``)
        self._tp = TopicPartition(answers_topic(settings), 0)
        self._consumer = reader(settings, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=WAIT_MS, max_partition_fetch_bytes=4 * FRAME_BYTES)
        self._consumer.assign([self._tp])
        self._consumer.seek(self._tp, high_water(
            self._consumer, self._tp, max(settings.timeout, 5),
            f" from {settings.bootstrap}: check that it exists (`streams.kafka_key_shards.create_topics` creates it)"))
        self._producer = _producer(settings)
        self._assembler = Assembler()
        stores, self._seed = self._seed, []
        try:
            self._ask({s: ("load", n, stores[s], PROTOCOL) for s in range(n)})
        except BaseException:
            self.close()  # (its clients, which nothing else would close)
            raise

    def _follow(self, st: ResolverState, since: int, touched: Any) -> int:
        """``LocalKeyShards.follow``'s work, also after a request failed (a holder lost, no answer in time, the
        group rebalancing): requests and answers are numbered, so what a failed one left unread answers nothing
        after. A shard whose holder holds no parts of the session (``PartsLost``: its worker was lost, or the group
        gave it to another) is loaded anew with its part of ``st``, not every shard; a restatement from before that
        load cannot be followed then (its holder does not know what was written before it: ``loaded_at``)."""
        self._broken = None
        reloaded: set[int] = set()
        try:
            while True:
                try:
                    return super()._follow(st, since, touched)
                except PartsLost as lost:
                    if not lost.shards or lost.shards <= reloaded:  # (loaded anew, and lost again at once)
                        raise
                    self._broken = None
                    reloaded |= lost.shards
                    stores = stores_of(st, self.n, seen=not self.new_only, only=lost.shards)
                    self._ask({s: ("load", self.n, stores[s], PROTOCOL) for s in sorted(lost.shards)})
                    self.reloaded += len(lost.shards)
        finally:
            # (a load sent, answered or not: that shard's holder knows nothing written before it, so the session
            # cannot follow a state from a place before it: a restatement from there loads a new session)
            if reloaded:
                self.loaded_at = max(self.loaded_at, st.position)

    def close(self, wait: float = 2.0) -> None:
        """Ends the session: its holders are told to drop its parts (``drop``), and its clients are closed,
        waiting at most ``wait`` seconds for each (nothing it sent is needed once it ends: a holder answers an
        ended session's requests to nobody)."""
        super().close()
        if self._consumer is not None:
            consumer, producer, self._consumer, self._producer = self._consumer, self._producer, None, None
            try:  # (the holders drop the session's parts at once: after an erasure, what it erased with them)
                blob = pickle.dumps(("drop",), pickle.HIGHEST_PROTOCOL)
                for s in range(self.n):
                    _send(producer, requests_topic(self.settings), s, self.session, self.seq + 1, s, blob)
            except Exception:  # (a holder given a new session's load drops this one's parts then)
                pass
            producer.close(timeout=wait)
            consumer.close(autocommit=False)

    def _asked_all(self, requests: dict[int, tuple]) -> dict[int, Any]:
        self.seq += 1
        seq = self.seq
        blobs = {s: pickle.dumps(request, pickle.HIGHEST_PROTOCOL) for s, request in requests.items()}
        self._send_requests(seq, blobs)
        self.round_trips += 1
        self._assembler.forget_before(self.session, seq)
        got: dict[int, tuple[bool, Any]] = {}
        started = time.monotonic()
        quiet, resend_at = RESEND_S, started + RESEND_S
        while len(got) < len(requests):
            if self.stopped is not None and self.stopped():
                raise Interrupted(f"request {seq} of session {self.session} was not waited for")
            for record in self._consumer.poll(timeout_ms=100, max_records=1000).get(self._tp, ()):
                whole = self._assembler.add(record)
                if whole is not None and whole[:2] == (self.session, seq) and whole[2] in requests:
                    got.setdefault(whole[2], restricted_loads(whole[3]))
            if len(got) == len(requests):
                break
            now = time.monotonic()
            if now > started + self.wait:
                missing = sorted(set(requests) - set(got))
                raise KafkaIOError(f"key shard(s) {missing} did not answer within {self.wait:g} s: is a worker "
                                   f"serving {requests_topic(self.settings)} running?")
            if now > resend_at:  # (a request or its answer may have been lost: its holder answers it once)
                self._send_requests(seq, {s: blob for s, blob in blobs.items() if s not in got})
                self.resent += 1
                quiet *= 2
                resend_at = now + quiet
        failed = [why for _, (ok, why) in sorted(got.items()) if not ok]
        if failed and all(NO_PARTS in why for why in failed):
            raise PartsLost(f"a key shard failed:\n{failed[0]}", [s for s, (ok, _) in got.items() if not ok])
        if failed:
            raise RuntimeError(f"a key shard failed:\n{next(why for why in failed if NO_PARTS not in why)}")
        return {s: answer for s, (_, answer) in got.items()}

    def _send_requests(self, seq: int, blobs: dict[int, bytes]) -> None:
        topic = requests_topic(self.settings)
        sent = [f for s, blob in blobs.items() for f in _send(self._producer, topic, s, self.session, seq, s, blob)]
        self._producer.flush()
        failed = next((f.exception for f in sent if f.failed()), None)
        if failed is not None:
            raise KafkaIOError(f"could not send a request to the key shards on {topic}: {failed}")


def create_topics(settings: KafkaSettings, n: int) -> None:
    """The two topics of ``n`` key shards (the requests topic must have exactly ``n`` partitions)."""
    from streams.kafka_io import admin_client, ensure_topics

    admin = admin_client(settings)
    try:
        ensure_topics(admin, settings, {requests_topic(settings): n, answers_topic(settings): 1},
                      exact=[requests_topic(settings)])
    finally:
        admin.close()
