"""Key shards over Kafka (``streams.kafka_key_shards``): the coordinator's requests and the shards' answers on
two topics of a real broker, the shards held by worker processes in one consumer group; the log is the one of
deciding every record in order."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import time
from collections import Counter

import pytest

from streams.kafka_io import KafkaSettings
from streams.kafka_key_shards import (
    FRAME_BYTES, Assembler, KafkaKeyShards, PartsLost, frames, restricted_loads,
)
from tests.kafka_broker import unique_name
from tests.key_shard_holders import deployment, stop_holders
from tests.test_shards import every_guard_corpus


# ------------------------------------------------------------------------------------ what crosses
class _Runs:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_message_that_names_anything_but_the_parts_classes_is_refused():
    with pytest.raises(pickle.UnpicklingError, match="posix.system"):
        restricted_loads(pickle.dumps(_Runs()))
    # nothing a resolver module imported (a module, a function of the standard library) comes through its name,
    # nor anything reached through a dotted name
    for module, name in (("resolver.config", "json"), ("resolver.ids", "intern"), ("resolver.config", "json.loads"),
                         ("builtins", "eval"), ("builtins", "getattr"), ("os", "system")):
        with pytest.raises(pickle.UnpicklingError, match="may not carry"):
            restricted_loads(b"c" + module.encode() + b"\n" + name.encode() + b"\n.")
    assert restricted_loads(b"cresolver.partition\nNodePart\n.").__name__ == "NodePart"


@pytest.mark.parametrize("kind", ["answers", "apply_shares"])
def test_what_one_shard_passes_to_another_inside_a_request_is_read_as_restricted_as_the_request(kind, tmp_path):
    """The owners' answers to a shard's questions and a window's changes travel inside a request as blobs one
    shard pickled for another: they are read through the same restricted reader, so a blob someone else wrote
    on the requests topic cannot run code in the worker that holds the shard (it ran ``os.system``)."""
    from resolver.config import ResolverConfig
    from resolver.owner import PartStore
    from streams.key_shard_processes import ShardServer

    made = tmp_path / "ran"

    class Touches:
        def __reduce__(self):
            return (os.system, (f"touch {made}",))

    evil = pickle.dumps(Touches())
    server = ShardServer(ResolverConfig(), 0, 1, PartStore(0, 1))
    with pytest.raises(pickle.UnpicklingError, match="may not carry"):
        server.handle(("answers", [evil]) if kind == "answers" else ("apply_shares", [evil], 0))
    assert not made.exists()


def test_what_the_shards_send_each_other_is_read_back_whole():
    records, config, _ = every_guard_corpus()
    from streams.key_shard_processes import KeyShardProcesses

    class Checked(KeyShardProcesses):  # every request and answer through the restricted reader
        def _asked_all(self, requests):
            for r in requests.values():
                assert restricted_loads(pickle.dumps(r, pickle.HIGHEST_PROTOCOL)) is not None
            out = super()._asked_all(requests)
            restricted_loads(pickle.dumps(out, pickle.HIGHEST_PROTOCOL))
            return out

    with Checked(config, 2, 128) as keyed:
        keyed.decide(records[:400])


class _Record:
    def __init__(self, value, headers):
        self.value, self.headers = value, headers


def test_frames_are_put_together_whatever_else_comes_between_them():
    from streams.kafka_key_shards import _headers

    blob = os.urandom(2 * FRAME_BYTES + 17)
    parts = frames(blob)
    assert len(parts) == 3 and b"".join(parts) == blob
    a = Assembler()
    mine = [_Record(f, _headers("s1", 4, 2, i, len(parts))) for i, f in enumerate(parts)]
    other = [_Record(b"x", _headers("s0", 9, 2, 0, 2)), _Record(b"y", None)]
    got = [a.add(r) for r in [mine[0], other[0], mine[1], other[1], mine[2]]]
    assert got[:4] == [None] * 4 and got[4] == ("s1", 4, 2, blob)
    assert a.add(_Record(b"", _headers("s1", 5, 0, 0, 1))) == ("s1", 5, 0, b"")


def test_a_holder_handles_a_request_once_whatever_another_session_sends_meanwhile():
    """A request sent again is answered with the answer it got, not handled again: even when a request of
    another session (an ended one, read again after a rebalance) came between the two."""
    from resolver.config import ResolverConfig
    from streams.kafka_key_shards import PROTOCOL, KeyShardHolder

    holder = KeyShardHolder(ResolverConfig())
    handled = []
    real = holder.handle
    holder.handle = lambda session, shard, blob: handled.append((session, shard)) or real(session, shard, blob)
    ask = lambda request: pickle.dumps(request, pickle.HIGHEST_PROTOCOL)  # noqa: E731
    assert holder.answered("new", 1, 0) is None
    holder.answer("new", 1, 0, ask(("load", 2, None, PROTOCOL)))
    first = holder.answer("new", 2, 0, ask(("known", ["e1"])))
    assert restricted_loads(first) == (True, [None])
    stale = restricted_loads(holder.answer("old", 7, 0, ask(("known", ["e1"]))))
    assert stale[0] is False and "holds no parts" in stale[1]
    assert holder.answered("new", 2, 0) == first and holder.answered("new", 1, 0) == b""
    assert holder.answered("new", 3, 0) is None
    assert handled == [("new", 0), ("new", 0), ("old", 0)]
    holder.answer("newer", 1, 0, ask(("load", 2, None, PROTOCOL)))  # (a new session: the others are forgotten)
    assert holder.answered("new", 2, 0) is None and holder.answered("old", 7, 0) is None


def test_a_holder_drops_a_session_s_parts_and_answers_when_it_ends_and_only_that_session_s():
    """A session that ends (an erasure ends one: the holders hold what it erased) tells its holders to drop its
    parts: they go at once, with the answers kept for it, and a drop of another session leaves them."""
    from resolver.config import ResolverConfig
    from streams.kafka_key_shards import PROTOCOL, KeyShardHolder

    holder = KeyShardHolder(ResolverConfig())
    ask = lambda request: pickle.dumps(request, pickle.HIGHEST_PROTOCOL)  # noqa: E731
    holder.answer("s", 1, 0, ask(("load", 2, None, PROTOCOL)))
    parts = holder.answer("s", 2, 0, ask(("parts", 0)))
    assert restricted_loads(holder.answer("old", 9, 0, ask(("drop",)))) == (True, None)
    assert holder.servers[0][0] == "s" and holder.answered("s", 2, 0) == parts
    assert restricted_loads(holder.answer("s", 3, 0, ask(("drop",)))) == (True, None)
    assert 0 not in holder.servers and holder.answered("s", 2, 0) == b""  # (the parts' answer is gone)
    ok, why = restricted_loads(holder.answer("s", 4, 0, ask(("known", ["e1"]))))
    assert not ok and "holds no parts" in why


def test_a_holder_of_another_version_refuses_a_session_and_says_to_run_one_version():
    """A load from a coordinator of another version (or of the first, which sent no version) is refused with
    a reason that says what to do; the holder holds nothing of that session, and a load of its own version
    is taken."""
    from resolver.config import ResolverConfig
    from streams.kafka_key_shards import PROTOCOL, KeyShardHolder

    holder = KeyShardHolder(ResolverConfig())
    ask = lambda request: pickle.dumps(request, pickle.HIGHEST_PROTOCOL)  # noqa: E731
    for load in [("load", 2, None), ("load", 2, None, PROTOCOL + 1)]:
        ok, why = restricted_loads(holder.answer("s", 1, 0, ask(load)))
        assert not ok and "run one version of idres on every worker" in why, why
        assert 0 not in holder.servers
    assert restricted_loads(holder.answer("t", 1, 0, ask(("load", 2, None, PROTOCOL)))) == (True, None)
    assert holder.servers[0][0] == "t"


def test_a_shard_given_back_keeps_its_parts_unless_another_holder_read_its_requests_meanwhile():
    """Every rebalance takes each partition away before it gives them out again: a shard given back to its holder
    keeps its parts (the coordinator need not load it again), one given to another holder loses them, and one
    whose requests another holder read meanwhile (the first read after the rebalance is not the next one here)
    loses them before that request is handled: those parts may be behind what the other holder changed."""
    from streams.kafka_key_shards import KeptThrough

    servers = {0: "parts of 0", 1: "parts of 1", 2: "parts of 2"}
    kept = KeptThrough(servers)
    for shard, offset in [(0, 4), (1, 10), (2, 7), (0, 5)]:
        kept.read(shard, offset)
    kept.assigned({0, 1, 2})  # (a worker joined, and the group gave this holder its shards back)
    kept.read(0, 6)  # (the next request of shard 0)
    kept.read(2, 8)
    kept.read(1, 14)  # (another holder read 11 to 13 of shard 1 meanwhile)
    assert servers == {0: "parts of 0", 2: "parts of 2"}
    kept.read(0, 7)
    kept.assigned({0})  # (shard 2 given to another holder)
    assert servers == {0: "parts of 0"}
    kept.read(0, 7)  # (read again: its commit was lost; a request read twice is answered once, but the parts go)
    assert servers == {}
    kept.assigned({0, 1})
    assert servers == {}  # (what it holds no parts of, it answers so)


class _InProcess(KafkaKeyShards):
    """``KafkaKeyShards`` with its holders in this process (``KeyShardHolder``s, each shard's requests handled in
    order by whoever holds it) and failures on demand: a request whose send fails for some shards (the others
    handled), a put handled whose answer does not come in time, a holder lost."""

    def __init__(self, config, n, max_window, state):
        from streams.key_shard_processes import RemoteKeyShards
        from streams.kafka_key_shards import KeyShardHolder, PROTOCOL

        RemoteKeyShards.__init__(self, config, n, max_window, None, 60.0, state=state, new_only=True)
        self.session, self.seq, self.round_trips, self.resent, self.reloaded = "s", 0, 0, 0, 0
        self.holders = {s: KeyShardHolder(config) for s in range(n)}
        self.send_fails: set[int] = set()
        self.put_unanswered = False
        stores, self._seed = self._seed, []
        self._ask({s: ("load", n, stores[s], PROTOCOL) for s in range(n)})

    def close(self, wait=2.0):
        pass

    def lose(self, shard):  # (another holder, which holds nothing, is given the shard)
        from streams.kafka_key_shards import KeyShardHolder

        self.holders[shard] = KeyShardHolder(self.config)

    def _asked_all(self, requests):
        from streams.kafka_io import KafkaIOError
        from streams.kafka_key_shards import NO_PARTS

        self.seq += 1
        got = {s: restricted_loads(self.holders[s].answer(self.session, self.seq, s,
                                                          pickle.dumps(r, pickle.HIGHEST_PROTOCOL)))
               for s, r in requests.items() if s not in self.send_fails}
        if set(requests) & self.send_fails:
            self.send_fails.clear()
            raise KafkaIOError("could not send a request to the key shards")
        if self.put_unanswered and any(r[0] == "put" for r in requests.values()):
            self.put_unanswered = False
            raise KafkaIOError("key shard(s) did not answer")
        failed = [s for s, (ok, why) in got.items() if not ok]
        if failed and all(NO_PARTS in got[s][1] for s in failed):
            raise PartsLost("lost", failed)
        assert not failed, got
        return {s: answer for s, (_, answer) in got.items()}

    def held(self):
        """What the holders hold, as ``LocalKeyShards`` holds it (``stores``)."""
        from types import SimpleNamespace

        return SimpleNamespace(stores=[self.holders[s].servers[s][1].store for s in range(self.n)], n=self.n,
                               new_only=self.new_only)


def _in_process_after(seed: int, n: int, people: int, shards: int, window: int, loaded: int, decided: int):
    """The corpus of ``seed`` as raw records, a whole state that decided its first ``decided`` in order, and an
    ``_InProcess`` session loaded with the first ``loaded`` and in step with that state (the rest decided on it)."""
    import copy

    from resolver.config import ResolverConfig
    from resolver.engine import Resolver
    from streams.shards import in_order
    from tests.test_shards import corpus

    raws = [e.model_dump_json().encode() for e in corpus(random.Random(seed), n, people=people)]
    config = ResolverConfig()
    whole = Resolver(config)
    in_order(raws[:loaded], whole)
    keyed = _InProcess(config, shards, window, copy.deepcopy(whole.state))
    for entry in keyed.decide(raws[loaded:decided]):
        whole.apply_all(entry)
    return raws, whole, keyed


@pytest.mark.parametrize("seed", range(4))
def test_changes_sent_ahead_of_a_request_that_could_not_be_sent_are_sent_again_when_the_session_follows(seed):
    """A run's last changes go to their owners ahead of the next request to each (``then``). When that request
    cannot be sent, they may never arrive, and the decisions that made them are not decided again: the session
    that follows the state sends those names again as the state holds them (the owners then hold its parts, and
    the next records are decided as it decides them). Without it the owners fell out of step: a profile missing at
    its owner, and wrong decisions or a shard failing on the next run."""
    from streams.kafka_io import KafkaIOError
    from streams.shards import in_order
    from tests.test_key_shards import _owners_hold_named_aside, decided_noting

    raws, whole, keyed = _in_process_after(seed, 400, 40, 3, 40, 120, 200)
    assert keyed._deferred  # (the run's last changes, still to go)
    keyed.send_fails = set(keyed._deferred)
    with pytest.raises(KafkaIOError):
        keyed.decide(raws[200:280])
    _, since, touched = decided_noting(whole, raws[200:280])
    keyed.follow(whole.state, since, touched)
    _owners_hold_named_aside(keyed.held(), whole.state)
    assert keyed.decide(raws[280:]) == in_order(raws[280:], whole)


def test_a_restatement_from_before_a_shard_was_loaded_anew_loads_a_new_session_even_if_that_follow_failed():
    """A lost holder's shard loaded anew knows nothing written before: a restatement from a place before that
    load cannot be followed (it would miss what the superseded decisions wrote there), even when the follow that
    loaded it failed after the load (its put unanswered) and the next follow found nothing lost."""
    from streams.kafka_io import KafkaIOError
    from tests.test_key_shards import _restated_whole, decided_noting

    raws, whole, keyed = _in_process_after(3, 260, 120, 2, 16, 60, 120)
    keyed.lose(1)
    with pytest.raises(PartsLost):
        keyed.decide(raws[120:124])
    _, since, touched = decided_noting(whole, raws[120:124])
    keyed.put_unanswered = True
    with pytest.raises(KafkaIOError):
        keyed.follow(whole.state, since, touched)
    assert keyed.reloaded == 1 and keyed.loaded_at == len(whole.state.seen_events)
    with pytest.raises(ValueError):  # (the resolve role then loads a new session)
        keyed.follow(whole.state, since, touched)
    restated, moved, place = _restated_whole(whole.config, raws[:95], raws[95:124])
    with pytest.raises(ValueError):
        keyed.follow(restated.state, place, moved)


# ------------------------------------------------------------------------------------ on the broker
def test_three_key_shards_held_by_two_workers_give_the_log_of_deciding_in_order(kafka_bootstrap, tmp_path):
    """...and a person's commands between two batches, each decided on a slice the coordinator collects through
    the broker, keep the shards in step with the state deciding in order."""
    from resolver.engine import Resolver
    from streams.shards import in_order
    from tests.test_key_shards import follow_commands

    records, config, _ = every_guard_corpus()
    settings, procs, stop = deployment(kafka_bootstrap, tmp_path, "keyshards", 3)
    try:
        # the holders join their group meanwhile: requests wait in their partitions until they are read
        with KafkaKeyShards(settings, config, 3, 128, wait=90) as keyed:
            got = keyed.decide(records[:700])
            whole = Resolver(config)
            assert got == in_order(records[:700], whole)
            assert {"review", "unmerge", "lift"} <= follow_commands(whole, keyed, random.Random(5), 12)
            assert keyed.decide(records[700:]) == in_order(records[700:], whole)
            assert not keyed.stores and keyed.stats["calibrations"] >= 1 and keyed.stats["remote_writes"] > 0
            assert keyed.round_trips > 0
    finally:
        stop_holders(procs, stop)
    assert [p.exitcode for p in procs] == [0, 0]


def test_a_lost_request_or_a_lost_answer_is_sent_again_and_handled_once(kafka_bootstrap, tmp_path, monkeypatch):
    """A request that never reaches its holder, and an answer that never reaches the coordinator (a broker can
    lose a write it acknowledged with acks=1 as its leader fails over): the coordinator sends the request again,
    the holder handles it if it had not, else sends the answer it gave; nothing is applied twice."""
    import threading

    from resolver.engine import Resolver
    from streams import kafka_key_shards
    from streams.kafka_key_shards import KeyShardHolder, create_topics, serve
    from streams.shards import in_order

    monkeypatch.setattr(kafka_key_shards, "RESEND_S", 0.5)
    records, config, _ = every_guard_corpus()
    settings = KafkaSettings(bootstrap=kafka_bootstrap, prefix=unique_name("keyshardlost") + ".")
    create_topics(settings, 2)
    handled: list = []

    class Forgetful(KeyShardHolder):  # the answer to every 5th request of shard 0 lost once
        def answer(self, session, seq, shard, blob):
            out = super().answer(session, seq, shard, blob)
            handled.append((seq, shard))
            return b"" if shard == 0 and seq % 5 == 0 else out

    class Lossy(KafkaKeyShards):  # every 7th request to shard 1 lost once
        def _send_requests(self, seq, blobs):
            if seq % 7 == 0 and 1 in blobs and (seq, 1) not in lost:
                lost.add((seq, 1))
                blobs = {s: b for s, b in blobs.items() if s != 1}
            super()._send_requests(seq, blobs)

    lost: set = set()
    held, done = threading.Event(), threading.Event()
    holder = Forgetful(config, assigned=lambda n: n == 2 and held.set())
    thread = threading.Thread(target=serve, args=(settings, config, done.is_set, 6000, holder), daemon=True)
    thread.start()
    try:
        assert held.wait(60), "the holder was not given both shards"
        with Lossy(settings, config, 2, 128, wait=60) as keyed:
            got = keyed.decide(records[:300])
            resent, trips = keyed.resent, keyed.round_trips
    finally:
        done.set()
        thread.join(20)
    assert got == in_order(records[:300], Resolver(config))
    assert lost and any(seq % 5 == 0 for seq, shard in handled if shard == 0)
    assert resent >= len(lost) and trips > 7
    assert len(handled) == len(set(handled))  # (every request handled once, however often it came)


def test_after_a_holder_is_killed_a_new_session_loaded_from_the_log_decides_on_as_in_order(kafka_bootstrap,
                                                                                             tmp_path):
    """What a coordinator does when a holder is lost: it folds the log it wrote (the source of truth) and
    begins a new session from that state; the batch it was deciding is decided again from there. The shards
    the surviving holder kept from the old session are loaded again too (they may hold half a window)."""
    from resolver.engine import Resolver
    from resolver.state import ResolverState
    from streams.shards import in_order

    records, config, _ = every_guard_corpus()
    settings, procs, stop = deployment(kafka_bootstrap, tmp_path, "keyshardtake", 3)
    log: list = []
    batches = [records[i:i + 300] for i in range(0, len(records), 300)]
    sessions = []
    try:
        keyed = KafkaKeyShards(settings, config, 3, 128, wait=40)
        sessions.append(keyed.session)
        b = 0
        while b < len(batches):
            if b == 2 and len(sessions) == 1:
                os.kill(procs[0].pid, signal.SIGKILL)  # (mid-stream, between two batches)
                procs[0].join(5)
                killed = time.monotonic()
            try:
                log += keyed.decide(batches[b])
                b += 1
            except PartsLost as exc:
                # the other worker is given the dead one's shards (or nobody answers for them): their parts are
                # gone with the worker, and the coordinator says so (not waited out) rather than deciding on
                # shards that lost them; the session is over
                assert "holds no parts of this coordinator's session" in str(exc) and len(sessions) == 1
                assert time.monotonic() - killed < 30  # (the group gives the shards on within seconds: no 40 s wait)
                with pytest.raises(RuntimeError, match="the key shards stopped"):
                    keyed.decide(batches[b])
                keyed.close()
                folded = Resolver(config, ResolverState())
                for entry in log:
                    folded.apply_all(entry)
                keyed = KafkaKeyShards(settings, config, 3, 128, wait=40, state=folded.state)
                sessions.append(keyed.session)
        keyed.close()
    finally:
        stop_holders(procs, stop)
    assert len(set(sessions)) == 2  # (the batch after the kill was decided again, in a new session)
    # (the same batches decided in order: a batch's rejections are keyed by their index in it)
    alone = Resolver(config)
    assert log == [entry for batch in batches for entry in in_order(batch, alone)]


def test_after_a_holder_is_killed_the_session_follows_the_state_and_loads_only_the_lost_shards(kafka_bootstrap,
                                                                                               tmp_path):
    """What the resolve role does when a holder is lost: the batch is decided in order on the whole state (what it
    touches noted), and the session follows that state (``KafkaKeyShards.follow``). The holder left keeps the
    parts of the shards the group gives it back; only the lost holder's shards are loaded anew, and the session
    goes on with the log of deciding in order."""
    from resolver.engine import Resolver
    from tests.test_key_shards import decided_noting
    from streams.shards import in_order

    records, config, _ = every_guard_corpus()
    settings, procs, stop = deployment(kafka_bootstrap, tmp_path, "keyshardfollow", 3)
    log: list = []
    whole = Resolver(config)
    batches = [records[i:i + 300] for i in range(0, len(records), 300)]
    lost = None
    try:
        keyed = KafkaKeyShards(settings, config, 3, 128, wait=40)
        b = 0
        while b < len(batches):
            if b == 2 and lost is None:
                os.kill(procs[0].pid, signal.SIGKILL)  # (mid-stream, between two batches)
                procs[0].join(5)
            try:
                got = keyed.decide(batches[b])
            except PartsLost as exc:
                assert lost is None
                lost = exc.shards
                got, since, touched = decided_noting(whole, batches[b])
                keyed.follow(whole.state, since, touched)
                log += got
                b += 1
                continue
            for entry in got:
                whole.apply_all(entry)
            log += got
            b += 1
        session, reloaded = keyed.session, keyed.reloaded
        keyed.close()
    finally:
        stop_holders(procs, stop)
    assert lost, "the killed holder's shards were never found lost"
    # (the killed holder held one or two of the three shards; the one left kept its own through the rebalance)
    assert reloaded == len(lost) < 3, (reloaded, lost)
    assert session == keyed.session
    alone = Resolver(config)
    assert log == [entry for batch in batches for entry in in_order(batch, alone)]


def test_a_session_that_ends_leaves_nothing_at_its_holders(kafka_bootstrap):
    """Closing a session tells its holders to drop its parts: a holder serving the requests topic holds none of
    them shortly after, without a new session to replace them."""
    import threading

    from resolver.engine import Resolver
    from streams.kafka_key_shards import KeyShardHolder, create_topics, serve
    from streams.shards import in_order

    records, config, _ = every_guard_corpus()
    settings = KafkaSettings(bootstrap=kafka_bootstrap, prefix=unique_name("keyshardend") + ".")
    create_topics(settings, 2)
    holder, stop = KeyShardHolder(config), threading.Event()
    thread = threading.Thread(target=serve, args=(settings, config, stop.is_set), kwargs={"holder": holder},
                              daemon=True)
    thread.start()
    try:
        whole = Resolver(config)
        in_order(records[:400], whole)
        keyed = KafkaKeyShards(settings, config, 2, 128, wait=60, state=whole.state)
        keyed.decide(records[400:500])
        assert sorted(holder.servers) == [0, 1] and len(holder.servers[0][1].store.nodes) > 0
        keyed.close()
        deadline = time.monotonic() + 30
        while holder.servers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.servers == {}
    finally:
        stop.set()
        thread.join(15)


# ------------------------------------------------------------------------------ in the resolve role
KEYS = {"IDRES_RESOLVE_STATE": "keys"}


def test_resolve_workers_holding_the_state_by_key_give_the_profiles_and_ids_of_idres_ingest(kafka_bootstrap,
                                                                                            tmp_path):
    """`--resolve-state keys`: every resolve worker holds key shards; the one that holds the validated
    partition coordinates them, and applies their entries to its own state."""
    from tests.test_kafka_shards import ShardWorker, _events, _total
    from tests.test_stream import idres, live_decided, settled, snapshot_matches_embedded, wait_until

    events, accepted = _events(tmp_path, 37)
    prefix = unique_name("keysrole") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    idres("topics", *kafka, "--resolve-partitions", "3", "--resolve-state", "keys")
    idres("produce", str(events), *kafka)  # a topic per channel, 4 partitions each
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, 3, f"w{i}", KEYS) for i in range(2)]
    try:
        settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
        wait_until(lambda: settled(workers, settings, accepted), 240,
                   "all events decided on the key shards and projected", workers)
        answered = [w.metrics().get("idres_key_shard_requests_total", 0) for w in workers]
        failed = _total(workers, "idres_resolve_shard_failures_total")
    finally:
        for w in workers:
            w.stop()
    assert all(answered), f"the key shards were held by one worker only: {answered}"
    assert failed == 0  # (a session may be loaded again as the group moves shards, but no shard failed)
    counts = live_decided(settings)
    assert len(counts) == accepted and set(counts.values()) == {1}, Counter(counts.values())
    snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)


@pytest.mark.parametrize("killed", ["mid_stream", "between_backlogs"])
def test_a_key_shard_worker_killed_loses_nothing_and_applies_nothing_twice(kafka_bootstrap, tmp_path, killed):
    """A holder killed with SIGKILL while the coordinator sends it requests (``mid_stream``: the coordinator
    decides the rest in order), or once the first backlog is decided (``between_backlogs``: the next backlog's
    first run finds the holder lost, and is sent again once the lost shards are loaded anew); a new worker joins,
    and the session follows the state, the lost holder's shards loaded anew on the holders the group gives them (by
    the coordinator, or by the new holder reading the requests again since the killed holder's last commit; or a
    new session is loaded, when a restatement came between); the worker that joined answers too, for the
    events produced after it as well; nothing is lost or decided twice, and the profiles and IDs are those of
    `idres ingest`."""
    from collections import Counter
    from datetime import datetime

    from tests.test_kafka_shards import ShardWorker, _events, _total
    from tests.test_stream import (accepted_events, changelog_matches, idres, live_decided, settled,
                                   snapshot_matches_embedded, wait_until)

    events, accepted = _events(tmp_path, 41)

    def when(line: bytes) -> datetime:  # (the last part strictly later than the rest: no late event)
        try:
            return datetime.fromisoformat(json.loads(line)["occurred_at"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return datetime.fromisoformat("2000-01-01T00:00:00+00:00")

    lines = sorted(events.read_bytes().splitlines(keepends=True), key=when)
    cut = len(lines) * 4 // 5
    while cut < len(lines) and when(lines[cut]) == when(lines[cut - 1]):
        cut += 1
    parts = [tmp_path / "first.jsonl", tmp_path / "last.jsonl"]
    parts[0].write_bytes(b"".join(lines[:cut]))
    parts[1].write_bytes(b"".join(lines[cut:]))
    first = accepted_events(parts[0], tmp_path)
    prefix = unique_name("keyskill") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    idres("topics", *kafka, "--resolve-partitions", "2", "--resolve-state", "keys")
    idres("produce", str(parts[0]), *kafka)
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, f"k{i}", KEYS) for i in range(2)]
    try:
        wait_until(lambda: _total(workers, "idres_log_entries_written_total") > 0, 180, "events decided", workers)
        if killed == "between_backlogs":
            wait_until(lambda: settled(workers, settings, first), 240, "the first part decided", workers)
        # the worker that holds key shards but does not coordinate (holds one now: the group may have moved them)
        victim = next((w for w in workers if not w.metrics().get("idres_log_entries_written_total")
                       and w.metrics().get("idres_key_shard_requests_total")
                       and w.metrics().get("idres_key_shards_held", 0) >= 1), None)
        assert victim is not None, "no worker held key shards without coordinating"
        victim.stop(signal.SIGKILL)
        workers.remove(victim)
        # (the shards loaded since the kill, in the session followed or in a new one: the first may come while the
        # first part is still decided, after a restatement the kill made, or only with the second part)
        loads = (_total(workers, "idres_key_shard_sessions_total")
                 + _total(workers, "idres_key_shard_shards_reloaded_total"))
        workers.append(ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, "k-again", KEYS))
        wait_until(lambda: settled(workers, settings, first), 240,
                   "the first part decided after the kill", workers)
        wait_until(lambda: workers[-1].metrics().get("idres_key_shards_held", 0) >= 1, 120,
                   "the worker that joined to hold a key shard", workers)
        here = _total(workers, "idres_key_shard_events_decided_here_total")
        idres("produce", str(parts[1]), *kafka)
        wait_until(lambda: settled(workers, settings, accepted), 240, "every event decided and projected", workers)
        here = _total(workers, "idres_key_shard_events_decided_here_total") - here
        loads = (_total(workers, "idres_key_shard_sessions_total")
                 + _total(workers, "idres_key_shard_shards_reloaded_total") - loads)
        answered = workers[-1].metrics().get("idres_key_shard_requests_total", 0)
        # (what the coordinator went through, said when the shards were not loaded anew)
        paths = {name: _total(workers, f"idres_{name}_total") for name in (
            "key_shard_sessions_lost", "resolve_shard_failures", "key_shard_runs_sent_again", "key_shard_catch_ups")}
    finally:
        for w in workers:
            w.stop()
    # (the worker that joined answers: it holds parts of the session, loaded anew by the coordinator (``loads``) or
    # read again from the requests since the killed holder's last commit, which a rebalance may have refused, and
    # which the coordinator does not see)
    assert 0 < first < accepted and answered > 0, (
        first, accepted, loads, answered, paths, [w.tail()[-1500:] for w in workers])
    if killed == "between_backlogs":  # (the lost shards loaded anew at once: none of the second part decided here)
        assert here == 0
    counts = live_decided(settings)
    assert len(counts) == accepted and set(counts.values()) == {1}, Counter(counts.values())
    con = snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)
    assert changelog_matches(kafka_bootstrap, prefix, con) > 0



def test_the_coordinating_worker_stopped_with_sigterm_mid_stream_exits_and_another_decides_on(kafka_bootstrap,
                                                                                              tmp_path):
    """SIGTERM to the worker that coordinates the key shards while events are being decided: its wait for the
    shards' answers stops (the stop waits for the messages in hand), what it holds is decided in order, and it
    exits with code 0 well within the stop's deadline; the other worker takes the validated partition and decides
    the rest; nothing is lost or decided twice, and the profiles and IDs are those of `idres ingest`."""
    from tests.test_kafka_shards import ShardWorker, _events, _total
    from tests.test_stream import idres, live_decided, settled, snapshot_matches_embedded, wait_until

    events, accepted = _events(tmp_path, 43, people=600)
    prefix = unique_name("keysterm") + "."
    kafka = ("--bootstrap", kafka_bootstrap, "--topic-prefix", prefix)
    settings = KafkaSettings.load(bootstrap=kafka_bootstrap, prefix=prefix)
    idres("topics", *kafka, "--resolve-partitions", "2", "--resolve-state", "keys")
    idres("produce", str(events), *kafka)
    workers = [ShardWorker(tmp_path, kafka_bootstrap, prefix, 2, f"t{i}", KEYS) for i in range(2)]
    try:
        wait_until(lambda: _total(workers, "idres_key_shard_sessions_total") > 0, 180, "a key shard session",
                   workers)
        coordinator = next(w for w in workers if w.metrics().get("idres_key_shard_sessions_total"))
        written = coordinator.metrics().get("idres_log_entries_written_total", 0)
        assert written < accepted, "the stop should land mid-stream"
        started = time.monotonic()
        coordinator.proc.send_signal(signal.SIGTERM)
        try:
            code = coordinator.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the coordinator did not stop within 25 s of SIGTERM:\n{coordinator.tail()}") \
                from None
        stopped = time.monotonic() - started
        assert code == 0, coordinator.tail()
        workers.remove(coordinator)
        wait_until(lambda: settled(workers, settings, accepted), 240, "every event decided by the other worker",
                   workers)
    finally:
        for w in workers:
            w.stop()
    print(f"the coordinator stopped {stopped:.1f} s after SIGTERM, {written:,.0f} of {accepted:,} entries written")
    counts = live_decided(settings)
    assert len(counts) == accepted and set(counts.values()) == {1}, Counter(counts.values())
    snapshot_matches_embedded(kafka_bootstrap, prefix, events, tmp_path)
