"""The promise, measured: at each contact on an assisted channel (a person serving the customer), could
they see the customer's history from the other channels?

The views note, as each contact's log entry is folded, the latest event of each other channel that its
profile held then (``CustomerViews.contact_seen``): the state as the decision log had it at that moment,
not today's clusters. The snapshot compares it with the customer's history as today's profiles know it:
for each other channel the customer used before the contact, was their latest event there shown
(``recognised``)? Was an event of another customer shown (``stranger_shown``)?

``contact_recognition`` has a row per contact and other channel (one row with ``other_channel`` NULL for a
contact with nothing before it on another channel). The views sum it per contact, month and channel.
Contacts about one case on several channels while it is open are in ``repeat_contacts``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from projections.customer import canonical
from projections.metrics.view import View

if TYPE_CHECKING:
    from projections.customer import CustomerViews

COLUMNS = {
    "event_id": "VARCHAR", "profile_id": "VARCHAR", "channel": "VARCHAR", "occurred_at": "TIMESTAMPTZ",
    "other_channel": "VARCHAR", "history_event_id": "VARCHAR", "shown_event_id": "VARCHAR",
    "shown_profile_id": "VARCHAR", "recognised": "BOOLEAN", "stranger_shown": "BOOLEAN",
}


def recognition_columns(views: "CustomerViews", chunk: int = 4096) -> Iterable[dict[str, list[Any]]]:
    """The rows of ``contact_recognition`` (``COLUMNS``), a column at a time, about ``chunk`` rows at a time
    (``snapshot.Columns``): per profile (in ID order), its contacts in order (by time, then event ID), and each
    contact's other channels in order."""
    seen = views.contact_seen
    if not seen:
        return
    ev_at, ev_id, ev_channel, ev_profile = views.ev_at, views.ev_id, views.ev_channel, views.ev_profile
    apart = seen.keys().isdisjoint
    out: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    rows = 0
    for pid in sorted(views.profiles):
        prof = views.profiles[pid]
        if apart(prof.events):  # (no contact on an assisted channel)
            continue
        latest: dict[str, int] = {}  # channel -> the customer's latest event there so far
        (event_ids, profile_ids, channels, times, other_channels, history_ids, shown_ids, shown_profiles, recognised,
         stranger) = (out[c].append for c in COLUMNS)
        # (in the order events are decided: what could have been shown at a contact came before it so)
        for j in sorted(prof.events, key=lambda k: canonical(ev_at[k], ev_id[k])):
            shown_of = seen.get(j)
            channel = ev_channel[j]
            if shown_of is not None:
                shown = {ev_channel[k]: k for k in shown_of}
                others = sorted((latest.keys() | shown.keys()) - {channel})
                eid, at = ev_id[j], ev_at[j]
                for c in others or (None,):
                    event_ids(eid)
                    profile_ids(pid)
                    channels(channel)
                    times(at)
                    other_channels(c)
                    h, s = latest.get(c), shown.get(c)
                    shown_pid = ev_profile[s] if s is not None else None
                    history_ids(ev_id[h] if h is not None else None)
                    shown_ids(ev_id[s] if s is not None else None)
                    shown_profiles(shown_pid)
                    recognised((h == s) if h is not None else None)
                    stranger(s is not None and shown_pid != pid)
                rows += len(others) or 1
            latest[channel] = j
        if rows >= chunk:
            yield out
            out = {c: [] for c in COLUMNS}
            rows = 0
    if rows:
        yield out


PROMISE_CONTACTS = View("promise_contacts", "One row per contact on an assisted channel: how many other channels "
                        "the customer had used before it, how many of those the profile showed at that moment "
                        "(their latest event there), and the outcome: recognised (all), partly, not recognised "
                        "(none) or no history (nothing before on another channel); stranger_shown when it showed "
                        "another customer's event.", """
SELECT event_id, profile_id, channel, timezone('UTC', occurred_at) AS ts,
       count(history_event_id) AS channels_before,
       count(*) FILTER (WHERE recognised) AS channels_shown,
       bool_or(stranger_shown) AS stranger_shown,
       CASE WHEN count(history_event_id) = 0 THEN 'no history'
            WHEN count(*) FILTER (WHERE recognised) = count(history_event_id) THEN 'recognised'
            WHEN count(*) FILTER (WHERE recognised) = 0 THEN 'not recognised'
            ELSE 'partly' END AS outcome
FROM contact_recognition GROUP BY event_id, profile_id, channel, occurred_at""")

_RATES = """count(*) AS contacts,
       count(*) FILTER (WHERE outcome <> 'no history') AS with_history,
       count(*) FILTER (WHERE outcome = 'recognised') AS recognised,
       count(*) FILTER (WHERE outcome = 'partly') AS partly,
       count(*) FILTER (WHERE outcome = 'not recognised') AS not_recognised,
       round(count(*) FILTER (WHERE outcome = 'recognised')
             / nullif(count(*) FILTER (WHERE outcome <> 'no history'), 0), 4) AS recognised_rate,
       count(*) FILTER (WHERE stranger_shown) AS stranger_shown"""

PROMISE_BY_MONTH = View("promise_by_month", "One row per month: assisted contacts, those with history on other "
                        "channels, how many were recognised, partly or not, the recognised rate (of those with "
                        "history), and contacts shown another customer's event.", f"""
SELECT date_trunc('month', ts) AS month, {_RATES}
FROM promise_contacts GROUP BY 1 ORDER BY 1""")

PROMISE_BY_CHANNEL = View("promise_by_channel", "The same figures as promise_by_month, per assisted channel.", f"""
SELECT channel, {_RATES}
FROM promise_contacts GROUP BY 1 ORDER BY contacts DESC, channel""")

REPEAT_CONTACTS = View("repeat_contacts", "One row per case with contacts on more than one channel while it was "
                       "open: the customer had to come back elsewhere about the same thing.", """
WITH open_contacts AS (
  SELECT f.case_id, f.channel, f.ts FROM event_facts f JOIN cases c USING (case_id)
  WHERE f.kind IS DISTINCT FROM 'case_close' AND (c.resolved_at IS NULL OR f.ts < c.resolved_at))
SELECT c.case_id, c.profile_id, c.channel AS opened_on, c.opened_at, c.resolved_at,
       count(*) AS contacts_while_open, list(DISTINCT o.channel ORDER BY o.channel) AS channels_while_open
FROM open_contacts o JOIN cases c USING (case_id)
GROUP BY ALL HAVING count(DISTINCT o.channel) > 1 ORDER BY c.opened_at, c.case_id""")

VIEWS = [PROMISE_CONTACTS, PROMISE_BY_MONTH, PROMISE_BY_CHANNEL, REPEAT_CONTACTS]
