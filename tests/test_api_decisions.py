"""Deciding over HTTP: a review's two records side by side, verdicts (one or in bulk) and unmerges made with a
write key and recorded in its owner's name, refused without one; a real `idres serve` on a data directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from streams.embedded import EmbeddedEngine
from streams.log import DecisionLog
from tests.test_api import start_server

READ_KEY = "read-key-0c4f1d"
ANA_KEY, BO_KEY = "ana-key-5e8a0b7c", "bo-key-91d2f3a4"
WRITERS = f"ana:{ANA_KEY},bo:{BO_KEY}"

JANE = {"first_name": "Jane", "last_name": "Zebedee", "postcode": "SW1A 1AA"}


def _event(eid: str, day: int, ids: dict, attrs: dict, channel: str = "web") -> dict:
    return {"event_id": eid, "occurred_at": f"2025-06-{day:02d}T00:00:00Z", "channel": channel, "event_type": "visit",
            "identifiers": ids, "attributes": attrs}


EVENTS = [
    _event("jane-web", 1, {"email": "jane.zebedee@example.co.uk"}, {**JANE, "date_of_birth": "1985-03-07",
                                                                    "address": "12 High Street"}),
    # like Jane by name and postcode: a possible match each, waiting for a person
    _event("caller-1", 2, {"phone": "+44 7700 900123"}, JANE, "call_center"),
    _event("caller-2", 3, {"phone": "+44 7700 900456"}, JANE, "call_center"),
    _event("caller-3", 4, {"phone": "+44 7700 900789"}, JANE, "call_center"),
    # Omar's email, phone and card, joined by two events
    _event("omar-web", 5, {"email": "omar.haddad@mailbox.org", "phone": "+44 7700 900999"}, {}),
    _event("omar-store", 6, {"email": "omar.haddad@mailbox.org", "loyalty_id": "L-77"}, {}, "store"),
]


@pytest.fixture
def served(tmp_path):
    events, data = tmp_path / "events.jsonl", tmp_path / "data"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(events)
        reviews = engine.views.review_queue()
    assert len(reviews) >= 3 and reviews[0]["event_id"] == "caller-1"
    srv = start_server(data, READ_KEY, {"IDRES_API_WRITE_KEYS": WRITERS})
    with httpx.Client(base_url=srv.base, timeout=30.0, headers={"X-API-Key": READ_KEY}) as client:
        yield client, data, reviews
    srv.stop()


def _eventually(check, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_review_shows_both_records_side_by_side(served):
    client, _, reviews = served
    detail = client.get(f"/v1/reviews/{reviews[0]['review_id']}").json()
    sides = {s["identifier"]: s for s in detail["sides"]}
    email, phone = sides["email:jane.zebedee@example.co.uk"], sides["phone:+447700900123"]
    assert phone["record"] == JANE and phone["event_id"] == "caller-1"
    assert email["record"]["date_of_birth"] == "1985-03-07" and email["record"]["address"] == "12 High Street"
    assert email["golden_record"]["last_name"] == "Zebedee" and email["status"] == "linked"
    assert client.get("/v1/reviews/r_nothing").status_code == 404


def test_deciding_needs_a_write_key_and_is_recorded_in_its_owners_name(served):
    client, data, reviews = served
    first = reviews[0]["review_id"]
    verdict = {"decision": "accept", "note": "same voice"}
    assert client.post(f"/v1/reviews/{first}", json=verdict).status_code == 401  # (the read key)
    assert client.post(f"/v1/reviews/{first}", json=verdict, headers={"X-API-Key": "wrong-key-123"}).status_code == 401
    # a body that gives its decision twice is refused: the framework would take the last, and which the person
    # meant cannot be told
    twice = client.post(f"/v1/reviews/{first}", content=b'{"decision": "accept", "decision": "reject"}',
                        headers={"X-API-Key": ANA_KEY, "Content-Type": "application/json"})
    assert twice.status_code == 422 and "'decision' more than once" in twice.json()["detail"], twice.text
    # a body sent without its type (curl -d sends a form) or cut short is refused saying what to fix
    formless = client.post(f"/v1/reviews/{first}", content=json.dumps(verdict).encode(),
                           headers={"X-API-Key": ANA_KEY, "Content-Type": "application/x-www-form-urlencoded"})
    assert formless.status_code == 422 and "Content-Type: application/json" in formless.json()["detail"], formless.text
    cut = client.post(f"/v1/reviews/{first}", content=b'{"decision": "acc',
                      headers={"X-API-Key": ANA_KEY, "Content-Type": "application/json"})
    assert cut.status_code == 422 and "the body is not valid JSON" in cut.json()["detail"], cut.text
    assert "Content-Type" not in cut.json()["detail"]
    typed = client.post(f"/v1/reviews/{first}", content=b'{"note": "no decision"}',  # (JSON by another name)
                        headers={"X-API-Key": ANA_KEY, "Content-Type": "application/merge-patch+json"})
    assert typed.status_code == 422 and "Content-Type" not in typed.json()["detail"], typed.text
    resp = client.post(f"/v1/reviews/{first}", json=verdict, headers={"X-API-Key": ANA_KEY})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "recorded" and body["by"] == "ana"
    assert body["decisions"][-1]["reviewer"] == "ana" and body["decisions"][-1]["outcome"] == "linked"
    again = client.post(f"/v1/reviews/{first}", json=verdict, headers={"X-API-Key": BO_KEY})
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    # the follower shows the verdict, and the log holds it in ana's name
    _eventually(lambda: client.get(f"/v1/reviews/{first}").json()["status"] == "linked", "the verdict shown")
    with EmbeddedEngine(data, writer=False) as engine:
        [row] = [r for r in engine.views.review_queue(include_decided=True) if r["review_id"] == first]
    assert (row["reviewer"], row["note"]) == ("ana", "same voice")


def test_bulk_verdicts_decide_the_pending_reviews_within_a_weight_range(served):
    client, _, reviews = served
    weight = min(r["weight"] for r in reviews)
    resp = client.post("/v1/reviews", json={"decision": "reject", "min_weight": weight, "note": "not her"},
                       headers={"X-API-Key": BO_KEY})
    assert resp.status_code == 200, resp.text
    verdicts = [d for d in resp.json()["decisions"] if d["type"] == "review_decided"]
    assert sorted(v["review_id"] for v in verdicts) == sorted(r["review_id"] for r in reviews)
    assert {(v["reviewer"], v["outcome"]) for v in verdicts} == {("bo", "rejected")}
    _eventually(lambda: client.get("/v1/reviews").json()["total"] == 0, "the queue emptied")
    bans = _eventually(lambda: client.get("/v1/bans").json()["bans"], "the bans shown")
    assert {b["kind"] for b in bans} == {"review"} and len(bans) == len(reviews)


def test_unmerge_and_lift_over_http(served):
    client, _, _ = served
    pid = client.get("/v1/lookup", params={"type": "email", "value": "omar.haddad@mailbox.org"}).json()["profile_id"]
    body = {"identifiers": [{"type": "phone", "value": "+44 7700 900999"}], "note": "his brother's"}
    assert client.post(f"/v1/profiles/{pid}/unmerge", json=body).status_code == 401
    bad = client.post(f"/v1/profiles/{pid}/unmerge", headers={"X-API-Key": ANA_KEY},
                      json={"identifiers": [{"type": "phone", "value": "+44 7700 900123"}]})
    assert bad.status_code == 422 and "is not an identifier of profile" in bad.json()["detail"]
    resp = client.post(f"/v1/profiles/{pid}/unmerge", json=body, headers={"X-API-Key": ANA_KEY})
    assert resp.status_code == 200, resp.text
    ban = next(d for d in resp.json()["decisions"] if d["type"] == "connection_banned")
    assert ban["by"] == "ana" and ban["nodes"] == ["phone:+447700900999"]
    moved = _eventually(lambda: client.get("/v1/lookup", params={"type": "phone", "value": "+447700900999"}).json()
                        .get("profile_id") not in (None, pid), "the phone in a profile of its own")
    assert moved
    lifted = client.post(f"/v1/bans/{ban['ban_id']}/lift", json={}, headers={"X-API-Key": BO_KEY})
    assert lifted.status_code == 200 and lifted.json()["decisions"][0]["by"] == "bo"
    assert client.post(f"/v1/bans/{ban['ban_id']}/lift", json={}, headers={"X-API-Key": BO_KEY}).status_code in (404, 422)


def test_a_decision_while_another_process_writes_is_refused_with_a_retry(served):
    client, data, reviews = served
    writer = DecisionLog(Path(data), writer=True)  # (what `idres ingest` holds while it runs)
    try:
        resp = client.post(f"/v1/reviews/{reviews[1]['review_id']}", json={"decision": "accept"},
                           headers={"X-API-Key": ANA_KEY})
    finally:
        writer.close()
    assert resp.status_code == 409 and "retry" in resp.json()["detail"]
    resp = client.post(f"/v1/reviews/{reviews[1]['review_id']}", json={"decision": "accept"},
                       headers={"X-API-Key": ANA_KEY})
    assert resp.status_code == 200


def test_without_write_keys_the_api_takes_no_decisions(tmp_path):
    events, data = tmp_path / "events.jsonl", tmp_path / "data"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(events)
        review = engine.views.review_queue()[0]["review_id"]
    srv = start_server(data)
    try:
        resp = httpx.post(f"{srv.base}/v1/reviews/{review}", json={"decision": "accept"}, timeout=10)
        assert resp.status_code == 403 and "IDRES_API_WRITE_KEYS" in resp.json()["detail"]
        # (a body that is not what a verdict is, or not JSON at all, is refused for the key first: that is what to fix)
        for body in ({"data": {"decision": "maybe"}}, {"content": b"decision=accept"}):
            resp = httpx.post(f"{srv.base}/v1/reviews/{review}", timeout=10, **body)
            assert resp.status_code == 403 and resp.json()["error"] == "read_only", resp.text
    finally:
        srv.stop()


def test_bulk_verdicts_that_match_nothing_answer_an_empty_result(served):
    client, _, _ = served
    resp = client.post("/v1/reviews", json={"decision": "accept", "min_weight": 1000}, headers={"X-API-Key": ANA_KEY})
    assert resp.status_code == 200 and resp.json()["status"] == "recorded" and resp.json()["decisions"] == []
    # bounds that cannot be meant are refused, not taken for an empty result
    for body in ('{"decision": "reject", "min_weight": NaN}', '{"decision": "reject", "min_weight": 1e999}',
                 '{"decision": "reject", "min_weight": 30, "max_weight": 1}'):
        resp = client.post("/v1/reviews", content=body, headers={"X-API-Key": ANA_KEY,
                                                                  "Content-Type": "application/json"})
        assert resp.status_code == 422, body


def test_on_kafka_a_broker_that_cannot_be_reached_is_a_503_not_a_crash():
    from streams.commands import CommandRefused, KafkaCommands
    from streams.kafka_io import KafkaSettings

    commands = KafkaCommands(KafkaSettings.load({}, bootstrap="127.0.0.1:1", timeout=2))
    with pytest.raises(CommandRefused) as refused:
        commands.run([{"command": "lift", "ban_id": "b_x", "by": "ana"}])
    assert refused.value.status == 503
