"""The stream jobs on Kafka (Faust): validate, resolve, project. Same resolver and views as the embedded driver.

Data flow (topic names with the default prefix ``idres.``)::

    idres.raw.<channel> ──validate (scales out)──► idres.validated (1 partition) ──resolve (one owner)──►
        │                                                                       idres.decisions (1 partition)
        └─► idres.deadletter (bad records: original bytes, source topic/partition/offset, reason)     │
                                                                                   project ◄──────────┘

* **validate** parses and validates raw records, many partitions and workers at a time. Valid records
  are forwarded in order, many per message (Faust costs about 80 µs per message, so batching is what lets
  one resolve worker keep up). A bad record goes to the dead-letter topic with headers ``source_topic``,
  ``source_partition``, ``source_offset``, ``reason`` (the category, as in the embedded log),
  ``detail`` (the message) and ``event_id`` (when one could be read); the stream goes on.
* **resolve** owns the single ``validated`` partition. On start, and whenever it is (re)assigned that
  partition, it rebuilds the resolver state by folding the decision log topic to its end. For each batch
  it decides every event (an event whose ID is already in the state is a no-op), produces the decisions
  (one log entry per raw event, many entries per message), waits until the broker has them, and only
  then lets Faust acknowledge the batch, so source offsets are committed after the decisions are
  durable. A worker killed at any moment loses nothing and applies nothing twice: what it had produced
  is in the log it rebuilds from, and what it had not is re-delivered.
* **project** folds the decision log into the customer views (the same ``CustomerViews`` fold), from
  the beginning of the log on every start.

Kafka transactions are not used (principle 3): idempotency does the work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import re
import threading
import time
import weakref
from collections import deque
from datetime import datetime, timezone
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import orjson

from projections.customer import CustomerViews, ProjectionConfig
from resolver.config import ResolverConfig
from resolver.decisions import RECORD_TYPES, erasure_of
from resolver.restate import BARRIER_TYPES, MARKER_TYPES, event_key
from resolver.touch import Touched
from resolver.engine import Resolver, ResolverState, utc_iso
from resolver.errors import ReviewError
from schemas.channel import KNOWN_CHANNELS, UNDECODABLE_BATCH
from schemas.versions import DECISION_SCHEMA_VERSION
from streams import kafka_batches
from streams.kafka_io import (KafkaIOError, KafkaSettings, admin_client, check_reachable, client_error,
                              ensure_topics, producer)
from streams.log import bulk_work, check_version, dump_part, in_ranges, load_part, marker_fields, open_restatements, \
    skipped
from streams.ordering import ReorderBuffer, order_key
from streams.pipeline import ACCEPTED, DUPLICATE, INTERNAL, VALID, RecordPipeline

log = logging.getLogger("idres.stream")

ROLES = ("validate", "resolve", "project")
LOG_EVERY = 30.0  # seconds between progress lines in the worker's log
HOUSEHOLDS_EVERY = 5.0  # seconds between looks at the households (project role): published when changed
MESSAGE_BYTES = 128 * 1024  # conventional message sizes: well under any broker's 1 MiB default
WRITTEN_HERE = 32  # decision-log messages a worker that resolves and projects keeps for its project role, at most
# how long a reader that reads a topic to its current end lets the broker hold a fetch that finds nothing new
# (kafka-python's default is 500 ms): such a reader learns where a partition ends from a fetch's answer, so on
# an empty or caught-up partition each read waited that long (a worker's start read three empty topics)
END_FETCH_WAIT_MS = 50
# a decision-log message, up to its entries (sealed: ``streams.sealing``, keys in ``streams.kafka_keys``)
ENTRIES_HEAD = b'{"v":%d,"k":1,"entries":[' % DECISION_SCHEMA_VERSION


# what a dead letter keeps of a rejected record: within the message a broker takes by default (1 MB and a little),
# with room for its headers
DEAD_LETTER_BYTES = 1_000_000
DEAD_LETTER_KEY_BYTES = 16_384
DEAD_LETTER_DETAIL_CHARS = 4_096


def validated_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}validated"


def stream_topics(settings: KafkaSettings, channels: Iterable[str] = KNOWN_CHANNELS) -> dict[str, int]:
    """Every topic the stream jobs use, with its partition count."""
    wanted = settings.deployment_topics(list(channels))
    wanted[settings.topics.raw()] = settings.raw_partitions
    wanted[validated_topic(settings)] = 1
    if settings.resolve_partitions > 1 and settings.resolve_state == "keys":  # (streams.kafka_key_shards)
        from streams.kafka_key_shards import answers_topic, requests_topic

        wanted[requests_topic(settings)] = settings.resolve_partitions
        wanted[answers_topic(settings)] = 1
    elif settings.resolve_partitions > 1:  # (streams.kafka_shards)
        from streams.kafka_shards import replies_topic, tasks_topic

        wanted[tasks_topic(settings)] = settings.resolve_partitions
        wanted[replies_topic(settings)] = 1
    return wanted


def shard_topic(settings: KafkaSettings) -> str:
    """The topic with one partition per resolve shard."""
    if settings.resolve_state == "keys":
        from streams.kafka_key_shards import requests_topic

        return requests_topic(settings)
    from streams.kafka_shards import tasks_topic

    return tasks_topic(settings)


def create_stream_topics(settings: KafkaSettings, channels: Iterable[str] = KNOWN_CHANNELS) -> dict[str, int]:
    admin = admin_client(settings)
    try:
        wanted = stream_topics(settings, channels)
        # (the shards a worker sends to are the partitions the tasks topic has: they must agree)
        ensure_topics(admin, settings, wanted, exact=[shard_topic(settings)] if settings.resolve_partitions > 1 else [])
        return wanted
    finally:
        admin.close()


def topic_names(settings: KafkaSettings) -> set[str]:
    """The topics on the broker now (listed: reading one that does not exist would make the broker create it)."""
    admin = admin_client(settings)
    try:
        return set(admin.list_topics())
    except Exception as exc:  # (a broker that cannot list topics now is asked again at the next check)
        raise client_error(settings, exc, "listing topics") from None
    finally:
        admin.close()


def missing_topic(settings: KafkaSettings) -> Optional[str]:
    """What a reader of this deployment is missing, said in one line, or None: its decision-log topic, or the keys
    topic that log is sealed under. (Reading a topic that does not exist has the broker create it with its own
    defaults, and a misspelled prefix would be read as an empty deployment.)"""
    topics, where = settings.topics, settings.bootstrap
    names = topic_names(settings)
    if topics.decisions not in names:
        return (f"no topic {topics.decisions} on {where}: no idres deployment uses the topic prefix {topics.prefix!r} "
                "there (check --topic-prefix or $IDRES_TOPIC_PREFIX; `idres topics` creates a deployment's topics)")
    if topics.keys not in names:
        return (f"no topic {topics.keys} on {where}, which holds the keys the decision log is sealed under: `idres "
                f"topics --topic-prefix {topics.prefix}` creates it")
    return None


def raw_topics(settings: KafkaSettings) -> set[str]:
    """Every raw topic of this deployment on the broker now: the channel topics, ``raw`` and ``raw.unknown``,
    and any ``raw.<channel>`` a producer created for a channel of its own."""
    pattern = re.compile(settings.topics.raw_pattern())
    return {t for t in topic_names(settings) if pattern.match(t)}


CAUGHT_UP_EVERY = 0.1  # seconds between the validate role's reports of the quiet raw partitions it has read
# seconds such a report waits for the broker at most: its ends of partitions are asked on the connection a fetch
# that finds nothing holds for up to Faust's 1.5 s, so the wait often runs out (the next report asks again)
REPORT_WAIT = 1.0


def raw_partitions(settings: KafkaSettings) -> set[tuple[str, int]]:
    """``(topic, partition)`` of every raw topic's partitions on the broker now."""
    consumer = reader(settings)
    try:
        return {(topic, p) for topic in sorted(raw_topics(settings))
                for p in sorted(consumer.partitions_for_topic(topic) or ())}
    finally:
        consumer.close()


class NewRawTopic(RuntimeError):
    """A raw topic appeared that this worker does not consume: it stops, and its restart subscribes it."""


def chunked(items: list[Any], size_of: Callable[[Any], int], limit: int = MESSAGE_BYTES) -> Iterable[list[Any]]:
    """Splits ``items`` in order into runs whose summed size stays under ``limit`` (at least one item each)."""
    run: list[Any] = []
    size = 0
    for item in items:
        n = size_of(item)
        if run and size + n > limit:
            yield run
            run, size = [], 0
        run.append(item)
        size += n
    if run:
        yield run


# ------------------------------------------------------------------------------------------ the log
def reader(settings: KafkaSettings, **config: Any):
    """A kafka-python consumer for folding topics; an unreachable broker is one line within a second or
    so (as for the producer), not a timeout after half a minute."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    check_reachable(settings)
    ms = int(settings.timeout * 1000)  # (a listener that never answers: the configured wait, not half a minute)
    config = {"bootstrap_timeout_ms": ms, **config}
    if config.get("group_id") is None:  # (no group to commit to: said, or kafka-python warns of it at each reader)
        config.setdefault("enable_auto_commit", False)
    try:
        return KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-reader",
                             **config)
    except KafkaError as exc:
        raise client_error(settings, exc, "connecting to the broker") from None


def read_to_end(settings: KafkaSettings, topic: str, on_message: Callable[[Any], None], start: int = 0,
                partition: int = 0, idle_seconds: float = 3.0, stop: Optional[int] = None) -> int:
    """Reads ``topic``/``partition`` from ``start`` to its current end (or to offset ``stop``, when that comes
    first); returns the next offset.

    The end is the high-water mark carried by fetch responses. ListOffsets is deliberately not used: some
    Kafka-compatible brokers answer it wrongly (Tansu answers the start of the partition's last batch plus one:
    19,228 where 20,000 records had been written and acknowledged, and read back).
    """
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = reader(settings, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                      request_timeout_ms=int(max(settings.timeout, 5) * 1000) + 5000,
                      fetch_max_wait_ms=END_FETCH_WAIT_MS, max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        position = start
        idle_since = time.monotonic()
        while stop is None or position < stop:
            batches = consumer.poll(timeout_ms=200, max_records=10000)
            for record in batches.get(tp, ()):
                if record.offset < position:
                    continue
                if stop is not None and record.offset >= stop:
                    return position
                if record.offset > position and position == start:
                    # the log is folded from its start: a reader that skipped ahead would fold a wrong state
                    raise RuntimeError(f"reading {topic} from offset {start} began at {record.offset}")
                on_message(record)
                position = record.offset + 1
                idle_since = time.monotonic()
            high = consumer.highwater(tp)  # known once a fetch response for the partition has arrived
            if high is not None and position >= high:
                return position
            if time.monotonic() - idle_since > max(idle_seconds, settings.timeout) * 4:
                raise KafkaIOError(f"reading {topic} from {settings.bootstrap} stalled at offset {position} "
                                   f"(end {high}): check that the topic exists (`idres topics` creates it, "
                                   f"--topic-prefix names it) and that the broker is healthy")
        return position
    finally:
        consumer.close()


def decision_entries(value: bytes, settings: KafkaSettings) -> list[list[dict[str, Any]]]:
    """The entries of one decision-log message, ``{"v": version, "entries": [...]}`` (v 1 when absent), read
    through the deployment's keys when sealed (``"k": 1``); a message in a decision schema newer than this code
    reads is refused (``streams.log.check_version``)."""
    message = orjson.loads(value)
    check_version(message.get("v", 1), "message")
    if not message.get("k"):
        return message["entries"]
    from streams.kafka_keys import sealer_for

    sealer = sealer_for(settings)
    sealer.prefetch(value)
    return [sealer.unseal_entry(entry) for entry in message["entries"]]


SHRED_WAIT = 120.0  # seconds a reader waits for an erasure's keys to be shredded before it goes on without


def wait_shredded(settings: KafkaSettings, value: bytes, wait: Optional[float] = None, warn: bool = True) -> bool:
    """Waits until the erasures in a decision-log message read as erased (the resolve worker shreds their keys
    once the message is acknowledged); False if they still did not after ``wait`` seconds (``SHRED_WAIT``)."""
    wait = SHRED_WAIT if wait is None else wait
    from streams.kafka_keys import sealer_for
    from streams.sealing import is_erased

    sealer = sealer_for(settings)
    deadline = time.monotonic() + wait
    while True:
        sealer.forget()
        entries = decision_entries(value, settings)
        if all(is_erased(k) for e in entries if (d := erasure_of(e)) for k in d["nodes"]):
            return True
        if time.monotonic() > deadline:
            if warn:
                log.warning("the keys of an erasure were not shredded within %.0f s: the views are folded again "
                            "once they are (a resolve worker shreds them when it starts)", wait)
            return False
        time.sleep(0.2)


def unshredded(keys: Any, messages: Iterable[bytes]) -> tuple[list[str], list[str]]:
    """The keys to shred of the erasures in these decision-log messages (as written) whose identifiers' keys
    are still in the store ``keys`` (``streams.kafka_keys.KafkaKeys``, caught up): those identifiers' keys, the
    ones the erasure was written with (an identifier seen again since has another), as key IDs; and the
    subjects of its events, rejected records and unusable values (those still readable)."""
    from streams.sealing import Sealer, event_subject, node_kid, rejected_subject, unusable_subject

    kids: list[str] = []
    subjects: list[str] = []
    sealer = Sealer(keys)
    for value in messages:
        message = orjson.loads(value)
        if not message.get("k"):
            continue  # (written before the log was sealed: no key to shred)
        for entry in message["entries"]:
            d = erasure_of(entry)
            if d is None:
                continue
            named = [kid for kid in map(node_kid, d["nodes"]) if kid is not None]
            if any(keys.held(kid) for kid in named):
                kids += named
                subjects += [*map(event_subject, d["events"]), *map(rejected_subject, d["rejected"])]
                for u in d.get("unusable", ()):  # (read through their keys: gone once shredded)
                    fields = sealer.read_content(u["sealed"])
                    if fields is not None:
                        subjects.append(unusable_subject(u["type"], fields["raw"]))
    return kids, subjects


def finish_erasures(sealer: Any, messages: list[bytes]) -> int:
    """Shreds the keys ``unshredded`` finds for the erasures in these decision-log messages, through ``sealer``
    (a writer's, of ``streams.kafka_keys``); returns how many."""
    sealer.forget()  # (what was shredded since this process last read the keys, and nothing read before)
    kids, subjects = unshredded(sealer.keys, messages)
    if not kids:
        return 0
    gone = sealer.keys.shred(subjects, kids)
    sealer.forget()
    return gone


class ScanState:
    """What a pass over the decision log has found up to an entry, without folding it: the restatement
    markers with their positions, the entries, the last person's command (``erased``: the last erasure), and the
    canonical key of the newest event. ``take`` goes on with the next entry (as written, sealed or not: nothing
    sealed is read)."""

    def __init__(self) -> None:
        self.markers: dict[int, dict[str, Any]] = {}
        self.entries = 0
        self.barrier = -1
        self.erased = -1
        self.newest: Optional[Any] = None

    def copy(self) -> "ScanState":
        out = ScanState()
        out.markers, out.entries, out.barrier, out.newest = dict(self.markers), self.entries, self.barrier, self.newest
        out.erased = self.erased
        return out

    def take(self, entry: list[dict[str, Any]]) -> Optional[Any]:
        """Notes the next entry; returns the canonical key of its event, if it records one (None else)."""
        seq = self.entries
        self.entries += 1
        if not entry:
            return None
        first = entry[0]
        if first["type"] in MARKER_TYPES:
            self.markers[seq] = marker_fields(first)
            return None
        rec = next((d for d in reversed(entry) if d["type"] in RECORD_TYPES), None)
        if rec is None:
            return None
        if rec["type"] in BARRIER_TYPES:
            self.barrier = seq
            if rec["type"] == "customer_erased":
                self.erased = seq
            return None
        if rec["type"] == "interaction_recorded":
            key = event_key(rec["occurred_at"], rec["event_id"])
            # (every event an entry skipped holds is held by one read too: the newest of all is the one)
            if self.newest is None or key > self.newest:
                self.newest = key
            return key
        return None


class _Sink:
    """Where a pickle is written a frame at a time, by Python code: the interpreter can switch threads between
    two frames, so that pickling a large state in the background does not stop the worker's other work."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        part = bytes(data)  # (a frame, or a large buffer handed over as it is: ``pickle.PickleBuffer``)
        if isinstance(data, pickle.PickleBuffer):
            data.release()  # (copied: the buffer's owner may grow again)
        self.parts.append(part)
        return len(part)


def pickled(obj: Any) -> bytes:
    """``obj`` as ``save_checkpoint`` writes a part: its bulk tables without the pickler's memo
    (``streams.log.bulk_columns``)."""
    sink = _Sink()
    with bulk_work():  # (as ``save_checkpoint`` pickles)
        dump_part(sink, obj)
    return b"".join(sink.parts)


class _Source:
    """A pickle read a frame at a time by Python code (see ``_Sink``)."""

    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.at = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n < 0 else min(len(self.view), self.at + n)
        out = bytes(self.view[self.at:end])
        self.at = end
        return out

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), len(self.view) - self.at)
        buf[:n] = self.view[self.at:self.at + n]
        self.at += n
        return n

    def readline(self) -> bytes:
        end = self.at
        while end < len(self.view) and self.view[end] != 10:
            end += 1
        return self.read(end + 1 - self.at)


def unpickled(data: bytes) -> Any:
    with bulk_work():  # (millions of objects made at once: the collector would rescan them as they come)
        return load_part(pickle.Unpickler(_Source(data)))


def restate_due(now: float, late_since: float, written_since: int, next_restate: float, wait: float,
                entries: int) -> bool:
    """Whether late events noted first at ``late_since`` (with ``written_since`` log entries written after) are
    restated at ``now``: ``wait`` seconds after, or once ``entries`` were written after (0: never by count), and
    not before ``next_restate``."""
    return now >= next_restate and (now >= late_since + wait or 0 < entries <= written_since)


def spaced(entries: int, last: int, every: int) -> bool:
    """Whether a state folded up to ``entries`` is far enough from the last one kept (at ``last``) to be kept:
    ``every`` entries and a quarter of the entries before it (so that keeping costs a bounded share of the
    folding). The resolve role's states, the project role's and the lookup API's views."""
    return entries - last >= max(every, last // 4)


@dataclass
class RewindPoint:
    """The resolver state as the decision log's first ``scan.entries`` entries make it (pickled), the offset of
    the message that holds the next one, and what a pass over the log had found up to there: where a
    restatement that starts at or after it rebuilds its state from, instead of from the start of the log."""

    offset: int
    scan: ScanState
    state: bytes


class LogScan:
    """What one pass over the decision-log topic finds without folding it (no key is read): the restatement
    markers (``resolver.restate``) with their positions, the entries a reader skips, the entries, the last
    person's command, the canonical key of the newest event, and the first entry after the last person's
    command holding an event later than ``after`` (where a restatement for a late event of that key starts).

    ``resume``: the pass goes on from a rewind point instead of the start of the topic; valid for an ``after``
    no earlier than the newest event before the point (no entry before it is then later than ``after``).
    ``erasures``: the messages holding an erasure it read, with the position of the (last) erasure in each."""

    def __init__(self, settings: KafkaSettings, after: Optional[Any] = None, resume: Optional[RewindPoint] = None):
        state = resume.scan.copy() if resume is not None else ScanState()
        later: list[int] = []  # entries after the last person's command holding an event later than ``after``
        self.erasures: list[tuple[int, bytes]] = []

        def take(record: Any) -> None:
            message = orjson.loads(record.value)
            check_version(message.get("v", 1), "message")
            erased = state.erased
            for entry in message["entries"]:
                seq = state.entries
                barrier = state.barrier
                key = state.take(entry)
                if state.barrier != barrier:
                    later.clear()
                elif key is not None and after is not None and key > after:
                    later.append(seq)
            if state.erased != erased:
                self.erasures.append((state.erased, record.value))

        self.offset = read_to_end(settings, settings.topics.decisions, take,
                                  start=resume.offset if resume is not None else 0)  # (the next message's)
        self.state = state
        self.markers, self.entries, self.barrier, self.newest = state.markers, state.entries, state.barrier, state.newest
        self.skips = skipped(self.markers)
        self.start = next((seq for seq in later if not in_ranges(self.skips, seq)), None)

    def open_restatements(self) -> list[int]:
        """The positions of begun markers without an end (a worker stopped in between)."""
        return open_restatements(self.markers)


def fold_decision_log(settings: KafkaSettings, resolver: Optional[Resolver] = None,
                      views: Optional[CustomerViews] = None, start: int = 0, seq: int = 0,
                      on_entry: Optional[Callable[[int, list[dict[str, Any]]], None]] = None,
                      end: Optional[int] = None, rest: Optional[Callable[[list[dict[str, Any]]], None]] = None,
                      scan: Optional[LogScan] = None, stop: Optional[int] = None) -> tuple[int, int]:
    """Folds the decision log topic into ``resolver``'s state and/or ``views`` as it reads now: without the
    entries a restatement (``resolver.restate``) supersedes or has not completed (from the start of the topic,
    ``LogScan`` finds them first). Gives every entry, as written, with its position to ``on_entry`` (the
    changelog is made of them all). With ``end``, the entries from there on are not folded but given to
    ``rest``. ``stop``: the offset of the message it stops before (None: the topic's end). Returns (next offset,
    entries)."""
    count = seq
    if scan is None and start == 0:
        scan = LogScan(settings)
    skips = scan.skips if scan is not None else []

    def apply(record: Any) -> None:
        nonlocal count
        for entry in decision_entries(record.value, settings):
            try:
                live = not in_ranges(skips, count)
                if live and end is not None and count >= end:
                    live = False
                    if rest is not None:
                        rest(entry)
                if live and resolver is not None:
                    resolver.apply_all(entry)
                if live and views is not None:
                    views.apply_entry(count, entry)
                if on_entry is not None:
                    on_entry(count, entry)
            except Exception as exc:
                raise DecisionLogError(
                    f"the decision-log topic {settings.topics.decisions} cannot be folded at entry {count:,} (message "
                    f"offset {record.offset}): {type(exc).__name__}: {exc}. Its entries do not follow from the ones "
                    "before them: the broker lost or reordered messages it had acknowledged. Restore the topic from "
                    "a backup, or re-produce the raw input into a new deployment (another --topic-prefix)") from None
            count += 1

    with bulk_work():
        offset = read_to_end(settings, settings.topics.decisions, apply, start=start, stop=stop)
    return offset, count


def high_water(consumer: Any, tp: Any, wait: float, unreadable: str) -> int:
    """The end of an assigned partition, from the high-water mark a fetch response carries (not ListOffsets:
    see ``read_to_end``); the consumer is left somewhere in the partition. Raises ``KafkaIOError`` (``could
    not read TOPIC`` and ``unreadable``) when none came within ``wait`` seconds."""
    consumer.seek(tp, 0)
    deadline = time.monotonic() + wait
    while (high := consumer.highwater(tp)) is None:
        consumer.poll(timeout_ms=100, max_records=1)
        if time.monotonic() > deadline:
            raise KafkaIOError(f"could not read {tp.topic}{unreadable}")
    return high


def last_record(settings: KafkaSettings, topic: str, partition: int = 0) -> Optional[Any]:
    """The last record of ``topic``/``partition`` (None when it is empty)."""
    from kafka import TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = reader(settings, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                      fetch_max_wait_ms=END_FETCH_WAIT_MS)
    try:
        consumer.assign([tp])
        wait = max(settings.timeout, 5) * 4
        deadline = time.monotonic() + wait
        high = high_water(consumer, tp, wait, f" from {settings.bootstrap}: check that the topic exists (`idres "
                                               f"topics` creates it)")
        if high == 0:
            return None
        consumer.seek(tp, high - 1)
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=200, max_records=10).get(tp, ()):
                if record.offset == high - 1:
                    return record
        raise KafkaIOError(f"could not read the last record of {topic} (offset {high - 1})")
    finally:
        consumer.close()


def dead_letters(settings: KafkaSettings) -> list[dict[str, Any]]:
    """The dead-letter topic's records, as the views keep rejected records (``event_rejected``), keyed
    ``TOPIC/PARTITION:OFFSET`` by where they came from."""
    out: list[dict[str, Any]] = []

    def add(record: Any) -> None:
        headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or [])}
        out.append({
            "type": "event_rejected",
            "key": f"{headers.get('source_topic')}/{headers.get('source_partition')}:{headers.get('source_offset')}",
            "source": {"name": f"{headers.get('source_topic')}/{headers.get('source_partition')}",
                       "position": int(headers.get("source_offset", -1))},
            "reason": headers.get("reason", ""),
            "raw": (f"(a record batch of {len(record.value or b''):,} bytes, kept in {settings.topics.deadletter})"
                    if headers.get("reason") == UNDECODABLE_BATCH else
                    (record.value or b"")[:65536].decode("utf-8", "replace")),
            **({"detail": headers["detail"]} if "detail" in headers else {}),
            **({"event_id": headers["event_id"]} if "event_id" in headers else {}),
        })

    consumer = reader(settings)
    try:
        partitions = consumer.partitions_for_topic(settings.topics.deadletter) or set()
    finally:
        consumer.close()
    for p in sorted(partitions):
        read_to_end(settings, settings.topics.deadletter, add, partition=p)
    return out


def fold_deadletter(settings: KafkaSettings, views: CustomerViews, erased: Iterable[str] = ()) -> int:
    """Adds the dead-letter topic's records to the views' rejected records; returns how many. Those whose keys
    are in ``erased`` (named by an erasure: the erase command searched the topic) are kept without their text,
    as the views keep a rejected record an erasure named."""
    from projections.customer import erase_rejected

    erased = set(erased)
    found = dead_letters(settings)
    for r in found:
        if r["key"] in erased:
            erase_rejected(r)
    views.rejected.extend(found)
    return len(found)


# ------------------------------------------------------------------------------------------ metrics
@dataclass
class Metrics:
    started: float = field(default_factory=time.monotonic)
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def text(self, app: Any) -> str:
        """Prometheus text format: counters, rates since start, gauges, consumer lag per partition."""
        up = max(time.monotonic() - self.started, 1e-9)
        out = []
        for name in sorted(self.counters):
            out.append(f"# TYPE idres_{name}_total counter")
            out.append(f"idres_{name}_total {self.counters[name]}")
            out.append(f"# TYPE idres_{name}_per_second gauge")
            out.append(f"idres_{name}_per_second {self.counters[name] / up:.3f}")
        for name in sorted(self.gauges):
            out.append(f"# TYPE idres_{name} gauge")
            out.append(f"idres_{name} {self.gauges[name]}")
        out.append("# TYPE idres_consumer_lag gauge")
        for (topic, partition), position in sorted(self.positions.items()):
            high = None
            try:
                from faust.types import TP

                high = app.consumer.highwater(TP(topic, partition))
            except Exception:
                pass
            if high is not None:
                out.append(f'idres_consumer_lag{{topic="{topic}",partition="{partition}"}} {max(high - position, 0)}')
        return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------ the app
@dataclass
class WorkerOptions:
    roles: tuple[str, ...] = ROLES
    channels: tuple[str, ...] = KNOWN_CHANNELS
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_events: int = 2000
    # seconds a role waits to fill a batch (validate, resolve, project): a backlog fills batches by count, so
    # this bounds what an event waits when traffic is light (freshness: README, "Freshness through Kafka")
    batch_seconds: float = 0.05
    session_timeout: float = 10.0
    data_dir: Optional[Path] = None  # the worker's local directory (Faust's, under faust/); its state is in Kafka
    raw_topics: tuple[str, ...] = ()  # raw topics found on the broker at start, besides the channels'
    raw_topic_check: float = 10.0  # seconds between looks for raw topics created since
    # seconds the resolve role holds an event for earlier ones from other raw partitions (0: decide each
    # on arrival); see ``streams.ordering.ReorderBuffer``
    reorder_wait: float = 2.0
    # seconds after it happened that an event from a raw partition read to its end is no longer waited for
    # (None: such partitions are waited for as the others); see ``streams.ordering.ReorderBuffer``
    reorder_grace: Optional[float] = 0.25
    # events the resolve role holds for reordering at most: past it, the earliest are decided whatever the other
    # partitions may still send (so late events come, when the validated topic's partitions drift further apart
    # in event time than this: a backlog read unevenly)
    reorder_max_events: int = 100_000
    # seconds the coordinator waits for a resolve shard's reply before deciding the window itself, in order
    # (and deciding in order for as long again before it asks the shards anew); see ``streams.kafka_shards``
    shard_wait: float = 30.0
    # seconds a worker that decided to stop for a new raw topic may take to stop before it exits anyway
    # (``exit_after``): its supervisor restarts it, and nothing is lost, as after SIGKILL (a role's error ends it
    # at once: ``_exit_for``)
    stop_grace: float = 30.0
    # seconds after the first late event (one older than an event decided before it) the resolve role restates
    # the log from the earliest one's place (``resolver.restate``): late events meanwhile are decided as they come
    restate_wait: float = 10.0
    # ...or sooner, once this many entries were written after the first late event (0: the wait alone): each of
    # them is decided again, so on a busy stream the wait makes a straggler cost seconds; sooner, each costs less
    # and there are more of them (README, "Freshness through Kafka")
    restate_entries: int = 0
    # entries between the resolver states kept in memory for restatements to rebuild from (and at least a
    # quarter of the log's entries; 0: none kept, a restatement folds the log from its start)
    rewind_every: int = 20_000
    config: ResolverConfig = field(default_factory=ResolverConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)


class DecisionLogError(RuntimeError):
    """The decision log is not what this worker wrote or expects; it must stop and rebuild."""


def exit_after(reason: str, seconds: float) -> threading.Thread:
    """Makes this process exit (code 1, with one line on stderr) ``seconds`` from now unless it has ended by
    then: a worker that decided to stop must not hang in stopping (its consumers leaving the group, its tasks
    cancelled), or no supervisor would restart it. Exiting at any point loses nothing (the roles are
    effectively-once across a SIGKILL)."""
    def deadline() -> None:
        time.sleep(seconds)
        line = (f"idres: error: the worker did not stop within {seconds:g} s of deciding to ({reason}); exiting "
                "anyway: restart it (nothing is lost)\n")
        os.write(2, line.encode("utf-8", "replace"))  # (the process's stderr itself: Faust redirects sys.stderr)
        os._exit(1)

    thread = threading.Thread(target=deadline, name="idres-stop-deadline", daemon=True)
    thread.start()
    return thread


class StreamJobs:
    """The state of one worker process: which roles it runs, the resolver and views it keeps."""

    # (with ``--resolve-state keys``) the coordinator of the key shards (a session), while it is in step with the
    # resolver named next
    keyed: Any = None
    keyed_for: Any = None
    # (with ``--resolve-state keys``) where this worker's state went on without the session, which was in step with
    # it there: (a weak reference to the resolver, the position, what its decisions touched since: ``Touched``).
    # The next run has the session follow the state (``_catch_up_key_shards``) instead of loading a new one
    key_behind: Any = None
    key_load_seconds = 0.0  # (how long loading the session took)
    _end_instant_error_said = False  # (``_highwater_told``: the consumer failed to say when it fetched, logged once)
    following = 0.0  # (seconds the commands of the message in hand took on the key shards)

    def __init__(self, settings: KafkaSettings, options: WorkerOptions):
        self.settings = settings
        self.options = options
        self.metrics = Metrics()
        self.resolver: Optional[Resolver] = None
        self.views: Optional[CustomerViews] = None
        self.views_stale = False  # (the project role's views, to be folded again before the next batch)
        self.restating = False  # (the project role: inside a restatement of the log, its entries not yet folded)
        self.views_next_offset = 0
        self.views_seq = 0
        self.resolver_stale = True
        self.log_end = 0
        # the resolve role: what a pass over the log would find (kept as entries are written), and the states
        # a restatement rebuilds from (``RewindPoint``), the newest last
        self.scan_state = ScanState()
        self.rewind_points: list[RewindPoint] = []
        # a worker that resolves and projects: the entries of the decision-log messages it wrote itself, by offset,
        # as the project role reads them (``_written_here``), so that it neither parses nor unseals them again
        self.written_here: dict[int, list[list[dict[str, Any]]]] = {}
        self.holds_log_to_project = False  # (the project role holds the decision log's partition)
        # the project role: the views kept for a restatement (or a rebuild) to fold them again from
        from streams.view_points import ViewPoints

        self.view_points = ViewPoints(options.rewind_every)
        self.rebuilt_at = 0  # entries in the log when the state was last rebuilt from it
        self.failed: Optional[BaseException] = None
        self.stopping = False  # (the worker is stopping: ``_decide_held_at_stop``)
        self.app = self._build()

    def _build(self) -> Any:
        o = self.options
        s = self.settings
        if o.data_dir is not None:
            (Path(o.data_dir) / "faust").mkdir(parents=True, exist_ok=True)
        app = worker_app(self)(
            f"{s.prefix}{'-'.join(sorted(o.roles))}",
            broker=[f"kafka://{server}" for server in s.bootstrap_servers],
            store="memory://",
            # Faust makes a directory per app even with in-memory tables: under the worker's data dir,
            # never in whatever directory the worker was started from
            **({"datadir": str(Path(o.data_dir) / "faust" / "{conf.name}")} if o.data_dir is not None else {}),
            web_host=o.web_host,
            web_bind=o.web_host,  # (Faust binds to every interface unless told: its web_host is only a name)
            web_port=o.web_port,
            broker_session_timeout=o.session_timeout,
            broker_heartbeat_interval=max(o.session_timeout / 5, 1.0),
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=1.0,
            producer_acks=-1,
            producer_max_request_size=4 << 20,
            producer_compression_type=None if s.compression == "none" else s.compression,
            stream_buffer_maxsize=max(4 * o.batch_events, 4096),
            consumer_max_fetch_size=8 << 20,
            topic_allow_declare=False,
            topic_disable_leader=True,
            value_serializer="raw",
            key_serializer="raw",
            TableManager=tableless_manager(),
        )
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)
        # the validate role: raw partition -> the offset after its last record in the validated topic
        self.validated_upto: dict[tuple[str, int], int] = {}
        self.read_to_end: set[tuple[str, int]] = set()  # raw partitions last said to be read to their end
        jobs = self
        # a raw topic's batch that cannot be decoded is skipped and dead-lettered; one on the engine's own
        # topics stops the worker (streams/kafka_batches.py)
        raw_pattern = re.compile(s.topics.raw_pattern())
        kafka_batches.install(lambda topic: bool(raw_pattern.match(topic)))
        self.batch_letters: set[Any] = set()  # dead letters of skipped batches not yet acknowledged

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            return web.text(jobs.metrics.text(app), content_type="text/plain; version=0.0.4")

        @app.timer(interval=LOG_EVERY)
        async def log_progress() -> None:
            counters = jobs.metrics.counters
            if counters:
                up = max(time.monotonic() - jobs.metrics.started, 1e-9)
                log.warning("progress: %s", ", ".join(f"{k} {v:,} ({v / up:,.0f}/s)" for k, v in sorted(counters.items())))

        if "validate" in o.roles:
            # every raw topic: the configured channels' and every one found on the broker at start (a channel
            # of a producer's own); one created later stops the worker, whose restart subscribes it
            self.raw_subscribed = frozenset({s.topics.raw(c) for c in o.channels} | {s.topics.raw_unknown, s.topics.raw()}
                                            | set(o.raw_topics))
            raw = app.topic(*sorted(self.raw_subscribed), value_serializer="raw", key_serializer="raw")

            @app.timer(interval=o.raw_topic_check)
            async def watch_raw_topics() -> None:
                try:
                    found = await asyncio.get_running_loop().run_in_executor(None, raw_topics, s)
                except Exception as exc:
                    log.warning("could not list the raw topics: %s", exc)
                    return
                new = sorted(found - jobs.raw_subscribed)
                if new:
                    exc = NewRawTopic(f"new raw topic(s) {', '.join(new)}: this worker does not consume them yet; "
                                      "stopping so that its restart subscribes them (nothing on them is lost: "
                                      "they are read from their beginning)")
                    log.critical("stopping the worker: %s", exc)
                    await jobs.stop_for(exc)

            @app.timer(interval=1.0)
            async def dead_letter_skipped_batches() -> None:  # (while no record arrives after them)
                await jobs._dead_letter_batches()

            @app.timer(interval=CAUGHT_UP_EVERY)
            async def report_caught_up() -> None:  # (the partitions that send nothing: see _idle_said)
                if not app.rebalancing:
                    await jobs._report_idle()

            self.idle_reported = False  # whether the partitions were reported on since they were assigned

            self.validated = app.topic(validated_topic(s), value_serializer="raw", key_serializer="raw")
            self.deadletter = app.topic(s.topics.deadletter, value_serializer="raw", key_serializer="raw")
            app.agent(raw, name="validate")(self._fatal(self._validate))
        if "resolve" in o.roles:
            self.reorder = ReorderBuffer(o.reorder_wait, max_items=o.reorder_max_events, grace=o.reorder_grace)
            # late events (older than one decided before them): the earliest's canonical key, since when, how many
            self.earliest_late: Optional[Any] = None
            self.late_since = 0.0
            self.late_since_entries = 0  # (the log's entries when the first of them was noted)
            self.late_events = 0
            self.next_restate = 0.0  # (loop time) the earliest the next restatement may start
            self.open_restatements: list[int] = []
            self.owns_log = False  # this worker holds the validated partition: it writes the decision log
            self.held: dict[Any, int] = {}  # a validated message -> its events still held in the reorder buffer
            # the validated messages taken and not yet acknowledged, by partition in offset order; and those of
            # them done with, acknowledged once every one before them is (``_acknowledge``)
            self.taken: dict[Any, deque] = {}
            self.finished: set = set()
            self.deciding = asyncio.Lock()

            @app.timer(interval=max(min(o.reorder_wait / 4, 1.0 if o.reorder_grace is None else o.reorder_grace / 5,
                                        0.25), 0.02))
            async def release_held_events() -> None:  # (while no message arrives to release them)
                await jobs._release_held()

            self.decisions = app.topic(s.topics.decisions, value_serializer="raw", key_serializer="raw")
            self.shards_rest_until = 0.0  # (loop time) after a shard did not answer in time
            if s.resolve_partitions > 1 and s.resolve_state == "keys":  # (streams.kafka_key_shards)
                from streams.kafka_key_shards import KeyShardHolder

                self.key_holder = KeyShardHolder(o.config, counted=lambda: jobs.metrics.add("key_shard_requests"),
                                                 assigned=lambda n: jobs.metrics.gauges.update(key_shards_held=n))

                @app.task
                async def hold_key_shards() -> None:  # (in a thread of its own: its consumer blocks)
                    loop = asyncio.get_running_loop()
                    jobs.metrics.gauges["key_shards_held"] = 0  # (the key there before the thread sets it)
                    threading.Thread(target=jobs._hold_key_shards, args=(loop,), daemon=True,
                                     name="idres-key-shards").start()
            elif s.resolve_partitions > 1:  # resolve shards (streams.kafka_shards)
                from streams.kafka_shards import ShardReplica, replies_topic, tasks_topic

                self.shard_replica = ShardReplica(s, o.config)
                self.shard_tasks = app.topic(tasks_topic(s), value_serializer="raw", key_serializer="raw")
                self.shard_replies = app.topic(replies_topic(s), value_serializer="raw", key_serializer="raw")
                self.session = ""  # the coordinator's, named anew whenever it rebuilds its state
                self.window_no = 0
                self.replies: Any = None
                app.agent(self.shard_tasks, name="shard")(self._fatal(self._shard))
            if "validate" not in o.roles:
                self.deadletter = app.topic(s.topics.deadletter, value_serializer="raw", key_serializer="raw")
            app.agent(app.topic(validated_topic(s), value_serializer="raw", key_serializer="raw"),
                      name="resolve")(self._fatal(self._resolve))
        if "project" in o.roles:
            self.changes = app.topic(s.topics.changes, value_serializer="raw", key_serializer="raw")
            self.households_topic = app.topic(s.topics.households, value_serializer="raw", key_serializer="raw")
            # what the households topic holds: profile -> its household (None: not read since the views were
            # folded), and the log position it is as of
            self.households_published: Optional[dict[str, tuple[Any, ...]]] = None
            self.households_seq = -1
            self.households_next = 0.0  # (the event loop's time before which they are not computed again)
            self.projecting = asyncio.Lock()  # (one batch of the project role, or one publication of households)

            @app.timer(interval=HOUSEHOLDS_EVERY)
            async def publish_households() -> None:
                if jobs.view_points.pending and not jobs.views_stale:
                    async with jobs.projecting:
                        await jobs._erasures_shredded()
                if jobs.holds_log_to_project and not app.rebalancing and (jobs.views is None or jobs.views_stale):
                    # (the log's partition held and no message to fold since: the views are folded now, not at the
                    # next message, which a quiet log may never send; households published meanwhile were stale)
                    async with jobs.projecting:
                        await jobs._ensure_views()
                if jobs.views is not None and not jobs.views_stale:
                    async with jobs.projecting:
                        await jobs._publish_households()

            self.changes_next = 0  # the log position whose changes are published next (read at each rebuild)
            app.agent(app.topic(s.topics.decisions, value_serializer="raw", key_serializer="raw"),
                      name="project")(self._fatal(self._project))
        return app

    async def stop_for(self, exc: BaseException) -> None:
        """Stops the worker for ``exc`` (exit code 1): for a new raw topic, the way Faust stops, within
        ``stop_grace`` seconds however stopping goes; for an error, at once (``_exit_for``)."""
        if self.failed is None:
            self.failed = exc
            if not isinstance(exc, NewRawTopic):
                _exit_for(exc)
            exit_after(f"{type(exc).__name__}: {exc}".splitlines()[0][:200], self.options.stop_grace)
        await self.app.crash(exc)

    async def _release_held(self) -> None:
        """The resolve role's timer: decides what the reorder buffer releases and restates when due, while no
        message arrives to do it; at start, finishes a restatement a stopped worker left."""
        app = self.app
        try:
            if self.owns_log and self.resolver is None and not app.rebalancing:
                async with self.deciding:
                    await self._ensure_resolver()
            if (len(self.reorder) or (self.owns_log and self.restate_due(asyncio.get_running_loop().time()))) \
                    and self.resolver is not None:
                async with self.deciding:
                    await self._decide([], [])
        except Exception as exc:
            if not self.stopping_anyway(exc):
                # (as an agent's error does: raised into Faust's timer, it crashed the worker with a traceback and
                # no bound on the stop; a broker gone while a restatement was due)
                log.critical("stopping the worker: %s: %s", type(exc).__name__, exc)
                await self.stop_for(exc)

    async def _decide_held_at_stop(self) -> None:
        """As the worker stops (SIGTERM, a supervisor), before Faust waits for every message in hand to be
        acknowledged: the resolve role decides what its reorder buffer holds, in the order held, as at a
        rebalance. Faust's timers stop with the worker and no message arrives to release them, so the worker
        waited for them for ever; a batch still coming is decided as it arrives (``_decide``)."""
        self.stopping = True
        if "resolve" not in self.options.roles or self.failed is not None or self.resolver is None:
            return
        try:
            if len(self.reorder):
                async with self.deciding:
                    await self._decide([], [])
        except Exception as exc:
            if not self.stopping_anyway(exc):
                raise

    def letting_go(self) -> bool:
        """Whether the partitions in hand are being let go (a rebalance, or the worker stopping): Faust lets them go
        once every message in hand is acknowledged, so the resolve role holds nothing back."""
        return bool(self.app.rebalancing) or self.stopping

    def stopping_anyway(self, exc: BaseException) -> bool:
        """Whether ``exc`` came while the worker was stopping (a signal, a supervisor): its producer is gone, so what
        was being written is not, and the next worker decides it again from the log and the acknowledged offsets,
        as after SIGKILL (a restatement begun is closed and done again). Said so at warning level, not as a crash."""
        if not self.app.should_stop:
            return False
        log.warning("stopping: what was being written is left to the next worker (%s: %s)", type(exc).__name__, exc)
        return True

    def _fatal(self, agent: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Runs an agent so that an error stops the whole worker (exit code 1) instead of leaving it
        running without that role: a supervisor restarts it, and a restart rebuilds from the log."""
        jobs = self

        async def run(stream: Any) -> None:
            try:
                await agent(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if jobs.stopping_anyway(exc):
                    return
                log.critical("stopping the worker: %s: %s", type(exc).__name__, exc)
                await jobs.stop_for(exc)

        run.__name__ = agent.__name__.lstrip("_")
        return run

    async def _on_assigned(self, sender: Any = None, assigned: Any = (), **kwargs: Any) -> None:
        if "validate" in self.options.roles:
            self.idle_reported = False  # (reported on before the first batch from them: ``_validate``)
        if any(tp.topic == validated_topic(self.settings) for tp in assigned):
            self.resolver_stale = True  # another worker may have resolved while we did not own it
            self.owns_log = True
        if "project" in self.options.roles and any(tp.topic == self.settings.topics.decisions for tp in assigned):
            # another worker may have projected (and published changes) while we did not own it: the views
            # are folded again and the changelog resumed from its end, before the next batch
            self.views_stale = True
            self.holds_log_to_project = True

    async def _on_revoked(self, sender: Any = None, revoked: Any = (), **kwargs: Any) -> None:
        for tp in revoked:  # (another worker validates them now: this one no longer says how far they are read)
            self.validated_upto.pop((tp.topic, tp.partition), None)
            self.read_to_end.discard((tp.topic, tp.partition))
        if "resolve" in self.options.roles and any(tp.topic == validated_topic(self.settings) for tp in revoked):
            # the events held for reordering are another worker's now: their messages were not acknowledged,
            # so it reads them again
            self.reorder.drain()
            self.held.clear()
            for tp in revoked:
                for ev in self.taken.pop(tp, ()):
                    self.finished.discard(ev)
            self.owns_log = False
            # so are the late events it noted (logged: the next owner finds them in the log and restates for
            # them); the gauges say so, or a worker that resolves no more would say for ever that it waits
            self.earliest_late, self.late_events = None, 0
            for gauge in ("late_events_pending", "reorder_held_events", "raw_partitions_behind"):
                self.metrics.gauges[gauge] = 0
        if "project" in self.options.roles and any(tp.topic == self.settings.topics.decisions for tp in revoked):
            self.views_stale = True  # (another worker projects the log now: folded again if it comes back)
            self.view_points.pending = []
            self.holds_log_to_project = False
            self.written_here.clear()

    # -- validate -------------------------------------------------------------------------------
    async def _validate(self, stream: Any) -> None:
        m = self.metrics
        check = RecordPipeline(skip_blank=False).check  # a message is a record, even an empty one
        # (acknowledged here, once what the batch became is durable: ``take_events`` acknowledges a batch when the
        # loop fails part way, and the stopping worker committed records no one had decided)
        async for events in stream.noack_take(self.options.batch_events, within=self.options.batch_seconds):
            if not self.idle_reported:
                # the partitions assigned are reported on before their first records: a backlog's partitions
                # are fetched a few at a time, and the resolve role, told of these records first, would wait for
                # the others' first records only ``reorder_wait`` and decide these without them (late events).
                # Once per assignment: the broker is given time to answer (a consumer fetching a backlog is slow to);
                # the reports every CAUGHT_UP_EVERY give it a second only, so theirs do not count as this one
                self.idle_reported = await self._report_idle(wait=10.0)
            good: list[list[Any]] = []
            pending = []
            ends: dict[tuple[str, int], int] = {}  # raw partition -> the offset after its last record here
            # when the earliest of these records written to a partition read to its end was written (its Kafka
            # timestamp): live traffic, whose delay the resolve role allows for (a backlog's does not count)
            written: Optional[float] = None
            live = self.read_to_end
            for ev in events:
                msg = ev.message
                if msg.timestamp and (written is None or msg.timestamp < written) and \
                        (msg.topic, msg.partition) in live:
                    written = msg.timestamp
                raw = ev.value if isinstance(ev.value, (bytes, bytearray)) else bytes(ev.value or b"")
                m.positions[(msg.topic, msg.partition)] = ends[(msg.topic, msg.partition)] = msg.offset + 1
                outcome = check(raw)
                if outcome.kind != VALID:
                    if outcome.kind == INTERNAL:  # (a defect in the checks: its traceback is for the report)
                        log.error("internal error checking %s/%s@%s\n%s", msg.topic, msg.partition, msg.offset,
                                  outcome.trace)
                    pending.append(await self._dead_letter(msg.topic, msg.partition, msg.offset, raw,
                                                           outcome.reason, key=msg.key, detail=outcome.detail,
                                                           event_id=outcome.event_id))
                    continue
                good.append([msg.topic, msg.partition, msg.offset, raw.decode("utf-8")])
            m.add("validate_events", len(events))
            m.add("validate_rejected", len(events) - len(good))
            runs = list(chunked(good, lambda g: len(g[3]) + 64))
            for i, run in enumerate(runs):
                value: dict[str, Any] = {"events": run}
                if written is not None:
                    value["written"] = written  # (the resolve role learns from it how long records take to come)
                if i == len(runs) - 1:
                    # the raw partitions read to their end (the broker held nothing after these records when
                    # they were fetched): the resolve role need not wait for older events from them; and those
                    # with records left to read, which it waits for however long their next records take
                    value["caught_up"], value["behind"], told = self._ends_said(ends)
                    if any(at is not None for at in told):
                        value["caught_up_at"] = told  # (the resolve role's bound on what they can still send)
                    self.read_to_end.update((t, p) for t, p in value["caught_up"])
                    self.read_to_end.difference_update((t, p) for t, p in value["behind"])
                pending.append(await self.validated.send(value=orjson.dumps(value)))
            # the dead letters of batches skipped before these records: Faust commits a skipped batch's
            # offsets with the records after it, so its dead letter is durable first
            pending += await self._dead_letter_batches(wait=False)
            if pending:
                await asyncio.gather(*pending)  # durable before this batch is acknowledged
            for ev in events:
                ev.ack()
            self.validated_upto.update(ends)  # (sent: the partitions' quiet reports may follow them now)

    def _highwater(self, tp: Any) -> Optional[int]:
        """The high watermark of a raw partition the last fetch told (None: not known yet)."""
        try:
            return self.app.consumer.highwater(tp)
        except Exception:
            return None

    def _raw_assigned(self) -> list[Any]:
        """The raw partitions this worker validates now, in order."""
        return [tp for tp in sorted(self.app.consumer.assignment()) if tp.topic in self.raw_subscribed]

    def _highwater_told(self, tp: Any) -> tuple[Optional[int], Optional[int]]:
        """``_highwater`` of a raw partition, and when the fetch that told it was answered (microseconds since
        1970 on this machine's clock; None: not known): every record written to the partition before then is
        below it. (The instant is read first: the fetcher, on its own thread, sets the watermark, then the
        instant, so a watermark told later can only come with an earlier instant than its own, never a later.)"""
        at: Optional[int] = None
        try:
            ms = self.app.consumer._thread._ensure_consumer().last_poll_timestamp(tp)
            if isinstance(ms, int):
                at = ms * 1000
                self.metrics.add("validate_end_instants_told")
        except Exception as exc:  # (not told by this consumer: the resolve role estimates how long records take)
            # (Faust's consumer thread and aiokafka's fetch times are not public: a version that moved them makes
            # lookups wait for the estimate, not for the instant. Counted, and said once, so it is seen)
            self.metrics.add("validate_end_instant_errors")
            if not self._end_instant_error_said:
                self._end_instant_error_said = True
                log.warning("the Kafka consumer does not say when it fetched (%s: %s): live events wait for the "
                            "resolve role's estimate of how late records come, not for the instant the broker "
                            "told each partition's end; check the Faust and aiokafka versions against "
                            "constraints.txt", type(exc).__name__, exc)
        return self._highwater(tp), at

    def _ends_said(self, ends: dict[tuple[str, int], int]) -> tuple[list[list[Any]], list[list[Any]],
                                                                     list[Optional[int]]]:
        """The raw partitions of ``ends`` (partition -> the offset after the last record read) read to their
        end, the others (with records left to read, or not known to have none), and when the end of each of
        the first was told (``_highwater_told``). The first include the other partitions assigned that the
        last fetch told are read to their end, where it says when."""
        from faust.types import TP

        caught: list[list[Any]] = []
        behind: list[list[Any]] = []
        told: list[Optional[int]] = []
        for (topic, partition), end in sorted(ends.items()):
            high, at = self._highwater_told(TP(topic, partition))
            if _reached(high, end):
                caught.append([topic, partition])
                told.append(at)
            else:
                behind.append([topic, partition])
        # ...and the other partitions read to their end as the last fetch told, with when: each message then
        # bounds what every quiet partition can still send, as fresh as the fetches, not only the reports
        for tp in self._raw_assigned():
            if (tp.topic, tp.partition) not in ends:
                high, at = self._highwater_told(tp)
                if at is not None and _reached(high, self.validated_upto.get((tp.topic, tp.partition))):
                    caught.append([tp.topic, tp.partition])
                    told.append(at)
        return caught, behind, told

    async def _idle_said(self, wait: float = 1.0) -> tuple[list[list[Any]], list[list[Any]], list[Optional[int]]]:
        """The raw partitions this worker validates, as reported now and then (reports of partitions that may
        send nothing for long):

        - those whose records, up to the end the broker last told, are all in the validated topic (or that hold
          none), so that the resolve role does not wait ``reorder_wait`` for a quiet partition before it decides
          what others send. (A partition that holds records and has sent nothing since the worker started is
          not known to be read to its end.)
        - those that hold records not read yet (at start, those with a backlog: the resolve role waits for
          them, however long their first records take to come).
        - when the end of each of the first was told (``_highwater_told``; for one asked of the broker here, when
          it was asked).

        What is asked of the broker is waited for ``wait`` seconds at most."""
        consumer = self.app.consumer
        caught: list[list[Any]] = []
        caught_at: list[Optional[int]] = []
        behind: list[list[Any]] = []
        unread: list[tuple[Any, int]] = []  # (partition, high watermark) of those read nothing from since the start
        mine = self._raw_assigned()
        highs = {tp: self._highwater_told(tp) for tp in mine}
        # not fetched from yet (a backlog on many partitions is fetched a few at a time): asked of the broker, so
        # that one with records is said to be behind before the resolve role stops waiting for its first records
        # (``reorder_wait``) and decides the others' without them, which would make them late events
        unknown = [tp for tp, (high, _) in highs.items()
                   if high is None and (tp.topic, tp.partition) not in self.validated_upto]
        asked = time.time_ns() // 1000  # (what was written before the question is below the answer)
        # and those whose end the last fetch told too long ago: a consumer with nothing to read waits long for its
        # fetches' answers (Faust: 1.5 s), and what a partition can still send is bounded from when its end was told
        stale = [tp for tp, (high, at) in highs.items()
                 if high is not None and at is not None and asked - at > CAUGHT_UP_EVERY * 1_000_000]
        if unknown or stale:
            try:
                told = await asyncio.wait_for(consumer.highwaters(*unknown, *stale), wait)
                # (the larger of the fetch's mark and the answer: a broker may answer with less than its end, the
                # test broker with the start of its last batch plus one, never with less than a fetch told before)
                highs.update((tp, (max(told[tp], highs[tp][0] or 0), asked)) for tp in unknown + stale
                             if isinstance(told.get(tp), int))
            except Exception:  # (not told: said at the next report)
                pass
        for tp in mine:
            high, at = highs[tp]  # (None: not known yet, said at the next report)
            upto = self.validated_upto.get((tp.topic, tp.partition))
            if _reached(high, upto):
                caught.append([tp.topic, tp.partition])
                caught_at.append(at)
            elif high and upto is None:
                unread.append((tp, high))
            elif high and upto is not None:
                behind.append([tp.topic, tp.partition])
        if unread:
            # where this worker's group started them: the offset committed when they were assigned (the consumer's
            # position says nothing here: it runs ahead of the records validated, by what it fetched), else the
            # partition's first offset
            committed = getattr(consumer, "_committed_offset", {})
            start = {tp: committed.get(tp) for tp, _ in unread}
            first = [tp for tp, at in start.items() if at is None]
            if first:
                try:  # (asked of the broker, and not for long: a report is only a report)
                    told = await asyncio.wait_for(consumer.earliest_offsets(*first), wait)
                    start.update((tp, told[tp]) for tp in first if isinstance(told.get(tp), int))
                except Exception:
                    pass
            behind += [[tp.topic, tp.partition] for tp, high in unread
                       if isinstance(start.get(tp), int) and start[tp] < high]
        return caught, sorted(behind), caught_at

    async def _report_idle(self, wait: float = REPORT_WAIT) -> bool:
        """Reports to the resolve role (``_idle_said``, waiting ``wait`` seconds at most for the broker) which raw
        partitions are read to their end, and which have records left to read; whether it was sent. A report that
        fails is only a report: the next one comes CAUGHT_UP_EVERY later."""
        try:
            caught, behind, told = await self._idle_said(wait)
            self.read_to_end.update((t, p) for t, p in caught)
            if caught or behind:
                report: dict[str, Any] = {"caught_up": caught, "behind": behind}
                if any(at is not None for at in told):
                    report["caught_up_at"] = told
                await (await self.validated.send(value=orjson.dumps(report)))
            return True
        except Exception as exc:
            log.warning("could not report the raw partitions read to their end: %s", exc)
            return False

    async def _dead_letter_batches(self, wait: bool = True) -> list[Any]:
        """Sends a dead letter for each undecodable batch the consumer skipped; returns every such dead
        letter not yet acknowledged (awaited here unless ``wait`` is false)."""
        for b in kafka_batches.take():
            self.metrics.add("validate_undecodable_batches")
            self.metrics.add("validate_undecodable_offsets", b.next_offset - b.first_offset)
            future = await self._dead_letter(b.topic, b.partition, b.first_offset, b.raw, UNDECODABLE_BATCH,
                                             detail=f"offsets {b.first_offset}..{b.next_offset - 1}: {b.reason}",
                                             extra=[("source_offset_end", str(b.next_offset - 1).encode())])
            self.batch_letters.add(future)
            future.add_done_callback(self.batch_letters.discard)
            future.add_done_callback(partial(self._lettered, b.topic, b.partition, b.next_offset))
        pending = list(self.batch_letters)
        if wait and pending:
            await asyncio.gather(*pending)
        return pending

    def _lettered(self, topic: str, partition: int, end: int, future: Any) -> None:
        """A skipped batch's dead letter is durable: its offsets (up to ``end``) count as passed on, so a
        partition whose last records are such a batch is read to its end, not reported as one with records
        left to read (which the resolve role would wait for, ``backlog_wait``, at every start)."""
        from faust.types import TP

        if future.cancelled() or future.exception() is not None:
            return
        if TP(topic, partition) in self.app.consumer.assignment() and \
                end > self.validated_upto.get((topic, partition), -1):
            self.validated_upto[(topic, partition)] = end

    async def _dead_letter(self, topic: str, partition: int, offset: int, raw: bytes, reason: str,
                           key: Optional[bytes] = None, detail: Optional[str] = None,
                           event_id: Optional[str] = None, extra: Iterable[tuple[str, bytes]] = ()) -> Any:
        """Keeps a rejected record's original bytes, with where it came from and why (``reason``: the
        category, as in the embedded log's ``event_rejected``; ``detail``: the message), in the dead-letter topic."""
        headers = [("source_topic", topic.encode()), ("source_partition", str(partition).encode()),
                   ("source_offset", str(offset).encode()), ("reason", reason.encode("utf-8"))]
        if event_id is not None:
            headers.append(("event_id", event_id.encode("utf-8")))
        if detail is not None:
            headers.append(("detail", detail[:DEAD_LETTER_DETAIL_CHARS].encode("utf-8")))  # (whole characters)
        headers += extra
        # (a record larger than a broker takes in one message is kept cut short, with the size it had: sent whole,
        # it would fail the batch it came in, whose records would then be acknowledged and never decided)
        if len(raw) > DEAD_LETTER_BYTES:
            headers.append(("truncated_from_bytes", str(len(raw)).encode()))
            raw = raw[:DEAD_LETTER_BYTES]
        if key is not None and len(key) > DEAD_LETTER_KEY_BYTES:
            headers.append(("key_truncated_from_bytes", str(len(key)).encode()))
            key = key[:DEAD_LETTER_KEY_BYTES]
        return await self.deadletter.send(key=key, value=raw, headers=headers)

    # -- resolve --------------------------------------------------------------------------------
    def _rebuild_resolver(self) -> None:
        from resolver.restate import BEFORE_ALL

        from streams.restating import Unrestated

        started = time.monotonic()
        resolver = Resolver(self.options.config, ResolverState())
        scan = LogScan(self.settings)
        self.written_here.clear()  # (another worker may have written meanwhile, an erasure among it)
        if self.owns_log:
            self._finish_erasures(scan)
        unrestated = Unrestated(scan.skips)
        self.log_end, entries = fold_decision_log(self.settings, resolver=resolver, scan=scan,
                                                  on_entry=unrestated.take)
        if entries != scan.entries:
            raise DecisionLogError(
                f"the decision-log topic {self.settings.topics.decisions} held {scan.entries:,} entries, then "
                f"{entries:,}: another resolve worker is writing; stopping so that a restart rebuilds from what "
                "the log really holds")
        self.resolver = resolver
        self.resolver_stale = False
        self.scan_state = scan.state  # (kept up to date as entries are written)
        self.rewind_points = []
        self.rebuilt_at = entries
        self.latest_key = scan.newest or BEFORE_ALL  # the canonical key of the newest event decided
        self.open_restatements = scan.open_restatements()
        if unrestated.earliest is not None and not self.open_restatements:
            # late events a worker logged and stopped before restating for (a restatement left open is done again
            # first, from before them): restated now, as that worker would have
            if self.earliest_late is None:
                self.late_since, self.late_since_entries = float("-inf"), entries
            if self.earliest_late is None or unrestated.earliest < self.earliest_late:
                self.earliest_late = unrestated.earliest
            self.late_events = max(self.late_events, unrestated.count)
            self.metrics.gauges["late_events_pending"] = self.late_events
        self.metrics.gauges["resolver_rebuild_seconds"] = round(time.monotonic() - started, 3)
        self.metrics.gauges["resolver_entries_at_rebuild"] = entries
        log.warning("resolver state rebuilt from %s: %d entries in %.1f s", self.settings.topics.decisions,
                    entries, time.monotonic() - started)

    def _finish_erasures(self, scan: LogScan) -> None:
        """Shreds the keys of erasures the log holds whose identifiers' keys are still there (the worker that
        logged them stopped before it shredded them, or part way), before the state is folded: until then every
        reader waits for them (``wait_shredded``), and nothing else would ever shred them. The identifiers' keys
        are the ones the erasure was written with (an identifier seen again since has another), read from the
        message as written; the contents' are its events' and rejected records'."""
        from streams.kafka_keys import sealer_for

        gone = finish_erasures(sealer_for(self.settings, writer=True), [value for _, value in scan.erasures])
        if gone:
            log.warning("an erasure in the log had not been shredded (a worker stopped in between): %d keys "
                        "shredded now", gone)

    async def _resolve(self, stream: Any) -> None:
        m = self.metrics
        loop = asyncio.get_running_loop()
        # a validated message holds a few hundred events: a few messages per batch keep batches short. Its
        # events go through the reorder buffer, so that events of several raw partitions are decided in
        # event-time order; the message is acknowledged once every event of it is decided and logged
        async for events in stream.noack_take(8, within=self.options.batch_seconds):
            async with self.deciding:
                entries: list[list[dict[str, Any]]] = []
                done: list[Any] = []  # messages with nothing held
                now = loop.time()
                for ev in events:
                    msg = ev.message
                    m.positions[(msg.topic, msg.partition)] = msg.offset + 1
                    self.taken.setdefault(msg.tp, deque()).append(ev)
                    value = orjson.loads(ev.value)
                    if value.get("reviews"):
                        entries += await self._reviews(value["reviews"])
                    if value.get("commands"):
                        entries += await self._commands(value["commands"])
                    held = 0
                    for topic, partition, offset, raw in value.get("events", ()):
                        raw = raw.encode("utf-8")  # the original bytes (the validate role checked they are UTF-8)
                        key = order_key(raw)
                        self.reorder.add(key, (topic, partition), (key, topic, partition, offset, raw, ev), now)
                        held += 1
                    if value.get("caught_up"):
                        told = value.get("caught_up_at")  # (when the validate role learned so; not from older ones)
                        self.reorder.caught_up([(topic, partition) for topic, partition in value["caught_up"]],
                                               told if isinstance(told, list) and len(told) == len(value["caught_up"])
                                               and all(at is None or isinstance(at, int) for at in told) else None)
                    if value.get("behind"):
                        self.reorder.behind((topic, partition) for topic, partition in value["behind"])
                    if held and isinstance(value.get("written"), (int, float)):
                        self.reorder.delayed(time.time() - value["written"], now)
                    if held:
                        self.held[ev] = self.held.get(ev, 0) + held
                    else:
                        done.append(ev)
                self.reorder.reading(self._unread())
                await self._decide(entries, done)

    def _unread(self) -> bool:
        """Whether the validated topic holds messages after the last one this worker's resolve role took (its
        high watermark, as the last fetch told, is further): then the reorder buffer's sources may have older
        records still to come, however long they have been silent."""
        from faust.types import TP

        topic = validated_topic(self.settings)
        for (t, partition), end in self.metrics.positions.items():
            if t == topic:
                high = self._highwater(TP(t, partition))
                if high is not None and end < high:
                    return True
        return False

    async def _reviews(self, verdicts: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """A person's verdicts on possible matches (`idres review accept|reject --bootstrap`): decided at once,
        in the order given (an explicit ordering by a person)."""
        return await self._persons_decide(
            [{**verdict, "command": "review", "by": verdict["reviewer"]} for verdict in verdicts], (ReviewError,),
            ("resolve_reviews", "resolve_review_errors"), lambda c, exc: f"review verdict not recorded: {exc}")

    async def _commands(self, commands: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """A person's unmerges, lifts and review verdicts (`idres unmerge --bootstrap`, the API's decisions):
        decided at once, in the order given (``streams.commands``)."""
        from resolver.errors import IdresError

        return await self._persons_decide(
            commands, (IdresError, KeyError, TypeError, ValueError), ("resolve_commands", "resolve_command_errors"),
            lambda c, exc: f"command not recorded: {c.get('command')}: {exc}")

    async def _persons_decide(self, commands: list[dict[str, Any]], refused: tuple[type[Exception], ...],
                              counted: tuple[str, str], refusal: Callable[[dict[str, Any], Exception], str]
                              ) -> list[list[dict[str, Any]]]:
        """The entries of a person's commands (``streams.commands``), each decided here and kept in step on the
        key shards (``_keep_key_shards_in_step``); one that raises ``refused`` is logged (``refusal``) and
        counted (``counted``: decided, refused), and changes nothing (a command checks everything before it
        decides)."""
        from streams.commands import decide

        await self._ensure_resolver()
        out = []
        self.following = 0.0
        for command in commands:
            items = self._keyed_footprint(command)
            try:
                out.append(decide(self.resolver, command))
                self.metrics.add(counted[0])
            except refused as exc:
                log.warning("%s", refusal(command, exc))
                self.metrics.add(counted[1])
                continue
            await self._keep_key_shards_in_step(command, items, out[-1])
        return out

    def _keyed_footprint(self, command: dict[str, Any]) -> Optional[set[str]]:
        """The footprint of a person's command against the state before it (``footprint.of_command``), if a
        session of the key shards is in step with that state; else None."""
        if self.keyed is None or self.keyed_for is not self.resolver:
            return None
        from resolver import footprint

        try:
            return footprint.of_command(self.resolver.state, command)
        except (TypeError, ValueError, KeyError, AttributeError):  # (a malformed command: refused when decided)
            return None

    async def _keep_key_shards_in_step(self, command: dict[str, Any], items: Optional[set[str]],
                                       entry: list[dict[str, Any]]) -> None:
        """After a person's command changed the state here (``entry``): the session of the key shards, if in
        step before it, decides it too, on a slice of its footprint (``LocalKeyShards.decide_command``), and stays
        in step if it gives the same entry. Otherwise (an erasure, a name its slice did not hold, a different
        entry, a failure) the next run loads a new session from the state, every part sent anew; and so it does
        once the commands of one message have taken as long on slices as loading the session took
        (``key_load_seconds``: a batch of a thousand verdicts would otherwise hold up the events for as many
        slices' round trips)."""
        if items is None:  # (no session in step, or a command no footprint covers)
            self.keyed_for = None
            return
        if self.following >= self.key_load_seconds:
            self.keyed_for = None
            self.metrics.add("key_shard_commands_left_to_a_load")
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            got = await loop.run_in_executor(None, self.keyed.decide_command, command, items)
        except Exception as exc:
            self._key_shards_failed(exc, f"a person's {command.get('command')}")
            return
        finally:
            self.following += loop.time() - started
        if got == entry:
            self.metrics.add("key_shard_commands")
            return
        if got is not None:  # (a defect: the slice missed what the command read)
            log.error("the key shards decided a person's %s otherwise than this worker: the next run loads them "
                      "anew", command.get("command"))
        self.keyed_for = None

    def _key_shards_failed(self, exc: BaseException, what: str, run: bool = False, again: bool = False) -> bool:
        """The key shards failed deciding ``what`` (a holder lost, no answer in time, a defect on a shard; or a
        rebalance, which waits for the events in hand while the shards cannot answer). A ``run`` of events
        changes this worker's state only once the shards answered it whole, so if the session was in step with
        the state before it and the failure was the transport's (a holder lost, no answer in time, a
        rebalance; also while the session was catching up), the session is kept: this worker decides in order,
        noting what it changes, and the next run has the session follow (``_catch_up_key_shards``), loading anew
        only the shards whose holder was lost.
        Otherwise (a defect on a shard, a person's command) the session ends and the next run loads a new one.
        Either way the next run waits until the shards have rested for ``IDRES_SHARD_WAIT`` if they failed or
        did not answer (not for a lost holder or a rebalance). ``again``: a run that found a holder lost is sent
        again at once, after the session followed (said so in the warning). Returns whether the session was kept."""
        from streams.kafka_key_shards import Interrupted, PartsLost

        kept = (run and isinstance(exc, (PartsLost, Interrupted, KafkaIOError)) and self.keyed is not None
                and (self.keyed_for is self.resolver or self._behind(self.resolver)))
        log.warning("the key shards failed on %s (%s): %s", what, " ".join(f"{type(exc).__name__}: {exc}".split()),
                    "the lost shards are loaded anew and the events sent again" if kept and again
                    else "this worker decides without them until " + ("they follow its state" if kept
                                                                      else "a new session"))
        if kept:
            self._fall_behind_key_shards()
        else:
            self._end_key_session()
        if isinstance(exc, PartsLost):  # (the group moved a shard: the next run loads it anew)
            self.metrics.add("key_shard_sessions_lost")
        elif not isinstance(exc, Interrupted):
            self.metrics.add("resolve_shard_failures")
            self.shards_rest_until = asyncio.get_running_loop().time() + self.options.shard_wait
        return kept

    def _fall_behind_key_shards(self) -> bool:
        """This worker's state is about to go on without the session of the key shards: if the session is in step
        with it, what its decisions touch from here on is noted (``key_behind``), for the session to follow it
        later. Returns whether it began noting now."""
        if self.keyed is None or self.keyed_for is not self.resolver or self.key_behind is not None:
            return False
        touched = Touched()
        self.resolver.track(touched)
        self.key_behind = (weakref.ref(self.resolver), self.resolver.state.position, touched)
        self.keyed_for = None
        return True

    def _behind(self, resolver: Optional[Resolver]) -> bool:
        """Whether the session of the key shards is behind ``resolver``'s state (``key_behind`` was noted on it)."""
        return self.key_behind is not None and self.key_behind[0]() is resolver

    def _in_step_again(self) -> None:
        """Undoes ``_fall_behind_key_shards`` when nothing was decided without the session after all (if the
        session ended meanwhile, nothing is left to undo)."""
        if self._behind(self.resolver):
            self.resolver.track(None)
            self.keyed_for = self.resolver
        self.key_behind = None

    def _key_session_carried(self, old: Resolver) -> None:
        """The state was rebuilt from the decision log (a rebalance gave this worker the validated partition again)
        and the log ends where this worker's last write left it: nobody else wrote, so the rebuilt state is the one
        ``old`` held. A session of the key shards in step with ``old``, or behind it (``key_behind``), goes on with
        the rebuilt state, where it would load a new session with every part."""
        if self.keyed is None:
            return
        if self.keyed_for is old:
            self.keyed_for = self.resolver
        elif self._behind(old):
            _, since, noted = self.key_behind
            old.track(None)
            touched = Touched()  # (what was noted, its identifiers by key: the rebuilt state numbers its own)
            touched.add(noted, old.state)
            self.resolver.track(touched)
            self.key_behind = (weakref.ref(self.resolver), since, touched)

    async def _catch_up_key_shards(self, resolver: Resolver) -> None:
        """The session, behind ``resolver``'s state (``key_behind``), is sent what can differ
        (``KafkaKeyShards.follow``: the parts the decisions since touched, and those the owners were sent by a run
        that failed part way; a shard whose holder was lost is loaded anew) and is in step again. If it cannot
        follow (the state was rebuilt or restated meanwhile, an erasure), the session ends and the run loads a new
        one; a failure raises."""
        behind, self.key_behind = self.key_behind, None
        if behind is None:
            return
        held, since, touched = behind
        if held() is not resolver:  # (the state was rebuilt or restated: a new session)
            self._end_key_session()
            return
        resolver.track(None)
        loop = asyncio.get_running_loop()
        started = loop.time()
        keyed = self.keyed
        reloaded = keyed.reloaded
        try:
            sent = await loop.run_in_executor(None, keyed.follow, resolver.state, since, touched)
        except ValueError:
            self._end_key_session()
            return
        except BaseException:  # (still behind: what it sent before failing is among what the owners were sent)
            self.key_behind = behind
            resolver.track(touched)
            raise
        self.keyed_for = resolver
        self.metrics.add("key_shard_catch_ups")
        self.metrics.add("key_shard_shards_reloaded", keyed.reloaded - reloaded)
        self.metrics.gauges["key_shard_catch_up_parts"] = sent
        self.metrics.gauges["key_shard_catch_up_seconds"] = round(loop.time() - started, 3)

    async def _ensure_resolver(self) -> None:
        """Rebuilds the resolver from the decision log when it may be stale (at start, after a rebalance)."""
        if self.resolver_stale or self.resolver is None:
            loop = asyncio.get_running_loop()
            old, end = self.resolver, self.log_end
            await loop.run_in_executor(None, self._rebuild_resolver)
            if old is not None and 0 < end == self.log_end:
                self._key_session_carried(old)
            for begun_seq in self.open_restatements:  # (a worker stopped in the middle of one)
                await self._restate_again(begun_seq)
            if self.settings.resolve_partitions > 1 and self.settings.resolve_state != "keys":
                import uuid

                from streams.kafka_shards import Replies

                self.session = uuid.uuid4().hex  # (replies to an earlier session of this worker are ignored)
                if self.replies is None:
                    self.replies = await loop.run_in_executor(None, Replies, self.settings)
            try:  # the raw partitions the reorder buffer waits for until each has sent, or stayed silent
                sources = await loop.run_in_executor(None, raw_partitions, self.settings)
            except Exception as exc:  # (not knowing them only makes the first events less sure to be in order)
                log.warning("could not list the raw partitions: %s", exc)
                sources = set()
            self.reorder.expect(sources, loop.time())

    async def _decide(self, entries: list[list[dict[str, Any]]], done: list[Any]) -> None:
        """Decides the events the reorder buffer releases now, logs them (with ``entries``), then
        acknowledges the messages (``done`` and those whose last held event this was). Runs under
        ``self.deciding``."""
        m = self.metrics
        loop = asyncio.get_running_loop()
        await self._ensure_resolver()
        letting_go = self.letting_go()
        if letting_go:
            # a rebalance lets the partitions go only once every message in hand is acknowledged (Faust waits
            # for them before it revokes anything), and the buffer may hold events far longer (a source behind
            # is waited for up to ``backlog_wait``): the group would give up on this worker. So does a worker
            # stopping, which would wait for ever. They are decided now, in the order held; an earlier event
            # still to come is a late event, restated as any other
            released = self.reorder.release_all()
            if released:
                m.add("reorder_released_for_rebalance" if self.app.rebalancing else "reorder_released_at_stop",
                      len(released))
        else:
            released = self.reorder.release(loop.time(), wall=time.time_ns() // 1000)
        pending: list[Any] = []
        if (self.settings.resolve_partitions > 1 and released and not letting_go
                and loop.time() >= self.shards_rest_until and self.settings.resolve_state == "keys"):
            entries, pending = await self._decide_on_key_shards(released, entries, pending)
        elif (self.settings.resolve_partitions > 1 and released and not letting_go
                and loop.time() >= self.shards_rest_until):
            entries, pending, undecided = await self._decide_on_shards(released, entries, pending)
            if undecided:  # (interrupted by a rebalance: decided here, in order, as the shards would have)
                entries, pending = await self._decide_in_order(undecided, entries, pending)
        else:
            # one partition; or a rebalance or a stop, which waits for the messages in hand to be acknowledged
            # while the shards cannot answer: decided here, in order, with the same result
            entries, pending = await self._decide_in_order(released, entries, pending)
        m.gauges["reorder_held_events"] = len(self.reorder)
        # (the most held at once since the worker started, a batch just added included; and the events decided
        # only because IDRES_REORDER_MAX_EVENTS were held, whatever older ones other partitions might still send)
        m.gauges["reorder_held_most"] = max(m.gauges.get("reorder_held_most", 0), len(self.reorder) + len(released))
        m.counters["reorder_released_for_room"] = self.reorder.released_for_room  # (the buffer counts them)
        m.gauges["raw_partitions_behind"] = self.reorder.behind_count()
        await self._flush_decided(entries, pending)
        if self.resolver_stale:  # (an erasure: nothing it erased is kept in memory longer than this)
            await self._ensure_resolver()
        if not letting_go:  # (a rebalance or a stop waits for the messages in hand: they are acknowledged first)
            if self.restate_due(loop.time()):
                await self._restate()
            await self._rewind_point()
        for *_, ev in released:
            left = self.held.get(ev)
            if left is None:
                continue  # (held before a rebalance took its partition away)
            if left > 1:
                self.held[ev] = left - 1
            else:
                del self.held[ev]
                done.append(ev)
        self._acknowledge(done)

    def _acknowledge(self, done: list[Any]) -> None:
        """Acknowledges the validated messages done with, in offset order: a message is acknowledged once every
        message before it is. The reorder buffer lets events out in event-time order, so a later message is often
        done first, and Faust commits past a message not acknowledged at the head of a partition (with nothing
        committed yet, or the one message at the committed offset: ``Consumer._new_offset``): a worker killed then
        would lose the events that message still held."""
        finished, tps = self.finished, set()
        for ev in done:
            queue = self.taken.get(ev.message.tp)
            if queue:  # (not: taken before its partition was let go, and read again by its next owner)
                finished.add(ev)
                tps.add(ev.message.tp)
        for tp in tps:
            queue = self.taken[tp]
            while queue and queue[0] in finished:
                ev = queue.popleft()
                finished.discard(ev)
                ev.ack()

    # -- late events: the log restated (``resolver.restate``) -------------------------------------
    def _note_late(self, entries: list[list[dict[str, Any]]]) -> None:
        """Notes the events of ``entries`` (about to be written) older than one decided before them (README:
        sequence neutrality)."""
        from resolver.decisions import record_of
        from resolver.restate import event_key

        for i, entry in enumerate(entries):
            rec = record_of(entry)
            if rec["type"] != "interaction_recorded":
                continue
            key = event_key(rec["occurred_at"], rec["event_id"])
            if key >= self.latest_key:
                self.latest_key = key
                continue
            self.metrics.add("resolve_late_events")
            if self.earliest_late is None:
                self.late_since = asyncio.get_running_loop().time()
                self.late_since_entries = self.scan_state.entries + i + 1  # (the log's entries after it)
            if self.earliest_late is None or key < self.earliest_late:
                self.earliest_late = key
            self.late_events += 1
            self.metrics.gauges["late_events_pending"] = self.late_events

    def restate_due(self, now: float) -> bool:
        """Late events wait ``restate_wait`` seconds, or until ``restate_entries`` entries were written after the
        first of them, and at least twice as long as the last restatement took after its end (restating takes
        at most a third of the time, however often events come late)."""
        return self.earliest_late is not None and restate_due(
            now, self.late_since, self.scan_state.entries - self.late_since_entries, self.next_restate,
            self.options.restate_wait, self.options.restate_entries)

    async def _rewind_point(self) -> None:
        """Keeps the resolver state as the log now makes it (pickled), when ``rewind_every`` entries (and a
        quarter of the log) were written since the last one was kept and no late event waits (its
        restatement would start before it): the last two are kept."""
        every = self.options.rewind_every
        if not every or self.resolver is None or self.resolver_stale or self.earliest_late is not None:
            return
        points = self.rewind_points
        # (after a rebuild, the first is kept as far from it as from a kept one: not at once, whole)
        last = points[-1].scan.entries if points else self.rebuilt_at
        if not spaced(self.scan_state.entries, last, every):
            return
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        point = RewindPoint(self.log_end, self.scan_state.copy(),
                            await loop.run_in_executor(None, pickled, self.resolver.state))
        self.rewind_points = (points + [point])[-2:]
        self.metrics.gauges["rewind_point_entries"] = point.scan.entries
        self.metrics.gauges["rewind_point_bytes"] = sum(len(p.state) for p in self.rewind_points)
        self.metrics.gauges["rewind_point_seconds"] = round(time.monotonic() - started, 3)

    async def _restate(self) -> None:
        """Decides the log again from the place of the earliest late event noted (in canonical order, with
        every entry after it up to the last person's command), as ``idres ingest`` does: from the newest
        rewind point before that place, else from the start of the log."""
        key, late = self.earliest_late, self.late_events
        self.earliest_late, self.late_events = None, 0  # (still pending, for the gauge, until the end is logged)
        # a point no entry before which holds a later event than the late one: the restatement starts after it
        point = next((p for p in reversed(self.rewind_points) if p.scan.newest is None or key >= p.scan.newest),
                     None)
        scanned = time.monotonic()
        scan = await asyncio.get_running_loop().run_in_executor(None, LogScan, self.settings, key, point)
        if point is not None and scan.entries != self.scan_state.entries:  # (the log is not what was written)
            log.warning("the decision log holds %d entries where %d were written: reading it from its start",
                        scan.entries, self.scan_state.entries)
            point, self.rewind_points = None, []
            scan = await asyncio.get_running_loop().run_in_executor(None, LogScan, self.settings, key)
        if scan.start is not None:
            await self._restate_from(scan, scan.start, late, scanning=time.monotonic() - scanned, point=point)
        else:
            self.metrics.gauges["late_events_pending"] = self.late_events

    async def _restate_again(self, begun_seq: int) -> None:
        """A restatement begun and not completed: closed (``log_restate_abandoned``), then done again."""
        from streams.restating import abandoned

        loop = asyncio.get_running_loop()
        found: list[list[dict[str, Any]]] = []

        def read() -> None:
            def take(record: Any) -> None:
                for entry in decision_entries(record.value, self.settings):
                    if take.seq >= begun_seq:
                        found.append(entry)
                    take.seq += 1
            take.seq = 0  # type: ignore[attr-defined]
            read_to_end(self.settings, self.settings.topics.decisions, take)

        await loop.run_in_executor(None, read)
        begun = found[0][0]
        closing = abandoned(self.resolver.state, begun, begun_seq, found, utc_iso(datetime.now(timezone.utc)))
        await self._flush([[d] for d in closing], [])
        scan = await loop.run_in_executor(None, LogScan, self.settings)
        await self._restate_from(scan, begun["from_seq"], begun["late_events"])

    async def _restate_from(self, scan: LogScan, start: int, late: int, scanning: float = 0.0,
                            point: Optional[RewindPoint] = None) -> None:
        from streams.embedded import redo
        from streams.restating import Restatement

        loop = asyncio.get_running_loop()
        started = time.monotonic()
        gauges = self.metrics.gauges
        # the late events are restated once the restatement's end is logged, not when it begins: a reader of the
        # gauge that waits for it to be 0 (an operator, a deployment's check that it caught up) reads the log then
        gauges["late_events_pending"] = self.late_events + late
        work = Restatement(start, late)
        rebuilt_from = point.scan.entries if point is not None else 0  # (the entry the state is rebuilt from)
        # the states kept from after ``start`` hold entries the restatement supersedes
        self.rewind_points = [p for p in self.rewind_points if p.scan.entries <= start]
        # the key shards, if in step with the state before (or behind it, ``key_behind``: what was decided since is
        # added), follow the restatement (``_follow_on_key_shards``)
        behind = self.key_behind if self.keyed is not None and self._behind(self.resolver) else None
        self.key_behind = None
        touched = Touched() if self.keyed is not None and (self.keyed_for is self.resolver or behind) else None
        try:
            old = self.resolver

            def read() -> Resolver:
                # the state before ``start`` (from the kept one, else from the start of the log), and the entries
                # from there on (the log as it reads now)
                state, offset = (unpickled(point.state), point.offset) if point is not None else (ResolverState(), 0)
                rewound = Resolver(self.options.config, state)
                fold_decision_log(self.settings, resolver=rewound, start=offset, seq=rebuilt_from, end=start,
                                  rest=lambda e: work.take([e]), scan=scan)
                work.note(old.state)
                return rewound

            rewound = await loop.run_in_executor(None, read)
            rebuilding = time.monotonic() - started
            since = rewound.state.position  # (the position the events are decided again from)
            following = touched is not None and (behind is not None or self.keyed.decided == old.state.position)
            if following and behind is not None:  # (what was decided without the session, on the state replaced)
                _, was, noted = behind
                old.track(None)
                touched.add(noted, old.state)
                since = min(since, was)
            rewound.track(touched if following else None)
            self.resolver = rewound
            old = None  # (the state before: dropped)
            now = utc_iso(datetime.now(timezone.utc))
            await self._flush([[d] for d in work.begun(rewound.state, scan.entries, now)], [])
            chunk: list[list[dict[str, Any]]] = []
            for decisions in work.decide(lambda rec: redo(rewound, rec)):
                chunk.append(decisions)
                if len(chunk) >= self.options.batch_events:
                    await self._flush(chunk, [])
                    chunk = []
            done = work.done(rewound.state, now)
            rewound.apply_all(done)
            chunk.extend([d] for d in done)
            await self._flush(chunk, [])
            if following:
                await self._follow_on_key_shards(rewound, since, touched)
        finally:
            work.close()
            self.resolver.track(None)
        took = time.monotonic() - started
        self.next_restate = loop.time() + 2 * took
        gauges["late_events_pending"] = self.late_events
        self.metrics.add("restatements")
        gauges["restatement_seconds"] = round(took, 3)
        gauges["restatement_rebuilt_from"] = rebuilt_from
        log.warning("late events: the decision log restated from entry %d (%d entries decided again in %.1f s: "
                    "%.1f s reading the log for where to start, %.1f s rebuilding the state before it from entry %d)",
                    start, work.entries, time.monotonic() - started + scanning, scanning, rebuilding, rebuilt_from)

    async def _follow_on_key_shards(self, rewound: Resolver, since: int, touched: Touched) -> None:
        """After a restatement from position ``since`` left ``rewound``'s state, the session of the key shards in
        step with the state before it is sent the parts that can differ (``LocalKeyShards.follow``: those the
        decisions made again touched, ``touched``, and those the superseded ones changed) and stays in step,
        where loading a new session would send every part. Otherwise (a place before the session was loaded, an
        erasure, a failure) the next run loads a new session."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            sent = await loop.run_in_executor(None, self.keyed.follow, rewound.state, since, touched)
        except ValueError:
            return
        except Exception as exc:
            self._key_shards_failed(exc, "a restatement")
            return
        self.keyed_for = rewound
        self.metrics.add("key_shard_restatements")
        self.metrics.gauges["key_shard_restatement_parts"] = sent
        self.metrics.gauges["key_shard_restatement_seconds"] = round(loop.time() - started, 3)

    async def _decide_in_order(self, released: list[Any], entries: list[list[dict[str, Any]]],
                               pending: list[Any]) -> tuple[list[list[dict[str, Any]]], list[Any]]:
        """Decides released events one after the other here; their entries are added to ``entries``, their
        dead letters' acknowledgements to ``pending``."""
        m = self.metrics
        loop = asyncio.get_running_loop()
        pipeline = RecordPipeline(self.resolver, skip_blank=False)
        every = self.options.batch_events
        # (the key shards, if in step with the state, follow what is decided here at the next run)
        began, accepted = self._fall_behind_key_shards(), False
        for key, topic, partition, offset, raw, ev in released:
            outcome = pipeline.process(raw, {"name": f"{topic}/{partition}", "position": offset})
            if outcome.kind == ACCEPTED:
                entries.append(outcome.decisions)
                m.add("resolve_events")
                accepted = True
                if len(entries) >= every:
                    # a backlog releases tens of thousands at once: logged as they are decided, so that the log
                    # grows as they go (what a batch holds in memory is bounded) and the event loop, which
                    # waits for the broker here, answers /metrics and the other roles meanwhile; the messages
                    # are acknowledged at the end, and a crash before that finds these in the log (duplicates)
                    await self._flush_decided(entries, pending)
                    entries, pending = [], []
            elif outcome.kind == DUPLICATE:
                m.add("resolve_duplicates")
            else:  # to the dead-letter topic: rejected (validated upstream, so only a newer schema gets
                # here) or an internal error
                m.add("resolve_rejected")
                if outcome.kind == INTERNAL:
                    log.error("internal error on %s/%s@%s\n%s", topic, partition, offset, outcome.trace)
                pending.append(await self._dead_letter(topic, partition, offset, raw, outcome.reason,
                                                       detail=outcome.detail, event_id=outcome.event_id))
                if outcome.kind == INTERNAL and outcome.state_changed:
                    # a defect: the state may be half-changed: make what is done durable, rebuild
                    await self._flush_decided(entries, pending)
                    entries, pending = [], []
                    await loop.run_in_executor(None, self._rebuild_resolver)
                    pipeline.resolver = self.resolver
        if began and not accepted:  # (duplicates and records to reject alone: the session is still in step)
            self._in_step_again()
        return entries, pending

    async def _decide_on_key_shards(self, released: list[Any], entries: list[list[dict[str, Any]]],
                                    pending: list[Any]) -> tuple[list[list[dict[str, Any]]], list[Any]]:
        """Decides released events on the key shards (``streams.kafka_key_shards``): the valid events not decided
        before (a run) go to the shards, whose entries this worker applies to its own whole state (which
        restatements, a person's commands and the fallback decide on); anything else (a record to reject, an
        event ID decided before or earlier in the batch) is decided here after the run, in order, as one resolve
        worker would: it changes nothing the run's events depend on, so a batch is one run however many
        duplicates it holds (a run cut at each took a window's round trips each). If the shards fail or do not
        answer, the batch is decided here, in order, and the shards rest for ``IDRES_SHARD_WAIT`` seconds; a new
        session, loaded from this worker's state, begins after that or whenever that state changed otherwise."""
        from streams.kafka_key_shards import PartsLost

        m = self.metrics
        loop = asyncio.get_running_loop()
        await self._flush_decided(entries, pending)  # (the shards decide from where the log ends)
        entries, pending = [], []
        checker = RecordPipeline(None, skip_blank=False)
        resolver = self.resolver
        run: list[Any] = []
        checked: dict[int, Any] = {}  # (each record parsed once: the shards' coordinator is given them)
        others: list[Any] = []
        ids: dict[str, None] = {}
        for item in released:
            outcome = checker.check(item[4])
            if outcome.kind != VALID or outcome.event.event_id in ids or resolver.is_duplicate(
                    outcome.event.event_id):
                # a record to reject, or an event ID decided before (or earlier in the run): neither changes the
                # state, nor does anything in the run depend on it, so it is decided here after the run, in
                # order, with what one resolve worker would decide
                others.append(item)
                continue
            ids[outcome.event.event_id] = None
            checked[len(run)] = outcome
            run.append(item)
        if run:
            sent_again = False
            while True:
                try:
                    if self.keyed is not None and self.key_behind is not None:
                        await self._catch_up_key_shards(resolver)
                    if self.keyed is None or self.keyed_for is not resolver:
                        await self._begin_key_session(resolver)
                    got = await loop.run_in_executor(None, self.keyed.decide, [item[4] for item in run], checked)
                    got = self._sourced(got, run, list(ids))
                    break
                except Exception as exc:
                    # a holder lost (its shards given to another worker): the session, kept, follows at once,
                    # loading those shards anew, and the run is sent again, once, rather than decided here
                    again = not sent_again and isinstance(exc, PartsLost)
                    if self._key_shards_failed(exc, f"{len(released)} events", run=True, again=again) and again:
                        sent_again = True
                        m.add("key_shard_runs_sent_again")
                        continue
                    m.add("key_shard_events_decided_here", len(run))
                    return await self._decide_in_order(released, entries, pending)
            for entry in got:
                resolver.apply_all(entry)
                entries.append(entry)
                m.add("resolve_events")
        if others:
            entries, pending = await self._decide_in_order(others, entries, pending)
        return entries, pending

    @staticmethod
    def _sourced(got: list[list[dict[str, Any]]], run: list[Any], ids: list[str]) -> list[list[dict[str, Any]]]:
        """The shards' entries for ``run`` (events ``ids``), one per event in its order, each event's decision
        naming where it came from (as deciding it here does); anything else is a defect."""
        if len(got) != len(run):
            raise RuntimeError(f"the key shards decided {len(got)} entries for {len(run)} events")
        for entry, (_, topic, partition, offset, _, _), eid in zip(got, run, ids):
            recorded = [d for d in entry if d["type"] == "interaction_recorded"]
            if len(recorded) != 1 or recorded[0]["event_id"] != eid:
                raise RuntimeError("the key shards' entries do not follow the events they were given")
            recorded[0]["source"] = {"name": f"{topic}/{partition}", "position": offset}
        return got

    async def _begin_key_session(self, resolver: Resolver) -> None:
        """A new session of the key shards, each loaded with its part of ``resolver``'s state."""
        from streams.kafka_key_shards import KafkaKeyShards

        self._end_key_session()
        s, o = self.settings, self.options
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.keyed = await loop.run_in_executor(
            None, lambda: KafkaKeyShards(s, o.config, s.resolve_partitions, wait=o.shard_wait, state=resolver.state,
                                         stopped=lambda: self.failed is not None or self.letting_go(),
                                         # (a run holds only valid events not decided before: ``_decide_on_key_shards``)
                                         new_only=True))
        self.keyed_for = resolver
        self.key_load_seconds = loop.time() - started
        self.metrics.add("key_shard_sessions")

    def _end_key_session(self) -> None:
        keyed, self.keyed, self.keyed_for = self.keyed, None, None
        if self.resolver is not None and self._behind(self.resolver):
            self.resolver.track(None)
        self.key_behind = None
        if keyed is not None:  # (closed aside: a rebalance may be waiting for the events in hand)
            threading.Thread(target=keyed.close, daemon=True, name="idres-key-session-close").start()

    def _hold_key_shards(self, loop: asyncio.AbstractEventLoop) -> None:
        """Holds the key shards the group gives this worker (a thread of its own), until the worker stops."""
        from streams.kafka_key_shards import serve

        try:
            serve(self.settings, self.options.config, stopped=lambda: self.failed is not None,
                  session_timeout_ms=int(self.options.session_timeout * 1000), holder=self.key_holder)
        except Exception as exc:
            log.critical("stopping the worker: holding key shards failed: %s: %s", type(exc).__name__, exc)
            asyncio.run_coroutine_threadsafe(self.stop_for(exc), loop)

    async def _decide_on_shards(self, released: list[Any], entries: list[list[dict[str, Any]]],
                                pending: list[Any]) -> tuple[list[list[dict[str, Any]]], list[Any], list[Any]]:
        """Decides released events on the resolve shards, window by window (``streams.kafka_shards``): the
        entries are the ones deciding them here in order gives. Also returns the events not decided, from the
        window a rebalance interrupted on (the state is then rebuilt before the next window)."""
        from resolver import epochs
        from streams.kafka_shards import Interrupted, Overdue
        from streams.shards import begin, entry_of

        m = self.metrics
        loop = asyncio.get_running_loop()
        i = 0
        while i < len(released):
            resolver = self.resolver
            position = len(resolver.state.seen_events)
            take = released[i:i + epochs.room(position)]
            i += len(take)
            await self._flush_decided(entries, pending)  # (a window starts where the log ends)
            entries, pending = [], []
            raws = [item[4] for item in take]
            begun = begin(resolver, position, raws)
            window = self.window_no
            self.window_no += 1
            try:
                decided, slots, failed = await self._window(take, raws, position, begun, window)
            except Interrupted as exc:
                log.warning("resolve shards interrupted (%s): %d events are decided here, in order", exc,
                            len(released) - i + len(take))
                if isinstance(exc, Overdue):
                    m.add("resolve_shard_timeouts")
                    self.shards_rest_until = loop.time() + self.options.shard_wait
                if begun:  # (the state holds the epoch's decisions of a window not logged)
                    await loop.run_in_executor(None, self._rebuild_resolver)
                return entries, pending, released[i - len(take):]
            if failed is not None:  # a defect on a shard: this window is decided here, in order
                log.error("a resolve shard failed (%s): window %d is decided in order by the coordinator",
                          failed, window)
                m.add("resolve_shard_failures")
                await loop.run_in_executor(None, self._rebuild_resolver)  # (without the epoch's decisions)
                entries, pending = await self._decide_in_order(take, entries, pending)
                continue
            for slot in slots:
                _, topic, partition, offset, raw, _ = take[slot.index]
                if slot.kind == "event":
                    resolver.apply_all(decided[slot.event])
                    entries.append(entry_of(slot, decided, begun))
                    m.add("resolve_events")
                elif slot.kind == "duplicate":
                    m.add("resolve_duplicates")
                else:
                    m.add("resolve_rejected")
                    pending.append(await self._dead_letter(topic, partition, offset, raw, slot.reason or "",
                                                           detail=slot.detail, event_id=slot.event_id))
        return entries, pending, []

    async def _window(self, take: list[Any], raws: list[bytes], position: int, begun: list[dict[str, Any]],
                      window: int) -> tuple[dict[int, list[dict[str, Any]]], list[Any], Optional[str]]:
        """The two rounds of one window on the shards: the decisions by event, the slots, and the error a
        shard reported (None)."""
        from streams.kafka_shards import verdict_of
        from streams.shards import assign, plan, work_of

        loop = asyncio.get_running_loop()
        n = self.settings.resolve_partitions
        base = {"session": self.session, "window": window, "offset": self.log_end}
        await self._send_tasks([{**base, "round": 1, "shard": s, "begun": begun,
                                 "items": [[b, raws[b].decode("utf-8")] for b in range(s, len(take), n)]}
                                for s in range(n)])
        replies = await loop.run_in_executor(None, self._collect, window, 1)
        failed = next((r["error"] for r in replies.values() if r["error"]), None)
        if failed is not None:
            return {}, [], failed
        verdicts = dict(verdict_of(row) for r in replies.values() for row in r["verdicts"])
        slots, chains = plan(verdicts, len(take), self.resolver.state.seen_events.get)
        events = [slot for slot in slots if slot.kind == "event"]
        if not events:
            return {}, slots, None
        def item(k: int) -> list[Any]:
            _, topic, partition, offset, raw, _ = take[events[k].index]
            return [k, events[k].index, raw.decode("utf-8"), {"name": f"{topic}/{partition}", "position": offset}]

        work, _ = work_of(chains, assign(chains, n), item)
        await self._send_tasks([{**base, "round": 2, "shard": s, "position": position, "chains": chains_of_s}
                                for s, chains_of_s in enumerate(work)])
        replies = await loop.run_in_executor(None, self._collect, window, 2)
        failed = next((r["error"] for r in replies.values() if r["error"]), None)
        decided = {k: entry for r in replies.values() for k, entry in r.get("decided") or ()}
        return decided, slots, failed

    async def _send_tasks(self, tasks: list[dict[str, Any]]) -> None:
        sent = [await self.shard_tasks.send(value=orjson.dumps(task), partition=task["shard"]) for task in tasks]
        await asyncio.gather(*sent)

    def _collect(self, window: int, round_: int) -> dict[int, dict[str, Any]]:
        return self.replies.collect(self.session, window, round_, self.settings.resolve_partitions,
                                    wait=self.options.shard_wait,
                                    stopped=lambda: self.failed is not None or self.letting_go())

    async def _shard(self, stream: Any) -> None:
        """A resolve shard's tasks (``streams.kafka_shards``): answered on this worker's copy of the state."""
        loop = asyncio.get_running_loop()
        async for ev in stream.events():
            task = orjson.loads(ev.value)
            reply = await loop.run_in_executor(None, self.shard_replica.handle, task)
            await (await self.shard_replies.send(value=orjson.dumps(reply)))
            self.metrics.add("shard_tasks")
            if reply["error"]:
                self.metrics.add("shard_errors")

    async def _flush_decided(self, entries: list[list[dict[str, Any]]], pending: list[Any]) -> None:
        """``_flush`` of entries decided as events came (not a restatement's): their late events noted first, so
        that whichever path writes them, the log is restated for them."""
        self.metrics.add("decisions", sum(len(e) for e in entries))
        self._note_late(entries)
        await self._flush(entries, pending)

    async def _flush(self, entries: list[list[dict[str, Any]]], pending: list[Any]) -> None:
        # each entry is sealed and serialized once: measured for chunking, then joined into its message; the keys
        # it was sealed under are acknowledged by the broker before it is sent
        erasures = [d for e in entries if (d := erasure_of(e))]
        if erasures:
            self.rewind_points = []  # (they hold what is erased)
        plain = None
        if entries:
            from streams.kafka_keys import sealer_for

            for e in entries:
                self.scan_state.take(e)

            sealer = sealer_for(self.settings, writer=True)
            plain = entries if self.holds_log_to_project else None
            entries = [sealer.seal_entry(e) for e in entries]
            await asyncio.get_running_loop().run_in_executor(None, sealer.flush)
        runs = list(chunked([orjson.dumps(e) for e in entries], len))
        for run in runs:
            pending.append(await self.decisions.send(value=ENTRIES_HEAD + b",".join(run) + b"]}"))
        if not pending:
            return
        acked = await asyncio.gather(*pending)
        decisions_topic = self.settings.topics.decisions
        for meta in acked:
            if getattr(meta, "topic", None) != decisions_topic:
                continue
            if meta.offset != self.log_end:
                # this worker rebuilt its state from the log up to log_end and is its only writer: any
                # other offset means a second writer or a broker that lost or reordered writes
                raise DecisionLogError(
                    f"the broker acknowledged decision-log offset {meta.offset} where {self.log_end} was "
                    f"expected: another resolve worker is writing, or the broker lost writes; stopping so "
                    f"that a restart rebuilds from what the log really holds")
            self.log_end += 1
        if runs and plain is not None:  # (the decision-log messages: the last acknowledged, one for each run)
            self._written_here(plain, [len(run) for run in runs], acked[len(acked) - len(runs):])
        self.metrics.add("log_entries_written", sum(len(r) for r in runs))
        if erasures:
            await self._shred(erasures)

    def _written_here(self, plain: list[list[dict[str, Any]]], counts: list[int], acked: list[Any]) -> None:
        """Keeps the entries of the decision-log messages just written, by offset (each message's ``counts`` of
        ``plain``, the entries before sealing), as the project role reads them: through JSON, as written, and
        unsealed (which gives back what was sealed: ``streams.sealing``), so it takes them as they are. At most
        ``WRITTEN_HERE`` messages are kept, none while the project role is further behind than that (it reads
        them from the log); an erasure drops them all (``_shred``: they read as erased then), and so does a
        rebuild of the state."""
        if acked and acked[-1].offset - self.views_next_offset >= WRITTEN_HERE:
            return  # (the project role is further behind than that: it would not reach these before they go)
        at = 0
        kept = self.written_here
        for count, meta in zip(counts, acked):
            kept[meta.offset] = orjson.loads(orjson.dumps(plain[at:at + count]))
            at += count
        while len(kept) > WRITTEN_HERE:
            del kept[next(iter(kept))]

    async def _shred(self, erasures: list[dict[str, Any]]) -> None:
        """After erasures are logged: their keys are shredded in the keys topic (acknowledged), and
        the state, which still holds what they erased, is rebuilt from the log before the next batch."""
        from streams.kafka_keys import sealer_for
        from streams.sealing import erasure_subjects

        sealer = sealer_for(self.settings, writer=True)
        subjects = [s for d in erasures for s in erasure_subjects(d)]
        loop = asyncio.get_running_loop()
        self.written_here.clear()  # (what they erased reads as erased from now on, as the project role reads it)
        gone = await loop.run_in_executor(None, sealer.keys.shred, subjects)
        await loop.run_in_executor(None, sealer.forget)
        self.resolver_stale = True
        self._end_key_session()  # (the owners hold what was erased: a new session is loaded from the rebuilt state)
        self.metrics.add("erasures", len(erasures))
        log.warning("%d erasure(s) logged: %d keys shredded; the resolver state is rebuilt", len(erasures), gone)

    # -- project --------------------------------------------------------------------------------
    def _rebuild_views(self) -> None:
        """The views folded from the decision log; and the changelog (``projections.changelog``) brought up to
        it: the changes of the entries after the last one on the changes topic are published first."""
        from projections.changelog import changes_of

        last = last_record(self.settings, self.settings.topics.changes)
        done = (-1, -1)
        if last is not None:  # (an entry's changes are several messages: a crash may have cut it short)
            change = orjson.loads(last.value)
            done = (change["seq"], change["n"])
        self.changes_next = done[0] if done[0] >= 0 else 0
        late: list[dict[str, Any]] = []
        prod = None

        def publish(seq: int, entry: list[dict[str, Any]]) -> None:
            nonlocal prod
            if seq < self.changes_next:
                return
            late.extend(c for c in changes_of(seq, entry) if (c["seq"], c["n"]) > done)
            if len(late) >= 10_000:
                prod = self._publish_changes_now(late, prod)

        started = time.monotonic()
        try:
            # (from a kept state whose entries' changes are all published, else from the start of the topic)
            folded = self.view_points.fold(self.settings, self.options.projection, on_entry=publish,
                                           upto=self.changes_next)
            if late:
                prod = self._publish_changes_now(late, prod)
        finally:
            if prod is not None:
                prod.close()
        self.views_next_offset, self.views_seq = folded.offset, folded.entries
        self.changes_next = max(self.changes_next, self.views_seq)
        self.views = folded.views
        self.restating = bool(folded.scan.open_restatements())
        gauges = self.metrics.gauges
        gauges["views_rebuilt_from"] = folded.start
        gauges["views_rebuild_seconds"] = round(time.monotonic() - started, 3)

    async def _erasures_shredded(self) -> None:
        """Folds the views again once the keys of the erasures they waited for in vain are shredded (a failure
        leaves them waiting: tried again at the next tick)."""
        loop = asyncio.get_running_loop()
        try:
            waited = await loop.run_in_executor(None, self.view_points.shredded, self.settings)
            if waited:
                self.view_points.forget()
                await loop.run_in_executor(None, self._rebuild_views)
                self.households_published = None
                self.view_points.settled(waited)
        except Exception as exc:  # (the broker did not answer: tried again at the next tick)
            log.warning("folding the views again after an erasure failed: %s: %s", type(exc).__name__, exc)
        self.metrics.gauges["erasures_waited_for"] = len(self.view_points.pending)

    def _publish_changes_now(self, changes: list[dict[str, Any]], prod: Any) -> Any:
        """Publishes ``changes`` (and empties the list), waiting for the broker; returns the producer."""
        from projections.changelog import key_of

        if prod is None:
            prod = producer(self.settings)
        for c in changes:
            prod.send(self.settings.topics.changes, key=key_of(c), value=orjson.dumps(c), partition=0)
        prod.flush(timeout=max(self.settings.timeout, 5) * 4)
        self.metrics.add("changes_published", len(changes))
        changes.clear()
        return prod

    async def _publish_households(self) -> None:
        """Publishes to the households topic (compacted, keyed by profile ID) each customer whose household
        changed since the last publication: ``{"v": 1, "profile_id", "household_id", "others", "via",
        "as_of"}``, or a tombstone for a customer no longer in a household (or no longer a profile)."""
        from projections.households import device_types, household_of, households, rest_after

        views = self.views
        loop = asyncio.get_running_loop()
        if views is None or views.seq == self.households_seq or loop.time() < self.households_next:
            return
        if self.households_published is None:
            self.households_published = await loop.run_in_executor(None, self._read_households)
        started = loop.time()
        houses = await loop.run_in_executor(None, households, views, device_types(self.options.config))
        took = loop.time() - started
        # (the timer looks every HOUSEHOLDS_EVERY seconds; a computation that took long makes the next one later)
        self.households_next = loop.time() + rest_after(0.0, took)
        self.metrics.gauges["households_compute_seconds"] = round(took, 3)
        published = self.households_published
        sent = []
        for pid in sorted(set(published) | set(houses)):
            house = household_of(houses, pid)
            now = (house["household_id"], tuple(house["others"]), tuple(house["via"])) if house else None
            if published.get(pid) == now:
                continue
            value = None if house is None else orjson.dumps({"v": 1, "profile_id": pid, **house, "as_of": views.seq})
            sent.append(await self.households_topic.send(key=pid.encode(), value=value, partition=0))
            if now is None:
                published.pop(pid, None)
            else:
                published[pid] = now
        if sent:
            await asyncio.gather(*sent)
            self.metrics.add("households_published", len(sent))
        self.households_seq = views.seq
        self.metrics.gauges["households_as_of"] = views.seq

    def _read_households(self) -> dict[str, tuple[Any, ...]]:
        table: dict[str, tuple[Any, ...]] = {}

        def take(record: Any) -> None:
            pid = record.key.decode()
            if not record.value:  # (a tombstone)
                table.pop(pid, None)
            else:
                h = orjson.loads(record.value)
                table[pid] = (h["household_id"], tuple(h["others"]), tuple(h["via"]))

        read_to_end(self.settings, self.settings.topics.households, take)
        return table

    async def _project(self, stream: Any) -> None:
        changes: list[dict[str, Any]] = []
        async for events in stream.take_events(256, within=self.options.batch_seconds):
            async with self.projecting:
                changes = await self._project_batch(events, changes)

    async def _ensure_views(self) -> None:
        """The project role's views, folded from the log when there are none or they are stale (under
        ``self.projecting``)."""
        if self.views is None or self.views_stale:
            self.views_stale = False
            self.households_published = None  # (read again: another worker may have published meanwhile)
            await asyncio.get_running_loop().run_in_executor(None, self._rebuild_views)
            self._view_gauges()

    async def _project_batch(self, events: list[Any], changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Folds a batch of decision-log messages into the views, and publishes their changes (acknowledged
        before the batch's offsets are committed); returns the changes not yet published (none)."""
        from projections.changelog import changes_of, key_of

        m = self.metrics
        loop = asyncio.get_running_loop()
        await self._ensure_views()
        erased: Optional[bytes] = None
        restated = False
        for ev in events:
            msg = ev.message
            m.positions[(msg.topic, msg.partition)] = msg.offset + 1
            entries = self.written_here.pop(msg.offset, None)  # (written by this worker's resolve role)
            if msg.offset < self.views_next_offset:
                continue  # already folded while rebuilding
            if entries is None:
                entries = decision_entries(ev.value, self.settings)
            else:
                m.add("project_entries_written_here", len(entries))
            if any(map(erasure_of, entries)):
                erased = ev.value
            for entry in entries:
                self.view_points.note(entry)
                kind = entry[0]["type"] if entry else None
                if kind == "log_restate_begun":
                    self.restating = True  # (the entries that follow are folded once it completes)
                elif kind in ("log_restated", "log_restate_abandoned"):
                    self.restating, restated = False, True
                elif not self.restating and not restated:
                    # (after a restatement's end the views are folded again, as the log reads now, once the batch
                    # is read: the entries after it were decided on what it decided again, which these views
                    # do not hold yet)
                    self.views.apply_entry(self.views_seq, entry)
                if self.views_seq >= self.changes_next:
                    changes.extend(changes_of(self.views_seq, entry))
                self.views_seq += 1
            self.views_next_offset = msg.offset + 1
            m.add("project_entries", len(entries))
        if changes:
            sent = [await self.changes.send(key=key_of(c), value=orjson.dumps(c), partition=0) for c in changes]
            await asyncio.gather(*sent)
            m.add("changes_published", len(changes))
            changes = []
        self.changes_next = max(self.changes_next, self.views_seq)
        if erased is not None:  # the views hold what it erased: folded again once its keys are shredded
            if not await loop.run_in_executor(None, wait_shredded, self.settings, erased):
                self.view_points.pending.append(erased)  # (folded again when they are: ``_erasures_shredded``)
            self.view_points.forget()  # (the views kept hold what it erased too)
        if erased is not None or restated:  # (a restatement: the views are folded as the log reads now)
            await loop.run_in_executor(None, self._rebuild_views)
            self.households_published = None
        elif not self.restating and self.view_points.due() and self.view_points.scan.entries == self.views_seq:
            started = time.monotonic()
            await loop.run_in_executor(None, self.view_points.keep, self.views_next_offset, self.views)
            m.gauges["views_point_entries"] = self.view_points.points[-1].scan.entries
            m.gauges["views_point_bytes"] = self.view_points.kept_bytes()
            m.gauges["views_point_seconds"] = round(time.monotonic() - started, 3)
        self._view_gauges()
        return changes

    def _view_gauges(self) -> None:
        gauges = self.metrics.gauges
        gauges["erasures_waited_for"] = len(self.view_points.pending)  # (their keys not shredded in time)
        gauges["profiles"] = len(self.views.profiles)
        gauges["events"] = len(self.views.ev_id)
        gauges["log_entries_applied"] = self.views_seq


def _reached(high: Optional[int], end: Optional[int]) -> bool:
    """Whether a raw partition read up to ``end`` (the offset after its last record read; None: none since the
    worker started) is read to its end, by its high watermark ``high`` (None: not known): no further, or the
    partition holds nothing."""
    return high is not None and (high == 0 or (end is not None and end >= high))


OVERLAP_WARNING = "Timer %s is overlapping (interval=%r runtime=%r)"  # (mode/timers.py)
OVERLAP_LOGGED = 1.0  # seconds a timer must run before its overlap is logged


class LongOverlaps(logging.Filter):
    """Lets through mode's warning that a timer ran longer than its interval only when it ran ``least`` seconds
    or more. The resolve role's timer (every 0.05 s at the default grace) decides and logs what it releases, a
    few milliseconds longer than its interval now and then at live rates: 195 of a worker's 207 warnings in 80 s
    at 500 events/s were such overlaps, hiding the warnings that matter; a stall of a second or more is still
    told. The validate role's report of the raw partitions read to their end waits for the broker by design
    (``REPORT_WAIT``): only a run longer than that wait and ``least`` more is told of it (an idle worker logged
    its one-second waits four times in half a minute)."""

    def __init__(self, least: float = OVERLAP_LOGGED):
        super().__init__()
        self.least = least

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != OVERLAP_WARNING or not isinstance(record.args, tuple) or len(record.args) != 3:
            return True
        name, runtime = record.args[0], record.args[2]
        if not isinstance(runtime, (int, float)):
            return True
        if isinstance(name, str) and name.endswith(".report_caught_up"):
            return runtime >= REPORT_WAIT + self.least
        return runtime >= self.least


def _filter_once(logger: str, kind: type[logging.Filter]) -> None:
    """A filter of ``kind`` on ``logger``, unless it has one (a worker may be built more than once)."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, kind) for f in target.filters):
        target.addFilter(kind())


def quiet_short_overlaps() -> None:
    """Logs a timer's overlap only when it ran ``OVERLAP_LOGGED`` seconds or more (``LongOverlaps``)."""
    _filter_once("mode.timers", LongOverlaps)


def worker_app(jobs: StreamJobs) -> Any:
    """Faust's App, which, as the worker stops, first has ``jobs`` decide what the resolve role holds
    (``StreamJobs._decide_held_at_stop``): Faust then waits for every message in hand to be acknowledged. A
    stop that takes longer than ``stop_grace`` seconds ends the process (``exit_after``)."""
    import faust

    class WorkerApp(faust.App):  # type: ignore[misc, valid-type]
        async def on_stop(self) -> None:
            if jobs.failed is None:  # (``stop_for`` set its own deadline)
                # deciding what is held can fail (the broker gone): its messages are then never acknowledged,
                # and Faust would wait for them for ever
                exit_after("a signal to stop", jobs.options.stop_grace)
            await jobs._decide_held_at_stop()
            await super().on_stop()

    return WorkerApp


class ClosedRefreshes(logging.Filter):
    """Drops kafka-python's error that a metadata refresh failed because its client closed the connection it was
    sent on (``Cancelled``): the worker's readers and producers close as it stops, and kafka-python 3.0.12 logged
    ``[ERROR] Metadata refresh: failed Cancelled`` at some stops (in 7 worker logs of one test run), an error
    line for nothing that went wrong. A refresh that fails for any other reason is still logged."""

    def __init__(self) -> None:
        from kafka.errors import Cancelled

        super().__init__()
        self.cancelled = Cancelled

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Metadata refresh: failed")
                    and isinstance(record.args, tuple) and len(record.args) == 1
                    and isinstance(record.args[0], self.cancelled))


def quiet_closed_refreshes() -> None:
    """Installs ``ClosedRefreshes`` on kafka-python's cluster logger (once)."""
    _filter_once("kafka.cluster", ClosedRefreshes)


def tableless_manager() -> Any:
    """Faust's table manager, less the second it waits at every start before it looks for tables, when there are
    none: idres declares none (its state is folded from the decision log), so each worker's start and restart
    (after SIGKILL, the time until it decides again) waited a second for nothing. With tables, Faust's own start."""
    from faust.tables import TableManager

    class TablelessManager(TableManager):  # type: ignore[misc, valid-type]
        async def on_start(self) -> None:
            if self.data:
                await super().on_start()
            elif not self.should_stop:  # (TableManager.on_start without its sleep)
                await self._update_channels()
                await self.recovery.start()

    return TablelessManager


def faust_worker(app: Any, loglevel: str) -> Any:
    """The Faust worker that runs ``app``, logging at ``loglevel``."""
    import faust

    worker = faust.Worker(app, loglevel=loglevel)
    quiet_short_overlaps()
    quiet_closed_refreshes()
    # no start-up spinner: at a level of WARN or above Faust's sets the root logger to DEBUG for the process's
    # life (faust/worker.py, _setup_spinner_handler), so that every debug call of the Kafka clients builds a
    # log record no handler writes (about 3% of a worker's time at 1,000 events/s)
    worker.spinner = None
    return worker


def run_worker(settings: KafkaSettings, options: WorkerOptions, loglevel: str = "info") -> None:
    """Creates the topics the roles need, then runs the Faust worker until it is stopped."""
    create_stream_topics(settings, options.channels)
    if "validate" in options.roles:
        options = replace(options, raw_topics=tuple(sorted(raw_topics(settings))))
    jobs = StreamJobs(settings, options)
    worker = faust_worker(jobs.app, loglevel)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if jobs.failed is not None or kafka_batches.fatal is not None:
            _say_stopped(jobs.failed or kafka_batches.fatal)
            raise SystemExit(1) from None
        raise
    if jobs.failed is not None or kafka_batches.fatal is not None:
        _say_stopped(jobs.failed or kafka_batches.fatal)
        raise SystemExit(1)


def _exit_for(exc: BaseException) -> None:
    """Ends the process at once (exit code 1) for a role's error, with its traceback logged and the one line
    (``_say_stopped``), as if it were killed. Stopping the way Faust does would commit offsets it acknowledged
    for messages no role had handled: a batch's messages when the loop taking them fails (``take_events``), and
    those read after it once the failed loop gave acknowledging back to the stream (``noack_take``); and with
    nothing committed yet, Faust commits past messages never acknowledged at the head of a partition
    (``Consumer._new_offset``). Every role is effectively-once across a SIGKILL: what was written is found again,
    what was not is read again."""
    log.error("the worker stops at once for this error (it is not let commit what it read)",
              exc_info=(type(exc), exc, exc.__traceback__))
    for handler in logging.getLogger().handlers + log.handlers:
        try:
            handler.flush()
        except Exception:
            pass
    _say_stopped(exc)
    os._exit(1)


def _say_stopped(why: Any) -> None:
    """The one line a worker that stopped for an error ends with (after Faust's log)."""
    what = f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else str(why)
    line = (f"idres: error: the worker stopped ({what.splitlines()[0][:300] if what else 'an error'}): restart it; "
            "nothing is lost (a restart rebuilds from the log)\n")
    os.write(2, line.encode("utf-8", "replace"))  # (the process's stderr itself: Faust redirects sys.stderr)
