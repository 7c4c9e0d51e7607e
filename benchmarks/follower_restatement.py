"""What a restatement costs the lookup API's views: `idres serve` on a data directory folds them again when one
completes, from the views it kept (``IDRES_REWIND_EVERY``) or, without those, from a checkpoint older than the
restatement's place or from the start of the log.

    python benchmarks/follower_restatement.py EVENTS.jsonl [--stragglers 20] [--recent 0.02] [--seed 1]

The events but ``--stragglers`` chosen at random among the newest ``--recent`` share of the history are
ingested in four commands in time order (a checkpoint after each); two followers of the data directory (one
keeping views, one not: ``rewind_every`` 0) follow it, each looking once after each command; then the
stragglers are ingested (the log is restated from the earliest one's place; that command's own checkpoint is
not written, as a follower that looks while it runs sees the restatement complete before it is). Prints, for each follower, where
it folded its views from after the restatement and how long that took, the views kept (bytes), and whether
the two give the same views (digests).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.api import Follower  # noqa: E402
from streams.embedded import EmbeddedEngine  # noqa: E402
from streams.ordering import order_key  # noqa: E402


def ingest(data: Path, lines: list[bytes], name: str, checkpoint: bool = True) -> float:
    path = data.parent / f"{name}.jsonl"
    path.write_bytes(b"".join(lines))
    started = time.perf_counter()
    with EmbeddedEngine(data) as engine:
        if not checkpoint:
            engine.checkpoint = lambda *args, **kwargs: None  # type: ignore[method-assign]
        engine.ingest_file(path)
    path.unlink()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events", type=Path)
    ap.add_argument("--stragglers", type=int, default=20)
    ap.add_argument("--recent", type=float, default=0.02, help="share of the newest history they come from")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    lines = sorted((line for line in args.events.read_bytes().splitlines(keepends=True) if line.strip()),
                   key=lambda line: order_key(line.strip()))
    rnd = random.Random(args.seed)
    newest = range(len(lines) - max(args.stragglers, int(len(lines) * args.recent)), len(lines))
    late = set(rnd.sample(newest, args.stragglers))
    first = [x for i, x in enumerate(lines) if i not in late]
    with tempfile.TemporaryDirectory(prefix="idres-follow-") as tmp:
        data = Path(tmp) / "data"
        quarter = len(first) // 4
        took = ingest(data, first[:quarter], "part-0")
        print(f"{len(lines):,} events; command 1 of 4: {took:.1f} s", flush=True)
        followers = {"keeping views": Follower(data), "not keeping (0)": Follower(data, rewind_every=0)}
        for f in followers.values():
            f.load()
            f.poll()
        for k in (1, 2, 3):
            took = ingest(data, first[quarter * k: quarter * (k + 1) if k < 3 else None], f"part-{k}")
            print(f"command {k + 1} of 4: {took:.1f} s", flush=True)
            for f in followers.values():
                while f.poll():
                    pass
                f.poll()  # (a look after the fold: the views are kept when it is time)
        took = ingest(data, [lines[i] for i in sorted(late)], "stragglers", checkpoint=False)
        print(f"{args.stragglers} stragglers: {took:.1f} s", flush=True)
        digests = set()
        for name, f in followers.items():
            kept = sum(len(k[1]) for k in f.kept)
            started = time.perf_counter()
            while f.poll():
                pass
            print(f"{name:<16} views folded again from entry {f.rebuilt_from:,} of {len(f.log):,} in "
                  f"{f.rebuild_seconds:.2f} s (looks until caught up {time.perf_counter() - started:.2f} s); "
                  f"views kept before: {kept / 2**20:,.1f} MiB", flush=True)
            digests.add(f.views.digest())
            f.stop()
        print("same views:", len(digests) == 1)


if __name__ == "__main__":
    main()
