"""The key store of a data directory (``streams.keys.SqliteKeyStore``) holds a bounded number of keys in memory
whatever the number of subjects, and every key stays readable: before it is written, after, and from another
store on the same file."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import keys as keys_module
from streams.keys import KeyStoreError, SqliteKeyStore


@pytest.mark.parametrize("flush_every", [7, 1000])
def test_keys_held_in_memory_stay_bounded_and_every_key_reads_back(tmp_path, monkeypatch, flush_every):
    monkeypatch.setattr(keys_module, "CACHE", 50)
    monkeypatch.setattr(keys_module, "MAX_ADDING", 120)  # (a flush of its own every 120 new keys)
    store = SqliteKeyStore(tmp_path)
    made = {}
    for i in range(1500):
        # an event's content (a key each, sealed once) and, now and then, an identifier
        made[f"content:{i}"] = store.key_of(f"content:{i}", new=True)
        if i % 3 == 0:
            made[f"email:{i}"] = store.key_of(f"email:{i}")
        held = len(store._by_kid) + len(store._by_subject)
        assert held <= 2 * 50 + 2, i
        assert len(getattr(store, "_adding_kids", ())) <= 120
        if i % flush_every == flush_every - 1:
            store.flush()
        if i % 97 == 0:  # (a key read back at once, written or not)
            for subject in (f"content:{i}", f"email:{i - i % 3}"):
                kid, key = made[subject]
                assert store.key(kid) == key
    for subject, (kid, key) in made.items():
        assert store.key(kid) == key, subject
        if subject.startswith("email:"):
            assert store.key_of(subject) == (kid, key)
    store.flush()
    other = SqliteKeyStore(tmp_path, writer=False)
    for subject, (kid, key) in made.items():
        assert other.key(kid) == key, subject
    assert len(other._by_kid) <= 51


def test_a_key_not_yet_written_is_read_by_its_id_and_then_from_the_file(tmp_path):
    store = SqliteKeyStore(tmp_path)
    kid, key = store.key_of("content:a", new=True)
    assert store.key(kid) == key
    with pytest.raises(KeyStoreError):  # (not in the file before the flush: nothing sealed under it is written yet)
        SqliteKeyStore(tmp_path, writer=False).key(kid)
    store.flush()
    assert store.key(kid) == key
    assert SqliteKeyStore(tmp_path, writer=False).key(kid) == key
    assert store.shred(["content:a"]) == 1
    assert store.key(kid) is None


def test_a_sealer_and_its_key_store_are_freed_without_the_cyclic_collector(tmp_path):
    # (a server keeps the collector off what it has loaded, gc.freeze: a log its follower replaces must be freed
    # by its references going, or every reload would leave the last one's keys and tokens in memory)
    import gc
    import weakref

    from streams.sealing import Sealer

    sealer = Sealer(SqliteKeyStore(tmp_path))
    sealed = sealer.seal_entry([{"type": "identifiers_linked", "nodes": ["email:a@b.example", "phone:+15550100"]}])
    assert sealer.unseal_entry(sealed) == [{"type": "identifiers_linked",
                                            "nodes": ["email:a@b.example", "phone:+15550100"]}]
    gone, keys = weakref.ref(sealer), weakref.ref(sealer.keys)
    collecting = gc.isenabled()
    gc.disable()
    try:
        del sealer
        assert gone() is None and keys() is None
    finally:
        if collecting:
            gc.enable()


def _run_message(first: int, last: int) -> bytes:
    import base64
    import os

    import orjson

    return orjson.dumps({"r": [first, last], "b": [[n, base64.b64encode(os.urandom(16)).decode(),
                                                    base64.b64encode(os.urandom(32)).decode(), n % 2]
                                                   for n in range(first, last + 1)]})


def test_a_keys_topic_reader_keeps_its_keys_and_no_index_of_runs():
    # (readers of the keys topic: the project role, serve --bootstrap; only the writer's shredding finds a key's
    # run, and a reader that becomes the writer reads the topic again from its start)
    import types

    from streams.kafka_keys import RUN, KafkaKeys

    settings = types.SimpleNamespace(topics=types.SimpleNamespace(keys="idres.keys"), timeout=5)
    reader, writer = KafkaKeys(settings), KafkaKeys(settings)
    writer.writer = True
    n = 1
    for size in [2] * 3000 + [5, 1]:
        for store in (reader, writer):
            store._take(RUN + b"%012x" % n, _run_message(n, n + size - 1), 0)
        n += size
    assert all(reader.held(f"{k:012x}") and writer.held(f"{k:012x}") for k in (1, 2, 5999, 6000, n - 1))
    assert len(reader._run_firsts) == 0
    assert len(writer._run_firsts) == 3002
    assert [writer._run_of(k) for k in (1, 2, 3, 6000, 6001, 6005, 6006, n)] == [1, 1, 3, 5999, 6001, 6001, 6006, None]
    # a run sent again (a shred takes keys out of it) keeps its place
    writer._take(RUN + b"%012x" % 6001, _run_message(6001, 6005), 0)
    assert len(writer._run_firsts) == 3002 and writer._run_of(6003) == 6001


def _lookups(store: SqliteKeyStore) -> list[str]:
    """The statements that look an identifier's key up in ``store``'s file, as SQLite runs them."""
    ran: list[str] = []
    store._db.set_trace_callback(lambda sql: ran.append(sql) if "WHERE subject=" in sql else None)
    return ran


def test_a_store_that_holds_every_identifier_s_key_does_not_look_a_new_identifier_up(tmp_path):
    store = SqliteKeyStore(tmp_path)
    ran = _lookups(store)
    first = store.key_of("n:email:a@mailbox.org")
    store.flush()
    assert store.key_of("n:email:a@mailbox.org") == first
    store.key_of("n:email:b@mailbox.org")
    assert ran == []  # (made here, so held here: nothing to look up)
    store.close()
    again = SqliteKeyStore(tmp_path)  # (a store with keys it did not make: those are looked up)
    ran = _lookups(again)
    assert again.key_of("n:email:a@mailbox.org") == first
    again.key_of("n:email:c@mailbox.org")
    assert len(ran) == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["key_of", "content", "flush", "reopen", "forget"]),
                          st.integers(0, 7)), min_size=4, max_size=80),
       st.integers(2, 6))
def test_an_identifier_has_one_key_whatever_the_store_held_in_memory(tmp_path_factory, steps, cache):
    """Identifiers asked for in any order, with flushes, reopenings, forgetting and a cache smaller than the
    identifiers: each keeps the key it was first given, and the file holds one key per identifier."""
    path = tmp_path_factory.mktemp("keys")
    saved = keys_module.CACHE
    keys_module.CACHE = cache  # (hypothesis refuses monkeypatch, a fixture per test function)
    try:
        store = SqliteKeyStore(path)
        given_keys: dict[str, tuple[str, bytes]] = {}
        for i, (step, n) in enumerate(steps):
            subject = f"n:email:{n}@mailbox.org"
            if step == "key_of":
                got = store.key_of(subject)
                assert given_keys.setdefault(subject, got) == got, subject
            elif step == "content":
                store.key_of(f"e:{i}", new=True)
            elif step == "flush":
                store.flush()
            elif step == "reopen":
                store.flush()
                store.close()
                store = SqliteKeyStore(path)
            else:
                store.forget()
        store.flush()
        for subject, got in given_keys.items():
            assert store.key_of(subject, create=False) == got, subject
        rows = store._db.execute("SELECT count(*), count(DISTINCT subject) FROM keys WHERE kind=0").fetchone()
        assert rows == (len(given_keys), len(given_keys))
        store.close()
    finally:
        keys_module.CACHE = saved
