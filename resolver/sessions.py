"""Anonymous activity on shared identifiers, attributed by session.

A shared identifier (a family tablet, a store kiosk, a household landline) identifies nobody, so an
event that carries nothing else would be a profile of its own: eight page views, eight profiles. But a
person who signs in on the family tablet and then browses, or browses and then signs in, is the one
browsing. So an anonymous event on a shared identifier is attributed to the customer of the *identified*
event on that identifier closest to it within ``SESSION_SECONDS`` (by ``occurred_at``):

- an identified event came first: the anonymous event is attributed when it is decided
  (``interaction_recorded.attributed``);
- the anonymous event came first: it waits (at most ``MAX_PENDING`` per identifier, on the first of its
  shared identifiers), and the identified event on it that follows within the session claims it
  (``events_attributed``).

An identifier found shared later (a family tablet that looked like one person's until a second person
signed in on it) had anonymous events that went to the profile it was linked to. When it is flagged, each
of its latest anonymous events (``MAX_PENDING``) is attributed to the identified use of it closest in time
within a session, before or after (``reattribution``: an ``events_attributed`` decision of the flag's
event); the others wait, as above.

Outside a session the event stays a profile of its own: at a kiosk strangers follow one another, and
no rule can say whose the page view between two sign-ins an hour apart was. The attribution names the
customer's identifier, not the profile, so it follows later merges and splits.

The state is four maps kept in ``ResolverState`` and changed only by the fold (``fold_*``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Optional

SESSION_SECONDS = 30 * 60  # the customary web session: 30 minutes
MAX_PENDING = 32  # anonymous events waiting per shared identifier (the oldest are dropped)
RULE = "same_session"


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso[:-1] if iso.endswith("Z") else iso)


def gap_seconds(earlier: str, later: str) -> float:
    """Seconds from ``earlier`` to ``later`` (the engine's fixed-width UTC timestamps)."""
    return (_at(later) - _at(earlier)).total_seconds()


def session_start(occurred_at: str) -> str:
    """The earliest time in the same session as ``occurred_at``, in the same fixed-width form (so that
    comparing the strings compares the times)."""
    try:
        return (_at(occurred_at) - timedelta(seconds=SESSION_SECONDS)).isoformat(timespec="microseconds") + "Z"
    except OverflowError:  # within a session of the year 1
        return ""


def attribution(last: dict[int, tuple[str, str]], shared: Iterable[int], occurred_at: str,
                keys: list[str]) -> Optional[dict[str, Any]]:
    """For an anonymous event at ``occurred_at`` on the ``shared`` identifiers: the identified use of one
    of them that preceded it within a session (the closest; then the identifier's key), or None."""
    best: Optional[tuple[str, str, str]] = None  # (time of the use, shared identifier, customer's identifier)
    start = None
    for idx in shared:
        use = last.get(idx)
        if use is None or use[0] > occurred_at:
            continue
        if start is None:
            start = session_start(occurred_at)
        if use[0] >= start and (best is None or use[0] > best[0] or (use[0] == best[0] and keys[idx] < best[1])):
            best = (use[0], keys[idx], use[1])
    if best is None:
        return None
    at, via, node = best
    return {"node": node, "via": via, "rule": RULE, "seconds": int(gap_seconds(at, occurred_at))}


def claims(pending: dict[int, list[tuple[str, str]]], shared: Iterable[int], occurred_at: str,
           keys: list[str]) -> list[tuple[str, list[str]]]:
    """For an identified event at ``occurred_at`` on the ``shared`` identifiers: per identifier (its key),
    the waiting anonymous events it claims (at most a session earlier, and not later)."""
    out = []
    start = None
    for idx in sorted(shared, key=keys.__getitem__):
        waiting = pending.get(idx)
        if not waiting:
            continue
        if start is None:
            start = session_start(occurred_at)
        mine = [e for at, e in waiting if start <= at <= occurred_at]
        if mine:
            out.append((keys[idx], mine))
    return out


def fold_identified(last: dict[int, tuple[str, str]], shared: Iterable[int], occurred_at: str, anchor: str) -> None:
    """An identified event (its strongest linked identifier ``anchor``) used the ``shared`` identifiers."""
    for idx in shared:
        use = last.get(idx)
        if use is None or use[0] <= occurred_at:
            last[idx] = (occurred_at, anchor)


def fold_waiting(pending: dict[int, list[tuple[str, str]]], shared: list[int], keys: list[str], occurred_at: str,
                 event_id: str) -> None:
    """An anonymous event on the ``shared`` identifiers was left unattributed: it waits for a claim, on
    the first of them (by key; an event rarely carries two shared identifiers)."""
    waiting = pending.setdefault(min(shared, key=keys.__getitem__), [])
    waiting.append((occurred_at, event_id))
    if len(waiting) > MAX_PENDING:
        del waiting[0]


def fold_claimed(pending: dict[int, list[tuple[str, str]]], via: int, events: Iterable[str]) -> None:
    """Claimed events wait no longer."""
    claimed = set(events)
    waiting = [w for w in pending.get(via, ()) if w[1] not in claimed]
    if waiting:
        pending[via] = waiting
    else:
        pending.pop(via, None)


def reattribution(anonymous: Iterable[tuple[str, str]], uses: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """For an identifier just found shared: its anonymous events ``(time, event)`` grouped by the
    customer's identifier of the identified use ``(time, identifier)`` closest to each within a session
    (the earlier use, then the smaller identifier, on a tie), in order of identifier."""
    uses = sorted(uses)
    out: dict[str, list[str]] = {}
    for at, event_id in sorted(anonymous):
        best: Optional[tuple[float, str, str]] = None
        for used_at, node in uses:
            gap = abs(gap_seconds(used_at, at))
            if gap <= SESSION_SECONDS and (best is None or (gap, used_at, node) < best):
                best = (gap, used_at, node)
        if best is not None:
            out.setdefault(best[2], []).append(event_id)
    return sorted(out.items())


def fold_weak(history: dict[int, list[tuple[str, str]]], idx: int, occurred_at: str, what: str) -> None:
    """Keeps the latest ``MAX_PENDING`` anonymous events or identified uses of a weak identifier."""
    kept = history.get(idx)
    if kept is None:
        history[idx] = [(occurred_at, what)]
        return
    kept.append((occurred_at, what))
    if len(kept) > MAX_PENDING:
        del kept[0]


def fold_flagged(st: Any, idx: int) -> None:
    """A weak identifier found shared: its anonymous events wait for a claim, its last use opens a session."""
    waiting = st.weak_anon.pop(idx, None)
    uses = st.weak_uses.pop(idx, None)
    if waiting:
        merged = sorted(st.session_pending.get(idx, []) + waiting)[-MAX_PENDING:]
        st.session_pending[idx] = merged
    if uses:
        last = max(uses)
        if idx not in st.session_last or st.session_last[idx][0] <= last[0]:
            st.session_last[idx] = last


def latest_use(uses: Iterable[tuple[str, str]], occurred_at: str) -> Optional[tuple[str, str]]:
    """The identified use ``(time, identifier)`` closest before ``occurred_at`` within a session, or None
    (on a tie in time, the smaller identifier)."""
    start = session_start(occurred_at)
    best: Optional[tuple[str, str]] = None
    for at, node in uses:
        if start <= at <= occurred_at and (best is None or at > best[0] or (at == best[0] and node < best[1])):
            best = (at, node)
    return best
