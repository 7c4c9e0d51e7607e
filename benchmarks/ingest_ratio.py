"""`idres ingest` against a bare union-find pass over the same file, in one run, both on one core.

    python benchmarks/ingest_ratio.py EVENTS.jsonl [MORE.jsonl ...] [--lines N] [--repeat R]

The bare pass is the least any identity resolution does: read the file, parse each line (orjson), and join
the identifiers of each event in a dict union-find (path halving, union by size) keyed by the raw
``type:value`` strings, with no validation, normalization, guards, matching, log or views. `idres ingest`
does all of those, with probabilistic matching on, into a fresh data directory (the fsync'd decision log,
the views, the checkpoint). Both run pinned to one core, one after the other, ``--repeat`` times, alternately;
the least time of each is kept (this machine's speed varies from one run to the next).

Printed per file: lines, the bare pass's seconds, the ingest's seconds and events/s, the ratio of the two,
the ingest's peak resident memory and that per million lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import timed_child  # noqa: E402


def union_find_pass(path: str) -> tuple[float, int, int]:
    """Seconds, events joined and clusters of the bare pass over ``path``."""
    started = time.perf_counter()
    parent: dict[str, str] = {}
    size: dict[str, int] = {}

    def find(x: str) -> str:
        while True:
            p = parent[x]
            if p == x:
                return x
            g = parent[p]
            parent[x] = g
            x = g

    events = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                record = orjson.loads(line)
                ids = record.get("identifiers")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if not isinstance(ids, dict) or not ids:
                continue
            events += 1
            root = None
            for kind, value in ids.items():
                key = f"{kind}:{value}"
                if key not in parent:
                    parent[key] = key
                    size[key] = 1
                r = find(key)
                if root is None:
                    root = r
                elif r != root:
                    if size[r] > size[root]:
                        r, root = root, r
                    parent[r] = root
                    size[root] += size[r]
    clusters = sum(1 for k, p in parent.items() if k == p)
    return time.perf_counter() - started, events, clusters


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", nargs="+")
    ap.add_argument("--lines", type=int, default=0, help="the first this many lines of each file (0: all)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    print("| file | lines | bare union-find s | idres ingest s | ingest events/s | ratio | ingest peak MiB "
          "| MiB per million lines |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # (the bare pass on the core the ingest gets)
    for source in args.events:
        work = Path(tempfile.mkdtemp(prefix="idres-ratio-"))
        try:
            path = str(Path(source).resolve())
            if args.lines:
                path = str(work / "events.jsonl")
                with open(source, "rb") as fh, open(path, "wb") as out:
                    for i, line in enumerate(fh):
                        if i >= args.lines:
                            break
                        out.write(line)
            with open(path, "rb") as fh:
                lines = sum(1 for _ in fh)
            bare, ingest, peak = float("inf"), float("inf"), 0
            events = 0
            for r in range(max(args.repeat, 1)):
                seconds, _, _ = union_find_pass(path)
                bare = min(bare, seconds)
                data = work / f"data{r}"
                seconds, rss, out = timed_child(["ingest", path, "--data-dir", str(data)])
                shutil.rmtree(data, ignore_errors=True)
                if seconds < ingest:
                    ingest, peak = seconds, rss
                    events = _events(out)
                print(f"  (run {r + 1}: bare {bare:.2f} s, ingest {seconds:.1f} s)", file=sys.stderr, flush=True)
            rate = f"{events / ingest:,.0f}" if events else ""
            print(f"| {Path(source).name} | {lines:,} | {bare:.2f} | {ingest:.1f} | {rate} | {ingest / bare:.1f} "
                  f"| {peak:,} | {peak / lines * 1e6:,.0f} |", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _events(stdout: str) -> int:
    """The events the ingest decided, from its JSON report (0 if it does not say)."""
    start = stdout.find("{")
    if start < 0:
        return 0
    try:
        report = orjson.loads(stdout[start:])
    except orjson.JSONDecodeError:
        return 0
    return int((report.get("ingested") or {}).get("accepted") or 0)


if __name__ == "__main__":
    raise SystemExit(main())
