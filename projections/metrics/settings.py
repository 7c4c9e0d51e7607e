"""What the metric views read besides the customer tables: the snapshot's settings (``metric_settings``, one
row), which event types are purchases, refunds and case events (``event_kinds``), exchange rates
(``currency_rates``), contact costs (``contact_costs``) and the assisted channels (``assisted_channels``),
all from ``[projection]`` of the configuration (``projections.customer.ProjectionConfig``).

``as_of`` is the time of the newest event in the snapshot, not the clock: the same log gives the same
figures whenever the snapshot is written, and a historical data set is measured at its own end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from projections.times import iso

if TYPE_CHECKING:
    from projections.customer import CustomerViews, ProjectionConfig

CURRENCY_SQL = """
SELECT e.currency FROM events e JOIN event_kinds k ON k.event_type = e.event_type
WHERE k.kind = 'purchase' AND e.profile_id IS NOT NULL AND e.currency IS NOT NULL
GROUP BY e.currency ORDER BY count(*) DESC, e.currency LIMIT 1"""


def as_of(views: "CustomerViews") -> Optional[str]:
    return iso(max(views.ev_at)) if views.ev_at else None


def currency_code(value: Any) -> Optional[str]:
    """A currency code as the snapshot keeps it, in any case it came in ("usd" is USD); None for no code."""
    return value.strip().upper() or None if isinstance(value, str) else None


def write_settings(con: Any, views: "CustomerViews") -> Optional[str]:
    """Writes the settings tables into the snapshot ``con``, whose events table is written; returns the report
    currency: the configured one, else the currency of most purchases (None: no purchase names one)."""
    cfg: ProjectionConfig = views.config
    con.execute("CREATE TABLE event_kinds (event_type VARCHAR PRIMARY KEY, kind VARCHAR)")
    kinds: dict[str, str] = {}
    for kind, types in (("case_close", cfg.case_close_types), ("case_open", cfg.case_open_types),
                        ("refund", cfg.refund_types), ("purchase", cfg.purchase_types)):
        for t in types:
            kinds[t] = kind  # (a type named twice: the first of purchase, refund, case_open, case_close)
    if kinds:
        con.executemany("INSERT INTO event_kinds VALUES (?, ?)", sorted(kinds.items()))
    currency = cfg.report_currency
    if not currency:
        found = con.execute(CURRENCY_SQL).fetchone()
        currency = found[0] if found else None
    con.execute("CREATE TABLE metric_settings (as_of TIMESTAMP, report_currency VARCHAR, churn_days INTEGER, "
                "at_risk_gap_ratio DOUBLE, at_risk_probability DOUBLE, stale_case_days INTEGER, "
                "programme_cost DOUBLE)")
    at = as_of(views)
    con.execute("INSERT INTO metric_settings VALUES (CAST(? AS TIMESTAMPTZ) AT TIME ZONE 'UTC', ?, ?, ?, ?, ?, ?)",
                [at, currency, cfg.churn_days, cfg.at_risk_gap_ratio, cfg.at_risk_probability, cfg.stale_case_days,
                 cfg.programme_cost])
    con.execute("CREATE TABLE currency_rates (currency VARCHAR PRIMARY KEY, rate DOUBLE)")
    rates = {currency_code(code): rate for code, rate in cfg.exchange_rates.items()}  # (as the events' codes)
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
    return currency
