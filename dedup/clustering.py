"""Cluster stage: duplicate groups as connected components of the pairs scored above threshold.

Components come from ``scipy.sparse.csgraph`` over the match graph (no Python loop over pairs).
A cluster's id is the smallest record id in it, so ids do not depend on row order or on how many
times the job has run.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(n_records: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label (0..k-1) per record for the graph with the given edges."""
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n_records, n_records))
    _, labels = connected_components(graph, directed=False)
    return labels


def cluster_records(
    records: pl.DataFrame,
    id_column: str,
    left: np.ndarray,
    right: np.ndarray,
    probability: np.ndarray,
    threshold: float,
) -> pl.DataFrame:
    """Every input row and column plus ``cluster_id`` and ``cluster_size``."""
    match = probability >= threshold
    labels = components(records.height, left[match], right[match])
    return (
        records.with_columns(pl.Series("_component", labels))
        .with_columns(
            pl.col(id_column).min().over("_component").alias("cluster_id"),
            pl.len().over("_component").cast(pl.Int64).alias("cluster_size"),
        )
        .drop("_component")
    )
