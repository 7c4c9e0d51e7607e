"""Event times as microseconds: the views' form of the log's fixed-width UTC text."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from projections.times import iso, logged_micros, micros
from resolver.ids import utc_iso

instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                   timezone(timedelta(hours=-8))]))


_DAY = timedelta(days=1) - timedelta(microseconds=1)
# any zone: fixed offsets up to a day either way, the tz database's (with their folds and gaps), none (local time)
any_zone = st.one_of(st.timedeltas(min_value=-_DAY, max_value=_DAY).map(timezone), st.timezones(), st.none())
# times anywhere, and near the ends of the range, where the UTC instant can fall outside it
any_time = st.one_of(st.datetimes(), st.datetimes(max_value=datetime(1, 1, 3)),
                     st.datetimes(min_value=datetime(9999, 12, 29)))


@given(any_time, any_zone)
def test_the_log_s_text_of_a_time_is_its_utc_instant_as_isoformat_writes_it(local, zone):
    when = local.replace(tzinfo=zone)
    try:
        expected = when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    except (OverflowError, ValueError):  # (outside years 1 to 9999 in UTC: zoneinfo says ValueError)
        with pytest.raises((OverflowError, ValueError)):
            utc_iso(when)
        return
    assert utc_iso(when) == expected


@given(instants)
def test_the_log_s_text_of_any_instant_comes_back_from_its_microseconds(when):
    text = utc_iso(when)
    us = micros(text)
    assert us == (when - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    assert iso(us) == text


@given(instants, instants)
def test_microseconds_order_instants_as_the_log_s_text_does(a, b):
    x, y = utc_iso(a), utc_iso(b)
    assert (micros(x) < micros(y)) == (x < y) and (micros(x) == micros(y)) == (x == y)


def test_a_time_with_an_offset_or_none_is_read_as_the_utc_instant_it_names():
    assert micros("1970-01-01T01:00:00+01:00") == 0 == micros("1970-01-01T00:00:00")
    assert micros("1969-12-31T23:59:59.999999Z") == -1 and iso(-1) == "1969-12-31T23:59:59.999999Z"


def test_a_year_before_1000_as_the_earliest_logs_wrote_it_is_read_as_the_same_instant():
    # (they wrote the year unpadded: shown now as the log writes it today)
    assert logged_micros("999-05-01T00:00:00.000000Z") == micros("0999-05-01T00:00:00.000000Z")
    assert iso(logged_micros("7-01-01T00:00:00.000000Z")) == "0007-01-01T00:00:00.000000Z"


def test_views_folded_from_an_early_log_with_a_year_before_1000_show_it_in_time_order():
    from projections.customer import CustomerViews

    views = CustomerViews()
    for seq, (eid, at) in enumerate([("e1", "999-05-01T00:00:00.000000Z"), ("e2", "2025-05-01T00:00:00.000000Z")]):
        step = [{"type": "interaction_recorded", "event_id": eid, "occurred_at": at, "channel": "web",
                 "event_type": "login", "nodes": ["email:anc.ient@x.org"]}]
        if seq == 0:
            step.insert(0, {"type": "profile_created", "profile_id": "p_1", "created_at": at, "event_id": eid,
                            "nodes": ["email:anc.ient@x.org"]})
        views.apply_entry(seq, step)
    prof = views.profiles["p_1"]
    summary = views.summary(prof)
    assert (summary["first_seen"], summary["last_seen"]) == ("0999-05-01T00:00:00.000000Z", "2025-05-01T00:00:00.000000Z")
    assert [e["occurred_at"] for e in views.timeline(prof)] == ["2025-05-01T00:00:00.000000Z", "0999-05-01T00:00:00.000000Z"]
