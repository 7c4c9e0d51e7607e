"""The Kafka transport's pure parts: topic names, settings, keys and partitions (no broker needed)."""

from __future__ import annotations

import os
import random
import re

import pytest

from resolver.config import ResolverConfig
from resolver.errors import ConfigError
from streams.kafka_io import KafkaSettings, Router, Topics, murmur2, partition_for

# kafka-python 3.0 loads its protocol schemas with a deprecated importlib.resources call
pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")


def test_topic_names():
    t = Topics()
    assert (t.raw("web"), t.raw(), t.raw_unknown, t.deadletter, t.decisions) == (
        "idres.raw.web", "idres.raw", "idres.raw.unknown", "idres.deadletter", "idres.decisions")
    assert Topics("acme-prod.").raw("call_center") == "acme-prod.raw.call_center"
    assert Topics("").decisions == "decisions"
    import re

    pattern = re.compile(Topics("a.b.").raw_pattern())
    assert pattern.match("a.b.raw") and pattern.match("a.b.raw.web") and not pattern.match("axb.raw.web")
    assert not pattern.match("a.b.decisions")
    with pytest.raises(ConfigError, match="prefix"):
        Topics("idres/")
    with pytest.raises(ConfigError, match="channel"):
        t.raw("Web")


def test_settings_flags_over_environment_over_defaults():
    env = {"IDRES_BOOTSTRAP": "k1:9092,k2:9092", "IDRES_TOPIC_PREFIX": "env.", "IDRES_RAW_PARTITIONS": "8",
           "IDRES_KAFKA_COMPRESSION": "GZIP"}
    s = KafkaSettings.load(env, prefix="flag.", raw_partitions=None)
    assert s.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert (s.prefix, s.raw_partitions, s.compression, s.linger_ms) == ("flag.", 8, "gzip", 20)
    assert s.origin("bootstrap") == "set by $IDRES_BOOTSTRAP" and s.where("prefix") == "--topic-prefix"
    assert KafkaSettings.load({}).bootstrap == "localhost:9092"
    assert KafkaSettings.load({}).deployment_topics(["web"]) == {
        "idres.raw.web": 4, "idres.raw.unknown": 4, "idres.deadletter": 1, "idres.decisions": 1, "idres.changes": 1,
        "idres.households": 1, "idres.keys": 1}
    assert KafkaSettings.load({}).deployment_topics() == {"idres.raw": 4, "idres.deadletter": 1,
                                                         "idres.decisions": 1, "idres.changes": 1,
                                                         "idres.households": 1, "idres.keys": 1}


def test_resolve_shards_add_their_two_topics():
    from streams.stream_app import stream_topics

    one = stream_topics(KafkaSettings.load({}), ["web"])
    three = stream_topics(KafkaSettings.load({"IDRES_RESOLVE_PARTITIONS": "3"}), ["web"])
    assert set(three) - set(one) == {"idres.shard.tasks", "idres.shard.replies"}
    assert (three["idres.shard.tasks"], three["idres.shard.replies"]) == (3, 1)


@pytest.mark.parametrize("env, flags, message", [
    ({"IDRES_RAW_PARTITIONS": "four"}, {}, r"\$IDRES_RAW_PARTITIONS must be a whole number"),
    ({}, {"raw_partitions": 0}, "--partitions must be at least 1"),
    ({}, {"bootstrap": "localhost"}, "--bootstrap must be HOST:PORT"),
    ({}, {"compression": "brotli"}, "--compression must be one of"),
    ({}, {"replication_factor": 0}, "--replication-factor must be -1"),
    ({"IDRES_TOPIC_PREFIX": "bad prefix"}, {}, "prefix"),
    ({"IDRES_RESOLVE_PARTITIONS": "0"}, {}, r"\$IDRES_RESOLVE_PARTITIONS must be a whole number of resolve shards"),
    ({}, {"resolve_partitions": 300}, "--resolve-partitions must be a whole number of resolve shards from 1 to 256"),
    # past what the clients take, which failed inside them (or waited for ever)
    ({"IDRES_RAW_PARTITIONS": "100000000"}, {}, r"\$IDRES_RAW_PARTITIONS must be at most 10000, not 100000000"),
    ({"IDRES_DEADLETTER_PARTITIONS": "20000"}, {}, r"\$IDRES_DEADLETTER_PARTITIONS must be at most 10000"),
    ({"IDRES_KAFKA_LINGER_MS": "100000"}, {}, r"\$IDRES_KAFKA_LINGER_MS must be at most 60000"),
    ({}, {"batch_bytes": 2 ** 40}, "--batch-bytes must be at most 67108864"),
    ({"IDRES_KAFKA_TIMEOUT": "1e20"}, {}, r"\$IDRES_KAFKA_TIMEOUT must be a positive number of seconds up to 3600"),
    ({}, {"timeout": 0}, "--timeout must be a positive number of seconds"),
    # the prefix's variable named, as every other setting's
    ({"IDRES_TOPIC_PREFIX": "bad prefix"}, {}, r"^\$IDRES_TOPIC_PREFIX: topic prefix 'bad prefix'"),
    ({}, {"prefix": "a/b"}, r"^--topic-prefix: topic prefix 'a/b'"),
])
def test_settings_errors_name_their_source(env, flags, message):
    with pytest.raises(ConfigError, match=message):
        KafkaSettings.load(env, **flags)


def test_settings_at_their_bounds_are_taken():
    s = KafkaSettings.load({"IDRES_RAW_PARTITIONS": "10000", "IDRES_KAFKA_LINGER_MS": "60000",
                            "IDRES_KAFKA_TIMEOUT": "3600"}, batch_bytes=64 * 1024 * 1024)
    assert (s.raw_partitions, s.linger_ms, s.timeout, s.batch_bytes) == (10_000, 60_000, 3600.0, 67_108_864)


def test_a_wait_in_seconds_is_at_most_what_timers_take():
    from streams.env import env_seconds

    assert env_seconds("IDRES_STOP_GRACE", 30.0, environ={"IDRES_STOP_GRACE": "1e9"}) == 1e9
    assert env_seconds("IDRES_REORDER_WAIT", 2.0, positive=False, environ={"IDRES_REORDER_WAIT": "0"}) == 0.0
    assert env_seconds("IDRES_STOP_GRACE", 30.0, environ={}) == 30.0
    for raw in ("1e23", "1000000001", "0", "-1", "inf"):
        with pytest.raises(ConfigError, match=rf"^IDRES_STOP_GRACE='{re.escape(raw)}': expected a number of "
                                              r"seconds > 0 and <= 1000000000$"):
            env_seconds("IDRES_STOP_GRACE", 30.0, environ={"IDRES_STOP_GRACE": raw})
    with pytest.raises(ConfigError, match=r"expected a number of seconds >= 0 and <= 1000000000"):
        env_seconds("IDRES_REORDER_WAIT", 2.0, positive=False, environ={"IDRES_REORDER_WAIT": "-0.5"})


def test_murmur2_and_partitions_match_kafka_default_partitioner():
    from kafka.partitioner.default import DefaultPartitioner, murmur2 as reference

    rng = random.Random(1)
    for n in range(64):
        for _ in range(20):
            data = bytes(rng.randrange(256) for _ in range(n))
            assert murmur2(data) == reference(data)
    # values from the Java client's own tests of Utils.murmur2 (signed there)
    for key, signed in [(b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107),
                        (b"a-little-bit-long-string", -985981536), (b"a-little-bit-longer-string", -1486304829)]:
        assert murmur2(key) == signed % (1 << 32)

    class Cluster:
        def topics(self):
            return {"t"}

        def partitions_for_topic(self, topic):
            return set(range(6))

        available_partitions_for_topic = partitions_for_topic

    default = DefaultPartitioner()
    for _ in range(500):
        key = os.urandom(rng.randrange(1, 40))
        assert partition_for(key, 6) == default.partition("t", key, key, b"", b"", Cluster())


def test_router_keys_by_the_strongest_normalized_identifier():
    router = Router(ResolverConfig())
    line = (b'{"event_id":"e1","channel":"store","identifiers":{"device_id":"D-1","phone":"(415) 555-0134",'
            b'"email":"Jane.Doe+x@GoogleMail.com","loyalty_id":"0000"}}')
    # the loyalty placeholder never links; email (priority 20) beats phone (30) and device (60)
    assert router.route(line) == ("store", b"email:janedoe@gmail.com")
    assert router.route(b'{"event_id":"e2","channel":"web","identifiers":{"device_id":"AbC"}}') == \
        ("web", b"device_id:abc")
    # nothing usable to match on: the event ID keeps its re-sends together
    assert router.route(b'{"event_id":"e3","channel":"chat","identifiers":{"email":"test@test.com"},'
                        b'"attributes":{"first_name":"Ann"}}') == ("chat", b"event_id:e3")
    # unreadable channel or not JSON
    assert router.route(b'{"event_id":"e4","channel":"Web!","identifiers":{"phone":"4155550134"}}') == \
        (None, b"phone:+14155550134")
    assert router.route(b'{"event_id":"e5","chan') == (None, None)
    assert router.route(b"[1, 2]") == (None, None)
    assert router.route(b'{"channel":"web","identifiers":"abc"}') == ("web", None)


def test_router_follows_configured_priorities():
    config = ResolverConfig.from_dict({"identifier_types": {"phone": {"priority": 5}}})
    line = b'{"event_id":"e1","channel":"web","identifiers":{"phone":"415-555-0134","email":"a@b.org"}}'
    assert Router(config).route(line)[1] == b"phone:+14155550134"
    assert Router().route(line)[1] == b"email:a@b.org"


class _RecordingAdmin:
    """Takes ``create_topics`` requests as a broker would (every topic created) and keeps them."""

    def __init__(self):
        self.requests: dict = {}

    def create_topics(self, spec, timeout_ms=None, raise_errors=True):
        self.requests.update(spec)
        return {"topics": [{"name": name, "error_code": 0} for name in spec]}

    def wait_for_topics(self, names, timeout_ms=None):
        pass

    def describe_topics(self, names):
        return [{"name": n, "error_code": 0, "partitions": [0] * self.requests[n]["num_partitions"]} for n in names]


def test_the_decision_log_is_kept_forever_and_transit_topics_for_the_stated_hours():
    """Whatever the broker's default retention (7 days on Apache Kafka), the decision log and the changelog
    are created to be kept forever; raw, validated and dead-letter topics keep events for
    IDRES_TRANSIT_RETENTION_HOURS (so an erased customer's raw events are gone after that). (Tansu accepts
    these configs but answers DescribeConfigs with none, so they are checked here on the request.)"""
    from streams.kafka_io import ensure_topics
    from streams.stream_app import stream_topics

    for env, transit in (({}, str(168 * 3_600_000)), ({"IDRES_TRANSIT_RETENTION_HOURS": "24"}, str(24 * 3_600_000)),
                         ({"IDRES_TRANSIT_RETENTION_HOURS": "0"}, None)):
        settings = KafkaSettings.load(env)
        admin = _RecordingAdmin()
        ensure_topics(admin, settings, stream_topics(settings, ["web"]))
        configs = {name: spec.get("configs", {}) for name, spec in admin.requests.items()}
        t = settings.topics
        assert configs.pop(t.decisions) == {"retention.ms": "-1", "retention.bytes": "-1",
                                            "max.message.bytes": str(5 << 20)}  # (what the resolve role writes)
        assert configs.pop(t.changes) == {"retention.ms": "-1", "retention.bytes": "-1"}
        assert configs["idres.validated"]["max.message.bytes"] == str(5 << 20)
        keys = configs.pop(t.keys)  # (the keys the decision log is sealed under: a shredded one gone within a day)
        assert keys["cleanup.policy"] == "compact" and int(keys["max.compaction.lag.ms"]) == 24 * 3_600_000
        households = configs.pop(t.households)
        assert households["cleanup.policy"] == "compact"
        assert int(households["max.compaction.lag.ms"]) == 7 * 24 * 3_600_000  # (a tombstoned customer: a week)
        assert {t.raw("web"), t.raw(), t.deadletter, "idres.validated"} <= set(configs)
        for name, config in configs.items():
            assert config.get("retention.ms") == transit, name
    with pytest.raises(ConfigError, match="IDRES_TRANSIT_RETENTION_HOURS"):
        KafkaSettings.load({"IDRES_TRANSIT_RETENTION_HOURS": "-1"})
    # key shards' sessions carry their parts (personal data) through their topics: kept an hour, whatever the
    # transit retention
    for env in ({}, {"IDRES_TRANSIT_RETENTION_HOURS": "0"}):
        settings = KafkaSettings.load({**env, "IDRES_RESOLVE_PARTITIONS": "3", "IDRES_RESOLVE_STATE": "keys"})
        admin = _RecordingAdmin()
        ensure_topics(admin, settings, stream_topics(settings, ["web"]))
        shards = {n: spec for n, spec in admin.requests.items() if "keyshard" in n}
        assert {n: spec["num_partitions"] for n, spec in shards.items()} == {
            "idres.keyshard.requests": 3, "idres.keyshard.answers": 1}
        for spec in shards.values():
            assert spec["configs"] == {"retention.ms": str(3_600_000), "segment.ms": str(600_000)}
    # the changelog names identifiers: a deployment that erases customers bounds how long it keeps them
    settings = KafkaSettings.load({"IDRES_CHANGES_RETENTION_HOURS": "720"})
    admin = _RecordingAdmin()
    ensure_topics(admin, settings, stream_topics(settings, ["web"]))
    assert admin.requests[settings.topics.changes]["configs"] == {"retention.ms": str(720 * 3_600_000),
                                                                  "retention.bytes": "-1"}
    assert admin.requests[settings.topics.decisions]["configs"] == {"retention.ms": "-1", "retention.bytes": "-1",
                                                                    "max.message.bytes": str(5 << 20)}
    with pytest.raises(ConfigError, match="IDRES_CHANGES_RETENTION_HOURS"):
        KafkaSettings.load({"IDRES_CHANGES_RETENTION_HOURS": "-5"})
