"""A corpus of malformed records mixed into good events: nothing stops the engine, every good event is
resolved, every bad line is kept with its reason, and reading the same input again (or a renamed copy
of it) changes nothing."""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.channel import BAD_DATE, RejectedInput, parse_event

from streams.embedded import EmbeddedEngine

GOOD = {"event_id": "g", "occurred_at": "2025-03-07T14:03:11Z", "channel": "web", "event_type": "visit",
        "identifiers": {"email": "ana@mailbox.org"}, "attributes": {"first_name": "Ana"}}


_numbers = itertools.count()


def good(i: int) -> bytes:
    return json.dumps({**GOOD, "event_id": f"good-{i}", "identifiers": {"email": f"c{i % 7}@mailbox.org"}}).encode()


def bad(**fields) -> bytes:
    """A record like a good one with ``fields`` changed (a value of ... removes the field)."""
    body = {**GOOD, "event_id": f"bad-{next(_numbers)}"}
    for k, v in fields.items():
        if v is ...:
            body.pop(k)
        else:
            body[k] = v
    return json.dumps(body).encode()


def raw_payload(text: str) -> bytes:
    """A record whose payload's ``amount`` is the JSON text ``text`` as written (NaN, 1e999, ...)."""
    return (json.dumps({**GOOD, "event_id": f"raw-{text}"})[:-1] + f', "payload": {{"amount": {text}}}}}').encode()


# (kind, line, the reason category it is kept with)
CORPUS: list[tuple[str, bytes, str]] = [
    ("truncated object", b'{"event_id": "x", "occurred_at": ', "not valid JSON"),
    ("bare word", b"nul", "not valid JSON"),
    ("unclosed array", b"[1, 2", "not valid JSON"),
    ("trailing garbage", b'{"event_id": "x"} x', "not valid JSON"),
    ("invalid UTF-8", b'{"event_id": "\xff\xfe"}', "not valid JSON"),
    ("lone surrogate escape", b'{"event_id": "\\ud800"}', "not valid JSON"),
    ("control character in a string", b'{"event_id": "a\x01b"}', "not valid JSON"),
    ("NaN as an event_id", b'{"event_id": NaN}', "invalid event_id"),
    ("array", b"[]", "not a JSON object"),
    ("string", b'"text"', "not a JSON object"),
    ("number", b"42", "not a JSON object"),
    ("null", b"null", "not a JSON object"),
    ("boolean", b"true", "not a JSON object"),
    ("no event_id", bad(event_id=...), "missing event_id"),
    ("no occurred_at", bad(occurred_at=...), "missing occurred_at"),
    ("no channel", bad(channel=...), "missing channel"),
    ("no event_type", bad(event_type=...), "missing event_type"),
    ("event_id a number", bad(event_id=7), "invalid event_id"),
    ("event_id empty", bad(event_id=""), "invalid event_id"),
    ("event_id too long", bad(event_id="x" * 300), "invalid event_id"),
    ("occurred_at a number", bad(occurred_at=1741356191), "occurred_at is not a date-time"),
    ("occurred_at seconds as text", bad(occurred_at="1741356191"), "occurred_at is not a date-time"),
    ("occurred_at a word", bad(occurred_at="yesterday"), "occurred_at is not a date-time"),
    ("occurred_at beyond year 9999 in UTC", bad(occurred_at="9999-12-31T23:00:00-05:00"),
     "occurred_at is not a date-time"),
    ("occurred_at before year 1 in UTC", bad(occurred_at="0001-01-01T00:00:00+05:00"), "occurred_at is not a date-time"),
    ("occurred_at month 13", bad(occurred_at="2025-13-01T00:00:00Z"), "occurred_at is not a date-time"),
    ("channel in capitals", bad(channel="Web"), "invalid channel"),
    ("channel with a space", bad(channel="call centre"), "invalid channel"),
    ("channel empty", bad(channel=""), "invalid channel"),
    ("event_type empty", bad(event_type=""), "invalid event_type"),
    ("identifiers a list", bad(identifiers=["ana@mailbox.org"]), "invalid identifiers"),
    ("identifier value a number", bad(identifiers={"phone": 4155550134}), "invalid identifiers"),
    ("identifier value an object", bad(identifiers={"email": {"v": "a@b.org"}}), "invalid identifiers"),
    ("identifier type empty", bad(identifiers={"": "a@b.org"}), "invalid identifiers"),
    ("identifier type too long", bad(identifiers={"t" * 65: "a@b.org"}), "invalid identifiers"),
    ("10,000 identifiers", bad(identifiers={f"t{i}": f"v{i}" for i in range(10_000)}), "invalid identifiers"),
    ("attributes a string", bad(attributes="Ana"), "invalid attributes"),
    ("100 attributes", bad(attributes={f"a{i}": "x" for i in range(100)}), "invalid attributes"),
    ("payload a list", bad(payload=[1, 2]), "invalid payload"),
    ("payload NaN", raw_payload("NaN"), "invalid payload"),
    ("payload Infinity", raw_payload("Infinity"), "invalid payload"),
    ("payload -Infinity", raw_payload("-Infinity"), "invalid payload"),
    ("payload 1e999", raw_payload("1e999"), "invalid payload"),
    ("payload integer of 2**64", bad(payload={"order_no": 2 ** 64}), "invalid payload"),
    ("payload integer below -2**63", bad(payload={"order_no": -(2 ** 63) - 1}), "invalid payload"),
    ("payload big integer nested", bad(payload={"lines": [{"sku": 10 ** 30}]}), "invalid payload"),
    # (three of 1.7e308 added up to an infinite customer value, written as Infinity: not JSON)
    ("amount beyond a quadrillion", bad(payload={"amount": 1.7e308}), "invalid payload"),
    ("amount infinite as text", bad(payload={"amount": "inf"}), "invalid payload"),
    ("newer schema version", bad(schema_version=2), "invalid schema_version"),
    ("schema version a word", bad(schema_version="one"), "invalid schema_version"),
    ("nothing to match on", bad(identifiers={}, attributes={}), "nothing to match on"),
    ("identifiers all empty", bad(identifiers={"email": None, "phone": " "}, attributes={}), "nothing to match on"),
    ("record over 1 MiB", bad(payload={"note": "x" * (1 << 20)}), "record too large"),
    # (JSON leaves a key written twice to the reader, and most keep the last value without a word)
    ("an identifier type twice", bad(identifiers=...)[:-1] + b', "identifiers": {"email": "ana@mailbox.org", '
                                                              b'"email": "bo@mailbox.org"}}', "a key twice in one object"),
    ("event_id twice", b'{"event_id": "twice-1", ' + bad()[1:], "a key twice in one object"),
    ("a key twice, one written with an escape", bad(attributes=...)[:-1]
     + b', "attributes": {"first_name": "Ana", "first\\u005fname": "Bo"}}', "a key twice in one object"),
    # (a minute later than the event it imitates: events are decided in time order, and the first one stands)
    ("another event under a used ID", json.dumps({**json.loads(good(0)), "event_type": "purchase",
                                                  "occurred_at": "2025-03-07T14:04:11Z"}).encode(),
     "event_id already used by another event"),
]


@pytest.fixture()
def corpus_file(tmp_path):
    lines = []
    for i, (_, line, _) in enumerate(CORPUS):
        lines.append(good(i))
        lines.append(line)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_the_corpus_has_fifty_kinds_of_bad_record():
    assert len({kind for kind, _, _ in CORPUS}) == len(CORPUS) >= 50


def test_every_good_event_is_resolved_and_every_bad_line_kept_with_its_reason(corpus_file, tmp_path):
    with EmbeddedEngine(tmp_path / "data") as engine:
        report = engine.ingest_file(corpus_file)
        assert report.accepted == len(CORPUS) and report.internal_errors == 0
        assert report.rejected == len(CORPUS)
        assert sorted(engine.views.ev_id) == sorted(f"good-{i}" for i in range(len(CORPUS)))
        kept = sorted(engine.views.rejected, key=lambda r: r["source"]["position"])  # (decided in time order)
        positions = [r["source"]["position"] for r in kept]
        assert positions == [2 * (i + 1) for i in range(len(CORPUS))]  # every bad line, in order
        for (kind, _, reason), r in zip(CORPUS, kept):
            assert r["reason"] == reason, kind
            assert r.get("detail"), kind
        assert sum(report.rejected_reasons.values()) == len(CORPUS)


def test_reading_the_same_input_again_or_a_renamed_copy_changes_nothing(corpus_file, tmp_path):
    data = tmp_path / "data"
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(corpus_file)
        entries = len(engine.log)
    renamed = tmp_path / "renamed.jsonl"
    shutil.copy(corpus_file, renamed)
    for path in (corpus_file, renamed):
        with EmbeddedEngine(data) as engine:
            report = engine.ingest_file(path)
            assert (report.accepted, report.rejected, report.rejected_before) == (0, 0, len(CORPUS))
            assert report.duplicates == len(CORPUS)
            assert len(engine.log) == entries and len(engine.views.rejected) == len(CORPUS)


def test_the_same_bad_line_in_two_different_files_is_kept_for_each(tmp_path):
    header = b"event_id,occurred_at,channel"  # a CSV header line at the top of every daily file: not JSON
    days = []
    for day in (1, 2):
        path = tmp_path / f"day{day}.jsonl"
        path.write_bytes(header + b"\n" + good(day) + b"\n")
        days.append(path)
    with EmbeddedEngine(tmp_path / "data") as engine:
        reports = [engine.ingest_file(path) for path in days]
        assert [(r.accepted, r.rejected) for r in reports] == [(1, 1), (1, 1)]
        assert [r["source"]["name"] for r in engine.views.rejected] == [str(p.resolve()) for p in days]


def test_details_say_what_was_given():
    """A null time was told it was "not a number of seconds"; an empty identifier "no attribute"."""
    from resolver.config import ResolverConfig
    from resolver.normalize import MAX_IDENTIFIER_LENGTH, Normalizer
    from schemas.channel import RejectedInput, parse_event

    def detail(**fields):
        record = {"event_id": "x", "occurred_at": "2025-03-07T14:03:11Z", "channel": "web", "event_type": "visit",
                  "identifiers": {"email": "a@b.org"}, **fields}
        with pytest.raises(RejectedInput) as caught:
            parse_event(json.dumps(record))
        return caught.value.detail

    assert detail(occurred_at=None).endswith("(not null)")
    assert detail(occurred_at=[2025]).endswith("(not a JSON array)")
    assert detail(occurred_at=1741356191).endswith("(not a number of seconds)")
    assert detail(identifiers={"email": ""}) == "nothing to match on: no identifier and no attribute with a value"
    with pytest.raises(RejectedInput) as caught:
        parse_event('{"event_id": "x", "payload": {"n": ' + "9" * 5000 + "}}")
    assert caught.value.detail.endswith("(a number too long to read: send it as a string)")
    long = "a" * MAX_IDENTIFIER_LENGTH + "@b.org"
    assert Normalizer(ResolverConfig()).identifier("email", long) == (None, "longer than 1,024 characters")


@given(st.one_of(st.datetimes(), st.datetimes(max_value=datetime(1, 1, 3)), st.datetimes(min_value=datetime(9999, 12, 29))),
       st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
       .map(lambda d: timedelta(minutes=d // timedelta(minutes=1))))
def test_an_occurred_at_is_accepted_exactly_when_its_instant_in_utc_is_a_date_time(local, offset):
    # (years 1 to 9999 in UTC: the log writes that instant)
    text = local.replace(tzinfo=timezone(offset)).isoformat()
    try:
        local - offset  # (the instant in UTC, without a zone: out of range raises)
        in_range = True
    except OverflowError:
        in_range = False
    raw = json.dumps({**GOOD, "occurred_at": text}).encode()
    if in_range:
        assert parse_event(raw).occurred_at == local.replace(tzinfo=timezone(offset))
    else:
        with pytest.raises(RejectedInput) as caught:
            parse_event(raw)
        assert caught.value.reason == BAD_DATE and "out of range once converted to UTC" in caught.value.detail


@given(st.from_regex(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", fullmatch=True))
def test_an_occurred_at_written_as_a_number_is_refused_whatever_the_number(text):
    with pytest.raises(RejectedInput) as caught:
        parse_event(json.dumps({**GOOD, "occurred_at": text}).encode())
    assert caught.value.reason == BAD_DATE


# ------------------------------------------------------------------------------------------ keys twice
_KEYS = st.sampled_from(["a", "b", "ab", "é", 'q"', "k\\", "a\u0000"])


def _text(key: str, escaped: bool) -> str:
    """A key as JSON text: as json writes it, or with every character escaped (the same key to a reader)."""
    return '"' + "".join(f"\\u{ord(c):04x}" for c in key) + '"' if escaped else json.dumps(key)


@st.composite
def _json(draw, depth: int = 0) -> tuple[str, bool]:
    """JSON text whose objects may hold a key twice, and whether one does (known from the keys drawn, not read
    back from the text)."""
    kind = draw(st.sampled_from(["object", "array", "scalar"] if depth < 4 else ["scalar"]))
    if kind == "scalar":
        value = draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none(),
                               st.sampled_from(["{", "}", '"', "[", ",", ":", '\\"', "a"])))
        return json.dumps(value), False
    members = [draw(_json(depth + 1)) for _ in range(draw(st.integers(0, 4)))]
    twice = any(inner for _, inner in members)
    if kind == "array":
        return "[" + ", ".join(text for text, _ in members) + "]", twice
    keys = [draw(_KEYS) for _ in members]
    twice = twice or len(set(keys)) < len(keys)
    pairs = [f"{_text(k, draw(st.booleans()))}: {text}" for k, (text, _) in zip(keys, members)]
    return "{" + ", ".join(pairs) + "}", twice


@given(_json())
def test_a_key_twice_in_any_object_is_found_and_only_then(drawn):
    from schemas import channel

    text, twice = drawn
    compiled = channel._duplicate_keys
    try:
        for channel._duplicate_keys in {compiled, None}:  # (the definition alone too, as where none was built)
            assert (channel.duplicate_key(text) is not None) == twice
            assert (channel.duplicate_key(text.encode()) is not None) == twice
    finally:
        channel._duplicate_keys = compiled
    if channel._duplicate_keys is not None:  # (the compiled scan never says "none" or "one" wrongly)
        told = channel._duplicate_keys(text.encode())
        assert told == 2 or told == int(twice), (text, told)
        if "\\" not in text:  # (no key written with an escape: the scan tells alone, the text is not parsed again)
            assert told == int(twice) or text.count("{") > 64, (text, told)


def test_a_record_with_a_key_twice_is_kept_with_the_key_named():
    line = bad(identifiers=...)[:-1] + b', "identifiers": {"email": "ana@mailbox.org", "email": "bo@mailbox.org"}}'
    with pytest.raises(RejectedInput) as refused:
        parse_event(line)
    assert refused.value.reason == "a key twice in one object" and "'email'" in refused.value.detail
    assert refused.value.event_id is not None
    # as a bytearray too (what the stream jobs may hand the reader of records), as the text is read without the scan
    with pytest.raises(RejectedInput, match="a key twice in one object"):
        parse_event(bytearray(line))
    assert parse_event(bytearray(good(1))).event_id == "good-1"

