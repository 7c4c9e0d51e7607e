"""Epochs: what an event reads of the statistics gathered over all events.

Most of what deciding an event reads belongs to the identifiers, profiles and blocking keys the event
touches. A few things are statistics over every event seen: how common a name or postcode is (term
frequencies), the match model re-estimated from the records (``resolver.calibration``), the countries
whose phone numbers customers write nationally (``resolver.formats``). Read as they stood after the
event before, they would make every event depend on every earlier one, and the events could only be
decided one at a time in one place.

So these statistics are read as they stood at the start of the event's *epoch*: a run of consecutive
events in the order they are decided. The first epochs double in length (64, 128, 256, 512 events, so
that a small data set is calibrated early), then each holds ``EPOCH_EVENTS``. At the start of an epoch the
formats are learned and the model is re-estimated if it is due (decisions attributed to the epoch's first
event); within it, term frequencies are read as they were at its start. Two events of one epoch that
touch none of the same identifiers, blocking keys or profiles are then independent: they may be decided in
either order, or at once on two shards, with the same result (``resolver.footprint``).
"""

from __future__ import annotations

EPOCH_EVENTS = 1024
FIRST_EPOCH = 64


def epoch_of(position: int) -> int:
    """The start of the epoch holding the event decided at ``position`` (0 for the first event)."""
    if position < FIRST_EPOCH:
        return 0
    if position < EPOCH_EVENTS:
        return 1 << (position.bit_length() - 1)
    return position - position % EPOCH_EVENTS


def starts(position: int) -> bool:
    """Whether the event at ``position`` is the first of its epoch."""
    return epoch_of(position) == position


def room(position: int, most: int = EPOCH_EVENTS) -> int:
    """How many events from ``position`` on a window may hold: at most ``most``, and none past its epoch."""
    return min(most, end_of(position) - position)


def end_of(position: int) -> int:
    """The position of the first event of the next epoch."""
    start = epoch_of(position)
    if start < FIRST_EPOCH:
        return FIRST_EPOCH
    if start < EPOCH_EVENTS:
        return 2 * start
    return start + EPOCH_EVENTS
