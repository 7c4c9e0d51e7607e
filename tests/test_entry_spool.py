"""The spool of an ingest's entries (``streams.entry_spool``): the views an ingest folds after deciding are folded
from the entries as decided, without unsealing the log, and are the views the log gives; the spool holds nothing
readable outside the process, and whatever makes the log read otherwise than as written sends the fold to the log."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.entry_spool as spool_module
from streams.embedded import EmbeddedEngine
from streams.entry_spool import EntrySpool, SpoolError
from tests.test_shards import every_guard_corpus
from tests.test_views_after import _by_time, _entries, _inputs


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    return every_guard_corpus()[0]


class _Counted:
    """Counts the entries folded from spools (``EntrySpool.read``)."""

    def __init__(self, monkeypatch):
        self.read = 0
        self.as_read = 0  # (of those, from spools of entries as the log read them: a restatement's rewind)
        self.spools: list[EntrySpool] = []  # (the spools read from)
        real = EntrySpool.read

        def read(spool, start):
            self.spools.append(spool)
            for item in real(spool, start):
                self.read += 1
                self.as_read += spool.as_read
                yield item

        monkeypatch.setattr(EntrySpool, "read", read)


def _ingest(data: Path, tmp: Path, inputs: list[list[bytes]], fold_views: str = "after") -> None:
    for i, part in enumerate(inputs):
        path = tmp / f"input{i}.jsonl"
        path.write_bytes(b"\n".join(part) + b"\n")
        with EmbeddedEngine(data, fold_views=fold_views) as engine:
            engine.ingest_file(path)


@pytest.mark.parametrize("split", ["one input", "later events after", "older events after"])
def test_views_folded_from_the_spool_are_the_views_the_log_gives(records, tmp_path, split, monkeypatch):
    inputs = _inputs(records, split)
    _ingest(tmp_path / "live", tmp_path, inputs, "live")
    counted = _Counted(monkeypatch)
    _ingest(tmp_path / "spooled", tmp_path, inputs)
    assert counted.read > 1000  # (the views were folded from the spool, not from the log)
    # (the older events restate the log: the views after it folded from what the resolver's rewind read)
    assert (counted.as_read > 0) == (split == "older events after")
    with monkeypatch.context() as m:
        m.setattr(EntrySpool, "covers", lambda spool, end: False)
        m.setattr(EntrySpool, "holds", lambda spool, start, end, skips: False)
        before = counted.read
        _ingest(tmp_path / "from the log", tmp_path, inputs)
        assert counted.read == before
    digests = set()
    for mode in ("live", "spooled", "from the log"):
        with EmbeddedEngine(tmp_path / mode, fold_views="after") as engine:
            digests.add(engine.views.digest())
            entries = _entries(engine)
            if mode == "live":
                expected = entries
            assert entries == expected, mode
    assert len(digests) == 1
    # (and folded from the whole log now, with no checkpoint)
    for name in os.listdir(tmp_path / "spooled"):
        if name.startswith("checkpoint"):
            os.remove(tmp_path / "spooled" / name)
    with EmbeddedEngine(tmp_path / "spooled", fold_views="after") as engine:
        assert engine.views.digest() in digests


def _damage(spool: EntrySpool) -> None:
    """A byte of the spool's file flipped (its entries written first)."""
    if spool.end is not None and spool._buffer:
        spool._write()
    fh = spool._file
    fh.seek(100)
    byte = fh.read(1)
    fh.seek(100)
    fh.write(bytes([byte[0] ^ 1]))


def test_a_spool_that_does_not_read_back_as_written_sends_the_fold_to_the_log(records, tmp_path, monkeypatch):
    _ingest(tmp_path / "live", tmp_path, [records], "live")
    damaged = []
    real = EntrySpool.read

    def read(spool, start):
        _damage(spool)
        damaged.append(spool)
        return real(spool, start)

    monkeypatch.setattr(EntrySpool, "read", read)
    _ingest(tmp_path / "after", tmp_path, [records])
    assert damaged
    with EmbeddedEngine(tmp_path / "live") as a, EmbeddedEngine(tmp_path / "after", fold_views="after") as b:
        assert b.views.digest() == a.views.digest()


class _FullDisk(io.RawIOBase):
    """A file on a disk with no space left: every write fails (a buffered writer over it takes a few bytes into
    its buffer, then fails to write them out, and again when it is closed)."""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("full", ["when the spool is made", "when a block is written"])
@pytest.mark.parametrize("late", [False, True], ids=["one input", "late events restated"])
def test_a_spool_that_cannot_be_written_leaves_the_ingest_to_the_log(records, tmp_path, monkeypatch, full, late):
    # (late events: the rewinds' spools as read, and the ingests' spools as decided, on the full disk)
    inputs = _late_inputs(records) if late else [records]
    _ingest(tmp_path / "live", tmp_path, inputs, "live")

    real = spool_module.tempfile.TemporaryFile

    def full_disk(*args, **kwargs):  # (the spool's file on a full disk; other temporary files as they are)
        if kwargs.get("prefix") == ".idres-entries-":
            if full == "when the spool is made":
                raise OSError(errno.ENOSPC, "No space left on device")
            return io.BufferedWriter(_FullDisk())
        return real(*args, **kwargs)

    monkeypatch.setattr(spool_module.tempfile, "TemporaryFile", full_disk)
    counted = _Counted(monkeypatch)
    _ingest(tmp_path / "after", tmp_path, inputs)
    assert counted.read == 0
    with EmbeddedEngine(tmp_path / "live") as a, EmbeddedEngine(tmp_path / "after", fold_views="after") as b:
        assert b.views.digest() == a.views.digest()
        assert _entries(a) == _entries(b)


def test_an_erasure_between_two_ingests_of_one_engine_is_folded_as_the_log_reads(records, tmp_path, monkeypatch):
    first, second = _inputs(records, "later events after")
    paths = []
    for i, part in enumerate((first, second)):
        paths.append(tmp_path / f"input{i}.jsonl")
        paths[-1].write_bytes(b"\n".join(part) + b"\n")
    emails = []
    for raw in first:
        try:
            ids = json.loads(raw).get("identifiers")
        except (ValueError, AttributeError):
            continue
        if isinstance(ids, dict) and isinstance(ids.get("email"), str) and "@" in ids["email"]:
            emails.append(ids["email"])
    counted = _Counted(monkeypatch)
    digests = {}
    for mode in ("live", "after"):
        with EmbeddedEngine(tmp_path / mode, fold_views=mode) as engine:
            engine.ingest_file(paths[0])
            engine.erase([("email", emails[0])], "dpo", decided_at="2030-01-01T00:00:00.000000Z")
            engine.ingest_file(paths[1])
            digests[mode] = engine.views.digest()
        with EmbeddedEngine(tmp_path / mode, fold_views="after") as engine:
            assert engine.views.digest() == digests[mode]
    assert digests["after"] == digests["live"]
    assert counted.read > 0


def test_the_spool_is_unlinked_and_sealed(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "BLOCK", 256)
    secret = "a.very.private@example.org"
    spool = EntrySpool(tmp_path)
    for start in range(0, 40, 4):
        spool.add(start, [[{"type": "interaction_recorded", "nodes": [f"email:{secret}"], "n": start + i}]
                          for i in range(4)])
    assert spool._blocks > 1
    assert os.listdir(tmp_path) == []  # (no name in the data directory: gone with the process)
    spool._file.flush()
    written = os.pread(spool._file.fileno(), 1 << 20, 0)
    assert len(written) > 40 * len(secret)
    assert secret.encode() not in written and b"interaction_recorded" not in written
    got = list(spool.read(0))
    assert [seq for seq, _ in got] == list(range(40))
    assert [d[0]["n"] for _, d in got] == list(range(40))
    assert [seq for seq, _ in spool.read(37)] == [37, 38, 39]
    spool.drop()
    assert not spool.usable and spool._file is None


def test_a_spool_grown_past_its_bound_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "BLOCK", 100)
    monkeypatch.setattr(spool_module, "MAX_BYTES", 1000)
    spool = EntrySpool(tmp_path)
    seq = 0
    while spool.usable:
        spool.add(seq, [[{"type": "interaction_recorded", "payload": "x" * 60}]])
        seq += 1
        assert seq < 100
    assert 5 < seq and spool._file is None and not spool.covers(seq)


@pytest.mark.parametrize("breaks", ["a gap", "a marker", "an erasure", "no JSON"])
def test_what_the_log_reads_otherwise_than_as_written_makes_the_spool_of_no_use(tmp_path, breaks):
    spool = EntrySpool(tmp_path)
    spool.add(10, [[{"type": "interaction_recorded"}], []])
    assert spool.covers(12) and not spool.covers(13)
    if breaks == "a gap":
        spool.add(13, [[{"type": "interaction_recorded"}]])
    elif breaks == "no JSON":
        spool.add(12, [[{"type": "interaction_recorded", "payload": {1, 2}}]])
    else:
        kind = "log_restate_begun" if breaks == "a marker" else "customer_erased"
        spool.add(12, [[{"type": "interaction_recorded"}, {"type": kind}]])
    assert not spool.usable and not spool.covers(12) and not spool.covers(13)
    with pytest.raises(SpoolError):
        list(spool.read(10))


_json = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.text(max_size=20)
                     | st.floats(allow_nan=False, allow_infinity=False),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_decision = st.dictionaries(st.text(max_size=8), _json, max_size=4).map(lambda d: {**d, "type": "x"})


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(st.lists(_decision, max_size=3), min_size=1, max_size=5), max_size=8),
       first=st.integers(0, 1000), block=st.integers(1, 400))
def test_a_spool_reads_back_the_entries_as_the_log_would(tmp_path_factory, batches, first, block):
    spool_module.BLOCK, kept = block, spool_module.BLOCK
    try:
        spool = EntrySpool(tmp_path_factory.mktemp("spool"))
        expected, seq = [], first
        for entries in batches:
            spool.add(seq, entries)
            for decisions in entries:
                expected.append((seq, orjson.loads(orjson.dumps(decisions))))  # (as JSON gives them back)
                seq += 1
        if not expected:
            assert not spool.covers(first)
            return
        assert spool.covers(seq)
        assert list(spool.read(first)) == expected
        middle = expected[len(expected) // 2][0]
        assert list(spool.read(middle)) == expected[len(expected) // 2:]
        next(spool.read(first))  # (a read left off part way, then more added after the last block)
        spool.add(seq, [[{"type": "x", "after": "x" * block}]])
        expected.append((seq, [{"type": "x", "after": "x" * block}]))
        assert list(spool.read(first)) == expected
        spool.drop()
    finally:
        spool_module.BLOCK = kept


# ------------------------------------------------------------------ entries as the log read them (a restatement's rewind)
def _late_inputs(records: list[bytes]) -> list[list[bytes]]:
    """The history, then stragglers from its last fifth, then stragglers from its last twentieth: each later input
    restates the log from near its end, the second from a place after what the first restatement superseded
    (a stretch the log reads with a gap)."""
    import random

    ordered = _by_time(records)
    n = len(ordered)
    rng = random.Random(3)
    first = set(rng.sample(range(n * 4 // 5, n * 9 // 10), 15))
    second = set(rng.sample(range(n * 19 // 20, n), 10))
    return [[r for i, r in enumerate(ordered) if i not in first and i not in second],
            [ordered[i] for i in sorted(first)], [ordered[i] for i in sorted(second)]]


def test_views_after_a_restatement_are_folded_from_what_its_rewind_read_and_are_the_views_the_log_gives(
        records, tmp_path, monkeypatch):
    inputs = _late_inputs(records)
    _ingest(tmp_path / "live", tmp_path, inputs, "live")
    counted = _Counted(monkeypatch)
    spools: list[EntrySpool] = []
    real_close = EntrySpool.close

    def close(spool, start, end, skips):
        real_close(spool, start, end, skips)
        spools.append(spool)

    monkeypatch.setattr(EntrySpool, "close", close)
    _ingest(tmp_path / "spooled", tmp_path, inputs)
    assert counted.as_read > len(records) // 2  # (most of the log: the restatements start near its end)
    assert len(spools) == 2 and spools[0].skips == [] and spools[1].skips  # (the second reads past a gap)
    with monkeypatch.context() as m:
        m.setattr(EntrySpool, "holds", lambda spool, start, end, skips: False)
        before = counted.as_read
        _ingest(tmp_path / "from the log", tmp_path, inputs)
        assert counted.as_read == before
    with EmbeddedEngine(tmp_path / "live") as live:
        expected, digest = _entries(live), live.views.digest()
        assert sum(m["type"] == "log_restated" for m in live.log.restatements().values()) == 2
    for mode in ("spooled", "from the log"):
        with EmbeddedEngine(tmp_path / mode, fold_views="after") as engine:
            assert _entries(engine) == expected, mode
            assert engine.views.digest() == digest, mode
        for name in os.listdir(tmp_path / mode):  # (and the checkpoint the same as the views the log gives)
            if name.startswith("checkpoint"):
                os.remove(tmp_path / mode / name)
        with EmbeddedEngine(tmp_path / mode, fold_views="after") as engine:
            assert engine.views.digest() == digest, mode


def test_a_stretch_the_log_reads_otherwise_since_it_was_read_is_folded_from_the_log(records, tmp_path, monkeypatch):
    """A restatement from inside the stretch a spool holds (what it superseded there is skipped now), and a block
    that does not read back as written: the views are folded from the log, and are the views it gives."""
    inputs = _late_inputs(records)
    _ingest(tmp_path / "live", tmp_path, inputs, "live")
    with EmbeddedEngine(tmp_path / "live") as live:
        digest = live.views.digest()
    real_close = EntrySpool.close
    held: list[EntrySpool] = []

    def close(spool, start, end, skips):  # (says the stretch was read with nothing skipped in it)
        real_close(spool, start, end, [])
        held.append(spool)

    counted = _Counted(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(EntrySpool, "close", close)
        _ingest(tmp_path / "stale", tmp_path, inputs)
    assert len(held) == 2 and held[1].skips == []
    with EmbeddedEngine(tmp_path / "stale", fold_views="after") as engine:
        assert engine.views.digest() == digest
    # (the first restatement's, read with no gap, was used; the second's, not as the log reads, refused)
    assert held[0] in counted.spools and held[1] not in counted.spools

    real = EntrySpool.read
    damaged: list[EntrySpool] = []

    def read(spool, start):
        if spool.as_read:
            _damage(spool)
            damaged.append(spool)
        return real(spool, start)

    monkeypatch.setattr(EntrySpool, "read", read)
    _ingest(tmp_path / "damaged", tmp_path, inputs)
    assert damaged
    with EmbeddedEngine(tmp_path / "damaged", fold_views="after") as engine:
        assert engine.views.digest() == digest


@settings(max_examples=60, deadline=None)
@given(entries=st.lists(st.tuples(st.integers(1, 5), st.lists(_decision, max_size=3)), max_size=40),
       first=st.integers(0, 1000), block=st.integers(1, 400))
def test_a_spool_as_read_gives_back_each_entry_at_its_place_with_the_gaps_the_log_skipped(
        tmp_path_factory, entries, first, block):
    spool_module.BLOCK, kept = block, spool_module.BLOCK
    try:
        spool = EntrySpool(tmp_path_factory.mktemp("spool"), as_read=True)
        expected, seq = [], first
        for step, decisions in entries:
            seq += step
            spool.take(seq, decisions)
            expected.append((seq, orjson.loads(orjson.dumps(decisions))))
        end = seq + 1
        skips = [(first, first + 1)] if entries and entries[0][0] > 1 else []
        spool.close(first, end, skips)
        assert spool.holds(first, end, skips) and not spool.holds(first, end, skips + [(end - 1, end)])
        assert not spool.holds(first - 1, end, skips) and not spool.holds(first, end + 1, skips)
        assert list(spool.read(first)) == expected
        if expected:
            middle = expected[len(expected) // 2][0]
            assert list(spool.read(middle)) == expected[len(expected) // 2:]
        spool.take(end, [])  # (nothing after it says what it holds)
        assert not spool.usable
        with pytest.raises(SpoolError):
            list(spool.read(first))
    finally:
        spool_module.BLOCK = kept


def test_a_spool_as_read_refuses_an_entry_out_of_order(tmp_path):
    spool = EntrySpool(tmp_path, as_read=True)
    spool.take(5, [])
    spool.take(5, [])
    assert not spool.usable
    decided = EntrySpool(tmp_path)
    decided.take(0, [])
    assert not decided.usable
    read = EntrySpool(tmp_path, as_read=True)
    read.add(0, [[]])
    assert not read.usable


# ------------------------------------------------------------------ the log's reader and what a restatement superseded
def test_the_log_s_reader_checks_superseded_entries_but_does_not_unseal_them(records, tmp_path, monkeypatch):
    import streams.log as log_module
    from streams.log import LogError
    from streams.sealing import Sealer

    _ingest(tmp_path / "data", tmp_path, _late_inputs(records))
    unsealed: list[int] = []
    real = Sealer.unseal_entry

    def counted(self, decisions):
        unsealed.append(len(decisions))
        return real(self, decisions)

    monkeypatch.setattr(Sealer, "unseal_entry", counted)
    with EmbeddedEngine(tmp_path / "data") as engine:
        log = engine.log
        skips = log.skips_in(0, len(log))
        superseded = sum(b - a for a, b in skips)
        assert superseded > 0  # (the stragglers restated the log)
        read = [seq for seq, _ in log.read(0)]
        assert read == [seq for seq in range(len(log)) if not any(a <= seq < b for a, b in skips)]
        assert len(unsealed) == len(read)  # (every entry as written is sealed: none of the superseded unsealed)
        unsealed.clear()
        assert len(list(log.read(0, raw=True))) == len(unsealed) == len(log)
        first = skips[0][0]
        segment = max(s for s in log._segments if s <= first)
        path = log.log_dir / log_module._segment_name(segment)
    # a superseded entry damaged: every reader still says so
    lines = path.read_bytes().split(b"\n")
    at = first - segment
    assert json.loads(lines[at])["seq"] == first
    lines[at] = lines[at].replace(b'"seq":', b'"seq" :', 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(LogError, match=f"entry {first} .*damaged"):
        with EmbeddedEngine(tmp_path / "data") as engine:
            list(engine.log.read(0))
