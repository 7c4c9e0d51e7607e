"""Resolve shards on Kafka: events/s with 1, 2 and 3 resolve partitions, and recovery after SIGKILL.

    python benchmarks/kafka_shards.py [--people 3000] [--shards 1,2,3] [--resolve-state keys] [--bootstrap HOST:PORT]

For each N: fresh topics (`idres topics --resolve-partitions N`), the same events produced (below), then N
workers running every role with `--resolve-partitions N` (one worker for N = 1), the shards holding copies of
the state or, with `--resolve-state keys`, its parts by key. Printed: the steady rate
(events over the time from the first decision-log message to the last, by the broker's timestamps), the
resolve stage's rate (from the first validated record to the last decision-log message: a coordinator that
decides large batches writes the log in few messages, which the steady rate then overstates), the wall
time from the workers' start to the last event projected, the events decided out of time order (late: the
log is restated after them, and the workers are stopped once that is done and projected), and whether every
event got the profile `idres ingest` gives it. Then, with 2 shards, the
worker that answers shard tasks without coordinating is killed with SIGKILL once a third of the events are
logged and started again: printed are the seconds the log did not grow, and the check again.

The events go to one raw topic of one partition, in event-time order (`idres produce --topic
PREFIXraw.history --partitions 1`; not to `PREFIXraw`, which `idres topics` creates with 4 partitions, where
`--partitions 1` does not apply: the runs before 2026-12-06 went there): with several raw partitions, validate
workers starved of CPU on a small machine can make events later than the reorder buffer waits for, and those
are decided out of time order (counted as late, and printed). On a machine with few cores the workers, the broker and the coordinator share them: say so
with the figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stream_throughput import metric  # noqa: E402
from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402
from tests.kafka_broker import free_port, kafka_broker, select_broker  # noqa: E402


STATE = "copies"  # (--resolve-state: how the shards hold the state)


def start(bootstrap: str, prefix: str, shards: int, log: Path, name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    # (tests.tansu_worker: the test broker answers a fetch only when its wait is over; see there)
    proc = subprocess.Popen([sys.executable, "-m", "tests.tansu_worker", "worker", "--bootstrap", bootstrap,
                             "--topic-prefix", prefix, "--role", "all", "--resolve-partitions", str(shards),
                             "--resolve-state", STATE, "--web-port", str(port), "--session-timeout", "6",
                             "--loglevel", "warn",
                             "--data-dir", str(log.parent / f"data-{prefix}{name}")],
                            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    return proc, port


def total(ports: list[int], name: str) -> float:
    return sum(metric(p, name) for p in ports)


def settled(bootstrap: str, prefix: str, ports: list[int], n: int) -> bool:
    """Every event decided, no late event waiting for its restatement, nothing held for reordering, and every
    entry of the decision log (a restatement's included) projected: what the tests wait for (``all_decided``)."""
    from streams.kafka_io import KafkaSettings
    from streams.stream_app import LogScan

    # (the worker holding the decision-log partition projects it: it has applied every entry; a worker that
    # held it before a rebalance stopped counting where it was)
    applied = max(metric(p, "idres_log_entries_applied") for p in ports)
    if applied < n or total(ports, "idres_late_events_pending") or total(ports, "idres_reorder_held_events"):
        return False
    return applied == LogScan(KafkaSettings.load(bootstrap=bootstrap, prefix=prefix)).entries


def wait_settled(bootstrap: str, prefix: str, ports: list[int], n: int, seconds: float = 120.0) -> bool:
    """Waits (at most ``seconds``) until ``settled``; whether it was."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if settled(bootstrap, prefix, ports, n):
            return True
        time.sleep(0.5)
    return False


def produce_one(bootstrap: str, prefix: str, events: Path) -> None:
    subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(events), "--bootstrap", bootstrap,
                    "--topic-prefix", prefix, "--topic", f"{prefix}raw.history", "--partitions", "1"],
                   cwd=ROOT, check=True, capture_output=True)


def same_as_ingest(bootstrap: str, prefix: str, events: Path, work: Path) -> bool:
    import duckdb

    from streams.embedded import EmbeddedEngine

    snap = work / f"{prefix}duckdb"
    subprocess.run([sys.executable, "-m", "streams.cli", "snapshot", "--bootstrap", bootstrap, "--topic-prefix",
                    prefix, "--out", str(snap)], cwd=ROOT, check=True, capture_output=True)
    if not hasattr(same_as_ingest, "embedded"):
        with EmbeddedEngine(work / "embedded") as engine:
            engine.ingest_file(events)
            same_as_ingest.embedded = sorted(zip(engine.views.ev_id, engine.views.ev_profile))
    with duckdb.connect(str(snap), read_only=True) as con:
        return con.execute("SELECT event_id, profile_id FROM events ORDER BY event_id").fetchall() == \
            same_as_ingest.embedded


def decision_stamps(bootstrap: str, prefix: str, events: int) -> list[int]:
    """The broker's timestamps of the decision-log messages up to the one deciding the ``events``-th event (the
    workers' /metrics may not answer while they compute; a restatement after late events, written later, is
    left out)."""
    from streams.kafka_io import KafkaSettings
    from streams.stream_app import decision_entries, read_to_end

    stamps: list[int] = []
    seen = [0]
    settings = KafkaSettings.load(bootstrap=bootstrap, prefix=prefix)

    def note(record) -> None:
        if seen[0] < events:
            seen[0] += sum(1 for entry in decision_entries(record.value, settings)
                           if any(d["type"] == "interaction_recorded" for d in entry))
            stamps.append(record.timestamp)

    read_to_end(settings, settings.topics.decisions, note)
    return stamps


def log_span(bootstrap: str, prefix: str, events: int) -> float:
    """Seconds from the first decision-log message to the one deciding the ``events``-th event."""
    stamps = decision_stamps(bootstrap, prefix, events)
    return (max(stamps) - min(stamps)) / 1000 if stamps else float("nan")


def resolve_span(bootstrap: str, prefix: str, events: int) -> float:
    """Seconds from the first validated record (the resolve role could begin) to the decision-log message
    deciding the ``events``-th event: unlike ``log_span``, the first batch's deciding counts (a coordinator
    that decides large batches writes the log in few messages)."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.kafka_io import KafkaSettings
    from streams.stream_app import validated_topic

    topic = validated_topic(KafkaSettings.load(bootstrap=bootstrap, prefix=prefix))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())])
        first, deadline = None, time.monotonic() + 10
        while time.monotonic() < deadline and first is None:
            for records in consumer.poll(timeout_ms=500).values():
                first = min([r.timestamp for r in records] + ([first] if first is not None else []))
    finally:
        consumer.close()
    stamps = decision_stamps(bootstrap, prefix, events)
    return (max(stamps) - first) / 1000 if stamps and first is not None else float("nan")


def topics(bootstrap: str, prefix: str, shards: int) -> None:
    subprocess.run([sys.executable, "-m", "streams.cli", "topics", "--bootstrap", bootstrap, "--topic-prefix", prefix,
                    "--resolve-partitions", str(shards), "--resolve-state", STATE], cwd=ROOT, check=True,
                   capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--shards", default="1,2,3")
    ap.add_argument("--bootstrap", help="a running broker (default: start Tansu as the tests do)")
    ap.add_argument("--resolve-state", choices=("copies", "keys"), default="copies",
                    help="how the shards hold the state (README, \"Resolve shards\")")
    ap.add_argument("--no-kill", action="store_true", help="leave out the SIGKILL run")
    args = ap.parse_args()
    global STATE
    STATE = args.resolve_state
    work = Path(tempfile.mkdtemp(prefix="idres-kafka-shards-"))
    events = work / "events.jsonl"
    stats = write_dataset(events, work / "truth.csv", SyntheticConfig(people=args.people, seed=args.seed))
    n = stats["events"]
    print(f"{stats['lines']:,} lines, {n:,} valid events; {os.cpu_count()} cores on this machine; the shards hold "
          f"{STATE}\n")
    log = work / "workers.log"
    choice = select_broker({"KAFKA_BOOTSTRAP": args.bootstrap} if args.bootstrap else {})
    with kafka_broker(work, choice) as bootstrap:
        print("| resolve partitions | workers | steady events/s | resolve-stage events/s | wall s | late events | "
              "same profiles and IDs as `idres ingest` |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        notes: list[str] = []
        for shards in [int(s) for s in args.shards.split(",")]:
            prefix = f"s{shards}."
            topics(bootstrap, prefix, shards)
            produce_one(bootstrap, prefix, events)
            started = time.perf_counter()
            workers = [start(bootstrap, prefix, shards, log, f"w{i}") for i in range(shards)]
            ports = [p for _, p in workers]
            while total(ports, "idres_log_entries_applied") < n:
                if any(proc.poll() is not None for proc, _ in workers):
                    raise SystemExit(f"a worker exited; see {log}")
                time.sleep(0.2)
            last = time.perf_counter()
            late = total(ports, "idres_resolve_late_events_total")
            # (late events are restated: then the result is final)
            final = "" if wait_settled(bootstrap, prefix, ports, n) else " (not settled within 120 s)"
            late = max(late, total(ports, "idres_resolve_late_events_total"))
            counts = {name: total(ports, f"idres_{name}_total") for name in (
                "restatements", "key_shard_sessions", "key_shard_sessions_lost", "resolve_shard_failures")}
            for proc, _ in workers:
                proc.send_signal(signal.SIGTERM)
            for proc, _ in workers:
                proc.wait()
            same = same_as_ingest(bootstrap, prefix, events, work)
            print(f"| {shards} | {len(workers)} | {n / log_span(bootstrap, prefix, n):,.0f} | "
                  f"{n / resolve_span(bootstrap, prefix, n):,.0f} | {last - started:.1f} | "
                  f"{late:,.0f} | {'yes' if same else 'NO'}{final} |", flush=True)
            notes.append(f"{shards} partition(s): " + ", ".join(f"{k} {v:,.0f}" for k, v in counts.items()))

        print("\n" + "\n".join(notes) + f"\n(the workers' logs: {log})", flush=True)
        if args.no_kill:
            return 0

        prefix = "kill."
        topics(bootstrap, prefix, 2)
        produce_one(bootstrap, prefix, events)
        workers = [start(bootstrap, prefix, 2, log, f"k{i}") for i in range(2)]
        ports = [p for _, p in workers]
        while total(ports, "idres_log_entries_written_total") < n / 3:
            time.sleep(0.1)
        victim = next((i for i, p in enumerate(ports) if not metric(p, "idres_log_entries_written_total")), 1)
        workers[victim][0].send_signal(signal.SIGKILL)
        workers[victim][0].wait()
        killed_at = time.perf_counter()
        coordinator = ports[1 - victim]
        at_kill = metric(coordinator, "idres_log_entries_written_total")
        workers[victim] = start(bootstrap, prefix, 2, log, "k-again")
        ports = [p for _, p in workers]
        resumed = None
        while total(ports, "idres_log_entries_applied") < n:
            if resumed is None and metric(coordinator, "idres_log_entries_written_total") > at_kill:
                resumed = time.perf_counter()
            time.sleep(0.1)
        final = "" if wait_settled(bootstrap, prefix, ports, n) else " (not settled within 120 s)"
        for proc, _ in workers:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in workers:
            proc.wait()
        same = same_as_ingest(bootstrap, prefix, events, work)
        stall = (resumed - killed_at) if resumed is not None else float("nan")
        print(f"\nA shard worker killed with SIGKILL at {at_kill:,.0f} of {n:,} events: the log grew again after "
              f"{stall:.1f} s; same profiles and IDs as `idres ingest`: {'yes' if same else 'NO'}{final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
