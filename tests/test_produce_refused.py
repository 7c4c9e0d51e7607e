"""Records the broker refuses while `idres produce` publishes are counted (per topic, with the first by line),
never dropped silently, and not kept: a long outage refuses every record of a pipe."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from kafka.errors import RequestTimedOutError

from streams import kafka_io


class _Future:
    def __init__(self, later: list, refuse: bool):
        self.later, self.refuse = later, refuse

    def add_errback(self, fn, *args):
        if self.refuse:  # (told later, by the sender thread, in any order)
            self.later.append(lambda: fn(*args, RequestTimedOutError("batch expired after delivery timeout")))
        return self


class _Producer:
    def __init__(self, refuse):
        self.refuse, self.later = refuse, []

    def send(self, topic, value, key=None, partition=None):
        if len(self.later) >= 50:  # (the sender thread tells of a batch as it expires)
            self.flush()
        return _Future(self.later, self.refuse(json.loads(value)["event_id"]))

    def partitions_for(self, topic):
        return {0, 1, 2}

    def flush(self, timeout=None):
        told, self.later = self.later, []
        for tell in reversed(told):  # (the last refused first)
            tell()

    def close(self, timeout=None):
        pass


class _Admin:
    def close(self):
        pass


def _lines(n: int):
    return (json.dumps({"event_id": f"e{i}", "occurred_at": "2024-01-01T00:00:00Z", "channel": "web",
                        "event_type": "visit", "identifiers": {"email": f"p{i % 500}@x.com"}}).encode() + b"\n"
            for i in range(n))


@pytest.fixture
def fake_broker(monkeypatch):
    made = {}

    def install(refuse):
        monkeypatch.setattr(kafka_io, "admin_client", lambda s: _Admin())
        monkeypatch.setattr(kafka_io, "producer", lambda s: made.setdefault("p", _Producer(refuse)))
        monkeypatch.setattr(kafka_io, "ensure_topics",
                            lambda admin, s, wanted: {n: {"partitions": 3, "created": False} for n in wanted})
        monkeypatch.setattr(kafka_io, "_learn_topics", lambda p, names: None)
        return kafka_io.KafkaSettings.load({})

    return install


def test_refused_records_are_counted_by_topic_with_the_first_by_line(fake_broker):
    settings = fake_broker(lambda eid: int(eid[1:]) % 3 == 1)  # e1, e4, e7, ... refused
    lines = list(_lines(300))
    report = kafka_io.produce_lines(iter(lines), settings, read_ahead=7)
    assert report.failed == 100
    assert report.first_failure.startswith("line 2 (to ") and "RequestTimedOutError" in report.first_failure
    taken = [line for k, line in enumerate(lines) if k % 3 != 1]
    assert report.messages == 200 and sum(t["messages"] for t in report.topics.values()) == 200
    assert report.bytes == sum(len(line) - 1 for line in taken)


def test_a_broker_refusing_every_record_is_counted_in_bounded_memory(fake_broker):
    settings = fake_broker(lambda eid: True)
    peaks = []
    for n in (10_000, 40_000):
        tracemalloc.start()
        try:
            report = kafka_io.produce_lines(_lines(n), settings, read_ahead=1)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert report.failed == n and report.messages == 0
        assert report.first_failure.startswith("line 1 ")
    # (nothing kept per refused record: four times the records, not four times the memory)
    assert peaks[1] < peaks[0] + 2 * 2 ** 20, peaks
