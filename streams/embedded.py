"""The embedded driver: raw JSON lines in, decisions durably logged, projections folded. No server.

It drives the same ``Resolver`` and ``CustomerViews`` as the Kafka driver. Order of work per batch:
decide (the resolver applies its own decisions in memory), append the batch to the log with fsync,
then fold it into the views. A crash loses only the unlogged tail of the batch; re-reading the input
is safe because a raw event whose ID is already decided is a no-op, and a rejected record is keyed
by its input (a file by its first 64 KiB, not its name), its line and its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import re
import time
import unicodedata
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Optional

import orjson

from projections.customer import CustomerViews, ProjectionConfig, canonical
from projections.storage import sync_directory, write_atomic
from projections.times import iso, logged_micros
from resolver import clear_caches, epochs, restate
from resolver.restate import RESTATE_TYPES
from resolver.config import ResolverConfig
from resolver.decisions import erasure_of, record_of
from resolver.engine import RECORD_TYPE, Resolver, ResolverState, utc_iso
from streams.commands import command_of, decide
from streams.entry_spool import EntrySpool, SpoolError
from streams.inputs import InputStream, as_input, open_input
from streams.log import (CHECKPOINTS, CheckpointWriter, DecisionLog, LogError, Spilled, bulk_work, checkpoint_ahead,
                         checkpoint_header, give_back_memory, load_checkpoint, open_restatements, save_checkpoint)
from streams.sealing import erasure_subjects, is_erased
from resolver.formats import region_of
from resolver.ids import node_type
from streams.ordering import read_in_order
from streams.pipeline import MAX_RECORD_BYTES  # (its home was here: kept importable)
# the bytes of an input line held at most: a longer line is too large to be a record whatever the rest of it
LINE_HELD = MAX_RECORD_BYTES + 2
from streams.pipeline import ACCEPTED, BLANK, DUPLICATE, INTERNAL, REJECTED, RecordPipeline

CHECKPOINT_EVERY = 10_000  # log entries


def _state_format() -> str:
    """Names the shape of the pickled state: any change to the code of the objects a checkpoint holds
    makes older checkpoints unusable, and they are then ignored (the log is folded again)."""
    import projections.customer
    import projections.runs
    import projections.texts
    import projections.times
    import resolver
    import resolver.matching

    h = hashlib.sha256()
    # every module whose code the fold runs (or whose objects the state holds): every *.py file of the
    # resolver package, subpackages included, sorted by relative path, each hashed with that path (a class
    # that moves to another module pickles under another name), then the customer views' modules
    root = Path(resolver.__file__).parent
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    for module in (projections.customer, projections.runs, projections.texts, projections.times):
        h.update(Path(module.__file__).read_bytes())
    h.update(resolver.matching.NICKNAMES_DIGEST.encode())  # the nickname list the comparisons use
    return "engine-" + h.hexdigest()[:12]


STATE_FORMAT = _state_format()


def state_fingerprint(config: ResolverConfig, projection: ProjectionConfig) -> str:
    """What a checkpoint's state depends on besides the log: the code, the resolver's configuration and the
    channels on which the views note what a contact's profile showed."""
    return f"{STATE_FORMAT}:{config.fingerprint()}:{','.join(projection.assisted_channels)}"


@dataclass
class IngestReport:
    source: str = ""
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_before: int = 0
    blank: int = 0
    internal_errors: int = 0
    # accepted events older than an event decided before them (in an earlier run, or listed before them
    # with --file-order): decided on what was known then, not in time order (README: sequence neutrality)
    late: int = 0
    # of which, decided again in time order with what came after them (the log restated from their place)
    restated: int = 0
    seconds: float = 0.0
    # reason category -> lines of this input rejected for it (new, kept before and internal errors alike)
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    # set when the input could not be read to its end (gzip data cut short): the lines before were ingested
    input_error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejected_reasons"] = dict(sorted(self.rejected_reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        if self.input_error is None:
            del out["input_error"]
        out["events_per_second"] = round(self.lines / self.seconds) if self.seconds > 0 else None
        out["seconds"] = round(self.seconds, 3)
        return out

    def late_summary(self) -> Optional[str]:
        """One line for a person when some events came later than newer ones (None if none did)."""
        if not self.late:
            return None
        many = self.late != 1
        if self.restated:
            return (f"{self.late:,} event{'s' if many else ''} older than events decided before {'them' if many else 'it'}: "
                    f"the log was decided again from the earliest of them, in time order (the same customers as "
                    f"if they had come in time)")
        return (f"{self.late:,} event{'s' if many else ''} older than events decided before "
                f"{'them' if many else 'it'}: decided as they came, not in time order (--file-order)")

    def rejection_summary(self, top: int = 5) -> Optional[str]:
        """One line for a person: how many lines were rejected and the commonest reasons (None if none)."""
        total = sum(self.rejected_reasons.values())
        if not total:
            return None
        ranked = sorted(self.rejected_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        parts = [f"{n:,} {reason}" for reason, n in ranked[:top]]
        if len(ranked) > top:
            rest = sum(n for _, n in ranked[top:])
            others = len(ranked) - top
            parts.append(f"{rest:,} {ranked[top][0]}" if others == 1 else f"{rest:,} for {others} other reasons")
        before = f" ({self.rejected_before:,} of them kept on an earlier run)" if self.rejected_before else ""
        return (f"{total:,} line{'s' if total != 1 else ''} rejected{before}: {', '.join(parts)}; "
                f"see the rejected_events table of the snapshot (`idres snapshot`)")


def record_key(input_id: str, position: int, raw: bytes) -> str:
    """A rejected record's identity: its input's, its line and its bytes."""
    return f"{input_id}:{position}:{hashlib.sha1(raw).hexdigest()[:16]}"


IDENTITY_BYTES = 1 << 16  # what of an input's text identifies it
FILE_ORDER_RUN = "FILE_ORDER"  # in the data directory while an `idres ingest --file-order` run is under way


def input_identity(path: str | Path, known: Iterable[str] = ()) -> str:
    """What identifies an input file whatever its name: a hash of its first 64 KiB of text (a renamed or moved
    copy is the same input, compressed or not, and so is the file grown by appending; files whose beginnings
    differ are not). A gzip file's is its text's: the bytes of a compressed copy differ from the first. A file of
    less than 64 KiB is known by all of it (``sha1-N:``, N its bytes): one that begins with the whole of one of
    the ``known`` inputs (the identities of earlier runs) of two lines or more is that input, grown by appending
    since (a header line alone begins every day's file); one known before as ``sha1-64k:`` stays so."""
    with open(path, "rb") as fh:
        return identity_of(fh.read(IDENTITY_BYTES), known, fh)


def identity_of(head: bytes, known: Iterable[str] = (), fh: Optional[BinaryIO] = None) -> str:
    """``input_identity`` of an input whose first bytes (up to ``IDENTITY_BYTES``, all of it when shorter) are
    ``head``; ``fh``: the file, at its start, to decompress a gzip file's from (else what ``head`` holds)."""
    import gzip
    import zlib

    if head[:2] == b"\x1f\x8b":
        try:
            if fh is not None:
                fh.seek(0)
                with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                    head = gz.read(IDENTITY_BYTES)
            else:
                head = zlib.decompressobj(wbits=31).decompress(head, IDENTITY_BYTES)
        except (OSError, EOFError, zlib.error):
            pass  # (damaged: its bytes, as read; the ingest says what is wrong with it)
    known = set(known)
    whole = hashlib.sha1(head).hexdigest()[:16]
    if len(head) < IDENTITY_BYTES and f"sha1-64k:{whole}" in known:
        return f"sha1-64k:{whole}"  # (as a small file was known before ``sha1-N:``)
    by_size: dict[int, set[str]] = {}
    for ident in known:
        size, _, digest = ident.partition(":")
        if size.startswith("sha1-") and size[5:].isdigit() and int(size[5:]) < len(head):
            by_size.setdefault(int(size[5:]), set()).add(digest)
    for size in sorted(by_size, reverse=True):  # (the longest earlier input it begins with)
        if sum(1 for line in head[:size].split(b"\n") if line.strip()) < 2:
            continue  # (a header line alone: a next day's file that begins with it is not that file grown)
        digest = hashlib.sha1(head[:size]).hexdigest()[:16]
        if digest in by_size[size]:
            return f"sha1-{size}:{digest}"
    if len(head) < IDENTITY_BYTES:
        return f"sha1-{len(head)}:{whole}"
    return f"sha1-64k:{whole}"


def known_inputs(rejected_keys: Iterable[str]) -> set[str]:
    """The identities of the inputs (``sha1-…``) that the keys of the rejected records name."""
    return {ident for ident in (key.rsplit(":", 2)[0] for key in rejected_keys) if ident.startswith("sha1-")}


ORDERS = ("time", "file")  # decide an input's records in event-time order, or in the order it lists them
# how an engine comes by its state: the checkpoint and the log after it; only the views (a reader that
# serves or snapshots them: no resolver state); or folding the whole log again (``idres replay``)
LOADS = ("checkpoint", "views", "rebuild")
# when a writer folds the views: ``live``, as each batch is logged; ``after`` an ingest, from the log, once the
# resolver's state is written to the checkpoint and let go of (one of the two in memory at a time)
FOLD_VIEWS = ("live", "after")
STATE_TYPES = (CustomerViews, ResolverState)  # the checkpoint's parts, in order: the views first


class EmbeddedEngine:
    """One data directory: its decision log, the resolver state and the customer views."""

    def __init__(self, data_dir: str | Path, config: Optional[ResolverConfig] = None,
                 projection_config: Optional[ProjectionConfig] = None, *, writer: bool = True,
                 use_checkpoint: bool = True, batch_size: int = 2000, order: str = "time", shards: int = 1,
                 load: str = "checkpoint", progress: Optional[Callable[[int], None]] = None,
                 fold_views: str = "live"):
        """``load``: one of ``LOADS``; ``views`` only for a reader (``resolver`` is then None); ``rebuild``
        sets ``replayed`` (``_replay``). ``progress``: called with entries folded as the state is made.
        ``fold_views``: one of ``FOLD_VIEWS``; ``after`` for a writer that loads the checkpoint: the views are
        read only when first asked for (``views``), an ingest folds them from the log at its end
        (``checkpoint``), and the resolver's state is then read back when first asked for (``resolver``)."""
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        if load not in LOADS or (load == "views" and writer):
            raise ValueError(f"load must be one of {', '.join(LOADS)} (views only for a reader), not {load!r}")
        if fold_views not in FOLD_VIEWS or (fold_views == "after" and (not writer or load != "checkpoint")):
            raise ValueError(f"fold_views must be one of {', '.join(FOLD_VIEWS)} (after only for a writer that "
                             f"loads the checkpoint), not {fold_views!r}")
        self.fold_views = fold_views
        # the two parts of the state; one of them may be left to be made when first asked for (``_later``): a part
        # left for later is None (set only beside None; the setters below clear it)
        self._resolver: Optional[Resolver] = None
        self._views: Optional[CustomerViews] = None
        self._resolver_later = self._views_later = False
        self._resolver_from_log = False  # (the resolver's part, when left for later, folded from the log alone)
        self._checkpoint_info: dict[str, Any] = {}  # the info of the checkpoint loaded or written last
        # the entries logged while the views are left for later, as decided: the views' fold reads them instead of
        # unsealing the log (``streams.entry_spool``)
        self._spool: Optional[EntrySpool] = None
        # the log's entries before a restatement's place, as the resolver's rewind read them: the views' fold after
        # the restatement reads them again from it (``_rewind``)
        self._read_spool: Optional[EntrySpool] = None
        # worker processes deciding at once (``streams.shard_pool``), with the result of deciding in order
        self.shards = max(1, shards)
        self.order = order  # the order an input's records are decided in (``streams.ordering``)
        self.data_dir = Path(data_dir)
        self.config = config or ResolverConfig()
        self.projection_config = projection_config or ProjectionConfig()
        self.batch_size = batch_size
        self.writer = writer
        self.log = DecisionLog(self.data_dir, writer=writer)
        self.fingerprint = state_fingerprint(self.config, self.projection_config)
        self.folded_from_checkpoint = 0
        self.shard_stats: Optional[dict[str, Any]] = None  # the last ingest on shards: what its time went to
        # what an ingest that restates shows its progress with (entries decided again): a context manager giving an
        # object with ``update(n)`` (a command's progress bar), or None
        self.restate_progress: Optional[Callable[[], Any]] = None
        self.replayed: Optional[dict[str, Any]] = None
        try:
            if load == "rebuild":
                self.replayed = self._replay(progress)
            else:
                self._load(use_checkpoint, progress, views_only=load == "views")
            if writer:
                self._finish_restatements()
                self._finish_erasures()
                if self.order == "time" and len(self.log) > getattr(self, "checkpoint_seq", len(self.log)) \
                        and not (self.data_dir / FILE_ORDER_RUN).exists():  # (a stopped --file-order run: as listed)
                    self._finish_late()
            elif self._pending_erasures():
                # (its keys not shredded: what it erased still reads back from the log, and a reader would show it)
                raise LogError(f"an erasure logged in {self.data_dir} is not finished (the command that erased "
                               f"stopped part way, or is erasing now): run `idres replay --data-dir "
                               f"{self.data_dir}`, which finishes it, then this command again")
        except BaseException:
            self.log.close()
            raise

    # ------------------------------------------------------------------------------------ state
    @property
    def resolver(self) -> Resolver:
        """The resolver, over its state as the log makes it (read back now if it was let go of)."""
        if self._resolver_later:
            self._resolver = self._later(1)
            self._resolver_later = False
        return self._resolver  # type: ignore[return-value]  (None for a reader of the views alone)

    @resolver.setter
    def resolver(self, value: Optional[Resolver]) -> None:
        self._resolver, self._resolver_later = value, False

    @property
    def views(self) -> CustomerViews:
        """The customer views as the log makes them (folded now if they were left for later)."""
        if self._views_later:
            self._views = self._later(0)
            self._views_later = False
        return self._views  # type: ignore[return-value]

    @views.setter
    def views(self, value: Optional[CustomerViews]) -> None:
        self._views, self._views_later = value, False

    def _later(self, index: int, progress: Optional[Callable[[int], None]] = None) -> Any:
        """Part ``index`` of the state (``STATE_TYPES``: 0 the views, 1 the resolver's) as the log makes it now:
        that part alone from the newest usable checkpoint (``_usable_checkpoint``; not for the resolver's part of
        a replay, which is folded from the log alone), and the log's entries after it folded into it."""
        loaded = None
        if index == 0 or not self._resolver_from_log:
            loaded = self._usable_checkpoint(len(self.log), (index,))
        seq, part = (0, None) if loaded is None else (loaded[0], loaded[1][0])
        if index == 0:
            views = part if part is not None else CustomerViews(self.projection_config)
            views.config = self.projection_config
            spool, self._spool = self._spool, None
            read, self._read_spool = self._read_spool, None
            end = len(self.log)
            try:
                if spool is not None and spool.covers(end) and not self.log.skips_in(min(seq, spool.start), end):
                    return self._fold_spooled(views, seq, spool, progress)
                if read is not None and read.start is not None and read.end is not None and seq < read.end:
                    at = max(seq, read.start)
                    if read.holds(at, read.end, self.log.skips_in(at, read.end)):
                        return self._fold_spooled(views, seq, read, progress)
            except SpoolError:  # (its file did not read back as written: the log is read instead)
                return self._later(0, progress)
            finally:
                for held in (spool, read):
                    if held is not None:
                        held.drop()
            self._fold(None, views, seq, progress)
            return views
        resolver = Resolver(self.config, part if part is not None else ResolverState())
        self._fold(resolver, None, seq, progress)
        return resolver

    def _fold_spooled(self, views: CustomerViews, seq: int, spool: EntrySpool,
                      progress: Optional[Callable[[int], None]]) -> CustomerViews:
        """``views`` folded from ``seq`` on: the log's entries before ``spool``'s, the spool's, the log's after it."""
        spooled = max(seq, spool.start)
        self._fold(None, views, seq, progress, end=spooled)
        self._fold(None, views, spooled, progress, entries=spool.read(spooled))
        if spool.end < len(self.log):
            self._fold(None, views, spool.end, progress)
        return views

    def _usable_checkpoint(self, seq: int, parts: Optional[tuple[int, ...]] = None) -> Optional[tuple[int, Any]]:
        """The newest checkpoint (of ``CHECKPOINTS``) taken at or before entry ``seq`` that no restatement made
        untrue, as ``load_checkpoint`` gives it (``parts``: those alone), or None."""
        def wanted(at: int) -> bool:  # (one taken after the log's end is read: ``load_checkpoint`` refuses it aloud)
            return at > len(self.log) or (at <= seq and not self.log.restated_since(at))

        for name in CHECKPOINTS:
            with bulk_work():  # (the parts of one not wanted are not read)
                loaded = load_checkpoint(self.data_dir, self.fingerprint, len(self.log), state_types=STATE_TYPES,
                                         name=name, parts=parts, accept=wanted)
            if loaded is not None:
                return loaded
        return None

    def identifier_types(self) -> set[str]:
        """The types of the identifiers seen, from whichever part of the state is in memory."""
        if self._resolver is not None:
            return set(self._resolver.state.node_types)
        return {node_type(key) for key in self.views.node_keys}

    def _fresh(self) -> None:
        self.resolver = Resolver(self.config, ResolverState())
        self.views = CustomerViews(self.projection_config)

    def _load(self, use_checkpoint: bool, progress: Optional[Callable[[int], None]] = None,
              views_only: bool = False) -> None:
        loaded = None
        later = self.fold_views == "after"  # (the resolver's part alone; the views when first asked for)
        if use_checkpoint:
            with bulk_work():  # (millions of objects: the collector would scan them over and over)
                loaded = load_checkpoint(self.data_dir, self.fingerprint, len(self.log), state_types=STATE_TYPES,
                                         recount=None if self.writer else self._recount,
                                         parts=1 if views_only else (1,) if later else None)
        if loaded is not None and self.log.restated_since(loaded[0]):
            loaded = None  # (it holds entries a restatement since superseded)
        self._checkpoint_info = {}
        if loaded is not None:
            seq, state = loaded
            if later:
                self.resolver = Resolver(self.config, state[0])
                self.views = None  # type: ignore[assignment]
            else:
                views = state[0]
                self.resolver = None if views_only else Resolver(self.config, state[1])  # type: ignore[assignment]
                views.config = self.projection_config
                self.views = views
            self.folded_from_checkpoint = seq
            if later:
                header = checkpoint_header(self.data_dir, self.fingerprint)
                self._checkpoint_info = header["info"] if header is not None and header["seq"] == seq else {}
        else:
            self._fresh()
            if views_only:
                self.resolver = None  # type: ignore[assignment]
            if later:
                self.views = None  # type: ignore[assignment]
            seq = 0
        self._views_later = later
        self.checkpoint_seq = seq
        self.fold(seq, progress)

    def _recount(self) -> int:
        self.log.refresh()
        return len(self.log)

    def fold(self, start: int, progress: Optional[Callable[[int], None]] = None, end: Optional[int] = None) -> int:
        """Applies log entries from ``start`` (up to ``end``) to the resolver state (unless only the views were
        loaded) and the views (unless they are left for later)."""
        return self._fold(self._resolver, self._views, start, progress, end)

    def _fold(self, resolver: Optional[Resolver], views: Optional[CustomerViews], start: int,
              progress: Optional[Callable[[int], None]] = None, end: Optional[int] = None,
              entries: Optional[Iterable[tuple[int, list[dict[str, Any]]]]] = None,
              tee: Optional[EntrySpool] = None) -> int:
        """``entries``: those to fold instead of the log's from ``start`` (a spool's); ``tee``: a spool that takes
        each entry folded as read."""
        n = 0
        apply_all = resolver.apply_all if resolver is not None else None
        apply_entry = views.apply_entry if views is not None else None
        take = tee.take if tee is not None else None
        with bulk_work():
            for seq, decisions in self.log.read(start, end) if entries is None else entries:
                if take is not None:
                    take(seq, decisions)  # (before the fold: the resolver's keeps the lists it is given)
                if apply_all is not None:
                    apply_all(decisions)
                if apply_entry is not None:
                    apply_entry(seq, decisions)
                n += 1
                if progress is not None and n % 10000 == 0:
                    progress(10000)
        return n

    def rebuild(self, progress: Optional[Callable[[int], None]] = None) -> int:
        """Forgets all derived state and folds the whole log again."""
        self._fresh()
        return self.fold(0, progress)

    def _replay(self, progress: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
        """Folds the whole log into fresh views (what ``idres replay`` does, on opening), comparing them, where
        the checkpoint was taken, with the checkpoint's (by the digest it was saved with: the checkpoint's state
        is not read). Gives ``entries`` folded, ``identical`` (True without a usable checkpoint: the live views
        are then folded from the log too) and ``checkpoint_current`` (a usable checkpoint of the whole log, which
        the rebuilt state would only repeat: then nothing would read the resolver's state, and ``resolver`` is
        None). Otherwise the resolver's state is left for later, folded from the log alone when first asked for:
        a checkpoint (``checkpoint``) writes the views and lets go of them first, so that the two are never in
        memory together."""
        saved = self._saved_digest()
        at, digest = saved if saved is not None else (None, None)
        if at is not None and at > len(self.log):
            raise checkpoint_ahead(self.data_dir, len(self.log), at)  # (as opening the state would say)
        if at is not None and self.log.restated_since(at):
            at = None  # (not the live state's start: the live state is folded from the log as this is)
        current = at is not None and at == len(self.log) and not open_restatements(self.log.restatements())
        self.views = CustomerViews(self.projection_config)
        self.resolver = None  # type: ignore[assignment]
        self._resolver_later = self._resolver_from_log = not current
        n = 0
        identical = True
        if at is not None:
            n += self.fold(0, progress, end=at)
            identical = self.views.digest() == digest
        n += self.fold(at or 0, progress)
        self.checkpoint_seq = at or 0
        return {"entries": n, "identical": identical, "checkpoint_current": current}

    def checkpoint_as_saved(self) -> Optional[bool]:
        """Whether the views the checkpoint holds, read back, have the digest it was saved with (what
        ``idres replay`` compares the log's views with, without reading them); None without a usable one."""
        saved = self._saved_digest()
        if saved is None:
            return None
        with bulk_work():
            loaded = load_checkpoint(self.data_dir, self.fingerprint, len(self.log), state_types=STATE_TYPES, parts=1)
        return None if loaded is None else loaded[1][0].digest() == saved[1]

    def _saved_digest(self) -> Optional[tuple[int, str]]:
        """The entry a usable checkpoint was taken at and the digest of the views it was saved with (read from
        its header alone), or None."""
        header = checkpoint_header(self.data_dir, self.fingerprint)
        digest = header["info"].get("views_digest") if header is not None else None
        return (header["seq"], digest) if isinstance(digest, str) else None

    def checkpoint(self, force: bool = False, previous: str = "keep",
                   progress: Optional[Callable[[int], None]] = None) -> None:
        """Caches the folded state, unless the log has grown too little since the last cache to matter
        (folding a short tail on the next start is cheaper than rewriting the whole state). ``progress``: called
        with entries folded, when a part left for later is folded to be written."""
        if not self.writer:
            return
        later = self._views_later
        if self._views_are_the_checkpoint_s():
            return
        if not later and not force and len(self.log) - self.checkpoint_seq < CHECKPOINT_EVERY:
            return
        if previous == "keep" and self.log.restated_since(self.checkpoint_seq):
            previous = "leave"  # (the one replaced holds entries a restatement superseded)
        if later:
            self._checkpoint_in_turn(previous)
            return
        if self._resolver_later:
            self._checkpoint_views_first(previous, progress)
            return
        info = self._info(self.views)
        save_checkpoint(self.data_dir, len(self.log), self.fingerprint, (self.views, self.resolver.state), previous,
                        info=info)
        self._checkpoint_info = info
        self.checkpoint_seq = len(self.log)

    def _checkpoint_in_turn(self, previous: str) -> None:
        """The checkpoint of views left for later (``fold_views="after"``): the resolver's state is written first
        and let go of, and only then are the views folded (from the checkpoint before and the log) and written,
        so that the two are never in memory together. The resolver's state is read back when next asked for."""
        seq = len(self.log)
        # (what the log holds in memory to seal and unseal, and the resolver's memoized functions, came in with the
        # state: let go of first, so that what is made next, the pickler's objects and then the views, can take the
        # memory they leave)
        self.log.forget_cached()
        clear_caches()
        give_back_memory()
        writer = CheckpointWriter(self.data_dir, seq, self.fingerprint, len(STATE_TYPES))
        writer.write(1, self.resolver.state)
        self.resolver = None  # type: ignore[assignment]
        self._resolver_later = True
        give_back_memory()  # (what the state held: the views are folded next)
        try:
            views = self.views
            self.log.forget_cached()  # (what the views' fold held to unseal the log, not kept while they are written)
            give_back_memory()
            writer.write(0, views)
            info = self._info(views)
        except BaseException:
            writer.abort()
            raise
        writer.commit(previous, info)
        self._checkpoint_info = info
        self.checkpoint_seq = seq

    def _checkpoint_views_first(self, previous: str, progress: Optional[Callable[[int], None]]) -> None:
        """The checkpoint of a resolver's state left for later (a replay's): the views are written first and let
        go of, and only then is the resolver's state folded and written. The views are read back from the
        checkpoint when next asked for."""
        seq = len(self.log)
        views = self.views
        info = self._info(views)
        writer = CheckpointWriter(self.data_dir, seq, self.fingerprint, len(STATE_TYPES))
        writer.write(0, views)
        self.views = views = None  # type: ignore[assignment]
        try:
            self.log.forget_cached()  # (what the views' fold held to unseal the log: the resolver's fold reads again)
            give_back_memory()
            resolver = self._later(1, progress)
            writer.write(1, resolver.state)
        except BaseException:
            writer.abort()
            self._views_later = True  # (the views as the log makes them, folded again when asked for)
            raise
        writer.commit(previous, info)
        self.resolver = resolver
        self._resolver_from_log = False  # (the checkpoint just written holds what the log makes)
        self._views_later = True
        self._checkpoint_info = info
        self.checkpoint_seq = seq

    @staticmethod
    def _info(views: CustomerViews) -> dict[str, Any]:
        """What a checkpoint says of its views, read with its header alone: their digest (``idres replay``), the
        newest event (an ingest's start, ``latest_key``), and the erasures not yet shredded (an opening's)."""
        return {"views_digest": views.digest(), "latest": latest_key(views),
                "pending_erasures": sum(1 for e in views.erasures if e.get("pending"))}

    def close(self) -> None:
        self._drop_spool()
        self.log.close()

    def _drop_spool(self) -> None:
        for spool in (self._spool, self._read_spool):
            if spool is not None:
                spool.drop()
        self._spool = self._read_spool = None

    def __enter__(self) -> "EmbeddedEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ ingest
    def ingest_file(self, path: str | Path, progress: Optional[Callable[[int], None]] = None) -> IngestReport:
        """Ingests a JSON-lines file, gzip-compressed or not (see ``streams.inputs``); raises
        ``InputError`` for a file of another shape before reading any of it."""
        return self.ingest_files([path], progress)[0]

    def ingest_files(self, paths: Iterable[str | Path],
                     progress: Optional[Callable[[int], None]] = None) -> list[IngestReport]:
        """Ingests several files together: in event-time order, their events are decided as one set (a
        backfill split into daily files gives what one file would). One report per file."""
        with contextlib.ExitStack() as stack, bulk_work():
            inputs = []
            known = known_inputs(self.resolver.state.rejected_keys)
            for path in paths:
                identity = input_identity(path, known) if Path(path).is_file() else None
                inputs.append((stack.enter_context(open_input(path, max_line=LINE_HELD)), str(Path(path).resolve()),
                               identity))
            return self._ingest(inputs, progress)

    def ingest_stream(self, fh: BinaryIO | Iterable[bytes], source: str,
                      progress: Optional[Callable[[int], None]] = None,
                      input_id: Optional[str] = None, identify: bool = False) -> IngestReport:
        """Ingests JSON lines; ``progress`` is called with the bytes consumed since its last call (of the
        file itself: compressed bytes for gzip). A binary file object is opened with the shape checks of
        ``streams.inputs`` first. Positions are line numbers of the (decompressed) text. ``input_id``: what
        identifies the input in the keys of its rejected records (default: ``source``); ``identify``: a binary
        file object is known by its beginning as a file is (``input_identity``: its first 64 KiB are read
        first), not by ``source`` (two streams on standard input were one input, and the second's rejected
        records dropped where the first had the same line at the same place)."""
        if identify and input_id is None and hasattr(fh, "read"):
            from streams.inputs import _Rewound

            head = fh.read(IDENTITY_BYTES)
            input_id = identity_of(head, known_inputs(self.resolver.state.rejected_keys))
            fh = io.BufferedReader(_Rewound(head, fh), buffer_size=1 << 16)  # type: ignore[assignment]
        return self._ingest([(as_input(fh, source, LINE_HELD), source, input_id)], progress)[0]

    def _ingest(self, inputs: list[tuple[Any, str, Optional[str]]],
                progress: Optional[Callable[[int], None]]) -> list[IngestReport]:
        """``inputs``: (lines, source name, input identity) each."""
        marker = self.data_dir / FILE_ORDER_RUN
        if self.order != "file" and marker.exists():
            # (a --file-order run's tail, left as listed when this writer opened: into the checkpoint with it, so
            # that what this run leaves unfinished, if it stops, is finished in time order)
            if self.checkpoint_seq < len(self.log):
                self.checkpoint(force=True)
            marker.unlink()
            sync_directory(self.data_dir)
        if self.order == "file" and not marker.exists():
            # (what a writer opening after this run stopped part way reads: its late events are not restated)
            write_atomic(marker, b"an `idres ingest --file-order` run is under way, or stopped part way\n")
            sync_directory(self.data_dir)
        reports = self._ingest_run(inputs, progress)
        if marker.exists():
            # (the log's end into the checkpoint: nothing decided as listed is left for a writer to finish)
            if self.checkpoint_seq < len(self.log):
                self.checkpoint(force=True)
            marker.unlink()
            sync_directory(self.data_dir)
        return reports

    def _ingest_run(self, inputs: list[tuple[Any, str, Optional[str]]],
                    progress: Optional[Callable[[int], None]]) -> list[IngestReport]:
        reports = [IngestReport(source=source) for _, source, _ in inputs]
        started = time.perf_counter()
        latest = self._latest()
        if self.fold_views == "after":
            self.views = None  # type: ignore[assignment]  (folded from the log at the end: ``checkpoint``)
            self._views_later = True
            if self._spool is None or not self._spool.usable:
                self._spool = EntrySpool(self.data_dir)
        run = _Run(self, inputs, reports, latest)
        # in time order, every record is read first, then decided in event-time order: the same records give
        # the same customers whatever order the inputs list them in
        records, meters = read_in_order([fh for fh, _, _ in inputs], progress, self.order == "time",
                                        spool_dir=self.data_dir, max_bytes=run.pipeline.max_bytes)
        sharded = _Sharded(run, self.shards) if self.shards > 1 else None
        try:
            for i, position, line in records:
                meters[i].add(len(line))
                if sharded is not None:
                    sharded.take(i, position, line)
                    if sharded.failed:  # (a defect on a shard: the rest is decided here, in order)
                        for record in sharded.give_back():
                            run.one(*record)
                        sharded = None
                else:
                    run.one(i, position, line)
                if len(run.pending) >= self.batch_size:
                    run.commit()
                    for meter in meters:
                        meter.report()
            if sharded is not None:
                sharded.finish()
                if sharded.failed:
                    for record in sharded.give_back():
                        run.one(*record)
                    sharded = None
        finally:
            if sharded is not None:
                sharded.close()
        run.commit()
        earliest_late = run.earliest_late
        # (the run's pipeline holds the resolver: a restatement and a checkpoint of views left for later let go of
        # its state, to have one state in memory at a time)
        del run, sharded
        if earliest_late is not None and self.order == "time":
            # events older than ones decided before (an earlier run's): the log is decided again from their place
            late = sum(r.late for r in reports)
            with (self.restate_progress() if self.restate_progress is not None else contextlib.nullcontext()) as bar:
                self.restate(earliest_late, late, bar.update if bar is not None else None)
            for report in reports:
                report.restated = late
        for meter, report, (fh, _, _) in zip(meters, reports, inputs):
            meter.report(final=True)
            if self.order == "time":
                report.blank = meter.read.blank  # (the lines left out; in file order, counted as they came)
            if isinstance(fh, InputStream) and fh.error:
                report.input_error = (f"{fh.error}; the lines before it were ingested: ingest a complete copy "
                                      f"of the file (what is already in the log is recognized)")
        self.checkpoint()
        for report in reports:  # (inputs decided together share the run's time)
            report.seconds = time.perf_counter() - started
        return reports

    def _views_are_the_checkpoint_s(self) -> bool:
        """Whether the views are left for later and would be the checkpoint's as they stand: it is of the whole log
        (what its info says of them holds)."""
        return self._views_later and self.checkpoint_seq == len(self.log)

    def _latest(self) -> restate.Key:
        """The canonical key of the newest event decided so far (``latest_key``): when the views are left for
        later, from the checkpoint's info and the events logged after it."""
        if self._views_later:
            said = restate.BEFORE_ALL if self.checkpoint_seq == 0 else self._checkpoint_info.get("latest")
            if isinstance(said, tuple) and len(said) == 3:
                latest: restate.Key = said  # type: ignore[assignment]
                for _, entry in self.log.read(self.checkpoint_seq):
                    for d in entry:
                        if d["type"] == "interaction_recorded":  # (its time as the views hold it: latest_key)
                            latest = max(latest, restate.event_key(iso(logged_micros(d["occurred_at"])),
                                                                   d["event_id"]))
                return latest
        return latest_key(self.views)

    def commit(self, pending: list[list[dict[str, Any]]]) -> None:
        """Logs entries the resolver already decided (and applied), and folds them into the views."""
        if not pending:
            return
        start = len(self.log)
        self.log.append(pending)
        if self._views is None:  # (views left for later: folded from these entries, or the log, when asked for)
            if self._spool is not None:
                self._spool.add(start, pending)
            return
        apply_entry = self._views.apply_entry
        for i, decisions in enumerate(pending):
            apply_entry(start + i, decisions)

    def _recover(self) -> None:
        """After a defect mid-decision the in-memory state may be half-changed: rebuild it from the log."""
        self._load(use_checkpoint=True)

    # ------------------------------------------------------------------------------------ a person's commands
    def command(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """A person's command (``streams.commands``: a review verdict, an unmerge, a lift, an erasure; decided
        now unless it gives ``decided_at``) as one log entry. Raises ``ReviewError`` or ``CommandError`` for one
        that does not apply."""
        if command.get("command") == "erase" and not command.get("_scoped"):
            return self.erase([tuple(p) for p in command["identifiers"]], command["by"], command.get("note"),
                              command.get("decided_at"))
        command = {**command, "decided_at": command.get("decided_at") or utc_iso(datetime.now(timezone.utc))}
        mark = self.resolver.mark()
        try:
            decisions = decide(self.resolver, command)
        except Exception:
            if self.resolver.changed_since(mark):
                self._recover()
            raise
        self.commit([decisions])
        self.checkpoint()
        return decisions

    def review(self, review_id: str, accept: bool, reviewer: str, note: Optional[str] = None,
               decided_at: Optional[str] = None) -> list[dict[str, Any]]:
        """Records a person's verdict on a possible match (and the link it makes) as one log entry.
        Raises ``ReviewError`` for a review that is unknown or already decided."""
        return self.command({"command": "review", "review_id": review_id, "decision": "accept" if accept else "reject",
                             "by": reviewer, "note": note, "decided_at": decided_at})

    def unmerge(self, profile_id: str, identifiers: list[tuple[str, str]], by: str, note: Optional[str] = None,
                decided_at: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's unmerge (``resolver.unmerge``) as one log entry. Raises ``CommandError`` for a profile
        or identifier that is not there."""
        return self.command({"command": "unmerge", "profile_id": profile_id, "identifiers": identifiers, "by": by,
                             "note": note, "decided_at": decided_at})

    def lift_ban(self, ban_id: str, by: str, note: Optional[str] = None,
                 decided_at: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's lift of a connection ban as one log entry. Raises ``CommandError`` for a ban not in force."""
        return self.command({"command": "lift", "ban_id": ban_id, "by": by, "note": note, "decided_at": decided_at})

    def erase(self, identifiers: list[tuple[str, str]], by: str, reason: Optional[str] = None,
              decided_at: Optional[str] = None) -> list[dict[str, Any]]:
        """A person's erasure (``resolver.erasure``) as one log entry, then the keys of what it erased are
        shredded (``streams.sealing``) and the state, the views and the checkpoint are rebuilt from the log,
        so no file of the data directory holds the customer's personal data in readable form. Raises
        ``CommandError`` when no customer holds the identifiers."""
        keys = self.resolver.node_keys(identifiers)
        profiles, nodes = self.resolver.erasure_scope(keys)
        more = anonymous_givers(self.views, self.resolver.normalizer, nodes)
        if more:
            keys = [*keys, *more]
            profiles, nodes = self.resolver.erasure_scope(keys)
        events, rejected, unusable = erased_contents(self.views, self.resolver.normalizer, profiles, nodes)
        decided = self.command({"command": "erase", "identifiers": [k.split(":", 1) for k in keys], "by": by,
                                "note": reason, "events": events, "rejected": rejected, "unusable": unusable,
                                "decided_at": decided_at, "_scoped": True})
        self.shred(erasure_of(decided))
        seq = len(self.log) - 1
        return next(entry for _, entry in self.log.read(seq))  # (as it reads now: the identifiers erased)

    def shred(self, *erased: dict[str, Any]) -> None:
        """Shreds the keys of what erasures name, and rebuilds everything derived from the log (the checkpoint
        too: the one before held them readable)."""
        self._drop_spool()  # (it holds what was erased as it was decided)
        # the checkpoints go before the keys: one from before the erasure holds what it erased readable, and were
        # the run to stop once the keys went, the next would take it up and find nothing left to shred
        self._remove_checkpoints()
        self.log.shred([s for d in erased for s in erasure_subjects(d)])
        self.rebuild()
        self.checkpoint(force=True, previous="remove")  # (the ones before held what was erased readable)

    def _remove_checkpoints(self) -> None:
        """Removes the checkpoints (the latest and the one before), for good (the directory synced): the state is
        then folded from the log until the next is written."""
        for name in CHECKPOINTS:
            (self.data_dir / name).unlink(missing_ok=True)
        sync_directory(self.data_dir)
        self.checkpoint_seq, self._checkpoint_info = 0, {}

    # ------------------------------------------------------------------------------------ late events
    def restate(self, key: tuple[str, int, str], late_events: int,
                progress: Optional[Callable[[int], None]] = None) -> Optional[dict[str, Any]]:
        """Late events were decided (``key``: the canonical key of the earliest): decide the log again from
        the place of the earliest (``resolver.restate``). Returns the ``log_restated`` decision (None when
        nothing after it was decided)."""
        if self._views_later:
            # (views left for later: the resolver's state is put aside while the views are folded to find where to
            # start; then they go, and the state is read back)
            with self.put_aside("resolver"):
                start = self.views.restate_from(key)
                self._views, self._views_later = None, True
        else:
            start = self.views.restate_from(key)
        return None if start is None else self._restate(start, late_events, progress)

    def _restate(self, start: int, late_events: int, progress: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
        from streams.restating import Restatement

        work = Restatement(start, late_events, spool_dir=self.data_dir)
        try:
            work.take(entry for _, entry in self.log.read(start))
            work.note(self.resolver.state)
            later = self.fold_views == "after"  # (the views folded from the log when next asked for)
            self.resolver = self.views = None  # type: ignore[assignment]  (one state in memory at a time)
            self._rewind(start, progress, views=not later)
            self._views_later = later
            now = utc_iso(datetime.now(timezone.utc))
            self.log.append([[d] for d in work.begun(self.resolver.state, len(self.log), now)])
            resolver = self.resolver
            pending: list[list[dict[str, Any]]] = []
            for decisions in work.decide(lambda rec: redo(resolver, rec)):
                pending.append(decisions)
                if len(pending) >= self.batch_size:
                    self.commit(pending)
                    if progress is not None:
                        progress(len(pending))
                    pending = []
            done = work.done(resolver.state, now)
            resolver.apply_all(done)
            pending.extend([d] for d in done)
            self.commit(pending)
            done = done[-1]
        finally:
            work.close()
        resolver = None  # (a checkpoint of views left for later lets go of the state before it folds them)
        # the checkpoint stays true if it is from before the restatement's first entry; else a new one
        self.checkpoint(force=self.log.restated_since(self.checkpoint_seq))
        return done

    def _rewind(self, seq: int, progress: Optional[Callable[[int], None]] = None, views: bool = True) -> None:
        """The resolver state and (``views``) the views as the log's entries before ``seq`` make them: from the
        latest checkpoint taken at or before ``seq`` that no restatement made untrue, else from the start."""
        loaded = self._usable_checkpoint(seq, None if views else (1,))
        if loaded is not None and views:
            at, (folded, rstate) = loaded
            self.resolver = Resolver(self.config, rstate)
            folded.config = self.projection_config
            self.views = folded
        elif loaded is not None:
            at, (rstate,) = loaded
            self.resolver = Resolver(self.config, rstate)
        else:
            self._fresh()
            if not views:
                self.views = None  # type: ignore[assignment]
            at = 0
        if views or self._views is not None or self.fold_views != "after":
            self.fold(at, progress, end=seq)
            return
        # the views are folded over the same entries once the restatement is done: they are kept as read
        # (``streams.entry_spool``), rather than read and unsealed from the log a second time
        if self._read_spool is not None:
            self._read_spool.drop()
        read = EntrySpool(self.data_dir, as_read=True)
        self._fold(self._resolver, None, at, progress, end=seq, tee=read)
        read.close(at, seq, self.log.skips_in(at, seq))
        self._read_spool = read if read.usable else None

    def _finish_restatements(self) -> None:
        """A restatement begun and not completed (the writer stopped in between): close it, and restate again."""
        from streams.restating import abandoned

        for at in open_restatements(self.log.restatements()):
            begun = next(entry for _, entry in self.log.read(at, at + 1, raw=True))[0]
            closing = abandoned(self.resolver.state, begun, at, (e for _, e in self.log.read(at, raw=True)),
                                utc_iso(datetime.now(timezone.utc)))
            self.log.append([[d] for d in closing])
            self._restate(begun["from_seq"], begun["late_events"])

    def _finish_late(self) -> None:
        """Late events a run logged and did not restate for (it stopped before its end, where it restates):
        the log is decided again from the place of the earliest, as that run would have. (Each run ends with a
        checkpoint: only a log longer than its checkpoint is looked at.)"""
        import bisect

        later = self._views_later
        # (views left for later: the resolver's state is put aside while they are folded, and they go after)
        with self.put_aside("resolver") if later else contextlib.nullcontext():
            views = self.views
            at, ids = views.ev_at, views.ev_id
            latest: Optional[tuple[int, int, str]] = None
            earliest: Optional[tuple[int, int, str]] = None
            late = 0
            # (a restatement starts after the last person's command: the events after it, whose entries follow theirs)
            first = bisect.bisect_right(range(len(at)), views.barrier, key=views.entry_of_event)
            for i in range(first, len(at)):
                key = canonical(at[i], ids[i])
                if latest is None or key > latest:
                    latest = key
                else:
                    late += 1
                    earliest = key if earliest is None or key < earliest else earliest
            start = None if earliest is None else views.restate_from(restate.event_key(iso(earliest[0]), earliest[2]))
            if later:
                views = at = ids = None  # type: ignore[assignment]
                self._views, self._views_later = None, True
        if start is not None:
            self._restate(start, late)

    def _finish_erasures(self) -> None:
        """An erasure logged whose keys were not all shredded (the writer stopped in between): shred them now."""
        pending = self._pending_erasures()
        if pending:
            self.shred(*pending)

    def _pending_erasures(self) -> list[dict[str, Any]]:
        """The erasures logged whose keys were not all shredded, and those logged after the checkpoint the state
        was loaded from (an erasure writes a checkpoint after itself: one from before it holds what it erased
        readable, as a run of a version that shredded the keys first left it when stopped in between)."""
        if self._views_are_the_checkpoint_s() and self._checkpoint_info.get("pending_erasures") == 0:
            return []  # (the checkpoint says none is pending)
        since = self.checkpoint_seq
        if self._views_later and (since == 0 or self._checkpoint_info.get("pending_erasures") == 0):
            # (views left for later, and no checkpoint or none pending at it: those logged since, from the log alone)
            logged = (erasure_of(entry) for _, entry in self.log.read(since))
            return [d for d in logged if d is not None and (since > 0 or not all(map(is_erased, d["nodes"])))]
        if self._views is None and not self._views_later:
            return []  # (a reader of the resolver's state alone)
        return [erasure_of(next(entry for _, entry in self.log.read(e["seq"], e["seq"] + 1)))
                for e in self.views.erasures if e.get("pending") or (since > 0 and e["seq"] >= since)]

    # ------------------------------------------------------------------------------------ verify
    @contextlib.contextmanager
    def put_aside(self, part: str) -> Any:
        """``part`` of the state in memory (``views`` or ``resolver``) put aside on disk (``Spilled``) for the block
        and read back after it, for work that needs the other part, or builds a state of its own, meanwhile
        (``verify_decisions``, ``checkpoint_as_saved``). If the block fails, the part is folded from the
        checkpoint and the log when next asked for."""
        held = self._views if part == "views" else self._resolver.state if self._resolver is not None else None
        if held is None:
            yield
            return
        spilled = Spilled(self.data_dir, held)
        del held
        if part == "views":
            self._views = None
        else:
            self._resolver = None
        give_back_memory()
        try:
            yield
            back = spilled.take()
        except BaseException:
            spilled.close()
            if part == "views":
                self._views_later = True
            else:
                self._resolver_later = True
            raise
        if part == "views":
            back.config = self.projection_config
            self.views = back
        else:
            self.resolver = Resolver(self.config, back)

    def verify_decisions(self, progress: Optional[Callable[[int], None]] = None) -> Optional[str]:
        """Re-decides every logged record with a fresh resolver and compares with the log.

        Returns None when every entry is reproduced exactly, else a description of the first difference.
        An erasure makes what it erased unreadable: entries that hold erased data are taken as recorded, and
        an entry decided on what was erased since (a guard that counted the erased customer's date of birth)
        may now be decided otherwise; after the first erased entry such a difference is counted
        (``self.after_erasure``), not failed, and the check goes on from the log's state.
        """
        check = Resolver(self.config, ResolverState())
        n = 0
        self.verified = 0
        self.after_erasure = 0
        self.as_recorded = 0  # (entries that hold erased data: a restatement's superseded entries are not read)
        erased = False
        for seq, decisions in self.log.read(0):
            if touches_erased(decisions):
                erased = True
                self.as_recorded += 1
                check.apply_all(decisions)
            else:
                again = redo(check, record_of(decisions))
                if again == decisions:
                    self.verified += 1
                elif not erased:
                    return f"entry {seq}: logged {decisions!r} but re-deciding gives {again!r}"
                else:
                    self.after_erasure += 1
                    check = Resolver(self.config, ResolverState())
                    for _, logged in self.log.read(0, seq + 1):
                        check.apply_all(logged)
            n += 1
            if progress is not None and n % 10000 == 0:
                progress(10000)
        return None


def erased_types(nodes: Iterable[str]) -> set[str]:
    """The types of the identifiers among ``nodes`` (as read back) that an erasure made unreadable."""
    return {key.partition(":")[0] for key in nodes if is_erased(key)}


def touches_erased(decisions: list[dict[str, Any]]) -> bool:
    """Whether a log entry's input holds anything an erasure made unreadable (an identifier of it, at least)."""
    rec = record_of(decisions)
    return holds_erased(decisions) or any(is_erased(k) for k in rec.get("nodes", ())) or \
        any(ign.get("erased") for ign in rec.get("ignored", ()))


def holds_erased(decisions: list[dict[str, Any]]) -> bool:
    """Whether a log entry's input is (wholly) what an erasure made unreadable: an event whose contents were
    erased or whose identifiers all were, a rejected record's text, or the erasure itself."""
    rec = record_of(decisions)
    if rec.get("erased") or rec["type"] == "customer_erased":
        return True
    nodes = rec.get("nodes")
    return bool(nodes) and all(is_erased(k) for k in nodes)


def erased_contents(views: CustomerViews, normalizer: Any, profiles: list[str], nodes: list[str],
                    more_rejected: Iterable[dict[str, Any]] = ()) -> tuple[list[str], list[str], list[list[str]]]:
    """What of the customers an erasure removes the views hold: the IDs of their events, the keys of the
    rejected records that name them (by an erased event's ID, an identifier that reads as an erased one, or
    an erased identifier's value anywhere in the text), and the values as given (``[type, raw]``) that events
    could not use (``unusable_values``: the erased events' own, and those that read as an erased identifier, a
    national number given on a visit made with another customer's card: ``streams.sealing.unusable_subject``).
    ``more_rejected``: rejected records kept outside the views, searched too (a Kafka deployment's dead
    letters: ``streams.stream_app.dead_letters``)."""
    events: set[str] = set()
    for pid in profiles:
        live = views.resolve(pid)
        if live is not None:
            events.update(views.ev_id[i] for i in views.profiles[live].events)
    erased = set(nodes)
    gone = {views.node_index[k] for k in nodes if k in views.node_index}
    if gone:  # (events that carried only erased identifiers and ones in no profile: a shared mailbox's)
        node_profile, ev_nodes = views.node_profile, views.ev_nodes
        for i, _ in ev_nodes.hits(gone):
            if all(n in gone or node_profile[n] is None for n in ev_nodes[i]):
                events.add(views.ev_id[i])
    unusable = unusable_values(views, normalizer, nodes, events)  # (and the events that gave nothing else)
    values = [k.partition(":")[2].casefold() for k in nodes]
    values = [v for v in values if len(v) >= 4]
    regions = erased_regions(normalizer, nodes)
    numbers = national_numbers(normalizer, nodes)
    # (the types whose values a word of a rejected record may give in another form, each with what any such form
    # holds, letters and digits alone: an email's local part, another value whole)
    written: dict[str, list[str]] = {}
    for t, _, v in (k.partition(":") for k in nodes):
        kind = normalizer.config.rule(t).kind
        if t != RECORD_TYPE and kind != "phone" and not is_erased(f"{t}:{v}"):
            core = _alnum(v.rpartition("@")[0] if kind == "email" else v)
            if core:
                written.setdefault(t, []).append(core)
    rejected = []
    for d in itertools.chain(views.rejected, more_rejected):
        if d.get("event_id") in events:
            rejected.append(d["key"])
            continue
        raw = d.get("raw") or ""
        text = raw.casefold()
        if any(v in text for v in values) or _names(raw, normalizer, regions) & erased or \
                (numbers and any(_DIGITS.sub("", m).endswith(numbers)
                                 for m in _NUMBER_WRITTEN.findall(_as_typed(raw)))) or \
                _written_anyhow(raw, normalizer, erased, written):
            rejected.append(d["key"])
    return sorted(events), rejected, [list(u) for u in sorted(unusable)]


_NUMBER_WRITTEN = re.compile(r"\d[\d ().\-/]{5,}\d")  # a phone number as written, separators and all
_BETWEEN_WORDS = re.compile(r"[\s\"'`{}\[\](),;<>|=&?!\\]+")  # (what no email, loyalty number or handle holds)
_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})")
_JSON_ESCAPE = re.compile(r"\\[nrtbf\"/\\]")  # (a JSON string's escapes: each stands for a character between words)
_NOT_ALNUM_ASCII = re.compile(r"[^0-9a-z]+")


def _as_typed(text: str) -> str:
    """``text`` with every digit as an ASCII one and every dash, space or invisible mark as a plain one (a number
    written with an en dash, non-breaking spaces, full-width digits, as phones and forms type them), for
    ``_NUMBER_WRITTEN``."""
    if text.isascii():
        return text
    out = []
    for c in unicodedata.normalize("NFKC", text):
        if c.isascii():
            out.append(c)
            continue
        kind = unicodedata.category(c)
        if kind == "Nd":
            out.append(str(unicodedata.digit(c)))
        elif kind == "Pd":
            out.append("-")
        elif kind == "Zs":
            out.append(" ")
        elif kind != "Cf":  # (a zero-width mark stands for nothing)
            out.append(c)
    return "".join(out)


def _alnum(text: str) -> str:
    """The letters and digits of ``text``, folded (case, accents): what every form of a value that reads as
    another holds in the same order, whatever stands between (dots, dashes, a tag after them)."""
    if text.isascii():
        return _NOT_ALNUM_ASCII.sub("", text.lower())
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if c.isalnum())


def _written_anyhow(raw: str, normalizer: Any, erased: set[str], written: dict[str, list[str]]) -> bool:
    """Whether a rejected record's text gives an erased identifier in any form its type reads as that one (an
    email's dots, tag, case or domain alias, a loyalty number's prefix or separators; escaped as JSON or as a URL
    or not), wherever it stands (a record cut short, an array, identifiers as a list, a form, a sentence): each
    word of the text that holds the letters and digits of an erased value (``written``: by type) is read as that
    type. A text that holds none of them is passed over at once."""
    if not written:
        return False
    text = raw
    if "\\" in text:
        text = _JSON_ESCAPE.sub(" ", _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text))
    if "%" in text:
        from urllib.parse import unquote

        text = unquote(text)  # (not unquote_plus: a '+' is an email's tag)
    flat = _alnum(text)
    if not any(core in flat for cores in written.values() for core in cores):
        return False
    for word in set(_BETWEEN_WORDS.split(text)):
        word = word.strip(".,:;")
        if len(word) < 3:
            continue
        letters = _alnum(word)
        for id_type, cores in written.items():
            if not any(core in letters for core in cores):
                continue
            for candidate in (word, word.partition(":")[2]) if ":" in word else (word,):
                key, _ = normalizer.node_key(id_type, candidate)
                if key is not None and key in erased:
                    return True
    return False


_DIGITS = re.compile(r"\D")


def national_numbers(normalizer: Any, nodes: Iterable[str]) -> tuple[str, ...]:
    """The national significant numbers (``7887899111``) of the phone numbers among ``nodes``: a text that gives
    one, however written (``07887 899111``, ``+44 (0)7887-899111``), names that number."""
    import phonenumbers

    out = []
    for t, _, v in (k.partition(":") for k in nodes):
        if normalizer.config.rule(t).kind == "phone" and v.startswith("+"):
            try:
                nsn = str(phonenumbers.parse(v, None).national_number)
            except phonenumbers.NumberParseException:
                continue
            if len(nsn) >= 7:
                out.append(nsn)
    return tuple(sorted(set(out)))


def unusable_values(views: CustomerViews, normalizer: Any, nodes: list[str], events: set[str]) -> set[tuple[str, str]]:
    """The values (``(type, raw)``) that events gave and could not use, an erasure of ``nodes`` and ``events``
    shreds: every one the erased events gave (its key would otherwise stay, and with it a keyed hash a guess of
    the value can be checked against), and any other that reads as an erased identifier, with the formats
    learned so far or the country of an erased phone number (learned later, it would read as it then). An event
    that gave nothing usable (in no profile) but such a value is the erased customer's: added to ``events``."""
    erased = set(nodes)
    regions = erased_regions(normalizer, nodes)
    out: set[tuple[str, str]] = set()
    for i, given in enumerate(views.ev_ignored):
        if not given or views.ev_id[i] in events:
            continue
        named = {(ign["type"], ign["raw"]) for ign in given
                 if not ign.get("erased") and normalizer.reads_as(ign["type"], ign["raw"], regions) in erased}
        if named:
            out |= named
            if not views.ev_nodes[i]:
                events.add(views.ev_id[i])
    for i, given in enumerate(views.ev_ignored):
        if given and views.ev_id[i] in events:
            out.update((ign["type"], ign["raw"]) for ign in given if not ign.get("erased"))
    return out


def erased_regions(normalizer: Any, nodes: Iterable[str]) -> tuple[str, ...]:
    """The countries of the phone numbers among ``nodes`` (``unusable_values``)."""
    phones = (k.partition(":") for k in nodes)
    return tuple(sorted({r for t, _, v in phones if normalizer.config.rule(t).kind == "phone"
                         and (r := region_of(v)) is not None}))


def anonymous_givers(views: CustomerViews, normalizer: Any, nodes: list[str]) -> list[str]:
    """The anonymous records (``record:EVENT_ID``) an erasure of ``nodes`` takes too: an event that gave
    nothing usable but a value that reads as an erased identifier (``unusable_values``) is that customer's,
    when nothing else made it anyone's (its record is a profile of its own)."""
    erased = set(nodes)
    regions = erased_regions(normalizer, nodes)
    out = []
    for i, given in enumerate(views.ev_ignored):
        if not given or views.ev_profile[i] is None:
            continue
        own = views.ev_nodes[i]
        if len(own) != 1 or views.node_keys[own[0]] != f"{RECORD_TYPE}:{views.ev_id[i]}":
            continue
        prof = views.profiles.get(views.ev_profile[i])
        if prof is None or prof.nodes != {own[0]}:
            continue
        if any(not ign.get("erased") and normalizer.reads_as(ign["type"], ign["raw"], regions) in erased
               for ign in given):
            out.append(views.node_keys[own[0]])
    return out


def _names(raw: str, normalizer: Any, regions: tuple[str, ...] = ()) -> set[str]:
    """The node keys of the identifiers a rejected record's text gives, as far as it can be read (phone numbers
    also as the countries ``regions`` would read them: ``Normalizer.reads_as``)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return set()
    ids = record.get("identifiers") if isinstance(record, dict) else None
    if not isinstance(ids, dict):
        return set()
    out = set()
    for id_type, value in ids.items():
        if isinstance(id_type, str) and isinstance(value, (str, int)):
            key = normalizer.reads_as(id_type, str(value), regions)
            if key is not None:
                out.add(key)
    return out


def redo(resolver: Resolver, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Decides again, with ``resolver``, the input a log entry records (``record_of``): an event (from its
    normalized identifiers, and the raw values of those it could not use), a rejected record, a review
    verdict, an unmerge or a lift; returns the decisions. Raises ``IdresError`` for a person's command that
    does not apply to this resolver's state."""
    from schemas.channel import ChannelEvent

    t = rec["type"]
    if t in RESTATE_TYPES:  # (a restatement's own entry: as recorded)
        resolver.apply(rec)
        return [rec]
    if t == "event_rejected":
        return resolver.reject(rec["key"], rec["source"], rec["reason"], rec["raw"], rec.get("event_id"),
                               rec.get("detail"))
    if t in ("review_decided", "connection_banned", "ban_lifted", "customer_erased"):
        return decide(resolver, command_of(rec))
    identifiers = {}
    for key in rec["nodes"]:
        id_type, _, v = key.partition(":")
        if id_type != RECORD_TYPE:  # anonymous records are made by the resolver, not given
            identifiers[id_type] = v
    for ign in rec.get("ignored", ()):
        if not ign.get("erased"):  # (one an erasure made unreadable was not usable: it is left out)
            identifiers.setdefault(ign["type"], ign["raw"])
    gone = erased_types(rec["nodes"])
    for written in rec.get("read", ()):  # (read through a learned format: read again as written)
        if written["type"] not in gone:  # (an erased identifier's value is not read again: a log written
            identifiers[written["type"]] = written["raw"]  # before it was sealed with the identifier holds it)
    event = ChannelEvent(event_id=rec["event_id"], occurred_at=rec["occurred_at"], channel=rec["channel"],
                         event_type=rec["event_type"], identifiers=identifiers, attributes=rec.get("attributes", {}),
                         payload=rec.get("payload", {}))
    return resolver.decide(event, rec.get("source"), rec.get("digest"))


def latest_key(views: CustomerViews) -> restate.Key:
    """The canonical key of the newest event the views hold (``restate.BEFORE_ALL`` when none)."""
    at = max(views.ev_at, default=None)
    if at is None:
        return restate.BEFORE_ALL
    text = iso(at)
    return max(restate.event_key(text, views.ev_id[i]) for i in range(len(views.ev_at) - 1, -1, -1)
               if views.ev_at[i] == at)


class _Run:
    """One ingest run's bookkeeping: its reports, the entries not yet logged, the newest event decided."""

    def __init__(self, engine: EmbeddedEngine, inputs: list[tuple[Any, str, Optional[str]]],
                 reports: list[IngestReport], latest: restate.Key):
        self.engine = engine
        self.inputs = inputs
        self.reports = reports
        self.pipeline = RecordPipeline(engine.resolver)
        self.pending: list[list[dict[str, Any]]] = []
        self.latest = latest  # the canonical key of the newest event decided so far
        self.earliest_late: Optional[restate.Key] = None  # of the events decided after a later one

    def source(self, i: int, position: int) -> dict[str, Any]:
        return {"name": self.inputs[i][1], "position": position}

    def one(self, i: int, position: int, line: bytes) -> None:
        """Decides one record here, in order."""
        report = self.reports[i]
        raw = line.strip()
        src = self.source(i, position)
        outcome = self.pipeline.process(raw, src)
        kind = outcome.kind
        if kind == BLANK:
            report.blank += 1
            return
        report.lines += 1
        if kind == ACCEPTED:
            self.accepted(report, outcome.decisions)
        elif kind == DUPLICATE:
            report.duplicates += 1
        else:  # REJECTED or INTERNAL: kept, as an event_rejected decision, with its reason
            if kind == INTERNAL:
                report.internal_errors += 1
                if outcome.state_changed:
                    # the state may be half-changed: log what is pending, then rebuild it from the log
                    self.commit()
                    self.engine._recover()
                    self.pipeline.resolver = self.engine.resolver
            decisions = self.keep(report, outcome, i, position, raw)
            if decisions:
                self.pending.append(decisions)

    def accepted(self, report: IngestReport, decisions: list[dict[str, Any]]) -> None:
        report.accepted += 1
        self.pending.append(decisions)
        rec = record_of(decisions)
        key = restate.event_key(rec["occurred_at"], rec["event_id"])
        if key < self.latest:
            report.late += 1
            if self.earliest_late is None or key < self.earliest_late:
                self.earliest_late = key
        else:
            self.latest = key

    def keep(self, report: IngestReport, outcome: Any, i: int, position: int, raw: bytes) -> list[dict[str, Any]]:
        """The decisions that keep a rejected record (empty if it was kept on an earlier run)."""
        reasons = report.rejected_reasons
        reasons[outcome.reason] = reasons.get(outcome.reason, 0) + 1
        source, input_id = self.inputs[i][1], self.inputs[i][2]
        decisions = self.engine.resolver.reject(record_key(input_id or source, position, raw),
                                                self.source(i, position), outcome.reason,
                                                raw[:65536].decode("utf-8", "replace"), outcome.event_id,
                                                outcome.detail)
        if decisions:
            if outcome.kind == REJECTED:
                report.rejected += 1
        elif outcome.kind == REJECTED:
            report.rejected_before += 1
        return decisions

    def commit(self) -> None:
        self.engine.commit(self.pending)
        self.pending = []


class _Sharded:
    """An ingest run's records decided on worker processes, window by window (``streams.shards``): the
    entries are the ones deciding them here in order would log."""

    def __init__(self, run: _Run, shards: int):
        from streams.shard_pool import ShardPool

        self.run = run
        resolver = run.engine.resolver
        self.pool: Optional[Any] = ShardPool(resolver, shards, run.pipeline.max_bytes)
        self.position = len(resolver.state.seen_events)  # events decided, the last window's included
        self.batch: list[tuple[int, int, bytes]] = []  # the window's records (not blank): (input, line, raw)
        self.held: list[tuple[int, int, bytes]] = []  # every record taken since the last window was logged
        self.unapplied: list[list[dict[str, Any]]] = []  # the last window's decisions, for this state
        self.saved = [dict(vars(r)) for r in run.reports]
        self.failed = False
        # windows decided, their events, and the sum of their longest chains (the critical path)
        self.windows = self.events = self.longest = 0

    def take(self, i: int, position: int, line: bytes) -> None:
        self.held.append((i, position, line))
        raw = line.strip()
        if not raw:
            self.run.reports[i].blank += 1
            return
        self.batch.append((i, position, raw))
        if len(self.batch) >= epochs.room(self.position):
            self.flush()

    def _apply(self) -> None:
        """Applies the last window's decisions to this process's state (while the workers work)."""
        apply_all = self.run.engine.resolver.apply_all
        for decisions in self.unapplied:
            apply_all(decisions)
        self.unapplied = []

    def flush(self) -> None:
        """Decides the window's records on the workers and puts its entries in the run's pending."""
        from streams.pipeline import Outcome
        from streams.shards import assign, begin, entry_of, plan, work_of

        if not self.batch:
            return
        run, pool, batch = self.run, self.pool, self.batch
        resolver = run.engine.resolver
        n = pool.n
        position = self.position
        if epochs.starts(position):
            self._apply()  # (the epoch's decisions are made on this state, brought up to date)
        begun = begin(resolver, position, [raw for _, _, raw in batch])
        pool.ask_verdicts(begun, [[(b, batch[b][2]) for b in range(s, len(batch), n)] for s in range(n)])
        self._apply()
        verdicts, error = pool.verdicts()
        if error is not None:
            self._fail()
            return
        slots, chains = plan(verdicts, len(batch), resolver.state.seen_events.get)
        events = [slot for slot in slots if slot.kind == "event"]
        decided: dict[int, list[dict[str, Any]]] = {}
        owner: list[int] = []
        if events:
            def item(k: int) -> tuple[int, int, bytes, dict[str, Any]]:
                i, line, raw = batch[events[k].index]
                return k, events[k].index, raw, run.source(i, line)

            work, owner = work_of(chains, assign(chains, n), item)
            pool.ask_decide(position, work)
            run.commit()  # (the windows before this one: logged and folded into the views while they decide)
            decided, error = pool.results()
            if error is not None:
                self._fail()
                return
            self.windows += 1
            self.events += len(events)
            self.longest += max(map(len, chains))
        for slot in slots:
            i, line, raw = batch[slot.index]
            report = run.reports[i]
            report.lines += 1
            if slot.kind == "event":
                mine = decided[slot.event]
                pool.catch_up(mine, owner[slot.event])
                self.unapplied.append(mine)
                run.accepted(report, entry_of(slot, decided, begun))
            elif slot.kind == "duplicate":
                report.duplicates += 1
            elif slot.kind == "rejected":
                kept = run.keep(report, Outcome(REJECTED, slot.reason, slot.detail, slot.event_id), i, line, raw)
                if kept:
                    run.pending.append(kept)
                    pool.catch_up(kept)
        if not events and begun:  # (the epoch's decisions belong to an event: there was none after all)
            raise RuntimeError("an epoch was begun for a window without events")
        self.position += len(events)
        self.batch, self.held = [], []
        self.saved = [dict(vars(r)) for r in run.reports]

    def finish(self) -> None:
        """After the last window: this process's state brought up to date, the workers stopped."""
        self.flush()
        if not self.failed:
            self._apply()
        self.close()

    def _fail(self) -> None:
        """A worker failed (a defect): nothing of the window is kept; the state is rebuilt from the log and
        the records taken since the last window are given back, to be decided in order."""
        self.failed = True
        self.close()
        run = self.run
        run.commit()
        run.engine._recover()
        run.pipeline.resolver = run.engine.resolver
        self.unapplied = []
        for report, saved in zip(run.reports, self.saved):
            vars(report).update(saved)

    def give_back(self) -> list[tuple[int, int, bytes]]:
        held, self.held = self.held, []
        return held

    def close(self) -> None:
        if self.pool is not None:
            pool = self.pool
            self.run.engine.shard_stats = {"windows": self.windows, "events": self.events,
                                           "longest_chains": self.longest, "waited": pool.waited,
                                           "catching_up": list(pool.catching_up), "working": list(pool.working)}
            pool.close()
            self.pool = None
