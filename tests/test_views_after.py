"""Views folded after an ingest (``EmbeddedEngine(fold_views="after")``, what `idres ingest` does): the resolver's
state is written to the checkpoint and let go of before the views are folded from the log, so the two are never in
memory together; everything read afterwards is what folding the views as each batch is logged gives."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest

from projections.customer import CustomerViews
from resolver.engine import Resolver
import streams.embedded as embedded_module
from resolver import restate as restate_module
from streams.embedded import EmbeddedEngine, latest_key
from streams.log import bulk_work, checkpoint_header
from tests.test_restate import killed_ingest
from tests.test_shards import every_guard_corpus


@pytest.fixture(scope="module")
def records() -> list[bytes]:
    return every_guard_corpus()[0]


def _by_time(records: list[bytes]) -> list[bytes]:
    def when(raw: bytes) -> str:
        try:
            found = json.loads(raw)
        except ValueError:
            return ""
        return str(found.get("occurred_at", "")) if isinstance(found, dict) else ""
    return sorted(records, key=when)


def _inputs(records: list[bytes], split: str) -> list[list[bytes]]:
    third = len(records) * 2 // 3
    if split == "one input":
        return [records]
    if split == "later events after":  # (the second input's events are all newer: no restatement)
        ordered = _by_time(records)
        return [ordered[:third], ordered[third:]]
    return [records[:third], records[third:]]  # (the second holds events older than the first's: restated)


def _state(engine: EmbeddedEngine) -> tuple:
    st = engine.resolver.state
    # (not ``named``: what deciding last checked a profile's ID against, which folding the log does not set)
    profiles = {pid: (sorted(p.nodes), p.counts, p.first, sorted(p.traits)) for pid, p in st.profiles.items()}
    return profiles, st.node_keys, st.node_profile, st.aliases, st.seen_events, st.fuzzy, st.adj


def _entries(engine: EmbeddedEngine) -> list:
    """The log as it reads, without the wall-clock time a restatement was decided at."""
    return [[{k: v for k, v in d.items() if not (k == "decided_at" and d["type"].startswith("log_restate"))}
             for d in entry] for _, entry in engine.log.read(0, raw=True)]


def _run(tmp: Path, inputs: list[list[bytes]], fold_views: str) -> Path:
    data = tmp / fold_views
    for i, part in enumerate(inputs):
        path = tmp / f"input{i}.jsonl"
        path.write_bytes(b"\n".join(part) + b"\n")
        with EmbeddedEngine(data, fold_views=fold_views) as engine:
            engine.ingest_file(path)
    return data


@pytest.mark.parametrize("split", ["one input", "later events after", "older events after"])
def test_views_folded_after_an_ingest_are_the_views_folded_as_it_went(records, tmp_path, split):
    inputs = _inputs(records, split)
    live, after = _run(tmp_path, inputs, "live"), _run(tmp_path, inputs, "after")
    with EmbeddedEngine(live) as a, EmbeddedEngine(after, fold_views="after") as b:
        assert b._views is None  # (opened with the resolver's state alone)
        assert _entries(a) == _entries(b)
        restated = [d for _, e in a.log.read(0, raw=True) for d in e if d["type"] == "log_restated"]
        assert bool(restated) == (split == "older events after")
        assert b.views.digest() == a.views.digest()
        assert _state(b) == _state(a)
        info = checkpoint_header(after, b.fingerprint)["info"]
        assert info == {"views_digest": a.views.digest(), "latest": latest_key(a.views), "pending_erasures": 0}
    with EmbeddedEngine(after, load="rebuild") as rebuilt:
        assert rebuilt.replayed["identical"] and rebuilt.views.digest() == info["views_digest"]


def test_an_ingest_folding_views_after_lets_the_resolver_s_state_go_first(records, tmp_path, monkeypatch):
    # (with numbers the phone library cannot parse, and the garbage collector paused as `idres ingest` pauses it:
    # the library keeps the exception it handles in its frame, a cycle that held every frame of the call, the
    # pipeline and the resolver's state with them)
    unparsed = [json.dumps({"event_id": f"unparsed-{i}", "occurred_at": f"2025-03-0{1 + i}T00:00:00Z",
                            "channel": "call_center", "event_type": "call",
                            "identifiers": {"phone": raw, "email": f"unparsed{i}@example.org"}}).encode()
                for i, raw in enumerate(("+999 1234567", "+3 1234 5678", "00999 123 4567"))]
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"\n".join(records + unparsed) + b"\n")
    folded = CustomerViews.apply_entry
    for fold_views, held in (("live", True), ("after", False)):
        seen: set[bool] = set()
        with EmbeddedEngine(tmp_path / fold_views, fold_views=fold_views) as engine:
            state = weakref.ref(engine.resolver.state)

            def apply_entry(views, seq, decisions):
                seen.add(state() is not None)
                return folded(views, seq, decisions)

            monkeypatch.setattr(CustomerViews, "apply_entry", apply_entry)
            with bulk_work():
                engine.ingest_file(path)
            monkeypatch.undo()
            assert seen == {held}, fold_views  # (live: the views are folded beside the state, batch by batch)
            assert engine.views.stats()["events"] > 1000
            # (the state is read back from the checkpoint when asked for, as deciding left it)
            assert engine.resolver.state.seen_events.keys() == set(engine.views.ev_id)


def test_a_command_after_an_ingest_folding_views_after_reads_the_state_back(records, tmp_path):
    inputs = _inputs(records, "one input")
    data = {mode: _run(tmp_path, inputs, mode) for mode in ("live", "after")}
    entries = {}
    for mode, where in data.items():
        with EmbeddedEngine(where, fold_views=mode) as engine:
            review = sorted(k for k, v in engine.views.reviews.items() if v["status"] == "pending")[0]
            engine.review(review, accept=False, reviewer="an analyst", decided_at="2030-01-01T00:00:00.000000Z")
            entries[mode] = [e for _, e in engine.log.read(0)]
            assert engine.views.reviews[review]["status"] != "pending"
    assert entries["after"] == entries["live"]


@pytest.mark.parametrize("split, checkpoint", [("older events after", "none"), ("later events after", "behind")])
def test_a_replay_writes_the_views_before_it_folds_the_resolver_s_state(records, tmp_path, monkeypatch, split,
                                                                        checkpoint):
    # (what `idres replay` does without a checkpoint of the whole log: the views are folded and compared alone, and
    # the resolver's state is folded from the log for the checkpoint only once the views are written and let go of)
    inputs = _inputs(records, split)
    data = _run(tmp_path, inputs[:1], "live")
    if checkpoint == "behind":
        with EmbeddedEngine(data) as first:
            first.checkpoint(force=True)
    data = _run(tmp_path, inputs, "live")  # (the first input again: its events are all duplicates)
    with EmbeddedEngine(data) as live:
        digest, state, entries = live.views.digest(), _state(live), len(live.log)
        folded = sum(1 for _ in live.log.read(0))  # (the entries a restatement superseded are not read)
    header = checkpoint_header(data, live.fingerprint)
    if checkpoint == "none":
        for path in data.glob("checkpoint*"):
            path.unlink()
    else:  # (the second input was too short to checkpoint after: the checkpoint is of the first)
        assert header is not None and 0 < header["seq"] < entries
    held = _Held(monkeypatch)
    with EmbeddedEngine(data, load="rebuild") as engine:
        assert engine.replayed == {"entries": folded, "identical": True, "checkpoint_current": False}
        assert engine._resolver is None and not held.seen["state used beside views"]  # (not folded yet)
        assert engine.views.digest() == digest
        engine.checkpoint(force=True)
    monkeypatch.undo()
    assert held.one_at_a_time(), held.seen
    written = checkpoint_header(data, live.fingerprint)
    assert written["seq"] == entries and written["info"]["views_digest"] == digest
    with EmbeddedEngine(data) as reopened:  # (both parts from the checkpoint the replay wrote)
        assert reopened.folded_from_checkpoint == entries
        assert reopened.views.digest() == digest and _state(reopened) == state


class _Held:
    """Notes, once installed, whether views are folded while a resolver's state is held, and whether a state is
    used (folded into or decided with) while views are held."""

    def __init__(self, monkeypatch) -> None:
        self.states: list[weakref.ref] = []
        self.views_made: list[weakref.ref] = []
        self.seen: dict[str, set[bool]] = {"views folded beside a state": set(), "state used beside views": set()}
        init, apply_entry, apply_all, redo = (Resolver.__init__, CustomerViews.apply_entry, Resolver.apply_all,
                                              embedded_module.redo)

        def resolver_init(resolver, *args, **kwargs):
            init(resolver, *args, **kwargs)
            self.states.append(weakref.ref(resolver.state))

        def views_apply(views, seq, decisions):
            if not any(ref() is views for ref in self.views_made):
                self.views_made.append(weakref.ref(views))
            self.seen["views folded beside a state"].add(self._alive(self.states))
            return apply_entry(views, seq, decisions)

        def state_apply(resolver, decisions):
            self.seen["state used beside views"].add(self._alive(self.views_made))
            return apply_all(resolver, decisions)

        def redoing(resolver, rec):
            self.seen["state used beside views"].add(self._alive(self.views_made))
            return redo(resolver, rec)

        monkeypatch.setattr(Resolver, "__init__", resolver_init)
        monkeypatch.setattr(CustomerViews, "apply_entry", views_apply)
        monkeypatch.setattr(Resolver, "apply_all", state_apply)
        monkeypatch.setattr(embedded_module, "redo", redoing)

    @staticmethod
    def _alive(refs: list[weakref.ref]) -> bool:
        return any(ref() is not None for ref in refs)

    def one_at_a_time(self) -> bool:
        return self.seen == {"views folded beside a state": {False}, "state used beside views": {False}}


def test_an_ingest_that_restates_folding_views_after_holds_one_state_at_a_time(records, tmp_path, monkeypatch):
    # (the second input holds events older than the first's: the log is decided again from their place, and the
    # views, left for later, are folded to find that place and at the end, each time with no resolver state held)
    first, second = _inputs(records, "older events after")
    data = _run(tmp_path, [first], "after")
    path = tmp_path / "input1.jsonl"  # (the name _run gives it: the log names the input of a rejected line)
    path.write_bytes(b"\n".join(second) + b"\n")
    with EmbeddedEngine(data, fold_views="after") as engine:
        assert engine._resolver is not None and engine._views is None
        held = _Held(monkeypatch)
        held.states.append(weakref.ref(engine.resolver.state))
        with bulk_work():
            report = engine.ingest_file(path)
        monkeypatch.undo()
        assert report.restated > 0
        digest = engine.views.digest()
    assert held.one_at_a_time(), held.seen
    live = _run(tmp_path, [first, second], "live")
    with EmbeddedEngine(live) as expected, EmbeddedEngine(data, fold_views="after") as got:
        assert _entries(got) == _entries(expected)
        assert digest == expected.views.digest() == got.views.digest()
        assert _state(got) == _state(expected)


def test_late_events_a_killed_ingest_logged_are_restated_on_opening_one_state_at_a_time(records, tmp_path,
                                                                                       monkeypatch):
    # (an ingest killed after logging a batch of late events, before it restated: the next writer to open the log
    # finds the log longer than its checkpoint, folds the views to find the late events, and restates)
    first, second = _inputs(records, "older events after")
    path = tmp_path / "input1.jsonl"
    path.write_bytes(b"\n".join(second) + b"\n")
    logs = {}
    for mode in ("live", "after"):
        data = _run(tmp_path, [first], mode)
        killed_ingest(data, path, monkeypatch, logged=2, fold_views=mode, batch_size=100)
        if mode == "after":
            held = _Held(monkeypatch)
        with EmbeddedEngine(data, fold_views=mode) as engine:  # (opened: the late events logged are restated)
            monkeypatch.undo()
            restated = [d for _, e in engine.log.read(0, raw=True) for d in e if d["type"] == "log_restated"]
            assert restated
            logs[mode] = (_entries(engine), engine.views.digest(), _state(engine))
    assert held.one_at_a_time(), held.seen
    assert logs["after"] == logs["live"]


def test_a_replay_that_verifies_puts_the_views_aside_while_it_decides_again(records, tmp_path, monkeypatch, capsys):
    from streams.cli import main

    data = _run(tmp_path, _inputs(records, "older events after"), "live")
    with EmbeddedEngine(data) as live:
        digest, state = live.views.digest(), _state(live)
    for path in data.glob("checkpoint*"):
        path.unlink()
    held = _Held(monkeypatch)
    assert main(["replay", "--verify", "--data-dir", str(data)]) == 0
    monkeypatch.undo()
    out = json.loads(capsys.readouterr().out)
    assert out["decisions_reproduced"] is True and out["identical_to_live_views"] is True and out["digest"] == digest
    assert out["checkpoint_as_saved"] is None  # (there was none)
    assert held.seen["state used beside views"] == {False}
    with EmbeddedEngine(data) as reopened:  # (the views put aside were written to the checkpoint after)
        assert reopened.folded_from_checkpoint == len(reopened.log)
        assert reopened.views.digest() == digest and _state(reopened) == state


def test_an_ingest_on_a_log_longer_than_its_checkpoint_holds_one_state_at_a_time(records, tmp_path, monkeypatch):
    # (a run killed before its checkpoint left the log longer than the checkpoint: the next ingest starts from the
    # checkpoint's resolver state and the entries after it, finds the newest event decided from the checkpoint's
    # info and those entries, and folds the views only at its end)
    first, second = _inputs(records, "later events after")
    path = tmp_path / "input1.jsonl"
    path.write_bytes(b"\n".join(second) + b"\n")
    data = _run(tmp_path, [first], "after")

    killed_ingest(data, path, monkeypatch, logged=2, fold_views="after", batch_size=100)
    with EmbeddedEngine(data, writer=False) as reader:
        newest = latest_key(reader.views)
        assert checkpoint_header(data, reader.fingerprint)["seq"] < len(reader.log)
    held = _Held(monkeypatch)
    with EmbeddedEngine(data, fold_views="after") as engine:
        assert engine._views is None and engine._latest() == newest
        engine.ingest_file(path)
        monkeypatch.undo()
        got = (engine.views.digest(), _state(engine))
    assert held.one_at_a_time(), held.seen
    live = _run(tmp_path, [first, second], "live")
    with EmbeddedEngine(live) as expected:
        assert got == (expected.views.digest(), _state(expected))


def test_a_what_if_scratch_decides_without_views_and_folds_them_after(records, tmp_path, monkeypatch):
    from resolver.config import ResolverConfig
    from streams.whatif import replay

    data = _run(tmp_path, _inputs(records, "one input"), "live")
    with EmbeddedEngine(data, writer=False, load="views") as live:
        entries = list(live.log.read(0))
        clusters = dict(zip(live.views.ev_id, live.views.ev_profile))
    held = _Held(monkeypatch)
    engine, counts = replay(iter(entries), tmp_path / "scratch", ResolverConfig())
    try:
        monkeypatch.undo()
        assert held.seen["views folded beside a state"] == {False}  # (and folded: the views are read after)
        assert counts["decided"] > 1000
        # (the same rules decide the same customers)
        assert dict(zip(engine.views.ev_id, engine.views.ev_profile)) == clusters
    finally:
        engine.close()


def test_the_newest_event_is_found_from_the_log_alone_without_a_checkpoint(records, tmp_path):
    data = _run(tmp_path, _inputs(records, "one input"), "after")
    with EmbeddedEngine(data, writer=False) as reader:
        newest = latest_key(reader.views)
    for path in data.glob("checkpoint*"):
        path.unlink()
    with EmbeddedEngine(data, fold_views="after") as engine:
        assert engine.checkpoint_seq == 0 and engine._views is None
        assert engine._latest() == newest != restate_module.BEFORE_ALL
