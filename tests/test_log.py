"""The embedded decision log: durability, torn tails, ordering, single writer, checkpoints."""

from __future__ import annotations

import pickle

import orjson

import pytest

from streams.embedded import EmbeddedEngine
from streams.log import DecisionLog, LogError, load_checkpoint, save_checkpoint, seal


def _entries(n, start=0):
    return [[{"type": "event_rejected", "key": f"k{i}", "source": {"name": "t", "position": i},
              "reason": "r", "raw": "x"}] for i in range(start, start + n)]


def test_append_and_read_back_across_segments(tmp_path):
    with DecisionLog(tmp_path, segment_entries=4) as log:
        assert log.append(_entries(10)) == 10
        assert log.append(_entries(3, 10)) == 13
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == [
        "00000000000000000000.jsonl", "00000000000000000004.jsonl", "00000000000000000008.jsonl",
        "00000000000000000012.jsonl"]
    log = DecisionLog(tmp_path, writer=False, segment_entries=4)
    assert len(log) == 13
    got = list(log.read())
    assert [s for s, _ in got] == list(range(13))
    assert got[7][1][0]["key"] == "k7"
    assert [s for s, _ in log.read(5, 9)] == [5, 6, 7, 8]


def test_torn_last_line_is_cut_off_on_open(tmp_path):
    with DecisionLog(tmp_path) as log:
        log.append(_entries(3))
    seg = tmp_path / "log" / "00000000000000000000.jsonl"
    with open(seg, "ab") as fh:
        fh.write(b'{"seq": 3, "decisions": [{"type": "event_rej')  # a crash mid-write
    assert len(DecisionLog(tmp_path, writer=False)) == 3  # a reader ignores the torn tail
    with DecisionLog(tmp_path) as log:  # a writer cuts it off and goes on from there
        assert len(log) == 3
        log.append(_entries(1, 3))
    assert [s for s, _ in DecisionLog(tmp_path, writer=False).read()] == [0, 1, 2, 3]


def test_damaged_log_is_reported_not_folded(tmp_path):
    with DecisionLog(tmp_path) as log:
        log.append(_entries(3))
    seg = tmp_path / "log" / "00000000000000000000.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(lines[0] + lines[2] + lines[1])
    with pytest.raises(LogError, match="out of order"):
        list(DecisionLog(tmp_path, writer=False).read())
    seg.write_bytes(lines[0] + b"garbage\n" + lines[2])
    with pytest.raises(LogError, match="damaged"):
        list(DecisionLog(tmp_path, writer=False).read())


def test_only_one_writer(tmp_path):
    with DecisionLog(tmp_path):
        with pytest.raises(LogError, match="another idres process is writing"):
            DecisionLog(tmp_path)
        DecisionLog(tmp_path, writer=False)  # readers are fine
    DecisionLog(tmp_path).close()


def test_reading_a_directory_without_a_log_says_what_to_do(tmp_path):
    with pytest.raises(LogError, match="run `idres ingest"):
        DecisionLog(tmp_path / "nothing", writer=False)


def test_checkpoint_is_only_used_when_it_fits(tmp_path):
    save_checkpoint(tmp_path, 5, "rules-a", {"x": 1})
    assert load_checkpoint(tmp_path, "rules-a", 10) == (5, {"x": 1})
    assert load_checkpoint(tmp_path, "rules-b", 10) is None  # other rules
    with pytest.raises(LogError, match="has 4 entries but the checkpoint was taken at entry 5"):
        load_checkpoint(tmp_path, "rules-a", 4)  # ahead of the log: the log lost entries
    (tmp_path / "checkpoint.pickle").write_bytes(b"not a pickle")
    assert load_checkpoint(tmp_path, "rules-a", 10) is None
    (tmp_path / "checkpoint.pickle").write_bytes(pickle.dumps({"version": -1}))
    assert load_checkpoint(tmp_path, "rules-a", 10) is None


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


EVENTS = [
    '{"event_id":"1","occurred_at":"2025-01-01T00:00:00Z","channel":"web","event_type":"login",'
    '"identifiers":{"email":"a@mailbox.org","device_id":"d1"}}',
    '{"event_id":"2","occurred_at":"2025-01-02T00:00:00Z","channel":"store","event_type":"store_purchase",'
    '"identifiers":{"email":"a@mailbox.org","loyalty_id":"L1"},"payload":{"amount":10}}',
    'not json at all',
    '{"event_id":"3","occurred_at":"2025-01-03T00:00:00Z","channel":"web","event_type":"page_view",'
    '"identifiers":{"device_id":"d1"}}',
]


def test_engine_restarts_from_checkpoint_and_log_tail(tmp_path):
    src = _write(tmp_path / "in.jsonl", EVENTS)
    data = tmp_path / "data"
    with EmbeddedEngine(data) as engine:
        report = engine.ingest_file(src)
        assert (report.accepted, report.rejected) == (3, 1)
        digest = engine.views.digest()
    # a short ingest does not rewrite the cache: the next start folds the log tail instead
    assert not (data / "checkpoint.pickle").exists()
    with EmbeddedEngine(data) as engine:
        assert engine.folded_from_checkpoint == 0
        assert engine.views.digest() == digest
        again = engine.ingest_file(src)
        assert (again.accepted, again.duplicates, again.rejected, again.rejected_before) == (0, 3, 0, 1)
        assert len(engine.log) == 4
        engine.checkpoint(force=True)
    with EmbeddedEngine(data) as engine:
        assert engine.folded_from_checkpoint == 4
        assert engine.views.digest() == digest
    # the cache is only a cache: without it the log alone gives the same views
    (data / "checkpoint.pickle").unlink()
    with EmbeddedEngine(data) as engine:
        assert engine.folded_from_checkpoint == 0
        assert engine.views.digest() == digest


def test_a_defect_while_resolving_one_event_does_not_lose_the_others(tmp_path, monkeypatch):
    from resolver.engine import Resolver

    src = _write(tmp_path / "in.jsonl", EVENTS)
    real = Resolver.decide

    def flaky(self, event, source=None):
        if event.event_id == "2":
            self._ctx.take()
            self._ctx.emit({"type": "event_rejected", "key": "poisoned", "source": {"name": "x", "position": 1},
                            "reason": "x", "raw": "x"})  # applied, never logged: the state is half-changed
            raise RuntimeError("boom")
        return real(self, event, source)

    monkeypatch.setattr(Resolver, "decide", flaky)
    recovered = []
    monkeypatch.setattr(EmbeddedEngine, "_recover", lambda self, real=EmbeddedEngine._recover: (
        recovered.append(1), real(self)))
    with EmbeddedEngine(tmp_path / "data") as engine:
        report = engine.ingest_file(src)
        assert (report.accepted, report.internal_errors, report.rejected) == (2, 1, 1)
        assert recovered and "poisoned" not in engine.resolver.state.rejected_keys  # rebuilt from the log
        rejected = [(r["reason"], r.get("detail", "")) for r in engine.views.rejected]
        assert any(reason == "internal error" and "internal error while resolving (RuntimeError: boom)" in detail
                   for reason, detail in rejected)
        assert engine.views.ev_id == ["1", "3"]


def test_a_defect_before_any_decision_costs_no_rebuild(tmp_path, monkeypatch):
    from resolver.engine import Resolver

    src = _write(tmp_path / "in.jsonl", EVENTS)
    real = Resolver.decide

    def flaky(self, event, source=None):
        if event.event_id == "2":
            raise RuntimeError("boom")  # before anything was decided: the state is as it was
        return real(self, event, source)

    monkeypatch.setattr(Resolver, "decide", flaky)
    monkeypatch.setattr(EmbeddedEngine, "_recover", lambda self: pytest.fail("the state was rebuilt"))
    with EmbeddedEngine(tmp_path / "data") as engine:
        report = engine.ingest_file(src)
        assert (report.accepted, report.internal_errors) == (2, 1)
        assert engine.views.ev_id == ["1", "3"]
        assert sorted(r["reason"] for r in engine.views.rejected) == ["internal error", "not valid JSON"]


def test_each_entry_carries_its_decision_schema_version_and_a_newer_one_is_refused(tmp_path):
    from schemas.decisions import DECISION_SCHEMA_VERSION
    from streams.log import DecisionLog, LogError

    with DecisionLog(tmp_path) as log:
        log.append([[{"type": "event_rejected", "key": "k1", "source": {"name": "f", "position": 1},
                      "reason": "not valid JSON", "raw": "{"}]])
    seg = next((tmp_path / "log").glob("*.jsonl"))
    entry = orjson.loads(seg.read_bytes().splitlines()[0])
    assert entry["v"] == DECISION_SCHEMA_VERSION >= 2
    old = dict(entry, seq=1)
    del old["v"], old["crc"]  # written before entries carried a version (or a checksum): version 1, still read
    newer = dict(entry, seq=2, v=DECISION_SCHEMA_VERSION + 1)
    del newer["crc"]
    seg.write_bytes(seg.read_bytes() + orjson.dumps(old) + b"\n" + seal(orjson.dumps(newer)))
    with DecisionLog(tmp_path, writer=False) as log:
        read = log.read()
        assert [seq for seq, _ in (next(read), next(read))] == [0, 1]
        with pytest.raises(LogError, match=f"decision schema version {DECISION_SCHEMA_VERSION + 1}.*upgrade idres"):
            next(read)


def test_a_kafka_decision_log_message_carries_the_version_too():
    from schemas.decisions import DECISION_SCHEMA_VERSION
    from streams.kafka_io import KafkaSettings
    from streams.stream_app import ENTRIES_HEAD, decision_entries

    settings = KafkaSettings.load({})
    entry = [{"type": "event_rejected", "key": "k", "source": {"name": "t/0", "position": 3}, "reason": "r", "raw": "x"}]
    written = ENTRIES_HEAD + orjson.dumps(entry) + b"]}"
    assert orjson.loads(written)["v"] == DECISION_SCHEMA_VERSION and orjson.loads(written)["k"] == 1
    assert decision_entries(written, settings) == [entry]
    assert decision_entries(orjson.dumps({"entries": [entry]}), settings) == [entry]  # before messages carried it
    with pytest.raises(LogError, match="upgrade idres"):
        decision_entries(orjson.dumps({"v": DECISION_SCHEMA_VERSION + 1, "entries": [entry]}), settings)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_does_not_run_while_a_checkpoint_is_pickled_and_is_left_as_it_was(tmp_path, enabled):
    import gc

    from resolver.state import Profile

    # (a slots dataclass pickles through a tuple of its slots made for it, which the pickler keeps alive)
    state = [Profile(f"p{n}", "2025-01-01T00:00:00+00:00", {n}) for n in range(50_000)]
    collections = []

    def note(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    gc.collect()  # (none due when it starts)
    gc.callbacks.append(note)
    try:
        save_checkpoint(tmp_path, 0, "f", (state,))
        after = gc.isenabled()
    finally:
        gc.callbacks.remove(note)
        (gc.enable if was else gc.disable)()
    # (at most the one young collection the allocations made meanwhile start once it runs again)
    assert len(collections) <= 1 and after is enabled
    assert load_checkpoint(tmp_path, "f", 0)[1] == (state,)


def test_bulk_work_in_threads_at_once_leaves_the_collector_as_it_found_it():
    import gc
    import sys
    import threading
    import time

    from streams.log import bulk_work

    was, interval = gc.isenabled(), sys.getswitchinterval()
    gc.enable()
    sys.setswitchinterval(1e-6)  # (threads switch between any two steps)
    try:
        def work() -> None:
            for _ in range(2000):
                with bulk_work():
                    time.sleep(0)  # (lets another thread in)
                    assert not gc.isenabled()  # (never switched on inside another thread's block)
                    with bulk_work():
                        time.sleep(0)

        errors = []

        def run() -> None:
            try:
                work()
            except AssertionError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and gc.isenabled()
    finally:
        sys.setswitchinterval(interval)
        (gc.enable if was else gc.disable)()


def test_restatement_markers_are_found_in_every_segment_on_open(tmp_path):
    # (segments before the last are searched where they lie, mapped, not read into memory: the markers in
    # them, and only the markers, are found again by a new reader)
    begun = {"type": "log_restate_begun", "restate_id": "r1", "from_seq": 1}
    done = {"type": "log_restated", "restate_id": "r1", "from_seq": 1, "begun_seq": 2}
    lookalike = [{"type": "event_rejected", "key": "k", "source": {"name": "t", "position": 0}, "reason": "r",
                  "raw": '{"type":"log_restate_begun","restate_id":"no"}'}]
    with DecisionLog(tmp_path, segment_entries=4) as log:
        log.append(_entries(2) + [[begun]] + [lookalike] + _entries(1, 4) + [[done]] + _entries(4, 6))
        assert len(log) == 10
    reader = DecisionLog(tmp_path, writer=False, segment_entries=4)
    assert len(reader._segments) == 3
    assert reader.restatements() == {2: begun, 5: done}
    assert reader.restated_since(2) and not reader.restated_since(1)


def _young_scans(run) -> list[int]:
    """The objects each young collection found while ``run`` ran, the collector on."""
    import gc

    scans: list[int] = []

    def note(phase, info):
        if phase == "start" and info["generation"] < 2:
            scans.append(len(gc.get_objects(info["generation"])))

    was = gc.isenabled()
    gc.enable()
    gc.callbacks.append(note)
    try:
        run()
    finally:
        gc.callbacks.remove(note)
        (gc.enable if was else gc.disable)()
    return scans


def test_what_bulk_work_built_goes_to_the_oldest_generation_unscanned_and_stays_collectable(monkeypatch):
    """What a large bulk block builds lives long: at its end it is handed to the oldest generation as it is, so
    the first young collection after it does not scan all of it (0.5 s after 50,000 records, in a library
    ingest). It is not put out of the collector's sight: a cycle made in the block is still freed."""
    import gc
    import weakref

    from streams import log

    class Node:
        pass

    monkeypatch.setattr(log, "_keeping_frozen", False)  # (a library's process: nothing kept frozen)
    gc.unfreeze()  # (what earlier tests in this process froze)
    held: dict[str, object] = {}

    def run():
        with log.bulk_work():
            held["built"] = [[n] for n in range(200_000)]
            a, b = Node(), Node()
            a.other, b.other = b, a  # (a cycle, freed only by the collector)
            held["gone"] = weakref.ref(a)
            del a, b
        held["more"] = [[n] for n in range(5_000)]  # (allocations enough for young collections to run)

    scans = _young_scans(run)
    assert scans and max(scans) < 50_000
    assert any(x is held["built"] for x in gc.get_objects(2))
    assert gc.get_freeze_count() == 0
    assert held["gone"]() is not None
    gc.collect()
    assert held["gone"]() is None


def test_bulk_work_leaves_what_another_part_of_the_process_froze_frozen(monkeypatch):
    """Objects frozen by the process's own code (before a fork, say) stay frozen through a large block."""
    import gc

    from streams import log

    monkeypatch.setattr(log, "_keeping_frozen", False)
    kept = [[n] for n in range(1_000)]
    gc.freeze()
    try:
        with log.bulk_work():
            built = [[n] for n in range(log.LARGE_BLOCK + 1_000)]
        tracked = gc.get_objects()  # (what the collector sees: a large block's work, not what was frozen)
        assert any(x is built for x in tracked) and not any(x is kept for x in tracked)
    finally:
        gc.unfreeze()


def test_bulk_work_in_a_process_that_keeps_objects_frozen_freezes_what_it_built_before_the_collector_runs(
        monkeypatch):
    """A server keeps what it loaded frozen and folds the log's new entries in bulk blocks: what a block built
    is frozen with it at the block's end, not scanned first by the young collection the end lets run (lookups
    waited up to 16 ms behind it), and what was frozen stays frozen."""
    import gc

    from streams import log

    monkeypatch.setattr(log, "_keeping_frozen", False)
    kept = [[n] for n in range(1_000)]
    held: dict[str, object] = {}

    def run():
        log.keep_frozen()
        with log.bulk_work():
            held["built"] = [[n] for n in range(20_000)]  # (smaller than a large block: frozen all the same)
        held["more"] = [[n] for n in range(5_000)]  # (allocations enough for young collections to run)

    try:
        scans = _young_scans(run)
        assert scans and max(scans) < 10_000
        assert not any(x is kept or x is held["built"] or x is held["built"][-1] for x in gc.get_objects())
    finally:
        gc.unfreeze()
