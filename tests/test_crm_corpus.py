"""The independent CRM corpus generator (benchmarks/crm_corpus.py): determinism, the input contract, the
truth file, and that the simulated world has what it promises, measured from the files it writes."""

from __future__ import annotations

import csv
import difflib
import json
import random
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest

from schemas.channel import RejectedInput, parse_event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import crm_corpus  # noqa: E402


def _generate(tmp_path: Path, people: int, seed: int, tag: str = "") -> tuple[Path, Path, dict]:
    ev, tr = tmp_path / f"events{tag}.jsonl", tmp_path / f"truth{tag}.csv"
    stats = crm_corpus.write_corpus(ev, tr, people=people, seed=seed)
    return ev, tr, stats


class Corpus:
    """The files of one run, read back: lines, parsed valid events (first occurrence) and truth."""

    def __init__(self, ev: Path, tr: Path, stats: dict):
        self.stats = stats
        self.raw = ev.read_bytes()
        self.lines = self.raw.decode("utf-8").split("\n")
        assert self.lines[-1] == ""
        self.lines = self.lines[:-1]
        with open(tr, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        self.header, self.rows = rows[0], rows[1:]
        self.truth = {r[0]: (r[1], r[2]) for r in self.rows}
        self.valid, self.rejected = [], []
        for i, line in enumerate(self.lines):
            try:
                self.valid.append((i, parse_event(line)))
            except RejectedInput as exc:
                self.rejected.append((i, line, exc))
        self.events, seen = [], set()
        for _, ev in self.valid:
            if ev.event_id not in seen:
                seen.add(ev.event_id)
                self.events.append(ev)

    def person(self, ev) -> str:
        return self.truth[ev.event_id][0]

    def household(self, ev) -> str:
        return self.truth[ev.event_id][1]


PEOPLE = 1200


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Corpus:
    tmp = tmp_path_factory.mktemp("crm")
    return Corpus(*_generate(tmp, people=PEOPLE, seed=7))


def _ids(ev, key):
    v = ev.identifiers.get(key)
    return v if v is not None and v.strip() else None


# ---------------------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a_ev, a_tr, a_stats = _generate(tmp_path, 120, 3, "a")
    b_ev, b_tr, b_stats = _generate(tmp_path, 120, 3, "b")
    c_ev, c_tr, _ = _generate(tmp_path, 120, 4, "c")
    assert a_ev.read_bytes() == b_ev.read_bytes()
    assert a_tr.read_bytes() == b_tr.read_bytes()
    assert a_stats == b_stats
    assert a_ev.read_bytes() != c_ev.read_bytes()
    assert a_tr.read_bytes() != c_tr.read_bytes()


def test_uses_no_global_random_and_no_clock(tmp_path, monkeypatch):
    expected = _generate(tmp_path, 60, 11, "ref")[0].read_bytes()

    def boom(*a, **k):
        raise AssertionError("global random or clock used")

    for name in ("random", "choice", "choices", "randint", "randrange", "shuffle", "sample", "uniform", "gauss",
                 "expovariate", "lognormvariate", "getrandbits", "seed"):
        monkeypatch.setattr(random, name, boom)
    import time

    monkeypatch.setattr(time, "time", boom)
    monkeypatch.setattr(time, "time_ns", boom)
    assert _generate(tmp_path, 60, 11, "patched")[0].read_bytes() == expected


def test_cli_prints_the_stats(tmp_path, capsys):
    ev, tr = tmp_path / "e.jsonl", tmp_path / "t.csv"
    assert crm_corpus.main(["--people", "40", "--seed", "2", "--out", str(ev), "--truth", str(tr)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == crm_corpus.write_corpus(tmp_path / "e2.jsonl", tmp_path / "t2.csv", people=40, seed=2)
    assert ev.read_bytes() == (tmp_path / "e2.jsonl").read_bytes()


# ---------------------------------------------------------------------------------------------------------
# the input contract and the truth file


def test_valid_lines_parse_and_truth_matches(world):
    c = world
    assert c.header == ["event_id", "person_id", "household_id"]
    assert len(c.truth) == len(c.rows), "an event_id twice in truth"
    distinct = {ev.event_id for _, ev in c.valid}
    assert distinct == set(c.truth)
    # a valid line is either the first of its id or a byte-identical re-send
    first_line: dict[str, str] = {}
    for i, ev in c.valid:
        if ev.event_id in first_line:
            assert c.lines[i] == first_line[ev.event_id]
        else:
            first_line[ev.event_id] = c.lines[i]
    for ev in c.events:
        assert ev.channel in ("web", "app", "email", "call_center", "store", "chat", "social", "loyalty")
        assert ev.occurred_at.tzinfo is not None
    # written in occurred_at order, within the two years
    times = [ev.occurred_at for _, ev in c.valid]
    assert all(a <= b for a, b in zip(times, times[1:]))
    assert times[0] >= datetime.fromisoformat("2023-01-01T00:00:00+00:00")
    assert times[-1] < datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    assert (times[-1] - times[0]).days > 700
    # every occurred_at carries an explicit offset
    for _, ev in c.valid[:2000]:
        raw = json.loads(c.lines[_])["occurred_at"]
        assert re.search(r"(Z|[+-]\d\d:\d\d)$", raw), raw


def test_malformed_lines_are_rejected_and_absent_from_truth(world):
    c = world
    assert c.rejected, "no malformed lines"
    reasons = Counter(exc.reason for _, _, exc in c.rejected)
    assert {"not valid JSON", "missing occurred_at", "occurred_at is not a date-time"} <= set(reasons)
    for _, line, exc in c.rejected:
        eid = exc.event_id
        if eid is None:
            try:
                obj = json.loads(line)
                eid = obj.get("event_id") if isinstance(obj, dict) else None
            except ValueError:
                m = re.search(r'"event_id": "([^"]+)"', line)
                eid = m.group(1) if m else None
        if eid is not None:
            assert eid not in c.truth
    # malformed lines are a small share
    assert len(c.rejected) < 0.02 * len(c.lines)


def test_stats_are_consistent_with_the_files(world):
    c, s = world, world.stats
    assert s["lines"] == len(c.lines)
    assert s["events"] == len(c.rows) == len(c.events)
    assert s["malformed"] == len(c.rejected)
    assert s["duplicates"] == len(c.valid) - len(c.events)
    assert s["lines"] == s["events"] + s["duplicates"] + s["malformed"]
    persons = {p for p, _ in c.truth.values()}
    assert s["people"] == PEOPLE == len(persons)
    households = {h for _, h in c.truth.values() if h}
    assert s["households"] == len(households)
    assert s["people_in_households"] == len({p for p, h in c.truth.values() if h})
    assert s["people_living_alone"] == len({p for p, h in c.truth.values() if not h})
    assert s["channels"] == dict(sorted(Counter(ev.channel for ev in c.events).items()))
    assert s["event_types"] == dict(sorted(Counter(ev.event_type for ev in c.events).items()))


def test_event_ids_are_opaque(world):
    persons = {p for p, _ in world.truth.values()}
    for ev in world.events[:3000]:
        assert not any(p in ev.event_id for p in (world.person(ev), world.household(ev)) if p)
    assert len(persons) > 1


# ---------------------------------------------------------------------------------------------------------
# the world has what it promises


def test_channels_types_and_payloads(world):
    c = world
    assert {ev.channel for ev in c.events} == {"web", "app", "email", "call_center", "store", "chat", "social",
                                                 "loyalty"}
    wanted = {"page_view", "login", "signup", "purchase", "refund", "store_purchase", "case_opened",
              "case_resolved", "chat_message", "email_open", "email_click", "social_mention", "loyalty_enrol",
              "points_redeemed"}
    assert wanted <= {ev.event_type for ev in c.events}
    for ev in c.events:
        if ev.event_type in ("purchase", "store_purchase", "refund"):
            assert isinstance(ev.payload["amount"], (int, float)) and ev.payload["currency"] in ("GBP", "EUR",
                                                                                               "USD", "INR")
        if ev.event_type in ("case_opened", "case_resolved"):
            assert ev.payload["case_id"]
        if "csat" in ev.payload:
            assert ev.event_type == "case_resolved" and ev.payload["csat"] in (1, 2, 3, 4, 5)
        if ev.event_type == "page_view":
            assert not any(ev.attributes.values())
    assert any("csat" in ev.payload for ev in c.events)
    opened = {ev.payload["case_id"] for ev in c.events if ev.event_type == "case_opened"}
    resolved = {ev.payload["case_id"] for ev in c.events if ev.event_type == "case_resolved"}
    assert resolved <= opened and 0.5 < len(resolved) / len(opened) < 0.95


def test_events_per_person(world):
    per = Counter(world.person(ev) for ev in world.events)
    n = len(per)
    assert 5 <= sum(per.values()) / n <= 25
    assert sum(1 for v in per.values() if v <= 2) > 0.05 * n
    assert sum(1 for v in per.values() if 5 <= v <= 30) > 0.4 * n
    assert sum(1 for v in per.values() if v > 30) > 0.03 * n
    channels = defaultdict(set)
    for ev in world.events:
        channels[world.person(ev)].add(ev.channel)
    assert sum(1 for v in channels.values() if len(v) >= 3) > 0.4 * n


def test_loyalty_ids_in_several_spellings(world):
    spellings = defaultdict(set)
    persons = defaultdict(set)
    for ev in world.events:
        v = _ids(ev, "loyalty_id")
        if v:
            num = re.sub(r"\D", "", v)
            spellings[(world.person(ev), num)].add(v)
            persons[num].add(world.person(ev))
    multi = [k for k, v in spellings.items() if len(v) >= 2]
    assert len(multi) >= 10
    forms = {re.sub(r"\d", "9", v) for vs in spellings.values() for v in vs}
    assert {"LY-9999-9999", "LY99999999", "9999 9999", "99999999"} <= forms
    # a card used by several strangers: a shop's own card lent at the till
    households = defaultdict(set)
    for ev in world.events:
        v = _ids(ev, "loyalty_id")
        if v:
            households[re.sub(r"\D", "", v)].add(world.household(ev) or world.person(ev))
    assert any(len(h) >= 3 for h in households.values())


def test_phones_in_many_formats_and_countries(world):
    phones = [(_ids(ev, "phone"), world.person(ev)) for ev in world.events if _ids(ev, "phone")]
    values = [v for v, _ in phones]
    # foreign numbers written in international form
    foreign = [v for v in values if re.match(r"^(\+|00 ?)(1|33|34|49|91|353)[\s\-(]*\d", v)]
    assert len({re.match(r"^(\+|00 ?)(\d+?)[\s\-(]", v + " ").group(2)[:3] for v in foreign}) >= 4
    assert any(v.startswith("+44") for v in values) and any(v.startswith("0044") for v in values)
    assert any(re.match(r"^0\d{2,4}[ \-]", v) for v in values)  # national with spaces or dashes
    assert any(re.match(r"^\(\d{3}\) \d{3}-\d{4}$", v) for v in values)  # US national
    # one person's number written in several ways
    by_person = defaultdict(lambda: defaultdict(set))
    for v, p in phones:
        by_person[p][re.sub(r"\D", "", v)[-9:]].add(v)
    assert sum(1 for d in by_person.values() for s in d.values() if len(s) >= 3) >= 5
    # drama / test ranges (UK 01632 960, 07700 900, 020 7946 0; US 555-01xx) in more than one format
    test = [v for v in values if re.search(r"1632 ?960|7700 ?900|20 ?7946 ?0|555[-. ]?01\d\d", v)]
    assert len(test) >= 5 and len({re.sub(r"\d", "9", v) for v in test}) >= 3
    # placeholders typed by staff
    assert sum(1 for v in values if v in ("0000000000", "123456789", "n/a", "N/A", "1234567890")) >= 3


def test_email_variants_typos_and_placeholders(world):
    by_person = defaultdict(set)
    for ev in world.events:
        v = _ids(ev, "email")
        if v:
            by_person[world.person(ev)].add(v)
    all_values = [v for vs in by_person.values() for v in vs]
    assert any("+" in v.split("@")[0] for v in all_values)
    assert any(v != v.lower() for v in all_values)
    assert any("googlemail.com" in v.lower() for v in all_values)
    # one person, same mailbox, different case or spelling
    assert sum(1 for vs in by_person.values() if len({v.strip().lower() for v in vs}) < len(vs)) >= 10
    # agent typos: one person, two addresses a letter or two apart (not just case, dots or a +tag)
    def plain(v):
        local, _, dom = v.strip().lower().partition("@")
        return local.split("+")[0].replace(".", "") + "@" + dom

    typos = 0
    for vs in by_person.values():
        forms = sorted({plain(v) for v in vs})
        typos += any(0.85 < difflib.SequenceMatcher(None, a, b).ratio() < 1
                     for i, a in enumerate(forms) for b in forms[i + 1:])
    assert typos >= 5
    # placeholders shared by strangers
    users = defaultdict(set)
    for ev in world.events:
        v = _ids(ev, "email")
        if v:
            users[v.strip().lower()].add(world.person(ev))
    placeholders = [v for v in users if v.startswith(("noemail@", "none@", "na@", "n/a"))]
    assert any(len(users[v]) >= 3 for v in placeholders)


def test_household_mailbox_shared_by_members(world):
    users = defaultdict(set)
    firsts = defaultdict(set)
    for ev in world.events:
        v = _ids(ev, "email")
        if v:
            users[v.strip().lower()].add((world.person(ev), world.household(ev)))
    shared = [v for v, us in users.items()
              if len({p for p, _ in us}) >= 2 and len({h for _, h in us}) == 1 and next(iter(us))[1]]
    assert len(shared) >= 5
    for ev in world.events:
        v = _ids(ev, "email")
        if v and v.strip().lower() in shared and ev.attributes.get("first_name"):
            firsts[v.strip().lower()].add(ev.attributes["first_name"].lower())
    assert any(len(f) >= 2 for f in firsts.values())


def test_devices_shared_by_strangers_and_by_households(world):
    persons = defaultdict(set)
    homes = defaultdict(set)
    for ev in world.events:
        v = _ids(ev, "device_id")
        if v:
            persons[v].add(world.person(ev))
            homes[v].add(world.household(ev) or world.person(ev))
    assert any(len(p) >= 5 for p in persons.values())  # POS terminals, kiosks
    family = [d for d, p in persons.items() if len(p) >= 2 and len(homes[d]) == 1]
    assert len(family) >= 10  # family tablets, laptops, TV apps
    # events carrying only a shared device still belong to the one person who was there
    only_pos = [ev for ev in world.events if set(k for k, v in ev.identifiers.items() if v) == {"device_id"}
                and len(persons[ev.identifiers["device_id"]]) >= 5]
    assert only_pos and all(world.truth[ev.event_id][0] for ev in only_pos)


def test_anonymous_browsing_then_login(world):
    seq = defaultdict(list)
    for ev in world.events:
        d = _ids(ev, "device_id")
        if d:
            seq[d].append(ev)
    anon_then_login = never = 0
    for d, evs in seq.items():
        persons = {world.person(e) for e in evs}
        with_email = [i for i, e in enumerate(evs) if _ids(e, "email")]
        if len(persons) == 1 and with_email and with_email[0] > 0 \
                and all(set(k for k, v in e.identifiers.items() if v) == {"device_id"} for e in evs[:with_email[0]]):
            anon_then_login += 1
        if not with_email and all(e.event_type == "page_view" for e in evs):
            never += 1
    assert anon_then_login >= 50
    assert never >= 50


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in s if not unicodedata.combining(ch)).lower().strip()


def test_surname_changes_mid_stream(world):
    names = defaultdict(list)
    firsts = defaultdict(set)
    for ev in world.events:
        if ev.payload.get("gift"):  # a present shipped to someone else carries their name
            continue
        if ev.attributes.get("last_name"):
            names[world.person(ev)].append(_fold(ev.attributes["last_name"]))
        if ev.attributes.get("first_name"):
            firsts[world.person(ev)].add(_fold(ev.attributes["first_name"]))
    changed = []
    for p, seq in names.items():
        counts = Counter(seq)
        a, b = seq[0], seq[-1]  # the first name seen, the last name seen
        if a == b or max(counts[a], counts[b]) < 2 or a in firsts[p] or b in firsts[p]:
            continue
        if difflib.SequenceMatcher(None, a, b).ratio() < 0.6 and seq.index(b) > seq.index(a):
            changed.append(p)
    assert len(changed) >= 2


def test_names_vary(world):
    firsts = defaultdict(set)
    for ev in world.events:
        if ev.attributes.get("first_name"):
            firsts[world.person(ev)].add(_fold(ev.attributes["first_name"]))
    assert sum(1 for v in firsts.values() if len(v) >= 2) >= 30  # nicknames, by-ear spellings, swaps
    all_first = {f for v in firsts.values() for f in v}
    assert len(all_first) > 250
    assert any(ch in "".join(all_first) for ch in "ıłş") or any(not f.isascii() for f in all_first)
    # nickname pairs seen for the same person
    pairs = [("katherine", "kate"), ("william", "bill"), ("robert", "bob"), ("alejandro", "alex"),
             ("elizabeth", "liz"), ("michael", "mike"), ("thomas", "tom"), ("jennifer", "jen"), ("daniel", "dan"),
             ("christopher", "chris"), ("rebecca", "becky"), ("katarzyna", "kasia"), ("francisco", "paco"),
             ("james", "jim"), ("margaret", "maggie"), ("samuel", "sam"), ("alexander", "alex")]
    assert any(a in v and b in v for v in firsts.values() for a, b in pairs)


def _parse_dob(s: str):
    s = s.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d %b %Y", "%d.%m.%Y", "%d %B %Y", "%B %d, %Y", "%d/%m/%y", "%d-%m-%Y"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            pass
    return None


def test_dates_of_birth_formats_twins_and_juniors(world):
    dobs = [ev.attributes["date_of_birth"] for ev in world.events if ev.attributes.get("date_of_birth")]
    shapes = {re.sub(r"[A-Za-z]+", "a", re.sub(r"\d", "9", v)) for v in dobs}
    assert {"9999-99-99", "99/99/9999", "9999"} <= shapes
    assert any(re.match(r"^\d{1,2} [A-Z][a-z]{2} \d{4}$", v) for v in dobs)
    assert len(shapes) >= 6
    # twins: two members of one household, same surname and birth date, different first names
    seen = defaultdict(set)
    for ev in world.events:
        a = ev.attributes
        h = world.household(ev)
        d = _parse_dob(a.get("date_of_birth") or "")
        if h and d and not (d.month == 1 and d.day == 1):
            seen[(h, d)].add(world.person(ev))
    twins = [k for k, v in seen.items() if len(v) >= 2]
    assert twins, "no twins found"
    # Jr.: a parent and a child with one name at one address
    jr = [ev for ev in world.events
          if re.search(r"\bjr\b|junior", _fold(ev.attributes.get("first_name", "") or "") + " "
                       + _fold(ev.attributes.get("last_name", "") or ""))]
    assert jr
    same_first = defaultdict(set)
    for ev in world.events:
        h = world.household(ev)
        if h and ev.attributes.get("first_name") and not ev.payload.get("gift"):
            same_first[(h, _fold(ev.attributes["first_name"]).split(" ")[0])].add(world.person(ev))
    assert any(len(v) >= 2 for v in same_first.values())


def test_people_move_house(world):
    postcodes = defaultdict(list)
    for ev in world.events:
        pc = ev.attributes.get("postcode")
        if pc:
            postcodes[world.person(ev)].append(re.sub(r"\s", "", pc).upper())
    moved = sum(1 for seq in postcodes.values() if seq and Counter(seq).most_common(1)[0][1] >= 2
                and seq[-1] != seq[0] and seq.count(seq[-1]) >= 1 and len(set(seq)) >= 2)
    assert moved >= 10
    updates = [ev for ev in world.events if ev.event_type == "profile_update" and ev.payload.get("changed") == "address"]
    assert updates


def test_several_countries_and_time_zones(world):
    offsets = {re.search(r"(Z|[+-]\d\d:\d\d)$", line).group(1)
               for _, line in ((i, world.lines[i]) for i, _ in world.valid[:20000])
               for line in [json.loads(line)["occurred_at"]]}
    assert {"Z", "+00:00", "+01:00", "+05:30"} <= offsets and any(o.startswith("-0") for o in offsets)
    currencies = {ev.payload.get("currency") for ev in world.events if ev.payload.get("currency")}
    assert currencies == {"GBP", "EUR", "USD", "INR"}
    postcodes = [ev.attributes["postcode"] for ev in world.events if ev.attributes.get("postcode")]
    assert any(re.match(r"^[A-Z]{1,2}\d{1,2} ?\d[A-Z]{2}$", p) for p in postcodes)  # UK
    assert any(re.match(r"^\d{5}$", p) for p in postcodes)  # DE / FR / ES / US
    assert any(re.match(r"^\d{6}$", p) for p in postcodes)  # India
    assert any(re.match(r"^[A-Z]\d{2} ?[A-Z0-9]{4}$", p) for p in postcodes)  # Eircode


def test_every_truth_person_and_household_is_real(world):
    # a person belongs to one household only
    hh = defaultdict(set)
    for p, h in world.truth.values():
        hh[p].add(h)
    assert all(len(v) == 1 for v in hh.values())
    sizes = Counter(h for h in {v for vs in hh.values() for v in vs} if h)
    members = defaultdict(set)
    for p, h in world.truth.values():
        if h:
            members[h].add(p)
    assert all(len(v) >= 2 for v in members.values())
    assert sizes


def test_small_and_odd_sizes(tmp_path):
    for n in (1, 2, 7):
        ev, tr, stats = _generate(tmp_path, n, 5, str(n))
        c = Corpus(ev, tr, stats)
        assert stats["people"] == n == len({p for p, _ in c.truth.values()})
        assert stats["events"] == len(c.events) >= n
    with pytest.raises(ValueError):
        crm_corpus.write_corpus(tmp_path / "x", tmp_path / "y", people=0)
    assert date(2023, 1, 1)  # keep the import honest


def test_a_phone_range_for_tests_used_up_gives_real_numbers_instead():
    # (the GB mobile range for drama has 1,000 numbers: a corpus of 25,000 people used to stop there)
    world = crm_corpus.World(people=1, seed=3)
    phones = [world.mobile("GB", test=True) for _ in range(1100)]
    assert len({p.e164() for p in phones}) == 1100
    assert sum(p.test for p in phones) == 1000
    assert all(p.e164().startswith("+447700900") for p in phones if p.test)
    assert not any(p.e164().startswith("+447700900") for p in phones if not p.test)
    city = world.city("US")  # (100 numbers for drama per area code)
    us = [world.landline(city, test=True) for _ in range(100 * len(city.land) + 10)]
    assert len({p.e164() for p in us}) == len(us) and any(not p.test for p in us)
