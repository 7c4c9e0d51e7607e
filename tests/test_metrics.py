"""The snapshot's metric views (``projections.metrics``), checked against data whose answers are known: small
stories told event by event, and a generated world whose plan says what every figure must be."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
from hypothesis import given, strategies as st

from projections.customer import ProjectionConfig
from projections.metrics import VIEWS
from projections.snapshot import write_snapshot
from tests.resolver_helpers import Run, ev

def test_refunds_in_a_currency_when_no_purchase_names_one_are_said_left_out_and_how_to_count_them(tmp_path):
    """The note said "convert them to None", and took the place of the one saying no purchase names a currency."""
    run = configured_run().feed([
        ev("d1", 0, channel="web", event_type="purchase", email="d@mailbox.co.uk", payload={"amount": 100}),
        ev("d2", 5, channel="web", event_type="refund", email="d@mailbox.co.uk", payload={"amount": 20, "currency": "EUR"}),
    ])
    with snapshot_of(run, tmp_path) as con:
        notes = dict(con.execute("SELECT topic, note FROM metric_notes").fetchall())
        value = rows(con, "SELECT net_revenue FROM customer_value")
    assert value == [{"net_revenue": 100.0}]  # (the refund in EUR left out)
    assert "None" not in notes["currency"]
    assert "no purchase names a currency" in notes["currency"] and "1 purchases and refunds in EUR" in notes["currency"]
    assert "report_currency" in notes["currency"]


GBP_PER_EUR = 0.85


def snapshot_of(run: Run, tmp_path, predict: bool = False, **config: Any) -> duckdb.DuckDBPyConnection:
    out = tmp_path / "s.duckdb"
    run.views.config = replace(run.views.config, **config)
    write_snapshot(run.views, out, predict=predict)
    return duckdb.connect(str(out), read_only=True)


def configured_run(**config: Any) -> Run:
    run = Run()
    run.views.config = replace(ProjectionConfig(), **config)
    return run


def rows(con, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


# ------------------------------------------------------------------------------------ stories
def test_the_promise_is_measured_at_the_moment_of_each_contact(tmp_path):
    """Ann chats and logs in with her email, then phones from a number nobody knows yet: the agent cannot see
    her history. An app order then ties the number to her email; when she phones again, the agent sees her
    chat, her web visit and her order."""
    phone = "+44 7700 900123"
    run = configured_run().feed([
        ev("chat-1", 0, channel="chat", event_type="chat_message", email="ann@mailbox.co.uk"),
        ev("web-1", 10, channel="web", event_type="login", email="ann@mailbox.co.uk", device_id="dev-ann"),
        ev("call-1", 20, channel="call_center", event_type="case_opened", phone=phone, payload={"case_id": "C1"}),
        ev("app-1", 30, channel="app", event_type="purchase", email="ann@mailbox.co.uk", phone=phone,
           payload={"amount": 20, "currency": "GBP"}),
        ev("call-2", 40, channel="call_center", event_type="case_resolved", phone=phone,
           payload={"case_id": "C1", "csat": 4}),
        ev("shop-1", 50, channel="store", event_type="store_purchase", loyalty_id="LY-77",
           payload={"amount": 5, "currency": "GBP"}),
    ])
    assert len({run.profile_of(e) for e in ("chat-1", "web-1", "call-1", "app-1", "call-2")}) == 1
    with snapshot_of(run, tmp_path) as con:
        outcome = {r["event_id"]: (r["outcome"], r["channels_before"], r["channels_shown"])
                   for r in rows(con, "SELECT * FROM promise_contacts")}
        assert outcome == {
            "chat-1": ("no history", 0, 0),  # her first contact
            "call-1": ("not recognised", 2, 0),  # the number was nobody's yet: chat and web unseen
            "call-2": ("recognised", 3, 3),  # chat, web and app, each its latest event
            "shop-1": ("no history", 0, 0),  # another customer, on one channel
        }
        call = rows(con, "SELECT * FROM promise_by_channel WHERE channel = 'call_center'")[0]
        assert (call["contacts"], call["with_history"], call["recognised"], call["not_recognised"]) == (2, 2, 1, 1)
        assert call["recognised_rate"] == 0.5
        case = rows(con, "SELECT * FROM cases")[0]
        assert (case["case_id"], case["resolved"], case["resolution_hours"], case["contacts"], case["csat"],
                case["first_contact_resolution"]) == ("C1", True, round(20 / 60, 2), 1, 4, True)


def test_a_customer_who_comes_back_elsewhere_while_a_case_is_open_is_listed(tmp_path):
    run = configured_run().feed([
        ev("open", 0, channel="call_center", event_type="case_opened", email="bo@mailbox.co.uk",
           payload={"case_id": "C7"}),
        ev("buy", 10, channel="store", event_type="store_purchase", email="bo@mailbox.co.uk",
           payload={"amount": 5, "currency": "GBP"}),  # a purchase is not chasing the case
        ev("chase", 20, channel="chat", event_type="chat_message", email="bo@mailbox.co.uk"),
        ev("chase-again", 25, channel="chat", event_type="chat_message", email="bo@mailbox.co.uk",
           payload={"case_id": "C7"}),
        ev("done", 30, channel="call_center", event_type="case_resolved", email="bo@mailbox.co.uk",
           payload={"case_id": "C7", "csat": 2}),
        ev("after", 40, channel="chat", event_type="chat_message", email="bo@mailbox.co.uk"),
    ])
    with snapshot_of(run, tmp_path) as con:
        listed = [r["event_id"] for r in rows(con, "SELECT * FROM recontacted_while_open")]
        assert listed == ["chase", "chase-again"]
        repeat = rows(con, "SELECT * FROM repeat_contacts")
        assert [(r["case_id"], r["contacts_while_open"], r["channels_while_open"]) for r in repeat] == [
            ("C7", 2, ["call_center", "chat"])]
        case = rows(con, "SELECT * FROM cases")[0]
        assert (case["contacts"], case["first_contact_resolution"], case["channels"]) == (
            2, False, ["call_center", "chat"])


def test_a_case_opened_again_after_it_was_resolved_is_open_and_a_closing_alone_is_no_first_contact(tmp_path):
    """K6 is resolved, then opened again and never closed: open in the cases view as on the profile, and
    listed as a stale open case. K7 closed, reopened and closed again: resolved at its last closing, its contacts
    those up to then (not the survey answered after). K8 is
    only a closing event: resolved, with no contact, so not resolved at first contact."""
    email = {"email": "kim@mailbox.co.uk"}
    run = configured_run().feed([
        ev("k6-open", 0, channel="chat", event_type="case_opened", payload={"case_id": "K6"}, **email),
        ev("k6-done", 60, channel="chat", event_type="case_resolved", payload={"case_id": "K6"}, **email),
        ev("k6-again", 24 * 60, channel="call_center", event_type="case_opened", payload={"case_id": "K6"}, **email),
        ev("k7-open", 0, channel="web", event_type="case_opened", payload={"case_id": "K7"}, **email),
        ev("k7-done", 30, channel="web", event_type="case_resolved", payload={"case_id": "K7"}, **email),
        ev("k7-again", 90, channel="web", event_type="case_opened", payload={"case_id": "K7"}, **email),
        ev("k7-csat", 100, channel="web", event_type="survey", payload={"case_id": "K7", "csat": 3}, **email),
        ev("k7-done-2", 120, channel="web", event_type="case_closed", payload={"case_id": "K7"}, **email),
        ev("k7-late-csat", 130, channel="web", event_type="survey", payload={"case_id": "K7", "csat": 4}, **email),
        ev("k8-done", 5, channel="store", event_type="case_resolved", payload={"case_id": "K8"}, **email),
        ev("later", 10 * 24 * 60, email="lee@mailbox.co.uk"),  # (the snapshot's as of: ten days on)
    ])
    with snapshot_of(run, tmp_path) as con:
        cases = {r["case_id"]: r for r in rows(con, "SELECT * FROM cases")}
        assert (cases["K6"]["resolved"], cases["K6"]["resolved_at"], cases["K6"]["contacts"]) == (False, None, 2)
        assert (cases["K7"]["resolved"], cases["K7"]["resolution_hours"], cases["K7"]["contacts"],
                cases["K7"]["csat"], cases["K7"]["first_contact_resolution"]) == (True, 2.0, 3, 4, False)
        assert (cases["K8"]["resolved"], cases["K8"]["contacts"], cases["K8"]["first_contact_resolution"]) == (
            True, 0, False)
        assert [r["case_id"] for r in rows(con, "SELECT * FROM stale_open_cases")] == ["K6"]  # (10 days > 7)
        assert rows(con, "SELECT open_case_count FROM profiles WHERE 'kim@mailbox.co.uk' IN emails") == [
            {"open_case_count": 1}]


def test_a_case_opened_and_closed_at_one_instant_is_resolved_whatever_its_events_ids(tmp_path):
    """Whether such a case counted as resolved depended on which of its two events' IDs sorted first: one
    case stayed open for good (a stale open case), the other was resolved at first contact."""
    run = configured_run().feed([
        ev("t-b", 0, channel="chat", event_type="case_opened", email="hal@mailbox.co.uk", payload={"case_id": "C3"}),
        ev("t-a", 0, channel="chat", event_type="case_resolved", email="hal@mailbox.co.uk", payload={"case_id": "C3"}),
        ev("u-a", 0, channel="chat", event_type="case_opened", email="uma@mailbox.co.uk", payload={"case_id": "C4"}),
        ev("u-b", 0, channel="chat", event_type="case_resolved", email="uma@mailbox.co.uk", payload={"case_id": "C4"}),
        ev("later", 60 * 24 * 40, channel="web", event_type="login", email="zed@mailbox.co.uk"),
    ])
    with snapshot_of(run, tmp_path, stale_case_days=30) as con:
        cases = {r["case_id"]: r for r in rows(con, "SELECT * FROM cases")}
        stale = rows(con, "SELECT * FROM stale_open_cases")
        counts = {r["profile_id"]: (r["open_case_count"], r["closed_case_count"])
                  for r in rows(con, "SELECT * FROM profiles")}
    for case_id in ("C3", "C4"):
        assert (cases[case_id]["resolved"], cases[case_id]["resolution_hours"], cases[case_id]["contacts"],
                cases[case_id]["first_contact_resolution"]) == (True, 0.0, 1, True)
    assert stale == []
    assert counts[run.profile_of("t-a")] == counts[run.profile_of("u-a")] == (0, 1)


def test_a_survey_answered_after_the_resolution_is_no_contact(tmp_path):
    """A score sent after a case was resolved counted as a second contact: no case with a survey after it could be
    resolved at first contact."""
    run = configured_run().feed([
        ev("f1", 0, channel="call_center", event_type="case_opened", email="fay@mailbox.co.uk", payload={"case_id": "C2"}),
        ev("f2", 120, channel="call_center", event_type="case_resolved", email="fay@mailbox.co.uk",
           payload={"case_id": "C2", "csat": 3}),
        ev("f3", 60 * 24, channel="email", event_type="survey_response", email="fay@mailbox.co.uk",
           payload={"case_id": "C2", "csat": 5}),
    ])
    with snapshot_of(run, tmp_path) as con:
        case = rows(con, "SELECT * FROM cases")[0]
        rate = rows(con, "SELECT first_contact_resolution_rate FROM service_by_channel")[0]
    assert (case["contacts"], case["first_contact_resolution"], case["csat"]) == (1, True, 5)
    assert rate["first_contact_resolution_rate"] == 1.0


@given(st.one_of(st.integers(-10, 10), st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10),
                st.sampled_from(["5", "4.0", " 3 ", "4.9", "0", "good", "", "1e0"]), st.none(), st.booleans()))
def test_a_score_is_a_whole_number_from_1_to_5_however_given(value):
    from projections.customer import csat_score

    score = csat_score(value)
    try:
        number = None if isinstance(value, bool) or value is None else float(value)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and 1 <= number <= 5:
        assert score == int(number)
    else:
        assert score is None


def test_scores_out_of_range_count_nowhere_and_scores_as_text_count_everywhere(tmp_path):
    """"5" (text) on a chat case, 0 and 4.9 on call-centre cases: the 0 pulled the call centre's average down
    and 4.9 was cut to 4, while the profile's average left the "5" out that the cases view counted."""
    email = {"email": "ivy@mailbox.co.uk"}
    run = configured_run().feed([
        ev("c1", 0, channel="chat", event_type="case_resolved", payload={"case_id": "A", "csat": "5"}, **email),
        ev("c2", 1, channel="call_center", event_type="case_resolved", payload={"case_id": "B", "csat": 0}, **email),
        ev("c3", 2, channel="call_center", event_type="case_resolved", payload={"case_id": "C", "csat": 4.9}, **email),
        ev("c4", 3, channel="call_center", event_type="case_resolved", payload={"case_id": "D", "csat": 4.0}, **email),
    ])
    with snapshot_of(run, tmp_path) as con:
        assert {r["event_id"]: r["csat"] for r in rows(con, "SELECT event_id, csat FROM events")} == {
            "c1": 5, "c2": None, "c3": None, "c4": 4}
        by_channel = {r["channel"]: (r["avg_csat"], r["csat_responses"]) for r in rows(con, "SELECT * FROM service_by_channel")}
        assert by_channel == {"chat": (5.0, 1), "call_center": (4.0, 1)}
        assert rows(con, "SELECT csat_average FROM profiles") == [{"csat_average": 4.5}]


def test_a_currency_in_lower_case_is_converted_and_order_values_and_the_model_s_counts_agree(tmp_path):
    """100 USD, 100 EUR (no rate), 40 "usd", 60 USD on four days: "usd" was left out as another currency, the
    segments' average order value divided by every purchase (40.0) where customer_value's divides by those whose
    value is known, and customer_value's frequency counted the unconverted purchase's day that the model does not."""
    from projections.metrics.predict import RFM_SQL

    email = {"email": "gus@mailbox.co.uk"}
    day = 24 * 60
    run = configured_run(report_currency="USD").feed([
        ev("p1", 0, channel="web", event_type="purchase", payload={"amount": 100, "currency": "USD"}, **email),
        ev("p2", day, channel="store", event_type="purchase", payload={"amount": 100, "currency": "EUR"}, **email),
        ev("p3", 2 * day, channel="web", event_type="purchase", payload={"amount": 40, "currency": " usd "}, **email),
        ev("p4", 3 * day, channel="app", event_type="purchase", payload={"amount": 60, "currency": "USD"}, **email),
        ev("later", 10 * day, channel="web", event_type="visit", **email),
    ])
    with snapshot_of(run, tmp_path) as con:
        value = rows(con, "SELECT * FROM customer_value")[0]
        assert (value["gross_revenue"], value["unconverted_amounts"], value["valued_purchases"],
                value["average_order_value"]) == (200.0, 1, 3, 66.67)
        segment = rows(con, "SELECT * FROM segment_comparison")[0]
        assert segment["average_order_value"] == value["average_order_value"]
        model = rows(con, RFM_SQL)[0]
        assert (value["frequency"], value["recency"], value["t"]) == (model["frequency"], model["recency"], model["T"])
        assert (model["frequency"], model["recency"], model["T"]) == (2, 3, 10)
        assert rows(con, "SELECT currency FROM events WHERE event_id = 'p3'") == [{"currency": "USD"}]
    # a rate configured in lower case converts the codes sent in any case
    with snapshot_of(run, tmp_path / "rated", exchange_rates={"eur": 2.0}) as con:
        value = rows(con, "SELECT * FROM customer_value")[0]
        assert (value["gross_revenue"], value["unconverted_amounts"], value["valued_purchases"]) == (400.0, 0, 4)


def test_refunds_never_make_value_negative_silently_and_other_currencies_are_converted(tmp_path):
    run = configured_run().feed([
        ev("b1", 0, channel="store", event_type="store_purchase", loyalty_id="LY-1",
           payload={"amount": 50, "currency": "GBP"}),
        ev("b2", 60, channel="store", event_type="refund", loyalty_id="LY-1", payload={"amount": 80, "currency": "GBP"}),
        ev("c1", 0, channel="web", event_type="purchase", email="c@mailbox.co.uk", payload={"amount": 100, "currency": "EUR"}),
        ev("c2", 90, channel="web", event_type="purchase", email="c@mailbox.co.uk", payload={"amount": 10, "currency": "SEK"}),
    ])
    with snapshot_of(run, tmp_path, report_currency="GBP", exchange_rates={"EUR": GBP_PER_EUR}) as con:
        value = {r["profile_id"]: r for r in rows(con, "SELECT * FROM customer_value")}
        b, c = value[run.profile_of("b1")], value[run.profile_of("c1")]
        assert (b["net_revenue"], b["lifetime_value"], b["refunds_exceed_purchases"]) == (-30.0, 0.0, True)
        assert (c["gross_revenue"], c["purchases"], c["unconverted_amounts"], c["currency"]) == (85.0, 2, 1, "GBP")
        assert c["average_order_value"] == 85.0  # of the purchases it could convert
        # the profiles table says the same: one lifetime value in the whole snapshot
        assert dict(con.execute("SELECT profile_id, lifetime_value FROM profiles").fetchall()) == {
            run.profile_of("b1"): 0.0, run.profile_of("c1"): 85.0}
        notes = dict(con.execute("SELECT topic, note FROM metric_notes").fetchall())
        assert "SEK" in notes["currency"] and "exchange_rates" in notes["currency"]


def test_every_view_answers_on_an_empty_snapshot_and_says_what_it_is(tmp_path):
    with snapshot_of(Run(), tmp_path) as con:
        comments = dict(con.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
        for view in VIEWS:
            assert comments[view.name], view.name
            con.execute(f"SELECT * FROM {view.name}").fetchall()
        assert rows(con, "SELECT status FROM programme_return")[0]["status"].startswith("no costs configured")


# ------------------------------------------------------------------------------------ a generated world
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
CHANNELS = ["web", "app", "email", "store", "call_center", "chat"]


@dataclass
class Customer:
    n: int
    events: list[tuple[datetime, str, str, dict[str, Any]]] = field(default_factory=list)
    revenue: float = 0.0
    refunded: float = 0.0
    purchases: int = 0
    cases: list[dict[str, Any]] = field(default_factory=list)


def world(seed: int, people: int = 80) -> list[Customer]:
    """Customers whose every event carries their own email (so each is one profile), on a few channels, who
    buy (in GBP or EUR), sometimes get a refund, and open support cases that are resolved or not."""
    r = random.Random(seed)
    out = []
    for n in range(people):
        c = Customer(n)
        channels = r.sample(CHANNELS, r.randint(1, 4))
        start = r.randint(0, 300)
        for _ in range(r.randint(1, 12)):
            at = T0 + timedelta(days=start + r.randint(0, 400), minutes=r.randint(0, 1439))
            channel = r.choice(channels)
            if channel in ("web", "app", "store") and r.random() < 0.6:
                amount, currency = round(r.uniform(5, 200), 2), r.choice(["GBP", "EUR"])
                c.events.append((at, channel, "purchase", {"amount": amount, "currency": currency}))
                value = amount * (GBP_PER_EUR if currency == "EUR" else 1.0)
                c.purchases += 1
                c.revenue += value
                if r.random() < 0.2:
                    c.events.append((at + timedelta(days=3), channel, "refund", {"amount": amount, "currency": currency}))
                    c.refunded += value
            elif channel in ("call_center", "chat") and r.random() < 0.7:
                case = {"case_id": f"K{n}-{len(c.cases)}", "channel": channel, "opened": at,
                        "hours": r.randint(1, 200) if r.random() < 0.8 else None,
                        "csat": r.randint(1, 5) if r.random() < 0.6 else None}
                c.cases.append(case)
                c.events.append((at, channel, "case_opened", {"case_id": case["case_id"]}))
                if case["hours"] is not None:
                    payload = {"case_id": case["case_id"]} | ({"csat": case["csat"]} if case["csat"] else {})
                    c.events.append((at + timedelta(hours=case["hours"]), channel, "case_resolved", payload))
                else:
                    case["csat"] = None
            else:
                c.events.append((at, channel, "visit", {}))
        out.append(c)
    return out


def feed(customers: list[Customer]) -> Run:
    events = []
    for c in customers:
        for k, (at, channel, etype, payload) in enumerate(c.events):
            events.append((at, f"w{c.n}-{k}", channel, etype, payload, c.n))
    run = configured_run()
    run.feed(ev(eid, int((at - T0).total_seconds() // 60), channel=channel, event_type=etype, payload=payload,
                email=f"person{n}@mailbox.co.uk") for at, eid, channel, etype, payload, n in sorted(events))
    return run


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    customers = world(seed=20261202)
    run = feed(customers)
    out = tmp_path_factory.mktemp("metrics") / "s.duckdb"
    run.views.config = replace(run.views.config, report_currency="GBP", exchange_rates={"EUR": GBP_PER_EUR},
                               contact_costs={"call_center": 5.0, "chat": 1.5}, programme_cost=1000.0)
    write_snapshot(run.views, out)
    with duckdb.connect(str(out), read_only=True) as con:
        yield customers, run, con


def test_customer_value_matches_the_plan(generated):
    customers, run, con = generated
    value = {r["profile_id"]: r for r in rows(con, "SELECT * FROM customer_value")}
    assert len(value) == len(customers)
    for c in customers:
        v = value[run.profile_of(f"w{c.n}-0")]
        assert v["purchases"] == c.purchases
        assert v["gross_revenue"] == pytest.approx(c.revenue, abs=0.011)
        assert v["net_revenue"] == pytest.approx(c.revenue - c.refunded, abs=0.011)
        assert v["channels"] == len({e[1] for e in c.events})


def test_service_figures_match_the_plan(generated):
    customers, _, con = generated
    cases = [case for c in customers for case in c.cases]
    got = {r["case_id"]: r for r in rows(con, "SELECT * FROM cases")}
    assert set(got) == {case["case_id"] for case in cases}
    for case in cases:
        g = got[case["case_id"]]
        assert (g["resolved"], g["csat"], g["channel"]) == (case["hours"] is not None, case["csat"], case["channel"])
        assert g["resolution_hours"] == case["hours"]
    by_channel = {r["channel"]: r for r in rows(con, "SELECT * FROM service_by_channel")}
    for channel in ("call_center", "chat"):
        mine = [case for case in cases if case["channel"] == channel]
        hours = [case["hours"] for case in mine if case["hours"] is not None]
        scores = [case["csat"] for case in mine if case["csat"] is not None]
        b = by_channel[channel]
        assert (b["cases"], b["resolved"]) == (len(mine), len(hours))
        assert b["avg_resolution_hours"] == pytest.approx(statistics.mean(hours), abs=0.006)
        assert b["median_resolution_hours"] == pytest.approx(statistics.median(hours), abs=0.006)
        assert b["avg_csat"] == pytest.approx(statistics.mean(scores), abs=0.006)


def _churn_plan(customers: list[Customer], churn_days: int = 90, ratio: float = 3.0) -> dict[int, str]:
    as_of = max(e[0] for c in customers for e in c.events).date()
    status = {}
    for c in customers:
        days = sorted({e[0].date() for e in c.events})
        inactive = (as_of - days[-1]).days
        gaps = [(b - a).days for a, b in zip(days, days[1:])]
        if inactive >= churn_days:
            status[c.n] = "churned"
        elif gaps and inactive > ratio * statistics.median(gaps):
            status[c.n] = "at_risk"
        else:
            status[c.n] = "active"
    return status


def test_churn_status_cohorts_and_survival_match_the_plan(generated):
    customers, run, con = generated
    plan = _churn_plan(customers)
    got = {r["profile_id"]: r["status"] for r in rows(con, "SELECT * FROM churn_risk")}
    assert {run.profile_of(f"w{c.n}-0"): plan[c.n] for c in customers} == got
    # Kaplan-Meier, written out: at each tenure where someone churned, the share surviving it
    as_of = max(e[0] for c in customers for e in c.events).date()
    spans = []
    for c in customers:
        days = sorted({e[0].date() for e in c.events})
        spans.append(((days[-1] if plan[c.n] == "churned" else as_of) - days[0]).days)
    churned = [s for s, c in zip(spans, customers) if plan[c.n] == "churned"]
    surviving, expected = 1.0, {}
    for t in sorted(set(churned)):
        at_risk = sum(1 for s in spans if s >= t)
        surviving *= 1 - churned.count(t) / at_risk
        expected[t] = surviving
    curve = {r["days"]: r["surviving"] for r in rows(con, "SELECT * FROM survival")}
    assert curve.keys() == expected.keys()
    for t, s in expected.items():
        assert curve[t] == pytest.approx(s, abs=1e-6)
    cohorts = {r["cohort_month"].date(): (r["customers"], r["churned"]) for r in rows(con, "SELECT * FROM churn_cohorts")}
    want: dict[Any, list[int]] = {}
    for c in customers:
        first = min(e[0] for e in c.events).date().replace(day=1)
        w = want.setdefault(first, [0, 0])
        w[0] += 1
        w[1] += plan[c.n] == "churned"
    assert cohorts == {k: tuple(v) for k, v in want.items()}


def test_channels_journeys_and_segments_match_the_plan(generated):
    customers, run, con = generated
    usage = {r["channels"]: r["customers"] for r in rows(con, "SELECT * FROM channel_usage")}
    want: dict[int, int] = {}
    for c in customers:
        k = len({e[1] for e in c.events})
        want[k] = want.get(k, 0) + 1
    assert usage == want
    # journeys: each customer's channels in time order, repeats on one channel counted once
    paths: dict[str, int] = {}
    moves: dict[tuple[str, str], int] = {}
    hours: dict[tuple[str, str], list[float]] = {}  # (from the last event on one channel to the next on another)
    for c in customers:
        timed = [(e[0], e[1]) for e in sorted(c.events, key=lambda e: (e[0], f"w{c.n}-{c.events.index(e)}"))]
        ordered = [ch for _, ch in timed]
        runs = [ch for k, ch in enumerate(ordered) if k == 0 or ordered[k - 1] != ch]
        path = " > ".join(runs[:5])
        paths[path] = paths.get(path, 0) + 1
        for a, b in zip(runs, runs[1:]):
            moves[(a, b)] = moves.get((a, b), 0) + 1
        for (t0, a), (t1, b) in zip(timed, timed[1:]):
            if a != b:
                hours.setdefault((a, b), []).append((t1 - t0).total_seconds() / 3600)
    assert {r["journey"]: r["customers"] for r in rows(con, "SELECT * FROM journeys")} == paths
    transitions = rows(con, "SELECT * FROM channel_transitions")
    assert {(r["from_channel"], r["to_channel"]): r["transitions"] for r in transitions} == moves
    for r in transitions:
        assert r["median_hours_between"] == pytest.approx(
            round(statistics.median(hours[r["from_channel"], r["to_channel"]]), 2), abs=0.006), r
    assert all(a != b for a, b in moves)
    segments = {r["segment"]: r for r in rows(con, "SELECT * FROM segment_comparison")}
    cross = [c for c in customers if len({e[1] for e in c.events}) >= 2]
    assert segments["cross-channel"]["customers"] == len(cross)
    assert segments["single-channel"]["customers"] == len(customers) - len(cross)
    as_of = max(e[0] for c in customers for e in c.events).date()
    buyers = [c for c in cross if c.purchases]
    years = sum(max((as_of - min(e[0] for e in c.events).date()).days, 1) for c in buyers) / 365
    assert segments["cross-channel"]["purchases_per_buyer_year"] == pytest.approx(
        sum(c.purchases for c in buyers) / years, abs=0.0006)
    costs = {"call_center": 5.0, "chat": 1.5}
    spent = sum(costs.get(e[1], 0.0) for c in customers for e in c.events)
    ret = rows(con, "SELECT * FROM programme_return")[0]
    assert ret["status"] == "ok" and ret["contact_costs"] == pytest.approx(spent)
    cross_value = statistics.mean(max(c.revenue - c.refunded, 0) for c in cross)
    single_value = statistics.mean(max(c.revenue - c.refunded, 0) for c in customers if c not in cross)
    assert ret["value_beyond_single_channel"] == pytest.approx((cross_value - single_value) * len(cross), abs=0.01 * len(cross))
    assert ret["value_over_cost"] == pytest.approx(ret["value_beyond_single_channel"] / 1000.0, abs=1e-4)


# ------------------------------------------------------------------------------------ predicted value
def test_the_purchase_models_tell_steady_buyers_from_lapsed_ones(tmp_path):
    """Buyers who kept buying every week or so, buyers who bought weekly for two months a year ago and
    stopped, and buyers who bought daily for two months and went quiet 80 days ago (not yet churned by the
    90-day rule): BG/NBD must find the first alive and the others most likely gone."""
    pytest.importorskip("pymc_marketing", reason="the clv extra is not installed: pip install -c constraints.txt -e '.[clv]'")
    r = random.Random(11)
    events = []
    as_of = 400
    for n in range(25):
        day = r.randint(0, 6)
        while day <= as_of - 3:
            events.append(("steady", n, day))
            day += r.randint(6, 10)
        for k in range(8):
            events.append(("lapsed", n, r.randint(0, 4) + 7 * k))
        for k in range(60):
            events.append(("quiet", n, as_of - 140 + k))
    events.append(("steady", 0, as_of))
    run = configured_run().feed(
        ev(f"{group}-{n}-{k}", day * 1440 + 600, channel="web", event_type="purchase", email=f"{group}{n}@mailbox.co.uk",
           payload={"amount": round(r.uniform(10, 90), 2), "currency": "GBP"})
        for k, (group, n, day) in enumerate(sorted(events, key=lambda e: (e[2], e[0], e[1]))))
    with snapshot_of(run, tmp_path, predict=True) as con:
        assert con.execute("SELECT count(*) FROM metric_notes WHERE topic = 'predicted_value'").fetchone()[0] == 0
        got = rows(con, "SELECT split_part(p.emails[1], '@', 1) AS who, v.* FROM customer_value v "
                        "JOIN profiles p USING (profile_id)")
        by = {g: [x for x in got if x["who"].rstrip("0123456789") == g] for g in ("steady", "lapsed", "quiet")}
        mean = lambda g, k: statistics.mean(x[k] for x in by[g])  # noqa: E731
        assert mean("steady", "probability_alive") > 0.9
        assert mean("lapsed", "probability_alive") < 0.2 and mean("quiet", "probability_alive") < 0.2
        assert mean("steady", "expected_purchases_90d") > 5 > mean("lapsed", "expected_purchases_90d")
        assert mean("steady", "predicted_clv_12m") > 10 * mean("lapsed", "predicted_clv_12m")
        status = {x["who"]: (x["status"], x["why"]) for x in rows(
            con, "SELECT split_part(p.emails[1], '@', 1) AS who, r.* FROM churn_risk r JOIN profiles p USING (profile_id)")}
        assert all(status[f"quiet{n}"][0] == "at_risk" and status[f"quiet{n}"][1].startswith("probability alive")
                   for n in range(25))
        assert all(status[f"lapsed{n}"][0] == "churned" for n in range(25))


def test_customer_value_does_not_depend_on_the_order_of_the_rows(tmp_path):
    # (floating-point sums depend on their order: 0.1 + 0.2 + 0.3 is 0.6000000000000001, 0.3 + 0.2 + 0.1 is
    # 0.6; DuckDB sums rows in whatever order its threads take them, so a sum landing on half a cent rounded
    # either way from one snapshot to the next. The same events, their table written in reverse, must give
    # the same figures.)
    import shutil

    import duckdb

    from projections import metrics
    from projections.snapshot import write_snapshot
    from tests.resolver_helpers import Run, ev

    views = Run().feed([
        ev("1", 0, channel="web", event_type="purchase", email="a@mailbox.org", payload={"amount": 0.1}),
        ev("2", 1, channel="web", event_type="purchase", email="a@mailbox.org", payload={"amount": 0.2}),
        ev("3", 2, channel="web", event_type="purchase", email="a@mailbox.org", payload={"amount": 0.3}),
        ev("4", 3, channel="web", event_type="refund", email="a@mailbox.org",
           payload={"amount": 0.6000000000000001}),
        ev("5", 4, channel="web", event_type="purchase", email="b@mailbox.org", payload={"amount": 0.005}),
        ev("6", 5, channel="web", event_type="purchase", email="b@mailbox.org", payload={"amount": 0.01}),
    ]).views
    out = tmp_path / "s.duckdb"
    write_snapshot(views, out, predict=False)
    query = ("SELECT profile_id, gross_revenue, refunded, net_revenue, refunds_exceed_purchases, average_order_value "
             "FROM customer_value ORDER BY profile_id")
    figures, every_view = [], []
    for order in ("ASC", "DESC"):
        copy = tmp_path / f"{order}.duckdb"
        shutil.copy(out, copy)
        con = duckdb.connect(str(copy))
        con.execute("SET threads = 1")  # (one thread reads the table's rows in the order they were written)
        con.execute(f"CREATE OR REPLACE TABLE events AS SELECT * FROM events ORDER BY occurred_at {order}")
        figures.append(con.execute(query).fetchall())
        every_view.append({v.name: con.execute(f"SELECT * FROM {v.name} ORDER BY ALL").fetchall()
                           for v in metrics.VIEWS})
        con.close()
    assert len(figures[0]) == 2
    assert figures[0] == figures[1]
    assert every_view[0] == every_view[1]


@pytest.mark.parametrize("ids", [("a1", "b1"), ("a3", "b3"), ("w", "c"), ("c", "w")])
def test_a_contact_at_the_instant_of_another_channel_s_event_is_never_a_stranger_to_it(tmp_path, ids):
    """A web login and a call at one instant, on one email: whether the call counted the login as history went by
    the events' IDs, whether the login had been shown by the order they are decided in (their IDs' checksums);
    where the two disagreed the call was "not recognised", with one profile holding both."""
    import zlib

    web, call = ids
    events = [ev(web, 0, channel="web", event_type="login", email="one@mailbox.co.uk"),
              ev(call, 0, channel="call_center", event_type="case_opened", email="one@mailbox.co.uk",
                 payload={"case_id": "K1"})]
    # (decided in the order `idres ingest` decides them: by time, then the ID's checksum)
    run = configured_run().feed(sorted(events, key=lambda e: (zlib.crc32(e.event_id.encode()), e.event_id)))
    with snapshot_of(run, tmp_path) as con:
        found = con.execute("SELECT history_event_id, shown_event_id FROM contact_recognition WHERE event_id = ?",
                            [call]).fetchall()
    assert len(found) == 1
    history, shown = found[0]
    assert history == shown  # (none, or the login, shown)
