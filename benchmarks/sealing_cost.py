"""What sealing personal data in the decision log costs (crypto-shredding, ``streams.sealing``).

    python benchmarks/sealing_cost.py EVENTS.jsonl [--repeat 2]

Ingests the file into a new data directory twice per round, once as idres does (identifiers and contents
sealed under keys per data subject, the keys in ``keys.sqlite``) and once with sealing switched off in this
process (a pass-through sealer: the log written as plain JSON), then replays each directory (the state and
the views rebuilt from the log, every entry unsealed). Printed per mode: ingest events/s, replay entries/s,
the log's size and the key store's size and key count, the median of ``--repeat`` rounds (the two modes
alternate within a round); then an erasure of
the first customer with two or more events (how long it takes, with the rebuild it does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams import log as log_module  # noqa: E402
from streams.embedded import EmbeddedEngine  # noqa: E402


class PlainSealer:
    """Writes decisions as they are (what the log was before sealing)."""

    def __init__(self, keys: object) -> None:
        self.keys = keys

    def seal_entry(self, decisions):
        return decisions

    def unseal_entry(self, decisions):
        return decisions

    def prefetch(self, written: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def forget(self) -> None:
        pass


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else (
        path.stat().st_size if path.exists() else 0)


def run(events: Path, sealed: bool, work: Path) -> dict:
    real = log_module.Sealer
    if not sealed:
        log_module.Sealer = PlainSealer  # type: ignore[misc,assignment]
    try:
        data = work / ("sealed" if sealed else "plain")
        with EmbeddedEngine(data) as engine:
            started = time.perf_counter()
            report = engine.ingest_file(events)
            ingest = time.perf_counter() - started
            n = report.accepted + report.rejected
            keys = engine.log.keys.count() if sealed and engine.log.keys is not None else 0
        started = time.perf_counter()  # (a new reader: no key in memory yet, as `idres replay` starts)
        with EmbeddedEngine(data, use_checkpoint=False, writer=False) as reader:
            entries = len(reader.log)
        replay = time.perf_counter() - started
        return {"records": n, "ingest_s": ingest, "ingest_eps": n / ingest, "replay_s": replay,
                "replay_eps": entries / replay, "log_mib": _size(data / "log") / 2**20,
                "keys_mib": _size(data / "keys.sqlite") / 2**20, "keys": keys, "data": data}
    finally:
        log_module.Sealer = real  # type: ignore[misc]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"plain": [], "sealed": []}
    with tempfile.TemporaryDirectory(prefix="idres-sealing-") as tmp:
        for r in range(args.repeat):  # (the two modes alternate: a machine that slows down slows both)
            for sealed in (False, True):
                work = Path(tmp) / f"round{r}"
                work.mkdir(exist_ok=True)
                runs["sealed" if sealed else "plain"].append(run(args.events, sealed, work))
        best = {mode: {**got[-1], "ingest_eps": statistics.median(g["ingest_eps"] for g in got),
                       "replay_eps": statistics.median(g["replay_eps"] for g in got)} for mode, got in runs.items()}
        print(f"{'mode':<7} {'records':>8} {'ingest ev/s':>12} {'replay ent/s':>13} {'log MiB':>8} {'keys MiB':>9} "
              f"{'keys':>8}")
        for mode in ("plain", "sealed"):
            b = best[mode]
            print(f"{mode:<7} {b['records']:>8,} {b['ingest_eps']:>12,.0f} {b['replay_eps']:>13,.0f} "
                  f"{b['log_mib']:>8.1f} {b['keys_mib']:>9.1f} {b['keys']:>8,}")
        p, s = best["plain"], best["sealed"]
        print(f"sealing costs {100 * (1 - s['ingest_eps'] / p['ingest_eps']):.1f}% of ingest throughput and "
              f"{100 * (1 - s['replay_eps'] / p['replay_eps']):.1f}% of replay throughput; the log is "
              f"{s['log_mib'] / p['log_mib']:.2f}x as large")
        with EmbeddedEngine(best["sealed"]["data"]) as engine:
            views = engine.views
            pid = next(pid for pid, prof in sorted(views.profiles.items()) if len(prof.events) >= 2 and prof.nodes)
            key = views.node_keys[min(views.profiles[pid].nodes)]
            started = time.perf_counter()
            out = engine.erase([tuple(key.split(":", 1))], "benchmark")
            took = time.perf_counter() - started
        erased = out[-1]
        print(f"erasure of {pid} ({len(erased['nodes'])} identifiers, {len(erased['events'])} events): {took:.2f} s "
              f"(shredding, and the rebuild of {len(engine.log):,} entries it does)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
