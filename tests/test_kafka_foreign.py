"""The stream jobs fed by a data engineer's own producer: no message keys, every compression codec Kafka
users use, channels of their own, including a raw topic created while the worker runs."""

from __future__ import annotations

import json
import os
import time

import duckdb
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.decisions import DECISION_SCHEMA_VERSION, DecisionLogMessage
from streams.kafka_io import KafkaSettings, admin_client, ensure_topics
from streams.stream_app import create_stream_topics
from tests.cli_helpers import run_cli
from tests.kafka_broker import unique_name
from tests.test_stream import Worker, decided, wait_until

CODECS = ("gzip", "snappy", "lz4", "zstd")


def _event(n: int, channel: str) -> bytes:
    return json.dumps({"event_id": f"{channel}-{n}", "occurred_at": "2025-03-01T10:00:00Z", "channel": channel,
                       "event_type": "visit", "identifiers": {"email": f"c{n}@mailbox.org"}}).encode()


def _send(bootstrap: str, topic: str, values: list[bytes], codec: str | None, partition: int | None = None,
          **config) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, acks="all", linger_ms=20, **config)
    try:
        for value in values:
            producer.send(topic, value=value, partition=partition)  # (no key: as many producers send)
        producer.flush(30)
    finally:
        producer.close()


def _deployment(bootstrap: str, label: str) -> tuple[str, KafkaSettings]:
    """A fresh topic prefix, and the stream topics under it."""
    prefix = unique_name(label) + "."
    settings = KafkaSettings.load(bootstrap=bootstrap, prefix=prefix)
    create_stream_topics(settings)
    return prefix, settings


def test_a_foreign_producer_s_records_in_any_codec_and_on_any_raw_topic_are_all_resolved(kafka_bootstrap, tmp_path,
                                                                                        monkeypatch):
    prefix, settings = _deployment(kafka_bootstrap, "foreign")
    admin = admin_client(settings)
    try:
        ensure_topics(admin, settings, {settings.topics.raw("pos"): 2})  # a channel of the producer's own
    finally:
        admin.close()
    sent = []
    for i, codec in enumerate(CODECS):
        batch = [_event(10 * i + n, "web") for n in range(5)]
        _send(kafka_bootstrap, settings.topics.raw("web"), batch, codec)
        sent += batch
    pos = [_event(n, "pos") for n in range(5)]
    _send(kafka_bootstrap, settings.topics.raw("pos"), pos, "lz4")
    sent += pos

    monkeypatch.setenv("IDRES_RAW_TOPIC_CHECK", "1")
    worker = Worker(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        wait_until(lambda: worker.metrics().get("idres_resolve_events_total", 0) >= len(sent), 120,
                   "the worker to resolve every record", [worker])
        # a raw topic created while the worker runs is not left unread: the worker says so and stops...
        admin = admin_client(settings)
        try:
            ensure_topics(admin, settings, {settings.topics.raw("kiosk"): 1})
        finally:
            admin.close()
        kiosk = [_event(n, "kiosk") for n in range(3)]
        _send(kafka_bootstrap, settings.topics.raw("kiosk"), kiosk, "zstd")
        sent += kiosk
        wait_until(lambda: worker.proc.poll() is not None, 60, "the worker to stop for the new raw topic", [worker])
        assert worker.proc.returncode == 1
        assert f"new raw topic(s) {settings.topics.raw('kiosk')}" in worker.log.read_text(errors="replace")
    finally:
        worker.stop()
    # ...and its restart reads it from the beginning
    again = Worker(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        wait_until(lambda: again.metrics().get("idres_resolve_events_total", 0) >= len(kiosk), 120,
                   "the restarted worker to resolve the new topic's records", [again])
    finally:
        again.stop()
    snap = tmp_path / "kafka.duckdb"
    run_cli("snapshot", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        events = {e for (e,) in con.execute("SELECT event_id FROM events").fetchall()}
        rejected = con.execute("SELECT count(*) FROM rejected_events").fetchone()[0]
    assert events == {json.loads(v)["event_id"] for v in sent} and rejected == 0
    # the decision-log topic, read by a plain consumer, is what `idres schema` publishes
    messages = _read_all(kafka_bootstrap, settings.topics.decisions)
    recorded = set()
    for key, value in messages:
        assert key is None
        message = DecisionLogMessage.model_validate_json(value)
        assert message.v == DECISION_SCHEMA_VERSION
        recorded |= {d.event_id for entry in message.entries for d in entry if d.type == "interaction_recorded"}
    assert recorded == events
    run_cli("schema", "--out", str(tmp_path / "schemas"))
    published = json.loads((tmp_path / "schemas" / f"decision_log_message.v{DECISION_SCHEMA_VERSION}.schema.json")
                           .read_text())
    assert set(published["properties"]) == {"v", "k", "entries"} and published["additionalProperties"] is False


def test_a_worker_that_decided_to_stop_exits_even_if_stopping_never_ends(kafka_bootstrap, tmp_path):
    """A worker stopping for a new raw topic, whose stopping never ends (made so here: its app's ``crash`` waits
    forever), exits anyway within ``IDRES_STOP_GRACE`` seconds, with code 1 and one line saying so, so that its
    supervisor restarts it."""
    class Stuck(Worker):
        module = "tests.tansu_worker"
        env = {**os.environ, "IDRES_TEST_HANG_ON_STOP": "1", "IDRES_STOP_GRACE": "2", "IDRES_RAW_TOPIC_CHECK": "1"}

    prefix, settings = _deployment(kafka_bootstrap, "stuck")
    worker = Stuck(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        wait_until(lambda: bool(worker.metrics()), 60, "the worker to start", [worker])
        admin = admin_client(settings)
        try:
            ensure_topics(admin, settings, {settings.topics.raw("kiosk"): 1})
        finally:
            admin.close()
        wait_until(lambda: "stopping the worker: new raw topic" in worker.log.read_text(errors="replace"), 60,
                   "the worker to decide to stop", [worker])
        decided_at = time.monotonic()
        worker.proc.wait(timeout=30)
        took = time.monotonic() - decided_at
    finally:
        worker.stop()
    assert worker.proc.returncode == 1 and took < 15
    last = [line for line in worker.log.read_text(errors="replace").splitlines() if line.startswith("idres: error:")]
    assert len(last) == 1
    assert last[0].startswith("idres: error: the worker did not stop within 2 s of deciding to (NewRawTopic: new "
                              f"raw topic(s) {settings.topics.raw('kiosk')}: this worker does not consume them yet")
    assert last[0].endswith("; exiting anyway: restart it (nothing is lost)")


def _read_all(bootstrap: str, topic: str) -> list[tuple]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        out = []
        for record in consumer:
            out.append((record.key, record.value))
            if record.offset + 1 >= end:
                break
        return out
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", CODECS)
def test_idres_produce_writes_each_codec(kafka_bootstrap, tmp_path, codec):
    prefix = unique_name(f"codec-{codec}") + "."
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(_event(n, "web") for n in range(3)) + b"\n")
    proc = run_cli("produce", str(src), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix,
                   "--compression", codec, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_kafka_follower_s_lag_counts_what_it_has_not_folded(kafka_bootstrap):
    from streams.api import KafkaFollower

    _, settings = _deployment(kafka_bootstrap, "lag")

    def message(first: int, n: int) -> bytes:  # n entries, one event each
        return json.dumps({"v": DECISION_SCHEMA_VERSION, "entries": [[{
            "type": "interaction_recorded", "event_id": f"e{first + i}", "occurred_at": "2025-03-01T10:00:00.000000Z",
            "channel": "web", "event_type": "visit", "nodes": []}] for i in range(n)]}).encode()

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for k in range(10):
            producer.send(settings.topics.decisions, value=message(5 * k, 5), partition=0)
        producer.flush(30)
        follower = KafkaFollower(settings)
        follower.load()
        assert follower.views.seq == 50 and follower.log_length == 50
        for k in range(10, 510):
            producer.send(settings.topics.decisions, value=message(5 * k, 5), partition=0)
        producer.flush(30)
    finally:
        producer.close()
    try:
        folded = 0
        for _ in range(100):  # (the first looks only start fetching; a look folds at most 200 messages)
            folded = follower.poll()
            if folded:
                break
            time.sleep(0.05)
        assert 0 < folded <= 1000
        behind = 510 - follower.next_offset
        assert behind > 0 and follower.lag_messages == behind
        assert follower.log_length - follower.views.seq == 5 * behind  # 5 entries in every message so far
    finally:
        follower.stop()


def test_a_decision_log_topic_with_entries_missing_is_refused_with_what_to_do(kafka_bootstrap):
    from resolver.engine import Resolver, ResolverState
    from streams.stream_app import DecisionLogError, fold_decision_log

    _, settings = _deployment(kafka_bootstrap, "gap")
    # a merge of profiles whose creation is not in the topic (the messages before it were lost)
    orphan = {"type": "profiles_merged", "survivor_id": "p_a", "absorbed_ids": ["p_b"], "event_id": "e9",
              "occurred_at": "2025-03-01T10:00:00.000000Z", "via": ["email:a@b.org"], "rule": "shared_identifier"}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(settings.topics.decisions, value=json.dumps({"v": DECISION_SCHEMA_VERSION,
                                                                   "entries": [[orphan]]}).encode(), partition=0)
        producer.flush(30)
    finally:
        producer.close()
    with pytest.raises(DecisionLogError, match="cannot be folded at entry 0 .*lost or reordered messages"):
        fold_decision_log(settings, resolver=Resolver(state=ResolverState()))


def _send_undecodable(monkeypatch, bootstrap: str, topic: str, values: list[bytes], codec: str) -> None:
    """Sends one batch flagged as ``codec`` whose payload no decoder can read (its checksum is right: the
    producer computed it over the damaged bytes). The values must be longer than the damaged payload, or
    the producer sends them uncompressed."""
    import kafka.record.default_records as records

    with monkeypatch.context() as m:
        m.setattr(records, f"{codec}_encode", lambda data: b"\x04\x22\x4d\x18 these bytes are not " + codec.encode())
        _send(bootstrap, topic, values, codec, partition=0)


def test_an_undecodable_batch_on_a_raw_topic_is_dead_lettered_and_the_worker_goes_on(kafka_bootstrap, tmp_path,
                                                                                   monkeypatch):
    prefix, settings = _deployment(kafka_bootstrap, "undecodable")
    web, email = settings.topics.raw("web"), settings.topics.raw("email")
    good = [_event(n, "web") for n in range(3)]
    _send(kafka_bootstrap, web, good[:2], "lz4", partition=0)
    _send_undecodable(monkeypatch, kafka_bootstrap, web, [_event(n, "web") for n in range(10, 14)], "lz4")
    _send(kafka_bootstrap, web, good[2:], "lz4", partition=0)  # a good batch after the damaged one
    # the last batch of its partition: nothing after it is ever read
    _send_undecodable(monkeypatch, kafka_bootstrap, email, [_event(n, "email") for n in range(2)], "zstd")

    worker = Worker(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        wait_until(lambda: (worker.metrics().get("idres_resolve_events_total", 0) >= len(good)
                            and worker.metrics().get("idres_validate_undecodable_batches_total", 0) >= 2), 120,
                   "the worker to resolve the good records and skip the damaged batches", [worker])
        assert worker.metrics()["idres_validate_undecodable_offsets_total"] == 6
        assert worker.proc.poll() is None  # still running
        # the email partition's only records were the damaged batch: once dead-lettered it is read to its end,
        # not a partition with records left to read (the resolve role would wait for it, 30 s at every start)
        wait_until(lambda: worker.metrics().get("idres_raw_partitions_behind") == 0, 20,
                   "no raw partition left behind", [worker])
    finally:
        worker.stop()
    letters = sorted(_dead_letter_headers(kafka_bootstrap, settings.topics.deadletter), key=lambda h: h["source_topic"])
    assert [(h["source_topic"], h["source_offset"], h["source_offset_end"], h["reason"]) for h in letters] == [
        (email, "0", "1", "undecodable record batch"), (web, "2", "5", "undecodable record batch")]
    snap = tmp_path / "kafka.duckdb"
    run_cli("snapshot", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        events = {e for (e,) in con.execute("SELECT event_id FROM events").fetchall()}
        rejected = con.execute("SELECT reason, detail FROM rejected_events ORDER BY detail").fetchall()
    assert events == {json.loads(v)["event_id"] for v in good}
    assert [r for r, _ in rejected] == ["undecodable record batch"] * 2
    assert rejected[0][1].startswith("offsets 0..1: ") and rejected[1][1].startswith("offsets 2..5: ")


def _dead_letter_headers(bootstrap: str, topic: str) -> list[dict[str, str]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        return [{k: v.decode() for k, v in record.headers} for record in consumer]
    finally:
        consumer.close()


def test_an_undecodable_batch_on_the_engine_s_own_topic_stops_the_worker_with_one_line(kafka_bootstrap, tmp_path,
                                                                                     monkeypatch):
    prefix, settings = _deployment(kafka_bootstrap, "damaged")
    from streams.stream_app import validated_topic

    _send_undecodable(monkeypatch, kafka_bootstrap, validated_topic(settings), [b'{"events": [], "note": "%s"}' % (b"x" * 400)], "lz4")
    worker = Worker(tmp_path, kafka_bootstrap, prefix, "resolve")
    try:
        wait_until(lambda: worker.proc.poll() is not None, 90, "the worker to stop", [worker])
    finally:
        worker.stop()
    assert worker.proc.returncode != 0
    assert (f"the record batch at {validated_topic(settings)}/0 offsets 0..0 cannot be decoded"
            in worker.log.read_text(errors="replace"))


def test_a_record_larger_than_a_broker_takes_is_dead_lettered_cut_short_and_its_batch_is_decided(kafka_bootstrap,
                                                                                                tmp_path):
    """A 5 MB record on a raw topic: its dead letter, sent whole, was refused by the producer, the worker stopped,
    and the records of its batch were acknowledged and never decided. It is kept cut short, with its size."""
    prefix, settings = _deployment(kafka_bootstrap, "huge")
    web = settings.topics.raw("web")
    good = [_event(n, "web") for n in range(20)]
    _send(kafka_bootstrap, web, [*good[:10], b"z" * (5 << 20), *good[10:]], None, partition=0,
          max_request_size=8 << 20)
    worker = Worker(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        wait_until(lambda: worker.metrics().get("idres_resolve_events_total", 0) >= len(good), 120,
                   "the worker to resolve the records around the huge one", [worker])
        assert worker.proc.poll() is None
    finally:
        worker.stop()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, fetch_max_bytes=8 << 20,
                             max_partition_fetch_bytes=8 << 20)
    try:
        consumer.assign([TopicPartition(settings.topics.deadletter, 0)])
        letters = list(consumer)
    finally:
        consumer.close()
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert headers["reason"] == "record too large" and headers["truncated_from_bytes"] == str(5 << 20)
    assert letters[0].value == b"z" * 1_000_000


def test_a_validate_batch_that_fails_part_way_is_read_again_by_the_next_worker(kafka_bootstrap, tmp_path):
    """An error no check expects, in the middle of a validate batch, stops the worker. Faust acknowledged a batch
    taken with ``take_events`` when its loop failed, then the messages read after it, and the stopping worker
    committed them: records no one had decided. The next worker reads them again and decides every one, once."""
    class Failing(Worker):
        module = "tests.tansu_worker"
        env = {**os.environ, "IDRES_TEST_VALIDATE_FAIL_AT": "7", "IDRES_BATCH_EVENTS": "8", "IDRES_STOP_GRACE": "20"}

    prefix, settings = _deployment(kafka_bootstrap, "failing")
    good = [_event(n, "web") for n in range(40)]
    _send(kafka_bootstrap, settings.topics.raw("web"), good, "gzip", partition=0)
    first = Failing(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        first.proc.wait(timeout=120)
    finally:
        first.stop()
    assert first.proc.returncode == 1, first.tail()
    said = first.log.read_text(errors="replace")
    assert "a fault made for the test" in said
    assert said.rstrip().splitlines()[-1] == ("idres: error: the worker stopped (RuntimeError: a fault made for the "
                                              "test): restart it; nothing is lost (a restart rebuilds from the log)")
    second = Worker(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    try:
        wait_until(lambda: len(decided(settings)) >= len(good), 120, "every record decided", [second])
        time.sleep(2)  # (nothing decided twice after)
        assert second.proc.poll() is None
    finally:
        second.stop()
    assert decided(settings) == {f"web-{n}": 1 for n in range(len(good))}


@pytest.mark.parametrize("command", [["review"], ["unmerge", "--list"], ["changes"], ["snapshot", "--out", "OUT"],
                                     ["erase", "email=ann.lee@post.net", "--by", "dpo"]])
def test_reading_a_deployment_whose_topics_do_not_exist_says_so_and_creates_none(kafka_bootstrap, tmp_path, command):
    """A misspelled --topic-prefix read as an empty deployment ("The review queue is empty.", an empty snapshot),
    and reading made the broker create the decision log with its own defaults (on Apache Kafka, 7 days' retention
    where idres keeps it for ever)."""
    prefix = unique_name("nosuch") + "."
    args = [a.replace("OUT", str(tmp_path / "s.duckdb")) for a in command]
    done = run_cli(*args, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"idres: error: no topic {prefix}decisions on {kafka_bootstrap}: no idres deployment uses "
                           f"the topic prefix {prefix!r} there (check --topic-prefix or $IDRES_TOPIC_PREFIX; "
                           "`idres topics` creates a deployment's topics)\n")
    admin = admin_client(KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix))
    try:
        assert [t for t in admin.list_topics() if t.startswith(prefix)] == []
    finally:
        admin.close()
    assert not (tmp_path / "s.duckdb").exists()


def test_reading_a_deployment_without_its_keys_topic_says_so_and_creates_none(kafka_bootstrap, tmp_path):
    """With the decision log there but not the keys topic it is sealed under, reading the log made the broker create
    the keys topic with its defaults (four partitions, not compacted), and the reader then said the topic had lost
    messages the broker acknowledged."""
    prefix = unique_name("nokeys") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    admin = admin_client(settings)
    try:
        ensure_topics(admin, settings, {settings.topics.decisions: 1})
    finally:
        admin.close()
    done = run_cli("snapshot", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--out",
                   str(tmp_path / "s.duckdb"), check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"idres: error: no topic {prefix}keys on {kafka_bootstrap}, which holds the keys")
    admin = admin_client(settings)
    try:
        assert [t for t in admin.list_topics() if t.startswith(prefix)] == [settings.topics.decisions]
    finally:
        admin.close()


def test_serving_a_deployment_whose_topics_do_not_exist_says_so_creates_none_and_serves_once_they_do(kafka_bootstrap,
                                                                                                     tmp_path):
    """`idres serve --bootstrap` with a misspelled --topic-prefix made the broker create the decision log with its own
    defaults and answered every lookup as of an empty deployment. It says what is missing, creates nothing, and
    keeps trying (a compose file may start the API before the topics exist): once they do, it serves."""
    import subprocess
    import sys

    import httpx

    from tests.cli_helpers import ROOT
    from tests.kafka_broker import free_port

    prefix = unique_name("notyet") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    port = free_port()
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--bootstrap", kafka_bootstrap,
                                 "--topic-prefix", prefix, "--port", str(port), "--no-auth"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=fh)

    def ask() -> "httpx.Response | None":
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/lookup", params={"type": "email", "value": "ann.lee@post.net"}, timeout=2)
        except httpx.HTTPError:
            return None

    try:
        wait_until(lambda: (a := ask()) is not None and "no topic" in a.text and "warning" in err.read_text(), 60,
                   "the API to say the topics are missing")
        answer = ask()
        assert answer.status_code == 503
        assert (f"no topic {prefix}decisions on {kafka_bootstrap}: no idres deployment uses the topic prefix "
                f"{prefix!r} there") in answer.json()["detail"]
        assert "`idres topics` creates a deployment's topics" in answer.json()["detail"]
        admin = admin_client(settings)
        try:
            assert [t for t in admin.list_topics() if t.startswith(prefix)] == []
        finally:
            admin.close()
        assert proc.poll() is None
        run_cli("topics", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
        wait_until(lambda: (a := ask()) is not None and a.status_code == 404, 90, "the API to serve the deployment")
    finally:
        proc.terminate()
        proc.wait(10)
