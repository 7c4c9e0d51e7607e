"""Pairwise clustering metrics against brute-force pair enumeration."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.measures import pairwise_scores
from resolver.errors import IdresError
from streams.synthetic import read_truth_csv


def brute_force(predicted, truth):
    items = list(truth)
    pred = {item: predicted.get(item, ("singleton", item)) for item in items}
    tp = pp = tt = 0
    for a, b in combinations(items, 2):
        same_pred = pred[a] == pred[b]
        same_true = truth[a] == truth[b]
        pp += same_pred
        tt += same_true
        tp += same_pred and same_true
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positive_pairs": tp,
        "predicted_pairs": pp,
        "true_pairs": tt,
        "items": len(items),
        "predicted_clusters": len(set(pred.values())),
        "true_clusters": len(set(truth.values())),
    }


def assert_same(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got[key] == value, key


items = st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=3), unique=True, max_size=40)


@st.composite
def clusterings(draw):
    keys = draw(items)
    truth = {k: draw(st.integers(0, 6)) for k in keys}
    predicted = {}
    for k in keys:
        if draw(st.booleans()) or draw(st.booleans()):
            predicted[k] = draw(st.sampled_from(["p0", "p1", "p2", "p3", 4, 5]))
    # Predicted items that are not in the truth are ignored.
    for extra in draw(st.lists(st.text(alphabet="xyz", min_size=4, max_size=5), max_size=3)):
        predicted[extra] = "p0"
    return predicted, truth


@settings(max_examples=300, deadline=None)
@given(clusterings())
def test_matches_brute_force(case):
    predicted, truth = case
    assert_same(pairwise_scores(predicted, truth), brute_force(predicted, truth))


@settings(max_examples=100, deadline=None)
@given(clusterings())
def test_symmetry_swaps_precision_and_recall(case):
    predicted, truth = case
    full = {k: predicted.get(k, ("solo", k)) for k in truth}
    forward = pairwise_scores(full, truth)
    backward = pairwise_scores(truth, full)
    assert forward["precision"] == pytest.approx(backward["recall"])
    assert forward["recall"] == pytest.approx(backward["precision"])
    assert forward["true_positive_pairs"] == backward["true_positive_pairs"]


def test_identical_clusterings_score_one():
    truth = {f"e{i}": f"p{i % 7}" for i in range(100)}
    predicted = {k: "cluster-" + v for k, v in truth.items()}
    scores = pairwise_scores(predicted, truth)
    assert scores["precision"] == scores["recall"] == scores["f1"] == 1.0
    assert scores["predicted_clusters"] == scores["true_clusters"] == 7


def test_all_singletons():
    truth = {f"e{i}": f"p{i // 2}" for i in range(10)}  # 5 true pairs
    predicted = {f"e{i}": i for i in range(10)}
    scores = pairwise_scores(predicted, truth)
    assert scores["predicted_pairs"] == 0
    assert scores["true_pairs"] == 5
    assert scores["precision"] == 1.0  # nothing wrongly merged
    assert scores["recall"] == 0.0
    assert scores["f1"] == 0.0
    assert scores["predicted_clusters"] == 10


def test_one_predicted_cluster():
    truth = {f"e{i}": f"p{i // 2}" for i in range(10)}
    predicted = {f"e{i}": "everything" for i in range(10)}
    scores = pairwise_scores(predicted, truth)
    assert scores["predicted_pairs"] == 45
    assert scores["true_positive_pairs"] == 5
    assert scores["precision"] == pytest.approx(5 / 45)
    assert scores["recall"] == 1.0


def test_truth_without_pairs_has_recall_one():
    truth = {"a": 1, "b": 2, "c": 3}
    scores = pairwise_scores({"a": "x", "b": "x", "c": "y"}, truth)
    assert scores["true_pairs"] == 0
    assert scores["recall"] == 1.0
    assert scores["precision"] == 0.0
    assert scores["f1"] == 0.0


def test_items_missing_from_predicted_are_singletons():
    truth = {"a": 1, "b": 1, "c": 1, "d": 2}
    predicted = {"a": "x", "b": "x"}  # c and d missing
    scores = pairwise_scores(predicted, truth)
    assert scores["items"] == 4
    assert scores["predicted_pairs"] == 1
    assert scores["true_positive_pairs"] == 1
    assert scores["true_pairs"] == 3
    assert scores["predicted_clusters"] == 3  # {a, b}, {c}, {d}
    assert scores["recall"] == pytest.approx(1 / 3)


def test_predicted_label_none_is_a_label():
    truth = {"a": 1, "b": 1}
    scores = pairwise_scores({"a": None, "b": None}, truth)
    assert scores["true_positive_pairs"] == 1


def test_empty():
    scores = pairwise_scores({}, {})
    assert scores["items"] == 0
    assert scores["precision"] == scores["recall"] == scores["f1"] == 1.0


def test_large_input_is_linear():
    import time

    n = 200_000
    truth = {f"evt-{i:09d}": f"person-{i // 10}" for i in range(n)}
    predicted = {k: f"c{i // 20}" for i, k in enumerate(truth)}
    start = time.perf_counter()
    scores = pairwise_scores(predicted, truth)
    assert time.perf_counter() - start < 3.0
    assert scores["true_pairs"] == (n // 10) * 45
    assert scores["predicted_pairs"] == (n // 20) * 190
    assert scores["true_positive_pairs"] == scores["true_pairs"]


def test_read_truth_csv(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("event_id,person_id\nevt-1,p1\nevt-2,p1\n\nevt-3,p2\nevt-1,p1\n", encoding="utf-8")
    assert read_truth_csv(path) == {"evt-1": "p1", "evt-2": "p1", "evt-3": "p2"}
    headerless = tmp_path / "plain.csv"
    headerless.write_text("evt-9,p9\n", encoding="utf-8")
    with pytest.raises(IdresError, match="header"):  # one reader for every truth file: the header names the columns
        read_truth_csv(headerless)


def test_read_truth_csv_conflict(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("event_id,person_id\nevt-1,p1\nevt-1,p2\n", encoding="utf-8")
    with pytest.raises(IdresError, match="evt-1"):
        read_truth_csv(path)
