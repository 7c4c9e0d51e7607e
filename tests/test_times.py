"""Event times as microseconds: the views' form of the log's fixed-width UTC text."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from projections.times import iso, micros
from resolver.ids import utc_iso

instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                   timezone(timedelta(hours=-8))]))


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
