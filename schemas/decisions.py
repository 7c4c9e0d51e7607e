"""The engine's own domain events: what the resolver decided, in the order it decided it.

The decision log is the source of truth. One log entry holds the decisions taken for one raw
record, so an entry is written whole or not at all. Every projection (customer view, lookup
index, DuckDB snapshot) is a fold over these events.

An identifier is written as a *node key* ``"type:value"`` with the normalized value, for example
``"email:jane.doe@example.org"`` or ``"phone:+14155550134"``.

The engine emits plain dicts (for speed); these models are their contract, checked by the tests
and exported as JSON Schema for consumers of the decision log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.versions import DECISION_SCHEMA_VERSION  # (its history is there)


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Where the raw record came from: a file path, or topic/partition.")
    position: int = Field(description="Line number in the file (1-based; of the decompressed text for a gzip "
                                      "file, a UTF-8 BOM not counted), or the Kafka offset.")


class IgnoredIdentifier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    raw: str = Field(description="As given (empty once erased).")
    reason: str
    erased: Optional[bool] = Field(default=None, description=(
        "An erasure made the value unreadable (it read as an erased customer's identifier by then). In the files "
        "and topic, each value is sealed under a key of its own (``streams.sealing.unusable_subject``)."))


class UnusableValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    raw: str = Field(default="", description="As given (empty once erased).")
    erased: Optional[bool] = Field(default=None, description="Its key is shredded: the value cannot be read.")
    sealed: Optional[str] = Field(default=None, description=(
        "In the files and topic only: ``raw`` encrypted under its own key (idres reads it back in its place)."))


class Attribution(BaseModel):
    """Why an event that carries only shared identifiers belongs to a customer."""

    model_config = ConfigDict(extra="forbid")
    node: str = Field(description="The customer's identifier: the event goes where this identifier's profile is.")
    via: str = Field(description="The shared identifier the event and that customer's identified event used.")
    rule: Literal["same_session", "same_name"] = Field(
        description="same_session: within 30 minutes of an identified event on the shared identifier; same_name: "
                    "the event names that customer, the only one of the shared identifier's users it names.")
    seconds: Optional[int] = Field(None, ge=0, description="same_session: seconds from that identified event to "
                                                           "this one.")


class ReadIdentifier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    raw: str


class InteractionRecorded(_Decision):
    """A raw event was accepted. ``nodes`` are its usable identifiers, strongest first."""

    type: Literal["interaction_recorded"]
    event_id: str
    occurred_at: str
    channel: str
    event_type: str
    nodes: list[str]
    digest: Optional[int] = Field(default=None, ge=0, description=(
        "CRC-32 of what the raw event says (UTC time, channel, type, identifiers, attributes and payload as sent): "
        "a later event under the same ID with another digest is rejected as a conflicting duplicate."))
    refused: list[str] = Field(default_factory=list, description="Identifiers of ``nodes`` not linked on this event.")
    attributed: Optional[Attribution] = None
    ignored: list[IgnoredIdentifier] = Field(default_factory=list)
    read: list[ReadIdentifier] = Field(default_factory=list, description=(
        "Identifiers a format learned from the data may read otherwise (phone numbers not written in international "
        "form), as written: deciding the event again (a restatement) reads them with the formats known at its place."))
    attributes: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)
    source: Optional[Source] = None
    erased: Optional[bool] = Field(default=None, description=(
        "The event's content (attributes, payload, identifiers it could not use) was erased: its key is shredded."))
    sealed: Optional[str] = Field(default=None, description=(
        "In the files and topic only: ``attributes``, ``payload``, ``ignored`` and ``read`` encrypted under the event's key "
        "(idres reads them back in their place)."))


class ProfileCreated(_Decision):
    type: Literal["profile_created"]
    profile_id: str
    created_at: str
    event_id: str
    nodes: list[str]


class IdentifiersAttached(_Decision):
    """New identifiers joined an existing profile because they were seen on one event with it."""

    type: Literal["identifiers_attached"]
    profile_id: str
    event_id: str
    nodes: list[str]


class IdentifiersLinked(_Decision):
    """Evidence edges: every pair of ``nodes`` was seen together on ``event_id``."""

    type: Literal["identifiers_linked"]
    event_id: str
    rule: str
    nodes: list[str]


class ProfilesMerged(_Decision):
    """``absorbed_ids`` now resolve to ``survivor_id`` (the profile with the earliest event keeps its ID)."""

    type: Literal["profiles_merged"]
    survivor_id: str
    absorbed_ids: list[str]
    event_id: str
    occurred_at: str
    via: list[str] = Field(description="The identifiers on the event that tied the profiles together.")
    rule: str = Field(description="shared_identifier, weak_identifier_and_person (a device, with the same "
                                  "person named on both sides), probable_match or review_accepted.")
    evidence: Optional[dict[str, list[str]]] = Field(
        default=None, description="weak_identifier_and_person: the weak identifiers (`weak`) and the person "
                                  "both sides name (`person`) that together carried the merge.")


class IdentifierFlagged(_Decision):
    """An identifier stopped linking: a placeholder or a value shared by several people."""

    type: Literal["identifier_flagged"]
    node: str
    status: Literal["shared"]
    event_id: str
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class LinkRefused(_Decision):
    """A weak identifier (a device) was seen with a customer other than its own and was not linked
    on this event. It counts toward the identifier's co-occurrence limits."""

    type: Literal["link_refused"]
    node: str
    event_id: str
    others: list[str]
    reason: str


class EventsAttributed(_Decision):
    """Anonymous events on a shared identifier, waiting, claimed by the identified event that followed
    them within a session: they belong to that event's customer."""

    type: Literal["events_attributed"]
    event_id: str = Field(description="The identified event that claims them.")
    node: str = Field(description="Its customer's identifier.")
    via: str = Field(description="The shared identifier both used.")
    rule: Literal["same_session"]
    events: list[str]


class PhoneRegionLearned(_Decision):
    """A country whose phone numbers are common in the data: from now on a national number that cannot be
    the default region's but is a valid number of this country is read as its (``resolver.formats``)."""

    type: Literal["phone_region_learned"]
    event_id: str = Field(description="The event whose number made the country common enough.")
    region: str = Field(description="ISO 3166 region code of the country (GB).")
    numbers: int = Field(description="Distinct phone numbers of the country seen so far.")
    share: float = Field(description="Their share of all distinct phone numbers seen so far.")


class ModelEstimated(_Decision):
    """The match model re-estimated from the attribute records seen so far (``resolver.calibration``):
    every later match is scored under it, and replay adopts it at the same point without estimating."""

    type: Literal["model_estimated"]
    event_id: str = Field(description="The event before whose matching the model was re-estimated.")
    filed: int = Field(ge=0, description="Attribute records filed so far (the next estimate is at twice this).")
    records: int = Field(ge=0, description="Distinct attribute records the estimate was made from.")
    sample: int = Field(ge=0, description="Of those, how many were read (a seeded sample above 32,768).")
    candidate_pairs: int = Field(ge=0, description="Blocked pairs m and the match share were estimated over.")
    expected_matching_pairs: float = Field(description="How many of those the model expects to match.")
    previous: str = Field(description="The model scored under until now (version/fingerprint).")
    model_id: str = Field(description="The new model's version/fingerprint, as later decisions name it.")
    model: dict[str, Any] = Field(description="The whole model, in the format of `idres train`'s model file.")
    note: Optional[str] = Field(default=None, description="Why the previous model was kept, if it was.")


class FieldWeight(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: str = Field(description="Agreement level of this field, e.g. exact, jw_92, one_off, different.")
    weight: float = Field(description="Its Fellegi-Sunter contribution, log2(m/u), frequency adjustment included.")
    frequency_adjustment: Optional[float] = Field(
        None, description="Bits added for an exact agreement on a rare value (negative: a common one).")


class ProbableLink(_Decision):
    """Two identifiers (or anonymous records, ``record:<event_id>``) were linked on attribute evidence:
    a match weight at or above the model's link threshold, or a person's accepted review."""

    type: Literal["probable_link"]
    event_id: str = Field(description="The event whose record matched, or ``review:<review_id>``.")
    node: str
    other: str
    profile_id: str = Field(description="The profile ``other`` belonged to when the link was made.")
    rule: Literal["probable_match", "review_accepted", "model_rescored"] = Field(
        description="probable_match: scored at the event; review_accepted: a person's verdict; model_rescored: a "
                    "possible match the re-estimated model links (``review_id`` names it).")
    weight: Optional[float] = Field(default=None, description="Total match weight (log2 odds); none for a review.")
    link_threshold: Optional[float] = None
    review_threshold: Optional[float] = None
    fields: dict[str, FieldWeight] = Field(default_factory=dict, description="Each compared field's contribution.")
    model: Optional[str] = Field(default=None, description="Match model version and fingerprint.")
    review_id: Optional[str] = None


class PossibleMatch(_Decision):
    """A match weight between the review and link thresholds: queued for a person to decide."""

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
    fields: dict[str, FieldWeight]
    model: str
    note: Optional[str] = Field(default=None, description="Why a weight above the link threshold was queued.")


class ReviewDecided(_Decision):
    """A person's verdict on a possible match. ``outcome``: linked, rejected, already_linked, or
    blocked (accepted, but a guard forbids the merge now; ``reason`` says which)."""

    type: Literal["review_decided"]
    review_id: str
    decision: Literal["accept", "reject"]
    reviewer: str
    decided_at: str
    note: Optional[str] = None
    outcome: Literal["linked", "rejected", "already_linked", "blocked"]
    reason: Optional[str] = None


class SplitPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_id: str
    created_at: str
    nodes: list[str]


class ProfileSplit(_Decision):
    """A profile's identifiers no longer form one connected component. The part holding the profile's
    earliest event keeps the ID (and is renamed after, if that is not its name); every other part is
    named by its own earliest event."""

    type: Literal["profile_split"]
    profile_id: str
    event_id: str
    reason: str
    parts: list[SplitPart]


class ProfileRenamed(_Decision):
    """A cluster's name follows its earliest event: an older event that joins it, or a split or merge that
    changes which event is earliest, renames it. ``profile_id`` resolves to ``new_profile_id`` from now
    on (an alias), and a name an absorbed profile left behind is taken back by its cluster."""

    type: Literal["profile_renamed"]
    profile_id: str
    new_profile_id: str
    event_id: str = Field(description="The event whose decisions changed the cluster's earliest event.")


class ConnectionBanned(_Decision):
    """A person's unmerge (``idres unmerge``): the identifiers ``nodes`` left profile ``profile_id``, and a
    connection ban (a cannot-link constraint) between them and ``others`` (the rest of the profile then)
    holds for every later event, link, merge and split until it is lifted. The ban follows the identifiers,
    not the profile IDs. The profile's split, decided with it, comes before it in the entry."""

    type: Literal["connection_banned"]
    ban_id: str
    profile_id: str
    nodes: list[str] = Field(description="The identifiers named: one side of the ban.")
    others: list[str] = Field(description="The rest of the profile when it was decided: the other side.")
    by: str = Field(description="Who decided it.")
    decided_at: str
    note: Optional[str] = None


class BanLifted(_Decision):
    """A person lifted a connection ban (``idres unmerge --lift``): what it kept apart may be joined again by
    later evidence (nothing is joined by the lift itself)."""

    type: Literal["ban_lifted"]
    ban_id: str
    by: str
    decided_at: str
    note: Optional[str] = None


class EventRejected(_Decision):
    type: Literal["event_rejected"]
    key: str = Field(description="Identity of the raw record, so a re-read of the same input is a no-op.")
    source: Source
    reason: str = Field(description="The category, a short phrase that groups like records (``not valid JSON``, "
                                    "``missing occurred_at``, ...). Entries written before ``detail`` existed "
                                    "hold the detailed message here.")
    raw: str
    event_id: Optional[str] = None
    detail: Optional[str] = Field(default=None, description="The one-line message: the JSON decoder's error with "
                                                            "its position, the field and what was wrong with it.")
    erased: Optional[bool] = Field(default=None, description="The record's text was erased (``raw`` is empty).")
    sealed: Optional[str] = Field(default=None, description=(
        "In the files and topic only: ``raw`` and ``detail`` encrypted under the record's key (``raw`` is written "
        "empty; idres reads them back in their place)."))


class CustomerErased(_Decision):
    """A person's erasure (``idres erase``): the customers holding the identifiers named are forgotten. Their
    identifiers (``nodes``, read back as ``type:erased~KEY`` once their keys are shredded) leave the graph,
    their profiles and aliases are gone, and the contents of their events and of the rejected records that
    named them can no longer be read. Event IDs stay known, so a re-delivered event changes nothing."""

    type: Literal["customer_erased"]
    erasure_id: str
    profile_ids: list[str] = Field(description="The profiles erased (none when the identifier was in no profile).")
    nodes: list[str] = Field(description="Every identifier erased.")
    events: list[str] = Field(description="The events whose contents were shredded.")
    rejected: list[str] = Field(description="The keys of the rejected records whose text was shredded.")
    unusable: list[UnusableValue] = Field(default_factory=list, description=(
        "Values events gave that they could not use then and that read as an erased identifier now (a national "
        "number of a country learned since): shredded wherever they were given."))
    by: str = Field(description="Who decided it.")
    decided_at: str
    reason: Optional[str] = None


class LogRestateBegun(_Decision):
    """Late events (``resolver.restate``): the entries from ``from_seq`` on (after the last person's command)
    are decided again, in canonical order, in the entries after this one, until ``log_restated``. The first of
    those are ``log_restate_part`` entries: what a changelog consumer undoes."""

    type: Literal["log_restate_begun"]
    restate_id: str
    from_seq: int = Field(ge=0, description="The first entry decided again.")
    late_events: int = Field(ge=0, description="Events among them that came after later ones were decided.")
    decided_at: str


class LogRestatePart(_Decision):
    """What a restatement says in bulk, a part at a time (an entry of bounded size). Each identifier
    ``nodes[i]`` belongs to ``owners[i]`` (null: to no profile, or not yet known): after a begun marker, as it
    did before the entries now superseded (a changelog consumer applies it to undo what they said); before an
    abandoned marker, as the log reads without the restatement. ``aliases`` (``[old, new]``, before the end
    marker): profile IDs that were live and are not, each resolving to the profile holding its identifiers."""

    type: Literal["log_restate_part"]
    restate_id: str
    nodes: list[str]
    owners: list[Optional[str]]
    aliases: list[list[str]]


class LogRestated(_Decision):
    """The restatement begun at entry ``begun_seq`` is complete: entries ``from_seq`` to ``begun_seq`` are
    superseded (every reader of the log skips them) by the ``entries`` entries decided again between the two
    markers."""

    type: Literal["log_restated"]
    restate_id: str
    from_seq: int = Field(ge=0)
    begun_seq: int = Field(ge=0)
    entries: int = Field(ge=0, description="Entries decided again (the superseded ones and the late ones).")
    superseded: int = Field(ge=0, description="Entries superseded (from ``from_seq`` up to the begun marker).")
    late_events: int = Field(ge=0)
    decided_at: str


class LogRestateAbandoned(_Decision):
    """A restatement cut short (the writer stopped before ``log_restated``): every reader skips the entries from
    its begun marker to here; the writer starts it again."""

    type: Literal["log_restate_abandoned"]
    restate_id: str
    begun_seq: int = Field(ge=0)
    decided_at: str


Decision = Annotated[
    Union[
        InteractionRecorded,
        ProfileCreated,
        IdentifiersAttached,
        IdentifiersLinked,
        ProfilesMerged,
        IdentifierFlagged,
        LinkRefused,
        ProfileSplit,
        ProfileRenamed,
        ConnectionBanned,
        BanLifted,
        EventRejected,
        ProbableLink,
        PossibleMatch,
        ReviewDecided,
        EventsAttributed,
        PhoneRegionLearned,
        ModelEstimated,
        CustomerErased,
        LogRestateBegun,
        LogRestatePart,
        LogRestated,
        LogRestateAbandoned,
    ],
    Field(discriminator="type"),
]


class LogEntry(BaseModel):
    """One line of the decision log: everything decided for one raw record."""

    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=0, description="Position in the log, from 0, without gaps.")
    v: int = Field(1, ge=1, le=DECISION_SCHEMA_VERSION,
                   description="The decision schema version the entry was written in (1 when absent).")
    k: Optional[int] = Field(default=None, description=(
        "1: written sealed (identifiers and contents encrypted under keys per data subject; idres reads them "
        "back as the decisions described here)."))
    decisions: list[Decision]
    crc: Optional[str] = Field(default=None, pattern="^[0-9a-f]{8}$", description=(
        "CRC-32C, in hex, of the line's bytes before ``,\"crc\":`` (every entry from version 3 on): a reader "
        "refuses an entry whose bytes do not match it."))


class DecisionLogMessage(BaseModel):
    """One message on the decision-log topic of a Kafka deployment (``PREFIXdecisions``, one partition): a
    run of consecutive log entries, in log order, without their ``seq``: an entry's position in the log is
    the number of entries in the messages before it plus its index here. Messages carry no key."""

    model_config = ConfigDict(extra="forbid")
    v: int = Field(1, ge=1, le=DECISION_SCHEMA_VERSION,
                   description="The decision schema version its entries were written in (1 when absent).")
    k: Optional[int] = Field(default=None, description=(
        "1: written sealed (identifiers and contents encrypted under keys per data subject, the keys in the "
        "compacted topic PREFIXkeys; idres reads them back as the decisions described here)."))
    entries: list[list[Decision]] = Field(
        description="Log entries: each is the decisions taken for one raw record (or one review verdict).")


decision_adapter: TypeAdapter[Any] = TypeAdapter(Decision)
