"""Resolve shards on a real Kafka-protocol broker: any number of resolve workers sharing N shard partitions
give the profiles and IDs of `idres ingest`, also when one of them is killed mid-stream."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streams.kafka_io import KafkaSettings
from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import ROOT
from tests.kafka_broker import free_port, unique_name
from tests.test_stream import (Worker, accepted_events, changelog_matches, decided, idres, live_decided, settled,
                               snapshot_matches_embedded, wait_until)


class ShardWorker(Worker):
    """An `idres worker --role all --resolve-partitions N` (with the short fetch waits of
    ``tests.tansu_worker``: each window goes through the broker four times)."""

    def __init__(self, tmp: Path, bootstrap: str, prefix: str, shards: int, name: str,
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.log = tmp / f"worker-{name}-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tansu_worker", "worker", "--bootstrap", bootstrap, "--topic-prefix", prefix,
             "--role", "all", "--resolve-partitions", str(shards), "--web-port", str(self.port),
             "--session-timeout", "6", "--loglevel", "warn", "--data-dir", str(tmp / f"data-{name}")],
            cwd=ROOT, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None)


def _events(tmp: Path, seed: int, people: int = 250) -> tuple[Path, int]:
    """A data set where the guards and the matcher act, its lines shuffled; and how many events it holds."""
    generated = tmp / "generated.jsonl"
    write_dataset(generated, tmp / "truth.csv", SyntheticConfig(people=people, seed=seed))
    lines = [line for line in generated.read_bytes().splitlines(keepends=True) if line.strip()]
    random.Random(seed).shuffle(lines)
    events = tmp / "events.jsonl"
    events.write_bytes(b"".join(lines))
    return events, accepted_events(events, tmp)


def _total(workers, name: str) -> float:
    return sum(w.metrics().get(name, 0) for w in workers)


@pytest.mark.parametrize("shards", [2, 3])
def test_several_workers_sharing_resolve_shards_give_the_profiles_and_ids_of_idres_ingest(
        kafka_bootstrap, tmp_path, shards):
    events, accepted = _events(tmp_path, 21)
    prefix = unique_name(f"shards{shards}") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    idres("topics", *kafka, "--resolve-partitions", str(shards))
    idres("produce", str(events), *kafka)  # a topic per channel, 4 partitions each
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, shards, f"w{i}") for i in range(shards)]
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    try:
        wait_until(lambda: settled(workers, settings, accepted), 240,
                   "all events decided on the shards and projected", workers)
        answered = [w.metrics().get("idres_shard_tasks_total", 0) for w in workers]
    finally:
        for w in workers:
            w.stop()
    assert sum(1 for n in answered if n) >= 2, f"the shard tasks went to one worker only: {answered}"
    counts = live_decided(settings)
    assert len(counts) == accepted and set(counts.values()) == {1}, Counter(counts.values())
    snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)


def test_a_shard_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(kafka_bootstrap, tmp_path):
    events, accepted = _events(tmp_path, 23)
    prefix = unique_name("shardkill") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    idres("topics", *kafka, "--resolve-partitions", "2")
    idres("produce", str(events), *kafka)
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, f"k{i}") for i in range(2)]
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    try:
        # kill the worker that answers shard tasks but does not coordinate, once some windows are logged
        wait_until(lambda: _total(workers, "idres_log_entries_written_total") > accepted // 4, 180,
                   "a quarter of the events decided", workers)
        victim = next((w for w in workers if not w.metrics().get("idres_log_entries_written_total")
                       and w.metrics().get("idres_shard_tasks_total")), workers[-1])
        victim.stop(signal.SIGKILL)
        workers.remove(victim)
        workers.append(ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, "k-again"))
        # the events of the raw partitions the killed worker validated may come after newer ones were decided:
        # they are late, and the log is restated (IDRES_RESTATE_WAIT after the first): settled once that is done
        wait_until(lambda: settled(workers, settings, accepted), 240, "all events decided after the kill", workers)
    finally:
        for w in workers:
            w.stop()
    counts = live_decided(settings)
    assert len(counts) == accepted and set(counts.values()) == {1}, Counter(counts.values())
    con = snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)
    # the changelog the project role published, across the kill, once each and complete
    assert changelog_matches(kafka_bootstrap, prefix, con) > 0


def test_a_shard_that_stops_answering_makes_the_coordinator_decide_in_order(kafka_bootstrap, tmp_path):
    """A worker alive in the group whose shard 1 answers only after 6 s, with a shard wait of 2 s: the
    coordinator stops waiting, decides those windows itself, and the result is still the one of ingest."""
    events, accepted = _events(tmp_path, 29, people=120)
    prefix = unique_name("shardhang") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    idres("topics", *kafka, "--resolve-partitions", "2")
    idres("produce", str(events), *kafka)
    env = {"IDRES_SHARD_WAIT": "2", "IDRES_TEST_SHARD_HANG": "1"}
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, f"h{i}", env) for i in range(2)]
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    try:
        wait_until(lambda: settled(workers, settings, accepted), 240, "all events decided", workers)
        timeouts = _total(workers, "idres_resolve_shard_timeouts_total")
    finally:
        for w in workers:
            w.stop()
    assert timeouts >= 1
    counts = live_decided(settings)
    assert len(counts) == accepted and set(counts.values()) == {1}, Counter(counts.values())
    snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)


@pytest.mark.parametrize("state", ["copies", "keys"])
def test_a_review_verdict_reaches_the_shards_before_the_next_events(kafka_bootstrap, tmp_path, state):
    """The coordinator decides a person's verdict and logs it; the shards holding copies read it from the log
    before they decide the events that follow, and key shards decide it on a slice of its two identifiers'
    profiles (the session loaded before it goes on: no new one); the events that follow join the profile the
    verdict made."""
    import json

    prefix = unique_name("shardreview") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    person = {"first_name": "Jane", "last_name": "Doe", "postcode": "SW1A 1AA"}

    def send(*events: dict) -> None:
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        idres("produce", str(path), *kafka)

    idres("topics", *kafka, "--resolve-partitions", "2", "--resolve-state", state)
    send({"event_id": "web1", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", "event_type": "signup",
          "identifiers": {"email": "jane.doe@example.co.uk"},
          "attributes": {**person, "date_of_birth": "1985-03-07", "address": "12 High Street"}},
         {"event_id": "store1", "occurred_at": "2025-01-02T00:00:00Z", "channel": "store",
          "event_type": "purchase", "identifiers": {"loyalty_id": "LY-1234-5678"}, "attributes": person})
    worker = ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, "r", env={"IDRES_RESOLVE_STATE": state})
    try:
        wait_until(lambda: worker.metrics().get("idres_log_entries_written_total") == 2, 120,
                   "both events decided", [worker])
        queue = json.loads(idres("review", "--json", *kafka).stdout)
        assert [r["status"] for r in queue] == ["pending"]
        idres("review", "accept", queue[0]["review_id"], "--by", "ana", *kafka)
        wait_until(lambda: worker.metrics().get("idres_log_entries_written_total") == 3, 60,
                   "the verdict recorded", [worker])
        send({"event_id": "app1", "occurred_at": "2025-01-03T00:00:00Z", "channel": "app", "event_type": "login",
              "identifiers": {"loyalty_id": "LY-1234-5678", "device_id": "phone-77"}})
        wait_until(lambda: worker.metrics().get("idres_log_entries_written_total") == 4, 60,
                   "the next event decided", [worker])
        got = worker.metrics()
        if state == "copies":
            assert got.get("idres_shard_tasks_total", 0) >= 4  # (both windows went to the shards)
        else:  # (both runs went to the shards, in one session, which decided the verdict too)
            assert (got.get("idres_key_shard_sessions_total"), got.get("idres_key_shard_commands_total"),
                    got.get("idres_resolve_shard_failures_total", 0)) == (1, 1, 0)
    finally:
        worker.stop()
    snap = tmp_path / "review.duckdb"
    idres("snapshot", *kafka, "--out", str(snap))
    import duckdb

    with duckdb.connect(str(snap), read_only=True) as con:
        profiles = dict(con.execute("SELECT event_id, profile_id FROM events").fetchall())
    assert profiles["web1"] == profiles["store1"] == profiles["app1"]


def test_key_shards_follow_a_restatement_in_the_session_loaded_before_it(kafka_bootstrap, tmp_path):
    """A resolve worker holding the state by key, in step with it, restates the log for a few late events: the
    key shards are sent the parts that can differ and the session goes on (no new one is loaded); the events
    after are decided in it, and the profiles and IDs are those of `idres ingest`."""
    from tests.test_restate import history

    lines = history(tmp_path, 120, 37)  # (in the canonical order)
    late = set(range(len(lines) - 90, len(lines) - 80, 4))  # (older than the last 80 of the first part)
    parts = {"first": [line for i, line in enumerate(lines[:-60]) if i not in late],
             "late": [lines[i] for i in sorted(late)], "after": lines[-60:]}
    for name, part in parts.items():
        (tmp_path / f"{name}.jsonl").write_bytes(b"".join(part))
    (tmp_path / "all.jsonl").write_bytes(b"".join(parts["first"] + parts["late"] + parts["after"]))
    counts = {name: accepted_events(tmp_path / f"{name}.jsonl", tmp_path) for name in ("first", "all")}
    prefix = unique_name("keysrestate") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    history_topic = ("--topic", f"{prefix}raw.history", "--partitions", "1")  # (one partition: read in order)
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    idres("topics", *kafka, "--resolve-partitions", "2", "--resolve-state", "keys")
    idres("produce", str(tmp_path / "first.jsonl"), *kafka, *history_topic)
    worker = ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, "k",
                         env={"IDRES_RESOLVE_STATE": "keys", "IDRES_RESTATE_WAIT": "0.5"})

    def settled_at(n: int) -> bool:
        got = worker.metrics()
        return bool(got) and len(decided(settings)) == n and not got.get("idres_late_events_pending") and \
            not got.get("idres_reorder_held_events")

    try:
        wait_until(lambda: settled_at(counts["first"]), 240, "the first part decided", [worker])
        assert worker.metrics().get("idres_key_shard_sessions_total") == 1
        idres("produce", str(tmp_path / "late.jsonl"), *kafka, *history_topic)
        wait_until(lambda: worker.metrics().get("idres_key_shard_restatements_total", 0) >= 1, 120,
                   "the late events restated and followed on the key shards", [worker])
        idres("produce", str(tmp_path / "after.jsonl"), *kafka, *history_topic)
        wait_until(lambda: settled_at(counts["all"]), 120, "the events after decided", [worker])
        got = worker.metrics()
        assert (got.get("idres_key_shard_sessions_total"), got.get("idres_resolve_shard_failures_total", 0)) == \
            (1, 0), got
        assert 0 < got["idres_key_shard_restatement_parts"]
    finally:
        worker.stop()
    snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)


def test_late_events_in_a_window_before_the_last_of_a_batch_are_restated(kafka_bootstrap, tmp_path):
    """Late events released with newer ones in one batch that spans two windows (a window ends where an epoch
    begins), the late ones in the first: they are noted and restated like any (they were once written without
    being noted, so the log was never restated); the profiles and IDs are those of `idres ingest`."""
    from resolver import epochs
    from tests.test_restate import history

    lines = history(tmp_path, 150, 31)  # (in the canonical order)

    def accepted(part: list[bytes], name: str) -> int:
        (tmp_path / f"{name}.jsonl").write_bytes(b"".join(part))
        return accepted_events(tmp_path / f"{name}.jsonl", tmp_path)

    # the first part: from line 40 on, ending 12 events before an epoch begins
    boundary = epochs.end_of(512)
    lo, hi = 41, len(lines)
    while lo < hi:  # (the fewest lines holding boundary - 12 events)
        mid = (lo + hi) // 2
        if accepted(lines[40:mid], f"probe{mid}") >= boundary - 12:
            hi = mid
        else:
            lo = mid + 1
    first = lines[40:lo]
    assert accepted(first, "first") == boundary - 12 and len(lines) - lo > 100
    # then, in one file: 6 lines older than all of it (late) and the next 100 (newer): one batch, two windows
    rest = lines[:6] + lines[lo:lo + 100]
    accepted(rest, "rest")
    every = accepted(first + rest, "all")
    prefix = unique_name("shardslate") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    history = ("--topic", f"{prefix}raw.history", "--partitions", "1")  # (one partition: read in this order)
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    idres("topics", *kafka, "--resolve-partitions", "2")
    idres("produce", str(tmp_path / "first.jsonl"), *kafka, *history)
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, f"w{i}", env={"IDRES_RESTATE_WAIT": "0.5"})
               for i in range(2)]

    def settled(n: int) -> bool:  # (every worker answering: one too busy to may hold late events)
        return (len(decided(settings)) == n and all(w.metrics() for w in workers)
                and not _total(workers, "idres_late_events_pending")
                and not _total(workers, "idres_reorder_held_events"))

    try:
        wait_until(lambda: settled(boundary - 12), 240, "the first part decided", workers)
        idres("produce", str(tmp_path / "rest.jsonl"), *kafka, *history)
        wait_until(lambda: settled(every) and _total(workers, "idres_restatements_total") >= 1, 120,
                   "the late events noted and the log restated", workers)
    finally:
        for w in workers:
            w.stop()
    snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)
