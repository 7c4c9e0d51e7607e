"""The lookup API: "who is this?" over HTTP, answered in milliseconds from the customer views.

``idres serve`` runs this FastAPI application under uvicorn. The server is a *follower* of the
embedded decision log: it never writes. On start it loads the checkpoint (when it is valid for these
rules) and folds the log tail into a ``CustomerViews``; then a background thread polls the log
(``DecisionLog.refresh``) and folds the entries that ``idres ingest``, running in another process,
appends. Log reading and JSON parsing happen outside the views lock; entries are applied whole, a
small batch per lock hold, and every request reads the views under the same lock, so no request
ever sees a half-applied entry and none waits long. Requests and folding share one interpreter: the
follower rests after each batch as long as the batch took (at most half the interpreter goes to
folding while the log grows), and the thread switch interval is short, so that lookups keep their
latency while ``idres ingest`` runs.

Households (``projections.households``: customers who share a home) take a pass over every event to
compute, so no request computes them. The follower thread recomputes the map after it folds new
entries, at most once every ``HOUSEHOLDS_INTERVAL`` seconds and nine times as long as the previous
computation took (counted from its end, the one at start-up included; entries that come after a longer quiet
spell are reflected at once), without holding the views lock (it is the views' only writer, so they stand still meanwhile),
in slices with rests between them as the folding does (``_Pacer``), and swaps the new map in as one
reference. ``GET /v1/lookup``, the most frequent request, is answered without the framework's routing and
parameter models when it can be answered exactly as the route answers it (``_FastLookup``). ``/v1/lookup`` and ``/v1/profiles/{id}`` read the last
map: their ``household`` lags the rest of the answer by at most about ``HOUSEHOLDS_INTERVAL`` seconds
plus one computation and one poll, and ``household_as_of`` says so while it does.

Routes (one OpenAPI document at ``/openapi.json``):

    GET /v1/lookup?type=phone&value=...         the customer behind an identifier
    GET /v1/profiles/{id}                       a profile; a merged-away ID redirects to its survivor
    GET /v1/profiles/{id}/timeline              events across channels, newest first, paged
    GET /v1/profiles/{id}/explain               the evidence: links, merges, splits, what was not linked
    GET /healthz, /readyz, /metrics             process up; views loaded and follower running; Prometheus

Authentication: when ``IDRES_API_KEY`` is set, every ``/v1`` request needs the header ``X-API-Key``
with that value; the health endpoints stay open.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hmac
import itertools
import json
import ipaddress
import os
import socket
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Optional
from urllib.parse import parse_qsl, quote

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from projections.changelog import changes_of
from projections.customer import CustomerViews, ProjectionConfig
from projections.households import device_types, household_of, households, rest_after
from resolver.config import ResolverConfig
from resolver.errors import IdresError
from resolver.normalize import Normalizer
from schemas.channel import duplicate_key
from streams.embedded import STATE_TYPES, state_fingerprint
from streams.log import DecisionLog, LogError, bulk_work, keep_frozen, load_checkpoint, log_dir_of, open_restatements
from resolver.decisions import erasure_of
from streams.sealing import is_erased

API_KEY_ENV = "IDRES_API_KEY"
WRITE_KEYS_ENV = "IDRES_API_WRITE_KEYS"  # name:key,name:key: who may decide reviews and unmerges over HTTP
API_KEY_SCHEME = "ApiKey"
DOCS_ASSETS = "/docs/assets"


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the swagger-ui-bundle package, so the page loads with no internet."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: docs",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")
POLL_INTERVAL = 0.2  # seconds between looks at the log
FOLLOW_WAIT_MS = 200  # on Kafka: how long a look waits for the next message of the decision-log topic
FOLLOW_REST = 0.01  # on Kafka: seconds between looks (each waits for a message itself)
RECENT_ENTRIES = 20_000  # log entries whose changes the server holds for /v1/changes (older: read from the log)
APPLY_BATCH = 50  # log entries folded per hold of the views lock
PAUSE = 1.0  # after each batch, the follower rests this many times as long as the batch took
MAX_TIMELINE = 500
SWITCH_INTERVAL = 0.0002  # seconds; see serve()
COMMAND_FOLDED_WAIT = 10.0  # seconds a command's answer waits at most for the views to fold what it recorded
LOAD_RETRY_MAX = 30.0  # seconds between attempts to load the views when the log cannot be read (a broker not up yet)
ERASURE_GRACE = 10.0  # seconds an erasure may wait for its keys to be shredded before the views answer nothing
# Households are recomputed (a pass over every event: ~0.1 s per 50,000 events) after new log entries
# are folded, at most once per this many seconds counted from the end of the previous computation (so
# while entries keep arriving, at most computation/(computation + this) of the follower's time goes to
# them); entries after a longer quiet spell are reflected at once. Bound on how far `household` lags
# the profile beside it: this, plus one computation, plus one poll.
HOUSEHOLDS_INTERVAL = 5.0


class ServeError(IdresError):
    pass


class _Pacer:
    """Called often during a long stretch of work in the follower thread: once it has worked ``slice``
    seconds since it last rested, it rests ``ratio`` times as long (50 ms at most), so that requests sharing
    the interpreter are answered meanwhile instead of waiting behind the whole stretch."""

    def __init__(self, ratio: float, slice: float = 0.002):
        self.ratio = ratio
        self.slice = slice
        self.since = time.perf_counter()

    def __call__(self) -> None:
        worked = time.perf_counter() - self.since
        if worked >= self.slice:
            time.sleep(min(0.05, worked * self.ratio))
            self.since = time.perf_counter()


# ============================================================================================ follower
class Follower:
    """Keeps a ``CustomerViews`` up to date with a decision log another process appends to.

    ``start`` runs everything in one background thread: the initial load (checkpoint, then the log
    tail), then a poll every ``poll_interval`` seconds. ``lock`` guards ``views``: hold it while
    reading them. ``households`` is ``(log position, households map)`` as last computed by that thread
    (``refresh_households``); it is replaced whole, never changed, so read it once and use the pair.
    """

    def __init__(self, data_dir: str | Path, config: Optional[ResolverConfig] = None,
                 projection_config: Optional[ProjectionConfig] = None, *,
                 poll_interval: float = POLL_INTERVAL, apply_batch: int = APPLY_BATCH, pause: float = PAUSE,
                 households_interval: float = HOUSEHOLDS_INTERVAL, rewind_every: int = 20_000):
        self.data_dir = Path(data_dir)
        self.config = config or ResolverConfig()
        self.projection_config = projection_config or ProjectionConfig()
        self.normalizer = Normalizer(self.config)
        self.fingerprint = state_fingerprint(self.config, self.projection_config)
        self.poll_interval = poll_interval
        self.apply_batch = max(1, apply_batch)
        self.pause = pause
        self.lock = threading.Lock()
        self.views = CustomerViews(self.projection_config)
        self.ready = threading.Event()
        self.error: Optional[str] = None
        self.gone: Optional[str] = None  # why the views are no longer answered from (their source is gone)
        # an erasure logged whose keys are not shredded: the views stop before it, and still hold the customer it
        # erases; past ``ERASURE_GRACE`` (a command that erased and stopped part way) nothing is answered from them
        self.erasure_pending_since: Optional[float] = None
        self.unfinished: Optional[str] = None
        self.log: Optional[DecisionLog] = None
        self.log_length = 0  # entries in the log at the last look (Kafka: an estimate, see KafkaFollower.poll)
        self.lag_messages = 0  # Kafka: decision-log messages not yet folded
        self.applied = 0  # entries this process has folded (initial load included)
        self.from_checkpoint = 0  # the seq the checkpoint covered, when one was used
        self.rebuilt_from = 0  # the entry the views were last folded from (a kept state's or checkpoint's, or 0)
        self.rebuild_seconds = 0.0  # (and how long that took)
        self.restating = False  # inside a restatement of the log: its entries are folded once it completes
        self.refold = False  # a restatement completed and the views are not yet folded again (a look failed)
        # a data directory: the views kept for a restatement to fold from (``streams.view_points`` says why and
        # how often), as (the entry they are folded up to, pickled), the newest last; the next at the first
        # look after a fold
        self.rewind_every = rewind_every
        self.kept: list[tuple[int, bytes]] = []
        self.keep_wanted = False
        self.read_seq = 0  # the log's entries read so far, as written (their changes held, or in the log)
        self.polls = 0
        self.poll_errors = 0
        self.last_poll = 0.0
        self.households_interval = households_interval
        self.households: tuple[int, dict[str, dict[str, Any]]] = (0, {})  # (views.seq it was computed at, map)
        self.households_computed = 0
        self.households_seconds = 0.0  # the last computation took
        self._households_done = float("-inf")  # time.monotonic() when the last computation ended
        self._weak_types = device_types(self.config)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # the changes (``projections.changelog``) of the entries folded lately: (seq, changes), oldest first
        self.recent: collections.deque[tuple[int, list[dict[str, Any]]]] = collections.deque(maxlen=RECENT_ENTRIES)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="idres-follower", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.log is not None:
            self.log.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        wait = 1.0
        while True:
            try:
                self.load()
                self.refresh_households(force=True)
                break
            except Exception as exc:  # reported by /readyz and on stderr; the process stays up and tries again
                self.error = f"loading the decision log failed: {type(exc).__name__}: {exc}"
                print(f"idres: warning: {self.error}; trying again in {wait:.0f} s", file=sys.stderr, flush=True)
                if self._stop.wait(wait):
                    return
                wait = min(wait * 2, LOAD_RETRY_MAX)
        self.error = None
        self.ready.set()
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll()
                self.refresh_households()
            except LogError as exc:
                # the log is gone, replaced, cut short or damaged: what the views hold is no longer its
                # account, so nothing is answered from them any more
                self.poll_errors += 1
                self.error = self.gone = f"the decision log can no longer be followed: {exc}"
                return
            except Exception as exc:
                self.poll_errors += 1
                self.error = f"following the decision log failed: {type(exc).__name__}: {exc}"
            else:
                self.error = None

    # -- folding -----------------------------------------------------------------------------------
    def load(self, after: int = -1, restated: bool = False) -> None:
        """The views as of now: the checkpoint if usable (taken after entry ``after``: an erasure), then the
        log tail. Not yet visible to readers while it runs, so no lock is needed. ``restated``: the log was
        restated (``resolver.restate``) while it was being followed: the changes already held stay, and the
        log is read on from where it was."""
        from streams.stream_app import unpickled

        started = time.monotonic()
        log = DecisionLog(self.data_dir, writer=False)
        if after >= 0:
            self.kept = []  # (they hold what the erasure erased)
        with bulk_work():
            # the newest kept views a restatement since does not supersede entries of (none: on an erasure)
            kept = next((k for k in reversed(self.kept) if k[0] <= len(log) and not log.restated_since(k[0])), None)
            loaded = None
            if kept is None:  # (else the kept views, in memory, rather than the checkpoint's)
                loaded = load_checkpoint(self.data_dir, self.fingerprint, len(log),
                                         recount=lambda: (log.refresh(), len(log))[1], state_types=STATE_TYPES,
                                         parts=1)  # (serving needs only the views)
                if loaded is not None and (loaded[0] <= after or log.restated_since(loaded[0])):
                    loaded = None
            if loaded is not None:
                seq, state = loaded
                views = state[0]
                del loaded, state
                views.config = self.projection_config
                self.from_checkpoint = self.rebuilt_from = seq
            elif kept is not None:
                views = unpickled(kept[1])
                views.config = self.projection_config
                self.rebuilt_from = kept[0]
            else:
                views = CustomerViews(self.projection_config)
                self.rebuilt_from = 0
            self.keep_wanted = kept is None  # (folded from the checkpoint or the start: kept at the next look)
            start, stop = views.seq, None
            for seq, decisions in log.read(start):
                erased = erasure_of(decisions)
                if erased is not None:
                    if not all(is_erased(k) for k in erased["nodes"]):
                        # its keys not yet shredded: the views stop before it, and a look waits for them
                        log.sealer.forget()
                        stop = seq
                        self._erasure_pending(at_load=True)
                        break
                    if start > 0:  # (the views folded from, kept or the checkpoint's, hold what it erased)
                        log.close()
                        return self.load(after=seq, restated=restated)
                views.apply_entry(seq, decisions)
                self.applied += 1
        keep_frozen()  # what was loaded lives as long as the process: keep the collector off it
        self.rebuild_seconds = time.monotonic() - started
        if stop is None:
            self.erasure_pending_since = self.unfinished = None
        with self.lock:
            old, self.log = self.log, log
            self.views = views
            self.refold = False
            self.restating = bool(open_restatements(log.restatements()))
            self.log_length = len(log)
            if after >= 0:
                self.recent.clear()  # (changes read before the erasure name what it erased)
            if not restated:
                self.read_seq = len(log) if stop is None else stop
        if old is not None:
            old.close()

    def poll(self) -> int:
        """Folds what was appended since the last look; returns how many entries."""
        log = self.log
        if log is None:
            return 0
        self.polls += 1
        self.last_poll = time.time()
        if self.refold:  # (the last look read a restatement's end and failed to fold the views again)
            self.load(restated=True)
            self.refresh_households()
            return 0
        self._keep_views(log)
        log.refresh()
        self.log_length = len(log)
        if self.read_seq >= self.log_length:
            return 0
        n = 0
        batch: list[tuple[int, list[dict[str, Any]]]] = []
        with bulk_work():
            # Requests share the interpreter with this thread: after each batch it rests as long as the batch
            # took, so that a request never waits behind a long stretch of folding
            rest = _Pacer(self.pause, slice=0.0) if self.pause else None
            # every entry as written, for the changelog; folded into the views as the log reads now
            for entry in log.read(self.read_seq, raw=True):
                erased = erasure_of(entry[1])
                if erased is not None and entry[0] >= self.views.seq:
                    # an erasure: once its keys are shredded, everything is read again without what it erased
                    n += self._apply(batch)
                    if not all(is_erased(k) for k in erased["nodes"]):
                        log.sealer.forget()  # (not yet shredded: look again on the next poll)
                        self._erasure_pending()
                        return n
                    self.load(after=entry[0])
                    self.refresh_households(force=True)
                    return n + 1
                kind = entry[1][0]["type"] if entry[1] else None
                if kind == "log_restate_begun":
                    # what follows is folded once the restatement completes: read now, the log may already say
                    # so, and the entries it decided again would be folded onto views holding those they replace
                    n += self._apply(batch)
                    batch = []
                    self.restating = True
                batch.append(entry)
                if kind == "log_restated":
                    # a restatement completed: the views are read again as the log reads now (and the log on
                    # from here, on the next poll)
                    n += self._apply(batch)
                    self.refold = True  # (until it is done: the entries read are past the marker)
                    self.load(restated=True)
                    self.refresh_households()
                    return n
                if kind == "log_restate_abandoned":  # (its entries are skipped: the views hold what they did)
                    n += self._apply(batch)
                    batch = []
                    self.restating = False
                if len(batch) >= self.apply_batch:
                    n += self._apply(batch)
                    batch = []
                    self.refresh_households()  # when due: the bound holds through a long catch-up too
                    if rest is not None:
                        rest()
            n += self._apply(batch)
        keep_frozen()
        return n

    def _erasure_pending(self, at_load: bool = False) -> None:
        """An erasure is logged and its keys are not shredded: the command erasing is between the two, or stopped
        there. Past ``ERASURE_GRACE`` (at once when the server starts on it), the views, which hold the customer
        it erases, answer nothing until a writer finishes it."""
        now = time.monotonic()
        if self.erasure_pending_since is None:
            self.erasure_pending_since = now
        if at_load or now - self.erasure_pending_since >= ERASURE_GRACE:
            self.unfinished = (f"an erasure logged in {self.data_dir} is not finished (the command that erased "
                               f"stopped part way): run `idres replay --data-dir {self.data_dir}`, which finishes it")

    def _keep_views(self, log: DecisionLog) -> None:
        """Keeps the views (pickled) when it is time to: ``rewind_every`` entries and a quarter of the log after
        the last kept, or first after a fold; never inside a restatement (its entries are not folded yet)."""
        from streams.stream_app import pickled, spaced

        seq = self.views.seq
        last = self.kept[-1][0] if self.kept else 0
        if not self.rewind_every or not seq or not (self.keep_wanted or spaced(seq, last, self.rewind_every)):
            return
        if self.restating or open_restatements(log.restatements()):
            return
        self.kept = (self.kept + [(seq, pickled(self.views))])[-2:]
        self.keep_wanted = False

    def _apply(self, batch: list[tuple[int, list[dict[str, Any]]]]) -> int:
        """Holds the changes of ``batch`` (entries as written) and folds those the log reads now and the views
        do not hold yet."""
        if not batch:
            return 0
        views = self.views
        skipped = self.log.skipped if self.log is not None else (lambda seq: False)
        with self.lock:
            for seq, decisions in batch:
                if seq >= views.seq and not skipped(seq) and not self.restating:
                    views.apply_entry(seq, decisions)
                self.recent.append((seq, changes_of(seq, decisions)))
            self.read_seq = batch[-1][0] + 1
        self.applied += len(batch)
        return len(batch)

    def changes(self, start: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The changes of the entries from ``start`` on that the views hold (whole entries, ``limit`` changes or
        a little more), and the position to ask from next. Raises ``LookupError`` for a position this follower
        cannot give (``source`` says where to read instead)."""
        out: list[dict[str, Any]] = []
        nxt = start
        with self.lock:
            end = self.read_end()
            if start >= end:
                return out, start
            recent = self.recent
            held = bool(recent) and recent[0][0] <= start
            if held:  # (entries are held in order, one per position: the first wanted is at start - first)
                taken, n = [], 0
                for entry in itertools.islice(recent, start - recent[0][0], None):
                    if n >= limit:
                        break
                    taken.append(entry)
                    n += len(entry[1])
        entries: Iterable[tuple[int, list[dict[str, Any]]]] = taken if held else self._older_changes(start, end)
        for seq, changes in entries:
            if seq >= end or len(out) >= limit:
                break
            out.extend(changes)
            nxt = seq + 1
        return out, nxt

    def read_end(self) -> int:
        """The log position up to which the changes are known (held, or in the log)."""
        return self.read_seq

    def _older_changes(self, start: int, end: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        log = DecisionLog(self.data_dir, writer=False)
        try:
            for seq, decisions in log.read(start, end, raw=True):
                yield seq, changes_of(seq, decisions)
        finally:
            log.close()

    def refresh_households(self, force: bool = False) -> bool:
        """Recomputes the households when the views moved on since the last computation and (unless
        ``force``) ``households_interval`` seconds have passed since it ended, and nine times as long as it took
        (``projections.households.rest_after``); True when it did.

        Called only from the follower thread, the views' only writer: they stand still while it runs,
        so no lock is taken, and requests keep reading the previous map until the new one is swapped in."""
        views = self.views
        seq = views.seq
        if seq == self.households[0]:
            return False
        if not force and time.monotonic() - self._households_done < rest_after(self.households_interval,
                                                                               self.households_seconds):
            return False
        started = time.perf_counter()
        with bulk_work():
            houses = households(views, self._weak_types, pace=_Pacer(self.pause) if self.pause else None)
        self.households = (seq, houses)  # one reference: a request takes the pair whole
        self.households_seconds = time.perf_counter() - started
        self.households_computed += 1
        self._households_done = time.monotonic()
        return True

    def lookup_key(self, id_type: str, raw: str) -> tuple[Optional[str], Optional[str]]:
        """The node key an identifier is stored under, normalized exactly as ingestion does."""
        self.normalizer.learn_regions(tuple(self.views.learned_regions))
        key, reason = self.normalizer.node_key(id_type, raw)  # (an anonymous event's record by its event ID, as given)
        return (key, None) if key is not None else (None, reason or "unusable value")


# ============================================================================================ models
class MissingTopics(RuntimeError):
    """The deployment a follower was pointed at lacks a topic it reads (yet): ``missing_topic``."""


class KafkaFollower(Follower):
    """The same follower fed from the decision-log topic of a Kafka deployment instead of a data directory.

    On start it folds the topic from its beginning; then one consumer (no group, no commits) stays on
    the topic and folds each new message's entries, whole, under the lock. When a restatement completes, the
    views are folded again from the newest of the views it kept (``streams.view_points``; one every
    ``rewind_every`` entries and at least a quarter of the log, 0: none, from the topic's start).
    """

    def __init__(self, settings: Any, config: Optional[ResolverConfig] = None,
                 projection_config: Optional[ProjectionConfig] = None, rewind_every: int = 20_000, **kwargs: Any):
        from streams.view_points import ViewPoints

        # the consumer's poll waits for the next message itself (FOLLOW_WAIT_MS), so the loop barely rests:
        # a message is folded as it arrives, not at the next look
        kwargs.setdefault("poll_interval", FOLLOW_REST)
        super().__init__(Path("."), config, projection_config, **kwargs)
        self.settings = settings
        self.next_offset = 0
        self._consumer: Any = None
        self._interrupted = False  # (a look failed part way: its messages are read again from next_offset)
        self.points = ViewPoints(rewind_every)

    def load(self, restated: bool = False) -> None:
        """The views as the log reads now. ``restated``: a restatement completed while the log was followed: the
        changes already held stay, and the views are folded again from a kept state when one is usable."""
        started = time.monotonic()
        if not restated:
            self._deployment_exists()
        held: collections.deque = collections.deque(maxlen=self.recent.maxlen)
        known = self.read_seq if restated else 0  # (the entries whose changes are held)

        def take(seq: int, entry: list[dict[str, Any]]) -> None:
            if seq >= known:
                held.append((seq, changes_of(seq, entry)))

        folded = self.points.fold(self.settings, self.projection_config, on_entry=take)
        self.next_offset = folded.offset
        self.applied = folded.entries
        self.rebuilt_from = folded.start
        self.rebuild_seconds = time.monotonic() - started
        keep_frozen()
        with self.lock:
            self.views = folded.views
            self.refold = False
            if restated:
                self.recent.extend(held)
            else:
                self.recent = held
            self.read_seq = folded.entries
            self.restating = bool(folded.scan.open_restatements())
            self.log_length = folded.entries

    def _deployment_exists(self) -> None:
        """Raises unless the deployment's topics exist (``missing_topic``): said and tried again (``_run``), since
        a compose file may start the API before the topics are created."""
        from streams.stream_app import missing_topic

        missing = missing_topic(self.settings)
        if missing is not None:
            raise MissingTopics(missing)

    def poll(self) -> int:
        from kafka import KafkaConsumer, TopicPartition

        self.polls += 1
        self.last_poll = time.time()
        tp = TopicPartition(self.settings.topics.decisions, 0)
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
                                           enable_auto_commit=False, auto_offset_reset="earliest",
                                           client_id=f"{self.settings.client_id}-api", max_partition_fetch_bytes=8 << 20)
            self._consumer.assign([tp])
            self._consumer.seek(tp, self.next_offset)
        elif self._interrupted:  # (the last look failed: what it read after the last message folded is read again)
            self._consumer.seek(tp, self.next_offset)
        if self.refold:  # (the last look read a restatement's end and failed to fold the views again)
            self.load(restated=True)
            self._consumer.seek(tp, self.next_offset)
            return 0
        waited = self.points.shredded(self.settings)  # (erasures waited for in vain whose keys are gone now)
        if waited:
            self.recent.clear()
            self.points.forget()
            self.load()
            self.points.settled(waited)
            self._consumer.seek(tp, self.next_offset)
            return 0
        self._interrupted = True
        n = self._follow(tp)
        self._interrupted = False
        return n

    def _follow(self, tp: Any) -> int:
        from streams.stream_app import decision_entries

        n = 0
        with bulk_work():
            for record in self._consumer.poll(timeout_ms=FOLLOW_WAIT_MS, max_records=200).get(tp, ()):
                if record.offset < self.next_offset:
                    continue
                entries = decision_entries(record.value, self.settings)
                if any(map(erasure_of, entries)):
                    # an erasure: everything is read again once its keys are shredded, without what it erased (the
                    # fold waits for them, as for any erasure it finds that was not read before)
                    self.recent.clear()
                    self.points.forget()  # (they hold what it erased)
                    self.load()
                    self._consumer.seek(tp, self.next_offset)
                    return n + len(entries)
                views = self.views
                restated = False
                with self.lock:
                    for entry in entries:
                        seq = self.read_seq
                        self.points.note(entry)
                        self.recent.append((seq, changes_of(seq, entry)))
                        kind = entry[0]["type"] if entry else None
                        if kind == "log_restate_begun":
                            self.restating = True  # (what follows is folded once the restatement completes)
                        elif kind in ("log_restated", "log_restate_abandoned"):
                            self.restating, restated = False, True
                        elif not self.restating:
                            views.apply_entry(seq, entry)
                        self.read_seq = seq + 1
                self.next_offset = record.offset + 1
                if restated:  # (the views are folded again as the log reads now)
                    self.refold = True  # (until it is done: the message is read)
                    self.load(restated=True)
                    self._consumer.seek(tp, self.next_offset)
                    return n + len(entries)
                self.applied += len(entries)
                n += len(entries)
        if not self.restating and self.points.due() and self.points.scan.entries == self.read_seq:
            self.points.keep(self.next_offset, self.views)  # (as the log reads now: kept for a restatement)
        # how far behind, in messages: the topic's end, from the last fetch's high-water mark and from asking
        # the broker (a fetch's mark is known only once a fetch returned); in entries at the entries per
        # message read so far
        # (the larger of the two: each is right where the other may lag, before a fetch returned or after)
        ends = [self._consumer.highwater(tp)]
        try:
            ends.append(self._consumer.end_offsets([tp])[tp])
        except Exception:
            pass
        end = max((e for e in ends if e is not None), default=None)
        behind = max(0, end - self.next_offset) if end is not None else 0
        self.lag_messages = behind
        per_message = self.applied / self.next_offset if self.next_offset else 1.0
        self.log_length = self.read_seq + round(behind * max(per_message, 1.0))
        keep_frozen()
        return n

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self._consumer is not None:
            self._consumer.close()

    def read_end(self) -> int:
        return self.read_seq

    def _older_changes(self, start: int, end: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        raise LookupError(f"changes before log position {self.recent[0][0] if self.recent else end} are no longer "
                          f"held by this server: read the topic {self.settings.topics.changes} from its start")


class Problem(BaseModel):
    error: str = Field(description="A stable, machine-readable code.")
    detail: str = Field(description="What went wrong, for a person.")


class SharedIdentifierProblem(Problem):
    identifier: str = Field(description="The identifier as stored (normalized), e.g. phone:+14155550100.")
    reason: str = Field(description="Why the engine found it to be shared by several customers.")
    event_id: Optional[str] = Field(None, description="The event on which it was found to be shared.")


class MovedProblem(Problem):
    profile_id: str = Field(description="The surviving profile the requested ID was merged into.")


class ValidationProblem(Problem):
    errors: list[dict[str, Any]] = Field(default_factory=list)


class Case(BaseModel):
    case_id: str
    status: str
    opened_at: str
    channel: str
    last_event_at: Optional[str] = None
    last_channel: Optional[str] = None
    closed_at: Optional[str] = None


class TimelineEvent(BaseModel):
    event_id: str
    occurred_at: str
    channel: str
    event_type: str
    payload: Optional[dict[str, Any]] = None


class Household(BaseModel):
    household_id: str = Field(description="The household's ID, named by the identifier that tied it first (with "
                                          "none, by its address): it stays the same as its members' profiles merge "
                                          "or new members join.")
    others: list[str] = Field(description="The other members' profile IDs (a household has 2 to 8 customers). "
                                          "An ID merged away since still resolves to its survivor.")
    via: list[str] = Field(description="What ties them: shared identifiers as stored (TYPE:VALUE: a family "
                                       "mailbox, a landline, a family tablet), or address:ADDRESS|POSTCODE when "
                                       "their golden records give the same address and postcode.")


class CustomerView(BaseModel):
    profile_id: str
    requested_id: Optional[str] = Field(None, description="The ID asked for, when it was merged into this one.")
    created_at: Optional[str] = None
    identifiers: dict[str, list[str]] = Field(description="Normalized identifiers by type.")
    golden_record: dict[str, str] = Field(description="Per attribute, the surviving value.")
    first_seen: Optional[str] = None
    last_seen: Optional[str] = None
    event_count: int
    channels: dict[str, int] = Field(description="Events per channel.")
    purchase_count: int
    lifetime_value: float
    open_cases: list[Case]
    closed_case_count: int
    csat_average: Optional[float] = None
    merged_ids: list[str] = Field(description="Profile IDs merged into this one; each still resolves here.")
    household: Optional[Household] = Field(
        None, description="The customers this one shares a home with: a relationship between profiles, not a "
                          "merge (as `idres lookup` gives it). null: in no household. Computed in the background, "
                          "see household_as_of.")
    household_as_of: Optional[int] = Field(
        None, description="null when `household` is as current as the rest of this answer. Otherwise the decision-"
                          f"log position (entries folded, as /readyz applied_seq) it was computed at: the server "
                          f"recomputes households at most every {HOUSEHOLDS_INTERVAL:g} seconds (and nine times as "
                          "long as a computation took) while new entries keep arriving, so for that long "
                          "`household` may miss the newest events (a profile "
                          "newer than the computation shows null).")
    timeline: list[TimelineEvent] = Field(description="The most recent events, newest first.")


class MatchedIdentifier(BaseModel):
    type: str
    value: str = Field(description="The value as given.")
    key: str = Field(description="The identifier as stored, normalized: TYPE:VALUE.")


class LookupResult(CustomerView):
    matched: MatchedIdentifier


class TimelinePage(BaseModel):
    profile_id: str
    total: int = Field(description="Events of the profile in all.")
    limit: int
    offset: int
    next_offset: Optional[int] = Field(None, description="The offset of the next page; null on the last one.")
    events: list[TimelineEvent]


class FieldEvidence(BaseModel):
    level: str = Field(description="Agreement level, e.g. exact, nickname, jw_92, one_off, different.")
    weight: float = Field(description="The field's contribution to the match weight, log2(m/u), frequency "
                                      "adjustment included.")
    frequency_adjustment: Optional[float] = Field(
        None, description="Bits added for an exact agreement on a rare value (negative: a common one, as Smith).")


class Link(BaseModel):
    a: str
    b: str
    event_id: str
    rule: str = Field(description="seen_together, probable_match (attribute evidence) or review_accepted.")
    channel: Optional[str] = None
    event_type: Optional[str] = None
    occurred_at: Optional[str] = None
    weight: Optional[float] = Field(default=None, description="Match weight of a probable_match link.")
    link_threshold: Optional[float] = None
    fields: Optional[dict[str, FieldEvidence]] = None
    model: Optional[str] = None
    review_id: Optional[str] = None


class Review(BaseModel):
    review_id: str
    status: str = Field(description="pending, moot (since linked, shared or banned apart), linked, rejected, "
                                    "already_linked, blocked.")
    event_id: str
    occurred_at: str
    identifier: str
    other_identifier: str
    profile_id: Optional[str]
    other_profile_id: Optional[str]
    weight: float
    link_threshold: float
    review_threshold: float
    fields: dict[str, FieldEvidence]
    model: str
    decision: Optional[str] = None
    reviewer: Optional[str] = None
    decided_at: Optional[str] = None
    note: Optional[str] = None
    reason: Optional[str] = None


class Ban(BaseModel):
    ban_id: str
    kind: Literal["unmerge", "review"] = Field(description="An unmerge, or a rejected review (its pair).")
    sides: list[list[str]] = Field(description="The two sides: no profile may hold an identifier of each.")
    by: str
    decided_at: str
    note: Optional[str] = None
    lifted: Optional[dict[str, Any]] = Field(default=None, description="Who lifted it, when, why (if lifted).")


class ReviewSide(BaseModel):
    identifier: str
    profile_id: Optional[str] = Field(description="Its profile now (None when the identifier was since found shared).")
    status: Literal["linked", "shared", "unknown"]
    event_id: Optional[str] = Field(None, description="The event whose attribute record is shown.")
    channel: Optional[str] = None
    occurred_at: Optional[str] = None
    record: dict[str, Any] = Field(default_factory=dict, description="The attributes the match weighed.")
    golden_record: dict[str, Any] = Field(default_factory=dict, description="The profile's best values.")
    identifiers: list[str] = Field(default_factory=list, description="The profile's identifiers (50 at most).")
    events: int = 0


class ReviewDetail(Review):
    sides: list[ReviewSide] = Field(description="The two sides, side by side: the reviewed event's and the other's.")


class ReviewVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["accept", "reject"]
    note: Optional[str] = Field(None, max_length=2000)


class BulkVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["accept", "reject"]
    min_weight: float = Field(description="Decide every pending review weighing at least this.", allow_inf_nan=False)
    max_weight: Optional[float] = Field(None, description="... and at most this.", allow_inf_nan=False)
    note: Optional[str] = Field(None, max_length=2000)
    limit: int = Field(1000, ge=1, le=10000, description="Decide at most this many (oldest first).")

    @model_validator(mode="after")
    def _range(self) -> "BulkVerdict":
        if self.max_weight is not None and self.max_weight < self.min_weight:
            raise ValueError(f"max_weight {self.max_weight:g} is below min_weight {self.min_weight:g}: no review "
                             "weighs both")
        return self


class IdentifierRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=512)


class UnmergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifiers: list[IdentifierRef] = Field(min_length=1, max_length=200,
                                             description="The identifiers that leave the profile.")
    note: Optional[str] = Field(None, max_length=2000)


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifiers: list[IdentifierRef] = Field(min_length=1, max_length=20, description=(
        "Identifiers of the customer: every profile holding one is erased whole (an identifier in no profile, "
        "alone)."))
    reason: Optional[str] = Field(None, max_length=2000, description="Why (a request's reference; no personal data).")


class LiftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Optional[str] = Field(None, max_length=2000)


class CommandResult(BaseModel):
    status: Literal["recorded", "submitted"] = Field(
        description="recorded: in the decision log now (embedded); submitted: sent to the resolve worker (Kafka).")
    by: str = Field(description="Who decided: the name the write key belongs to.")
    decisions: list[dict[str, Any]] = Field(default_factory=list, description="What was recorded (embedded).")
    detail: Optional[str] = None


class ChangePage(BaseModel):
    changes: list[dict[str, Any]] = Field(description="Changes in order (see the changelog in the README).")
    next: int = Field(description="The log position to ask from next (``from``).")


class BanPage(BaseModel):
    total: int
    bans: list[Ban]


class ReviewPage(BaseModel):
    total: int
    limit: int
    offset: int
    reviews: list[Review]


class Merge(BaseModel):
    survivor_id: str
    absorbed_ids: list[str]
    event_id: str
    occurred_at: str
    via: list[str]
    rule: str
    evidence: Optional[dict[str, list[str]]] = Field(
        None, description="weak_identifier_and_person: the weak identifiers and the person both sides name.")


class Split(BaseModel):
    profile_id: str
    event_id: str
    reason: str
    parts: list[str]


class NotLinked(BaseModel):
    identifier: str
    event_id: str
    why: str


class Attributed(BaseModel):
    event_id: str = Field(description="An event that carried only shared identifiers.")
    via: str = Field(description="The shared identifier it carried.")
    node: str = Field(description="The customer's identifier it is attributed through.")
    rule: str = Field(description="same_session: within 30 minutes of this customer's identified event on it; "
                                  "same_name: it names this customer, the only one of its users it names.")
    claimed_by: Optional[str] = Field(None, description="The identified event that followed and claimed it.")


class Explanation(BaseModel):
    profile_id: str
    identifiers: list[str]
    events: int
    links: list[Link]
    merges: list[Merge]
    splits: list[Split]
    not_linked: list[NotLinked]
    attributed: list[Attributed] = Field(default_factory=list,
                                         description="Events that carried only shared identifiers, and why they "
                                                     "are this customer's.")
    bans: list[Ban] = Field(default_factory=list, description="Connection bans in force on its identifiers.")
    summary: list[str] = Field(description="The evidence in sentences.")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description="ready, loading or failing")
    detail: Optional[str] = None
    log_entries: int
    applied_seq: int
    lag_entries: int


# ============================================================================================ metrics
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Request counts and latency histograms by route and status, in Prometheus text format.

    Updated only on the event-loop thread (the middleware), so it needs no lock."""

    def __init__(self) -> None:
        self.hist: dict[tuple[str, str, str], list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        h = self.hist.get(key)
        if h is None:
            h = self.hist[key] = [0.0] * (len(_BUCKETS) + 2)
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                h[i] += 1
        h[-2] += 1
        h[-1] += seconds

    def render(self, follower: Follower) -> str:
        out = [
            "# HELP idres_http_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE idres_http_requests_total counter",
        ]
        for (method, route, status), h in sorted(self.hist.items()):
            out.append(f'idres_http_requests_total{{method="{method}",route="{_esc(route)}",status="{status}"}} '
                       f"{int(h[-2])}")
        out += [
            "# HELP idres_http_request_duration_seconds Time to answer HTTP requests, by method, route and status.",
            "# TYPE idres_http_request_duration_seconds histogram",
        ]
        for (method, route, status), h in sorted(self.hist.items()):
            labels = f'method="{method}",route="{_esc(route)}",status="{status}"'
            for bound, count in zip(_BUCKETS, h):
                out.append(f'idres_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {int(count)}')
            out.append(f'idres_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {int(h[-2])}')
            out.append(f"idres_http_request_duration_seconds_sum{{{labels}}} {h[-1]:.6f}")
            out.append(f"idres_http_request_duration_seconds_count{{{labels}}} {int(h[-2])}")
        with follower.lock:
            stats = follower.views.stats()
            seq = follower.views.seq
        gauges = [
            ("idres_log_entries_applied_total", "counter",
             "Decision-log entries this process has folded into its views.", follower.applied),
            ("idres_log_entries", "gauge", "Entries in the decision log at the follower's last look.",
             follower.log_length),
            ("idres_log_applied_seq", "gauge", "Position in the decision log the views are at.", seq),
            ("idres_follower_lag_entries", "gauge", "Log entries written but not yet folded into the views (from "
             "Kafka: the messages behind times the entries per message read so far).",
             max(0, follower.log_length - seq)),
            ("idres_follower_lag_messages", "gauge", "From Kafka: decision-log messages not yet folded (0 for a data "
             "directory).", follower.lag_messages),
            ("idres_follower_polls_total", "counter", "Looks at the decision log for new entries.", follower.polls),
            ("idres_views_rebuilt_from", "gauge", "The log entry the views were last folded from (of kept views, "
             "of the checkpoint, or 0: the start of the log).", follower.rebuilt_from),
            ("idres_views_rebuild_seconds", "gauge", "How long the views' last fold took.",
             round(follower.rebuild_seconds, 3)),
            ("idres_views_kept_bytes", "gauge", "The views kept for restatements to fold from (pickled).",
             follower.points.kept_bytes() if isinstance(follower, KafkaFollower)
             else sum(len(k[1]) for k in follower.kept)),
            ("idres_follower_poll_errors_total", "counter", "Failed looks at the decision log.",
             follower.poll_errors),
            ("idres_follower_last_poll_timestamp_seconds", "gauge", "When the follower last looked at the log.",
             round(follower.last_poll, 3)),
            ("idres_households_seq", "gauge", "Position in the decision log the households were last computed at.",
             follower.households[0]),
            ("idres_households_computed_total", "counter", "Computations of the households.",
             follower.households_computed),
            ("idres_households_compute_seconds", "gauge", "How long the last computation of the households took.",
             round(follower.households_seconds, 6)),
            ("idres_ready", "gauge", "1 when the views are loaded and the follower is running.",
             int(follower.ready.is_set() and follower.running and follower.error is None)),
            ("idres_events", "gauge", "Accepted events in the views.", stats["events"]),
            ("idres_profiles", "gauge", "Customer profiles in the views.", stats["profiles"]),
            ("idres_identifiers", "gauge", "Linked identifiers in the views.", stats["identifiers"]),
            ("idres_shared_identifiers", "gauge", "Identifiers found to be shared by several customers.",
             stats["shared_identifiers"]),
            ("idres_merges", "gauge", "Profiles merged into another (one per row of the snapshot's merges table).",
             stats["merges"]),
            ("idres_rejected_events", "gauge", "Rejected records in the views.", stats["rejected"]),
        ]
        for name, kind, help_text, value in gauges:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """A plain ASGI middleware (cheaper than a BaseHTTPMiddleware): times every HTTP request and
    counts it under its route template, so that IDs in paths do not each get a series."""

    def __init__(self, app: Callable, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", "GET"), path, status, time.perf_counter() - started)


class _FastLookup:
    """``GET /v1/lookup`` answered without the framework's routing, dependencies and parameter models, which
    cost several times what the lookup itself does (the API's most frequent request, at thousands a second).
    It answers only requests it can answer exactly as the route does (the same body, bytes for bytes, and
    status), and passes every other one on to the route: parameters it would refuse or that are given
    twice, a missing or wrong key, a server not ready."""

    def __init__(self, route: Any, answer: Callable[[str, str, int], Any], expected: Optional[bytes],
                 follower: "Follower"):
        import inspect

        from fastapi.routing import serialize_response

        self.route = route
        self.serialize = serialize_response
        self.dump_json = "dump_json" in inspect.signature(serialize_response).parameters
        self.answer = answer
        self.expected = expected
        self.follower = follower
        self.answered = 0  # requests answered here (the rest went to the route)

    async def serialized(self, view: dict[str, Any]) -> Any:
        """The response the route makes of a view: through its response model, with the framework's own
        serializer (which writes the JSON itself where the framework version does, numbers as it writes them)."""
        field = self.route.response_field
        if self.dump_json:
            content = await self.serialize(field=field, response_content=view, dump_json=True)
            return Response(content=content, media_type="application/json")
        return JSONResponse(await self.serialize(field=field, response_content=view))

    def arguments(self, scope: dict) -> Optional[tuple[str, str, int]]:
        """``(type, value, timeline)`` when the request is one this path answers, else None."""
        if scope.get("method") != "GET" or scope.get("path") != "/v1/lookup":
            return None
        follower = self.follower
        if not follower.ready.is_set() or follower.gone is not None or follower.unfinished is not None:
            return None
        if self.expected is not None:
            given = b""
            for name, header in scope.get("headers", ()):
                if name == b"x-api-key":  # (the first, read as the route's guard reads it)
                    given = header.decode("latin-1").encode("utf-8", "surrogateescape")
                    break
            if not hmac.compare_digest(given, self.expected):
                return None  # (a writer's key, or none that fits: the route's guard says which)
        try:  # (as the framework reads the query string)
            params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        except ValueError:
            return None
        args: dict[str, str] = {}
        for name, value in params:
            if name in args or name not in ("type", "value", "timeline"):
                return None
            args[name] = value
        id_type, value, timeline = args.get("type"), args.get("value"), args.get("timeline", "20")
        if id_type is None or value is None or not 1 <= len(id_type) <= 64 or not 1 <= len(value) <= 1024:
            return None
        if not (timeline.isascii() and timeline.isdigit() and len(timeline) <= 3) or int(timeline) > MAX_TIMELINE:
            return None
        return id_type, value, int(timeline)

    async def __call__(self, scope: dict, receive: Callable, send: Callable, args: tuple[str, str, int]) -> None:
        self.answered += 1
        answer = self.answer(*args)
        if not isinstance(answer, JSONResponse):  # (the view, through the response model as the route does)
            answer = await self.serialized(answer)
        scope["route"] = self.route  # (counted under the route's template, as the route would be)
        await answer(scope, receive, send)


class _FastLookupMiddleware:
    def __init__(self, app: Callable, fast: _FastLookup):
        self.app = app
        self.fast = fast

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        args = self.fast.arguments(scope) if scope["type"] == "http" else None
        if args is None:
            await self.app(scope, receive, send)
        else:
            await self.fast(scope, receive, send, args)


def _given_twice(scope: dict) -> Optional[str]:
    """A query parameter of a ``/v1`` request that is given more than once (the first such), else None."""
    query = scope.get("query_string", b"")
    if not query or not scope.get("path", "").startswith("/v1/"):
        return None
    try:
        params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    seen: set[str] = set()
    for name, _ in params:
        if name in seen:
            return name
        seen.add(name)
    return None


# ============================================================================================ app
def _with_household(view: dict[str, Any], seq: int, computed: tuple[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Adds ``household`` and ``household_as_of`` to a customer view read at log position ``seq``, from
    ``computed``, the follower's ``households`` pair as it was read (once) for this request."""
    as_of, houses = computed
    view["household"] = household_of(houses, view["profile_id"])
    view["household_as_of"] = None if as_of == seq else as_of
    return view


def _problem(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


_PROBLEMS = {
    401: {"model": Problem, "description": "Missing or wrong X-API-Key (only when IDRES_API_KEY is set)."},
    422: {"model": ValidationProblem, "description": "A parameter is missing or out of bounds."},
    503: {"model": Problem, "description": "The views are still loading, or their source (the decision log) is "
                                           "gone, replaced, cut short or damaged (error source_gone)."},
}
_PROFILE_PROBLEMS = {
    **_PROBLEMS,
    307: {"model": MovedProblem, "description": "The ID was merged into another profile: "
                                                  "Location points to the survivor."},
    404: {"model": Problem, "description": "No profile has ever had this ID."},
}

ProfileId = PathParam(min_length=1, max_length=128, description="A profile ID, current or merged away.")


def write_keys(spec: Optional[str]) -> dict[str, str]:
    """``name:key,name:key`` as {key: name}. Raises ``ServeError`` for a malformed one."""
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, sep, key = item.strip().partition(":")
        if not sep or not name.strip() or len(key) < 8:
            raise ServeError(f"{WRITE_KEYS_ENV}: expected name:key pairs separated by commas, keys of at least "
                             f"8 characters (for example ana:Zk3...,bo:9fQ...), not {item.strip()[:20]!r}")
        out[key] = name.strip()
    return out


def create_app(follower: Follower, api_key: Optional[str] = None, writers: Optional[dict[str, str]] = None,
               commands: Any = None, fast_lookup: bool = True) -> FastAPI:
    """The application; ``api_key`` (when not empty) is required in ``X-API-Key`` on every /v1 route.
    ``writers`` ({key: name}) may decide reviews and unmerges through ``commands`` (``streams.commands``),
    each decision in the writer's name; without them the API takes no commands."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        follower.start()
        try:
            yield
        finally:
            follower.stop()

    app = FastAPI(
        title="idres lookup API",
        version="1",
        description="Who is this? The unified customer behind any identifier, kept up to date as events "
                    "arrive. Identifiers are normalized exactly as at ingestion.",
        lifespan=lifespan,
        docs_url=None,  # (served below from files installed with idres: no CDN, no network)
        redoc_url=None,
        redirect_slashes=False,  # (a redirect names the host the client gave: a 404 instead)
    )
    _offline_docs(app)
    metrics = Metrics()
    app.state.follower = follower
    app.state.metrics = metrics

    expected = api_key.encode() if api_key else None

    class _Refused(Exception):
        def __init__(self, response: JSONResponse):
            self.response = response

    @app.exception_handler(_Refused)
    async def _refused(request: Request, exc: _Refused) -> JSONResponse:
        return exc.response

    writer_keys = [(k.encode(), name) for k, name in (writers or {}).items()]

    def writer_of(request: Request) -> Optional[str]:
        given = request.headers.get("x-api-key", "").encode("utf-8", "surrogateescape")
        found = None
        for key, name in writer_keys:  # (every key compared: the time taken does not tell which matched)
            if hmac.compare_digest(given, key):
                found = name
        return found

    async def guard(request: Request) -> None:
        # (a plain dependency, cheaper per request than fastapi.security.APIKeyHeader; the scheme is
        # declared in the OpenAPI document below)
        if expected is not None and not hmac.compare_digest(
                request.headers.get("x-api-key", "").encode("utf-8", "surrogateescape"), expected) \
                and writer_of(request) is None:
            raise _Refused(_problem(401, "unauthorized", "this API needs the X-API-Key header with a valid key"))
        if not follower.ready.is_set():
            if follower.error is not None:
                raise _Refused(_problem(503, "not_ready", f"the customer views cannot be loaded yet ({follower.error}); "
                                                          "idres serve keeps trying: see its standard error"))
            raise _Refused(_problem(503, "not_ready", "the customer views are still loading; retry shortly"))
        if follower.unfinished is not None:
            raise _Refused(_problem(503, "erasure_unfinished", follower.unfinished))
        if follower.gone is not None:
            raise _Refused(_problem(503, "source_gone", f"{follower.gone}; restart `idres serve` on a data "
                                                        "directory that holds a decision log"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        for e, raw in zip(errors, exc.errors()):
            if e["type"] == "json_invalid":  # (said as what to fix: where the text stops being JSON)
                why = str((raw.get("ctx") or {}).get("error", "")).strip()
                e["msg"] = f"the body is not valid JSON{f' ({why})' if why else ''} at character {e['loc'][-1]}"
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if any(e["loc"][:1] == ["body"] for e in errors) and not (kind == "application/json"
                                                                  or (kind.startswith("application/")
                                                                      and kind.endswith("+json"))):
            detail = (f"send the body as JSON with the header Content-Type: application/json (it came as "
                      f"{kind or 'no type'}; curl: -H 'Content-Type: application/json'); {detail}")
        return _problem(422, "invalid_request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse({"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    def moved(request: Request, requested: str, survivor: str, suffix: str) -> JSONResponse:
        location = f"/v1/profiles/{quote(survivor, safe='')}{suffix}"
        if request.url.query:
            location += "?" + request.url.query
        return JSONResponse({"error": "merged", "detail": f"profile {requested} was merged into {survivor}",
                             "profile_id": survivor}, status_code=307, headers={"Location": location})

    # -- /v1 -----------------------------------------------------------------------------------
    async def one_value_a_parameter(request: Request) -> None:
        """A query parameter given more than once is refused: the framework would read the last and drop the
        others without a word."""
        twice = _given_twice(request.scope)
        if twice is not None:
            raise _Refused(_problem(422, "invalid_request", f"query parameter {twice!r} is given more than once: give "
                                                           "it once", errors=[{"loc": ["query", twice], "type": "repeated",
                                                                               "msg": "given more than once"}]))

    v1 = {"dependencies": [Depends(guard), Depends(one_value_a_parameter)], "tags": ["customers"],
          "openapi_extra": {"security": [{API_KEY_SCHEME: []}, {}]}}

    @app.get("/v1/lookup", response_model=LookupResult, **v1, summary="The customer behind an identifier",
             responses={**_PROBLEMS,
                        400: {"model": Problem, "description": "The value cannot be an identifier of that type "
                                                               "(malformed, or a placeholder)."},
                        404: {"model": Problem, "description": "No customer has this identifier."},
                        409: {"model": SharedIdentifierProblem,
                              "description": "The identifier is shared by several customers, so it identifies "
                                             "none of them."}})
    async def lookup(
        type: str = Query(min_length=1, max_length=64, description="Identifier type: email, phone, loyalty_id, "
                                                                   "device_id, social_handle, or your own."),
        value: str = Query(min_length=1, max_length=1024, description="The value, in any spelling ingestion "
                                                                      "accepts."),
        timeline: int = Query(20, ge=0, le=MAX_TIMELINE, description="How many recent events to include."),
    ) -> Any:
        return lookup_answer(type, value, timeline)

    def lookup_answer(type: str, value: str, timeline: int) -> Any:
        """What ``GET /v1/lookup`` answers: the customer view (a dict, for the response model), or a problem."""
        key, reason = follower.lookup_key(type, value)
        if key is None:
            return _problem(400, "invalid_identifier", f"{type} {value!r} cannot be looked up: {reason}")
        with follower.lock:
            views = follower.views
            found = views.lookup_node(key)
            if found["status"] == "found":
                view = views.customer(found["profile_id"], timeline_limit=timeline)
                if view is not None:  # (read under the lock: the households are never newer than the view)
                    _with_household(view, views.seq, follower.households)
            else:
                view = None
        if found["status"] == "shared":
            return _problem(409, "shared_identifier",
                            f"{key} is used by several customers, so it identifies none of them "
                            f"({found['reason']})", identifier=key, reason=found["reason"],
                            event_id=found.get("event_id"))
        if view is None:
            return _problem(404, "unknown_identifier", f"no customer has {key}")
        view["matched"] = {"type": type, "value": value, "key": key}
        return view

    lookup_route = next(r for r in app.routes if getattr(r, "path", None) == "/v1/lookup")
    if fast_lookup:
        fast = _FastLookup(lookup_route, lookup_answer, expected, follower)
        app.add_middleware(_FastLookupMiddleware, fast=fast)  # (inside the metrics: added before them)
        app.state.fast_lookup = fast

    @app.get("/v1/profiles/{profile_id}", response_model=CustomerView, **v1, summary="A profile by ID",
             responses=_PROFILE_PROBLEMS)
    async def profile(request: Request, profile_id: str = ProfileId,
                      timeline: int = Query(20, ge=0, le=MAX_TIMELINE,
                                            description="How many recent events to include.")) -> Any:
        with follower.lock:
            views = follower.views
            pid = views.resolve(profile_id)
            view = views.customer(pid, timeline_limit=timeline) if pid == profile_id else None
            if view is not None:
                _with_household(view, views.seq, follower.households)
        if pid is None:
            return _problem(404, "unknown_profile", f"no profile {profile_id}")
        if pid != profile_id:
            return moved(request, profile_id, pid, "")
        return view

    @app.get("/v1/profiles/{profile_id}/timeline", response_model=TimelinePage, **v1,
             summary="A profile's events across channels, newest first", responses=_PROFILE_PROBLEMS)
    async def timeline(request: Request, profile_id: str = ProfileId,
                       limit: int = Query(50, ge=1, le=MAX_TIMELINE, description="Events per page."),
                       offset: int = Query(0, ge=0, le=100_000_000, description="Events to skip.")) -> Any:
        with follower.lock:
            views = follower.views
            pid = views.resolve(profile_id)
            if pid is not None and pid == profile_id:
                prof = views.profiles[pid]
                total = len(prof.events)
                events = views.timeline(prof, limit=limit, offset=offset)
        if pid is None:
            return _problem(404, "unknown_profile", f"no profile {profile_id}")
        if pid != profile_id:
            return moved(request, profile_id, pid, "/timeline")
        nxt = offset + len(events)
        return {"profile_id": pid, "total": total, "limit": limit, "offset": offset,
                "next_offset": nxt if nxt < total else None, "events": events}

    @app.get("/v1/profiles/{profile_id}/explain", response_model=Explanation, **v1,
             summary="Why these identifiers and events are one customer", responses=_PROFILE_PROBLEMS)
    async def explain(request: Request, profile_id: str = ProfileId) -> Any:
        with follower.lock:
            views = follower.views
            pid = views.resolve(profile_id)
            result = views.explain(pid) if pid is not None and pid == profile_id else None
        if pid is None:
            return _problem(404, "unknown_profile", f"no profile {profile_id}")
        if pid != profile_id:
            return moved(request, profile_id, pid, "/explain")
        return result

    @app.get("/v1/reviews", response_model=ReviewPage, **v1, responses=_PROBLEMS,
             summary="Possible matches waiting for a person (decide with `idres review accept|reject`)")
    async def reviews(all: bool = Query(False, description="include decided and moot reviews"),
                      limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
        with follower.lock:
            rows = follower.views.review_queue(include_decided=all)
        return {"total": len(rows), "limit": limit, "offset": offset, "reviews": rows[offset:offset + limit]}

    @app.get("/v1/reviews/{review_id}", response_model=ReviewDetail, **v1,
             summary="One review, its two records side by side",
             responses={**_PROBLEMS, 404: {"model": Problem, "description": "No review with this ID."}})
    async def review_detail(review_id: str = PathParam(min_length=1, max_length=64)) -> Any:
        with follower.lock:
            found = follower.views.review_detail(review_id)
        if found is None:
            return _problem(404, "unknown_review", f"no review {review_id}")
        return found

    @app.get("/v1/bans", response_model=BanPage, **v1, responses=_PROBLEMS,
             summary="Connection bans (unmerges and rejected reviews)")
    async def list_bans(all: bool = Query(False, description="include lifted bans")) -> Any:
        with follower.lock:
            found = follower.views.bans_of(lifted=all)
        return {"total": len(found), "bans": found}

    @app.get("/v1/changes", response_model=ChangePage, **v1,
             summary="The identity changelog from a log position on (long-poll with wait)",
             responses={**_PROBLEMS, 410: {"model": Problem, "description": "Kafka: changes this old are no longer "
                                                                             "held; read the changes topic."},
                        409: {"model": Problem, "description": "A position beyond this log's end: one another log "
                                                               "gave (a data directory rebuilt since); read from 0."}})
    async def changes(start: int = Query(0, ge=0, alias="from", description="the log position to start from "
                                                                            "(the last response's next)"),
                      limit: int = Query(1000, ge=1, le=10000, description="changes at most (whole log entries)"),
                      wait: float = Query(0, ge=0, le=60, description="seconds to wait for a change when there "
                                                                      "is none yet")) -> Any:
        deadline = time.monotonic() + wait
        loop = asyncio.get_running_loop()
        while True:
            try:
                found, nxt = await loop.run_in_executor(None, follower.changes, start, limit)
            except LookupError as exc:
                return _problem(410, "gone", str(exc))
            if found or nxt > start:
                return {"changes": found, "next": nxt}
            if time.monotonic() >= deadline:
                end = max(follower.read_end(), follower.log_length)
                if start > end:  # (a position of another log: this one rebuilt, or another deployment's)
                    return _problem(409, "ahead_of_log", f"position {start} is beyond this decision log's end ({end}): "
                                                         "it was given by another log (a data directory rebuilt "
                                                         "since?); read again from 0")
                return {"changes": found, "next": nxt}
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # -- commands: a person's decisions (each needs a write key: it is recorded in its owner's name) --------
    async def decide(request: Request, items: list[dict[str, Any]]) -> JSONResponse:
        await may_decide(request)  # (a dependency of every write route already: refused before the body was read)
        by = writer_of(request)
        from streams.commands import CommandRefused, check, scoped_erasure

        def checked() -> list[dict[str, Any]]:
            letters: list[dict[str, Any]] = []
            if isinstance(follower, KafkaFollower) and any(item["command"] == "erase" for item in items):
                from streams.stream_app import dead_letters

                try:  # (searched too: a snapshot leaves out the text of those naming the customer)
                    letters = dead_letters(follower.settings)
                except Exception as exc:
                    raise CommandRefused(503, "broker_unavailable", f"could not read the dead-letter topic: {exc}") \
                        from None
            with follower.lock:  # (refused here without the writer's lock: the command checks again when it runs)
                for item in items:
                    check(item, follower.views, follower.config)
                # an erasure names what the views hold of the customer (a Kafka resolve worker has no views)
                return [scoped_erasure(item, follower.views, follower.config, letters) if item["command"] == "erase"
                        else item for item in items]

        loop = asyncio.get_running_loop()
        try:  # (in a thread: an erasure searches every rejected record, and other requests go on meanwhile)
            items = await loop.run_in_executor(None, checked)
        except CommandRefused as exc:
            return _problem(exc.status, exc.code, exc.detail)
        status = "recorded" if commands.accepted_status == 200 else "submitted"
        out: dict[str, Any] = {"status": status, "by": by, "decisions": []}
        if items:
            try:
                result = await loop.run_in_executor(None, commands.run, [{**item, "by": by} for item in items])
            except CommandRefused as exc:
                return _problem(exc.status, exc.code, exc.detail, done=exc.done)
            out.update(decisions=result.get("decisions", []), detail=result.get("detail"))
            # (answered once the views have folded them: a lookup after an erasure's answer found the customer still,
            # until the next look at the log)
            length = result.get("log_length")
            deadline = time.monotonic() + COMMAND_FOLDED_WAIT
            while length is not None and follower.views.seq < length and time.monotonic() < deadline \
                    and follower.running and not follower.restating:  # (a restatement's entries wait for its end)
                await asyncio.sleep(0.01)
        return JSONResponse(out, status_code=commands.accepted_status)

    async def one_value_a_key(request: Request) -> None:
        """A write's body with a key twice in one object (``{"decision": "accept", "decision": "reject"}``) is refused:
        which a person meant cannot be told (the framework would take the last)."""
        twice = duplicate_key(await request.body())
        if twice is not None:
            raise _Refused(_problem(422, "invalid_request", f"the body gives {twice!r} more than once in one object: "
                                                           "give it once"))

    async def may_decide(request: Request) -> None:
        """A write is refused for want of a write key before its body is looked at (its 403 or 401 says what to do;
        the body's errors would not)."""
        if writer_of(request) is None:
            if not writer_keys:
                raise _Refused(_problem(403, "read_only", f"this API takes no decisions: start `idres serve` with "
                                                          f"{WRITE_KEYS_ENV}=name:key,... and send a write key"))
            raise _Refused(_problem(401, "unauthorized", "deciding needs the X-API-Key header with a write key"))

    writes = {"dependencies": [Depends(guard), Depends(may_decide), Depends(one_value_a_parameter),
                               Depends(one_value_a_key)],
              "tags": ["decisions"],
              "response_model": CommandResult,
              "status_code": 200, "responses": {**_PROBLEMS, 202: {"model": CommandResult, "description":
                                                "Kafka: sent to the resolve worker, which records it in order."},
                                                403: {"model": Problem, "description": "The API takes no decisions."},
                                                404: {"model": Problem}, 409: {"model": Problem}}}

    @app.post("/v1/reviews/{review_id}", summary="Accept or reject a possible match", **writes)
    async def review_verdict(request: Request, body: ReviewVerdict,
                             review_id: str = PathParam(min_length=1, max_length=64)) -> Any:
        return await decide(request, [{"command": "review", "review_id": review_id, "decision": body.decision,
                                       **({"note": body.note} if body.note else {})}])

    @app.post("/v1/reviews", summary="Decide every pending review within a weight range (oldest first)", **writes)
    async def review_bulk(request: Request, body: BulkVerdict) -> Any:
        with follower.lock:
            rows = [r for r in follower.views.review_queue() if r["weight"] >= body.min_weight
                    and (body.max_weight is None or r["weight"] <= body.max_weight)][:body.limit]
        return await decide(request, [{"command": "review", "review_id": r["review_id"], "decision": body.decision,
                                       **({"note": body.note} if body.note else {})} for r in rows])

    @app.post("/v1/profiles/{profile_id}/unmerge", summary="Part identifiers from a profile and keep them apart",
              **writes)
    async def unmerge(request: Request, body: UnmergeRequest, profile_id: str = ProfileId) -> Any:
        return await decide(request, [{"command": "unmerge", "profile_id": profile_id,
                                       "identifiers": [[i.type, i.value] for i in body.identifiers],
                                       **({"note": body.note} if body.note else {})}])

    @app.post("/v1/erasures", summary="Erase the customer behind an identifier (the right to be forgotten)",
              **writes)
    async def erase(request: Request, body: ErasureRequest) -> Any:
        return await decide(request, [{"command": "erase", "identifiers": [[i.type, i.value] for i in body.identifiers],
                                       **({"note": body.reason} if body.reason else {})}])

    @app.post("/v1/bans/{ban_id}/lift", summary="Lift a connection ban", **writes)
    async def lift(request: Request, body: LiftRequest, ban_id: str = PathParam(min_length=1, max_length=64)) -> Any:
        return await decide(request, [{"command": "lift", "ban_id": ban_id,
                                       **({"note": body.note} if body.note else {})}])

    # -- operations ------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["operations"], summary="The process is up")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, tags=["operations"],
             summary="200 once the views are loaded and the follower is running, 503 before",
             responses={503: {"model": Readiness, "description": "Loading, or the follower failed."}})
    async def readyz() -> Any:
        with follower.lock:
            seq = follower.views.seq
        body = {"log_entries": follower.log_length, "applied_seq": seq,
                "lag_entries": max(0, follower.log_length - seq)}
        if follower.unfinished is not None:
            return JSONResponse({"status": "failing", "detail": follower.unfinished, **body}, status_code=503)
        if follower.ready.is_set() and follower.running and follower.error is None:
            return {"status": "ready", **body}
        if follower.error is not None:
            return JSONResponse({"status": "failing", "detail": follower.error, **body}, status_code=503)
        return JSONResponse({"status": "loading", "detail": "folding the decision log", **body}, status_code=503)

    for path, probe in (("/healthz", healthz), ("/readyz", readyz)):  # (HEAD too: load balancers probe with it)
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"],
             summary="Prometheus metrics (text exposition format)",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(follower), media_type="text/plain; version=0.0.4; charset=utf-8")

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[API_KEY_SCHEME] = {
                "type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "Required on /v1 when the server was started with IDRES_API_KEY set."}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # (the outermost: it times the fast lookup too)
    return app


# ============================================================================================ serving
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}: {exc.strerror}: give a host name or address of this machine "
                         "(--host)") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = ("another process listens there: give another --port, or stop that process"
                if exc.errno == errno.EADDRINUSE else "give another --host or --port")
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}: {hint}") from None
    sock.set_inheritable(True)
    return sock


# Slow and idle clients: a request must arrive whole (headers and body) within REQUEST_TIMEOUT seconds of
# the connection opening or of the previous response; an idle keep-alive connection is closed after
# KEEP_ALIVE_TIMEOUT; at most MAX_CONNECTIONS are open at once (a connection beyond it is closed at once,
# and requests beyond it are answered 503), so a crowd of slow clients cannot use up the file descriptors.
REQUEST_TIMEOUT_ENV, MAX_CONNECTIONS_ENV = "IDRES_API_REQUEST_TIMEOUT", "IDRES_API_MAX_CONNECTIONS"
KEEP_ALIVE_TIMEOUT = 5
# What one connection may make the server hold: a request's line and headers (431 past it: the parser keeps them
# whole, and copies a header value again for each part of it that comes), a body (413: the largest the API
# takes, 10,000 review verdicts, is under 2 MiB), and requests sent ahead on it before the answers were read
# (reading pauses there until the answers go).
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PIPELINED = 64
_SLICE = 8192  # (bytes parsed at a time, so that no more than the bound of requests is parsed ahead)


def _refusal(status: int, reason: str, error: str, detail: str) -> bytes:
    """A whole HTTP response refusing a request before the application sees it (JSON, as every answer of the
    API), the connection closed after it."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason.encode(), len(body))) + body


def _guarded_protocol(request_timeout: float, max_connections: int) -> type:
    """uvicorn's httptools protocol with a deadline for each request to arrive, and a connection limit."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Guarded(HttpToolsProtocol):
        _in_head = False  # (a request's line and headers begun and not yet whole)
        _began = False  # (a request begun in the bytes being read)
        _head_bytes = 0  # (bytes received while its head was not whole, after the bytes it began in)
        _body_bytes = 0

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = None
            if len(self.connections) > max_connections:
                transport.close()  # (connection_lost takes it out of the server's set)
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            # (aborted, not closed: a close waits to send what is buffered, for good when the client reads nothing)
            self.transport.abort()

        _stalled = None  # (the deadline of an answer the client does not read)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stalled is None:
                self._stalled = self.loop.call_later(request_timeout, self.transport.abort)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._stalled is not None:
                self._stalled.cancel()
                self._stalled = None

        _running = None  # (the cycle of the request being answered)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            self._running = cycle
            super()._start_asgi_task(cycle, app)

        def on_message_complete(self) -> None:
            self._in_message = False
            if self._refusing is not None:  # (refused: no cycle was begun for it)
                return
            if self.cycle is not None and self.cycle.response_complete:
                # (answered before its body had all come, a 404 say: the next request has its deadline, as after
                # any answer; disarmed, a connection that sent the rest later stayed open for good)
                super().on_message_complete()
                self._arm()
                return
            self._disarm()  # the request is in: answering it has no deadline here
            super().on_message_complete()

        def on_response_complete(self) -> None:
            # a request already in whole, started next: no deadline for it (one whose body is still coming has
            # the deadline, as any request arriving)
            waiting = bool(self.pipeline) and not self.pipeline[-1][0].more_body
            queued = bool(self.pipeline)
            super().on_response_complete()
            if self._refusing is not None:
                self.flow.pause_reading()  # (the request refused and what follows it are not read)
                if not queued:  # (the last request before the one refused is answered)
                    self._send_refusal()
                return
            if not self.transport.is_closing() and not waiting:
                self._arm()  # the next request on this connection has the same time to arrive
            if len(self.pipeline) >= MAX_PIPELINED:  # (uvicorn reads on after every answer, however many wait)
                self.flow.pause_reading()
            elif self._held and not self.transport.is_closing():  # (what was read past the bound, parsed now)
                held, self._held = self._held, b""
                self.data_received(held)
            if self._eof and self._idle() and not self.transport.is_closing():
                self.transport.close()  # (half-closed, and everything it sent answered)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._began, self._head_bytes, self._body_bytes = True, True, 0, 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._in_message, self._message_bytes = True, 0
            if self._refusing is not None:
                return
            length = next((value for name, value in self.headers if name == b"content-length"), None)
            if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
                self._too_large(f"a request body may hold at most {MAX_BODY_BYTES:,} bytes; this one says "
                                f"{int(length):,}")
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self._refusing is not None or self.transport.is_closing():
                return
            if self.cycle is not None and self.cycle.response_complete:
                super().on_body(body)  # (answered before its body came, a 404 say: uvicorn drops the rest)
                return
            self._body_bytes += len(body)
            if self._body_bytes > MAX_BODY_BYTES:  # (a body sent in chunks, its length not said)
                # (the request's own cycle: waiting behind others, it is taken out and never started; started, the
                # requests before it are answered, and the refusal goes at once)
                queued = next((item for item in self.pipeline if item[0] is self.cycle), None)
                if queued is not None:
                    self.pipeline.remove(queued)
                self._too_large(f"a request body may hold at most {MAX_BODY_BYTES:,} bytes", answered=queued is None)
                return
            super().on_body(body)

        def data_received(self, data: bytes) -> None:
            if self._lingering is not None:  # (refused and answered: what the client still sends is read and dropped)
                self._lingering += len(data)
                if self._lingering > 1 << 20:
                    self.transport.close()
                return
            if self._refusing is not None or self.transport.is_closing():
                return
            # in slices: once MAX_PIPELINED requests wait, the rest of the read is held unparsed (a read of tiny
            # requests made thousands of waiting requests at once) and parsed as answers go
            for at in range(0, len(data), _SLICE):
                if len(self.pipeline) >= MAX_PIPELINED:
                    self._held = data[at:]
                    self.flow.pause_reading()
                    return
                self._read(data[at:at + _SLICE])
                if self._refusing is not None or self.transport.is_closing():
                    return
            if len(self.pipeline) >= MAX_PIPELINED:
                self.flow.pause_reading()

        _eof = False  # (the client has half-closed: it sends no more)

        def eof_received(self) -> Optional[bool]:
            """A client that half-closes (sends nothing more) is answered what it sent whole before the connection
            closes (uvicorn closed at once, and the answers not yet written were lost)."""
            self._eof = True
            if self._refusing is not None or self._in_head or self._in_message or self._idle():
                return None  # (nothing whole to answer: closed)
            return True

        def _idle(self) -> bool:
            return not self.pipeline and not self._held and (self.cycle is None or self.cycle.response_complete)

        _held = b""  # (read and not yet parsed: past the bound of requests waiting)
        _in_message = False  # (a request's head whole, its message not: its body, chunks' framing, trailers)
        _message_bytes = 0  # (bytes received while it was so, after the read its head ended in)

        def _read(self, data: bytes) -> None:
            self._began = False
            ended_head = self._in_head
            super().data_received(data)
            if self._refusing is not None or self.transport.is_closing():
                return
            # (the bytes a request began in are not counted: they may hold the requests before it; the head's
            # bytes are then at most those of one slice more than counted)
            if self._in_head and not self._began:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse(431, "Request Header Fields Too Large", "request_too_large",
                                 f"a request's line and headers may hold at most {MAX_HEAD_BYTES:,} bytes: send a "
                                 f"shorter request")
            elif self._in_message and not (ended_head or self._began):
                # (a chunked body's framing and trailers are bytes the body's count does not see: trailers go to
                # the headers, each one copied whole again as it grows)
                self._message_bytes += len(data)
                if self._message_bytes > MAX_BODY_BYTES + MAX_HEAD_BYTES:
                    self._too_large(f"a request body, with its chunks' framing and trailers, may hold at most "
                                    f"{MAX_BODY_BYTES + MAX_HEAD_BYTES:,} bytes")

        def send_400_response(self, msg: str) -> None:  # (a request the HTTP parser cannot read: JSON too)
            self._refuse(400, "Bad Request", "bad_request", f"{msg}: send a valid HTTP/1.1 request")

        _refusing: Optional[bytes] = None  # (the answer refusing a request, sent once those before it are)
        _lingering: Optional[int] = None  # (bytes read and dropped since it was sent)

        def _refuse(self, status: int, reason: str, error: str, detail: str,
                    answered: Optional[bool] = None) -> None:
            """Refuses the request being read: nothing more of the connection is read, and the refusal is sent
            once the requests before it on the connection are answered (in their order: ``on_response_complete``
            sends it after the last), then the connection is closed. ``answered``: whether they are (None: the
            request has no cycle of its own yet, and they are when none waits and the last one's answer went)."""
            self._in_head = False
            self.flow.pause_reading()
            if self._refusing is None:
                self._refusing = _refusal(status, reason, error, detail)
            if answered is None:
                answered = not self.pipeline and (self.cycle is None or self.cycle.response_complete)
            if answered:
                self._send_refusal()

        def _too_large(self, said: str, answered: Optional[bool] = None) -> None:
            self._refuse(413, "Content Too Large", "body_too_large", f"{said}: send fewer items at once", answered)

        def _send_refusal(self) -> None:
            if self.transport.is_closing() or self._lingering is not None:
                return
            self._disarm()
            self.transport.write(self._refusing)
            # a lingering close: the write side shut, what the client still sends (the rest of a body too large)
            # read and dropped for a moment (1 MiB at most), so that its system does not answer it with a reset
            # that may take the refusal with it
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self._lingering = 0
                self.flow.resume_reading()
                self._deadline = self.loop.call_later(2.0, self._too_slow)
            else:
                self.transport.close()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            if self._stalled is not None:
                self._stalled.cancel()
            # (uvicorn tells the cycle of the request parsed last; the one being answered, behind which others
            # waited, went on writing to the closed connection: told too, as are those waiting)
            for cycle in [self._running, *(item[0] for item in self.pipeline)]:
                if cycle is not None and not cycle.response_complete:
                    cycle.disconnected = True
                    cycle.message_event.set()
            self.pipeline.clear()
            super().connection_lost(exc)

    return Guarded


def _raise_open_file_limit() -> None:
    """Lets the server hold as many connections as the system allows this process (the soft limit up to
    the hard one)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536),
                                                        hard))
    except (ImportError, ValueError, OSError):
        pass


def serve(data_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, *,
          config: Optional[ResolverConfig] = None, projection_config: Optional[ProjectionConfig] = None,
          no_auth: bool = False, kafka: Any = None) -> int:
    """Runs the lookup API until interrupted (SIGINT/SIGTERM). The API key comes from IDRES_API_KEY.

    ``kafka`` (a ``KafkaSettings``) serves a Kafka deployment: the views follow its decision-log topic
    instead of ``data_dir``."""
    import uvicorn

    data_dir = Path(data_dir)
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be within 0..65535, not {port}")
    if kafka is None and log_dir_of(data_dir) is None:
        raise ServeError(f"no idres data in {data_dir}: run `idres ingest FILE --data-dir {data_dir}` first")
    from streams.env import env_int, env_seconds

    request_timeout = env_seconds(REQUEST_TIMEOUT_ENV, 10.0)
    max_connections = env_int(MAX_CONNECTIONS_ENV, 512, minimum=1)
    api_key = None if no_auth else (os.environ.get(API_KEY_ENV, "").strip() or None)  # (blank: unset)
    if api_key is not None and len(api_key) < 8:
        raise ServeError(f"{API_KEY_ENV} is {len(api_key)} character(s): give a key of 8 characters or more (as the "
                         f"write keys are)")
    if api_key is None and not no_auth and not is_loopback(host):
        raise ServeError(f"refusing to serve on {host} without authentication: set {API_KEY_ENV} "
                         f"(clients then send it in X-API-Key), or pass --no-auth")
    sock = _listen(host, port)
    rewind_every = env_int("IDRES_REWIND_EVERY", 20_000, minimum=0, expected="a number of log entries >= 0")
    if kafka is not None:
        follower: Follower = KafkaFollower(kafka, config, projection_config, rewind_every=rewind_every)
        source = f"{kafka.topics.decisions} at {kafka.bootstrap}"
    else:
        follower = Follower(data_dir, config, projection_config, rewind_every=rewind_every)
        source = str(data_dir)
    writers = write_keys(os.environ.get(WRITE_KEYS_ENV))
    if kafka is not None:
        from streams.commands import KafkaCommands

        commands: Any = KafkaCommands(kafka, config)
    else:
        from streams.commands import EmbeddedCommands

        commands = EmbeddedCommands(data_dir, config, projection_config)
    app = create_app(follower, api_key, writers, commands)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    print(f"idres: serving {source} on http://{shown}:{bound[1]} "
          f"({'X-API-Key required' if api_key else 'no API key'}"
          f"{f'; decisions by {len(writers)} write key(s)' if writers else '; read-only'}); /readyz answers 200 "
          f"once loaded",
          file=sys.stderr, flush=True)
    # The follower thread parses and folds log entries while requests are served: a short switch
    # interval hands the interpreter to a waiting request within a fraction of a millisecond
    # (the default, 5 ms, would add up to that to every request while ingestion runs).
    sys.setswitchinterval(SWITCH_INTERVAL)
    _raise_open_file_limit()
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", server_header=False,
        # (uvicorn answers 503 once its open connections, this one included, reach limit_concurrency)
        http=_guarded_protocol(request_timeout, max_connections), limit_concurrency=max_connections + 1,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT))
    server.run(sockets=[sock])
    return 0
