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
# decisions after which the log reads otherwise than as decided: a restatement's markers (a reader skips what it
# superseded), an erasure (its keys shredded)
_NOT_AS_DECIDED = MARKER_TYPES | {"customer_erased"}


class SpoolError(IdresError):
    pass


class EntrySpool:
    """Log entries ``(seq, decisions)`` from ``start`` to ``end`` (exclusive), as decided."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.start: Optional[int] = None
        self.end: Optional[int] = None
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
        if self.end is not None and start != self.end:
            self.drop()
            return
        for decisions in entries:
            for d in decisions:
                if d["type"] in _NOT_AS_DECIDED:
                    self.drop()
                    return
        if self.start is None:
            self.start = start
        dumps = orjson.dumps
        buffer = self._buffer
        for decisions in entries:
            try:
                line = dumps(decisions)
            except TypeError:  # (what JSON cannot hold: the log's reading is left to give it)
                self.drop()
                return
            buffer += _LENGTH.pack(len(line))
            buffer += line
        self.end = start + len(entries)
        if len(buffer) >= BLOCK:
            if self._written + len(buffer) > MAX_BYTES:
                self.drop()
                return
            self._write()

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
        seq = self.start
        fh = self._file
        if fh is None:
            return
        fh.seek(0)
        loads = orjson.loads
        size = _LENGTH.size
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
                n = _LENGTH.unpack_from(block, at)[0]
                at += size
                if seq >= start:
                    yield seq, loads(view[at:at + n])
                at += n
                seq += 1
        if seq != self.end:
            raise SpoolError(f"the spool of entries ends at {seq}, not at {self.end}")

    def drop(self) -> None:
        """Lets go of what it holds; it takes nothing more."""
        self.usable = False
        self._buffer = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None

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
