"""Late events through Kafka: a history produced to a topic per channel (several partitions each) while a
worker decides it. Under a backlog the partitions are read at different speeds; an event let through before
older ones of a slower partition makes them late events, and the resolve role restates the log (README: late
events), unless the partitions with records left to read are waited for. Prints every 5 s the entries written,
the restatements and the raw partitions the worker has said are behind; then the entries the decision-log
topic grew to, the restatements, whether every event has the profile ID `idres ingest` gives it, and what
reading the topic from its start costs (the pass that finds the restatements, then the fold).

    python benchmarks/kafka_late_events.py EVENTS.jsonl [--reorder-wait 0.2]

Starts the test broker (Tansu) as the tests do, and one worker with the validate and resolve roles.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kafka_broker import free_port, kafka_broker, select_broker, worker_metrics  # noqa: E402


def main() -> int:
    import duckdb

    from resolver.engine import Resolver
    from streams.embedded import EmbeddedEngine
    from streams.kafka_io import KafkaSettings
    from streams.stream_app import LogScan, fold_decision_log

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--reorder-wait", type=float, default=0.2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idres-kafka-late-") as tmp:
        work = Path(tmp)
        with kafka_broker(work, select_broker({})) as bootstrap:
            prefix = "late."
            settings = KafkaSettings.load(bootstrap=bootstrap, prefix=prefix)
            cli = [sys.executable, "-m", "streams.cli"]
            subprocess.run([*cli, "produce", args.events, "--bootstrap", bootstrap, "--topic-prefix", prefix],
                           check=True, capture_output=True)
            port = free_port()
            env = {**os.environ, "IDRES_REORDER_WAIT": str(args.reorder_wait)}
            # (tests.tansu_worker: the test broker answers a fetch only when its wait is over; see there)
            worker = subprocess.Popen(
                [sys.executable, "-m", "tests.tansu_worker", "worker", "--bootstrap", bootstrap, "--topic-prefix",
                 prefix, "--role", "validate,resolve", "--web-port", str(port), "--loglevel", "warn", "--data-dir",
                 str(work / "worker")], cwd=ROOT, env=env, stdout=open(work / "worker.log", "wb"),
                stderr=subprocess.STDOUT)
            started = time.monotonic()
            try:
                last, quiet = -1.0, 0
                while quiet < 6:  # (the log has not grown for 30 s and no late event waits to be restated)
                    time.sleep(5)
                    g = worker_metrics(port)
                    n = g.get("idres_log_entries_written_total", 0.0) if not g.get("idres_late_events_pending") else -2
                    quiet = quiet + 1 if n == last and n > 0 else 0
                    last = n
                    print(f"  {time.monotonic() - started:.0f} s: {g.get('idres_log_entries_written_total', 0):,.0f} "
                          f"entries, {g.get('idres_restatements_total', 0):.0f} restatements, "
                          f"{g.get('idres_raw_partitions_behind', 0):.0f} raw partitions behind", flush=True)
            finally:
                worker.terminate()
                worker.wait(30)
            restated = [line.split("late events: ", 1)[1].strip() for line in
                        open(work / "worker.log", errors="replace") if "late events: the decision log" in line]
            snap = work / "snap.duckdb"
            subprocess.run([*cli, "snapshot", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--out", str(snap)],
                           check=True, capture_output=True)
            with EmbeddedEngine(work / "embedded") as engine:
                engine.ingest_file(args.events)
                embedded = dict(zip(engine.views.ev_id, engine.views.ev_profile))
            with duckdb.connect(str(snap), read_only=True) as con:
                kafka = dict(con.execute("SELECT event_id, profile_id FROM events").fetchall())
            same = sum(1 for e, p in embedded.items() if kafka.get(e) == p)
            print(f"decision-log topic: {last:,.0f} entries for {len(kafka):,} events; {len(restated)} restatements:")
            for line in restated:
                print(f"  {line}")
            print(f"same profile ID as `idres ingest`: {same:,} of {len(embedded):,} events")
            for _ in range(2):
                t = time.perf_counter()
                scan = LogScan(settings)
                scanned = time.perf_counter() - t
                t = time.perf_counter()
                fold_decision_log(settings, resolver=Resolver(), scan=scan)
                print(f"reading the topic from its start: the pass that finds restatements {scanned:.2f} s "
                      f"({scan.entries:,} entries), the fold {time.perf_counter() - t:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
