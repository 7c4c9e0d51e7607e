"""The embedded decision log: append-only JSON-lines segments in a local data directory.

Layout of ``DATA_DIR``::

    log/00000000000000000000.jsonl   one entry per line: {"seq": N, "v": 3, "decisions": [...]}
    log/00000000000001000000.jsonl   a new segment every ``segment_entries`` entries
    checkpoint.pickle                a cache of the folded state at some seq (never the truth)
    LOCK                             held by the one process that writes

Durability: ``append`` writes whole lines, flushes and fsyncs before returning. A crash can leave a
torn last line; opening the log cuts it off (that entry was never acknowledged). Every entry carries
its ``seq``, checked on read, so a damaged log is reported instead of folded wrongly, and the version
of the decision schema it was written in (``v``; 1 when absent): a newer version than this code reads is
refused with an error, never folded as if it were known.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path
from typing import Any, Iterator, Optional

import orjson

from resolver.errors import IdresError
from schemas.decisions import DECISION_SCHEMA_VERSION

SEGMENT_ENTRIES = 1_000_000
CHECKPOINT_VERSION = 1


class LogError(IdresError):
    pass


def _segment_name(start: int) -> str:
    return f"{start:020d}.jsonl"


class DecisionLog:
    def __init__(self, data_dir: str | Path, *, writer: bool = True, segment_entries: int = SEGMENT_ENTRIES):
        self.dir = Path(data_dir)
        self.log_dir = self.dir / "log"
        self.segment_entries = segment_entries
        self._lock_fd: Optional[int] = None
        self._fh = None
        if writer:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise LogError(f"another idres process is writing to {self.dir}; wait for it to finish") from None
        elif not self.log_dir.is_dir():
            raise LogError(f"no decision log in {self.dir}: run `idres ingest FILE --data-dir {self.dir}` first")
        self._segments = sorted(int(p.stem) for p in self.log_dir.glob("*.jsonl")) if self.log_dir.is_dir() else []
        self._length = 0
        self._tail_end = 0  # bytes of the last segment counted: the end of its last complete line
        self._hint: Optional[tuple[int, int, int]] = None  # (seq, segment, byte offset where that entry starts)
        if self._segments:
            last = self._segments[-1]
            self._length = last + self._count_and_repair(self.log_dir / _segment_name(last), repair=writer)

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
        return data.count(b"\n")

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
        segments = sorted(int(p.stem) for p in self.log_dir.glob("*.jsonl")) if self.log_dir.is_dir() else []
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
        out = []
        seq = self._length
        for decisions in batches:
            if seq % self.segment_entries == 0 or self._fh is None:
                self._write(out)
                out = []
                self._open_segment(seq)
            out.append(orjson.dumps({"seq": seq, "v": DECISION_SCHEMA_VERSION, "decisions": decisions},
                                    option=orjson.OPT_APPEND_NEWLINE))
            seq += 1
        self._write(out)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._length = seq
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
        self._fh = open(path, "ab", buffering=1 << 20)
        self._fh_start = start
        if new:
            if start not in self._segments:
                self._segments.append(start)
            dir_fd = os.open(self.log_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _write(self, lines: list[bytes]) -> None:
        if lines and self._fh is not None:
            self._fh.write(b"".join(lines))

    def read(self, start: int = 0, end: Optional[int] = None) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Entries ``(seq, decisions)`` from ``start`` up to the length at call time."""
        end = self._length if end is None else min(end, self._length)
        expected = start
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
                        try:
                            entry = orjson.loads(line)
                        except orjson.JSONDecodeError:
                            raise LogError(f"decision log entry {pos} in {fh.name} is damaged") from None
                        if entry.get("seq") != expected:
                            raise LogError(f"decision log out of order in {fh.name}: found entry "
                                           f"{entry.get('seq')} where {expected} belongs")
                        check_version(entry.get("v", 1), f"entry {expected} of {fh.name}")
                        yield expected, entry["decisions"]
                        expected += 1
                    pos += 1
        if expected < end:
            raise LogError(f"decision log ends at entry {expected}, expected {end}: a segment is missing")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "DecisionLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_version(version: Any, where: str) -> None:
    """Refuses decisions written in a decision schema this code does not know."""
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= DECISION_SCHEMA_VERSION:
        raise LogError(f"decision log {where} is in decision schema version {version!r}, and this idres reads "
                       f"versions 1 to {DECISION_SCHEMA_VERSION}: upgrade idres to read this log")


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(data_dir: Path, seq: int, fingerprint: str, state: Any) -> None:
    """Streams the state to a temporary file and renames it into place (no copy of it in memory)."""
    path = Path(data_dir) / "checkpoint.pickle"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb", buffering=1 << 20) as fh:
        pickle.dump({"version": CHECKPOINT_VERSION, "seq": seq, "fingerprint": fingerprint, "state": state}, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(data_dir: Path, fingerprint: str, max_seq: int) -> Optional[tuple[int, Any]]:
    """The cached state if it is usable (same format and rules, not ahead of the log), else None."""
    path = Path(data_dir) / "checkpoint.pickle"
    try:
        with open(path, "rb") as fh:
            blob = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception:
        return None
    if (not isinstance(blob, dict) or blob.get("version") != CHECKPOINT_VERSION
            or blob.get("fingerprint") != fingerprint or not 0 <= blob.get("seq", -1) <= max_seq):
        return None
    return blob["seq"], blob["state"]
