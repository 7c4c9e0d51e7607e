"""A person's verdict on a possible match: linked unless a guard forbids it now."""

from __future__ import annotations

from typing import Optional

from resolver import decisions
from resolver.context import Context
from resolver.errors import ReviewError
from resolver.fuzzy import join


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
        if pa is not None and pa == pb:
            # one customer by other evidence since the pair was queued: a ban could not hold them apart
            verdict.update(outcome="already_linked", reason=f"they are one profile ({pa}) by other evidence "
                                                             f"now: `idres unmerge` separates them")
        else:
            verdict["outcome"] = "rejected"
    elif pa is None or pb is None:
        verdict.update(outcome="blocked", reason="one side's identifier has since been found shared")
    elif pa == pb:
        verdict["outcome"] = "already_linked"
    else:
        reason = join(ctx, event_id, decided_at, a, b, "review_accepted", review_id=review_id)
        if reason is not None:
            verdict.update(outcome="blocked", reason=reason)
        else:
            verdict["outcome"] = "linked"
    ctx.emit(verdict)
