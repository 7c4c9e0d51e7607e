"""Households with their combined value, and the proactive lists a team acts on: valuable customers at
risk, open cases past their age, customers who contacted again on another channel while a case was open."""

from projections.metrics.view import View

HOUSEHOLD_VALUE = View("household_value", "One row per household: its members (profiles), their purchases and combined "
                       "lifetime value, and the household's latest activity.", """
SELECT h.household_id, count(*) AS members, list(h.profile_id ORDER BY h.profile_id) AS profile_ids,
       any_value(h.via) AS via, sum(v.purchases) AS purchases, round(sum(v.lifetime_value ORDER BY v.profile_id), 2) AS lifetime_value,
       max(v.last_seen) AS last_seen
FROM households h JOIN customer_value v USING (profile_id)
GROUP BY h.household_id ORDER BY lifetime_value DESC, h.household_id""")

VALUABLE_AT_RISK = View("valuable_at_risk", "Customers at risk (churn_risk) whose lifetime value is in the top fifth "
                        "of buyers', most valuable first, with why they are at risk and how to reach them.", """
WITH cut AS (SELECT quantile_cont(lifetime_value, 0.8) AS v FROM customer_value WHERE purchases > 0 AND identified)
SELECT r.profile_id, r.lifetime_value, r.days_inactive, r.usual_gap_days, r.probability_alive, r.why,
       p.first_name, p.last_name, p.emails, p.phones
FROM churn_risk r CROSS JOIN cut JOIN profiles p USING (profile_id)
WHERE r.status = 'at_risk' AND r.lifetime_value >= cut.v AND r.lifetime_value > 0
ORDER BY r.lifetime_value DESC, r.profile_id""")

STALE_OPEN_CASES = View("stale_open_cases", "Open cases older than stale_case_days as of the snapshot, oldest first.", """
SELECT c.case_id, c.profile_id, c.channel, c.opened_at, date_diff('day', c.opened_at, s.as_of) AS age_days,
       c.contacts, c.channels, p.first_name, p.last_name, p.emails, p.phones
FROM cases c CROSS JOIN metric_settings s LEFT JOIN profiles p USING (profile_id)
WHERE NOT c.resolved AND date_diff('day', c.opened_at, s.as_of) > s.stale_case_days
ORDER BY c.opened_at, c.case_id""")

RECONTACTED_WHILE_OPEN = View("recontacted_while_open", "One row per contact on an assisted channel other than the "
                              "case's own (not a purchase or refund), by the case's customer, while the case was open: "
                              "who came back elsewhere before their case was closed.", """
SELECT c.case_id, c.profile_id, c.channel AS case_channel, c.opened_at, c.resolved_at,
       f.event_id, f.channel, f.event_type, f.ts
FROM cases c JOIN event_facts f ON f.profile_id = c.profile_id
JOIN assisted_channels a ON a.channel = f.channel
WHERE f.channel <> c.channel AND f.ts > c.opened_at AND (c.resolved_at IS NULL OR f.ts < c.resolved_at)
  AND coalesce(f.kind, '') NOT IN ('purchase', 'refund')
ORDER BY c.opened_at, c.case_id, f.ts, f.event_id""")

VIEWS = [HOUSEHOLD_VALUE, VALUABLE_AT_RISK, STALE_OPEN_CASES, RECONTACTED_WHILE_OPEN]
