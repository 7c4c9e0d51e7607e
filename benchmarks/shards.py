"""Deciding on shards: events/s of `idres ingest --shards N`, that the log is the same for every N, where the
time goes, and a model of more shards than this machine has cores.

    python benchmarks/shards.py EVENTS.jsonl [--shards 1,2,3] [--model 2,4,8,16,64]

Each N runs in a fresh process (peak memory is the process's and its workers'). Printed per N: seconds,
events/s, speed-up over one shard, the driver's busy share (the part no shard takes: reading, planning,
logging, the views), peak memory of the driver and of the largest worker, and whether the log is byte for
byte the one of N = 1.

The model takes the costs per event measured in the largest run: the driver's serial work (m), a worker's
catching up on one event another shard decided (f), validating, footprinting and deciding one event (d), and the critical path of the
windows (the longest chain of each window, L events in all). With the driver working while the shards do
(as it does while the shards validate), N shards take max(m, f (1 - 1/N) + d / N, d L / events) per event;
with none of it overlapped, m + max(f (1 - 1/N) + d / N, d L / events). Every decision is sent to N - 1 shards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import hashlib, json, resource, sys, time
sys.path.insert(0, {root!r})
from streams.embedded import EmbeddedEngine
with EmbeddedEngine({data!r}, shards={shards}) as engine:
    report = engine.ingest_file({events!r})
    stats = engine.shard_stats
    digest = hashlib.sha256()
    for _, entry in engine.log.read(0):
        digest.update(json.dumps(entry, sort_keys=True).encode())
    entries = len(engine.log)
print(json.dumps({{"seconds": report.seconds, "accepted": report.accepted, "lines": report.lines,
                  "digest": digest.hexdigest(), "entries": entries, "stats": stats,
                  "rss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "rss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
"""


def run(events: str, shards: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="idres-shards-") as tmp:
        code = _CHILD.format(root=str(ROOT), data=str(Path(tmp) / "data"), shards=shards, events=events)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--shards", default="1,2,3")
    ap.add_argument("--model", default="2,4,8,16,64")
    args = ap.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    results = {}
    for n in counts:
        results[n] = r = run(args.events, n)
        print(f"... {n} shard(s): {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    base = results[counts[0]]
    print(f"{base['accepted']:,} events ({base['lines']:,} lines, {base['entries']:,} log entries)\n")
    print("| shards | seconds | events/s | x one | driver busy | driver peak MiB | worker peak MiB | same log |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, r in results.items():
        stats = r["stats"]
        busy = (r["seconds"] - stats["waited"]) / r["seconds"] if stats else 1.0
        print(f"| {n} | {r['seconds']:.1f} | {r['accepted'] / r['seconds']:,.0f} | "
              f"{base['seconds'] / r['seconds']:.2f} | {busy:.0%} | {r['rss_self'] / 1024:,.0f} | "
              f"{r['rss_children'] / 1024:,.0f} | {'yes' if r['digest'] == base['digest'] else 'NO'} |")
    sharded = [n for n in counts if results[n]["stats"]]
    if not sharded:
        return 0
    n = max(sharded)
    r = results[n]
    stats, events = r["stats"], r["accepted"]
    m = (r["seconds"] - stats["waited"]) / events
    f = max(stats["catching_up"]) / (events * (1 - 1 / n))
    d = sum(stats["working"]) / events
    critical = stats["longest_chains"] / events
    print(f"\nCosts per event, from the {n}-shard run: driver {m * 1e6:.0f} us, catching up {f * 1e6:.0f} us, "
          f"validating and deciding {d * 1e6:.0f} us; {stats['windows']:,} windows, longest chains {critical:.1%} of the events")
    single = base["seconds"] / events
    print("\n| shards | modelled events/s, driver overlapped | none overlapped | x one shard (overlapped) | "
          "decisions sent per decision |")
    print("|---:|---:|---:|---:|---:|")
    for k in [int(x) for x in args.model.split(",")]:
        shard_time = max(f * (1 - 1 / k) + d / k, d * critical)
        overlapped = max(m, shard_time)
        now = m + shard_time
        print(f"| {k} | {1 / overlapped:,.0f} | {1 / now:,.0f} | {single / overlapped:.2f} | {k - 1} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
