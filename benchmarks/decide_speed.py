"""How fast the resolver decides labelled sets in order, and a digest of its decisions (to compare two versions).

    python benchmarks/decide_speed.py [--sets pseudopeople historical_50k ...] [--events FILE.jsonl ...]

Each set's records are taken in event-time order (as ``idres ingest`` takes them) and decided by one resolver
in this process: no log, no views, no checkpoint, so the figure is the resolver's own (validation,
normalization, linking, matching, the match model re-estimated as records arrive: out of the box, no
training step). The attribute-heavy sets are the labelled ones of ``benchmarks/linkage_comparison.py``
(``pip install -e '.[bench]'``); ``--events`` adds files of channel events (the demo's generator,
``benchmarks/crm_corpus.py``) decided with the built-in rules.

Printed per set: records, seconds, records/s and the first 16 hex digits of a SHA-256 over the decisions.
Run it on two versions of the code (``git worktree add``): a change meant to make the resolver faster
without changing what it decides must print the same digests.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resolver.config import ResolverConfig  # noqa: E402
from resolver.engine import Resolver  # noqa: E402
from streams.ordering import time_ordered  # noqa: E402
from streams.shards import in_order  # noqa: E402

LABELLED = ("pseudopeople", "historical_50k", "febrl3", "rldata10000")


def digest(entries: list) -> str:
    h = hashlib.sha256()
    for entry in entries:
        h.update(json.dumps(entry, sort_keys=True).encode())
    return h.hexdigest()[:16]


def run(name: str, lines: list[bytes], config: ResolverConfig) -> None:
    records = [raw for _, raw in time_ordered(lines)]
    started = time.perf_counter()
    out = in_order(records, Resolver(config))
    seconds = time.perf_counter() - started
    print(f"| {name} | {len(records):,} | {seconds:.1f} | {len(records) / seconds:,.0f} | {digest(out)} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="*", default=list(LABELLED), choices=LABELLED)
    ap.add_argument("--events", nargs="*", default=[], help="files of channel events (JSON lines)")
    args = ap.parse_args()
    gc.disable()  # (as idres ingest runs: nothing the resolver builds forms cycles)
    print("| set | records | seconds | records/s | decisions digest |")
    print("|---|---:|---:|---:|---|")
    for path in args.events:
        run(Path(path).name, Path(path).read_bytes().splitlines(), ResolverConfig())
    if args.sets:
        import linkage_comparison as lc

        work = Path(tempfile.mkdtemp(prefix="idres-decide-"))
        for name in args.sets:
            ds = lc.load(name, work, 2000, 7)
            run(name, ds.events_path.read_bytes().splitlines(), lc.idres_config(ds.events, ds.identifier_types, False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
