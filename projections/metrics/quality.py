"""Identity quality: how the resolution stands (profiles, merges, splits, shared identifiers, the review
backlog), shared identifiers by reason, the distribution of cluster sizes, and the match-weight histogram of
links made and pairs sent to review."""

from projections.metrics.view import View

IDENTITY_QUALITY = View("identity_quality", "One row per figure of the resolution: its name and value.", """
SELECT * FROM (VALUES
  ('profiles', (SELECT count(*) FROM profiles)),
  ('identified profiles', (SELECT count(*) FROM profiles WHERE identifier_count > 0)),
  ('profiles with one event', (SELECT count(*) FROM profiles WHERE event_count = 1)),
  ('events', (SELECT count(*) FROM events)),
  ('identifiers', (SELECT count(*) FROM identifiers)),
  ('shared identifiers', (SELECT count(*) FROM identifiers WHERE status = 'shared')),
  ('merges', (SELECT count(*) FROM merges)),
  ('merges taken apart since', (SELECT count(*) FROM merges WHERE apart_now)),
  ('splits', (SELECT count(DISTINCT event_id || ':' || profile_id) FROM splits)),
  ('links on attribute evidence', (SELECT count(*) FROM links WHERE rule <> 'seen_together')),
  ('reviews pending', (SELECT count(*) FROM review_queue WHERE status = 'pending')),
  ('reviews decided by a person', (SELECT count(*) FROM review_queue WHERE decided_at IS NOT NULL)),
  ('reviews moot or linked by the model', (SELECT count(*) FROM review_queue
                                          WHERE status <> 'pending' AND decided_at IS NULL)),
  ('households', (SELECT count(DISTINCT household_id) FROM households)),
  ('rejected records', (SELECT count(*) FROM rejected_events))
) AS t(figure, value)""")

SHARED_BY_REASON = View("shared_identifiers_by_reason", "One row per identifier type and reason it was found shared "
                        "(placeholder, used by several people, ...): how many identifiers.", """
SELECT id_type, shared_reason AS reason, count(*) AS identifiers
FROM identifiers WHERE status = 'shared' GROUP BY ALL ORDER BY identifiers DESC, id_type, reason""")

CLUSTER_SIZES = View("cluster_sizes", "One row per cluster size (identifiers per identified profile, 10 and more "
                     "together): profiles, and the events they hold.", """
SELECT CASE WHEN identifier_count >= 10 THEN '10+' ELSE CAST(identifier_count AS VARCHAR) END AS identifiers,
       count(*) AS profiles, sum(event_count) AS events
FROM profiles WHERE identifier_count > 0 GROUP BY 1 ORDER BY min(identifier_count)""")

MATCH_WEIGHTS = View("match_weights", "One row per unit of match weight (log2 Bayes factor): links made on attribute "
                     "evidence and pairs sent to review, by their outcome.", """
WITH w AS (
  SELECT floor(weight) AS bin, 'linked' AS outcome FROM links WHERE weight IS NOT NULL
  UNION ALL
  SELECT floor(weight), 'review ' || status FROM review_queue WHERE weight IS NOT NULL)
SELECT CAST(bin AS INTEGER) AS weight_from, CAST(bin AS INTEGER) + 1 AS weight_to, outcome, count(*) AS pairs
FROM w GROUP BY ALL ORDER BY weight_from, outcome""")

VIEWS = [IDENTITY_QUALITY, SHARED_BY_REASON, CLUSTER_SIZES, MATCH_WEIGHTS]
