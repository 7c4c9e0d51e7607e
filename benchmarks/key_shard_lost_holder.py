"""A key-shard holder lost mid-stream: the session follows the state, loading anew only the lost holder's shards,
against loading a new session (every shard's parts sent anew, which each lost holder cost before).

    python benchmarks/key_shard_lost_holder.py EVENTS.jsonl [--lines 30000] [--shards 2] [--batch 1000]
        [--bootstrap HOST:PORT]

The valid records are taken in event-time order, each event ID once (what the resolve role gives the key
shards). All but the last three ``--batch`` are decided in order by one resolver (the resolve worker's whole
state), which is loaded on N key shards over a Kafka broker (``streams.kafka_key_shards``; each shard held by a
worker process of its own; the tests' broker unless ``--bootstrap`` names one), twice: the second load is timed,
the holders having joined their group for the first. The next batch is decided on the shards; then one holder is
killed with SIGKILL, and the next batch is given to the shards until its shards are found lost (the group gives
them to the holders left, which hold no parts of them). As the resolve role does then, the whole state decides
those records in order, noting what its decisions touch (``resolver.touch``), and the session follows it
(``KafkaKeyShards.follow``): the lost shards loaded anew, the others sent the parts those decisions touched.
Printed: the state's size, the load's seconds, how long the loss took to be found, what following sent and took,
and whether the last batch is decided on the shards as the whole state decides them.

The shards' fetches wait 5 ms here, as ``benchmarks/key_shards.py --kafka`` has them (``IDRES_TEST_KEY_SHARD_WAIT_MS``).
"""

from __future__ import annotations

import gc
import os
import signal
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
from key_shard_restatement import valid_once  # noqa: E402


def run(records: list[bytes], n: int, batch: int, bootstrap: str) -> bool:
    from streams.kafka_key_shards import PartsLost
    from tests.key_shard_holders import deployment, stop_holders

    config = ResolverConfig()
    head, before = records[:-3 * batch], records[-3 * batch:-2 * batch]
    during, after = records[-2 * batch:-batch], records[-batch:]
    whole = decided_in_order(config, head, n, bootstrap, then=f" on {n} holders")
    st = whole.state
    parts, size = parts_of(st, n)
    settings, procs, stop = deployment(bootstrap, Path(tempfile.mkdtemp()), "kslost", n, holders=n)
    try:
        keyed, load = a_timed_session(settings, config, n, st)
        print(f"a new session: {load:.2f} s, {sum(parts):,} parts, {size / 1e6:.1f} MB pickled")
        with keyed:
            for entry in keyed.decide(before):
                whole.apply_all(entry)
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].join(5)
            killed = time.perf_counter()
            try:
                got = keyed.decide(during)
                print("the shards answered on without the lost holder's parts: a defect")
                return False
            except PartsLost as exc:
                lost = sorted(exc.shards)
            found = time.perf_counter() - killed
            since, touched = len(whole.state.seen_events), Touched()
            whole.track(touched)
            started = time.perf_counter()
            got = in_order(during, whole)  # (the resolve role decides the run in order meanwhile)
            whole.track(None)
            in_order_s = time.perf_counter() - started
            started = time.perf_counter()
            sent = keyed.follow(whole.state, since, touched)
            took = time.perf_counter() - started
            print(f"holder killed: its shard(s) {lost} found lost {found:.1f} s later; {len(got):,} records decided in "
                  f"order in {in_order_s:.2f} s")
            print(f"followed: {keyed.reloaded} shard(s) loaded anew ({sum(parts[s] for s in lost):,} parts) and "
                  f"{sent:,} parts sent in {took:.2f} s ({took / load:.1%} of a new session's time)")
            same = next_as_the_whole(keyed, after, whole)
    finally:
        stop_holders(procs, stop)
    return same


def main() -> int:
    ap = broker_arguments(__doc__)
    ap.add_argument("--batch", type=int, default=1000, help="records given to the shards at once")
    args = ap.parse_args()
    records = valid_once(first_records(args.events, args.lines))
    if len(records) < 6 * args.batch:
        print(f"idres: error: {len(records):,} records are too few: give more --lines", file=sys.stderr)
        return 2
    gc.disable()  # (as idres ingest and the workers run: nothing the resolver builds forms cycles)
    return on_a_broker(args.bootstrap, lambda bootstrap: run(records, args.shards, args.batch, bootstrap))


if __name__ == "__main__":
    sys.exit(main())
