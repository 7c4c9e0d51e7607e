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
A fuzzy score never overrides a guard: ``max_per_profile`` limits and dates of birth that clearly differ
keep the profiles apart whatever the names say. An event with no identifier but enough attributes to
match on is given an anonymous *record* node (``record:<event_id>``) so it can found or join a profile.

Event-sourcing discipline: ``decide`` emits decisions and applies each one through ``apply`` as it
goes, and ``apply`` is the only code that changes the state. Rebuilding the state is therefore
``apply`` over the decision log, and gives the same state as the live run.
"""

from __future__ import annotations

import hashlib
import math
from sys import intern
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Callable, Iterable, Optional

from resolver.config import ResolverConfig
from resolver import sessions
from resolver import traits as person
from resolver.matching import (
    FIELD_INDEX, FIELDS, FREQUENCY_FIELDS, RECORD_FIELDS, AttributeRecord, MatchModel, blocking_keys,
    POSTCODE_AGREES, default_model, frequency_adjustment, hard_conflict,
)
from resolver.matching import compare as compare_records
from resolver.errors import ReviewError
from resolver.normalize import Normalizer
from schemas.channel import ChannelEvent


MAX_CULPRIT_SEARCH = 200
NORMALIZE_CACHE_SIZE = 250_000
RECORD_CACHE_SIZE = 250_000
# Node type of an event that carries attributes to match on but no identifier (``record:<event_id>``).
RECORD_TYPE = "record"
RECORD_PRIORITY = 1000
MAX_RECORDS_PER_NODE = 16
MAX_BLOCK_NODES_PER_PROFILE = 4
MAX_TRAITS_PER_NODE = 32  # dates of birth and names kept per identifier (the guards act long before)


def node_key(id_type: str, value: str) -> str:
    return f"{id_type}:{value}"


def node_type(key: str) -> str:
    return intern(key.split(":", 1)[0])


def utc_iso(dt) -> str:
    """A fixed-width UTC timestamp (``2025-03-07T14:03:11.000000Z``), so string order is time order."""
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _over_limit(rule: Any, id_type: str, count: int) -> Optional[str]:
    """Why ``count`` values of ``id_type`` are more than one customer may hold (``max_per_profile``)."""
    if rule.max_per_profile is not None and count > rule.max_per_profile:
        return f"would give one customer {count} {id_type} values (limit {rule.max_per_profile})"
    return None


def short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(slots=True)
class Profile:
    id: str
    created_at: str
    nodes: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    traits: set[str] = field(default_factory=set)  # dates of birth and names seen on its identifiers

    def age_key(self) -> tuple[str, str]:
        return (self.created_at, self.id)


class ResolverState:
    """Everything the resolver knows. Built only by ``Resolver.apply`` over decisions."""

    def __init__(self) -> None:
        self.seen_events: set[str] = set()
        self.rejected_keys: set[str] = set()
        self.node_index: dict[str, int] = {}
        self.node_keys: list[str] = []
        self.node_types: list[str] = []
        self.node_profile: list[Optional[str]] = []
        self.shared: set[int] = set()
        self.adj: dict[int, dict[int, str]] = {}
        # dates of birth and names seen with the identifier, and on how many of its events
        self.node_traits: dict[int, dict[str, int]] = {}
        self.refused: dict[int, set[str]] = {}  # partners a weak identifier was seen with but not linked to
        self.profiles: dict[str, Profile] = {}
        self.aliases: dict[str, str] = {}
        # probabilistic matching
        self.records: dict[int, list[AttributeRecord]] = {}  # node -> distinct attribute records seen on it
        self.blocks: dict[str, list[int]] = {}  # blocking key -> nodes holding a record with that key
        self.fuzzy: dict[int, dict[int, str]] = {}  # probable links: node -> {node: event_id}
        self.reviews: dict[str, tuple[int, int]] = {}  # pending review id -> (node, other node)
        self.review_pairs: set[tuple[int, int]] = set()  # pairs queued for review or decided by a person
        self.review_rejected: set[tuple[int, int]] = set()  # pairs a person said are different customers
        self.value_counts: dict[tuple[str, str], int] = {}  # (field, value) -> indexed records holding it
        self.value_totals: dict[str, int] = {}  # field -> indexed records with a value for it
        # anonymous activity on shared identifiers (``resolver.sessions``)
        self.session_last: dict[int, tuple[str, str]] = {}  # shared node -> (time, identifier) of its last identified use
        self.session_pending: dict[int, list[tuple[str, str]]] = {}  # shared node -> [(time, event)] unattributed

    def node(self, key: str) -> int:
        idx = self.node_index.get(key)
        if idx is None:
            idx = len(self.node_keys)
            self.node_index[key] = idx
            self.node_keys.append(key)
            self.node_types.append(node_type(key))
            self.node_profile.append(None)
        return idx

    def resolve_alias(self, profile_id: str) -> str:
        seen = 0
        while profile_id in self.aliases and seen < 1_000_000:
            profile_id = self.aliases[profile_id]
            seen += 1
        return profile_id


class _Acc:
    """The profile an event is building while its identifiers are taken in priority order."""

    __slots__ = ("profiles", "new_nodes", "counts", "traits", "own")

    def __init__(self, own: Iterable[str] = ()) -> None:
        self.profiles: list[Profile] = []
        self.new_nodes: list[str] = []
        self.counts: dict[str, int] = {}
        self.traits: set[str] = set()  # of the profiles and identifiers taken so far
        self.own: frozenset[str] = frozenset(own)  # of the event itself

    def empty(self) -> bool:
        return not self.profiles and not self.new_nodes

    def add(self, counts: dict[str, int], traits: Iterable[str]) -> None:
        for t, c in counts.items():
            self.counts[t] = self.counts.get(t, 0) + c
        self.traits.update(traits)


class Resolver:
    """Decides and applies. ``state`` may be rebuilt from a decision log with ``apply``."""

    def __init__(self, config: Optional[ResolverConfig] = None, state: Optional[ResolverState] = None):
        self.config = config or ResolverConfig()
        self.state = state or ResolverState()
        self.normalizer = Normalizer(self.config)
        self._priority_cache: dict[str, int] = {}
        self._out: list[dict[str, Any]] = []
        # normalization is a pure function of (type, raw value): memoized, it changes speed, not results
        self._norm_cache: dict[tuple[str, str], tuple[Optional[str], Optional[str]]] = {}
        self.model: MatchModel = self.config.match_model or default_model()
        self.model_id = f"{self.model.version}/{self.model.fingerprint()}"
        # attribute values -> (canonical record, blocking keys); also a pure function, memoized
        self._record_cache: dict[tuple[Optional[str], ...], tuple[Optional[AttributeRecord], list[str]]] = {}

    # ---------------------------------------------------------------------------------- deciding
    def _emit(self, decision: dict[str, Any]) -> None:
        self.apply(decision)
        self._out.append(decision)

    def _priority(self, id_type: str) -> int:
        p = self._priority_cache.get(id_type)
        if p is None:
            p = RECORD_PRIORITY if id_type == RECORD_TYPE else self.config.rule(id_type).priority
            self._priority_cache[id_type] = p
        return p

    def is_duplicate(self, event_id: str) -> bool:
        return event_id in self.state.seen_events

    def decide(self, event: ChannelEvent, source: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
        """The decisions for one accepted raw event (empty for a re-delivered one), already applied."""
        st = self.state
        if event.event_id in st.seen_events:
            return []
        self._out = []
        keys: list[tuple[int, str]] = []
        ignored: list[dict[str, str]] = []
        cache = self._norm_cache
        for id_type, raw in event.identifiers.items():
            if raw is None:
                continue
            if id_type == RECORD_TYPE:
                ignored.append({"type": id_type, "raw": str(raw)[:256],
                                "reason": f"identifier type {RECORD_TYPE!r} is reserved for anonymous records; "
                                          "send it under another name"})
                continue
            hit = cache.get((id_type, raw))
            if hit is None:
                if len(cache) >= NORMALIZE_CACHE_SIZE:
                    cache.clear()
                hit = cache[(id_type, raw)] = self.normalizer.identifier(id_type, raw)
            value, reason = hit
            if value is None:
                ignored.append({"type": id_type, "raw": str(raw), "reason": reason or "unusable"})
            else:
                keys.append((self._priority(id_type), node_key(id_type, value)))
        keys.sort()
        node_keys = list(dict.fromkeys(k for _, k in keys))
        attributes = self.normalizer.attributes(event.attributes)
        traits = person.event_traits(attributes, self.config.dob_conflict, self.config.name_conflict)
        occurred_at = utc_iso(event.occurred_at)
        record = self._record(attributes) if attributes and self.config.fuzzy_matching else None
        if record is not None and not any(st.node_index.get(k) not in st.shared for k in node_keys):
            # no identifier, or only shared ones, but enough attributes to match on: an anonymous record
            node_keys = [*node_keys, node_key(RECORD_TYPE, event.event_id)]

        refused = self._link(event.event_id, occurred_at, node_keys, traits) if node_keys else []
        if record is not None:
            self._match(event.event_id, occurred_at, node_keys, refused, record[0], record[1])
        attributed = self._sessions(event.event_id, occurred_at, node_keys, refused)

        recorded: dict[str, Any] = {
            "type": "interaction_recorded",
            "event_id": event.event_id,
            "occurred_at": occurred_at,
            "channel": intern(event.channel),
            "event_type": intern(event.event_type),
            "nodes": node_keys,
        }
        if refused:
            recorded["refused"] = refused
        if attributed:
            recorded["attributed"] = attributed
        if ignored:
            recorded["ignored"] = ignored
        if attributes:
            recorded["attributes"] = attributes
        if event.payload:
            recorded["payload"] = event.payload
        if source is not None:
            recorded["source"] = source
        self._emit(recorded)
        out, self._out = self._out, []
        return out

    def reject(self, key: str, source: dict[str, Any], reason: str, raw: str,
               event_id: Optional[str] = None, detail: Optional[str] = None) -> list[dict[str, Any]]:
        """The decision that keeps a bad record with its reason (a category that groups like records)
        and its detail (empty if this record was kept before)."""
        if key in self.state.rejected_keys:
            return []
        decision: dict[str, Any] = {
            "type": "event_rejected", "key": key, "source": source, "reason": reason, "raw": raw[:65536],
        }
        if detail is not None:
            decision["detail"] = detail
        if event_id is not None:
            decision["event_id"] = event_id
        self.apply(decision)
        return [decision]

    def _link(self, event_id: str, occurred_at: str, node_keys: list[str], traits: tuple[str, ...]) -> list[str]:
        """Links the event's identifiers; returns those that stay active but were not linked on it."""
        st = self.state
        cfg = self.config
        existing = [st.node_index.get(k) for k in node_keys]
        if self._nothing_new(existing, traits):
            return []

        # 1. Data-driven guard: would this event show an identifier with more partners than one
        #    person could have? Then that identifier is shared, whatever order events came in.
        for key, idx in zip(node_keys, existing):
            if idx is None or idx in st.shared:
                continue
            rule = cfg.rule(st.node_types[idx])
            if not rule.max_cooccurring:
                continue
            reason = self._cooccurrence_breach(idx, node_keys, traits, rule.max_cooccurring)
            if reason:
                self._flag(key, event_id, reason[0], reason[1])

        # 2. Link the event's identifiers strongest first; refuse the one that would join conflicting
        #    profiles, and flag it shared.
        acc = _Acc(traits)
        accepted: list[str] = []
        refused: list[str] = []
        for key in node_keys:
            idx = st.node_index.get(key)
            if idx is not None and idx in st.shared:
                continue
            pid = st.node_profile[idx] if idx is not None else None
            if pid is not None:
                prof = st.profiles[pid]
                if any(p is prof for p in acc.profiles):
                    accepted.append(key)
                    continue
                counts, known = prof.counts, prof.traits
            else:
                counts, known = {node_type(key): 1}, st.node_traits.get(idx, ()) if idx is not None else ()
            if not acc.empty() or acc.own:
                conflict = self._conflict(acc, counts, known, node_type(key))
                if conflict and pid is not None:
                    # The conflict may come from inside the other profile: an identifier there (a
                    # landline, a family email) that tied two people together. Cut the weakest one.
                    culprit = self._culprit(acc, idx, st.profiles[pid])
                    if culprit != idx:
                        self._flag(st.node_keys[culprit], event_id,
                                   f"ties together customers that conflict: {conflict[0]}", conflict[1])
                        pid = st.node_profile[idx]
                        prof = st.profiles[pid]
                        counts, known = prof.counts, prof.traits
                        conflict = self._conflict(acc, counts, known, node_type(key))
                if conflict:
                    if (self.config.rule(node_type(key)).weak and conflict[1].get("weak")) or (
                            person.FIRST_NAME in conflict[1]):
                        # A device seen with a second known customer: not proof it is shared (one person
                        # may use two emails). Nor is an event that brings identifiers of two differently
                        # named people together (a card lent at a till): which of them is shared only
                        # their own history can tell. Do not link it here; the co-occurrence limits decide.
                        self._emit({"type": "link_refused", "node": key, "event_id": event_id,
                                    "others": [k for k in node_keys if k != key], "reason": conflict[0]})
                        refused.append(key)
                    else:
                        self._flag(key, event_id, conflict[0], conflict[1])
                    continue
            acc.add(counts, known)
            if pid is not None:
                acc.profiles.append(st.profiles[pid])
            else:
                acc.new_nodes.append(key)
            accepted.append(key)

        if not accepted:
            return refused
        new_keys = acc.new_nodes
        if not acc.profiles:
            pid = self._new_profile_id("p:" + event_id)
            self._emit({"type": "profile_created", "profile_id": pid, "created_at": occurred_at,
                        "event_id": event_id, "nodes": new_keys})
        else:
            ordered = sorted(acc.profiles, key=Profile.age_key)
            survivor = ordered[0]
            if len(ordered) > 1:
                self._emit({
                    "type": "profiles_merged", "survivor_id": survivor.id,
                    "absorbed_ids": [p.id for p in ordered[1:]], "event_id": event_id,
                    "occurred_at": occurred_at, "via": accepted, "rule": "shared_identifier",
                })
            if new_keys:
                self._emit({"type": "identifiers_attached", "profile_id": survivor.id,
                            "event_id": event_id, "nodes": new_keys})
        if len(accepted) > 1 and self._has_new_edge(accepted):
            self._emit({"type": "identifiers_linked", "event_id": event_id, "rule": "seen_together",
                        "nodes": accepted})
        return refused

    def _sessions(self, event_id: str, occurred_at: str, node_keys: list[str],
                  refused: list[str]) -> Optional[dict[str, Any]]:
        """Session attribution on the event's shared identifiers (``resolver.sessions``): an anonymous
        event's attribution, or None; an identified event claims the anonymous ones waiting."""
        st = self.state
        shared = self._shared_of(node_keys)
        if not shared:
            return None
        anchor = self._representative(node_keys, refused)
        if anchor is None:
            found = sessions.attribution(st.session_last, shared, occurred_at, st.node_keys)
            if found is not None:
                idx = st.node_index.get(found["node"])
                if idx is not None and idx not in st.shared and st.node_profile[idx] is not None:
                    return found
            return None
        for via, events in sessions.claims(st.session_pending, shared, occurred_at, st.node_keys):
            self._emit({"type": "events_attributed", "event_id": event_id, "node": st.node_keys[anchor],
                        "via": via, "rule": sessions.RULE, "events": events})
        return None

    def _shared_of(self, node_keys: Iterable[str]) -> list[int]:
        st = self.state
        out = []
        for k in node_keys:
            idx = st.node_index.get(k)
            if idx is not None and idx in st.shared:
                out.append(idx)
        return out

    # ------------------------------------------------------------------------ probabilistic matching
    def _record(self, attributes: dict[str, str]) -> Optional[tuple[AttributeRecord, list[str]]]:
        """The event's attribute record and its blocking keys, or None when it has nothing to match on."""
        values = tuple(attributes.get(f) for f in RECORD_FIELDS)
        hit = self._record_cache.get(values)
        if hit is None:
            if len(self._record_cache) >= RECORD_CACHE_SIZE:
                self._record_cache.clear()
            rec = AttributeRecord(*values)
            keys = blocking_keys(rec)
            hit = self._record_cache[values] = (rec, keys) if keys else (None, [])
        return hit if hit[0] is not None else None  # type: ignore[return-value]

    def _representative(self, node_keys: list[str], refused: Iterable[str]) -> Optional[int]:
        """The node an event's attribute record is filed under: its strongest active, linked identifier."""
        st = self.state
        for key in node_keys:
            idx = st.node_index.get(key)
            if idx is None or idx in st.shared or key in refused or st.node_profile[idx] is None:
                continue
            return idx
        return None

    def _match(self, event_id: str, occurred_at: str, node_keys: list[str], refused: list[str],
               rec: AttributeRecord, keys: list[str]) -> None:
        """Scores the event's record against earlier records in other profiles that share a blocking
        key; links at or above the link threshold, queues possible matches for review."""
        st = self.state
        rep = self._representative(node_keys, refused)
        if rep is None:
            return
        known = st.records.get(rep)
        if known is not None and rec in known:
            return  # matched when this record was first seen on this identifier
        pid = st.node_profile[rep]
        model = self.model
        best: dict[str, tuple[float, int, tuple[str, ...], Optional[dict[str, float]]]] = {}
        weigh_frequencies = self.config.frequency_adjustments
        dob_guard = self.config.dob_conflict
        visited: set[int] = set()
        node_profile = st.node_profile
        shared = st.shared
        link_anyway = self.config.link_different_first_names
        review_cap = math.nextafter(model.link_threshold, -math.inf)
        for key in keys:
            for n in st.blocks.get(key, ()):
                if n in visited:
                    continue
                visited.add(n)
                p = node_profile[n]
                if p is None or p == pid or n in shared:
                    continue
                for other in st.records.get(n, ()):
                    if dob_guard and hard_conflict(rec, other):
                        continue
                    levels = compare_records(rec, other)
                    total, _ = model.weight_of(levels)
                    deltas = self._frequency_deltas(rec, other, levels) if weigh_frequencies else None
                    if deltas:
                        for d in deltas.values():
                            total += d
                    if levels[0] == "different" and not link_anyway and total >= model.link_threshold:
                        total = review_cap  # a person decides: twins agree on everything else
                    cur = best.get(p)
                    if cur is None or total > cur[0]:
                        best[p] = (total, n, levels, deltas)
        if not best:
            return
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
        own = st.profiles[pid]
        acc = _Acc()
        acc.add(own.counts, own.traits)
        acc.profiles.append(own)
        links: list[tuple[str, float, int, tuple[str, ...], Optional[dict[str, float]]]] = []
        reviews: list[tuple[str, float, int, tuple[str, ...], Optional[dict[str, float]]]] = []
        for p, (total, n, levels, deltas) in ranked:
            if total < model.review_threshold:
                break
            pair = (rep, n) if rep < n else (n, rep)
            if pair in st.review_pairs and (total < model.link_threshold or pair in st.review_rejected):
                continue  # already queued, or a person said these are different customers
            target = st.profiles[p]
            if self._fuzzy_conflict(acc, target) is not None:
                continue  # a guard keeps them apart whatever the attributes say
            if total >= model.link_threshold:
                acc.add(target.counts, target.traits)
                acc.profiles.append(target)
                links.append((p, total, n, levels, deltas))
            elif len(reviews) < self.config.max_reviews_per_event:
                reviews.append((p, total, n, levels, deltas))
        rep_key = st.node_keys[rep]
        if links:
            for p, total, n, levels, deltas in links:
                self._emit({"type": "probable_link", "event_id": event_id, "node": rep_key,
                            "other": st.node_keys[n], "profile_id": p, "rule": "probable_match",
                            **self._evidence(levels, total, deltas)})
            ordered = sorted(acc.profiles, key=Profile.age_key)
            self._emit({
                "type": "profiles_merged", "survivor_id": ordered[0].id,
                "absorbed_ids": [q.id for q in ordered[1:]], "event_id": event_id, "occurred_at": occurred_at,
                "via": [rep_key, *(st.node_keys[n] for _, _, n, _, _ in links)], "rule": "probable_match",
            })
        for p, total, n, levels, deltas in reviews:
            other_key = st.node_keys[n]
            self._emit({"type": "possible_match", "review_id": "r_" + short_hash(f"{event_id}|{other_key}"),
                        "event_id": event_id, "occurred_at": occurred_at, "node": rep_key, "other": other_key,
                        "profile_id": node_profile[rep], "other_profile_id": node_profile[n],
                        **self._evidence(levels, total, deltas)})

    def _frequency_deltas(self, a: AttributeRecord, b: AttributeRecord,
                          levels: tuple[str, ...]) -> Optional[dict[str, float]]:
        """Frequency adjustments (bits per field) of the fields on which ``a`` and ``b`` agree exactly."""
        st = self.state
        out: Optional[dict[str, float]] = None
        postcode_agrees = levels[FIELD_INDEX["postcode"]] in POSTCODE_AGREES
        for f in FREQUENCY_FIELDS:
            if levels[FIELD_INDEX[f]] != "exact":
                continue
            value = getattr(a, f)
            if value is None or value != getattr(b, f):
                continue  # (names agreeing the other way round are not adjusted)
            # how common the value is among records other than the one it was found in
            bits = frequency_adjustment(self.model, f, st.value_counts.get((f, value), 1) - 1,
                                        st.value_totals.get(f, 1) - 1, postcode_agrees)
            if bits:
                if out is None:
                    out = {}
                out[f] = bits
        return out

    def _evidence(self, levels: tuple[str, ...], total: float,
                  deltas: Optional[dict[str, float]] = None) -> dict[str, Any]:
        """What a probable link or possible match records: each field's level and weight (with its
        frequency adjustment, if any); ``total`` is the weight it was ranked by (below the true one when
        first names differ)."""
        model = self.model
        weight, parts = model.weight_of(levels)
        fields: dict[str, dict[str, Any]] = {}
        for f, lv in zip(FIELDS, levels):
            if lv == "null":
                continue
            entry: dict[str, Any] = {"level": lv, "weight": parts[f]}
            if deltas and f in deltas:
                entry["weight"] += deltas[f]
                entry["frequency_adjustment"] = round(deltas[f], 4)
            entry["weight"] = round(entry["weight"], 4)
            fields[f] = entry
        if deltas:
            for d in deltas.values():
                weight += d
        out = {"weight": round(weight, 4), "link_threshold": model.link_threshold,
               "review_threshold": model.review_threshold, "fields": fields, "model": self.model_id}
        if weight != total:
            out["note"] = "first names differ: queued for review instead of linked"
        return out

    def _fuzzy_conflict(self, acc: _Acc, target: Profile) -> Optional[str]:
        """Why two profiles may not merge on attribute evidence (a hard rule), or None."""
        cfg = self.config
        for t, c in target.counts.items():
            have = acc.counts.get(t, 0)
            if not have:
                continue
            breach = _over_limit(cfg.rule(t), t, have + c)
            if breach:
                return breach
        # (dates of birth only: first names that differ are for the matcher to weigh, and at most queue a
        # pair for review, since twins agree on everything else)
        if cfg.dob_conflict and person.conflict(acc.traits, target.traits, (person.DOB,)):
            return "dates of birth differ: " + ", ".join(person.shown(acc.traits | target.traits, person.DOB))
        return None

    def decide_review(self, review_id: str, accept: bool, reviewer: str, decided_at: str,
                      note: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's verdict on a possible match, already applied. An accepted pair is linked unless a
        guard forbids it now (then the outcome is ``blocked`` and says why). Raises ``ReviewError`` for
        a review that is unknown or already decided."""
        st = self.state
        pair = st.reviews.get(review_id)
        if pair is None:
            raise ReviewError(f"no pending review {review_id!r}: it is unknown or already decided "
                              "(list the queue with `idres review`)")
        self._out = []
        a, b = pair
        pa, pb = st.node_profile[a], st.node_profile[b]
        event_id = f"review:{review_id}"
        verdict: dict[str, Any] = {"type": "review_decided", "review_id": review_id,
                                   "decision": "accept" if accept else "reject", "reviewer": reviewer,
                                   "decided_at": decided_at}
        if note:
            verdict["note"] = note
        if not accept:
            verdict["outcome"] = "rejected"
        elif pa is None or pb is None:
            verdict.update(outcome="blocked", reason="one side's identifier has since been found shared")
        elif pa == pb:
            verdict["outcome"] = "already_linked"
        else:
            first, second = st.profiles[pa], st.profiles[pb]
            acc = _Acc()
            acc.add(first.counts, first.traits)
            reason = self._fuzzy_conflict(acc, second)
            if reason is not None:
                verdict.update(outcome="blocked", reason=reason)
            else:
                verdict["outcome"] = "linked"
                self._emit({"type": "probable_link", "event_id": event_id, "node": st.node_keys[a],
                            "other": st.node_keys[b], "profile_id": pb, "rule": "review_accepted",
                            "review_id": review_id})
                ordered = sorted((first, second), key=Profile.age_key)
                self._emit({"type": "profiles_merged", "survivor_id": ordered[0].id,
                            "absorbed_ids": [ordered[1].id], "event_id": event_id, "occurred_at": decided_at,
                            "via": [st.node_keys[a], st.node_keys[b]], "rule": "review_accepted"})
        self._emit(verdict)
        out, self._out = self._out, []
        return out

    def _nothing_new(self, idxs: list[Optional[int]], traits: tuple[str, ...]) -> bool:
        """True when the event only repeats what is known: every identifier already linked, all in one
        profile, every pair already an edge, and its date of birth and name (if any) already on each.
        Then the full path would decide nothing; this answers the common case cheaply."""
        st = self.state
        pid = None
        for i in idxs:
            if i is None or i in st.shared:
                return False
            p = st.node_profile[i]
            if p is None or (pid is not None and p != pid):
                return False
            pid = p
            if traits:
                known = st.node_traits.get(i, {})
                for t in traits:
                    if known.get(t, 0) < person.SUPPORT[person.FIRST_NAME]:
                        return False  # new, or it may yet make the identifier a second person's
        if len(idxs) > 1:
            adj = st.adj
            for n, a in enumerate(idxs):
                na = adj.get(a)
                if na is None:
                    return False
                for b in idxs[n + 1:]:
                    if b not in na:
                        return False
        return True

    def _cooccurrence_breach(self, idx: int, node_keys: list[str], traits: tuple[str, ...],
                             limits: dict[str, int]) -> Optional[tuple[str, dict[str, Any]]]:
        st = self.state
        neighbours = st.adj.get(idx, {})
        refused = st.refused.get(idx, ())
        for t, limit in limits.items():
            if t in person.KINDS:
                incoming = person.carry(traits, t)
                if not incoming:
                    continue
                known = st.node_traits.get(idx, {})
                if known.get(incoming[0], 0) >= person.SUPPORT[t]:
                    continue  # a person already counted, named again: no one new
                seen = dict(known)
                seen[incoming[0]] = seen.get(incoming[0], 0) + 1
                distinct = person.distinct(seen, t)
                if distinct > limit:
                    return (f"seen with {distinct} different {person.WHAT[t]} (limit {limit})",
                            {t: person.shown(seen, t)})
                continue
            incoming = [k for k in node_keys if node_type(k) == t]
            if not incoming:
                continue
            values = {st.node_keys[n] for n in neighbours if st.node_types[n] == t}
            values.update(k for k in refused if node_type(k) == t)
            if incoming[0] in values or len(values) + 1 <= limit:
                continue
            seen = sorted(values | {incoming[0]})
            return (f"seen with {len(seen)} different {t} values (limit {limit})", {t: seen[:10]})
        return None

    def _conflict(self, acc: _Acc, counts: dict[str, int], known: Iterable[str],
                  bridge_type: str) -> Optional[tuple[str, dict[str, Any]]]:
        cfg = self.config
        bridge_rule = cfg.rule(bridge_type)
        for t, c in counts.items():
            have = acc.counts.get(t, 0)
            if not have:
                continue
            rule = cfg.rule(t)
            if bridge_rule.weak and not rule.weak:
                return (f"weak identifier {bridge_type} would join two customers with different {t} values",
                        {"type": t, "weak": True})
            breach = _over_limit(rule, t, have + c)
            if breach:
                return breach, {"type": t, "count": have + c}
        known = set(known)
        # Dates of birth: the event's own date counts too (a call on a landline known with another date
        # of birth shows the landline is shared). First names only where the event joins identifiers
        # already known with other names: a name on one event may be a gift's recipient's, which the
        # co-occurrence limits weigh.
        mine = acc.traits | acc.own
        which = person.conflict(mine, known, (person.DOB,))
        if which is None and not acc.empty():
            which = person.conflict(acc.traits, known, (person.FIRST_NAME,))
        if which is not None:
            return (f"would join customers with different {person.WHAT[which]}",
                    {which: person.shown(mine | known, which)})
        return None

    def _culprit(self, acc: _Acc, idx: int, prof: Profile) -> int:
        """The identifier to stop linking so that ``idx`` can join ``acc``: the weakest node of
        ``prof`` whose removal leaves ``idx`` in a part compatible with ``acc``, else ``idx`` itself."""
        st = self.state
        if len(prof.nodes) > MAX_CULPRIT_SEARCH:
            return idx
        bridge_type = st.node_types[idx]

        def rank(n: int) -> tuple[int, int, str]:
            return (-self._priority(st.node_types[n]), -len(st.adj.get(n, ())), st.node_keys[n])

        best = idx
        for x in sorted(prof.nodes):
            if x == idx or rank(x) >= rank(best):
                continue
            part = self._reachable(idx, prof.nodes, x)
            counts: dict[str, int] = {}
            known: set[str] = set()
            for n in part:
                t = st.node_types[n]
                counts[t] = counts.get(t, 0) + 1
                nt = st.node_traits.get(n)
                if nt:
                    known.update(nt)
            if self._conflict(acc, counts, known, bridge_type) is None:
                best = x
        return best

    def _neighbours(self, n: int) -> Iterable[int]:
        st = self.state
        a = st.adj.get(n)
        f = st.fuzzy.get(n)
        if f is None:
            return a or ()
        if a is None:
            return f
        return [*a, *f]

    def _reachable(self, start: int, nodes: set[int], without: int) -> set[int]:
        neighbours = self._neighbours
        seen = {start}
        stack = [start]
        while stack:
            n = stack.pop()
            for m in neighbours(n):
                if m != without and m in nodes and m not in seen:
                    seen.add(m)
                    stack.append(m)
        return seen

    def _has_new_edge(self, keys: list[str]) -> bool:
        st = self.state
        idxs = [st.node_index[k] for k in keys]
        for i, a in enumerate(idxs):
            na = st.adj.get(a)
            for b in idxs[i + 1:]:
                if na is None or b not in na:
                    return True
        return False

    def _flag(self, key: str, event_id: str, reason: str, evidence: dict[str, Any]) -> None:
        st = self.state
        idx = st.node_index.get(key)
        pid = st.node_profile[idx] if idx is not None else None
        self._emit({"type": "identifier_flagged", "node": key, "status": "shared", "event_id": event_id,
                    "reason": reason, "evidence": evidence})
        if pid is None:
            return
        prof = st.profiles[pid]
        if len(prof.nodes) < 2:
            return
        components = self._components(prof.nodes)
        if len(components) < 2:
            return
        parts = [{"profile_id": pid, "created_at": prof.created_at,
                  "nodes": [st.node_keys[n] for n in components[0]]}]
        for comp in components[1:]:
            first = st.node_keys[comp[0]]
            parts.append({"profile_id": self._new_profile_id(f"split:{event_id}:{first}"),
                          "created_at": prof.created_at, "nodes": [st.node_keys[n] for n in comp]})
        self._emit({"type": "profile_split", "profile_id": pid, "event_id": event_id,
                    "reason": f"{key} is shared: {reason}", "parts": parts})

    def _components(self, nodes: set[int]) -> list[list[int]]:
        """Connected components of the active graph over ``nodes``, each sorted, in order of first node."""
        neighbours = self._neighbours
        left = set(nodes)
        out: list[list[int]] = []
        for start in sorted(nodes):
            if start not in left:
                continue
            left.discard(start)
            comp = [start]
            stack = [start]
            while stack:
                n = stack.pop()
                for m in neighbours(n):
                    if m in left:
                        left.discard(m)
                        comp.append(m)
                        stack.append(m)
            comp.sort()
            out.append(comp)
        return out

    def _new_profile_id(self, seed: str) -> str:
        st = self.state
        pid = "p_" + short_hash(seed)
        n = 0
        while pid in st.profiles or pid in st.aliases:
            n += 1
            pid = "p_" + short_hash(f"{seed}#{n}")
        return pid

    # ---------------------------------------------------------------------------------- applying
    def apply(self, decision: dict[str, Any]) -> None:
        _APPLY[decision["type"]](self, decision)

    def apply_all(self, decisions: Iterable[dict[str, Any]]) -> None:
        # (a class-level table: bound methods stored on the instance would make a reference cycle
        # that keeps a discarded state alive while the garbage collector is paused)
        for d in decisions:
            _APPLY[d["type"]](self, d)

    def _apply_interaction(self, d: dict[str, Any]) -> None:
        st = self.state
        st.seen_events.add(d["event_id"])
        shared = self._shared_of(d["nodes"])
        if shared:
            anchor = self._representative(d["nodes"], d.get("refused", ()))
            if anchor is not None:
                sessions.fold_identified(st.session_last, shared, d["occurred_at"], st.node_keys[anchor])
            elif "attributed" not in d:
                sessions.fold_waiting(st.session_pending, shared, st.node_keys, d["occurred_at"], d["event_id"])
        attributes = d.get("attributes")
        if not attributes:
            return
        traits = person.event_traits(attributes, self.config.dob_conflict, self.config.name_conflict)
        refused = d.get("refused", ())
        if traits:
            for key in d["nodes"]:
                idx = st.node(key)
                if idx in st.shared or key in refused:
                    continue
                known = st.node_traits.setdefault(idx, {})
                for t in traits:
                    n = known.get(t)
                    if n is not None:
                        known[t] = n + 1
                    elif len(known) < MAX_TRAITS_PER_NODE:
                        known[t] = 1
                        pid = st.node_profile[idx]
                        if pid is not None:
                            st.profiles[pid].traits.add(t)
                    else:  # full: the event still names someone; credit the spelling of them held first
                        same = next((k for k in sorted(known) if all(person.compatible(t, k, w) for w in person.KINDS)),
                                    None)
                        if same is not None:
                            known[same] += 1
        if self.config.fuzzy_matching:
            record = self._record(attributes)
            if record is not None:
                rep = self._representative(d["nodes"], refused)
                if rep is not None:
                    self._index(rep, record[0], record[1])

    def _index(self, node: int, rec: AttributeRecord, keys: list[str]) -> None:
        """Files a record under ``node`` and its blocking keys (a full key takes no more nodes)."""
        st = self.state
        known = st.records.get(node)
        if known is None:
            st.records[node] = [rec]
        elif rec in known or len(known) >= MAX_RECORDS_PER_NODE:
            return
        else:
            known.append(rec)
        counts, totals = st.value_counts, st.value_totals
        for f in FREQUENCY_FIELDS:
            value = getattr(rec, f)
            if value is not None:
                counts[(f, value)] = counts.get((f, value), 0) + 1
                totals[f] = totals.get(f, 0) + 1
        cap = self.config.max_block_size
        blocks = st.blocks
        pid = st.node_profile[node]
        node_profile = st.node_profile
        for key in keys:
            block = blocks.get(key)
            if block is None:
                blocks[key] = [node]
            elif len(block) < cap and node not in block:
                # a customer with many similar records would fill a block alone: a few of theirs suffice
                # to find them, the room is kept for other customers
                same = 0
                for n in block:
                    if node_profile[n] == pid:
                        same += 1
                if same < MAX_BLOCK_NODES_PER_PROFILE:
                    block.append(node)

    def _attach(self, prof: Profile, idx: int) -> None:
        st = self.state
        st.node_profile[idx] = prof.id
        prof.nodes.add(idx)
        t = st.node_types[idx]
        prof.counts[t] = prof.counts.get(t, 0) + 1
        known = st.node_traits.get(idx)
        if known:
            prof.traits.update(known)

    def _apply_created(self, d: dict[str, Any]) -> None:
        st = self.state
        prof = Profile(d["profile_id"], d["created_at"])
        st.profiles[prof.id] = prof
        for key in d["nodes"]:
            self._attach(prof, st.node(key))

    def _apply_attached(self, d: dict[str, Any]) -> None:
        st = self.state
        prof = st.profiles[d["profile_id"]]
        for key in d["nodes"]:
            self._attach(prof, st.node(key))

    def _apply_linked(self, d: dict[str, Any]) -> None:
        st = self.state
        idxs = [st.node(k) for k in d["nodes"]]
        ev = d["event_id"]
        for a in idxs:
            na = st.adj.get(a)
            if na is None:
                na = st.adj[a] = {}
            for b in idxs:
                if b != a and b not in na:
                    na[b] = ev

    def _apply_merged(self, d: dict[str, Any]) -> None:
        st = self.state
        survivor = st.profiles[d["survivor_id"]]
        for pid in d["absorbed_ids"]:
            prof = st.profiles.pop(pid)
            for idx in prof.nodes:
                st.node_profile[idx] = survivor.id
            survivor.nodes |= prof.nodes
            for t, c in prof.counts.items():
                survivor.counts[t] = survivor.counts.get(t, 0) + c
            survivor.traits |= prof.traits
            st.aliases[pid] = survivor.id

    def _apply_flagged(self, d: dict[str, Any]) -> None:
        st = self.state
        idx = st.node(d["node"])
        st.shared.add(idx)
        st.refused.pop(idx, None)
        for edges in (st.adj, st.fuzzy):
            for m in edges.pop(idx, {}):
                nm = edges.get(m)
                if nm is not None:
                    nm.pop(idx, None)
                    if not nm:
                        del edges[m]
        pid = st.node_profile[idx]
        if pid is not None:
            prof = st.profiles[pid]
            prof.nodes.discard(idx)
            t = st.node_types[idx]
            prof.counts[t] -= 1
            if not prof.counts[t]:
                del prof.counts[t]
            self._recount(prof)
            st.node_profile[idx] = None

    def _recount(self, prof: Profile) -> None:
        st = self.state
        counts: dict[str, int] = {}
        known: set[str] = set()
        for idx in prof.nodes:
            t = st.node_types[idx]
            counts[t] = counts.get(t, 0) + 1
            nt = st.node_traits.get(idx)
            if nt:
                known.update(nt)
        prof.counts = counts
        prof.traits = known

    def _apply_split(self, d: dict[str, Any]) -> None:
        st = self.state
        for part in d["parts"]:
            pid = part["profile_id"]
            prof = st.profiles.get(pid)
            if prof is None:
                prof = st.profiles[pid] = Profile(pid, part["created_at"])
            prof.nodes = {st.node(k) for k in part["nodes"]}
            for idx in prof.nodes:
                st.node_profile[idx] = pid
            self._recount(prof)

    def _apply_refused(self, d: dict[str, Any]) -> None:
        st = self.state
        st.refused.setdefault(st.node(d["node"]), set()).update(d["others"])

    def _apply_probable(self, d: dict[str, Any]) -> None:
        st = self.state
        a, b = st.node(d["node"]), st.node(d["other"])
        st.fuzzy.setdefault(a, {})[b] = d["event_id"]
        st.fuzzy.setdefault(b, {})[a] = d["event_id"]

    def _apply_possible(self, d: dict[str, Any]) -> None:
        st = self.state
        a, b = st.node(d["node"]), st.node(d["other"])
        st.reviews[d["review_id"]] = (a, b)
        st.review_pairs.add((a, b) if a < b else (b, a))

    def _apply_review(self, d: dict[str, Any]) -> None:
        st = self.state
        pair = st.reviews.pop(d["review_id"], None)
        if pair is not None and d["outcome"] == "rejected":
            a, b = pair
            st.review_rejected.add((a, b) if a < b else (b, a))

    def _apply_attributed(self, d: dict[str, Any]) -> None:
        st = self.state
        sessions.fold_claimed(st.session_pending, st.node(d["via"]), d["events"])

    def _apply_rejected(self, d: dict[str, Any]) -> None:
        self.state.rejected_keys.add(d["key"])


_APPLY: dict[str, Callable[[Resolver, dict[str, Any]], None]] = {
    "interaction_recorded": Resolver._apply_interaction,
    "profile_created": Resolver._apply_created,
    "identifiers_attached": Resolver._apply_attached,
    "identifiers_linked": Resolver._apply_linked,
    "profiles_merged": Resolver._apply_merged,
    "identifier_flagged": Resolver._apply_flagged,
    "profile_split": Resolver._apply_split,
    "event_rejected": Resolver._apply_rejected,
    "link_refused": Resolver._apply_refused,
    "probable_link": Resolver._apply_probable,
    "possible_match": Resolver._apply_possible,
    "review_decided": Resolver._apply_review,
    "events_attributed": Resolver._apply_attributed,
}
