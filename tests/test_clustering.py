from __future__ import annotations

import numpy as np
import polars as pl

from dedup.clustering import cluster_records


def test_components_over_threshold_with_min_id_and_all_columns() -> None:
    records = pl.DataFrame({"id": ["e", "b", "d", "a", "c"], "x": [1, 2, 3, 4, 5]})
    left, right = np.array([0, 1, 2, 3]), np.array([1, 2, 4, 4])
    probability = np.array([0.9, 0.6, 0.2, 0.95])
    out = cluster_records(records, "id", left, right, probability, threshold=0.5)
    assert out.columns == ["id", "x", "cluster_id", "cluster_size"]
    # e-b-d chained above threshold; a-c joined; d-c below threshold
    assert out["cluster_id"].to_list() == ["b", "b", "b", "a", "a"]
    assert out["cluster_size"].to_list() == [3, 3, 3, 2, 2]
    # ids do not depend on row order
    shuffled = cluster_records(records.reverse(), "id", 4 - left, 4 - right, probability, 0.5)
    assert dict(zip(shuffled["id"], shuffled["cluster_id"], strict=True)) == dict(
        zip(out["id"], out["cluster_id"], strict=True)
    )
