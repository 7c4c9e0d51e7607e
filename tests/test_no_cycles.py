"""The engine pauses the cyclic garbage collector while it builds its state (``streams.log.bulk_work``: millions of
long-lived objects would be scanned over and over), and says that nothing it builds forms cycles. A cycle it
does build is never freed while an ingest runs, nor anything the cycle holds: a frame kept by a handled
exception held the whole stack of its call, the pipeline and the resolver's state with it."""

from __future__ import annotations

import collections
import gc
import json
import types

from resolver import clear_caches
from streams.embedded import EmbeddedEngine
from streams.log import bulk_work
from tests.test_shards import every_guard_corpus

OURS = ("resolver", "projections", "streams", "schemas")


def _records() -> list[bytes]:
    unusual = [json.dumps({"event_id": f"odd-{i}", "occurred_at": f"2025-04-{1 + i:02d}T00:00:00Z", "channel": "store",
                           "event_type": "purchase", "identifiers": {"phone": raw, "email": f"odd{i}@example.org"},
                           "attributes": {"first_name": "Ann", "date_of_birth": "31/02/1990"}}).encode()
               for i, raw in enumerate(("+999 1234567", "+3 1234 5678", "00999 123 4567", "+44 (0) 20 7946 0018",
                                        "0049 30 1234567", "12", "+011 44 20 7946 0018", "+0044 20 7946 0018"))]
    return every_guard_corpus()[0] + unusual + [b"{not json", b'{"event_id": 5}']


def test_an_ingest_with_the_collector_paused_leaves_nothing_only_the_collector_frees(tmp_path):
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"\n".join(_records()) + b"\n")
    clear_caches()  # (numbers read before, by another test, would not be read again)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for fold_views in ("live", "after"):
            with bulk_work(), EmbeddedEngine(tmp_path / fold_views, fold_views=fold_views) as engine:
                report = engine.ingest_file(path)
                assert report.accepted > 1000 and report.rejected
                engine.views.stats()
                del engine
        gc.set_debug(gc.DEBUG_SAVEALL)  # (what the collector finds now is kept in gc.garbage to be looked at)
        gc.collect()
        left = [o for o in gc.garbage
                if isinstance(o, types.FrameType) or type(o).__module__.split(".")[0] in OURS]
        assert not left, collections.Counter(type(o).__qualname__ for o in left).most_common(8)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
