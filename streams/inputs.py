"""Opening the files idres reads: channel events as JSON lines, and ground-truth CSVs.

One opener serves ``idres ingest``, ``idres train`` and ``idres produce``, so the three accept the same
shapes and refuse the same mistakes, each with one line that says what to do:

- gzip-compressed input is read as it is, recognized by its first bytes (1f 8b), not by its name,
  standard input included;
- a UTF-8 byte-order mark at the start is skipped;
- a file holding one JSON array, JSON spread over several lines, UTF-16 text, another compression or an
  archive, or a directory is refused before anything is read from it (each would otherwise give one
  rejected record per line, or none).

Positions stay what they were: a line number counts the lines of the text itself (decompressed, the
mark not part of line 1), so reading the same file again, compressed or not, gives every record the
same source position and the same key, and a re-read is recognized.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shlex
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Optional

from resolver.errors import IdresError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
SNIFF_LIMIT = 1 << 16  # bytes looked at, at most, to tell the shape of the text
_SPACE = b" \t\r\n"
_OR_GZIP = "or compress it with gzip, which idres reads"
_REFUSED_MAGIC = (  # (first bytes, what it is, what to do)
    (b"PK\x03\x04", "a zip archive", "unzip it and give the JSON-lines file inside"),
    (b"BZh", "bzip2-compressed", f"decompress it first (bunzip2 -k FILE), {_OR_GZIP}"),
    (b"\xfd7zXZ\x00", "xz-compressed", f"decompress it first (xz -dk FILE), {_OR_GZIP}"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", f"decompress it first (zstd -d FILE), {_OR_GZIP}"),
)


class InputError(IdresError):
    """An input file that idres cannot read as it is; the message says what to do."""


def _label(name: Any) -> str:
    return "standard input" if str(name) in ("-", "<stdin>", "stdin") else str(name)


def check_path(path: str | os.PathLike, what: str = "a JSON-lines file") -> Path:
    """The path of an input file, or InputError when it is missing or a directory."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a directory; give {what}")
    if not p.exists():
        raise InputError(f"input file {p} not found; give {what}")
    return p


class _Rewound(io.RawIOBase):
    """A stream that gives ``head`` (already read from ``src``) again, then the rest of ``src``. Reads
    return what is available, so a live pipe is not held back."""

    def __init__(self, head: bytes, src: Any):
        self._head = head
        self._read1 = getattr(src, "read1", None) or src.read

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read1(len(b))
        n = len(data)
        b[:n] = data
        return n


_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _read_head(stream: Any, enough: Callable[[bytes], bool]) -> tuple[bytes, Optional[Exception]]:
    """The first bytes of ``stream``, until ``enough`` of them; and the gzip error that cut them short."""
    read = getattr(stream, "read1", None) or stream.read
    head = b""
    try:
        while len(head) < SNIFF_LIMIT and not enough(head):
            chunk = read(SNIFF_LIMIT - len(head))
            if not chunk:
                break
            head += chunk
    except _GZIP_ERRORS as exc:
        return head, exc
    return head, None


def _has_first_line(head: bytes) -> bool:
    """Enough to judge the text: its first non-blank line, whole; and for one that begins ``[`` (one JSON array,
    or JSON lines whose first record is an array: ``_a_record_of_lines``), the start of what follows it (a pipe
    may give the first line alone first)."""
    body = head[len(UTF8_BOM):] if head.startswith(UTF8_BOM) else head
    start = len(body) - len(body.lstrip(_SPACE))
    if start >= len(body) or b"\n" not in body[start:]:
        return False
    return body[start:start + 1] != b"[" or bool(body[start:].split(b"\n", 1)[1].strip(_SPACE))


def _object_over_lines(text: bytes, most: int = 200) -> bool:
    """Whether ``text`` begins with one JSON object written over several lines, its first line not one by itself
    (an example copied as it was laid out for reading: ``{"event_id": ...,`` then the rest on the lines after)."""
    import orjson

    lines = text.split(b"\n", most)
    if not lines[0].lstrip().startswith(b"{") or len(lines) < 2:
        return False
    try:
        orjson.loads(lines[0])
        return False
    except orjson.JSONDecodeError:
        pass
    for n in range(2, min(len(lines), most) + 1):
        try:
            return isinstance(orjson.loads(b"\n".join(lines[:n])), dict)
        except orjson.JSONDecodeError:
            continue
    return False


def _jsonl_name(label: str) -> str:
    p = Path(label)
    if p.suffix == ".gz":
        p = p.with_suffix("")
    target = p.with_suffix(".jsonl")
    if p.suffix == ".jsonl" or target == Path(label):
        target = p.with_name(p.stem + ".lines.jsonl")
    return str(target)


_BLANKS = b" \t\r\x0b\x0c"
CUT = b"\x1a"  # the last byte of a line cut short as it was read (``InputStream.max_line``): no text ends so


class InputStream:
    """The lines of one input (bytes, line breaks kept), after the shape checks above.

    ``compressed`` says whether it was gzip; ``consumed()`` is how many bytes of the file itself (the
    compressed bytes of a gzip file) have been read, or None when that cannot be known (a pipe).
    ``error`` is set when gzip data ends early or is corrupt: the lines before it were given, and
    iteration ended there.
    """

    def __init__(self, fh: BinaryIO, name: Any = "-", *, json_lines: bool = True, close: bool = False,
                 max_line: Optional[int] = None):
        self.label = _label(name)
        # a longer line is given cut to this many bytes, the rest of it read past and let go of (one line of a
        # gigabyte, a file's tail of NULs after a crash, was held whole): what is too large to be a record
        self.max_line = max_line
        self.compressed = False
        self.bom = False
        self.error: Optional[str] = None
        self._cut: Optional[Exception] = None  # a gzip error met while reading the head
        self._origin: Optional[int] = None  # where the file stood when opened here (None: not seekable)
        self._base = fh
        self._close = close
        try:
            self.lines = self._open(fh, json_lines)
        except BaseException:
            self.close()
            raise

    def _open(self, fh: BinaryIO, json_lines: bool) -> BinaryIO:
        try:
            seekable = fh.seekable()
            start = fh.tell() if seekable else 0
        except (AttributeError, OSError, ValueError):
            seekable = False
        self._origin = start if seekable else None
        head, _ = _read_head(fh, lambda h: len(h) >= 6 and _has_first_line(h))
        if seekable:
            fh.seek(start)
            stream: Any = fh
        else:
            stream = io.BufferedReader(_Rewound(head, fh), buffer_size=1 << 16)
        if head.startswith(GZIP_MAGIC):
            self.compressed = True
            gz = gzip.GzipFile(fileobj=stream, mode="rb")
            head, self._cut = _read_head(gz, _has_first_line)
            if self._cut is not None and not head:
                raise InputError(f"{self.label} starts like gzip data but cannot be decompressed ({self._cut}): "
                                 f"give a complete .gz file, or the JSON-lines file itself")
            if self._cut is not None:  # the text ends at the last whole line before the data broke
                head, rest = head[:head.rfind(b"\n") + 1], io.BytesIO()
            else:
                rest = gz
            stream = io.BufferedReader(_Rewound(head, rest), buffer_size=1 << 16)
        else:
            for magic, what, todo in _REFUSED_MAGIC:
                if head.startswith(magic):
                    raise InputError(f"{self.label} is {what}: {todo.replace('FILE', self._src())}")
        self._check_text(head, json_lines)
        if head.startswith(UTF8_BOM):
            self.bom = True
            stream.read(len(UTF8_BOM))
        return stream

    def _src(self) -> str:
        return "FILE" if self.label == "standard input" else shlex.quote(self.label)

    def _check_text(self, head: bytes, json_lines: bool) -> None:
        src = self._src()
        out = shlex.quote(_jsonl_name("FILE" if self.label == "standard input" else self.label))
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            convert = f"gunzip -c {src} | iconv -f UTF-16 -t UTF-8" if self.compressed else \
                f"iconv -f UTF-16 -t UTF-8 {src}"
            raise InputError(f"{self.label} is UTF-16 text; idres reads UTF-8: convert it, e.g. {convert} > {out}")
        if not json_lines:
            return
        body = head[len(UTF8_BOM):] if head.startswith(UTF8_BOM) else head
        text = body.lstrip(_SPACE)
        jq = (lambda f: f"gunzip -c {src} | jq -c {f}") if self.compressed else (lambda f: f"jq -c {f} {src}")
        if text.startswith(b"[") and not _a_record_of_lines(text):
            elements = "'.[]'"
            raise InputError(f"{self.label} holds one JSON array, not JSON lines (one event per line): "
                             f"convert it, e.g. {jq(elements)} > {out}")
        if (text.split(b"\n", 1)[0].strip() == b"{" and b"\n" in text) or _object_over_lines(text):
            raise InputError(f"{self.label} holds JSON spread over several lines, not JSON lines (one event "
                             f"per line): convert it, e.g. {jq('.')} > {out}")

    def consumed(self) -> Optional[int]:
        """Bytes of the file read since it was opened here (the shape check's look ahead included)."""
        if self._origin is None:
            return None
        try:
            return self._base.tell() - self._origin
        except (AttributeError, OSError, ValueError):
            return None

    def __iter__(self) -> Iterator[bytes]:
        if not self.compressed:
            return iter(self.lines) if self.max_line is None else self._bounded()
        return self._guarded()

    def _bounded(self) -> Iterator[bytes]:
        """The lines, each cut to ``max_line`` bytes (the rest of a longer one read in pieces and dropped)."""
        if self.max_line is None:
            yield from self.lines
            return
        limit, readline = self.max_line, self.lines.readline
        while True:
            line = readline(limit)
            if not line:
                return
            if len(line) == limit and not line.endswith(b"\n"):
                # (blanks before a record are no part of it: what is held is its first bytes after them)
                line = line.lstrip(_BLANKS)
                while len(line) < limit and not line.endswith(b"\n"):
                    more = readline(limit - len(line))
                    if not more:
                        break
                    line = (line + more) if line else more.lstrip(_BLANKS)
                if len(line) < limit or line.endswith(b"\n"):
                    yield line  # (it ended within the limit, once its blanks were let go of)
                    continue
                while True:  # (the rest of it)
                    rest = readline(1 << 16)
                    if not rest or rest.endswith(b"\n"):
                        break
                line = line[:limit - 1] + CUT  # (said too large whatever is stripped of it: ``schemas.channel``)
            yield line

    def _guarded(self) -> Iterator[bytes]:
        n = 0
        cut = self._cut
        try:
            for line in self._bounded():
                n += 1
                yield line
        except _GZIP_ERRORS as exc:
            cut = exc
        if cut is not None:
            self.error = (f"{self.label}: the gzip data ends early or is corrupt after line {n:,} "
                          f"({cut or type(cut).__name__})")

    def close(self) -> None:
        if self._close:
            self._base.close()

    def __enter__(self) -> "InputStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(name: str | os.PathLike, stdin: Optional[BinaryIO] = None, *,
               json_lines: bool = True, what: str = "a JSON-lines file", max_line: Optional[int] = None) -> InputStream:
    """Opens a file (``-``: ``stdin``) for reading lines, after the shape checks; raises InputError.
    ``json_lines`` False skips the checks that only JSON lines need; ``what`` names the file expected;
    ``max_line``: as ``InputStream`` takes it."""
    if str(name) == "-":
        if stdin is None:
            import sys

            stdin = sys.stdin.buffer
        return InputStream(stdin, "-", json_lines=json_lines, max_line=max_line)
    path = check_path(name, what)
    return InputStream(open(path, "rb"), str(name), json_lines=json_lines, close=True, max_line=max_line)


def check_input(name: str | os.PathLike, **kwargs: Any) -> None:
    """Raises InputError now for a file ``open_input`` would refuse. Only a regular file is read to check
    its shape (reading a pipe, such as ``<(zcat ...)``, would lose what was read); ``-`` is not checked."""
    if str(name) == "-":
        return
    path = check_path(name, kwargs.get("what", "a JSON-lines file"))
    if path.is_file():
        open_input(path, **kwargs).close()


class ProgressMeter:
    """Tells a progress callback how many bytes of the input were consumed since it was last told: the
    bytes of the file itself where the input can say (compressed bytes of a gzip file), else the bytes
    of the lines counted with ``add``."""

    def __init__(self, lines: Any, callback: Optional[Callable[[int], None]]):
        self.callback = callback
        measure = getattr(lines, "consumed", None) if isinstance(lines, InputStream) else None
        self._measure = measure if measure is not None and measure() is not None else None
        self._last = 0
        self._counted = 0

    def add(self, n: int) -> None:
        self._counted += n

    def report(self, final: bool = False) -> None:
        """Tells the callback the bytes consumed since it was last told (``final``: at the end, the same)."""
        if self.callback is None:
            return
        if self._measure is not None:
            now = self._measure()
            n, self._last = now - self._last, now
        else:
            n = self._counted
        self._counted = 0
        if n:
            self.callback(n)


def as_input(lines: Any, name: Any = None, max_line: Optional[int] = None) -> Any:
    """``lines`` itself when it is an InputStream or a plain iterable of lines; a binary file object
    (``sys.stdin.buffer``, an open file) is opened with the shape checks (``max_line``: as ``InputStream``)."""
    if isinstance(lines, InputStream) or not hasattr(lines, "read"):
        return lines
    return InputStream(lines, name if name is not None else getattr(lines, "name", "-"), max_line=max_line)


# ------------------------------------------------------------------------------------------ truth
def read_truth_file(path: str | os.PathLike) -> dict[str, str]:
    """A ground-truth CSV, event ID -> person ID: a header line naming the columns ``event_id`` and
    ``person_id`` (in any position; other columns are ignored), then one row per event. Raises
    InputError, naming the line, when the file has another shape."""
    label = str(path)
    with open_input(path, json_lines=False, what="the truth CSV (event_id,person_id)") as inp:
        text = io.TextIOWrapper(inp.lines, encoding="utf-8", errors="strict", newline="")
        reader = csv.reader(text)
        try:
            header = next((row for row in reader if any(c.strip() for c in row)), None)
            if header is None:
                raise InputError(f"{label} is empty: give the truth CSV of the events you ingested, "
                                 f"with the header event_id,person_id")
            names = [c.strip().lower() for c in header]
            if "event_id" not in names or "person_id" not in names:
                first = ",".join(header).lstrip()
                if first.startswith(("{", "[")):
                    raise InputError(f"{label} holds JSON (an events file?), not a truth CSV: give the truth "
                                     f"file of the events you ingested, a CSV with the header event_id,person_id "
                                     f"(`idres generate --truth` writes one)")
                raise InputError(f"{label} is not a truth CSV: its first line should be a header naming the "
                                 f"columns event_id and person_id, not {first[:60]!r}; add the header, or give "
                                 f"the right file")
            ei, pi = names.index("event_id"), names.index("person_id")
            need = max(ei, pi) + 1
            truth: dict[str, str] = {}
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                where = f"{label}:{reader.line_num}"
                if len(row) < need:
                    raise InputError(f"{where}: expected {need} columns as in the header, found {len(row)}; "
                                     f"fix the line")
                event_id, person_id = row[ei].strip(), row[pi].strip()
                if not event_id or not person_id:
                    raise InputError(f"{where}: an empty event_id or person_id; fix the line")
                previous = truth.setdefault(event_id, person_id)
                if previous != person_id:
                    raise InputError(f"{where}: event {event_id!r} is given to {previous!r} and to "
                                     f"{person_id!r}; keep one")
        except UnicodeDecodeError:
            raise InputError(f"{label} is not UTF-8 text: give the truth CSV (event_id,person_id) "
                             f"in UTF-8") from None
        except csv.Error as exc:
            raise InputError(f"{label}:{reader.line_num}: not CSV ({exc}); give the truth CSV "
                             f"(event_id,person_id)") from None
    if inp.error:
        raise InputError(f"{inp.error}; give a complete copy of the truth file")
    return truth


MIN_OVERLAP = 0.5  # below this share on both sides, a truth file is taken for another data set's


def truth_overlap(predicted: Mapping[str, Any], truth: Mapping[str, Any], truth_label: str,
                  log_label: str) -> tuple[list[str], dict[str, int], Optional[str]]:
    """The events to score (those in both), the counts, and a warning when either side has events the
    other lacks. Raises InputError when they share no event, or under half of each side's events:
    then the truth file is not the one of the ingested events."""
    common = [e for e in truth if e in predicted]
    n, t, p = len(common), len(truth), len(predicted)
    counts = {"events_scored": n, "truth_events_not_in_log": t - n, "log_events_not_in_truth": p - n}
    if n == 0:
        raise InputError(f"none of the {t:,} events in {truth_label} is in the log of {log_label} "
                         f"({p:,} events): give the truth file of the events you ingested")
    if n < MIN_OVERLAP * t and n < MIN_OVERLAP * p:
        raise InputError(f"only {n:,} of the {t:,} events in {truth_label} are in the log of {log_label}, "
                         f"and they are {n:,} of its {p:,} events: this truth file is probably another data "
                         f"set's; give the truth file of the events you ingested")
    warning = None
    if n < t or n < p:
        warning = (f"scoring only the {n:,} events found in both: {t - n:,} of the {t:,} events in "
                   f"{truth_label} are not in the log, and {p - n:,} of the log's {p:,} events are not "
                   f"in the truth file")
    return common, counts, warning


def _a_record_of_lines(text: bytes) -> bool:
    """Whether ``text`` (the start of a file that begins with ``[``) is JSON lines whose first record is an array:
    its first line is a whole JSON value and another record follows. (A JSON array written over several lines
    begins with a line that is not; one written on one line is the whole file.)"""
    import orjson

    first, _, rest = text.partition(b"\n")
    if not rest.strip():
        return False
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True
