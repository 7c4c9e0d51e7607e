"""What the metric views read besides the customer tables: the snapshot's settings (``metric_settings``, one
row), which event types are purchases, refunds and case events (``event_kinds``), exchange rates
(``currency_rates``), contact costs (``contact_costs``) and the assisted channels (``assisted_channels``),
all from ``[projection]`` of the configuration (``projections.customer.ProjectionConfig``).

``as_of`` is the time of the newest event in the snapshot, not the clock: the same log gives the same
figures whenever the snapshot is written, and a historical data set is measured at its own end."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from projections.customer import CustomerViews, ProjectionConfig

KINDS = ("purchase", "refund", "case_open", "case_close")


def report_currency(views: "CustomerViews") -> Optional[str]:
    """The configured report currency, else the currency of most purchases (None: no purchase names one)."""
    cfg = views.config
    if cfg.report_currency:
        return cfg.report_currency
    counts: Counter[str] = Counter()
    money = set(cfg.purchase_types)
    for i, et in enumerate(views.ev_type):
        if et in money and views.ev_profile[i] is not None:
            currency = views.payload(i).get("currency")
            if isinstance(currency, str):
                counts[currency] += 1
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None


def as_of(views: "CustomerViews") -> Optional[str]:
    return max(views.ev_at) if views.ev_at else None


def write_settings(con: Any, views: "CustomerViews", currency: Optional[str]) -> None:
    cfg: ProjectionConfig = views.config
    con.execute("CREATE TABLE metric_settings (as_of TIMESTAMP, report_currency VARCHAR, churn_days INTEGER, "
                "at_risk_gap_ratio DOUBLE, at_risk_probability DOUBLE, stale_case_days INTEGER, "
                "programme_cost DOUBLE)")
    at = as_of(views)
    con.execute("INSERT INTO metric_settings VALUES (CAST(? AS TIMESTAMPTZ) AT TIME ZONE 'UTC', ?, ?, ?, ?, ?, ?)",
                [at, currency, cfg.churn_days, cfg.at_risk_gap_ratio, cfg.at_risk_probability, cfg.stale_case_days,
                 cfg.programme_cost])
    con.execute("CREATE TABLE event_kinds (event_type VARCHAR PRIMARY KEY, kind VARCHAR)")
    kinds: dict[str, str] = {}
    for kind, types in (("case_close", cfg.case_close_types), ("case_open", cfg.case_open_types),
                        ("refund", cfg.refund_types), ("purchase", cfg.purchase_types)):
        for t in types:
            kinds[t] = kind  # (a type named twice: the first of purchase, refund, case_open, case_close)
    if kinds:
        con.executemany("INSERT INTO event_kinds VALUES (?, ?)", sorted(kinds.items()))
    con.execute("CREATE TABLE currency_rates (currency VARCHAR PRIMARY KEY, rate DOUBLE)")
    rates = dict(cfg.exchange_rates)
    if currency is not None:
        rates[currency] = 1.0
    if rates:
        con.executemany("INSERT INTO currency_rates VALUES (?, ?)", sorted(rates.items()))
    con.execute("CREATE TABLE contact_costs (channel VARCHAR PRIMARY KEY, cost DOUBLE)")
    if cfg.contact_costs:
        con.executemany("INSERT INTO contact_costs VALUES (?, ?)", sorted(cfg.contact_costs.items()))
    con.execute("CREATE TABLE assisted_channels (channel VARCHAR PRIMARY KEY)")
    if cfg.assisted_channels:
        con.executemany("INSERT INTO assisted_channels VALUES (?)", [(c,) for c in sorted(set(cfg.assisted_channels))])
