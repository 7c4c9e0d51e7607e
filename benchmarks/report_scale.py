"""What the analyst's outputs cost as the data grows: `idres ingest`, `idres snapshot` (with the metric views;
with and without the purchase models) and `idres report`, each in a fresh process, with its seconds and peak
memory.

    python benchmarks/report_scale.py EVENTS.jsonl [--work DIR] [--config rules.toml]
    python benchmarks/report_scale.py --people 100000 --seed 7 [--work DIR]   # about 1 M events

Times are wall seconds of each process, start-up included. With ``--people`` the events come from `idres
generate` (the demo's generator, which streams; written to the work directory). The purchase models run only
where the clv extra is installed; their first fit on a machine compiles code, so the snapshot with them runs
twice and both times are printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT))

from benchmarks.throughput import timed_child  # noqa: E402


def step(argv: list[str]) -> dict:
    """``idres ARGV`` in a fresh process, on every core: its wall seconds (start-up included) and peak memory."""
    seconds, peak, _ = timed_child(argv, pinned=False)
    return {"seconds": seconds, "peak_mib": peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", nargs="?")
    ap.add_argument("--people", type=int)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", help="working directory (default: a temporary one, removed at the end)")
    ap.add_argument("--config")
    args = ap.parse_args()
    if not args.events and not args.people:
        ap.error("give EVENTS.jsonl or --people N")
    with tempfile.TemporaryDirectory(prefix="idres-report-scale-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        events = args.events
        if events is None:
            events = str(work / "events.jsonl")
            print(f"... generating {args.people:,} people", file=sys.stderr, flush=True)
            step(["generate", "--people", str(args.people), "--seed", str(args.seed), "--out", events,
                  "--truth", str(work / "truth.csv")])
        config = ["--config", args.config] if args.config else []
        data, snap = str(work / "data"), str(work / "customers.duckdb")
        rows = []
        print("... ingest", file=sys.stderr, flush=True)
        rows.append(("idres ingest", step(["ingest", events, "--data-dir", data, *config])))
        print("... snapshot without the purchase models", file=sys.stderr, flush=True)
        rows.append(("idres snapshot --no-predict", step(["snapshot", "--data-dir", data, "--out", snap, "--no-predict",
                                                          *config])))
        from projections.metrics.predict import available

        if available() is None:
            for n in (1, 2):
                print(f"... snapshot with the purchase models ({n})", file=sys.stderr, flush=True)
                rows.append((f"idres snapshot (models, run {n})", step(["snapshot", "--data-dir", data, "--out", snap,
                                                                        *config])))
        print("... report", file=sys.stderr, flush=True)
        rows.append(("idres report", step(["report", snap, "--out", str(work / "report.html")])))
        import duckdb

        with duckdb.connect(snap, read_only=True) as con:
            n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
            n_profiles = con.execute("SELECT count(*) FROM profiles").fetchone()[0]
            contacts = con.execute("SELECT count(*) FROM promise_contacts").fetchone()[0]
            predicted = con.execute("SELECT count(*) FROM customer_value_predicted").fetchone()[0]
        size = (work / "report.html").stat().st_size
        print(f"{n_events:,} events, {n_profiles:,} profiles, {contacts:,} assisted contacts, {predicted:,} buyers "
              f"modelled; snapshot {Path(snap).stat().st_size / 2**20:,.0f} MiB, report {size / 2**20:,.1f} MiB\n")
        print("| step | seconds | peak MiB |")
        print("|---|---:|---:|")
        for name, r in rows:
            print(f"| {name} | {r['seconds']:,.1f} | {r['peak_mib']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
