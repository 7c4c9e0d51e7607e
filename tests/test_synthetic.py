"""Synthetic data set: determinism, input contract, ground truth, and the traps it must contain."""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import orjson
import phonenumbers
import pytest

from streams.synthetic import (
    CHANNELS,
    EVENT_TYPES,
    PLACEHOLDER_EMAILS,
    PLACEHOLDER_PHONES,
    SyntheticConfig,
    generate_lines,
    read_truth_csv,
    read_truth_events,
    write_dataset,
)

PEOPLE = 2000
IDENTIFIER_KEYS = {"email", "phone", "loyalty_id", "device_id", "social_handle"}
ATTRIBUTE_KEYS = {"first_name", "last_name", "date_of_birth", "address", "postcode", "city"}
PURCHASE_TYPES = {"purchase", "store_purchase", "return"}
PLACEHOLDER_PHONE_DIGITS = {re.sub(r"\D", "", p) for p in PLACEHOLDER_PHONES}


def norm_email(value: str) -> str:
    local, _, domain = value.strip().lower().rpartition("@")
    if domain == "googlemail.com":
        domain = "gmail.com"
    if domain == "gmail.com":
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"


def norm_phone(value: str) -> str:
    return re.sub(r"\D", "", value)[-10:]


def digest(lines) -> str:
    h = hashlib.sha256()
    for line, person in lines:
        h.update(line.encode())
        h.update(b"\x00" + (person or "-").encode() + b"\n")
    return h.hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    config = SyntheticConfig(people=PEOPLE, seed=11)
    folder = tmp_path_factory.mktemp("synthetic")
    events_path, truth_path = folder / "events.jsonl", folder / "truth.csv"
    seen = []
    stats = write_dataset(events_path, truth_path, config, progress=seen.append)
    lines = list(generate_lines(config))
    valid = [(orjson.loads(line), person) for line, person in lines if person is not None]
    return {
        "config": config,
        "stats": stats,
        "progress": seen,
        "events_path": events_path,
        "truth_path": truth_path,
        "lines": lines,
        "valid": valid,
    }


# -- determinism -------------------------------------------------------------------------------------


def test_same_config_same_output():
    config = SyntheticConfig(people=300, seed=3)
    assert digest(generate_lines(config)) == digest(generate_lines(config))


def test_different_seed_different_output():
    assert digest(generate_lines(SyntheticConfig(people=300, seed=3))) != digest(
        generate_lines(SyntheticConfig(people=300, seed=4))
    )


def test_spilled_runs_give_identical_output():
    config = SyntheticConfig(people=300, seed=5)
    in_memory = list(generate_lines(config))
    spilled = list(generate_lines(config, chunk_size=250))
    assert spilled == in_memory


def test_file_matches_generator(dataset):
    content = dataset["events_path"].read_bytes()
    expected = "".join(line + "\n" for line, _ in dataset["lines"]).encode()
    assert content == expected
    assert dataset["stats"]["bytes"] == len(content)


def test_small_and_invalid_configs():
    lines = list(generate_lines(SyntheticConfig(people=1, days=1, seed=1)))
    assert lines and all(person in (None, "person-0000001") for _, person in lines)
    with pytest.raises(ValueError):
        SyntheticConfig(duplicate_rate=1.5)
    with pytest.raises(ValueError):
        SyntheticConfig(people=0)


# -- contract ----------------------------------------------------------------------------------------


def test_valid_lines_follow_the_contract(dataset):
    config = dataset["config"]
    start = datetime.fromisoformat(config.start)
    end = start + timedelta(days=config.days)
    previous = None
    used_channels = set()
    for event, person in dataset["valid"]:
        assert person.startswith("person-")
        assert isinstance(event["event_id"], str) and event["event_id"]
        when = datetime.fromisoformat(event["occurred_at"])
        assert when.tzinfo is not None
        assert start <= when < end
        if previous is not None:
            assert when >= previous, "occurred_at must be non-decreasing"
        previous = when
        channel = event["channel"]
        assert channel in CHANNELS
        used_channels.add(channel)
        assert event["event_type"] in EVENT_TYPES[channel]
        ids = event["identifiers"]
        assert isinstance(ids, dict) and set(ids) <= IDENTIFIER_KEYS
        assert all(isinstance(v, str) and v for v in ids.values())
        attrs = event.get("attributes", {})
        assert isinstance(attrs, dict) and set(attrs) <= ATTRIBUTE_KEYS
        assert all(isinstance(v, str) and v for v in attrs.values())
        assert "attributes" not in event or attrs, "empty dicts are omitted"
        assert "payload" not in event or event["payload"], "empty dicts are omitted"
        assert ids or attrs, "a valid event has something to match on"
        payload = event.get("payload", {})
        if event["event_type"] in PURCHASE_TYPES:
            amount = payload["amount"]
            assert isinstance(amount, float) and amount > 0 and round(amount, 2) == amount
            assert payload["currency"] == "USD"
        if event["event_type"] in ("case_opened", "case_resolved"):
            assert isinstance(payload["case_id"], str)
        if event["event_type"] == "case_resolved":
            assert isinstance(payload["csat"], int) and 1 <= payload["csat"] <= 5
    assert used_channels == set(CHANNELS)
    used_types = {(e["channel"], e["event_type"]) for e, _ in dataset["valid"]}
    assert used_types == {(c, t) for c, types in EVENT_TYPES.items() for t in types}


def test_compact_output(dataset):
    for line, person in dataset["lines"][:2000]:
        assert "\n" not in line
        if person is not None:
            assert line == orjson.dumps(orjson.loads(line)).decode()


def test_support_cases(dataset):
    opened, resolved = {}, set()
    for event, person in dataset["valid"]:
        if event["event_type"] == "case_opened":
            opened.setdefault(event["payload"]["case_id"], person)
        elif event["event_type"] == "case_resolved":
            case_id = event["payload"]["case_id"]
            assert opened.get(case_id) == person, "resolved after being opened, by the same person"
            resolved.add(case_id)
    assert resolved and len(opened) > len(resolved), "some cases stay open"


# -- ground truth ------------------------------------------------------------------------------------


def test_truth_covers_exactly_the_valid_events(dataset):
    rows = dataset["truth_path"].read_text(encoding="utf-8").splitlines()
    assert rows[0] == "event_id,person_id"
    truth = dict(row.split(",") for row in rows[1:])
    assert len(truth) == len(rows) - 1, "each event id once"
    valid_ids = {}
    for event, person in dataset["valid"]:
        assert valid_ids.setdefault(event["event_id"], person) == person
    assert truth == valid_ids
    stats = dataset["stats"]
    assert stats["events"] == len(truth)
    assert stats["people"] == PEOPLE == len(set(truth.values()))
    malformed = sum(1 for _, person in dataset["lines"] if person is None)
    assert stats["malformed"] == malformed
    assert stats["lines"] == len(dataset["lines"]) == stats["events"] + stats["duplicates"] + malformed
    assert sum(dataset["progress"]) == stats["lines"], "progress reports increments"
    assert all(0 < step <= 10_000 for step in dataset["progress"])


def test_read_truth_events_gives_each_listed_event_once_in_file_order(dataset):
    truth = read_truth_csv(dataset["truth_path"])
    events = list(read_truth_events(dataset["events_path"], truth))
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) == len(truth)  # re-sent copies and malformed lines skipped
    first_seen = list(dict.fromkeys(e["event_id"] for e, _ in dataset["valid"]))
    assert ids == first_seen
    assert len(list(read_truth_events(dataset["events_path"], {ids[0]: "p"}))) == 1


def test_duplicates_are_identical_resends(dataset):
    by_id = defaultdict(list)
    for line, person in dataset["lines"]:
        if person is not None:
            by_id[orjson.loads(line)["event_id"]].append(line)
    repeated = {k: v for k, v in by_id.items() if len(v) > 1}
    assert len(repeated) == dataset["stats"]["duplicates"]
    for copies in repeated.values():
        assert len(set(copies)) == 1
    rate = len(repeated) / dataset["stats"]["events"]
    assert 0.004 <= rate <= 0.02


def _is_malformed(line: str) -> bool:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
        return True
    if not isinstance(event.get("identifiers"), dict):
        return True
    try:
        datetime.fromisoformat(event["occurred_at"])
    except (TypeError, ValueError):
        return True
    return not event["identifiers"] and not event.get("attributes")


def test_malformed_lines(dataset):
    bad = [line for line, person in dataset["lines"] if person is None]
    assert all(_is_malformed(line) for line in bad)
    rate = len(bad) / dataset["stats"]["events"]
    assert 0.002 <= rate <= 0.012
    kinds = Counter()
    for line in bad:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            kinds["not json"] += 1
            continue
        if "event_id" not in event:
            kinds["missing id"] += 1
        elif not isinstance(event["identifiers"], dict):
            kinds["identifiers type"] += 1
        elif not isinstance(event["occurred_at"], str):
            kinds["occurred_at type"] += 1
        elif event["identifiers"] == {}:
            kinds["empty"] += 1
        else:
            kinds["bad date"] += 1
    assert len(kinds) == 6, kinds


# -- scale and traps ---------------------------------------------------------------------------------


def test_events_per_person_are_skewed(dataset):
    counts = Counter(person for _, person in dataset["valid"])
    values = list(counts.values())
    mean = statistics.mean(values)
    assert 8 <= mean <= 12
    assert statistics.median(values) < mean
    assert max(values) >= 5 * statistics.median(values)
    assert min(values) <= 2


def test_people_and_households(dataset):
    stats = dataset["stats"]
    share = stats["people_in_multi_person_households"] / stats["people"]
    assert 0.22 <= share <= 0.38
    assert 0.5 <= stats["loyalty_members"] / stats["people"] <= 0.7
    assert 0.06 <= stats["email_changes"] / stats["people"] <= 0.14


def _people_by(dataset, key, normalize=lambda v: v, event_filter=lambda e: True):
    holders = defaultdict(set)
    for event, person in dataset["valid"]:
        value = event["identifiers"].get(key)
        if value is not None and event_filter(event):
            holders[normalize(value)].add(person)
    return holders


def test_kiosks_are_used_by_many_people(dataset):
    holders = _people_by(dataset, "device_id")
    crowded = {d for d, people in holders.items() if len(people) >= 5}
    assert 10 <= len(crowded) <= dataset["config"].kiosks
    for device in crowded:
        channels = {e["channel"] for e, _ in dataset["valid"] if e["identifiers"].get("device_id") == device}
        assert channels == {"store"}


def test_household_landline_and_tablet_are_shared(dataset):
    phones = _people_by(dataset, "phone", norm_phone)
    shared = [p for number, p in phones.items() if number not in PLACEHOLDER_PHONE_DIGITS and len(p) >= 2]
    assert len(shared) >= 10
    assert all(len(p) <= 4 for p in shared), "only household members share a landline"
    # A family tablet: an app device on which 2-4 different people log in with their own emails.
    logins = defaultdict(dict)
    for event, person in dataset["valid"]:
        if event["channel"] == "app" and event["event_type"] == "login":
            logins[event["identifiers"]["device_id"]][person] = norm_email(event["identifiers"]["email"])
    tablets = [people for people in logins.values() if len(people) >= 2]
    assert len(tablets) >= 5
    for people in tablets:
        assert len(people) <= 4 and len(set(people.values())) == len(people)


def test_placeholders(dataset):
    emails = _people_by(dataset, "email", lambda v: v.strip().lower())
    for placeholder in PLACEHOLDER_EMAILS:
        assert placeholder in emails
    assert sum(len(emails[p]) for p in PLACEHOLDER_EMAILS) >= 20
    assert len(set().union(*(emails[p] for p in PLACEHOLDER_EMAILS))) >= 2
    phones = _people_by(dataset, "phone")
    assert sum(len(phones.get(p, ())) for p in PLACEHOLDER_PHONES) >= 20
    with_placeholder = [
        e for e, _ in dataset["valid"]
        if e["identifiers"].get("email") in PLACEHOLDER_EMAILS or e["identifiers"].get("phone") in PLACEHOLDER_PHONES
    ]
    assert {e["channel"] for e in with_placeholder} == {"store", "call_center"}
    also_real = sum(1 for e in with_placeholder if len(e["identifiers"]) - ("device_id" in e["identifiers"]) >= 2)
    assert 0.6 <= also_real / len(with_placeholder) <= 0.95


def test_phones_parse(dataset):
    values = {e["identifiers"]["phone"] for e, _ in dataset["valid"] if "phone" in e["identifiers"]}
    formats = set()
    for value in values:
        if value in PLACEHOLDER_PHONES:
            continue
        number = phonenumbers.parse(value, "US")
        assert phonenumbers.is_valid_number(number), value
        formats.add(re.sub(r"\d", "9", value))
    assert len(formats) >= 6
    for value in PLACEHOLDER_PHONES:
        assert not phonenumbers.is_valid_number(phonenumbers.parse(value, "US"))


def test_email_noise_and_changes(dataset):
    raw = [e["identifiers"]["email"] for e, _ in dataset["valid"] if "email" in e["identifiers"]]
    assert any(v != v.strip() for v in raw)
    assert any(v.strip() != v.strip().lower() for v in raw)
    assert any("+" in v and "gmail" in v for v in raw)
    assert any(v.strip().lower().endswith("@googlemail.com") for v in raw)
    # gmail dots: one normalized mailbox written with two different dot placements.
    spellings = defaultdict(set)
    for v in raw:
        n = norm_email(v)
        if n.endswith("@gmail.com"):
            spellings[n].add(v.strip().lower().split("+")[0].split("@")[0])
    assert any(len(s) >= 2 for s in spellings.values())

    # Normalized emails never collide between people (apart from placeholders).
    owners = defaultdict(set)
    timeline = defaultdict(dict)
    for event, person in dataset["valid"]:
        value = event["identifiers"].get("email")
        if value is None or value.strip().lower() in PLACEHOLDER_EMAILS:
            continue
        n = norm_email(value)
        owners[n].add(person)
        first, last = timeline[person].get(n, (event["occurred_at"], event["occurred_at"]))
        timeline[person][n] = (min(first, event["occurred_at"]), max(last, event["occurred_at"]))
    assert all(len(p) == 1 for p in owners.values())
    two_emails = [p for p, emails in timeline.items() if len(emails) >= 2]
    assert len(two_emails) >= PEOPLE * 0.1
    # An email change: one address stops being used before another starts.
    switched = [
        p for p in two_emails
        if any(a[1] < b[0] for a in timeline[p].values() for b in timeline[p].values())
    ]
    assert len(switched) >= PEOPLE * 0.02


def test_other_format_noise(dataset):
    loyalty = {e["identifiers"]["loyalty_id"] for e, _ in dataset["valid"] if "loyalty_id" in e["identifiers"]}
    shapes = {re.sub(r"\d", "9", v) for v in loyalty}
    assert {"LOY-9999999", "loy 9999999", "9999999", "LOY9999999"} <= shapes
    dobs = [e["attributes"]["date_of_birth"] for e, _ in dataset["valid"] if "date_of_birth" in e.get("attributes", {})]
    us = [d for d in dobs if re.fullmatch(r"\d\d/\d\d/\d{4}", d)]
    iso = [d for d in dobs if re.fullmatch(r"\d{4}-\d\d-\d\d", d)]
    assert len(us) + len(iso) == len(dobs) and 0 < len(us) < len(iso)
    names = [e["attributes"]["last_name"] for e, _ in dataset["valid"] if "last_name" in e.get("attributes", {})]
    assert any(n.isupper() for n in names) and any(n.islower() for n in names)
    postcodes = {e["attributes"]["postcode"] for e, _ in dataset["valid"] if "postcode" in e.get("attributes", {})}
    assert all(re.fullmatch(r"\d{5}", p) for p in postcodes)


def test_anonymous_sessions_log_in_later(dataset):
    anonymous = {}
    linked = set()
    for event, person in dataset["valid"]:
        ids = event["identifiers"]
        if set(ids) == {"device_id"} and event["channel"] in ("web", "app"):
            anonymous.setdefault((ids["device_id"], person), event["occurred_at"])
        elif "device_id" in ids and "email" in ids and event["event_type"] == "login":
            key = (ids["device_id"], person)
            if key in anonymous and anonymous[key] < event["occurred_at"]:
                linked.add(key)
    assert len(linked) >= PEOPLE * 0.2
    assert len(anonymous) > len(linked), "some devices stay anonymous"


def test_attribute_only_store_purchases(dataset):
    distinct = {e["event_id"]: e for e, _ in dataset["valid"]}.values()
    purchases = [e for e in distinct if e["event_type"] == "store_purchase"]
    bare = [e for e in purchases if not e["identifiers"]]
    assert bare
    for e in bare:
        assert {"first_name", "last_name", "postcode"} <= set(e["attributes"])
    assert 0.005 <= len(bare) / len(purchases) <= 0.05
    assert dataset["stats"]["attribute_only_events"] == len(bare)
