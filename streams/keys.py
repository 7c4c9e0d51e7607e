"""Keys of data subjects, for crypto-shredding (``streams.sealing``).

Personal data in the decision log is readable only through a key per *subject*: one per identifier (node
key), one per event's content, one per rejected record's text. Erasing a customer deletes the keys of their
subjects: what the log holds for them can no longer be read, by anyone, and the log stays append-only.

A key store holds ``key ID -> key`` and finds a subject's key without holding the subject in readable form:
subjects are looked up by a keyed hash (BLAKE2b keyed with a secret of the store). ``SqliteKeyStore`` is the
store of a data directory (``keys.sqlite``, owner-only, SQLite's ``secure_delete`` on, so a deleted key's
bytes are overwritten in the file, and the file vacuumed after an erasure). Another store (a KMS) plugs in
by implementing ``KeyStore``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Optional, Protocol

from projections.storage import file_mode
from resolver.errors import IdresError

KEY_BYTES = 32  # AES-256
KID_BYTES = 9  # key IDs of the in-memory store: 12 characters of base64url
CACHE = 65_536  # keys held in memory (a subject seen again soon is not looked up again)
MAX_ADDING = 20_000  # new keys held before they are written


class KeyStoreError(IdresError):
    pass


# the stores a writer of this process wrote last (having checked each whole, ``PRAGMA quick_check``, as it opened
# it), as each file then was: a writer opening one again that no other process changed since does not read it whole
# again (an API server opens a writer for each command)
_CHECKED: dict[str, tuple[int, int, int]] = {}


def _as_found(path: Path) -> tuple[int, int, int]:
    try:
        found = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (found.st_ino, found.st_size, found.st_mtime_ns)


class KeyStore(Protocol):
    def key_of(self, subject: str, create: bool = True, new: bool = False) -> Optional[tuple[str, bytes]]:
        """The (key ID, key) of a subject: created if it has none and ``create``; None if it has none (never
        had one, or it was shredded). ``new``: most likely it has none yet (a speed hint)."""

    def key(self, kid: str) -> Optional[bytes]:
        """The key with this ID, or None once it is shredded."""

    def flush(self) -> None:
        """Makes the keys created so far durable (before anything sealed under them is written)."""

    def shred(self, subjects: Iterable[str]) -> int:
        """Deletes the keys of these subjects, durably; returns how many there were."""


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SqliteKeyStore:
    """The key store of a data directory: ``DATA_DIR/keys.sqlite``.

    One row per key: its number (the key ID, 12 hex digits; never reused), the keyed hash of its subject,
    the key, and its kind: 0 for an identifier (looked up by subject when an identifier is sealed again), 1
    for a content (an event's or a rejected record's, sealed once: never looked up by subject but to shred it).
    """

    FILE = "keys.sqlite"

    def __init__(self, data_dir: str | Path, *, writer: bool = True):
        self.path = Path(data_dir) / self.FILE
        self.writer = writer
        self._adding: dict[bytes, tuple[str, bytes, int]] = {}  # keys made since the last flush, by subject
        self._adding_kids: dict[str, bytes] = {}  # the same keys by key ID (at most MAX_ADDING)
        self._by_kid: OrderedDict[str, bytes] = OrderedDict()
        self._by_subject: OrderedDict[bytes, tuple[str, bytes]] = OrderedDict()
        self._db: Optional[sqlite3.Connection] = None
        self._secret = b""
        self._next = 0  # the next key's number
        self._durable = 0  # the highest key number committed
        self._trouble = False  # (an SQLite error met: ``close`` does not note the store as checked)
        # every identifier's key the store holds is held in memory too (a writer that made the store, until the
        # cache lets one go): an identifier not held has no key, and is not looked up
        self._all_held = False
        if writer or self.path.exists():
            self._connect()

    def _connect(self) -> None:
        writer = self.writer
        if writer and not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), file_mode())
            os.close(fd)
        uri = f"file:{self.path}?mode={'rwc' if writer else 'ro'}"
        self._db = None
        try:
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=60)
            db = self._db
            db.execute("PRAGMA secure_delete=ON")
            if writer:
                db.execute("PRAGMA journal_mode=DELETE")
                # (a store that was there is checked whole before anything is written to it: SQLite reads a damaged
                # page only when it comes to it, and a writer would go on adding keys to a store whose others are lost)
                if self.path.stat().st_size and _as_found(self.path) != _CHECKED.get(str(self.path)):
                    found = db.execute("PRAGMA quick_check").fetchall()
                    if found != [("ok",)]:
                        raise sqlite3.DatabaseError("; ".join(str(row[0]) for row in found[:3]).replace("\n", " "))
                db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
                db.execute("CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                           "subject BLOB NOT NULL, key BLOB NOT NULL, kind INTEGER NOT NULL)")
                db.execute("CREATE UNIQUE INDEX IF NOT EXISTS keys_of_identifiers ON keys (subject) WHERE kind = 0")
                if db.execute("SELECT 1 FROM meta WHERE name='secret'").fetchone() is None:
                    db.execute("INSERT INTO meta VALUES ('secret', ?)", (os.urandom(32),))
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='keys'").fetchone()
                self._next = (row[0] if row else 0) + 1
                self._all_held = db.execute("SELECT 1 FROM keys WHERE kind=0 LIMIT 1").fetchone() is None
            row = db.execute("SELECT value FROM meta WHERE name='secret'").fetchone()
            top = db.execute("SELECT seq FROM sqlite_sequence WHERE name='keys'").fetchone()
            self._durable = top[0] if top else 0
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        if row is None:
            raise KeyStoreError(f"the key store {self.path} has no secret: restore the data directory from a backup")
        self._secret = bytes(row[0])
        if writer:
            self._db.execute("BEGIN")

    def _damaged(self, exc: BaseException) -> KeyStoreError:
        """The error of a store SQLite found damaged (or a row it gave that the store never writes)."""
        return KeyStoreError(f"the key store {self.path} cannot be read ({exc}): restore the data directory from a "
                             "backup (without its keys nothing personal in the log can be read)")

    def _failed(self, exc: sqlite3.DatabaseError) -> KeyStoreError:
        """What SQLite's error says to do: a full disk or a busy store is not damage."""
        self._trouble = True  # (the store is not taken as this process left it: checked again when next opened)
        said = str(exc).lower()
        if "full" in said:
            return KeyStoreError(f"the disk holding the key store {self.path} is full ({exc}): free space on it, then "
                                 "run the command again (nothing sealed under the keys not written was logged)")
        if "locked" in said or "busy" in said:
            return KeyStoreError(f"the key store {self.path} is locked by another process ({exc}): wait for it to "
                                 "finish, then run the command again")
        if "readonly" in said or "read-only" in said or "unable to open" in said or "permission" in said:
            return KeyStoreError(f"the key store {self.path} cannot be written or opened ({exc}): check its permissions "
                                 "and its directory's (and that the file system is writable), then run the command "
                                 "again")
        if "i/o" in said:
            return KeyStoreError(f"reading or writing the key store {self.path} failed ({exc}): check the disk, then "
                                 "run the command again")
        return self._damaged(exc)

    def _key_bytes(self, value: object) -> bytes:
        if not isinstance(value, bytes) or len(value) != KEY_BYTES:
            raise self._damaged(ValueError(f"a key reads {type(value).__name__} of "
                                           f"{len(value) if isinstance(value, bytes) else 0} bytes"))
        return value

    def durable_number(self) -> int:
        """The highest key number the store has made durable (0: none; shredded keys' numbers are never given
        again): what a log sealed under its keys may name at most."""
        return self._durable

    def identity(self) -> str:
        """A name of this store that another store does not share (16 hex digits from its secret, which a new
        store draws afresh): the decision log's record says which store it was sealed with."""
        return hashlib.blake2b(self._secret, digest_size=8, person=b"idres-key-store").hexdigest()

    def _hash(self, subject: str) -> bytes:
        return hashlib.blake2b(subject.encode("utf-8", "surrogatepass"), key=self._secret, digest_size=16).digest()

    def _remember(self, h: bytes, kid: str, key: bytes) -> None:
        self._by_subject[h] = (kid, key)
        self._by_kid[kid] = key
        if len(self._by_subject) > CACHE:
            self._by_subject.popitem(last=False)
            self._all_held = False
        if len(self._by_kid) > CACHE:
            self._by_kid.popitem(last=False)

    def key_of(self, subject: str, create: bool = True, new: bool = False) -> Optional[tuple[str, bytes]]:
        """``new``: a content's subject (sealed once; kind 1), else an identifier's."""
        if self._db is None:
            return None
        h = self._hash(subject)
        hit = self._by_subject.get(h)
        if hit is None:
            adding = self._adding.get(h)
            if adding is not None:
                return adding[0], adding[1]
        else:
            return hit
        if not (new or self._all_held):
            try:
                row = self._db.execute("SELECT id, key FROM keys WHERE subject=? AND kind=0", (h,)).fetchone()
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc) from None
            if row is not None:
                found = (f"{row[0]:012x}", self._key_bytes(row[1]))
                self._remember(h, *found)
                return found
        if not (create and self.writer):
            return None
        # a new key, written with the others at the next ``flush``
        kid, key = f"{self._next:012x}", os.urandom(KEY_BYTES)
        self._next += 1
        self._adding[h] = (kid, key, 1 if new else 0)
        self._adding_kids[kid] = key  # (held apart from the keys cached: one per event would outgrow them)
        if len(self._adding) >= MAX_ADDING:
            self.flush()
        return kid, key

    def key(self, kid: str) -> Optional[bytes]:
        if self._db is None:
            if self.writer or not self.path.exists():
                return None
            self._connect()  # (a reader opened before the writer made the store)
        hit = self._by_kid.get(kid)
        if hit is None:
            hit = self._adding_kids.get(kid)
        if hit is not None:
            return hit
        try:
            n = int(kid, 16)
        except ValueError:
            return None
        try:
            row = self._db.execute("SELECT key FROM keys WHERE id=?", (n,)).fetchone()
            top = None if row is not None else \
                self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='keys'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        if row is None:
            if n >= self._next and (top is None or n > top[0]):
                raise KeyStoreError(f"key {kid} was never in the key store {self.path}: the store is older than "
                                    "the decision log (restore both from the same backup)")
            return None  # (shredded)
        key = self._key_bytes(row[0])
        self._by_kid[kid] = key
        if len(self._by_kid) > CACHE:
            self._by_kid.popitem(last=False)
        return key

    def prefetch(self, kids: Iterable[str]) -> None:
        """Brings the keys with these IDs into memory at once (a reader about to unseal many entries)."""
        if self._db is None:
            if self.writer or not self.path.exists():
                return
            self._connect()
        held = self._by_kid
        wanted = []
        for k in {k for k in kids if k not in held}:
            try:
                wanted.append(int(k, 16))
            except ValueError:
                pass
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            try:
                rows = self._db.execute(f"SELECT id, key FROM keys WHERE id IN ({','.join('?' * len(part))})",
                                        part).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc) from None
            for n, key in rows:
                held[f"{n:012x}"] = self._key_bytes(key)
        while len(held) > CACHE:
            held.popitem(last=False)

    def flush(self) -> None:
        if self._db is None or not self.writer or not self._adding:
            return
        adding, self._adding = self._adding, {}
        try:
            self._db.executemany("INSERT INTO keys (id, subject, key, kind) VALUES (?, ?, ?, ?)",
                                 [(int(kid, 16), h, key, kind) for h, (kid, key, kind) in adding.items()])
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        self._durable = max(self._durable, max(int(kid, 16) for kid, _, _ in adding.values()))
        self._adding_kids = {}
        for h, (kid, key, kind) in adding.items():
            if kind == 0:
                self._remember(h, kid, key)

    def shred(self, subjects: Iterable[str]) -> int:
        if self._db is None or not self.writer:
            raise KeyStoreError("this key store was opened read-only")
        self.flush()
        hashes = sorted({self._hash(s) for s in subjects})
        gone = 0
        try:
            for i in range(0, len(hashes), 500):
                part = hashes[i:i + 500]
                marks = ",".join("?" * len(part))
                gone += self._db.execute(f"DELETE FROM keys WHERE kind=0 AND subject IN ({marks})", part).rowcount
                gone += self._db.execute(f"DELETE FROM keys WHERE kind=1 AND subject IN ({marks})", part).rowcount
            self._db.execute("COMMIT")
            # (deleted rows are overwritten in place by secure_delete; VACUUM rewrites the file without them)
            self._db.execute("VACUUM")
            self._db.execute("BEGIN")
        except sqlite3.DatabaseError as exc:  # (an erasure not done: the command says so, and can be run again)
            raise self._failed(exc) from None
        self.forget()
        return gone

    def forget(self) -> None:
        """Drops the keys held in memory (a reader after another process shredded some)."""
        self._by_kid.clear()
        self._by_subject.clear()
        self._all_held = False

    def count(self) -> int:
        if self._db is None:
            return 0
        try:
            return self._db.execute("SELECT count(*) FROM keys").fetchone()[0] + len(self._adding)
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None

    def close(self) -> None:
        if self._db is not None:
            try:
                if self.writer:
                    self._db.execute("COMMIT")
            except sqlite3.DatabaseError:  # (nothing begun; or a damaged store, reported where it was read)
                pass
            self._db.close()
            self._db = None
            if self.writer and not self._trouble:  # (checked when opened, and written since by SQLite alone: a
                # writer of this process that opens it next, unchanged by any other, need not read it whole again)
                _CHECKED[str(self.path)] = _as_found(self.path)
            else:
                _CHECKED.pop(str(self.path), None)


class MemoryKeyStore:
    """A key store in memory (tests, and what-if replays that must not touch a data directory's keys)."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)
        self._keys: dict[str, bytes] = {}
        self._subjects: dict[bytes, str] = {}

    def _hash(self, subject: str) -> bytes:
        return hashlib.blake2b(subject.encode("utf-8", "surrogatepass"), key=self._secret, digest_size=16).digest()

    def key_of(self, subject: str, create: bool = True, new: bool = False) -> Optional[tuple[str, bytes]]:
        h = self._hash(subject)
        kid = self._subjects.get(h)
        if kid is None:
            if not create:
                return None
            kid = _b64(os.urandom(KID_BYTES))
            self._subjects[h] = kid
            self._keys[kid] = os.urandom(KEY_BYTES)
        return kid, self._keys[kid]

    def key(self, kid: str) -> Optional[bytes]:
        return self._keys.get(kid)

    def flush(self) -> None:
        pass

    def shred(self, subjects: Iterable[str]) -> int:
        gone = 0
        for s in subjects:
            kid = self._subjects.pop(self._hash(s), None)
            if kid is not None:
                del self._keys[kid]
                gone += 1
        return gone

    def forget(self) -> None:
        pass

    def close(self) -> None:
        pass
