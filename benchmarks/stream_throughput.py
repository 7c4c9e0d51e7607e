"""Events/s through a Kafka-protocol broker: the stream jobs end to end, and the raw consume ceiling.

    python benchmarks/stream_throughput.py                  # 20,000 people (~200,000 events), Tansu broker
    python benchmarks/stream_throughput.py --bootstrap HOST:PORT --people 50000
    python benchmarks/stream_throughput.py --events records.jsonl --runs resolve   # a file of events

Runs, each on fresh topics with the same events produced to per-channel raw topics (4 partitions):
1. the raw ceiling: one kafka-python consumer reading every raw partition, in the same run;
2. one worker running every role (validate, resolve, project);
3. two validate workers and one resolve worker, as separate processes;
4. one resolve worker alone, on input the validate workers had already validated (its own ceiling);
5. recovery: the resolve worker of run 3's layout killed with SIGKILL mid-stream and started again.
Rates are "steady": from the first decision-log entry written to the last event resolved (decided, or
refused by the resolve role; the entries a restatement writes again are not counted, and how many
restatements there were is printed, with the most events the resolve role held for reordering at once:
``IDRES_REORDER_MAX_EVENTS`` must allow for them, or late events come); "wall" includes start-up and the
consumer-group join. Progress is read from the workers' /metrics, never by re-reading the log.
``--events FILE`` runs on a JSON-lines file of distinct events instead of the generator's (every
line an event: the attribute records ``benchmarks/linkage_comparison.py`` writes, for example); ``--runs``
picks which of the runs above (``ceiling``, ``one``, ``split``, ``resolve``, ``recovery``).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402
from tests.kafka_broker import free_port, kafka_broker, select_broker  # noqa: E402


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def worker(bootstrap: str, prefix: str, roles: str, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--bootstrap", bootstrap,
                             "--topic-prefix", prefix, "--role", roles, "--web-port", str(port),
                             "--session-timeout", "6", "--loglevel", "warn"],
                            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    return proc, port


def produce(bootstrap: str, prefix: str, events: Path) -> None:
    subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(events), "--bootstrap", bootstrap,
                    "--topic-prefix", prefix], cwd=ROOT, check=True, capture_output=True)


def raw_ceiling(bootstrap: str, prefix: str, lines: int) -> float:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
    topics = [t for t in consumer.topics() if t.startswith(prefix + "raw.")]
    from kafka import TopicPartition

    tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    got = 0
    started = None
    while got < lines:
        batch = consumer.poll(timeout_ms=500, max_records=50000)
        if batch and started is None:
            started = time.perf_counter()
        got += sum(len(v) for v in batch.values())
    consumer.close()
    return got / (time.perf_counter() - started)


# an event resolved: decided (its entry written) or refused by the resolve role. Log entries are not counted:
# a restatement (events that reach the resolve role late, see "Late events") writes entries again
RESOLVED = ("idres_resolve_events_total", "idres_resolve_rejected_total")


def wait_done(ports: list[int], target: int, procs: list[subprocess.Popen], timeout: float = 900,
              counts: tuple[str, ...] = RESOLVED) -> tuple[float, float]:
    """Waits until the workers' ``counts`` add up to ``target``; returns (time of the first written entry, time
    the target was reached) as perf_counter values."""
    first = None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if first is None and sum(metric(p, "idres_log_entries_written_total") for p in ports):
            first = now
        if first is not None and sum(metric(p, name) for p in ports for name in counts) >= target:
            return first, now
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a worker exited with {proc.returncode}")
        time.sleep(0.2)
    raise SystemExit("timed out")


def restated(port: int) -> str:
    count = metric(port, "idres_restatements_total")
    most = metric(port, "idres_reorder_held_most")
    return (f"  ({count:.0f} restatements)" if count else "") + f"  (at most {most:,.0f} events held for reordering)"


RUNS = ("ceiling", "one", "split", "resolve", "recovery")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--bootstrap", help="a running broker (default: start Tansu as the tests do)")
    parser.add_argument("--events", type=Path, help="a JSON-lines file of distinct events to run on "
                                                    "(default: the generator's, --people and --seed)")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS), help="which runs (default: all)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idres-stream-bench-"))
    if args.events is not None:
        from streams.pipeline import VALID, RecordPipeline

        events = args.events.resolve()
        check = RecordPipeline(skip_blank=False).check  # (what the validate role does with each message)
        with open(events, "rb") as fh:
            outcomes = [check(line.rstrip(b"\n")).kind for line in fh if line.strip()]
        lines, n = len(outcomes), outcomes.count(VALID)
        print(f"{lines:,} lines of {events}, {n:,} valid events (the file's events are taken as distinct)")
    else:
        events, truth = work / "events.jsonl", work / "truth.csv"
        stats = write_dataset(events, truth, SyntheticConfig(people=args.people, seed=args.seed))
        n, lines = stats["events"], stats["lines"]
        print(f"{lines:,} lines, {n:,} valid events, {stats['duplicates']:,} duplicates, "
              f"{stats['malformed']:,} malformed")
    runs = set(args.runs)

    choice = select_broker({"KAFKA_BOOTSTRAP": args.bootstrap} if args.bootstrap else {})
    with kafka_broker(work, choice) as bootstrap:
        log = work / "workers.log"

        prefix = "b1."
        if runs & {"ceiling", "one"}:
            produce(bootstrap, prefix, events)
        if "ceiling" in runs:
            print(f"raw ceiling      kafka-python consume of the raw topics: "
                  f"{raw_ceiling(bootstrap, prefix, lines):>9,.0f} msg/s")
        if "one" in runs:
            one_worker(bootstrap, prefix, n, log)
        if "split" in runs:
            split_workers(bootstrap, n, events, log)
        if "resolve" in runs:
            resolve_alone(bootstrap, n, lines, events, log)
        if "recovery" in runs:
            recovery(bootstrap, n, events, log)


def one_worker(bootstrap: str, prefix: str, n: int, log: Path) -> None:
    started = time.perf_counter()
    proc, port = worker(bootstrap, prefix, "validate,resolve,project", log)
    first, last = wait_done([port], n, [proc])
    print(f"1 worker, all roles                      steady {n / (last - first):>9,.0f} events/s  "
          f"(wall {last - started:.1f} s including start-up){restated(port)}")
    proc.send_signal(signal.SIGTERM)
    proc.wait()


def split_workers(bootstrap: str, n: int, events: Path, log: Path) -> None:
    prefix = "b2."
    produce(bootstrap, prefix, events)
    started = time.perf_counter()
    procs = [worker(bootstrap, prefix, "validate", log) for _ in range(2)]
    resolve, rport = worker(bootstrap, prefix, "resolve", log)
    first, last = wait_done([rport], n, [p for p, _ in procs] + [resolve])
    print(f"2 validate + 1 resolve worker            steady {n / (last - first):>9,.0f} events/s  "
          f"(wall {last - started:.1f} s including start-up){restated(rport)}")
    resolve.send_signal(signal.SIGTERM)
    resolve.wait()


def resolve_alone(bootstrap: str, n: int, lines: int, events: Path, log: Path) -> None:
    prefix = "b4."
    produce(bootstrap, prefix, events)
    validators = [worker(bootstrap, prefix, "validate", log) for _ in range(2)]
    while sum(metric(vp, "idres_validate_events_total") for _, vp in validators) < lines:
        time.sleep(0.2)
    for p, _ in validators:
        p.send_signal(signal.SIGTERM)
        p.wait()
    resolve, rport = worker(bootstrap, prefix, "resolve", log)
    first, last = wait_done([rport], n, [resolve])
    print(f"1 resolve worker alone, input validated  steady {n / (last - first):>9,.0f} events/s{restated(rport)}")
    resolve.send_signal(signal.SIGTERM)
    resolve.wait()


def recovery(bootstrap: str, n: int, events: Path, log: Path) -> None:
    prefix = "b3."
    produce(bootstrap, prefix, events)
    resolve, rport = worker(bootstrap, prefix, "resolve", log)
    validators = [worker(bootstrap, prefix, "validate", log) for _ in range(2)]
    while metric(rport, "idres_log_entries_written_total") < n // 3:
        time.sleep(0.1)
    before = metric(rport, "idres_log_entries_written_total")
    resolve.send_signal(signal.SIGKILL)
    resolve.wait()
    killed = time.perf_counter()
    resolve, rport = worker(bootstrap, prefix, "resolve", log)
    first, last = wait_done([rport], 1, [resolve], counts=("idres_log_entries_written_total",))
    rebuild = metric(rport, "idres_resolver_rebuild_seconds")
    print(f"recovery after SIGKILL (at {before:,.0f} entries): writing again {first - killed:.1f} s after the kill "
          f"(of which {rebuild:.2f} s rebuilding the state from the log; the rest is start-up and group join)")
    for p, _ in validators + [(resolve, rport)]:
        p.send_signal(signal.SIGTERM)
        p.wait()


if __name__ == "__main__":
    main()
