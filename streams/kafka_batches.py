"""Record batches the stream jobs' consumer cannot decode: a bounded failure, never a crash loop.

A producer idres does not control can write a batch whose compressed payload is damaged, or compressed
with a codec this process cannot read. The consumer (aiokafka, under Faust) raises while it unpacks the
batch, before any record reaches an agent, and a restart fetches the same batch again: the worker would
stop at the same place for ever.

``install`` puts a check between the fetched bytes and the consumer: each batch is decoded as soon as
it is taken from a fetch response. A batch that decodes is handed on unchanged. One that does not is:

- on a topic ``skippable`` accepts (the raw topics: what a foreign producer writes), passed over like a
  control batch, and kept as an ``UndecodableBatch`` (where, why, and its bytes) for the validate role
  to dead-letter (``take``) before the offsets after it are committed;
- on any other topic (the engine's own), raised as ``UndecodableBatchError``, one line naming the topic,
  partition and offsets, and the worker stops: skipping there would lose decisions.

Faust counts the offsets of a skipped batch as a gap and commits them with the next records of that
partition, so a restart re-reads (and dead-letters again) only a batch whose successors were not yet
acknowledged. A dead letter is therefore written at least once per batch; its headers name the
source partition and offsets, so readers can tell repeats apart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

log = logging.getLogger("idres.kafka")

MAX_KEPT = 1024  # undecodable batches waiting to be dead-lettered (each at most one fetch's bytes)


@dataclass(frozen=True)
class UndecodableBatch:
    topic: str
    partition: int
    first_offset: int
    next_offset: int
    reason: str
    raw: bytes  # the batch exactly as fetched (header and compressed payload)


class UndecodableBatchError(RuntimeError):
    """A batch on one of the engine's own topics cannot be decoded: the worker stops rather than skip it."""


_lock = threading.Lock()
_kept: list[UndecodableBatch] = []
_skippable: Callable[[str], bool] = lambda topic: False  # noqa: E731 (replaced by install)
_installed = False
fatal: Optional[UndecodableBatchError] = None  # what stopped the worker, if a batch did


def take() -> list[UndecodableBatch]:
    """The undecodable batches skipped since the last call, oldest first."""
    with _lock:
        out = list(_kept)
        _kept.clear()
    return out


def _keep(batch: UndecodableBatch) -> None:
    with _lock:
        if len(_kept) >= MAX_KEPT:
            raise UndecodableBatchError(
                f"{MAX_KEPT} undecodable record batches are waiting to be dead-lettered: the dead-letter "
                f"topic is not being written; stopping")
        _kept.append(batch)


class _Decoded:
    """A batch whose records were decoded up front: iterated from memory, otherwise the batch itself."""

    def __init__(self, batch: Any, crc_ok: bool, records: Optional[list[Any]]):
        self._batch = batch
        self._crc_ok = crc_ok
        self._records = records

    def validate_crc(self) -> bool:
        return self._crc_ok

    def __iter__(self) -> Iterator[Any]:
        return iter(self._records or ())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)


class _Skipped:
    """Stands in for an undecodable batch: the fetcher passes over it as over a control batch."""

    is_control_batch = True
    is_transactional = False
    producer_id = None

    def __init__(self, base_offset: int, next_offset: int):
        self.base_offset = base_offset
        self.next_offset = next_offset

    def validate_crc(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class _CheckedRecords:
    """The fetched bytes of one partition (``MemoryRecords``), each batch decoded when taken."""

    def __init__(self, buffer: bytes, inner_type: Any):
        self._buffer = buffer
        self._inner = inner_type(buffer)
        self._pos = 0
        self.tp: Any = None  # set by the partition's records before the first batch is taken

    def size_in_bytes(self) -> int:
        return self._inner.size_in_bytes()

    def has_next(self) -> bool:
        return self._inner.has_next()

    def next_batch(self) -> Any:
        start = self._pos
        batch = self._inner.next_batch()
        # every message format starts a batch with offset (8 bytes) and length (4 bytes)
        length = int.from_bytes(self._buffer[start + 8:start + 12], "big", signed=True)
        self._pos = start + 12 + max(length, 0)
        if batch is None or getattr(batch, "is_control_batch", False):
            return batch
        if not batch.validate_crc():
            if not _skippable(self._topic()):
                return _Decoded(batch, False, None)  # the consumer's own answer: an error, and a new fetch
            return self._undecodable(batch, "its checksum (CRC) does not match its bytes", self._buffer[start:self._pos])
        try:
            records = list(batch)
        except Exception as exc:  # any codec's error: the batch cannot be read, whatever the library says
            reason = f"{type(exc).__name__}: {exc}".strip()[:500]
            return self._undecodable(batch, reason, self._buffer[start:self._pos])
        return _Decoded(batch, True, records)

    def _topic(self) -> str:
        return self.tp.topic if self.tp is not None else "?"

    def _undecodable(self, batch: Any, reason: str, raw: bytes) -> Any:
        topic, partition = self._topic(), (self.tp.partition if self.tp is not None else -1)
        first, nxt = batch.base_offset, batch.next_offset
        where = f"{topic}/{partition} offsets {first}..{nxt - 1}"
        if not _skippable(topic):
            global fatal
            fatal = UndecodableBatchError(
                f"the record batch at {where} cannot be decoded ({reason}); this topic is written by idres, "
                f"so the broker's copy is damaged: restore the topic, or re-create the deployment from its raw topics")
            log.critical("stopping the worker: %s", fatal)
            raise fatal
        log.error("skipping an undecodable record batch at %s (%s): it goes to the dead-letter topic", where, reason)
        _keep(UndecodableBatch(topic, partition, first, nxt, reason, bytes(raw)))
        return _Skipped(first, nxt)


def install(skippable: Callable[[str], bool]) -> None:
    """Checks every batch the stream jobs' consumer fetches from now on; ``skippable(topic)`` says where an
    undecodable batch is skipped (and kept for a dead letter) rather than stopping the worker."""
    global _skippable, _installed
    _skippable = skippable
    if _installed:
        return
    from aiokafka.consumer import fetcher

    inner_type = fetcher.MemoryRecords
    base = fetcher.PartitionRecords

    class CheckedPartitionRecords(base):  # type: ignore[misc, valid-type]
        def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any):
            if isinstance(records, _CheckedRecords):
                records.tp = tp
            super().__init__(tp, records, *args, **kwargs)

    fetcher.MemoryRecords = lambda buffer: _CheckedRecords(buffer, inner_type)
    fetcher.PartitionRecords = CheckedPartitionRecords
    _installed = True
