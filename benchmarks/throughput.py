"""End-to-end speed and memory of `idres ingest` (one process, pinned to one core), then replay and snapshot.

    python benchmarks/throughput.py                 # ~1.35 million events (135,000 people)
    python benchmarks/throughput.py --people 20000  # quicker
    python benchmarks/throughput.py --profile 200000  # also: where the time goes, on the first N lines
    python benchmarks/throughput.py --matching both   # ingest with probabilistic matching off, then on

Prints events/s, wall time and peak resident memory of each step. The generated file is kept in
--workdir (default: a temporary directory) so repeated runs can reuse it with --reuse.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams.synthetic import SyntheticConfig, write_dataset  # noqa: E402


def timed_child(args: list[str], pinned: bool = True) -> tuple[float, int, str]:
    """Runs ``idres ARGS`` (``pinned``: to one core); returns wall seconds, its own peak RSS in MiB, and
    stdout."""
    def pin() -> None:
        if pinned:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, stdout=out, stderr=err,
                                preexec_fn=pin)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"idres {' '.join(args)} failed: {stderr.strip()}")
    return wall, usage.ru_maxrss // 1024, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=135_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir")
    parser.add_argument("--reuse", action="store_true", help="reuse the events file in --workdir if present")
    parser.add_argument("--profile", type=int, metavar="N", help="profile the ingest of the first N lines")
    parser.add_argument("--matching", choices=("on", "off", "both"), default="on",
                        help="probabilistic matching during the ingest (both: off first, then on, and the ratio)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="idres-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    events, truth = work / "events.jsonl", work / "truth.csv"
    if not (args.reuse and events.exists()):
        print(f"generating {args.people:,} people ...", flush=True)
        started = time.perf_counter()
        stats = write_dataset(events, truth, SyntheticConfig(people=args.people, seed=args.seed))
        print(f"  {stats['lines']:,} lines, {stats['bytes'] / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s")
    lines = sum(1 for _ in open(events, "rb"))
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)

    off_config = work / "matching-off.toml"
    off_config.write_text("fuzzy_matching = false\n")
    speeds: dict[str, float] = {}
    peaks: dict[str, int] = {}
    for mode in (("off", "on") if args.matching == "both" else (args.matching,)):
        shutil.rmtree(data, ignore_errors=True)
        extra = ["--config", str(off_config)] if mode == "off" else []
        wall, rss, out = timed_child(["ingest", str(events), "--data-dir", str(data), *extra])
        report = json.loads(out)["ingested"]
        speeds[mode] = lines / wall
        peaks["ingest"] = rss
        print(f"ingest    {lines:>10,} lines  {wall:8.1f} s  {lines / wall:>9,.0f} events/s  peak {rss:>6,} MiB "
              f"(matching {mode}; accepted {report['accepted']:,}, duplicates {report['duplicates']:,}, "
              f"rejected {report['rejected']:,})")
    if len(speeds) == 2:
        print(f"matching on keeps {speeds['on'] / speeds['off']:.0%} of the events/s of matching off")
    replay_extra = ["--config", str(off_config)] if args.matching == "off" else []
    wall, rss, _ = timed_child(["replay", "--data-dir", str(data), *replay_extra])
    peaks["replay from the checkpoint"] = rss
    print(f"replay    {lines:>10,} lines  {wall:8.1f} s  {'':>19}  peak {rss:>6,} MiB "
          f"(the checkpoint of the whole log: fold the views again, compare with the checkpoint's digest)")
    stale = data / "checkpoint.pickle"
    stale.rename(stale.with_name("checkpoint.bench-aside"))  # (as after an upgrade: no usable checkpoint)
    wall, rss, _ = timed_child(["replay", "--data-dir", str(data), *replay_extra])
    stale.with_name("checkpoint.bench-aside").unlink()
    peaks["replay, no usable checkpoint"] = rss
    print(f"replay    {lines:>10,} lines  {wall:8.1f} s  {'':>19}  peak {rss:>6,} MiB "
          f"(no usable checkpoint: fold the views, write them, then fold the resolver's state and write it)")
    for predict in ([], ["--no-predict"]):
        wall, rss, _ = timed_child(["snapshot", "--data-dir", str(data), "--out", str(work / "snapshot.duckdb"),
                                    *replay_extra, *predict])
        peaks[f"snapshot {'without' if predict else 'with'} the predicted value"] = rss
        print(f"snapshot  {'':>16}  {wall:8.1f} s  {'':>19}  peak {rss:>6,} MiB "
              f"({'without' if predict else 'with'} the predicted customer value, if its library is installed)")
    print("peak against the ingest's: " + "; ".join(f"{step} {rss / peaks['ingest']:.2f}x"
                                                     for step, rss in peaks.items() if step != "ingest"))
    print(f"log size  {sum(p.stat().st_size for p in (data / 'log').iterdir()) / 1e6:,.0f} MB; "
          f"checkpoint {(data / 'checkpoint.pickle').stat().st_size / 1e6:,.0f} MB")

    if args.profile:
        from streams.embedded import EmbeddedEngine

        head = work / "head.jsonl"
        with open(events, "rb") as src, open(head, "wb") as dst:
            for i, line in enumerate(src):
                if i >= args.profile:
                    break
                dst.write(line)
        shutil.rmtree(work / "profile", ignore_errors=True)
        engine = EmbeddedEngine(work / "profile")
        prof = cProfile.Profile()
        prof.enable()
        engine.ingest_file(head)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
        print(buf.getvalue())
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
