"""Customer value: per profile, purchases, revenue net of refunds, recency, frequency, tenure, average order
value and the historical lifetime value, in the report currency; the predicted figures (probability alive,
expected purchases, lifetime value over the next year) come from ``projections.metrics.predict`` when its
library is installed, and are empty otherwise (``metric_notes`` says why)."""

from projections.metrics.view import View

EVENT_FACTS = View("event_facts", "One row per event of a customer (erased ones left out): its kind (purchase, refund, "
                   "case_open, case_close or NULL), its time in UTC (ts), and its amount in the report currency "
                   "(value; NULL when its currency has no rate: unconverted; as sent when no event names a "
                   "currency).", """
SELECT e.event_id, e.profile_id, e.channel, e.event_type, k.kind,
       timezone('UTC', e.occurred_at) AS ts, e.amount, coalesce(e.currency, s.report_currency) AS currency,
       CASE WHEN k.kind = 'refund' THEN abs(e.amount) ELSE e.amount END * rate.rate AS value,
       e.amount IS NOT NULL AND rate.rate IS NULL AS unconverted,
       e.case_id, e.csat
FROM events e CROSS JOIN metric_settings s
LEFT JOIN event_kinds k ON k.event_type = e.event_type
LEFT JOIN currency_rates r ON r.currency = coalesce(e.currency, s.report_currency)
CROSS JOIN LATERAL (SELECT coalesce(r.rate, CASE WHEN e.currency IS NULL AND s.report_currency IS NULL THEN 1.0 END)
                    AS rate) rate
WHERE e.profile_id IS NOT NULL""")

CUSTOMER_VALUE = View("customer_value", "One row per profile: purchases and refunds, revenue (gross, refunded, net; "
                      "lifetime_value is the net revenue, never below 0, refunds_exceed_purchases says when refunds "
                      "of purchases outside the data made it so), recency, frequency and T in days as the BG/NBD "
                      "model counts them (purchases whose value is known, on calendar days), tenure, the purchases "
                      "whose value is known and their average, and the predicted figures when a model ran.", """
WITH f AS (
  SELECT profile_id,
         count(*) FILTER (WHERE kind = 'purchase') AS purchases,
         count(*) FILTER (WHERE kind = 'refund') AS refunds,
         count(value) FILTER (WHERE kind = 'purchase') AS valued_purchases,
         -- (summed in time order: in the order the rows come, a sum of cents can land either side of a half
         -- cent from one run to the next, and round either way)
         coalesce(sum(value ORDER BY ts, event_id) FILTER (WHERE kind = 'purchase'), 0) AS gross_revenue,
         coalesce(sum(value ORDER BY ts, event_id) FILTER (WHERE kind = 'refund'), 0) AS refunded,
         count(*) FILTER (WHERE kind IN ('purchase', 'refund') AND unconverted) AS unconverted_amounts,
         min(ts) FILTER (WHERE kind = 'purchase') AS first_purchase,
         max(ts) FILTER (WHERE kind = 'purchase') AS last_purchase,
         -- (the model's counts: purchases whose value is known, on calendar days: ``predict.RFM_SQL``)
         min(ts) FILTER (WHERE kind = 'purchase' AND value IS NOT NULL) AS first_valued,
         max(ts) FILTER (WHERE kind = 'purchase' AND value IS NOT NULL) AS last_valued,
         count(DISTINCT CAST(ts AS DATE)) FILTER (WHERE kind = 'purchase' AND value IS NOT NULL) AS purchase_days,
         min(ts) AS first_seen, max(ts) AS last_seen, count(*) AS events,
         count(DISTINCT channel) AS channels
  FROM event_facts GROUP BY profile_id)
SELECT f.profile_id, p.identifier_count > 0 AS identified, f.events, f.channels, f.purchases, f.refunds,
       s.report_currency AS currency,
       round(f.gross_revenue, 2) AS gross_revenue, round(f.refunded, 2) AS refunded,
       round(f.gross_revenue - f.refunded, 2) + 0.0 AS net_revenue,  -- (+ 0.0: -0.0 when refunds undo purchases)
       round(greatest(f.gross_revenue - f.refunded, 0), 2) AS lifetime_value,
       f.refunded > f.gross_revenue AS refunds_exceed_purchases, f.unconverted_amounts,
       f.first_seen, f.last_seen, f.first_purchase, f.last_purchase,
       date_diff('day', f.first_seen, s.as_of) AS tenure_days,
       date_diff('day', f.last_purchase, s.as_of) AS days_since_purchase,
       greatest(f.purchase_days - 1, 0) AS frequency,
       date_diff('day', f.first_valued, f.last_valued) AS recency,
       date_diff('day', f.first_valued, s.as_of) AS t,
       f.valued_purchases,
       CASE WHEN f.valued_purchases > 0 THEN round(f.gross_revenue / f.valued_purchases, 2) END AS average_order_value,
       m.probability_alive, m.expected_purchases_90d, m.predicted_clv_12m
FROM f CROSS JOIN metric_settings s
JOIN profiles p ON p.profile_id = f.profile_id
LEFT JOIN customer_value_predicted m ON m.profile_id = f.profile_id""")

VIEWS = [EVENT_FACTS, CUSTOMER_VALUE]
