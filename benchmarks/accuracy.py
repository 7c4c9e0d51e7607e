"""Pairwise precision / recall / F1 of deterministic linking on generated multi-channel data sets.

    python benchmarks/accuracy.py                      # the demo set (600 people) and a 20,000-person set
    python benchmarks/accuracy.py --people 600 50000   # other sizes

For each set it prints, side by side on the same events:
- idres (normalization + guards + the identity graph),
- a union-find over raw identifier strings (what a naive job does),
- a union-find over normalized identifiers without guards (normalization alone),
- the ceiling the identifier evidence allows: a union-find over the identifiers that truly belong to
  one person only (it needs the ground truth, so no engine can do it; recall above it would need
  attributes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver.measures import pairwise_scores
from streams.embedded import EmbeddedEngine  # noqa: E402
from streams.synthetic import SyntheticConfig, read_truth_csv, read_truth_events, write_dataset  # noqa: E402


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        parent = self.parent
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def union_find_clusters(events: list[tuple[str, list[str]]]) -> dict[str, object]:
    uf = UnionFind()
    for event_id, keys in events:
        uf.find(("e", event_id))
        for k in keys:
            uf.union(("e", event_id), ("i", k))
    return {event_id: uf.find(("e", event_id)) for event_id, _ in events}


def run(people: int, seed: int, workdir: Path) -> list[tuple[str, dict, float]]:
    events_file, truth_file = workdir / f"events-{people}.jsonl", workdir / f"truth-{people}.csv"
    stats = write_dataset(events_file, truth_file, SyntheticConfig(people=people, seed=seed))
    truth = read_truth_csv(truth_file)
    rows = []

    started = time.perf_counter()
    with EmbeddedEngine(workdir / f"data-{people}") as engine:
        engine.ingest_file(events_file)
        predicted = dict(zip(engine.views.ev_id, engine.views.ev_profile))
        views = engine.views
        normalized = [(views.ev_id[i], [views.node_keys[n] for n in views.ev_nodes[i]])
                      for i in range(len(views.ev_id))]
    rows.append(("idres (normalization + guards)", pairwise_scores(predicted, truth), time.perf_counter() - started))

    raw_events = []
    for obj in read_truth_events(events_file, truth):
        ids = obj.get("identifiers") or {}
        raw_events.append((obj["event_id"], [f"{t}:{v}" for t, v in ids.items() if isinstance(v, str)]))
    started = time.perf_counter()
    rows.append(("union-find, raw strings", pairwise_scores(union_find_clusters(raw_events), truth),
                 time.perf_counter() - started))

    # normalization alone: the engine's normalized identifiers, shared ones included, no guard
    shared_keys = {views.node_keys[i] for i in views.shared}
    started = time.perf_counter()
    rows.append(("union-find, normalized, no guards", pairwise_scores(union_find_clusters(normalized), truth),
                 time.perf_counter() - started))

    owners: dict[str, set] = defaultdict(set)
    for event_id, keys in normalized:
        for k in keys:
            owners[k].add(truth[event_id])
    personal = [(e, [k for k in keys if len(owners[k]) == 1]) for e, keys in normalized]
    rows.append(("ceiling: identifiers of one person only", pairwise_scores(union_find_clusters(personal), truth), 0.0))
    print(f"\n{people:,} people, seed {seed}: {stats['events']:,} events ({stats['lines']:,} lines; "
          f"{stats['kiosk_events']:,} at kiosks, {stats['placeholder_events']:,} with placeholders, "
          f"{stats['anonymous_events']:,} anonymous); idres flagged {len(shared_keys):,} identifiers as shared")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, nargs="+", default=[600, 20000])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idres-accuracy-") as tmp:
        for people in args.people:
            rows = run(people, args.seed, Path(tmp))
            print(f"{'system':<42} {'precision':>9} {'recall':>8} {'F1':>8} {'seconds':>8}")
            for name, s, secs in rows:
                print(f"{name:<42} {s['precision']:>9.4f} {s['recall']:>8.4f} {s['f1']:>8.4f} {secs:>8.2f}")


if __name__ == "__main__":
    main()
