"""The keys topic (``streams.kafka_keys``): keys made together travel as runs, one message per run; shredding
sends a run again without its shredded keys; topics written a key per message are read and shredded as
before. The topic is held in memory (``tests.keys_topic``): what is tested is what the messages say."""

from __future__ import annotations

import base64
import json
import os
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import kafka_keys
from streams.kafka_keys import KEYS_PER_MESSAGE, KafkaKeys
from tests.keys_topic import KeysTopic


def _made(keys: KafkaKeys, subjects: list[tuple[str, bool]]) -> dict[str, tuple[str, bytes]]:
    """Keys made for these (subject, is a content) and sent; subject -> (key ID, key)."""
    made = {s: keys.key_of(s, new=content) for s, content in subjects}
    keys.flush()
    return made


def test_keys_made_together_are_one_message_per_run_and_read_back_by_any_store():
    topic = KeysTopic()
    writer = topic.store()
    subjects = [(f"e:event-{i}", True) if i % 3 else (f"n:email:p{i}@example.com", False)
                for i in range(KEYS_PER_MESSAGE + 5)]
    made = _made(writer, subjects)
    runs = [(k, v) for k, v in topic.messages if k != b"secret"]
    assert len(runs) == 2 and all(k.startswith(b"b") for k, _ in runs)  # (not a message per key)
    assert [len(json.loads(v)["b"]) for _, v in runs] == [KEYS_PER_MESSAGE, 5]
    reader = topic.store(writer=False)
    assert all(reader.key(kid) == key for kid, key in made.values())
    # a writer that starts again knows the identifiers' keys (their subjects are in the runs), not by making new ones
    again = topic.store()
    assert again.key_of("n:email:p0@example.com") == made["n:email:p0@example.com"]
    assert again.key_of("n:email:new@example.com")[0] > max(kid for kid, _ in made.values())


def test_shredding_sends_the_run_again_without_the_keys_shredded(monkeypatch):
    topic = KeysTopic()
    topic.read_by(monkeypatch)
    writer = topic.store()
    subjects = [("e:a", True), ("n:email:ann@example.com", False), ("e:b", True), ("e:c", True),
                ("n:phone:+447700900123", False)]
    made = _made(writer, subjects)
    sent = len(topic.messages)
    assert writer.shred(["e:b", "n:email:ann@example.com"]) == 2
    assert len(topic.messages) == sent + 1  # (one run: one message, both keys at once)
    key, value = topic.messages[-1]
    assert key.startswith(b"b") and value  # (a run is never a tombstone)
    listed = {entry[0] for entry in json.loads(value)["b"]}
    assert listed == {int(made[s][0], 16) for s in ("e:a", "e:c", "n:phone:+447700900123")}
    reader = topic.store(writer=False)
    assert reader.key(made["e:b"][0]) is None and reader.key(made["n:email:ann@example.com"][0]) is None
    assert reader.key(made["e:c"][0]) == made["e:c"][1]
    # the run sent again kept the subjects of the contents it holds: a content is still found to shred by its
    # subject (the writer keeps no map of contents), and an identifier by its own
    assert writer.shred(["e:c", "n:phone:+447700900123"]) == 2
    reader = topic.store(writer=False)
    assert [reader.key(made[s][0]) for s in ("e:a", "e:c", "n:phone:+447700900123")] == \
        [made["e:a"][1], None, None]
    assert writer.shred(["e:c"]) == 0  # (already shredded)


def test_a_topic_written_a_key_per_message_is_read_and_shredded_as_it_was(monkeypatch):
    """Topics written before keys were sent in runs hold a message per key (keyed by its number, value
    {"s", "k", "t"}); a worker of this version reads them, shreds them by tombstones, and adds runs after them."""
    topic = KeysTopic()
    topic.read_by(monkeypatch)
    secret = bytes(32)
    topic.messages.append((b"secret", json.dumps({"secret": base64.b64encode(secret).decode()}).encode()))
    probe = topic.store(writer=False)
    probe._secret = secret
    old = {}
    for n, (subject, kind) in enumerate([("n:email:old@example.com", 0), ("e:old-event", 1)], start=1):
        key = os.urandom(32)
        old[subject] = (f"{n:012x}", key)
        topic.messages.append((b"%012x" % n, json.dumps({"s": base64.b64encode(probe._hash(subject)).decode(),
                                                          "k": base64.b64encode(key).decode(), "t": kind}).encode()))
    writer = topic.store()
    assert writer.key_of("n:email:old@example.com") == old["n:email:old@example.com"]
    new = _made(writer, [("e:new-event", True)])
    assert new["e:new-event"][0] == f"{3:012x}" and topic.messages[-1][0] == b"b" + b"%012x" % 3
    assert writer.shred(["e:old-event", "n:email:old@example.com"]) == 2
    assert topic.messages[-2:] == [(b"%012x" % 2, None), (b"%012x" % 1, None)]  # (the identifier's last)
    reader = topic.store(writer=False)
    assert reader.key(old["e:old-event"][0]) is None and reader.key(new["e:new-event"][0]) == new["e:new-event"][1]


@settings(max_examples=40, deadline=None)
@given(kinds=st.lists(st.booleans(), min_size=1, max_size=40), flushes=st.sets(st.integers(0, 39)),
       shred=st.sets(st.integers(0, 39)), per_message=st.integers(1, 7))
def test_any_keys_flushed_and_shredded_read_back_as_made_or_shredded(kinds, flushes, shred, per_message):
    """Whatever the runs (keys made between flushes, cut at any size) and whichever keys are shredded, a store
    reading the topic from the start holds every key not shredded, as made, and none of those shredded."""
    from unittest import mock

    topic = KeysTopic()
    with mock.patch.object(kafka_keys, "KEYS_PER_MESSAGE", per_message), \
            mock.patch("streams.stream_app.read_to_end", lambda settings, name, each: [
                each(SimpleNamespace(key=k, value=v)) for k, v in list(topic.messages)]):
        writer = topic.store()
        made = {}
        for i, content in enumerate(kinds):
            subject = f"e:{i}" if content else f"n:email:{i}@example.com"
            made[subject] = writer.key_of(subject, new=content)
            if i in flushes:
                writer.flush()
        writer.flush()
        gone = [s for i, s in enumerate(made) if i in shred]
        assert writer.shred(gone) == len(gone)
        reader = topic.store(writer=False)
        for subject, (kid, key) in made.items():
            assert reader.key(kid) == (None if subject in gone else key)


def test_a_reader_that_meets_messages_it_cannot_read_says_to_run_the_writers_version():
    """Keys in messages of a form this version does not know (a newer resolve worker's) are not taken for lost:
    the error says to run this process on the resolve worker's version."""
    import pytest

    from streams.keys import KeyStoreError

    topic = KeysTopic()
    writer = topic.store()
    kid, _ = writer.key_of("e:an-event", new=True)
    writer.flush()
    topic.messages[-1] = (b"z" + topic.messages[-1][0], topic.messages[-1][1])  # (a form to come)
    with pytest.raises(KeyStoreError, match="of a form this version does not know; run this process on the "
                                            "version of the resolve worker"):
        topic.store(writer=False).key(kid)
    del topic.messages[-1]
    with pytest.raises(KeyStoreError, match="the topic lost messages"):
        topic.store(writer=False).key(kid)
