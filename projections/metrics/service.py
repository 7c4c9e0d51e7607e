"""Service: one row per support case (events carrying its ``case_id``), and resolution time, CSAT and
first-contact resolution by channel and month.

A case is opened by its first event and resolved by its last closing event (``case_close_types``), unless an
opening event (``case_open_types``) came after that (later in time: not one at the same instant), which reopened
it (as the profile's open cases read it). Its contacts are its events other than closing ones, up to its
resolution (a survey answered after it is no contact); it was resolved at first contact when it was resolved
after exactly one contact. Its CSAT is the last score it got."""

from projections.metrics.view import View

CASES = View("cases", "One row per support case: its customer (the profile of its first event; profiles > 1 when "
             "its events are in several profiles), opened and resolved times, resolution hours, contacts (up to its "
             "resolution), the "
             "channels it touched, its CSAT, and whether it was resolved at first contact.", """
WITH c AS (
  SELECT case_id,
         arg_min(profile_id, (ts, event_id)) AS profile_id,
         count(DISTINCT profile_id) AS profiles,
         arg_min(channel, (ts, event_id)) AS channel,
         min(ts) AS opened_at,
         max(ts) FILTER (WHERE kind = 'case_close') AS closed_at,
         max(ts) FILTER (WHERE kind = 'case_open') AS last_open,
         list(DISTINCT channel ORDER BY channel) AS channels,
         arg_max(csat, (ts, event_id)) FILTER (WHERE csat IS NOT NULL) AS csat
  FROM event_facts WHERE case_id IS NOT NULL GROUP BY case_id),
r AS (
  SELECT *, CASE WHEN last_open IS NULL OR closed_at >= last_open THEN closed_at END AS resolved_at FROM c),
k AS (
  SELECT f.case_id, count(*) FILTER (WHERE f.kind IS DISTINCT FROM 'case_close'
                                     AND (r.resolved_at IS NULL OR f.ts <= r.resolved_at)) AS contacts
  FROM event_facts f JOIN r USING (case_id) GROUP BY f.case_id)
SELECT case_id, profile_id, profiles, channel, opened_at, resolved_at,
       resolved_at IS NOT NULL AS resolved,
       round(epoch(resolved_at - opened_at) / 3600, 2) AS resolution_hours,
       contacts, channels, len(channels) AS channel_count, csat,
       resolved_at IS NOT NULL AND contacts = 1 AS first_contact_resolution
FROM r JOIN k USING (case_id)""")

# the figures of a group of cases (the two views below)
_FIGURES = """count(*) AS cases, count(*) FILTER (WHERE resolved) AS resolved,
       round(avg(resolution_hours ORDER BY case_id), 2) AS avg_resolution_hours,
       round(median(resolution_hours), 2) AS median_resolution_hours,
       round(avg(csat), 2) AS avg_csat, count(csat) AS csat_responses,
       round(count(*) FILTER (WHERE first_contact_resolution) / nullif(count(*) FILTER (WHERE resolved), 0), 4)
           AS first_contact_resolution_rate"""

SERVICE_BY_CHANNEL_MONTH = View("service_by_channel_month", "One row per channel a case was opened on and month "
                                "it was opened: cases, resolved, average and median resolution hours, average "
                                "CSAT, and the first-contact resolution rate (of resolved cases).", f"""
SELECT channel, date_trunc('month', opened_at) AS month, {_FIGURES}
FROM cases GROUP BY ALL ORDER BY month, channel""")

SERVICE_BY_CHANNEL = View("service_by_channel", "The same figures as service_by_channel_month, over all months.", f"""
SELECT channel, {_FIGURES}
FROM cases GROUP BY ALL ORDER BY cases DESC, channel""")

VIEWS = [CASES, SERVICE_BY_CHANNEL_MONTH, SERVICE_BY_CHANNEL]
