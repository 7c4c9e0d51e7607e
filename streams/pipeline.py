"""The per-record pipeline: what becomes of one raw record. One pipeline serves every driver.

``RecordPipeline.process(raw, source)`` takes a record's bytes and where it came from and says what
happened to it, in this order of checks:

1. **blank**: nothing but whitespace (a blank line of a JSON-lines file; skipped, not a record);
2. **rejected**: larger than the size limit, not JSON, or not a valid channel event; with the reason
   (the category, as ``schemas.channel`` names it), the detail a person acts on, and the event ID when
   one could be read;
3. **duplicate**: an event whose ID the resolver has already decided, saying the same (a no-op); one
   that says something else under a used ID is **rejected** (``CONFLICTING_DUPLICATE``);
4. **accepted**: the resolver's decisions for it, already applied to its state, to be logged as one entry;
5. **internal_error**: the checks failed on a record, or the resolver on a valid event (a defect). The
   record is to be kept with the reason ``INTERNAL_ERROR`` and a message asking for a report. When
   ``state_changed``, the resolver's state may be half-changed: the driver must rebuild it from its log
   before the next record (a failure before the first decision leaves it as it was).

The pipeline is pure: no file, network, Kafka or clock access, no logging. What a driver does with an
outcome is its own business: the embedded driver logs a rejection as an ``event_rejected`` decision,
the Kafka jobs send it to the dead-letter topic; each driver recovers from an internal error its way.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from resolver.errors import without_tracebacks
from schemas.channel import CONFLICTING_DUPLICATE, INTERNAL_ERROR, ChannelEvent, RejectedInput, parse_event

if TYPE_CHECKING:
    from resolver.engine import Resolver

MAX_RECORD_BYTES = 1 << 20  # a larger record is rejected without being parsed

# the kinds of outcome
BLANK = "blank"
REJECTED = "rejected"
VALID = "valid"  # only from ``check``: parsed and validated, not yet resolved
DUPLICATE = "duplicate"
ACCEPTED = "accepted"
INTERNAL = "internal_error"


@dataclass(slots=True)
class Outcome:
    """What became of one raw record (see the module's docstring for the kinds)."""

    kind: str
    reason: Optional[str] = None  # rejected, internal_error: the category
    detail: Optional[str] = None  # rejected, internal_error: the one line a person acts on
    event_id: Optional[str] = None  # when known
    event: Optional[ChannelEvent] = None  # valid, duplicate, accepted, internal_error
    decisions: list[dict[str, Any]] = field(default_factory=list)  # accepted: the log entry
    error: Optional[BaseException] = None  # internal_error: what the resolver raised (without its traceback)
    trace: Optional[str] = None  # internal_error: the traceback, as text
    state_changed: bool = False  # internal_error: whether the resolver's state may be half-changed

    @property
    def kept(self) -> bool:
        """A bad record, to be kept with its reason (rejected, or failed on by the resolver)."""
        return self.kind == REJECTED or self.kind == INTERNAL


_BLANK = Outcome(BLANK)


def _failed(outcome: Outcome, exc: Exception, doing: str, handled: Optional[BaseException]) -> Outcome:
    """``outcome`` made the internal error ``exc`` raised while ``doing``, with its traceback as text; the
    exception's frames are let go of up to ``handled`` (the caller's own, left as it is): the outcome holds the
    exception, and the frame that raised it the outcome, a cycle."""
    outcome.kind, outcome.reason = INTERNAL, INTERNAL_ERROR
    outcome.detail = f"internal error while {doing} ({type(exc).__name__}: {exc}); please report it"
    outcome.error = exc
    outcome.trace = "".join(traceback.format_exception(exc))
    without_tracebacks(exc, handled)
    return outcome


class RecordPipeline:
    """Classifies raw records and resolves the valid ones with ``resolver``.

    ``skip_blank``: whether a record of nothing but whitespace is a blank (a line separator in a
    JSON-lines file) rather than a record; when False it is rejected like any other text that is not
    JSON. A driver that replaces its resolver (after an internal error) assigns ``resolver`` again.
    """

    def __init__(self, resolver: Optional["Resolver"] = None, *, max_bytes: int = MAX_RECORD_BYTES,
                 skip_blank: bool = True):
        self.resolver = resolver
        self.max_bytes = max_bytes
        self.skip_blank = skip_blank

    def check(self, raw: bytes) -> Outcome:
        """The checks that need no resolver state: blank, rejected, or valid (with the parsed event)."""
        if self.skip_blank and not raw.strip():
            return _BLANK
        try:
            event = parse_event(raw, self.max_bytes)
        except RejectedInput as exc:
            return Outcome(REJECTED, exc.reason, exc.detail, exc.event_id)
        except Exception as exc:  # a defect in the checks: the record is kept, the run goes on
            return _failed(Outcome(INTERNAL), exc, "checking the record", exc.__context__)
        return Outcome(VALID, event_id=event.event_id, event=event)

    def process(self, raw: bytes, source: Optional[dict[str, Any]] = None) -> Outcome:
        """Every check, then the resolver's decision; ``source`` (where the record came from) is passed
        to the resolver, which keeps it in the decisions."""
        outcome = self.check(raw)
        if outcome.kind != VALID:
            return outcome
        event = outcome.event
        resolver = self.resolver
        if resolver is None:
            raise RuntimeError("RecordPipeline.process needs a resolver")
        mark = resolver.mark()
        handled = sys.exc_info()[1]  # (the caller's, if any: its traceback is left as it is)
        try:
            if resolver.is_duplicate(event.event_id):
                conflict = resolver.conflicting(event)
                if conflict is not None:  # not a re-delivery: another event under a used ID
                    outcome.kind = REJECTED
                    outcome.reason = CONFLICTING_DUPLICATE
                    outcome.detail = conflict
                    return outcome
                outcome.kind = DUPLICATE
                return outcome
            decisions = resolver.decide(event, source)
        except Exception as exc:  # a defect must not lose the record, nor the rest of the input
            outcome.state_changed = resolver.changed_since(mark)
            return _failed(outcome, exc, "resolving", handled)
        # (no decisions: the resolver found the event decided after all; nothing to log)
        outcome.kind = ACCEPTED if decisions else DUPLICATE
        outcome.decisions = decisions
        return outcome
