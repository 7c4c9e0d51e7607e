"""The views kept at a few places of the decision-log topic, so that a restatement folds them again from there.

When a restatement of the log completes (``resolver.restate``), a reader's views must become the fold of the log
as it reads now: without the entries it superseded, with the ones that replace them. Folded from the start of
the topic, that costs a pass over the whole log per straggler, and it grows with the log (seconds at tens of
thousands of entries, minutes at millions) while the views stand still. The project role and `serve
--bootstrap` keep instead, as the resolve role does for its state (``streams.stream_app.RewindPoint``), the
views as the log made them at a few entries (pickled), and fold again from the newest one before the
restatement's place.

A state is kept once ``every`` entries, and at least a quarter of the entries before it, were folded since the
last one (so that keeping them costs a bounded share of the folding), and at the reader's first look after a
fold from the start of the topic; never inside a restatement; the two newest stay. States after the place a
restatement starts from are dropped when its begun marker is read; all of them on an erasure (they hold what
it erased) and when the topic holds fewer entries than were read from it.
An erasure the reader had not read before a fold (one the pass over the topic finds) is waited for, as the
reader waits for one it reads (its keys shredded), before the fold reads what it erased; if its keys are not
shredded in time, no state is kept until a fold from the start of the topic finds none such, and the reader
folds its views again once they are (``pending``, ``shredded``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from projections.customer import CustomerViews, ProjectionConfig
from streams.kafka_io import KafkaSettings
from streams.stream_app import (LogScan, RewindPoint, ScanState, fold_decision_log, pickled, spaced, unpickled,
                                wait_shredded)

KEPT = 2  # states kept, the newest last
CHECK_EVERY = 2.0  # seconds between two looks at whether pending erasures' keys are shredded

Entry = list[dict[str, Any]]


class Folded:
    """What ``ViewPoints.fold`` gives: the views, the offset of the next message, the entries folded (as
    written), the pass over the log it made (for its restatements), and the entry it folded from."""

    def __init__(self, views: CustomerViews, offset: int, entries: int, scan: LogScan, start: int):
        self.views, self.offset, self.entries, self.scan, self.start = views, offset, entries, scan, start


class ViewPoints:
    """The views kept at a few entries of the decision-log topic, for a reader that folds it in order.

    ``note`` each entry as it is read (every entry as written, markers too); ``keep`` the views when ``due``
    (in a worker thread: it pickles them); ``fold`` the views as the log reads now, from the newest usable kept
    state. ``every`` 0: nothing is kept, and ``fold`` reads the topic from its start."""

    def __init__(self, every: int):
        self.every = every
        self.points: list[RewindPoint] = []
        self.scan = ScanState()  # the entries noted so far
        self.unclean = False  # (the views may hold what an erasure erased: nothing is kept)
        # the messages holding erasures whose keys were not shredded in time (``wait_shredded``): the views,
        # folded without waiting longer, hold what they erased until they are folded again (``shredded``)
        self.pending: list[bytes] = []
        self.check_after = 0.0  # (monotonic time before which ``shredded`` does not ask again)
        self.wanted = False  # (folded from the start of the topic: kept at the next look)

    def note(self, entry: Entry) -> None:
        """The log's next entry, as written: the states after a restatement's place are dropped when it begins."""
        first = entry[0] if entry else None
        if first is not None and first["type"] == "log_restate_begun":
            start = first["from_seq"]
            self.points = [p for p in self.points if p.scan.entries <= start]
        self.scan.take(entry)

    def shredded(self, settings: KafkaSettings) -> list[bytes]:
        """The erasures ``pending`` if the keys of every one are shredded now (else none; asked at most every
        ``CHECK_EVERY`` seconds): the views are to be folded again, and then those ``settled``."""
        now = time.monotonic()
        if not self.pending or now < self.check_after:
            return []
        self.check_after = now + CHECK_EVERY
        waited = list(self.pending)
        return waited if all([wait_shredded(settings, value, wait=0, warn=False) for value in waited]) else []

    def settled(self, values: list[bytes]) -> None:
        """The views are folded again after these erasures' keys were shredded: no longer pending."""
        self.pending = [value for value in self.pending if value not in values]

    def forget(self) -> None:
        """Drops every kept state (an erasure: they hold what it erased)."""
        self.points = []

    def due(self) -> bool:
        """Whether the views folded up to the last entry noted are to be kept now (outside a restatement)."""
        if not self.every or self.unclean or self.pending:
            return False
        if self.wanted:
            return True
        last = self.points[-1].scan.entries if self.points else 0
        return spaced(self.scan.entries, last, self.every)

    def keep(self, offset: int, views: CustomerViews) -> None:
        """Keeps ``views``, the fold of the entries noted, whose last is in the message before ``offset``."""
        self.points = (self.points + [RewindPoint(offset, self.scan.copy(), pickled(views))])[-KEPT:]
        self.wanted = False

    def kept_bytes(self) -> int:
        return sum(len(p.state) for p in self.points)

    def fold(self, settings: KafkaSettings, config: ProjectionConfig,
             on_entry: Optional[Callable[[int, Entry], None]] = None, upto: Optional[int] = None) -> Folded:
        """The views as the log reads now, from the newest kept state that holds at most ``upto`` entries (any:
        None), else from the start of the topic; up to the end of the topic when it begins (what is appended
        meanwhile is left to the reader). ``on_entry`` is given every entry read (as written, with its position):
        the entries after the kept state, or all. The entries are noted as read."""
        point = next((p for p in reversed(self.points) if upto is None or p.scan.entries <= upto), None)
        scan = LogScan(settings, resume=point)
        if point is not None and not self._usable(point, scan):
            point, self.points = None, []
        if scan.entries < self.scan.entries:  # (the topic holds fewer entries than were read from it)
            self.points = []
            if point is not None:
                point, scan = None, LogScan(settings)
        # erasures not noted before (another reader's, or appended since): their keys shredded first, so that
        # the fold does not read what they erased (an erasure before a kept state was noted: the state is not
        # used when one follows it)
        unread = [value for seq, value in scan.erasures if seq >= self.scan.entries]
        late: list[bytes] = []
        for value in unread:  # (once one was waited for in vain, the rest are only looked at)
            if not wait_shredded(settings, value, **({"wait": 0, "warn": False} if late else {})):
                late.append(value)
        if late:
            self.points, self.unclean = [], True
            self.pending += late
        elif point is None:
            self.unclean = False
        views = unpickled(point.state) if point is not None else CustomerViews(config)
        views.config = config
        offset, entries = fold_decision_log(settings, views=views, on_entry=on_entry, scan=scan,
                                            start=point.offset if point is not None else 0,
                                            seq=point.scan.entries if point is not None else 0, stop=scan.offset)
        self.scan = scan.state.copy()
        # (what a pass over the whole topic made: kept at the reader's next look, not before it answers)
        self.wanted = point is None and entries > 0
        return Folded(views, offset, entries, scan, point.scan.entries if point is not None else 0)

    def _usable(self, point: RewindPoint, scan: LogScan) -> bool:
        """Whether the log, as ``scan`` read it on from ``point``, still reads as it did up to there: no erasure
        since (the state holds what it erased), and no restatement begun since that starts before it."""
        at = point.scan.entries
        if scan.state.erased >= at:
            return False
        return not any(seq >= at and m["type"] == "log_restate_begun" and m["from_seq"] < at
                       for seq, m in scan.markers.items())
