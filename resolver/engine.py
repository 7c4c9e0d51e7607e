"""The resolver: a pure, deterministic function ``(state, event) -> decisions``.

Model
-----
Every usable identifier is a *node*. Identifiers seen together on one event are linked by an
evidence edge. A profile is a connected component of the active graph; its ID is stable: a merge
keeps the older profile's ID (``created_at``, then ID), a split keeps it on the part holding the
profile's earliest-seen identifier.

Guards keep strangers apart:

* placeholders (``test@test.com``, ``0000000000``, configured values) never become nodes;
* an identifier seen with more distinct values of another type than one person could hold
  (``max_cooccurring``: a kiosk seen with many loyalty cards, a landline with two dates of birth, a
  family mailbox with two first names that are no variants of each other) is flagged *shared*: its
  edges are revoked and its profile is recomputed, which may split it (``resolver.traits``);
* an event that would join two profiles whose union breaks a hard rule (``max_per_profile``,
  disjoint dates of birth or first names, or a *weak* identifier joining two known customers) does not
  link its lowest-priority identifier that causes the conflict; that identifier is flagged shared.

Probabilistic matching (``resolver.matching``) links what identifiers cannot: an event whose attribute
record (name, date of birth, address, postcode, city) is new to its profile is scored against earlier
records found through a blocking index kept in the state. At or above the model's link threshold the
profiles merge (``probable_link`` records the weight and each field's contribution); between the review
and link thresholds a ``possible_match`` waits in the review queue for a person (``review_decided``).
Unless the configuration fixes a model, the model is re-estimated from the records seen as their number
doubles (``resolver.calibration``), each estimate a decision that replay adopts.
A fuzzy score never overrides a guard: ``max_per_profile`` limits and dates of birth that clearly differ
keep the profiles apart whatever the names say. An event with no identifier but enough attributes to
match on is given an anonymous *record* node (``record:<event_id>``) so it can found or join a profile.

Event-sourcing discipline: ``decide`` emits decisions and applies each one through ``apply`` as it
goes, and ``apply`` is the only code that changes the state. Rebuilding the state is therefore
``apply`` over the decision log, and gives the same state as the live run.

This module is the façade. The components, each importing only those above it in this list:

=================  ===========================================================================
``ids``            node keys, profile-ID naming, timestamps
``state``          the identity graph, profiles, aliases, matching indexes
``fold``           ``apply(decision)``: the only code that changes the state
``graph``          reads of the graph: neighbours, components, an event's representative node
``context``        what deciding shares: config, model, state and the sink decisions go through
``guards``         why a link would be wrong: co-occurrence limits, conflicts, culprits
``linking``        deterministic links, shared flags and re-splits for one event; sessions
``fuzzy``          probabilistic links and possible matches (scored by ``resolver.matching``)
``review``         a person's verdict on a possible match
``bans``           connection bans: identifiers a person said are different customers kept apart
``unmerge``        a person's unmerge (a split and a ban), and the lift of a ban
``erasure``        a person's erasure of a customer (the right to be forgotten)
``calibration``    the match model re-estimated from the records seen (``model_estimated``)
``formats``        formats learned from the data (the countries of national phone numbers)
=================  ===========================================================================
"""

from __future__ import annotations

from sys import intern
from typing import Any, Iterable, Optional, Sequence

from resolver import calibration, decisions, epochs, erasure, footprint, formats, fuzzy, linking, naming, review, unmerge
from resolver import traits as person
from resolver.config import ResolverConfig
from resolver.context import Context
from resolver.errors import CommandError
from resolver.fold import Fold
from resolver.ids import RECORD_TYPE, event_digest, node_key, node_type, short_hash, type_name_problem, utc_iso
from resolver.matching import AttributeRecord, MatchModel, default_model, frequency_values
from resolver.normalize import Normalizer
from resolver.records import RecordMaker
from resolver.state import Profile, ResolverState
from resolver.touch import Touched
from schemas.channel import ChannelEvent

__all__ = ["RECORD_TYPE", "Profile", "Resolver", "ResolverState", "node_key", "node_type", "short_hash",
           "utc_iso"]

NORMALIZE_CACHE_SIZE = 250_000


def conflict_detail(event_id: str) -> str:
    """Why a record is rejected whose event ID was used by another event."""
    return (f"event_id {event_id[:80]!r} was already used by an event that says something else (time, "
            "channel, type, identifiers, attributes or payload differ); give each event its own ID")


class Resolver:
    """Decides and applies. ``state`` may be rebuilt from a decision log with ``apply``."""

    def __init__(self, config: Optional[ResolverConfig] = None, state: Optional[ResolverState] = None):
        self.config = config or ResolverConfig()
        self.state = state or ResolverState()
        self.normalizer = Normalizer(self.config)
        # normalization is a pure function of (type, raw value): memoized, it changes speed, not results
        self._norm_cache: dict[tuple[str, str], tuple[Optional[str], Optional[str]]] = {}
        self._records = RecordMaker()
        self._fold = Fold(self.config, self.state, self._records)
        self._ctx = Context(self.config, self.state, self.config.match_model or default_model(), self._fold,
                            self._records)
        self._regions: list[str] = []  # learned phone regions the normalizer reads with (``resolver.formats``)

    def use(self, state: ResolverState) -> None:
        """Decides on ``state`` from now on (a slice of the state: ``resolver.slices``), keeping what it has
        worked out from the configuration (normalized values, records, the model's tables)."""
        self.state = state
        self._fold.state = state
        self._ctx.state = state

    @property
    def model(self) -> MatchModel:
        """The match model the next event is scored under (``resolver.calibration``)."""
        return self._ctx.model

    @property
    def model_id(self) -> str:
        return self._ctx.model_id

    def is_duplicate(self, event_id: str) -> bool:
        return event_id in self.state.seen_events

    def conflicting(self, event: ChannelEvent) -> Optional[str]:
        """Why an event whose ID was decided before is not that event re-sent (its content differs), or
        None (a re-delivery, or an ID not seen)."""
        known = self.state.seen_events.get(event.event_id)
        if known is None or known < 0 or known == event_digest(event):
            return None
        return conflict_detail(event.event_id)

    def _sync_formats(self) -> None:
        learned = self.state.learned_regions
        if learned != self._regions:  # (by content: a state given by ``use`` may have learned others as many)
            self.normalizer.learn_regions(tuple(learned))
            self._norm_cache.clear()
            self._regions = list(learned)

    def normalize_identifier(self, id_type: str, raw: object) -> tuple[Optional[str], Optional[str]]:
        """An identifier normalized as the next event's would be (with the formats learned so far)."""
        self._sync_formats()
        return self.normalizer.identifier(id_type, raw)

    def _normalize(self, event: ChannelEvent) -> tuple[list[str], list[dict[str, str]], dict[str, str],
                                                        list[dict[str, str]]]:
        """An event's usable identifiers as node keys (strongest first), the ones it cannot use with
        why, its normalized attributes (with the formats learned so far), and the identifiers a learned
        format may read otherwise (their raw values: ``Normalizer.reads_by_learned``)."""
        keys: list[tuple[int, str]] = []
        ignored: list[dict[str, str]] = []
        read: list[dict[str, str]] = []  # identifiers read through a learned format, as written
        cache = self._norm_cache
        priority = self._ctx.priority
        for id_type, raw in event.identifiers.items():
            if raw is None:
                continue
            if id_type == RECORD_TYPE:
                ignored.append({"type": id_type, "raw": str(raw)[:256], "reason": type_name_problem(id_type)})
                continue
            hit = cache.get((id_type, raw))
            if hit is None:
                if len(cache) >= NORMALIZE_CACHE_SIZE:
                    cache.clear()
                hit = cache[(id_type, raw)] = (*self.normalizer.identifier(id_type, raw),
                                               self.normalizer.reads_by_learned(id_type, raw))
            value, reason, learned = hit
            if value is None:
                ignored.append({"type": id_type, "raw": str(raw), "reason": reason or "unusable"})
            else:
                keys.append((priority(id_type), node_key(id_type, value)))
                if learned:
                    read.append({"type": id_type, "raw": str(raw)})
        keys.sort()
        # (in an order of their own, not the event's: a restatement decides the event again from the identifiers
        # the log holds, listed otherwise, and must record them as the first decision did)
        if len(ignored) > 1:
            ignored.sort(key=lambda i: (i["type"], i["raw"]))
        if len(read) > 1:
            read.sort(key=lambda r: (r["type"], r["raw"]))
        return list(dict.fromkeys(k for _, k in keys)), ignored, self.normalizer.attributes(event.attributes), read

    def decide(self, event: ChannelEvent, source: Optional[dict[str, Any]] = None,
               digest: Optional[int] = None, position: Optional[int] = None) -> list[dict[str, Any]]:
        """The decisions for one accepted raw event (empty for a re-delivered one), already applied.
        ``digest``: the raw event's ``event_digest`` when ``event`` is not the raw event itself (re-decided
        from the log, which keeps the digest but not the raw values). ``position``: the number of events
        decided before it, given only when this state holds some of those events' decisions but not all
        (a shard deciding its chain of a window: ``streams.shards``); the epoch's start has then been
        begun already (``begin_epoch``), and its decisions are not among the ones returned."""
        st = self.state
        if event.event_id in st.seen_events:
            return []
        ctx = self._ctx
        ctx.take()
        occurred_at = utc_iso(event.occurred_at)
        if position is None:
            self._enter(len(st.seen_events), event.event_id, occurred_at)
        else:
            self._fold.enter(position)
        self._sync_formats()
        node_keys, ignored, attributes, read = self._normalize(event)
        hearsay, traits = self._traits(event, attributes)
        record = self._records(attributes) if attributes and self.config.fuzzy_matching else None
        only_shared = bool(node_keys) and not any(st.node_index.get(k) not in st.shared for k in node_keys)
        # only shared identifiers, naming one of the customers who used them: that customer's
        attributed = linking.attribute_by_name(ctx, node_keys, traits) if only_shared else None
        if attributed is not None:
            refused: list[str] = []
        else:
            if record is not None and (only_shared or not node_keys):
                # no identifier, or only shared ones, but enough attributes to match on: an anonymous record
                node_keys = [*node_keys, node_key(RECORD_TYPE, event.event_id)]
            refused = linking.link(ctx, event.event_id, occurred_at, node_keys, traits) if node_keys else []
            if record is not None:
                fuzzy.match(ctx, event.event_id, occurred_at, node_keys, refused, record[0], record[1],
                            traits[0] if hearsay and traits else None)
            attributed = linking.attribute_sessions(ctx, event.event_id, occurred_at, node_keys, refused,
                                                    self.config.by_session(event.channel))

        recorded: decisions.InteractionRecorded = {
            "type": "interaction_recorded",
            "event_id": event.event_id,
            "occurred_at": occurred_at,
            "channel": intern(event.channel),
            "event_type": intern(event.event_type),
            "nodes": node_keys,
            "digest": event_digest(event, occurred_at) if digest is None else digest,
        }
        if refused:
            recorded["refused"] = refused
        if attributed:
            recorded["attributed"] = attributed
        if ignored:
            recorded["ignored"] = ignored
        if read:
            recorded["read"] = read
        if attributes:
            recorded["attributes"] = attributes
        if event.payload:
            recorded["payload"] = event.payload
        if source is not None:
            recorded["source"] = source
        ctx.emit(recorded)
        naming.settle(ctx, event.event_id, ctx.out)  # each profile touched named by its earliest event
        return ctx.take()

    def begin_epoch(self, position: int, event: ChannelEvent,
                    records: Optional[list[AttributeRecord]] = None) -> list[dict[str, Any]]:
        """For a window of events decided on shards (``streams.shards``): the decisions of the epoch's start
        (empty unless ``position``, the number of events decided before ``event``, starts an epoch),
        already applied. Deciding ``event`` alone would have begun with them. ``records``: the distinct
        attribute records of the whole state, sorted (``calibration.distinct``), when this state is a slice
        of it (``resolver.slices``) holding the pending reviews."""
        ctx = self._ctx
        ctx.take()
        self._enter(position, event.event_id, utc_iso(event.occurred_at), records)
        return ctx.take()

    def footprint(self, event: ChannelEvent) -> set[str]:
        """What deciding ``event`` next may read or change (``resolver.footprint``)."""
        return self.reads(event)[0]

    def reads(self, event: ChannelEvent) -> tuple[set[str], list[tuple[str, str]]]:
        """``event``'s footprint, and the ``(field, value)`` pairs of its attribute record whose counts
        deciding it may read: what a slice for it holds (``resolver.slices``)."""
        node_keys, blocks, values, names, by_session = self.keys_of(event)
        return footprint.items(self.state, event.event_id, node_keys, blocks, names, by_session), values

    def keys_of(self, event: ChannelEvent) -> tuple[list[str], list[str], list[tuple[str, str]], bool, bool]:
        """``event``'s identifiers as node keys, the blocking keys of its attribute record, the
        ``(field, value)`` pairs of the record whose counts deciding it may read (with the formats learned
        so far; nothing else of the state is read), whether it names a person by whom an event on
        shared identifiers only is attributed (``linking.attribute_by_name``: it then reads the customers
        those identifiers remember), and whether its channel allows attributing it by session
        (``ResolverConfig.by_session``: else it reads no identifier's last use)."""
        self._sync_formats()
        node_keys, _, attributes, _ = self._normalize(event)
        names = bool(attributes) and linking.names_a_person(self._traits(event, attributes)[1])
        by_session = self.config.by_session(event.channel)
        record = self._records(attributes) if attributes and self.config.fuzzy_matching else None
        if record is None:
            return node_keys, [], [], names, by_session
        return node_keys, record[1], frequency_values(record[0]), names, by_session

    def _traits(self, event: ChannelEvent, attributes: dict[str, str]) -> tuple[bool, tuple[str, ...]]:
        """Whether the event's names may be someone else's (``ResolverConfig.hearsay``), and its traits
        (``traits.event_traits``): from the event and the configuration alone, as deciding it and its
        footprint (``keys_of``) both need them."""
        hearsay = self.config.hearsay(event.channel, event.event_type, attributes)
        return hearsay, person.event_traits(attributes, self.config.dob_conflict, self.config.name_conflict, hearsay)

    def _enter(self, position: int, event_id: str, occurred_at: str,
               records: Optional[list[AttributeRecord]] = None) -> None:
        """The event at ``position`` is next; if it starts an epoch (``resolver.epochs``), what is learned
        from all events then, attributed to it: the countries whose numbers have become common
        (``resolver.formats``), then the match model, if it is due to be re-estimated
        (``resolver.calibration``)."""
        self._fold.enter(position)
        if not epochs.starts(position):
            return
        st = self.state
        for region in sorted(st.phone_regions):
            evidence = formats.learnable(st, region, self.config.default_region)
            if evidence is not None:
                self._ctx.emit(decisions.phone_region_learned(event_id, region, **evidence))
        if calibration.due(self._ctx):
            calibration.calibrate(self._ctx, event_id, occurred_at, records)
        naming.settle(self._ctx, event_id, list(self._ctx.out))  # (profiles a re-scored review merged)

    def mark(self) -> int:
        """A mark to ask ``changed_since`` about: whether any decision was applied to the state after it."""
        return self._fold.applied

    def changed_since(self, mark: int) -> bool:
        """Whether the state changed (or began to) since ``mark``: a ``decide`` that raised without having
        changed it leaves the state as it was, and it need not be rebuilt."""
        return self._fold.applied != mark

    def reject(self, key: str, source: dict[str, Any], reason: str, raw: str,
               event_id: Optional[str] = None, detail: Optional[str] = None) -> list[dict[str, Any]]:
        """The decision that keeps a bad record with its reason (a category that groups like records)
        and its detail (empty if this record was kept before)."""
        if key in self.state.rejected_keys:
            return []
        decision = decisions.event_rejected(key, source, reason, raw[:65536], event_id, detail)
        self.apply(decision)
        return [decision]

    def decide_review(self, review_id: str, accept: bool, reviewer: str, decided_at: str,
                      note: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's verdict on a possible match, already applied (``resolver.review``). Raises
        ``ReviewError`` for a review that is unknown or already decided."""
        ctx = self._ctx
        ctx.take()
        review.decide_review(ctx, review_id, accept, reviewer, decided_at, note)
        naming.settle(ctx, review_id, ctx.out)
        return ctx.take()

    def unmerge(self, profile_id: str, identifiers: list[tuple[str, str]], by: str, decided_at: str,
                note: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's unmerge of ``identifiers`` (type, value: normalized as an event's would be) from a
        profile, already applied (``resolver.unmerge``). Raises ``CommandError`` for an identifier that
        cannot be used or is not in the profile, or a profile that is unknown."""
        keys = self.node_keys(identifiers)
        ctx = self._ctx
        ctx.take()
        unmerge.unmerge(ctx, profile_id, keys, by, decided_at, note)
        naming.settle(ctx, profile_id, ctx.out)
        return ctx.take()

    def node_keys(self, identifiers: list[tuple[str, str]]) -> list[str]:
        """The node keys of identifiers (type, value) a person names, normalized as an event's would be. Raises
        ``CommandError`` for one that cannot be used."""
        self._sync_formats()
        keys = []
        for id_type, raw in identifiers:
            key, why = self.normalizer.node_key(id_type, raw)
            if key is None:
                raise CommandError(f"{id_type}={raw}: {why}, so it names no customer: name one the customer has "
                                   "(`idres show PROFILE_ID` lists them)")
            keys.append(key)
        return keys

    def erasure_scope(self, keys: list[str]) -> tuple[list[str], list[str]]:
        """The profiles and identifiers (node keys) erasing ``keys`` removes (``resolver.erasure``)."""
        return erasure.scope(self._ctx, keys)

    def erase(self, identifiers: list[tuple[str, str]], events: list[str], rejected: list[str], by: str,
              decided_at: str, reason: Optional[str] = None,
              unusable: Iterable[Sequence[str]] = ()) -> list[dict[str, Any]]:
        """A person's erasure of the customers holding ``identifiers``, already applied (``resolver.erasure``).
        Raises ``CommandError`` when none of them is known."""
        keys = self.node_keys(identifiers)
        ctx = self._ctx
        ctx.take()
        erasure.erase(ctx, keys, events, rejected, by, decided_at, reason, unusable)
        return ctx.take()

    def lift_ban(self, ban_id: str, by: str, decided_at: str, note: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's lift of a connection ban, already applied. Raises ``CommandError`` for a ban not in force."""
        ctx = self._ctx
        ctx.take()
        unmerge.lift(ctx, ban_id, by, decided_at, note)
        return ctx.take()

    def track(self, touched: Optional[Touched]) -> None:
        """Notes what every decision applied from now on touches in ``touched`` (``resolver.touch``; None: stops)."""
        self._fold.touched = touched

    def apply(self, decision: dict[str, Any]) -> None:
        self._fold.apply(decision)

    def apply_all(self, decisions: Iterable[dict[str, Any]]) -> None:
        self._fold.apply_all(decisions)
