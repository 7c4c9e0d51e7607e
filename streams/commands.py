"""A person's commands from the API: review verdicts, unmerges, lifts of connection bans and erasures.

A command is a dict: ``{"command": "review", "review_id", "decision": "accept"|"reject"}``,
``{"command": "unmerge", "profile_id", "identifiers": [[type, value], ...]}`` or ``{"command": "lift",
"ban_id"}`` or ``{"command": "erase", "identifiers": [[type, value], ...]}``, each with ``by`` (who decides) and optionally ``note``. The embedded driver applies it to the
data directory as one log entry (taking the writer's lock for that moment); on Kafka it goes to the
resolve worker on the validated topic (the decision log's only writer), which decides it in order with the
events: the same message `idres review|unmerge --bootstrap` sends.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

from projections.customer import CustomerViews, ProjectionConfig
from resolver.config import ResolverConfig
from resolver.errors import CommandError, IdresError, NothingToErase, ReviewError
from resolver.ids import utc_iso
from resolver.normalize import Normalizer

KINDS = ("review", "unmerge", "lift", "erase")


class CommandRefused(Exception):
    """A command that cannot be applied: its HTTP status, an error code and one line saying why."""

    def __init__(self, status: int, code: str, detail: str, done: int = 0):
        super().__init__(detail)
        self.status, self.code, self.detail, self.done = status, code, detail, done


def decide(resolver: Any, command: dict[str, Any]) -> list[dict[str, Any]]:
    """The decisions of one command (with its ``decided_at``), already applied to ``resolver``'s state.
    Raises ``ReviewError`` or ``CommandError`` for one that does not apply (the state unchanged)."""
    kind, by, at, note = command.get("command"), command["by"], command["decided_at"], command.get("note")
    if kind == "review":
        return resolver.decide_review(command["review_id"], command["decision"] == "accept", by, at, note)
    if kind == "unmerge":
        return resolver.unmerge(command["profile_id"], [tuple(p) for p in command["identifiers"]], by, at, note)
    if kind == "lift":
        return resolver.lift_ban(command["ban_id"], by, at, note)
    if kind == "erase":
        return resolver.erase([tuple(p) for p in command["identifiers"]], command.get("events", []),
                              command.get("rejected", []), by, at, note, command.get("unusable", []))
    raise CommandError(f"unknown command {kind!r}: expected one of {', '.join(KINDS)}")


def command_of(record: dict[str, Any]) -> dict[str, Any]:
    """The command a person's decision in the log records (``review_decided``, ``connection_banned``,
    ``ban_lifted``): deciding it again gives that log entry."""
    t = record["type"]
    base = {"decided_at": record["decided_at"], "note": record.get("note")}
    if t == "review_decided":
        return {"command": "review", "review_id": record["review_id"], "decision": record["decision"],
                "by": record["reviewer"], **base}
    if t == "connection_banned":
        return {"command": "unmerge", "profile_id": record["profile_id"],
                "identifiers": [k.split(":", 1) for k in record["nodes"]], "by": record["by"], **base}
    if t == "ban_lifted":
        return {"command": "lift", "ban_id": record["ban_id"], "by": record["by"], **base}
    if t == "customer_erased":
        return {"command": "erase", "identifiers": [k.split(":", 1) for k in record["nodes"]],
                "events": record["events"], "rejected": record["rejected"],
                "unusable": [[u["type"], u["raw"]] for u in record.get("unusable", ()) if not u.get("erased")],
                "by": record["by"],
                "decided_at": record["decided_at"], "note": record.get("reason")}
    raise ValueError(f"{t} does not record a person's command")


def views_normalizer(views: CustomerViews, config: ResolverConfig) -> Normalizer:
    """Identifiers normalized as the events the views fold were (with the phone formats learned so far)."""
    normalizer = Normalizer(config)
    normalizer.learn_regions(tuple(views.learned_regions))
    return normalizer


def check(command: dict[str, Any], views: CustomerViews, config: ResolverConfig) -> None:
    """Refuses (``CommandRefused``) what the resolver would refuse, as ``views`` stand: an unknown or decided
    review, an unknown profile, an identifier not in it, a ban not in force."""
    kind = command.get("command")
    if kind == "review":
        review = views.reviews.get(command["review_id"])
        if review is None:
            raise CommandRefused(404, "unknown_review", f"no review {command['review_id']!r}")
        if review["status"] not in ("pending", "moot"):
            raise CommandRefused(409, "already_decided",
                                 f"review {command['review_id']} is already decided ({review['status']})")
    elif kind == "lift":
        if not any(b["ban_id"] == command["ban_id"] for b in views.bans_of()):
            raise CommandRefused(404, "unknown_ban", f"no connection ban {command['ban_id']!r} in force")
    elif kind == "unmerge":
        pid = views.resolve(command["profile_id"])
        if pid is None:
            raise CommandRefused(404, "unknown_profile", f"no profile {command['profile_id']}")
        normalizer = views_normalizer(views, config)
        keys = set()
        for id_type, raw in command["identifiers"]:
            key, why = normalizer.node_key(id_type, raw)
            if key is None:
                raise CommandRefused(422, "unusable_identifier", f"{id_type}={raw}: {why}")
            if views.lookup_node(key).get("profile_id") != pid:
                raise CommandRefused(422, "not_in_profile", f"{key} is not an identifier of profile {pid}")
            keys.add(key)
        if len(keys) >= len(views.profiles[pid].nodes):
            raise CommandRefused(422, "whole_profile", f"name some but not all of the identifiers of profile {pid}")
    elif kind == "erase":
        normalizer = views_normalizer(views, config)
        for id_type, raw in command["identifiers"]:
            key, why = normalizer.node_key(id_type, raw)
            if key is None:
                raise CommandRefused(422, "unusable_identifier", f"{id_type}={raw}: {why}")
            if key in views.node_index:
                break
        else:
            raise CommandRefused(404, "unknown_identifier", "no customer holds the identifier(s) named: nothing to "
                                                            "erase")
    else:
        raise CommandRefused(422, "unknown_command", f"unknown command {kind!r}: expected one of {', '.join(KINDS)}")


def scoped_erasure(command: dict[str, Any], views: CustomerViews, config: ResolverConfig,
                   dead_letters: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """An erase command with what the views hold of the customers it erases (``events``, ``rejected``): the
    resolve worker of a Kafka deployment has no views, so the command names them (``check`` passed it).
    ``dead_letters``: the deployment's (``streams.stream_app.dead_letters``), searched as the views' rejected
    records are; those naming the customer are named too, so that a snapshot leaves their text out."""
    from streams.embedded import anonymous_givers, erased_contents

    normalizer = views_normalizer(views, config)
    profiles: set[str] = set()
    nodes: set[str] = set()

    def take(keys: Iterable[Optional[str]]) -> None:
        for key in keys:
            idx = views.node_index.get(key) if key is not None else None
            if idx is None:
                continue
            pid = views.node_profile[idx]
            if pid is not None:
                profiles.add(pid)
                nodes.update(views.node_keys[n] for n in views.profiles[pid].nodes)
            else:
                nodes.add(key)

    take(normalizer.node_key(id_type, raw)[0] for id_type, raw in command["identifiers"])
    more = anonymous_givers(views, normalizer, sorted(nodes))
    take(more)
    events, rejected, unusable = erased_contents(views, normalizer, sorted(profiles), sorted(nodes), dead_letters)
    return {**command, "identifiers": [*command["identifiers"], *(k.split(":", 1) for k in more)],
            "events": events, "rejected": rejected, "unusable": unusable}


class EmbeddedCommands:
    """Applies commands to a data directory, each as one log entry."""

    accepted_status = 200

    def __init__(self, data_dir: str | Path, config: Optional[ResolverConfig] = None,
                 projection: Optional[ProjectionConfig] = None):
        self.data_dir = Path(data_dir)
        self.config = config or ResolverConfig()
        self.projection = projection

    def run(self, commands: list[dict[str, Any]]) -> dict[str, Any]:
        """Blocking (run it in a thread): applies the commands in order, each as one log entry, with the
        writer's lock held once for all; returns the decisions recorded and the log's length after them
        (``log_length``: what a reader must have folded to see them). Raises ``CommandRefused`` (its
        ``done``: how many commands were recorded before the one refused)."""
        from streams.embedded import EmbeddedEngine
        from streams.log import LogError

        at = utc_iso(datetime.now(timezone.utc))
        recorded: list[dict[str, Any]] = []
        done = 0
        try:
            with EmbeddedEngine(self.data_dir, self.config, self.projection, writer=True) as engine:
                for command in commands:
                    recorded.extend(engine.command({**command, "decided_at": at}))
                    done += 1
                length = len(engine.log)
        except LogError as exc:
            if "another idres process is writing" in str(exc):
                raise CommandRefused(409, "busy", f"{exc}; retry when it is done", done) from None
            raise CommandRefused(503, "source_gone", str(exc), done) from None
        except ReviewError as exc:
            raise CommandRefused(409, "review_refused", str(exc), done) from None
        except NothingToErase as exc:
            raise CommandRefused(404, "unknown_identifier", str(exc), done) from None
        except CommandError as exc:
            raise CommandRefused(422, "command_refused", str(exc), done) from None
        except IdresError as exc:
            raise CommandRefused(503, "error", str(exc), done) from None
        return {"status": "recorded", "decisions": recorded, "log_length": length}


class KafkaCommands:
    """Sends commands to the resolve worker of a Kafka deployment (checked first against the views)."""

    accepted_status = 202

    def __init__(self, settings: Any, config: Optional[ResolverConfig] = None):
        self.settings = settings
        self.config = config or ResolverConfig()
        self._producer: Any = None
        self._lock = threading.Lock()

    def run(self, commands: list[dict[str, Any]]) -> dict[str, Any]:
        """Blocking (run it in a thread): sends commands ``check`` has passed, in one message (the resolve
        worker decides them in order). Raises ``CommandRefused``."""
        import orjson

        from streams.kafka_io import producer
        from streams.stream_app import validated_topic

        at = utc_iso(datetime.now(timezone.utc))
        message = {"commands": [{**c, "decided_at": at} for c in commands]}
        try:
            with self._lock:
                if self._producer is None:
                    self._producer = producer(self.settings)
                self._producer.send(validated_topic(self.settings), key=b"command",
                                    value=orjson.dumps(message)).get(timeout=self.settings.timeout)
        except Exception as exc:
            raise CommandRefused(503, "broker_unavailable", f"could not send the command(s): {exc}") from None
        return {"status": "submitted", "detail": "the resolve worker records them in order with the events"}

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
