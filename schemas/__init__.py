"""Pydantic models of the raw channel events (the input contract) and of the engine's decisions."""

from schemas.lazy import lazy_names

__all__ = [
    "ChannelEvent",
    "DECISION_SCHEMA_VERSION",
    "DecisionLogMessage",
    "KNOWN_CHANNELS",
    "LogEntry",
    "RejectedInput",
    "SCHEMA_VERSION",
    "decision_adapter",
    "parse_event",
    "export_json_schemas",
]

# the models are built when first asked for (PEP 562): building them is most of this package's import, and a
# command that only reads the log or a snapshot does not validate anything
_LAZY = {name: "schemas.channel" for name in ("KNOWN_CHANNELS", "SCHEMA_VERSION", "ChannelEvent", "RejectedInput",
                                              "parse_event")}
_LAZY.update({name: "schemas.decisions" for name in ("DECISION_SCHEMA_VERSION", "DecisionLogMessage", "LogEntry",
                                                     "decision_adapter")})

__getattr__ = lazy_names("schemas", _LAZY, globals())


def export_json_schemas() -> dict[str, dict]:
    """The JSON Schemas of the input contract, of a decision-log entry (a line of an embedded data
    directory's log) and of a decision-log message (on a Kafka deployment's decisions topic), by file name."""
    from schemas.channel import SCHEMA_VERSION, ChannelEvent
    from schemas.decisions import DECISION_SCHEMA_VERSION, DecisionLogMessage, LogEntry

    return {
        f"channel_event.v{SCHEMA_VERSION}.schema.json": ChannelEvent.model_json_schema(mode="validation"),
        f"decision_log_entry.v{DECISION_SCHEMA_VERSION}.schema.json": LogEntry.model_json_schema(),
        f"decision_log_message.v{DECISION_SCHEMA_VERSION}.schema.json": DecisionLogMessage.model_json_schema(),
    }
