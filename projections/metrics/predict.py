"""Predicted customer value: the standard models of non-contractual purchasing, fitted to the snapshot.

BG/NBD (``pymc_marketing.clv.BetaGeoModel``) models how often each buyer purchases and when they stop: it
gives the probability a buyer is still alive and their expected purchases over the next 90 days.
Gamma-Gamma (``GammaGammaModel``) models what they spend per purchase; with BG/NBD it gives the expected
lifetime value over the next 12 months, discounted at 1% a month. Both are fitted by maximum a posteriori
(deterministic: the same snapshot gives the same figures), in days, on the purchases whose amount is in the
report currency (``event_facts.value``), one purchase per customer and day.

pymc-marketing is an optional extra (``pip install -c constraints.txt -e '.[clv]'`` in the checkout): without it
the table ``customer_value_predicted`` is empty and ``metric_notes`` says why. Its first fit on a machine compiles
code (half a minute); later fits take seconds."""

from __future__ import annotations

import warnings
from typing import Any, Optional

HORIZON_DAYS = 90  # expected purchases over this many days
CLV_MONTHS = 12  # predicted lifetime value over this many months ...
MONTHLY_DISCOUNT = 0.01  # ... discounted at this rate a month
MIN_BUYERS = 20  # fewer buyers (or repeat buyers, for spend) than this: no model, and a note says so

RFM_SQL = """
WITH d AS (
  SELECT profile_id, CAST(ts AS DATE) AS day, sum(value ORDER BY ts, event_id) AS spent
  FROM event_facts WHERE kind = 'purchase' AND value IS NOT NULL GROUP BY profile_id, day),
r AS (SELECT *, row_number() OVER (PARTITION BY profile_id ORDER BY day) AS k FROM d)
SELECT profile_id AS customer_id, count(*) - 1 AS frequency,
       date_diff('day', min(day), max(day)) AS recency,
       date_diff('day', min(day), (SELECT CAST(as_of AS DATE) FROM metric_settings)) AS "T",
       coalesce(avg(spent ORDER BY k) FILTER (WHERE k > 1), 0) AS monetary_value
FROM r GROUP BY profile_id HAVING "T" > 0 ORDER BY profile_id"""


def available() -> Optional[str]:
    """None when the models' library can be used, else why not."""
    import importlib.util

    if importlib.util.find_spec("pymc_marketing") is None:
        return ("pymc-marketing is not installed: `pip install -c constraints.txt -e '.[clv]'` in the idres checkout "
                "adds the predicted customer value")
    return None


def _quiet() -> None:
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)


def fit(rfm: Any) -> tuple[Optional[Any], Optional[str]]:
    """The predictions for ``rfm`` (pandas: customer_id, frequency, recency, T, monetary_value): a frame of
    customer_id, probability_alive, expected_purchases_90d, predicted_clv_12m (NULL where spend cannot be
    modelled), and a note on what could not be done."""
    _quiet()
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    if len(rfm) < MIN_BUYERS:
        return None, f"{len(rfm)} buyers with a purchase before the snapshot's last day: at least {MIN_BUYERS} are needed"
    squeeze = lambda da: da.squeeze(("chain", "draw")).to_numpy()  # noqa: E731  (a MAP fit: one draw)
    with warnings.catch_warnings():
        _quiet()
        bg = BetaGeoModel()
        bg.fit(rfm, method="map", progressbar=False)
        out = rfm[["customer_id"]].copy()
        out["probability_alive"] = squeeze(bg.expected_probability_alive(rfm))
        out["expected_purchases_90d"] = squeeze(bg.expected_purchases(rfm, future_t=HORIZON_DAYS))
        repeat = rfm[(rfm.frequency > 0) & (rfm.monetary_value > 0)]
        note = None
        if len(repeat) < MIN_BUYERS:
            out["predicted_clv_12m"] = None
            note = f"{len(repeat)} repeat buyers: spend needs at least {MIN_BUYERS}, so no predicted lifetime value"
        else:
            gg = GammaGammaModel()
            gg.fit(repeat, method="map", progressbar=False)
            out["predicted_clv_12m"] = squeeze(gg.expected_customer_lifetime_value(
                bg, rfm.copy(), future_t=CLV_MONTHS, discount_rate=MONTHLY_DISCOUNT, time_unit="D"))
    for column in ("probability_alive", "expected_purchases_90d", "predicted_clv_12m"):
        out[column] = out[column].astype(float).round(6)
    return out, note


def predict_into(con: Any) -> Optional[str]:
    """Fills ``customer_value_predicted`` in the snapshot ``con``; returns a note on what is missing, if anything."""
    why = available()
    if why is not None:
        return why
    rfm = con.execute(RFM_SQL).df()
    try:
        out, note = fit(rfm)
    except Exception as exc:  # (a model that cannot be fitted to these data leaves the rest of the snapshot)
        return f"the purchase models could not be fitted to these data ({type(exc).__name__}: {str(exc)[:200]})"
    if out is not None:
        con.register("predicted_frame", out)
        con.execute("INSERT INTO customer_value_predicted SELECT customer_id, probability_alive, "
                    "expected_purchases_90d, predicted_clv_12m FROM predicted_frame")
        con.unregister("predicted_frame")
    return note
