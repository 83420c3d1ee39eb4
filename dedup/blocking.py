"""Block stage: candidate pairs from the union of recordlinkage indexing passes.

Each configured pass becomes a recordlinkage ``Index`` (``Block`` for exact keys,
``SortedNeighbourhood`` for sorted keys). Key expressions (prefix slices, phonetic codes) are
computed as columns first, with polars, from the normalised values, and records whose key is
null sit the pass out (recordlinkage would otherwise join nulls to nulls). Pairs are kept as
integer row-position arrays with ``left < right``; a pair found by several passes keeps the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl
import recordlinkage
from recordlinkage.index import Block, SortedNeighbourhood
from recordlinkage.preprocessing import phonetic

from dedup.config import BlockingPass, DedupConfig, ExactPass, FieldKind, KeyExpression
from dedup.normalise import normalise_expr


@dataclass(frozen=True)
class CandidatePairs:
    """Candidate pairs as parallel arrays of row positions into the records table."""

    left: np.ndarray  # int64, row positions, left < right
    right: np.ndarray  # int64
    pass_index: np.ndarray  # int16, index into pass_names of the first pass that found the pair
    pass_names: tuple[str, ...]
    pass_counts: tuple[int, ...] = field(default=())  # pairs each pass produced on its own

    def __len__(self) -> int:
        return int(self.left.shape[0])

    @classmethod
    def from_arrays(cls, left: np.ndarray, right: np.ndarray, name: str = "given") -> CandidatePairs:
        """Pairs from two index arrays (order within a pair and duplicates don't matter)."""
        return union_pairs([(np.asarray(left), np.asarray(right))], (name,))


def key_values(records: pl.DataFrame, normalised: pl.DataFrame, key: KeyExpression) -> pl.Series:
    """The blocking key ``key`` for every record (null where it cannot be formed)."""
    if key.column in normalised.columns:
        base = normalised[key.column]
    else:
        base = records.select(normalise_expr(key.column, FieldKind.category)).to_series()
    if key.function is not None:
        codes = phonetic(base.to_pandas(use_pyarrow_extension_array=False), key.function)
        codes = codes.astype(object).where(codes.notna(), None)  # an all-null column comes back as float NaN
        base = pl.Series(key.column, codes.tolist(), dtype=pl.String)
    if key.start is not None or key.stop is not None:
        start = key.start or 0
        length = None if key.stop is None else max(key.stop - start, 0)
        base = base.str.slice(start, length)
    return base.replace("", None).alias(key.text)


def _pass_keys(p: BlockingPass) -> tuple[KeyExpression, ...]:
    return p.on if isinstance(p, ExactPass) else (p.key, *p.block_on)


def run_pass(records: pl.DataFrame, normalised: pl.DataFrame, p: BlockingPass) -> tuple[np.ndarray, np.ndarray]:
    """Row-position pairs (unordered, possibly unsorted) produced by one pass."""
    keys = _pass_keys(p)
    columns = {f"k{i}": key_values(records, normalised, k) for i, k in enumerate(keys)}
    frame = pl.DataFrame(columns).with_row_index("_row").drop_nulls()
    if frame.height < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pdf = frame.drop("_row").to_pandas(use_pyarrow_extension_array=False)
    pdf.index = pd.Index(frame["_row"].to_numpy().astype(np.int64))
    names = list(columns)
    indexer = recordlinkage.Index()
    if isinstance(p, ExactPass):
        indexer.add(Block(left_on=names))
    else:
        indexer.add(SortedNeighbourhood(left_on=names[0], window=p.window, block_left_on=names[1:]))
    pairs = indexer.index(pdf)
    return (
        np.asarray(pairs.get_level_values(0), dtype=np.int64),
        np.asarray(pairs.get_level_values(1), dtype=np.int64),
    )


def union_pairs(per_pass: list[tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]) -> CandidatePairs:
    """Union the passes' pairs, ordering each pair and keeping the first pass that found it."""
    counts: list[int] = []
    lefts, rights, passes = [], [], []
    for i, (a, b) in enumerate(per_pass):
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keep = lo != hi
        lo, hi = lo[keep], hi[keep]
        counts.append(int(lo.shape[0]))
        lefts.append(lo)
        rights.append(hi)
        passes.append(np.full(lo.shape[0], i, dtype=np.int16))
    left = np.concatenate(lefts) if lefts else np.empty(0, np.int64)
    right = np.concatenate(rights) if rights else np.empty(0, np.int64)
    pass_index = np.concatenate(passes) if passes else np.empty(0, np.int16)
    width = int(right.max()) + 1 if right.size else 1
    codes = left * width + right
    _, first = np.unique(codes, return_index=True)  # first occurrence = earliest pass
    return CandidatePairs(
        left=left[first],
        right=right[first],
        pass_index=pass_index[first],
        pass_names=names,
        pass_counts=tuple(counts),
    )


def block(records: pl.DataFrame, normalised: pl.DataFrame, config: DedupConfig) -> CandidatePairs:
    """Run every configured pass and union the candidate pairs."""
    per_pass = [run_pass(records, normalised, p) for p in config.blocking]
    return union_pairs(per_pass, tuple(p.name for p in config.blocking))


def pairs_to_frame(pairs: CandidatePairs) -> pl.DataFrame:
    """Pairs as a small Arrow-friendly table (for passing between flow tasks)."""
    return pl.DataFrame({"left": pairs.left, "right": pairs.right, "pass_index": pairs.pass_index})


def pairs_from_frame(frame: pl.DataFrame, pass_names: tuple[str, ...]) -> CandidatePairs:
    return CandidatePairs(
        left=frame["left"].to_numpy().astype(np.int64),
        right=frame["right"].to_numpy().astype(np.int64),
        pass_index=frame["pass_index"].to_numpy().astype(np.int16),
        pass_names=pass_names,
    )
