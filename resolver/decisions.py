"""The decisions the resolver emits, typed: one ``TypedDict`` and one constructor per decision type.

Decisions stay plain dicts at run time (written to the log as they are, folded without conversion: the
hot path pays nothing for the types); the types say, in one place, what each decision holds. The
published contract is ``schemas.decisions`` (pydantic models, exported as JSON Schema); a test keeps
the two in step. This module imports nothing of the resolver.
"""


from typing import Any, Literal, NotRequired, Optional, Sequence, TypedDict  # (no postponed annotations: NotRequired must be seen)


class Attribution(TypedDict):
    node: str
    via: str
    rule: str
    seconds: NotRequired[int]


class InteractionRecorded(TypedDict):
    type: Literal["interaction_recorded"]
    event_id: str
    occurred_at: str
    channel: str
    event_type: str
    nodes: list[str]
    digest: NotRequired[int]
    refused: NotRequired[list[str]]
    attributed: NotRequired[Attribution]
    ignored: NotRequired[list[dict[str, str]]]
    read: NotRequired[list[dict[str, str]]]
    attributes: NotRequired[dict[str, str]]
    payload: NotRequired[dict[str, Any]]
    source: NotRequired[dict[str, Any]]
    erased: NotRequired[bool]
    sealed: NotRequired[str]


class ProfileCreated(TypedDict):
    type: Literal["profile_created"]
    profile_id: str
    created_at: str
    event_id: str
    nodes: list[str]


class IdentifiersAttached(TypedDict):
    type: Literal["identifiers_attached"]
    profile_id: str
    event_id: str
    nodes: list[str]


class IdentifiersLinked(TypedDict):
    type: Literal["identifiers_linked"]
    event_id: str
    rule: str
    nodes: list[str]


class ProfilesMerged(TypedDict):
    type: Literal["profiles_merged"]
    survivor_id: str
    absorbed_ids: list[str]
    event_id: str
    occurred_at: str
    via: list[str]
    rule: str
    evidence: NotRequired[dict[str, list[str]]]


class IdentifierFlagged(TypedDict):
    type: Literal["identifier_flagged"]
    node: str
    status: Literal["shared"]
    event_id: str
    reason: str
    evidence: dict[str, Any]


class LinkRefused(TypedDict):
    type: Literal["link_refused"]
    node: str
    event_id: str
    others: list[str]
    reason: str


class EventsAttributed(TypedDict):
    type: Literal["events_attributed"]
    event_id: str
    node: str
    via: str
    rule: Literal["same_session"]
    events: list[str]


class PhoneRegionLearned(TypedDict):
    type: Literal["phone_region_learned"]
    event_id: str
    region: str
    numbers: int
    share: float


class ModelEstimated(TypedDict):
    type: Literal["model_estimated"]
    event_id: str
    filed: int
    records: int
    sample: int
    candidate_pairs: int
    expected_matching_pairs: float
    previous: str
    model_id: str
    model: dict[str, Any]
    note: NotRequired[str]


class ProbableLink(TypedDict):
    type: Literal["probable_link"]
    event_id: str
    node: str
    other: str
    profile_id: str
    rule: Literal["probable_match", "review_accepted", "model_rescored"]
    weight: NotRequired[float]
    link_threshold: NotRequired[float]
    review_threshold: NotRequired[float]
    fields: NotRequired[dict[str, dict[str, Any]]]
    model: NotRequired[str]
    review_id: NotRequired[str]


class PossibleMatch(TypedDict):
    type: Literal["possible_match"]
    review_id: str
    event_id: str
    occurred_at: str
    node: str
    other: str
    profile_id: str
    other_profile_id: str
    weight: float
    link_threshold: float
    review_threshold: float
    fields: dict[str, dict[str, Any]]
    model: str
    note: NotRequired[str]


class ReviewDecided(TypedDict):
    type: Literal["review_decided"]
    review_id: str
    decision: Literal["accept", "reject"]
    reviewer: str
    decided_at: str
    note: NotRequired[str]
    outcome: Literal["linked", "rejected", "already_linked", "blocked"]
    reason: NotRequired[str]


class SplitPart(TypedDict):
    profile_id: str
    created_at: str
    nodes: list[str]


class ProfileSplit(TypedDict):
    type: Literal["profile_split"]
    profile_id: str
    event_id: str
    reason: str
    parts: list[SplitPart]


class ProfileRenamed(TypedDict):
    type: Literal["profile_renamed"]
    profile_id: str
    new_profile_id: str
    event_id: str


class ConnectionBanned(TypedDict):
    type: Literal["connection_banned"]
    ban_id: str
    profile_id: str
    nodes: list[str]
    others: list[str]
    by: str
    decided_at: str
    note: NotRequired[str]


class BanLifted(TypedDict):
    type: Literal["ban_lifted"]
    ban_id: str
    by: str
    decided_at: str
    note: NotRequired[str]


class CustomerErased(TypedDict):
    type: Literal["customer_erased"]
    erasure_id: str
    profile_ids: list[str]
    nodes: list[str]
    events: list[str]
    rejected: list[str]
    unusable: NotRequired[list[dict[str, str]]]
    by: str
    decided_at: str
    reason: NotRequired[str]


class LogRestateBegun(TypedDict):
    type: Literal["log_restate_begun"]
    restate_id: str
    from_seq: int
    late_events: int
    decided_at: str


class LogRestatePart(TypedDict):
    type: Literal["log_restate_part"]
    restate_id: str
    nodes: list[str]
    owners: list[Optional[str]]
    aliases: list[list[str]]


class LogRestated(TypedDict):
    type: Literal["log_restated"]
    restate_id: str
    from_seq: int
    begun_seq: int
    entries: int
    superseded: int
    late_events: int
    decided_at: str


class LogRestateAbandoned(TypedDict):
    type: Literal["log_restate_abandoned"]
    restate_id: str
    begun_seq: int
    decided_at: str


class EventRejected(TypedDict):
    type: Literal["event_rejected"]
    key: str
    source: dict[str, Any]
    reason: str
    raw: str
    detail: NotRequired[str]
    event_id: NotRequired[str]
    erased: NotRequired[bool]
    sealed: NotRequired[str]


Decision = (InteractionRecorded | ProfileCreated | IdentifiersAttached | IdentifiersLinked | ProfilesMerged
            | IdentifierFlagged | LinkRefused | EventsAttributed | PhoneRegionLearned | ModelEstimated | ProbableLink
            | PossibleMatch | ReviewDecided | ProfileSplit | ProfileRenamed | ConnectionBanned | BanLifted
            | EventRejected | CustomerErased)

ALL: tuple[type, ...] = (InteractionRecorded, ProfileCreated, IdentifiersAttached, IdentifiersLinked, ProfilesMerged,
                         IdentifierFlagged, LinkRefused, EventsAttributed, PhoneRegionLearned, ModelEstimated,
                         ProbableLink, PossibleMatch, ReviewDecided, ProfileSplit, ProfileRenamed, ConnectionBanned,
                         BanLifted, EventRejected, CustomerErased, LogRestateBegun, LogRestatePart, LogRestated,
                         LogRestateAbandoned)


RECORD_TYPES = ("interaction_recorded", "event_rejected", "review_decided", "connection_banned", "ban_lifted",
                "customer_erased", "log_restate_begun", "log_restate_part", "log_restated", "log_restate_abandoned")


def record_of(entry: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision of a log entry that records its input (an event, a rejected record or a person's
    verdict); what it led to comes before it, and a rename or a learned format may follow it."""
    return next(d for d in reversed(entry) if d["type"] in RECORD_TYPES)


def erasure_of(entry: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The ``customer_erased`` decision of a log entry, or None (an erasure is its entry's only decision)."""
    return entry[-1] if entry and entry[-1]["type"] == "customer_erased" else None


# --------------------------------------------------------------------------------------- constructors
def profile_created(profile_id: str, created_at: str, event_id: str, nodes: list[str]) -> ProfileCreated:
    return {"type": "profile_created", "profile_id": profile_id, "created_at": created_at, "event_id": event_id,
            "nodes": nodes}


def identifiers_attached(profile_id: str, event_id: str, nodes: list[str]) -> IdentifiersAttached:
    return {"type": "identifiers_attached", "profile_id": profile_id, "event_id": event_id, "nodes": nodes}


def identifiers_linked(event_id: str, nodes: list[str], rule: str = "seen_together") -> IdentifiersLinked:
    return {"type": "identifiers_linked", "event_id": event_id, "rule": rule, "nodes": nodes}


def profiles_merged(survivor_id: str, absorbed_ids: list[str], event_id: str, occurred_at: str, via: list[str],
                    rule: str, evidence: Optional[dict[str, list[str]]] = None) -> ProfilesMerged:
    out: ProfilesMerged = {"type": "profiles_merged", "survivor_id": survivor_id, "absorbed_ids": absorbed_ids,
                           "event_id": event_id, "occurred_at": occurred_at, "via": via, "rule": rule}
    if evidence is not None:
        out["evidence"] = evidence
    return out


def identifier_flagged(node: str, event_id: str, reason: str, evidence: dict[str, Any]) -> IdentifierFlagged:
    return {"type": "identifier_flagged", "node": node, "status": "shared", "event_id": event_id, "reason": reason,
            "evidence": evidence}


def link_refused(node: str, event_id: str, others: list[str], reason: str) -> LinkRefused:
    return {"type": "link_refused", "node": node, "event_id": event_id, "others": others, "reason": reason}


def events_attributed(event_id: str, node: str, via: str, events: list[str]) -> EventsAttributed:
    return {"type": "events_attributed", "event_id": event_id, "node": node, "via": via, "rule": "same_session",
            "events": events}


def phone_region_learned(event_id: str, region: str, numbers: int, share: float) -> PhoneRegionLearned:
    return {"type": "phone_region_learned", "event_id": event_id, "region": region, "numbers": numbers,
            "share": share}


def model_estimated(event_id: str, filed: int, records: int, sample: int, candidate_pairs: int,
                    expected_matching_pairs: float, previous: str, model_id: str, model: dict[str, Any],
                    note: Optional[str] = None) -> ModelEstimated:
    out: ModelEstimated = {"type": "model_estimated", "event_id": event_id, "filed": filed, "records": records,
                           "sample": sample, "candidate_pairs": candidate_pairs,
                           "expected_matching_pairs": expected_matching_pairs, "previous": previous,
                           "model_id": model_id, "model": model}
    if note:
        out["note"] = note
    return out


def profile_split(profile_id: str, event_id: str, reason: str, parts: list[SplitPart]) -> ProfileSplit:
    return {"type": "profile_split", "profile_id": profile_id, "event_id": event_id, "reason": reason,
            "parts": parts}


def connection_banned(ban_id: str, profile_id: str, nodes: list[str], others: list[str], by: str,
                      decided_at: str, note: Optional[str] = None) -> ConnectionBanned:
    out: ConnectionBanned = {"type": "connection_banned", "ban_id": ban_id, "profile_id": profile_id, "nodes": nodes,
                             "others": others, "by": by, "decided_at": decided_at}
    if note:
        out["note"] = note
    return out


def customer_erased(erasure_id: str, profile_ids: list[str], nodes: list[str], events: list[str],
                    rejected: list[str], by: str, decided_at: str, reason: Optional[str] = None,
                    unusable: Sequence[tuple[str, str]] = ()) -> CustomerErased:
    out: CustomerErased = {"type": "customer_erased", "erasure_id": erasure_id, "profile_ids": profile_ids,
                           "nodes": nodes, "events": events, "rejected": rejected, "by": by, "decided_at": decided_at}
    if unusable:
        out["unusable"] = [{"type": t, "raw": v} for t, v in unusable]
    if reason:
        out["reason"] = reason
    return out


def ban_lifted(ban_id: str, by: str, decided_at: str, note: Optional[str] = None) -> BanLifted:
    out: BanLifted = {"type": "ban_lifted", "ban_id": ban_id, "by": by, "decided_at": decided_at}
    if note:
        out["note"] = note
    return out


def log_restate_begun(restate_id: str, from_seq: int, late_events: int, decided_at: str) -> LogRestateBegun:
    return {"type": "log_restate_begun", "restate_id": restate_id, "from_seq": from_seq, "late_events": late_events,
            "decided_at": decided_at}


def log_restate_part(restate_id: str, nodes: list[str], owners: list[Optional[str]],
                     aliases: list[list[str]]) -> LogRestatePart:
    return {"type": "log_restate_part", "restate_id": restate_id, "nodes": nodes, "owners": owners, "aliases": aliases}


def log_restated(restate_id: str, from_seq: int, begun_seq: int, entries: int, superseded: int, late_events: int,
                 decided_at: str) -> LogRestated:
    return {"type": "log_restated", "restate_id": restate_id, "from_seq": from_seq, "begun_seq": begun_seq,
            "entries": entries, "superseded": superseded, "late_events": late_events, "decided_at": decided_at}


def log_restate_abandoned(restate_id: str, begun_seq: int, decided_at: str) -> LogRestateAbandoned:
    return {"type": "log_restate_abandoned", "restate_id": restate_id, "begun_seq": begun_seq,
            "decided_at": decided_at}


def profile_renamed(profile_id: str, new_profile_id: str, event_id: str) -> ProfileRenamed:
    return {"type": "profile_renamed", "profile_id": profile_id, "new_profile_id": new_profile_id,
            "event_id": event_id}


def probable_link(event_id: str, node: str, other: str, profile_id: str, rule: str,
                  **evidence: Any) -> ProbableLink:
    """``evidence``: a match's weight, thresholds, fields and model (``fuzzy.evidence``), or a review's ID."""
    return {"type": "probable_link", "event_id": event_id, "node": node, "other": other,  # type: ignore[typeddict-item]
            "profile_id": profile_id, "rule": rule, **evidence}


def possible_match(review_id: str, event_id: str, occurred_at: str, node: str, other: str, profile_id: str,
                   other_profile_id: str, **evidence: Any) -> PossibleMatch:
    return {"type": "possible_match", "review_id": review_id, "event_id": event_id,  # type: ignore[typeddict-item]
            "occurred_at": occurred_at, "node": node, "other": other, "profile_id": profile_id,
            "other_profile_id": other_profile_id, **evidence}


def event_rejected(key: str, source: dict[str, Any], reason: str, raw: str, event_id: Optional[str] = None,
                   detail: Optional[str] = None) -> EventRejected:
    out: EventRejected = {"type": "event_rejected", "key": key, "source": source, "reason": reason, "raw": raw}
    if detail is not None:
        out["detail"] = detail
    if event_id is not None:
        out["event_id"] = event_id
    return out
