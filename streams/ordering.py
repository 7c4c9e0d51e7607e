"""The order records are decided in: event time, whatever order they were read in.

The resolver decides one event at a time, and what a guard or the matcher decides can depend on what
came before. So that the same events give the same customers whatever order they arrive in, the
drivers decide them in one canonical order, a function of the records alone:

- ``idres ingest`` (``time_ordered_inputs``) reads its inputs once, noting each record's ``order_key`` and
  where its line is (in a private temporary file, deleted when the run ends or the process dies),
  then decides the records in key order: memory is a few dozen bytes per record, not the records;
- the Kafka resolve role holds records in a reorder buffer released by watermark (``streams.stream_app``).

``order_key`` sorts by ``occurred_at`` (as a UTC instant), then by a checksum of the event ID, then
of the record's bytes, so ties are broken by content, never by arrival. A record whose time cannot be
read this quickly (it will most likely be rejected) sorts first. Only the order of deciding changes:
every record is still decided, rejected or recognized as a duplicate exactly as before.
"""

from __future__ import annotations

import heapq
import math
import os
import tempfile
import zlib
from array import array
from collections import deque
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import orjson

from projections.times import micros
from streams.inputs import ProgressMeter

_TIME_BIAS = 1 << 62  # (microseconds before 1970 stay positive)
UNKNOWN_TIME = -_TIME_BIAS  # what ``event_micros`` says of a record whose time cannot be read
BACKLOG_WAIT = 30.0  # seconds a source with a backlog is waited for while silent, at least (``ReorderBuffer``)
DELAY_WINDOW = 10.0  # seconds over which the longest delay of records reaching a ``ReorderBuffer`` is taken
READ_BLOCK = 16 << 10  # bytes read back from the spool at once while it is read in its own order


def event_micros(obj: object) -> int:
    """``occurred_at`` of a parsed record as microseconds since 1970 (UTC), or UNKNOWN_TIME."""
    if not isinstance(obj, dict):
        return UNKNOWN_TIME
    at = obj.get("occurred_at")
    if not isinstance(at, str) or len(at) > 64:
        return UNKNOWN_TIME
    try:
        return micros(at)
    except (ValueError, OverflowError):
        return UNKNOWN_TIME


def order_key(raw: bytes) -> int:
    """The position of a record (its stripped bytes) in the canonical order: time, then event ID, then
    content, packed into one integer."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    when = event_micros(obj)
    eid = obj.get("event_id") if isinstance(obj, dict) else None
    id_sum = zlib.crc32(eid.encode("utf-8", "replace")) if isinstance(eid, str) else 0
    return ((when + _TIME_BIAS) << 64) | (id_sum << 32) | zlib.crc32(raw)


def key_micros(key: int) -> int:
    """The event time (microseconds since 1970, or UNKNOWN_TIME) an ``order_key`` sorts by."""
    return (key >> 64) - _TIME_BIAS


def time_ordered(lines: Iterable[bytes], spool_dir: Optional[Path] = None,
                 max_bytes: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line, in ``order_key`` order (see ``time_ordered_inputs``)."""
    for _, number, raw in time_ordered_inputs([(None, lines)], spool_dir, max_bytes):
        yield number, raw


def time_ordered_inputs(inputs: Iterable[tuple[Any, Iterable[bytes]]], spool_dir: Optional[Path] = None,
                        max_bytes: int = 1 << 20) -> Iterator[tuple[Any, int, bytes]]:
    """``(tag, line number, line)`` of every non-blank line of every input (``(tag, lines)``), all inputs
    together in ``order_key`` order. The lines are read once into an anonymous temporary file (under
    ``spool_dir``) and read back from it; what stays in memory per line is its key and where it is. A
    line longer than ``max_bytes`` is not parsed for its key (the pipeline rejects it)."""
    keys: list[int] = []
    offsets, lengths, numbers, sources = array("q"), array("q"), array("q"), array("l")  # where each line is
    tags: list[Any] = []
    with tempfile.TemporaryFile(dir=spool_dir, prefix=".idres-order-") as spool:
        offset = 0
        for source, (tag, lines) in enumerate(inputs):
            tags.append(tag)
            for number, line in enumerate(lines, 1):
                raw = line.strip()
                if not raw:
                    continue
                keys.append(order_key(raw) if len(raw) <= max_bytes else zlib.crc32(raw))
                spool.write(raw)
                offsets.append(offset)
                lengths.append(len(raw))
                numbers.append(number)
                sources.append(source)
                offset += len(raw)
        spool.flush()
        if not keys:
            return
        order = array("q", sorted(range(len(keys)), key=keys.__getitem__))  # (8 bytes a line, not an int object)
        del keys
        # read back with ``pread``, not mapped: the pages of a mapping that were read count as the process's
        # memory until it is unmapped, the whole spool by the last record
        fd = spool.fileno()
        pread = os.pread
        block, block_start, block_end = b"", 0, 0
        for i in order:
            start, length = offsets[i], lengths[i]
            if start < block_start or start + length > block_end:
                # (the records after this one come with it when the spool is being read in its own order)
                ahead = block_end <= start < block_end + READ_BLOCK
                block = pread(fd, max(length, READ_BLOCK) if ahead else length, start)
                while len(block) < length:  # (one call reads at most about 2 GiB)
                    more = pread(fd, length - len(block), start + len(block))
                    if not more:
                        raise OSError(f"the spool of records to order (under {spool_dir or tempfile.gettempdir()}) "
                                      "was cut short while it was read")
                    block += more
                block_start, block_end = start, start + len(block)
            yield tags[sources[i]], numbers[i], block[start - block_start:start - block_start + length]


def read_in_order(inputs: Sequence[Any], progress: Optional[Callable[[int], None]], time_order: bool,
                  spool_dir: Optional[Path] = None, max_bytes: int = 1 << 20) -> tuple[Iterator[tuple[int, int, bytes]], list[Any]]:
    """The lines of ``inputs`` as ``(input index, line number, line)``: all of them in ``order_key`` order
    (``time_order``), or each input's in its own order, one input after the other. And a progress meter per
    input, told the length of each line taken (``add``), now and then (``report``) and at the end
    (``report(final=True)``); in time order its ``read.blank`` counts the blank lines left out."""
    if time_order:
        reads = [ReadOnce(lines, progress) for lines in inputs]
        return (time_ordered_inputs(list(enumerate(reads)), spool_dir, max_bytes),
                [DecidedShare(read) for read in reads])
    return (((i, n, line) for i, lines in enumerate(inputs) for n, line in enumerate(lines, 1)),
            [ProgressMeter(lines, progress) for lines in inputs])


class ReadOnce:
    """The lines of an input as ``time_ordered`` reads them: counts blank lines and the bytes of text, and
    tells ``progress`` a fifth of the file's bytes as they are read (the rest as records are decided)."""

    SHARE = 0.2

    def __init__(self, lines: Any, progress: Optional[Callable[[int], None]]):
        self.lines = lines
        self.progress = progress
        self.blank = 0
        self.text_bytes = 0
        self.told = 0  # bytes told to ``progress`` so far, by both passes

    def __iter__(self):
        step = 0
        for line in self.lines:
            self.text_bytes += len(line)
            if not line.strip():
                self.blank += 1
            step += 1
            if step == 4096:
                step = 0
                self._tell(int(self.file_bytes() * self.SHARE))
            yield line

    def _tell(self, upto: int) -> None:
        if self.progress is not None and upto > self.told:
            self.progress(upto - self.told)
            self.told = upto

    def file_bytes(self) -> int:
        """Bytes of the file itself read (compressed bytes of a gzip file), where the input can say."""
        consumed = self.lines.consumed() if hasattr(self.lines, "consumed") else None
        return consumed if consumed is not None else self.text_bytes


class DecidedShare:
    """Progress while records are decided in another order than read: each record's share of the file
    (``add`` the length of each record decided, ``report`` now and then, ``report(final=True)`` at the end)."""

    def __init__(self, read: ReadOnce):
        self.read = read
        self.start: Optional[float] = None
        self.scale = 0.0
        self.counted = 0.0

    def add(self, n: int) -> None:
        if self.start is None:  # (the whole input has been read once the first record is decided)
            total = self.read.file_bytes()
            self.read._tell(int(total * ReadOnce.SHARE))
            self.start = self.read.told
            self.scale = (total - self.start) / max(self.read.text_bytes, 1)
        self.counted += (n + 1) * self.scale  # (the line break was stripped)

    def report(self, final: bool = False) -> None:
        total = self.read.file_bytes()
        if final:
            self.read._tell(total)
        elif self.start is not None:
            self.read._tell(min(int(self.start + self.counted), total))


ARRIVALS_SLACK = 4_096  # arrivals noted beyond twice the items held before those of released items are dropped


class ReorderBuffer:
    """Holds records from several sources (raw topic partitions) and releases them in ``order_key`` order,
    by watermark: a record is released once every source heard from in the last ``wait`` seconds has sent
    one at least as late (each source is read in its own order, so none of them can still send an
    earlier one), or once it has waited ``wait`` seconds, or when more than ``max_items`` are held.
    Records that arrive behind the watermark are released at once (decided late, as they come).

    A source said to be *caught up* (``caught_up``: its reader had read everything it held) can only send
    what is written to it from now on: with ``grace`` given, it holds back nothing older than ``grace``
    seconds before the wall clock (``wall``), whatever it sent last. Live traffic, whose events are written
    as they happen, is then released ``grace`` after it happened instead of when a quiet source speaks or
    ``wait`` has passed; a source with a backlog (history being loaded) still holds back by what it sent.

    Where the caller says when the reader learned that a source was read to its end (``caught_up``'s ``at``:
    when the broker told the end it read up to), every record written to that source before then has been
    added, and any written since happened at most ``grace`` before it was written: the source holds back
    what happened after that instant less the grace, and nothing older, whatever the times of the records
    it sent (live records of one source are written in the order they reach the broker, which is their
    order in time only within the grace). The grace then covers only the time from an event happening to
    its record being written, however long records take to come through the readers (a worker short of
    CPU, a pause of the process).

    Where it does not say, the grace covers the time from an event happening to its record reaching this
    buffer. When records take longer, a source said to be caught up could still send records older than the
    wall clock less the grace, late events each; so the callers say how long records took to come
    (``delayed``: from written to the source to added here), and a source caught up holds back nothing
    older than the longest such delay seen in the last ``DELAY_WINDOW`` seconds, where that is more than
    the grace. That is an estimate: a record slower than every one of the last seconds still comes late.

    A source said to be *behind* (``behind``: its reader had records left to read) holds more: while one is,
    nothing is released for having waited ``wait``, and it is waited for while it has been heard from in the
    last ``backlog_wait`` seconds (unless given, ten times ``wait`` and at least ``BACKLOG_WAIT``), silent or
    not. When the readers fall behind the traffic (a worker short of CPU), each source's records come late
    and unevenly; releasing by waiting time then would make the older ones still to come late events, and
    each late event a restatement of the log, work that puts the readers further behind. The records wait
    instead, as a backlog does (at most ``max_items`` of them).

    While the buffer's own reader has records left to read (``reading``: the input it reads the sources from,
    a topic, holds more than it has read), a short silence says nothing of the sources: their next records
    may be among those not read yet. So then nothing is released for having waited, and a source that has sent
    records is waited for as one behind is (``backlog_wait``); a reader that stalls (a long re-estimation of the
    match model, a pause of the process) in the middle of a backlog would otherwise find every source silent,
    release all it holds, and then read the older records still to come from them as late events, each a
    restatement of the log. (A source only expected, which has sent nothing, is still waited for ``wait``:
    a quiet partition with history, for one, must not hold live records back for as long as the reader lags.)

    Pure: the caller says what time it is (``now``, seconds on any monotonic clock; ``wall``, microseconds
    since 1970, the clock of event times).
    """

    def __init__(self, wait: float, max_items: int = 100_000, grace: Optional[float] = None,
                 backlog_wait: Optional[float] = None):
        self.wait = wait
        self.max_items = max_items
        self.grace = None if grace is None else int(grace * 1_000_000)  # microseconds
        self.backlog_wait = max(10 * wait, BACKLOG_WAIT) if backlog_wait is None else max(backlog_wait, wait)
        self._caught_up: set[Any] = set()
        self._read_at: dict[Any, int] = {}  # source caught up -> when its reader learned so (wall, microseconds)
        self._behind: set[Any] = set()
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = 0
        self._arrivals: "deque[tuple[float, int, int]]" = deque()  # (arrival, key, seq), in arrival order
        self._latest: dict[Any, int] = {}  # source -> latest event time it sent
        self._heard: dict[Any, float] = {}  # source -> when it last sent
        self._gone: set[int] = set()  # items released before their arrival mark left ``_arrivals``
        self._delays: "deque[tuple[float, int]]" = deque()  # (when, microseconds), longest first: see ``delay``
        self._reading = False  # whether the reader has records left to read (``reading``)
        self.released_for_room = 0  # items released only because more than ``max_items`` were held, ever

    def __len__(self) -> int:
        return len(self._heap)

    def expect(self, sources: Iterable[Any], now: float) -> None:
        """Sources that may send (the raw partitions): until each has sent something, or stayed silent for
        ``wait`` seconds, nothing later than what it could still send is released."""
        for source in sources:
            if source not in self._heard:
                self._heard[source] = now
                self._latest[source] = UNKNOWN_TIME - 1

    def caught_up(self, sources: Iterable[Any], at: Optional[Iterable[Optional[int]]] = None) -> None:
        """Sources whose reader had read everything they held, as of their last records added; ``at`` (one per
        source, None where not known): when the reader learned so, microseconds since 1970 (the wall clock),
        every record written to the source before then being among those added."""
        read_at = self._read_at
        for source, when in zip(sources, at if at is not None else repeat(None)):
            self._caught_up.add(source)
            self._behind.discard(source)
            if when is None:
                read_at.pop(source, None)
            else:
                read_at[source] = when

    def behind(self, sources: Iterable[Any]) -> None:
        """Sources whose reader had more records to read after their last ones added (until ``caught_up``)."""
        for source in sources:
            self._behind.add(source)
            self._caught_up.discard(source)

    def reading(self, behind: bool) -> None:
        """Whether the reader has records left to read in its input, as of the records just added (until said
        again)."""
        self._reading = behind

    def delayed(self, seconds: float, now: float) -> None:
        """Records just added took ``seconds`` (the longest of them) from being written to their source to
        being added here."""
        micros = int(seconds * 1_000_000)
        delays = self._delays
        while delays and delays[-1][1] <= micros:  # (a later, longer delay outlasts it: not needed)
            delays.pop()
        delays.append((now, micros))

    def delay(self, now: float) -> int:
        """The longest delay said in the last ``DELAY_WINDOW`` seconds, in microseconds (0: none)."""
        delays = self._delays
        while delays and now - delays[0][0] > DELAY_WINDOW:
            delays.popleft()
        return delays[0][1] if delays else 0

    def behind_count(self) -> int:
        """How many sources are behind now."""
        return len(self._behind)

    def _backlogged(self, now: float) -> bool:
        """Whether a source behind has been heard from in the last ``backlog_wait`` seconds."""
        heard = self._heard
        return any(now - heard.get(s, -math.inf) < self.backlog_wait for s in self._behind)

    def add(self, key: int, source: Any, item: Any, now: float) -> None:
        """A record from ``source`` (which is no longer known to be caught up: ``caught_up`` says so again)."""
        self._caught_up.discard(source)
        micros = key_micros(key)
        if micros > self._latest.get(source, UNKNOWN_TIME - 1):
            self._latest[source] = micros
        self._heard[source] = now
        self._seq += 1
        heapq.heappush(self._heap, (key, self._seq, item))
        self._arrivals.append((now, key, self._seq))

    def watermark(self, now: float, wall: Optional[int] = None) -> Optional[int]:
        """The event time up to which every active source has sent (None: no source is active)."""
        latest = self._latest
        floor = wall - max(self.grace, self.delay(now)) if wall is not None and self.grace is not None else None
        caught_up, behind = self._caught_up, self._behind
        read_at = self._read_at
        reading = self._reading
        mark: Optional[int] = None
        for s, at in self._heard.items():
            # (while the reader has records left to read, a source that has sent records is waited for as one
            # behind is; one only expected, which has sent nothing, is not)
            waited = self.backlog_wait if s in behind or (reading and latest[s] >= UNKNOWN_TIME) else self.wait
            if now - at < waited:
                upto = latest[s]
                if s in behind:  # (among its records left to read may be more of the instant it sent last)
                    upto -= 1
                if floor is not None and s in caught_up:
                    told = read_at.get(s)
                    if told is not None:  # (what it can still send was written since: it happened at most the
                        upto = min(told, wall) - self.grace - 1  # grace before, whatever the records before it)
                    elif upto < floor:
                        upto = floor
                if mark is None or upto < mark:
                    mark = upto
        return mark

    def release(self, now: float, wall: Optional[int] = None) -> list[Any]:
        """The items that may be decided now, in key order."""
        heap = self._heap
        if not heap:  # (every arrival noted is of an item released)
            self._arrivals.clear()
            self._gone.clear()
            return []
        # everything up to the latest key among those held ``wait`` seconds
        upto = -1
        arrivals, gone = self._arrivals, self._gone
        timed: set[int] = set()
        # (nothing is released for waiting while a source is behind, or the reader is)
        timing = not self._reading and not (self._behind and self._backlogged(now))
        while timing and arrivals and now - arrivals[0][0] >= self.wait:
            _, key, seq = arrivals.popleft()
            if seq in gone:  # (released already)
                gone.discard(seq)
                continue
            timed.add(seq)
            upto = max(upto, key)
        mark = self.watermark(now, wall)
        out = []
        while heap:
            if not (heap[0][0] <= upto or mark is None or key_micros(heap[0][0]) <= mark):
                if len(heap) <= self.max_items:
                    break
                self.released_for_room += 1  # (only because more than ``max_items`` are held)
            _, seq, item = heapq.heappop(heap)
            if seq not in timed:
                gone.add(seq)
            out.append(item)
        if len(arrivals) > 2 * len(heap) + ARRIVALS_SLACK:
            # (while nothing is released for waiting, a backlog's arrivals are not taken off in order: those of
            # the items released go now, so that what is noted stays in proportion to what is held)
            self._arrivals = deque(a for a in arrivals if a[2] not in gone)
            gone.clear()
        return out

    def release_all(self) -> list[Any]:
        """Every item held, in key order, released now (what the buffer knows of its sources is kept)."""
        out = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        self._arrivals.clear()
        self._gone.clear()
        return out

    def drain(self) -> list[Any]:
        """Every item held, in key order; what the buffer knew of its sources is forgotten too."""
        out = self.release_all()
        self._caught_up.clear()
        self._read_at.clear()
        self._behind.clear()
        self._reading = False
        return out
