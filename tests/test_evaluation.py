from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.evaluation import cluster_metrics, evaluate_frames, label_split, pair_metrics, stable_hash


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


def _fnv_reference(text: str, seed: int) -> int:
    """FNV-1a over code points, one at a time, with the length mixed in last: plain Python."""
    mask = (1 << 64) - 1
    h = 0xCBF29CE484222325 ^ seed
    for ch in text:
        h = ((h ^ ord(ch)) * 0x100000001B3) & mask
    return ((h ^ len(text)) * 0x100000001B3) & mask


def test_the_held_out_split_hash_is_fixed_arithmetic_not_a_library_promise() -> None:
    labels = pl.Series(["a", "entity-17", "名前", "", "x" * 70, None])
    expected = [_fnv_reference(t or "", 5) for t in labels.to_list()]
    assert stable_hash(labels, 5).tolist() == expected
    assert stable_hash(labels, 6).tolist() != expected
    # whole entities stay together, and about the asked share is held out
    many = pl.Series([f"e{i // 3}" for i in range(30_000)])
    held = label_split(many, 0, 0.3)
    assert pl.DataFrame({"e": many, "h": held}).group_by("e").agg(pl.col("h").n_unique())["h"].max() == 1
    assert abs(held.mean() - 0.3) < 0.02
