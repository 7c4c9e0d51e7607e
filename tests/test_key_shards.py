"""Deciding on shards that each own part of the state by key (``streams.key_shards``): any number of shards,
window size and assignment of chains to shards gives the log of deciding every record in order, and no shard
holds another's part."""

from __future__ import annotations

import copy
import pickle
import random

import pytest

from hypothesis import HealthCheck, given, settings, strategies as st

from resolver.config import ResolverConfig
from resolver.engine import Resolver
from schemas.channel import ChannelEvent
from resolver.owner import owner_of, value_name
from streams.key_shards import LocalKeyShards
from streams.shards import LocalShards
from tests.test_shards import _random_assigner, corpus, every_guard_corpus, in_order_raw, with_noise


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(40, 260), st.integers(1, 5), st.integers(1, 300),
       st.integers(8, 120), st.randoms(use_true_random=False))
def test_any_shards_windows_and_assignment_give_the_log_of_deciding_in_order(seed, n, shards, window, people,
                                                                              rnd):
    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    config = ResolverConfig()
    got = LocalKeyShards(config, shards, window, _random_assigner(rnd)).decide(records)
    assert got == in_order_raw(records, config)


def test_a_long_corpus_where_every_guard_acts_on_three_shards():
    records, config, expected = every_guard_corpus()
    shards = LocalKeyShards(config, 3, 128)
    assert shards.decide(records) == expected
    # each shard holds only what it owns, and between them everything
    for store in shards.stores:
        assert all(owner_of("k", key, 3) == store.shard for key in store.nodes)
        assert all(owner_of("p", pid, 3) == store.shard for pid in store.profiles)
        assert all(owner_of("b", key, 3) == store.shard for key in store.blocks)
        assert all(owner_of("v", value_name(key), 3) == store.shard for key in store.values)
    held = [len(store.nodes) for store in shards.stores]
    assert min(held) > 0.2 * sum(held)
    assert shards.stats["in_order_windows"] == 0 and shards.stats["remote_writes"] > 0
    # every part crosses to another shard whole (pickled as its fields: ``state.pickled_as_fields``)
    parts = [p for store in shards.stores for p in (*store.nodes.values(), *store.profiles.values())]
    assert {type(p).__name__ for p in parts} == {"NodePart", "ProfilePart"}
    assert pickle.loads(pickle.dumps(parts, pickle.HIGHEST_PROTOCOL)) == parts
    assert [copy.copy(p) for p in parts] == parts


def test_more_records_later_continue_where_the_shards_left_off():
    records = with_noise(corpus(random.Random(11), 600, people=50), random.Random(12))
    config = ResolverConfig()
    shards = LocalKeyShards(config, 2, 64)
    got = shards.decide(records[:250]) + shards.decide(records[250:])
    expected = in_order_raw(records, config)
    # (the rejections are keyed by their index in each call)
    strip = lambda log: [[{k: v for k, v in d.items() if k != "key"} for d in e] for e in log]  # noqa: E731
    assert strip(got) == strip(expected)


def test_pending_reviews_scored_again_at_a_re_estimation_on_shards():
    from tests.test_calibration import population

    events, _ = population(400, seed=3)
    records = [e.model_dump_json().encode() for e in events]
    config = ResolverConfig()
    expected = in_order_raw(records, config)
    assert any(d.get("rule") == "model_rescored" for entry in expected for d in entry)
    handed: list[tuple[str, int]] = []

    class Watched(LocalKeyShards):  # (what re-estimating hands the shards)
        def _on_shards(self, function, records, chunks):
            handed.append((function.__name__, len(chunks)))
            return super()._on_shards(function, records, chunks)

    shards = Watched(config, 3, 100, transport=True)
    assert shards.decide(records) == expected
    assert shards.stats["calibrations"] == 2
    # the pairs' comparisons, their counts and the records' blocking keys were worked by the shards, twice
    assert sorted({name for name, _ in handed}) == ["counted_chunk", "keys_chunk", "vectors_chunk"]
    assert sum(1 for name, _ in handed if name == "vectors_chunk") == 2


def test_a_window_whose_slice_asked_about_a_name_held_elsewhere_is_decided_in_order_on_the_whole_state():
    records = with_noise(corpus(random.Random(21), 900, people=70), random.Random(22))
    config = ResolverConfig()
    shards = LocalKeyShards(config, 3, 64)
    asked = []

    def taken(s, part):  # (as if every fourth slice had asked about a profile ID another shard holds)
        asked.append(s)
        return len(asked) % 4 == 0

    shards._taken = taken
    assert shards.decide(records) == in_order_raw(records, config)
    assert shards.stats["in_order_windows"] >= 3


def test_a_device_flagged_inside_another_profile_hands_its_anonymous_events_to_who_used_it_on_every_driver():
    # e6 links Zoe's phone into Ann's profile through the device, and the device is flagged as what tied two
    # people together: its anonymous event e2 goes to Bob, who used it within a session, though neither his
    # e-mail nor his profile is among e6's identifiers
    def visit(eid: str, at: str, attrs: dict | None = None, **ids: str) -> ChannelEvent:
        return ChannelEvent(event_id=eid, occurred_at=f"2025-03-01T{at}Z", channel="web", event_type="visit",
                            identifiers=ids, attributes=attrs or {})

    events = [
        visit("e0", "09:00:00", {"first_name": "Bob", "last_name": "Ames"}, email="bob@x.org"),
        visit("e1", "10:00:00", {"first_name": "Ann", "last_name": "Ames", "date_of_birth": "1980-01-01"},
              email="ann@x.org", device_id="dev-1"),
        visit("e2", "10:01:30", device_id="dev-1"),
        visit("e3", "10:02:00", email="bob@x.org", device_id="dev-1"),
        visit("e5", "10:10:00", phone="+14155550100", device_id="dev-1"),
        visit("e6", "10:20:00", {"first_name": "Zoe", "last_name": "Ames", "date_of_birth": "1995-06-06"},
              email="zoe@x.org", phone="+14155550100"),
    ]
    records = [e.model_dump_json().encode() for e in events]
    config = ResolverConfig()
    expected = in_order_raw(records, config)
    assert {"type": "events_attributed", "node": "email:bob@x.org", "events": ["e2"]}.items() <= \
        next(d for d in expected[-1] if d["type"] == "events_attributed").items()
    for window in (1, 2, 1024):
        assert LocalKeyShards(config, 2, window).decide(records) == expected
        assert LocalShards(lambda: Resolver(config), 2, window).decide(records) == expected


def test_a_re_estimation_whose_slice_asked_about_a_name_held_elsewhere_is_made_on_the_whole_state():
    from tests.test_calibration import population

    events, _ = population(400, seed=3)
    records = [e.model_dump_json().encode() for e in events]
    config = ResolverConfig()
    shards = LocalKeyShards(config, 3, 100)
    shards._taken = lambda s, part: s < 0  # (as if every re-estimation's slice had asked about one)
    assert shards.decide(records) == in_order_raw(records, config)
    assert shards.stats["in_order_windows"] == shards.stats["calibrations"] == 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(40, 400), st.integers(1, 4), st.integers(1, 300), st.integers(8, 120))
def test_the_owners_hold_between_them_the_state_deciding_in_order_builds(seed, n, shards, window, people):
    """Owner by owner, the parts shards deciding the records hold are the parts of the state deciding them in
    order, split among the owners (``owner.stores_of``); each part at one owner, and every part of it held."""
    from resolver.owner import stores_of
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    config = ResolverConfig()
    whole = Resolver(config)
    in_order(records, whole)
    keyed = LocalKeyShards(config, shards, window)
    keyed.decide(records)
    st_, epoch = whole.state, whole.state.tf_epoch
    for built, split in zip(keyed.stores, stores_of(st_, shards), strict=True):
        assert (built.nodes, built.profiles, built.aliases, built.blocks, built.reviewing, built.seen) == \
            (split.nodes, split.profiles, split.aliases, split.blocks, split.reviewing, split.seen)
        assert {key: built.value(key, epoch) for key in built.values} == \
            {key: split.value(key, epoch) for key in split.values}
    assert sum(len(store.nodes) for store in keyed.stores) == len(st_.node_keys)
    assert sum(len(store.profiles) for store in keyed.stores) == len(st_.profiles)
    assert {key for store in keyed.stores for key in store.values} == set(st_.value_counts)
    shared = keyed.shared
    assert (shared.value_totals, shared.tf_totals_before, shared.records_filed, shared.next_calibration,
            shared.phone_total, shared.phone_regions, shared.learned_regions, shared.model) == \
        (st_.value_totals, st_.tf_totals_before, st_.records_filed, st_.next_calibration, st_.phone_total,
         st_.phone_regions, st_.learned_regions, st_.model)
    assert {eid: d for store in keyed.stores for eid, d in store.seen.items()} == st_.seen_events


def test_a_window_waits_for_the_same_few_round_trips_however_many_events_it_holds():
    # every round's questions go together, one message from each reader to each owner: a window's round trips
    # are at most the event-ID lookups (1), the footprints (3), the chains sent out and the names checked (2),
    # the slices (5) and the changes (1), plus at the start of an epoch re-estimating the model its reviews'
    # slice (5) and check (1); the same for 16 events as for 512
    records = with_noise(corpus(random.Random(31), 1500, people=90), random.Random(32))
    config = ResolverConfig()
    expected = in_order_raw(records, config)
    for window in (16, 512):
        shards = LocalKeyShards(config, 3, window)
        assert shards.decide(records) == expected
        windows = shards.stats["windows"]
        trips = [w[3] for w in windows]
        assert max(trips) <= 12 + 6 * (shards.stats["calibrations"] > 0)
        assert sorted(trips)[len(trips) // 2] >= 10  # (most windows need every round: the reads are chained)
        # each round trip is at most one message from each of 4 readers (3 shards, the coordinator) to each
        # other owner
        assert shards.stats["messages"] <= sum(trips) * 4 * 3
    assert len(windows) * 10 < len(records)  # (the larger windows held many events each)


def test_reading_in_rounds_together_gives_what_each_reading_alone_gives():
    from resolver import footprint
    from resolver.partition import answered, collecting, shared_of, source_answers
    from resolver.slices import _Whole

    records = with_noise(corpus(random.Random(41), 700, people=60), random.Random(42))
    config = ResolverConfig()
    resolver = Resolver(config)
    events = [ChannelEvent.model_validate_json(r) for r in records[:500] if _valid(r)]
    for event in events[:400]:
        resolver.decide(event)
    st_ = resolver.state
    later = events[400:]
    readings, alone_prints = [], []
    whole = source_answers(_Whole(st_))
    for event in later:
        node_keys, blocks, values, names, by_session = resolver.keys_of(event)
        alone_prints.append(answered(footprint.items_in_rounds(event.event_id, node_keys, blocks, names, by_session),
                                     whole))
        readings.append((-1, footprint.items_in_rounds(event.event_id, node_keys, blocks, names, by_session)))
    assert any(len(p) > 3 for p in alone_prints)
    # answered together by the owners of a state split in parts: the same footprints, in at most three rounds
    split = LocalKeyShards(config, 3, 64, state=st_)
    split._trips = 0
    assert split._rounds(readings) == alone_prints
    assert split._trips <= 3
    slices = [(0, collecting(p, (), shared_of(st_), 400)) for p in alone_prints[:40]]
    split._trips = 0
    together = split._rounds(slices)
    assert split._trips <= 5
    for p, part in zip(alone_prints[:40], together):
        alone = answered(collecting(p, (), shared_of(st_), 400), whole)
        assert sorted(part.state.node_keys) == sorted(alone.state.node_keys)
        assert part.state.profiles.keys() == alone.state.profiles.keys()


def _valid(raw: bytes) -> bool:
    try:
        ChannelEvent.model_validate_json(raw)
    except Exception:
        return False
    return True


def test_a_window_of_events_decided_before_at_an_epoch_s_start_leaves_the_statistics_as_deciding_in_order_does():
    # (the coordinator moved to the next epoch at a window's start, emptying the totals the epoch started with,
    # where the fold moves with the epoch's first event: 64 events, then a window holding only re-sent ones)
    from streams.shards import in_order

    records = [e.model_dump_json().encode() for e in corpus(random.Random(3), 64, people=20)]
    records += records[:40]
    config = ResolverConfig()
    whole = Resolver(config)
    in_order(records, whole)
    keyed = LocalKeyShards(config, 1, 64)
    keyed.decide(records)
    assert len(whole.state.seen_events) == 64 and whole.state.tf_totals_before
    assert (keyed.shared.tf_epoch, keyed.shared.tf_totals_before) == \
        (whole.state.tf_epoch, whole.state.tf_totals_before)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(60, 400), st.integers(1, 4), st.integers(1, 300), st.integers(8, 120),
       st.floats(0.0, 1.0))
def test_shards_taking_over_a_state_decided_in_order_continue_its_log(seed, n, shards, window, people, cut):
    """Shards given a state decided in order (as a checkpoint holds it) decide what follows as that state's
    resolver would: at any point of the log, an epoch's start or a re-estimation included."""
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    k = int(cut * len(records))
    config = ResolverConfig()
    alone = Resolver(config)
    in_order(records[:k], alone)
    taken = Resolver(config)
    in_order(records[:k], taken)
    keyed = LocalKeyShards(config, shards, window, state=taken.state)
    assert keyed.decide(records[k:]) == in_order(records[k:], alone)


def test_shards_taking_over_a_state_read_numbers_as_the_countries_it_learned():
    """After the state learned that customers write UK numbers nationally, a national number read by shards
    that took the state over is the customer's number, as the state's own resolver reads it."""
    from resolver import epochs, formats
    from streams.shards import in_order
    from tests.test_formats import uk_customers
    from tests.resolver_helpers import ev

    first = [ev("jane-1", 0, phone="+44 7887 899111", email="jane@mail.co.uk"), *uk_customers(formats.LEARN_MIN)]
    first += [ev(f"filler-{i}", 200 + i, email=f"filler{i}@mail.com") for i in range(len(first), epochs.end_of(
        len(first)))]
    first.append(ev("jane-2", 1000, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001"))
    rest = [ev("jane-3", 1001, channel="store", phone="07887 899111", loyalty_id="LY-5555-0002")]
    config = ResolverConfig()
    alone, taken = Resolver(config), Resolver(config)
    for resolver in (alone, taken):
        in_order([e.model_dump_json().encode() for e in first], resolver)
    assert taken.state.learned_regions == ["GB"]
    expected = in_order([e.model_dump_json().encode() for e in rest], alone)
    (recorded,) = [d for d in expected[0] if d["type"] == "interaction_recorded"]
    assert "phone:+447887899111" in recorded["nodes"]
    got = LocalKeyShards(config, 2, 64, state=taken.state).decide([e.model_dump_json().encode() for e in rest])
    assert got == expected


def test_shards_taking_over_a_state_do_not_keep_a_bad_record_it_kept_already():
    """A bad record the state kept (rejected, under its place in the input) is not kept again when shards that
    took the state over read the same input again, as the state's own resolver would not."""
    from streams.shards import in_order

    records = [b"{not json", *with_noise(corpus(random.Random(3), 30, people=10), random.Random(3))]
    config = ResolverConfig()
    taken = Resolver(config)
    first = in_order(records, taken)
    assert first[0][0]["type"] == "event_rejected" and first[0][0]["key"] == "record:0"
    assert LocalKeyShards(config, 2, 16, state=taken.state).decide(records[:1]) == []


def _a_command(state, rnd: random.Random, at: int):
    """A command a person might give on ``state`` (``streams.commands``): a verdict on a pending review, an
    unmerge of some identifiers of a profile (now and then by an ID it was renamed or merged from, and now and
    then of all of them, which is refused), a lift of a ban; None when there is nothing to give one on."""
    kinds = []
    if state.reviews:
        kinds.append("review")
    several = sorted(pid for pid, prof in state.profiles.items() if len(prof.nodes) >= 2)
    if several:
        kinds.append("unmerge")
    if state.bans:
        kinds.append("lift")
    if not kinds:
        return None
    kind = rnd.choice(kinds)
    base = {"command": kind, "by": "ana", "decided_at": f"2025-04-01T00:{at // 60:02d}:{at % 60:02d}Z"}
    if kind == "review":
        return {**base, "review_id": rnd.choice(sorted(state.reviews)), "decision": rnd.choice(["accept", "reject"])}
    if kind == "lift":
        return {**base, "ban_id": rnd.choice(sorted(state.bans))}
    pid = rnd.choice(several)
    keys = sorted(state.node_keys[n] for n in state.profiles[pid].nodes)
    named = keys if rnd.random() < 0.1 else rnd.sample(keys, rnd.randrange(1, len(keys)))
    renamed = sorted(a for a in state.aliases if state.resolve_alias(a) == pid)
    if renamed and rnd.random() < 0.5:
        pid = rnd.choice(renamed)
    return {**base, "profile_id": pid, "identifiers": [key.split(":", 1) for key in named]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(100, 400), st.integers(1, 4), st.integers(1, 300), st.integers(8, 60),
       st.floats(0.3, 1.0), st.randoms(use_true_random=False))
def test_a_person_s_commands_decided_on_slices_keep_the_owners_in_step_with_the_state(seed, n, shards, window,
                                                                                      people, cut, rnd):
    """A person's verdicts, unmerges and lifts, each decided on the whole state and on a slice of its footprint
    (``footprint.of_command``): the same entry, the owners then hold the parts of the whole state, and the
    records that follow are decided as the whole state's resolver decides them."""
    from resolver.owner import stores_of
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    k = int(cut * len(records))
    config = ResolverConfig()
    whole = Resolver(config)
    in_order(records[:k], whole)
    keyed = LocalKeyShards(config, shards, window)
    keyed.decide(records[:k])
    follow_commands(whole, keyed, rnd, 8)
    st_, epoch = whole.state, whole.state.tf_epoch
    for built, split in zip(keyed.stores, stores_of(st_, shards), strict=True):
        assert (built.nodes, built.profiles, built.aliases, built.blocks, built.reviewing) == \
            (split.nodes, split.profiles, split.aliases, split.blocks, split.reviewing)
        assert {key: built.value(key, epoch) for key in built.values} == \
            {key: split.value(key, epoch) for key in split.values}
    # (in the same order too: a slice reads them in it)
    assert list(keyed.shared.bans.items()) == [
        (b, (frozenset(st_.node_keys[x] for x in one), frozenset(st_.node_keys[x] for x in two), by))
        for b, (one, two, by) in st_.bans.items()]
    assert keyed.decide(records[k:]) == in_order(records[k:], whole)


def follow_commands(whole: Resolver, keyed, rnd: random.Random, count: int) -> set[str]:
    """Up to ``count`` commands a person might give (``_a_command``), each decided on ``whole`` and on the key
    shards ``keyed`` (on a slice of its footprint): the same entry, or the same refusal; the kinds of commands
    and of decisions met."""
    from resolver import footprint
    from resolver.errors import IdresError
    from streams.commands import decide

    met: set[str] = set()
    for at in range(count):
        command = _a_command(whole.state, rnd, at)
        if command is None:
            break
        items = footprint.of_command(whole.state, command)
        assert items is not None
        try:
            entry = decide(whole, command)
        except IdresError:  # (a command that does not apply: it changes nothing, on the slice either)
            with pytest.raises(IdresError):
                keyed.decide_command(command, items)
            met.add("refused")
            continue
        assert keyed.decide_command(command, items) == entry
        met |= {command["command"], *(d["type"] for d in entry)}
    return met


def test_a_person_s_commands_of_every_kind_are_followed_on_slices():
    """The property above meets each kind of command, and a verdict that merges, on a corpus long enough to
    queue reviews: a fixed run, so that it cannot pass by meeting none."""
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(11), 500, people=40), random.Random(11))
    config = ResolverConfig()
    whole = Resolver(config)
    in_order(records[:400], whole)
    keyed = LocalKeyShards(config, 3, 64)
    keyed.decide(records[:400])
    met = follow_commands(whole, keyed, random.Random(5), 40)
    assert {"review", "unmerge", "lift", "refused", "profiles_merged", "profile_split", "connection_banned",
            "ban_lifted"} <= met
    assert keyed.decide(records[400:]) == in_order(records[400:], whole)


def test_the_names_new_profiles_take_are_read_with_the_slice_so_no_window_asks_about_them_after():
    """Every event of new customers creates a profile named by the event (``naming.names_of``): the slice reads
    those names at their owners as it is collected, finds them free, and its window asks no owner whether a
    name is held once it is decided (a round trip a window); the log is the one of deciding in order."""
    from tests.test_shards import in_order_raw

    records = [ChannelEvent(event_id=f"n{i}", occurred_at=f"2025-03-01T00:{i // 60:02d}:{i % 60:02d}Z",
                            channel="web", event_type="visit",
                            identifiers={"email": f"new{i}@mailbox.org", "phone": f"+1415556{i:04d}"}
                            ).model_dump_json().encode() for i in range(300)]
    config = ResolverConfig()
    asked = []

    class Counting(LocalKeyShards):
        def _any_held(self, questions):
            asked.extend(a for asks in questions.values() for a in asks)
            return super()._any_held(questions)

    got = Counting(config, 3, 64).decide(records)
    assert got == in_order_raw(records, config)
    assert sum(1 for entry in got for d in entry if d["type"] == "profile_created") == 300
    assert asked == []


def decided_noting(resolver: Resolver, records: list[bytes]):
    """``records`` decided in order on ``resolver``, noting what the decisions touch (``resolver.touch``): their
    entries, the position they start at, and what they touched."""
    from resolver.touch import Touched
    from streams.shards import in_order

    since, touched = len(resolver.state.seen_events), Touched()
    resolver.track(touched)
    try:
        return in_order(records, resolver), since, touched
    finally:
        resolver.track(None)


def _restated_whole(config: ResolverConfig, prefix: list[bytes], rest: list[bytes]):
    """The whole state deciding ``prefix`` then ``rest`` in order, what ``rest``'s decisions touched
    (``resolver.touch``), and the position ``rest`` starts at."""
    from streams.shards import in_order

    whole = Resolver(config)
    in_order(prefix, whole)
    _, since, touched = decided_noting(whole, rest)
    return whole, touched, since


def _assert_owners_hold(keyed, st_, shards: int) -> None:
    from resolver.owner import stores_of

    epoch = st_.tf_epoch
    for built, split in zip(keyed.stores, stores_of(st_, shards, seen=not keyed.new_only), strict=True):
        assert (built.nodes, built.profiles, built.aliases, built.blocks, built.reviewing, built.seen) == \
            (split.nodes, split.profiles, split.aliases, split.blocks, split.reviewing, split.seen)
        assert {key: built.value(key, epoch) for key in built.values} == \
            {key: split.value(key, epoch) for key in split.values}
    assert keyed.decided == len(st_.seen_events)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(80, 400), st.integers(1, 4), st.integers(1, 300), st.integers(8, 80),
       st.floats(0.1, 0.9), st.integers(1, 12))
def test_a_restatement_followed_on_the_owners_leaves_them_holding_the_state_it_left(seed, n, shards, window,
                                                                                   people, cut, late):
    """Records decided on the key shards without a few late ones; then the log restated with them from the
    place of the first (the whole state deciding every record from there again, what it touched noted): the
    owners, sent the parts that can differ (``LocalKeyShards.restated``), hold what loading them from the new
    state gives, and decide the records after as that state does; and so again after a second restatement in the
    same session."""
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    rnd = random.Random(seed)
    config = ResolverConfig()
    c = int(len(records) * cut)
    d = c + (len(records) - c) // 2
    # the late records: some of those after the cut (the second restatement: some after ``d``)
    first = set(rnd.sample(range(c, d), min(late, d - c)))
    second = set(rnd.sample(range(d, len(records)), min(late, len(records) - d)))
    keyed = LocalKeyShards(config, shards, window, assigner=_random_assigner(rnd))
    keyed.decide([r for i, r in enumerate(records[:d]) if i not in first])
    whole, touched, since = _restated_whole(config, records[:c], records[c:d])
    keyed.follow(whole.state, since, touched)
    _assert_owners_hold(keyed, whole.state, shards)
    keyed.decide([r for i, r in enumerate(records[d:], d) if i not in second])
    whole, touched, since = _restated_whole(config, records[:d], records[d:])
    keyed.follow(whole.state, since, touched)
    _assert_owners_hold(keyed, whole.state, shards)
    more = with_noise(corpus(random.Random(seed + 1), 60, people=people), random.Random(seed + 1))
    assert keyed.decide(more) == in_order(more, whole)


def test_the_stores_of_some_shards_alone_are_those_of_the_whole_split():
    """A lost holder's shards are loaded anew with their stores alone (``stores_of(..., only=...)``): each is the
    store the whole split gives it, and the other shards' are left empty."""
    from resolver.owner import stores_of
    from streams.shards import in_order

    records, config, _ = every_guard_corpus()
    whole = Resolver(config)
    in_order(records, whole)
    for seen in (True, False):
        split = stores_of(whole.state, 3, seen=seen)
        alone = stores_of(whole.state, 3, seen=seen, only={1})
        fields = ("nodes", "profiles", "aliases", "blocks", "reviewing", "seen", "values")
        assert [getattr(alone[1], f) for f in fields] == [getattr(split[1], f) for f in fields]
        assert all(getattr(split[1], f) for f in fields if f != "seen" or seen)
        assert not any(getattr(alone[s], f) for s in (0, 2) for f in fields)


class _LostPartWay(LocalKeyShards):
    """Key shards whose ``fail_at``-th sending of changes to the owners reaches only some of them, then fails (a
    holder lost, or no answer in time, in the middle of a run)."""

    fail_at = None
    sent = 0

    def _apply(self, routed, sender, epoch, ahead=False):
        self.sent += 1
        if self.sent == self.fail_at:
            owners = sorted(routed)
            super()._apply({o: routed[o] for o in owners[:max(1, len(owners) // 2)]}, sender, epoch, ahead)
            raise ConnectionError("a holder was lost")
        super()._apply(routed, sender, epoch, ahead)


def _failed_then_followed(seed: int, n: int, shards: int, window: int, people: int, cut: float, fail: int) -> bool:
    """Records decided on the key shards, then a run that fails part way (some owners took some of its changes);
    the run decided in order on the whole state instead, what it touched noted, and the shards follow that state:
    the owners hold what loading them from it gives, and decide the records after as it does. Returns whether
    the run failed."""
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    config = ResolverConfig()
    c = int(len(records) * cut)
    keyed = _LostPartWay(config, shards, window, assigner=_random_assigner(random.Random(seed)))
    whole = Resolver(config)
    for entry in keyed.decide(records[:c]):
        whole.apply_all(entry)
    assert keyed.decided == len(whole.state.seen_events)
    keyed.fail_at = keyed.sent + fail
    try:
        keyed.decide(records[c:])
        failed = False
    except ConnectionError:
        failed = True
    _, since, touched = decided_noting(whole, records[c:])
    keyed.fail_at = None
    keyed.follow(whole.state, since, touched)
    _owners_hold_named_aside(keyed, whole.state)  # (the state before the run was folded from entries: no names)
    more = with_noise(corpus(random.Random(seed + 1), 60, people=people), random.Random(seed + 1))
    assert keyed.decide(more) == in_order(more, whole)
    return failed


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(60, 300), st.integers(1, 4), st.integers(1, 200), st.integers(8, 80),
       st.floats(0.1, 0.9), st.integers(1, 6))
def test_a_run_that_failed_part_way_decided_in_order_and_followed_leaves_the_owners_in_step(seed, n, shards, window,
                                                                                          people, cut, fail):
    _failed_then_followed(seed, n, shards, window, people, cut, fail)


def test_a_run_that_failed_after_some_owners_took_its_changes_is_followed():
    """The property above on fixed runs that do fail part way, after some owners took changes (so it cannot pass
    on runs that never fail)."""
    assert all(_failed_then_followed(seed, 300, 3, 24, 40, 0.4, fail) for seed, fail in [(5, 2), (9, 4), (12, 7)])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(80, 300), st.integers(1, 4), st.integers(1, 200), st.integers(8, 80),
       st.floats(0.1, 0.8), st.floats(0.1, 0.9), st.booleans(), st.integers(1, 8))
def test_a_restatement_after_events_decided_without_the_shards_is_followed(seed, n, shards, window, people, cut,
                                                                           where, before, late):
    """Records decided on the key shards, then more decided in order without them (a run that failed, a
    rebalance: what they touched noted on that state), then the log restated from the place of a late record,
    before those (``before``) or among them: the shards follow the restated state from the earlier of the two
    places, with what both touched (the first noted on the state the restatement replaced, by key): the owners
    hold what loading them from the restated state gives, and decide the records after as it does."""
    from streams.shards import in_order

    records = with_noise(corpus(random.Random(seed), n, people=people), random.Random(seed))
    rnd = random.Random(seed)
    config = ResolverConfig()
    b = max(int(len(records) * cut), 2)  # (the shards decide up to here; the rest in order without them)
    place = rnd.randrange(1, b) if before else b + int((len(records) - b) * where)
    place = min(place, len(records) - 1)
    lates = set(rnd.sample(range(place, len(records)), min(late, len(records) - place)))
    lates.add(place)
    keyed = LocalKeyShards(config, shards, window, assigner=_random_assigner(rnd))
    old = Resolver(config)
    for entry in keyed.decide([r for i, r in enumerate(records[:b]) if i not in lates]):
        old.apply_all(entry)
    _, behind, noted = decided_noting(old, [r for i, r in enumerate(records[b:], b) if i not in lates])
    whole, touched, since = _restated_whole(config, records[:place], records[place:])
    touched.add(noted, old.state)
    keyed.follow(whole.state, min(since, behind), touched)
    _owners_hold_named_aside(keyed, whole.state)
    more = with_noise(corpus(random.Random(seed + 1), 60, people=people), random.Random(seed + 1))
    assert keyed.decide(more) == in_order(more, whole)


def test_a_straggler_s_restatement_sends_the_owners_a_small_share_of_the_parts():
    """A few late records near the end of a long history: what following their restatement sends is the
    parts of the last epoch's changes and what the late records touched, not the state."""
    from resolver.owner import stores_of

    records = with_noise(corpus(random.Random(41), 3000, people=3000), random.Random(41))
    config = ResolverConfig()
    cut = len(records) - 30
    late = {cut, cut + 10, cut + 20}
    keyed = LocalKeyShards(config, 2, 64)
    keyed.decide([r for i, r in enumerate(records) if i not in late])
    whole, touched, since = _restated_whole(config, records[:cut], records[cut:])
    sent = keyed.follow(whole.state, since, touched)
    _assert_owners_hold(keyed, whole.state, 2)
    split = stores_of(whole.state, 1)[0]
    total = len(split.nodes) + len(split.profiles) + len(split.blocks) + len(split.values)
    assert 0 < sent < total / 10, (sent, total)


@pytest.mark.parametrize("shards", [1, 2])
def test_after_a_restatement_that_learns_other_countries_numbers_are_read_with_them(shards):
    """A restatement can leave as many learned countries as before, but others (late French numbers taught
    France where British ones had taught Britain at the same epoch's start): the shards then read a national
    number as the new state does, not with the countries learned before (they were compared by count)."""
    import json

    from streams.shards import in_order

    def event(eid: str, at: str, ids: dict) -> bytes:
        return json.dumps({"event_id": eid, "occurred_at": at, "channel": "web", "event_type": "visit",
                           "identifiers": ids}).encode()

    french = [event(f"fr{i}", f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                    {"email": f"fr{i}@mailbox.org", "phone": f"+33 6 12 34 56 {i:02d}"}) for i in range(45)]
    british = [event(f"gb{i}", f"2025-01-02T00:00:{i:02d}Z",
                     {"email": f"gb{i}@mailbox.org", "phone": f"+44 7400 1234{i:02d}"}) for i in range(25)]
    filler = [event(f"f{i}", f"2025-01-03T00:00:{i:02d}Z", {"email": f"f{i}@mailbox.org"}) for i in range(40)]
    config = ResolverConfig()
    keyed = LocalKeyShards(config, shards, 16)
    keyed.decide(british + filler)  # (the French records late)
    whole, touched, since = _restated_whole(config, [], french + british + filler)
    assert keyed.shared.learned_regions != whole.state.learned_regions
    assert len(keyed.shared.learned_regions) == len(whole.state.learned_regions) == 1
    keyed.follow(whole.state, since, touched)
    more = [event("m1", "2025-01-04T00:00:00Z", {"email": "new@mailbox.org", "phone": "06 12 34 56 00"})]
    assert keyed.decide(more) == in_order(more, whole)


def _owners_hold_named_aside(keyed, st_) -> None:
    """``_assert_owners_hold``, with each profile's ``named`` left aside: the name a profile's earliest event gave
    it, which deciding settles on the state it reads (``naming``) and a slice's state takes as it is; what it holds
    changes no decision."""
    from dataclasses import replace

    from resolver.owner import stores_of

    epoch = st_.tf_epoch
    for built, split in zip(keyed.stores, stores_of(st_, keyed.n, seen=not keyed.new_only), strict=True):
        assert (built.nodes, built.aliases, built.blocks, built.reviewing, built.seen) == \
            (split.nodes, split.aliases, split.blocks, split.reviewing, split.seen)
        assert {p: replace(prof, named=None) for p, prof in built.profiles.items()} == \
            {p: replace(prof, named=None) for p, prof in split.profiles.items()}
        assert {key: built.value(key, epoch) for key in built.values} == \
            {key: split.value(key, epoch) for key in split.values}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(150, 400), st.integers(8, 70), st.integers(1, 4), st.integers(4, 200),
       st.booleans(), st.integers(1, 3), st.integers(1, 8))
def test_the_resolve_role_s_restatements_and_commands_followed_on_the_key_shards(seed, n, people, shards, window,
                                                                                new_only, rounds, late):
    _as_the_resolve_role(seed, n, people, shards, window, new_only, rounds, late)


def test_the_resolve_role_s_run_follows_restatements_between_commands():
    """The property above on a fixed run that follows several restatements (so it cannot pass by following
    none)."""
    assert _as_the_resolve_role(3, 380, 30, 3, 40, True, 3, 6) >= 2


def _as_the_resolve_role(seed: int, n: int, people: int, shards: int, window: int, new_only: bool, rounds: int,
                         late: int) -> int:
    """As the resolve role goes: batches decided on the key shards and applied to a whole state, a person's
    commands between them (followed on slices, or a new session when a slice's entry differs), late records
    decided at once, then the log restated from the first one's place as the worker restates it
    (``streams.restating.Restatement``, each record decided again with ``streams.embedded.redo``, the aliases it
    leaves), and followed on the shards: the owners hold the new state's parts, and the next records are decided
    as it decides them. Returns how many restatements were followed."""
    import copy

    from resolver import footprint
    from resolver.decisions import record_of
    from resolver.errors import IdresError
    from resolver.restate import BARRIER_TYPES, key_of
    from resolver.touch import Touched
    from streams.commands import decide
    from streams.embedded import redo
    from streams.restating import Restatement
    from streams.shards import in_order

    rnd = random.Random(seed)
    config = ResolverConfig()
    raws = [e.model_dump_json().encode() for e in corpus(random.Random(seed), n, people=people)]
    whole, log = Resolver(config), []

    def session():
        return LocalKeyShards(config, shards, window, assigner=_random_assigner(rnd), state=whole.state,
                              new_only=new_only)

    keyed, followed, at = session(), 0, 0
    rest = list(range(n))
    size = len(rest) // rounds
    for r in range(rounds):
        part = rest[r * size:(r + 1) * size] if r < rounds - 1 else rest[r * size:]
        lates = set(rnd.sample(part, min(late, len(part))))
        ontime = [i for i in part if i not in lates]
        pos = 0
        while pos < len(ontime):
            batch = [raws[i] for i in ontime[pos:pos + rnd.randrange(5, 60)]]
            pos += len(batch)
            got = keyed.decide(batch)
            assert got == in_order(batch, Resolver(config, copy.deepcopy(whole.state)))
            for entry in got:
                whole.apply_all(entry)
                log.append(entry)
            for _ in range(rnd.randrange(0, 3)):
                command = _a_command(whole.state, rnd, at)
                at += 1
                if command is None:
                    break
                items = footprint.of_command(whole.state, command)
                try:
                    entry = decide(whole, command)
                except IdresError:
                    continue
                log.append(entry)
                if keyed.decide_command(command, items) != entry:
                    keyed = session()
        got = keyed.decide([raws[i] for i in sorted(lates)])  # (the late records: decided at once)
        for entry in got:
            whole.apply_all(entry)
            log.append(entry)
        keys = [key_of(record_of(e)) for e in got if record_of(e)["type"] == "interaction_recorded"]
        barrier = max([j for j, e in enumerate(log) if record_of(e)["type"] in BARRIER_TYPES], default=-1)
        start = next((j for j in range(barrier + 1, len(log)) if keys and record_of(log[j])["type"] ==
                      "interaction_recorded" and key_of(record_of(log[j])) > min(keys)), None)
        if start is None:
            continue
        # the restatement, as the resolve role makes it (``StreamJobs._restate_from``)
        rewound = Resolver(config)
        for entry in log[:start]:
            rewound.apply_all(entry)
        work = Restatement(start, len(keys))
        work.take(log[start:])
        work.note(whole.state)
        since, touched = len(rewound.state.seen_events), Touched()
        assert keyed.decided == len(whole.state.seen_events)
        rewound.track(touched)
        begun = work.begun(rewound.state, len(log), "2026-01-01T00:00:00.000000Z")
        redone = list(work.decide(lambda rec: redo(rewound, rec)))
        done = work.done(rewound.state, "2026-01-01T00:00:00.000000Z")
        rewound.apply_all(done)
        rewound.track(None)
        work.close()
        log = log[:start] + [[d] for d in begun] + redone + [[d] for d in done]
        whole = rewound
        if since < keyed.loaded_at:  # (a place before the session was loaded: a new one)
            keyed = session()
            continue
        keyed.follow(whole.state, since, touched)
        followed += 1
        _owners_hold_named_aside(keyed, whole.state)
    more = [e.model_dump_json().encode().replace(b'"event_id":"e', b'"event_id":"m')
            for e in corpus(random.Random(seed + 1), 80, people=people)]
    assert keyed.decide(more) == in_order(more, whole)
    return followed


# ------------------------------------------------------------------------------ the notes of what was written
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("pbv"), st.integers(0, 300), st.booleans(), st.integers(0, 4)),
                min_size=1, max_size=400),
       st.integers(0, 2_000), st.integers(2, 40))
def test_a_store_keeps_few_notes_of_what_was_written_and_answers_exactly_or_not_at_all(writes, probe, slack):
    """``PartStore.written`` bounded (``WRITTEN_SLACK``, twice the names held): asked what was written from a
    position on, a store answers what noting every write gives, or that it no longer knows (None); never less."""
    import resolver.owner as owner
    from resolver.partition import Patch

    old = owner.WRITTEN_SLACK
    owner.WRITTEN_SLACK = slack
    try:
        store, every = owner.PartStore(0, 1), {}
        stamp = most = 0
        for kind, number, gone, step in writes:
            stamp += step  # (stamps grow, as the positions of the events deciding them do)
            name = f"{kind}{number}"
            if kind == "p":
                patch = Patch(gone_aliases=[name]) if gone else Patch(aliases={name: "p_x"})
                key = ("a", name)
            elif kind == "b":
                patch = Patch(gone_blocks=[name]) if gone else Patch(blocks={name: ["k:x"]})
                key = ("b", name)
            else:
                value = ("first_name", name)
                patch = Patch(gone_values=[value]) if gone else Patch(values={value: [1, 1, 0]})
                key = ("v", value)
            store.put(patch, stamp)
            every[key] = stamp
            most = max(most, len(store.aliases) + len(store.blocks) + len(store.values))
            assert len(store.written) <= max(slack, 2 * most) + 1
        position = probe % (stamp + 2) - 1
        answer = store.written_since(position)
        truth = {name for name, at in every.items() if at > position}
        if answer is None:
            assert position < store.forgotten
        else:
            assert set(answer) == truth
        assert store.written_since(stamp) == [] and set(store.written_since(store.forgotten)) == {
            name for name, at in every.items() if at > store.forgotten}
    finally:
        owner.WRITTEN_SLACK = old


def test_a_store_holding_many_names_keeps_its_notes_up_to_twice_their_number(monkeypatch):
    """A store loaded with many names dropped notes once they passed ``WRITTEN_SLACK`` alone; it keeps them up to
    twice the names it holds."""
    import resolver.owner as owner
    from resolver.partition import Patch

    monkeypatch.setattr(owner, "WRITTEN_SLACK", 8)
    store = owner.PartStore(0, 1)
    store.put(Patch(aliases={f"a{i}": "p_x" for i in range(1000)}), 1)
    for i in range(999):  # (names gone that it never held: notes, not names)
        store.put(Patch(gone_aliases=[f"g{i}"]), 2 + i)
    assert len(store.written) == 1999 and store.forgotten == -1 and len(store.written_since(0)) == 1999
    store.put(Patch(gone_aliases=["g-last", "g-after"]), 5000)
    assert store.forgotten > 0 and len(store.written) <= 2001 // 2 + 1


def test_a_restatement_from_before_what_the_owners_still_note_is_refused_and_a_new_load_decides_on(monkeypatch):
    """With the notes kept short, a straggler's restatement is still followed; one from further back than the
    owners note is refused (``ValueError``, nothing changed), and shards loaded anew from the restated state go
    on as it does."""
    import resolver.owner as owner
    from streams.shards import in_order

    monkeypatch.setattr(owner, "WRITTEN_SLACK", 1000)
    monkeypatch.setattr(owner, "WRITTEN_PER_NAME", 0)  # (notes dropped past the slack alone: a short history)
    records = with_noise(corpus(random.Random(43), 1500, people=1200), random.Random(43))
    config = ResolverConfig()
    keyed = LocalKeyShards(config, 2, 64)
    keyed.decide(records[:-40])
    assert all(store.forgotten > 0 for store in keyed.stores)
    assert all(len(store.written) <= 2 * 1000 for store in keyed.stores)
    horizon = max(store.forgotten for store in keyed.stores)  # (notes are exact from here on)
    probe, reached = Resolver(config), []  # (the log's position after each record: not every record is an entry)
    for r in records[:-40]:
        in_order([r], probe)
        reached.append(probe.state.position)
    k = next(i for i, at in enumerate(reached) if at >= horizon) + 1
    assert 0 < horizon and k < len(records) - 40
    whole, touched, since = _restated_whole(config, records[:k], records[k:-40])
    assert since >= horizon
    keyed.follow(whole.state, since, touched)
    _assert_owners_hold(keyed, whole.state, 2)
    early = records[:100]
    far, touched, since = _restated_whole(config, early, records[100:-40])
    assert since < max(store.forgotten for store in keyed.stores)
    with pytest.raises(ValueError):
        keyed.follow(far.state, since, touched)
    _assert_owners_hold(keyed, whole.state, 2)  # (nothing changed)
    fresh = LocalKeyShards(config, 2, 64, state=far.state)
    assert fresh.decide(records[-40:]) == in_order(records[-40:], far)
