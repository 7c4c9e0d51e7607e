"""The identity changelog's lag: from an event being logged to its change reaching a downstream reader.

    python benchmarks/changelog_lag.py [--people 2000] [--samples 30] [--kafka] [--bootstrap HOST:PORT]

A data directory holding ``--people`` generated customers; then, ``--samples`` times, one new customer's event
is ingested (in this process, as `idres ingest` does) while a reader waits for its ``profile_created``:

* ``follow``: `idres changes --follow` in a child process (it polls the log every 0.2 s);
* ``api``: `idres serve` in a child process, read with long polls of ``GET /v1/changes?wait=30``.

Printed: the median, 95th percentile and maximum of the seconds from the end of the ingest call (the entry
is in the log) to the change being read. With ``--kafka``: a Kafka deployment (Tansu unless ``--bootstrap``)
with one worker running every role; each event is produced to the raw topic and the lag is from the send
being acknowledged to the change being read from the changes topic by `idres changes --follow --bootstrap`,
so it includes validating, the reorder buffer's wait (``IDRES_REORDER_WAIT``, set to 0.2 here), deciding and
projecting.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from streams.embedded import EmbeddedEngine  # noqa: E402
from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402
from tests.kafka_broker import free_port, kafka_broker, select_broker  # noqa: E402


def event(i: int) -> dict:
    return {"event_id": f"lag-{i}-{time.time_ns()}", "occurred_at": "2031-01-01T00:00:00Z", "channel": "web",
            "event_type": "signup", "identifiers": {"email": f"lag.reader.{i}.{time.time_ns()}@mailbox.org"}}


def created(line: bytes) -> list[str]:
    c = json.loads(line)
    return c["identifiers"] if c["type"] == "profile_created" else []


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # (a server finishing a long poll)
        proc.kill()
        proc.wait()


def figures(name: str, lags: list[float]) -> None:
    lags = sorted(lags)
    p95 = lags[min(len(lags) - 1, int(round(0.95 * (len(lags) - 1))))]
    print(f"{name:<8} n={len(lags):>3}  median {statistics.median(lags) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
          f"max {lags[-1] * 1000:7.1f} ms", flush=True)


def reader_thread(stream, seen: "queue.Queue[tuple[float, list[str]]]") -> threading.Thread:
    def run() -> None:
        for line in stream:
            if line.strip():
                seen.put((time.perf_counter(), created(line)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(seen: "queue.Queue[tuple[float, list[str]]]", key: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at, keys = seen.get(timeout=max(0.01, deadline - time.monotonic()))
        if key in keys:
            return at
    raise TimeoutError(key)


def embedded(work: Path, people: int, samples: int) -> None:
    events = work / "events.jsonl"
    write_dataset(events, work / "truth.csv", SyntheticConfig(people=people, seed=3))
    data = work / "data"
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(events)
        start = len(engine.log)
    follow = subprocess.Popen([sys.executable, "-m", "streams.cli", "changes", "--follow", "--from", str(start),
                               "--data-dir", str(data)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "IDRES_API_KEY"}
    serve = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--port", str(port), "--data-dir",
                              str(data)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen_follow: "queue.Queue[tuple[float, list[str]]]" = queue.Queue()
    seen_api: "queue.Queue[tuple[float, list[str]]]" = queue.Queue()
    reader_thread(follow.stdout, seen_follow)
    stop = threading.Event()

    def long_poll() -> None:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=40) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            nxt = start
            while not stop.is_set():
                try:
                    page = client.get("/v1/changes", params={"from": nxt, "wait": 30}).json()
                except httpx.HTTPError:
                    if stop.is_set():
                        return  # (the server was stopped)
                    raise
                now = time.perf_counter()
                for c in page["changes"]:
                    if c["type"] == "profile_created":
                        seen_api.put((now, c["identifiers"]))
                nxt = page["next"]

    threading.Thread(target=long_poll, daemon=True).start()
    time.sleep(3)  # (both readers started and caught up)
    lags_follow, lags_api = [], []
    try:
        with EmbeddedEngine(data) as engine:
            for i in range(samples):
                ev = event(i)
                path = work / f"one-{i}.jsonl"
                path.write_text(json.dumps(ev) + "\n")
                engine.ingest_file(path)
                logged = time.perf_counter()
                key = "email:" + ev["identifiers"]["email"]
                lags_follow.append(wait_for(seen_follow, key) - logged)
                lags_api.append(wait_for(seen_api, key) - logged)
                time.sleep(0.2)
    finally:
        stop.set()
        for proc in (follow, serve):
            stop_process(proc)
    print(f"embedded data directory: {people} generated customers, {start:,} log entries before the samples")
    figures("follow", lags_follow)
    figures("api", lags_api)


def kafka(work: Path, people: int, samples: int, bootstrap_arg: str | None) -> None:
    from kafka import KafkaProducer

    choice = select_broker({"KAFKA_BOOTSTRAP": bootstrap_arg} if bootstrap_arg else {})
    with kafka_broker(work, choice) as bootstrap:
        prefix = f"lag{os.getpid()}."
        kafka_args = ["--bootstrap", bootstrap, "--topic-prefix", prefix]
        events = work / "kevents.jsonl"
        write_dataset(events, work / "ktruth.csv", SyntheticConfig(people=people, seed=3))
        subprocess.run([sys.executable, "-m", "streams.cli", "topics", *kafka_args], cwd=ROOT, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(events), *kafka_args, "--topic",
                        f"{prefix}raw.history", "--partitions", "1"], cwd=ROOT, check=True, capture_output=True)
        env = {**os.environ, "IDRES_REORDER_WAIT": "0.2"}
        worker = subprocess.Popen([sys.executable, "-m", "tests.tansu_worker", "worker", *kafka_args, "--role", "all",
                                   "--web-port", str(free_port()), "--loglevel", "warn", "--data-dir",
                                   str(work / "worker")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        follow = subprocess.Popen([sys.executable, "-m", "tests.tansu_worker", "changes", "--follow", *kafka_args],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        seen: "queue.Queue[tuple[float, list[str]]]" = queue.Queue()
        reader_thread(follow.stdout, seen)
        prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        lags = []
        try:
            warm = event(-1)  # (the backlog decided and projected first)
            prod.send(f"{prefix}raw.history", json.dumps(warm).encode(), partition=0).get(60)
            wait_for(seen, "email:" + warm["identifiers"]["email"], timeout=600)
            for i in range(samples):
                ev = event(i)
                prod.send(f"{prefix}raw.history", json.dumps(ev).encode(), partition=0).get(60)
                sent = time.perf_counter()
                lags.append(wait_for(seen, "email:" + ev["identifiers"]["email"]) - sent)
                time.sleep(0.2)
        finally:
            prod.close()
            for proc in (follow, worker):
                stop_process(proc)
        print(f"kafka ({choice.kind}): one worker with every role, {people} generated customers before the samples, "
              f"IDRES_REORDER_WAIT=0.2")
        figures("kafka", lags)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--kafka", action="store_true", help="also measure a Kafka deployment")
    ap.add_argument("--bootstrap", help="an existing broker instead of Tansu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="idres-lag-") as tmp:
        embedded(Path(tmp), args.people, args.samples)
        if args.kafka or args.bootstrap:
            kafka(Path(tmp), args.people, args.samples, args.bootstrap)


if __name__ == "__main__":
    main()
