"""The entries an ingest logs, kept as decided for the views' fold at its end (``EmbeddedEngine(fold_views="after")``).

An ingest that folds the customer views after deciding used to read its own entries back from the decision log:
every identifier and content unsealed under its key again (each key fetched from the key store, each content
decrypted under a cipher of its own), about a tenth of an ingest. The spool keeps the same entries as the
resolver decided them, before they were sealed, so the views are folded from them without a key.

* An unlinked temporary file in the data directory (nothing of it is left once the process ends, however it
  ends), written in blocks of about ``BLOCK`` bytes, each sealed with AES-256-GCM under a key made for this spool
  and held only in memory: the personal data in it is readable by this process alone, and a block that does not
  read back as written is an error (``SpoolError``), never folded.
* It holds a run of consecutive log positions. ``add`` refuses (and the spool is then of no use) what the log
  reads otherwise than as written: entries not next to the last, a restatement's markers (a reader skips what a
  restatement superseded), an erasure (its keys are shredded: the log reads without what it erased).
* The engine folds from it only when it covers the log up to its end with nothing a reader skips in it; in any
  other case it reads the log, which stays the source of truth. It takes about as much disk as the entries'
  text, and is dropped past ``MAX_BYTES``.

A spool made with ``as_read=True`` holds instead entries as the log read them (``take``: positions that go up,
with the gaps a reader skips), for a second pass over the same stretch: a restatement rewinds the resolver's
state through the log before its first late event, and the views are folded over the same stretch once it is
done (``EmbeddedEngine._rewind``). It says which stretch it holds (``close``), and the engine folds from it only
while the log still reads that stretch as it did (``DecisionLog.skips_in``) and no erasure came between.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from resolver.errors import IdresError
from resolver.restate import MARKER_TYPES

BLOCK = 1 << 20  # bytes of entries sealed and written at once
MAX_BYTES = 4 << 30  # a spool that grows past this is dropped (an input piped in for days): the log is read instead
_LENGTH = struct.Struct("<I")
_RECORD = struct.Struct("<qI")  # an entry's log position and its length
# decisions after which the log reads otherwise than as decided: a restatement's markers (a reader skips what it
# superseded), an erasure (its keys shredded)
_NOT_AS_DECIDED = MARKER_TYPES | {"customer_erased"}


class SpoolError(IdresError):
    pass


class EntrySpool:
    """Log entries ``(seq, decisions)`` from ``start`` to ``end`` (exclusive), as decided (``as_read``: as the
    log read them)."""

    def __init__(self, directory: str | Path, as_read: bool = False):
        self.directory = Path(directory)
        self.start: Optional[int] = None
        self.end: Optional[int] = None
        self.as_read = as_read
        self.skips: Optional[list[tuple[int, int]]] = None  # (as read: what the log skipped in the stretch, ``close``)
        self.usable = True
        self._file: Optional[Any] = None
        self._cipher = AESGCM(AESGCM.generate_key(bit_length=256))
        self._blocks = 0  # the nonce of each block is its number: never reused under this key
        self._buffer = bytearray()
        self._written = 0  # bytes in the file

    def add(self, start: int, entries: list[list[dict[str, Any]]]) -> None:
        """The entries the log just wrote from position ``start``."""
        if not self.usable or not entries:
            return
        if self.as_read or (self.end is not None and start != self.end):
            self.drop()
            return
        for decisions in entries:
            for d in decisions:
                if d["type"] in _NOT_AS_DECIDED:
                    self.drop()
                    return
        if self.start is None:
            self.start = start
        for i, decisions in enumerate(entries):
            if not self._put(start + i, decisions):
                return
        self.end = start + len(entries)

    def take(self, seq: int, decisions: list[dict[str, Any]]) -> None:
        """An entry as the log read it at position ``seq`` (after the last taken): a spool ``as_read``."""
        if not self.usable:
            return
        if not self.as_read or self.skips is not None or (self.end is not None and seq < self.end):
            self.drop()
            return
        if self.start is None:
            self.start = seq
        if self._put(seq, decisions):
            self.end = seq + 1

    def close(self, start: int, end: int, skips: list[tuple[int, int]]) -> None:
        """Says that it holds the log's stretch from ``start`` to ``end`` as read while the log skipped ``skips``
        in it (``DecisionLog.skips_in``): every entry taken, none missing. A spool ``as_read``."""
        if not self.usable or not self.as_read or (self.start is not None and self.start < start) \
                or (self.end is not None and self.end > end):
            self.drop()
            return
        self.start, self.end, self.skips = start, end, list(skips)

    def holds(self, start: int, end: int, skips: list[tuple[int, int]]) -> bool:
        """Whether, as read (``close``), it holds the stretch from ``start`` to ``end`` that the log reads now
        while skipping ``skips`` in it."""
        return (self.usable and self.as_read and self.skips is not None and self.start is not None
                and self.start <= start and end <= self.end and self.skips == list(skips))

    def _put(self, seq: int, decisions: list[dict[str, Any]]) -> bool:
        try:
            line = orjson.dumps(decisions)
        except TypeError:  # (what JSON cannot hold: the log's reading is left to give it)
            self.drop()
            return False
        buffer = self._buffer
        buffer += _RECORD.pack(seq, len(line))
        buffer += line
        if len(buffer) >= BLOCK:
            if self._written + len(buffer) > MAX_BYTES:
                self.drop()
                return False
            self._write()
        return self.usable

    def covers(self, end: int) -> bool:
        """Whether it holds the entries up to ``end``, the log's end (from its own start)."""
        return self.usable and self.start is not None and self.end == end

    def read(self, start: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """The entries from ``start`` (at or after the spool's own start) to its end."""
        if not self.usable or self.start is None:
            raise SpoolError("the spool of entries was dropped")
        if self._buffer:
            self._write()
            if not self.usable:
                raise SpoolError("the spool of entries could not be written")
        fh = self._file
        if fh is None:
            return
        fh.seek(0)
        loads = orjson.loads
        size, record = _LENGTH.size, _RECORD.size
        expected = self.start  # (as decided: every position, one after another)
        last = -1
        for number in range(self._blocks):
            head = fh.read(size)
            if len(head) < size:
                raise SpoolError("the spool of entries ends early")
            sealed = fh.read(_LENGTH.unpack(head)[0])
            try:
                block = self._cipher.decrypt(_nonce(number), sealed, None)
            except InvalidTag:
                raise SpoolError(f"block {number} of the spool of entries does not read back as written") from None
            at = 0
            view = memoryview(block)
            while at < len(block):
                seq, n = _RECORD.unpack_from(block, at)
                at += record
                if seq <= last or (not self.as_read and seq != expected):
                    raise SpoolError(f"the spool of entries holds position {seq} after {last}")
                if seq >= start:
                    yield seq, loads(view[at:at + n])
                at += n
                last, expected = seq, seq + 1
        if not self.as_read and expected != self.end:
            raise SpoolError(f"the spool of entries ends at {expected}, not at {self.end}")
        if self.as_read and last >= self.end:
            raise SpoolError(f"the spool of entries holds position {last}, past its end {self.end}")

    def drop(self) -> None:
        """Lets go of what it holds; it takes nothing more."""
        self.usable = False
        self._buffer = bytearray()
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError:  # (a disk full: what its buffer held is not written again; the file is closed all the same)
                pass

    def _write(self) -> None:
        sealed = self._cipher.encrypt(_nonce(self._blocks), bytes(self._buffer), None)
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=self.directory, prefix=".idres-entries-")
            self._file.seek(0, 2)  # (after the last block, wherever a read left off)
            self._file.write(_LENGTH.pack(len(sealed)))
            self._file.write(sealed)
            self._file.flush()  # (nothing left in a buffer a forked process would write again as it exits)
        except OSError:  # (a disk full, say: the ingest goes on, and the log is read instead)
            self.drop()
            return
        self._written += _LENGTH.size + len(sealed)
        self._blocks += 1
        self._buffer = bytearray()


def _nonce(number: int) -> bytes:
    return number.to_bytes(12, "big")
