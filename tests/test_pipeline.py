"""The per-record pipeline (streams.pipeline): what becomes of one raw record, whichever driver runs it."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from projections.customer import CustomerViews
from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from schemas.channel import CONFLICTING_DUPLICATE
from streams.pipeline import ACCEPTED, BLANK, DUPLICATE, INTERNAL, REJECTED, VALID, RecordPipeline
from tests.cli_helpers import ROOT

SOURCE = {"name": "unit", "position": 7}


def record(event_id: str = "e1", **fields) -> bytes:
    body = {"event_id": event_id, "occurred_at": "2025-01-01T10:00:00Z", "channel": "web", "event_type": "visit",
            "identifiers": {"email": f"{event_id}@mailbox.org"}, "attributes": {"first_name": "Ana"}}
    body.update(fields)
    return json.dumps(body).encode()


def fresh() -> Resolver:
    return Resolver(ResolverConfig(), ResolverState())


class Untouchable:
    """A resolver that fails the test if the pipeline asks it anything."""

    def is_duplicate(self, event_id):
        raise AssertionError("the resolver was asked about a record that should not reach it")

    decide = is_duplicate


class Broken:
    """A resolver whose decision fails: a defect in the engine."""

    def __init__(self, seen=()):
        self.seen = set(seen)
        self.calls = 0

    def is_duplicate(self, event_id):
        return event_id in self.seen

    def conflicting(self, event):
        return None

    def mark(self):
        return 0

    def changed_since(self, mark):
        return True

    def decide(self, event, source=None):
        self.calls += 1
        raise KeyError("profile-42")


# ------------------------------------------------------------------------------------------ blank
@pytest.mark.parametrize("raw", [b"", b"   ", b"\t \r\n"])
def test_a_blank_line_is_blank_and_never_reaches_the_resolver(raw):
    outcome = RecordPipeline(Untouchable()).process(raw, SOURCE)
    assert outcome.kind == BLANK
    assert not outcome.kept and outcome.decisions == []


def test_where_a_message_is_a_record_an_empty_one_is_rejected_not_skipped():
    outcome = RecordPipeline(Untouchable(), skip_blank=False).process(b"  ", SOURCE)
    assert outcome.kind == REJECTED and outcome.kept
    assert outcome.reason == "not valid JSON"


# ------------------------------------------------------------------------------------------ rejected
def test_text_that_is_not_json_is_rejected_with_its_reason_and_where_the_syntax_breaks():
    outcome = RecordPipeline(Untouchable()).process(b'{"event_id": "x", ', SOURCE)
    assert outcome.kind == REJECTED and outcome.kept
    assert outcome.reason == "not valid JSON"
    assert outcome.detail.startswith("not valid JSON: ") and "line 1" in outcome.detail
    assert outcome.event_id is None and outcome.decisions == []


def test_an_invalid_event_is_rejected_with_the_event_id_it_carries():
    raw = json.dumps({"event_id": "no-date", "channel": "web", "event_type": "visit",
                      "identifiers": {"email": "a@mailbox.org"}}).encode()
    outcome = RecordPipeline(Untouchable()).process(raw, SOURCE)
    assert (outcome.kind, outcome.reason, outcome.event_id) == (REJECTED, "missing occurred_at", "no-date")
    assert "occurred_at" in outcome.detail


def test_an_event_with_nothing_to_match_on_is_rejected():
    outcome = RecordPipeline(Untouchable()).process(record("empty", identifiers={}, attributes={}), SOURCE)
    assert (outcome.kind, outcome.reason, outcome.event_id) == (REJECTED, "nothing to match on", "empty")


def test_a_record_over_the_size_limit_is_rejected_unparsed_even_if_its_event_is_known():
    raw = record("big", payload={"note": "x" * 300})
    resolver = Broken(seen={"big"})  # a duplicate too: the size check comes first
    outcome = RecordPipeline(resolver, max_bytes=200).process(raw, SOURCE)
    assert (outcome.kind, outcome.reason) == (REJECTED, "record too large")
    assert str(len(raw)) in outcome.detail and "200" in outcome.detail
    assert outcome.event_id is None and resolver.calls == 0


def test_the_default_size_limit_is_one_mebibyte():
    pad = {"note": ""}
    base = len(record("edge", payload=pad))
    at_limit = record("edge", payload={"note": "x" * ((1 << 20) - base)})
    assert len(at_limit) == 1 << 20
    pipeline = RecordPipeline(fresh())
    assert pipeline.process(at_limit, SOURCE).kind == ACCEPTED
    over = record("over", payload={"note": "x" * ((1 << 20) - base + 1)})
    assert pipeline.process(over, SOURCE).reason == "record too large"


# ------------------------------------------------------------------------------------------ accepted
def test_a_good_record_is_resolved_and_its_decisions_are_applied_and_returned():
    resolver = fresh()
    outcome = RecordPipeline(resolver).process(record("e1"), SOURCE)
    assert outcome.kind == ACCEPTED and not outcome.kept
    assert outcome.event_id == "e1" and outcome.event.event_id == "e1"
    rec = outcome.decisions[-1]  # the record itself is an entry's last decision
    assert (rec["type"], rec["event_id"], rec["source"]) == ("interaction_recorded", "e1", SOURCE)
    assert resolver.is_duplicate("e1")  # applied to the resolver's state


def test_records_that_share_an_identifier_are_resolved_to_one_customer():
    pipeline = RecordPipeline(fresh())
    views = CustomerViews()
    lines = [record("e1", identifiers={"email": "ana.lopez@mailbox.org"}),
             record("e2", channel="app", identifiers={"email": "ANA.Lopez@mailbox.org"}),
             record("e3", identifiers={"email": "carl.berg@mailbox.org"}, attributes={"first_name": "Carl"})]
    for seq, raw in enumerate(lines):
        outcome = pipeline.process(raw, SOURCE)
        assert outcome.kind == ACCEPTED
        views.apply_entry(seq, outcome.decisions)
    profile = dict(zip(views.ev_id, views.ev_profile))
    assert profile["e1"] == profile["e2"] != profile["e3"]


# ------------------------------------------------------------------------------------------ duplicate
def test_an_event_id_already_decided_is_a_duplicate_and_changes_nothing():
    resolver = fresh()
    pipeline = RecordPipeline(resolver)
    assert pipeline.process(record("e1"), SOURCE).kind == ACCEPTED
    before = pickle.dumps(resolver.state)
    # the same event re-sent (its time written in another offset is the same instant): not decided again
    body = json.loads(record("e1"))
    body["occurred_at"] = body["occurred_at"].replace("Z", "+00:00")
    for raw in (record("e1"), json.dumps(body).encode()):
        again = pipeline.process(raw, SOURCE)
        assert again.kind == DUPLICATE and not again.kept
        assert again.event_id == "e1" and again.decisions == []
    assert pickle.dumps(resolver.state) == before


@pytest.mark.parametrize("change", [
    {"identifiers": {"email": "someone.else@mailbox.org"}},
    {"payload": {"amount": 12.5}},
    {"event_type": "purchase"},
])
def test_another_event_under_a_used_id_is_rejected_with_its_reason_and_changes_nothing(change):
    resolver = fresh()
    pipeline = RecordPipeline(resolver)
    assert pipeline.process(record("e1"), SOURCE).kind == ACCEPTED
    before = pickle.dumps(resolver.state)
    other = pipeline.process(record("e1", **change), SOURCE)
    assert other.kind == REJECTED and other.kept
    assert other.reason == CONFLICTING_DUPLICATE and other.event_id == "e1"
    assert "'e1' was already used by an event that says something else" in other.detail
    assert pickle.dumps(resolver.state) == before


def test_a_duplicate_is_not_decided_again():
    resolver = Broken(seen={"e1"})
    outcome = RecordPipeline(resolver).process(record("e1"), SOURCE)
    assert outcome.kind == DUPLICATE and resolver.calls == 0


# ------------------------------------------------------------------------------------------ internal error
def test_a_resolver_that_fails_gives_an_internal_error_with_a_message_to_report():
    resolver = Broken()
    outcome = RecordPipeline(resolver).process(record("e9"), SOURCE)
    assert outcome.kind == INTERNAL and outcome.kept and resolver.calls == 1
    assert outcome.reason == "internal error"
    assert outcome.detail == "internal error while resolving (KeyError: 'profile-42'); please report it"
    assert outcome.event_id == "e9" and outcome.decisions == []
    assert isinstance(outcome.error, KeyError)


def test_an_internal_error_keeps_its_traceback_as_text_and_leaves_no_cycle():
    # (the outcome held the exception, its traceback the pipeline's frame, and that frame the outcome: a cycle that
    # held every frame of the call, and what their locals held, while the engine pauses the collector)
    import gc

    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        outcome = RecordPipeline(Broken()).process(record("e9"), SOURCE)
        assert outcome.kind == INTERNAL and isinstance(outcome.error, KeyError)
        assert outcome.trace.startswith("Traceback") and outcome.trace.endswith("KeyError: 'profile-42'\n")
        assert "in decide" in outcome.trace  # (the resolver's frame, where it raised)
        del outcome
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_after_an_internal_error_the_driver_gives_the_pipeline_a_rebuilt_resolver():
    pipeline = RecordPipeline(Broken())
    assert pipeline.process(record("e1"), SOURCE).kind == INTERNAL
    pipeline.resolver = fresh()  # what a driver does once it has rebuilt the state from its log
    assert pipeline.process(record("e1"), SOURCE).kind == ACCEPTED


def test_an_exception_that_is_not_an_error_is_not_swallowed():
    class Interrupted(Broken):
        def decide(self, event, source=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RecordPipeline(Interrupted()).process(record("e1"), SOURCE)


def test_checks_that_fail_on_a_record_give_an_internal_error_and_the_next_record_is_checked(monkeypatch):
    """A defect in the checks (here: the parser raising what it never should) keeps the record with a reason to
    report; it must not stop the run, nor, in the Kafka validate role, a worker that would fail on it again at each
    restart."""
    import streams.pipeline

    real = streams.pipeline.parse_event

    def parse(raw, max_bytes):
        if b'"e2"' in raw:
            raise IndexError("list index out of range")
        return real(raw, max_bytes)

    monkeypatch.setattr(streams.pipeline, "parse_event", parse)
    pipeline = RecordPipeline(fresh())
    bad = pipeline.process(record("e2"), SOURCE)
    assert bad.kind == INTERNAL and bad.kept and bad.reason == "internal error"
    assert bad.detail == ("internal error while checking the record (IndexError: list index out of range); please "
                          "report it")
    assert bad.trace.startswith("Traceback") and not bad.state_changed
    assert pipeline.process(record("e3"), SOURCE).kind == ACCEPTED


# ------------------------------------------------------------------------------------------ check only
def test_check_validates_without_a_resolver():
    pipeline = RecordPipeline(skip_blank=False)  # the Kafka validate role has no resolver state
    valid = pipeline.check(record("e1"))
    assert valid.kind == VALID and valid.event.event_id == "e1" and valid.decisions == []
    assert pipeline.check(b"[1, 2]").reason == "not a JSON object"
    with pytest.raises(RuntimeError, match="needs a resolver"):
        pipeline.process(record("e1"), SOURCE)


def test_the_pipeline_touches_no_transport():
    """Pure: importing it loads neither a driver, nor the log, nor a Kafka or stream library."""
    code = ("import sys, streams.pipeline; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kafka', 'aiokafka', 'faust') "
            "or m in ('streams.embedded', 'streams.stream_app', 'streams.log', 'streams.kafka_io', 'streams.inputs')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("applied", [False, True])
def test_a_defect_says_whether_it_changed_the_state(applied, monkeypatch):
    resolver = fresh()
    real = Resolver.decide

    def failing(self, event, source=None):
        if applied:
            real(self, event, source)  # the decisions applied, then a failure
        raise RuntimeError("defect")

    monkeypatch.setattr(Resolver, "decide", failing)
    outcome = RecordPipeline(resolver).process(record("e1"), SOURCE)
    assert outcome.kind == INTERNAL and outcome.state_changed is applied
    assert resolver.is_duplicate("e1") is applied


def test_the_command_line_and_the_log_start_without_the_engine_or_the_models():
    """`idres query`, `idres config` and every command's start import neither the resolver's engine nor the
    pydantic models (about 0.6 s of CPU each): the packages' façades import their names when first used."""
    code = ("import sys, streams.cli, streams.log, resolver.errors, schemas; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'faust', 'duckdb') "
            "or m in ('resolver.engine', 'schemas.channel', 'schemas.decisions'))); "
            "from resolver import Resolver; from schemas import ChannelEvent, DECISION_SCHEMA_VERSION; "
            "import resolver.engine, schemas.decisions; "
            "print(Resolver is resolver.engine.Resolver, DECISION_SCHEMA_VERSION == schemas.decisions.LogEntry"
            ".model_fields['v'].metadata[-1].le)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True True"]
    missing = subprocess.run([sys.executable, "-c", "import resolver; resolver.Nope"], cwd=ROOT, capture_output=True,
                             text=True)
    assert missing.returncode == 1 and "module 'resolver' has no attribute 'Nope'" in missing.stderr


@pytest.mark.parametrize("payload, why", [(b'{"amount": NaN}', "not a finite number"),
                                          (b'{"n": 123456789012345678901234567890}', "beyond 64 bits")])
def test_a_record_refused_for_a_number_in_its_payload_keeps_its_event_id(payload, why):
    # (its ID was read again with a reader that refuses such numbers too: the rejection named no event)
    raw = (b'{"event_id": "odd-number", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", '
           b'"event_type": "visit", "identifiers": {"email": "a.b@mailbox.org"}, "payload": ' + payload + b'}')
    outcome = RecordPipeline().check(raw)
    assert (outcome.kind, outcome.reason, outcome.event_id) == (REJECTED, "invalid payload", "odd-number")
    assert why in outcome.detail
