"""The lookup API end to end: a real `idres serve` process on a free loopback port, a real HTTP client.

Also the log follower underneath it (``DecisionLog.refresh``), and a schema-driven fuzz of every
operation of the OpenAPI document that asserts the server never answers 5xx.
"""

from __future__ import annotations

import json

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from resolver.config import ResolverConfig
from resolver.normalize import Normalizer
from streams.embedded import EmbeddedEngine
from streams.log import DecisionLog, LogError
from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import run_cli
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-5d1e0a"


# ------------------------------------------------------------------------------------------ servers
class Server:
    """`idres serve` in a child process; ``stop`` terminates it, then kills it if it lingers."""

    def __init__(self, data_dir: Path, api_key: str | None = None, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "IDRES_API_KEY"} | (extra_env or {})
        if api_key:
            env["IDRES_API_KEY"] = api_key
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "serve", "--port", str(self.port), "--data-dir", str(data_dir)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"idres serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("idres serve was not ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def start_server(data_dir: Path, api_key: str | None = None, extra_env: dict[str, str] | None = None) -> Server:
    """A server, ready; started again on another port if another process took its port first (``free_port``
    lets the port go before the server binds it: in between, a test process running beside may bind it)."""
    for attempt in range(3):
        server = Server(data_dir, api_key, extra_env)
        try:
            server.wait_ready()
            return server
        except BaseException as exc:
            server.stop()
            if attempt == 2 or "Address already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """300 synthetic people ingested; what the tests look for, taken from the engine's own views."""
    root = tmp_path_factory.mktemp("api")
    events, truth, data = root / "events.jsonl", root / "truth.csv", root / "data"
    write_dataset(events, truth, SyntheticConfig(people=300, seed=3))
    # and a customer linked on attributes: a web sign-up, a call from a new phone, a store purchase
    jane = {"first_name": "Jane", "last_name": "Zebedee", "postcode": "SW1A 1AA"}
    extra = root / "jane.jsonl"
    extra.write_text("".join(json.dumps(x) + "\n" for x in [
        {"event_id": "jane-web", "occurred_at": "2031-06-01T00:00:00Z", "channel": "web", "event_type": "signup",
         "identifiers": {"email": "jane.zebedee@example.co.uk"},
         "attributes": {**jane, "date_of_birth": "1985-03-07"}},
        {"event_id": "jane-call", "occurred_at": "2031-06-02T00:00:00Z", "channel": "call_center",
         "event_type": "call", "identifiers": {"phone": "+44 7700 900123"},
         "attributes": {**jane, "first_name": "Jayne", "date_of_birth": "1985-03-07"}},
        {"event_id": "jane-store", "occurred_at": "2031-06-03T00:00:00Z", "channel": "store",
         "event_type": "purchase", "attributes": jane},
    ]))
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(events)
        engine.ingest_file(extra)
        views = engine.views
        jane_profile = views.lookup_node("email:jane.zebedee@example.co.uk")["profile_id"]
        pending_reviews = [r["review_id"] for r in views.review_queue()]

        def found(key: str):
            hit = views.lookup_node(key)
            return hit["profile_id"] if hit["status"] == "found" else None

        # a customer with a US phone, a gmail address and several events
        person = None
        for pid, prof in sorted(views.profiles.items()):
            keys = [views.node_keys[n] for n in sorted(prof.nodes)]
            phones = [k for k in keys if k.startswith("phone:+1") and len(k) == len("phone:+14155550100")]
            gmails = [k for k in keys if k.startswith("email:") and k.endswith("@gmail.com")]
            if phones and gmails and len(prof.events) >= 7 and found(phones[0]) == pid:
                person = {"profile_id": pid, "phone": phones[0].split(":", 1)[1],
                          "email": gmails[0].split(":", 1)[1], "events": len(prof.events)}
                break
        assert person is not None
        alias, survivor = next((a, views.resolve(a)) for a in sorted(views.aliases) if views.resolve(a))
        shared = views.node_keys[sorted(views.shared)[0]]
        # a customer whose phone can take one more email (at most three per person)
        follow = None
        for pid, prof in sorted(views.profiles.items()):
            keys = [views.node_keys[n] for n in sorted(prof.nodes)]
            phones = [k for k in keys if k.startswith("phone:") and found(k) == pid]
            if phones and sum(k.startswith("email:") for k in keys) == 1 and pid != person["profile_id"]:
                follow = {"profile_id": pid, "phone": phones[0].split(":", 1)[1]}
                break
        assert follow is not None
        stats = views.stats()
    return {"root": root, "data": data, "person": person, "alias": alias, "survivor": survivor,
            "shared": shared, "follow": follow, "stats": stats, "jane": jane_profile, "reviews": pending_reviews}


@pytest.fixture(scope="module")
def server(dataset):
    srv = start_server(dataset["data"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base, timeout=10.0) as c:
        yield c


# ------------------------------------------------------------------------------------------ health
def test_health_and_readiness(client, dataset):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["lag_entries"] == 0
    assert body["applied_seq"] == body["log_entries"] > 0
    for path in ("/healthz", "/readyz"):  # (a load balancer's probe)
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""


def test_the_docs_page_loads_everything_from_the_api_itself(client):
    """/docs works with no internet: Swagger UI's script and style come from the API, not from a CDN."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(u.startswith("/") and not u.startswith("//") for u in sources), sources
    for url in sources:
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 100, url
    assert "/openapi.json" in page.text and client.get("/redoc").status_code == 404


# ------------------------------------------------------------------------------------------ lookups
def _us_spellings(e164: str) -> list[str]:
    d = e164[2:]  # +1AAABBBCCCC
    a, b, c = d[:3], d[3:6], d[6:]
    return [e164, f"+1 ({a}) {b}-{c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", d, f"1{d}",
            f"1-{a}-{b}-{c}", f"  {a} {b} {c} "]


def _gmail_spellings(email: str) -> list[str]:
    local, _, _ = email.partition("@")
    dotted = ".".join(local) if "." not in local else local
    return [email, email.upper(), f" {email} ", f"{dotted}@gmail.com", f"{local}+shop@gmail.com",
            f"{local.capitalize()}@googlemail.com", f"mailto:{email}"]


def test_lookup_in_any_spelling_finds_the_same_customer(client, dataset):
    person = dataset["person"]
    normalizer = Normalizer(ResolverConfig())
    for id_type, spellings in (("phone", _us_spellings(person["phone"])),
                               ("email", _gmail_spellings(person["email"]))):
        values = {normalizer.identifier(id_type, s)[0] for s in spellings}
        assert len(values) == 1, values  # the spellings are one identifier for ingestion too
        key = f"{id_type}:{values.pop()}"
        for spelling in spellings:
            resp = client.get("/v1/lookup", params={"type": id_type, "value": spelling})
            assert resp.status_code == 200, (spelling, resp.text)
            view = resp.json()
            assert view["profile_id"] == person["profile_id"], spelling
            assert view["matched"] == {"type": id_type, "value": spelling, "key": key}
    view = client.get("/v1/lookup", params={"type": "phone", "value": person["phone"]}).json()
    assert person["phone"] in view["identifiers"]["phone"]
    assert person["email"] in view["identifiers"]["email"]
    assert view["event_count"] == person["events"]
    for field in ("golden_record", "channels", "first_seen", "last_seen", "lifetime_value", "open_cases",
                  "timeline", "merged_ids", "created_at", "purchase_count", "closed_case_count"):
        assert field in view
    assert len(view["timeline"]) == min(20, person["events"])
    assert sum(view["channels"].values()) == view["event_count"]
    assert view["first_seen"] <= view["last_seen"]
    short = client.get("/v1/lookup", params={"type": "phone", "value": person["phone"], "timeline": 3}).json()
    assert short["timeline"] == view["timeline"][:3]


def test_lookup_errors(client, dataset):
    bad = client.get("/v1/lookup", params={"type": "phone", "value": "12"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_identifier" and "phone" in bad.json()["detail"]
    placeholder = client.get("/v1/lookup", params={"type": "email", "value": "test@test.com"})
    assert placeholder.status_code == 400 and "placeholder" in placeholder.json()["detail"]
    unknown = client.get("/v1/lookup", params={"type": "email", "value": "nobody.at.all.42@fastmail.com"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_identifier"
    assert client.get("/v1/lookup", params={"type": "phone", "value": "+1 (212) 555-0199"}).status_code == 404

    id_type, value = dataset["shared"].split(":", 1)
    shared = client.get("/v1/lookup", params={"type": id_type, "value": value.upper()})
    assert shared.status_code == 409
    body = shared.json()
    assert body["error"] == "shared_identifier" and body["identifier"] == dataset["shared"]
    assert body["reason"] and "several customers" in body["detail"]

    for params in ({"type": "phone"}, {"value": "x"}, {"type": "", "value": "x"}, {"type": "phone", "value": ""},
                   {"type": "phone", "value": "4155550100", "timeline": "many"},
                   {"type": "phone", "value": "4155550100", "timeline": "-1"},
                   {"type": "email", "value": "a" * 2000 + "@example.org"}):
        resp = client.get("/v1/lookup", params=params)
        assert resp.status_code == 422, (params, resp.text)
        assert resp.json()["error"] == "invalid_request" and resp.json()["detail"]


# ------------------------------------------------------------------------------------------ profiles
def test_profile_by_id(client, dataset):
    person = dataset["person"]
    view = client.get(f"/v1/profiles/{person['profile_id']}").json()
    assert view["profile_id"] == person["profile_id"]
    assert view["requested_id"] is None
    assert person["phone"] in view["identifiers"]["phone"]
    lookup = client.get("/v1/lookup", params={"type": "email", "value": person["email"]}).json()
    del lookup["matched"]
    assert view == lookup
    missing = client.get("/v1/profiles/p_0000000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_profile"


def test_merged_away_id_redirects_to_the_survivor(client, dataset):
    alias, survivor = dataset["alias"], dataset["survivor"]
    assert alias != survivor
    for suffix, query in (("", "?timeline=2"), ("/timeline", "?limit=3&offset=1"), ("/explain", "")):
        resp = client.get(f"/v1/profiles/{alias}{suffix}{query}")
        assert resp.status_code in (307, 308), resp.text
        assert resp.headers["location"] == f"/v1/profiles/{survivor}{suffix}{query}"
        assert resp.json()["profile_id"] == survivor
        followed = client.get(f"/v1/profiles/{alias}{suffix}{query}", follow_redirects=True)
        assert followed.status_code == 200 and followed.json()["profile_id"] == survivor
    view = client.get(f"/v1/profiles/{survivor}").json()
    assert alias in view["merged_ids"]


def test_timeline_pages_are_disjoint_and_newest_first(client, dataset):
    pid, total = dataset["person"]["profile_id"], dataset["person"]["events"]
    everything = client.get(f"/v1/profiles/{pid}/timeline", params={"limit": 500}).json()
    assert everything["total"] == total == len(everything["events"]) and everything["next_offset"] is None
    stamps = [(e["occurred_at"], e["event_id"]) for e in everything["events"]]
    assert stamps == sorted(stamps, reverse=True)
    pages, offset, limit = [], 0, 3
    while offset is not None:
        page = client.get(f"/v1/profiles/{pid}/timeline", params={"limit": limit, "offset": offset}).json()
        assert page["limit"] == limit and page["offset"] == offset and page["total"] == total
        assert len(page["events"]) == min(limit, total - offset)
        pages.append([e["event_id"] for e in page["events"]])
        offset = page["next_offset"]
    flat = [e for p in pages for e in p]
    assert len(pages) == math.ceil(total / limit)
    assert len(set(flat)) == len(flat) == total  # disjoint, and together all of them
    assert flat == [e["event_id"] for e in everything["events"]]
    past_end = client.get(f"/v1/profiles/{pid}/timeline", params={"offset": total + 10}).json()
    assert past_end["events"] == [] and past_end["next_offset"] is None
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "ten"}, {"offset": "1.5"}):
        resp = client.get(f"/v1/profiles/{pid}/timeline", params=params)
        assert resp.status_code == 422, params
        assert resp.json()["detail"]


def test_explain(client, dataset):
    pid = dataset["survivor"]
    body = client.get(f"/v1/profiles/{pid}/explain").json()
    assert body["profile_id"] == pid
    assert body["summary"][0].startswith(f"Profile {pid}")
    assert any(dataset["alias"] in m["absorbed_ids"] for m in body["merges"])
    for link in body["links"]:
        assert link["a"] in body["identifiers"] and link["b"] in body["identifiers"]
    assert client.get("/v1/profiles/p_nope/explain").status_code == 404


def test_explain_gives_the_field_weights_of_a_link_made_on_attributes(client, dataset):
    body = client.get(f"/v1/profiles/{dataset['jane']}/explain").json()
    fuzzy = [link for link in body["links"] if link["rule"] == "probable_match"]
    assert len(fuzzy) == 1
    link = fuzzy[0]
    assert {link["a"], link["b"]} == {"email:jane.zebedee@example.co.uk", "phone:+447700900123"}
    assert link["weight"] >= link["link_threshold"]
    assert link["fields"]["first_name"]["level"] == "jw_92"
    assert sum(f["weight"] for f in link["fields"].values()) == pytest.approx(link["weight"], abs=1e-3)


def test_review_queue(client, dataset):
    body = client.get("/v1/reviews", params={"limit": 1000}).json()
    assert [r["review_id"] for r in body["reviews"]] == dataset["reviews"] and body["total"] == len(dataset["reviews"])
    store = [r for r in body["reviews"] if r["other_identifier"] == "record:jane-store"
             or r["identifier"] == "record:jane-store"]
    assert len(store) == 1 and store[0]["status"] == "pending"
    assert store[0]["review_threshold"] <= store[0]["weight"] < store[0]["link_threshold"]
    assert dataset["jane"] in (store[0]["profile_id"], store[0]["other_profile_id"])
    page = client.get("/v1/reviews", params={"limit": 1, "offset": 0}).json()
    assert len(page["reviews"]) == 1 and page["total"] == body["total"]
    assert client.get("/v1/reviews", params={"limit": 0}).status_code == 422


def test_unknown_route_and_method(client):
    assert client.get("/v1/nothing-here").status_code == 404
    assert client.post("/v1/lookup", params={"type": "phone", "value": "4155550100"}).status_code == 405


# ------------------------------------------------------------------------------------------ metrics
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                     r'(-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reading of the text exposition format: every line a comment or a sample."""
    types, samples = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    for name in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"{name} has no TYPE"
    return samples


def test_metrics_are_prometheus_text(client, dataset):
    client.get("/v1/lookup", params={"type": "phone", "value": dataset["person"]["phone"]})
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = parse_prometheus(resp.text)
    ok = [v for labels, v in samples["idres_http_requests_total"]
          if labels == {"method": "GET", "route": "/v1/lookup", "status": "200"}]
    assert ok and ok[0] >= 1
    assert not any("p_" in labels["route"] for labels, _ in samples["idres_http_requests_total"])  # templates
    buckets = [(labels["le"], v) for labels, v in samples["idres_http_request_duration_seconds_bucket"]
               if labels["route"] == "/v1/lookup" and labels["status"] == "200"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == "+Inf" and buckets[-1][1] == ok[0]
    value = lambda name: samples[name][0][1]  # noqa: E731
    assert value("idres_events") == dataset["stats"]["events"]
    assert value("idres_profiles") == dataset["stats"]["profiles"]
    assert value("idres_follower_lag_entries") == 0
    assert value("idres_log_entries_applied_total") == value("idres_log_entries") > 0
    assert value("idres_ready") == 1
    # one merge count everywhere: the API's gauge is the snapshot's merges table (a row per absorbed profile)
    snap = dataset["root"] / "metrics-check.duckdb"
    run_cli("snapshot", "--data-dir", str(dataset["data"]), "--out", str(snap))
    with duckdb.connect(str(snap), read_only=True) as con:
        rows, decisions = con.execute("SELECT count(*), count(DISTINCT event_id) FROM merges").fetchone()
    assert rows > decisions  # some merge joined three profiles or more, so the two ways of counting differ
    assert value("idres_merges") == rows == dataset["stats"]["merges"]


# ------------------------------------------------------------------------------------------ auth
def test_api_key(dataset):
    srv = start_server(dataset["data"], api_key=API_KEY)
    try:
        params = {"type": "phone", "value": dataset["person"]["phone"]}
        with httpx.Client(base_url=srv.base, timeout=10.0) as c:
            assert c.get("/v1/lookup", params=params).status_code == 401
            wrong = c.get("/v1/lookup", params=params, headers={"X-API-Key": "guess"})
            assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
            assert c.get(f"/v1/profiles/{dataset['alias']}").status_code == 401  # before any redirect
            good = c.get("/v1/lookup", params=params, headers={"X-API-Key": API_KEY})
            assert good.status_code == 200 and good.json()["profile_id"] == dataset["person"]["profile_id"]
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
                assert c.get(path).status_code == 200, path
    finally:
        srv.stop()


def test_no_key_is_required_on_loopback_by_default(client, dataset):
    resp = client.get("/v1/lookup", params={"type": "phone", "value": dataset["person"]["phone"]})
    assert resp.status_code == 200


def test_refuses_a_public_address_without_a_key(dataset):
    env = {k: v for k, v in os.environ.items() if k != "IDRES_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "serve", "--host", "0.0.0.0", "--port", "0",
                           "--data-dir", str(dataset["data"])], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idres: error:") and "IDRES_API_KEY" in lines[0]
    assert "--no-auth" in lines[0]
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "serve", "--port", "70000",
                           "--data-dir", str(dataset["data"])], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("idres: error:")
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "serve", "--port", "0",
                           "--data-dir", str(dataset["root"] / "nothing")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "idres ingest" in proc.stderr


# ------------------------------------------------------------------------------------------ follower
def test_the_server_follows_ingestion_in_another_process(dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset["data"], data, ignore=shutil.ignore_patterns("LOCK"))
    follow = dataset["follow"]
    new_email = "brand.new.customer.address@fastmail.com"
    digits = follow["phone"]
    srv = start_server(data)
    try:
        with httpx.Client(base_url=srv.base, timeout=10.0) as c:
            params = {"type": "email", "value": new_email.upper()}
            assert c.get("/v1/lookup", params=params).status_code == 404
            before = c.get(f"/v1/profiles/{follow['profile_id']}").json()["event_count"]
            events = tmp_path / "more.jsonl"
            events.write_bytes(orjson.dumps({
                "event_id": "evt-follow-0001", "occurred_at": "2032-02-01T10:00:00+00:00", "channel": "web",
                "event_type": "login", "identifiers": {"email": new_email, "phone": digits}}) + b"\n")
            with EmbeddedEngine(data) as engine:  # the writer: another process in production
                report = engine.ingest_file(events)
                assert report.accepted == 1
            deadline = time.monotonic() + 15
            while True:
                resp = c.get("/v1/lookup", params=params)
                if resp.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert resp.status_code == 200, resp.text
            view = resp.json()
            assert view["profile_id"] == follow["profile_id"]
            assert new_email in view["identifiers"]["email"]
            assert view["event_count"] == before + 1
            assert view["timeline"][0]["event_id"] == "evt-follow-0001"
            ready = c.get("/readyz").json()
            assert ready["lag_entries"] == 0 and ready["applied_seq"] == ready["log_entries"]
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ the log
def _entries(n: int, start: int = 0) -> list[list[dict]]:
    return [[{"type": "event_rejected", "key": f"k{i}", "source": {"name": "t", "position": i},
              "reason": "r", "raw": "x"}] for i in range(start, start + n)]


def test_log_refresh_follows_a_writer_across_segments(tmp_path):
    with DecisionLog(tmp_path, segment_entries=4) as writer:
        writer.append(_entries(3))
        reader = DecisionLog(tmp_path, writer=False, segment_entries=4)
        assert len(reader) == 3 and reader.refresh() == 0
        writer.append(_entries(7, 3))  # fills the first segment, then two more
        assert reader.refresh() == 7 and len(reader) == 10
        assert [s for s, _ in reader.read(3)] == list(range(3, 10))
        assert writer.refresh() == 0  # a writer always knows its length
    seg = tmp_path / "log" / "00000000000000000008.jsonl"
    line = orjson.dumps({"seq": 10, "decisions": _entries(1, 10)[0]}) + b"\n"
    with open(seg, "ab") as fh:
        fh.write(line[:20])  # a line being written is not an entry yet
        fh.flush()
        assert reader.refresh() == 0 and len(reader) == 10
        fh.write(line[20:])
    assert reader.refresh() == 1
    assert [(s, d[0]["key"]) for s, d in reader.read(9)] == [(9, "k9"), (10, "k10")]
    with DecisionLog(tmp_path, segment_entries=4) as writer:
        writer.append(_entries(2, 11))  # rolls over into a new segment
    assert reader.refresh() == 2 and len(reader) == 13
    assert [s for s, _ in reader.read(11)] == [11, 12]
    assert [s for s, _ in reader.read(0)] == list(range(13))
    assert [s for s, _ in reader.read(5, 7)] == [5, 6]


def test_log_refresh_reports_a_replaced_log(tmp_path):
    with DecisionLog(tmp_path) as writer:
        writer.append(_entries(5))
    reader = DecisionLog(tmp_path, writer=False)
    seg = tmp_path / "log" / "00000000000000000000.jsonl"
    seg.write_bytes(seg.read_bytes().splitlines(keepends=True)[0])
    with pytest.raises(LogError, match="truncated|shorter"):
        reader.refresh()
    assert len(reader) == 5  # the reader keeps what it knew


# ------------------------------------------------------------------------------------------ fuzz
@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.base + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz_every_operation_never_answers_5xx(case, server):
    if case.path == "/v1/changes" and isinstance(case.query, dict) and isinstance(case.query.get("wait"), (int, float)):
        case.query["wait"] = min(case.query["wait"], 0.5)  # (a long poll with nothing new waits that long)
    response = case.call(base_url=server.base, timeout=10)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code in (400, 401, 404, 409, 422):
        assert response.json()["detail"], response.text
