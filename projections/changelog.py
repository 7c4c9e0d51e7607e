"""The identity changelog: who-is-who changes for downstream services, derived from the decision log.

Each log entry gives zero or more changes, in order. A change is a JSON object:

``{"v": 1, "seq": S, "n": I, "type": T, "profile_id": P, "at": TIME, ...}``

``seq`` is the log entry it comes from and ``n`` its place among that entry's changes: ``(seq, n)`` orders
every change and is unique, so a consumer that remembers the last one it applied skips repeats. ``at`` is
when the event happened (``occurred_at``) or when a person decided (``decided_at``). Types:

=======================  ==================================================================================
``profile_created``      ``identifiers``: a new profile holding them
``identifiers_added``    ``identifiers``: now the profile's too
``profiles_merged``      ``absorbed_ids``: those profiles are now ``profile_id`` (their identifiers with them;
                         the absorbed IDs stay valid as aliases of it); ``rule``
``identifier_shared``    ``identifier``: found used by several customers, it leaves its profile and
                         identifies nobody (``profile_id`` is null); ``reason``
``profile_split``        ``parts``: ``[{"profile_id", "identifiers"}]``, the profile's identifiers now, part
                         by part (the first part keeps ``profile_id``); ``reason``
``profile_renamed``      ``new_profile_id``: ``profile_id`` is now called that (the old ID stays an alias)
``unmerged``             ``identifiers`` left ``profile_id`` by a person's decision (the ``profile_split``
                         before it in the same entry says where they are now); ``ban_id``, ``by``, ``note``
``ban_lifted``           ``ban_id``, ``by``: a person lifted a connection ban (``profile_id`` is null)
``erased``               ``erasure_id``, ``by``: a person erased the customer ``profile_id``: forget every
                         identifier it holds and everything you keep about it (``profile_id`` null: an
                         identifier in no profile was erased; earlier changes naming it now read
                         ``type:erased~KEY``)
``restating``            late events (``resolver.restate``): the log is decided again from an earlier place;
                         ``identifiers``, ``owners``: each identifier belongs to the profile at the same place
                         in ``owners`` (null: to none), as before the changes the restatement supersedes (the
                         changes that follow re-tell them) or, before ``restate_abandoned``, as without it;
                         ``aliases``: ``[old, new]``, profile IDs no longer live and the profile each resolves
                         to now; ``restate_id``. Several may follow one another (each of bounded size)
``restated``             ``restate_id``: the restatement is complete
``restate_abandoned``    ``restate_id``: a restatement cut short; another follows
=======================  ==================================================================================

Applying the changes in order to an empty table ``identifier -> profile`` gives the snapshot's
``identifiers`` table (status ``linked``): ``changelog.apply`` is that consumer, and the tests hold it to it.
Identifiers of type ``record`` stand for an anonymous event's attribute record (its event ID).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from resolver.decisions import RECORD_TYPES

CHANGELOG_VERSION = 1
TYPES = ("profile_created", "identifiers_added", "profiles_merged", "identifier_shared", "profile_split",
         "profile_renamed", "unmerged", "ban_lifted", "erased", "restating", "restated", "restate_abandoned")


def _at(entry: list[dict[str, Any]]) -> Optional[str]:
    for d in reversed(entry):
        if d["type"] in RECORD_TYPES:
            return d.get("occurred_at") or d.get("decided_at")
    return None


def changes_of(seq: int, entry: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes log entry ``seq`` makes."""
    out: list[dict[str, Any]] = []
    at = None

    def add(kind: str, profile_id: Optional[str], **fields: Any) -> None:
        nonlocal at
        if at is None:
            at = _at(entry)
        out.append({"v": CHANGELOG_VERSION, "seq": seq, "n": len(out), "type": kind, "profile_id": profile_id,
                    "at": at, **fields})

    for d in entry:
        t = d["type"]
        if t == "profile_created":
            add("profile_created", d["profile_id"], identifiers=d["nodes"])
        elif t == "identifiers_attached":
            add("identifiers_added", d["profile_id"], identifiers=d["nodes"])
        elif t == "profiles_merged":
            add("profiles_merged", d["survivor_id"], absorbed_ids=d["absorbed_ids"], rule=d["rule"])
        elif t == "identifier_flagged":
            add("identifier_shared", None, identifier=d["node"], reason=d["reason"])
        elif t == "profile_split":
            add("profile_split", d["profile_id"], reason=d["reason"],
                parts=[{"profile_id": p["profile_id"], "identifiers": p["nodes"]} for p in d["parts"]])
        elif t == "profile_renamed":
            add("profile_renamed", d["profile_id"], new_profile_id=d["new_profile_id"])
        elif t == "connection_banned":
            add("unmerged", d["profile_id"], identifiers=d["nodes"], ban_id=d["ban_id"], by=d["by"],
                note=d.get("note"))
        elif t == "ban_lifted":
            add("ban_lifted", None, ban_id=d["ban_id"], by=d["by"])
        elif t == "customer_erased":
            for pid in d["profile_ids"] or [None]:
                add("erased", pid, erasure_id=d["erasure_id"], by=d["by"])
        elif t == "log_restate_part":
            add("restating", None, restate_id=d["restate_id"], identifiers=d["nodes"], owners=d["owners"],
                aliases=d["aliases"])
        elif t == "log_restated":
            add("restated", None, restate_id=d["restate_id"])
        elif t == "log_restate_abandoned":
            add("restate_abandoned", None, restate_id=d["restate_id"])
    return out


def key_of(change: dict[str, Any]) -> bytes:
    """The Kafka message key: the profile ID (the identifier for a change that names no profile)."""
    return (change.get("profile_id") or change.get("identifier") or change.get("ban_id") or change.get("erasure_id")
            or change.get("restate_id") or "").encode()


class Table:
    """A downstream copy of who is who, kept by applying changes in order: ``owner`` maps each identifier
    to its profile. Also the reference consumer for the changelog's documentation and tests."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        self.last: tuple[int, int] = (-1, -1)

    def apply(self, changes: Iterable[dict[str, Any]]) -> None:
        owner = self.owner
        for c in changes:
            if (c["seq"], c["n"]) <= self.last:
                continue  # (a repeat: already applied)
            self.last = (c["seq"], c["n"])
            t = c["type"]
            if t in ("profile_created", "identifiers_added"):
                for key in c["identifiers"]:
                    owner[key] = c["profile_id"]
            elif t == "profiles_merged":
                gone = set(c["absorbed_ids"])
                for key, pid in owner.items():
                    if pid in gone:
                        owner[key] = c["profile_id"]
            elif t == "identifier_shared":
                owner.pop(c["identifier"], None)
            elif t == "profile_split":
                for part in c["parts"]:
                    for key in part["identifiers"]:
                        owner[key] = part["profile_id"]
            elif t == "profile_renamed":
                for key, pid in owner.items():
                    if pid == c["profile_id"]:
                        owner[key] = c["new_profile_id"]
            elif t == "restating":
                for key, pid in zip(c["identifiers"], c["owners"]):
                    if pid is None:
                        owner.pop(key, None)
                    else:
                        owner[key] = pid
            elif t == "erased" and c["profile_id"] is not None:
                for key in [k for k, pid in owner.items() if pid == c["profile_id"]]:
                    del owner[key]
