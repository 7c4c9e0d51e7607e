"""Key shards in worker processes (``streams.key_shard_processes``): the coordinator keeps no part, every
shard's parts are held and its chains decided in a process of its own, and the log is the one of deciding
every record in order."""

from __future__ import annotations

import os
import random
import signal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from resolver.config import ResolverConfig
from resolver.owner import owner_of, value_name
from streams.key_shard_processes import KeyShardProcesses
from tests.test_shards import corpus, every_guard_corpus, in_order_raw, with_noise


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(40, 260), st.integers(1, 3), st.integers(1, 300), st.integers(8, 120))
def test_any_shards_and_windows_give_the_log_of_deciding_in_order(seed, n, shards, window, people):
    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    config = ResolverConfig()
    with KeyShardProcesses(config, shards, window) as keyed:
        assert keyed.decide(records) == in_order_raw(records, config)


def test_a_long_corpus_where_every_guard_acts_on_three_worker_processes_each_holding_its_own_parts():
    records, config, expected = every_guard_corpus()
    with KeyShardProcesses(config, 3, 128) as keyed:
        # in two calls, as a stream's batches come: the workers keep their parts between them (the
        # rejections are keyed by their index in each call)
        got = keyed.decide(records[:700]) + keyed.decide(records[700:])
        strip = lambda log: [[{k: v for k, v in d.items() if k != "key"} for d in e] for e in log]  # noqa: E731
        assert strip(got) == strip(expected)
        assert not keyed.stores  # (the coordinator holds no part)
        assert keyed.stats["calibrations"] >= 1 and keyed.stats["remote_writes"] > 0
        held = keyed._ask({s: ("parts", 0) for s in range(3)})
        pids = [w.pid for w in keyed._procs]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    for s, (nodes, profiles, aliases, blocks, values) in held.items():
        assert nodes and all(owner_of("k", p.key, 3) == s for p in nodes)
        assert all(owner_of("p", p.id, 3) == s for p in profiles)
        assert all(owner_of("p", a, 3) == s for a in aliases)
        assert all(owner_of("b", b, 3) == s for b in blocks)
        assert all(owner_of("v", value_name(key), 3) == s for key in values)
    assert sum(len(h[0]) for h in held.values()) > 0


def test_a_person_s_commands_decided_on_slices_of_worker_processes_keep_their_parts_in_step():
    """Verdicts, unmerges and lifts between two batches, each decided on the whole state and on a slice the
    coordinator collects from the worker processes: the same entries, and the second batch decided as the
    whole state's resolver decides it."""
    from resolver.engine import Resolver
    from streams.shards import in_order
    from tests.test_key_shards import follow_commands

    records = with_noise(corpus(random.Random(11), 400, people=40), random.Random(11))
    config = ResolverConfig()
    whole = Resolver(config)
    in_order(records[:300], whole)
    with KeyShardProcesses(config, 3, 64) as keyed:
        keyed.decide(records[:300])
        met = follow_commands(whole, keyed, random.Random(5), 30)
        assert {"review", "unmerge", "lift"} <= met
        assert keyed.decide(records[300:]) == in_order(records[300:], whole)


def test_a_window_whose_slice_asked_about_a_name_held_elsewhere_is_decided_in_order_on_the_whole_state():
    records = with_noise(corpus(random.Random(21), 900, people=70), random.Random(22))
    config = ResolverConfig()

    class Suspicious(KeyShardProcesses):
        checks = 0

        def _any_held(self, questions):  # (as if every third window's slices had asked about one)
            held = super()._any_held(questions)
            self.checks += 1
            return held or self.checks % 3 == 0

    with Suspicious(config, 2, 64) as keyed:
        assert keyed.decide(records) == in_order_raw(records, config)
        assert keyed.stats["in_order_windows"] >= 3


def test_the_match_model_re_estimated_with_the_shards_working_its_chunks():
    from tests.test_calibration import population

    events, _ = population(400, seed=3)
    records = [e.model_dump_json().encode() for e in events]
    config = ResolverConfig()
    handed = []

    class Counting(KeyShardProcesses):
        def _on_shards(self, function, records, chunks):
            handed.append(function.__name__)
            return super()._on_shards(function, records, chunks)

    with Counting(config, 2, 100) as keyed:
        assert keyed.decide(records) == in_order_raw(records, config)
        assert keyed.stats["calibrations"] == 2
    assert {"counted_chunk", "keys_chunk", "vectors_chunk"} <= set(handed)


def test_a_shard_that_fails_or_dies_stops_the_coordinator_with_the_reason():
    config = ResolverConfig()
    records = with_noise(corpus(random.Random(5), 120, people=20), random.Random(5))
    with KeyShardProcesses(config, 2, 32) as keyed:
        keyed.decide(records[:60])
        with pytest.raises(RuntimeError, match="(?s)a key shard failed:.*does not know"):
            keyed._ask({0: ("known", ["e1"]), 1: ("no such request",)})
        # once a request failed, no more are answered (an answer left unread would answer the next one)
        with pytest.raises(RuntimeError, match="the key shards stopped: RuntimeError: a key shard failed"):
            keyed.decide(records[60:])
    with KeyShardProcesses(config, 2, 32) as keyed:
        keyed.decide(records[:60])
        os.kill(keyed._procs[0].pid, signal.SIGKILL)
        keyed._procs[0].join(5)
        with pytest.raises(RuntimeError, match="process ended"):
            keyed.decide(records[60:])
    with KeyShardProcesses(config, 1, 32) as keyed:
        keyed.decide(records[:60])
    with pytest.raises(RuntimeError, match="stopped: they were closed"):
        keyed.decide(records[60:])


def test_the_workers_end_when_their_coordinator_is_gone():
    import multiprocessing
    import time

    def coordinator(pids):
        keyed = KeyShardProcesses(ResolverConfig(), 3, 32)
        pids.extend([p.pid for p in keyed._procs])
        os.kill(os.getpid(), signal.SIGKILL)  # (gone without closing them)

    with multiprocessing.Manager() as manager:
        pids = manager.list()
        proc = multiprocessing.get_context("fork").Process(target=coordinator, args=(pids,))
        proc.start()
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL and len(pids) == 3
        deadline = time.monotonic() + 10
        alive = list(pids)
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if _running(pid)]
        assert not alive


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"  # (a zombie has ended)
    except FileNotFoundError:
        return False


def test_what_crosses_is_counted_as_the_shards_in_one_process_count_it():
    # the same questions, parts and messages as LocalKeyShards, whose counts the model is built on
    from streams.key_shards import LocalKeyShards

    records = with_noise(corpus(random.Random(13), 600, people=50), random.Random(14))
    config = ResolverConfig()
    local = LocalKeyShards(config, 3, 64)
    expected = local.decide(records)
    with KeyShardProcesses(config, 3, 64) as keyed:
        assert keyed.decide(records) == expected
    names = ("reads", "remote_reads", "writes", "remote_writes", "messages", "chains", "events")
    assert local.stats["remote_reads"] > 0 and local.stats["messages"] > 0
    assert {k: keyed.stats[k] for k in names} == {k: local.stats[k] for k in names}
    assert [w[3] for w in keyed.stats["windows"]] == [w[3] for w in local.stats["windows"]]


def test_a_shard_that_does_not_answer_stops_the_coordinator_after_its_wait(monkeypatch):
    import time

    from streams import key_shard_processes

    real = key_shard_processes.ShardServer._decide

    def decide(self, *args):  # (shard 1 stuck each time it decides a slice)
        if self.store.shard == 1:
            time.sleep(30)
        return real(self, *args)

    monkeypatch.setattr(key_shard_processes.ShardServer, "_decide", decide)  # (before the workers are forked)
    records = with_noise(corpus(random.Random(9), 200, people=12), random.Random(9))
    started = time.monotonic()
    with KeyShardProcesses(ResolverConfig(), 2, 64, wait=0.5) as keyed:
        with pytest.raises(RuntimeError, match="key shard 1 did not answer within 0.5 s"):
            keyed.decide(records)
    assert time.monotonic() - started < 15  # (closing kills a worker that does not stop)


def test_worker_processes_taking_over_a_state_decided_in_order_continue_its_log():
    """Each worker is given its own parts of a state decided in order (as a checkpoint holds it: the first 900
    records of a corpus where every guard acts), and the rest is decided as that state's resolver decides it."""
    from resolver.engine import Resolver
    from streams.shards import in_order

    records, config, _ = every_guard_corpus()
    alone, taken = Resolver(config), Resolver(config)
    for resolver in (alone, taken):
        in_order(records[:900], resolver)
    expected = in_order(records[900:], alone)
    with KeyShardProcesses(config, 3, 128, state=taken.state) as keyed:
        assert not keyed.stores  # (the parts went to the workers)
        assert keyed.decide(records[900:]) == expected
        held = keyed._ask({s: ("parts", 0) for s in range(3)})
    assert sum(len(nodes) for nodes, *_ in held.values()) == len(alone.state.node_keys)


def test_a_caller_giving_only_new_events_saves_the_lookups_of_their_ids_and_gets_the_same_log():
    """The Kafka resolve worker gives the key shards only valid events whose IDs its own whole state has not seen
    (``new_only``): no event ID is looked up or noted at its owner, the owners are not given the IDs of the state
    they take over, and the log is the one of deciding the events in order, as when every ID is looked up."""
    import copy

    from resolver.engine import Resolver
    from resolver.owner import owner_of
    from streams.pipeline import VALID, RecordPipeline
    from streams.shards import in_order

    records, config, _ = every_guard_corpus()
    check, ids, fresh = RecordPipeline(None, skip_blank=False), set(), []
    for raw in records:  # (what the worker keeps for a run: valid, and not seen before)
        outcome = check.check(raw)
        if outcome.kind == VALID and outcome.event.event_id not in ids:
            ids.add(outcome.event.event_id)
            fresh.append(raw)
    assert len(fresh) < len(records)  # (the corpus holds records to reject and IDs sent again)
    taken = Resolver(config)
    in_order(fresh[:300], taken)  # (the state the shards take over, as a worker's)
    expected = in_order(fresh[300:], Resolver(config, state=copy.deepcopy(taken.state)))
    before = next(iter(taken.state.seen_events))
    runs = {}
    for new_only in (False, True):
        with KeyShardProcesses(config, 3, 128, state=taken.state, new_only=new_only) as keyed:
            # (the owner of an ID decided before: does it hold it?)
            held = keyed._ask({owner_of("e", before, 3): ("known", [before])})
            kinds = []
            ask = keyed._ask
            keyed._ask = lambda requests: (kinds.extend(r[0] for r in requests.values()), ask(requests))[1]
            got = keyed.decide(fresh[300:700]) + keyed.decide(fresh[700:])
            runs[new_only] = (got, kinds, list(held.values())[0])
    assert runs[False][0] == runs[True][0] == expected
    assert {"known", "seen"} <= set(runs[False][1])
    assert not {"known", "seen"} & set(runs[True][1])
    assert len(runs[True][1]) < len(runs[False][1])
    assert runs[False][2] == [taken.state.seen_events[before]] and runs[True][2] == [None]


def test_a_restatement_followed_on_worker_processes_leaves_them_holding_the_state_it_left():
    """Records decided on worker processes without some late ones; then the log restated with them (the whole
    state deciding every record from the first one's place again): the parts the processes hold, sent the parts
    that can differ, are those of the new state, and they decide the records after as it does."""
    from resolver.owner import stores_of
    from streams.shards import in_order
    from tests.test_key_shards import _restated_whole

    records = with_noise(corpus(random.Random(31), 500, people=50), random.Random(31))
    config = ResolverConfig()
    late = set(range(200, 400, 9))
    with KeyShardProcesses(config, 3, 64) as keyed:
        keyed.decide([r for i, r in enumerate(records[:400]) if i not in late])
        whole, touched, since = _restated_whole(config, records[:200], records[200:400])
        sent = keyed.follow(whole.state, since, touched)
        st_ = whole.state
        nodes, profiles, aliases, blocks, values = keyed._all_parts(st_.tf_epoch)
        split = stores_of(st_, 1)[0]
        assert sorted(nodes, key=lambda p: p.key) == sorted(split.nodes.values(), key=lambda p: p.key)
        assert sorted(profiles, key=lambda p: p.id) == sorted(split.profiles.values(), key=lambda p: p.id)
        assert (aliases, blocks) == (split.aliases, split.blocks)
        assert values == {key: split.value(key, st_.tf_epoch) for key in split.values}
        assert sent > 0
        assert keyed.decide(records[400:]) == in_order(records[400:], whole)
