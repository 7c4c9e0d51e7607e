"""A restatement followed on key shards over Kafka, against loading a new session (every part sent anew, which
each restatement cost before).

    python benchmarks/key_shard_restatement.py EVENTS.jsonl [--lines 30000] [--shards 2] [--tail 2000]
        [--stragglers 3] [--bootstrap HOST:PORT]

The valid records are taken in event-time order, each event ID once (what the resolve role gives the key
shards). All but the last ``--tail`` are decided in order by one resolver (the
resolve worker's whole state), which is loaded on N key shards over a Kafka broker (``streams.kafka_key_shards``;
each shard held by a worker process of its own; the tests' broker unless ``--bootstrap`` names one), twice: the
second load is timed, the holders having joined their group for the first. The tail is decided on the shards
without ``--stragglers`` of its records, the first of them its first record (late events: they come after the
rest of the tail was decided). Then the log is restated from the first straggler's place, as the resolve role
does: the whole state decides the tail again in order with them, noting what its decisions touch
(``resolver.touch``), and the shards are sent the parts that can differ (``LocalKeyShards.follow``). Printed:
the state's size, the load's seconds and megabytes, the parts sent and the seconds that took, and whether the
next 1,000 records are decided on the shards as the whole state decides them.

The shards' fetches wait 5 ms here, as ``benchmarks/key_shards.py --kafka`` has them (``IDRES_TEST_KEY_SHARD_WAIT_MS``).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resolver.config import ResolverConfig  # noqa: E402
from resolver.touch import Touched  # noqa: E402
from streams.shards import in_order  # noqa: E402
from key_shards import (  # noqa: E402  (benchmarks/key_shards.py)
    a_timed_session, broker_arguments, decided_in_order, first_records, next_as_the_whole, on_a_broker, parts_of,
)


def valid_once(records: list[bytes]) -> list[bytes]:
    """The valid records, each event ID's first only: what the resolve role gives the key shards (``new_only``)."""
    from streams.pipeline import VALID, RecordPipeline

    checker = RecordPipeline(None, skip_blank=False)
    seen: set[str] = set()
    out = []
    for raw in records:
        outcome = checker.check(raw)
        if outcome.kind == VALID and outcome.event.event_id not in seen:
            seen.add(outcome.event.event_id)
            out.append(raw)
    return out


def run(records: list[bytes], n: int, tail: int, stragglers: int, bootstrap: str) -> bool:
    from tests.key_shard_holders import deployment, stop_holders

    config = ResolverConfig()
    head, rest, after = records[:-tail - 1000], records[-tail - 1000:-1000], records[-1000:]
    late = set(range(0, len(rest), max(len(rest) // stragglers, 1))[:stragglers])
    whole = decided_in_order(config, head, n, bootstrap)
    st = whole.state
    shares, size = parts_of(st, n)
    parts = sum(shares)
    settings, procs, stop = deployment(bootstrap, Path(tempfile.mkdtemp()), "ksrestate", n, holders=n)
    try:
        keyed, load = a_timed_session(settings, config, n, st)
        print(f"a new session: {load:.2f} s, {parts:,} parts, {size / 1e6:.1f} MB pickled")
        with keyed:
            started = time.perf_counter()
            keyed.decide([raw for i, raw in enumerate(rest) if i not in late])
            print(f"{len(rest) - len(late):,} records of the tail decided on the shards in "
                  f"{time.perf_counter() - started:.1f} s, {len(late)} stragglers left out")
            since = len(whole.state.seen_events)
            touched = Touched()
            whole.track(touched)
            started = time.perf_counter()
            in_order(rest, whole)  # (the restatement: the tail decided again with the stragglers)
            whole.track(None)
            print(f"the tail decided again with the stragglers in {time.perf_counter() - started:.2f} s "
                  f"({len(whole.state.seen_events) - since:,} events from position {since:,})")
            started = time.perf_counter()
            sent = keyed.follow(whole.state, since, touched)
            took = time.perf_counter() - started
            print(f"followed on the shards: {sent:,} parts sent ({sent / parts:.1%} of a load's) in {took:.2f} s "
                  f"({took / load:.1%} of a load's time)")
            same = next_as_the_whole(keyed, after, whole)
    finally:
        stop_holders(procs, stop)
    return same


def main() -> int:
    ap = broker_arguments(__doc__)
    ap.add_argument("--tail", type=int, default=2000, help="records decided on the shards before the stragglers")
    ap.add_argument("--stragglers", type=int, default=3)
    args = ap.parse_args()
    records = valid_once(first_records(args.events, args.lines))
    if len(records) < args.tail + 2000:
        print(f"idres: error: {len(records):,} records are too few for a tail of {args.tail:,}: give more --lines "
              f"or a smaller --tail", file=sys.stderr)
        return 2
    gc.disable()  # (as idres ingest and the workers run: nothing the resolver builds forms cycles)
    return on_a_broker(args.bootstrap, lambda bootstrap: run(records, args.shards, args.tail, args.stragglers, bootstrap))


if __name__ == "__main__":
    sys.exit(main())
