"""Pairwise clustering metrics: how well a predicted clustering of events matches the ground truth.

Pure functions, no I/O (ground-truth files are read by ``streams.inputs.read_truth_file``). The scores are computed from contingency counts,
never by enumerating pairs, so they run in O(n) time: a cluster of ``k`` items holds ``C(k, 2)``
pairs, and the pairs two clusterings agree on are the ``C(k, 2)`` of every non-empty intersection of
a predicted cluster with a true cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

__all__ = ["pairwise_scores"]

_MISSING = object()


def _pairs(counts: Iterable[int]) -> int:
    """Sum of C(k, 2) over cluster sizes k."""
    return sum(k * (k - 1) for k in counts) // 2


def pairwise_scores(predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> dict:
    """Pairwise precision, recall and F1 of ``predicted`` against ``truth`` (item -> cluster label).

    The items scored are exactly the keys of ``truth``. An item missing from ``predicted`` counts as
    a singleton predicted cluster of its own; predicted items absent from ``truth`` are ignored.
    Labels are compared only for equality inside each mapping; the two label spaces are independent.

    A pair is an unordered pair of distinct items. ``true_positive_pairs`` are pairs in the same
    predicted cluster and the same true cluster; precision = TP / predicted_pairs and
    recall = TP / true_pairs, F1 their harmonic mean. By convention precision is 1.0 when there are
    no predicted pairs (nothing was wrongly merged) and recall is 1.0 when there are no true pairs
    (nothing could be missed); F1 is 0.0 when precision + recall is 0.

    Returns ``precision``, ``recall``, ``f1`` (floats), ``true_positive_pairs``, ``predicted_pairs``,
    ``true_pairs``, ``items``, ``predicted_clusters`` and ``true_clusters`` (ints; clusters are
    counted over the scored items, a missing item being one predicted cluster).
    """
    true_labels = list(truth.values())
    get = predicted.get
    predicted_labels = [get(item, _MISSING) for item in truth]

    true_sizes = Counter(true_labels)
    predicted_sizes = Counter(predicted_labels)
    missing = predicted_sizes.pop(_MISSING, 0)
    cells = Counter(zip(predicted_labels, true_labels))

    true_pairs = _pairs(true_sizes.values())
    predicted_pairs = _pairs(predicted_sizes.values())
    if missing:
        tp = _pairs(k for (p, _t), k in cells.items() if p is not _MISSING)
    else:
        tp = _pairs(cells.values())

    precision = tp / predicted_pairs if predicted_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positive_pairs": tp,
        "predicted_pairs": predicted_pairs,
        "true_pairs": true_pairs,
        "items": len(true_labels),
        "predicted_clusters": len(predicted_sizes) + missing,
        "true_clusters": len(true_sizes),
    }
