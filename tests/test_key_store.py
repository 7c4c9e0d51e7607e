"""The key store of a data directory (``streams.keys.SqliteKeyStore``) holds a bounded number of keys in memory
whatever the number of subjects, and every key stays readable: before it is written, after, and from another
store on the same file."""

from __future__ import annotations

import pytest

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
