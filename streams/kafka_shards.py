"""Resolve shards on Kafka: the two rounds of a window (``streams.shards``) as messages on two topics.

``PREFIXshard.tasks`` has one partition per shard (``--resolve-partitions N``); the resolve workers of a
deployment share them through their consumer group, as they share every other topic. ``PREFIXshard.replies``
has one partition, read by the coordinator: the resolve worker that holds the validated topic's partition.

For each window the coordinator sends every shard partition a task (round 1: its share of the window's
records, the decisions that begin the epoch if the window starts one, and the decision-log offset the
window starts at); the worker holding the partition brings its copy of the state to that offset by reading
the decision log, and replies with its verdicts. The coordinator plans the chains and sends round 2; the
replies hold the decisions. The coordinator then logs the window's entries, as the single resolve worker
logs what it decides, and acknowledges the validated messages.

A worker's copy of the state holds, for a while, decisions the log does not have yet: the epoch's
decisions and those of the chains it decided (its *ledger*). Reading the log, it recognizes them and does not
apply them twice. If the log says something else (the coordinator restarted and decided the window
anew), the copy is rebuilt from the log. Replies name the coordinator's session and the window: a late or
repeated reply is ignored, and since the same chain decided on the same state gives the same decisions, it
does not matter which worker's reply counts.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import orjson

from resolver.config import ResolverConfig
from resolver.decisions import record_of
from resolver.engine import Resolver
from resolver.restate import MARKER_TYPES
from resolver.state import ResolverState
from streams.kafka_io import KafkaIOError, KafkaSettings
from streams.shards import ShardWorker, Verdict


def tasks_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}shard.tasks"


def replies_topic(settings: KafkaSettings) -> str:
    return f"{settings.prefix}shard.replies"


# ------------------------------------------------------------------------------------ messages
def verdict_row(b: int, v: Verdict) -> list[Any]:
    return [b, v.valid, v.event_id, v.digest, sorted(v.footprint), v.reason, v.detail]


def verdict_of(row: list[Any]) -> tuple[int, Verdict]:
    b, valid, event_id, digest, footprint, reason, detail = row
    return b, Verdict(valid, event_id, digest, frozenset(footprint), reason, detail)


# ------------------------------------------------------------------------------------ a worker's side
class ShardReplica:
    """A resolve worker's copy of the state, kept up to date from the decision log, that answers the
    tasks of the shard partitions it holds."""

    def __init__(self, settings: KafkaSettings, config: ResolverConfig):
        self.settings = settings
        self.config = config
        self.resolver: Optional[Resolver] = None
        self.worker: Optional[ShardWorker] = None
        self.position = 0  # the next decision-log offset to read
        self._consumer: Any = None
        self.window: Optional[tuple[str, int]] = None  # the window whose epoch decisions were applied
        self.ledger_offset = 0  # the decision-log offset that window starts at
        self.begun: list[dict[str, Any]] = []  # applied, not yet read back from the log
        self.own: dict[str, list[dict[str, Any]]] = {}  # event ID -> the entry decided here, not yet read back
        self.rebuilds = 0
        self.restated = False

    def _rebuild(self) -> None:
        from streams.stream_app import fold_decision_log

        resolver = Resolver(self.config, ResolverState())
        self.position, _ = fold_decision_log(self.settings, resolver=resolver)
        self.resolver = resolver
        self.worker = ShardWorker(resolver)
        self.window, self.begun, self.own = None, [], {}
        self.rebuilds += 1

    def _read_to(self, offset: int) -> None:
        """Applies the decision log up to ``offset`` (the ledger's decisions are recognized, not applied
        again); a log that says something else than the ledger makes the state be rebuilt."""
        from kafka import TopicPartition

        from streams.stream_app import decision_entries, reader

        if self.resolver is None or self.position > offset:
            self._rebuild()
        if self.position < offset:
            tp = TopicPartition(self.settings.topics.decisions, 0)
            if self._consumer is None:
                self._consumer = reader(self.settings, enable_auto_commit=False, group_id=None,
                                        auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
                self._consumer.assign([tp])
            self._consumer.seek(tp, self.position)
            stalled = time.monotonic() + max(self.settings.timeout, 5) * 4
            while self.position < offset:
                batches = self._consumer.poll(timeout_ms=100, max_records=1000)
                for record in batches.get(tp, ()):
                    if record.offset != self.position:
                        continue
                    for entry in decision_entries(record.value, self.settings):
                        self._apply(entry)
                    self.position = record.offset + 1
                    stalled = time.monotonic() + max(self.settings.timeout, 5) * 4
                if time.monotonic() > stalled:
                    raise KafkaIOError(f"reading {tp.topic} stalled at offset {self.position} (wanted {offset})")
        if self.restated:  # the log was restated (``resolver.restate``): the copy is folded as it reads now
            self.restated = False
            self._rebuild()
            if self.position < offset:
                self._read_to(offset)
            return
        if (self.begun or self.own) and offset > self.ledger_offset:
            # the log went on past the window without what this copy decided for it: it was decided anew
            self._rebuild()
            if self.position < offset:
                self._read_to(offset)

    def _apply(self, entry: list[dict[str, Any]]) -> None:
        assert self.resolver is not None
        if entry and entry[0]["type"] in MARKER_TYPES:
            self.restated = True  # (a restatement: this copy is rebuilt once the offset is reached)
            return
        if self.begun and entry[:len(self.begun)] == self.begun:
            entry = entry[len(self.begun):]
            self.begun = []
        record = record_of(entry) if entry else None
        eid = record.get("event_id") if record is not None and record["type"] == "interaction_recorded" else None
        if eid is not None and eid in self.own:
            if self.own.pop(eid) == entry:
                return
            self.own[eid] = []  # (a different decision: this copy is rebuilt once the offset is reached)
        self.resolver.apply_all(entry)

    def handle(self, task: dict[str, Any]) -> dict[str, Any]:
        """Answers one task message (``streams.kafka_shards``'s module docstring); the reply to send."""
        window = (task["session"], task["window"])
        reply: dict[str, Any] = {"session": task["session"], "window": task["window"], "round": task["round"],
                                 "shard": task["shard"], "error": None}
        try:
            self._read_to(task["offset"])
            assert self.worker is not None and self.resolver is not None
            if task["round"] == 1:
                if self.window != window:
                    if self.begun or self.own:  # (a window given up for another at the same offset)
                        self._rebuild()
                        self._read_to(task["offset"])
                    if task["begun"]:
                        self.resolver.apply_all(task["begun"])
                        self.begun = task["begun"]
                    self.window = window
                    self.ledger_offset = task["offset"]
                items = [(b, raw.encode("utf-8")) for b, raw in task["items"]]
                reply["verdicts"] = [verdict_row(b, v) for b, v in self.worker.verdicts(items)]
            else:
                if self.window != window:
                    raise RuntimeError("round 2 of a window this copy did not begin")  # (rebuilt meanwhile)
                chains = [[(k, b, raw.encode("utf-8"), source) for k, b, raw, source in chain]
                          for chain in task["chains"]]
                result = self.worker.decide(task["position"], chains)
                if result.error is not None:
                    raise result.error
                for k, entry in result.decided.items():
                    self.own[record_of(entry)["event_id"]] = entry
                reply["decided"] = [[k, entry] for k, entry in sorted(result.decided.items())]
        except Exception as exc:  # (a defect, or a copy that cannot follow the log: the coordinator decides
            # the window in order itself)
            reply["error"] = f"{type(exc).__name__}: {exc}"
            self.resolver = None  # (rebuilt from the log for the next task)
        return reply

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


# ------------------------------------------------------------------------------ the coordinator's side
class Interrupted(RuntimeError):
    """The coordinator stopped waiting for replies: its worker is stopping, or its group is rebalancing
    (which waits for the coordinator's work in hand: it must give it back, or no shard is reassigned)."""


class Overdue(Interrupted):
    """A shard did not answer within the shard wait (a worker alive in the group but stuck, or far behind):
    the coordinator decides the window itself, in order, and gives the shards a rest of as long."""


class Replies:
    """The coordinator's reader of the replies topic (blocking: run it in an executor)."""

    def __init__(self, settings: KafkaSettings):
        from kafka import TopicPartition

        from streams.stream_app import high_water, reader

        self.settings = settings
        self.tp = TopicPartition(replies_topic(settings), 0)
        self.consumer = reader(settings, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
        self.consumer.assign([self.tp])
        # from the topic's end
        self.consumer.seek(self.tp, high_water(self.consumer, self.tp, max(settings.timeout, 5),
                                               ": check that it exists (`idres topics --resolve-partitions N` "
                                               "creates it)"))

    def collect(self, session: str, window: int, round_: int, shards: int, wait: float,
                stopped: Callable[[], bool]) -> dict[int, dict[str, Any]]:
        """The replies of every shard to this round of this window (the first of each shard's); raises
        ``Interrupted`` when ``stopped()`` says so, ``Overdue`` when a shard has not answered in ``wait`` s."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + wait
        while len(got) < shards:
            if stopped():
                raise Interrupted(f"window {window}, round {round_}")
            for record in self.consumer.poll(timeout_ms=100, max_records=1000).get(self.tp, ()):
                reply = orjson.loads(record.value)
                if (reply.get("session"), reply.get("window"), reply.get("round")) == (session, window, round_):
                    got.setdefault(reply["shard"], reply)
            if len(got) < shards and time.monotonic() > deadline:
                missing = sorted(set(range(shards)) - set(got))
                raise Overdue(f"window {window}, round {round_}: shard(s) {missing} did not answer in {wait:g} s")
        return got

    def close(self) -> None:
        self.consumer.close()
