"""Channels and journeys: events, customers, revenue and CSAT per channel; how many channels customers use;
moves from one channel to a different one; and the most common journeys (a customer's channels in time
order, repeats on one channel counted once), step by step for a Sankey diagram."""

from projections.metrics.view import View

JOURNEY_STEPS = 5  # steps of a journey the journey views keep

CHANNEL_SUMMARY = View("channel_summary", "One row per channel: events, customers, share of all events, purchases, "
                       "revenue (report currency), cases opened there and their average CSAT.", """
WITH e AS (
  SELECT channel, count(*) AS events, count(DISTINCT profile_id) AS customers,
         count(*) FILTER (WHERE kind = 'purchase') AS purchases,
         round(coalesce(sum(value ORDER BY ts, event_id) FILTER (WHERE kind = 'purchase'), 0), 2) AS revenue
  FROM event_facts GROUP BY channel),
c AS (SELECT channel, count(*) AS cases, round(avg(csat), 2) AS avg_csat FROM cases GROUP BY channel)
SELECT e.channel, e.events, e.customers, round(e.events / sum(e.events) OVER (), 4) AS event_share,
       e.purchases, e.revenue, coalesce(c.cases, 0) AS cases, c.avg_csat
FROM e LEFT JOIN c USING (channel) ORDER BY e.events DESC, e.channel""")

CHANNEL_USAGE = View("channel_usage", "One row per number of channels used: identified customers who used that many, "
                     "and their share; multi_channel is true from two on.", """
SELECT channels, count(*) AS customers, round(count(*) / sum(count(*)) OVER (), 4) AS share,
       channels >= 2 AS multi_channel
FROM customer_value WHERE identified GROUP BY channels ORDER BY channels""")

_RUNS = """
WITH ordered AS (
  SELECT profile_id, channel, ts, event_id,
         lag(channel) OVER (PARTITION BY profile_id ORDER BY ts, event_id) AS previous,
         lag(ts) OVER (PARTITION BY profile_id ORDER BY ts, event_id) AS previous_ts
  FROM event_facts),
runs AS (
  SELECT profile_id, channel, ts, previous, previous_ts,
         row_number() OVER (PARTITION BY profile_id ORDER BY ts, event_id) AS step
  FROM ordered WHERE previous IS NULL OR previous <> channel)"""
# (step: 1, 2, ... over the runs kept; previous_ts: the time of the event just before a run's first, the last of
# the run before it)

CHANNEL_TRANSITIONS = View("channel_transitions", "One row per move from one channel to a different one (a "
                           "customer's next event on another channel): how often, by how many customers, and the "
                           "median hours between the two (from the last event on the one to the first on the other).", _RUNS + """
SELECT previous AS from_channel, channel AS to_channel, count(*) AS transitions,
       count(DISTINCT profile_id) AS customers,
       round(median(epoch(ts - previous_ts)) / 3600, 2) AS median_hours_between
FROM runs WHERE previous IS NOT NULL
GROUP BY ALL ORDER BY transitions DESC, from_channel, to_channel""")

JOURNEYS = View("journeys", f"One row per journey: the first {JOURNEY_STEPS} channels of a customer's history in "
                "time order (a repeat on one channel counted once), the customers who took it, and their share.",
                _RUNS + f""",
paths AS (
  SELECT profile_id, string_agg(channel, ' > ' ORDER BY step) AS journey, count(*) AS steps
  FROM runs WHERE step <= {JOURNEY_STEPS} GROUP BY profile_id)
SELECT journey, steps, count(*) AS customers, round(count(*) / sum(count(*)) OVER (), 4) AS share
FROM paths GROUP BY journey, steps ORDER BY customers DESC, journey""")

JOURNEY_STEPS_VIEW = View("journey_steps", f"One row per step of the journeys (up to step {JOURNEY_STEPS}) and pair "
                          "of channels: customers whose journey went from one to the other at that step (the links "
                          "of a Sankey diagram; step 1 goes from the first channel to the second).", _RUNS + f"""
SELECT step - 1 AS step, previous AS from_channel, channel AS to_channel, count(*) AS customers
FROM runs WHERE step BETWEEN 2 AND {JOURNEY_STEPS}
GROUP BY ALL ORDER BY step, customers DESC, from_channel, to_channel""")

VIEWS = [CHANNEL_SUMMARY, CHANNEL_USAGE, CHANNEL_TRANSITIONS, JOURNEYS, JOURNEY_STEPS_VIEW]
