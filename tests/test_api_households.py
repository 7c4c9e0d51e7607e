"""Households in the lookup API: the same ``household`` as ``idres lookup`` gives, read from a map the
follower recomputes in its own thread (at most once per ``HOUSEHOLDS_INTERVAL`` while entries keep
arriving), never computed per request.

The data go through the real ingest (``idres ingest`` in another process), and the households are known
by construction: Tom and Susan Smith (different first names and dates of birth, each with an identifier
of their own) share the family mailbox thesmithfamily@fastmail.com, so it is found shared and ties them;
Ola Nordmann shares nothing with anyone. (Not @example.com: that domain is a placeholder and never links.)
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import httpx
import orjson
import pytest

from streams.api import HOUSEHOLDS_INTERVAL, POLL_INTERVAL, Follower, create_app
from streams.embedded import EmbeddedEngine
from tests.cli_helpers import run_cli
from tests.test_api import start_server

FAMILY_MAILBOX = "email:thesmithfamily@fastmail.com"
TOM_PHONE = "+447700900201"
SUSAN_LOYALTY = "LY-5555-0001"
OLA_PHONE = "+4741234567"
NORDMANN_MAILBOX = "email:nordmannfamily@fastmail.com"
KARI_PHONE = "+4798765432"


def event(event_id: str, day: int, identifiers: dict, first: str, last: str, dob: str, **extra) -> dict:
    return {"event_id": event_id, "occurred_at": f"2025-03-{day:02d}T09:00:00Z", "channel": extra.pop("channel", "web"),
            "event_type": extra.pop("event_type", "signup"), "identifiers": identifiers,
            "attributes": {"first_name": first, "last_name": last, "date_of_birth": dob}, **extra}


SMITHS_AND_OLA = [
    event("tom-1", 1, {"email": "thesmithfamily@fastmail.com", "phone": "+44 7700 900201"}, "Tom", "Smith",
          "1971-04-12"),
    event("susan-1", 2, {"email": "TheSmithFamily@fastmail.com", "loyalty_id": SUSAN_LOYALTY}, "Susan", "Smith",
          "1974-09-30", channel="store", event_type="purchase", payload={"amount": 25.5}),
    event("ola-1", 3, {"email": "ola.nordmann@fastmail.com", "phone": "+47 412 34 567"}, "Ola", "Nordmann",
          "1990-01-01"),
]

# Ola gives the family mailbox, then Kari (another first name and date of birth) uses it too: a household
NORDMANNS = [
    event("ola-2", 10, {"email": "nordmannfamily@fastmail.com", "phone": "+47 412 34 567"}, "Ola", "Nordmann",
          "1990-01-01", event_type="login"),
    event("kari-1", 11, {"email": "nordmannfamily@fastmail.com", "phone": "+47 987 65 432"}, "Kari", "Nordmann",
          "1992-06-15"),
]


def write_events(path: Path, events: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def cli_lookup(data: Path, spec: str) -> dict:
    return orjson.loads(run_cli("lookup", spec, "--data-dir", str(data)).stdout)


@pytest.fixture(scope="module")
def smiths(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("households")
    data = root / "data"
    run_cli("ingest", str(write_events(root / "smiths.jsonl", SMITHS_AND_OLA)), "--data-dir", str(data))
    return data


@pytest.fixture(scope="module")
def client(smiths):
    server = start_server(smiths)
    try:
        with httpx.Client(base_url=server.base, timeout=10.0) as c:
            yield c
    finally:
        server.stop()


class InProcess:
    """The application called in this process, with no lifespan (so no follower thread of its own)."""

    def __init__(self, app) -> None:
        self.transport = httpx.ASGITransport(app=app)

    def get(self, path: str, params: dict | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://idres") as c:
                resp = await c.get(path, params=params)
                await resp.aread()
                return resp

        return asyncio.run(call())


def lookup(c: httpx.Client | InProcess, id_type: str, value: str) -> dict:
    resp = c.get("/v1/lookup", params={"type": id_type, "value": value})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_family_mailbox_is_a_household_in_the_api_as_in_the_cli(client, smiths):
    tom = lookup(client, "phone", "+44 7700 900201")
    susan = lookup(client, "loyalty_id", SUSAN_LOYALTY)
    assert tom["profile_id"] != susan["profile_id"]  # related, not merged
    assert tom["household"] == {"household_id": tom["household"]["household_id"], "others": [susan["profile_id"]],
                                "via": [FAMILY_MAILBOX]}
    assert tom["household"]["household_id"].startswith("h_")
    assert tom["household_as_of"] is None  # nothing arrived since: as current as the profile
    by_id = client.get(f"/v1/profiles/{susan['profile_id']}").json()
    assert by_id["household"] == {"household_id": tom["household"]["household_id"], "others": [tom["profile_id"]],
                                  "via": [FAMILY_MAILBOX]}
    assert by_id["household_as_of"] is None
    # the mailbox itself identifies nobody
    assert client.get("/v1/lookup", params={"type": "email", "value": "thesmithfamily@fastmail.com"}).status_code == 409
    # one shape, one answer: `idres lookup` and `idres show` say the same
    assert cli_lookup(smiths, f"phone={TOM_PHONE}")["household"] == tom["household"]
    shown = orjson.loads(run_cli("show", susan["profile_id"], "--data-dir", str(smiths)).stdout)
    assert shown["household"] == by_id["household"]


def test_a_customer_in_no_household_gets_null(client, smiths):
    ola = lookup(client, "phone", OLA_PHONE)
    assert ola["household"] is None and ola["household_as_of"] is None
    assert client.get(f"/v1/profiles/{ola['profile_id']}").json()["household"] is None
    assert cli_lookup(smiths, f"phone={OLA_PHONE}")["household"] is None


def test_the_openapi_document_describes_the_household():
    schema = create_app(Follower(Path("."))).openapi()["components"]["schemas"]
    for model in ("CustomerView", "LookupResult"):
        props = schema[model]["properties"]
        assert {"$ref": "#/components/schemas/Household"} in props["household"]["anyOf"]
        assert props["household"]["description"] and props["household_as_of"]["description"]
    assert set(schema["Household"]["required"]) == {"household_id", "others", "via"}


def test_a_household_made_by_new_events_shows_within_the_bound(smiths, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smiths, data, ignore=shutil.ignore_patterns("LOCK"))
    server = start_server(data)
    try:
        with httpx.Client(base_url=server.base, timeout=10.0) as c:
            ola = lookup(c, "phone", OLA_PHONE)
            assert ola["household"] is None
            run_cli("ingest", str(write_events(tmp_path / "nordmanns.jsonl", NORDMANNS)), "--data-dir", str(data))
            written = time.monotonic()
            bound = HOUSEHOLDS_INTERVAL + POLL_INTERVAL + 1.0  # + one computation (a few ms here) and slack
            deadline = written + bound + 10.0  # wait longer than the bound, to report by how much it was missed
            while True:
                ola = lookup(c, "phone", OLA_PHONE)
                if ola["household"] is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            took = time.monotonic() - written
            assert ola["household"] is not None, "the household never showed"
            assert took <= bound, f"the household showed after {took:.1f} s, not within {bound:.1f} s"
            kari = lookup(c, "phone", KARI_PHONE)
            assert ola["household"]["others"] == [kari["profile_id"]]
            assert ola["household"]["via"] == [NORDMANN_MAILBOX]
            assert ola["event_count"] == 2
    finally:
        server.stop()
    assert cli_lookup(data, f"phone={OLA_PHONE}")["household"] == ola["household"]


def test_a_stale_household_says_as_of_when(smiths, tmp_path):
    """In process, without the follower's thread: the steps it takes, one at a time."""
    data = tmp_path / "data"
    shutil.copytree(smiths, data, ignore=shutil.ignore_patterns("LOCK"))
    follower = Follower(data, households_interval=3600)
    follower.load()
    assert follower.refresh_households(force=True)
    before = follower.views.seq
    assert follower.households[0] == before and not follower.refresh_households(force=True)  # nothing new
    follower.ready.set()
    c = InProcess(create_app(follower))
    try:
        run_cli("ingest", str(write_events(tmp_path / "nordmanns.jsonl", NORDMANNS)), "--data-dir", str(data))
        assert follower.poll() >= 1
        now = follower.views.seq
        assert not follower.refresh_households()  # the last computation is recent: not yet
        ola = lookup(c, "phone", OLA_PHONE)
        assert ola["event_count"] == 2  # the profile is current...
        assert ola["household"] is None and ola["household_as_of"] == before  # ...its household is not, and says so
        kari = lookup(c, "phone", KARI_PHONE)  # newer than the households
        assert kari["household"] is None and kari["household_as_of"] == before
        follower.households_interval = 0.0
        assert follower.refresh_households()
        assert follower.households[0] == now > before
        ola, kari = lookup(c, "phone", OLA_PHONE), lookup(c, "phone", KARI_PHONE)
        assert ola["household"]["others"] == [kari["profile_id"]] and ola["household_as_of"] is None
        assert kari["household"]["others"] == [ola["profile_id"]] and kari["household_as_of"] is None
        metrics = c.get("/metrics").text
        assert f"idres_households_seq {now}\n" in metrics and "idres_households_computed_total 2\n" in metrics
    finally:
        follower.stop()


def test_while_entries_keep_arriving_households_are_recomputed_at_most_once_per_interval(smiths, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smiths, data, ignore=shutil.ignore_patterns("LOCK"))
    interval = 0.5
    follower = Follower(data, poll_interval=0.02, households_interval=interval)
    follower.start()
    try:
        assert follower.ready.wait(30) and follower.error is None
        first = follower.households_computed
        assert first == 1 and follower.households[0] == follower.views.seq
        shown_after = None
        with EmbeddedEngine(data) as writer:  # another process in production
            started = time.monotonic()
            i = 0
            # an event every 20 ms or so, for 3 seconds and at least 30 entries (a busy machine writes fewer)
            while time.monotonic() - started < 3.0 or (i < 30 and time.monotonic() - started < 60.0):
                i += 1
                filler = {"event_id": f"walk-in-{i}", "occurred_at": "2025-03-20T09:00:00Z", "channel": "web",
                          "event_type": "login", "identifiers": {"email": f"walk.in.{i}@fastmail.com"}}
                writer.ingest_stream([orjson.dumps(filler) + b"\n"], f"filler-{i}")
                if i == 10:
                    made = time.monotonic()
                    writer.ingest_stream([orjson.dumps(e) + b"\n" for e in NORDMANNS], "nordmanns")
                    kari_seq = len(writer.log)
                if i > 10 and shown_after is None and follower.households[0] >= kari_seq:
                    shown_after = time.monotonic() - made
                time.sleep(0.02)
            elapsed = time.monotonic() - started
            appended = len(writer.log)
        computed = follower.households_computed - first
        assert i >= 30, "the writer was too slow to keep entries arriving (30 in a minute)"
        # at most once per interval (each computation starts at least `interval` after the previous ended)
        assert 1 <= computed <= elapsed / interval + 1, (computed, elapsed)
        assert computed < i / 4  # far fewer computations than entries: the bound, not each poll, decides
        assert shown_after is not None and shown_after <= interval + 1.5, shown_after
        deadline = time.monotonic() + 10
        while follower.households[0] < appended and time.monotonic() < deadline:
            time.sleep(0.02)
        assert follower.households[0] == follower.views.seq == appended  # and once quiet, it catches up
        houses = follower.households[1]
        ola = follower.views.lookup_node(f"phone:{OLA_PHONE}")["profile_id"]
        kari = follower.views.lookup_node(f"phone:{KARI_PHONE}")["profile_id"]
        assert houses[ola]["members"] == sorted([ola, kari]) and houses[ola]["via"] == [NORDMANN_MAILBOX]
    finally:
        follower.stop()


def test_households_that_take_long_to_compute_are_computed_less_often(smiths, tmp_path):
    """A computation takes a pass over every event: the longer it took, the longer the follower waits before the
    next (nine times as long: a tenth of its time at most), however short the interval."""
    from projections.households import SHARE, rest_after

    data = tmp_path / "data"
    shutil.copytree(smiths, data, ignore=shutil.ignore_patterns("LOCK"))
    follower = Follower(data, households_interval=0.0)
    follower.load()
    assert follower.refresh_households(force=True)
    run_cli("ingest", str(write_events(tmp_path / "nordmanns.jsonl", NORDMANNS)), "--data-dir", str(data))
    assert follower.poll() >= 1
    follower.households_seconds = 2.0  # (as if the last computation had taken 2 s, ended now)
    follower._households_done = time.monotonic()
    assert not follower.refresh_households()
    follower._households_done = time.monotonic() - 17.0  # (17 s ago: not yet 18)
    assert not follower.refresh_households()
    follower._households_done = time.monotonic() - 18.5
    assert follower.refresh_households() and follower.households[0] == follower.views.seq
    for interval, took in ((5.0, 0.01), (5.0, 0.5), (5.0, 3.0), (0.0, 0.0), (60.0, 10.0)):
        rest = rest_after(interval, took)
        assert rest >= interval and (took == 0 or took / (took + rest) <= SHARE + 1e-9)
        assert rest == interval or abs(took / (took + rest) - SHARE) < 1e-9  # (no longer than either asks)
    follower.stop()


def test_a_configured_device_type_ties_a_home_alike_in_the_api_the_cli_and_the_snapshot(tmp_path):
    """With a weak device type of the rules' own, `idres lookup`, `idres show` and the snapshot counted the built-in
    types' devices alone as devices: a tablet found shared for its many emails (no home's sign) tied its users
    into a household there, and not in the API. A tablet found shared for its users' first names ties one."""
    import duckdb

    rules = tmp_path / "rules.toml"
    rules.write_text('[identifier_types.tablet_id]\nkind = "device"\nweak = true\nmax_cooccurring = { email = 2 }\n'
                     '[identifier_types.home_tablet]\nkind = "device"\nweak = true\n'
                     'max_cooccurring = { first_name = 1 }\n')
    kiosk = [event(f"k{n}", n + 1, {"email": f"{who}@mailbox.net", "tablet_id": "TAB-1"}, "", "", "",
                   channel="app") for n, who in enumerate(["amy", "ben", "cat"])]
    family = [event(f"f{n}", n + 5, {"email": f"{who}@mailbox.net", "home_tablet": "FAM-9"}, first, "Orr", "",
                    channel="app") for n, (who, first) in enumerate([("dan", "Dan"), ("eve", "Eve")])]
    for e in kiosk:
        e["attributes"] = {}
    for e in family:
        del e["attributes"]["date_of_birth"]
    events = write_events(tmp_path / "t.jsonl", kiosk + family)
    data = tmp_path / "data"
    run_cli("ingest", str(events), "--data-dir", str(data), "--config", str(rules))
    from streams.settings import load_settings

    config, _ = load_settings(str(rules))
    follower = Follower(data, config=config)
    follower.load()
    follower.refresh_households(force=True)
    follower.ready.set()
    app = InProcess(create_app(follower))
    snap = tmp_path / "s.duckdb"
    run_cli("snapshot", "--data-dir", str(data), "--config", str(rules), "--out", str(snap), "--no-predict")
    with duckdb.connect(str(snap), read_only=True) as con:
        rows = con.execute("SELECT DISTINCT household_id, members, via FROM households").fetchall()
    for who in ("amy", "dan"):
        api = lookup(app, "email", f"{who}@mailbox.net")["household"]
        cli = orjson.loads(run_cli("lookup", f"email={who}@mailbox.net", "--data-dir", str(data), "--config",
                                   str(rules)).stdout)["household"]
        assert api == cli, who
    assert lookup(app, "email", "amy@mailbox.net")["household"] is None
    dan = lookup(app, "email", "dan@mailbox.net")["household"]
    assert dan["via"] == ["home_tablet:fam-9"] and rows == [(dan["household_id"], 2, ["home_tablet:fam-9"])]


def test_a_household_keeps_its_id_when_a_member_joins_by_an_address(tmp_path):
    """Ann and Tom on one landline were a household named by the phone; Sue joining at Ann's address renamed it
    (the ID was the smallest of its ties, and "address:" sorts first)."""
    ann = {"address": "3 Oak Rd", "postcode": "LS1 1AA"}
    first = [event("ann-1", 1, {"email": "ann@mailbox.net", "phone": "+44 113 496 0000"}, "Ann", "Lee", "1970-01-01"),
             event("ann-2", 2, {"email": "ann@mailbox.net", "phone": "+44 113 496 0000"}, "Ann", "Lee", "1970-01-01"),
             event("tom-1", 3, {"email": "tom@mailbox.net", "phone": "+44 113 496 0000"}, "Tom", "Lee", "1999-09-09"),
             event("tom-2", 4, {"email": "tom@mailbox.net", "phone": "+44 113 496 0000"}, "Tom", "Lee", "1999-09-09")]
    first[0]["attributes"].update(ann)
    data = tmp_path / "data"
    run_cli("ingest", str(write_events(tmp_path / "a.jsonl", first)), "--data-dir", str(data))
    before = cli_lookup(data, "email=ann@mailbox.net")["household"]
    assert before is not None and before["via"] == ["phone:+441134960000"]
    sue = event("sue-1", 5, {"email": "sue@mailbox.net"}, "Sue", "Park", "1985-05-05")
    sue["attributes"].update(ann)
    run_cli("ingest", str(write_events(tmp_path / "b.jsonl", [sue])), "--data-dir", str(data))
    after = cli_lookup(data, "email=ann@mailbox.net")["household"]
    assert len(after["others"]) == 2 and len(after["via"]) == 2
    assert after["household_id"] == before["household_id"]


def test_a_present_s_recipient_on_an_order_is_not_the_buyer_s_golden_record_nor_their_household(tmp_path):
    """Jo ordered a present for Max, delivered to his name and address: Jo's golden record became Max Orr at 9 Far
    Rd, and the shared address made Jo and Max a household. An order's name and address may be its recipient's,
    as the resolver already takes them; they stand in the golden record only where nothing else gave one."""
    from streams.settings import load_settings

    jo = event("g1", 1, {"email": "jo@mailbox.net"}, "Jo", "Ray", "1980-01-01")
    jo["attributes"].update(address="1 Sun St", postcode="S1 1SS")
    mx = event("g2", 2, {"email": "max@mailbox.net"}, "Max", "Orr", "1979-09-09")
    mx["attributes"].update(address="9 Far Rd", postcode="F9 9FF")
    gift = {"event_id": "g3", "occurred_at": "2025-04-02T09:00:00Z", "channel": "web", "event_type": "purchase",
            "identifiers": {"email": "jo@mailbox.net"}, "payload": {"amount": 25},
            "attributes": {"first_name": "Max", "last_name": "Orr", "address": "9 Far Rd", "postcode": "F9 9FF"}}
    # an order with nothing else to go by: its name stands (a customer known by orders alone)
    only = {**gift, "event_id": "g4", "identifiers": {"email": "una@mailbox.net"},
            "attributes": {"first_name": "Una", "last_name": "Day"}}
    data = tmp_path / "data"
    run_cli("ingest", str(write_events(tmp_path / "g.jsonl", [jo, mx, gift, only])), "--data-dir", str(data))
    got = cli_lookup(data, "email=jo@mailbox.net")
    assert got["golden_record"]["first_name"] == "Jo" and got["golden_record"]["address"] == "1 Sun St"
    assert got["household"] is None
    assert cli_lookup(data, "email=una@mailbox.net")["golden_record"]["first_name"] == "Una"
    # an order with a date of birth is the buyer's own account speaking (the resolver takes it so too)
    own = {**gift, "event_id": "g5", "occurred_at": "2025-04-03T09:00:00Z",
           "attributes": {"address": "2 New Rd", "postcode": "S2 2SS", "date_of_birth": "1980-01-01"}}
    run_cli("ingest", str(write_events(tmp_path / "h.jsonl", [own])), "--data-dir", str(data))
    assert cli_lookup(data, "email=jo@mailbox.net")["golden_record"]["address"] == "2 New Rd"
    # the same with the rules given in a file: the resolver's setting is the golden record's too
    rules = tmp_path / "rules.toml"
    rules.write_text('delivery_event_types = ["order"]\n')
    assert load_settings(rules)[1].delivery_event_types == ("order",)
    kept = orjson.loads(run_cli("lookup", "email=jo@mailbox.net", "--data-dir", str(data), "--config",
                                str(rules)).stdout)
    assert kept["golden_record"]["first_name"] == "Max"  # (a purchase is no delivery under these rules)
