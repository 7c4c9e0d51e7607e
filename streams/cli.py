"""``idres``: the command line of the embedded engine.

Every command prints one clear line on error (``idres: error: ...``) and exits non-zero; set
``IDRES_DEBUG=1`` to see a traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from resolver.errors import IdresError

DEFAULT_DATA_DIR = Path("idres-data")
DEMO_DIR = Path("idres-demo")
DEMO_MARKER = ".idres-demo"  # written by `idres demo` into its --dir: the data there is the demo's own
DEMO_FILES = ("events.jsonl", "truth.csv", "data", "customers.duckdb")
LOGLEVELS = ("crit", "error", "warn", "info", "debug")


class UsageError(IdresError):
    pass


def _config_path(args: argparse.Namespace) -> Optional[str]:
    """``--config``, else ``$IDRES_CONFIG``, else None (the built-in rules)."""
    return getattr(args, "config", None) or os.environ.get("IDRES_CONFIG") or None


def _settings(args: argparse.Namespace):
    from streams.settings import load_settings

    return load_settings(_config_path(args))


def _progress_bar(total: Optional[int], desc: str, unit: str = "B"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, disable=None,
                mininterval=0.5, leave=False)


def _has_log(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a decision log, or held one (its ``LOCK`` records the entries written: opening it
    says what is missing); a ``log`` that is not a directory is damage, not an empty place."""
    from streams.log import log_dir_of

    return log_dir_of(data_dir) is not None or (data_dir / "LOCK").is_file()


def _default_data_dir(existing: bool) -> Path:
    """$IDRES_DATA_DIR, else ./idres-data; for a command that reads existing data, the demo's data
    (./idres-demo/data) when ./idres-data holds none, so every command works right after `idres demo`."""
    env = os.environ.get("IDRES_DATA_DIR", "").strip()
    if env:
        return Path(env)
    demo = DEMO_DIR / "data"
    if existing and not _has_log(DEFAULT_DATA_DIR) and _has_log(demo) and (DEMO_DIR / DEMO_MARKER).is_file():
        return demo
    return DEFAULT_DATA_DIR


def _data_dir(args: argparse.Namespace, existing: bool) -> Path:
    """``--data-dir``, else the default (``_default_data_dir``)."""
    return Path(args.data_dir) if args.data_dir else _default_data_dir(existing)


def _engine(args: argparse.Namespace, writer: bool, create: bool = False, **options: Any):
    """The embedded engine over ``--data-dir`` (or the default); only ``create`` starts a new data directory.
    ``options``: more of ``EmbeddedEngine``'s (``load``, ``progress``)."""
    from streams.embedded import EmbeddedEngine

    data_dir = _data_dir(args, existing=not create)
    args.data_dir = str(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is a file, not a directory: give the directory of a decision log")
    if not create and not _has_log(data_dir):
        raise UsageError(f"no idres data in {data_dir}: run `idres ingest FILE --data-dir {data_dir}` "
                         f"or `idres demo` first")
    config, projection = _settings(args)
    # (the batch size is ingest's: a reading command does not read $IDRES_BATCH_SIZE, nor stops for it)
    batch = {"batch_size": _batch_size()} if writer else {}
    return EmbeddedEngine(data_dir, config, projection, writer=writer, **batch, **options)


@contextlib.contextmanager
def _keeping() -> Iterator[None]:
    """For a command that builds a state kept until it ends (ingest, replay, the views a snapshot reads):
    the garbage collector paused while it is built, and what was built put out of the collector's sight
    (``keep_frozen``) before it runs again. Otherwise its first collection scans every object built: 1.35 s
    after 300,000 events. Nothing the engine builds forms cycles."""
    from streams.log import bulk_work, keep_frozen

    with bulk_work():
        try:
            yield
        finally:
            keep_frozen()


def _shard_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"expected a whole number of shards from 1 to 64, not {text!r}")
    return n


def _count(text: str) -> int:
    """A whole number of items to show, 0 or more."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, not {text!r}")
    return n


SHOWN = 120  # characters of a value a message repeats at most


def _shown(value: str) -> str:
    """``value`` as a message repeats it: quoted, and cut short (saying how long it was) past ``SHOWN``."""
    if len(value) <= SHOWN:
        return repr(value)
    return f"{value[:SHOWN]!r}... ({len(value):,} characters)"


def _batch_size() -> int:
    from streams.env import env_int

    return env_int("IDRES_BATCH_SIZE", 2000, minimum=1)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


# ------------------------------------------------------------------------------------------ commands
def cmd_ingest(args: argparse.Namespace) -> int:
    from streams.inputs import check_input

    files = [Path(f) for f in args.files]
    for f in files:  # every file's shape is checked before any is ingested
        check_input(f)
    # (standard input may be a pipe that lives for days: the collector keeps running for it)
    keeping = contextlib.nullcontext() if "-" in args.files else _keeping()
    # (the resolver's state is written to the checkpoint and let go of before the views are folded: the two are
    # never in memory together)
    # (the order given to the engine as it opens: a run killed part way is finished in it, not in time order)
    with keeping, _engine(args, writer=True, create=True, fold_views="after",
                          order="file" if args.file_order else "time") as engine:
        engine.shards = args.shards
        engine.restate_progress = lambda: _progress_bar(None, "decide again from the late events", unit="entry")
        if engine.order == "time" and "-" not in args.files and len(files) > 1:
            # the files together, as one set of events in event-time order (a backfill in daily files)
            sizes = [f.stat().st_size if f.is_file() else None for f in files]
            total = None if None in sizes else sum(sizes)
            with _progress_bar(total, f"ingest {len(files)} files") as bar:
                reports = engine.ingest_files(files, progress=bar.update)
        else:
            reports = []
            for f in files:
                if str(f) == "-":
                    with _progress_bar(None, "ingest stdin") as bar:  # (bytes read: a pipe's size is not known)
                        # (in time order it is read to its end first anyway: known by its beginning, as a file;
                        # in file order a live pipe is not held back for it)
                        reports.append(engine.ingest_stream(sys.stdin.buffer, "stdin", progress=bar.update,
                                                            identify=engine.order == "time"))
                else:
                    with _progress_bar(f.stat().st_size if f.is_file() else None, f"ingest {f.name}") as bar:
                        reports.append(engine.ingest_file(f, progress=bar.update))
        for report in reports:
            _print_json({"ingested": report.as_dict(), "totals": engine.views.stats()})
            for summary in (report.rejection_summary(), report.late_summary()):
                if summary:
                    print(f"idres: {summary}", file=sys.stderr)
        config = engine.config
        for seen in sorted(engine.identifier_types()):
            meant = config.lookalike(seen)
            if meant is not None:
                print(f"idres: warning: identifier type {seen!r} is not {meant!r}: its values are kept apart from "
                      f"the {meant} values (they never link); send {meant!r}, or configure {seen!r}", file=sys.stderr)
        for report in reports:
            if report.input_error:
                raise UsageError(report.input_error)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.kafka_io import KafkaSettings, produce_lines

    settings = KafkaSettings.load(bootstrap=args.bootstrap, prefix=args.topic_prefix, raw_partitions=args.partitions,
                                  replication_factor=args.replication_factor, compression=args.compression,
                                  linger_ms=args.linger_ms, batch_bytes=args.batch_bytes, timeout=args.timeout)
    config, _ = _settings(args)
    try:
        if args.file == "-":
            import stat

            # a live pipe sends each line as it comes; a redirected file may be read ahead
            live = not stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
            with _progress_bar(None, "produce stdin") as bar:
                report = produce_lines(sys.stdin.buffer, settings, topic=args.topic, config=config,
                                       progress=bar.update, **({"read_ahead": 1} if live else {}))
        else:
            from streams.inputs import check_input

            path = Path(args.file)
            check_input(path)
            with open(path, "rb") as fh, _progress_bar(path.stat().st_size, f"produce {path.name}") as bar:
                report = produce_lines(fh, settings, topic=args.topic, config=config, progress=bar.update,
                                       time_order=not args.file_order)
    except KeyboardInterrupt:
        print("idres: interrupted: lines read so far may or may not be published; producing the file again "
              "is safe (the stream ignores event IDs it has already decided)", file=sys.stderr)
        return 130
    _print_json(report.as_dict())
    if report.failed:
        print(f"idres: error: {report.failed:,} of {report.lines:,} lines were not published (the others were); "
              f"first: {report.first_failure}", file=sys.stderr)
        return 1
    return 0


def _kafka_settings(args: argparse.Namespace):
    from streams.kafka_io import KafkaSettings

    return KafkaSettings.load(bootstrap=getattr(args, "bootstrap", None), prefix=getattr(args, "topic_prefix", None),
                              resolve_partitions=getattr(args, "resolve_partitions", None),
                              resolve_state=getattr(args, "resolve_state", None))


def _deployment_settings(args: argparse.Namespace):
    """``_kafka_settings``, for a command that reads a deployment: its topics must exist (``missing_topic``)."""
    from streams.stream_app import missing_topic

    settings = _kafka_settings(args)
    missing = missing_topic(settings)
    if missing is not None:
        raise UsageError(missing)
    return settings


def _uses_kafka(args: argparse.Namespace) -> bool:
    """Kafka when --bootstrap is given, or $IDRES_BOOTSTRAP is set and no --data-dir was given."""
    return bool(args.bootstrap) or (bool(os.environ.get("IDRES_BOOTSTRAP", "").strip()) and args.data_dir is None)


def _snapshot_step(step: str) -> None:
    if sys.stderr.isatty():
        print(f"idres: snapshot: {step} ...", file=sys.stderr, flush=True)


def _write_snapshot(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The snapshot of --data-dir or of the Kafka deployment, written to ``out``; what the command prints."""
    from projections.households import device_types
    from projections.snapshot import write_snapshot

    predict = False if getattr(args, "no_predict", False) else None  # (else as $IDRES_PREDICT says)
    if _uses_kafka(args):
        from resolver.decisions import erasure_of
        from streams.stream_app import fold_deadletter

        settings = _kafka_settings(args)
        started = time.perf_counter()
        erased: set[str] = set()  # (the dead letters erasures named: kept without their text)

        def note(seq: int, entry: list[dict[str, Any]]) -> None:
            erasure = erasure_of(entry)
            if erasure is not None:
                erased.update(erasure["rejected"])

        with _keeping():  # (as below)
            views, offset, entries = _kafka_views(args, on_entry=note)
            rejected = fold_deadletter(settings, views, erased)
        held = [views]  # (let go of once the snapshot has read them)
        del views

        def still_current() -> None:
            from streams.stream_app import fold_decision_log

            found: list[int] = []  # (said after the fold: an error of on_entry reads as a topic that cannot be folded)
            fold_decision_log(settings, start=offset, seq=entries,
                              on_entry=lambda seq, entry: found.append(seq) if erasure_of(entry) else None)
            if found:
                raise _overtaken(found[0])

        counts = write_snapshot(held[0], out, info={"decision_log": settings.topics.decisions,
                                                    "decision_log_offset": offset}, progress=_snapshot_step,
                                predict=predict, let_go=held.clear, still_current=still_current,
                                weak_types=device_types(_settings(args)[0]))
        return {"snapshot": str(out), "rows": counts, "log_entries": entries, "dead_letters": rejected,
                "seconds": round(time.perf_counter() - started, 2)}
    # (the views, millions of objects, kept out of the collector's sight: it would scan them again and again as
    # the rows are made; they form no cycles, and live until the command ends)
    with _keeping():
        engine = _engine(args, writer=False, load="views")
    with engine:
        started = time.perf_counter()
        seq = engine.views.seq

        def still_current() -> None:
            from resolver.decisions import erasure_of
            from streams.log import LogError

            try:
                engine.log.refresh()
                for at, entry in engine.log.read(seq, raw=True):
                    if erasure_of(entry) is not None:
                        raise _overtaken(at)
            except LogError as exc:
                raise IdresError(f"the decision log changed while the snapshot was written ({exc}): the snapshot "
                                 f"was not written; run `idres snapshot` again") from None

        # (the views let go of once the rows are made: the metric views and the purchase models read the tables)
        counts = write_snapshot(engine.views, out, info={"data_dir": str(Path(args.data_dir).resolve())},
                                progress=_snapshot_step, predict=predict,
                                let_go=lambda: setattr(engine, "views", None), still_current=still_current,
                                weak_types=device_types(engine.config))
        return {"snapshot": str(out), "rows": counts, "seconds": round(time.perf_counter() - started, 2)}


def _overtaken(seq: int) -> IdresError:
    """The error of a snapshot an erasure overtook (logged at entry ``seq``): made of the views from before it, it
    would hold what it erased."""
    return IdresError(f"an erasure was recorded while the snapshot was written (log entry {seq:,}), and the "
                      "snapshot holds what it erased: it was not written; run `idres snapshot` again")


def _writable_output(out: Path, what: str, create_parent: bool = True,
                     magic: Optional[tuple[int, bytes]] = None) -> None:
    """Refuses, before any work, an output path that cannot be written: a device or pipe (renaming a file over
    it would replace it), a directory, or a parent that is a file or (unless it is to be created) missing; with
    ``magic`` (offset, bytes), a file there that does not begin as such an output does (``replaceable``)."""
    from projections.storage import replaceable

    replaceable(out, what, magic)
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a directory: give another path")
    if not create_parent and not parent.exists():
        raise UsageError(f"--out {out}: the directory {parent} does not exist: create it or give another path")


def cmd_snapshot(args: argparse.Namespace) -> int:
    _print_json(_write_snapshot(args, Path(args.out)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import tempfile

    from projections.report import write_report

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out}: give a file ending in .html, e.g. report.html")
    _writable_output(out, "HTML report", magic=(0, b"<!DOCTYPE html>\n<html lang=\"en\"><head>"))
    started = time.perf_counter()

    def step(name: str) -> None:
        print(f"idres: report: {name} ...", file=sys.stderr, flush=True)

    if args.snapshot:
        if args.data_dir or args.bootstrap:
            raise UsageError("give a snapshot file or --data-dir or --bootstrap, not both")
        write_report(args.snapshot, out, progress=step)
        source = {"snapshot": str(args.snapshot)}
    else:
        from projections.storage import remove_debris

        out.parent.mkdir(parents=True, exist_ok=True)
        # (what killed report runs left: their snapshots, which hold every customer; named by their writer since)
        remove_debris(out.parent, re.compile(r"\.idres-report-(?:(?P<pid>\d+)-.+|(?!spill-)[a-z0-9_]{8})"))
        with tempfile.TemporaryDirectory(prefix=f".idres-report-{os.getpid()}-", dir=out.parent) as tmp:
            step("writing a snapshot")
            source = _write_snapshot(args, Path(tmp) / "snapshot.duckdb")
            write_report(source["snapshot"], out, progress=step)
        source = {k: v for k, v in source.items() if k not in ("snapshot", "seconds")}
    _print_json({"report": str(out), "bytes": out.stat().st_size, **source,
                 "seconds": round(time.perf_counter() - started, 2)})
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.env import env_int, env_seconds
    from streams.stream_app import ROLES, WorkerOptions, run_worker

    roles = tuple(r.strip() for r in args.role.split(",") if r.strip())
    if args.role == "all":
        roles = ROLES
    bad = [r for r in roles if r not in ROLES]
    if not roles or bad:
        raise UsageError(f"--role takes {', '.join(ROLES)} or all (comma-separated), not {args.role!r}")
    _worker_env_defaults(args)
    config, projection = _settings(args)
    options = WorkerOptions(roles=roles, web_host=args.web_host, web_port=args.web_port,
                            data_dir=_data_dir(args, existing=False),
                            batch_events=args.batch, session_timeout=args.session_timeout,
                            batch_seconds=env_seconds("IDRES_BATCH_SECONDS", 0.05),
                            raw_topic_check=env_seconds("IDRES_RAW_TOPIC_CHECK", 10.0),
                            reorder_wait=env_seconds("IDRES_REORDER_WAIT", 2.0, positive=False),
                            reorder_grace=env_seconds("IDRES_REORDER_GRACE", 0.25, positive=False),
                            reorder_max_events=env_int("IDRES_REORDER_MAX_EVENTS", 100_000, minimum=1,
                                                       expected="a number of events >= 1"),
                            stop_grace=env_seconds("IDRES_STOP_GRACE", 30.0),
                            shard_wait=env_seconds("IDRES_SHARD_WAIT", 30.0),
                            restate_wait=env_seconds("IDRES_RESTATE_WAIT", 10.0, positive=False),
                            restate_entries=env_int("IDRES_RESTATE_ENTRIES", 0, minimum=0,
                                                    expected="a number of log entries >= 0"),
                            rewind_every=env_int("IDRES_REWIND_EVERY", 20_000, minimum=0,
                                                 expected="a number of log entries >= 0"),
                            config=config, projection=projection)
    run_worker(_kafka_settings(args), options, loglevel=args.loglevel)
    return 0


def _worker_env_defaults(args: argparse.Namespace) -> None:
    """The worker's flags that were not given, from their environment variables (read here, not when the
    command line is parsed, so a malformed one stops only the worker, with one line)."""
    from streams.env import MAX_SECONDS, env_choice, env_int, env_seconds

    if args.web_port is None:
        args.web_port = env_int("IDRES_WEB_PORT", 6066, minimum=1, maximum=65535, expected="a port number 1-65535")
    elif not 1 <= args.web_port <= 65535:
        raise UsageError(f"--web-port {args.web_port}: expected a port number 1-65535")
    if args.batch is None:
        args.batch = env_int("IDRES_BATCH_EVENTS", 2000, minimum=1)
    elif args.batch < 1:
        raise UsageError(f"--batch {args.batch}: expected a whole number >= 1")
    if args.session_timeout is None:
        args.session_timeout = env_seconds("IDRES_SESSION_TIMEOUT", 10.0)
    elif not 0 < args.session_timeout <= MAX_SECONDS:
        raise UsageError(f"--session-timeout {args.session_timeout}: expected a number of seconds > 0 and "
                         f"<= {MAX_SECONDS:.0f}")
    if args.loglevel is None:
        args.loglevel = env_choice("IDRES_LOGLEVEL", "info", LOGLEVELS)


def cmd_config(args: argparse.Namespace) -> int:
    """`idres config check [FILE]`: loads the file as every command would and says whether it is valid."""
    from resolver.matching import default_model
    from streams.settings import load_settings

    path = args.file or _config_path(args)
    config, _ = load_settings(path)
    model = (config.match_model or default_model()).version
    if config.calibrating:
        model += ", re-estimated from the data"
    summary = (f"{len(config.identifier_types)} identifier types, "
               f"fuzzy matching {'on' if config.fuzzy_matching else 'off'}, model {model}")
    if path is None:
        print(f"no FILE given and $IDRES_CONFIG is not set: the built-in rules are in use ({summary})")
    else:
        print(f"{path}: valid ({summary})")
    from resolver.normalize import Normalizer

    normalizer = Normalizer(config)
    for id_type, rule in sorted(config.identifier_types.items()):
        for raw in rule.blocked_values:  # (a value no event's identifier can be read as blocks nothing)
            value, why = normalizer.identifier(id_type, raw)
            if value is None and why != "blocked value (configured)":
                print(f"idres: warning: {path or 'config'}: identifier_types.{id_type}.blocked_values: {raw!r} blocks "
                      f"nothing: no {id_type} is read as it ({why})", file=sys.stderr)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.stream_app import create_stream_topics

    _print_json({"topics": create_stream_topics(_kafka_settings(args))})
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.log import DecisionLog

    with _progress_bar(DecisionLog.recorded_length(_data_dir(args, existing=True)) or None, "replay",
                       unit="entry") as bar:
        with _keeping():
            engine = _engine(args, writer=True, load="rebuild", progress=bar.update)
    with engine:
        replayed = engine.replayed
        result: dict[str, Any] = {"entries": replayed["entries"], "digest": engine.views.digest(),
                                  "identical_to_live_views": replayed["identical"]}
        if args.verify:
            # (re-deciding builds a resolver's state, and the checkpoint's views are read: the views folded are put
            # aside meanwhile, to be written to the checkpoint after)
            with engine.put_aside("views"):
                with _progress_bar(len(engine.log), "verify", unit="entry") as bar:
                    problem = engine.verify_decisions(progress=bar.update)
                result["decisions_reproduced"] = problem is None
                if problem is None and (engine.as_recorded or engine.after_erasure):
                    result["taken_as_recorded"] = engine.as_recorded
                    result["decided_otherwise_after_erasure"] = engine.after_erasure
                    result["note"] = ("entries that hold erased data are taken as recorded, and an entry decided on "
                                      "what was erased since may be decided otherwise now")
                if problem:
                    result["first_difference"] = problem[:2000]
                # (the views the checkpoint holds, read back: what serve and snapshot load)
                result["checkpoint_as_saved"] = engine.checkpoint_as_saved()
        failed = (not replayed["identical"] or result.get("decisions_reproduced") is False
                  or result.get("checkpoint_as_saved") is False)
        # (a replay that disagrees never replaces the cached state; one that agrees with a checkpoint of the
        # whole log would write the same state again)
        if not failed and not replayed["checkpoint_current"]:
            # (the views are written and let go of, then the resolver's state folded from the log and written)
            with _progress_bar(len(engine.log), "state", unit="entry") as bar:
                engine.checkpoint(force=True, progress=bar.update)
        _print_json(result)
        if failed:
            print("idres: error: replay differs from the live state; see the output above (the checkpoint was "
                  "left as it was)", file=sys.stderr)
            return 1
    return 0


def _lookup_key(engine, spec: str) -> str:
    from resolver.ids import RECORD_TYPE
    from streams.commands import views_normalizer

    if "=" not in spec:
        raise UsageError(f"expected TYPE=VALUE (for example email=jane@example.com), got {_shown(spec)}")
    id_type, raw = spec.split("=", 1)
    id_type = id_type.strip()
    if not raw.strip():
        raise UsageError(f"{_shown(spec)} has no value after '=': write TYPE=VALUE, for example email=jane@example.com")
    configured = engine.config.identifier_types
    if id_type not in configured:
        seen = {key.partition(":")[0] for key in engine.views.node_keys}
        if id_type not in seen:
            known = sorted((set(configured) | seen) - {RECORD_TYPE})
            raise UsageError(f"unknown identifier type {_shown(id_type)}: known types are {', '.join(known)}")
    # (normalized as the next event's would be: with the countries learned so far, which the views hold too, as the
    # lookup API reads them; the resolver's state is not read)
    # (an anonymous event's record by its event ID, as given: ``record=EVENT_ID``)
    key, reason = views_normalizer(engine.views, engine.config).node_key(id_type, raw)
    if key is None:
        raise UsageError(f"{id_type} {_shown(raw)} cannot be looked up: {reason}"
                         + (" (a value that identifies nobody, so no customer is found by it): look up another "
                            "of the customer's identifiers" if "placeholder" in reason else
                            ": give the value as the channel would send it"))
    return key


def _decider(args: argparse.Namespace) -> str:
    """Who takes a person's decision (a verdict, an unmerge, an erasure): ``--by``, else the login name; the log
    records it, so a command with neither is refused rather than recorded as nobody's."""
    by = (args.by or os.environ.get("USER") or os.environ.get("LOGNAME") or "").strip()
    if not by:
        raise UsageError(f"say who decides with --by NAME (no $USER is set here): the decision log records who took "
                         f"each decision, for `idres {args.command}` too")
    return by


def cmd_lookup(args: argparse.Namespace) -> int:
    with _engine(args, writer=False, load="views") as engine:
        key = _lookup_key(engine, args.identifier)
        found = engine.views.lookup_node(key)
        if found["status"] == "unknown":
            print(f"idres: no customer has {_shown(key)} in {engine.data_dir}", file=sys.stderr)
            return 3
        if found["status"] == "shared":
            _print_json({"identifier": key, "status": "shared", "reason": found["reason"],
                         "detail": "this value is used by several customers, so it identifies none of them"})
            return 4
        _print_json(_with_household(engine, engine.views.customer(found["profile_id"], timeline_limit=args.timeline)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _engine(args, writer=False, load="views") as engine:
        view = _with_household(engine, engine.views.customer(args.profile_id, timeline_limit=args.timeline))
        if view is None:
            print(f"idres: no profile {_shown(args.profile_id)} in {engine.data_dir}", file=sys.stderr)
            return 3
        _print_json(view)
    return 0


def _with_household(engine: Any, view: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The customer view with the household the customer belongs to (``projections.households``), the device
    types of the rules in use counted as the API counts them."""
    from projections.households import device_types, household_of, households

    if view is not None:
        view["household"] = household_of(households(engine.views, device_types(engine.config)), view["profile_id"])
    return view


def cmd_explain(args: argparse.Namespace) -> int:
    with _engine(args, writer=False, load="views") as engine:
        pid = args.profile_id
        if "=" in pid:
            key = _lookup_key(engine, pid)
            found = engine.views.lookup_node(key)
            if found["status"] == "unknown":
                print(f"idres: no customer has {_shown(key)} in {engine.data_dir}", file=sys.stderr)
                return 3
            if found["status"] == "shared":
                if args.json:
                    _print_json({"identifier": key, "status": "shared", "reason": found["reason"]})
                else:
                    print(f"{key} is shared: {found['reason']}. It identifies none of the customers who used it, "
                          f"so it links nobody and has no profile of its own; an event that carried it belongs to "
                          f"the customer its other identifiers name, or its attributes match, or who signed in on "
                          f"it in the same session (`idres explain` of that customer says which).")
                return 4
            pid = found["profile_id"]
        result = engine.views.explain(pid)
        if result is None:
            print(f"idres: no profile {_shown(args.profile_id)} in {engine.data_dir}", file=sys.stderr)
            return 3
        if args.json:
            _print_json(result)
        else:
            for line in result["summary"]:
                print(line)
            for item in result["not_linked"]:
                print(f"Not linked: {item['identifier']} on event {item['event_id']}: {item['why']}.")
    return 0


def _fields_text(fields: dict[str, Any]) -> str:
    return ", ".join(f"{f} {v['level']} {v['weight']:+.1f}" for f, v in fields.items())


def _kafka_views(args: argparse.Namespace, on_entry: Optional[Callable[[int, list[dict[str, Any]]], None]] = None):
    """The customer views of a Kafka deployment, folded from its decision-log topic; with the topic's
    next offset and the number of entries folded. ``on_entry``: given every entry as written."""
    from projections.customer import CustomerViews
    from streams.stream_app import fold_decision_log

    _, projection = _settings(args)
    views = CustomerViews(projection)
    offset, entries = fold_decision_log(_deployment_settings(args), views=views, on_entry=on_entry)
    return views, offset, entries


@contextlib.contextmanager
def _read_views(args: argparse.Namespace):
    """The customer views, to read: folded from Kafka's decision-log topic, or the data directory's."""
    if _uses_kafka(args):
        yield _kafka_views(args)[0]
    else:
        with _engine(args, writer=False, load="views") as engine:
            yield engine.views


def _profile_text(pid: Optional[str]) -> str:
    return f"[{pid}]" if pid is not None else "[shared: in no profile]"


def _weighs_within(review: dict[str, Any], args: argparse.Namespace) -> bool:
    """Whether a review's weight is within ``--min-weight`` and ``--max-weight`` (either may be left out)."""
    return ((args.min_weight is None or review["weight"] >= args.min_weight)
            and (args.max_weight is None or review["weight"] <= args.max_weight))


def cmd_review(args: argparse.Namespace) -> int:
    kafka = _uses_kafka(args)
    if args.limit is None:
        args.limit = 0 if args.json else 20
    if args.limit < 0 or args.offset < 0:
        raise UsageError("--limit and --offset take a whole number >= 0")
    if args.action == "list":
        if args.review_ids:
            raise UsageError("`idres review` lists the queue; to see one, `idres review show REVIEW_ID`; to "
                             "decide, `idres review accept|reject REVIEW_ID...`")
        with _read_views(args) as views:
            rows = views.review_queue(include_decided=args.all)
        if args.min_weight is not None or args.max_weight is not None:  # (the range a bulk verdict would take)
            rows = [r for r in rows if _weighs_within(r, args)]
        if args.json:
            _print_json(rows[args.offset:args.offset + args.limit] if args.limit else rows[args.offset:])
            return 0
        if not rows:
            print("No review weighs within the range given." if args.min_weight is not None or
                  args.max_weight is not None else
                  "The review queue is empty." if not args.all else "No possible matches were ever queued.")
            return 0
        page = rows[args.offset:args.offset + args.limit] if args.limit else rows[args.offset:]
        for r in page:
            print(f"{r['review_id']}  {r['status']:<8} weight {r['weight']:.1f} "
                  f"(review >= {r['review_threshold']:.0f}, link >= {r['link_threshold']:.0f})  "
                  f"{r['identifier']} {_profile_text(r['profile_id'])}  ~  {r['other_identifier']} "
                  f"{_profile_text(r['other_profile_id'])}")
            print(f"    {_fields_text(r['fields'])}")
        pending = sum(1 for r in rows if r["status"] == "pending")
        shown = f"{args.offset + 1:,}-{args.offset + len(page):,} of {len(rows):,}" if page else \
            f"none of {len(rows):,} from --offset {args.offset}"
        more = f"; next page: --offset {args.offset + len(page)}" if args.offset + len(page) < len(rows) else ""
        print(f"Showing {shown}{more}. {pending:,} pending. See one side by side with `idres review show "
              f"REVIEW_ID`; decide with `idres review accept|reject REVIEW_ID... --by NAME` (or --min-weight W).")
        return 0
    if args.action == "show":
        if len(args.review_ids) != 1:
            raise UsageError("name one review: `idres review show REVIEW_ID` (list them with `idres review`)")
        with _read_views(args) as views:
            detail = views.review_detail(args.review_ids[0])
        if detail is None:
            raise UsageError(f"no review {args.review_ids[0]!r} (list them with `idres review --all`)")
        if args.json:
            _print_json(detail)
        else:
            print(_review_table(detail))
        return 0
    if args.max_weight is not None and args.min_weight is None:
        raise UsageError(f"--max-weight {args.max_weight:g} bounds a range that --min-weight starts: give --min-weight "
                         "W too (the lowest weight to decide)")
    if args.min_weight is not None and args.max_weight is not None and args.max_weight < args.min_weight:
        raise UsageError(f"--max-weight {args.max_weight:g} is below --min-weight {args.min_weight:g}: give the lower "
                         "weight to --min-weight")
    if args.min_weight is not None:
        if args.review_ids:
            raise UsageError("give review IDs or --min-weight, not both")
        with _read_views(args) as views:
            args.review_ids = [r["review_id"] for r in views.review_queue() if _weighs_within(r, args)]
        if not args.review_ids:
            print(f"No pending review weighs {args.min_weight:g} or more"
                  + (f" and {args.max_weight:g} or less." if args.max_weight is not None else "."))
            return 0
        print(f"{args.action}ing {len(args.review_ids):,} pending review(s) ...", file=sys.stderr)
    if not args.review_ids:
        raise UsageError(f"name the review(s) to {args.action}: `idres review {args.action} REVIEW_ID...` "
                         "or `--min-weight W` (list them with `idres review`)")
    reviewer = _decider(args)
    if kafka:
        return _submit_reviews(args, reviewer)
    from resolver.decisions import record_of

    failed = 0
    with _engine(args, writer=True) as engine:
        for review_id in args.review_ids:
            try:
                decisions = engine.review(review_id, args.action == "accept", reviewer, args.note)
            except IdresError as exc:
                print(f"idres: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            verdict = record_of(decisions)
            extra = f": {verdict['reason']}" if verdict.get("reason") else ""
            print(f"{review_id}: {verdict['outcome']}{extra}")
    return 2 if failed else 0


def _review_table(detail: dict[str, Any]) -> str:
    """A review's two sides side by side, field by field, with the match's level and weight for each."""
    from projections.snapshot import GOLDEN_FIELDS

    a, b = detail["sides"]
    rows = [("", "this side", "other side", "match"),
            ("identifier", a["identifier"], b["identifier"], ""),
            ("profile", a["profile_id"] or "(shared)", b["profile_id"] or "(shared)", ""),
            ("seen", f"{a.get('channel', '')} {a.get('occurred_at', '')[:10]}".strip(),
             f"{b.get('channel', '')} {b.get('occurred_at', '')[:10]}".strip(), "")]
    for f in GOLDEN_FIELDS:
        va = a.get("record", {}).get(f) or a.get("golden_record", {}).get(f) or ""
        vb = b.get("record", {}).get(f) or b.get("golden_record", {}).get(f) or ""
        ev = detail["fields"].get(f)
        rows.append((f, shown(str(va)), shown(str(vb)), f"{ev['level']} {ev['weight']:+.1f}" if ev else ""))
    rows.append(("events", str(a.get("events", "")), str(b.get("events", "")), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{detail['review_id']}  {detail['status']}  weight {detail['weight']:.1f} (review >= "
             f"{detail['review_threshold']:.0f}, link >= {detail['link_threshold']:.0f}), event {detail['event_id']}"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if detail.get("reviewer"):
        lines.append(f"decided: {detail['decision']} by {detail['reviewer']} at {detail['decided_at']}"
                     + (f" ({detail['note']})" if detail.get("note") else ""))
    return "\n".join(lines)


def _submit_reviews(args: argparse.Namespace, reviewer: str) -> int:
    """Kafka: the verdicts go to the resolve worker (the decision log's only writer) on the validated
    topic; it records them in order with the events. Unknown or decided reviews are refused here."""
    from datetime import datetime, timezone

    import orjson

    from resolver.ids import utc_iso
    from streams.kafka_io import producer
    from streams.stream_app import validated_topic

    queue = {r["review_id"]: r for r in _kafka_views(args)[0].review_queue(include_decided=True)}
    verdicts, failed = [], 0
    for review_id in args.review_ids:
        known = queue.get(review_id)
        if known is None or known["status"] not in ("pending", "moot"):
            state = "unknown" if known is None else f"already decided ({known['status']})"
            print(f"idres: error: review {review_id!r} is {state} (list the queue with `idres review`)",
                  file=sys.stderr)
            failed += 1
            continue
        verdict = {"review_id": review_id, "decision": args.action, "reviewer": reviewer,
                   "decided_at": utc_iso(datetime.now(timezone.utc))}
        if args.note:
            verdict["note"] = args.note
        verdicts.append(verdict)
    if verdicts:
        settings = _kafka_settings(args)
        prod = producer(settings)
        try:
            prod.send(validated_topic(settings), key=b"review", value=orjson.dumps({"reviews": verdicts})).get(
                timeout=settings.timeout)
        finally:
            prod.close()
        for v in verdicts:
            print(f"{v['review_id']}: {args.action} submitted; the resolve worker records it "
                  f"(see `idres review --all`)")
    return 2 if failed else 0


def cmd_unmerge(args: argparse.Namespace) -> int:
    """Unmerge identifiers from a profile (a split and a connection ban), lift a ban, or list the bans."""
    kafka = _uses_kafka(args)
    if args.list:
        if args.lift or args.profile_id:
            raise UsageError("`idres unmerge --list` takes no profile or ban")
        with _read_views(args) as views:
            bans = views.bans_of(lifted=args.all)
        if args.json:
            _print_json(bans)
            return 0
        for b in bans:
            lifted = f"  lifted by {b['lifted']['by']}" if "lifted" in b else ""
            note = f"  ({b['note']})" if b.get("note") else ""
            print(f"{b['ban_id']}  {b['kind']:<7} by {b['by']} at {b['decided_at']}{lifted}{note}\n"
                  f"    {', '.join(b['sides'][0])}  !=  {', '.join(b['sides'][1][:8])}"
                  + (f" and {len(b['sides'][1]) - 8} more" if len(b['sides'][1]) > 8 else ""))
        print(f"{len(bans)} connection ban(s){'' if args.all else ' in force'}. Lift one with "
              f"`idres unmerge --lift BAN_ID --by NAME`.")
        return 0
    by = _decider(args)
    if args.lift:
        if args.profile_id or args.identifiers:
            raise UsageError("`idres unmerge --lift BAN_ID` takes no profile or identifiers")
        command = {"command": "lift", "ban_id": args.lift}
    else:
        if not args.profile_id or not args.identifiers:
            raise UsageError("name the profile and the identifiers that leave it: `idres unmerge PROFILE_ID "
                             "TYPE=VALUE [TYPE=VALUE ...] --by NAME` (see `idres show PROFILE_ID`)")
        pairs = []
        for spec in args.identifiers:
            id_type, eq, raw = spec.partition("=")
            if not eq or not id_type.strip() or not raw.strip():
                raise UsageError(f"expected TYPE=VALUE (for example email=jane@example.com), got {spec!r}")
            pairs.append([id_type.strip(), raw])
        command = {"command": "unmerge", "profile_id": args.profile_id, "identifiers": pairs}
    command["by"] = by
    if args.note:
        command["note"] = args.note
    if kafka:
        _check_command(args, command)
        return _submit_commands(args, [command])
    from resolver.errors import IdresError

    with _engine(args, writer=True) as engine:
        try:
            decisions = engine.command(command)
        except IdresError as exc:
            print(f"idres: error: {exc}", file=sys.stderr)
            return 2
    if command["command"] == "lift":
        print(f"{command['ban_id']}: lifted")
        return 0
    ban = decisions[-1] if decisions[-1]["type"] == "connection_banned" else \
        next(d for d in decisions if d["type"] == "connection_banned")
    split = next(d for d in decisions if d["type"] == "profile_split")
    renames = {d["profile_id"]: d["new_profile_id"] for d in decisions if d["type"] == "profile_renamed"}
    for part in split["parts"]:
        print(f"{renames.get(part['profile_id'], part['profile_id'])}: {', '.join(part['nodes'])}")
    print(f"{ban['ban_id']}: {', '.join(ban['nodes'])} and the rest of the profile are kept apart from now on "
          f"(lift with `idres unmerge --lift {ban['ban_id']} --by NAME`)")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase the customer behind an identifier (the right to be forgotten)."""
    pairs = []
    for spec in args.identifiers:
        id_type, eq, raw = spec.partition("=")
        if not eq or not id_type.strip() or not raw.strip():
            raise UsageError(f"expected TYPE=VALUE (for example email=jane@example.com), got {spec!r}")
        pairs.append((id_type.strip(), raw))
    by = _decider(args)
    if _uses_kafka(args):
        from streams.commands import CommandRefused, check, scoped_erasure
        from streams.stream_app import dead_letters

        config, _ = _settings(args)
        command = {"command": "erase", "identifiers": [list(p) for p in pairs], "by": by,
                   **({"note": args.reason} if args.reason else {})}
        views = _kafka_views(args)[0]
        try:
            check(command, views, config)
        except CommandRefused as exc:
            raise _refused(exc, command) from None
        letters = dead_letters(_kafka_settings(args))
        command = scoped_erasure(command, views, config, letters)
        named = len(set(command["rejected"]) & {d["key"] for d in letters})
        _submit_commands(args, [command])
        print(f"the resolve worker logs it, then shreds the keys of {len(command['events'])} event(s) and their "
              f"customer's identifiers; snapshots leave out the text of the {named} dead letter(s) naming them (the "
              "dead-letter topic keeps them until its retention ends); see `idres changes --bootstrap ...` for the "
              "erased change")
        return 0
    from resolver.errors import IdresError

    with _engine(args, writer=True) as engine:
        try:
            decisions = engine.erase(pairs, by, args.reason)
        except IdresError as exc:
            print(f"idres: error: {exc}", file=sys.stderr)
            return 2
    erased = next(d for d in decisions if d["type"] == "customer_erased")
    if args.json:
        _print_json({k: erased[k] for k in ("erasure_id", "profile_ids", "by", "decided_at")}
                    | {"identifiers": len(erased["nodes"]), "events": len(erased["events"]),
                       "rejected": len(erased["rejected"])})
        return 0
    who = ", ".join(erased["profile_ids"]) or "an identifier in no profile"
    print(f"{erased['erasure_id']}: erased {who}: {len(erased['nodes'])} identifier(s), the contents of "
          f"{len(erased['events'])} event(s) and {len(erased['rejected'])} rejected record(s); their keys are "
          f"shredded and the data directory rebuilt without them. Snapshots written before now still hold them: "
          f"write them again (`idres snapshot`) and delete the old ones.")
    return 0


# what to do next after a command refused on Kafka (the refusal's own text is the API's too, which names no command)
_REFUSED_NEXT = {
    "unknown_review": "list the queue with `idres review --bootstrap ...`",
    "already_decided": "list the queue with `idres review --bootstrap ...`",
    "unknown_ban": "list them with `idres unmerge --list --bootstrap ...`",
    "unknown_profile": "look it up with `idres lookup TYPE=VALUE --bootstrap ...`",
    "unusable_identifier": "name one the customer has: `idres show PROFILE_ID --bootstrap ...` lists them",
    "not_in_profile": "`idres show PROFILE_ID --bootstrap ...` lists its identifiers",
    "whole_profile": "`idres show PROFILE_ID --bootstrap ...` lists its identifiers",
    "unknown_identifier": "look it up with `idres lookup TYPE=VALUE --bootstrap ...`",
}


def _refused(exc: Any, command: dict[str, Any]) -> UsageError:
    """The one line for a command refused on Kafka, with what to do next."""
    detail = exc.detail
    if exc.code == "unknown_identifier":
        detail = (f"no customer holds {', '.join(f'{t}={v}' for t, v in command['identifiers'])}: nothing to "
                  "erase")
    after = _REFUSED_NEXT.get(exc.code)
    return UsageError(f"{detail} ({after})" if after else detail)


def _check_command(args: argparse.Namespace, command: dict[str, Any]) -> None:
    """Kafka: refuses here what the resolve worker would refuse, as the views of the decision log stand."""
    from streams.commands import CommandRefused, check

    config, _ = _settings(args)
    try:
        check(command, _kafka_views(args)[0], config)
    except CommandRefused as exc:
        raise _refused(exc, command) from None


def _submit_commands(args: argparse.Namespace, commands: list[dict[str, Any]]) -> int:
    """Kafka: a person's commands go to the resolve worker (the decision log's only writer) on the validated
    topic; it decides them in order with the events, and logs a refused one as a warning."""
    from streams.commands import CommandRefused, KafkaCommands

    sender = KafkaCommands(_kafka_settings(args))
    try:
        sender.run(commands)
    except CommandRefused as exc:
        raise UsageError(exc.detail) from None
    finally:
        sender.close()
    for c in commands:
        print(f"{c['command']} submitted; the resolve worker records it"
              + (" (see `idres unmerge --list`)" if c["command"] in ("unmerge", "lift") else ""))
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    """The identity changelog (``projections.changelog``) as JSON lines, from a log position on; with
    ``--follow``, waiting for more until interrupted."""
    import orjson

    from projections.changelog import changes_of

    if args.from_seq < 0:
        raise UsageError(f"--from {args.from_seq}: expected a log position >= 0")
    out = sys.stdout.buffer
    try:
        if _uses_kafka(args):
            return _changes_from_kafka(args, out)
        from streams.log import DecisionLog

        data_dir = _data_dir(args, existing=True)
        if not _has_log(data_dir):
            raise UsageError(f"no idres data in {data_dir}: run `idres ingest FILE --data-dir {data_dir}` first")
        log = DecisionLog(data_dir, writer=False)
        try:
            seq = args.from_seq
            if seq > len(log):  # (as the API's 409: a position of another log, or of this one before it was rebuilt)
                raise UsageError(f"--from {seq} is beyond this decision log's end ({len(log)} entries in {data_dir}): "
                                 f"it was given by another log (a data directory rebuilt since?); read again from 0")
            while True:
                for s_, entry in log.read(seq, raw=True):  # (every entry as written: a restatement's too)
                    for c in changes_of(s_, entry):
                        out.write(orjson.dumps(c) + b"\n")
                    seq = s_ + 1
                out.flush()
                if not args.follow:
                    return 0
                time.sleep(0.2)
                log.refresh()
        finally:
            log.close()
    except KeyboardInterrupt:  # (how --follow ends)
        return 0


def _changes_from_kafka(args: argparse.Namespace, out: Any) -> int:
    """The changes topic from ``--from`` on (the project role publishes it); ``--follow`` keeps reading."""
    import orjson
    from kafka import TopicPartition

    from streams.stream_app import reader

    settings = _deployment_settings(args)
    tp = TopicPartition(settings.topics.changes, 0)
    consumer = reader(settings, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        idle = time.monotonic()
        while True:
            records = consumer.poll(timeout_ms=200, max_records=5000).get(tp, ())
            for record in records:
                if orjson.loads(record.value)["seq"] >= args.from_seq:
                    out.write(record.value + b"\n")
            if records:
                out.flush()
                idle = time.monotonic()
            high = consumer.highwater(tp)
            if not args.follow and high is not None and consumer.position(tp) >= high:
                return 0
            if not args.follow and time.monotonic() - idle > max(settings.timeout, 5) * 4:
                raise UsageError(f"could not read {tp.topic} from {settings.bootstrap}: check that the topic exists "
                                 f"(`idres topics` creates it) and that a worker with the project role runs")
    finally:
        consumer.close()


def cmd_whatif(args: argparse.Namespace) -> int:
    """Decides the log's inputs again under other rules in a scratch directory and reports what changes."""
    from streams.settings import load_settings
    from streams.whatif import compare, replay, report_text

    if args.sample < 0:
        raise UsageError(f"--sample {args.sample}: give how many changed profiles to show, 0 or more")
    new_config, projection = _settings(args)  # (--config: the new rules)
    if args.model:
        from dataclasses import replace

        from streams.settings import load_match_model

        new_config = replace(new_config, match_model=load_match_model(args.model))
    live_config, _ = load_settings(os.environ.get("IDRES_CONFIG") or None)
    truth = None
    if args.truth:
        from streams.synthetic import read_truth_csv

        truth = read_truth_csv(Path(args.truth))
    scratch = Path(args.scratch)
    from streams.whatif import MARKER

    if scratch.exists() and not (scratch / MARKER).is_file():
        raise UsageError(f"{scratch} exists and is not a what-if scratch directory: give --scratch a new directory "
                         f"(it is replaced on every run)")
    if _uses_kafka(args):
        from streams.stream_app import decision_entries, read_to_end

        settings = _kafka_settings(args)
        live = _kafka_views(args)[0]
        entries: list[tuple[int, list[dict[str, Any]]]] = []
        read_to_end(settings, settings.topics.decisions,
                    lambda record: entries.extend((len(entries) + i, e) for i, e in
                                                  enumerate(decision_entries(record.value, settings))))
        source: Any = contextlib.nullcontext()
        total = len(entries)
    else:
        from streams.embedded import EmbeddedEngine

        data_dir = _data_dir(args, existing=True)
        if not _has_log(data_dir):
            raise UsageError(f"no idres data in {data_dir}: run `idres ingest FILE --data-dir {data_dir}` first")
        inside = lambda a, b: a == b or b in a.parents  # noqa: E731  (a is b or inside it)
        if inside(scratch.resolve(), data_dir.resolve()) or inside(data_dir.resolve(), scratch.resolve()):
            raise UsageError(f"--scratch {scratch} must be outside the data directory {data_dir} and not hold it")
        # (the live views and the log: the live resolver's state is not read)
        source = EmbeddedEngine(data_dir, live_config, projection, writer=False, batch_size=_batch_size(),
                                load="views")
    with source as engine:
        if engine is not None:
            live = engine.views
            entries = engine.log.read(0)  # type: ignore[assignment]
            total = len(engine.log)
        print(f"idres: deciding {total:,} log entries again under the new rules into {scratch} ...", file=sys.stderr)
        with _progress_bar(total, "what-if", unit="entry") as bar:
            new, counts = replay(entries, scratch, new_config, projection, progress=bar.update)
        try:
            result = compare(live, new.views, truth, sample=args.sample)
        finally:
            new.close()
    result["replay"] = counts
    result["scratch"] = str(scratch)
    if args.json:
        _print_json(result)
    else:
        print(report_text(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from resolver.calibration import MIN_CANDIDATE_PAIRS
    from resolver.matching import train_model
    from streams.log import bulk_work
    from streams.training_jobs import ProcessMapper, default_jobs
    from streams.settings import save_match_model

    if args.pairs < 1:
        raise UsageError(f"--pairs {args.pairs}: give 1 or more random pairs to estimate u from (default 1000000)")
    config, _ = _settings(args)
    _model_output(Path(args.out), [*args.files, *([args.config] if args.config else [])])
    records = _training_records(args.files, config)
    if len(records) < 2:
        raise UsageError(f"only {len(records)} distinct attribute record(s) in the input: training needs many "
                         "events with names, dates of birth or addresses (records with the same attributes count once)")
    jobs = args.jobs if args.jobs is not None else default_jobs()
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more processes")
    print(f"idres: training on {len(records):,} distinct attribute records "
          f"({args.pairs:,} random pairs for u, EM over blocked pairs for m; {jobs} process"
          f"{'es' if jobs > 1 else ''})", file=sys.stderr)
    # (the collector paused: training makes millions of short-lived containers and no cycles, and workers forked
    # meanwhile do not scan the records they share)
    with bulk_work(), ProcessMapper(jobs) as mapper:
        model, report = train_model(records, seed=args.seed, pairs_sample=args.pairs,
                                    max_block_size=config.max_block_size, version=args.version, mapper=mapper)
    pairs = report["candidate_pairs"]
    if not pairs:
        raise UsageError(f"no candidate pairs among {len(records):,} distinct attribute records: nothing to estimate "
                         "how matches agree from (the model would weigh every agreement as proof); train on more "
                         "events, or keep the built-in model. Nothing was written")
    if pairs < MIN_CANDIDATE_PAIRS:
        print(f"idres: warning: only {pairs:,} candidate pairs: a rough estimate (the engine itself waits for "
              f"{MIN_CANDIDATE_PAIRS} before it estimates); check the weights below, or train on more events",
              file=sys.stderr)
    save_match_model(model, args.out)
    if args.json:
        _print_json({"model": model.to_dict(), **report})
    else:
        print(f"Wrote {args.out}: model {model.version} (fingerprint {model.fingerprint()}), "
              f"{report['candidate_pairs']:,} candidate pairs, estimated match share {model.prior:.4f}.")
        for field in report["weights"]:
            levels = ", ".join(f"{lv} {w:+.1f}" for lv, w in report["weights"][field].items())
            print(f"  {field}: {levels}")
        for field, weights in report["weights_postcode_apart"].items():
            levels = ", ".join(f"{lv} {w:+.1f}" for lv, w in weights.items())
            print(f"  {field}, where the postcodes do not agree: {levels}")
        print(f"Use it with `match_model = \"{args.out}\"` in the TOML file given to --config.")
    return 0


def _model_output(out: Path, inputs: Sequence[str]) -> None:
    """Refuses, before any work, a model output that is one of the inputs or an existing file that is not a
    match model: training replaced whatever was there (an events file, the rules it was given)."""
    import json

    from resolver.matching.model import MODEL_FORMAT

    _writable_output(out, "match model file", create_parent=False)
    if not out.exists():
        return
    for name in inputs:
        if name != "-" and Path(name).exists() and os.path.samefile(name, out):
            raise UsageError(f"--out {out} is one of the inputs: give another path for the model")
    try:
        with open(out, "rb") as fh:
            found = json.loads(fh.read(1 << 20)).get("format")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != MODEL_FORMAT:
        raise UsageError(f"--out {out} exists and is not a match model (training replaces only an earlier model): "
                         "give another path, or remove it first")


def _training_records(files: Sequence[str], config: Any) -> list[Any]:
    """Distinct attribute records of the valid events in ``files``, sorted by their fields."""
    from resolver.matching import distinct_records
    from resolver.normalize import Normalizer
    from schemas.channel import RejectedInput, parse_event
    from streams.inputs import check_input, open_input

    for name in files:  # every file's shape is checked before any is read
        check_input(name)

    def attribute_sets() -> Iterable[dict[str, Any]]:
        for name in files:
            with open_input(name) as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        yield parse_event(line).attributes
                    except RejectedInput:
                        continue
                if fh.error:
                    raise UsageError(f"{fh.error}; give a complete copy of the file")

    from operator import attrgetter

    records = distinct_records(attribute_sets(), Normalizer(config).attributes)
    # (in one order whatever the files' lines: the seeded samples are drawn from the list, so the model was another
    # for the same events listed otherwise; the records are distinct on these fields, so the order is total)
    fields = attrgetter("last_name", "first_name", "date_of_birth", "postcode", "address", "city")
    records.sort(key=lambda r: (*(v or "" for v in fields(r)), *(v is None for v in fields(r))))
    return records


def cmd_evaluate(args: argparse.Namespace) -> int:
    from resolver.measures import pairwise_scores
    from streams.inputs import read_truth_file, truth_overlap

    truth = read_truth_file(args.truth)  # its shape first: quicker than loading the engine
    with _engine(args, writer=False, load="views") as engine:
        predicted = dict(zip(engine.views.ev_id, engine.views.ev_profile))
        # only the events in both are scored; a truth file sharing too few with the log is refused
        common, counts, warning = truth_overlap(predicted, truth, args.truth, args.data_dir)
        if warning:
            print(f"idres: warning: {warning}", file=sys.stderr)
        scores = pairwise_scores({e: predicted[e] for e in common}, {e: truth[e] for e in common})
        _print_json({**scores, **counts})
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from streams.synthetic import SyntheticConfig, write_dataset

    if args.people < 1:
        raise UsageError(f"--people {args.people}: give at least 1 person")
    if Path(args.out).resolve() == Path(args.truth).resolve():
        raise UsageError(f"--out and --truth are both {args.out}: the events and the ground truth need a file each")
    # (an earlier run's files, as this command writes them: any other JSON lines or CSV is a user's own)
    _writable_output(Path(args.out), "generated events file", magic=(0, b'{"event_id":"evt-'))
    _writable_output(Path(args.truth), "generated ground-truth CSV", magic=(0, b"event_id,person_id\n"))
    config = SyntheticConfig(people=args.people, seed=args.seed)
    with _progress_bar(None, "generate", unit="event") as bar:
        stats = write_dataset(args.out, args.truth, config, progress=bar.update)
    _print_json({"events_file": str(args.out), "truth_file": str(args.truth), **stats})
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    path = Path(args.snapshot)
    sql = args.sql.strip().rstrip(";").strip()
    if not sql:
        raise UsageError("the SQL is empty: give a statement, e.g. \"SELECT * FROM profiles LIMIT 5\" "
                         "(\"SHOW TABLES\" lists the tables)")
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: give a number of rows, or 0 for all of them")
    if path.is_dir():
        raise UsageError(f"{path} is a directory: give a snapshot file written by `idres snapshot --out FILE.duckdb`")
    if not path.is_file():
        raise UsageError(f"snapshot {path} not found: write one with `idres snapshot --out {path}`")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: permission denied: read it as its owner, or give its owner's group read access")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        raise UsageError(f"{path} is not a DuckDB snapshot: write one with `idres snapshot --out FILE.duckdb`, "
                         "or query another file") from None
    fmt = args.format or ("json" if args.json else "csv" if args.csv else None)
    if fmt == "parquet" and not args.out:
        raise UsageError("--format parquet writes a file: add --out FILE.parquet")
    with con:
        try:
            if args.out:
                return _query_to_file(con, sql, Path(args.out), fmt)
            result = con.execute(sql)
            columns = [d[0] for d in result.description or []]
            rows = result.fetchmany(args.limit + 1) if args.limit else result.fetchall()
        except duckdb.Error as exc:
            hint = ("SHOW TABLES lists the tables, DESCRIBE name a table's columns" if isinstance(
                exc, (duckdb.CatalogException, duckdb.BinderException)) else
                    f"check that {Path(args.out).parent} can be written (and has room), then run it again"
                    if args.out and isinstance(exc, duckdb.IOException) else "correct the SQL and run it again")
            raise UsageError(f"query failed: {str(exc).splitlines()[0]}: {hint}") from None
    more = bool(args.limit) and len(rows) > args.limit
    rows = rows[:args.limit] if more else rows
    if fmt == "json":
        _print_json([dict(zip(columns, row)) for row in rows])
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        cells = [[("" if v is None else shown(str(v))) for v in row] for row in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
        print("  ".join("-" * w for w in widths))
        for r in cells:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    if more:
        sys.stdout.flush()
        print(f"idres: showing the first {args.limit:,} rows; there are more: --limit 0 prints them all, "
              f"--out FILE.csv or FILE.parquet writes them all", file=sys.stderr)
    return 0


QUERY_FORMATS = ("csv", "parquet", "json")


def _query_to_file(con, sql: str, out: Path, fmt: Optional[str] = None) -> int:
    """Every row of ``sql`` into a CSV, Parquet or JSON file (``fmt``, else by the file's suffix; JSON: one
    array of objects), written under a temporary name and renamed, so a reader never sees half a file."""
    suffix = out.suffix.lower().lstrip(".")
    fmt = fmt or suffix
    if fmt not in QUERY_FORMATS:
        raise UsageError(f"--out {out}: give a file ending in .csv, .parquet or .json, or say which with --format")
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory: give a file ending in .{fmt}")
    _writable_output(out, f".{fmt} file", create_parent=False)
    relation = con.sql(sql)
    if relation is None:
        raise UsageError("that statement returns no rows to write: --out takes a query (SELECT ...)")
    tmp = out.with_name(f".{out.name}.tmp")
    options = {"csv": "FORMAT csv, HEADER", "parquet": "FORMAT parquet", "json": "FORMAT json, ARRAY true"}[fmt]
    try:  # (COPY says how many rows it wrote: the query runs once)
        rows = con.execute(f"COPY ({sql}) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' ({options})").fetchone()[0]
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {rows:,} rows to {out} ({fmt})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from schemas import export_json_schemas

    schemas = export_json_schemas()
    if args.out is None:
        _print_json(schemas)
        return 0
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a directory to write the schema files into")
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / name).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        print(out / name)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from streams.api import serve

    config, projection = _settings(args)
    kafka = _kafka_settings(args) if _uses_kafka(args) else None
    return serve(str(_data_dir(args, existing=True)), args.host, args.port, config=config, projection_config=projection,
                 no_auth=args.no_auth, kafka=kafka)


def cmd_demo(args: argparse.Namespace) -> int:
    from projections.households import device_types
    from projections.snapshot import write_snapshot
    from resolver.measures import pairwise_scores
    from streams.synthetic import read_truth_csv
    from streams.embedded import EmbeddedEngine
    from streams.synthetic import SyntheticConfig, write_dataset

    if args.people < 1:
        raise UsageError(f"--people {args.people}: the demo needs at least 1 person (the default is 600)")
    config, projection = _settings(args)  # (a wrong configuration stops the demo before it writes anything)
    root = Path(args.dir)
    _claim_demo_dir(root)
    events, truth_file = root / "events.jsonl", root / "truth.csv"
    data_dir, snapshot = root / "data", root / "customers.duckdb"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    print(f"1/4 generating {args.people} synthetic customers across 8 channels (seed {args.seed}) ...")
    with _progress_bar(None, "generate", unit="event") as bar:
        gen = write_dataset(events, truth_file, SyntheticConfig(people=args.people, seed=args.seed),
                            progress=bar.update)
    print(f"2/4 ingesting {events} ...")
    with EmbeddedEngine(data_dir, config, projection, batch_size=_batch_size()) as engine:
        with _progress_bar(events.stat().st_size, "ingest") as bar:
            report = engine.ingest_file(events, progress=bar.update)
        print(f"3/4 writing the analyst snapshot {snapshot} ...")
        counts = write_snapshot(engine.views, snapshot, info={"data_dir": str(data_dir.resolve())},
                                weak_types=device_types(config))
        print("4/4 scoring against the generator's ground truth ...")
        predicted = dict(zip(engine.views.ev_id, engine.views.ev_profile))
        scores = pairwise_scores(predicted, read_truth_csv(truth_file))
        stats = engine.views.stats()
        known = sum(1 for p in engine.views.profiles.values() if p.events and _has_strong_identifier(engine, p))
        sample = _sample_identifier(engine)
    print()
    print(f"  raw lines           {report.lines:>9,}   ({report.accepted:,} accepted, "
          f"{report.duplicates:,} duplicates ignored, {report.rejected:,} rejected with a reason)")
    print(f"  real people         {gen.get('people', args.people):>9,}")
    print(f"  resolved customers  {known:>9,}   with an email, phone, loyalty card or handle "
          f"({stats['merges']:,} merges)")
    print(f"  anonymous profiles  {counts['profiles'] - known:>9,}   devices never logged in, or events whose only "
          f"identifiers were shared or placeholders")
    print(f"  shared identifiers  {stats['shared_identifiers']:>9,}   kiosks, family devices, landlines kept from "
          f"linking strangers")
    print(f"  pairwise precision  {scores['precision']:>9.4f}")
    print(f"  pairwise recall     {scores['recall']:>9.4f}")
    print(f"  pairwise F1         {scores['f1']:>9.4f}")
    print(f"  ingest speed        {report.as_dict()['events_per_second'] or 0:>9,} events/s")
    _mark_demo_dir(root, {name: _demo_fingerprint(root / name) for name in DEMO_FILES if (root / name).exists()})
    print()
    print("Try next:")
    for line in _try_next(snapshot, data_dir, sample):
        print(f"  {line}")
    return 0


def _claim_demo_dir(root: Path) -> None:
    """Makes ``root`` the demo's directory. Files of the demo's names that the demo did not write, or that
    changed since it wrote them (an ingest into its data, a file added there, an edited truth file), are
    never replaced without asking: on a terminal it asks, elsewhere it stops with one line."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"--dir {root} is a file: give a directory for the demo's data (default ./idres-demo)")
    written = _demo_written(root)
    theirs = [name for name in DEMO_FILES if (root / name).exists()
              and (written is None or written.get(name) != _demo_fingerprint(root / name))]
    if theirs:
        listed = ", ".join(theirs)
        what = ("which idres demo did not write" if written is None else
                "which changed since idres demo wrote them" if all(n in written for n in theirs) else
                "which idres demo did not write, or which changed since it wrote them")
        if not sys.stdin.isatty():
            raise UsageError(f"{root} already holds {listed}, {what}: give another --dir "
                             f"(the demo replaces those), or move them away")
        try:
            answer = input(f"{root} holds {listed}, {what}. Replace them? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError(f"left {root} as it was: give another --dir")
    root.mkdir(parents=True, exist_ok=True)
    _mark_demo_dir(root, {})  # (an interrupted run leaves files the next run asks about)


def _demo_fingerprint(path: Path) -> Any:
    """What tells a file (size, modification time) or a directory (every file's path and size) apart from
    what the demo wrote; reading the demo's data changes none of it."""
    if path.is_dir():
        return sorted([str(p.relative_to(path)), p.stat().st_size] for p in path.rglob("*")
                      if p.is_file() and p.name != "LOCK")
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _demo_written(root: Path) -> Optional[dict[str, Any]]:
    """The fingerprints of what the demo wrote in ``root`` (None when it is not the demo's directory)."""
    try:
        marker = json.loads((root / DEMO_MARKER).read_text(encoding="utf-8"))
        return dict(marker["written"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mark_demo_dir(root: Path, written: dict[str, Any]) -> None:
    from projections.storage import write_atomic

    text = json.dumps({"note": "written by idres demo: its events, truth, data and snapshot here are replaced by "
                               "the next `idres demo` run, unless they changed since", "written": written})
    write_atomic(root / DEMO_MARKER, (text + "\n").encode("utf-8"))


def _try_next(snapshot: Path, data_dir: Path, sample: Optional[tuple[str, str]]) -> list[str]:
    """Commands that work as printed (pasted into a POSIX shell) on the demo's data."""
    import shlex

    flag = "" if _default_data_dir(existing=True) == data_dir else f" --data-dir {shlex.quote(str(data_dir))}"
    lines = [f"idres query {shlex.quote(str(snapshot))} \"SELECT first_name, last_name, channel_count, lifetime_value "
             f"FROM profiles ORDER BY lifetime_value DESC LIMIT 5\"",
             f"idres report {shlex.quote(str(snapshot))} --out report.html"]
    if sample:
        identifier, profile_id = sample
        lines += [f"idres lookup {shlex.quote(identifier)}{flag}", f"idres explain {shlex.quote(profile_id)}{flag}"]
    return lines


def _has_strong_identifier(engine, prof) -> bool:
    from resolver.ids import node_type

    return any(not engine.config.rule(node_type(engine.views.node_keys[n])).weak for n in prof.nodes)


def _sample_identifier(engine) -> Optional[tuple[str, str]]:
    """``TYPE=VALUE`` of the customer with the most events among those with three identifiers or more
    (an email if it has one), and that customer's profile ID."""
    views = engine.views
    best = None
    for pid, prof in views.profiles.items():
        if len(prof.nodes) >= 3 and (best is None or len(prof.events) > len(views.profiles[best].events)):
            best = pid
    if best is None:
        return None
    keys = [views.node_keys[idx] for idx in sorted(views.profiles[best].nodes)]
    key = next((k for k in keys if k.startswith("email:")), keys[0])
    return key.replace(":", "=", 1), best


# ------------------------------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    """argparse with the house's one-line errors (its own print the usage, then ``idres CMD: error: ...``)."""

    def error(self, message: str):  # type: ignore[override]
        where = "" if self.prog == "idres" else f"{self.prog.removeprefix('idres ')}: "
        print(f"idres: error: {where}{message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="idres", description="Event-sourced customer identity resolution.")
    parser.add_argument("--version", action="version", version=f"idres {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="directory of the decision log (default: $IDRES_DATA_DIR, else ./idres-data, "
                                          "else the demo's ./idres-demo/data)")
        p.add_argument("--config", help="resolver rules as TOML (default: $IDRES_CONFIG or built-in rules)")

    p = sub.add_parser("ingest", help="append channel events (JSON lines) to the log and resolve them")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines file(s); - for standard input")
    p.add_argument("--file-order", action="store_true",
                   help="decide the events in the order the files list them, not in event-time order (the "
                        "default: the files' events are decided together, so the same events give the same "
                        "customers whatever order or file they come in)")
    p.add_argument("--shards", type=_shard_count, default=1, metavar="N",
                   help="decide on N worker processes at once, each with a copy of the state (N times the "
                        "memory); the log is the one deciding in order writes (default 1: in this process)")
    data_dir(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("produce", help="publish channel events (JSON lines) to the raw Kafka topics")
    p.add_argument("file", metavar="FILE", help="JSON-lines file; - for standard input")
    p.add_argument("--bootstrap", metavar="HOST:PORT",
                   help="Kafka broker(s), comma-separated (default: $IDRES_BOOTSTRAP or localhost:9092)")
    p.add_argument("--topic", help="publish every line to this one topic (for example idres.raw) instead of "
                                   "one raw topic per channel")
    p.add_argument("--topic-prefix", help="prefix of the topic names (default: $IDRES_TOPIC_PREFIX or idres.)")
    p.add_argument("--partitions", type=int,
                   help="partitions of a topic it creates (default: $IDRES_RAW_PARTITIONS or 4)")
    p.add_argument("--replication-factor", type=int,
                   help="replication of a topic it creates (default: $IDRES_REPLICATION_FACTOR or the broker's)")
    p.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"),
                   help="batch compression (default: $IDRES_KAFKA_COMPRESSION or none)")
    p.add_argument("--file-order", action="store_true",
                   help="publish a file's lines in the order it lists them, not in event-time order (the default "
                        "for a file: the resolve role then decides them as `idres ingest` does; standard input is "
                        "always sent as it comes)")
    p.add_argument("--linger-ms", type=int, help="how long to wait to fill a batch (default 20)")
    p.add_argument("--batch-bytes", type=int, help="batch size per partition in bytes (default 262144)")
    p.add_argument("--timeout", type=float, help="seconds to reach the broker (default: $IDRES_KAFKA_TIMEOUT or 10)")
    p.add_argument("--config", help="resolver rules as TOML, for the keys (default: $IDRES_CONFIG or built-in rules)")
    p.set_defaults(func=cmd_produce)

    def kafka(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka broker(s) (default: $IDRES_BOOTSTRAP)")
        p.add_argument("--topic-prefix", help="prefix of the topic names (default: $IDRES_TOPIC_PREFIX or idres.)")

    def snapshot_source(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-predict", action="store_true",
                       help="skip the purchase models (the predicted customer value) even where installed")
        data_dir(p)
        kafka(p)

    p = sub.add_parser("snapshot", help="write the analyst snapshot (DuckDB file, atomically)")
    p.add_argument("--out", required=True, help="the .duckdb file to write")
    snapshot_source(p)
    p.set_defaults(func=cmd_snapshot)

    def resolve_partitions(p: argparse.ArgumentParser) -> None:
        p.add_argument("--resolve-partitions", type=int, metavar="N",
                       help="resolve shards: the resolve workers share N partitions of the shard tasks topic, "
                            "and decide at once what deciding in order would (default: "
                            "$IDRES_RESOLVE_PARTITIONS or 1; the same N for topics and every worker)")
        p.add_argument("--resolve-state", choices=("copies", "keys"),
                       help="how resolve shards hold the state: copies (every resolve worker a whole copy) or keys "
                            "(each shard the part its keys own; default: $IDRES_RESOLVE_STATE or copies; the same "
                            "for topics and every worker)")

    p = sub.add_parser("worker", help="run stream job roles on Kafka (Faust): validate, resolve, project")
    kafka(p)
    p.add_argument("--role", default="all", help="validate, resolve, project, or all (comma-separated; default all)")
    p.add_argument("--data-dir", help="the worker's local directory; its state is in Kafka, this holds the stream "
                                      "library's files (default: $IDRES_DATA_DIR or ./idres-data)")
    p.add_argument("--web-host", default=os.environ.get("IDRES_WEB_HOST", "127.0.0.1"),
                   help="address of the worker's web endpoint with /metrics (default 127.0.0.1)")
    p.add_argument("--web-port", type=int, help="port of that endpoint (default: $IDRES_WEB_PORT or 6066)")
    p.add_argument("--batch", type=int, help="events per validate batch (default: $IDRES_BATCH_EVENTS or 2000)")
    p.add_argument("--session-timeout", type=float,
                   help="consumer group session timeout in seconds (default: $IDRES_SESSION_TIMEOUT or 10)")
    p.add_argument("--loglevel", choices=LOGLEVELS, help="(default: $IDRES_LOGLEVEL or info)")
    p.add_argument("--config", help="resolver rules as TOML (default: $IDRES_CONFIG or built-in rules)")
    resolve_partitions(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("config", help="check a configuration file (resolver and projection rules)")
    p.add_argument("action", choices=("check",), help="check: load the file as every command would")
    p.add_argument("file", nargs="?", metavar="FILE", help="the TOML file (default: $IDRES_CONFIG)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("topics", help="create the Kafka topics the stream jobs use (existing ones are kept)")
    kafka(p)
    resolve_partitions(p)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("replay", help="rebuild every projection from the decision log and compare")
    p.add_argument("--verify", action="store_true", help="also re-decide every record and compare with the log")
    data_dir(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("lookup", help="the customer behind one identifier, as JSON")
    p.add_argument("identifier", metavar="TYPE=VALUE", help="for example phone='+1 (415) 555-0100'")
    p.add_argument("--timeline", type=_count, default=20, help="how many recent events to show (default 20)")
    data_dir(p)
    p.set_defaults(func=cmd_lookup)

    p = sub.add_parser("show", help="a profile by ID (a merged-away ID shows its survivor)")
    p.add_argument("profile_id")
    p.add_argument("--timeline", type=_count, default=20, help="how many recent events to show (default 20)")
    data_dir(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("explain", help="why a profile's identifiers and events are one customer")
    p.add_argument("profile_id", metavar="PROFILE_ID", help="a profile ID, or TYPE=VALUE")
    p.add_argument("--json", action="store_true", help="the full evidence as JSON")
    data_dir(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("review", help="the review queue of possible matches; show one side by side; accept or "
                                      "reject them")
    p.add_argument("action", nargs="?", choices=("list", "show", "accept", "reject"), default="list")
    p.add_argument("review_ids", nargs="*", metavar="REVIEW_ID")
    p.add_argument("--limit", type=int, help="reviews listed per page (default 20, with --json all; 0 for all)")
    p.add_argument("--offset", type=int, default=0, help="reviews skipped before the page (default 0)")
    p.add_argument("--min-weight", type=float, help="accept|reject: every pending review weighing at least this "
                                                    "(the listing: those alone)")
    p.add_argument("--max-weight", type=float, help="... and at most this (accept|reject: with --min-weight)")
    p.add_argument("--by", help="who decides (default: $USER; required where none is set)")
    p.add_argument("--note", help="why, kept with the verdict in the log")
    p.add_argument("--all", action="store_true", help="list decided and moot reviews too")
    p.add_argument("--json", action="store_true")
    data_dir(p)
    kafka(p)
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("unmerge", help="part identifiers from a profile and keep them apart (a connection ban); "
                                       "lift or list bans")
    p.add_argument("profile_id", nargs="?", metavar="PROFILE_ID")
    p.add_argument("identifiers", nargs="*", metavar="TYPE=VALUE", help="the identifiers that leave the profile")
    p.add_argument("--by", help="who decides (default: $USER; required where none is set)")
    p.add_argument("--note", help="why, kept with the decision in the log")
    p.add_argument("--lift", metavar="BAN_ID", help="lift a connection ban instead")
    p.add_argument("--list", action="store_true", help="list the connection bans in force")
    p.add_argument("--all", action="store_true", help="with --list: lifted bans too")
    p.add_argument("--json", action="store_true")
    data_dir(p)
    kafka(p)
    p.set_defaults(func=cmd_unmerge)

    p = sub.add_parser("erase", help="erase the customer behind an identifier (the right to be forgotten)")
    p.add_argument("identifiers", nargs="+", metavar="TYPE=VALUE",
                   help="an identifier of the customer (the whole profile holding it is erased)")
    p.add_argument("--by", help="who decides (default: $USER; required where none is set)")
    p.add_argument("--reason", help="why (a request's reference; kept in the log as written: no personal data)")
    p.add_argument("--json", action="store_true")
    data_dir(p)
    kafka(p)
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("changes", help="the identity changelog for downstream services, as JSON lines")
    p.add_argument("--from", dest="from_seq", type=int, default=0, metavar="SEQ",
                   help="the log position to start from (a change's seq; default 0, the beginning)")
    p.add_argument("--follow", action="store_true", help="keep waiting for new changes (until interrupted)")
    data_dir(p)
    kafka(p)
    p.set_defaults(func=cmd_changes)

    p = sub.add_parser("whatif", help="replay the log's inputs under new rules in a scratch directory and "
                                      "report what would change (the live data is not touched)")
    p.add_argument("--model", help="a match model (JSON, from `idres train`) to use with them")
    p.add_argument("--truth", help="a truth CSV (event_id,person_id): precision/recall of both")
    p.add_argument("--scratch", default="idres-whatif", help="where the new rules' data directory is written "
                                                              "(replaced on every run; default ./idres-whatif)")
    p.add_argument("--sample", type=int, default=5, help="changed profiles shown side by side (default 5)")
    p.add_argument("--json", action="store_true")
    data_dir(p)  # (its --config: the new rules; the live ones are $IDRES_CONFIG's)
    kafka(p)
    p.set_defaults(func=cmd_whatif)

    p = sub.add_parser("train", help="estimate a probabilistic match model (u and m) from channel events")
    p.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines file(s) of channel events; - for stdin")
    p.add_argument("--out", required=True, help="where to write the model (JSON)")
    p.add_argument("--pairs", type=int, default=1_000_000, help="random pairs sampled to estimate u")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, help="processes to compare pairs in (default: the usable cores, at most 4; "
                                            "each holds a copy of the records; the model is the same for any "
                                            "number)")
    p.add_argument("--version", help="a name for the model (default: derived from its parameters)")
    p.add_argument("--json", action="store_true", help="print the model and the training report as JSON")
    p.add_argument("--config", help="resolver rules as TOML (default: $IDRES_CONFIG or built-in rules)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="pairwise precision/recall/F1 against a truth CSV (event_id,person_id)")
    p.add_argument("--truth", required=True)
    data_dir(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("generate", help="write a synthetic multi-channel data set with ground truth")
    p.add_argument("--people", type=int, default=500)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True, help="events JSON-lines file")
    p.add_argument("--truth", required=True, help="truth CSV file")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("query", help="run SQL on a snapshot and print the rows (no duckdb CLI needed)")
    p.add_argument("snapshot", metavar="SNAPSHOT.duckdb")
    p.add_argument("sql", metavar="SQL")
    p.add_argument("--limit", type=int, default=100, help="rows to print at most (default 100; 0 for all)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="rows as JSON objects (as --format json)")
    shape.add_argument("--csv", action="store_true", help="rows as CSV with a header line (as --format csv)")
    shape.add_argument("--format", choices=QUERY_FORMATS,
                       help="csv, parquet or json: how rows are printed, or written with --out (default: a table "
                            "printed, or the format of --out's suffix)")
    p.add_argument("--out", metavar="FILE", help="write every row to FILE (.csv, .parquet or .json) instead")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("report", help="write the analyst report: one HTML file of plots and tables, no network needed")
    p.add_argument("snapshot", nargs="?", metavar="SNAPSHOT.duckdb",
                   help="a snapshot from `idres snapshot` (default: write one from --data-dir or --bootstrap)")
    p.add_argument("--out", required=True, help="the .html file to write")
    snapshot_source(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("schema", help="export the JSON Schemas of the input contract and the decision log")
    p.add_argument("--out", metavar="DIR", help="write one file per schema into DIR (default: print them all as one "
                                                "JSON object keyed by file name)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("serve", help="the lookup API over HTTP, following the decision log as it grows")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks a free one)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve without an API key even on a non-loopback address ($IDRES_API_KEY is ignored)")
    data_dir(p)
    kafka(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="generate a realistic data set, resolve it, snapshot it, score it")
    p.add_argument("--people", type=int, default=600, help="synthetic people (default 600)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dir", default="idres-demo", help="where to put the data (default ./idres-demo)")
    p.add_argument("--config", help="resolver rules as TOML")
    p.set_defaults(func=cmd_demo)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("idres")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed: python3 -m pip install -e .)"


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """A value as a text table shows it: control characters (a terminal escape in a name) written as escapes,
    so that data cannot move the cursor, change colours or break a row."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text) if _UNPRINTABLE.search(text) else text


# what to do next about a system error, by its errno name
_OS_NEXT = {
    "ENOSPC": "free space on that disk or write somewhere else, then run the command again",
    "EDQUOT": "free space within your disk quota or write somewhere else, then run the command again",
    "EROFS": "that file system is read-only: give a path on a writable one",
    "ENOTDIR": "a part of that path is a file, not a directory: give another path",
    "EISDIR": "that is a directory: give the path of a file",
    "EACCES": "check its permissions (and its directory's), or give another path",
    "EPERM": "check its permissions (and its directory's), or give another path",
    "ENOENT": "check that the path exists (its directory too)",
    "EEXIST": "remove it or give another path",
    "ENAMETOOLONG": "give a shorter path",
    "ELOOP": "the path goes round a loop of symbolic links: give another path",
    "EADDRINUSE": "another process listens there: give another --port, or stop that process",
    "EMFILE": "too many open files: raise the limit (ulimit -n) and run the command again",
    "EIO": "the disk reported an input/output error: check it, then run the command again",
}
_TEMPORARY = re.compile(r"^\.(idres-[a-z]+-.*|.+\.tmp(\.wal)?)$")


def os_error_line(exc: OSError) -> str:
    """A system error as one line: what failed, on which path (the directory, for a temporary file written on
    the way to the one asked for), and what to do next."""
    import errno as errnos

    name = errnos.errorcode.get(exc.errno or 0, "")
    path = exc.filename
    if path is not None:
        p = Path(str(path))
        if _TEMPORARY.match(p.name):
            path = f"writing in {p.parent}"
    what = exc.strerror or str(exc)
    where = f": {path}" if path is not None else ""
    home = _data_dir_holding(Path(str(exc.filename))) if exc.filename is not None and name in _DAMAGE else None
    if home is not None:  # (a file idres keeps there, not a path the user gave)
        return (f"{what}{where}: that entry of the data directory {home} is not as idres left it: restore the "
                "directory from a backup, or remove that entry if idres did not write it")
    return f"{what}{where}: {_OS_NEXT.get(name, 'check the path, the disk and its permissions, then run the command again')}"


_DAMAGE = ("EISDIR", "ENOTDIR", "ENOENT", "ELOOP")  # what a file of a data directory made otherwise fails with


def _data_dir_holding(path: Path) -> Optional[Path]:
    """The data directory ``path`` is one of the files of (its record, marker, checkpoint, key store or a log
    segment), or None."""
    from streams.embedded import FILE_ORDER_RUN
    from streams.keys import SqliteKeyStore
    from streams.log import CHECKPOINTS, is_segment_name

    if path.name in ("LOCK", FILE_ORDER_RUN, CHECKPOINTS[0], SqliteKeyStore.FILE) and (path.parent / "log").is_dir():
        return path.parent
    if path.parent.name == "log" and is_segment_name(path.name):
        return path.parent.parent
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`idres query ... | head`): stop quietly like any Unix tool, with the exit status
        # a shell gives a program ended by SIGPIPE; stdout goes to /dev/null so the exit flush cannot fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except IdresError as exc:
        print(f"idres: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("idres: interrupted; everything up to the last written batch is in the log", file=sys.stderr)
        return 130
    except OSError as exc:
        if os.environ.get("IDRES_DEBUG"):
            raise
        print(f"idres: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get("IDRES_DEBUG"):
            raise
        print(f"idres: internal error: {type(exc).__name__}: {exc} (set IDRES_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
