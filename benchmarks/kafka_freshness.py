"""Freshness through Kafka: from a producer's acknowledged send to the event answering `GET /v1/lookup`.

    python benchmarks/kafka_freshness.py                          # idle: probes only
    python benchmarks/kafka_freshness.py --rate 2000 --duration 30  # probes while 2,000 events/s flow
    python benchmarks/kafka_freshness.py --rate 1000 --stragglers-every 10  # ...and a late event every 10 s

One worker running every role (or the workers ``--worker`` lists, each by its roles: ``--worker validate
--worker validate --worker resolve,project``) and `idres serve --bootstrap` (all through tests/tansu_worker.py,
so on Tansu each consumer's fetch wait is capped as the tests do), after ``--people`` generated customers.
Probes (a new customer's signup, ``occurred_at`` now) are produced one at a time to a raw channel topic;
background load (generated events with ``occurred_at`` rewritten to now, keyed as `idres produce` keys them)
at ``--rate`` events/s. Per probe, four instants (wall clock):

* ack: the producer's send acknowledged (acks=all);
* validated: the CreateTime of the validated-topic message carrying it (set when the worker sent it);
* decided: the CreateTime of the decision-log message carrying its entry;
* lookup: the first `GET /v1/lookup` (polled every ``--poll-ms``) that answers 200 for its email.

Printed: p50/p95/p99/max of each stage and of ack -> lookup.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from streams.kafka_io import Router  # noqa: E402
from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402
from tests.cli_helpers import stop_process  # noqa: E402
from tests.kafka_broker import free_port, kafka_broker, select_broker, worker_metrics  # noqa: E402

PROBE = re.compile(rb"fresh-probe-\d+")


def now_iso(ago: float = 0.0) -> str:
    """The time ``ago`` seconds before now, as events write it."""
    at = datetime.fromtimestamp(time.time() - ago, timezone.utc)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<22} (none)"
    ms = [x * 1000 for x in values]
    return (f"{name:<22} n={len(ms):>3}  p50 {statistics.median(ms):7.1f}  p95 {pct(ms, 95):7.1f}  "
            f"p99 {pct(ms, 99):7.1f}  max {max(ms):7.1f} ms")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"tansu" in (d / "cmdline").read_bytes().split(b"\0")[0] and \
                        (d / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                    return int(d.name)
            except OSError:
                pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1000, help="generated customers before the probes")
    ap.add_argument("--rate", type=float, default=0.0, help="background events/s (0: idle)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of probing")
    ap.add_argument("--probe-every", type=float, default=0.5, help="seconds between probes")
    ap.add_argument("--poll-ms", type=float, default=20.0, help="lookup poll interval per probe")
    ap.add_argument("--plain", action="store_true", help="run worker and serve without tests/tansu_worker.py")
    ap.add_argument("--bootstrap", help="an existing broker instead of Tansu")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for worker and serve (repeatable)")
    ap.add_argument("--worker", action="append", default=[], metavar="ROLES",
                    help="a worker with these roles (repeatable; default: one worker, all roles)")
    ap.add_argument("--stragglers-every", type=float, default=0.0, metavar="SECONDS",
                    help="a straggler every SECONDS while probing: an event that happened --straggler-age seconds "
                         "before it is sent (a late event: the log is restated)")
    ap.add_argument("--straggler-age", type=float, default=3.0, metavar="SECONDS")
    args = ap.parse_args()
    roles = args.worker or ["all"]
    if not any(set(r.split(",")) & {"all", "resolve"} for r in roles):
        raise SystemExit("one --worker must have the resolve role (or all)")
    extra_env = dict(e.split("=", 1) for e in args.env)
    mod = "streams.cli" if args.plain else "tests.tansu_worker"
    work = Path(tempfile.mkdtemp(prefix="idres-fresh-"))
    choice = select_broker({"KAFKA_BOOTSTRAP": args.bootstrap} if args.bootstrap else {})
    with kafka_broker(work, choice) as bootstrap:
        prefix = f"fr{os.getpid()}."
        kargs = ["--bootstrap", bootstrap, "--topic-prefix", prefix]
        events = work / "events.jsonl"
        stats = write_dataset(events, work / "truth.csv", SyntheticConfig(people=args.people, seed=3))
        subprocess.run([sys.executable, "-m", "streams.cli", "topics", *kargs], cwd=ROOT, check=True,
                       capture_output=True)
        # the backlog in event-time order on one partition (as the README says of a history): no late events,
        # so no restatement of the log while probing
        subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(events), *kargs, "--topic",
                        f"{prefix}raw.history", "--partitions", "1"], cwd=ROOT, check=True, capture_output=True)
        router = Router()
        load_lines = []
        if args.rate:
            n = int(args.rate * (args.duration + 15))
            more = work / "load.jsonl"
            write_dataset(more, work / "load-truth.csv", SyntheticConfig(people=max(200, n // 9), seed=11))
            for line in more.read_bytes().splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and "identifiers" in obj:
                    # (serialized and routed now: the load thread only stamps occurred_at and sends)
                    obj["event_id"] = f"load-{len(load_lines)}"
                    obj["occurred_at"] = "@@"
                    raw = json.dumps(obj).encode()
                    channel, key = router.route(raw)
                    head, tail = raw.split(b"@@")
                    load_lines.append((f"{prefix}raw.{channel}", key, head, tail))
        env = {**os.environ, **extra_env}
        aport = free_port()
        workers: list[tuple[subprocess.Popen, int]] = []
        for k, r in enumerate(roles):
            port = free_port()
            wlog = open(work / f"worker{k}.log", "ab")
            workers.append((subprocess.Popen(
                [sys.executable, "-m", mod, "worker", *kargs, "--role", r, "--web-port", str(port),
                 "--session-timeout", "6", "--loglevel", "warn", "--data-dir", str(work / f"worker{k}")],
                cwd=ROOT, env=env, stdout=wlog, stderr=subprocess.STDOUT), port))
        # (the worker that writes the decision log: its metrics say when the backlog is decided)
        worker, wport = next(w for w, r in zip(workers, roles) if set(r.split(",")) & {"all", "resolve"})
        serve = None
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        prod = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        marks: dict[str, dict[str, float]] = {}
        stop_flag = threading.Event()

        def watch() -> None:  # validated and decisions topics, from their beginning
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                     auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                     max_partition_fetch_bytes=8 << 20)
            tps = {TopicPartition(f"{prefix}validated", 0): "validated",
                   TopicPartition(f"{prefix}decisions", 0): "decided"}
            consumer.assign(list(tps))
            consumer.seek_to_beginning()
            while not stop_flag.is_set():
                for tp, records in consumer.poll(timeout_ms=100, max_records=5000).items():
                    stage = tps[tp]
                    for r in records:
                        for eid in set(PROBE.findall(r.value)):
                            m = marks.get(eid.decode())
                            if m is not None and stage not in m:
                                m[stage] = r.timestamp / 1000
                                m[stage + "_seen"] = time.time()
            consumer.close()

        threading.Thread(target=watch, daemon=True).start()

        def straggler(i: int) -> None:
            ev = {"event_id": f"straggler-{i}", "occurred_at": now_iso(args.straggler_age), "channel": "web",
                  "event_type": "page_view", "identifiers": {"email": f"straggler.{i}.{time.time_ns()}@mailbox.org"}}
            raw = json.dumps(ev).encode()
            prod.send(f"{prefix}raw.web", raw, key=router.route(raw)[1]).get(30)

        def probe(i: int) -> str:
            eid = f"fresh-probe-{i}"
            email = f"fresh.probe.{i}.{time.time_ns()}@mailbox.org"
            ev = {"event_id": eid, "occurred_at": now_iso(), "channel": "web", "event_type": "signup",
                  "identifiers": {"email": email}}
            raw = json.dumps(ev).encode()
            _, key = router.route(raw)
            marks[eid] = {"email": email}  # type: ignore[dict-item]
            prod.send(f"{prefix}raw.web", raw, key=key).get(30)
            marks[eid]["ack"] = time.time()
            return eid

        client = httpx.Client(timeout=10)

        def found(m: dict) -> bool:
            r = client.get(f"http://127.0.0.1:{aport}/v1/lookup", params={"type": "email", "value": m["email"],
                                                                         "timeline": 0})
            return r.status_code == 200

        def wait_lookup(eid: str, timeout: float = 120) -> None:
            m = marks[eid]
            deadline = time.time() + timeout
            while "decided_seen" not in m and time.time() < deadline:  # (no lookup can answer before)
                time.sleep(0.005)
            while time.time() < deadline:
                if found(m):
                    m["lookup"] = time.time()
                    return
                time.sleep(args.poll_ms / 1000)
            raise TimeoutError(eid)

        loader = None
        try:
            # the backlog decided (before any probe: a probe's "now" decided first would make the whole backlog
            # late events, and the log restated), then the API loaded
            deadline, last, since = time.time() + 600, -1.0, time.time()
            while time.time() < deadline:
                if any(w.poll() is not None for w, _ in workers):
                    raise SystemExit(f"a worker exited: see {work}/worker*.log")
                written = worker_metrics(wport).get("idres_log_entries_written_total", 0.0)
                if written != last:
                    last, since = written, time.time()
                elif written >= stats["events"] and time.time() - since > 2:
                    break
                time.sleep(0.2)
            warm = probe(0)
            deadline = time.time() + 600
            while "decided" not in marks[warm] and time.time() < deadline:
                if any(w.poll() is not None for w, _ in workers):
                    raise SystemExit(f"a worker exited: see {work}/worker*.log")
                time.sleep(0.2)
            serve = subprocess.Popen([sys.executable, "-m", mod, "serve", *kargs, "--port", str(aport)], cwd=ROOT,
                                     env={k: v for k, v in env.items() if k != "IDRES_API_KEY"},
                                     stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "ab"))
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{aport}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            wait_lookup(warm)
            for i in range(1, 4):  # (a few more, not counted: connections made, code paths warm)
                wait_lookup(probe(900 + i))
            load_sent = [0]

            def load() -> None:  # (in a forked process: the probes' timing does not share its interpreter)
                lp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
                start = time.perf_counter()
                i = 0
                while i < len(load_lines):
                    due = int((time.perf_counter() - start) * args.rate)
                    stamp = now_iso().encode()
                    while i < min(due, len(load_lines)):
                        topic, key, head, tail = load_lines[i]
                        lp.send(topic, head + stamp + tail, key=key)
                        i += 1
                    time.sleep(0.005)
                lp.flush()
                lp.close()

            samples = []
            if args.rate:
                import multiprocessing

                loader = multiprocessing.get_context("fork").Process(target=load, daemon=True)
                loader.start()
                load_started = time.time()
                time.sleep(5)  # (the load settles)
            pids = {**{f"worker {k} ({r})": w.pid for k, ((w, _), r) in enumerate(zip(workers, roles))},
                    "serve": serve.pid, "broker": broker_pid(), "bench": os.getpid(),
                    "load": loader.pid if loader else 0}
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            t_start = time.time()
            t_end = time.time() + args.duration
            i = 1
            next_straggler = time.time() + args.stragglers_every
            stragglers = 0
            while time.time() < t_end:
                t0 = time.time()
                if args.stragglers_every and t0 >= next_straggler:
                    stragglers += 1
                    straggler(stragglers)
                    next_straggler += args.stragglers_every
                eid = probe(1000 + i)
                samples.append(eid)
                threading.Thread(target=wait_lookup, args=(eid,), daemon=True).start()
                i += 1
                # (jittered, so that probes land at every phase of the workers' timers)
                time.sleep(max(0.0, args.probe_every * random.uniform(0.5, 1.5) - (time.time() - t0)))
            cpu = {k: (cpu_seconds(p) - cpu0[k]) / (time.time() - t_start) for k, p in pids.items()}
            load_sent[0] = int((time.time() - load_started) * args.rate) if loader else 0
            if loader is not None:
                loader.kill()
                loader.join()
            time.sleep(5)
            metrics = worker_metrics(wport)
        finally:
            stop_flag.set()
            if loader is not None and loader.is_alive():
                loader.kill()
                loader.join()
            prod.close()
            for p in (serve, *(w for w, _ in workers)):
                if p is not None:
                    stop_process(p, 15)
        done = [marks[e] for e in samples if {"ack", "validated", "decided", "lookup"} <= marks[e].keys()]
        print(f"broker {choice.kind}; {mod}; workers {roles}; env {extra_env or '{}'}; load {args.rate:g} events/s "
              f"(~{load_sent[0]:,} scheduled); {len(samples)} probes, {len(done)} complete"
              + (f"; {stragglers} stragglers {args.straggler_age:g} s old" if args.stragglers_every else ""))
        print(row("ack -> validated", [m["validated"] - m["ack"] for m in done]))
        print(row("validated -> decided", [m["decided"] - m["validated"] for m in done]))
        print(row("decided -> lookup", [m["lookup"] - m["decided"] for m in done]))
        print(row("ack -> lookup", [m["lookup"] - m["ack"] for m in done]))
        print(row("(seen) ack -> validated", [m["validated_seen"] - m["ack"] for m in done]))
        print(row("(seen) ack -> decided", [m["decided_seen"] - m["ack"] for m in done]))
        keys = ("idres_reorder_held_events", "idres_raw_partitions_behind", "idres_decisions_total",
                "idres_log_entries_written_total", "idres_resolve_late_events_total", "idres_restatements_total")
        print("worker:", {k: metrics.get(k) for k in keys})
        print("cores busy while probing:", {k: round(v, 2) for k, v in cpu.items()})
        with open(work / "probes.csv", "w") as f:
            f.write("eid,ack,validated,decided,lookup\n")
            for e in samples:
                m = marks[e]
                f.write(",".join([e] + [f"{m.get(k, float('nan')) - marks[samples[0]]['ack']:.3f}"
                                        for k in ("ack", "validated", "decided", "lookup")]) + "\n")
        print(f"logs and probes.csv in {work}")


if __name__ == "__main__":
    main()
