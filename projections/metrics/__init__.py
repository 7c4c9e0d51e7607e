"""The metric views of the analyst snapshot: what omnichannel CRM teams measure, as DuckDB views over the
snapshot's tables, one concept per module:

- ``value``: customer value (RFM, historical and predicted lifetime value; ``predict`` fits the models);
- ``churn``: status as of the snapshot, churn by cohort, survival;
- ``service``: cases, resolution time, CSAT, first-contact resolution;
- ``promise``: whether a person serving the customer could see their other channels, at that moment;
- ``channels``: channel mix, channel-to-channel moves, journeys;
- ``crosschannel``: cross- against single-channel customers, cost to serve, the programme's return;
- ``lists``: households' value and the proactive lists;
- ``quality``: how the identity resolution stands.

``settings`` writes what they read besides the customer tables. Every view has a comment (``duckdb_views()``
shows it); ``VIEWS`` lists them in the order they are created."""

from __future__ import annotations

from typing import Any, Callable, Optional

from projections.metrics import channels, churn, crosschannel, lists, promise, quality, service, value
from projections.metrics.view import View

VIEWS: list[View] = [*value.VIEWS, *churn.VIEWS, *service.VIEWS, *promise.VIEWS, *channels.VIEWS,
                     *crosschannel.VIEWS, *lists.VIEWS, *quality.VIEWS]

# the tables written beside the views: what they read besides the customer tables, and what they say
TABLES = ("metric_settings", "event_kinds", "currency_rates", "contact_costs", "assisted_channels",
          "customer_value_predicted", "metric_notes")
PREDICTED = {"profile_id": "VARCHAR", "probability_alive": "DOUBLE", "expected_purchases_90d": "DOUBLE",
             "predicted_clv_12m": "DOUBLE"}


def finish_metrics(con: Any, currency: Optional[str], progress: Optional[Callable[[str], None]] = None,
                   predict: bool = True) -> dict[str, Any]:
    """Creates the metric views and the predicted customer value (``predict``: when the models' library is
    installed) in the open snapshot ``con``, whose customer tables and settings (``write_settings``, which gave
    ``currency``, the report currency) are written: the views are not read from here on. Returns notes on what
    could not be computed."""
    from projections.metrics import predict as predicting

    con.execute(f"CREATE TABLE customer_value_predicted ({', '.join(f'{c} {t}' for c, t in PREDICTED.items())})")
    con.execute("CREATE TABLE metric_notes (topic VARCHAR, note VARCHAR)")
    for view in VIEWS:
        view.create(con)
    # one lifetime value in the whole snapshot: the profiles table's is customer_value's (report currency,
    # refunds never below 0), not the sum of amounts as sent the API shows
    # (the view's figures held in a temporary table first: an UPDATE joined to the view itself takes three
    # times as long)
    con.execute("CREATE TEMP TABLE customer_value_now AS SELECT profile_id, lifetime_value FROM customer_value")
    con.execute("UPDATE profiles SET lifetime_value = v.lifetime_value FROM customer_value_now v "
                "WHERE profiles.profile_id = v.profile_id")
    con.execute("DROP TABLE customer_value_now")
    notes: dict[str, Any] = {}
    if currency is None:
        notes["currency"] = "no purchase names a currency and report_currency is not set: amounts are taken as they are"
    unconverted = con.execute("SELECT count(*), string_agg(DISTINCT currency, ', ' ORDER BY currency) FROM event_facts "
                              "WHERE unconverted AND kind IN ('purchase', 'refund')").fetchone()
    if unconverted[0] and currency is None:
        notes["currency"] = (f"no purchase names a currency and report_currency is not set: amounts are taken as they "
                             f"are, and {unconverted[0]} purchases and refunds in {unconverted[1]} are left out of "
                             "revenue: set report_currency (and exchange_rates) in [projection] to count them")
    elif unconverted[0]:
        notes["currency"] = (f"{unconverted[0]} purchases and refunds in {unconverted[1]} are left out of revenue: "
                             f"set exchange_rates in [projection] to convert them to {currency}")
    if predict:
        if progress is not None:
            progress("customer_value_predicted")
        note = predicting.predict_into(con)
        if note:
            notes["predicted_value"] = note
    else:
        notes["predicted_value"] = "not computed (--no-predict, or IDRES_PREDICT=0)"
    if notes:
        con.executemany("INSERT INTO metric_notes VALUES (?, ?)", sorted(notes.items()))
    return notes
