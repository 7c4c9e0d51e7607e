"""Deciding in event-time order: the same events give the same customers whatever order they come in."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st


from streams.embedded import EmbeddedEngine
from streams.ordering import ReorderBuffer, key_micros, order_key, time_ordered
from tests.cli_helpers import run_cli


def _line(event_id: str, at: str, **ids: str) -> bytes:
    return json.dumps({"event_id": event_id, "occurred_at": at, "channel": "web", "event_type": "visit",
                       "identifiers": ids}).encode()


def test_the_order_is_the_instant_whatever_the_offset_then_content():
    lines = [_line("c", "2025-03-01T11:30:00+01:00", email="a@b.org"),  # 10:30 UTC
             _line("a", "2025-03-01T10:45:00Z", email="a@b.org"),
             _line("b", "2025-03-01T10:00:00", email="a@b.org"),  # no zone: UTC
             b"not json"]
    ordered = sorted(lines, key=order_key)
    assert ordered == [b"not json", lines[2], lines[0], lines[1]]
    assert key_micros(order_key(lines[1])) - key_micros(order_key(lines[0])) == 15 * 60 * 1_000_000
    # same instant and event ID, different content: the content decides, not the arrival
    twins = [_line("t", "2025-03-01T10:00:00Z", email="x@b.org"), _line("t", "2025-03-01T10:00:00Z", email="y@b.org")]
    assert sorted(twins, key=order_key) == sorted(twins[::-1], key=order_key)


def test_time_ordered_gives_every_line_once_with_its_line_number(tmp_path):
    lines = [_line(f"e{n}", f"2025-03-{28 - n:02d}T10:00:00Z", email=f"p{n}@b.org") + b"\n" for n in range(20)]
    given_lines = lines[:5] + [b"\n", b"   \n"] + lines[5:]
    out = list(time_ordered(iter(given_lines), spool_dir=tmp_path))
    assert [raw for _, raw in out] == [line.strip() for line in lines[::-1]]
    assert all(given_lines[number - 1].strip() == raw for number, raw in out)
    assert list(tmp_path.iterdir()) == []  # (the spool is anonymous)


def _file_pages_mapped() -> int:
    """KiB of file pages this process has mapped and resident (what the kernel counts as its memory)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
def test_reading_back_holds_none_of_the_spools_pages(tmp_path):
    # 24 MiB of records in another order than their times, read back in time order: each record as it was, and
    # the process holds no more than a few MiB of the spool's pages at once (it held the whole spool by the last
    # record when the spool was mapped)
    pad = "x" * 4000
    lines = [_line(f"e{n}", f"2025-03-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
                   email=f"p{n}@b.org", note=pad) + b"\n" for n in range(6000)]
    random.Random(5).shuffle(lines)
    before = _file_pages_mapped()
    most = 0
    out = []
    for number, raw in time_ordered(iter(lines), spool_dir=tmp_path):
        out.append((number, raw))
        if len(out) % 100 == 0:
            most = max(most, _file_pages_mapped() - before)
    assert sorted(raw for _, raw in out) == sorted(line.strip() for line in lines)
    assert all(lines[number - 1].strip() == raw for number, raw in out)
    assert [json.loads(raw)["occurred_at"] for _, raw in out] == sorted(json.loads(line)["occurred_at"] for line in lines)
    assert most < 4 << 10, f"{most} KiB of the spool's pages held at once"


def test_a_short_read_of_the_spool_is_read_on(tmp_path, monkeypatch):
    # (one ``pread`` reads at most about 2 GiB: a record longer than what one call gives is read on, not refused)
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: real(fd, min(n, 1000), at))
    lines = [_line(f"e{n}", f"2025-03-{28 - n:02d}T10:00:00Z", email=f"p{n}@b.org", note="y" * 700 * n) + b"\n"
             for n in range(12)]
    out = list(time_ordered(iter(lines), spool_dir=tmp_path))
    assert [raw for _, raw in out] == [line.strip() for line in lines[::-1]]


@st.composite
def _sources(draw):
    """Up to four sources, each sending increasing times; and an interleaving of them."""
    sources = []
    for s in range(draw(st.integers(min_value=1, max_value=4))):
        times = sorted(draw(st.lists(st.integers(min_value=0, max_value=50), max_size=15)))
        sources.append([(t, f"s{s}-{i}") for i, t in enumerate(times)])
    picks = draw(st.lists(st.integers(min_value=0, max_value=len(sources) - 1), min_size=sum(map(len, sources)),
                          max_size=sum(map(len, sources))))
    return sources, picks


def _key(event_id: str, at: str) -> int:
    """The order key of an event at ``at`` (``HH:MM``) on 1 March 2025."""
    return order_key(_line(event_id, f"2025-03-01T{at}:00Z"))


def _read_next(sources, cursors, pick):
    """The next record read in an interleaving of ``sources`` (``cursors``: how many of each are read): one of
    source ``pick``, else of the first with records left; ``(source, order key, (time, name))``, or None."""
    pending = [s for s in range(len(sources)) if cursors[s] < len(sources[s])]
    if not pending:
        return None
    s = pick if pick in pending else pending[0]
    t, name = sources[s][cursors[s]]
    cursors[s] += 1
    return s, order_key(_line(name, f"2025-03-01T10:{t:02d}:00Z")), (t, name)


@settings(max_examples=200, deadline=None)
@given(_sources(), st.randoms(use_true_random=False))
def test_the_reorder_buffer_releases_time_ordered_sources_in_time_order(data, rnd):
    sources, picks = data
    buffer = ReorderBuffer(wait=10.0)
    buffer.expect(range(len(sources)), now=0.0)
    cursors = [0] * len(sources)
    released = []
    now = 0.0
    for pick in picks:  # an arbitrary interleaving, fast enough that no source goes idle
        got = _read_next(sources, cursors, pick)
        if got is None:
            break
        buffer.add(got[1], got[0], got[2], now)
        now += rnd.random() * 0.5
        if rnd.random() < 0.3:
            released += buffer.release(now)
    for s, source in enumerate(sources):
        for t, name in source[cursors[s]:]:
            buffer.add(order_key(_line(name, f"2025-03-01T10:{t:02d}:00Z")), s, (t, name), now)
    released += buffer.release(now + 100)  # every source silent for longer than the wait: all released
    assert len(buffer) == 0
    times = [t for t, _ in released]
    assert times == sorted(times) and sorted(released) == sorted(e for source in sources for e in source)


@settings(max_examples=200, deadline=None)
@given(_sources(), st.randoms(use_true_random=False))
def test_a_reader_that_stalls_in_a_backlog_still_releases_time_ordered_sources_in_time_order(data, rnd):
    sources, picks = data
    buffer = ReorderBuffer(wait=2.0, backlog_wait=1000.0)
    buffer.expect(range(len(sources)), now=0.0)
    cursors = [0] * len(sources)
    released = []
    now = 0.0
    for s, source in enumerate(sources):  # (each has sent once: one that never sent is waited for ``wait`` only)
        if source:
            buffer.add(order_key(_line(source[0][1], f"2025-03-01T10:{source[0][0]:02d}:00Z")), s, source[0], now)
            cursors[s] = 1
    buffer.reading(any(cursors[s] < len(sources[s]) for s in range(len(sources))))
    for pick in picks:  # the sources' records read from a backlog, the reader stalling for longer than any wait
        got = _read_next(sources, cursors, pick)
        if got is None:
            break
        buffer.add(got[1], got[0], got[2], now)
        buffer.reading(any(cursors[s] < len(sources[s]) for s in range(len(sources))))
        now += rnd.choice([0.01, 1.0, 30.0])
        if rnd.random() < 0.5:
            released += buffer.release(now)
    assert not buffer._reading  # (the last record read: the input is read to its end)
    released += buffer.release(now + 100)
    assert len(buffer) == 0
    times = [t for t, _ in released]
    assert times == sorted(times) and sorted(released) == sorted(e for source in sources for e in source)


def test_a_reader_with_records_left_to_read_waits_for_sources_that_have_sent_as_for_a_backlog():
    buffer = ReorderBuffer(wait=2.0, backlog_wait=30.0)
    buffer.expect(["a", "b", "quiet"], now=0.0)  # ("quiet": a partition with history that sends nothing now)
    buffer.add(_key("a1", "10:00"), "a", "a1", now=0.0)
    buffer.add(_key("b1", "09:00"), "b", "b1", now=0.0)
    buffer.add(_key("a2", "10:10"), "a", "a2", now=0.1)
    buffer.reading(True)  # the input holds more: b's next records may be older than a2
    assert buffer.release(now=0.2) == []  # ("quiet" is waited for as long as the usual wait)
    assert buffer.release(now=2.1) == ["b1"]  # ...and no longer, however long the reader lags
    # the reader stalls for 20 s: nothing is released for waiting, and "b" is still waited for
    assert buffer.release(now=22.0) == []
    buffer.add(_key("b2", "10:05"), "b", "b2", now=22.1)  # (older than a2: decided in its place, not late)
    assert buffer.release(now=22.2) == ["a1", "b2"]
    buffer.reading(False)  # read to the input's end: the usual wait again, and a2 has waited longer
    assert buffer.release(now=23.0) == ["a2"]
    buffer.add(_key("a3", "10:20"), "a", "a3", now=23.0)
    buffer.reading(True)
    assert buffer.release(now=52.0) == []  # ("b" heard 29.9 s ago)
    assert buffer.release(now=52.2) == ["a3"]  # silent for longer than a backlog is waited for: not waited for
    buffer.add(_key("a4", "10:30"), "a", "a4", now=53.0)
    buffer.drain()
    assert not buffer._reading  # (a buffer emptied, on a rebalance, starts again as a new one)


def test_items_released_only_for_room_are_counted():
    buffer = ReorderBuffer(wait=60.0, max_items=2)
    buffer.expect(["a", "b"], now=0.0)
    buffer.add(_key("b1", "09:00"), "b", "b1", now=0.0)
    for i in range(4):
        buffer.add(_key(f"a{i}", f"10:0{i}"), "a", f"a{i}", now=0.0)
    assert buffer.release(now=0.1) == ["b1", "a0", "a1"]  # (b1: as far as "b" has sent; a0, a1: no room)
    assert buffer.released_for_room == 2 and len(buffer) == 2
    buffer.add(_key("b2", "11:00"), "b", "b2", now=0.2)
    assert buffer.release(now=0.3) == ["a2", "a3"] and buffer.released_for_room == 2


def test_an_event_is_held_at_most_the_wait():
    buffer = ReorderBuffer(wait=2.0)
    buffer.expect(["fast", "slow", "never"], now=0.0)
    buffer.add(_key("a", "10:00"), "fast", "a", now=0.0)
    buffer.add(_key("b", "09:00"), "slow", "b", now=0.1)
    buffer.add(_key("c", "10:05"), "fast", "c", now=0.2)
    assert buffer.release(now=0.5) == []  # a source has sent nothing yet: it may still send earlier ones
    buffer.add(_key("d", "09:30"), "slow", "d", now=1.0)
    assert buffer.release(now=1.5) == []
    # two seconds on: the silent source is no longer waited for, and "a" has waited long enough
    assert buffer.release(now=2.05) == ["b", "d", "a"]
    assert buffer.release(now=2.1) == []  # "c" is later than what the slow source sent last
    assert buffer.release(now=2.25) == ["c"]  # ...but not held longer than the wait
    buffer.add(_key("e", "10:10"), "fast", "e", now=3.0)
    assert buffer.release(now=3.1) == ["e"]  # the slow source is silent too now: only the fast one counts


def _at(event_id: str, second: float) -> int:
    """The order key of an event at ``second`` past 10:00 (1 March 2025)."""
    return order_key(_line(event_id, f"2025-03-01T10:00:{second:06.3f}Z"))


def _wall(second: float) -> int:
    """The wall clock at ``second`` past 10:00, as microseconds since 1970."""
    return key_micros(_at("clock", second))


def _read_to_their_end(wait: float, b1: float) -> ReorderBuffer:
    """A buffer (grace 0.25 s) of sources "a" and "b", read to their end once they sent a1 (at 1.0 s) and b1
    (at ``b1``)."""
    buffer = ReorderBuffer(wait=wait, grace=0.25)
    buffer.expect(["a", "b"], now=0.0)
    buffer.add(_at("a1", 1.0), "a", "a1", now=1.0)
    buffer.add(_at("b1", b1), "b", "b1", now=b1)
    buffer.caught_up(["a", "b"])
    return buffer


def test_a_source_read_to_its_end_holds_back_nothing_older_than_the_grace():
    at, wall = _at, _wall
    buffer = _read_to_their_end(2.0, 1.5)
    # "a" last sent 1.0 s, but it was read to its end: it can send nothing older than the wall clock less
    # the grace; "b1" is released once the wall clock is 0.25 s past it
    assert buffer.release(now=1.6, wall=wall(1.6)) == ["a1"]
    assert buffer.release(now=1.7, wall=wall(1.7)) == []
    assert buffer.release(now=1.76, wall=wall(1.76)) == ["b1"]
    # a source with a backlog (a record added and not said to be read to its end) holds back by what it sent
    buffer.add(at("b2", 1.8), "b", "b2", now=1.8)
    buffer.add(at("a2", 1.9), "a", "a2", now=1.9)
    buffer.caught_up(["a"])
    assert buffer.release(now=2.5, wall=wall(2.5)) == ["b2"]  # (b2 is the older: "b" holds back a2 only)
    assert buffer.release(now=2.6, wall=wall(2.6)) == []
    buffer.add(at("b3", 2.0), "b", "b3", now=2.7)
    assert buffer.release(now=2.7, wall=wall(2.7)) == ["a2", "b3"]  # "b" has sent as late as b3 now
    # without a grace (or a wall clock) being read to the end changes nothing
    plain = ReorderBuffer(wait=2.0)
    plain.expect(["a", "b"], now=0.0)
    plain.add(at("a1", 1.0), "a", "a1", now=1.0)
    plain.add(at("b1", 1.5), "b", "b1", now=1.5)
    plain.caught_up(["a", "b"])
    assert plain.release(now=1.6, wall=wall(9.0)) == ["a1"] and plain.release(now=1.9, wall=wall(9.0)) == []


def test_a_source_behind_is_waited_for_and_nothing_is_released_for_its_waiting_time():
    buffer = ReorderBuffer(wait=2.0, backlog_wait=20.0)
    buffer.expect(["fast", "slow"], now=0.0)
    buffer.add(_key("s1", "09:00"), "slow", "s1", now=0.0)
    buffer.add(_key("f1", "10:00"), "fast", "f1", now=0.1)
    buffer.behind(["slow"])  # its reader had records left: older ones than f1 may still come from it
    assert buffer.behind_count() == 1
    # ...and more of 09:00 among them (ties are put in order by content): s1 waits for a later time from it
    assert buffer.release(now=0.5) == []
    # long past the wait, with "slow" silent all along: f1 is still held, and so is all that "fast" sends
    buffer.add(_key("f2", "10:01"), "fast", "f2", now=8.0)
    assert buffer.release(now=15.0) == []
    buffer.add(_key("s2", "09:30"), "slow", "s2", now=15.5)  # (held back by a reader short of time: not late)
    assert buffer.release(now=15.6) == ["s1"]
    buffer.add(_key("f3", "10:05"), "fast", "f3", now=15.9)
    buffer.caught_up(["slow"])  # its reader has read all it held: the wait is the usual one again
    assert buffer.behind_count() == 0
    assert buffer.release(now=16.1) == ["s2", "f1", "f2"]  # (f1, f2 waited 2 s; "slow" has sent nothing as late)
    assert buffer.release(now=17.4) == []
    assert buffer.release(now=17.95) == ["f3"]
    # a source behind and silent for longer than the backlog's wait is no longer waited for
    again = ReorderBuffer(wait=2.0, backlog_wait=20.0)
    again.expect(["fast", "slow"], now=0.0)
    again.add(_key("s1", "09:00"), "slow", "s1", now=0.0)
    again.behind(["slow"])
    again.add(_key("f1", "10:00"), "fast", "f1", now=1.0)
    assert again.release(now=19.9) == []
    assert again.release(now=20.1) == ["s1", "f1"]


def test_a_source_behind_may_still_send_more_of_the_instant_it_sent_last():
    """Records of one instant (a producer stamping several at once, or to the second) come in any order of
    their content: a source behind holds back the instant it sent last, so that the next of them is not late."""
    buffer = ReorderBuffer(wait=2.0, backlog_wait=20.0)
    buffer.expect(["a", "b"], now=0.0)
    same = sorted([_key(f"x{i}", "10:00") for i in range(6)])  # (one instant: in order by content)
    buffer.add(same[3], "a", "a-late-content", now=0.0)
    buffer.add(same[4], "b", "b-same", now=0.0)
    buffer.add(_key("b2", "10:01"), "b", "b2", now=0.0)
    buffer.behind(["a", "b"])
    assert buffer.release(now=0.1) == []  # ("a" may send more of 10:00)
    buffer.add(same[1], "a", "a-early-content", now=0.2)  # (sorts before a-late-content: not late)
    buffer.add(_key("a2", "10:02"), "a", "a2", now=0.2)
    assert buffer.release(now=0.3) == ["a-early-content", "a-late-content", "b-same"]


def test_release_all_gives_everything_held_in_order_and_keeps_what_the_buffer_knows_of_its_sources():
    """What a rebalance takes (the resolve role decides what it holds before its partitions go): every item,
    in key order; a source still behind is waited for afterwards as before."""
    buffer = ReorderBuffer(wait=2.0, backlog_wait=20.0)
    buffer.expect(["fast", "slow"], now=0.0)
    buffer.add(_key("f2", "10:01"), "fast", "f2", now=0.1)
    buffer.add(_key("s1", "09:00"), "slow", "s1", now=0.2)
    buffer.add(_key("f1", "10:00"), "fast", "f1", now=0.3)
    buffer.behind(["slow"])
    assert buffer.release_all() == ["s1", "f1", "f2"] and len(buffer) == 0
    buffer.add(_key("f3", "10:05"), "fast", "f3", now=8.0)
    assert buffer.release(now=15.0) == [] and buffer.behind_count() == 1  # ("slow" is still behind)
    buffer.caught_up(["slow"])
    assert buffer.release(now=15.1) == ["f3"]


def test_a_source_read_to_its_end_holds_back_what_records_take_to_come_when_that_is_longer_than_the_grace():
    at, wall = _at, _wall
    buffer = _read_to_their_end(5.0, 1.1)
    buffer.delayed(0.1, now=1.1)  # (shorter than the grace: changes nothing)
    assert buffer.release(now=1.4, wall=wall(1.4)) == ["a1", "b1"]
    # records now take 1.5 s to come: "a", read to its end, may still send one that happened 1.5 s ago
    buffer.add(at("b2", 2.0), "b", "b2", now=3.0)
    buffer.caught_up(["b"])
    buffer.delayed(1.5, now=3.0)
    assert buffer.delay(now=3.0) == 1_500_000
    assert buffer.release(now=3.1, wall=wall(3.1)) == []  # (the grace alone would let b2 through: 2.0 < 2.85)
    buffer.add(at("a2", 2.05), "a", "a2", now=3.15)  # ...and it does: a2 is not late
    buffer.caught_up(["a"])
    assert buffer.release(now=3.2, wall=wall(3.2)) == ["b2"]
    assert buffer.release(now=3.6, wall=wall(3.6)) == ["a2"]  # ("b" holds back nothing older than 2.1 now)
    # the longest delay of the last DELAY_WINDOW seconds counts, then the grace again
    buffer.delayed(0.2, now=4.0)
    assert buffer.delay(now=12.0) == 1_500_000 and buffer.delay(now=13.5) == 200_000
    assert buffer.delay(now=14.5) == 0


def test_a_source_read_to_its_end_when_told_holds_back_what_was_written_after_then_however_late_it_comes():
    """The reader says when it learned that a source was read to its end: that source holds back what happened
    after that instant less the grace, and nothing older, and a record written after it is not late however long
    it takes to come, longer than every delay seen before included (the estimate alone would have let b1
    through, and a2 come late)."""
    at, wall = _at, _wall
    buffer = ReorderBuffer(wait=5.0, grace=0.25)
    buffer.expect(["a", "b"], now=0.0)
    buffer.add(at("a1", 1.0), "a", "a1", now=1.0)
    buffer.add(at("b1", 1.3), "b", "b1", now=1.3)
    buffer.caught_up(["a", "b"], at=[wall(1.05), wall(1.35)])
    buffer.delayed(0.05, now=1.3)  # (records have taken 50 ms to come)
    # the readers stall; at 3.0 s "a" is still known read to its end only as of 1.05 s: it may still send
    # what happened from 0.8 s on (written since 1.05 s), a1's time included
    assert buffer.release(now=3.0, wall=wall(3.0)) == []
    buffer.add(at("a2", 1.2), "a", "a2", now=3.1)  # (written at 1.2 s, after a's end was told)
    buffer.caught_up(["a"], at=[wall(3.05)])
    # "b" sent b1 (1.3 s), but told as of 1.35 s it may still send what happened from 1.1 s on
    assert buffer.release(now=3.1, wall=wall(3.1)) == ["a1"]
    buffer.caught_up(["b"], at=[wall(3.05)])  # (a report: nothing more written to it)
    assert buffer.release(now=3.15, wall=wall(3.15)) == ["a2", "b1"]
    # the estimate, for a reader that does not say when: the same stall lets b1 through, and a2 comes late
    guess = ReorderBuffer(wait=5.0, grace=0.25)
    guess.expect(["a", "b"], now=0.0)
    guess.add(at("a1", 1.0), "a", "a1", now=1.0)
    guess.add(at("b1", 1.3), "b", "b1", now=1.3)
    guess.caught_up(["a", "b"])
    guess.delayed(0.05, now=1.3)
    assert guess.release(now=3.0, wall=wall(3.0)) == ["a1", "b1"]
    # a source said read to its end again without an instant falls back to the estimate
    buffer.add(at("b2", 3.2), "b", "b2", now=3.3)
    buffer.caught_up(["a", "b"], at=[wall(1.0), None])
    assert buffer.release(now=3.4, wall=wall(3.4)) == []  # ("a" is held back to 0.75 s by the instant told)
    buffer.caught_up(["a"])
    assert buffer.release(now=3.5, wall=wall(3.5)) == ["b2"]


_traffic = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 5_000), st.integers(0, 250),
                              st.integers(0, 3_000)), min_size=1, max_size=120)


@given(_traffic, st.lists(st.integers(1, 400), min_size=1, max_size=60), st.integers(0, 200))
@settings(max_examples=200, deadline=None)
def test_live_records_come_late_never_when_the_reader_says_when_it_read_each_source_to_its_end(
        traffic, steps, told_early):
    """Events happen (``ms``), are written to their source at most the grace (250 ms) after, and reach the
    buffer in their source's order after any delay (up to 3 s, unevenly); after each record the reader says its
    source is read to its end as of an instant before every record of it still to come (up to ``told_early``
    ms before that), and at each release it says so of the sources with nothing on the way. Whatever the delays,
    nothing is released before an older record: the watermark never passes a record still to come."""
    grace_ms = 250
    written = sorted((happened + lag, source, happened, k) for k, (source, happened, lag, _) in enumerate(traffic))
    arrive: list[tuple[int, int, str, int]] = []  # (arrival ms, write ms, source, k)
    last: dict[str, int] = {}
    for w, source, _, k in written:  # (each source is read in its own order: none overtakes one written before)
        last[source] = max(w + traffic[k][3], last.get(source, 0))
        arrive.append((last[source], w, source, k))
    arrive.sort()
    buffer = ReorderBuffer(wait=10 ** 6, grace=grace_ms / 1000, backlog_wait=10 ** 6)
    buffer.expect(["a", "b", "c"], now=0.0)

    def told(source: str, now_ms: int) -> int:
        """An instant before which every record written to ``source`` has come (milliseconds)."""
        coming = [w for t, w, s, _ in arrive if s == source and t > now_ms]
        return max(0, min([now_ms] + coming) - told_early - 1)

    released: list[int] = []
    clock, i = 0, 0
    for step in steps + [10_000]:
        clock += step
        while i < len(arrive) and arrive[i][0] <= clock:
            t, _, source, k = arrive[i]
            buffer.add(_at(f"e{k}", traffic[k][1] / 1000), source, k, now=t / 1000)
            buffer.caught_up([source], at=[_wall(told(source, t) / 1000)])
            i += 1
        buffer.caught_up(["a", "b", "c"], at=[_wall(told(s, clock) / 1000) for s in "abc"])  # (the reports)
        released += buffer.release(now=clock / 1000, wall=_wall(clock / 1000))
    released += buffer.drain()
    keys = [_at(f"e{k}", traffic[k][1] / 1000) for k in released]
    assert sorted(released) == list(range(len(traffic)))
    assert keys == sorted(keys), (traffic, steps, told_early, released)


# -------------------------------------------------------------------------- the embedded driver
def _messy_lines(rnd: random.Random, n: int) -> list[bytes]:
    """Identifiers from small pools (strangers collide: shared devices, family mailboxes), dates of birth
    and first names that conflict, so that the guards act."""
    out = []
    for i in range(n):
        ids = {}
        for id_type, pool in (("email", 4), ("phone", 4), ("loyalty_id", 3), ("device_id", 3)):
            if rnd.random() < 0.45:
                k = rnd.randrange(pool)
                ids[id_type] = {"email": f"p{k}@mailbox.org", "phone": f"+1415555{k:04d}",
                                "loyalty_id": f"L{k + 1:05d}", "device_id": f"device-{k}"}[id_type]
        if not ids:
            ids["device_id"] = f"device-{rnd.randrange(3)}"
        attrs = {}
        if rnd.random() < 0.5:
            attrs["date_of_birth"] = rnd.choice(["1980-01-01", "1990-02-02", "2000-03-03"])
        if rnd.random() < 0.5:
            attrs["first_name"] = rnd.choice(["Ann", "Bob", "Cy"])
        out.append(json.dumps({"event_id": f"e{i}", "occurred_at": f"2025-03-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                               "channel": "web", "event_type": "visit", "identifiers": ids,
                               "attributes": attrs}).encode() + b"\n")
    return out


def _resolve(lines: list[bytes], work: Path) -> tuple[dict[str, str], int]:
    path = work / "in.jsonl"
    path.write_bytes(b"".join(lines))
    with EmbeddedEngine(work / "data") as engine:
        engine.ingest_file(path)
        guards = sum(1 for _, entry in engine.log.read(0) for d in entry
                     if d["type"] in ("identifier_flagged", "link_refused", "profile_split"))
        return dict(zip(engine.views.ev_id, engine.views.ev_profile)), guards


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=10_000), st.randoms(use_true_random=False))
def test_ingest_gives_the_same_customers_and_ids_for_any_order_of_a_file(seed, rnd):
    lines = _messy_lines(random.Random(seed), 60)
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        first, guards = _resolve(lines, Path(a))
        again, _ = _resolve(shuffled, Path(b))
    assert first == again


def test_the_guards_act_on_such_corpora(tmp_path):
    _, guards = _resolve(_messy_lines(random.Random(0), 60), tmp_path)
    assert guards >= 5


def test_ingest_in_file_order_is_still_there_and_differs_where_order_matters(tmp_path):
    """`--file-order` decides as the file lists the events: the resolver's own dependence on order shows."""
    lines = _messy_lines(random.Random(3), 200)
    (tmp_path / "fwd.jsonl").write_bytes(b"".join(lines))
    (tmp_path / "rev.jsonl").write_bytes(b"".join(lines[::-1]))
    got = {}
    for name in ("fwd", "rev"):
        for flags in ((), ("--file-order",)):
            data = tmp_path / f"data-{name}-{len(flags)}"
            run_cli("ingest", str(tmp_path / f"{name}.jsonl"), "--data-dir", str(data), *flags)
            with EmbeddedEngine(data, writer=False) as engine:
                got[(name, bool(flags))] = dict(zip(engine.views.ev_id, engine.views.ev_profile))
    assert got[("fwd", False)] == got[("rev", False)]
    assert got[("fwd", True)] != got[("rev", True)]


def test_a_file_order_run_stopped_part_way_is_finished_in_file_order(tmp_path):
    """A `--file-order` run killed before its end, then run again the same way, restated the log into time order
    (the engine opened in time order and finished the stopped run so, before the command told it otherwise)."""
    late = {"event_id": "late", "occurred_at": "2024-01-02T00:00:00Z", "channel": "web", "event_type": "login",
            "identifiers": {"email": "a@x.com"}}
    early = {"event_id": "early", "occurred_at": "2024-01-01T00:00:00Z", "channel": "web", "event_type": "login",
             "identifiers": {"email": "a@x.com", "phone": "+14155550134"}}
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(late) + "\n" + json.dumps(early) + "\n")
    clean, stopped = tmp_path / "clean", tmp_path / "stopped"
    run_cli("ingest", str(path), "--data-dir", str(clean), "--file-order")
    run_cli("ingest", str(path), "--data-dir", str(stopped), "--file-order")
    for name in ("checkpoint.pickle", "checkpoint.prev.pickle"):  # (as a run killed before its checkpoint leaves it)
        (stopped / name).unlink(missing_ok=True)
    again = json.loads(run_cli("ingest", str(path), "--data-dir", str(stopped), "--file-order").stdout)
    assert again["ingested"]["duplicates"] == 2
    from streams.log import DecisionLog

    for data in (clean, stopped):
        with DecisionLog(data, writer=False) as log:
            assert not [d for _, e in log.read(0, raw=True) for d in e if d["type"].startswith("log_restate")], data
    shown = [json.loads(run_cli("lookup", "email=a@x.com", "--data-dir", str(d)).stdout)["created_at"]
             for d in (clean, stopped)]
    assert shown[0] == shown[1] == "2024-01-02T00:00:00.000000Z"


def test_no_file_order_mark_outlives_its_run(tmp_path):
    """A short --file-order run left its mark (its end was not checkpointed), and the mark then kept a later
    time-order run that stopped part way from being finished in time order."""
    event = {"event_id": "a", "occurred_at": "2024-01-02T00:00:00Z", "channel": "web", "event_type": "login",
             "identifiers": {"email": "a@x.com"}}
    data = tmp_path / "data"
    with EmbeddedEngine(data, order="file") as engine:
        engine.ingest_stream([(json.dumps(event) + "\n").encode()], "in")
    assert not (data / "FILE_ORDER").exists()
    with EmbeddedEngine(data, order="file", batch_size=1) as engine:
        class Killed(BaseException):
            pass

        def lines():
            yield (json.dumps({**event, "event_id": "b"}) + "\n").encode()
            raise Killed()

        with pytest.raises(Killed):
            engine.ingest_stream(lines(), "in")
    assert (data / "FILE_ORDER").exists()
    with EmbeddedEngine(data, order="time") as engine:  # (a time-order run: the stopped run's tail checkpointed)
        engine.ingest_stream([(json.dumps({**event, "event_id": "c"}) + "\n").encode()], "in")
    assert not (data / "FILE_ORDER").exists()


def test_files_ingested_together_are_one_set_of_events(tmp_path):
    """A backfill in several files, in any order of the files: what one file of all the events gives."""
    lines = _messy_lines(random.Random(11), 150)
    rnd = random.Random(2)
    rnd.shuffle(lines)
    parts = [lines[:50], lines[50:100], lines[100:]]
    for n, part in enumerate(parts):
        (tmp_path / f"day{n}.jsonl").write_bytes(b"".join(part))
    (tmp_path / "all.jsonl").write_bytes(b"".join(lines))
    got = []
    for name, files in (("one", ["all.jsonl"]), ("fwd", ["day0.jsonl", "day1.jsonl", "day2.jsonl"]),
                        ("rev", ["day2.jsonl", "day1.jsonl", "day0.jsonl"])):
        out = run_cli("ingest", *files, "--data-dir", name, cwd=tmp_path).stdout
        reports = [json.loads(chunk) for chunk in out.replace("}\n{", "}\n\x00{").split("\x00")]
        assert sum(r["ingested"]["accepted"] for r in reports) == len(lines)
        with EmbeddedEngine(tmp_path / name, writer=False) as engine:
            got.append(dict(zip(engine.views.ev_id, engine.views.ev_profile)))
    assert got[0] == got[1] == got[2]


def test_events_older_than_those_already_decided_are_counted_and_said(tmp_path):
    newer = [_line(f"n{i}", f"2025-03-10T10:{i:02d}:00Z", email=f"p{i}@mailbox.org") + b"\n" for i in range(5)]
    older = [_line(f"o{i}", f"2025-03-01T10:{i:02d}:00Z", email=f"p{i}@mailbox.org") + b"\n" for i in range(3)]
    (tmp_path / "newer.jsonl").write_bytes(b"".join(newer))
    (tmp_path / "older.jsonl").write_bytes(b"".join(older))
    first = run_cli("ingest", "newer.jsonl", "--data-dir", "d", cwd=tmp_path)
    assert json.loads(first.stdout)["ingested"]["late"] == 0 and "older than" not in first.stderr
    second = run_cli("ingest", "older.jsonl", "--data-dir", "d", cwd=tmp_path)
    assert json.loads(second.stdout)["ingested"]["late"] == 3
    assert "3 events older than events decided before them" in second.stderr
    together = run_cli("ingest", "newer.jsonl", "older.jsonl", "--data-dir", "t", cwd=tmp_path).stdout
    reports = [json.loads(chunk) for chunk in together.replace("}\n{", "}\n\x00{").split("\x00")]
    assert [r["ingested"]["late"] for r in reports] == [0, 0]


_operations = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "release", "behind", "caught_up"]),
                                 st.sampled_from(["a", "b", "c"]), st.integers(0, 3_000), st.integers(1, 400)),
                       min_size=1, max_size=300)


@given(_operations, st.sampled_from([0.5, 2.0]), st.integers(1, 40))
@settings(max_examples=150, deadline=None)
def test_what_is_released_does_not_depend_on_when_released_arrivals_are_dropped(ops, wait, max_items):
    # (a backlog's arrivals are dropped once they outnumber twice what is held: the same releases as keeping all)
    import streams.ordering as ordering

    runs = []
    for slack in (0, 10 ** 9):
        saved, ordering.ARRIVALS_SLACK = ordering.ARRIVALS_SLACK, slack
        try:
            buffer = ReorderBuffer(wait=wait, max_items=max_items, grace=0.25, backlog_wait=3.0)
            buffer.expect(["a", "b", "c"], now=0.0)
            now, released, noted = 0.0, [], 0
            for k, (op, source, event_ms, step_ms) in enumerate(ops):
                now += step_ms / 1000
                if op == "add":  # ("b" and "c" send older events than "a": what "a" sends waits for its time)
                    at = event_ms / {"a": 1000, "b": 10_000, "c": 100_000}[source]
                    buffer.add(_at(f"{source}{k}", at), source, f"{source}{k}", now)
                elif op == "release":
                    released.append(buffer.release(now, wall=_wall(now)))
                else:
                    getattr(buffer, op)([source])
                noted = max(noted, len(buffer._arrivals))
                if slack == 0:
                    assert len(buffer._arrivals) <= 2 * len(buffer) + 1 or op == "add"
            released.append(buffer.drain())
        finally:
            ordering.ARRIVALS_SLACK = saved
        runs.append(released)
    assert runs[0] == runs[1]


def test_a_backlog_read_for_long_keeps_its_arrivals_in_proportion_to_what_is_held():
    buffer = ReorderBuffer(wait=2.0, max_items=1000, grace=0.25)
    buffer.expect(["web"], now=0.0)
    now, most = 0.0, 0
    for n in range(1, 60_001):
        now += 0.0001
        buffer.add(_at(f"e{n}", n / 2000), "web", n, now)
        if n % 500 == 0:
            buffer.behind(["web"])  # (records left to read: nothing is released for its waiting time)
            buffer.release(now)
            most = max(most, len(buffer._arrivals), len(buffer._gone))
    assert most <= 2 * 1000 + 4_096 + 500
    buffer.caught_up(["web"])
    buffer.release(now + 10)
    assert len(buffer) == len(buffer._arrivals) == len(buffer._gone) == 0


def test_an_ingest_that_restates_shows_the_progress_of_deciding_again(tmp_path):
    """The progress bar stopped at the end of the input while the log was decided again from the late events,
    most of the run on a backfill older than what was there: nothing moved for seconds."""
    import contextlib

    lines = _messy_lines(random.Random(5), 120)
    lines.sort(key=lambda raw: json.loads(raw).get("occurred_at", "") if raw.strip().startswith(b"{") else "")
    (tmp_path / "new.jsonl").write_bytes(b"".join(lines[60:]))
    (tmp_path / "old.jsonl").write_bytes(b"".join(lines[:60]))
    counted: list[int] = []

    class Bar:
        def update(self, n: int) -> None:
            counted.append(n)

    with EmbeddedEngine(tmp_path / "data", batch_size=8) as engine:
        engine.ingest_file(tmp_path / "new.jsonl")
        engine.restate_progress = lambda: contextlib.nullcontext(Bar())
        report = engine.ingest_file(tmp_path / "old.jsonl")
    assert report.restated and counted and sum(counted) >= 60


def test_a_file_order_run_stopped_part_way_is_not_put_in_time_order_by_another_command(tmp_path):
    """Only `idres ingest` knew the run was in file order: a review verdict (or an erasure, an unmerge) opening the
    data directory next restated the stopped run's events into time order."""
    late = {"event_id": "late", "occurred_at": "2024-01-02T00:00:00Z", "channel": "web", "event_type": "login",
            "identifiers": {"email": "a@x.com"}}
    early = {"event_id": "early", "occurred_at": "2024-01-01T00:00:00Z", "channel": "web", "event_type": "login",
             "identifiers": {"email": "a@x.com", "phone": "+14155550134"}}
    data = tmp_path / "data"

    class Killed(BaseException):
        pass

    def lines():  # (the run killed once both are logged: before its end and its checkpoint)
        yield from ((json.dumps(e) + "\n").encode() for e in (late, early))
        raise Killed()

    with EmbeddedEngine(data, order="file", batch_size=1) as engine:
        with pytest.raises(Killed):
            engine.ingest_stream(lines(), "in")
        assert engine.checkpoint_seq < len(engine.log) == 2
    assert (data / "FILE_ORDER").exists()
    run_cli("review", "accept", "r_none", "--by", "ana", "--data-dir", str(data), check=False)
    from streams.log import DecisionLog

    with DecisionLog(data, writer=False) as log:
        assert not [d for _, e in log.read(0, raw=True) for d in e if d["type"].startswith("log_restate")]
    assert json.loads(run_cli("lookup", "email=a@x.com", "--data-dir", str(data)).stdout)["created_at"] == \
        "2024-01-02T00:00:00.000000Z"


def test_replay_verify_does_not_count_a_restatement_s_superseded_entries_as_erased(tmp_path):
    """After a backfill older than what was there (the log restated), `idres replay --verify` said thousands of
    entries held erased data and were taken as recorded: it counted the entries the restatement superseded."""
    lines = _messy_lines(random.Random(9), 80)
    lines.sort(key=lambda raw: json.loads(raw).get("occurred_at", "") if raw.strip().startswith(b"{") else "")
    (tmp_path / "new.jsonl").write_bytes(b"".join(lines[40:]))
    (tmp_path / "old.jsonl").write_bytes(b"".join(lines[:40]))
    data = str(tmp_path / "data")
    run_cli("ingest", str(tmp_path / "new.jsonl"), "--data-dir", data)
    assert json.loads(run_cli("ingest", str(tmp_path / "old.jsonl"), "--data-dir", data).stdout)["ingested"]["restated"]
    verified = json.loads(run_cli("replay", "--verify", "--data-dir", data).stdout)
    assert verified["decisions_reproduced"] is True
    assert "taken_as_recorded" not in verified and "note" not in verified


@pytest.mark.parametrize("order", ["file", "time"])
def test_an_ingest_writes_its_checkpoint_once_whatever_its_order(tmp_path, monkeypatch, order):
    """A --file-order run's end wrote the whole checkpoint twice (the run's own, then again to clear its mark)."""
    from streams import log as logs

    written = []
    commit = logs.CheckpointWriter.commit
    def counted(self, *args, **kwargs):
        written.append(1)
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(logs.CheckpointWriter, "commit", counted)
    lines = [(json.dumps({"event_id": f"e{n}", "occurred_at": f"2024-01-0{n + 1}T00:00:00Z", "channel": "web",
                          "event_type": "login", "identifiers": {"email": f"p{n}@x.com"}}) + "\n").encode()
             for n in range(3)]
    with EmbeddedEngine(tmp_path / "data", order=order, fold_views="after") as engine:
        engine.ingest_stream(lines, "in")
    assert len(written) == 1 and not (tmp_path / "data" / "FILE_ORDER").exists()
