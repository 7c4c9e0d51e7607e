"""Formats learned from the data: a country whose numbers are common is learned once, at the start of the
next epoch, in the log, and its national numbers are read as its from then on; replay learns it at the
same point."""

from __future__ import annotations

from hypothesis import given, strategies as st

from projections.customer import CustomerViews
from resolver import epochs, formats
from resolver.config import ResolverConfig
from resolver.engine import Resolver, ResolverState
from schemas.decisions import LogEntry
from tests.resolver_helpers import Run, ev

UK_MOBILES = [f"+44 7700 9{n:05d}" for n in range(0, 60_000, 2_000)]  # 30 distinct numbers


def uk_customers(count: int) -> list:
    return [ev(f"uk-{i}", i, channel="call_center", phone=UK_MOBILES[i], email=f"c{i}@mail.co.uk")
            for i in range(count)]


def to_next_epoch(run: Run) -> Run:
    """Feeds unrelated events until the next event fed is the first of an epoch."""
    decided = len(run.resolver.state.seen_events)
    end = epochs.end_of(decided)
    return run.feed(ev(f"filler-{i}", 200 + i, email=f"filler{i}@mail.com") for i in range(decided, end))


def test_a_national_number_of_a_learned_country_joins_its_international_form():
    run = Run().feed([ev("jane-1", 0, phone="+44 7887 899111", email="jane@mail.co.uk"),
                      ev("jane-0", 1, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001")])
    ignored = [d for e in run.log for d in e if d["type"] == "interaction_recorded" and d["event_id"] == "jane-0"][0]
    assert ignored["ignored"][0]["raw"] == "07887 899111"  # before: not a US number, not read
    assert run.profile_of("jane-1") != run.profile_of("jane-0")

    run.feed(uk_customers(formats.LEARN_MIN))
    assert not [d for e in run.log for d in e if d["type"] == "phone_region_learned"]  # not before the epoch ends
    to_next_epoch(run)
    run.feed([ev("jane-2", 1000, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001")])
    learned = [d for e in run.log for d in e if d["type"] == "phone_region_learned"]
    assert [(d["region"], d["numbers"], d["event_id"]) for d in learned] == [("GB", formats.LEARN_MIN + 1, "jane-2")]  # (jane's own too)
    assert run.profile_of("jane-2") == run.profile_of("jane-1") == run.profile_of("jane-0")
    assert run.resolver.normalize_identifier("phone", "07887 899111") == ("+447887899111", None)
    assert run.resolver.normalize_identifier("phone", "(415) 555-0134") == ("+14155550134", None)  # default first

    for seq, entry in enumerate(run.log):
        LogEntry.model_validate({"seq": seq, "decisions": entry})
    again = Resolver(ResolverConfig(), ResolverState())
    again.apply_all(d for entry in run.log for d in entry)
    assert again.state.learned_regions == ["GB"]
    assert again.normalize_identifier("phone", "07887 899111") == ("+447887899111", None)
    views = CustomerViews()
    for seq, entry in enumerate(run.log):
        views.apply_entry(seq, entry)
    assert views.learned_regions == ["GB"]


def test_a_country_is_not_learned_from_a_few_numbers():
    run = to_next_epoch(Run().feed(uk_customers(formats.LEARN_MIN - 1)))
    run.feed([ev("jane-2", 1000, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001")])
    assert not [d for e in run.log for d in e if d["type"] == "phone_region_learned"]
    assert run.resolver.normalize_identifier("phone", "07887 899111")[0] is None


def test_the_default_region_and_a_learned_one_never_disagree_on_international_numbers():
    run = to_next_epoch(Run().feed(uk_customers(formats.LEARN_MIN))).feed([ev("next", 1000, email="n@mail.com")])
    assert run.resolver.state.learned_regions == ["GB"]
    fresh = Resolver(ResolverConfig(), ResolverState())

    @given(st.sampled_from(["+1", "+44", "+34", "+49", "001", "0044"]), st.integers(200_000_000, 999_999_999))
    def check(prefix, n):
        raw = f"{prefix} {n}"
        assert run.resolver.normalize_identifier("phone", raw) == fresh.normalize_identifier("phone", raw)

    check()


def test_region_of_a_number():
    assert formats.region_of("+447887899111") == "GB"
    assert formats.region_of("+14155550134") == "US"
    assert formats.region_of("+353868326554") == "IE"
    assert formats.region_of("07887899111") is None


def test_an_event_re_sent_after_a_country_was_learned_is_still_the_same_event():
    from streams.pipeline import DUPLICATE, RecordPipeline

    run = Run().feed([ev("jane-0", 0, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001")])
    to_next_epoch(run.feed(uk_customers(formats.LEARN_MIN))).feed([ev("next", 1000, email="n@mail.com")])
    assert run.resolver.state.learned_regions == ["GB"]  # the number now reads differently
    raw = ev("jane-0", 0, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001").model_dump_json()
    assert RecordPipeline(run.resolver).process(raw.encode()).kind == DUPLICATE


def test_idres_lookup_reads_the_views_alone_and_normalizes_with_the_countries_learned(tmp_path, monkeypatch, capsys):
    import json

    from streams.cli import main
    from streams.embedded import EmbeddedEngine

    events = [ev("jane-1", 0, phone="+44 7887 899111", email="jane@mail.co.uk"), *uk_customers(formats.LEARN_MIN)]
    end = epochs.end_of(len(events))
    events += [ev(f"filler-{i}", 200 + i, email=f"filler{i}@mail.com") for i in range(len(events), end)]
    events.append(ev("jane-2", 1000, channel="store", phone="07887 899111", loyalty_id="LY-5555-0001"))
    path, data = tmp_path / "events.jsonl", tmp_path / "data"
    path.write_text("".join(e.model_dump_json() + "\n" for e in events))
    with EmbeddedEngine(data) as engine:
        engine.ingest_file(path)
        assert engine.views.learned_regions == ["GB"]
        jane = engine.views.lookup_node("email:jane@mail.co.uk")["profile_id"]

    def refused(*args, **kwargs):
        raise AssertionError("the resolver's state was read")

    monkeypatch.setattr(Resolver, "apply_all", refused)  # (no state folded)
    monkeypatch.setattr(Resolver, "normalize_identifier", refused)  # (nor asked)
    # (a national number, read as the learned country's, as the next event's would be)
    assert main(["lookup", "phone=07887 899111", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["profile_id"] == jane
