from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.clustering import cluster_labels, cluster_records, density_split, rejoined, supported
from dedup.config import ClusteringConfig


def test_components_over_threshold_with_min_id_and_all_columns() -> None:
    records = pl.DataFrame({"id": ["e", "b", "d", "a", "c"], "x": [1, 2, 3, 4, 5]})
    left, right = np.array([0, 1, 2, 3]), np.array([1, 2, 4, 4])
    probability = np.array([0.9, 0.6, 0.2, 0.95])
    out = cluster_records(records, "id", left, right, probability, 0.5, ClusteringConfig(method="components"))
    assert out.columns == ["id", "x", "cluster_id", "cluster_size", "cluster_confidence"]
    # e-b-d chained above threshold; a-c joined; d-c below threshold
    assert out["cluster_id"].to_list() == ["b", "b", "b", "a", "a"]
    assert out["cluster_size"].to_list() == [3, 3, 3, 2, 2]
    # mean probability to the other members over scored pairs: e 0.9, b (0.9+0.6)/2, d 0.6; a, c 0.95
    assert out["cluster_confidence"].to_list() == pytest.approx([0.9, 0.75, 0.6, 0.95, 0.95])
    alone = cluster_records(records, "id", left, right, np.zeros(4), 0.5)
    assert alone["cluster_confidence"].null_count() + alone["cluster_confidence"].is_nan().sum() == 5
    # ids do not depend on row order
    components = ClusteringConfig(method="components")
    shuffled = cluster_records(records.reverse(), "id", 4 - left, 4 - right, probability, 0.5, components)
    assert dict(zip(shuffled["id"], shuffled["cluster_id"], strict=True)) == dict(
        zip(out["id"], out["cluster_id"], strict=True)
    )


def _chain() -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Two tight entities {a1, a2, a3} and {b1, b2, b3}, joined by one borderline edge a3~b1."""
    records = pl.DataFrame({"id": ["a1", "a2", "a3", "b1", "b2", "b3"]})
    left = np.array([0, 0, 1, 3, 3, 4, 2])
    right = np.array([1, 2, 2, 4, 5, 5, 3])
    probability = np.array([0.999, 0.998, 0.999, 0.999, 0.997, 0.999, 0.7])
    return records, left, right, probability


def test_components_chain_two_entities_together() -> None:
    records, left, right, probability = _chain()
    out = cluster_records(records, "id", left, right, probability, 0.5, ClusteringConfig(method="components"))
    assert out["cluster_id"].unique().to_list() == ["a1"]


def test_density_split_cuts_the_weak_bridge() -> None:
    records, left, right, probability = _chain()
    out = cluster_records(records, "id", left, right, probability, 0.5, ClusteringConfig(method="density"))
    assert out["cluster_id"].to_list() == ["a1", "a1", "a1", "b1", "b1", "b1"]
    assert out["cluster_size"].to_list() == [3] * 6


def test_density_split_keeps_dense_clusters_and_strong_chains() -> None:
    records, left, right, probability = _chain()
    # a bridge the model is sure of (>= the top rung of the ladder) is kept
    strong = probability.copy()
    strong[-1] = 0.995
    out = cluster_records(records, "id", left, right, strong, 0.5)
    assert out["cluster_size"].to_list() == [6] * 6
    # a complete graph is never split, whatever its probabilities above threshold
    full_l, full_r = np.triu_indices(4, k=1)
    labels, _ = density_split(4, full_l, full_r, np.full(len(full_l), 0.6), 0.5, 0.6)
    assert len(set(labels)) == 1


def test_a_non_match_answer_parts_its_cluster_at_the_weakest_links() -> None:
    # a~b 0.95, b~c 0.7, c~d 0.97, b~d 0.75: one component; a person says a and d differ
    left, right = np.array([0, 1, 2, 1]), np.array([1, 2, 3, 3])
    probability = np.array([0.95, 0.7, 0.97, 0.75])
    components = ClusteringConfig(method="components")
    assert len(set(cluster_labels(4, left, right, probability, 0.5, components))) == 1
    apart = (np.array([0]), np.array([3]))
    labels = cluster_labels(4, left, right, probability, 0.5, components, apart)
    # cutting b~c alone leaves b~d: both weak links go, the strong ones stay
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert sorted(set(labels.tolist())) == [0, 1]
    # pairs already in different clusters, or no answers, change nothing
    assert np.array_equal(
        cluster_labels(4, left, right, probability, 0.9, components, apart),
        cluster_labels(4, left, right, probability, 0.9, components),
    )
    # only edges scored 1.0 (answered matches, identical records) join them: the answers contradict, nothing is cut
    sure = np.ones(4)
    assert len(set(cluster_labels(4, left, right, sure, 0.5, components, apart))) == 1


def test_a_non_match_answer_outweighs_a_bridge_the_model_is_sure_of() -> None:
    records, left, right, probability = _chain()
    strong = probability.copy()
    strong[-1] = 0.995  # density clustering keeps this bridge (see above)
    settings = ClusteringConfig()
    assert len(set(cluster_labels(6, left, right, strong, 0.5, settings))) == 1
    labels = cluster_labels(6, left, right, strong, 0.5, settings, (np.array([5]), np.array([0])))  # b3 is not a1
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_fragments_the_cuts_part_are_joined_again_where_they_match_on_average() -> None:
    # {0, 2} and {1, 3, 4, 5}: five of the eight pairs across are scored 0.85-0.95, but their
    # edges share few neighbours and the support rule cuts them; over all eight pairs across
    # the two fragments match on average (4.55 / 8 = 0.57), so they are one cluster again
    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 4], [1, 5], [2, 3], [2, 5], [3, 4], [3, 5]])
    probability = np.array([0.85, 0.999, 0.95, 0.95, 0.6, 0.999, 0.85, 0.95, 0.999, 0.999])
    left, right = pairs[:, 0], pairs[:, 1]
    kept = supported(6, left, right, probability, 0.5, 0.99)
    assert not kept[[0, 2, 3, 6, 7]].all()  # some edges across are cut
    labels = cluster_labels(6, left, right, probability, 0.5, ClusteringConfig())
    assert len(set(labels.tolist())) == 1
    # weaker across (0.6 each: a mean of 0.375), they stay two clusters
    weaker = probability.copy()
    weaker[[0, 2, 3, 6, 7]] = 0.6
    assert cluster_labels(6, left, right, weaker, 0.5, ClusteringConfig()).tolist() == [0, 1, 0, 1, 1, 1]
    # a person's answer that two records differ still parts what the average joined
    apart = (np.array([0]), np.array([1]))
    assert len(set(cluster_labels(6, left, right, probability, 0.5, ClusteringConfig(), apart).tolist())) == 2


def test_rejoining_takes_the_best_match_first_and_counts_every_pair() -> None:
    # a~b 0.9, b~c 0.7, everything parted: a and b join first; then {a, b} against c averages
    # 0.7 / 2 = 0.35 over its two pairs (a~c was never scored above the threshold): c stays alone
    left, right, probability = np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.7])
    labels, keep = rejoined(np.arange(3), left, right, probability, np.zeros(2, dtype=bool), 0.5)
    assert labels.tolist() == [0, 0, 1] and keep.tolist() == [True, False]
    # c~a at 0.4 is below the threshold: it does not count, and the result is the same
    labels, _ = rejoined(
        np.arange(3), np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.9, 0.7, 0.4]), np.zeros(3, bool), 0.5
    )
    assert labels.tolist() == [0, 0, 1]
    # with a~c at 0.6 too, {a, b} and c average (0.7 + 0.6) / 2 = 0.65: one cluster
    labels, keep = rejoined(
        np.arange(3), np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0.9, 0.7, 0.6]), np.zeros(3, bool), 0.5
    )
    assert labels.tolist() == [0, 0, 0] and keep.all()
