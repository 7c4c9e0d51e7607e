"""Late events: a history ingested in several commands, in any order, gives the customers and IDs of one
command (the log is restated from the earliest late event's place), and every reader of the log agrees:
the state read back, the replay check, a follower, the changelog, IDs handed out before."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from projections.changelog import Table, changes_of
from streams.embedded import EmbeddedEngine
from streams.log import DecisionLog
from tests.test_ordering import _messy_lines
from tests.test_shards import corpus


def _named_lines(rnd: random.Random, n: int) -> list[bytes]:
    """The shard tests' corpus (guards and the matcher act: names, dates of birth, family mailboxes, records
    with no identifier), as raw lines."""
    return [e.model_dump_json().encode() + b"\n" for e in corpus(rnd, n)]


def _one(lines: list[bytes], work: Path) -> dict[str, str]:
    path = work / "all.jsonl"
    path.write_bytes(b"".join(lines))
    with EmbeddedEngine(work / "one") as engine:
        engine.ingest_file(path)
        return dict(zip(engine.views.ev_id, engine.views.ev_profile))


def _in_commands(chunks: list[list[bytes]], data: Path) -> list[int]:
    """Each chunk ingested by a command of its own; returns each command's late events."""
    late = []
    for i, chunk in enumerate(chunks):
        path = data.parent / f"{data.name}-{i}.jsonl"
        path.write_bytes(b"".join(chunk))
        with EmbeddedEngine(data) as engine:
            late.append(engine.ingest_file(path).late)
    return late


def _read_back(data: Path) -> dict[str, str]:
    with EmbeddedEngine(data, writer=False, use_checkpoint=False) as engine:
        return dict(zip(engine.views.ev_id, engine.views.ev_profile))


def _changelog_owners(data: Path) -> dict[str, str]:
    table = Table()
    with DecisionLog(data, writer=False) as log:
        table.apply(c for seq, entry in log.read(0, raw=True) for c in changes_of(seq, entry))
    return table.owner


def _owners(data: Path) -> dict[str, str]:
    with EmbeddedEngine(data, writer=False) as engine:
        v = engine.views
        return {v.node_keys[i]: pid for i, pid in enumerate(v.node_profile) if pid is not None}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=2, max_value=4),
       st.randoms(use_true_random=False), st.booleans())
def test_a_history_in_any_number_of_commands_gives_the_customers_and_ids_of_one(seed, parts, rnd, named):
    lines = (_named_lines if named else _messy_lines)(random.Random(seed), 120)
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    chunks = [shuffled[i::parts] for i in range(parts)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one = _one(lines, work)
        late = _in_commands(chunks, work / "many")
        assert sum(late) > 0  # (some command came with events older than ones decided before)
        assert _read_back(work / "many") == one  # the log read back, without the checkpoint
        with EmbeddedEngine(work / "many") as engine:  # the live state, from the checkpoint
            assert dict(zip(engine.views.ev_id, engine.views.ev_profile)) == one
            assert engine.verify_decisions() is None  # replay --verify: every entry re-decided as logged
        assert _changelog_owners(work / "many") == _owners(work / "many")


@pytest.mark.parametrize("older, newer", [
    # a placeholder card spelt with dots: "N.A." read as the card "NA" joined two strangers in one command, and
    # kept them apart when a restatement read the logged "NA" again (a placeholder)
    ({"email": "ann.lee@b.org", "loyalty_id": "N.A."}, {"email": "bob.kay@c.org", "loyalty_id": "N.A."}),
    # "mailto:" twice: one command kept the two readings of one mailbox apart, a restatement joined them
    ({"email": "mailto:mailto:ann@b.org"}, {"email": "ann@b.org"}),
])
def test_a_restatement_reads_the_logged_values_as_the_first_reading_did(tmp_path, older, newer):
    """A restatement decides events again from the values the log holds (normalized ones): they must read as
    they read the first time, or a late event anyone sends changes customers already published."""
    def line(eid, day, ids):
        return json.dumps({"event_id": eid, "occurred_at": f"2025-03-0{day}T10:00:00Z", "channel": "store",
                           "event_type": "store_purchase", "identifiers": ids}).encode() + b"\n"

    a, b = line("s2", 3, newer), line("s1", 2, older)
    one = _one([a, b], tmp_path)
    assert _in_commands([[a], [b]], tmp_path / "two") == [0, 1]  # (s1 came late)
    assert _read_back(tmp_path / "two") == one
    with EmbeddedEngine(tmp_path / "two") as engine:
        assert dict(zip(engine.views.ev_id, engine.views.ev_profile)) == one
    for data in (tmp_path / "one", tmp_path / "two"):  # (deciding the logged values again gives the log)
        with EmbeddedEngine(data) as engine:
            assert engine.verify_decisions() is None


def test_a_restatement_reads_the_logged_attributes_as_the_first_reading_did(tmp_path):
    """A postcode that upper-cases to a placeholder ("teſt": TEST) was kept when first read and dropped when the
    logged TEST was read again: the anonymous record matched its customer in one command, not after a late event."""
    attrs = {"first_name": "Ann", "last_name": "Lee", "address": "1 High St", "postcode": "te\u017ft"}
    a = json.dumps({"event_id": "e2", "occurred_at": "2025-01-03T00:00:00Z", "channel": "store",
                    "event_type": "store_purchase", "attributes": attrs}).encode() + b"\n"
    b = json.dumps({"event_id": "e1", "occurred_at": "2025-01-02T00:00:00Z", "channel": "web", "event_type": "login",
                    "identifiers": {"email": "ann.lee@mail.org"}, "attributes": attrs}).encode() + b"\n"
    one = _one([a, b], tmp_path)
    assert _in_commands([[a], [b]], tmp_path / "two") == [0, 1]
    assert _read_back(tmp_path / "two") == one
    for data in (tmp_path / "one", tmp_path / "two"):
        with EmbeddedEngine(data) as engine:
            assert engine.verify_decisions() is None


def _when(raw: bytes) -> str:
    try:
        at = json.loads(raw).get("occurred_at")
    except ValueError:
        return ""
    return at if isinstance(at, str) else ""


@pytest.mark.parametrize("seed", [3, 7, 9, 11, 13])
def test_an_id_handed_out_before_late_events_resolves_to_the_customer_its_event_named(tmp_path, seed):
    """The newer half of a history ingested, then the older half: in one command, or in two (as a run cut short
    and done again brings them). No profile ID handed out after the newer half resolves, after either, to
    another profile than the one holding the identifier it was named by (an event's identifier:
    ``resolver.naming``), and the two agree on every ID both resolve: before, a restatement pointed an ID at the
    profile holding the first identifier of whatever the ID resolved to then, so an ID an earlier restatement
    had already pointed somewhere, or one a merge decided again had absorbed, led to another customer (and to
    other customers after one command than after two). (An ID whose identifier no profile held at a restatement
    between stays unresolvable.)"""
    from resolver.naming import name_of

    lines = sorted(_named_lines(random.Random(seed), 300), key=_when)
    older, newer = lines[:150], lines[150:]
    _in_commands([newer], tmp_path / "one")
    named_by = {}  # profile ID -> the identifier of the event that names it, from the decisions logged
    with DecisionLog(tmp_path / "one", writer=False) as log:
        for _, entry in log.read(0):
            for d in entry:
                if d["type"] == "interaction_recorded":
                    for rank, key in enumerate(sorted(d["nodes"])):
                        named_by[name_of(("", d["event_id"], rank))] = key
    with EmbeddedEngine(tmp_path / "one", writer=False) as engine:
        handed = sorted(p for p in engine.views.profiles if p in named_by)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    _in_commands([older], tmp_path / "one")
    _in_commands([older[:60], older], tmp_path / "two")
    resolved = []
    for data in (tmp_path / "one", tmp_path / "two"):
        with EmbeddedEngine(data, writer=False) as engine:
            v = engine.views
            holder = {v.node_keys[i]: pid for i, pid in enumerate(v.node_profile)}
            got = {p: v.resolve(p) for p in handed}
            assert {p: got[p] for p in handed if holder.get(named_by[p]) and got[p]} == \
                {p: holder[named_by[p]] for p in handed if holder.get(named_by[p]) and got[p]}
            resolved.append(got)
    both = [p for p in handed if resolved[0][p] and resolved[1][p]]
    assert len(both) > len(handed) / 2 and [resolved[0][p] for p in both] == [resolved[1][p] for p in both]


def test_the_guards_and_the_matcher_act_on_the_named_corpus(tmp_path):
    one = tmp_path / "one"
    (tmp_path / "all.jsonl").write_bytes(b"".join(_named_lines(random.Random(1), 300)))
    with EmbeddedEngine(one) as engine:
        engine.ingest_file(tmp_path / "all.jsonl")
        kinds = {d["type"] for _, entry in engine.log.read(0) for d in entry}
    assert {"identifier_flagged", "profile_split", "probable_link", "possible_match", "profiles_merged"} <= kinds


def _newer_then_older(tmp_path: Path, n: int = 200) -> tuple[list[bytes], list[list[bytes]]]:
    lines = _named_lines(random.Random(5), n)
    by_time = sorted(lines, key=lambda line: json.loads(line)["occurred_at"])
    half = len(by_time) // 2
    return lines, [by_time[half:], by_time[:half]]


def test_ids_handed_out_before_a_restatement_still_find_their_customer(tmp_path):
    lines, (newer, older) = _newer_then_older(tmp_path)
    one = _one(lines, tmp_path)
    _in_commands([newer], tmp_path / "d")
    with EmbeddedEngine(tmp_path / "d", writer=False) as engine:
        st = engine.resolver.state
        handed_out = {pid: sorted(st.node_keys[n] for n in prof.nodes) for pid, prof in st.profiles.items()}
    _in_commands([older], tmp_path / "d")
    with EmbeddedEngine(tmp_path / "d", writer=False) as engine:
        views = engine.views
        assert dict(zip(views.ev_id, views.ev_profile)) == one
        assert [r["late_events"] for r in views.restatements] == [len(older)]
        aliases = [pair for _, entry in engine.log.read(0) for d in entry if d["type"] == "log_restate_part"
                   for pair in d["aliases"]]
        for pid in handed_out:
            assert views.resolve(pid) is not None, pid  # every ID handed out still finds a customer
        aliases = [(old, new) for old, new in aliases if old in handed_out]
        assert aliases  # (some live IDs handed out were no longer live or known: the test is not vacuous)
        st = engine.resolver.state
        for old, new in aliases:  # those resolve through the restatement's aliases to a live customer
            assert st.resolve_alias(old) == st.resolve_alias(new) in st.profiles


def test_a_restatement_cut_short_is_closed_and_done_again(tmp_path, monkeypatch):
    from streams import restating

    lines, (newer, older) = _newer_then_older(tmp_path)
    one = _one(lines, tmp_path)
    data = tmp_path / "d"
    _in_commands([newer], data)
    before = _read_back(data)

    real = restating.Restatement.decide

    def stops(self, redo):
        for i, entry in enumerate(real(self, redo)):
            if i == 40:
                raise KeyboardInterrupt  # (the process stops here)
            yield entry

    monkeypatch.setattr(restating.Restatement, "decide", stops)
    (tmp_path / "older.jsonl").write_bytes(b"".join(older))
    with pytest.raises(KeyboardInterrupt):
        with EmbeddedEngine(data) as engine:
            engine.ingest_file(tmp_path / "older.jsonl")
    monkeypatch.setattr(restating.Restatement, "decide", real)
    # a reader meanwhile: the log as it read before the restatement began, with the late events decided late
    partial = _read_back(data)
    assert {k: v for k, v in partial.items() if k in before} .keys() == before.keys()
    assert len(partial) == len(one)
    with DecisionLog(data, writer=False) as log:
        assert [m["type"] for m in log.restatements().values()] == ["log_restate_begun"]
    with EmbeddedEngine(data) as engine:  # the next writer closes it and restates again
        assert dict(zip(engine.views.ev_id, engine.views.ev_profile)) == one
        assert engine.verify_decisions() is None
    with DecisionLog(data, writer=False) as log:
        assert [m["type"] for _, m in sorted(log.restatements().items())] == [
            "log_restate_begun", "log_restate_abandoned", "log_restate_begun", "log_restated"]
    assert _read_back(data) == one
    assert _changelog_owners(data) == _owners(data)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=10_000), st.lists(st.integers(min_value=0, max_value=150), min_size=1,
                                                            max_size=2), st.booleans(), st.sampled_from([1, 4, 32]))
def test_restatements_cut_short_anywhere_leave_the_changelog_and_the_customers_of_one_command(seed, cuts, named,
                                                                                              batch):
    """A history without a quarter of its events, then those (late): its restatement is cut short at any entry,
    and the next writer's restatement again if two cuts are drawn, before one runs to its end (the entries of a
    restatement are logged a batch at a time: small batches, so a cut leaves some). The changelog applied in order
    gives every identifier the owner the state gives it: up to each closing of a cut-short restatement, that of
    the log read without its entries; at the end, that of the log. The customers and IDs are those of one
    command."""
    from resolver import restate
    from streams import restating

    rnd = random.Random(seed)
    lines = (_named_lines if named else _messy_lines)(rnd, 160)
    by_time = sorted(lines, key=lambda line: json.loads(line)["occurred_at"])
    # (the late events are drawn from after the first third: profiles from before the earliest of them grow after it)
    held_back = set(rnd.sample(range(len(by_time) // 3, len(by_time)), len(by_time) // 4))
    first = [line for i, line in enumerate(by_time) if i not in held_back]
    late = [line for i, line in enumerate(by_time) if i in held_back]
    real_decide, real_abandoned = restating.Restatement.decide, restating.abandoned
    closed_on = []  # (each closing's owners, as the state it was made from gives them)

    def abandoned(st, *args, **kwargs):
        held = restate.owners(st, st.node_index)
        closed_on.append({k: pid for k, pid in held.items() if pid is not None})
        return real_abandoned(st, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one = _one(lines, work)
        data = work / "d"
        _in_commands([first], data)
        (work / "late.jsonl").write_bytes(b"".join(late))
        stopped = 0
        for n, cut in enumerate(cuts):
            def stops(self, redo, cut=cut):
                for i, entry in enumerate(real_decide(self, redo)):
                    if i == cut:
                        raise KeyboardInterrupt  # (the process stops here)
                    yield entry

            restating.Restatement.decide, restating.abandoned = stops, abandoned
            try:
                with EmbeddedEngine(data, batch_size=batch) as engine:  # (the late events; then the next writer's)
                    if n == 0:
                        engine.ingest_file(work / "late.jsonl")
            except KeyboardInterrupt:
                stopped += 1
            finally:
                restating.Restatement.decide, restating.abandoned = real_decide, real_abandoned
            if stopped <= n:
                break  # (this restatement had fewer entries than the cut: it ran to its end)
        restating.abandoned = abandoned
        try:
            with EmbeddedEngine(data) as engine:  # the next writer closes what was cut short and restates again
                assert dict(zip(engine.views.ev_id, engine.views.ev_profile)) == one
        finally:
            restating.abandoned = real_abandoned
        with DecisionLog(data, writer=False) as log:
            markers = sorted(log.restatements().items())
            entries = list(log.read(0, raw=True))
        assert [m["type"] for _, m in markers] == ["log_restate_begun", "log_restate_abandoned"] * stopped + [
            "log_restate_begun", "log_restated"]
        closings = [at for at, m in markers if m["type"] == "log_restate_abandoned"]
        assert len(closed_on) == len(closings) == stopped
        for at, held in zip(closings, closed_on):
            table = Table()
            table.apply(c for seq, entry in entries if seq <= at for c in changes_of(seq, entry))
            assert table.owner == held, at
        assert _changelog_owners(data) == _owners(data)


def test_a_follower_and_the_api_changelog_go_through_a_restatement(tmp_path):
    from streams.api import Follower

    lines, (newer, older) = _newer_then_older(tmp_path)
    one = _one(lines, tmp_path)
    data = tmp_path / "d"
    _in_commands([newer], data)
    follower = Follower(data, poll_interval=0.05)
    follower.load()
    table, start = Table(), 0

    def read_changes() -> None:
        nonlocal start
        while True:
            page, nxt = follower.changes(start, 500)
            if not page and nxt == start:
                return
            table.apply(page)
            start = nxt

    read_changes()
    _in_commands([older], data)
    follower.poll()
    read_changes()
    views = follower.views
    assert dict(zip(views.ev_id, views.ev_profile)) == one
    assert table.owner == _owners(data)
    follower.stop()


def test_a_follower_folds_its_views_again_from_views_it_kept_when_a_restatement_completes(tmp_path):
    """`idres serve`'s follower keeps its views as the log grows, and when a restatement completes folds the log
    from the newest it kept that the restatement does not supersede (not from the start, nor from a checkpoint
    taken after its place): the views folded from the start, and every entry's changes once."""
    from streams.api import Follower
    from streams.ordering import order_key

    lines = sorted(_named_lines(random.Random(8), 400), key=lambda line: order_key(line.strip()))
    late = set(range(len(lines) - 40, len(lines) - 5, 5))  # (a few of the newest, but the very newest)
    first = [x for i, x in enumerate(lines) if i not in late]
    parts = [first[:150], first[150:300], first[300:]]
    data = tmp_path / "d"
    _in_commands([parts[0]], data)
    follower = Follower(data, rewind_every=1)
    follower.load()
    for part in parts[1:]:
        follower.poll()  # (kept: the views folded from the checkpoint)
        _in_commands([part], data)
        follower.poll()
    follower.poll()
    kept = [seq for seq, _ in follower.kept]
    assert len(kept) == 2 and kept[-1] == follower.views.seq == len(follower.log)
    _in_commands([[lines[i] for i in sorted(late)]], data)  # (late: the log is restated from their place)
    while follower.poll():
        pass
    with DecisionLog(data, writer=False) as log:
        starts = [m["from_seq"] for m in log.restatements().values() if m["type"] == "log_restated"]
        assert len(starts) == 1 and kept[0] <= starts[0] < kept[1]
        length = len(log)
    assert follower.rebuilt_from == kept[0]  # (the newer kept views hold entries it superseded)
    whole = Follower(data, rewind_every=0)
    whole.load()
    assert follower.views.digest() == whole.views.digest() == _views_digest(data)
    assert [seq for seq, _ in follower.recent] == list(range(follower.recent[0][0], length))
    follower.stop()
    whole.stop()



def history(tmp: Path, people: int, seed: int) -> list[bytes]:
    """The lines of a generated data set (``tmp``/generated.jsonl; blank ones left out), in the canonical order."""
    from streams.ordering import order_key
    from streams.synthetic import SyntheticConfig, write_dataset

    generated = tmp / "generated.jsonl"
    write_dataset(generated, tmp / "truth.csv", SyntheticConfig(people=people, seed=seed))
    return sorted((line for line in generated.read_bytes().splitlines(keepends=True) if line.strip()),
                  key=lambda line: order_key(line.strip()))

def test_a_follower_that_reads_a_whole_restatement_in_one_look_folds_none_of_it_onto_the_views_it_replaces(tmp_path):
    """A follower that looks only once a restatement is complete (its begun marker, the entries decided again
    and its end, all in one look) used to fold the entries decided again onto views still holding the entries
    they replace (the log already reads without those), and stopped on a profile those had merged away: now
    it folds nothing after a begun marker until the restatement completes, then reads the views again; and
    when that fails (here once, as a disk or a broker may), the next look does it."""
    from streams.api import Follower

    lines = history(tmp_path, 500, 3)
    late = set(random.Random(1).sample(range(len(lines) - len(lines) // 50, len(lines)), 20))
    first = [x for i, x in enumerate(lines) if i not in late]
    data = tmp_path / "d"
    _in_commands([first[:len(first) // 2]], data)
    follower = Follower(data)
    follower.load()
    _in_commands([first[len(first) // 2:]], data)
    while follower.poll():
        pass
    _in_commands([[lines[i] for i in sorted(late)]], data)
    load, failed = follower.load, []

    def load_once_failing(after: int = -1, restated: bool = False) -> None:
        if restated and not failed:
            failed.append(after)
            raise OSError("the disk did not answer")
        load(after=after, restated=restated)

    follower.load = load_once_failing  # type: ignore[method-assign]
    with pytest.raises(OSError):
        while follower.poll():
            pass
    assert failed and follower.refold
    for _ in range(100):  # (bounded: a follower that never folds again fails here, not hangs)
        if not (follower.poll() or follower.refold):
            break
    assert not follower.refold
    assert follower.error is None and not follower.restating
    assert follower.views.digest() == _views_digest(data)
    follower.stop()


def until_restated(worker, settings, every: int, what: str) -> None:
    """Waits until ``worker`` has restated the log and decided and projected ``every`` event, then stops it."""
    from tests.test_stream import all_decided, wait_until

    try:
        wait_until(lambda: worker.metrics().get("idres_restatements_total", 0) >= 1
                   and all_decided(worker, settings, every), 180, what, [worker])
    finally:
        worker.stop()


def halves(tmp: Path, people: int, seed: int) -> None:
    """A generated history (``history``) in three files under ``tmp``: ``older.jsonl`` (its first half in the
    canonical order), ``newer.jsonl`` (the rest) and ``all.jsonl``."""
    lines = history(tmp, people, seed)
    half = len(lines) // 2
    for name, part in {"older": lines[:half], "newer": lines[half:], "all": lines}.items():
        (tmp / f"{name}.jsonl").write_bytes(b"".join(part))


def test_a_follower_folds_nothing_an_erasure_erased_back_in(tmp_path, monkeypatch):
    """Views a follower folds from (kept, or a checkpoint's) that precede an erasure hold what it erased: a fold
    that meets one goes on from after it instead (here a restatement's end and an erasure after it are read in
    one look, with views kept before the restatement's place: the follower folded the erasure onto those and
    kept the erased customer for good). An erasure whose keys are not shredded yet (the writer stopped in
    between) is not folded until they are (a fold went through it, reading the customer, and never again)."""
    import pickle

    from streams.api import Follower
    from streams.ordering import order_key

    lines = sorted(_named_lines(random.Random(5), 400), key=lambda line: order_key(line.strip()))
    late = set(range(len(lines) - 40, len(lines) - 5, 7))
    first = [x for i, x in enumerate(lines) if i not in late]
    data = tmp_path / "d"
    _in_commands([first[:200]], data)
    follower = Follower(data, rewind_every=1, pause=0)
    follower.load()
    follower.poll()
    _in_commands([first[200:]], data)
    while follower.poll():
        pass
    follower.poll()  # (kept)
    _in_commands([[lines[i] for i in sorted(late)]], data)  # (the log restated from their place)

    def erase(index: int) -> str:
        with EmbeddedEngine(data) as engine:
            views = engine.views
            keys = sorted(k for i, k in enumerate(views.node_keys)
                          if views.node_profile[i] is not None and k.startswith("email:"))
            engine.erase([tuple(keys[index].split(":", 1))], "dpo")
        return keys[index].split(":", 1)[1]

    def holds(value: str) -> bool:
        return value.encode() in pickle.dumps(follower.views) or any(value.encode() in b for _, b in follower.kept)

    def caught_up() -> None:
        for _ in range(100):
            if not (follower.poll() or follower.refold):
                return
        raise AssertionError("the follower did not catch up")

    gone = erase(0)  # (before the follower reads the restatement's end)
    caught_up()
    assert follower.views.digest() == _views_digest(data) and not holds(gone)

    class Stopped(Exception):
        pass

    def stop(self, *erased):
        raise Stopped  # (the writer stops after logging an erasure, before shredding its keys)

    gone = erase(1)
    with monkeypatch.context() as patched:
        patched.setattr(EmbeddedEngine, "shred", stop)
        with pytest.raises(Stopped):
            erase(2)
    follower.load()  # (as after an erasure before: folded from the checkpoint, written after it)
    caught_up()
    assert not holds(gone)
    EmbeddedEngine(data).close()  # (a writer opening shreds the keys of the erasure cut short)
    caught_up()
    assert follower.views.digest() == _views_digest(data) and follower.error is None
    follower.stop()


def killed_ingest(data: Path, path: Path, monkeypatch, logged: int, **options) -> None:
    """An ingest of ``path`` into ``data`` (``EmbeddedEngine`` ``options``) killed once it has logged ``logged``
    batches: before it restates or checkpoints."""
    commit, batches = EmbeddedEngine.commit, []

    def killed(self, pending):
        if pending:
            batches.append(len(pending))
            if len(batches) > logged:
                raise KeyboardInterrupt
        return commit(self, pending)

    with monkeypatch.context() as patched:
        patched.setattr(EmbeddedEngine, "commit", killed)
        with pytest.raises(KeyboardInterrupt):
            with EmbeddedEngine(data, **options) as engine:
                engine.ingest_file(path)


def test_late_events_a_run_logged_before_it_stopped_are_restated_when_the_log_is_next_opened(tmp_path, monkeypatch):
    """A run restates the log for its late events at its end: one stopped before (killed after it logged a
    batch holding events older than ones decided before) left them decided out of order for good, since
    nothing in the log says so and the run again finds them duplicates. The next writer to open the log
    restates it, and the customers and IDs are those of one ingest of everything."""
    from streams.ordering import order_key

    lines = sorted(_named_lines(random.Random(6), 300), key=lambda line: order_key(line.strip()))
    half = len(lines) // 2
    held = set(random.Random(6).sample(range(half // 2, half), 30))
    first = [x for i, x in enumerate(lines[:half]) if i not in held]
    second = [lines[i] for i in sorted(held)] + lines[half:]
    (tmp_path / "all.jsonl").write_bytes(b"".join(lines))
    (tmp_path / "second.jsonl").write_bytes(b"".join(second))
    with EmbeddedEngine(tmp_path / "one") as engine:
        engine.ingest_file(tmp_path / "all.jsonl")
    one = _read_back(tmp_path / "one")
    data = tmp_path / "d"
    _in_commands([first], data)
    killed_ingest(data, tmp_path / "second.jsonl", monkeypatch, logged=1, batch_size=40)
    with EmbeddedEngine(data) as engine:  # (opened: the late events logged are restated)
        engine.ingest_file(tmp_path / "second.jsonl")
        assert engine.verify_decisions() is None
    assert _read_back(data) == one


def _views_digest(data: Path) -> str:
    with EmbeddedEngine(data, writer=False, use_checkpoint=False) as engine:
        return engine.views.digest()


def test_a_person_s_command_is_not_decided_again(tmp_path):
    """Review verdicts, unmerges and erasures are explicit orderings: a restatement starts after the last."""
    lines, (newer, older) = _newer_then_older(tmp_path)
    data = tmp_path / "d"
    _in_commands([newer], data)
    with EmbeddedEngine(data) as engine:
        views = engine.views
        pid, prof = next((p, v) for p, v in sorted(views.profiles.items()) if len(v.nodes) >= 2)
        key = sorted(views.node_keys[n] for n in prof.nodes)[0]
        engine.unmerge(pid, [tuple(key.split(":", 1))], "ana", "two people")
        barrier = len(engine.log) - 1
    _in_commands([older], data)
    with DecisionLog(data, writer=False) as log:
        starts = [m["from_seq"] for m in log.restatements().values() if m["type"] == "log_restated"]
        assert starts and min(starts) > barrier
        assert not log.skipped(barrier)


_TIMES = st.floats(0, 1e6, allow_nan=False)


@settings(max_examples=500, deadline=None)
@given(now=_TIMES, since=_TIMES, written=st.integers(-10, 10**6), next_restate=_TIMES,
       wait=st.floats(0, 1e4, allow_nan=False), entries=st.integers(0, 10**5), later=st.floats(0, 1e4),
       more=st.integers(0, 10**5))
def test_when_late_events_are_restated(now, since, written, next_restate, wait, entries, later, more):
    from streams.stream_app import restate_due

    due = restate_due(now, since, written, next_restate, wait, entries)
    if now < next_restate:
        assert not due  # (restating takes at most a third of the time, however late events come)
    elif now >= since + wait:
        assert due  # (the wait is the longest late events wait)
    elif entries == 0 or written < entries:
        assert not due  # (neither the wait over nor the entries written: late events meanwhile gathered)
    else:
        assert due  # (enough traffic after them to decide again: they wait no longer)
    # later, or with more written, a restatement that was due stays due
    assert not due or restate_due(now + later, since, written + more, next_restate, wait, entries)


def test_late_events_a_log_holds_without_their_restatement_are_found_while_it_is_folded():
    """What a resolve worker finds when it folds the log: the live events after the last person's command that
    are older than one before them; a restatement's markers, and the entries it superseded, are not events."""
    from resolver.restate import event_key
    from streams.restating import Unrestated

    def event(day: int, eid: str) -> list[dict]:
        return [{"type": "interaction_recorded", "event_id": eid, "occurred_at": f"2025-01-{day:02d}T00:00:00.000000Z"}]

    log = [event(1, "a"), event(5, "b"), event(3, "c"), [{"type": "log_restate_begun", "from_seq": 1}],
           event(2, "d"), event(5, "b2")]
    verdict = [[{"type": "review_decided", "review_id": "r1"}]]
    after = [event(1, "e"), event(4, "f"), event(2, "g"), event(4, "f")]

    def found(entries, skips=()):
        late = Unrestated(list(skips))
        for seq, entry in enumerate(entries):
            late.take(seq, entry)
        return late.earliest, late.count

    assert found(log) == (event_key("2025-01-02T00:00:00.000000Z", "d"), 2)  # c and d, both older than b
    assert found(log[:2]) == (None, 0)
    # a person's command orders what came before it: only what follows it counts (e is older than b: not late)
    assert found(log + verdict + after) == (event_key("2025-01-02T00:00:00.000000Z", "g"), 1)
    # f superseded by a restatement (the entry at 8, the ranges skipped being [start, end)): the rest is in order
    assert found(log + verdict + after[:3], skips=[(8, 9)]) == (None, 0)
    assert found(log + verdict + after[:3], skips=[(7, 8)]) == (event_key("2025-01-02T00:00:00.000000Z", "g"), 1)


# ------------------------------------------------------------------------------------------------ Kafka
def test_late_events_through_kafka_restate_the_log_like_idres_ingest(kafka_bootstrap, tmp_path):
    """The newer half of a history through the stream jobs, then the older half (later than the reorder
    buffer waits): the resolve role restates the log, and the deployment gives the profiles and IDs of `idres
    ingest` of the whole file; the changelog, applied in order, gives the snapshot's mapping."""
    import os

    from streams.kafka_io import KafkaSettings
    from tests.cli_helpers import run_cli
    from tests.kafka_broker import unique_name
    from tests.test_stream import (Worker, accepted_events, all_decided, changelog_matches,
                                   snapshot_matches_embedded, wait_until)

    halves(tmp_path, 150, 21)
    prefix = unique_name("late") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)

    class Quick(Worker):
        env = {**os.environ, "IDRES_RESTATE_WAIT": "0.5", "IDRES_REORDER_WAIT": "0.2"}

    newer, every = accepted_events(tmp_path / "newer.jsonl", tmp_path), accepted_events(tmp_path / "all.jsonl", tmp_path)
    run_cli("produce", str(tmp_path / "newer.jsonl"), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    worker = Quick(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project")
    try:
        wait_until(lambda: all_decided(worker, settings, newer), 180, "the newer half decided", [worker])
        run_cli("produce", str(tmp_path / "older.jsonl"), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
        # (the older half may come in more than one wave of late events, each restating the log: wait for all)
        wait_until(lambda: worker.metrics().get("idres_restatements_total", 0) >= 1
                   and all_decided(worker, settings, every),
                   180, "the older half decided and the log restated", [worker])
        metrics = worker.metrics()
        assert metrics["idres_resolve_late_events_total"] > 0
        # (the project role took the entries this worker wrote while it ran, the restatement's among them, from
        # memory, not parsed and unsealed again: the changelog below is held to the snapshot of idres ingest's)
        assert metrics.get("idres_project_entries_written_here_total", 0) > 0
    finally:
        worker.stop()
    con = snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)
    changelog_matches(kafka_bootstrap, prefix, con)



def test_entries_read_with_a_restatement_s_end_are_folded_as_the_log_reads_after_it(kafka_bootstrap, tmp_path):
    """The project role reads a restatement's end and the entries written after it in one batch: those entries
    were decided on what the restatement decided again, which its views hold only once they are folded again
    (it applied them to the views of before and stopped: a merge of a profile only the restatement made,
    KeyError). The project worker is stopped (SIGSTOP) while the log is restated and newer events decided, so
    that it reads them all at once; then its views and the changelog are those of `idres ingest`."""
    import os
    import signal

    from streams.kafka_io import KafkaSettings
    from streams.stream_app import LogScan
    from tests.cli_helpers import run_cli
    from tests.kafka_broker import unique_name
    from tests.test_stream import (Worker, accepted_events, changelog_matches, live_decided, log_in_order, settled,
                                   snapshot_matches_embedded, wait_until)

    halves(tmp_path, 150, 21)
    newer = (tmp_path / "newer.jsonl").read_bytes().splitlines(keepends=True)
    cut = len(newer) * 3 // 10  # the newer half's first part, then the older half (late), then the rest
    (tmp_path / "first.jsonl").write_bytes(b"".join(newer[:cut]))
    (tmp_path / "last.jsonl").write_bytes(b"".join(newer[cut:]))
    (tmp_path / "first-and-older.jsonl").write_bytes(b"".join(newer[:cut]) + (tmp_path / "older.jsonl").read_bytes())
    prefix = unique_name("restatedbatch") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)

    class Quick(Worker):
        module = "tests.tansu_worker"  # (short fetch waits on the test broker)
        env = {**os.environ, "IDRES_RESTATE_WAIT": "0.5", "IDRES_REORDER_WAIT": "0.2"}

    class Patient(Worker):
        module = "tests.tansu_worker"
        session_timeout = 20  # (stopped for a while: its group keeps its partition meanwhile)

    def decided_in_order(accepted: int) -> bool:  # (by the resolve worker alone: the project worker is stopped)
        m = resolve.metrics()
        return (bool(m) and not m.get("idres_late_events_pending") and not m.get("idres_reorder_held_events")
                and len(live_decided(settings, scan := LogScan(settings))) == accepted
                and log_in_order(settings, scan))

    first = accepted_events(tmp_path / "first.jsonl", tmp_path)
    first_and_older = accepted_events(tmp_path / "first-and-older.jsonl", tmp_path)
    every = accepted_events(tmp_path / "all.jsonl", tmp_path)
    run_cli("produce", str(tmp_path / "first.jsonl"), *kafka)
    resolve = Quick(tmp_path, kafka_bootstrap, prefix, "validate,resolve")
    project = Patient(tmp_path, kafka_bootstrap, prefix, "project")
    workers = [resolve, project]
    try:
        wait_until(lambda: settled(workers, settings, first), 180, "the first part decided and projected", workers)
        project.proc.send_signal(signal.SIGSTOP)
        try:
            run_cli("produce", str(tmp_path / "older.jsonl"), *kafka)
            wait_until(lambda: resolve.metrics().get("idres_restatements_total", 0) >= 1
                       and decided_in_order(first_and_older), 180,
                       "the older half decided and the log restated", [resolve])
            run_cli("produce", str(tmp_path / "last.jsonl"), *kafka)
            wait_until(lambda: decided_in_order(every), 180, "the rest decided", [resolve])
        finally:
            project.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: settled(workers, settings, every), 180, "everything projected", workers)
        profiles = project.metrics()["idres_profiles"]
    finally:
        for w in workers:
            w.stop()
    con = snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)
    assert profiles == con.execute("SELECT count(*) FROM profiles").fetchone()[0]
    changelog_matches(kafka_bootstrap, prefix, con)


def test_late_events_a_resolve_worker_logged_before_it_was_killed_are_restated_by_the_next(kafka_bootstrap,
                                                                                          tmp_path):
    """A resolve worker restates for late events a while after it notes them; killed in between, it leaves them
    decided out of order in the log, which says nothing of them. The next worker to hold the log finds them while
    it folds the log and restates: the profiles and IDs are those of `idres ingest` of the whole file."""
    import os
    import signal

    from streams.kafka_io import KafkaSettings
    from tests.cli_helpers import run_cli
    from tests.kafka_broker import unique_name
    from tests.test_stream import (Worker, accepted_events, all_decided, changelog_matches,
                                   snapshot_matches_embedded, wait_until)

    halves(tmp_path, 120, 43)
    prefix = unique_name("latekill") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)

    class Slow(Worker):  # (notes late events, and would restate for them only after 10 minutes)
        env = {**os.environ, "IDRES_RESTATE_WAIT": "600", "IDRES_REORDER_WAIT": "0.2"}

    class Quick(Worker):
        env = {**os.environ, "IDRES_RESTATE_WAIT": "0.5", "IDRES_REORDER_WAIT": "0.2"}

    newer, every = accepted_events(tmp_path / "newer.jsonl", tmp_path), accepted_events(tmp_path / "all.jsonl", tmp_path)
    run_cli("produce", str(tmp_path / "newer.jsonl"), *kafka)
    first = Slow(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project")
    try:
        wait_until(lambda: all_decided(first, settings, newer), 180, "the newer half decided", [first])
        run_cli("produce", str(tmp_path / "older.jsonl"), *kafka)
        wait_until(lambda: first.metrics().get("idres_events") == every, 180, "the older half decided, late",
                   [first])
        m = first.metrics()
        assert m.get("idres_late_events_pending", 0) > 0 and not m.get("idres_restatements_total"), m
    finally:
        first.stop(signal.SIGKILL)
    until_restated(Quick(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project"), settings, every,
                   "the log restated by the next worker")
    con = snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)
    changelog_matches(kafka_bootstrap, prefix, con)


def test_late_events_on_a_busy_stream_are_restated_once_entries_were_written_after_them(kafka_bootstrap, tmp_path):
    """``IDRES_RESTATE_ENTRIES``: late events are restated once that many entries were written after the first of
    them, before ``IDRES_RESTATE_WAIT`` has passed, and the profiles and IDs are those of `idres ingest`."""
    import os
    import time

    from streams.kafka_io import KafkaSettings
    from tests.cli_helpers import run_cli
    from tests.kafka_broker import unique_name
    from tests.test_stream import Worker, accepted_events, all_decided, snapshot_matches_embedded, wait_until

    halves(tmp_path, 100, 23)
    prefix = unique_name("busy") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    wait = 40.0

    class ByCount(Worker):
        env = {**os.environ, "IDRES_RESTATE_WAIT": str(wait), "IDRES_RESTATE_ENTRIES": "50",
               "IDRES_REORDER_WAIT": "0.2"}

    def produce(name: str) -> None:
        run_cli("produce", str(tmp_path / f"{name}.jsonl"), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)

    newer, every = (accepted_events(tmp_path / f"{name}.jsonl", tmp_path) for name in ("newer", "all"))
    worker = ByCount(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project")
    try:
        produce("newer")
        wait_until(lambda: all_decided(worker, settings, newer), 180, "the newer half decided", [worker])
        produce("older")  # (late events, hundreds of them: the count is passed long before the wait)
        sent = time.monotonic()
        wait_until(lambda: worker.metrics().get("idres_restatements_total", 0) >= 1, wait - 10,
                   "a restatement before the wait is over", [worker])
        assert time.monotonic() - sent < wait
        # (a last wave of late events with fewer than 50 entries after it is restated when the wait is over)
        wait_until(lambda: all_decided(worker, settings, every), 180, "every late event restated", [worker])
        assert worker.metrics()["idres_resolve_late_events_total"] > 0
    finally:
        worker.stop()
    snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)


def test_a_restatement_a_resolve_worker_left_unfinished_is_closed_and_done_again(kafka_bootstrap, tmp_path):
    """A worker that stopped between a restatement's begun marker and its end: the next one closes it
    (``log_restate_abandoned``) and restates again; the profiles are those of `idres ingest`."""
    import os

    import orjson

    from resolver import decisions
    from resolver.restate import restate_id
    from streams.kafka_io import KafkaSettings, producer
    from streams.stream_app import LogScan
    from streams.synthetic import SyntheticConfig, write_dataset
    from tests.cli_helpers import run_cli
    from tests.kafka_broker import unique_name
    from tests.test_stream import Worker, accepted_events, all_decided, snapshot_matches_embedded, wait_until

    events = tmp_path / "events.jsonl"
    write_dataset(events, tmp_path / "truth.csv", SyntheticConfig(people=60, seed=4))
    prefix = unique_name("unfinished") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)

    class Quick(Worker):
        env = {**os.environ, "IDRES_REORDER_WAIT": "0.2"}

    every = accepted_events(events, tmp_path)
    run_cli("produce", str(events), "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    worker = Quick(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project")
    try:
        wait_until(lambda: all_decided(worker, settings, every), 180, "the events decided", [worker])
    finally:
        worker.stop()
    scan = LogScan(settings)
    start = scan.entries // 2
    begun = decisions.log_restate_begun(restate_id(start, scan.entries), start, 0, "2030-01-01T00:00:00Z")
    prod = producer(settings)
    prod.send(settings.topics.decisions, value=orjson.dumps({"v": 7, "entries": [[begun]]}), partition=0)
    prod.flush()
    prod.close()
    until_restated(Quick(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project"), settings, every,
                   "the restatement closed and done again")
    assert [m["type"] for _, m in sorted(LogScan(settings).markers.items())] == [
        "log_restate_begun", "log_restate_abandoned", "log_restate_begun", "log_restated"]
    snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)


def test_a_restatement_is_written_in_entries_of_bounded_size():
    from resolver import restate

    nodes = [f"email:p{i}@mailbox.org" for i in range(2500)]
    owners = [f"p_{i % 7}" if i % 3 else None for i in range(2500)]
    aliases = [[f"p_old{i}", f"p_{i % 7}"] for i in range(1200)]
    parts = restate.parts("r_1", nodes, owners, aliases)
    assert all(len(p["nodes"]) + len(p["aliases"]) <= restate.PART_ITEMS for p in parts)
    assert [n for p in parts for n in p["nodes"]] == nodes and [o for p in parts for o in p["owners"]] == owners
    assert [a for p in parts for a in p["aliases"]] == aliases


def test_a_restatement_through_kafka_rebuilds_from_a_kept_state_like_idres_ingest(kafka_bootstrap, tmp_path):
    """A few events come late, older than the last ones decided but newer than most: the resolve role
    restates the log from their place, rebuilding the state before it from a state it kept (not from the
    start of the log), and the deployment gives the profiles and IDs of `idres ingest` of the whole file.
    The project role and a follower of the topic (`serve --bootstrap`) fold their views again from views
    they kept too, and those are the views folded from the start of the topic (the follower's first try
    failing: its next look does it)."""
    import os

    from streams.api import KafkaFollower
    from streams.kafka_io import KafkaSettings
    from tests.cli_helpers import run_cli
    from tests.kafka_broker import unique_name
    from tests.test_stream import (Worker, accepted_events, all_decided, changelog_matches,
                                   snapshot_matches_embedded, wait_until)

    lines = history(tmp_path, 150, 23)
    tail = range(len(lines) - len(lines) // 40, len(lines) - 5)  # (the last 2.5 %, but the very last five)
    late = set(list(tail)[::4])
    first = [x for i, x in enumerate(lines) if i not in late]
    (tmp_path / "first.jsonl").write_bytes(b"".join(first[:len(first) * 3 // 4]))
    (tmp_path / "second.jsonl").write_bytes(b"".join(first[len(first) * 3 // 4:]))
    (tmp_path / "late.jsonl").write_bytes(b"".join(lines[i] for i in sorted(late)))
    (tmp_path / "all.jsonl").write_bytes(b"".join(lines))
    prefix = unique_name("rewind") + "."
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)

    class Quick(Worker):
        env = {**os.environ, "IDRES_RESTATE_WAIT": "0.5", "IDRES_REORDER_WAIT": "0.2", "IDRES_REWIND_EVERY": "200"}

    (tmp_path / "first-two.jsonl").write_bytes(b"".join(first))
    counts = {part: accepted_events(tmp_path / f"{part}.jsonl", tmp_path) for part in ("first", "first-two", "all")}

    # (one raw partition: the first part is decided in order, and the late events are late by their time only)
    produce = ["--bootstrap", kafka_bootstrap, "--topic-prefix", prefix, "--topic", settings.topics.raw(),
               "--partitions", "1"]
    run_cli("produce", str(tmp_path / "first.jsonl"), *produce)
    worker = Quick(tmp_path, kafka_bootstrap, prefix, "validate,resolve,project")
    follower = KafkaFollower(settings, rewind_every=200)
    load, failed = follower.load, []

    def load_once_failing(restated: bool = False) -> None:  # (a look that fails as it folds the views again)
        if restated and not failed:
            failed.append(restated)
            raise OSError("the broker did not answer")
        load(restated=restated)

    follower.load = load_once_failing  # type: ignore[method-assign]
    try:
        wait_until(lambda: all_decided(worker, settings, counts["first"]), 180, "the first part decided", [worker])
        # (started once the topic holds entries: Tansu loses a write made while a reader asks for an empty
        # topic's end offsets, as `serve --bootstrap`'s follower does; see tests/kafka_broker.py)
        follower.start()
        kept = worker.metrics().get("idres_rewind_point_entries", 0)
        assert kept > 0, "the resolve role keeps a state to rebuild from"
        run_cli("produce", str(tmp_path / "second.jsonl"), *produce)  # (later than the late events, all of it)
        wait_until(lambda: worker.metrics().get("idres_rewind_point_entries", 0) > kept
                   and all_decided(worker, settings, counts["first-two"]), 180, "the second part decided", [worker])
        newer = worker.metrics()["idres_rewind_point_entries"]  # (the two kept: no other while late events wait)
        run_cli("produce", str(tmp_path / "late.jsonl"), *produce)
        wait_until(lambda: worker.metrics().get("idres_restatements_total", 0) >= 1
                   and all_decided(worker, settings, counts["all"]), 180, "the late events decided and the log restated",
                   [worker])
        rebuilt_from = worker.metrics()["idres_restatement_rebuilt_from"]
        # from a kept state, not from the start of the log: the first, or the second where the batches put it
        # before the late events' place (the second part holds events from before it as well as after)
        assert rebuilt_from in (kept, newer)
        metrics = worker.metrics()
        entries = int(metrics["idres_log_entries_written_total"])  # (the worker wrote the whole log)
        wait_until(lambda: worker.metrics()["idres_log_entries_applied"] == entries, 60, "the log projected", [worker])
        assert worker.metrics()["idres_views_rebuilt_from"] > 0  # (from views it kept)
        wait_until(lambda: follower.read_seq == entries and not follower.restating and not follower.refold, 60,
                   "the follower caught up")
        assert follower.error is None and follower.rebuilt_from > 0 and failed and follower.poll_errors >= 1
        whole = KafkaFollower(settings, rewind_every=0)  # (the views folded from the start of the topic)
        whole.load()
        assert whole.rebuilt_from == 0 and whole.read_seq == entries
        with follower.lock:
            assert follower.views.digest() == whole.views.digest()
            assert [seq for seq, _ in follower.recent] == list(range(entries))  # (every entry's changes, once)
    finally:
        follower.stop()
        worker.stop()
    con = snapshot_matches_embedded(kafka_bootstrap, prefix, tmp_path / "all.jsonl", tmp_path)
    changelog_matches(kafka_bootstrap, prefix, con)


def test_closing_a_restatement_cut_short_gives_back_what_its_merges_moved_to_a_changelog_reader():
    """A restatement cut short after a merge: the merge names profiles, not the identifiers it moves, and a
    changelog reader moved them all. The parts that close it give every identifier the entries moved, by name or
    with its profile, the profile that holds it without them."""
    import copy

    from resolver import restate
    from streams.restating import abandoned
    from tests.resolver_helpers import Run, ev

    run = Run().feed([ev("e1", 0, email="ann@mailbox.org", phone="+447700900001"),
                      ev("e2", 1, email="bob@mailbox.org", phone="+447700900002", loyalty_id="L-2")])
    without = copy.deepcopy(run.resolver.state)  # (the log as it reads without the restatement's entries)
    run.feed([ev("e3", 2, email="ann@mailbox.org", phone="+447700900002")])  # (Bob's email and card not named)
    cut = run.log[2:]
    assert any(d["type"] == "profiles_merged" for entry in cut for d in entry), cut
    begun = {"type": "log_restate_begun", "restate_id": "r1", "from_seq": 2, "late_events": 1,
             "decided_at": "2030-01-01T00:00:00Z"}
    closing = abandoned(without, begun, len(run.log), cut, "2030-01-01T00:00:01Z")
    table = Table()
    entries = [*run.log[:2], [begun], *cut, *([d] for d in closing)]  # (the log as a changelog reader reads it)
    table.apply(c for seq, entry in enumerate(entries) for c in changes_of(seq, entry))
    held = restate.owners(without, sorted(table.owner))
    assert table.owner == {k: pid for k, pid in held.items() if pid is not None}
    assert table.owner["email:bob@mailbox.org"] != table.owner["email:ann@mailbox.org"]


def test_late_events_read_as_pending_until_their_restatement_s_end_is_logged(monkeypatch):
    """The resolve role's ``idres_late_events_pending`` counts the late events it restates until the end of
    their restatement is logged, not only until it begins: whoever waits for it to be 0 to read the log (an
    operator, a check that a deployment caught up) read a log whose restatement was still being written (its
    entries skipped, the late events decided out of order) and a changelog without its changes."""
    import asyncio
    import copy
    from types import SimpleNamespace

    import streams.stream_app as stream_app
    from resolver.decisions import record_of
    from resolver.restate import event_key
    from streams.stream_app import Metrics, StreamJobs, WorkerOptions
    from tests.resolver_helpers import Run, ev

    run = Run().feed([ev(f"e{i}", 10 * i, email=f"c{i % 3}@mailbox.org") for i in range(1, 30)])
    run.feed([ev("late", 5, email="c1@mailbox.org", phone="+447700900001")])  # (older than all but the first)
    start = 1  # (the late event's place: after e1)
    entries = copy.deepcopy(run.log)

    def fold(settings, resolver=None, start=0, seq=0, end=None, rest=None, scan=None, **_):
        for at, entry in enumerate(entries):
            if at < end:
                resolver.apply_all(entry)
            else:
                rest(copy.deepcopy(entry))
        return len(entries), len(entries)

    scan = SimpleNamespace(start=start, entries=len(entries))
    monkeypatch.setattr(stream_app, "fold_decision_log", fold)
    monkeypatch.setattr(stream_app, "LogScan", lambda *args, **kwargs: scan)
    jobs = StreamJobs.__new__(StreamJobs)  # (the role's restating alone: no Faust app, no broker)
    jobs.metrics, jobs.options, jobs.settings = Metrics(), WorkerOptions(batch_events=4), None
    jobs.resolver, jobs.rewind_points, jobs.scan_state = run.resolver, [], SimpleNamespace(entries=len(entries))
    late = record_of(entries[-1])
    jobs.earliest_late, jobs.late_events = event_key(late["occurred_at"], late["event_id"]), 1
    jobs.metrics.gauges["late_events_pending"] = 1
    written: list[tuple[float, list[str]]] = []  # (the gauge as each write is made, the types written)

    async def flush(chunk, pending):
        written.append((jobs.metrics.gauges["late_events_pending"], [d["type"] for e in chunk for d in e]))

    jobs._flush = flush
    asyncio.run(jobs._restate())
    assert len(written) > 3 and "log_restate_begun" in written[0][1] and "log_restated" in written[-1][1]
    assert [gauge for gauge, _ in written] == [1] * len(written)  # (pending while any of it is being written)
    assert jobs.metrics.gauges["late_events_pending"] == 0 and jobs.metrics.counters["restatements"] == 1


def test_a_restatement_s_alias_points_an_id_the_views_hold_as_an_alias_anew_as_the_resolver_does():
    """A restatement may point anew an ID that is an alias already (a merge decided again left it with a profile
    that no longer holds what named it): the views follow the part as the resolver's fold does, or the lookup API
    and the resolver would lead the ID to two customers."""
    from resolver.decisions import log_restate_part
    from tests.resolver_helpers import Run, ev

    run = Run().feed([ev("e1", 0, email="ann@b.org"), ev("e2", 1, email="bob@c.org"),
                      ev("e3", 2, email="ann@b.org", phone="+14155550100"),
                      ev("e4", 3, email="bob@c.org", phone="+14155550100"), ev("e5", 4, email="cy@d.org")])
    st, views = run.resolver.state, run.views
    absorbed = [old for old in st.aliases if old not in st.profiles]
    assert len(absorbed) == 1 and views.resolve(absorbed[0]) == st.resolve_alias(absorbed[0]) != run.profile_of("e5")
    part = log_restate_part("r_test", [], [], [[absorbed[0], run.profile_of("e5")]])
    run.resolver.apply(part)
    views.apply_entry(len(run.log), [part])
    assert views.resolve(absorbed[0]) == st.resolve_alias(absorbed[0]) == run.profile_of("e5")


@pytest.mark.parametrize("identifiers", [
    {"phone": "(415) 555-0134", "mobile": "(415) 555-0199"},  # both read as written (two phone types)
    {"mobile": "(415) 555-0199", "phone": "(415) 555-0134"},
    {"email": "n/a", "loyalty_id": "N.A.", "phone": "+14155550134"},  # two ignored, listed before the one used
])
def test_an_event_decided_again_records_its_identifiers_as_the_first_decision_did(tmp_path, identifiers):
    """Deciding an event again from the log (a restatement, `replay --verify`) lists its identifiers in the
    log's order: the ones read as written and the ones not used were recorded in the event's order, so the
    decision differed and verify failed."""
    from dataclasses import replace

    from resolver.config import IdentifierRule, ResolverConfig

    base = ResolverConfig()
    config = replace(base, identifier_types={**base.identifier_types,
                                             "mobile": IdentifierRule(kind="phone", priority=25)})
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"event_id": "e1", "occurred_at": "2025-01-02T00:00:00Z", "channel": "web",
                                "event_type": "login", "identifiers": identifiers}) + "\n")
    with EmbeddedEngine(tmp_path / "data", config=config) as engine:
        engine.ingest_file(path)
        assert engine.verify_decisions() is None
