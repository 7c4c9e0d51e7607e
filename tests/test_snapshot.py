"""The analyst snapshot is written atomically: a reader never sees a half-written file."""

import math
import json
import threading
import time
from pathlib import Path
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import projections.snapshot as snapshot
from schemas.channel import MAX_AMOUNT
from tests.resolver_helpers import Run, ev


def _views():
    return Run().feed([
        ev("1", 0, channel="web", email="a@mailbox.org", device_id="d1"),
        ev("2", 1, channel="store", event_type="store_purchase", email="a@mailbox.org", loyalty_id="L1",
           payload={"amount": 12.5}),
        ev("3", 2, channel="call_center", phone="4155550100", attrs={"first_name": "Bo"}),
    ]).views


def test_failed_snapshot_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    out = tmp_path / "customers.duckdb"
    counts = snapshot.write_snapshot(_views(), out)
    assert counts["events"] == 3 and counts["profiles"] == 2
    before = out.read_bytes()

    def broken_columns(views):
        def chunks():
            yield {"event_id": ["x"]}
            raise RuntimeError("disk full")
        return snapshot.Columns(chunks())

    monkeypatch.setattr(snapshot, "event_columns", broken_columns)
    with pytest.raises(RuntimeError, match="disk full"):
        snapshot.write_snapshot(_views(), out)
    assert not [t for t in threading.enumerate() if t.name == "idres-snapshot-load"]  # (the loader was stopped)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.duckdb"]  # no temporary files left
    con = duckdb.connect(str(out), read_only=True)
    assert con.execute("SELECT sum(lifetime_value) FROM profiles").fetchone()[0] == 12.5


@pytest.mark.parametrize("table", ["profiles", "snapshot_info"])  # (the first table and the last)
def test_a_table_duckdb_cannot_load_fails_the_snapshot_and_leaves_the_previous_one_intact(tmp_path, monkeypatch,
                                                                                          table):
    # (tables are loaded on a thread of their own while the next table's rows are made: its error must
    # still stop the snapshot, name the problem, and leave nothing behind)
    out = tmp_path / "customers.duckdb"
    snapshot.write_snapshot(_views(), out, info={"note": "words"})
    before = out.read_bytes()
    if table == "profiles":
        monkeypatch.setattr(snapshot, "profile_rows", lambda views: [{"profile_id": "p", "created_at": "never"}])
    else:  # (its values as numbers: the log's position is one, the note is not)
        monkeypatch.setitem(snapshot.TABLES, "snapshot_info", {"key": "VARCHAR", "value": "BIGINT"})
    with pytest.raises(duckdb.Error, match="never" if table == "profiles" else "words"):
        snapshot.write_snapshot(_views(), out, info={"note": "words"})
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.duckdb"]  # no temporary files left


def test_empty_views_give_empty_tables(tmp_path):
    out = tmp_path / "empty.duckdb"
    counts = snapshot.write_snapshot(Run().views, out)
    assert counts["events"] == 0
    con = duckdb.connect(str(out), read_only=True)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    from projections import metrics

    assert {r[0] for r in con.execute("SHOW TABLES").fetchall()} == (
        set(snapshot.TABLES) | set(metrics.TABLES) | {v.name for v in metrics.VIEWS})


def test_refunds_that_undo_the_purchases_leave_a_lifetime_value_of_zero_not_minus_zero(tmp_path):
    # (0.3 - 0.1 - 0.2 is -2.8e-17 in floating point, which rounds to -0.0: an analyst would see "-0.0")
    views = Run().feed([
        ev("1", 0, channel="store", event_type="purchase", email="a@mailbox.org", payload={"amount": 0.3}),
        ev("2", 1, channel="store", event_type="refund", email="a@mailbox.org", payload={"amount": 0.1}),
        ev("3", 2, channel="store", event_type="refund", email="a@mailbox.org", payload={"amount": 0.2}),
    ]).views
    (prof,) = [p for p in views.profiles.values() if p.events]
    assert str(views.summary(prof)["lifetime_value"]) == "0.0"
    out = tmp_path / "customers.duckdb"
    snapshot.write_snapshot(views, out)
    con = duckdb.connect(str(out), read_only=True)
    assert [str(v) for v in con.execute("SELECT lifetime_value FROM profiles").fetchone()] == ["0.0"]
    assert [str(v) for v in con.execute("SELECT net_revenue, lifetime_value FROM customer_value").fetchone()] == [
        "0.0", "0.0"]


def test_the_loader_stopped_after_a_failure_elsewhere_ends_the_load_under_way_and_runs_no_more(tmp_path):
    # (the snapshot failed while making rows, or Ctrl-C: the tables queued are not loaded into a database
    # about to be thrown away, and the connection is not closed under a statement)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rows = tmp_path / "later.jsonl"
    rows.write_text('{"x": 1}\n')
    loader = snapshot._Loader(con)
    # (about a minute here: a loader that waited for it fails the test below, rather than hanging the suite)
    loader.load("CREATE TABLE slow AS SELECT count(*) AS n FROM range(30000000000) t(i) WHERE i % 7 = 3")
    loader.load("CREATE TABLE later AS SELECT * FROM read_json(?)", rows)
    time.sleep(0.3)
    started = time.perf_counter()
    loader.close(quiet=True)
    assert time.perf_counter() - started < 5
    assert not [t for t in threading.enumerate() if t.name == "idres-snapshot-load"]
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0] == 0
    assert not rows.exists()
    con.close()


_TEXT = st.text(st.sampled_from('abc"\\ :,{}amountcurrencycase_idcsat'), max_size=12)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False,
                                                                                   width=64), _TEXT)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # (a whole snapshot each)
@given(payload=st.dictionaries(st.one_of(st.sampled_from(["amount", "currency", "case_id", "csat"]), _TEXT), _VALUE,
                               max_size=5),
       attrs=st.sampled_from([{}, {"first_name": "Bo"}, {"first_name": 'say "amount"'}]))
def test_an_events_row_gives_its_payload_as_sent_and_the_columns_read_from_it(tmp_path, payload, attrs):
    # (the rows carry the payload's text as the views keep it, and read a payload only when its text holds
    # a column's key: any payload, keys and values made of those texts among them, gives what it holds)
    amount = payload.get("amount")
    try:
        given = float(amount) if isinstance(amount, (int, float, str)) and not isinstance(amount, bool) else None
    except ValueError:
        given = None
    assume(given is None or (math.isfinite(given) and abs(given) <= MAX_AMOUNT))  # (else rejected: a test of its own)
    out = tmp_path / "s.duckdb"
    views = Run().feed([ev("1", 0, email="a@mailbox.org", payload=payload, attrs=attrs)]).views
    snapshot.write_snapshot(views, out, predict=False)
    con = duckdb.connect(str(out), read_only=True)
    row = con.execute("SELECT amount, currency, case_id, csat, CAST(payload AS VARCHAR), "
                      "CAST(attributes AS VARCHAR) FROM events").fetchone()
    con.close()
    kept = views.payload(0)  # (the payload as the views keep it: the event's, after validation)
    assert json.loads(row[4]) == kept and json.loads(row[5]) == views.attributes(0)
    amount = kept.get("amount")
    number = amount if isinstance(amount, (int, float)) and not isinstance(amount, bool) else None
    if isinstance(amount, str):
        try:
            number = float(amount)
        except ValueError:
            number = None
    assert row[0] == (None if number is None else float(number))
    currency = kept.get("currency")  # (README, events: upper case, as the rates name it)
    assert row[1] == ((currency.strip().upper() or None) if isinstance(currency, str) else None)
    assert row[2] == (None if kept.get("case_id") is None else str(kept["case_id"]))
    csat = kept.get("csat")
    assert row[3] == _score_or_none(csat)


def _score_or_none(value):  # (README, payload: csat from 1 to 5, a whole number, as a number or as text)
    if isinstance(value, bool) or value is None:  # (true is not a score of 1)
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(number) if number.is_integer() and 1 <= number <= 5 else None


def test_a_score_beyond_the_csat_column_is_no_score_and_does_not_fail_the_snapshot(tmp_path):
    # (csat is an INTEGER column: one record's 3e9 made DuckDB refuse the whole events table)
    out = tmp_path / "s.duckdb"
    views = Run().feed([ev("1", 0, email="a@mailbox.org", payload={"csat": 3_000_000_000}),
                        ev("2", 1, email="a@mailbox.org", payload={"csat": 4})]).views
    counts = snapshot.write_snapshot(views, out, predict=False)
    con = duckdb.connect(str(out), read_only=True)
    assert counts["events"] == 2
    assert con.execute("SELECT event_id, csat FROM events ORDER BY event_id").fetchall() == [("1", None), ("2", 4)]


def test_each_profiles_row_is_the_customer_s_answer_after_merges_splits_and_an_erasure(tmp_path):
    """The profiles table counts events, channels, first and last seen and purchases over the events table,
    and reads value, cases, scores and the golden record from the events that hold them: every row is what
    the customer's answer (``summary``, ``golden_record``, ``identifiers_of``) says, on generated customers
    who merge, split, buy, refund, open and close cases, and after one of them is erased."""
    from streams.embedded import EmbeddedEngine
    from streams.synthetic import SyntheticConfig, write_dataset

    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=300, seed=9))
    with EmbeddedEngine(tmp_path / "data") as engine:
        engine.ingest_file(events)
        views = engine.views
        victim = next(p for p in sorted(views.profiles) if views.identifiers_of(views.profiles[p]).get("email"))
        engine.erase([("email", views.identifiers_of(views.profiles[victim])["email"][0])], "dpo")
        views = engine.views
        out = tmp_path / "s.duckdb"
        counts = snapshot.write_snapshot(views, out, predict=False)
    expected = {}
    for pid, prof in views.profiles.items():
        s, g, ids = views.summary(prof), views.golden_record(prof), views.identifiers_of(prof)
        expected[pid] = {
            "first_seen": s["first_seen"], "last_seen": s["last_seen"], "event_count": s["event_count"],
            "channels": list(s["channels"]), "channel_count": len(s["channels"]), "purchase_count": s["purchase_count"],
            "open_case_count": len(s["open_cases"]),  # (lifetime_value: customer_value's, in the report currency)
            "closed_case_count": s["closed_case_count"], "csat_average": s["csat_average"],
            "emails": ids.get("email", []), "phones": ids.get("phone", []), "loyalty_ids": ids.get("loyalty_id", []),
            "device_ids": ids.get("device_id", []), "identifier_count": sum(len(v) for v in ids.values()),
            **{f: (g[f]["value"] if f in g else None) for f in snapshot.GOLDEN_FIELDS}}
    assert victim not in expected and counts["profiles"] == len(expected)
    con = duckdb.connect(str(out), read_only=True)
    declared = duckdb.connect()  # (the column types the profiles table is documented with)
    declared.execute(f"CREATE TABLE profiles ({', '.join(f'{c} {t}' for c, t in snapshot.TABLES['profiles'].items())})")
    types = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'profiles' " \
            "ORDER BY ordinal_position"
    assert con.execute(types).fetchall() == declared.execute(types).fetchall()
    cur = con.execute("SELECT *, strftime(first_seen AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS f, "
                      "strftime(last_seen AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS l, "
                      "strftime(date_of_birth, '%Y-%m-%d') AS dob FROM profiles")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    assert [r["profile_id"] for r in rows] == sorted(expected)  # (in profile order, as before)
    kinds = {"cases": 0, "purchases": 0, "several channels": 0}
    for r in rows:
        want = expected[r["profile_id"]]
        got = {**{k: r[k] for k in want}, "first_seen": r["f"], "last_seen": r["l"], "date_of_birth": r["dob"]}
        assert got == want, r["profile_id"]
        kinds["cases"] += bool(r["open_case_count"] or r["closed_case_count"])
        kinds["purchases"] += bool(r["purchase_count"])
        kinds["several channels"] += r["channel_count"] > 1
    assert all(n >= 10 for n in kinds.values()), kinds  # (the generated customers do all of it)


def test_views_folded_from_the_log_share_one_string_per_channel_and_event_type(tmp_path):
    """Folded from the log read back (a replay, the lookup API, the Kafka project role), each event's channel
    and type are one shared string per value, as when the views are folded while ingesting: a copy per event
    cost about 100 MB per million events."""
    from streams.embedded import EmbeddedEngine
    from streams.synthetic import SyntheticConfig, write_dataset

    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=100, seed=4))
    with EmbeddedEngine(tmp_path / "data") as engine:
        engine.ingest_file(events)
    with EmbeddedEngine(tmp_path / "data", use_checkpoint=False, writer=False) as engine:
        views = engine.views
        assert len(views.ev_channel) > 500
        for column in (views.ev_channel, views.ev_type):
            assert len({id(v) for v in column}) == len(set(column)) < 20


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=30), limit=st.integers(1, 400))
def test_a_chunk_of_columns_is_written_in_lines_within_the_limit_with_every_row_once_in_order(sizes, limit):
    # (what DuckDB's reader holds for a line is bounded: a longer line is split, down to one row if need be)
    part = {"event_id": [str(i) for i in range(len(sizes))], "text": ["é" * n for n in sizes],
            "ids": [["a" * (n % 7)] * (n % 3) for n in sizes]}
    lines = list(snapshot._lines(part, limit))
    got = {c: [] for c in part}
    for line in lines:
        assert line.endswith(b"\n")
        decoded = json.loads(line)
        assert len(line) <= limit or len(decoded["event_id"]) == 1
        for c in part:
            got[c] += decoded[c]
    assert got == part


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=30), chunk=st.integers(1, 6), limit=st.integers(1, 60))
def test_event_spans_cover_every_event_once_in_order_within_the_limits(sizes, chunk, limit):
    # (events are cut into spans of at most ``chunk``, with no more attribute and payload text than the limit unless
    # the span is one event: a chunk of large records is not serialized whole and split afterwards)
    class Views:
        ev_attrs = ["a" * n if n % 3 else None for n in sizes]
        ev_payload = ["p" * (n // 2) or None for n in sizes]

    spans = list(snapshot._spans(Views, chunk, limit))
    assert [i for a, b in spans for i in range(a, b)] == list(range(len(sizes)))
    for a, b in spans:
        text = sum(len(t) for t in Views.ev_attrs[a:b] + Views.ev_payload[a:b] if t)
        assert 1 <= b - a <= chunk and (text <= limit or b - a == 1)


@pytest.mark.parametrize("cut", ["by text before", "by bytes after"])
def test_events_split_over_many_lines_load_as_one_table_in_order(tmp_path, monkeypatch, cut):
    monkeypatch.setattr(snapshot, "EVENT_CHUNK", 3)
    # (the long payloads take a line each: cut by their text before a line is made, or the line halved after)
    monkeypatch.setattr(snapshot, "COLUMNS_LINE_BYTES", 560 if cut == "by bytes after" else 10**9)
    monkeypatch.setattr(snapshot, "CHUNK_TEXT", 40 if cut == "by text before" else 10**9)
    events = [ev(str(i), i, email=f"c{i % 4}@mailbox.org", attrs={"first_name": "Bo"} if i % 5 == 0 else None,
                 payload={"note": "x" * (i * 7 % 50), "amount": i}) for i in range(23)]
    views = Run().feed(events).views
    out = tmp_path / "s.duckdb"
    written = []
    lines = snapshot._lines
    monkeypatch.setattr(snapshot, "_lines", lambda part, limit: written.append(list(lines(part, limit))) or written[-1])
    assert snapshot.write_snapshot(views, out, predict=False)["events"] == 23
    assert sum(len(part) for part in written) > 23 // 3 + 1  # (some chunks of three were split)
    con = duckdb.connect(str(out), read_only=True)
    rows = con.execute("SELECT event_id, profile_id, amount, identifiers, CAST(payload AS VARCHAR), "
                       "CAST(attributes AS VARCHAR), strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') "
                       "FROM events").fetchall()
    con.close()
    assert [r[0] for r in rows] == views.ev_id  # (in the views' order, as one table)
    for i, (event_id, profile_id, amount, identifiers, payload, attributes, at) in enumerate(rows):
        assert profile_id == views.ev_profile[i] and amount == float(event_id)
        assert at == events[int(event_id)].occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert identifiers == [views.node_keys[n] for n in views.ev_nodes[i]]
        assert json.loads(payload) == views.payload(i) and json.loads(attributes) == views.attributes(i)


def _text(us):
    """The log's text of a time the views keep as microseconds since 1970."""
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _recognition_expected(views):
    """contact_recognition as its definition reads, from the views: per contact on an assisted channel (on its
    customer's profile today), each other channel the customer used before it (the latest such event, in the order
    events are decided: time, the ID's checksum, the ID) or that the profile showed at that moment; ordered by
    profile, contact and channel."""
    from projections.customer import canonical

    by_profile = {}
    for k, pid in enumerate(views.ev_profile):
        if pid is not None:
            by_profile.setdefault(pid, []).append(k)
    place = lambda k: canonical(views.ev_at[k], views.ev_id[k])  # noqa: E731
    rows = []
    for j, shown_of in views.contact_seen.items():
        pid = views.ev_profile[j]
        if pid is None:
            continue
        channel = views.ev_channel[j]
        history = {}
        for k in by_profile[pid]:
            c = views.ev_channel[k]
            if c != channel and place(k) < place(j) and (c not in history or place(k) > place(history[c])):
                history[c] = k
        shown = {views.ev_channel[k]: k for k in shown_of}
        head = (pid, place(j), views.ev_id[j], channel, _text(views.ev_at[j]))
        others = sorted((set(history) | set(shown)) - {channel})
        if not others:
            rows.append((*head, None, None, None, None, None, False))
        for c in others:
            h, s = history.get(c), shown.get(c)
            shown_pid = views.ev_profile[s] if s is not None else None
            rows.append((*head, c, views.ev_id[h] if h is not None else None, views.ev_id[s] if s is not None else None,
                         shown_pid, (h == s) if h is not None else None, s is not None and shown_pid != pid))
    rows.sort(key=lambda r: (r[0], r[1], r[5] is not None, r[5] or ""))
    return [(r[2], r[0], r[3], r[4], *r[5:]) for r in rows]


def _recognition_rows(out):
    con = duckdb.connect(str(out), read_only=True)
    got = con.execute("SELECT event_id, profile_id, channel, "
                      "strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ'), other_channel, "
                      "history_event_id, shown_event_id, shown_profile_id, recognised, stranger_shown "
                      "FROM contact_recognition").fetchall()
    con.close()
    return got


def test_contact_recognition_rows_are_what_each_contact_s_profile_showed_of_the_customer_s_history(tmp_path):
    """Every row is what the definition says, in order, on generated customers who merge, split and use several channels, after one of them is erased
    (the profile showed events that no longer belong to anyone), and for events at the same instant (in the order
    they are decided)."""
    from streams.embedded import EmbeddedEngine
    from streams.synthetic import SyntheticConfig, write_dataset

    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=300, seed=5))
    with EmbeddedEngine(tmp_path / "data") as engine:
        engine.ingest_file(events)
        views = engine.views
        erased = next(p for p in sorted(views.profiles) if views.identifiers_of(views.profiles[p]).get("email")
                      and any(j in views.contact_seen for j in views.profiles[p].events))
        engine.erase([("email", views.identifiers_of(views.profiles[erased])["email"][0])], "dpo")
        views = engine.views
        out = tmp_path / "s.duckdb"
        counts = snapshot.write_snapshot(views, out, predict=False)
        expected = _recognition_expected(views)
    got = _recognition_rows(out)
    assert got == expected and counts["contact_recognition"] == len(expected)
    outcomes = {"recognised": sum(r[8] is True for r in got), "not": sum(r[8] is False for r in got),
                "no history": sum(r[4] is None for r in got), "stranger": sum(r[9] for r in got)}
    assert all(n >= 5 for n in outcomes.values()), outcomes  # (the generated customers give every outcome)

    # at one instant: the earlier event is the one decided first (time, then the ID's checksum, as `idres ingest`
    # decides them), and what came before the call at its instant was there to show
    from projections.customer import canonical

    instant = [ev("b", 0, channel="web", email="t@mailbox.org"), ev("a", 0, channel="app", email="t@mailbox.org"),
               ev("h", 0, channel="call_center", email="t@mailbox.org"), ev("d", 1, channel="chat", email="t@mailbox.org"),
               ev("0", 1, channel="chat", email="u@mailbox.org")]
    same = Run().feed(sorted(instant, key=lambda e: canonical(int(e.occurred_at.timestamp()), e.event_id))).views
    out = tmp_path / "same.duckdb"
    snapshot.write_snapshot(same, out, predict=False)
    got = _recognition_rows(out)
    assert got == _recognition_expected(same)
    before = sorted((c, e) for e, c in (("a", "app"), ("b", "web")) if canonical(0, e) < canonical(0, "h"))
    assert before == [("web", "b")]  # (b's checksum is below the call's, a's above: one each side)
    assert [(r[4], r[5], r[6]) for r in got if r[0] == "h" and r[4]] == [(c, e, e) for c, e in before]


class _Noted:
    """What contact_recognition reads of the views: events (ID, profile today, channel, time), each profile's
    events, and the contacts noted (event -> the events its profile showed, at most one per other channel)."""

    def __init__(self, events, seen):
        self.ev_id = [e[0] for e in events]
        self.ev_profile = [e[1] for e in events]
        self.ev_channel = [e[2] for e in events]
        self.ev_at = [e[3] for e in events]
        self.contact_seen = seen
        self.profiles = {}
        for k in reversed(range(len(events))):  # (a profile's events in no particular order)
            if events[k][1] is not None:
                self.profiles.setdefault(events[k][1], SimpleNamespace(events=[])).events.append(k)


@st.composite
def _noted(draw):
    n = draw(st.integers(1, 14))
    ids = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=n, max_size=n, unique=True))
    events = [(ids[k], draw(st.sampled_from([None, "p1", "p2", "p3"])), draw(st.sampled_from(["web", "app", "chat", "store"])),
               1_704_067_200_000_000 + draw(st.integers(0, 3)) * 1_000_000) for k in range(n)]  # (2024-01-01 00:00:0x)
    seen = {}
    for j in draw(st.lists(st.integers(0, n - 1), unique=True)):
        shown = {}
        for k in draw(st.lists(st.integers(0, n - 1), unique=True)):
            if events[k][2] != events[j][2]:
                shown[events[k][2]] = k  # (at most one per other channel, as the views note them)
        seen[j] = tuple(sorted(shown.values()))
    return _Noted(events, seen)


@settings(max_examples=60, deadline=None)
@given(noted=_noted(), chunk=st.integers(1, 5))
def test_contact_recognition_gives_the_definition_for_any_contacts(noted, chunk):
    # (any events, instants shared, events of no profile (erased), contacts shown events of other customers or of
    # nobody, the rows made a few at a time: the columns give the rows the definition gives, in order)
    from projections.metrics import promise

    got = []
    for part in promise.recognition_columns(noted, chunk):
        assert list(part) == list(promise.COLUMNS) and len({len(v) for v in part.values()}) == 1
        got += ((*r[:3], _text(r[3]), *r[4:]) for r in zip(*part.values()))  # (its time in microseconds)
    assert got == _recognition_expected(noted)


def _tables(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        # (as sets of rows: a view without an order may give its rows in any)
        return {n: sorted(map(repr, con.execute(f'SELECT * FROM "{n}"').fetchall())) for n in names
                if n != "snapshot_info"}
    finally:
        con.close()


def test_the_memory_duckdb_may_use_for_a_snapshot_is_a_setting(tmp_path, monkeypatch):
    views = Run().feed([ev(str(i), i, channel="web", email=f"p{i % 40}@mailbox.org", device_id=f"d{i}")
                        for i in range(300)]).views
    snapshot.write_snapshot(views, tmp_path / "default.duckdb", predict=False)
    monkeypatch.setenv("IDRES_SNAPSHOT_MEMORY", "512MB")
    snapshot.write_snapshot(views, tmp_path / "bounded.duckdb", predict=False)
    assert _tables(tmp_path / "bounded.duckdb") == _tables(tmp_path / "default.duckdb")
    # (less than DuckDB can work in: the snapshot stops, in one line that says what to do, and leaves nothing)
    monkeypatch.setenv("IDRES_SNAPSHOT_MEMORY", "1KB")
    with pytest.raises(snapshot.IdresError, match=r"more memory than IDRES_SNAPSHOT_MEMORY=1KB .*raise it, or unset it"):
        snapshot.write_snapshot(views, tmp_path / "small.duckdb", predict=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bounded.duckdb", "default.duckdb"]
    # (past about 2**63 bytes DuckDB's parser failed inside the snapshot)
    for raw in ("lots", "512", "-1GB", "1 PB", "99999999TB", "2000TiB"):
        monkeypatch.setenv("IDRES_SNAPSHOT_MEMORY", raw)
        with pytest.raises(snapshot.ConfigError, match="IDRES_SNAPSHOT_MEMORY=.*expected a size such as 512MB"):
            snapshot.write_snapshot(views, tmp_path / "never.duckdb", predict=False)


def test_a_snapshot_bounds_duckdb_s_memory_by_default_and_runs_a_statement_needing_more_again(tmp_path, monkeypatch):
    views = Run().feed([ev(str(i), i, channel="web", email=f"p{i % 40}@mailbox.org", device_id=f"d{i}")
                        for i in range(300)]).views
    limits: list[str] = []
    finish_metrics = snapshot.finish_metrics

    spills: list[str] = []

    def noting(con, *args, **kwargs):
        limits.append(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        spills.append(con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
        return finish_metrics(con, *args, **kwargs)

    monkeypatch.setattr(snapshot, "finish_metrics", noting)
    snapshot.write_snapshot(views, tmp_path / "default.duckdb", predict=False)
    # (DuckDB shows its bound in its own units: 256MB is 244.1 MiB)
    assert limits == ["244.1 MiB"]
    # (what it writes beyond the bound goes to the snapshot's own private directory, removed with it)
    spill = Path(spills[0])
    assert spill.parent.parent == tmp_path and spill.parent.name.startswith(".idres-snapshot-")
    assert not spill.parent.exists()
    # (a bound no statement can work in: each is refused, and the first refused runs again under DuckDB's own)
    monkeypatch.setattr(snapshot, "DEFAULT_MEMORY", "64KB")
    snapshot.write_snapshot(views, tmp_path / "raised.duckdb", predict=False)
    assert limits[1] not in ("244.1 MiB", "62.5 KiB")
    assert _tables(tmp_path / "raised.duckdb") == _tables(tmp_path / "default.duckdb")


def test_tables_are_loaded_a_file_at_a_time_whatever_their_lines_length(tmp_path, monkeypatch):
    views = Run().feed([ev(str(i), i, channel="web", email=f"p{i % 40}@mailbox.org", device_id=f"d{i}",
                           attrs={"first_name": "Ann" + "e" * (i % 7)}) for i in range(300)]).views
    snapshot.write_snapshot(views, tmp_path / "whole.duckdb", predict=False)
    loaded: list[str] = []
    load = snapshot._Loader.load

    def noting(self, sql, path=None):
        loaded.append(sql)
        return load(self, sql, path)

    monkeypatch.setattr(snapshot._Loader, "load", noting)
    # (files of 7 rows, the events' columns a line of 5 events, and every line longer than the least DuckDB is told)
    monkeypatch.setattr(snapshot, "ROWS_PER_FILE", 7)
    monkeypatch.setattr(snapshot, "EVENT_CHUNK", 5)
    monkeypatch.setattr(snapshot, "MIN_OBJECT_SIZE", 8)
    snapshot.write_snapshot(views, tmp_path / "files.duckdb", predict=False)
    assert _tables(tmp_path / "files.duckdb") == _tables(tmp_path / "whole.duckdb")
    inserts = [sql for sql in loaded if sql.startswith("INSERT INTO events ")]
    assert len(inserts) == 300 // 10 - 1  # (two lines of 5 events to a file of at least 7 rows)
    assert sum(sql.startswith("CREATE TABLE events ") for sql in loaded) == 1


def test_a_snapshot_lets_go_of_the_views_before_the_metric_views_and_the_purchase_models(tmp_path, monkeypatch):
    import weakref

    views = Run().feed([ev(str(i), i, channel="web", email=f"p{i % 40}@mailbox.org", device_id=f"d{i}")
                        for i in range(300)]).views
    snapshot.write_snapshot(views, tmp_path / "kept.duckdb", predict=False)
    held, alive = [views], weakref.ref(views)
    del views
    seen: list[bool] = []
    finish_metrics = snapshot.finish_metrics

    def noting(con, *args, **kwargs):
        seen.append(alive() is not None)
        return finish_metrics(con, *args, **kwargs)

    monkeypatch.setattr(snapshot, "finish_metrics", noting)
    snapshot.write_snapshot(held[0], tmp_path / "let_go.duckdb", predict=False, let_go=held.clear)
    assert seen == [False] and held == []
    assert _tables(tmp_path / "let_go.duckdb") == _tables(tmp_path / "kept.duckdb")


def test_merged_profile_count_counts_merges_not_the_ids_a_late_event_renamed(tmp_path):
    """An order, then in another command an older one on the same loyalty card: the profile is renamed after
    the older event (its old ID an alias), which is no merge. Then a phone's profile joins it through an
    email: one merge. The column agrees with the merges table however the events came in."""
    from streams.embedded import EmbeddedEngine

    def line(event_id: str, when: str, **ids: str) -> bytes:
        return json.dumps({"event_id": event_id, "occurred_at": when, "channel": "store", "event_type": "purchase",
                           "identifiers": ids, "payload": {"amount": 10}}).encode() + b"\n"

    with EmbeddedEngine(tmp_path / "data") as engine:
        engine.ingest_stream([line("o1", "2025-03-01T10:00:00Z", loyalty_id="LY-555")], "late1")
        engine.ingest_stream([line("o0", "2024-12-15T10:00:00Z", loyalty_id="LY-555")], "late2")
        assert engine.views.aliases  # (renamed: the ID first given is now an alias)
        out = tmp_path / "renamed.duckdb"
        snapshot.write_snapshot(engine.views, out, predict=False)
        with duckdb.connect(str(out), read_only=True) as con:
            assert con.execute("SELECT merged_profile_count FROM profiles").fetchall() == [(0,)]
            assert con.execute("SELECT count(*) FROM merges").fetchone() == (0,)
        engine.ingest_stream([line("o2", "2025-04-01T10:00:00Z", phone="+44 7700 900777", email="rae@mailbox.org"),
                              line("o3", "2025-04-02T10:00:00Z", loyalty_id="LY-555", email="rae@mailbox.org")],
                             "joined")
        out = tmp_path / "merged.duckdb"
        snapshot.write_snapshot(engine.views, out, predict=False)
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM merges").fetchone() == (1,)
        assert con.execute("""SELECT p.profile_id, p.merged_profile_count, count(m.absorbed_id)
                              FROM profiles p LEFT JOIN merges m USING (profile_id) GROUP BY ALL""").fetchall() == [
            (con.execute("SELECT profile_id FROM profiles").fetchone()[0], 1, 1)]


def test_a_merge_an_unmerge_took_apart_is_kept_as_history_and_said_apart(tmp_path):
    """After an unmerge the absorbed profile was live again, yet the survivor still counted it merged
    (``merged_profile_count``) and the merges table gave no sign of it: a time-to-merge read from it counted a
    merge that was undone."""
    from tests.test_unmerge import AT, command, profile_of_key
    from tests.resolver_helpers import Run, ev

    run = Run().feed([ev("web1", 0, email="carol@example.co.uk"),
                      ev("call1", 5, channel="call_center", phone="+44 7700 900123"),
                      ev("web9", 0, email="dan@example.co.uk"),
                      ev("call9", 5, channel="call_center", phone="+44 7700 900999"),
                      ev("app1", 9, channel="app", email="carol@example.co.uk", phone="+44 7700 900123"),
                      ev("app9", 9, channel="app", email="dan@example.co.uk", phone="+44 7700 900999")])
    carol = profile_of_key(run, "email:carol@example.co.uk")
    dan = profile_of_key(run, "email:dan@example.co.uk")
    command(run, run.resolver.unmerge(carol, [("phone", "+447700900123")], "ana", AT))
    assert profile_of_key(run, "phone:+447700900123") != carol
    out = tmp_path / "s.duckdb"
    snapshot.write_snapshot(run.views, out, predict=False)
    with duckdb.connect(str(out), read_only=True) as con:
        merges = {p: apart for p, apart in con.execute("SELECT profile_id, apart_now FROM merges").fetchall()}
        counts = dict(con.execute("SELECT profile_id, merged_profile_count FROM profiles").fetchall())
        quality = dict(con.execute("SELECT figure, value FROM identity_quality").fetchall())
    assert merges == {carol: True, dan: False}
    assert (counts[carol], counts[dan]) == (0, 1)
    assert (quality["merges"], quality["merges taken apart since"]) == (2, 1)
