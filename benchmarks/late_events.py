"""What late events cost: the log restated from their place (README: late events), measured with the embedded
driver on one file of events.

    python benchmarks/late_events.py EVENTS.jsonl [--stragglers 100] [--recent 0.05] [--seed 1]

Three runs, each checked against the first (the share of events given the same profile ID):

- ``one command``: the whole file by one `idres ingest` (the reference);
- ``backfill``: the newer half of the history first, then the older half (history loaded after going live):
  the second command restates everything after the oldest event;
- ``stragglers``: all but ``--stragglers`` events chosen at random among the newest ``--recent`` share of
  the history, then those (late arrivals): the second command restates from the earliest straggler's place;
- the same with the history loaded in ``--commands`` commands in time order (daily files), then the late
  ones: a restatement starts from the checkpoint before the latest, taken by an earlier command.

Each command is an `idres ingest` of its own, pinned to one core. Prints, for each run, the seconds and the peak
memory of each command (with more than three: all but the last together, their seconds summed and their highest
peak, then the last), the entries restated, and the share of events given the profile ID the one command gives.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from streams.embedded import EmbeddedEngine  # noqa: E402
from throughput import timed_child  # noqa: E402
from streams.ordering import order_key  # noqa: E402


def run(work: Path, name: str, parts: list[list[bytes]]) -> tuple[dict[str, str], list[float], list[int], int]:
    """Each part ingested by an `idres ingest` of its own (pinned to one core): the profile ID of each event,
    the seconds and peak MiB of each command, and the entries restated."""
    seconds, peaks = [], []
    for k, lines in enumerate(parts):
        path = work / f"{name}-{k}.jsonl"
        path.write_bytes(b"".join(lines))
        wall, peak, _ = timed_child(["ingest", str(path), "--data-dir", str(work / name)])
        seconds.append(wall)
        peaks.append(peak)
    with EmbeddedEngine(work / name, writer=False, load="views") as engine:
        restated = sum(r["entries"] for r in engine.views.restatements)
        out = dict(zip(engine.views.ev_id, engine.views.ev_profile))
    return out, seconds, peaks, restated


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--stragglers", type=int, default=100)
    ap.add_argument("--recent", type=float, default=0.05)
    ap.add_argument("--commands", type=int, default=10, help="commands the history is loaded in, in the last run")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    lines = [ln + b"\n" for ln in Path(args.events).read_bytes().splitlines() if ln.strip()]
    by_time = sorted(lines, key=lambda ln: order_key(ln.strip()))
    half = len(by_time) // 2
    rng = random.Random(args.seed)
    recent = range(int(len(by_time) * (1 - args.recent)), len(by_time))
    late = set(rng.sample(recent, min(args.stragglers, len(recent))))
    runs = [("one command", [lines]),
            ("backfill: newer half, then older half", [by_time[half:], by_time[:half]]),
            (f"stragglers: all but {len(late)} of the newest {args.recent:.0%}, then those",
             [[ln for i, ln in enumerate(by_time) if i not in late], [by_time[i] for i in sorted(late)]]),
            (f"the same in {args.commands} commands in time order, then the {len(late)} late ones",
             [[ln for i, ln in enumerate(by_time) if i not in late and k * len(by_time) // args.commands <= i
               < (k + 1) * len(by_time) // args.commands] for k in range(args.commands)]
             + [[by_time[i] for i in sorted(late)]])]
    print(f"{len(lines):,} lines ({args.events})")
    print("| run | seconds per command | peak MiB per command | entries restated | same profile ID as one command |")
    print("|---|---|---|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="idres-late-") as tmp:
        reference = None
        for n, (name, parts) in enumerate(runs):
            got, seconds, peaks, restated = run(Path(tmp), f"run{n}", parts)
            if reference is None:
                reference = got
            same = sum(1 for e, p in reference.items() if got.get(e) == p) / max(len(reference), 1)
            shown = seconds if len(seconds) <= 3 else [sum(seconds[:-1]), seconds[-1]]
            highest = peaks if len(peaks) <= 3 else [max(peaks[:-1]), peaks[-1]]
            print(f"| {name} | {' + '.join(f'{s:.1f}' for s in shown)} | {' / '.join(f'{m:,}' for m in highest)} "
                  f"| {restated:,} | {same:.2%} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
