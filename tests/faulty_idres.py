"""`idres` with a planted defect, for tests of what the drivers do when the resolver fails.

    IDRES_TEST_DEFECT_ON=EVENT_ID python -m tests.faulty_idres ARGS...

runs ``idres ARGS`` in which the resolver's decision on that event fails the first time it is asked
for it, after changing the resolver's state (the real decision is applied, then it raises): a driver
must keep the record with its reason and rebuild the state, or the state keeps an event no log holds.
Later decisions on the same event succeed.
"""

from __future__ import annotations

import os
import sys

from resolver.engine import Resolver

DEFECT_ON = os.environ["IDRES_TEST_DEFECT_ON"]
_real_decide = Resolver.decide
_failed: set[str] = set()


def _decide(self, event, source=None, *args, **kwargs):
    decisions = _real_decide(self, event, source, *args, **kwargs)
    if event.event_id == DEFECT_ON and event.event_id not in _failed:
        _failed.add(event.event_id)
        raise RuntimeError("planted defect")
    return decisions


Resolver.decide = _decide

if __name__ == "__main__":
    from streams.cli import main

    sys.exit(main())
