"""Kafka transport for the stream jobs: topic names, topic creation, settings, publishing raw events.

Transport only: nothing here decides anything about identities. The stream jobs read raw channel
events from the raw topics, validate and resolve them with the same pure ``Resolver`` as the
embedded driver, and append what they decide to the decision log topic.

Topic names (``P`` is the prefix: ``idres.`` unless ``--topic-prefix`` / ``$IDRES_TOPIC_PREFIX`` says
otherwise):

==================  =====================  =========================  =================================================
topic               default name           partitions                 holds
==================  =====================  =========================  =================================================
``Praw.<channel>``  ``idres.raw.web``      raw_partitions (4)         one channel's raw events, a JSON line each
``Praw.unknown``    ``idres.raw.unknown``  raw_partitions (4)         lines with no readable ``channel``
``Praw``            ``idres.raw``          raw_partitions (4)         all channels in one topic (``--topic idres.raw``)
``Pdeadletter``     ``idres.deadletter``   deadletter_partitions (1)  what the validate role rejects, with reasons
``Pdecisions``      ``idres.decisions``    1, always                  the decision log: one ordered partition
``Pchanges``        ``idres.changes``      1, always                  the identity changelog (``projections.changelog``)
``Phouseholds``     ``idres.households``   1, compacted               each customer's household now, keyed by profile ID
==================  =====================  =========================  =================================================

With more than one resolve shard (``resolve_partitions``), ``Pshard.tasks`` (that many partitions) and
``Pshard.replies`` (1) carry the shards' work (``streams.kafka_shards``); with ``resolve_state`` ``keys``,
``Pkeyshard.requests`` (that many) and ``Pkeyshard.answers`` (1) do (``streams.kafka_key_shards``).

Keys: raw events whose strongest identifier (the lowest rule ``priority`` among the identifiers that
normalize to a usable value) is the same get the same key, ``TYPE:VALUE`` as the resolver writes it
(``email:janedoe@gmail.com``), so they land in file order on one partition of their topic. The raw
topics idres creates all get the same partition count, so one key has the same partition number in
each of them. An event with no usable identifier is keyed ``event_id:<event_id>``; a line that is not
a JSON object has no key (the producer spreads those).

Settings: a flag wins over its environment variable, which wins over the default.

===============================  ========================  ====================================  ==================
environment variable             flag                      what                                  default
===============================  ========================  ====================================  ==================
``IDRES_BOOTSTRAP``              ``--bootstrap``           broker(s), ``HOST:PORT[,...]``        ``localhost:9092``
``IDRES_TOPIC_PREFIX``           ``--topic-prefix``        prefix of every topic name            ``idres.``
``IDRES_RAW_PARTITIONS``         ``--partitions``          partitions of a raw topic it creates  4
``IDRES_DEADLETTER_PARTITIONS``                            partitions of the dead-letter topic   1
``IDRES_REPLICATION_FACTOR``     ``--replication-factor``  replication of the topics it creates  -1 (broker's)
``IDRES_KAFKA_COMPRESSION``      ``--compression``         none, gzip, snappy, lz4 or zstd       none
``IDRES_TRANSIT_RETENTION_HOURS``                           hours raw/validated/dead-letter keep  168
``IDRES_CHANGES_RETENTION_HOURS``                           hours idres.changes keeps changes     0 (forever)
``IDRES_KAFKA_LINGER_MS``        ``--linger-ms``           how long a batch may wait to fill     20
``IDRES_KAFKA_BATCH_BYTES``      ``--batch-bytes``         batch size per partition              262144
``IDRES_KAFKA_TIMEOUT``          ``--timeout``             seconds to reach the broker           10
``IDRES_RESOLVE_PARTITIONS``     ``--resolve-partitions``  resolve shards (topics and worker)    1
``IDRES_RESOLVE_STATE``          ``--resolve-state``       shards hold copies or parts by key    copies
===============================  ========================  ====================================  ==================

Existing topics are never altered: a raw topic that already exists keeps its partition count; a
decision-log topic with more than one partition is an error.
"""

from __future__ import annotations

import math
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Optional

import orjson

from resolver.config import ResolverConfig
from resolver.errors import ConfigError, IdresError
from resolver.normalize import Normalizer

DEFAULT_PREFIX = "idres."
DEFAULT_BOOTSTRAP = "localhost:9092"
UNKNOWN_CHANNEL = "unknown"
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
_COMPRESSION_PACKAGE = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # as in schemas.channel.ChannelEvent.channel
MAX_TOPIC_LENGTH = 249
READ_AHEAD_LINES = 2000  # see produce_lines

ENV = {
    "bootstrap": "IDRES_BOOTSTRAP",
    "prefix": "IDRES_TOPIC_PREFIX",
    "raw_partitions": "IDRES_RAW_PARTITIONS",
    "deadletter_partitions": "IDRES_DEADLETTER_PARTITIONS",
    "replication_factor": "IDRES_REPLICATION_FACTOR",
    "compression": "IDRES_KAFKA_COMPRESSION",
    "linger_ms": "IDRES_KAFKA_LINGER_MS",
    "batch_bytes": "IDRES_KAFKA_BATCH_BYTES",
    "timeout": "IDRES_KAFKA_TIMEOUT",
    "resolve_partitions": "IDRES_RESOLVE_PARTITIONS",
    "resolve_state": "IDRES_RESOLVE_STATE",
    "transit_retention_hours": "IDRES_TRANSIT_RETENTION_HOURS",
    "changes_retention_hours": "IDRES_CHANGES_RETENTION_HOURS",
}
FLAGS: dict[str, Optional[str]] = {
    "bootstrap": "--bootstrap",
    "prefix": "--topic-prefix",
    "raw_partitions": "--partitions",
    "deadletter_partitions": None,  # environment only, for now
    "replication_factor": "--replication-factor",
    "compression": "--compression",
    "linger_ms": "--linger-ms",
    "batch_bytes": "--batch-bytes",
    "timeout": "--timeout",
    "resolve_partitions": "--resolve-partitions",
    "resolve_state": "--resolve-state",
    "transit_retention_hours": None,  # environment only
    "changes_retention_hours": None,  # environment only
}


# the lowest and highest value of each count a deployment sets: Kafka takes at most 2**31 - 1 of anything, and
# kafka-python fails inside (or waits for ever) long before; a producer's linger must leave its request time (30 s)
# within its delivery time (120 s)
_BOUNDS: dict[str, tuple[int, int]] = {
    "raw_partitions": (1, 10_000), "deadletter_partitions": (1, 10_000),
    "linger_ms": (0, 60_000), "batch_bytes": (1, 64 * 1024 * 1024),
}
MAX_TIMEOUT = 3600.0  # seconds to reach the broker


class KafkaIOError(IdresError):
    """The broker cannot be reached or refused something; the message says which broker and what to check."""


# ------------------------------------------------------------------------------------------ topics
def check_topic_name(name: str, what: str = "topic name") -> str:
    if not name or len(name) > MAX_TOPIC_LENGTH or not _TOPIC_CHARS.match(name) or name in (".", ".."):
        raise ConfigError(f"{what} {name!r} is not a valid Kafka topic name "
                          f"(1-{MAX_TOPIC_LENGTH} characters of A-Z a-z 0-9 . _ -)")
    return name


@dataclass(frozen=True)
class Topics:
    """The topic names of one deployment (see the table in the module docstring)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _TOPIC_CHARS.match(self.prefix) or len(self.prefix) > 200:
            raise ConfigError(f"topic prefix {self.prefix!r} may only use A-Z a-z 0-9 . _ - "
                              f"(at most 200 characters)")

    def raw(self, channel: Optional[str] = None) -> str:
        """``PREFIXraw.<channel>``, or the single raw topic ``PREFIXraw`` when no channel is given."""
        if channel is None:
            return f"{self.prefix}raw"
        if not _CHANNEL.match(channel):
            raise ConfigError(f"channel {channel!r} is not a channel name (lower-case a-z, 0-9, _)")
        return f"{self.prefix}raw.{channel}"

    @property
    def raw_unknown(self) -> str:
        return self.raw(UNKNOWN_CHANNEL)

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}decisions"

    @property
    def changes(self) -> str:
        return f"{self.prefix}changes"

    @property
    def households(self) -> str:
        return f"{self.prefix}households"

    @property
    def keys(self) -> str:
        """The keys personal data in the decision log is sealed under (``streams.kafka_keys``)."""
        return f"{self.prefix}keys"

    def raw_pattern(self) -> str:
        """A regular expression matching every raw topic of this prefix (for pattern subscriptions)."""
        return "^" + re.escape(self.prefix) + r"raw(\.[a-z][a-z0-9_]*)?$"


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = DEFAULT_BOOTSTRAP
    prefix: str = DEFAULT_PREFIX
    raw_partitions: int = 4
    deadletter_partitions: int = 1
    replication_factor: int = -1
    compression: str = "none"
    linger_ms: int = 20
    batch_bytes: int = 256 * 1024
    timeout: float = 10.0
    resolve_partitions: int = 1  # resolve shards (``streams.kafka_shards``)
    # how resolve shards hold the state: "copies" (each worker a whole copy: ``streams.kafka_shards``) or "keys"
    # (each shard the part of it its keys own: ``streams.kafka_key_shards``)
    resolve_state: str = "copies"
    # hours the topics events only pass through (raw, validated, dead letters, shard tasks) keep them, set on
    # the topics idres creates (0: the broker's default); the decision log and the changelog are kept forever
    transit_retention_hours: float = 168.0
    # hours the changelog topic keeps changes (0: forever); the changes name identifiers, so this is how long
    # an erased customer's identifiers can outlive an erasure there
    changes_retention_hours: float = 0.0
    client_id: str = "idres"
    # where each value came from ("--flag", "$IDRES_...", absent: the default), for error messages
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    def where(self, name: str) -> str:
        """The flag or environment variable that set ``name`` (its flag when it is the default)."""
        return self.sources.get(name) or FLAGS[name] or f"${ENV[name]}"

    def origin(self, name: str) -> str:
        """How ``name`` was set, for a message: ``set by --x``, ``set by $IDRES_X`` or ``the default``."""
        source = self.sources.get(name)
        if source is None:
            return f"the default; set {FLAGS[name] + ' or ' if FLAGS[name] else ''}${ENV[name]}"
        return f"set by {source}"

    @classmethod
    def load(cls, environ: Optional[Mapping[str, str]] = None, **flags: Any) -> "KafkaSettings":
        """Flags (keyword arguments; None means not given) over environment variables over defaults."""
        environ = os.environ if environ is None else environ
        unknown = set(flags) - set(ENV) - {"client_id"}
        if unknown:
            raise TypeError(f"unknown Kafka settings {sorted(unknown)}")
        base = cls()
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, var in ENV.items():
            flag = flags.get(name)
            if flag is not None:
                raw, origin = flag, FLAGS[name] or name
            elif environ.get(var, "").strip():
                raw, origin = environ[var].strip(), f"${var}"
            else:
                continue
            values[name] = _convert(raw, origin, type(getattr(base, name)), name in ("compression", "resolve_state"))
            sources[name] = origin
        if flags.get("client_id"):
            values["client_id"] = flags["client_id"]
        settings = replace(base, sources=sources, **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.bootstrap_servers or not all(_host_port(s) for s in self.bootstrap_servers):
            raise ConfigError(f"{self.where('bootstrap')} must be HOST:PORT[,HOST:PORT...], not {self.bootstrap!r}")
        try:
            Topics(self.prefix)
        except ConfigError as exc:
            raise ConfigError(f"{self.where('prefix')}: {exc}") from None
        if not 1 <= self.resolve_partitions <= 256:
            raise ConfigError(f"{self.where('resolve_partitions')} must be a whole number of resolve shards from 1 "
                              f"to 256, not {self.resolve_partitions}")
        if self.resolve_state not in ("copies", "keys"):
            raise ConfigError(f"{self.where('resolve_state')} must be copies or keys, not {self.resolve_state!r}")
        for name, (low, high) in _BOUNDS.items():
            if getattr(self, name) < low:
                raise ConfigError(f"{self.where(name)} must be at least {low}, not {getattr(self, name)}")
            if getattr(self, name) > high:  # (past these the clients fail inside, or wait for ever)
                raise ConfigError(f"{self.where(name)} must be at most {high}, not {getattr(self, name)}")
        if not 0 <= self.changes_retention_hours < 1e7:
            raise ConfigError(f"{self.where('changes_retention_hours')} must be a number of hours >= 0 (0: forever), "
                              f"not {self.changes_retention_hours}")
        if not 0 <= self.transit_retention_hours < 1e7:
            raise ConfigError(f"{self.where('transit_retention_hours')} must be a number of hours >= 0 (0: the "
                              f"broker's default), not {self.transit_retention_hours}")
        if self.replication_factor == 0 or self.replication_factor < -1:
            raise ConfigError(f"{self.where('replication_factor')} must be -1 (the broker's default) or at "
                              f"least 1, not {self.replication_factor}")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"{self.where('compression')} must be one of "
                              f"{', '.join(COMPRESSIONS)}, not {self.compression!r}")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ConfigError(f"{self.where('timeout')} must be a positive number of seconds up to {MAX_TIMEOUT:g}, "
                              f"not {self.timeout:g}")

    def deployment_topics(self, channels: Optional[Iterable[str]] = None) -> dict[str, int]:
        """Topic -> partitions of a deployment: a raw topic per channel (plus ``raw.unknown``), or the
        single ``raw`` topic when ``channels`` is None; the dead-letter topic; the decision log (1); the
        changelog (1); the households table (1); the keys (1)."""
        topics = self.topics
        wanted: dict[str, int] = {}
        if channels is None:
            wanted[topics.raw()] = self.raw_partitions
        else:
            for channel in [*channels, UNKNOWN_CHANNEL]:
                wanted[topics.raw(channel)] = self.raw_partitions
        wanted[topics.deadletter] = self.deadletter_partitions
        wanted[topics.decisions] = 1
        wanted[topics.changes] = 1
        wanted[topics.households] = 1
        wanted[topics.keys] = 1
        return wanted


def _convert(raw: Any, origin: str, kind: type, lower: bool) -> Any:
    if kind is str:
        raw = str(raw).strip()
        return raw.lower() if lower else raw
    if isinstance(raw, kind) and not isinstance(raw, bool):
        return raw
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or (kind is float and not math.isfinite(value)):
        what = "a whole number" if kind is int else "a finite number"
        raise ConfigError(f"{origin} must be {what}, not {raw!r}") from None
    return value


def _host_port(server: str) -> Optional[tuple[str, int]]:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------------------------------ clients
def check_reachable(settings: KafkaSettings) -> None:
    """Fails fast, with a one-line reason per address, when no bootstrap address accepts a TCP
    connection (kafka-python would otherwise retry silently until its timeout)."""
    problems = []
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)  # type: ignore[misc]
        try:
            with socket.create_connection((host, port), timeout=min(settings.timeout, 5.0)):
                return
        except socket.gaierror:
            problems.append(f"{server}: host name not found")
        except ConnectionRefusedError:
            problems.append(f"{server}: connection refused")
        except socket.timeout:
            problems.append(f"{server}: no answer within {min(settings.timeout, 5.0):g} s")
        except OSError as exc:
            problems.append(f"{server}: {exc.strerror or exc}")
    if len(problems) == 1:
        what = problems[0].split(": ", 1)[1]
    else:
        what = "; ".join(problems)
    raise KafkaIOError(f"cannot reach a Kafka broker at {settings.bootstrap}: {what}. Check that the broker "
                       f"is running and that this is its listener HOST:PORT ({settings.origin('bootstrap')})")


def check_codec(settings: KafkaSettings) -> None:
    """A compression whose library is missing is a one-line error before anything is sent."""
    from kafka import codec

    available = {"none": True, "gzip": codec.has_gzip(), "snappy": codec.has_snappy(), "lz4": codec.has_lz4(),
                 "zstd": codec.has_zstd()}
    if not available.get(settings.compression, False):
        package = _COMPRESSION_PACKAGE.get(settings.compression, settings.compression)
        raise ConfigError(f"compression {settings.compression} ({settings.origin('compression')}) needs the "
                          f"{package} package: pip install {package}")


def client_error(settings: KafkaSettings, exc: Exception, doing: str) -> KafkaIOError:
    from kafka import errors as kerrors

    if isinstance(exc, kerrors.KafkaTimeoutError):
        return KafkaIOError(
            f"timed out {doing} (broker {settings.bootstrap}, {settings.timeout:g} s): something accepts "
            f"connections there, but no Kafka broker answered in time, or the broker advertises an "
            f"address this machine cannot reach (check its advertised listener)")
    detail = str(exc) or type(exc).__name__
    return KafkaIOError(f"{doing} failed (broker {settings.bootstrap}): {type(exc).__name__}: {detail}")


def admin_client(settings: KafkaSettings):
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    check_reachable(settings)
    ms = int(settings.timeout * 1000)
    try:
        return KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin",
                                bootstrap_timeout_ms=ms, request_timeout_ms=max(ms, 5000))
    except KafkaError as exc:
        raise client_error(settings, exc, "connecting to the broker") from None


def topic_configs(settings: KafkaSettings, name: str) -> dict[str, str]:
    """The configuration a topic is created with. The decision log (the source of truth) and the changelog
    are kept forever, whatever the broker's default retention; the topics events only pass through keep them
    ``transit_retention_hours`` (so personal data in them, an erased customer's too, is gone after that)."""
    topics = settings.topics
    if name == topics.decisions:
        # (and a message as large as the resolve role writes: an entry of an event near the 1 MiB a record may be
        # is about a third larger sealed, past the 1 MB a broker takes by default, and the role would stop at it)
        return {"retention.ms": "-1", "retention.bytes": "-1", "max.message.bytes": str(ENGINE_MESSAGE_BYTES)}
    if name == topics.changes and not settings.changes_retention_hours:
        return {"retention.ms": "-1", "retention.bytes": "-1"}
    if name == topics.changes:
        return {"retention.ms": str(int(settings.changes_retention_hours * 3_600_000)), "retention.bytes": "-1"}
    if name == topics.keys:
        from streams.kafka_keys import keys_topic_configs

        return keys_topic_configs()
    if name == topics.households:
        # a table: the latest value of each key is kept, and a customer's replaced or deleted (tombstoned)
        # value is compacted away within a week (a segment rolls daily; tombstones kept a day for readers)
        return {"cleanup.policy": "compact", "max.compaction.lag.ms": str(7 * 86_400_000),
                "segment.ms": str(86_400_000), "delete.retention.ms": str(86_400_000)}
    if name.startswith(f"{settings.prefix}keyshard."):
        # (a key shards' session loads their parts, personal data, through these: nothing reads them once it
        # is over, so they are kept an hour, in segments of ten minutes, whatever the transit retention)
        return {"retention.ms": str(KEY_SHARD_RETENTION_MS), "segment.ms": str(KEY_SHARD_RETENTION_MS // 6)}
    large = {"max.message.bytes": str(ENGINE_MESSAGE_BYTES)} if name == f"{settings.prefix}validated" else {}
    # (the validated topic: a record's text escaped again, up to twice as long)
    if settings.transit_retention_hours > 0:
        return {"retention.ms": str(int(settings.transit_retention_hours * 3_600_000)), **large}
    return large


KEY_SHARD_RETENTION_MS = 3_600_000
# the largest message idres writes to its own topics (the worker's producer sends up to 4 MiB), which the topics it
# creates take whatever the broker's default (``message.max.bytes``, about 1 MB)
ENGINE_MESSAGE_BYTES = 5 << 20


def ensure_topics(admin, settings: KafkaSettings, wanted: Mapping[str, int],
                  exact: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Creates the missing topics of ``wanted`` (topic -> partitions) and waits until they are usable.

    Topics that exist are left as they are; for a name in ``exact`` a different partition count is an
    error. Returns topic -> ``{"partitions": N, "created": bool}``. Safe when another process creates
    the same topics at the same time.
    """
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    for name in wanted:
        check_topic_name(name)
    ms = int(settings.timeout * 1000)
    spec = {name: {"num_partitions": n, "replication_factor": settings.replication_factor,
                   **({"configs": c} if (c := topic_configs(settings, name)) else {})}
            for name, n in wanted.items()}
    try:
        response = admin.create_topics(spec, timeout_ms=ms, raise_errors=False)
        created = []
        for topic in response["topics"]:
            code = topic.get("error_code", 0)
            if code == 0:
                created.append(topic["name"])
            elif code != TopicAlreadyExistsError.errno:
                from kafka.errors import for_code

                err = for_code(code)
                raise KafkaIOError(f"cannot create topic {topic['name']} on {settings.bootstrap}: "
                                   f"{topic.get('error_message') or err.description} ({err.__name__})")
        if created:
            admin.wait_for_topics(created, timeout_ms=ms)
        described = admin.describe_topics(list(wanted))
    except KafkaError as exc:
        raise client_error(settings, exc, "creating topics") from None
    counts = {t["name"]: len(t.get("partitions") or ()) for t in described if t.get("error_code", 0) == 0}
    out: dict[str, dict[str, Any]] = {}
    for name, n in wanted.items():
        if name not in counts:
            raise KafkaIOError(f"topic {name} is not visible on {settings.bootstrap} after creating it")
        if name in exact and counts[name] != n:
            raise KafkaIOError(f"topic {name} on {settings.bootstrap} has {counts[name]} partitions but must "
                               f"have {n}; delete it or choose another --topic-prefix")
        out[name] = {"partitions": counts[name], "created": name in created}
    return out


def create_deployment_topics(settings: KafkaSettings,
                             channels: Optional[Iterable[str]] = None) -> dict[str, dict[str, Any]]:
    """Creates every topic a deployment needs (``KafkaSettings.deployment_topics``); an existing
    decision-log topic with more than one partition is an error (it must keep one global order)."""
    admin = admin_client(settings)
    try:
        return ensure_topics(admin, settings, settings.deployment_topics(channels),
                             exact=[settings.topics.decisions])
    finally:
        admin.close()


def producer(settings: KafkaSettings, **overrides: Any):
    """A kafka-python producer with idempotence and acks=all (kafka-python 3's defaults, set here on
    purpose), batching and compression from the settings, and no topic auto-creation."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    compression = None if settings.compression == "none" else settings.compression
    check_codec(settings)
    check_reachable(settings)
    ms = int(settings.timeout * 1000)
    config = dict(bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-producer",
                  acks="all", enable_idempotence=True, compression_type=compression,
                  linger_ms=settings.linger_ms, batch_size=settings.batch_bytes,
                  allow_auto_create_topics=False, bootstrap_timeout_ms=ms, max_block_ms=max(ms, 30_000))
    config.update(overrides)
    try:
        prod = KafkaProducer(**config)
    except KafkaError as exc:
        raise client_error(settings, exc, "connecting to the broker") from None
    # kafka-python 3.0.12 does not hand allow_auto_create_topics to its metadata object, so a send to a
    # missing topic would still auto-create it (with the broker's default partition count)
    meta = getattr(prod, "_metadata", None)
    if isinstance(getattr(meta, "config", None), dict) and "allow_auto_create_topics" in meta.config:
        meta.config["allow_auto_create_topics"] = config["allow_auto_create_topics"]
    return prod


# ------------------------------------------------------------------------------------------ routing
class Router:
    """Chooses the key (strongest normalized identifier, else event ID, else none) and the channel of
    a raw line. Reads the line, never changes it."""

    def __init__(self, config: Optional[ResolverConfig] = None):
        self.config = config or ResolverConfig()
        self.normalizer = Normalizer(self.config)
        self._priority: dict[str, int] = {}

    def _rank(self, id_type: str) -> int:
        rank = self._priority.get(id_type)
        if rank is None:
            rank = self._priority[id_type] = self.config.rule(id_type).priority
        return rank

    def route(self, line: bytes) -> tuple[Optional[str], Optional[bytes]]:
        """``(channel or None, key or None)`` of one raw line."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None, None
        if not isinstance(obj, dict):
            return None, None
        channel = obj.get("channel")
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            channel = None
        return channel, self.key(obj)

    def key(self, obj: dict) -> Optional[bytes]:
        best: Optional[tuple[int, str, str]] = None
        ids = obj.get("identifiers")
        if isinstance(ids, dict):
            identifier = self.normalizer.identifier
            for id_type, raw in ids.items():
                if raw is None or not id_type:
                    continue
                value, _ = identifier(id_type, raw)
                if value is None:
                    continue
                cand = (self._rank(id_type), id_type, value)
                if best is None or cand < best:
                    best = cand
        if best is not None:
            return f"{best[1]}:{best[2]}".encode()
        event_id = obj.get("event_id")
        if isinstance(event_id, str) and event_id:
            return f"event_id:{event_id}".encode()
        return None


@lru_cache(maxsize=1 << 17)
def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key (the Java client's ``Utils.murmur2``, as an unsigned 32-bit value);
    the same result as ``kafka.partitioner.default.murmur2``, about twice as fast, and memoized
    because one customer's key repeats."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length >> 2
    for k in struct.unpack_from(f"<{n4}I", data):
        k = (k * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail:
        base = n4 << 2
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java and kafka-python alike) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# ------------------------------------------------------------------------------------------ produce
@dataclass
class ProduceReport:
    bootstrap: str = ""
    lines: int = 0
    blank_lines: int = 0
    messages: int = 0
    bytes: int = 0
    keyless: int = 0
    failed: int = 0
    first_failure: Optional[str] = None
    seconds: float = 0.0
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        rate = round(self.messages / self.seconds) if self.seconds > 0 else None
        mb = round(self.bytes / self.seconds / 1e6, 2) if self.seconds > 0 else None
        return {"bootstrap": self.bootstrap, "lines": self.lines, "blank_lines_skipped": self.blank_lines,
                "messages": self.messages, "bytes": self.bytes, "keyless": self.keyless,
                "failed": self.failed, "first_failure": self.first_failure,
                "seconds": round(self.seconds, 3), "messages_per_second": rate, "megabytes_per_second": mb,
                "topics": self.topics}


def produce_lines(lines: Iterable[bytes], settings: KafkaSettings, *, topic: Optional[str] = None,
                  config: Optional[ResolverConfig] = None, read_ahead: int = READ_AHEAD_LINES,
                  progress: Optional[Callable[[int], None]] = None, time_order: bool = False) -> ProduceReport:
    """Publishes every non-blank line, its bytes unchanged (less the line break), to the raw topic of
    its channel (``topic`` to send all to one topic), keyed by ``Router``. Missing topics are created
    with ``settings.raw_partitions`` partitions first. Waits until every message is acknowledged.

    Lines are read ``read_ahead`` at a time so that the topics they need are created and learnt by
    the producer together (one new topic alone costs ~0.1 s); use 1 for a live pipe, so that no line
    waits for later ones.

    ``progress`` is called with the input bytes consumed since its previous call. Lines the broker
    did not take are counted in ``failed`` (with the first reason), never silently dropped.

    A binary file object (an open file, ``sys.stdin.buffer``) is read as ``idres ingest`` reads it:
    gzip decompressed, a UTF-8 BOM skipped, a JSON array and other shapes refused (``streams.inputs``).

    ``time_order``: the whole input is read first and its lines published in event-time order
    (``streams.ordering``), so that every partition holds its events in time order and the resolve role's
    watermark can decide them as ``idres ingest`` does.
    """
    from kafka.errors import KafkaError, KafkaTimeoutError

    from streams.inputs import InputError, InputStream, as_input

    if topic is not None:
        check_topic_name(topic, "--topic")
    lines = as_input(lines)
    from streams.ordering import read_in_order

    numbered, (meter,) = read_in_order([lines], progress, time_order)
    read_ahead = max(1, read_ahead)
    check_codec(settings)
    topics = settings.topics
    router = Router(config)
    report = ProduceReport(bootstrap=settings.bootstrap)
    admin = admin_client(settings)
    try:
        prod = producer(settings)
    except BaseException:
        admin.close()
        raise
    sent: dict[str, list[int]] = {}  # topic -> [messages, bytes] handed to the producer
    partitions: dict[str, int] = {}  # topic -> partition count, as the producer sees it
    # records the broker refused (told by the sender thread too): topic -> [messages, bytes], and the first of
    # them by line (line, topic, reason); counted, not kept (a long outage refuses every record)
    refused: dict[str, list[int]] = {}
    first_refused: list[tuple[int, str, str]] = []
    refusing = threading.Lock()

    def failed(lineno: int, name: str, size: int, exc: BaseException) -> None:
        with refusing:
            counts = refused.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += size
            if not first_refused or lineno < first_refused[0][0]:
                first_refused[:] = [(lineno, name, f"{type(exc).__name__}: {exc}")]

    def publish(chunk: list[tuple[int, bytes, str, Optional[bytes]]], new: set[str]) -> None:
        if new:
            for name, info in ensure_topics(admin, settings, {n: settings.raw_partitions for n in sorted(new)}).items():
                report.topics[name] = {"messages": 0, "bytes": 0, **info}
                sent[name] = [0, 0]
            _learn_topics(prod, new)
            for name in new:
                partitions[name] = len(prod.partitions_for(name))
            new.clear()
        send = prod.send
        for lineno, value, name, key in chunk:
            counts = sent[name]
            counts[0] += 1
            counts[1] += len(value)
            # the default partitioner's choice, computed here faster (kafka-python's murmur2 is slow)
            partition = None if key is None else partition_for(key, partitions[name])
            try:
                send(name, value, key=key, partition=partition).add_errback(failed, lineno, name, len(value))
            except KafkaTimeoutError as exc:  # no metadata for the topic within max_block_ms
                raise client_error(settings, exc, f"publishing to {name}") from None
            except KafkaError as exc:  # e.g. a record larger than the producer's max_request_size
                failed(lineno, name, len(value), exc)
        chunk.clear()

    started = time.perf_counter()
    count = 0
    chunk: list[tuple[int, bytes, str, Optional[bytes]]] = []
    new: set[str] = set()
    try:
        route = router.route
        for _, lineno, line in numbered:
            count += 1
            meter.add(len(line))
            value = line[:-1] if line.endswith(b"\n") else line
            if value.endswith(b"\r"):
                value = value[:-1]
            if not value.strip():
                report.blank_lines += 1
                continue
            channel, key = route(value)
            if key is None:
                report.keyless += 1
            name = topic or (topics.raw(channel) if channel else topics.raw_unknown)
            if name not in sent:
                new.add(name)
            chunk.append((lineno, value, name, key))
            if len(chunk) >= read_ahead:
                publish(chunk, new)
            if count % 2000 == 0:
                meter.report()
        publish(chunk, new)
        try:
            prod.flush(timeout=None)
        except KafkaError as exc:
            raise client_error(settings, exc, "waiting for the broker to acknowledge") from None
        report.seconds = time.perf_counter() - started
        meter.report(final=True)
        if isinstance(lines, InputStream) and lines.error:
            raise InputError(f"{lines.error}; the lines before it were published: produce a complete copy "
                             f"of the file (the stream ignores event IDs it has already decided)")
    finally:
        prod.close(timeout=5)
        admin.close()
    report.lines = count - report.blank_lines  # (non-blank lines)
    if time_order:
        report.blank_lines = meter.read.blank
    for name, (messages, size) in refused.items():
        sent[name][0] -= messages
        sent[name][1] -= size
    for name, (messages, size) in sent.items():
        report.topics[name]["messages"] = messages
        report.topics[name]["bytes"] = size
        report.messages += messages
        report.bytes += size
    report.failed = sum(messages for messages, _ in refused.values())
    if first_refused:
        lineno, name, reason = first_refused[0]
        report.first_failure = f"line {lineno} (to {name}): {reason}"
    return report


def _learn_topics(prod, names: Iterable[str]) -> None:
    """Makes the producer fetch metadata for all ``names`` in one refresh instead of one refresh per
    topic (kafka-python waits up to ``retry_backoff_ms`` between refreshes, ~0.1 s per new topic)."""
    names = sorted(names)
    sender = getattr(prod, "_sender", None)
    if hasattr(sender, "add_topic"):  # kafka-python 3.0 internals; without them: one refresh per topic
        for name in names:
            sender.add_topic(name)
    for name in names:
        prod.partitions_for(name)
