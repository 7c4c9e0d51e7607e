"""Late events: the decisions after an event's place in the canonical order, decided again with it.

Events are decided in one canonical order, a function of the events alone (``order``): by ``occurred_at``,
then a checksum of the event ID, then the ID. An event that comes after later ones were decided (a file
of older history ingested after newer events, a stream's straggler) is decided at once on what is known,
and then the log is *restated* from its place: the decisions of every entry after it (up to the last
person's command, an explicit ordering kept where it was given) are decided again, in canonical order,
on the state as it stood before them. The resulting decisions are the ones the whole set of events in
canonical order gives, so the clusters and their IDs are those of any other order.

A restatement is written as entries of their own in the log, each of bounded size:

- ``log_restate_begun``: from which entry on the log is decided again;
- ``log_restate_part`` entries: for each identifier the superseded entries touched whose profile was then
  another, the profile it had before them (``nodes`` and ``owners``: a changelog consumer applies them to
  undo what the superseded entries told it);
- the entries decided again, in canonical order, as any entries;
- ``log_restate_part`` entries with ``aliases``: profile IDs that were live and are no longer, each
  resolvable to the profile that holds its identifiers now;
- ``log_restated``: the restatement is complete. The entries from ``from_seq`` up to the begun marker are
  superseded (readers skip them), and the entries after the marker take their place.

A restatement cut short (the process stopped before ``log_restated``) is closed by the next writer: parts
giving, for every identifier it named or that a profile it named held, the profile that holds it without it
(for a changelog consumer), then ``log_restate_abandoned`` (readers skip everything from its begun marker to
there); then it is done again.

This module holds what is pure: the canonical key of a logged entry, what entries touch, the owners of
identifiers, and the aliases a restatement leaves. The driver reads and writes the log
(``streams.restating``).
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable, Optional

from resolver import naming
from resolver.ids import short_hash
from resolver.state import ResolverState

# a person's commands: explicit orderings, never decided again by a restatement (it starts after them)
BARRIER_TYPES = frozenset(("review_decided", "connection_banned", "ban_lifted", "customer_erased"))
MARKER_TYPES = frozenset(("log_restate_begun", "log_restated", "log_restate_abandoned"))
PART = "log_restate_part"
RESTATE_TYPES = MARKER_TYPES | {PART}  # what a restatement writes besides the entries it decides again
PART_ITEMS = 1000  # identifiers or aliases per part: an entry of bounded size

Key = tuple[str, int, str]
BEFORE_ALL: Key = ("", -1, "")  # the key of a record with no time (a rejected record): before every event


def event_key(occurred_at: str, event_id: str) -> Key:
    """The canonical position of an event: its time (the engine's fixed-width UTC text, whose string order
    is time order), a checksum of its ID (ties broken by content, never by arrival), then the ID."""
    return (occurred_at, zlib.crc32(event_id.encode("utf-8", "replace")), event_id)


def key_of(record: dict[str, Any]) -> Key:
    """The canonical position of a logged entry's record (``decisions.record_of``)."""
    if record["type"] == "interaction_recorded":
        return event_key(record["occurred_at"], record["event_id"])
    return BEFORE_ALL


def parts(restate_id: str, nodes: list[str], owners: list[Optional[str]],
          aliases: Optional[list[list[str]]] = None) -> list[dict[str, Any]]:
    """``log_restate_part`` decisions saying ``nodes`` / ``owners`` and ``aliases``, ``PART_ITEMS`` at a time."""
    from resolver import decisions

    out = [decisions.log_restate_part(restate_id, nodes[i:i + PART_ITEMS], owners[i:i + PART_ITEMS], [])
           for i in range(0, len(nodes), PART_ITEMS)]
    aliases = aliases or []
    out += [decisions.log_restate_part(restate_id, [], [], aliases[i:i + PART_ITEMS])
            for i in range(0, len(aliases), PART_ITEMS)]
    return out


def restate_id(from_seq: int, begun_seq: int) -> str:
    return "r_" + short_hash(f"{from_seq}:{begun_seq}")


def touched(entries: Iterable[list[dict[str, Any]]]) -> tuple[set[str], set[str]]:
    """The node keys and the profile IDs that ``entries``' decisions name."""
    nodes: set[str] = set()
    profiles: set[str] = set()
    for entry in entries:
        for d in entry:
            for f in ("node", "other", "via"):
                v = d.get(f)
                if isinstance(v, str):
                    nodes.add(v)
            for f in ("nodes", "others"):
                v = d.get(f)
                if isinstance(v, list):
                    nodes.update(x for x in v if isinstance(x, str))
            for part in d.get("parts", ()):
                nodes.update(part["nodes"])
                profiles.add(part["profile_id"])
            for f in ("profile_id", "survivor_id", "new_profile_id"):
                v = d.get(f)
                if isinstance(v, str):
                    profiles.add(v)
            for v in d.get("absorbed_ids", ()):
                profiles.add(v)
            for pair in d.get("aliases", ()):
                profiles.update(pair)
    return nodes, profiles


def scope(st: ResolverState, nodes: set[str], profiles: set[str]) -> set[str]:
    """``nodes`` and every identifier of the live profiles ``profiles`` resolve to in ``st``."""
    out = set(nodes)
    keys = st.node_keys
    for pid in profiles:
        prof = st.profiles.get(st.resolve_alias(pid))
        if prof is not None:
            out.update(keys[n] for n in prof.nodes)
    return out


def owners(st: ResolverState, nodes: Iterable[str]) -> dict[str, Optional[str]]:
    """The profile holding each of ``nodes`` in ``st`` (None: unknown, or in no profile)."""
    index, holder = st.node_index, st.node_profile
    out: dict[str, Optional[str]] = {}
    for key in nodes:
        idx = index.get(key)
        out[key] = holder[idx] if idx is not None else None
    return out


def changed(before: dict[str, Optional[str]], after: dict[str, Optional[str]]) -> tuple[list[str], list[Optional[str]]]:
    """The nodes whose owner differs from ``before`` to ``after`` (over ``before``'s nodes), sorted, with
    their owners in ``after``: the ``nodes`` and ``owners`` of a marker."""
    keys = sorted(k for k, pid in before.items() if after.get(k) != pid)
    return keys, [after.get(k) for k in keys]


def first_nodes(st: ResolverState, profiles: Iterable[str]) -> dict[str, list[str]]:
    """The identifiers, sorted, of each of ``profiles`` live in ``st``: what ``aliases`` needs of the state
    before a restatement (so that it need not be kept)."""
    keys = st.node_keys
    out = {}
    for pid in profiles:
        prof = st.profiles.get(pid)
        if prof is not None:
            out[pid] = sorted(keys[n] for n in prof.nodes)
    return out


def anchors_of(st: ResolverState, profiles: Iterable[str]) -> dict[str, list[str]]:
    """The identifier each live profile of ``profiles`` in ``st`` is named by (``resolver.naming``: the one whose
    first use is the profile's earliest event), for those whose ID is that event's name (as a list of one)."""
    out = {}
    first_of = st.node_first.get
    keys = st.node_keys
    for pid in profiles:
        prof = st.profiles.get(pid)
        if prof is None or prof.first is None or naming.name_of(prof.first) != pid:
            continue
        for idx in prof.nodes:
            if first_of(idx) == prof.first:
                out[pid] = [keys[idx]]
                break
    return out


def named_by(rec: dict[str, Any], wanted: set[str], anchors: dict[str, list[str]]) -> None:
    """Notes in ``anchors``, for each ID of ``wanted`` the event ``rec`` (an ``interaction_recorded``) names (as
    ``Fold._interaction`` ranks an event's identifiers), the identifier it is named by and then the event's
    others, sorted; and takes the ID out of ``wanted``."""
    nodes = sorted(rec.get("nodes") or ())
    for key, name in zip(nodes, naming.names_of(rec["event_id"], len(nodes))):
        if name in wanted:
            anchors[name] = [key, *(k for k in nodes if k != key)]
            wanted.discard(name)


def aliases(before: dict[str, list[str]], new: ResolverState,
            anchors: Optional[dict[str, list[str]]] = None) -> list[list[str]]:
    """``[old ID, new ID]`` for each profile of ``before`` (``first_nodes`` of the state before a restatement)
    that is not live in ``new``: the profile of ``new`` holding the identifier the ID was named by, or else the
    first of the naming event's others that one holds (``anchors``), whether or not the ID is an alias in
    ``new`` already (a merge decided again may have left it with a profile that no longer holds them); else,
    unless it is an alias in ``new``, the one holding the first of its identifiers that one holds. So an ID
    resolves to the customer whose event named it, however many restatements came between (one for each
    command that brought late events, or a run cut short and done again)."""
    anchors = anchors or {}
    out = []
    for pid in sorted(before):
        if pid in new.profiles:
            continue
        home = first_holder(new, anchors.get(pid, ()))
        if home is not None:
            if new.resolve_alias(pid) != home:
                out.append([pid, home])
            continue
        if pid in new.aliases:
            continue
        home = first_holder(new, before[pid])
        if home is not None:
            out.append([pid, home])
    return out


def first_holder(st: ResolverState, keys: Iterable[str]) -> Optional[str]:
    """The profile holding the first of ``keys`` that a profile of ``st`` holds, or None."""
    index, holder = st.node_index, st.node_profile
    for key in keys:
        idx = index.get(key)
        if idx is not None and holder[idx] is not None:
            return holder[idx]
    return None
