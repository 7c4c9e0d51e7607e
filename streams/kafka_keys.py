"""Keys of data subjects on Kafka (``streams.keys``' interface, for ``streams.sealing``).

The keys live in the compacted topic ``PREFIXkeys`` (one partition). The resolve worker, the decision log's
only writer, is the only writer here too; it sends the keys of a decision-log message and waits for the broker
to acknowledge them before it sends the message. Keys are numbered in the order they are made (``%012x``: the
key ID sealed values name); each is ``{subject hash, key, kind}`` (kind 0 an identifier's, 1 a content's).

* A run of keys made together is one message (``KEYS_PER_MESSAGE`` at most), keyed ``b`` + its first number,
  whose value is ``{"r": [first, last], "b": [[number, subject hash, key, kind], ...]}`` (base64): every key of
  the range it does not list is shredded. Shredding keys sends the message again without them (with none left,
  ``"b"`` is empty), so the broker compacts the version that held them away (``max.compaction.lag.ms``: a
  day). A key per message cost the worker a producer call per key, two per event.
* A message keyed by one number (``%012x``) holds that key alone: ``{"s": ..., "k": ..., "t": ...}``, and its
  tombstone (an empty value) shreds it. Topics written before keys were sent in runs hold these; they are read
  and shredded as they are.
* One message keyed ``secret`` holds what subjects are hashed with.

Each process keeps one store per deployment (``sealer_for``): 32 bytes per key in one array, indexed by the
key's number, and the writer a map of identifier hashes to numbers, and where each run begins.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import os
import threading
import time
from array import array
from typing import Any, Iterable, Optional

import orjson

from streams.keys import KEY_BYTES, KeyStoreError
from streams.sealing import Sealer

SECRET = b"secret"
RUN = b"b"  # the first byte of a run's message key
KEYS_PER_MESSAGE = 2048  # keys in one message at most (about 200 KB: under the brokers' 1 MB default)
_lock = threading.Lock()
_sealers: dict[tuple[str, str], Sealer] = {}


def keys_topic_configs() -> dict[str, str]:
    """A table: the latest value of each message key is kept, and a message that held a shredded key is compacted
    away within a day (tombstones of keys sent alone are kept a day for readers that are behind)."""
    return {"cleanup.policy": "compact", "max.compaction.lag.ms": str(86_400_000), "segment.ms": str(3_600_000),
            "delete.retention.ms": str(86_400_000)}


def sealer_for(settings: Any, writer: bool = False) -> Sealer:
    """This process's sealer for the deployment's decision log (a writer's, once any part of the process
    writes)."""
    ident = (settings.bootstrap, settings.prefix)
    with _lock:
        sealer = _sealers.get(ident)
        if sealer is None:
            sealer = _sealers[ident] = Sealer(KafkaKeys(settings))
        if writer:
            sealer.keys.become_writer()
        return sealer


def forget_sealers() -> None:
    """Closes every store of this process (tests; a worker that stops)."""
    with _lock:
        for sealer in _sealers.values():
            sealer.keys.close()
        _sealers.clear()


class KafkaKeys:
    def __init__(self, settings: Any):
        self.settings = settings
        self.topic = settings.topics.keys
        self.writer = False
        self._lock = threading.RLock()
        self._blob = bytearray()  # key n at [(n - 1) * 32, n * 32)
        self._have = bytearray()  # key n: 0 not seen, 1 held, 2 shredded
        self._subjects: dict[bytes, int] = {}  # (writer) identifier hash -> number
        self._hashes: dict[int, bytes] = {}  # (writer) number -> subject hash, of identifiers
        self._secret: Optional[bytes] = None
        self._next = 1
        self._adding: list[tuple[int, bytes, bytes, int]] = []
        self._unreadable = 0  # messages of a form this version does not know (a newer resolve worker's)
        # (writer) the runs of keys sent as one message: their first and last numbers, in order of the first (16
        # bytes a run; readers keep none: only shredding, the writer's, finds a key's run)
        self._run_firsts = array("q")
        self._run_lasts = array("q")
        self._consumer: Any = None
        self._tp: Any = None
        self._pos = 0
        self._producer: Any = None

    # -- reading the topic ---------------------------------------------------------------------
    def _open(self) -> None:
        if self._consumer is None:
            from kafka import TopicPartition

            from streams.stream_app import END_FETCH_WAIT_MS, reader

            self._tp = TopicPartition(self.topic, 0)
            self._consumer = reader(self.settings, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                                    fetch_max_wait_ms=END_FETCH_WAIT_MS)  # (read to its end: ``catch_up``)
            self._consumer.assign([self._tp])
            self._consumer.seek(self._tp, 0)

    def catch_up(self) -> None:
        """Reads the keys topic to its current end (the end a fetch response carries)."""
        with self._lock:
            self._open()
            consumer, tp = self._consumer, self._tp
            idle = time.monotonic()
            while True:
                for record in consumer.poll(timeout_ms=200, max_records=50_000).get(tp, ()):
                    if record.offset >= self._pos:
                        self._take(record.key, record.value, record.offset)
                        self._pos = record.offset + 1
                        idle = time.monotonic()
                high = consumer.highwater(tp)
                if high is not None and self._pos >= high:
                    return
                if time.monotonic() - idle > max(self.settings.timeout, 5) * 4:
                    raise KeyStoreError(f"reading the keys topic {self.topic} from {self.settings.bootstrap} stalled at "
                                        f"offset {self._pos} (end {high}): check that the broker is healthy")

    def _take(self, key: Optional[bytes], value: Optional[bytes], offset: int) -> None:
        if key == SECRET:
            if value:
                self._secret = base64.b64decode(orjson.loads(value)["secret"])
            return
        if key is not None and key[:1] == RUN:
            if value:  # (a run's message is never a tombstone: with every key shredded it lists none)
                v = orjson.loads(value)
                first, last = v["r"]
                self._room(last)
                listed = {entry[0]: entry for entry in v["b"]}
                for n in range(first, last + 1):
                    entry = listed.get(n)
                    if entry is None:
                        self._gone(n)
                    else:
                        self._hold(n, entry[1], entry[2], entry[3])
                if self.writer:
                    self._note_run(first, last)
                self._next = max(self._next, last + 1)
            return
        try:
            n = int(key or b"", 16)
        except ValueError:
            self._unreadable += 1
            return
        self._room(n)
        if not value:  # a tombstone: shredded
            self._gone(n)
        else:
            v = orjson.loads(value)
            self._hold(n, v["s"], v["k"], v["t"])
        self._next = max(self._next, n + 1)

    def _gone(self, n: int) -> None:
        self._have[n - 1] = 2
        self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES] = bytes(KEY_BYTES)
        if self.writer:
            h = self._hashes.pop(n, None)
            if h is not None and self._subjects.get(h) == n:
                del self._subjects[h]

    def _hold(self, n: int, subject: str, key: str, kind: int) -> None:
        if self._have[n - 1] != 2:
            self._have[n - 1] = 1
            self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES] = base64.b64decode(key)
        if self.writer and kind == 0:
            h = base64.b64decode(subject)
            self._subjects[h] = n
            self._hashes[n] = h

    def _note_run(self, first: int, last: int) -> None:
        firsts, lasts = self._run_firsts, self._run_lasts
        i = bisect.bisect_left(firsts, first)
        if i < len(firsts) and firsts[i] == first:
            lasts[i] = last
        else:
            firsts.insert(i, first)
            lasts.insert(i, last)

    def _run_of(self, n: int) -> Optional[int]:
        """(writer) The first number of the run message that holds key ``n``; None for a key sent alone."""
        i = bisect.bisect_right(self._run_firsts, n) - 1
        if i >= 0 and n <= self._run_lasts[i]:
            return self._run_firsts[i]
        return None

    def _room(self, n: int) -> None:
        if len(self._have) < n:
            grow = max(n - len(self._have), len(self._have) // 2, 1024)
            self._have.extend(bytes(grow))
            self._blob.extend(bytes(grow * KEY_BYTES))

    # -- the writer ----------------------------------------------------------------------------
    def become_writer(self) -> None:
        with self._lock:
            if self.writer:
                return
            self.writer = True
            from streams.kafka_io import producer

            self._producer = producer(self.settings)
            # (read again from the start: the writer needs the subjects, which readers do not keep)
            if self._consumer is not None:
                self._consumer.seek(self._tp, 0)
            self._pos = 0
            self.catch_up()
            if self._secret is None:
                self._secret = os.urandom(32)
                self._send(SECRET, orjson.dumps({"secret": base64.b64encode(self._secret).decode()}))
                self._producer.flush(timeout=max(self.settings.timeout, 5) * 4)

    def _send(self, key: bytes, value: Optional[bytes]) -> Any:
        return self._producer.send(self.topic, key=key, value=value, partition=0)

    def _hash(self, subject: str) -> bytes:
        assert self._secret is not None
        return hashlib.blake2b(subject.encode("utf-8", "surrogatepass"), key=self._secret, digest_size=16).digest()

    def key_of(self, subject: str, create: bool = True, new: bool = False) -> Optional[tuple[str, bytes]]:
        with self._lock:
            if not self.writer:
                raise KeyStoreError("this process reads the keys topic; only the resolve worker seals")
            h = self._hash(subject)
            if not new:
                n = self._subjects.get(h)
                if n is not None:
                    return f"{n:012x}", bytes(self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES])
            elif self._adding and self._adding[-1][1] == h:  # (an event's second sealed field)
                n = self._adding[-1][0]
                return f"{n:012x}", self._adding[-1][2]
            if not create:
                return None
            n, key = self._next, os.urandom(KEY_BYTES)
            self._next += 1
            self._room(n)
            self._have[n - 1] = 1
            self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES] = key
            kind = 1 if new else 0
            if kind == 0:
                self._subjects[h] = n
                self._hashes[n] = h
            self._adding.append((n, h, key, kind))
            return f"{n:012x}", key

    def flush(self) -> None:
        """Sends the keys made since the last flush, a run of consecutive numbers per message, and waits for the
        broker to acknowledge them."""
        with self._lock:
            if not self._adding:
                return
            adding, self._adding = self._adding, []
            futures = []
            start = 0
            for i in range(1, len(adding) + 1):
                if i < len(adding) and adding[i][0] == adding[i - 1][0] + 1 and i - start < KEYS_PER_MESSAGE:
                    continue
                run = adding[start:i]
                first, last = run[0][0], run[-1][0]
                futures.append(self._send(RUN + b"%012x" % first, orjson.dumps({"r": [first, last], "b": [
                    [n, base64.b64encode(h).decode(), base64.b64encode(key).decode(), kind] for n, h, key, kind in run]})))
                self._note_run(first, last)
                start = i
            self._producer.flush(timeout=max(self.settings.timeout, 5) * 4)
            for f in futures:
                f.get(timeout=max(self.settings.timeout, 5) * 4)  # (raises what the broker refused)

    def held(self, kid: str) -> bool:
        """Whether key ``kid`` is in the topic and not shredded (as of the last catch_up)."""
        try:
            n = int(kid, 16)
        except ValueError:
            return False
        with self._lock:
            return 0 < n <= len(self._have) and self._have[n - 1] == 1

    def shred(self, subjects: Iterable[str], kids: Iterable[str] = ()) -> int:
        """Shreds the keys of these subjects, and the keys ``kids``: a key sent alone by a tombstone, a run's
        keys by the run's message sent again without them; waits for the broker to acknowledge them."""
        with self._lock:
            self.flush()
            self.catch_up()
            named = {int(kid, 16) for kid in kids}
            hashes = {self._hash(s) for s in subjects}
            by_subject = {self._subjects[h] for h in hashes if h in self._subjects}
            numbers = by_subject | named
            runs = {r for n in numbers if (r := self._run_of(n)) is not None}
            latest: dict[int, dict[str, Any]] = {}  # a run's message as last sent, of the runs that lose keys
            if len(by_subject) < len(hashes) or runs:
                # (contents: found by reading the topic, the writer keeps no map; and a run's message is sent again
                # with the subjects of the keys it keeps, which only the topic holds for contents)
                from streams.stream_app import read_to_end

                def find(record: Any) -> None:
                    if not record.value or record.key == SECRET:
                        return
                    v = orjson.loads(record.value)
                    if record.key[:1] == RUN:
                        first = v["r"][0]
                        found = [e[0] for e in v["b"] if e[3] == 1 and base64.b64decode(e[1]) in hashes]
                        numbers.update(found)
                        if found or first in runs:
                            runs.add(first)
                            latest[first] = v
                    elif v["t"] == 1 and base64.b64decode(v["s"]) in hashes:
                        numbers.add(int(record.key, 16))

                read_to_end(self.settings, self.topic, find)
            numbers = {n for n in numbers if 0 < n <= len(self._have) and self._have[n - 1] == 1}
            # (the identifiers' keys last: a reader takes an erasure whose identifiers read as erased for done, so
            # those are shredded once every other key of it is, should the worker stop in between; a run that loses
            # an identifier's key and a content's loses both at once)
            sends: list[tuple[bool, int, bytes, Optional[bytes]]] = []
            for first, v in latest.items():
                gone = [e[0] for e in v["b"] if e[0] in numbers]
                if gone:
                    value = orjson.dumps({"r": v["r"], "b": [e for e in v["b"] if e[0] not in numbers]})
                    sends.append((any(n in self._hashes for n in gone), first, RUN + b"%012x" % first, value))
            for n in numbers:
                if self._run_of(n) is None:
                    sends.append((n in self._hashes, n, b"%012x" % n, None))
            sends.sort(key=lambda m: (m[0], m[1]))
            futures = [self._send(key, value) for _, _, key, value in sends]
            self._producer.flush(timeout=max(self.settings.timeout, 5) * 4)
            for f in futures:
                f.get(timeout=max(self.settings.timeout, 5) * 4)
            for _, _, key, value in sends:
                self._take(key, value, -1)
            return len(numbers)

    # -- what a sealer reads -------------------------------------------------------------------
    def key(self, kid: str) -> Optional[bytes]:
        try:
            n = int(kid, 16)
        except ValueError:
            return None
        with self._lock:
            if n < 1:
                return None
            if len(self._have) < n or self._have[n - 1] == 0:
                self.catch_up()
            if len(self._have) < n or self._have[n - 1] == 0:
                if self._unreadable:
                    raise KeyStoreError(f"key {kid} is not in the keys topic {self.topic} as this version reads it: "
                                        f"{self._unreadable} of its messages are of a form this version does not "
                                        "know; run this process on the version of the resolve worker")
                raise KeyStoreError(f"key {kid} is not in the keys topic {self.topic}: the topic lost messages the "
                                    "broker had acknowledged, or belongs to another deployment")
            if self._have[n - 1] == 2:
                return None
            return bytes(self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES])

    def prefetch(self, kids: Iterable[str]) -> None:
        with self._lock:
            for kid in kids:
                try:
                    n = int(kid, 16)
                except ValueError:
                    continue
                if len(self._have) < n or self._have[n - 1] == 0:
                    self.catch_up()
                    return

    def forget(self) -> None:
        """Reads the shreddings sent since (the keys held are the topic's; nothing else is kept)."""
        self.catch_up()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            if self._producer is not None:
                self._producer.close()
                self._producer = None
