"""What-if replay: the whole log's inputs decided again under other rules, in a scratch directory, and what
would change, without touching the live data.

The inputs are what the log records (``streams.embedded.redo``): each event (its identifiers as they were
normalized, and the raw values of those it could not use), and each person's verdict, unmerge and lift in
its place among them. A person's command that no longer applies under the new rules (a review the new
matcher never queues, an unmerge of identifiers the new rules never joined) is skipped and counted.

The comparison is over events (every accepted event has a profile, one with only a name and address too)
and identifiers:

* ``links_added`` / ``links_removed``: pairs of events in one profile under the new rules and not under the
  live ones, and the other way round (from the table of live x new profiles, without listing pairs);
* ``profiles_split``: live profiles whose events the new rules part; ``profiles_joined``: new profiles
  holding events of several live ones;
* ``newly_shared`` / ``no_longer_shared``: identifiers flagged shared under one rule set only;
* ``reviews_added`` / ``reviews_removed``: pending possible matches (by their pair of identifiers);
* with a truth file, pairwise precision, recall and F1 of both (``resolver.measures``);
* a sample of changed profiles, each with the live and the new explanation side by side.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from projections.customer import CustomerViews, ProjectionConfig
from resolver.config import ResolverConfig
from resolver.decisions import record_of
from resolver.restate import RESTATE_TYPES
from resolver.errors import IdresError
from streams.embedded import EmbeddedEngine, erased_types, holds_erased, redo
from streams.sealing import is_erased

MARKER = ".idres-whatif"  # a scratch directory this command made (and may replace)
COMMANDS = ("review_decided", "connection_banned", "ban_lifted")


def replay(entries: Iterable[tuple[int, list[dict[str, Any]]]], scratch: Path, config: ResolverConfig,
           projection: Optional[ProjectionConfig] = None,
           progress: Optional[Callable[[int], None]] = None) -> tuple[EmbeddedEngine, dict[str, int]]:
    """Decides the inputs of ``entries`` again under ``config`` into a new data directory ``scratch`` (an
    earlier scratch directory there is replaced; any other directory is refused). Returns the engine (open:
    close it) and counts: entries read, inputs decided, commands skipped."""
    if scratch.exists():
        if not (scratch / MARKER).is_file():
            raise IdresError(f"{scratch} exists and is not a what-if scratch directory: give --scratch a new "
                             f"directory (it is replaced on every run)")
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    (scratch / MARKER).write_text("a what-if replay: `idres explain ... --data-dir` this directory; replaced by the "
                                  "next `idres whatif --scratch` here\n")
    # (the views folded once the new resolver's state is written and let go of: ``EmbeddedEngine.checkpoint``)
    engine = EmbeddedEngine(scratch, config, projection, fold_views="after")
    counts = Counter(entries=0, decided=0, commands_skipped=0, rejected_records=0, erased=0)
    batch: list[list[dict[str, Any]]] = []
    try:
        for _, entry in entries:
            counts["entries"] += 1
            if holds_erased(entry):  # (what an erasure made unreadable is not decided again)
                counts["erased"] += 1
                continue
            rec = record_of(entry)
            if rec["type"] in RESTATE_TYPES:  # (a restatement's own: the what-if log is decided in one order)
                continue
            if any(is_erased(k) for k in rec.get("nodes", ())):  # (another customer's identifier was erased)
                gone = erased_types(rec["nodes"])
                rec = {**rec, "nodes": [k for k in rec["nodes"] if not is_erased(k)],
                       "read": [r for r in rec.get("read", ()) if r["type"] not in gone]}
            try:
                decisions = redo(engine.resolver, _where_now(engine.resolver, rec))
            except IdresError:
                if rec["type"] not in COMMANDS:
                    raise
                counts["commands_skipped"] += 1
                continue
            counts["rejected_records" if rec["type"] == "event_rejected" else "decided"] += 1
            if decisions:
                batch.append(decisions)
            if len(batch) >= 2000:
                engine.commit(batch)
                batch = []
            if progress is not None and counts["entries"] % 1000 == 0:
                progress(1000)
        engine.commit(batch)
        engine.checkpoint(force=True)
    except BaseException:
        engine.close()
        raise
    return engine, dict(counts)


def _where_now(resolver: Any, rec: dict[str, Any]) -> dict[str, Any]:
    """An unmerge names the profile its identifiers were in; under other rules that is the profile the first
    of them is in now (if any)."""
    if rec["type"] != "connection_banned":
        return rec
    st = resolver.state
    idx = st.node_index.get(rec["nodes"][0])
    pid = st.node_profile[idx] if idx is not None else None
    return {**rec, "profile_id": pid} if pid is not None else rec


def _clusters(views: CustomerViews) -> dict[str, str]:
    """Event -> profile: every accepted event has one (an event with only attributes too, which only the
    matcher links, and an event whose identifiers are all shared)."""
    return {e: p for e, p in zip(views.ev_id, views.ev_profile) if p is not None}  # (None: erased)


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def compare(live: CustomerViews, new: CustomerViews, truth: Optional[dict[str, str]] = None,
            sample: int = 5) -> dict[str, Any]:
    """What changes from ``live`` to ``new`` (see the module docstring)."""
    a, b = _clusters(live), _clusters(new)
    common = a.keys() & b.keys()
    both = Counter((a[k], b[k]) for k in common)
    live_sizes, new_sizes = Counter(a[k] for k in common), Counter(b[k] for k in common)
    together = _pairs(both.values())
    parts: dict[str, set[str]] = {}
    sources: dict[str, set[str]] = {}
    for (pa, pb) in both:
        parts.setdefault(pa, set()).add(pb)
        sources.setdefault(pb, set()).add(pa)
    split = sorted(p for p, s in parts.items() if len(s) > 1)
    joined = sorted(p for p, s in sources.items() if len(s) > 1)
    shared_a = {live.node_keys[i] for i in live.shared}
    shared_b = {new.node_keys[i] for i in new.shared}

    def pending(views: CustomerViews) -> set[tuple[str, str]]:
        return {tuple(sorted((r["identifier"], r["other_identifier"]))) for r in views.review_queue()}

    ra, rb = pending(live), pending(new)
    out: dict[str, Any] = {
        "events_compared": len(common),
        "profiles": {"live": len(live.profiles), "new": len(new.profiles)},
        "events": {"live": len(live.ev_id), "new": len(new.ev_id)},
        "links_added": _pairs(new_sizes.values()) - together,
        "links_removed": _pairs(live_sizes.values()) - together,
        "profiles_split": len(split),
        "profiles_joined": len(joined),
        "newly_shared": sorted(shared_b - shared_a)[:100],
        "newly_shared_count": len(shared_b - shared_a),
        "no_longer_shared": sorted(shared_a - shared_b)[:100],
        "no_longer_shared_count": len(shared_a - shared_b),
        "reviews": {"live": len(ra), "new": len(rb), "added": len(rb - ra), "removed": len(ra - rb)},
    }
    if truth is not None:
        from resolver.measures import pairwise_scores

        out["accuracy"] = {name: pairwise_scores(dict(zip(v.ev_id, v.ev_profile)), truth)
                           for name, v in (("live", live), ("new", new))}
    changed = []
    for pa in split[:sample]:
        changed.append(_side_by_side(live, new, "split", [pa], sorted(parts[pa])))
    for pb in joined[:max(0, sample - len(changed))]:
        changed.append(_side_by_side(live, new, "joined", sorted(sources[pb]), [pb]))
    out["sample"] = changed
    return out


def _side_by_side(live: CustomerViews, new: CustomerViews, kind: str, live_ids: list[str],
                  new_ids: list[str]) -> dict[str, Any]:
    def brief(views: CustomerViews, pid: str) -> dict[str, Any]:
        e = views.explain(pid) or {}
        return {"profile_id": pid, "identifiers": e.get("identifiers", [])[:20], "summary": e.get("summary", [])[:12]}

    return {"change": kind, "live": [brief(live, p) for p in live_ids], "new": [brief(new, p) for p in new_ids]}


def report_text(result: dict[str, Any]) -> str:
    r = result
    lines = [f"What-if replay: {r['replay']['decided']:,} inputs decided again under the new rules "
             f"({r['replay']['commands_skipped']} person's command(s) no longer apply); live data untouched.",
             f"  profiles            {r['profiles']['live']:,} -> {r['profiles']['new']:,}",
             f"  event pairs         +{r['links_added']:,} linked, -{r['links_removed']:,} unlinked "
             f"(of {r['events_compared']:,} events)",
             f"  profiles split      {r['profiles_split']:,}   profiles joined  {r['profiles_joined']:,}",
             f"  identifiers shared  +{r['newly_shared_count']:,} newly, -{r['no_longer_shared_count']:,} no longer",
             f"  review queue        {r['reviews']['live']:,} -> {r['reviews']['new']:,} pending "
             f"(+{r['reviews']['added']:,}, -{r['reviews']['removed']:,})"]
    if "accuracy" in r:
        for name in ("live", "new"):
            s = r["accuracy"][name]
            lines.append(f"  {name:<4} precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}")
    for c in r["sample"]:
        lines.append("")
        lines.append(f"  {c['change']}: live {', '.join(p['profile_id'] for p in c['live'])}  ->  new "
                     f"{', '.join(p['profile_id'] for p in c['new'])}")
        for side in ("live", "new"):
            for p in c[side]:
                lines.append(f"    [{side}] {p['profile_id']}: {', '.join(p['identifiers'][:6])}")
                lines += [f"        {s}" for s in p["summary"][:4]]
    lines.append(f"\nThe new rules' data directory: {r['scratch']} (`idres explain PROFILE_ID --data-dir` it).")
    return "\n".join(lines)
