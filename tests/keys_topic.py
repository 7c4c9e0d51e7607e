"""The keys topic of a Kafka deployment in memory, for ``streams.kafka_keys.KafkaKeys`` stores that read and
write it without a broker."""

from __future__ import annotations

import base64
import json


class KeysTopic:
    """The keys topic of a Kafka deployment in memory, for ``KafkaKeys`` stores that read and write it."""

    def __init__(self):
        self.messages: list[tuple[bytes, bytes | None]] = []

    def read_by(self, monkeypatch) -> None:
        """``read_to_end`` of the keys topic reads these messages (a store reads the topic to shred)."""
        from types import SimpleNamespace

        import streams.stream_app

        monkeypatch.setattr(streams.stream_app, "read_to_end", lambda settings, name, each: [
            each(SimpleNamespace(key=k, value=v)) for k, v in list(self.messages)])

    def store(self, writer: bool = True):
        """A store on this topic: the resolve worker's (``writer``), or a reader's."""
        from types import SimpleNamespace

        from streams.kafka_keys import KafkaKeys

        topic = self

        class Sent:
            def get(self, timeout=None):
                return None

        class Producer:
            def send(self, name, key, value, partition):
                topic.messages.append((key, value))
                return Sent()

            def flush(self, timeout=None):
                pass

        keys = KafkaKeys(SimpleNamespace(topics=SimpleNamespace(keys="keys"), timeout=5))

        def catch_up():
            for offset in range(keys._pos, len(topic.messages)):
                keys._take(*topic.messages[offset], offset)
            keys._pos = len(topic.messages)

        keys.catch_up = catch_up
        if not writer:
            catch_up()
            return keys
        keys.writer, keys._producer = True, Producer()
        if not topic.messages:
            keys._secret = bytes(32)
            keys._send(b"secret", json.dumps({"secret": base64.b64encode(bytes(32)).decode()}).encode())
        catch_up()
        return keys
