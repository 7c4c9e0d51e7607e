"""Churn: each customer's status as of the snapshot (active, at risk, churned), churn by monthly cohort, and
the survival curve of time to last activity (Kaplan-Meier, churn being the event, active customers
censored)."""

from projections.metrics.view import View

CHURN_RISK = View("churn_risk", "One row per identified profile: days inactive as of the snapshot, its own usual gap "
                  "between active days (median), and its status: churned (inactive churn_days or more), at_risk "
                  "(inactive at_risk_gap_ratio times its usual gap, or a modelled probability alive below "
                  "at_risk_probability) or active; why says which rule.", """
WITH days AS (
  SELECT DISTINCT profile_id, CAST(ts AS DATE) AS day FROM event_facts),
gaps AS (
  SELECT profile_id, date_diff('day', lag(day) OVER (PARTITION BY profile_id ORDER BY day), day) AS gap FROM days),
usual AS (
  SELECT profile_id, median(gap) AS usual_gap_days, count(gap) + 1 AS active_days FROM gaps GROUP BY profile_id),
c AS (
  SELECT v.profile_id, v.last_seen, v.lifetime_value, v.probability_alive, u.usual_gap_days, u.active_days,
         date_diff('day', v.last_seen, s.as_of) AS days_inactive, s.churn_days, s.at_risk_gap_ratio,
         s.at_risk_probability
  FROM customer_value v JOIN usual u USING (profile_id) CROSS JOIN metric_settings s
  WHERE v.identified)
SELECT profile_id, last_seen, active_days, usual_gap_days, days_inactive, lifetime_value, probability_alive,
       CASE WHEN days_inactive >= churn_days THEN 'churned'
            WHEN probability_alive < at_risk_probability THEN 'at_risk'
            WHEN usual_gap_days IS NOT NULL AND days_inactive > at_risk_gap_ratio * usual_gap_days THEN 'at_risk'
            ELSE 'active' END AS status,
       CASE WHEN days_inactive >= churn_days THEN 'inactive ' || days_inactive || ' days (churn after ' || churn_days || ')'
            WHEN probability_alive < at_risk_probability
                 THEN 'probability alive ' || round(probability_alive, 2) || ' < ' || at_risk_probability
            WHEN usual_gap_days IS NOT NULL AND days_inactive > at_risk_gap_ratio * usual_gap_days
                 THEN 'inactive ' || days_inactive || ' days, ' || round(days_inactive / usual_gap_days, 1)
                      || ' times the usual gap of ' || usual_gap_days || ' days'
       END AS why
FROM c""")

CHURN_COHORTS = View("churn_cohorts", "One row per monthly cohort (the month of the customer's first event): "
                     "customers, how many have churned as of the snapshot, and the churn rate.", """
SELECT date_trunc('month', v.first_seen) AS cohort_month, count(*) AS customers,
       count(*) FILTER (WHERE r.status = 'churned') AS churned,
       count(*) FILTER (WHERE r.status = 'at_risk') AS at_risk,
       round(count(*) FILTER (WHERE r.status = 'churned') / count(*), 4) AS churn_rate
FROM churn_risk r JOIN customer_value v USING (profile_id)
GROUP BY 1 ORDER BY 1""")

SURVIVAL = View("survival", "The Kaplan-Meier curve of tenure until last activity, in days: at each duration where "
                "customers churned, how many were at risk, how many churned, and the share still active "
                "(surviving); customers not churned are censored at their current tenure.", """
WITH d AS (
  SELECT date_diff('day', v.first_seen, CASE WHEN r.status = 'churned' THEN v.last_seen ELSE s.as_of END) AS days,
         r.status = 'churned' AS churned
  FROM churn_risk r JOIN customer_value v USING (profile_id) CROSS JOIN metric_settings s),
t AS (
  SELECT days, count(*) FILTER (WHERE churned) AS churned, count(*) AS leaving FROM d GROUP BY days),
k AS (
  SELECT days, churned, sum(leaving) OVER (ORDER BY days DESC) AS at_risk FROM t)
SELECT days, at_risk, churned,
       round(product(1 - churned / at_risk) OVER (ORDER BY days), 6) AS surviving
FROM k WHERE churned > 0 ORDER BY days""")

VIEWS = [CHURN_RISK, CHURN_COHORTS, SURVIVAL]
