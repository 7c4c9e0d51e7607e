"""The analyst snapshot: the customer views written to one DuckDB file, atomically.

The file is built under a temporary name beside the target and renamed over it only when complete,
so a reader never sees a half-written snapshot. Tables (documented in the README):

profiles, identifiers, events, merges, splits, aliases, households, links, review_queue, bans,
rejected_events, contact_recognition, snapshot_info; then the metric views over them
(``projections.metrics``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import re
import shutil
import tempfile
import threading
from itertools import compress
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import duckdb
import orjson

from projections.customer import ACCOUNT_KEYS, CustomerViews, csat_score
from projections.households import household_rows
from projections.metrics import finish_metrics, promise
from projections.metrics.settings import currency_code, write_settings
from projections.storage import file_mode, private_file, remove_debris, replaceable
from resolver.errors import ConfigError, IdresError

SNAPSHOT_SCHEMA_VERSION = 6  # 3: rejected_events.reason is a category, its message in detail; 4: households;
# 5: bans; 6: contact_recognition and the metric views

GOLDEN_FIELDS = ("first_name", "last_name", "date_of_birth", "address", "postcode", "city")

TABLES: dict[str, dict[str, str]] = {
    "profiles": {
        "profile_id": "VARCHAR", "created_at": "TIMESTAMPTZ", "first_seen": "TIMESTAMPTZ",
        "last_seen": "TIMESTAMPTZ", "event_count": "INTEGER", "channel_count": "INTEGER",
        "channels": "VARCHAR[]", "identifier_count": "INTEGER", "emails": "VARCHAR[]", "phones": "VARCHAR[]",
        "loyalty_ids": "VARCHAR[]", "device_ids": "VARCHAR[]", "first_name": "VARCHAR", "last_name": "VARCHAR",
        "date_of_birth": "DATE", "address": "VARCHAR", "postcode": "VARCHAR", "city": "VARCHAR",
        "purchase_count": "INTEGER", "lifetime_value": "DOUBLE", "open_case_count": "INTEGER",
        "closed_case_count": "INTEGER", "csat_average": "DOUBLE", "merged_profile_count": "INTEGER",
    },
    "identifiers": {
        "id_type": "VARCHAR", "id_value": "VARCHAR", "profile_id": "VARCHAR", "status": "VARCHAR",
        "shared_reason": "VARCHAR",
    },
    "events": {
        "event_id": "VARCHAR", "profile_id": "VARCHAR", "channel": "VARCHAR", "event_type": "VARCHAR",
        "occurred_at": "TIMESTAMPTZ", "amount": "DOUBLE", "currency": "VARCHAR", "case_id": "VARCHAR",
        "csat": "INTEGER", "identifiers": "VARCHAR[]", "attributes": "JSON", "payload": "JSON",
    },
    "merges": {
        "survivor_id": "VARCHAR", "absorbed_id": "VARCHAR", "profile_id": "VARCHAR", "event_id": "VARCHAR",
        "occurred_at": "TIMESTAMPTZ", "via": "VARCHAR[]", "rule": "VARCHAR", "apart_now": "BOOLEAN",
    },
    "splits": {
        "profile_id": "VARCHAR", "part_profile_id": "VARCHAR", "event_id": "VARCHAR", "reason": "VARCHAR",
        "identifiers": "VARCHAR[]",
    },
    "aliases": {"alias_id": "VARCHAR", "profile_id": "VARCHAR"},
    "households": {"household_id": "VARCHAR", "profile_id": "VARCHAR", "members": "INTEGER", "via": "VARCHAR[]"},
    "links": {"identifier_a": "VARCHAR", "identifier_b": "VARCHAR", "profile_id": "VARCHAR", "event_id": "VARCHAR",
              "rule": "VARCHAR", "weight": "DOUBLE", "fields": "JSON"},
    "review_queue": {
        "review_id": "VARCHAR", "status": "VARCHAR", "event_id": "VARCHAR", "occurred_at": "TIMESTAMPTZ",
        "identifier": "VARCHAR", "other_identifier": "VARCHAR", "profile_id": "VARCHAR",
        "other_profile_id": "VARCHAR", "weight": "DOUBLE", "link_threshold": "DOUBLE",
        "review_threshold": "DOUBLE", "fields": "JSON", "model": "VARCHAR", "decision": "VARCHAR",
        "reviewer": "VARCHAR", "decided_at": "TIMESTAMPTZ", "note": "VARCHAR", "reason": "VARCHAR",
    },
    "bans": {
        "ban_id": "VARCHAR", "kind": "VARCHAR", "side_a": "VARCHAR[]", "side_b": "VARCHAR[]",
        "decided_by": "VARCHAR", "decided_at": "TIMESTAMPTZ", "note": "VARCHAR", "lifted_by": "VARCHAR", "lifted_at": "TIMESTAMPTZ",
    },
    "rejected_events": {
        "source": "VARCHAR", "position": "BIGINT", "event_id": "VARCHAR", "reason": "VARCHAR", "raw": "VARCHAR",
        "detail": "VARCHAR",
    },
    "contact_recognition": promise.COLUMNS,
    "snapshot_info": {"key": "VARCHAR", "value": "VARCHAR"},
}


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# the profiles' columns made in Python (``profile_rows``); the others are counted over the events table in DuckDB
# (``profiles_sql``): what every event of a profile counts for, which a loop in Python would pay for per event
PROFILE_BASE: dict[str, str] = {c: t for c, t in TABLES["profiles"].items() if c not in (
    "first_seen", "last_seen", "event_count", "channel_count", "channels", "purchase_count")}


def profiles_sql(views: CustomerViews) -> str:
    """The statement that makes the ``profiles`` table from ``_profile_base`` (``profile_rows``) and the events
    table: first and last seen (the ISO texts the views order by are of one width, so their least and greatest
    are the earliest and latest instants), events, channels and purchases, as ``CustomerViews.summary`` counts
    them."""
    kinds = ", ".join("'" + t.replace("'", "''") + "'" for t in views.config.purchase_types) or "NULL"
    counted = {  # (a profile with no event, an unmerge's part known by an identifier alone: counts of 0)
        "first_seen": "e.first_seen", "last_seen": "e.last_seen", "event_count": "coalesce(e.event_count, 0)",
        "channel_count": "coalesce(e.channel_count, 0)", "channels": "coalesce(e.channels, [])",
        "purchase_count": "coalesce(e.purchase_count, 0)",
    }
    select = ", ".join(f"{counted[c]} AS {c}" if c in counted else f"b.{c}" for c in TABLES["profiles"])
    return f"""CREATE TABLE profiles AS SELECT {select} FROM _profile_base b LEFT JOIN (
SELECT profile_id, min(occurred_at) AS first_seen, max(occurred_at) AS last_seen, count(*)::INTEGER AS event_count,
       count(DISTINCT channel)::INTEGER AS channel_count, list(DISTINCT channel ORDER BY channel) AS channels,
       (count(*) FILTER (WHERE event_type IN ({kinds})))::INTEGER AS purchase_count
FROM events WHERE profile_id IS NOT NULL GROUP BY profile_id) e ON e.profile_id = b.profile_id
ORDER BY b.profile_id"""


def profile_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    """Each profile's columns of ``PROFILE_BASE``, as the customer's answer gives them (``golden_record``,
    ``summary``): its lifetime value, cases and scores read from its events whose payloads may hold them
    (``ACCOUNT_KEYS``), found in one pass over the events, and its golden record from those with attributes."""
    merged_into: dict[str, int] = {}  # (the rows of the merges table into each profile not taken apart since: not
    for m in views.merges:            # the IDs a profile was renamed from when an older event came late, aliases too)
        pid = views.resolve(m["survivor_id"])
        if pid is not None:
            merged_into[pid] = merged_into.get(pid, 0) + sum(views.resolve(a) == pid for a in m["absorbed_ids"])
    ev_payload, ev_profile, ev_at, ev_id = views.ev_payload, views.ev_profile, views.ev_at, views.ev_id
    amount, case_id, csat = ACCOUNT_KEYS
    rich: dict[str, list[int]] = {}
    for i in compress(range(len(ev_payload)), ev_payload):  # (the events with a payload)
        raw = ev_payload[i]
        if amount in raw or case_id in raw or csat in raw:
            pid = ev_profile[i]
            if pid is not None:
                rich.setdefault(pid, []).append(i)
    golden = views.golden_values(GOLDEN_FIELDS)
    none: dict[str, Any] = {}
    for pid in sorted(views.profiles):
        prof = views.profiles[pid]
        ids = views.identifiers_of(prof)
        mine = rich.get(pid)
        if mine is None:  # (most profiles: nothing bought, no case, no score)
            ltv, cases, csat_average = 0.0, none, None
        else:
            if len(mine) > 1:
                mine.sort(key=lambda j: (ev_at[j], ev_id[j]))
            ltv, cases, csat_average = views.account(mine)
        closed = sum(1 for c in cases.values() if c["status"] == "closed")
        row = {
            "profile_id": pid, "created_at": prof.created_at,
            "identifier_count": sum(len(v) for v in ids.values()), "emails": ids.get("email", []),
            "phones": ids.get("phone", []), "loyalty_ids": ids.get("loyalty_id", []),
            "device_ids": ids.get("device_id", []), "lifetime_value": ltv, "open_case_count": len(cases) - closed,
            "closed_case_count": closed, "csat_average": csat_average,
            "merged_profile_count": merged_into.get(pid, 0),
        }
        values = golden.get(pid, none)
        for f in GOLDEN_FIELDS:
            row[f] = values.get(f)
        yield row


_PAYLOAD_COLUMNS = (*ACCOUNT_KEYS, '"currency"')  # (the payload keys the events' columns are read from)


EVENT_CHUNK = 4096  # events per line of the events table's file (a column's values as one JSON list each)
CHUNK_TEXT = 4 << 20  # ...fewer when their attributes' and payloads' texts hold more characters than this
# a line of columns longer than this is written as two (halving its rows, as often as it takes), which bounds what
# DuckDB's reader holds for one (its ``maximum_object_size`` is a file's longest line: ``write_snapshot``)
COLUMNS_LINE_BYTES = 2 << 20


def _lines(part: dict[str, list[Any]], limit: int) -> Iterator[bytes]:
    """``part`` (a dict of column -> list of values, the lists as long) as JSON lines of at most ``limit`` bytes
    each, but for a line of one row; the rows in order."""
    line = orjson.dumps(part, option=orjson.OPT_APPEND_NEWLINE)
    rows = _length(part)
    if len(line) <= limit or rows <= 1:
        yield line
        return
    del line  # (not held while the halves are written)
    half = rows // 2
    yield from _lines({c: v[:half] for c, v in part.items()}, limit)
    yield from _lines({c: v[half:] for c, v in part.items()}, limit)


def _length(part: dict[str, list[Any]]) -> int:
    """The rows of a chunk of columns (its lists are as long)."""
    return len(next(iter(part.values())))


def _spans(views: CustomerViews, chunk: int, limit: int) -> Iterator[tuple[int, int]]:
    """The events in spans of at most ``chunk``, halved while their attributes and payloads hold more than ``limit``
    characters between them (down to one event): large records make short lines, not one line to split later."""
    ev_attrs, ev_payload = views.ev_attrs, views.ev_payload
    for start in range(0, len(ev_attrs), chunk):
        todo = [(start, min(start + chunk, len(ev_attrs)))]
        while todo:
            a, b = todo.pop()
            text = sum(map(len, filter(None, ev_attrs[a:b]))) + sum(map(len, filter(None, ev_payload[a:b])))
            if text > limit and b - a > 1:
                middle = (a + b) // 2
                todo += [(middle, b), (a, middle)]  # (the first half next)
            else:
                yield a, b


ROWS_PER_FILE = 1 << 18  # rows of a table's file: a larger table is loaded a file at a time
MIN_OBJECT_SIZE = 1 << 20  # the longest line DuckDB's reader is told to expect, at the least


def _row_files(work: Path, table: str,
               rows: Iterable[dict[str, Any]] | Columns) -> Iterator[tuple[Path, int, int]]:
    """Writes ``rows`` as JSON lines into files of about ``ROWS_PER_FILE`` rows each (a chunk of columns is not
    split between files), giving each file once written, with its rows and the bytes of its longest line; none
    for no rows."""
    pieces: Iterator[tuple[Iterable[bytes], int]]  # (the lines of a row or a chunk of columns, and its rows)
    if isinstance(rows, Columns):
        pieces = ((_lines(part, COLUMNS_LINE_BYTES), _length(part)) for part in rows.chunks)
    else:
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        pieces = (((dumps(row, option=newline),), 1) for row in rows)
    for k, first in enumerate(pieces):
        path = work / f"{table}.{k}.jsonl"
        n = longest = 0
        with private_file(path, "wb", buffering=1 << 20) as fh:
            for lines, count in itertools.chain((first,), pieces):  # (the pieces after it, up to a file's rows)
                for line in lines:
                    fh.write(line)
                    longest = max(longest, len(line))
                n += count
                if n >= ROWS_PER_FILE:
                    break
        yield path, n, longest


class Columns:
    """A table's rows given a column at a time: each chunk is a dict of column -> list of values (every list
    as long), written as one line and unnested by DuckDB, so the values are serialized by orjson a list at a
    time instead of a dict per row. ``micros``: the columns of times given as microseconds since 1970 (the
    views' form, ``projections.times``), made TIMESTAMPTZ by DuckDB."""

    def __init__(self, chunks: Iterable[dict[str, list[Any]]], micros: Iterable[str] = ()) -> None:
        self.chunks = chunks
        self.micros = frozenset(micros)


def event_columns(views: CustomerViews) -> Columns:
    return Columns(_event_chunks(views, EVENT_CHUNK), micros=("occurred_at",))


def _event_chunks(views: CustomerViews, chunk: int) -> Iterable[dict[str, list[Any]]]:
    """The events' columns, ``chunk`` events at a time. The views keep an event's attributes and payload as the
    JSON text orjson wrote; the columns carry that text as it is (``orjson.Fragment``), and a payload is read
    only when it holds the key of a column of its own (orjson writes a key as it is, so a text without the
    key's text has no such key)."""
    keys = views.node_keys
    ev_nodes, ev_attrs, ev_payload = views.ev_nodes, views.ev_attrs, views.ev_payload
    loads, fragment = orjson.loads, orjson.Fragment
    amount_key, case_key, csat_key, currency_key = _PAYLOAD_COLUMNS
    empty: dict[str, Any] = {}
    for start, end in _spans(views, chunk, CHUNK_TEXT):
        n = end - start
        amounts: list[Any] = [None] * n
        currencies: list[Any] = [None] * n
        cases: list[Any] = [None] * n
        scores: list[Any] = [None] * n
        payloads = ev_payload[start:end]
        for k in compress(range(n), payloads):  # (the events with a payload)
            raw = payloads[k]
            if amount_key in raw or case_key in raw or csat_key in raw or currency_key in raw:
                payload = loads(raw)
                case_id, currency = payload.get("case_id"), payload.get("currency")
                amounts[k], scores[k] = _num(payload.get("amount")), csat_score(payload.get("csat"))
                currencies[k] = currency_code(currency)  # (a code in any case is the one the rates name)
                cases[k] = None if case_id is None else str(case_id)
        yield {
            "event_id": views.ev_id[start:end], "profile_id": views.ev_profile[start:end],
            "channel": views.ev_channel[start:end], "event_type": views.ev_type[start:end],
            "occurred_at": views.ev_at[start:end].tolist(), "amount": amounts, "currency": currencies, "case_id": cases,
            "csat": scores, "identifiers": ev_nodes.mapped(start, end, keys.__getitem__),
            "attributes": [fragment(a) if a else empty for a in ev_attrs[start:end]],
            "payload": [fragment(raw) if raw else empty for raw in payloads],
        }


def identifier_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    for idx, key in enumerate(views.node_keys):
        if key not in views.node_index:
            continue  # (erased)
        t, _, v = key.partition(":")
        shared = views.shared.get(idx)
        yield {"id_type": t, "id_value": v, "profile_id": views.node_profile[idx],
               "status": "shared" if shared else "linked", "shared_reason": shared["reason"] if shared else None}


def merge_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    """Every merge, as it happened; ``apart_now``: the absorbed profile is not the survivor's now (an unmerge or a
    split took them apart since)."""
    for m in views.merges:
        now = views.resolve(m["survivor_id"])
        for absorbed in m["absorbed_ids"]:
            yield {"survivor_id": m["survivor_id"], "absorbed_id": absorbed, "profile_id": now,
                   "event_id": m["event_id"], "occurred_at": m["occurred_at"], "via": m["via"], "rule": m["rule"],
                   "apart_now": views.resolve(absorbed) != now}


def split_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    for s in views.splits:
        for part in s["parts"]:
            yield {"profile_id": s["profile_id"], "part_profile_id": part["profile_id"], "event_id": s["event_id"],
                   "reason": s["reason"], "identifiers": part["nodes"]}


def link_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    """Evidence edges: identifiers seen together (rule ``seen_together``), and links made on attribute
    evidence (``probable_match``, with the weight and each field's contribution, or ``review_accepted``)."""
    keys = views.node_keys
    for a in sorted(views.links):
        for b, event_id in sorted(views.links[a].items()):
            if b > a:
                yield {"identifier_a": keys[a], "identifier_b": keys[b], "profile_id": views.node_profile[a],
                       "event_id": event_id, "rule": "seen_together", "weight": None, "fields": None}
    for a in sorted(views.fuzzy_links):
        for b, d in sorted(views.fuzzy_links[a].items()):
            if b > a:
                yield {"identifier_a": keys[a], "identifier_b": keys[b], "profile_id": views.node_profile[a],
                       "event_id": d["event_id"], "rule": d["rule"], "weight": d.get("weight"),
                       "fields": d.get("fields") or None}


def review_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    columns = TABLES["review_queue"]
    for row in views.review_queue(include_decided=True):
        yield {c: row.get(c) for c in columns}


def ban_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    for b in views.bans_of(lifted=True):
        lifted = b.get("lifted") or {}
        yield {"ban_id": b["ban_id"], "kind": b["kind"], "side_a": b["sides"][0], "side_b": b["sides"][1],
               "decided_by": b["by"], "decided_at": b["decided_at"], "note": b.get("note"),
               "lifted_by": lifted.get("by"), "lifted_at": lifted.get("decided_at")}


def rejected_rows(views: CustomerViews) -> Iterable[dict[str, Any]]:
    """``reason`` is the category (``GROUP BY reason`` gives a few rows), ``detail`` the message; a record
    kept before rejections had a category (its reason was the message) gets one derived from it."""
    from schemas.channel import reason_category

    for r in views.rejected:
        reason = r["reason"]
        detail = r.get("detail")
        if detail is None:
            detail, reason = reason, reason_category(reason)
        yield {"source": r["source"]["name"], "position": r["source"]["position"], "event_id": r.get("event_id"),
               "reason": reason, "raw": r["raw"], "detail": detail}


def write_snapshot(views: CustomerViews, out: str | Path, info: Optional[dict[str, Any]] = None,
                   progress: Optional[Callable[[str], None]] = None, predict: Optional[bool] = None,
                   let_go: Optional[Callable[[], None]] = None,
                   still_current: Optional[Callable[[], None]] = None,
                   weak_types: Optional[frozenset[str]] = None) -> dict[str, int]:
    """Writes every table and the metric views to ``out`` atomically; returns the row count per table.
    ``predict``: fit the purchase models for the predicted customer value (when their library is installed);
    by default unless ``$IDRES_PREDICT`` is 0. ``let_go``: called once nothing more is read of the views (the
    metric views and the purchase models read the tables), for a caller to drop its own reference to them.
    ``still_current``: called once the file is written, before it takes the place of ``out``: raises to leave it
    unwritten (an erasure recorded meanwhile, which the views it was made of still hold). ``weak_types``: the
    device-like identifier types of the rules in use, for the households (default: the built-in rules')."""
    if predict is None:
        raw = os.environ.get("IDRES_PREDICT", "").strip().lower() or "1"
        if raw not in ("0", "false", "no", "off", "1", "true", "yes", "on"):
            raise ConfigError(f"IDRES_PREDICT={raw!r}: expected 1 or 0 (true/false, yes/no, on/off)")
        predict = raw in ("1", "true", "yes", "on")
    memory = snapshot_memory()
    out = Path(out)
    if out.is_dir():
        raise IdresError(f"snapshot output {out} is a directory: give a file path, e.g. {out / 'customers.duckdb'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise IdresError(f"cannot write the snapshot {out}: {out.parent} is a file, not a directory")
    replaceable(out, "DuckDB snapshot", (8, b"DUCK"))  # (another file there is not overwritten)
    out.parent.mkdir(parents=True, exist_ok=True)
    # what killed snapshot runs left next to this one (their writers are gone): temporary databases,
    # their write-ahead logs, and directories of plain-text rows
    remove_debris(out.parent, re.compile(rf"\.{re.escape(out.name)}\.(?P<pid>\d+)\.tmp(\.wal)?"))
    remove_debris(out.parent, re.compile(r"\.idres-snapshot-((?P<pid>\d+)-)?.+"))
    tmp_db = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    work = Path(tempfile.mkdtemp(prefix=f".idres-snapshot-{os.getpid()}-", dir=out.parent))
    meta = {"schema_version": SNAPSHOT_SCHEMA_VERSION, "log_seq": views.seq, **(info or {})}
    # (the events first: the profiles are finished in DuckDB over them while the rows of the tables after are made)
    sources: dict[str, Iterable[dict[str, Any]] | Columns] = {
        "events": event_columns(views),
        "profiles": profile_rows(views),
        "identifiers": identifier_rows(views),
        "merges": merge_rows(views),
        "splits": split_rows(views),
        "aliases": ({"alias_id": a, "profile_id": views.resolve(a)} for a in sorted(views.aliases)),
        "households": household_rows(views, weak_types),
        "links": link_rows(views),
        "review_queue": review_rows(views),
        "bans": ban_rows(views),
        "rejected_events": rejected_rows(views),
        "contact_recognition": Columns(promise.recognition_columns(views), micros=("occurred_at",)),
        "snapshot_info": ({"key": k, "value": str(v)} for k, v in meta.items()),
    }
    counts: dict[str, int] = {}
    try:
        if tmp_db.exists():
            tmp_db.unlink()
        con = Bounded(duckdb.connect(str(tmp_db)), memory, work / "spill")
        os.chmod(tmp_db, file_mode())  # (it holds personal data: created empty, made private at once)
        try:
            with refused_for_memory("snapshot", memory):
                loader = _Loader(con)
                try:
                    for table, rows in sources.items():
                        if progress is not None:
                            progress(table)
                        by_column = isinstance(rows, Columns)
                        # (the profiles' rows are the columns made in Python: the rest are counted once the events
                        # are in)
                        name, columns = (("_profile_base", PROFILE_BASE) if table == "profiles"
                                         else (table, TABLES[table]))
                        if by_column:  # (a line's lists, unnested side by side: the rows in their order)
                            times = rows.micros  # type: ignore[union-attr]
                            cols_sql = ", ".join(f"'{c}': '{'BIGINT' if c in times else t}[]'"
                                                 for c, t in columns.items())
                            select = ", ".join(f"timezone('UTC', make_timestamp(UNNEST(\"{c}\"))) AS \"{c}\""
                                               if c in times else f'UNNEST("{c}") AS "{c}"' for c in columns)
                        else:
                            cols_sql = ", ".join(f"'{c}': '{t}'" for c, t in columns.items())
                            select = ", ".join(f'"{c}"' for c in columns)
                        n = 0
                        for path, rows_in, longest in _row_files(work, table, rows):
                            # (a large table in several files, each loaded by a statement of its own: DuckDB holds one
                            # file's rows at a time, not the whole table's, before it writes them to the database. Its
                            # reader's buffers are a few times the longest line it may meet, so that is the file's own.)
                            source = (f"SELECT {select} FROM read_json(?, format='newline_delimited', "
                                      f"columns={{{cols_sql}}}, "
                                      f"maximum_object_size={max(longest + 1, MIN_OBJECT_SIZE)})")
                            loader.load(f"INSERT INTO {name} {source}" if n else f"CREATE TABLE {name} AS {source}",
                                        path)
                            n += rows_in
                        counts[table] = n
                        if not n:
                            loader.load(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
                        if table == "profiles":
                            loader.load(profiles_sql(views))
                            loader.load("DROP TABLE _profile_base")
                except BaseException:
                    loader.close(quiet=True)  # (the error that stopped making rows is the one to report)
                    raise
                loader.close()
                currency = write_settings(con, views)
                if let_go is not None:
                    views = sources = None  # type: ignore[assignment]  (the rows' sources: the caller's reference next)
                    let_go()
                finish_metrics(con, currency, progress, predict=predict)
                con.execute("CHECKPOINT")
        finally:
            con.close()
        if still_current is not None:
            still_current()
        os.replace(tmp_db, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for leftover in (tmp_db, tmp_db.with_name(tmp_db.name + ".wal")):
            if leftover.exists():
                leftover.unlink()
    return counts


_MEMORY = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def snapshot_memory() -> Optional[str]:
    """``$IDRES_SNAPSHOT_MEMORY``: how much memory DuckDB may use while a snapshot is written (its
    ``memory_limit``: ``512MB``, ``2GB``); None when not set (``Bounded``). Beyond it DuckDB writes to disk what it
    can; a snapshot that needs more stops, saying so."""
    raw = os.environ.get("IDRES_SNAPSHOT_MEMORY", "").strip()
    if not raw:
        return None
    size = _MEMORY.fullmatch(raw)
    if not size or float(raw[:size.start(2)]) * _UNIT[size.group(2).upper()] > MAX_MEMORY:
        # (past about 2**63 bytes DuckDB's own parser fails, inside the snapshot)
        raise ConfigError(f"IDRES_SNAPSHOT_MEMORY={raw!r}: expected a size such as 512MB or 2GB, at most 1024TB")
    return raw


_UNIT = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
MAX_MEMORY = 1024e12  # bytes IDRES_SNAPSHOT_MEMORY may give DuckDB at most


DEFAULT_MEMORY = "256MB"  # DuckDB's memory while a snapshot is written, unless a statement needs more (``Bounded``)


@contextlib.contextmanager
def refused_for_memory(what: str, memory: Optional[str]) -> Iterator[None]:
    """DuckDB out of memory under ``IDRES_SNAPSHOT_MEMORY`` (``memory``), as one line that says what to do; without
    it, as it is."""
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        if memory is None:
            raise
        raise IdresError(f"the {what} needs more memory than IDRES_SNAPSHOT_MEMORY={memory} lets DuckDB use "
                         f"({str(exc).splitlines()[0]}): raise it, or unset it") from None


class Bounded:
    """A snapshot's DuckDB connection, its memory bounded: to ``IDRES_SNAPSHOT_MEMORY`` when set (a statement that
    needs more fails), else to ``default`` (``DEFAULT_MEMORY``), and a statement (``execute``) that needs more is run
    again under DuckDB's own bound, most of the machine's, kept for the rest of the snapshot (a statement that failed
    changed nothing; not after ``interrupt``). Unbounded, DuckDB keeps every table it wrote in memory as well as on
    disk. What DuckDB writes to disk beyond the bound goes to ``spill``, a private directory (it holds personal
    data; DuckDB's default is a directory beside the database, made under the umask)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, memory: Optional[str], spill: Path,
                 default: Optional[str] = None) -> None:
        self._con = con
        self._strict = memory is not None
        self._interrupted = False
        try:
            con.execute(f"SET memory_limit = '{memory or default or DEFAULT_MEMORY}'")
            con.execute(f"SET temp_directory = '{_quoted(str(spill))}'")
        except BaseException:
            con.close()
            raise

    def execute(self, sql: str, parameters: Any = None) -> duckdb.DuckDBPyConnection:
        try:
            return self._con.execute(sql, parameters)
        except duckdb.OutOfMemoryException:
            if self._strict or self._interrupted:
                raise
            self._strict = True
            self._con.execute("RESET memory_limit")
        return self._con.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any = None) -> duckdb.DuckDBPyConnection:
        return self._con.executemany(sql, parameters)  # (not run again: rows before a failure may be in)

    def interrupt(self) -> None:
        self._interrupted = True
        self._con.interrupt()

    def __getattr__(self, name: str) -> Any:  # (close, register, ...)
        return getattr(self._con, name)

    def __enter__(self) -> "Bounded":
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def _quoted(text: str) -> str:
    """``text`` inside a single-quoted SQL string."""
    return text.replace("'", "''")


class _Loader:
    """Runs the statements that load the tables' row files, in order, on a thread of its own, while the next
    table's rows are made: DuckDB works without the interpreter's lock, so on two cores the two overlap.
    ``close`` waits for them and raises the first error (after which nothing more is run); ``close(quiet=True)``
    (the snapshot failed elsewhere) stops the statement under way and runs no more. Each file is removed once
    read, or not."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        # (unbounded: the rows of the tables after the events, the longest to load, are made meanwhile, and their
        # files wait on disk; 2.5 s sooner at 1.35 million events than with at most two waiting)
        self._jobs: queue.Queue = queue.Queue()
        self._error: Optional[BaseException] = None
        self._stopping = False
        # (waited on instead of the thread's join: a join that Ctrl-C interrupted may return at once after)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idres-snapshot-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._take()
        finally:
            self._done.set()

    def _take(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            sql, path = job
            try:
                if self._error is None and not self._stopping:
                    self._con.execute(sql, [str(path)] if path is not None else None)
            except BaseException as exc:  # (raised by ``close``, in the thread that writes the snapshot)
                self._failed(exc)
            finally:
                if path is not None:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as exc:
                        self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def load(self, sql: str, path: Optional[Path] = None) -> None:
        """Runs ``sql`` (with ``path``, its one parameter) after the statements before it."""
        if self._error is not None:
            raise self._error
        self._jobs.put((sql, path))

    def close(self, quiet: bool = False) -> None:
        """Waits for the statements given; raises the first one's error unless ``quiet``, which stops them
        instead. Interrupted while it waits (Ctrl-C), it stops them too before the interruption goes on: the
        connection is not to be closed under a statement."""
        self._jobs.put(None)
        if quiet:
            self._stop()
        try:
            self._done.wait()
        except BaseException:
            self._stop()
            raise
        self._thread.join()  # (it has ended its work: this returns at once)
        if self._error is not None and not quiet:
            raise self._error

    def _stop(self) -> None:
        self._stopping = True
        self._con.interrupt()  # (the statement under way, if any, ends with an error, which is not raised then)
        self._done.wait()
        self._thread.join()
