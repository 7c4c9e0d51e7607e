"""Keys of data subjects on Kafka (``streams.keys``' interface, for ``streams.sealing``).

The keys live in the compacted topic ``PREFIXkeys`` (one partition): a message per key, keyed by the key's
number (``%012x``; the key ID sealed values name), whose value is ``{"s": subject hash, "k": key, "t": kind}``
(base64; kind 0 an identifier's, 1 a content's); and one keyed ``secret`` holding what subjects are hashed
with. Shredding a key is a tombstone (an empty value): every reader forgets the key when it reads it, and
the broker compacts the key's message away (``max.compaction.lag.ms``: a day). The resolve worker, the
decision log's only writer, is the only writer here too; it sends the keys of a decision-log message and
waits for the broker to acknowledge them before it sends the message.

Each process keeps one store per deployment (``sealer_for``): 32 bytes per key in one array, indexed by the
key's number, and the writer a map of identifier hashes to numbers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from typing import Any, Iterable, Optional

import orjson

from streams.keys import KEY_BYTES, KeyStoreError
from streams.sealing import Sealer

SECRET = b"secret"
_lock = threading.Lock()
_sealers: dict[tuple[str, str], Sealer] = {}


def keys_topic_configs() -> dict[str, str]:
    """A table: the latest value of each key is kept, and a shredded key's message is compacted away within a
    day (tombstones are kept a day for readers that are behind)."""
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
        self._consumer: Any = None
        self._tp: Any = None
        self._pos = 0
        self._producer: Any = None

    # -- reading the topic ---------------------------------------------------------------------
    def _open(self) -> None:
        if self._consumer is None:
            from kafka import TopicPartition

            from streams.stream_app import reader

            self._tp = TopicPartition(self.topic, 0)
            self._consumer = reader(self.settings, enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
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
        try:
            n = int(key or b"", 16)
        except ValueError:
            return
        self._room(n)
        if not value:  # a tombstone: shredded
            self._have[n - 1] = 2
            self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES] = bytes(KEY_BYTES)
            if self.writer:
                h = self._hashes.pop(n, None)
                if h is not None and self._subjects.get(h) == n:
                    del self._subjects[h]
        else:
            v = orjson.loads(value)
            if self._have[n - 1] != 2:
                self._have[n - 1] = 1
                self._blob[(n - 1) * KEY_BYTES:n * KEY_BYTES] = base64.b64decode(v["k"])
            if self.writer and v["t"] == 0:
                h = base64.b64decode(v["s"])
                self._subjects[h] = n
                self._hashes[n] = h
        self._next = max(self._next, n + 1)

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
        """Sends the keys made since the last flush and waits for the broker to acknowledge them."""
        with self._lock:
            if not self._adding:
                return
            adding, self._adding = self._adding, []
            futures = [self._send(b"%012x" % n, orjson.dumps({"s": base64.b64encode(h).decode(),
                                                              "k": base64.b64encode(key).decode(), "t": kind}))
                       for n, h, key, kind in adding]
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
        """Tombstones the keys of these subjects, and the keys ``kids``, and waits for the broker to acknowledge
        them."""
        with self._lock:
            self.flush()
            self.catch_up()
            named = {int(kid, 16) for kid in kids}
            hashes = {self._hash(s) for s in subjects}
            numbers = {self._subjects[h] for h in hashes if h in self._subjects}
            if len(numbers) < len(hashes):  # (contents: found by reading the topic, the writer keeps no map)
                from streams.stream_app import read_to_end

                def find(record: Any) -> None:
                    if record.value and record.key != SECRET:
                        v = orjson.loads(record.value)
                        if v["t"] == 1 and base64.b64decode(v["s"]) in hashes:
                            numbers.add(int(record.key, 16))

                read_to_end(self.settings, self.topic, find)
            numbers |= named
            # (the identifiers' keys last: a reader takes an erasure whose identifiers read as erased for done, so
            # those are shredded once every other key of it is, should the worker stop in between)
            numbers = sorted((n for n in numbers if 0 < n <= len(self._have) and self._have[n - 1] == 1),
                             key=lambda n: (n in self._hashes, n))
            futures = [self._send(b"%012x" % n, None) for n in numbers]
            self._producer.flush(timeout=max(self.settings.timeout, 5) * 4)
            for f in futures:
                f.get(timeout=max(self.settings.timeout, 5) * 4)
            for n in numbers:
                self._take(b"%012x" % n, None, -1)
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
        """Reads the tombstones sent since (the keys held are the topic's; nothing else is kept)."""
        self.catch_up()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            if self._producer is not None:
                self._producer.close()
                self._producer = None
