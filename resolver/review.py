"""A person's verdict on a possible match: linked unless a guard forbids it now."""

from __future__ import annotations

from typing import Any, Optional

from resolver import decisions
from resolver.context import Context
from resolver.errors import ReviewError
from resolver.guards import Acc, fuzzy_conflict
from resolver.state import Profile


def decide_review(ctx: Context, review_id: str, accept: bool, reviewer: str, decided_at: str,
                  note: Optional[str] = None) -> None:
    """Emits the verdict (and the link it makes). An accepted pair is linked unless a guard forbids it
    now (then the outcome is ``blocked`` and says why). Raises ``ReviewError`` for a review that is
    unknown or already decided."""
    st = ctx.state
    pair = st.reviews.get(review_id)
    if pair is None:
        raise ReviewError(f"no pending review {review_id!r}: it is unknown or already decided "
                          "(list the queue with `idres review`)")
    a, b = pair
    pa, pb = st.node_profile[a], st.node_profile[b]
    event_id = f"review:{review_id}"
    verdict: decisions.ReviewDecided = {"type": "review_decided", "review_id": review_id,
                               "decision": "accept" if accept else "reject", "reviewer": reviewer,
                               "decided_at": decided_at}
    if note:
        verdict["note"] = note
    if not accept:
        verdict["outcome"] = "rejected"
    elif pa is None or pb is None:
        verdict.update(outcome="blocked", reason="one side's identifier has since been found shared")
    elif pa == pb:
        verdict["outcome"] = "already_linked"
    else:
        first, second = st.profiles[pa], st.profiles[pb]
        acc = Acc(st)
        acc.add(first.counts, first.traits)
        acc.profiles.append(first)
        reason = fuzzy_conflict(ctx.config, acc, second)
        if reason is not None:
            verdict.update(outcome="blocked", reason=reason)
        else:
            verdict["outcome"] = "linked"
            ctx.emit(decisions.probable_link(event_id, st.node_keys[a], st.node_keys[b], pb, "review_accepted",
                                             review_id=review_id))
            ordered = sorted((first, second), key=Profile.age_key)
            ctx.emit(decisions.profiles_merged(ordered[0].id, [ordered[1].id], event_id, decided_at,
                                               [st.node_keys[a], st.node_keys[b]], "review_accepted"))
    ctx.emit(verdict)
