"""`idres` with a planted defect, for tests of what the drivers do when the resolver fails.

    IDRES_TEST_DEFECT_ON=EVENT_ID python -m tests.faulty_idres ARGS...

runs ``idres ARGS`` in which the resolver's decision on that event fails the first time it is asked
for it, after changing the resolver's state (the real decision is applied, then it raises): a driver
must keep the record with its reason and rebuild the state, or the state keeps an event no log holds.
Later decisions on the same event succeed, except on a resolve shard (``decide`` at a given position),
where it fails every time: the driver then decides the event in order itself, which fails the first time.
"""

from __future__ import annotations

import os
import sys

from resolver.engine import Resolver

DEFECT_ON = os.environ["IDRES_TEST_DEFECT_ON"]
_real_decide = Resolver.decide
_failed: set[str] = set()


def _decide(self, event, source=None, digest=None, position=None):
    decisions = _real_decide(self, event, source, digest, position)
    if event.event_id == DEFECT_ON:
        if position is not None:  # on a shard: every time (the driver then decides the event in order)
            raise RuntimeError("planted defect")
        if event.event_id not in _failed:
            _failed.add(event.event_id)
            raise RuntimeError("planted defect")
    return decisions


Resolver.decide = _decide

from tests.kafka_broker import cap_key_shard_wait  # noqa: E402

cap_key_shard_wait()  # (as tests/tansu_worker.py: the test broker's fetches)

if __name__ == "__main__":
    from streams.cli import main

    sys.exit(main())
