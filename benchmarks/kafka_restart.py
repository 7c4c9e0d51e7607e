"""A worker with every role killed with SIGKILL mid-stream and started again at once, as a supervisor would:
the seconds until the decision log grows again, or that it did not within ``--limit`` seconds.

    python benchmarks/kafka_restart.py [--people 2000] [--trials 2] [--limit 90] [--tests-waits]

Per trial: fresh topics (one resolve partition), a generated data set produced to one raw partition in the
file's order, one `idres worker --role all` (plain `python -m streams.cli`, as a user runs it; with
``--tests-waits``, through tests/tansu_worker.py, whose consumers' fetch waits are short), killed with SIGKILL
once a third of the events are logged, and a new worker on a fresh data directory started at once. Printed per
trial: the entries logged at the kill, the seconds from the kill to the new worker's first entry written (or
"not within LIMIT s"), and where its log is.

Then the new worker is stopped with SIGTERM, as a supervisor stops it, and the seconds it took to exit are
printed (or that it did not within 30 s: it is then killed).

Seen while writing it (Tansu, this machine): a first version of this script stopped the new worker as soon as it
wrote, and waited for it: the worker never exited. Its log said every 10 s that Faust's consumer was waiting for
the validated-topic messages in hand (``wait_empty``) to be acknowledged. Those were the events the reorder
buffer held: Faust stops a worker's timers, which release them, before it waits for them. A worker now decides
what it holds as it stops (``StreamJobs._decide_held_at_stop``; the test is in tests/test_stream.py).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kafka_shards import produce_one, topics  # noqa: E402
from stream_throughput import metric  # noqa: E402

from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402
from tests.kafka_broker import free_port, kafka_broker, select_broker  # noqa: E402


def start(bootstrap: str, prefix: str, work: Path, log: Path, name: str, module: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "worker", "--bootstrap", bootstrap, "--topic-prefix",
                             prefix, "--role", "all", "--web-port", str(port), "--session-timeout", "6",
                             "--loglevel", "warn", "--data-dir", str(work / f"data-{prefix}{name}")],
                            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--limit", type=float, default=90.0, help="seconds to wait for the new worker's first entry")
    ap.add_argument("--tests-waits", action="store_true", help="run the workers through tests/tansu_worker.py")
    args = ap.parse_args()
    module = "tests.tansu_worker" if args.tests_waits else "streams.cli"
    work = Path(tempfile.mkdtemp(prefix="idres-restart-"))
    events = work / "events.jsonl"
    write_dataset(events, work / "truth.csv", SyntheticConfig(people=args.people, seed=args.seed))
    lines = sum(1 for _ in open(events, "rb"))
    with kafka_broker(work, select_broker()) as bootstrap:
        for trial in range(args.trials):
            prefix = f"restart{trial}."
            log = work / f"workers-{trial}.log"
            topics(bootstrap, prefix, 1)
            produce_one(bootstrap, prefix, events)
            proc, port = start(bootstrap, prefix, work, log, "first", module)
            while metric(port, "idres_log_entries_written_total") < lines / 3:
                if proc.poll() is not None:
                    raise SystemExit(f"the first worker exited ({proc.returncode}): see {log}")
                time.sleep(0.05)
            at_kill = metric(port, "idres_log_entries_written_total")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = time.perf_counter()
            proc, port = start(bootstrap, prefix, work, log, "again", module)
            resumed = None
            while time.perf_counter() - killed < args.limit:
                if metric(port, "idres_log_entries_written_total") > 0:
                    resumed = time.perf_counter() - killed
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            termed = time.perf_counter()
            try:
                proc.wait(timeout=30)
                stopped = f"{time.perf_counter() - termed:.1f} s"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                stopped = "not within 30 s (killed)"
            said = f"{resumed:.1f} s" if resumed is not None else f"not within {args.limit:g} s"
            print(f"trial {trial + 1}: killed at {at_kill:,.0f} of {lines:,} lines; the log grew again: {said}; "
                  f"the new worker stopped by SIGTERM: {stopped} (log {log})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
