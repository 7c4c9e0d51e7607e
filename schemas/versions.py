"""The version of the decision log's entries, a plain number: what only reads or writes the log does not build
the pydantic models (``schemas.decisions``) to learn it."""

# 2: each log entry carries ``v``; phone_region_learned; attribution rule same_name; merge evidence
# 3: model_estimated; probable_link rule model_rescored; interaction_recorded digest
# 4: profile_renamed; profiles named by their earliest event (merge survivor and split parts so named)
# 5: connection_banned, ban_lifted (unmerges and connection bans); a rejected review bans its pair
# 6: customer_erased; entries sealed (``k``); evidence and reasons name no dates of birth or names
# 7: log_restate_begun, log_restated, log_restate_abandoned (late events: the log restated from their place)
# 8: an identifier's value as written (interaction_recorded ``read``) sealed under the identifier's own key
# 9: each value an event could not use (``ignored``) sealed under a key of its own; customer_erased ``unusable``
DECISION_SCHEMA_VERSION = 9
