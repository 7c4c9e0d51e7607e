"""A person's verdicts with the state held by key shards on Kafka: each decided on a slice of its footprint,
against loading a new session of the shards (every part sent anew, which each verdict cost before).

    python benchmarks/key_shard_commands.py EVENTS.jsonl [--lines 30000] [--shards 2] [--verdicts 20]
        [--bootstrap HOST:PORT]

The records are taken in event-time order and decided in order by one resolver: the resolve worker's whole
state. That state is loaded on N key shards over a Kafka broker (``streams.kafka_key_shards``; each shard held
by a worker process of its own; the tests' broker unless ``--bootstrap`` names one), twice: the second load is
timed, the holders having joined their group for the first. Then pending reviews get verdicts (accept and
reject in turn, oldest review first), each decided on the whole state and on the key shards, on a slice of
its footprint (``LocalKeyShards.decide_command``, as the resolve role now keeps its session in step). Printed:
the state's size, the load's seconds and megabytes, each verdict's milliseconds and round trips (median and
most), and whether every entry was the one the whole state decided.

The shards' fetches wait 5 ms here, as ``benchmarks/key_shards.py --kafka`` has them (``IDRES_TEST_KEY_SHARD_WAIT_MS``):
on the tests' broker a round trip costs at least that wait; Apache Kafka answers a fetch as soon as there is
something to read.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resolver import footprint  # noqa: E402
from resolver.config import ResolverConfig  # noqa: E402
from resolver.engine import Resolver  # noqa: E402
from resolver.owner import stores_of  # noqa: E402
from streams.commands import decide  # noqa: E402
from streams.shards import in_order  # noqa: E402
from key_shards import first_records  # noqa: E402  (benchmarks/key_shards.py)


def run(records: list[bytes], n: int, verdicts: int, bootstrap: str) -> bool:
    from streams.kafka_key_shards import KafkaKeyShards
    from tests.kafka_broker import cap_key_shard_wait
    from tests.key_shard_holders import deployment, stop_holders

    os.environ.setdefault("IDRES_TEST_KEY_SHARD_WAIT_MS", "5")
    cap_key_shard_wait()
    config = ResolverConfig()
    whole = Resolver(config)
    started = time.perf_counter()
    in_order(records, whole)
    st = whole.state
    print(f"{len(records):,} records decided in order in {time.perf_counter() - started:.1f} s: "
          f"{len(st.profiles):,} profiles, {len(st.node_keys):,} identifiers, {len(st.reviews):,} pending reviews; "
          f"{os.cpu_count()} cores, broker {bootstrap}, {n} key shards")
    parts = sum(len(pickle.dumps(store, pickle.HIGHEST_PROTOCOL)) for store in stores_of(st, n, seen=False))
    settings, procs, stop = deployment(bootstrap, Path(tempfile.mkdtemp()), "kscmd", n, holders=n)
    same = True
    try:
        with KafkaKeyShards(settings, config, n, wait=120, state=st, new_only=True):
            pass  # (the holders have joined and answered)
        started = time.perf_counter()
        keyed = KafkaKeyShards(settings, config, n, wait=120, state=st, new_only=True)
        load = time.perf_counter() - started
        print(f"a new session: {load:.2f} s, the parts {parts / 1e6:.1f} MB pickled")
        times, trips = [], []
        with keyed:
            for k in range(verdicts):
                pending = sorted(st.reviews)
                if not pending:
                    break
                command = {"command": "review", "review_id": pending[0], "decision": ("accept", "reject")[k % 2],
                           "by": "benchmark", "decided_at": f"2030-01-01T00:00:{k % 60:02d}Z"}
                items = footprint.of_command(st, command)
                entry = decide(whole, command)
                before, started = keyed.round_trips, time.perf_counter()
                got = keyed.decide_command(command, items)
                times.append(time.perf_counter() - started)
                trips.append(keyed.round_trips - before)
                same = same and got == entry
    finally:
        stop_holders(procs, stop)
    if times:
        print(f"{len(times)} verdicts on slices: {statistics.median(times) * 1000:.0f} ms median, "
              f"{max(times) * 1000:.0f} ms most; round trips {statistics.median(trips):.0f} median, {max(trips)} most; "
              f"the same entries as the whole state: {'yes' if same else 'NO'}")
    else:
        print("no pending review to give a verdict on")
    return same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--lines", type=int, default=30_000, help="the first this many lines of the file")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--verdicts", type=int, default=20)
    ap.add_argument("--bootstrap", help="a broker (default: start the tests' broker)")
    args = ap.parse_args()
    records = first_records(args.events, args.lines)
    gc.disable()  # (as idres ingest and the workers run: nothing the resolver builds forms cycles)
    if args.bootstrap:
        return 0 if run(records, args.shards, args.verdicts, args.bootstrap) else 1
    from tests.kafka_broker import kafka_broker, select_broker

    choice = select_broker()
    if choice.kind == "skip":
        print(f"idres: error: no broker to run on ({choice.detail}); give one with --bootstrap", file=sys.stderr)
        return 2
    with kafka_broker(Path(tempfile.mkdtemp()), choice) as bootstrap:
        return 0 if run(records, args.shards, args.verdicts, bootstrap) else 1


if __name__ == "__main__":
    sys.exit(main())
