"""The views kept for restatements to fold from (``streams.view_points``): which are kept and which dropped.
Folding from them through Kafka: tests/test_restate.py and tests/test_erasure.py."""

from projections.customer import CustomerViews
from resolver import decisions
from streams.stream_app import unpickled
from streams.view_points import ViewPoints


def _entry(i: int) -> list[dict]:
    return [decisions.profile_created(f"p_{i}", "2025-01-01T00:00:00.000000Z", f"e{i}", [f"email:c{i}@mailbox.org"])]


def _fold(points: ViewPoints, views: CustomerViews, n: int, offset: list[int]) -> None:
    for _ in range(n):
        seq = points.scan.entries
        entry = _entry(seq)
        points.note(entry)
        views.apply_entry(seq, entry)
        offset[0] += 1
        if points.due():
            points.keep(offset[0], views)


def test_views_are_kept_every_so_many_entries_and_at_least_a_quarter_of_the_log_the_two_newest():
    points, views, offset = ViewPoints(every=10), CustomerViews(), [0]
    _fold(points, views, 100, offset)
    kept = [p.scan.entries for p in points.points]
    assert len(kept) == 2 and kept[-1] <= 100
    gaps = [b - a for a, b in zip([0] + kept, kept)]
    assert all(gap >= max(10, start // 4) for gap, start in zip(gaps, [0] + kept))
    for point in points.points:  # (the views as they were when kept, one profile an entry here)
        assert len(unpickled(point.state).profiles) == point.scan.entries == point.offset
    assert len(views.profiles) == 100


def test_a_restatement_drops_the_views_kept_after_its_place_and_an_erasure_drops_all():
    points, views, offset = ViewPoints(every=10), CustomerViews(), [0]
    _fold(points, views, 60, offset)
    first, second = (p.scan.entries for p in points.points)
    begun = decisions.log_restate_begun("r_1", (first + second) // 2, 0, "2025-01-02T00:00:00.000000Z")
    points.note([begun])
    assert [p.scan.entries for p in points.points] == [first]
    points.note([decisions.log_restate_begun("r_2", first, 0, "2025-01-02T00:00:00.000000Z")])
    assert [p.scan.entries for p in points.points] == [first]  # (a state up to its place holds none it supersedes)
    points.forget()
    assert points.points == [] and points.kept_bytes() == 0


def test_nothing_is_kept_with_every_0():
    points, views, offset = ViewPoints(every=0), CustomerViews(), [0]
    _fold(points, views, 50, offset)
    assert points.points == [] and not points.due()


class _Scan:
    """A pass over a topic of ``entries`` entries, one a message, with erasures at ``erased`` (as LogScan)."""

    def __init__(self, entries: int, erased: list[int]):
        from streams.stream_app import ScanState

        self.state = ScanState()
        self.state.entries, self.state.erased = entries, max(erased, default=-1)
        self.entries, self.offset, self.markers = entries, entries, {}
        self.erasures = [(seq, b"message %d" % seq) for seq in erased]

    def open_restatements(self) -> list[int]:
        return []


def test_an_erasure_not_read_before_a_fold_is_waited_for_and_if_not_shredded_nothing_is_kept(monkeypatch):
    """The fold of a topic reads what an erasure it finds erased unless its keys are shredded first: the reader
    waits for those it had not read itself (as for one it reads); when they are not shredded in time, the views
    may hold what it erased, so nothing is kept from them until a fold from the start finds none such."""
    import streams.view_points as vp

    topic = {"entries": 40, "erased": [35]}
    shredded = {"ok": False}
    waited: list[bytes] = []

    def fold(settings, views=None, on_entry=None, scan=None, start=0, seq=0, stop=None):
        return scan.offset, scan.entries

    def wait(settings, value, wait=None, warn=True):
        waited.append(value)
        return shredded["ok"]

    monkeypatch.setattr(vp, "LogScan", lambda settings, resume=None: _Scan(topic["entries"], topic["erased"]))
    monkeypatch.setattr(vp, "fold_decision_log", fold)
    monkeypatch.setattr(vp, "wait_shredded", wait)
    points, views, offset = ViewPoints(every=10), CustomerViews(), [0]
    _fold(points, views, 30, offset)  # (30 entries read and noted: states kept)
    assert points.points
    folded = points.fold(None, views.config)
    assert waited == [b"message 35"]  # (the erasure at 35 was not read: waited for)
    assert folded.start == 0 and points.points == [] and not points.due()  # (not shredded: none kept)
    topic["entries"] = 80
    points.scan.entries = 80
    monkeypatch.setattr(vp, "CHECK_EVERY", 0.0)
    assert not points.due() and points.pending == [b"message 35"] and points.shredded(None) == []
    shredded["ok"] = True
    assert points.shredded(None) == [b"message 35"] and not points.due()  # (pending until folded again)
    points.settled([b"message 35"])  # (the reader folded again)
    assert points.pending == []
    waited.clear()
    points.fold(None, views.config)
    assert waited == []  # (read by then: the fold before noted it)
    assert points.due()  # (a fold from the start that held none: kept at the next look)
    points.keep(80, views)
    assert [p.scan.entries for p in points.points] == [80] and not points.due()
    topic["erased"].append(90)
    topic["entries"] = 95
    points.fold(None, views.config)
    assert waited == [b"message 90"] and points.points == [] and points.due()


def test_nothing_is_kept_while_an_erasure_s_keys_are_awaited():
    points, views, offset = ViewPoints(every=10), CustomerViews(), [0]
    _fold(points, views, 30, offset)
    kept = [p.scan.entries for p in points.points]
    points.pending.append(b"{}")  # (a message holding an erasure whose keys were not shredded in time)
    _fold(points, views, 60, offset)
    assert [p.scan.entries for p in points.points] == kept and not points.due()
    points.pending.clear()
    assert points.due()


def test_once_an_erasure_was_waited_for_in_vain_the_others_of_a_fold_are_only_looked_at(monkeypatch):
    import streams.view_points as vp

    waits: list[object] = []

    def wait(settings, value, wait=None, warn=True):
        waits.append(wait)
        return False

    monkeypatch.setattr(vp, "LogScan", lambda settings, resume=None: _Scan(50, [20, 30, 40]))
    monkeypatch.setattr(vp, "fold_decision_log", lambda settings, scan=None, **kw: (scan.offset, scan.entries))
    monkeypatch.setattr(vp, "wait_shredded", wait)
    points = ViewPoints(every=10)
    points.fold(None, CustomerViews().config)
    assert waits == [None, 0, 0] and len(points.pending) == 3  # (the whole wait once, not three times)
