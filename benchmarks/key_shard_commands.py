"""A person's commands with the state held by key shards on Kafka: each decided on a slice of its footprint,
against loading a new session of the shards (every part sent anew, which each command cost before).

    python benchmarks/key_shard_commands.py EVENTS.jsonl [--lines 30000] [--shards 2] [--verdicts 20]
        [--bootstrap HOST:PORT]

The records are taken in event-time order and decided in order by one resolver: the resolve worker's whole
state. That state is loaded on N key shards over a Kafka broker (``streams.kafka_key_shards``; each shard held
by a worker process of its own; the tests' broker unless ``--bootstrap`` names one), twice: the second load is
timed, the holders having joined their group for the first. Then pending reviews get verdicts (accept and
reject in turn, oldest review first), then as many unmerges (the first identifier of the profile with the
most) and lifts of bans (the first in force), each decided on the whole state and on the key shards, on a
slice of its footprint (``LocalKeyShards.decide_command``, as the resolve role keeps its session in step).
Printed: the state's size, the load's seconds and megabytes, and per kind each command's milliseconds and
round trips (median and most), and whether every entry so far was the one the whole state decided.

The shards' fetches wait 5 ms here, as ``benchmarks/key_shards.py --kafka`` has them (``IDRES_TEST_KEY_SHARD_WAIT_MS``):
on the tests' broker a round trip costs at least that wait; Apache Kafka answers a fetch as soon as there is
something to read.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resolver import footprint  # noqa: E402
from resolver.config import ResolverConfig  # noqa: E402
from streams.commands import decide  # noqa: E402
from key_shards import (  # noqa: E402  (benchmarks/key_shards.py)
    a_timed_session, broker_arguments, decided_in_order, first_records, on_a_broker, parts_of,
)


KINDS = {"review": "verdicts", "unmerge": "unmerges", "lift": "lifts"}


def next_command(st, kind: str, k: int) -> dict | None:
    """The ``k``-th command of a kind, on the state as it is now: a verdict on the oldest pending review (accept
    and reject in turn); an unmerge of the first identifier of the profile with the most (ties by ID); a lift of
    the first ban in force."""
    base = {"command": kind, "by": "benchmark", "decided_at": f"2030-01-01T00:{k // 60 % 60:02d}:{k % 60:02d}Z"}
    if kind == "review":
        pending = sorted(st.reviews)
        return {**base, "review_id": pending[0], "decision": ("accept", "reject")[k % 2]} if pending else None
    if kind == "unmerge":
        sizes = [(-len(prof.nodes), pid) for pid, prof in st.profiles.items() if len(prof.nodes) >= 2]
        if not sizes:
            return None
        pid = min(sizes)[1]
        first = min(st.node_keys[x] for x in st.profiles[pid].nodes)
        return {**base, "profile_id": pid, "identifiers": [first.split(":", 1)]}
    return {**base, "ban_id": sorted(st.bans)[0]} if st.bans else None


def run(records: list[bytes], n: int, verdicts: int, bootstrap: str) -> bool:
    from tests.key_shard_holders import deployment, stop_holders

    config = ResolverConfig()
    whole = decided_in_order(config, records, n, bootstrap, also=lambda st: f", {len(st.reviews):,} pending reviews")
    st = whole.state
    _, size = parts_of(st, n)
    settings, procs, stop = deployment(bootstrap, Path(tempfile.mkdtemp()), "kscmd", n, holders=n)
    same = True
    try:
        keyed, load = a_timed_session(settings, config, n, st)
        print(f"a new session: {load:.2f} s, the parts {size / 1e6:.1f} MB pickled")
        timed: dict[str, tuple[list[float], list[int]]] = {kind: ([], []) for kind in KINDS}
        with keyed:
            for kind in KINDS:
                for k in range(verdicts):
                    command = next_command(st, kind, k)
                    if command is None:
                        break
                    items = footprint.of_command(st, command)
                    entry = decide(whole, command)
                    before, started = keyed.round_trips, time.perf_counter()
                    got = keyed.decide_command(command, items)
                    timed[kind][0].append(time.perf_counter() - started)
                    timed[kind][1].append(keyed.round_trips - before)
                    same = same and got == entry
    finally:
        stop_holders(procs, stop)
    for kind, (times, trips) in timed.items():
        if times:
            print(f"{len(times)} {KINDS[kind]} on slices: {statistics.median(times) * 1000:.0f} ms median, "
                  f"{max(times) * 1000:.0f} ms most; round trips {statistics.median(trips):.0f} median, "
                  f"{max(trips)} most; the same entries as the whole state: {'yes' if same else 'NO'}")
        else:
            print(f"no {KINDS[kind]} to give")
    return same


def main() -> int:
    ap = broker_arguments(__doc__)
    ap.add_argument("--verdicts", type=int, default=20, help="this many verdicts, then as many unmerges and lifts")
    args = ap.parse_args()
    records = first_records(args.events, args.lines)
    gc.disable()  # (as idres ingest and the workers run: nothing the resolver builds forms cycles)
    return on_a_broker(args.bootstrap, lambda bootstrap: run(records, args.shards, args.verdicts, bootstrap))


if __name__ == "__main__":
    sys.exit(main())
