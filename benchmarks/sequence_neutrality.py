"""Sequence neutrality, measured: the same events ingested in other orders (timestamps unchanged) against the
file as given. For each order: the pairwise agreement of the two partitions (F1 of one scored against the
other) and the share of events given the same profile ID.

    python benchmarks/sequence_neutrality.py EVENTS.jsonl [--orders 2] [--seed 1] [--config rules.toml]
    python benchmarks/crm_corpus.py --people 2000 --seed 7 --out /tmp/e7.jsonl --truth /tmp/t7.csv
    python benchmarks/sequence_neutrality.py /tmp/e7.jsonl --orders 3
    python benchmarks/sequence_neutrality.py /tmp/e7.jsonl --commands 4   # each order in 4 ingest commands

Orders: ``shuffled`` (a seeded random permutation), ``reversed``, and ``by time`` (sorted by occurred_at,
then event ID: the canonical order). Prints one table row per order.
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

import orjson  # noqa: E402

from resolver.measures import pairwise_scores  # noqa: E402
from streams.embedded import EmbeddedEngine  # noqa: E402
from streams.settings import load_settings  # noqa: E402


def resolve(lines: list[bytes], work: Path, name: str, config, projection, order: str,
            commands: int = 1) -> tuple[dict[str, str], float]:
    """The lines ingested by ``commands`` ingest commands one after the other (the k-th takes every
    ``commands``-th line from the k-th on)."""
    started = time.perf_counter()
    for k in range(commands):
        path = work / f"{name}-{k}.jsonl"
        path.write_bytes(b"".join(lines[k::commands]))
        with EmbeddedEngine(work / name, config, projection, order=order) as engine:
            engine.ingest_file(path)
            out = dict(zip(engine.views.ev_id, engine.views.ev_profile))
    return out, time.perf_counter() - started


def time_key(line: bytes) -> tuple[str, str]:
    from datetime import datetime, timezone

    try:
        ev = orjson.loads(line)
        when = datetime.fromisoformat(str(ev["occurred_at"]).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return (when.astimezone(timezone.utc).isoformat(), str(ev.get("event_id", "")))
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, OverflowError):
        return ("", "")  # (a bad record: first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--orders", type=int, default=2, help="random permutations to try (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", default=None)
    ap.add_argument("--commands", type=int, default=1,
                    help="ingest each order in this many commands, one after the other (late events: events older "
                         "than ones an earlier command decided)")
    ap.add_argument("--order", choices=("time", "file"), default="time",
                    help="how ingest orders a file's events: time (the default, as `idres ingest`) or file (as "
                         "`idres ingest --file-order`: the resolver's own sensitivity to order)")
    args = ap.parse_args()
    config, projection = load_settings(args.config)
    lines = [ln if ln.endswith(b"\n") else ln + b"\n" for ln in Path(args.events).read_bytes().splitlines() if ln.strip()]
    orders: list[tuple[str, list[bytes]]] = []
    rng = random.Random(args.seed)
    for k in range(args.orders):
        shuffled = list(lines)
        rng.shuffle(shuffled)
        orders.append((f"shuffled #{k + 1}", shuffled))
    orders.append(("reversed", lines[::-1]))
    orders.append(("by time", sorted(lines, key=time_key)))
    with tempfile.TemporaryDirectory(prefix="idres-neutrality-") as tmp:
        work = Path(tmp)
        base, seconds = resolve(lines, work, "file-order", config, projection, args.order)
        print(f"{len(lines):,} lines, {len(base):,} events resolved from the file as given in {seconds:.1f} s "
              f"(ingest order: {args.order})")
        print(f"| order ({args.commands} command{'s' if args.commands != 1 else ''}) | pairwise F1 against the "
              f"file's order | precision | recall | same profile ID | seconds |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, order in orders:
            other, took = resolve(order, work, name.replace(" ", "-").replace("#", ""), config, projection, args.order,
                                  args.commands)
            scores = pairwise_scores(other, base)
            same = sum(1 for e, p in base.items() if other.get(e) == p) / max(len(base), 1)
            print(f"| {name} | {scores['f1']:.4f} | {scores['precision']:.4f} | {scores['recall']:.4f} | {same:.1%} "
                  f"| {took:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
