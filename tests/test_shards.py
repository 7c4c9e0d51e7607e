"""Deciding on shards: any number of shards, any window size, any assignment of chains to shards, gives
the log of deciding every event in order: the same decisions in the same order."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings, strategies as st

from resolver import epochs, footprint
from resolver.config import ResolverConfig
from resolver.engine import Resolver
from schemas.channel import ChannelEvent
from streams.shards import LocalShards, assign, in_order as in_order_records

FIRST = ["Ann", "Anne", "Bob", "Robert", "Cy", "Dana", "Eve"]
LAST = ["Smith", "Smyth", "Jones", "Quark", "Lee"]
DOB = ["1980-01-01", "1980-01-10", "1990-02-02", "2000-03-03"]
POSTCODE = ["SW1A 1AA", "M1 1AE", "LS1 4AP"]


def corpus(rnd: random.Random, n: int, people: int = 30) -> list[ChannelEvent]:
    """Events on which every guard and the matcher act: people with their own identifiers, who share
    devices (a kiosk, a family tablet) and sometimes a family mailbox, type a placeholder, write their
    names with variants and typos and their dates of birth either way round, and send records with no
    identifier at all."""
    persons = []
    for p in range(people):
        persons.append({"email": f"p{p}@mailbox.org" if p % 7 else f"family{p // 14}@mailbox.org",
                        "phone": f"+1415555{p:04d}", "loyalty_id": f"L{p + 1:05d}",
                        "first_name": FIRST[p % len(FIRST)], "last_name": LAST[p // 3 % len(LAST)],
                        "date_of_birth": DOB[p % len(DOB)] if p % 5 else DOB[(p + 1) % len(DOB)],
                        "postcode": POSTCODE[p % len(POSTCODE)]})
    out = []
    for i in range(n):
        who = persons[rnd.randrange(people)]
        ids: dict[str, str] = {}
        for id_type in ("email", "phone", "loyalty_id"):
            if rnd.random() < 0.45:
                ids[id_type] = who[id_type] if rnd.random() > 0.03 else "test@test.com"
        if rnd.random() < 0.3:
            ids["device_id"] = f"device-{rnd.randrange(4)}"
        attrs: dict[str, str] = {}
        if rnd.random() < 0.6:
            attrs["first_name"] = who["first_name"] if rnd.random() > 0.1 else rnd.choice(FIRST)
            attrs["last_name"] = who["last_name"] if rnd.random() > 0.1 else who["last_name"][:-1] + "e"
            if rnd.random() < 0.6:
                attrs["date_of_birth"] = who["date_of_birth"]
            if rnd.random() < 0.5:
                attrs["postcode"] = who["postcode"]
        if not ids and not attrs:
            ids["device_id"] = f"device-{rnd.randrange(4)}"
        out.append(ChannelEvent(event_id=f"e{i}", occurred_at=f"2025-03-{1 + i // 40 % 28:02d}T{i % 24:02d}:"
                                f"{i % 60:02d}:00Z", channel=rnd.choice(["web", "store", "call_center"]),
                                event_type="visit", identifiers=ids, attributes=attrs))
    return out


def in_order(events: list[ChannelEvent], config: ResolverConfig) -> list[list[dict]]:
    resolver = Resolver(config)
    return [d for d in (resolver.decide(e) for e in events) if d]


def in_order_raw(records: list[bytes], config: ResolverConfig) -> list[list[dict]]:
    """What deciding raw records one after the other logs (rejections keyed as ``LocalShards`` keys them)."""
    return in_order_records(records, Resolver(config))


def with_noise(events: list[ChannelEvent], rnd: random.Random) -> list[bytes]:
    """The events as raw records, with what a feed also holds: blank lines, text that is not JSON, invalid
    events, events sent twice (at once and later), an event ID reused for other content."""
    lines = [e.model_dump_json().encode() for e in events]
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        roll = rnd.random()
        if roll < 0.03:
            out.append(line)
        elif roll < 0.05:
            out.append(lines[rnd.randrange(i + 1)])
        elif roll < 0.06:
            out.append(events[rnd.randrange(i + 1)].model_copy(update={"channel": "chat"}).model_dump_json().encode())
        elif roll < 0.07:
            out.append(b'{"event_id": "x", "channel": "web"')
        elif roll < 0.08:
            out.append(b'{"event_id": "no-time-%d", "channel": "web", "event_type": "visit"}' % i)
        elif roll < 0.09:
            out.append(b"")
    return out


def every_guard_corpus() -> tuple[list[bytes], ResolverConfig, list[list[dict]]]:
    """A long corpus on which every guard and the matcher act (its records, the configuration, and the log of
    deciding them in order): what the drivers that decide on shards are held to at length."""
    records = with_noise(corpus(random.Random(7), 1800, people=140), random.Random(8))
    config = ResolverConfig()
    expected = in_order_raw(records, config)
    kinds = {d["type"] for entry in expected for d in entry}
    assert {"identifier_flagged", "link_refused", "profile_split", "probable_link", "possible_match",
            "profiles_merged", "model_estimated", "profile_renamed", "event_rejected"} <= kinds
    return records, config, expected


def _random_assigner(rnd: random.Random):
    def assigner(chains, shards):
        out = [[] for _ in range(shards)]
        for c in range(len(chains)):
            out[rnd.randrange(shards)].append(c)
        for picks in out:
            rnd.shuffle(picks)  # (a shard may decide its chains in any order)
        return out
    return assigner


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(40, 220), st.integers(1, 4), st.integers(1, 300),
       st.randoms(use_true_random=False))
def test_any_shards_windows_and_assignment_give_the_log_of_deciding_in_order(seed, n, shards, window, rnd):
    records = with_noise(corpus(random.Random(seed), n), random.Random(seed))
    config = ResolverConfig()
    expected = in_order_raw(records, config)
    got = LocalShards(lambda: Resolver(config), shards, window, _random_assigner(rnd)).decide(records)
    assert got == expected


def test_the_corpus_makes_every_guard_and_the_matcher_act_and_spans_epochs():
    events = corpus(random.Random(1), 1500, people=120)
    log = in_order(events, ResolverConfig())
    kinds = {d["type"] for entry in log for d in entry}
    assert {"identifier_flagged", "link_refused", "profile_split", "probable_link", "possible_match",
            "profiles_merged", "model_estimated", "profile_renamed"} <= kinds
    assert len(log) > 2 * epochs.FIRST_EPOCH * 4  # (epochs of 64, 128, 256 events and more)
    got = LocalShards(lambda: Resolver(ResolverConfig()), 3, 200).decide(
        [e.model_dump_json().encode() for e in events])
    assert got == log


def test_independent_events_make_separate_chains_and_shared_ones_one():
    resolver = Resolver(ResolverConfig())
    a = ChannelEvent(event_id="a", occurred_at="2025-03-01T10:00:00Z", channel="web", event_type="visit",
                     identifiers={"email": "ann@x.org"})
    b = ChannelEvent(event_id="b", occurred_at="2025-03-01T10:01:00Z", channel="web", event_type="visit",
                     identifiers={"email": "bob@x.org"})
    c = ChannelEvent(event_id="c", occurred_at="2025-03-01T10:02:00Z", channel="web", event_type="visit",
                     identifiers={"email": "ann@x.org", "phone": "+14155550100"})
    d = ChannelEvent(event_id="d", occurred_at="2025-03-01T10:03:00Z", channel="web", event_type="visit",
                     identifiers={"phone": "+14155550100"}, attributes={"first_name": "Ann", "last_name": "Lee"})
    resolver.decide(a)
    resolver.decide(b)
    prints = [resolver.footprint(e) for e in (c, d)]
    assert "p:" + resolver.state.node_profile[resolver.state.node_index["email:ann@x.org"]] in prints[0]
    assert footprint.chains([resolver.footprint(b.model_copy(update={"event_id": "b2"})), *prints]) == [[0], [1, 2]]


def test_chains_go_to_the_least_loaded_shard_longest_first():
    assert assign([[0, 1, 2], [3], [4, 5]], 2) == [[0], [1, 2]]
    assert assign([[0], [1]], 3) == [[0], [1], []]


# ---------------------------------------------------------------------------- worker processes
def _messy_file(path, n: int) -> None:
    path.write_bytes(b"\n".join(with_noise(corpus(random.Random(5), n, people=60), random.Random(6))) + b"\n")


def test_ingest_on_worker_processes_writes_the_log_and_report_of_ingest_in_one(tmp_path):
    from streams.embedded import EmbeddedEngine

    _messy_file(tmp_path / "in.jsonl", 2600)
    logs, reports = [], []
    for shards in (1, 2, 3):
        with EmbeddedEngine(tmp_path / f"d{shards}", shards=shards) as engine:
            report = engine.ingest_file(tmp_path / "in.jsonl").as_dict()
            for key in ("seconds", "events_per_second"):
                report.pop(key)
            reports.append(report)
            logs.append([entry for _, entry in engine.log.read(0)])
    assert reports[0]["rejected"] > 20 and reports[0]["duplicates"] > 50 and reports[0]["accepted"] == 2600
    assert any(d["type"] == "model_estimated" for entry in logs[0] for d in entry)
    assert reports[1] == reports[0] and reports[2] == reports[0]
    assert logs[1] == logs[0] and logs[2] == logs[0]


def test_ingest_shards_on_the_command_line(tmp_path):
    from tests.cli_helpers import run_cli

    _messy_file(tmp_path / "in.jsonl", 300)
    one = run_cli("ingest", "in.jsonl", "--data-dir", "one", cwd=tmp_path).stdout
    two = run_cli("ingest", "in.jsonl", "--data-dir", "two", "--shards", "2", cwd=tmp_path).stdout
    strip = lambda text: {k: v for k, v in __import__("json").loads(text)["ingested"].items()  # noqa: E731
                          if k not in ("seconds", "events_per_second")}
    assert strip(one) == strip(two)
    assert (tmp_path / "one" / "log").exists()
    from streams.log import DecisionLog

    def entries(d):  # (as read back: written sealed, each under keys of its own data directory)
        with DecisionLog(tmp_path / d, writer=False) as log:
            return list(log.read(0))

    assert entries("one") == entries("two")
    bad = run_cli("ingest", "in.jsonl", "--data-dir", "three", "--shards", "0", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("idres: error:")


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux's ``/proc``)."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_ingest_on_shards_killed_leaves_no_worker_holding_the_data_directory(tmp_path):
    """``idres ingest --shards 2`` killed with SIGKILL left its two worker processes alive for good (each held
    the parent's end of its own pipe, so never saw it close), and with them the data directory's lock: every
    later command said another process was writing. The workers now end with their parent, and the ingest run
    again finishes the log, each record once."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import pytest

    from tests.cli_helpers import ROOT, run_cli

    if not Path("/proc/self/stat").exists():
        pytest.skip("finding a process's children reads Linux's /proc")
    _messy_file(tmp_path / "in.jsonl", 20_000)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "ingest", "in.jsonl", "--data-dir", "d", "--shards",
                             "2"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.02)
        workers = _children(proc.pid)
    assert len(workers) == 2 and proc.poll() is None, "the ingest should be killed while its workers decide"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    left = [w for w in workers if _alive(w)]
    for w in left:  # (not to leave them to the next test)
        os.kill(w, signal.SIGKILL)
    assert not left, "the shard workers outlived the ingest that started them"
    again = run_cli("ingest", "in.jsonl", "--data-dir", "d", "--shards", "2", cwd=tmp_path)
    assert json.loads(again.stdout)["ingested"]["accepted"] > 0
    from streams.log import DecisionLog

    with DecisionLog(tmp_path / "d", writer=False) as log:
        recorded = [d["event_id"] for _, entry in log.read(0) for d in entry if d["type"] == "interaction_recorded"]
    assert len(recorded) == len(set(recorded)) > 0


def test_shard_workers_forked_from_a_thread_that_ends_live_on_with_their_process():
    """The kernel's death signal for a worker acts when the *thread* that forked it ends: a pool made on a thread
    of a library's user that then ends must keep its workers (they end with the process, by the pipes' EOF)."""
    import threading
    import time

    from streams.shard_pool import ShardPool

    made = []
    forker = threading.Thread(target=lambda: made.append(ShardPool(Resolver(ResolverConfig()), 2, 1 << 20)))
    forker.start()
    forker.join()
    pool = made[0]
    try:
        time.sleep(0.5)
        assert all(proc.is_alive() for proc in pool._procs), [proc.exitcode for proc in pool._procs]
        pool.ask_verdicts([], [[], []])  # (and they still answer)
        assert pool.verdicts() == ({}, None)
    finally:
        pool.close()


def test_an_event_on_a_shared_identifier_reads_its_customers_only_if_it_names_a_person():
    resolver = Resolver(ResolverConfig())
    for event in corpus(random.Random(1), 1500, people=120):
        resolver.decide(event)
    st = resolver.state
    shared = [st.node_keys[i] for i in sorted(st.shared) if st.shared_users.get(i)
              and st.node_keys[i].startswith("email:")]
    assert shared, "the corpus flags a family mailbox that customers used"
    key = shared[0]
    users = {"k:" + u for u in st.shared_users[st.node_index[key]]}
    mailbox = key.partition(":")[2]

    def on_mailbox(event_id: str, event_type: str = "visit", **attributes: str) -> ChannelEvent:
        return ChannelEvent(event_id=event_id, occurred_at="2025-04-01T10:00:00Z", channel="email",
                            event_type=event_type, identifiers={"email": mailbox}, attributes=attributes)

    anonymous = resolver.footprint(on_mailbox("x1"))
    named = resolver.footprint(on_mailbox("x2", first_name="Ann", last_name="Lee"))
    # (an anonymous event may be the session's of the customer who used the mailbox last: it reads that one)
    last = st.session_last.get(st.node_index[key])
    session = {"k:" + last[1]} if last else set()
    assert len(users - session) >= 2
    assert "k:" + key in anonymous and users & anonymous <= session
    assert users <= named
    # a date of birth alone, or a name on a delivery (maybe the recipient's), attributes nothing by name
    assert users & resolver.footprint(on_mailbox("x3", date_of_birth="1980-01-01")) <= session
    assert users & resolver.footprint(on_mailbox("x4", "order", first_name="Ann", last_name="Lee")) <= session


def test_an_event_in_person_on_a_shared_till_reads_no_last_use():
    """An anonymous event from a screen on a shared identifier may be the session's of its last identified
    user, so its footprint reads that customer; one in person (``in_person_channels``) is nobody's by session
    and reads only the till, which keeps a busy till's customers from joining up through it."""
    resolver = Resolver(ResolverConfig())
    for k, card in enumerate(["41000001", "41000002", "41000003"]):
        resolver.decide(ChannelEvent(event_id=f"p{k}", occurred_at=f"2025-04-01T10:0{k}:00Z", channel="store",
                                     event_type="store_purchase", identifiers={"device_id": "till-5",
                                                                               "loyalty_id": card}))
    st = resolver.state
    assert st.node_index["device_id:till-5"] in st.shared
    assert st.session_last[st.node_index["device_id:till-5"]][1] == "loyalty_id:41000003"

    def anonymous(channel: str, event_type: str) -> set[str]:
        return resolver.footprint(ChannelEvent(event_id=f"x-{channel}", occurred_at="2025-04-01T10:04:00Z",
                                               channel=channel, event_type=event_type,
                                               identifiers={"device_id": "till-5"}))

    screen, counter = anonymous("web", "page_view"), anonymous("store", "store_purchase")
    assert "k:device_id:till-5" in counter and "k:device_id:till-5" in screen
    assert "k:loyalty_id:41000003" in screen
    assert "k:loyalty_id:41000003" not in counter and not any(item.startswith("p:") for item in counter)
