"""Deciding on shards that each own part of the state by key (``streams.key_shards``): whether the log is the one
of deciding in order, what crosses between shards per event, and how the work would spread over N shards.

    python benchmarks/key_shards.py EVENTS.jsonl [--lines 100000] [--shards 1,2,4,16,64] [--repeat 3]

The records are taken in event-time order (as ``idres ingest`` takes them) and decided in order by one
resolver, then by N shards in this process, what crosses from one shard to another pickled and read back as
a message would be. Each window's work is timed in three parts: the coordinator's alone (planning the chains,
putting the entries in order, the start of an epoch), the work any shard can take a share of (validating,
normalizing, looking up footprints at the owners), and each shard's own (collecting its slice, deciding on
it, sending the changes; applying the changes it owns; pickling what it sends). With N shards on N cores a window takes the
coordinator's part, plus the shared part over N, plus the busiest shard's part; the run's sum of that,
against the same sum for one shard, is the modelled speed-up. The log is not in it, and neither, in that
first table, are the round trips between processes.

A window waits for its round trips one after the other: the event IDs looked up at their owners, the footprints
(up to three rounds: each round's questions depend on the answers before), the chains sent to the shards, their
slices (up to five rounds), the owners asked whether a profile ID is held, the changes applied (and, at the
start of an epoch that re-estimates the model, the pending reviews' slice and its check). Every round's
questions go as one message from each reader to each owner it asks, however many events ask. A second table
gives per N the round trips per window and the messages per event, and the modelled events/s if each round
trip took each of ``--round-trip-ms`` (by default 0.06 ms, the median of a pipe between two processes on
this machine, and 6.3 ms, the median through the test broker: ``benchmarks/round_trips.py``; and 1 ms between).

With ``--kafka N,...`` they are decided on N key shards over a Kafka broker (``streams.kafka_key_shards``: the
requests and answers on two topics, each shard held by a worker process of its own, which the tests' broker
runs unless ``--bootstrap`` names one), and the wall time printed with the round trips it waited for.

With ``--processes N,...`` the records are also decided on N shards in worker processes
(``streams.key_shard_processes``: each shard's parts held, and its chains decided, by a process of its own;
requests carried by pipes), and the wall time printed, against deciding in order.

Printed per N: the log the same as in order (yes/no), parts read from and written to other shards per event,
kilobytes sent per event, the share of windows decided in order on the whole state, each part's
microseconds per event, modelled events/s and x one shard, the busiest shard's share of the shards' work, and
the heaviest chain's share of its window (in footprint items, each event's counted; the mean over the windows): no number of shards
takes a window faster than its heaviest chain.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver.config import ResolverConfig  # noqa: E402
from resolver.engine import Resolver  # noqa: E402
from streams.key_shards import LocalKeyShards  # noqa: E402
from streams.ordering import time_ordered  # noqa: E402
from streams.shards import in_order as decide_in_order  # noqa: E402


def digest(entries: list) -> str:
    h = hashlib.sha256()
    for entry in entries:
        h.update(json.dumps(entry, sort_keys=True).encode())
    return h.hexdigest()


def in_order(records: list[bytes], config: ResolverConfig) -> tuple[list, float]:
    started = time.perf_counter()
    out = decide_in_order(records, Resolver(config))
    return out, time.perf_counter() - started


def processes(records: list[bytes], config: ResolverConfig, counts: list[int], want: str, events: int,
              alone: float, window: int, repeat: int) -> None:
    """Deciding on N shards in worker processes, timed (the least of ``repeat`` runs)."""
    import os

    from streams.key_shard_processes import KeyShardProcesses

    print(f"\n{os.cpu_count()} cores; in order, one resolver: {alone:.1f} s\n")
    print("| shard processes | same log | wall s | events/s | x in order | coordinator CPU s | round trips / window |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in counts:
        best = None
        for _ in range(repeat):
            gc.collect()
            with KeyShardProcesses(config, n, window) as keyed:
                started, cpu = time.perf_counter(), time.process_time()
                got = keyed.decide(records)
                run = (time.perf_counter() - started, time.process_time() - cpu, keyed.stats)
            if best is None or run[0] < best[0]:
                best = (*run, digest(got) == want)
            del got
        wall, cpu, st, same = best
        trips = sum(w[3] for w in st["windows"]) / max(len(st["windows"]), 1)
        print(f"| {n} | {'yes' if same else 'NO'} | {wall:.1f} | {events / wall:,.0f} | {alone / wall:.2f} | "
              f"{cpu:.1f} | {trips:.1f} |", flush=True)


def on_kafka(records: list[bytes], config: ResolverConfig, counts: list[int], want: str, events: int,
             alone: float, window: int, bootstrap: str) -> None:
    """Deciding on N key shards over Kafka (``streams.kafka_key_shards``), each held by a worker process of
    its own, timed from the first request (the parts loaded) to the last answer."""
    import os
    import tempfile

    from streams.kafka_key_shards import KafkaKeyShards
    from tests.kafka_broker import cap_key_shard_wait
    from tests.key_shard_holders import deployment, stop_holders

    # (as the tests, but 5 ms, as this was measured with: the holders' processes do the same; nothing changes
    # on Apache Kafka)
    os.environ.setdefault("IDRES_TEST_KEY_SHARD_WAIT_MS", "5")
    cap_key_shard_wait()

    print(f"\n{os.cpu_count()} cores, broker {bootstrap}; in order, one resolver: {alone:.1f} s\n")
    print("| key shards on Kafka | same log | wall s | events/s | x in order | round trips | ms a round trip "
          "(wall / round trips) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in counts:
        settings, procs, stop = deployment(bootstrap, Path(tempfile.mkdtemp()), "ksbench", n, holders=n)
        try:
            with KafkaKeyShards(settings, config, n, window, wait=120) as keyed:
                keyed._ask({s: ("known", []) for s in range(n)})  # (every holder has joined and answered)
                trips = keyed.round_trips
                started = time.perf_counter()
                got = keyed.decide(records)
                wall = time.perf_counter() - started
                trips = keyed.round_trips - trips
            same = digest(got) == want
        finally:
            stop_holders(procs, stop)
        print(f"| {n} | {'yes' if same else 'NO'} | {wall:.1f} | {events / wall:,.0f} | {alone / wall:.2f} | "
              f"{trips:,} | {wall * 1000 / max(trips, 1):.1f} |", flush=True)


def broker_arguments(doc: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark on key shards over a broker: the events, how many of their lines, how many
    shards, and the broker."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--lines", type=int, default=30_000, help="the first this many lines of the file")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--bootstrap", help="a broker (default: start the tests' broker)")
    return ap


def a_timed_session(settings: Any, config: ResolverConfig, n: int, st: Any) -> tuple[Any, float]:
    """A session of ``n`` key shards over the broker loaded with the state ``st``, and the seconds its load took
    (a second load: the first lets the holders join their group)."""
    from streams.kafka_key_shards import KafkaKeyShards

    with KafkaKeyShards(settings, config, n, wait=120, state=st, new_only=True):
        pass  # (the holders have joined and answered)
    started = time.perf_counter()
    keyed = KafkaKeyShards(settings, config, n, wait=120, state=st, new_only=True)
    return keyed, time.perf_counter() - started


def decided_in_order(config: ResolverConfig, records: list[bytes], n: int, bootstrap: str,
                     also: Callable[[Any], str] = lambda st: "", then: str = "") -> Resolver:
    """The key shards' fetches set to wait 5 ms on the tests' broker, as ``--kafka`` has them
    (``IDRES_TEST_KEY_SHARD_WAIT_MS``), and ``records`` decided in order by one resolver (the resolve worker's whole
    state), its size printed (``also(state)`` after the identifiers, ``then`` at the end)."""
    import os

    from tests.kafka_broker import cap_key_shard_wait

    os.environ.setdefault("IDRES_TEST_KEY_SHARD_WAIT_MS", "5")
    cap_key_shard_wait()
    whole = Resolver(config)
    started = time.perf_counter()
    decide_in_order(records, whole)
    st = whole.state
    print(f"{len(records):,} records decided in order in {time.perf_counter() - started:.1f} s: "
          f"{len(st.profiles):,} profiles, {len(st.node_keys):,} identifiers{also(st)}; {os.cpu_count()} cores, "
          f"broker {bootstrap}, {n} key shards{then}")
    return whole


def parts_of(st: Any, n: int) -> tuple[list[int], int]:
    """What a session's load of ``st`` on ``n`` key shards sends: each shard's parts (identifiers, profiles,
    blocking keys, value counts) and the bytes of them all pickled."""
    import pickle

    from resolver.owner import stores_of

    stores = stores_of(st, n, seen=False)
    return ([len(store.nodes) + len(store.profiles) + len(store.blocks) + len(store.values) for store in stores],
            sum(len(pickle.dumps(store, pickle.HIGHEST_PROTOCOL)) for store in stores))


def next_as_the_whole(keyed: Any, after: list[bytes], whole: Any) -> bool:
    """Whether ``after`` is decided on the shards as the whole state decides it, printed."""
    from streams.shards import in_order

    same = keyed.decide(after) == in_order(after, whole)
    print(f"the next {len(after):,} records decided on the shards as the whole state decides them: "
          f"{'yes' if same else 'NO'}")
    return same


def on_a_broker(bootstrap: Optional[str], run: Callable[[str], bool]) -> int:
    """``run(bootstrap)`` on the broker named, else on the tests' broker started for it; 0 when it returns True,
    1 when False, 2 when there is no broker to run on."""
    import tempfile

    from tests.kafka_broker import kafka_broker, select_broker

    choice = select_broker({"KAFKA_BOOTSTRAP": bootstrap} if bootstrap else {})
    if choice.kind == "skip":
        print(f"idres: error: no broker to run on ({choice.detail}); give one with --bootstrap", file=sys.stderr)
        return 2
    with kafka_broker(Path(tempfile.mkdtemp()), choice) as at:
        return 0 if run(at) else 1


def first_records(path: str, lines: int) -> list[bytes]:
    """The first ``lines`` lines of the file, in event-time order (as ``idres ingest`` takes them)."""
    head = []
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            if i >= lines:
                break
            head.append(line)
    return [raw for _, raw in time_ordered(head)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--lines", type=int, default=100_000, help="the first this many lines of the file")
    ap.add_argument("--shards", default="1,2,4,16,64", help="the model's numbers of shards ('' for none)")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--round-trip-ms", default="0.06,1,6.3",
                    help="model the rate as if each of a window's round trips took this long (comma-separated)")
    ap.add_argument("--processes", default="",
                    help="also decide on this many shards in worker processes (``KeyShardProcesses``), "
                         "comma-separated, and print the wall time (then the model is skipped unless --shards)")
    ap.add_argument("--kafka", default="",
                    help="also decide on this many key shards over Kafka (``KafkaKeyShards``, each shard held by a "
                         "worker process), comma-separated, and print the wall time")
    ap.add_argument("--bootstrap", help="the broker for --kafka (default: start the tests' broker)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="decide on N shards this many times and report the run with the least modelled time "
                         "(this machine's speed varies from one run to the next)")
    args = ap.parse_args()
    records = first_records(args.events, args.lines)
    config = ResolverConfig()
    gc.disable()  # (as idres ingest and the workers run: nothing the resolver builds forms cycles)
    expected, seconds = in_order(records, config)
    want = digest(expected)
    events = sum(1 for entry in expected if any(d["type"] == "interaction_recorded" for d in entry))
    print(f"{len(records):,} records, {events:,} events; in order, one resolver: {seconds:.1f} s "
          f"({events / seconds:,.0f} events/s)")
    print("| shards | same log | parts read elsewhere / event | parts written elsewhere / event | KB sent / event "
          "| windows in order | us/event: coordinator (re-estimating) / shared / shards "
          "| model events/s | x one shard | busiest shard | heaviest chain |")
    print("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    base = None
    if args.processes:
        processes(records, config, [int(x) for x in args.processes.split(",")], want, events, seconds,
                  args.window, max(args.repeat, 1))
        if not args.shards:
            return 0
    if args.kafka:
        counts = [int(x) for x in args.kafka.split(",")]
        if args.bootstrap:
            on_kafka(records, config, counts, want, events, seconds, args.window, args.bootstrap)
        else:
            import tempfile

            from tests.kafka_broker import kafka_broker, select_broker

            choice = select_broker()
            if choice.kind == "skip":
                print(f"idres: error: no broker to run on ({choice.detail}); give one with --bootstrap",
                      file=sys.stderr)
                return 2
            with kafka_broker(Path(tempfile.mkdtemp()), choice) as bootstrap:
                on_kafka(records, config, counts, want, events, seconds, args.window, bootstrap)
        if not args.shards:
            return 0
    trips = [float(x) / 1000 for x in args.round_trip_ms.split(",")]
    latency = []  # (n, round trips per window, messages per event, the modelled rate at each round trip)
    for n in [int(x) for x in args.shards.split(",") if x]:
        best = None
        for _ in range(max(args.repeat, 1)):
            gc.collect()
            shards = LocalKeyShards(config, n, args.window, transport=True)
            got = shards.decide(records)
            windows = shards.stats["windows"]
            run = (sum(w[0] for w in windows) + sum(w[1] for w in windows) / n + sum(max(w[2]) for w in windows),
                   shards, got)
            if best is None or run[0] < best[0]:
                best = run
            del shards, got, run
        modelled, shards, got = best
        st = shards.stats
        ev = max(st["events"], 1)
        windows = st["windows"]
        alone = sum(w[0] for w in windows)
        shared = sum(w[1] for w in windows)
        own = sum(sum(w[2]) for w in windows)
        busiest = sum(max(w[2]) for w in windows)
        calibrating = st["calibration_seconds"]
        if base is None and n == 1:
            base = modelled
        speed = f"{base / modelled:.2f}" if base else ""
        share = busiest / own if own else 0.0
        heaviest = sum(st["heaviest"]) / len(st["heaviest"]) if st["heaviest"] else 0.0
        print(f"| {n} | {'yes' if digest(got) == want else 'NO'} | {st['remote_reads'] / ev:.2f} | "
              f"{st['remote_writes'] / ev:.2f} | {st['bytes'] / ev / 1024:.2f} | "
              f"{st['in_order_windows']} of {len(windows)} | {alone / ev * 1e6:.0f} ({calibrating / ev * 1e6:.0f}) / {shared / ev * 1e6:.0f} / "
              f"{own / ev * 1e6:.0f} | {ev / modelled:,.0f} | {speed} | {share:.1%} | {heaviest:.1%} |", flush=True)
        rounds = sum(w[3] for w in windows)
        latency.append((n, rounds / len(windows), st["messages"] / ev,
                        [ev / (modelled + rounds * t) for t in trips]))
    print()
    print("| shards | round trips / window | messages / event | " +
          " | ".join(f"model events/s at {t * 1000:g} ms a round trip" for t in trips) + " |")
    print("|---:|---:|---:|" + "---:|" * len(trips))
    for n, per_window, messages, rates in latency:
        print(f"| {n} | {per_window:.1f} | {messages:.2f} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
