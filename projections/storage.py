"""Files in a data directory: created owner-only (they hold personal data), and the temporary files of
killed runs cleaned up by the next one."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from resolver.errors import ConfigError

_OCTAL = re.compile(r"(0o|0)?([0-7]{3})")
DEBRIS_MIN_AGE = 3600.0  # seconds: a temporary file whose writer cannot be told is removed when this old


def file_mode(environ: Optional[Mapping[str, str]] = None) -> int:
    """``$IDRES_FILE_MODE``: the permissions of the files idres creates in a data directory and of its
    snapshots, an octal mode such as 640; by default 600, the owner only."""
    raw = (os.environ if environ is None else environ).get("IDRES_FILE_MODE", "").strip().lower()
    if not raw:
        return 0o600
    m = _OCTAL.fullmatch(raw)
    mode = int(m.group(2), 8) if m else 0
    if not m or mode & 0o600 != 0o600:
        raise ConfigError(f"IDRES_FILE_MODE={raw!r}: expected an octal file mode that lets the owner read and "
                          "write, such as 600 or 640")
    if mode & 0o002:  # (anyone on the machine could then rewrite the decision log or read whose data it holds)
        raise ConfigError(f"IDRES_FILE_MODE={raw!r}: lets every user of the machine write the data directory's "
                          "files; give a mode without write for others, such as 600, 640 or 660")
    return mode & 0o666


def private_file(path: Path, mode: str = "wb", buffering: int = -1) -> Any:
    """Opens a new file (truncating an old one) with the permissions of ``file_mode``, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    perms = file_mode()
    fd = os.open(path, flags, perms)
    os.fchmod(fd, perms)
    return os.fdopen(fd, mode, buffering)


def replaceable(path: Path, what: str = "file", magic: Optional[tuple[int, bytes]] = None) -> None:
    """Raises ``IdresError`` unless ``path`` can be written by renaming a new file over it: it does not exist, or
    is a regular file (renaming over a device or a pipe would replace it with a file) that, with ``magic``
    (offset, bytes), already holds such a file (an empty file too): an earlier output, not something else."""
    from resolver.errors import IdresError

    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise IdresError(f"{path} is a directory: give the path of a {what}, e.g. {path / ('out' + path.suffix)}")
    if not stat.S_ISREG(st.st_mode):
        raise IdresError(f"{path} is not a regular file (a device, pipe or socket): give the path of a {what}")
    if magic is not None and st.st_size:
        offset, expected = magic
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                found = fh.read(len(expected))
        except OSError:
            return  # (what cannot be read is found out when written)
        if found != expected:
            raise IdresError(f"{path} exists and is not a {what}: idres does not overwrite it; remove it or give "
                             "another path")


def sync_directory(directory: Path) -> None:
    """Makes the names in ``directory`` durable (a file created, renamed or removed there survives a crash)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, private (``private_file``), written under a temporary name, synced, then
    renamed over it: a reader sees the old file or the new one, never half of one."""
    replaceable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with private_file(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started(pid: int) -> Optional[float]:
    """When process ``pid`` started, in seconds since the epoch, where ``/proc`` says (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # (field 22, starttime: clock ticks after boot)
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _left_by(pid: int, modified: float) -> bool:
    """Whether the live process ``pid`` can have left an entry last modified at ``modified``: not one that
    started after it (the number of a writer long gone, given to another process since)."""
    if not _alive(pid):
        return False
    started = _started(pid)
    return started is None or started <= modified + 2.0  # (the boot time is read to the second)


def remove_debris(directory: Path, pattern: re.Pattern[str]) -> list[str]:
    """Removes the entries of ``directory`` whose names match ``pattern`` and were left by a process that
    is gone (or whose number a process started since has): the pattern's group ``pid`` names the writer; an entry
    without one is removed when older than ``DEBRIS_MIN_AGE``. Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        pid = m.groupdict().get("pid")
        try:
            if pid is not None and pid.isdigit():
                if _left_by(int(pid), entry.stat(follow_symlinks=False).st_mtime):
                    continue
            elif now - entry.stat(follow_symlinks=False).st_mtime < DEBRIS_MIN_AGE:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            continue
    return removed
