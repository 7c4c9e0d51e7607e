"""The embedded decision log: append-only JSON-lines segments in a local data directory.

Layout of ``DATA_DIR``::

    log/00000000000000000000.jsonl   one entry per line: {"seq": N, "v": 3, "decisions": [...], "crc": "..."}
    log/00000000000001000000.jsonl   a new segment every ``segment_entries`` entries
    checkpoint.pickle                a cache of the folded state at some seq (never the truth), with a checksum
    checkpoint.prev.pickle           the one before it (where a restatement of late events starts from)
    keys.sqlite                      the keys personal data in the log is sealed under (``streams.keys``)
    LOCK                             the number of entries written (a log found shorter has lost entries)

One process writes at a time: it holds an exclusive ``flock`` on the data directory itself (deleting a
file cannot let a second writer in). Files are created with ``IDRES_FILE_MODE`` (default 600: the owner
only; they hold personal data), and temporary files of killed writers are removed by the next one.

Durability: ``append`` writes whole lines, flushes and fsyncs before returning. A crash can leave a
torn last line; opening the log cuts it off (that entry was never acknowledged). Every entry carries
its ``seq`` and a checksum of its bytes (``crc``, CRC-32C), both checked by every read, so a damaged
log is reported instead of folded wrongly, and the version
of the decision schema it was written in (``v``; 1 when absent): a newer version than this code reads is
refused with an error, never folded as if it were known.

Personal data is sealed when written and unsealed when read (``streams.sealing``): an entry written sealed
carries ``"k": 1``. Erasure shreds keys (``shred``); what was sealed under them reads as erased from then on.
"""

from __future__ import annotations

import contextlib
import copyreg
import ctypes
import fcntl
import functools
import gc
import itertools
import logging
import mmap
import os
import pickle
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import orjson
from crc32c import crc32c

from projections.storage import file_mode, private_file, remove_debris, sync_directory
from resolver.errors import IdresError
from resolver.restate import MARKER_TYPES
from schemas.versions import DECISION_SCHEMA_VERSION
from streams.keys import SqliteKeyStore
from streams.sealing import SealError, Sealer

SEGMENT_ENTRIES = 1_000_000
CHECKPOINT_VERSION = 12  # 2: a checksum trailer; 3: the resolver state knows each identifier's first event;
# 4: term frequencies as they stood at the epoch's start; 5: connection bans; 6: a header, then each part of
# the state on its own (a reader stops after the parts it needs); 7: the events' identifiers in flat arrays; 8: the
# events' times as microseconds; 9: profiles as the tuples of their fields; 10: a part's bulk columns after it,
# without the pickler's memo (``save_checkpoint``); 11: a bulk dict's chunks as keys and values in one flat list;
# 12: each part through a pickler of its own, in any order, and a footer saying where each starts



class LogError(IdresError):
    pass


def _segment_name(start: int) -> str:
    return f"{start:020d}.jsonl"


_SEGMENT = re.compile(r"[0-9]{20}\.jsonl")


def is_segment_name(name: str) -> bool:
    """Whether ``name`` is a decision-log segment's file name (``_segment_name``)."""
    return _SEGMENT.fullmatch(name) is not None


def _segment_starts(log_dir: Path) -> list[int]:
    """Where each segment in ``log_dir`` starts, in order: files named as segments are (another file there, a
    copy a file manager made or a note, is not one; a segment it replaced is found missing by the count)."""
    return sorted(int(p.name[:20]) for p in log_dir.glob("*.jsonl") if is_segment_name(p.name))


class DecisionLog:
    def __init__(self, data_dir: str | Path, *, writer: bool = True, segment_entries: int = SEGMENT_ENTRIES):
        self.dir = Path(data_dir)
        self.log_dir = self.dir / "log"
        self.segment_entries = segment_entries
        self._lock_fd: Optional[int] = None
        self._fh = None
        self._record_fd: Optional[int] = None
        self.keys: Optional[SqliteKeyStore] = None
        if writer:
            if log_dir_of(self.dir) is None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            # the lock is on the directory itself: deleting a file cannot let a second writer in
            self._lock_fd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise LogError(f"another idres process is writing to {self.dir}; wait for it to finish") from None
        elif log_dir_of(self.dir) is None and not (self.dir / "LOCK").is_file():
            # (with a LOCK, a log was written here: its record says what is missing)
            raise LogError(f"no decision log in {self.dir}: run `idres ingest FILE --data-dir {self.dir}` first")
        try:
            self._open(writer)
            self._open_keys(writer)
        except BaseException:
            self.close()  # (never keep the lock of a log that could not be opened)
            raise

    def _open(self, writer: bool) -> None:
        if writer:
            remove_debris(self.dir, _DEBRIS)
        # (read before the log is counted: the writer records after appending)
        recorded, self._recorded_keys = self._recorded()
        self._segments = _segment_starts(self.log_dir) if log_dir_of(self.dir) else []
        self._length = 0
        self._tail_end = 0  # bytes of the last segment counted: the end of its last complete line
        self._hint: Optional[tuple[int, int, int]] = None  # (seq, segment, byte offset where that entry starts)
        self._markers: dict[int, dict[str, Any]] = {}  # seq -> a restatement's marker (``resolver.restate``)
        self._skips: list[tuple[int, int]] = []
        if self._segments:
            last = self._segments[-1]
            self._length = last + self._count_and_repair(self.log_dir / _segment_name(last), repair=writer)
            for seg in self._segments[:-1]:
                self._scan_segment(self.log_dir / _segment_name(seg))
        if recorded > self._length:
            raise LogError(f"the decision log in {self.dir} has {self._length:,} entries but {recorded:,} were written "
                           f"to it (as {self.dir / 'LOCK'} records): entries are missing{RESTORE}")
        if writer:
            self._record_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                                      file_mode())
            self._record()

    def _open_keys(self, writer: bool) -> None:
        path = self.dir / SqliteKeyStore.FILE
        recorded = self._recorded_keys  # (the key store the writers used, as LOCK records it; None: not recorded)
        sealed = bool(recorded and recorded[0]) or (bool(self._length) and _sealed(self._last_line_head()))
        if sealed and (not path.exists() or (path.is_file() and path.stat().st_size == 0)):
            raise LogError(f"the key store {path} is {'missing' if not path.exists() else 'empty'}, and the decision "
                           f"log in {self.dir} is sealed under its keys{RESTORE}")
        self.keys = SqliteKeyStore(self.dir, writer=writer)
        self.sealer = Sealer(self.keys)
        if recorded is not None and path.exists():
            keys, store = recorded
            if store != self.keys.identity() or keys > self.keys.durable_number():
                found = f"{self.keys.identity()} with keys up to {self.keys.durable_number()}"
                self.keys.close()
                self.keys = None
                # (a writer would give the next entries keys numbered as the log's own: neither store could read it
                # all)
                raise LogError(f"the key store {path} is not the decision log's: the log was written with store "
                               f"{store} and keys up to {keys} (as {self.dir / 'LOCK'} records), the store is {found} "
                               f"(emptied, replaced, or restored from another backup than the log){RESTORE}")

    def _last_line_head(self) -> bytes:
        """The first 64 bytes of the log's last entry (the last segment's last complete line)."""
        path = self.log_dir / _segment_name(self._segments[-1])
        end = self._tail_end - 1  # (the last line's newline)
        if end < 0:
            return b""
        with open(path, "rb") as fh:
            start = end
            while start > 0:  # (back to the newline before it, 64 KiB at a time: an entry may be longer)
                at = max(0, start - 65536)
                fh.seek(at)
                found = fh.read(start - at).rfind(b"\n")
                if found >= 0:
                    start = at + found + 1
                    break
                start = at
            fh.seek(start)
            return fh.read(min(64, end - start))

    def shred(self, subjects: list[str]) -> int:
        """Deletes the keys of these subjects (``streams.sealing``: node, event and rejected-record subjects),
        durably; what was sealed under them reads as erased from now on. Returns how many keys there were."""
        if self._lock_fd is None or self.keys is None:
            raise LogError("this log was opened read-only")
        gone = self.keys.shred(subjects)
        self.sealer.forget()
        return gone

    def forget_cached(self) -> None:
        """Drops the keys and sealed identifiers held in memory to seal and unseal (fetched again as needed)."""
        if self.keys is not None:
            self.sealer.forget()

    def _recorded(self) -> tuple[int, Optional[tuple[int, str]]]:
        """How many entries the log's writers have recorded writing (0 when not recorded: no record, or an empty
        one or one of zero bytes, as a crash can leave a file), and the key store they wrote with (its highest key
        number, its identity; None where the record does not say); a record that says anything else is damage.
        (A writer rewrites the record in place: one read as it did is read again, a few times, before it is
        called damage.)"""
        import time

        for attempt in range(6):
            text = _record_text(self.dir)
            found = _record_of(text)
            if found is not None or not text.strip(b"\0 \n"):
                break
            time.sleep(0.01 * (attempt + 1))
        else:
            raise LogError(f"{self.dir / 'LOCK'}, the record of how many entries were written to the decision log, is "
                           f"damaged (it reads {text[:40]!r}): restore the data directory from a backup, or delete "
                           f"that file to read the log without it (a log cut short then goes unnoticed)")
        return found if found is not None else (0, None)

    @staticmethod
    def recorded_length(data_dir: Path) -> int:
        """How many entries the writers of the log in ``data_dir`` have recorded writing, without opening it
        (0 when not recorded, or not readable as such): enough for a progress bar."""
        try:
            found = _record_of(_record_text(Path(data_dir)))
        except LogError:
            return 0
        return found[0] if found is not None else 0

    def _record(self) -> None:
        """Records the log's length next to it, after the entries are durable: a log later found shorter
        has lost entries."""
        recorded = self._recorded_keys
        if self.keys is not None:  # (the keys of what was appended are durable before it is: ``append``)
            recorded = (max(self.keys.durable_number(), recorded[0] if recorded else 0), self.keys.identity())
            self._recorded_keys = recorded
        data = record_line(self._length, recorded)
        os.pwrite(self._record_fd, data, 0)
        os.ftruncate(self._record_fd, len(data))

    def _count_and_repair(self, path: Path, repair: bool) -> int:
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            if repair:
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                    fh.flush()
                    os.fsync(fh.fileno())
            data = data[:end]
        self._tail_end = end
        self._scan_markers(data)
        return data.count(b"\n")

    def _scan_segment(self, path: Path) -> None:
        """``_scan_markers`` over a whole segment, mapped rather than read (a segment is hundreds of MB; the
        search reads it where it lies, in the page cache)."""
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                self._scan_markers(data)  # type: ignore[arg-type]

    def _scan_markers(self, data: bytes) -> None:
        """Notes the restatement markers among complete log lines ``data`` (a byte search: they are rare)."""
        at = data.find(_MARKER)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            if end < 0:
                break
            try:
                entry = orjson.loads(data[start:end])
                first = entry["decisions"][0]
                if first["type"] in MARKER_TYPES:
                    self._markers[entry["seq"]] = marker_fields(first)
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
                pass  # (a damaged line: reading it says so)
            at = data.find(_MARKER, end)
        self._skips = skipped(self._markers)

    def restatements(self) -> dict[int, dict[str, Any]]:
        """The restatement markers in the log: seq -> its type, ``restate_id``, ``from_seq`` / ``begun_seq``."""
        return dict(self._markers)

    def restated_since(self, seq: int) -> bool:
        """Whether a restatement completed at or after ``seq`` supersedes entries before it (a state folded up
        to ``seq`` holds entries no longer read)."""
        return any(m["type"] == "log_restated" and at >= seq and m["from_seq"] < seq for at, m in self._markers.items())

    def refresh(self) -> int:
        """Takes in the entries another process appended since this log was opened (or last refreshed).

        For a read-only log that follows a writer: re-scans the segments and counts the complete lines
        at the end of the last one (a line still being written is left for the next call). Reads only
        the bytes added since the last call and never truncates. Returns how many entries were added;
        a writer's length is always current, so for a writer it returns 0. Raises ``LogError`` when
        the log is no longer the one this object has seen (segments removed, a segment shorter).
        """
        if self._lock_fd is not None:
            return 0
        before = self._length
        segments = _segment_starts(self.log_dir) if log_dir_of(self.dir) else []
        if not segments:
            if self._segments:
                raise LogError(f"the decision log in {self.dir} has disappeared")
            return 0
        last = segments[-1]
        known_last = self._segments[-1] if self._segments else None
        if known_last is not None and (last < known_last or not set(self._segments) <= set(segments)):
            raise LogError(f"the decision log in {self.dir} was replaced; restart to read the new one")
        start = self._tail_end if last == known_last else 0
        with open(self.log_dir / _segment_name(last), "rb") as fh:
            if os.fstat(fh.fileno()).st_size < start:
                raise LogError(f"the decision log in {self.dir} was truncated; restart to read it again")
            fh.seek(start)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        added = data.count(b"\n", 0, end)
        self._scan_markers(data[:end])
        length = (before + added) if last == known_last else (last + added)
        if length < before:
            raise LogError(f"the decision log in {self.dir} is shorter than before; restart to read it again")
        if known_last is not None:
            # the next read most likely starts where the previous length ended: remember where that is
            self._hint = (before, known_last, self._tail_end)
        self._segments = segments
        self._tail_end = start + end
        self._length = length
        return length - before

    def __len__(self) -> int:
        return self._length

    def append(self, batches: list[list[dict[str, Any]]]) -> int:
        """Writes one entry per batch of decisions, durably. Returns the seq after the last one."""
        if self._lock_fd is None:
            raise LogError("this log was opened read-only")
        if not batches:
            return self._length
        sealed = [self.sealer.seal_entry(decisions) for decisions in batches]
        self.sealer.flush()  # (the keys are durable before anything sealed under them is)
        out = []
        first = seq = self._length
        for decisions in sealed:
            if seq % self.segment_entries == 0 or self._fh is None:
                self._write(out)
                out = []
                self._open_segment(seq)
            out.append(seal(orjson.dumps({"seq": seq, "v": DECISION_SCHEMA_VERSION, "k": 1, "decisions": decisions})))
            seq += 1
        self._write(out)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._length = seq
        self._record()
        marked = [(first + i, d[0]) for i, d in enumerate(batches) if d and d[0]["type"] in MARKER_TYPES]
        if marked:
            for at, d in marked:
                self._markers[at] = marker_fields(d)
            self._skips = skipped(self._markers)
        return seq

    def _open_segment(self, seq: int) -> None:
        start = (seq // self.segment_entries) * self.segment_entries
        if self._fh is not None and self._fh_start == start:
            return
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        path = self.log_dir / _segment_name(start)
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), file_mode())
        if new:
            os.fchmod(fd, file_mode())
        self._fh = os.fdopen(fd, "ab", buffering=1 << 20)
        self._fh_start = start
        if new:
            if start not in self._segments:
                self._segments.append(start)
            sync_directory(self.log_dir)

    def _write(self, lines: list[bytes]) -> None:
        if lines and self._fh is not None:
            self._fh.write(b"".join(lines))

    def read(self, start: int = 0, end: Optional[int] = None, *,
             raw: bool = False) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Entries ``(seq, decisions)`` from ``start`` up to the length at call time: the log as it reads now,
        without what a restatement superseded or has not yet completed (``resolver.restate``), unless ``raw``
        (every entry, as written: what the changelog is made of)."""
        if raw or not self._skips:
            return self._read(start, end)
        return self._read(start, end, self._skips)  # (replaced, never changed, when the skips change)

    def skips_in(self, start: int, end: int) -> list[tuple[int, int]]:
        """The stretches of entries from ``start`` to ``end`` (exclusive) a reader skips (``read``), cut to them."""
        return [(max(a, start), min(b, end)) for a, b in self._skips if a < end and b > start]

    def skipped(self, seq: int) -> bool:
        """Whether entry ``seq`` is one a reader skips (``read``): superseded, or of a restatement not complete."""
        return in_ranges(self._skips, seq)

    def _read(self, start: int, end: Optional[int],
              skips: Sequence[tuple[int, int]] = ()) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """The entries from ``start``, each checked; those in ``skips`` (sorted, disjoint) checked but not unsealed,
        and not given."""
        expected = start
        ahead = iter(skips)
        skip = next(ahead, None)  # (the first stretch not yet passed: positions only go up)
        chunk: list[tuple[int, str, bytes, bool]] = []
        for pos, name, line in self._lines(start, end):
            while skip is not None and skip[1] <= pos:
                skip = next(ahead, None)
            chunk.append((pos, name, line, skip is not None and skip[0] <= pos))
            if len(chunk) >= READ_CHUNK:
                yield from self._entries(chunk, expected)
                expected += len(chunk)
                chunk = []
        yield from self._entries(chunk, expected)

    def _lines(self, start: int, end: Optional[int]) -> Iterator[tuple[int, str, bytes]]:
        """``(position, file name, line)`` of the entries from ``start``, complete lines only."""
        end = self._length if end is None else min(end, self._length)
        got = start
        for seg in self._segments:
            if seg + self.segment_entries <= start or seg >= end:
                continue
            with open(self.log_dir / _segment_name(seg), "rb") as fh:
                pos = seg
                hint = self._hint
                if hint is not None and hint[1] == seg and seg <= hint[0] <= start:
                    fh.seek(hint[2])  # skip the lines before a known entry instead of reading them
                    pos = hint[0]
                for line in fh:
                    if pos >= end:
                        break
                    if pos >= start:
                        if not line.endswith(b"\n"):
                            return
                        yield pos, fh.name, line
                        got += 1
                    pos += 1
        if got < end:
            raise LogError(f"the decision log in {self.dir} ends at entry {got}, expected {end}: a segment of it is "
                           f"missing{RESTORE}")

    def _entries(self, chunk: list[tuple[int, str, bytes, bool]],
                 expected: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """The entries of ``chunk`` (``(position, file name, line, skipped)``) from ``expected`` on: every one checked
        (its JSON, checksum, version and place), those not skipped unsealed and given."""
        if not chunk:
            return
        if self.keys is not None:  # (the keys of a chunk's sealed values, fetched together)
            self.sealer.prefetch(b"".join(line for _, _, line, skipped in chunk if not skipped))
        for pos, name, line, skipped in chunk:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                entry = None
            if not isinstance(entry, dict):
                raise LogError(f"decision log entry {pos} in {name} is damaged (not a JSON object){RESTORE}")
            if not intact(line, entry):
                raise LogError(f"decision log entry {pos} in {name} is damaged (its bytes do not "
                               f"match its checksum){RESTORE}")
            check_version(entry.get("v", 1), f"entry {expected} of {name}")
            if entry.get("seq") != expected:
                raise LogError(f"decision log out of order in {name}: found entry "
                               f"{entry.get('seq')} where {expected} belongs{RESTORE}")
            if skipped:
                pass  # (checked; what it sealed is not read)
            elif entry.get("k"):
                try:
                    yield expected, self.sealer.unseal_entry(entry["decisions"])
                except SealError as exc:
                    raise LogError(f"decision log entry {pos} in {name} is damaged ({exc}){RESTORE}") from None
            else:
                yield expected, entry["decisions"]
            expected += 1

    def close(self) -> None:
        try:
            if self._fh is not None:
                fh, self._fh = self._fh, None
                try:
                    fh.flush()
                    os.fsync(fh.fileno())
                finally:
                    fh.close()
        finally:
            if self._record_fd is not None:
                os.close(self._record_fd)
                self._record_fd = None
            if self.keys is not None:
                self.keys.close()
                self.keys = None
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> "DecisionLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def skipped(markers: dict[int, dict[str, Any]]) -> list[tuple[int, int]]:
    """The ranges ``[start, end)`` of entries a reader skips, from the restatement markers (``resolver.restate``):
    a completed one's superseded entries and its begun marker, an abandoned one's entries and markers, and
    everything from the begun marker of one in progress."""
    begun: dict[str, tuple[int, int]] = {}
    ranges = []
    for seq in sorted(markers):
        m = markers[seq]
        if m["type"] == "log_restate_begun":
            begun[m["restate_id"]] = (seq, m["from_seq"])
        elif m["restate_id"] in begun:
            at, start = begun.pop(m["restate_id"])
            ranges.append((start, at + 1) if m["type"] == "log_restated" else (at, seq + 1))
    ranges.extend((at, 1 << 62) for at, _ in begun.values())
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def in_ranges(ranges: list[tuple[int, int]], seq: int) -> bool:
    """Whether ``seq`` is in one of ``ranges`` (``skipped``'s: sorted, disjoint)."""
    for a, b in ranges:
        if a <= seq < b:
            return True
        if a > seq:
            break
    return False


def open_restatements(markers: dict[int, dict[str, Any]]) -> list[int]:
    """The positions of begun markers without an end (a writer stopped in between), in log order."""
    ended = {m["restate_id"] for m in markers.values() if m["type"] != "log_restate_begun"}
    return [seq for seq, m in sorted(markers.items()) if m["type"] == "log_restate_begun" and m["restate_id"] not in ended]


def marker_fields(d: dict[str, Any]) -> dict[str, Any]:
    """What readers keep of a restatement marker to know what they skip."""
    return {k: d[k] for k in ("type", "restate_id", "from_seq", "begun_seq") if k in d}


_MARKER = b'"type":"log_restate'
# what ``_record`` writes in LOCK: the record of the log's length, whole: the count, what the file is, the key store the log was sealed with (its
# highest key number then, and its identity) and a checksum of all that (a record written before it had the last
# two is read too, as it was written: the count and what the file is)
RECORD = re.compile(rb"((\d{1,19}) entries in the decision log \(written by idres, read to detect a log cut short\)"
                    rb"(?: keys (\d{1,19}) of store ([0-9a-f]{16}))?)(?: ([0-9a-f]{8}))?\n")


def log_dir_of(data_dir: Path) -> Optional[Path]:
    """The directory of the decision log's segments in ``data_dir`` (None: there is none yet). Raises ``LogError``
    when ``log`` is there but is not a directory: the log's place is damaged, not empty."""
    path = Path(data_dir) / "log"
    if path.is_dir():
        return path
    if path.exists() or path.is_symlink():
        raise LogError(f"{path} is not a directory: idres keeps the decision log's segments there{RESTORE}")
    return None


def record_line(length: int, keys: Optional[tuple[int, str]] = None) -> bytes:
    """The record of a log of ``length`` entries, as ``LOCK`` holds it; ``keys``: the key store's highest key number
    and identity (``SqliteKeyStore.identity``)."""
    body = b"%d entries in the decision log (written by idres, read to detect a log cut short)" % length
    if keys is not None:
        body += b" keys %d of store %s" % (keys[0], keys[1].encode())
    return body + b" %08x\n" % crc32c(body)


def _record_of(text: bytes) -> Optional[tuple[int, Optional[tuple[int, str]]]]:
    """The length a record reads and the key store it names (None where it names none), or None when it is not a
    record: the line whole, with its checksum right (a record of before has neither key store nor checksum; one
    written before the store was opened names none)."""
    found = RECORD.fullmatch(text)
    if found is None:
        return None
    body, count, keys, store, crc = found.groups()
    # (a checksum of the whole line before it; of the count alone in a record written for a day before records
    # named their key store)
    if (crc is None and keys is not None) or (crc is not None and int(crc, 16) != crc32c(body) and (
            keys is not None or int(crc, 16) != crc32c(count))):
        return None
    return int(count), ((int(keys), store.decode()) if keys is not None else None)


def _store_here(data_dir: Path) -> Optional[str]:
    """The key store the log in ``data_dir`` names in its record (``LOCK``), or None (no record, or one that names
    none or cannot be read)."""
    try:
        found = _record_of(_record_text(data_dir))
    except LogError:
        return None
    return found[1][1] if found is not None and found[1] is not None else None


def _record_text(data_dir: Path) -> bytes:
    """The record of the log's length in ``data_dir`` (``LOCK``; empty when there is none), at most 256 bytes."""
    path = data_dir / "LOCK"
    try:
        with open(path, "rb") as fh:
            return fh.read(256)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise LogError(f"{path}, the record of how many entries were written to the decision log, cannot be read "
                       f"({exc.strerror or exc}): make it a file idres can read and write (or delete it to read the "
                       f"log without it)") from None


RESTORE = ": restore the data directory from a backup, or re-ingest the input into a new one"


def _sealed(head: bytes) -> bool:
    """Whether an entry whose first bytes are ``head`` was written sealed (its header says so, before anything an
    event holds)."""
    return head.startswith(b'{"seq":') and b',"k":1,' in head[:64]


# temporary files of killed runs: ``.checkpoint.pickle.<pid>.tmp`` and the like
_DEBRIS = re.compile(r"\..+\.(?P<pid>\d+)\.tmp")
READ_CHUNK = 256  # entries read ahead, so the keys they are sealed under are fetched together
_CRC_HEAD = b',"crc":"'
_CRC_TAIL = len(_CRC_HEAD) + 8 + 3  # ,"crc":"xxxxxxxx"}\n


def seal(body: bytes) -> bytes:
    """A log line: the entry's JSON object with its checksum (CRC-32C of the bytes before it) added last."""
    head = body[:-1]
    return head + _CRC_HEAD + b"%08x" % crc32c(head) + b'"}\n'


def intact(line: bytes, entry: dict[str, Any]) -> bool:
    """Whether a log line's bytes match its checksum. Entries written before version 3 carry none."""
    crc = entry.get("crc")
    if crc is None:
        version = entry.get("v", 1)
        return isinstance(version, int) and version < 3
    return (line[-_CRC_TAIL:-_CRC_TAIL + len(_CRC_HEAD)] == _CRC_HEAD
            and line[-_CRC_TAIL + len(_CRC_HEAD):-3] == b"%08x" % crc32c(line[:-_CRC_TAIL]))


def check_version(version: Any, where: str) -> None:
    """Refuses decisions written in a decision schema this code does not know."""
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= DECISION_SCHEMA_VERSION:
        raise LogError(f"decision log {where} is in decision schema version {version!r}, and this idres reads "
                       f"versions 1 to {DECISION_SCHEMA_VERSION}: upgrade idres to read this log")


# What a checkpoint may name: the classes of the resolver state and the customer views. Unpickling
# anything else (a function, a class of another module) is refused: a checkpoint file written by anyone
# but idres runs no code.
CHECKPOINT_CLASSES = frozenset({
    ("resolver.state", "ResolverState"), ("resolver.state", "Profile"),
    ("resolver.matching.canonical", "AttributeRecord"), ("resolver.matching.model", "MatchModel"),
    ("resolver.matching.canonical", "_CanonicalRecord"),  # (a record read back from its values: it only sets them)
    ("projections.customer", "CustomerViews"), ("projections.customer", "ProfileView"),
    ("projections.customer", "ProjectionConfig"), ("projections.runs", "Runs"), ("projections.texts", "TextRows"),
    ("array", "array"), ("array", "_array_reconstructor"),  # (an array: the events' times, ``CustomerViews.ev_at``)
})
_TRAILER = b"IDRESCRC"  # then 8 hex digits: CRC-32C of every byte before the trailer
_END = b"IDRESEND"  # before the trailer; then 16 hex digits: where the footer starts
_log = logging.getLogger("idres.storage")


class _Checked(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CHECKPOINT_CLASSES:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which no idres checkpoint holds")
        return super().find_class(module, name)


class _Summing:
    """A file wrapper that keeps the CRC-32C of what is written through it."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.crc = 0
        self.size = 0  # bytes written through it

    def write(self, data: Any) -> int:
        try:
            self.crc = crc32c(data, self.crc)
            if isinstance(data, pickle.PickleBuffer):
                with data.raw() as view:
                    self.size += view.nbytes
            else:
                self.size += len(data)
            return self.fh.write(data)
        finally:
            if isinstance(data, pickle.PickleBuffer):
                # (an array's buffer handed over as it lies: let go of it now, so that the array can grow again
                # even while a failed write's traceback is kept)
                data.release()


CHECKPOINTS = ("checkpoint.pickle", "checkpoint.prev.pickle")  # the latest, and the one before it


_bulk = threading.Lock()
_bulk_depth = 0  # blocks of bulk work under way, in any thread
_bulk_collecting = False  # whether the collector ran before the first of them


def give_back_memory() -> None:
    """Hands back to the system the memory the C allocator holds free (glibc's ``malloc_trim``; where there is none,
    nothing): called once a large structure is let go of and before the next is built, so that what the first
    left free in the middle of the heap is not still counted while the second grows."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # (the process's own C library: glibc; musl has none)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


LARGE_BLOCK = 100_000  # objects a bulk block leaves to the youngest generation, from which it hands them over
_keeping_frozen = False  # (``keep_frozen``)


def keep_frozen() -> None:
    """Puts every object of the process out of the collector's sight (``gc.freeze``), and from now on what
    each bulk block builds at its end: for a process whose state lives until it ends (a command, a server).
    Nothing the engine builds forms cycles."""
    global _keeping_frozen
    _keeping_frozen = True
    gc.freeze()


@contextlib.contextmanager
def bulk_work() -> Iterator[None]:
    """Pauses the cyclic garbage collector: folding builds millions of long-lived containers, and
    Python would otherwise rescan them over and over (and pickling them keeps every object the pickler
    makes alive until it is done). Nothing the engine builds forms cycles. Blocks may nest and overlap in
    several threads (a server's follower and its commands, a worker's executor): the collector runs again,
    if it ran before, when the last of them ends."""
    global _bulk_depth, _bulk_collecting
    with _bulk:
        if _bulk_depth == 0:
            _bulk_collecting = gc.isenabled()
            gc.disable()
        _bulk_depth += 1
    try:
        yield
    finally:
        with _bulk:
            _bulk_depth -= 1
            if _bulk_depth == 0 and _bulk_collecting:
                # What the block built lives on: the first young collection would scan all of it (0.5 s
                # after a library ingest of 50,000 records; a server's lookups waited up to 16 ms behind it
                # after each look at the log). Freezing moves lists, it scans nothing. A process that keeps
                # what it loaded frozen (``keep_frozen``: the CLI, a server) keeps this frozen too, as it
                # would next anyway; one that keeps nothing frozen gets a large block's work back in the
                # oldest generation, still collectable. (Whether anything is frozen is a walk over all of
                # it, ``gc.get_freeze_count``: asked only after a large block, and anything another part of
                # the process froze, as before a fork, is left frozen.)
                if _keeping_frozen:
                    gc.freeze()
                elif gc.get_count()[0] >= LARGE_BLOCK and gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


BULK_CHUNK = 8_192  # items of a bulk column per pickle: what it costs beyond the column while it is written


class _CheckpointPickler(pickle.Pickler):
    """Pickles a part of a checkpoint without its bulk ``columns`` (``bulk_columns``): they are written after it."""

    def __init__(self, fh: Any, part: Any, columns: dict[str, str]) -> None:
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.part, self.columns = part, columns

    def reducer_override(self, obj: Any) -> Any:
        if obj is not self.part or not self.columns:
            return NotImplemented
        return copyreg.__newobj__, (type(obj),), {k: v for k, v in vars(obj).items() if k not in self.columns}


def bulk_columns(part: Any) -> dict[str, str]:
    """A part's bulk columns, name -> ``list`` or ``dict``: the attributes its class names in ``CHECKPOINT_BULK``
    (name -> kind), large lists and dicts whose contents no other object holds (nor each other), so that a copy
    equal to them serves as well as the same objects. The pickler's memo would keep every object in them alive
    until the checkpoint is written, and its table grows with them (an ingest's peak of memory: 16 bytes a slot,
    doubled at two thirds full, the old table and the new both held while it grows); they are written without
    it, a chunk at a time. (An attribute not of its kind is pickled with the part, as any other.)"""
    found = getattr(part, "__dict__", {})
    return {name: kind for name, kind in getattr(type(part), "CHECKPOINT_BULK", {}).items()
            if type(found.get(name)).__name__ == kind}


def _bulk_chunks(part: Any, columns: dict[str, str]) -> Iterator[Iterator[list[Any]]]:
    """For each of the bulk ``columns`` of ``part``, its chunks: lists of its items (of a dict, key, value, key,
    value...)."""
    for name, kind in columns.items():
        column = getattr(part, name)
        yield _chunks(iter(column), False) if kind == "list" else _chunks(iter(column.items()), True)


def _chunks(items: Iterator[Any], pairs: bool) -> Iterator[list[Any]]:
    while chunk := list(itertools.chain.from_iterable(itertools.islice(items, BULK_CHUNK)) if pairs
                        else itertools.islice(items, BULK_CHUNK)):
        yield chunk


def _read_bulk(unpickler: pickle.Unpickler, part: Any, columns: Any) -> None:
    """Reads back the bulk columns of ``part`` that the header's ``columns`` lists; refuses a column the class
    does not name or of another kind, chunks of another shape, and a part left without one of them."""
    declared = getattr(type(part), "CHECKPOINT_BULK", {})
    if not isinstance(columns, dict) or columns and not hasattr(part, "__dict__"):
        raise pickle.UnpicklingError("its bulk columns are not listed as a mapping")
    for name, kind in columns.items():
        if declared.get(name) != kind:
            raise pickle.UnpicklingError(f"{type(part).__name__} has no bulk column {name!r} of kind {kind!r}")
        value: Any = [] if kind == "list" else {}
        while (chunk := unpickler.load()) is not None:
            if type(chunk) is not list:
                raise pickle.UnpicklingError(f"a chunk of {name} is a {type(chunk).__name__}, not a list")
            if kind == "list":
                value.extend(chunk)
            elif len(chunk) % 2 == 0:
                value.update(zip(chunk[::2], chunk[1::2]))
            else:
                raise pickle.UnpicklingError(f"a chunk of {name} holds a key without its value")
        part.__dict__[name] = value
    missing = [name for name in declared if name not in getattr(part, "__dict__", {})]
    if missing:
        raise pickle.UnpicklingError(f"{type(part).__name__} lacks {', '.join(missing)}")


def dump_part(fh: Any, part: Any) -> None:
    """Pickles to ``fh`` the part's bulk columns (``{"bulk": [columns]}``), then the part, then those columns
    without the pickler's memo, through a pickler of its own; ``load_part`` reads it back."""
    columns = bulk_columns(part)  # (what the header lists is what is written)
    pickler = _CheckpointPickler(fh, part, columns)
    try:
        pickler.dump({"bulk": [columns]})
        pickler.dump(part)
        for chunks in _bulk_chunks(part, columns):  # (without memo: what they hold that it holds is referred to)
            pickler.fast = True
            for chunk in chunks:
                pickler.dump(chunk)
            pickler.fast = False
            pickler.dump(None)
    finally:
        del pickler  # (its memo holds millions of objects: not kept by a traceback)


def load_part(unpickler: pickle.Unpickler) -> Any:
    """The part ``dump_part`` wrote, read through ``unpickler``; refuses one that does not begin with its bulk
    columns."""
    header = unpickler.load()
    if not isinstance(header, dict) or not isinstance(header.get("bulk"), list) or len(header["bulk"]) != 1:
        raise pickle.UnpicklingError("a part does not begin with its bulk columns")
    part = unpickler.load()
    _read_bulk(unpickler, part, header["bulk"][0])
    return part


class CheckpointWriter:
    """Writes a checkpoint part by part, in any order, to a temporary file, then its footer (where each part
    starts, and ``info``) and checksum trailer, and renames it into place (``commit``; no copy of it in memory).

    The file holds a header (format, entry, rules, how many parts), then each part through a pickler of its own
    (``dump_part``: the part, then its bulk columns), so that a reader can read any one part alone
    (``load_checkpoint(parts=...)``), then the footer. A part can be written and let go of before the next one is
    made: an ingest writes the resolver's state, drops it, and only then folds the views (``streams.embedded``).
    ``parts``: how many (None: the state is one object, not a tuple)."""

    def __init__(self, data_dir: Path, seq: int, fingerprint: str, parts: Optional[int]) -> None:
        self.path = Path(data_dir) / CHECKPOINTS[0]
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.offsets: list[Optional[int]] = [None] * (1 if parts is None else parts)
        self._files = contextlib.ExitStack()
        try:
            self._fh = self._files.enter_context(private_file(self.tmp, "wb", buffering=1 << 20))
            self._out = _Summing(self._fh)
            header = {"version": CHECKPOINT_VERSION, "seq": seq, "fingerprint": fingerprint, "parts": parts}
            store = _store_here(Path(data_dir))
            if store is not None:  # (the log it is a state of: a checkpoint copied to another data directory is not)
                header["store"] = store
            pickle.dump(header, self._out, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:
            self.abort()
            raise

    def write(self, index: int, part: Any) -> None:
        """Writes part ``index`` (each once)."""
        if self.offsets[index] is not None:
            raise ValueError(f"part {index} of the checkpoint is already written")
        self.offsets[index] = self._out.size
        try:
            # (the pickler's memo keeps every object it makes on the way alive: with the collector running, they
            # pile up in the oldest generation and each full collection rescans the whole state)
            with bulk_work():
                dump_part(self._out, part)
        except BaseException:
            self.abort()
            raise

    def commit(self, previous: str = "keep", info: Optional[dict[str, Any]] = None) -> None:
        """``previous``: ``keep`` the one it replaces as the previous (a restatement, ``resolver.restate``, starts
        from the latest checkpoint older than its first entry), ``leave`` the previous as it is (the one replaced is
        no longer true), or ``remove`` it (it holds what an erasure erased)."""
        if None in self.offsets:
            self.abort()
            raise ValueError("a checkpoint is committed with a part not written")
        try:
            footer = self._out.size
            pickle.dump({"offsets": self.offsets, "info": dict(info or {})}, self._out,
                        protocol=pickle.HIGHEST_PROTOCOL)
            self._out.write(_END + b"%016x" % footer)
            self._fh.write(_TRAILER + b"%08x" % self._out.crc)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._files.close()
        except BaseException:
            self.abort()
            raise
        before = self.path.with_name(CHECKPOINTS[1])
        for path in (self.path, before):
            if path.exists() and not path.is_file():
                self.abort()
                raise LogError(f"{path} is not a file, where idres keeps a checkpoint (a cache of the state, rebuilt "
                               f"from the log): remove it, then run the command again")
        if previous == "keep" and self.path.exists():
            os.replace(self.path, before)
        elif previous == "remove":
            before.unlink(missing_ok=True)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Gives up: the temporary file is closed and removed."""
        try:
            self._files.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class Spilled:
    """A part of the state put aside while something it cannot be held beside is made: written (``dump_part``) to
    a temporary file in ``directory`` that has no name (nothing is left behind if the process dies), and read
    back once (``take``), its checksum checked first."""

    def __init__(self, directory: Path, part: Any) -> None:
        import tempfile

        self.directory = directory
        self._fh: Any = tempfile.TemporaryFile(dir=directory)
        try:
            out = _Summing(self._fh)
            with bulk_work():
                dump_part(out, part)
            self._fh.flush()
            self._crc = out.crc
        except BaseException:
            self._fh.close()
            raise

    def take(self) -> Any:
        """The part, as written; the file is closed (and so removed)."""
        with self._fh:
            self._fh.seek(0)
            crc = 0
            for chunk in iter(lambda: self._fh.read(1 << 20), b""):
                crc = crc32c(chunk, crc)
            if crc != self._crc:
                raise IdresError(f"a part of the state put aside in a temporary file in {self.directory} was damaged "
                                 f"on disk (its checksum differs): check the disk, then run the command again")
            self._fh.seek(0)
            before = {cls: dict(cls.__dict__) for cls in _allowed_classes()}
            with bulk_work():
                part = load_part(_Checked(self._fh))
            _restore_classes(before)
            return part

    def close(self) -> None:
        """Gives up the part (the file is removed)."""
        self._fh.close()


def save_checkpoint(data_dir: Path, seq: int, fingerprint: str, state: Any, previous: str = "keep",
                    info: Optional[dict[str, Any]] = None) -> None:
    """Writes the state (a tuple of parts, or one object) as the checkpoint taken at entry ``seq``
    (``CheckpointWriter``; ``previous`` as its ``commit`` says)."""
    parts = state if isinstance(state, tuple) else (state,)
    writer = CheckpointWriter(data_dir, seq, fingerprint, len(parts) if isinstance(state, tuple) else None)
    for index, part in enumerate(parts):
        writer.write(index, part)
    writer.commit(previous, info)


def load_checkpoint(data_dir: Path, fingerprint: str, max_seq: int, *,
                    recount: Optional[Callable[[], int]] = None,
                    state_types: Optional[tuple[type, ...]] = None, name: str = CHECKPOINTS[0],
                    parts: Optional[int | tuple[int, ...]] = None,
                    accept: Optional[Callable[[int], bool]] = None) -> Optional[tuple[int, Any]]:
    """The cached state if it is usable (intact, same format and rules), else None, saying why when it
    is damaged. Raises ``LogError`` when it was taken at a later entry than the log has: the log lost
    entries. ``recount``: for a reader, the log's length counted again (a writer may have appended and
    saved the checkpoint since the log was opened). ``state_types``: the state must be a tuple of
    instances of these, in order. ``name``: which of ``CHECKPOINTS``. ``parts``: of a tuple, only the first
    ``parts`` are read (the rest is not unpickled; the tuple given back is that long); 0 reads only the header
    (``checkpoint_header``); a tuple of indexes reads those parts alone, in that order. ``accept``: given the entry
    it was taken at, whether it is the one wanted (None, without its parts read, if not)."""
    loaded = _read_checkpoint(Path(data_dir) / name, fingerprint, parts, accept)
    if loaded is None:
        return None
    header, state = loaded
    indexes = parts if isinstance(parts, tuple) else range(len(state) if isinstance(state, tuple) else 0)
    if state_types is not None and not (isinstance(state, tuple) and header["parts"] == len(state_types) and all(
            isinstance(part, state_types[i]) for part, i in zip(state, indexes))):
        _unused("idres: warning: %s is not used: it does not hold the state of this version; the state is "
                "rebuilt from the log", Path(data_dir) / name)
        return None
    seq = header["seq"]
    if seq > max_seq and recount is not None:
        max_seq = recount()
    if seq > max_seq:
        raise checkpoint_ahead(data_dir, max_seq, seq)
    return seq, state


_SAID: set[tuple[str, int, int]] = set()  # (checkpoints found not used in this process, as each file then was)


def _unused(message: str, path: Path, *args: Any) -> None:
    """Says that the checkpoint ``path`` is not used, once for the file as it is (a command reads one in several
    parts: said for each, the same line came three times); said again once the file is another."""
    line = message % (path, *args)
    try:
        found = os.stat(path)
        seen = (line, found.st_size, found.st_mtime_ns)
    except OSError:
        seen = (line, -1, -1)
    if seen not in _SAID:
        if len(_SAID) > 1000:
            _SAID.clear()
        _SAID.add(seen)
        _log.warning("%s", line)


def checkpoint_ahead(data_dir: Path, length: int, seq: int) -> LogError:
    """The error of a log of ``length`` entries with a checkpoint taken at a later entry ``seq``: the log
    lost entries."""
    return LogError(f"the decision log in {Path(data_dir)} has {length:,} entries but the checkpoint was taken "
                    f"at entry {seq:,}: entries are missing from the log{RESTORE} (or delete checkpoint.pickle "
                    "to accept the shorter log)")


def checkpoint_header(data_dir: Path, fingerprint: str, name: str = CHECKPOINTS[0]) -> Optional[dict[str, Any]]:
    """The header of a usable checkpoint (``seq``, ``info``, ...) without reading its state, else None; the
    whole file's checksum is checked all the same."""
    loaded = _read_checkpoint(Path(data_dir) / name, fingerprint, 0)
    return None if loaded is None else loaded[0]


def _read_checkpoint(path: Path, fingerprint: str, parts: Optional[int | tuple[int, ...]],
                     accept: Optional[Callable[[int], bool]] = None) -> Optional[tuple[dict[str, Any], Any]]:
    """(header, state) of an intact checkpoint of this format and these rules, else None (saying why when
    it is damaged); ``parts`` and ``accept`` as ``load_checkpoint`` says. The header's ``info`` is the
    footer's."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    except OSError as exc:  # (a directory, one it may not read: a cache it cannot use)
        _unused("idres: warning: %s is not used: it cannot be read as a file (%s); the state is rebuilt from "
                "the log", path, exc.strerror or exc)
        return None
    header: Any = None
    state: Any = None
    refused = False
    with fh:
        problem = _damage(fh)
        if problem is None:
            fh.seek(0)
            before = {cls: dict(cls.__dict__) for cls in _allowed_classes()}
            try:
                header = _Checked(fh).load()
                usable = _usable(header, fingerprint)
                here = _store_here(path.parent) if usable else None
                if here is not None and header.get("store") not in (None, here):
                    problem = (f"it holds the state of another data directory's decision log (key store "
                               f"{header['store']}; this one's is {here}): it was copied here")
                elif usable:
                    footer = _footer(fh, header)
                    header = {**header, "info": footer["info"]}
                    if accept is not None and not accept(header["seq"]):
                        parts, refused = 0, True  # (not the one wanted: its parts are not read)
                    stored = header["parts"]
                    count = 1 if stored is None else stored
                    if isinstance(parts, tuple):
                        wanted = list(parts)
                        if not all(isinstance(i, int) and 0 <= i < count for i in wanted):
                            raise ValueError(f"parts {parts} asked of a checkpoint of {count}")
                    else:
                        wanted = list(range(count if parts is None else min(parts, count)))
                    loaded = []
                    for index in wanted:
                        fh.seek(footer["offsets"][index])
                        loaded.append(load_part(_Checked(fh)))
                    if stored is not None:
                        state = tuple(loaded)
                    elif loaded:
                        state = loaded[0]
            except Exception as exc:
                problem = f"it cannot be read ({type(exc).__name__}: {exc})"
            changed = _restore_classes(before)
            if changed:
                problem = f"it changes the class(es) {', '.join(changed)} (it was not written by idres)"
    if problem is not None:
        _unused("idres: warning: %s is not used: %s; the state is rebuilt from the log", path, problem)
        return None
    if not _usable(header, fingerprint) or refused:
        _other_rules(path, header, fingerprint)
        return None  # another format or other rules: rebuilt from the log (or one ``accept`` refused)
    return header, state


def _other_rules(path: Path, header: Any, fingerprint: str) -> None:
    """Says, once per data directory and rules, that its checkpoint was written under other resolver rules (a
    --config left out, or another one): the state is rebuilt from the log, and every event from now on is
    decided under the rules given, silently otherwise."""
    if not isinstance(header, dict) or not isinstance(header.get("fingerprint"), str):
        return
    was, now = header["fingerprint"].split(":"), fingerprint.split(":")
    if len(was) < 2 or len(now) < 2 or was[0] != now[0] or was[1] == now[1]:
        return  # (another format: an upgrade rebuilds; or the same rules)
    said = (str(path.parent), was[1], now[1])
    if said in _SAID:
        return
    _SAID.add(said)
    _log.warning("idres: warning: %s was decided under other rules (config %s; these are %s): the state is rebuilt "
                 "from the log, and events from now on are decided under these; give the --config it was decided "
                 "with to keep its rules", path.parent, was[1], now[1])


def _footer(fh: Any, header: dict[str, Any]) -> dict[str, Any]:
    """The footer of a checkpoint whose checksum holds: where each part starts, and ``info``."""
    size = os.fstat(fh.fileno()).st_size - len(_TRAILER) - 8
    fh.seek(size - len(_END) - 16)
    end = fh.read(len(_END) + 16)
    if end[:len(_END)] != _END:
        raise pickle.UnpicklingError("it has no footer")
    at = int(end[len(_END):], 16)
    fh.seek(at)
    footer = _Checked(fh).load()
    count = 1 if header["parts"] is None else header["parts"]
    if not (isinstance(footer, dict) and isinstance(footer.get("info"), dict)
            and isinstance(footer.get("offsets"), list) and len(footer["offsets"]) == count
            and all(type(o) is int and 0 < o < at for o in footer["offsets"])):
        raise pickle.UnpicklingError("its footer is not one of a checkpoint")
    return footer


def _usable(header: Any, fingerprint: str) -> bool:
    """A checkpoint header of this format and these rules, well formed."""
    if not isinstance(header, dict) or header.get("version") != CHECKPOINT_VERSION:
        return False
    seq, parts = header.get("seq"), header.get("parts")
    return (header.get("fingerprint") == fingerprint and isinstance(seq, int) and seq >= 0
            and (parts is None or isinstance(parts, int) and parts >= 0))


def _allowed_classes() -> list[type]:
    import importlib

    found = (getattr(importlib.import_module(module), name) for module, name in sorted(CHECKPOINT_CLASSES))
    return [obj for obj in found if isinstance(obj, type)]  # (not the array module's function)


def _restore_classes(before: dict[type, dict[str, Any]]) -> list[str]:
    """Puts back any attribute of an allowed class that unpickling changed (pickle's BUILD can set
    attributes on a class object); returns the names of the classes that were changed."""
    changed = []
    for cls, attrs in before.items():
        now = dict(cls.__dict__)
        if now == attrs:
            continue
        changed.append(f"{cls.__module__}.{cls.__qualname__}")
        for key in now.keys() - attrs.keys():
            delattr(cls, key)
        for key, value in attrs.items():
            if key not in ("__dict__", "__weakref__", "__doc__") and now.get(key) is not value:
                try:
                    setattr(cls, key, value)
                except (AttributeError, TypeError):
                    pass
    return changed


def _damage(fh: Any) -> Optional[str]:
    """Why a checkpoint file's bytes are not what was written, or None."""
    size = os.fstat(fh.fileno()).st_size
    tail = len(_TRAILER) + 8
    if size < tail:
        return "it is too short to be a checkpoint"
    fh.seek(size - tail)
    trailer = fh.read(tail)
    if trailer[:len(_TRAILER)] != _TRAILER:
        return "it has no checksum (written by another version, or cut short)"
    fh.seek(0)
    crc, left = 0, size - tail
    while left:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            return "it is shorter than when it was read"
        crc = crc32c(chunk, crc)
        left -= len(chunk)
    if b"%08x" % crc != trailer[len(_TRAILER):]:
        return "its bytes do not match its checksum (damaged)"
    return None
