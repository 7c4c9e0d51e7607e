"""The customer view: a fold over the decision log.

Per profile: identifiers by type, golden record, channels, first/last seen, the cross-channel
timeline, purchases and lifetime value, open support cases. Also the lookup index (identifier ->
profile), the aliases of merged-away profile IDs, and the evidence ``explain`` shows.

An event belongs to the profile of its strongest identifier that still links; an event none of whose
identifiers links (only placeholders or shared devices, or only attributes) is a profile of its own.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import zlib
from array import array
from dataclasses import dataclass, field
from itertools import compress
from sys import intern
from typing import Any, Callable, Container, Iterable, Optional

import orjson

from projections.runs import Runs
from projections.texts import TextRows, json_text
from projections.times import iso, logged_micros
from resolver.evidence import shared as shared_evidence
from resolver.ids import ERASED, RECORD_TYPE, short_hash
from resolver.restate import BARRIER_TYPES, event_key
from resolver.sessions import SESSION_SECONDS
from resolver.state import pickled_as_fields

# the payload keys a profile's summary reads (``CustomerViews.account``), as orjson writes them: a payload whose
# text holds none of them has none of them
ACCOUNT_KEYS = ('"amount"', '"case_id"', '"csat"')
PACE_EVERY = 256  # events read between two calls of a long computation's ``pace``
MAX_SEEN_SCAN = 5_000  # a contact's profile events looked at for what it shows (the newest folded, past that)


_REVIEW_APART = ("node", "other", "review_id")  # (what a review keeps beside its decision's JSON, or as its key)


def review_match(review_id: str, review: dict[str, Any]) -> dict[str, Any]:
    """The ``possible_match`` decision a review of ``CustomerViews.reviews`` was made from."""
    return {**orjson.loads(review["match"]), "review_id": review_id, "node": review["node"], "other": review["other"]}


def _share_evidence(d: dict[str, Any]) -> None:
    """A link's evidence and model name as one object per distinct value, read back as made
    (``resolver.evidence``): the views keep every one."""
    if "fields" in d:
        d["fields"] = shared_evidence(d["fields"])
    if type(d.get("model")) is str:
        d["model"] = intern(d["model"])


# what of an order may be its recipient's rather than its buyer's (a present): names and where it goes
RECIPIENT_FIELDS = frozenset(("first_name", "last_name", "address", "postcode", "city"))


@dataclass(frozen=True)
class ProjectionConfig:
    """How the views summarize events.

    Golden record survivorship: per attribute, the most recent value from a trusted channel; when no
    trusted channel gave one, the most recent value from any channel. An order's name and address count as from
    an untrusted channel, unless it gives a date of birth (from the buyer's account): they may be its recipient's
    (a present), as ``ResolverConfig.hearsay`` takes them.
    """

    untrusted_channels: tuple[str, ...] = ("social", "chat")
    trusted_channels_by_attribute: dict[str, tuple[str, ...]] = field(default_factory=dict)
    purchase_types: tuple[str, ...] = ("purchase", "store_purchase", "order", "order_placed")
    refund_types: tuple[str, ...] = ("return", "refund")
    case_open_types: tuple[str, ...] = ("case_opened", "ticket_opened")
    case_close_types: tuple[str, ...] = ("case_resolved", "case_closed", "ticket_closed")
    # channels where a person serves the customer: at each contact on one, the views note what of the
    # customer's other channels the profile showed at that moment (``contact_seen``; the snapshot's
    # ``contact_recognition`` and the promise figures of ``projections.metrics``)
    assisted_channels: tuple[str, ...] = ("call_center", "chat", "store", "social")
    # the snapshot's metric views (``projections.metrics``): read when a snapshot is written, not by the fold
    report_currency: Optional[str] = None  # None: the currency of most purchases
    exchange_rates: dict[str, float] = field(default_factory=dict)  # currency -> report currency per unit
    contact_costs: dict[str, float] = field(default_factory=dict)  # channel -> cost of a contact (report currency)
    programme_cost: Optional[float] = None  # what the omnichannel programme cost over the snapshot's span
    churn_days: int = 90  # a customer inactive this many days (as of the snapshot) has churned
    at_risk_gap_ratio: float = 3.0  # ... is at risk when inactive this many times their own usual gap
    at_risk_probability: float = 0.3  # ... or when the purchase model's probability alive is below this
    stale_case_days: int = 7  # an open case older than this is on the proactive list
    # the resolver's (``ResolverConfig``: set there, copied here by ``streams.settings.load_settings``): the types of
    # event whose name and address may be a recipient's, but on these channels, where the customer is there
    delivery_event_types: tuple[str, ...] = ("purchase", "order", "order_placed")
    in_person_channels: tuple[str, ...] = ("store",)

    def trusted(self, attribute: str, channel: str, event_type: Optional[str] = None,
                attributes: Optional[dict[str, Any]] = None) -> bool:
        if attribute in RECIPIENT_FIELDS and event_type in self.delivery_event_types \
                and channel not in self.in_person_channels and not (attributes or {}).get("date_of_birth"):
            return False  # (a present's recipient's, maybe: as ``ResolverConfig.hearsay`` takes them)
        allowed = self.trusted_channels_by_attribute.get(attribute)
        if allowed is not None:
            return channel in allowed
        return channel not in self.untrusted_channels


@dataclass(slots=True)
class ProfileView:
    id: str
    created_at: Optional[str]
    nodes: set[int] = field(default_factory=set)
    events: list[int] = field(default_factory=list)


pickled_as_fields(ProfileView)  # (half a million at the checkpoint: ``resolver.state.pickled_as_fields``)


def event_profile_id(event_id: str) -> str:
    """The profile of an event whose identifiers link to nobody (same as the one it would found)."""
    return "p_" + short_hash("p:" + event_id)


def anonymous_profile_id(event_id: str) -> str:
    """The profile of such an event when the one it founded lives on as a customer's (its identifier was
    later found shared, and a split left the profile's ID to the customer's identifiers)."""
    return "p_" + short_hash("anonymous:" + event_id)


def canonical(at: int, event_id: str) -> tuple[int, int, str]:
    """An event's place in the order events are decided in (``resolver.restate.event_key``'s): its instant, then
    its ID's checksum, then the ID."""
    return at, zlib.crc32(event_id.encode("utf-8", "replace")), event_id


def erase_rejected(record: dict[str, Any]) -> None:
    """A rejected record (``event_rejected``) an erasure named, as kept after it: where it came from, when and
    why, without its text or the message about it."""
    record["raw"] = ""
    record.pop("detail", None)
    record["erased"] = True


class CustomerViews:
    """The read model. ``apply_entry`` folds one decision-log entry."""

    # large tables whose lists, dicts and tuples nothing else holds, nor two of their entries: a checkpoint writes
    # them apart, as equal copies (``streams.log.bulk_columns``). (Not ``fuzzy_links``: a link's record is held by
    # both its identifiers.) ``ev_id`` too: a million strings the pickler's memo would otherwise remember, its table
    # doubling past 2.8 million objects; a string another table holds too (an identifier's links, folded as events
    # were decided) comes back as an equal copy.
    CHECKPOINT_BULK = {"ev_id": "list", "ev_payload": "list", "ev_attrs": "list", "contact_seen": "dict",
                       "links": "dict", "ev_ignored": "list", "refusals": "dict", "profiles": "dict"}

    def __init__(self, config: Optional[ProjectionConfig] = None):
        self.config = config or ProjectionConfig()
        self.seq = 0
        # identifiers
        self.node_index: dict[str, int] = {}
        self.node_keys: list[str] = []
        self.node_profile: list[Optional[str]] = []
        self.shared: dict[int, dict[str, Any]] = {}
        self.links: dict[int, dict[int, str]] = {}
        # events, column by column
        self.ev_id: list[str] = []
        self.ev_at = array("q")  # its time, in microseconds since 1970 (``projections.times``)
        self.ev_channel: list[str] = []
        self.ev_type: list[str] = []
        self.ev_nodes = Runs()  # its identifiers (node indexes), all events' in two flat arrays
        # attributes and payloads are kept as compact JSON text; decoded when read
        self.ev_attrs: list[Optional[str]] = []
        self.ev_payload: list[Optional[str]] = []
        self.ev_profile: list[Optional[str]] = []  # (None: an erased customer's)
        self.ev_ignored: list[Optional[list[dict[str, str]]]] = []
        self.ev_refused: dict[int, frozenset[int]] = {}  # identifiers not linked on that event
        # events with only shared identifiers, attributed by session: event -> the customer's identifier
        self.ev_via: dict[int, int] = {}
        self.ev_attribution: dict[int, dict[str, Any]] = {}  # and the decision that said so
        self.ev_waiting: dict[str, int] = {}  # event ID -> position, of events in a profile of their own
        self._claims: dict[str, tuple[int, dict[str, Any]]] = {}  # within one entry: event ID -> attribution
        self.learned_regions: list[str] = []  # countries of national phone numbers (``resolver.formats``)
        self.models: list[dict[str, Any]] = []  # match models estimated from the data, without their parameters
        # profiles
        self.profiles: dict[str, ProfileView] = {}
        self.aliases: dict[str, str] = {}
        self.absorbed: dict[str, list[str]] = {}  # survivor -> IDs it absorbed directly
        self.merges = TextRows()  # profiles_merged decisions, in log order
        self.merged_profiles = 0  # profiles merged into another (the absorbed IDs of every merge)
        self.merges_by_survivor: dict[str, list[int]] = {}
        self.splits: list[dict[str, Any]] = []
        self.renames: list[dict[str, Any]] = []  # profile_renamed decisions: a cluster named by its earliest event
        self.rejected: list[dict[str, Any]] = []
        self.refusals: dict[int, list[dict[str, Any]]] = {}
        self.refused_on: dict[str, list[int]] = {}  # event ID -> the identifiers refused a link on it
        # probabilistic matching: links made on attribute evidence, and the review queue
        self.fuzzy_links: dict[int, dict[int, dict[str, Any]]] = {}
        # review ID -> status, seq, node, other, match (the decision's other fields as JSON: ``review_match``), verdict
        self.reviews: dict[str, dict[str, Any]] = {}
        # connection bans (``resolver.bans``): ban ID -> ban_id, kind (unmerge, review), sides, by,
        # decided_at, note, and lifted (the lift decision) once lifted
        self.bans: dict[str, dict[str, Any]] = {}
        self.node_bans: dict[int, set[str]] = {}
        self.erasures: list[dict[str, Any]] = []  # customer_erased decisions, without what they name
        self.restatements: list[dict[str, Any]] = []  # log_restated decisions (late events: ``resolver.restate``)
        # the log entry of each event: event i is entry i + _seq_off[k] for the last _seq_from[k] <= i
        self._seq_from: list[int] = []
        self._seq_off: list[int] = []
        self.barrier = -1  # the entry of the last person's command (a restatement starts after it)
        # contacts on an assisted channel: event -> the latest earlier event of each other channel its profile
        # held once the contact's entry was folded (what a person serving the customer could see)
        self.contact_seen: dict[int, tuple[int, ...]] = {}
        self._contacts: list[int] = []  # assisted contacts of the entry being folded
        self._dirty: set[str] = set()

    # ------------------------------------------------------------------------------------ folding
    def _node(self, key: str) -> int:
        idx = self.node_index.get(key)
        if idx is None:
            idx = len(self.node_keys)
            self.node_index[key] = idx
            self.node_keys.append(key)
            self.node_profile.append(None)
        return idx

    def _profile(self, pid: str, created_at: Optional[str] = None) -> ProfileView:
        prof = self.profiles.get(pid)
        if prof is None:
            prof = self.profiles[pid] = ProfileView(pid, created_at)
            # (an anonymous event's profile again, its customer's identifier since found shared)
            self.aliases.pop(pid, None)
        return prof

    def apply_entries(self, entries: Iterable[tuple[int, list[dict[str, Any]]]]) -> None:
        for seq, decisions in entries:
            self.apply_entry(seq, decisions)

    def apply_entry(self, seq: int, decisions: list[dict[str, Any]]) -> None:
        for d in decisions:
            t = d["type"]
            if t == "interaction_recorded":
                off = seq - len(self.ev_id)
                if not self._seq_off or self._seq_off[-1] != off:
                    self._seq_from.append(len(self.ev_id))
                    self._seq_off.append(off)
                self._interaction(d)
            elif t == "profile_created":
                prof = self._profile(d["profile_id"], d["created_at"])
                if prof.created_at is None:
                    prof.created_at = d["created_at"]
                for key in d["nodes"]:
                    self._attach(prof, self._node(key))
            elif t == "identifiers_attached":
                prof = self._profile(d["profile_id"])
                for key in d["nodes"]:
                    self._attach(prof, self._node(key))
            elif t == "identifiers_linked":
                idxs = [self._node(k) for k in d["nodes"]]
                event_id = self._event_id(d["event_id"])
                for a in idxs:
                    la = self.links.setdefault(a, {})
                    for b in idxs:
                        if b != a and b not in la:
                            la[b] = event_id
            elif t == "profiles_merged":
                self._merged(d)
            elif t == "identifier_flagged":
                idx = self._node(d["node"])
                self.shared[idx] = {"reason": d["reason"], "event_id": d["event_id"]}
                for edges in (self.links, self.fuzzy_links):
                    for m in edges.pop(idx, {}):
                        lm = edges.get(m)
                        if lm is not None:
                            lm.pop(idx, None)
                pid = self.node_profile[idx]
                if pid is not None:
                    self.profiles[pid].nodes.discard(idx)
                    self.node_profile[idx] = None
                    self._dirty.add(pid)
            elif t == "profile_split":
                self.splits.append(d)
                for part in d["parts"]:
                    prof = self._profile(part["profile_id"], part["created_at"])
                    prof.nodes = set()
                    for key in part["nodes"]:
                        self._attach(prof, self._node(key))
                self._dirty.add(d["profile_id"])
            elif t == "profile_renamed":
                self._renamed(d)
            elif t == "event_rejected":
                self.rejected.append(d)
            elif t == "events_attributed":
                via = self._node(d["node"])
                for event_id in d["events"]:
                    i = self.ev_waiting.pop(event_id, None)
                    if i is not None:
                        self.ev_via[i] = via
                        self.ev_attribution[i] = d
                        self._dirty.add(self.ev_profile[i])
                    else:  # an event of the profile an identifier found shared just left: re-derived below
                        self._claims[event_id] = (via, d)
            elif t == "link_refused":
                idx = self._node(d["node"])
                self.refusals.setdefault(idx, []).append(d)
                on = self.refused_on.setdefault(d["event_id"], [])
                if idx not in on:
                    on.append(idx)
            elif t == "probable_link":
                _share_evidence(d)
                a, b = self._node(d["node"]), self._node(d["other"])
                self.fuzzy_links.setdefault(a, {})[b] = d
                self.fuzzy_links.setdefault(b, {})[a] = d
                if d["rule"] == "model_rescored":  # the re-estimated model links a pair waiting for review
                    review = self.reviews.get(d["review_id"])
                    if review is not None:
                        review.update(status="linked", verdict={
                            "decision": "accept", "reviewer": f"model {d['model']}", "decided_at": None,
                            "note": f"weight {d['weight']:.2f} >= {d['link_threshold']:.2f} under the "
                                    f"re-estimated model"})
            elif t == "model_estimated":
                self.models.append({k: v for k, v in d.items() if k != "model"})
            elif t == "possible_match":
                self.reviews[d["review_id"]] = self._review(d, seq)
            elif t == "review_decided":
                review = self.reviews.get(d["review_id"])
                if review is not None:
                    review.update(status=d["outcome"], verdict=d)
                    if d["outcome"] == "rejected":
                        self._ban(d["review_id"], "review", [review["node"]], [review["other"]], d)
            elif t == "connection_banned":
                self._ban(d["ban_id"], "unmerge", d["nodes"], d["others"], d)
                ones, others = {self._node(k) for k in d["nodes"]}, {self._node(k) for k in d["others"]}
                for edges in (self.links, self.fuzzy_links):
                    for a in ones:
                        for b in [b for b in edges.get(a, ()) if b in others]:
                            edges[a].pop(b, None)
                            edges.get(b, {}).pop(a, None)
            elif t == "ban_lifted":
                ban = self.bans.get(d["ban_id"])
                if ban is not None:
                    ban["lifted"] = {k: d[k] for k in ("by", "decided_at", "note") if k in d}
            elif t == "phone_region_learned":
                self.learned_regions.append(d["region"])
            elif t == "customer_erased":
                self._erased(d, seq)
            elif t == "log_restated":
                self.restatements.append({**d, "seq": seq})
            elif t == "log_restate_part":
                for old, new in d["aliases"]:
                    if old not in self.profiles:  # (as the resolver's fold: one an alias already is pointed anew)
                        self.aliases[old] = new
            if t in BARRIER_TYPES:
                self.barrier = seq
        if self._dirty:
            self._reassign()
        self._claims.clear()
        if self._contacts:
            for i in self._contacts:
                self._recognise(i)
            self._contacts.clear()
        self.seq = seq + 1

    def _recognise(self, i: int) -> None:
        """Notes what contact ``i``'s profile shows of the customer's other channels: per other channel, the
        latest event before the contact, in the order events are decided (``canonical``: by time, then the event
        ID's checksum, then the ID; an event at the contact's instant decided after it was not there to show)."""
        pid = self.ev_profile[i]
        prof = self.profiles.get(pid) if pid is not None else None
        if prof is None:
            return
        ev_at, ev_channel, ev_id = self.ev_at, self.ev_channel, self.ev_id
        at, channel, eid = ev_at[i], ev_channel[i], ev_id[i]
        latest: dict[str, int] = {}
        events = prof.events
        for j in events if len(events) <= MAX_SEEN_SCAN else events[-MAX_SEEN_SCAN:]:
            c = ev_channel[j]
            if c == channel:
                continue
            a = ev_at[j]
            if a > at or (a == at and canonical(a, ev_id[j]) >= canonical(at, eid)):
                continue
            k = latest.get(c)
            if k is None or a > ev_at[k] or (a == ev_at[k] and canonical(a, ev_id[j]) > canonical(a, ev_id[k])):
                latest[c] = j
        self.contact_seen[i] = tuple(sorted(latest.values())) if latest else ()

    def entry_of_event(self, i: int) -> int:
        """The log entry of event ``i``."""
        k = bisect.bisect_right(self._seq_from, i) - 1
        return i + self._seq_off[k]

    def restate_from(self, key: tuple[str, int, str]) -> Optional[int]:
        """The first log entry a restatement for a late event of canonical key ``key`` (``resolver.restate``)
        decides again: the entry of the earliest event after it in canonical order, after the last person's
        command. None when there is none."""
        at, ids = self.ev_at, self.ev_id
        since = logged_micros(key[0]) if key[0] else -(1 << 63)  # (no time: before every event)
        first = None
        for i in range(len(at) - 1, -1, -1):
            if at[i] < since:
                continue
            seq = self.entry_of_event(i)
            if seq <= self.barrier:
                break
            if event_key(iso(at[i]), ids[i]) > key:
                first = seq
        return first

    def _erased(self, d: dict[str, Any], seq: int) -> None:
        """A customer erased: their identifiers, profiles and aliases go; their events stay counted, in no
        profile and without contents (``events`` are theirs, by ID)."""
        # (pending: read while its keys were still there, so not yet shredded)
        self.erasures.append({**{k: d[k] for k in ("erasure_id", "profile_ids", "by", "decided_at")}, "seq": seq,
                              "pending": not all(k.partition(":")[2].startswith(ERASED) for k in d["nodes"])})
        gone = set()
        for key in d["nodes"]:
            idx = self.node_index.pop(key, None)
            if idx is None:
                continue
            gone.add(idx)
            self.node_profile[idx] = None
            self.shared.pop(idx, None)
            self.refusals.pop(idx, None)
            for edges in (self.links, self.fuzzy_links):
                for m in edges.pop(idx, {}):
                    edges.get(m, {}).pop(idx, None)
            for ban in self.node_bans.pop(idx, ()):
                b = self.bans.get(ban)
                if b is not None:
                    b["sides"] = [[k for k in side if k not in d["nodes"]] for side in b["sides"]]
                    if not all(b["sides"]):  # (nothing left to keep apart: the ban ends, for the other side too)
                        del self.bans[ban]
                        for k in (k for side in b["sides"] for k in side):
                            held = self.node_bans.get(self.node_index.get(k, -1))
                            if held is not None:
                                held.discard(ban)
        erased = set(d["events"])
        where = {e: i for i, e in enumerate(self.ev_id) if e in erased} if erased else {}
        for pid in d["profile_ids"]:
            live = self.resolve(pid)
            prof = self.profiles.pop(live, None) if live is not None else None
            if prof is None:
                continue
            for idx in prof.nodes:
                self.node_profile[idx] = None
            for i in prof.events:
                where.setdefault(self.ev_id[i], i)
            for alias in [a for a in self.aliases if self.resolve(a) is None]:
                del self.aliases[alias]
            self.absorbed.pop(live, None)
        for event_id, i in where.items():
            pid = self.ev_profile[i]
            own = self.profiles.get(pid) if pid is not None else None
            if own is not None:
                own.events = [j for j in own.events if j != i]
                if not own.events and not own.nodes:
                    del self.profiles[pid]
            self.ev_profile[i] = None  # type: ignore[call-overload]
            self.ev_attrs[i] = self.ev_payload[i] = None
            self.ev_ignored[i] = None
            self.ev_waiting.pop(event_id, None)
            self.contact_seen.pop(i, None)
        for review_id in [r for r, v in self.reviews.items()
                          if self.node_index.get(v["node"]) is None or self.node_index.get(v["other"]) is None]:
            del self.reviews[review_id]
        shredded = set(d["rejected"])
        for r in self.rejected:
            if r["key"] in shredded:
                erase_rejected(r)

    def _review(self, d: dict[str, Any], seq: int) -> dict[str, Any]:
        """A possible match as the review queue keeps it (``review_match`` reads it back): its status, its place in
        the log, its two identifiers (the strings the views hold for them, where they do) and the rest of the
        decision as compact JSON text (``json_text``). (As dicts, 135,000 reviews of a large corpus were 1.5 million
        objects, the most of any table, which a checkpoint's pickler remembers one by one.)"""
        index, keys = self.node_index, self.node_keys
        node, other = d["node"], d["other"]
        a, b = index.get(node), index.get(other)
        rest = {k: v for k, v in d.items() if k not in _REVIEW_APART}
        return {"status": "pending", "seq": seq, "node": node if a is None else keys[a],
                "other": other if b is None else keys[b], "match": json_text(rest)}

    def _ban(self, ban: str, kind: str, one: list[str], two: list[str], d: dict[str, Any]) -> None:
        by = d.get("by") or d.get("reviewer")
        self.bans[ban] = {"ban_id": ban, "kind": kind, "sides": [sorted(one), sorted(two)], "by": by,
                          "decided_at": d["decided_at"], "note": d.get("note")}
        for key in (*one, *two):
            self.node_bans.setdefault(self._node(key), set()).add(ban)

    def bans_of(self, profile_id: Optional[str] = None, lifted: bool = False) -> list[dict[str, Any]]:
        """The connection bans (in force, or all with ``lifted``), of one profile's identifiers or of all,
        by when they were decided."""
        if profile_id is None:
            found = list(self.bans.values())
        else:
            pid = self.resolve(profile_id)
            ids = {b for n in (self.profiles[pid].nodes if pid is not None else ()) for b in self.node_bans.get(n, ())}
            found = [self.bans[b] for b in ids if b in self.bans]  # (a checkpoint of an older version kept ended ones)
        return sorted((b for b in found if lifted or "lifted" not in b), key=lambda b: (b["decided_at"], b["ban_id"]))

    def _attach(self, prof: ProfileView, idx: int) -> None:
        self.node_profile[idx] = prof.id
        prof.nodes.add(idx)

    def _merged(self, d: dict[str, Any]) -> None:
        profiles = self.profiles
        survivor = profiles[d["survivor_id"]]
        # (the IDs as the views hold them: read back from the log, each of a decision's strings is a copy of its own)
        self.merges_by_survivor.setdefault(survivor.id, []).append(len(self.merges))
        self.merges.append(d)
        self.merged_profiles += len(d["absorbed_ids"])
        self.absorbed.setdefault(survivor.id, []).extend(profiles[p].id if p in profiles else p
                                                         for p in d["absorbed_ids"])
        for pid in d["absorbed_ids"]:
            prof = profiles.pop(pid)
            for idx in prof.nodes:
                self.node_profile[idx] = survivor.id
            survivor.nodes |= prof.nodes
            for i in prof.events:
                self.ev_profile[i] = survivor.id
            survivor.events.extend(prof.events)
            self.aliases[pid] = survivor.id

    def _event_id(self, event_id: Any) -> Any:
        """The ID of the event folded last, where it is ``event_id``, as the views hold it (read back from the log,
        a decision's ID is a copy of its own), else ``event_id``."""
        ev_id = self.ev_id
        return ev_id[-1] if ev_id and ev_id[-1] == event_id else event_id

    def _renamed(self, d: dict[str, Any]) -> None:
        old, new = d["profile_id"], d["new_profile_id"]
        self.renames.append(d)
        prof = self.profiles.pop(old)
        held = self.profiles.pop(new, None)  # (an event's profile of its own under that name: now the cluster's)
        prof.id = new
        self.profiles[new] = prof
        if held is not None:
            prof.events.extend(held.events)
            self._dirty.add(new)
        for idx in prof.nodes:
            self.node_profile[idx] = new
        for i in prof.events:
            self.ev_profile[i] = new
        for table in (self.absorbed, self.merges_by_survivor):
            moved = table.pop(old, None)
            if moved:
                table.setdefault(new, []).extend(moved)
        self.absorbed.setdefault(new, []).append(old)  # (its lineage: the IDs it was known by)
        if old in self._dirty:
            self._dirty.discard(old)
            self._dirty.add(new)
        self.aliases.pop(new, None)
        self.aliases[old] = new

    def _assign(self, i: int) -> str:
        via = self.ev_via.get(i)  # attributed by session: to that customer, whatever its device's profile
        if via is not None and self.node_profile[via] is not None:
            return self.node_profile[via]
        refused = self.ev_refused.get(i, ())
        for idx in self.ev_nodes[i]:
            pid = self.node_profile[idx]
            if pid is not None and idx not in refused:
                return pid
        return self._own_profile_id(i)

    def _own_profile_id(self, i: int) -> str:
        """The profile of event ``i`` when no identifier of it links to anyone: the one it founded,
        unless that profile now holds other identifiers (a customer's, not this event's)."""
        pid = event_profile_id(self.ev_id[i])
        prof = self.profiles.get(pid)
        if prof is not None and prof.nodes:
            return anonymous_profile_id(self.ev_id[i])
        return pid

    def _is_own(self, i: int, pid: str) -> bool:
        """Whether ``pid`` is event ``i``'s profile of its own (no identifier of it links to anyone)."""
        prof = self.profiles.get(pid)
        if prof is not None and prof.nodes:
            return False  # a customer's (cheap: most events are)
        e = self.ev_id[i]
        return pid == event_profile_id(e) or pid == anonymous_profile_id(e)

    def _interaction(self, d: dict[str, Any]) -> None:
        i = len(self.ev_id)
        at = logged_micros(d["occurred_at"])  # (first: a time that cannot be read leaves no event half appended)
        self.ev_id.append(d["event_id"])
        self.ev_at.append(at)
        # (one string per channel and event type, however the entry was read: a copy per event would cost about
        # 100 MB per million events in views folded from the log read back)
        self.ev_channel.append(intern(d["channel"]))
        self.ev_type.append(intern(d["event_type"]))
        self.ev_nodes.append([self._node(k) for k in d["nodes"]])
        if d.get("refused"):
            self.ev_refused[i] = frozenset(self._node(k) for k in d["refused"])
        attributed = d.get("attributed")
        if attributed:
            self.ev_via[i] = self._node(attributed["node"])
            self.ev_attribution[i] = attributed
        attrs, payload = d.get("attributes"), d.get("payload")
        self.ev_attrs.append(json_text(attrs) if attrs else None)
        self.ev_payload.append(json_text(payload) if payload else None)
        self.ev_ignored.append(d.get("ignored"))
        if d["channel"] in self.config.assisted_channels:
            self._contacts.append(i)
        pid = self._assign(i)
        self.ev_profile.append(pid)
        self._profile(pid, d["occurred_at"]).events.append(i)
        if not attributed and self._is_own(i, pid):
            self.ev_waiting[d["event_id"]] = i  # an identified event may claim it (``events_attributed``)

    def _reassign(self) -> None:
        """Re-derive the events of profiles whose identifiers changed (after a flag or a split)."""
        moved: list[int] = []
        before: dict[int, str] = {}
        for pid in sorted(self._dirty):
            prof = self.profiles.get(pid)
            if prof is not None:
                moved.extend(prof.events)
                before.update((i, pid) for i in prof.events)
                prof.events = []
        went: dict[str, set[str]] = {}
        claims = self._claims
        for i in sorted(moved):
            claim = claims.get(self.ev_id[i]) if claims else None
            if claim is not None:
                self.ev_via[i], self.ev_attribution[i] = claim
            pid = self._assign(i)
            self.ev_profile[i] = pid
            prof = self.profiles.get(pid)
            if prof is None:  # (its time written out only for a profile made here)
                prof = self._profile(pid, iso(self.ev_at[i]))
            prof.events.append(i)
            went.setdefault(before[i], set()).add(pid)
            if i not in self.ev_attribution and self._is_own(i, pid):
                self.ev_waiting[self.ev_id[i]] = i  # on its own now: a later identified use may claim it
        for pid in self._dirty:
            prof = self.profiles.get(pid)
            if prof is not None and not prof.nodes and not prof.events:
                del self.profiles[pid]
                if len(went.get(pid, ())) == 1 and any(self._is_own(i, pid) for i in moved
                                                       if before[i] == pid):
                    # an anonymous event's profile whose event now belongs to a customer: its ID still
                    # leads there, as a merged-away ID does
                    self.aliases[pid] = next(iter(went[pid]))
        self._dirty.clear()

    # ------------------------------------------------------------------------------------ reading
    def payload(self, i: int) -> dict[str, Any]:
        raw = self.ev_payload[i]
        return orjson.loads(raw) if raw else {}

    def attributes(self, i: int) -> dict[str, str]:
        raw = self.ev_attrs[i]
        return orjson.loads(raw) if raw else {}

    def resolve(self, profile_id: str) -> Optional[str]:
        """The live profile ID for any ID this engine ever gave out (aliases followed), else None."""
        hops = 0
        while profile_id in self.aliases and hops < 1_000_000:
            profile_id = self.aliases[profile_id]
            hops += 1
        return profile_id if profile_id in self.profiles else None

    def lineage(self, profile_id: str) -> set[str]:
        """The profile and every ID merged into it, directly or through other merges."""
        out = {profile_id}
        stack = [profile_id]
        while stack:
            for a in self.absorbed.get(stack.pop(), ()):
                if a not in out:
                    out.add(a)
                    stack.append(a)
        return out

    def lookup_node(self, key: str) -> dict[str, Any]:
        """``{"status": "found", "profile_id": ...}``, ``"shared"`` (with reason) or ``"unknown"``."""
        idx = self.node_index.get(key)
        if idx is None:
            return {"status": "unknown"}
        if idx in self.shared:
            return {"status": "shared", **self.shared[idx]}
        pid = self.node_profile[idx]
        if pid is None:
            return {"status": "unknown"}
        return {"status": "found", "profile_id": pid}

    def identifiers_of(self, prof: ProfileView) -> dict[str, list[str]]:
        """The profile's identifiers by type (anonymous records, ``record:<event_id>``, are events of
        the timeline, not identifiers, and are left out)."""
        out: dict[str, list[str]] = {}
        for idx in sorted(prof.nodes):
            key = self.node_keys[idx]
            t, _, v = key.partition(":")
            if t != RECORD_TYPE:
                out.setdefault(t, []).append(v)
        return out

    def review_queue(self, include_decided: bool = False) -> list[dict[str, Any]]:
        """Possible matches waiting for a person, oldest first: both sides' current profiles, the weight
        and each field's contribution. A pending pair whose sides have since become one customer, one side found
        shared, or a ban keeps apart is reported with status ``moot``."""
        out = []
        for review_id, review in sorted(self.reviews.items(), key=lambda kv: (kv[1]["seq"], kv[0])):
            m = review_match(review_id, review)
            status = review["status"]
            a = self.lookup_node(m["node"])
            b = self.lookup_node(m["other"])
            pa, pb = a.get("profile_id"), b.get("profile_id")
            if status == "pending" and (pa is None or pb is None or pa == pb or self._banned_apart(pa, pb)):
                status = "moot"
            if status != "pending" and not include_decided:
                continue
            row = {"review_id": review_id, "status": status, "event_id": m["event_id"],
                   "occurred_at": m["occurred_at"], "identifier": m["node"], "other_identifier": m["other"],
                   "profile_id": pa, "other_profile_id": pb, "weight": m["weight"],
                   "link_threshold": m["link_threshold"], "review_threshold": m["review_threshold"],
                   "fields": m["fields"], "model": m["model"]}
            verdict = review.get("verdict")
            if verdict is not None:
                row.update(decision=verdict["decision"], reviewer=verdict["reviewer"],
                           decided_at=verdict["decided_at"], note=verdict.get("note"),
                           reason=verdict.get("reason"))
            out.append(row)
        return out

    def _banned_apart(self, pa: str, pb: str) -> bool:
        """Whether a connection ban in force keeps two profiles apart (one side's identifiers in each): a person
        said they are different customers, so no one is asked again."""
        if not self.bans:
            return False
        index, held_by = self.node_index, self.node_profile

        def holds(pid: str, side: list[str]) -> bool:
            return any(held_by[index[k]] == pid for k in side if k in index)

        return any((holds(pa, one) and holds(pb, two)) or (holds(pa, two) and holds(pb, one))
                   for one, two in (ban["sides"] for ban in self.bans_of(pa)))

    def review_detail(self, review_id: str) -> Optional[dict[str, Any]]:
        """A review with its two sides side by side: for each, the identifier, its profile now (or that it
        is shared), the attribute record the match weighed (the reviewed event's, and the latest one seen
        with the other identifier), and the profile's golden record and identifiers."""
        review = self.reviews.get(review_id)
        if review is None:
            return None
        row = next(r for r in self.review_queue(include_decided=True) if r["review_id"] == review_id)
        sides = []
        for key, pid, event_id in ((row["identifier"], row["profile_id"], row["event_id"]),
                                   (row["other_identifier"], row["other_profile_id"], None)):
            idx = self.node_index.get(key)
            side: dict[str, Any] = {"identifier": key, "profile_id": pid, "status": "shared" if idx in self.shared
                                    else "linked" if pid is not None else "unknown"}
            holders = [i for i in self.profiles[pid].events if idx in self.ev_nodes[i]] if pid is not None else []
            if event_id is not None:
                holders = [i for i in holders if self.ev_id[i] == event_id] or holders
            with_attrs = [i for i in holders if self.ev_attrs[i]]
            if with_attrs:
                i = max(with_attrs, key=lambda i: (self.ev_at[i], self.ev_id[i]))
                side.update(event_id=self.ev_id[i], channel=self.ev_channel[i], occurred_at=iso(self.ev_at[i]),
                            record=self.attributes(i))
            if pid is not None:
                prof = self.profiles[pid]
                side["golden_record"] = {k: v["value"] for k, v in self.golden_record(prof).items()}
                side["identifiers"] = sorted(self.node_keys[n] for n in prof.nodes)[:50]
                side["events"] = len(prof.events)
            sides.append(side)
        return {**row, "sides": sides}

    def golden_record(self, prof: ProfileView, only: Optional[frozenset[str]] = None) -> dict[str, dict[str, Any]]:
        """Per attribute: the surviving value, when and where it was given. ``only``: of these attributes."""
        best: dict[str, tuple[bool, int, str, str, str]] = {}
        cfg = self.config
        ev_attrs, loads = self.ev_attrs, orjson.loads
        for i in prof.events:
            raw = ev_attrs[i]
            if not raw:
                continue
            attrs = loads(raw)
            if not attrs:
                continue
            at, ch, eid, et = self.ev_at[i], self.ev_channel[i], self.ev_id[i], self.ev_type[i]
            for key, value in attrs.items():
                if only is not None and key not in only:
                    continue
                cand = (cfg.trusted(key, ch, et, attrs), at, eid, value, ch)
                cur = best.get(key)
                if cur is None or cand[:3] > cur[:3]:
                    best[key] = cand
        return {
            k: {"value": v[3], "observed_at": iso(v[1]), "channel": v[4], "event_id": v[2], "trusted": v[0]}
            for k, v in sorted(best.items())
        }

    def golden_values(self, fields: tuple[str, ...], profiles: Optional[Container[str]] = None,
                      pace: Optional[Callable[[], None]] = None) -> dict[str, dict[str, Any]]:
        """Profile ID -> {attribute: value} of ``fields`` as ``golden_record`` chooses them, for every profile
        (or those in ``profiles``) at once: read from the events that carry attributes (few do), each credited to
        the profile it belongs to (``ev_profile``), instead of from every event of every profile. ``pace``: called
        every ``PACE_EVERY`` events read."""
        trusted = self.config.trusted
        ev_attrs, ev_profile, ev_at, ev_channel, ev_id = self.ev_attrs, self.ev_profile, self.ev_at, self.ev_channel, self.ev_id
        ev_type = self.ev_type
        loads = orjson.loads
        # (orjson writes a key as it is: attributes whose text holds none of the fields' texts have none of them)
        texts = [f'"{f}"' for f in fields]
        best: dict[str, dict[str, tuple[bool, int, str, Any]]] = {}
        for n, i in enumerate(compress(range(len(ev_attrs)), ev_attrs)):  # (the events with attributes)
            if pace is not None and not n % PACE_EVERY:
                pace()
            raw = ev_attrs[i]
            if not any(t in raw for t in texts):
                continue
            pid = ev_profile[i]
            if pid is None or (profiles is not None and pid not in profiles):
                continue
            attrs = loads(raw)
            mine = best.setdefault(pid, {})
            for key in fields:
                if key in attrs:
                    cand = (trusted(key, ev_channel[i], ev_type[i], attrs), ev_at[i], ev_id[i], attrs[key])
                    cur = mine.get(key)
                    if cur is None or cand[:3] > cur[:3]:  # (as ``golden_record``: an event ID is unique)
                        mine[key] = cand
        out: dict[str, dict[str, Any]] = {}
        for n, (pid, mine) in enumerate(best.items()):
            if pace is not None and not n % PACE_EVERY:
                pace()
            out[pid] = {k: v[3] for k, v in mine.items()}
        return out

    def summary(self, prof: ProfileView) -> dict[str, Any]:
        """Numbers about a profile: activity, channels, lifetime value, support cases."""
        purchase_types = self.config.purchase_types
        ev_at, ev_channel, ev_type, ev_payload, ev_id = self.ev_at, self.ev_channel, self.ev_type, self.ev_payload, self.ev_id
        amount, case_id, csat = ACCOUNT_KEYS
        channels: dict[str, int] = {}
        purchases = 0
        first = last = None
        rich: list[int] = []
        events = prof.events
        order = sorted(events, key=lambda j: (ev_at[j], ev_id[j])) if len(events) > 1 else events
        for i in order:
            at, ch = ev_at[i], ev_channel[i]
            channels[ch] = channels.get(ch, 0) + 1
            if first is None:
                first = at
            last = at
            if ev_type[i] in purchase_types:
                purchases += 1
            raw = ev_payload[i]
            if raw and (amount in raw or case_id in raw or csat in raw):
                rich.append(i)
        ltv, cases, csat_average = self.account(rich)
        return {
            "first_seen": None if first is None else iso(first),
            "last_seen": None if last is None else iso(last),
            "event_count": len(events),
            "channels": dict(sorted(channels.items())),
            "purchase_count": purchases,
            "lifetime_value": ltv,
            "open_cases": [c for c in cases.values() if c["status"] == "open"],
            "closed_case_count": sum(1 for c in cases.values() if c["status"] == "closed"),
            "csat_average": csat_average,
        }

    def account(self, rich: Iterable[int]) -> tuple[float, dict[str, dict[str, Any]], Optional[float]]:
        """A profile's lifetime value (rounded to the cent), support cases (by case ID) and average satisfaction
        score (None: no score), from its events whose payloads may hold an amount, a case or a score (``ACCOUNT_KEYS``), in time order."""
        cfg = self.config
        purchase_types, refund_types = cfg.purchase_types, cfg.refund_types
        close_types, open_types = cfg.case_close_types, cfg.case_open_types
        ev_at, ev_channel, ev_type, ev_payload = self.ev_at, self.ev_channel, self.ev_type, self.ev_payload
        loads = orjson.loads
        ltv = 0.0
        cases: dict[str, dict[str, Any]] = {}
        csat: list[int] = []
        for i in rich:
            at, ch, et = ev_at[i], ev_channel[i], ev_type[i]
            payload = loads(ev_payload[i])
            if et in purchase_types:
                ltv += _number(payload.get("amount")) or 0.0
            elif et in refund_types:
                ltv -= abs(_number(payload.get("amount")) or 0.0)
            case_id = payload.get("case_id")
            if case_id is not None:
                when = iso(at)
                case = cases.setdefault(str(case_id), {"case_id": str(case_id), "status": "open",
                                                       "opened_at": when, "channel": ch})
                if et in close_types:
                    case["status"] = "closed"
                    case["closed_at"] = when
                elif et in open_types and case.get("closed_at") != when:
                    # (reopened by an opening after the closing; one at the same instant is not after it, whatever
                    # the two events' IDs, which order them)
                    case["status"] = "open"
                case["last_event_at"] = when
                case["last_channel"] = ch
            score = csat_score(payload.get("csat"))
            if score is not None:
                csat.append(score)
        # (not -0.0: refunds that undo purchases to the cent)
        return round(ltv, 2) or 0.0, cases, round(sum(csat) / len(csat), 2) if csat else None

    def timeline(self, prof: ProfileView, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """The profile's events across channels, newest first."""
        order = sorted(prof.events, key=lambda j: (self.ev_at[j], self.ev_id[j]), reverse=True)
        out = []
        for i in order[offset:offset + limit]:
            item: dict[str, Any] = {
                "event_id": self.ev_id[i], "occurred_at": iso(self.ev_at[i]),
                "channel": self.ev_channel[i], "event_type": self.ev_type[i],
            }
            if self.ev_payload[i]:
                item["payload"] = self.payload(i)
            out.append(item)
        return out

    def customer(self, profile_id: str, timeline_limit: int = 20) -> Optional[dict[str, Any]]:
        pid = self.resolve(profile_id)
        if pid is None:
            return None
        prof = self.profiles[pid]
        view: dict[str, Any] = {"profile_id": pid}
        if pid != profile_id:
            view["requested_id"] = profile_id
        view["created_at"] = prof.created_at
        view["identifiers"] = self.identifiers_of(prof)
        view["golden_record"] = {k: v["value"] for k, v in self.golden_record(prof).items()}
        view.update(self.summary(prof))
        # (an ID merged here that is a profile again, an anonymous event's once the identifier that joined it was
        # found shared, leads to itself now: not listed)
        view["merged_ids"] = sorted(a for a in self.lineage(pid) - {pid} if self.resolve(a) == pid)
        view["timeline"] = self.timeline(prof, limit=timeline_limit)
        return view

    def explain(self, profile_id: str) -> Optional[dict[str, Any]]:
        """Why these identifiers and events are one customer: the evidence, edge by edge."""
        pid = self.resolve(profile_id)
        if pid is None:
            return None
        prof = self.profiles[pid]
        where = {self.ev_id[i]: i for i in prof.events}
        links = []
        for a in sorted(prof.nodes):
            for b, event_id in sorted(self.links.get(a, {}).items()):
                if b > a and b in prof.nodes:
                    link = {"a": self.node_keys[a], "b": self.node_keys[b], "event_id": event_id,
                            "rule": "seen_together"}
                    i = where.get(event_id)
                    if i is not None:
                        link.update(channel=self.ev_channel[i], event_type=self.ev_type[i],
                                    occurred_at=iso(self.ev_at[i]))
                    links.append(link)
            for b, d in sorted(self.fuzzy_links.get(a, {}).items()):
                if b > a and b in prof.nodes:
                    link = {"a": self.node_keys[a], "b": self.node_keys[b], "event_id": d["event_id"],
                            "rule": d["rule"]}
                    for k in ("weight", "link_threshold", "fields", "model", "review_id"):
                        if d.get(k) is not None:
                            link[k] = d[k]
                    i = where.get(d["event_id"])
                    if i is not None:
                        link.update(channel=self.ev_channel[i], event_type=self.ev_type[i],
                                    occurred_at=iso(self.ev_at[i]))
                    links.append(link)
        lineage = self.lineage(pid)
        merges = [
            {k: m[k] for k in ("survivor_id", "absorbed_ids", "event_id", "occurred_at", "via", "rule", "evidence")
             if k in m}
            for m in sorted((self.merges[i] for p in lineage for i in self.merges_by_survivor.get(p, ())),
                            key=lambda m: (m["occurred_at"], m["event_id"]))
        ]
        splits = [
            {"profile_id": s["profile_id"], "event_id": s["event_id"], "reason": s["reason"],
             "parts": [p["profile_id"] for p in s["parts"]]}
            for s in self.splits if any(p["profile_id"] in lineage for p in s["parts"])
        ]
        ignored = []
        for i in prof.events:
            for idx in self.ev_nodes[i]:
                if idx in self.shared:
                    ignored.append({"identifier": self.node_keys[idx], "event_id": self.ev_id[i],
                                    "why": "shared: " + self.shared[idx]["reason"]})
            for ign in self.ev_ignored[i] or ():
                if ign.get("erased"):
                    continue  # (an erasure made it unreadable)
                ignored.append({"identifier": f"{ign['type']}:{ign['raw']}", "event_id": self.ev_id[i],
                                "why": ign["reason"]})
        refused = [(idx, r) for idx in sorted(prof.nodes) for r in self.refusals.get(idx, ())]
        # (and those refused on this profile's events to identifiers another profile holds)
        refused += [(idx, r) for i in sorted(prof.events) for idx in self.refused_on.get(self.ev_id[i], ())
                    if idx not in prof.nodes for r in self.refusals.get(idx, ()) if r["event_id"] == self.ev_id[i]]
        for idx, r in refused:
            ignored.append({"identifier": self.node_keys[idx], "event_id": r["event_id"],
                            "why": f"not linked to {', '.join(r['others'])} on this event: {r['reason']}"})
        identifiers = [self.node_keys[n] for n in sorted(prof.nodes)]
        attributed = []
        for i in sorted(prof.events):
            a = self.ev_attribution.get(i)
            if a is not None:
                attributed.append({"event_id": self.ev_id[i], "via": a["via"], "node": a["node"], "rule": a["rule"],
                                   **({"claimed_by": a["event_id"]} if a.get("type") == "events_attributed" else {})})
        summary = _explain_text(pid, identifiers, links, merges, len(prof.events))
        session = f"{SESSION_SECONDS // 60} minutes"
        summary += [f"Event {a['event_id']} carried only {a['via']}, which several customers use; it is this "
                    f"customer's: " + (f"it names this customer, the only one of its users ({a['node']}) it names."
                                       if a["rule"] == "same_name" else
                                       f"event {a['claimed_by']} signed in with {a['node']} on it within {session} "
                                       f"after." if "claimed_by" in a else
                                       f"{a['node']} was signed in on it within {session} before.")
                    for a in attributed[:50]]
        summary += [f"Split {'by ban' if s['reason'].startswith('unmerged by ') else 'at event'} {s['event_id']} "
                    f"({s['reason']}) into {', '.join(s['parts'])}." for s in splits[:50]]
        bans = self.bans_of(pid, lifted=True)  # (a lifted one too: what let its sides be one customer again)
        summary += [(f"Kept apart ({b['kind']}, {b['ban_id']}, by {b['by']} at {b['decided_at']}"
                     + (f": {b['note']}" if b.get("note") else "") + f"): {', '.join(b['sides'][0])} from "
                     f"{', '.join(b['sides'][1])}"
                     + (f" until lifted by {b['lifted']['by']} at {b['lifted']['decided_at']}"
                        + (f" ({b['lifted']['note']})" if b["lifted"].get("note") else "") + "."
                        if "lifted" in b else f"; `idres unmerge --lift {b['ban_id']} --by NAME` ends it."))
                    for b in bans[:50]]
        return {
            "profile_id": pid,
            "identifiers": identifiers,
            "events": len(prof.events),
            "links": links,
            "merges": merges,
            "splits": splits,
            "not_linked": ignored[:200],
            "attributed": attributed[:200],
            "bans": bans,
            "summary": summary,
        }

    def digest(self) -> str:
        """A hash of what the views say (event -> profile, identifier -> profile, aliases)."""
        h = hashlib.sha256()
        for i in range(len(self.ev_id)):
            h.update(f"{self.ev_id[i]}={self.ev_profile[i]}\n".encode())
        for idx, key in enumerate(self.node_keys):
            status = "shared" if idx in self.shared else (self.node_profile[idx] or "-")
            h.update(f"{key}={status}\n".encode())
        for a in sorted(self.aliases):
            h.update(f"{a}>{self.aliases[a]}\n".encode())
        return h.hexdigest()

    def stats(self) -> dict[str, int]:
        return {
            "events": len(self.ev_id),
            "profiles": len(self.profiles),
            "identifiers": len(self.node_keys) - len(self.shared),
            "shared_identifiers": len(self.shared),
            # profiles merged into another: a merge decision that joins three profiles counts two, as the
            # snapshot's merges table has a row per absorbed profile
            "merges": self.merged_profiles,
            "splits": len(self.splits),
            "rejected": len(self.rejected),
        }


def csat_score(value: Any) -> Optional[int]:
    """A payload's ``csat`` as a score: a whole number from 1 to 5, given as a number or as text (``5``, ``"5"``,
    ``4.0``); anything else (0, 9, 4.9, ``"good"``) is no score, in every figure alike."""
    number = _number(value)
    if number is None or number != int(number) or not 1 <= number <= 5:
        return None
    return int(number)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None  # (a log written before amounts were bounded)
    return None


def _field_text(field: str, v: dict[str, Any]) -> str:
    text = f"{field} {v['level']} {v['weight']:+.2f}"
    adjustment = v.get("frequency_adjustment")
    if adjustment:
        text += f" ({'rare' if adjustment > 0 else 'common'} value {adjustment:+.2f})"
    return text


def _explain_text(pid: str, identifiers: list[str], links: list[dict[str, Any]],
                  merges: list[dict[str, Any]], events: int) -> list[str]:
    lines = [f"Profile {pid}: {events} event(s), {len(identifiers)} identifier(s)."]
    for link in links:
        where = f" on {link['channel']} ({link['event_type']}, {link['occurred_at']})" if "channel" in link else ""
        if link["rule"] in ("probable_match", "model_rescored"):
            fields = ", ".join(_field_text(f, v) for f, v in link["fields"].items())
            how = ("on attribute evidence by event" if link["rule"] == "probable_match" else
                   "when the match model was re-estimated, before event")
            lines.append(f"{link['a']} and {link['b']} were linked {how} "
                         f"{link['event_id']}{where}: match weight {link['weight']:.2f} >= "
                         f"{link['link_threshold']:.2f} under model {link.get('model')} ({fields}).")
        elif link["rule"] == "review_accepted":
            lines.append(f"{link['a']} and {link['b']} were linked by a reviewer (review {link.get('review_id')}).")
        else:
            lines.append(f"{link['a']} and {link['b']} were given together on event {link['event_id']}{where}.")
    for m in merges:
        how = {"probable_match": "on attribute evidence, matching", "review_accepted": "by a reviewer's verdict, through",
               "model_rescored": "on attribute evidence re-scored under a re-estimated model, matching"}
        why = ""
        if m["rule"] == "weak_identifier_and_person" and m.get("evidence"):
            why = (f" ({', '.join(m['evidence']['weak'])} alone would not have: both sides name "
                   f"{', '.join(m['evidence']['person'])})")
        lines.append(
            f"Event {m['event_id']} ({m['occurred_at']}) tied {', '.join(m['absorbed_ids'])} to {m['survivor_id']} "
            f"{how.get(m['rule'], 'through')} {', '.join(m['via'])}{why}; {m['survivor_id']} is older and kept its ID."
        )
    if not identifiers:
        lines.append("No identifier links this profile to any other event: its identifiers were "
                     "placeholders or shared by several customers, or it had only attributes.")
    return lines
