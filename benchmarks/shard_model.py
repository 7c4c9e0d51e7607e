"""A model, by simulation over real events, of the identity graph sharded over N resolve partitions.

    python benchmarks/shard_model.py EVENTS.jsonl [--shards 1,2,3,16,64] [--cost 0.3]

The design it models (principle 6): each identifier key is hashed to one of N shards, which owns
"key -> profile"; an event visits the shards of its keys (one message per extra shard, through a
repartition topic), collecting the profiles they point to; two or more distinct profiles found make a
merge decision, sent to the shard that owns each absorbed profile's ID (profiles are sharded by ID too),
which records an alias. The events are first resolved by `idres ingest` (event-time order), so the
simulation uses the engine's own clusters and its shared identifiers (which link nobody and are skipped).

Printed per N: events whose keys span more than one shard, messages per event (key visits beyond the
first shard, plus alias messages for merges across shards), the busiest shard's share of the work
against a fair 1/N, and a throughput model: N x (one shard's rate) / (1 + cost x messages per event),
capped by the busiest shard. ``--cost`` is what one cross-shard message costs next to deciding one event
(0.3: a produce, a fetch and a lookup against a decide; measure it on your deployment). Also printed:
the largest clusters in identifiers, and those over 50 identifiers (the cap one public identity graph
puts on a graph), whose merges all land on one profile's shard.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.embedded import EmbeddedEngine  # noqa: E402


def shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % shards


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--shards", default="1,2,3,16,64")
    ap.add_argument("--cost", type=float, default=0.3,
                    help="a cross-shard message's cost next to deciding one event (default 0.3)")
    args = ap.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    with tempfile.TemporaryDirectory(prefix="idres-shards-") as tmp:
        with EmbeddedEngine(Path(tmp) / "data") as engine:
            report = engine.ingest_file(args.events)
            views = engine.views
            keys = views.node_keys
            shared = set(views.shared)
            # each event's linking keys (shared ones link nobody), in the order decided (the log's order)
            events = [[keys[n] for n in nodes if n not in shared] for nodes in views.ev_nodes]
            merges = [(m["survivor_id"], list(m["absorbed_ids"])) for m in views.merges]
            sizes = collections.Counter(len(p.nodes) for p in views.profiles.values() if p.nodes)
            largest = sorted((len(p.nodes) for p in views.profiles.values()), reverse=True)[:5]
    n_events = len(events)
    print(f"{report.accepted:,} events resolved ({report.seconds:.1f} s, {report.accepted / report.seconds:,.0f} "
          f"events/s on one shard); {len(merges):,} merge decisions; clusters by identifiers: largest "
          f"{', '.join(map(str, largest))}; {sum(c for s, c in sizes.items() if s > 50):,} over 50 identifiers")
    print("\n| shards | events spanning >1 shard | messages per event | busiest shard's work (fair share) "
          "| modelled rate (x one shard) |")
    print("|---:|---:|---:|---:|---:|")
    for n in counts:
        spanning = 0
        hops = 0
        work = collections.Counter()
        for i, ks in enumerate(events):
            touched = {shard_of(k, n) for k in ks} or {shard_of(f"event:{i}", n)}  # (only shared ones: anywhere)
            if len(touched) > 1:
                spanning += 1
            hops += max(len(touched) - 1, 0)
            for s in touched:
                work[s] += 1
        alias = 0
        for survivor, absorbed in merges:
            for a in absorbed:
                if shard_of(a, n) != shard_of(survivor, n):
                    alias += 1
                work[shard_of(a, n)] += 1
        messages = (hops + alias) / max(n_events, 1)
        busiest = max(work.values()) / max(sum(work.values()), 1)
        rate = min(n / (1 + args.cost * messages), 1 / busiest / (1 + args.cost * messages))
        print(f"| {n} | {spanning / max(n_events, 1):.1%} | {messages:.3f} | {busiest:.1%} ({1 / n:.1%}) | {rate:.2f} |")
    print("\nA doubling of shards gains rate(2N) / rate(N); the target is 1.7 or more per doubling.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
