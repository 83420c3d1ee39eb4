"""Blocking's recordlinkage index algorithms (see ``dedup.blocking``, which builds them per pass).

A module of their own because ``import recordlinkage`` loads scikit-learn (0.8 s): blocking
imports this module when a pass runs, so commands that never run one (``dedup update`` with key
passes, ``explain``, ``review``) start without it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import polars as pl
import recordlinkage
from recordlinkage.base import BaseIndexAlgorithm
from recordlinkage.index import SortedNeighbourhood

from dedup.neighbours import RecordVectors, nearest_neighbours


def index_pairs(frame: pd.DataFrame, algorithm: BaseIndexAlgorithm) -> tuple[np.ndarray, np.ndarray]:
    """Row-position pairs ``algorithm`` finds in ``frame`` (indexed by row position), through
    recordlinkage's ``Index``."""
    indexer = recordlinkage.Index()
    indexer.add(algorithm)
    pairs = indexer.index(frame)
    return (
        np.asarray(pairs.get_level_values(0), dtype=np.int64),
        np.asarray(pairs.get_level_values(1), dtype=np.int64),
    )


def positions_index(index: pd.Index, left: pl.Series, right: pl.Series) -> pd.MultiIndex:
    """The pairs ``(index[left[i]], index[right[i]])`` (``left``, ``right``: positions in
    ``index``, which is unique) as recordlinkage's MultiIndex, built from the positions as its
    codes: ``MultiIndex.from_arrays`` would factorise millions of labels it already has."""
    codes = [side.to_numpy().astype(np.int64) for side in (left, right)]
    return pd.MultiIndex(levels=[index, index], codes=codes, verify_integrity=False)


def sorted_neighbourhood(key: str, window: int) -> BaseIndexAlgorithm:
    """recordlinkage's own sorted neighbourhood on one key column."""
    return SortedNeighbourhood(left_on=key, window=window)


class KeyBlock(BaseIndexAlgorithm):
    """recordlinkage index algorithm: records equal on every column of the frame (``ExactPass``).

    recordlinkage's own ``Block`` finds the same pairs with a pandas merge, which took 6 of
    the 10 s that blocking 1M generated people took; this is a polars self-join. The frame's
    index holds the row positions, its columns the keys (no nulls: ``key_frame`` drops them).
    """

    def _dedup_index(self, df_a: pd.DataFrame) -> pd.MultiIndex:
        keys = pl.from_pandas(df_a.reset_index(drop=True)).with_row_index("_i")
        names = [c for c in keys.columns if c != "_i"]
        pairs = keys.join(keys, on=names, suffix="_r").filter(pl.col("_i") < pl.col("_i_r"))
        return positions_index(df_a.index, pairs["_i"], pairs["_i_r"])

    def _link_index(self, df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.MultiIndex:
        raise NotImplementedError("key blocking links records within one table")


class BlockedSortedNeighbourhood(BaseIndexAlgorithm):
    """recordlinkage index algorithm: sorted neighbourhood inside blocks.

    Within each group of equal ``block_on`` columns, records are candidates when their ``key``
    values are at most ``(window - 1) / 2`` apart in the sorted list of the group's distinct
    keys (recordlinkage's ``SortedNeighbourhood`` definition), found by joins on rank offsets.
    """

    def __init__(self, key: str, block_on: list[str], window: int) -> None:
        super().__init__()
        self.key, self.block_on, self.window = key, list(block_on), window

    def _dedup_index(self, df_a: pd.DataFrame) -> pd.MultiIndex:
        frame = pl.from_pandas(df_a[[self.key, *self.block_on]].reset_index(drop=True)).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),  # positions in df_a: the pairs' codes
            pl.col(self.key).rank("dense").over(self.block_on).cast(pl.Int64).alias("_rank"),
        )
        lefts, rights = [], []
        for offset in range((self.window - 1) // 2 + 1):
            shifted = frame.select(
                *self.block_on, (pl.col("_rank") - offset).alias("_rank"), pl.col("_row").alias("_r")
            )
            joined = frame.join(shifted, on=[*self.block_on, "_rank"])
            if offset == 0:
                joined = joined.filter(pl.col("_row") < pl.col("_r"))
            lefts.append(joined["_row"].to_numpy())
            rights.append(joined["_r"].to_numpy())
        return positions_index(df_a.index, pl.Series(np.concatenate(lefts)), pl.Series(np.concatenate(rights)))

    def _link_index(self, df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.MultiIndex:
        raise NotImplementedError("sorted neighbourhood in blocks links records within one table")


class RareWords(BaseIndexAlgorithm):
    """recordlinkage index algorithm: records sharing one of their rarest words (``TokenPass``).

    The frame holds one normalised text column (``text``), indexed by row position; ``keys``
    gives its (row, word) keys (``dedup.blocking.rare_words``). With
    ``parts > 1`` only the words hashing to ``part`` are keys: every shared word lands in one
    partition, so the partitions' pairs add up to the whole pass.
    """

    def __init__(self, keys: Callable[[pl.Series], pl.DataFrame], part: int = 0, parts: int = 1) -> None:
        super().__init__()
        self.keys, self.part, self.parts = keys, part, parts

    def _dedup_index(self, df_a: pd.DataFrame) -> pd.MultiIndex:
        values = pl.from_pandas(df_a["text"]).cast(pl.String).alias("text")  # no copy when Arrow-backed
        keys = self.keys(values)
        if self.parts > 1:
            keys = keys.filter(pl.col("word").hash(seed=0) % self.parts == self.part)
        pairs = keys.join(keys, on="word", suffix="_r").filter(pl.col("row") < pl.col("row_r"))
        pairs = pairs.select("row", "row_r").unique()
        return positions_index(df_a.index, pairs["row"], pairs["row_r"])

    def _link_index(self, df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.MultiIndex:
        raise NotImplementedError("token blocking links records within one table")


def recordlinkage_frame(
    columns: pl.DataFrame, algorithm: BaseIndexAlgorithm, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """``columns`` as the pandas frame recordlinkage hands ``algorithm``, indexed by ``rows``
    (row positions; 0, 1, ... when not given). Arrow-backed for our polars algorithms, which
    read it back without a copy (Python strings and back took half of 1M people's key passes);
    numpy-backed for recordlinkage's own."""
    arrow = isinstance(algorithm, (KeyBlock, BlockedSortedNeighbourhood, RareWords))
    frame = columns.to_pandas(use_pyarrow_extension_array=arrow)
    if rows is not None:
        frame.index = pd.Index(rows)
    return frame


class EmbeddingNeighbours(BaseIndexAlgorithm):
    """recordlinkage index algorithm: each record's ``k`` nearest neighbours by cosine.

    ``vectors`` holds one unit-norm vector per row position (``record_vectors``, or ``vectors_of``
    to gather them from the field tables as the search goes); the frames
    passed to ``index`` are indexed by row position, as in ``run_pass``. Exact top-k in chunks of
    queries with torch matrix products up to 20,000 records, approximate (PCA + faiss IVF,
    re-ranked exactly) above: see ``dedup.neighbours``. No loop per record.
    """

    def __init__(
        self,
        vectors: np.ndarray | RecordVectors,
        k: int = 10,
        min_similarity: float | None = None,
        chunk: int = 2048,
        method: str = "auto",
    ) -> None:
        super().__init__()
        self.vectors, self.k, self.min_similarity, self.chunk = RecordVectors.of(vectors), k, min_similarity, chunk
        self.method = method

    def _link_index(self, df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.MultiIndex:
        rows_a = np.asarray(df_a.index, dtype=np.int64)
        rows_b = np.asarray(df_b.index, dtype=np.int64)
        queries = self._vectors_of(rows_a)
        left, right = nearest_neighbours(
            queries,
            queries if df_a is df_b else self._vectors_of(rows_b),
            self.k,
            self.min_similarity,
            self.chunk,
            exclude_self=df_a is df_b,
            method=self.method,
        )
        return pd.MultiIndex.from_arrays([rows_a[left], rows_b[right]])

    def _dedup_index(self, df_a: pd.DataFrame) -> pd.MultiIndex:
        return self._link_index(df_a, df_a)

    def _vectors_of(self, rows: np.ndarray) -> RecordVectors | np.ndarray:
        """The rows' vectors; every row's is ``vectors`` itself, not a copy (2 GB at 1M records)."""
        if len(rows) == len(self.vectors) and np.array_equal(rows, np.arange(len(rows))):
            return self.vectors
        return self.vectors.take(rows)
