"""`idres` for tests on the Tansu broker, with short fetch waits.

    python -m tests.tansu_worker ARGS...   # runs `idres ARGS` (the tests run `idres produce` so: see below)

Tansu answers a fetch only when its wait (``fetch_max_wait_ms``) is over, even when records arrived
meanwhile; Apache Kafka answers as soon as there is data. Faust fixes the wait of its consumers at 1,500 ms
(``faust/transport/drivers/aiokafka.py``), so on Tansu each hop through a topic a worker consumes costs up
to 1.5 s, and the resolve shards' two rounds per window cost seconds. This caps every consumer's wait at
``IDRES_TEST_FETCH_WAIT_MS`` (50) in the process, and the key shards' at 25 ms (``tests.kafka_broker.
cap_key_shard_wait``), which changes nothing on Apache Kafka.

With ``IDRES_TEST_DIE_BEFORE_SHRED=1``, this worker exits at once where it would shred the keys of an
erasure it has logged (as if killed there); with ``IDRES_TEST_SHRED_WAIT=S`` its readers wait S seconds
(not two minutes) for an erasure's keys to be shredded before they go on without.

With ``IDRES_TEST_HANG_ON_STOP=1``, a worker that decides to stop never finishes stopping (its Faust app's
``crash`` waits forever): what ``IDRES_STOP_GRACE`` bounds.

With ``IDRES_TEST_VALIDATE_FAIL_AT=N``, the validate role fails (an error it does not expect, as a broker gone
would raise) part way through each batch holding a raw record at offset N or after: what any unforeseen error
in its loop is.

With ``IDRES_TEST_SHARD_HANG=S``, this worker answers each task of resolve shard S only after
``IDRES_TEST_SHARD_HANG_S`` seconds (6): a worker alive in its group but stuck.

Reproduction (tests/kafka_broker.py starts Tansu): a kafka-python consumer assigned to a topic, polling,
while another thread produces one record every 0.3 s: the median time from send to receipt is 453 ms with
``fetch_max_wait_ms=1500`` and 5 ms with 100.
"""

from __future__ import annotations

import os
import sys

WAIT_MS = int(os.environ.get("IDRES_TEST_FETCH_WAIT_MS", "50"))


def _cap() -> None:
    import aiokafka
    import kafka

    real = aiokafka.AIOKafkaConsumer.__init__

    def init(self, *topics, **config):
        config["fetch_max_wait_ms"] = min(config.get("fetch_max_wait_ms", 500), WAIT_MS)
        real(self, *topics, **config)

    aiokafka.AIOKafkaConsumer.__init__ = init
    kafka.KafkaConsumer.DEFAULT_CONFIG["fetch_max_wait_ms"] = WAIT_MS
    from tests.kafka_broker import cap_key_shard_wait

    cap_key_shard_wait()  # (the key shards' fetch waits: 25 ms)


def producer_waits_for_partitions() -> None:
    """Tansu can tell a topic that exists with no partitions (Apache Kafka tells LEADER_NOT_AVAILABLE until a
    new topic's partitions have leaders, and kafka-python waits on that); kafka-python's producer then has no
    partition for a record sent without a key: `idres produce` failed once in a clean-clone run with "internal
    error: ValueError: Partitioner did not assign a partition for topic ...raw.web!", right after `idres
    topics` (not reproduced in 40 topics created and asked for at once on an idle broker). Here the producer's
    metadata is asked again until the topic has partitions (30 s at most)."""
    import time

    import kafka

    real = kafka.KafkaProducer.partitions_for

    def partitions_for(self, topic):
        parts = real(self, topic)
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            self._metadata.request_update()
            self._sender.wakeup()
            time.sleep(0.1)
            parts = self._metadata.partitions_for_topic(topic)
        return parts

    kafka.KafkaProducer.partitions_for = partitions_for

    # A topic's partitions can also be missing from one metadata answer long after the topic was made: in a
    # clean-clone run (2 cores busy, a worker just killed and another joining its group), `idres produce` of a
    # second file to topics it had published to a minute before failed with "internal error: ValueError:
    # Unrecognized partition 0 for topic ...raw.email" (kafka-python checks an explicit partition against the
    # metadata it last read). Not reproduced in 49,000 looks at 16 topics' metadata, idle and with the cores
    # busy. Apache Kafka lists every partition of a topic it knows. Here the metadata is asked again until the
    # partition is listed (30 s at most).
    real_partition = kafka.KafkaProducer._partition

    # A record sent without a partition fails the same way with the topic missing from the metadata answer read
    # last ("Partitioner did not assign a partition for topic ...raw.call_center!", `idres produce` in a
    # clean-clone run with 2 cores busy: kafka-python's ``_partition`` gives None for a topic the metadata does
    # not list). Here too the metadata is asked again until it lists the topic.
    def partition_of(self, topic, partition, *args):
        deadline = time.monotonic() + 30
        while True:
            try:
                got = real_partition(self, topic, partition, *args)
            except ValueError:
                if partition is None or partition < 0 or time.monotonic() > deadline:
                    raise
            else:
                if got is not None or time.monotonic() > deadline:
                    return got
            self._metadata.request_update()
            self._sender.wakeup()
            time.sleep(0.1)

    kafka.KafkaProducer._partition = partition_of


def _hang(shard: int) -> None:
    import time

    from streams.kafka_shards import ShardReplica

    real = ShardReplica.handle
    pause = float(os.environ.get("IDRES_TEST_SHARD_HANG_S", "6"))

    def handle(self, task):
        if task.get("shard") == shard:
            time.sleep(pause)
        return real(self, task)

    ShardReplica.handle = handle


def _die_before_shredding() -> None:
    from streams.kafka_keys import KafkaKeys

    def shred(self, subjects):
        os._exit(9)  # (as a SIGKILL at that moment: the erasure is logged, its keys are not shredded)

    KafkaKeys.shred = shred


def _fail_validating_at(offset: int) -> None:
    from streams.stream_app import StreamJobs

    real = StreamJobs._ends_said

    def ends_said(self, ends):
        if any(end > offset for end in ends.values()):
            raise RuntimeError("a fault made for the test")
        return real(self, ends)

    StreamJobs._ends_said = ends_said


def _hang_on_stop() -> None:
    import asyncio

    import faust

    async def crash(self, reason):
        await asyncio.Event().wait()  # (stopping that never ends)

    faust.App.crash = crash


producer_waits_for_partitions()
if sys.argv[1:2] != ["produce"]:  # (`idres produce` consumes nothing)
    _cap()
if os.environ.get("IDRES_TEST_HANG_ON_STOP"):
    _hang_on_stop()
if os.environ.get("IDRES_TEST_SHRED_WAIT"):
    import streams.stream_app

    streams.stream_app.SHRED_WAIT = float(os.environ["IDRES_TEST_SHRED_WAIT"])
if os.environ.get("IDRES_TEST_DIE_BEFORE_SHRED"):
    _die_before_shredding()
if os.environ.get("IDRES_TEST_VALIDATE_FAIL_AT"):
    _fail_validating_at(int(os.environ["IDRES_TEST_VALIDATE_FAIL_AT"]))
if os.environ.get("IDRES_TEST_SHARD_HANG"):
    _hang(int(os.environ["IDRES_TEST_SHARD_HANG"]))

if __name__ == "__main__":
    from streams.cli import main

    sys.exit(main())
