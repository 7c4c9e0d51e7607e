"""How long one round trip between two processes takes, for the key shards' model (``benchmarks/key_shards.py
--round-trip-ms``): a message sent, read by the other process and answered, the answer read.

    python benchmarks/round_trips.py [--bytes 1000,30000] [--count 300] [--bootstrap HOST:PORT]

Two transports: a pipe between two processes of this machine (``multiprocessing``), and a Kafka broker (the
message produced to one topic, which the other process consumes and answers on a second; both one partition;
kafka-python, the producer acknowledged by the leader, ``linger_ms`` 0, consumers fetching with
``fetch_max_wait_ms`` 5, which Apache Kafka answers as soon as a record arrives and the test broker only when
that wait is over). The broker is the one the tests start (Tansu, or Apache Kafka where a Docker engine
answers) unless ``--bootstrap`` names one. Message sizes: what a window's round sends from one shard to
another (``key_shards.py`` prints the kilobytes sent per event; a 1,024-event window at 16 shards sends
about 1 KB a message, and a slice's parts tens of KB).

Printed per transport and size: the round trip's median, 90th and 99th percentile in milliseconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WAIT_MS = 5


def _echo_pipe(conn) -> None:
    while True:
        data = conn.recv_bytes()
        if not data:
            return
        conn.send_bytes(data)


def over_pipe(size: int, count: int) -> list[float]:
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_echo_pipe, args=(there,), daemon=True)
    proc.start()
    payload = os.urandom(size)
    out = []
    for _ in range(count + 20):
        started = time.perf_counter()
        here.send_bytes(payload)
        here.recv_bytes()
        out.append(time.perf_counter() - started)
    here.send_bytes(b"")
    proc.join(5)
    return out[20:]


def _echo_kafka(bootstrap: str, ask: str, answer: str, ready) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=WAIT_MS, enable_auto_commit=False)
    consumer.assign([TopicPartition(ask, 0)])
    consumer.seek_to_beginning()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    ready.set()
    while True:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                if not record.value:
                    producer.flush()
                    return
                producer.send(answer, record.value)
                producer.flush()


def over_kafka(bootstrap: str, size: int, count: int) -> list[float]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from tests.kafka_broker import create_topics

    ask, answer = f"rt-ask-{uuid.uuid4().hex[:8]}", f"rt-answer-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {ask: 1, answer: 1})
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_echo_kafka, args=(bootstrap, ask, answer, ready), daemon=True)
    proc.start()
    ready.wait(60)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=WAIT_MS, enable_auto_commit=False)
    consumer.assign([TopicPartition(answer, 0)])
    consumer.seek_to_beginning()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    payload = os.urandom(size)
    out = []
    for _ in range(count + 20):
        started = time.perf_counter()
        producer.send(ask, payload)
        producer.flush()
        got = False
        while not got:
            for records in consumer.poll(timeout_ms=5000).values():
                got = got or bool(records)
            if time.perf_counter() - started > 30:
                raise SystemExit("idres: error: no answer within 30 s through the broker; is it running?")
        out.append(time.perf_counter() - started)
    producer.send(ask, b"")
    producer.flush()
    proc.join(10)
    return out[20:]


def _row(name: str, size: int, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=100)
    return f"| {name} | {size:,} | {statistics.median(ms):.2f} | {q[89]:.2f} | {q[98]:.2f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", default="1000,30000", help="message sizes (comma-separated)")
    ap.add_argument("--count", type=int, default=300, help="round trips measured per transport and size")
    ap.add_argument("--bootstrap", help="a running Kafka broker (default: start the tests' broker)")
    ap.add_argument("--no-kafka", action="store_true", help="the pipe only")
    args = ap.parse_args()
    sizes = [int(x) for x in args.bytes.split(",")]
    print(f"{os.cpu_count()} cores; {args.count} round trips each\n")
    print("| transport | bytes | median ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for size in sizes:
        print(_row("pipe between two processes", size, over_pipe(size, args.count)), flush=True)
    if args.no_kafka:
        return 0
    from tests.kafka_broker import kafka_broker, select_broker

    choice = select_broker({"KAFKA_BOOTSTRAP": args.bootstrap} if args.bootstrap else {})
    with kafka_broker(Path(tempfile.mkdtemp(prefix="idres-round-trips-")), choice) as bootstrap:
        for size in sizes:
            print(_row(f"Kafka ({choice.kind}), two topics", size,
                       over_kafka(bootstrap, size, args.count)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
