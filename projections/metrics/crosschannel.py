"""Cross-channel against single-channel customers, side by side; cost to serve with the contact costs the
user configures; and the return on the omnichannel programme when its cost is configured.

A customer's *channels* are the channels of their events (a page view counts as a web visit). The
comparison is a description of this business's customers, not a proof that channels cause value: customers
who buy more also have more reasons to use more channels."""

from projections.metrics.view import View

COST_TO_SERVE = View("cost_to_serve", "One row per identified profile: its contacts on channels with a configured "
                     "cost, and their total cost (NULL when no contact cost is configured).", """
SELECT v.profile_id, count(k.cost) AS costed_contacts,
       CASE WHEN (SELECT count(*) FROM contact_costs) > 0 THEN round(coalesce(sum(k.cost ORDER BY k.cost), 0), 2) END
           AS cost_to_serve  -- (summed smallest first: in whatever order the rows come, the same total)
FROM customer_value v JOIN event_facts f USING (profile_id) LEFT JOIN contact_costs k ON k.channel = f.channel
WHERE v.identified GROUP BY v.profile_id""")

SEGMENT_COMPARISON = View("segment_comparison", "Two rows, cross-channel (two or more channels) and single-channel "
                          "identified customers: customers, buyers, purchases per buyer and per buyer-year (all their "
                          "purchases over all their years since first seen), average "
                          "order value, average lifetime value, churn rate, and average cost to serve.", """
SELECT CASE WHEN v.channels >= 2 THEN 'cross-channel' ELSE 'single-channel' END AS segment,
       count(*) AS customers, count(*) FILTER (WHERE v.purchases > 0) AS buyers,
       round(avg(v.purchases) FILTER (WHERE v.purchases > 0), 3) AS purchases_per_buyer,
       round(sum(v.purchases) FILTER (WHERE v.purchases > 0) * 365.0
             / nullif(sum(greatest(v.tenure_days, 1)) FILTER (WHERE v.purchases > 0), 0), 3) AS purchases_per_buyer_year,
       round(sum(v.gross_revenue ORDER BY v.profile_id) / nullif(sum(v.valued_purchases), 0), 2)
           AS average_order_value,  -- (as customer_value's: over the purchases whose value is known)
       round(avg(v.lifetime_value ORDER BY v.profile_id), 2) AS avg_lifetime_value,
       round(avg(v.lifetime_value ORDER BY v.profile_id) FILTER (WHERE v.purchases > 0), 2) AS avg_lifetime_value_per_buyer,
       round(count(*) FILTER (WHERE r.status = 'churned') / count(*), 4) AS churn_rate,
       round(avg(c.cost_to_serve ORDER BY v.profile_id), 2) AS avg_cost_to_serve
FROM customer_value v JOIN churn_risk r USING (profile_id) JOIN cost_to_serve c USING (profile_id)
WHERE v.identified GROUP BY 1 ORDER BY 1""")

PROGRAMME_RETURN = View("programme_return", "One row: what cross-channel customers are worth beyond single-channel "
                        "ones (the difference in average lifetime value times their number), the contact costs, the "
                        "programme's cost, and the return as value over cost; status says what is missing when a "
                        "figure cannot be given.", """
WITH s AS MATERIALIZED (SELECT * FROM segment_comparison),  -- (computed once: it reads every event)
x AS (SELECT * FROM s WHERE segment = 'cross-channel'),
o AS (SELECT * FROM s WHERE segment = 'single-channel'),
figures AS (
  SELECT (SELECT customers FROM x) AS cross_channel_customers,
         (SELECT avg_lifetime_value FROM x) AS cross_channel_avg_value,
         (SELECT avg_lifetime_value FROM o) AS single_channel_avg_value,
         (SELECT round(sum(cost_to_serve ORDER BY profile_id), 2) FROM cost_to_serve) AS contact_costs,
         (SELECT programme_cost FROM metric_settings) AS programme_cost),
base AS (
  SELECT cross_channel_customers, cross_channel_avg_value, single_channel_avg_value,
         round((cross_channel_avg_value - single_channel_avg_value) * cross_channel_customers, 2)
             AS value_beyond_single_channel, contact_costs, programme_cost
  FROM figures)
SELECT *,
       round(value_beyond_single_channel / nullif(programme_cost, 0), 4) AS value_over_cost,
       CASE WHEN programme_cost IS NULL AND contact_costs IS NULL
                 THEN 'no costs configured: set programme_cost and contact_costs in [projection]'
            WHEN programme_cost IS NULL THEN 'no programme cost configured: set programme_cost in [projection]'
            WHEN cross_channel_customers IS NULL OR single_channel_avg_value IS NULL
                 THEN 'both segments are needed to compare them'
            ELSE 'ok' END AS status
FROM base""")

VIEWS = [COST_TO_SERVE, SEGMENT_COMPARISON, PROGRAMME_RETURN]
