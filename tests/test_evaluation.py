from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.evaluation import cluster_metrics, evaluate_frames, pair_metrics


def test_cluster_metrics_by_hand() -> None:
    truth = np.array([1, 1, 1, 2, 2, 3])
    predicted = np.array([1, 1, 2, 2, 2, 3])  # record 2 moved into entity 2's cluster
    m = cluster_metrics(predicted, truth)
    # true pairs: 3 + 1 = 4; predicted pairs: 1 + 3 = 4; shared: (0,1) and (3,4) = 2
    assert m["cluster_pairs"]["precision"] == 0.5 and m["cluster_pairs"]["recall"] == 0.5
    # B-cubed precision per record: 1,1,1/3,2/3,2/3,1 ; recall: 2/3,2/3,1/3,1,1,1
    assert m["b_cubed"]["precision"] == pytest.approx((3 + 1 / 3 + 4 / 3) / 6)
    assert m["b_cubed"]["recall"] == pytest.approx((4 / 3 + 1 / 3 + 3) / 6)


def test_pair_metrics_count_blocking_losses() -> None:
    truth = np.array([1, 1, 1, 2, 3])
    left, right = np.array([0, 0, 3]), np.array([1, 2, 4])
    m = pair_metrics(truth, left, right, is_match=np.array([True, False, True]))
    assert m["pairwise"]["precision"] == 0.5 and m["pairwise"]["recall"] == pytest.approx(1 / 3)
    assert m["blocking"]["pair_completeness"] == pytest.approx(2 / 3)
    assert m["blocking"]["reduction_ratio"] == pytest.approx(1 - 3 / 10)


def test_evaluate_frames_joins_by_id() -> None:
    clusters = pl.DataFrame({"id": ["a", "b", "c"], "cluster_id": ["a", "a", "c"]})
    pairs = pl.DataFrame({"id_l": ["a", "b"], "id_r": ["b", "c"], "is_match": [True, False]})
    m = evaluate_frames(clusters["id"], clusters["cluster_id"], pairs, "id", pl.Series(["x", "x", "y"]))
    assert m["cluster_pairs"]["f1"] == 1.0 and m["pairwise"]["f1"] == 1.0
