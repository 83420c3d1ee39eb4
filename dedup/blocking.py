"""Block stage: candidate pairs from the union of recordlinkage indexing passes.

Each configured pass becomes a recordlinkage ``Index`` (``KeyBlock`` for exact keys,
``SortedNeighbourhood`` for sorted keys). Key expressions (prefix slices, phonetic codes) are
computed as columns first, with polars, from the normalised values, and records whose key is
null sit the pass out (recordlinkage would otherwise join nulls to nulls). Pairs are kept as
integer row-position arrays with ``left < right``; a pair found by several passes keeps the first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from dedup.config import (
    DEFAULT_PAIRS_PER_RECORD,
    BlockingPass,
    DedupConfig,
    EmbeddingPass,
    ExactPass,
    FieldKind,
    KeyExpression,
    SortedNeighbourhoodPass,
    TokenPass,
)
from dedup.errors import BlockingError
from dedup.frequencies import words
from dedup.neighbours import RecordVectors, nearest_neighbours, stack_tables
from dedup.normalise import normalise_expr

if TYPE_CHECKING:
    from dedup.encoder import FieldEmbeddings


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


def _field_values(records: pl.DataFrame, normalised: pl.DataFrame, column: str) -> pl.Series:
    """A column's normalised values: the field's own, or as a category for other columns."""
    if column in normalised.columns:
        return normalised[column]
    return records.select(normalise_expr(column, FieldKind.category)).to_series()


def key_values(records: pl.DataFrame, normalised: pl.DataFrame, key: KeyExpression) -> pl.Series:
    """The blocking key ``key`` for every record (null where it cannot be formed)."""
    if key.column in normalised.columns:
        base = normalised[key.column]
    else:
        base = records.select(normalise_expr(key.column, FieldKind.category)).to_series()
    if key.function is not None:
        from recordlinkage.preprocessing import phonetic  # recordlinkage loads sklearn: only when needed

        codes = phonetic(base.to_pandas(use_pyarrow_extension_array=False), key.function)
        codes = codes.astype(object).where(codes.notna(), None)  # an all-null column comes back as float NaN
        base = pl.Series(key.column, codes.tolist(), dtype=pl.String)
    if key.start is not None or key.stop is not None:
        base = _python_slice(base, key.start, key.stop)
    return base.replace("", None).alias(key.text)


def _python_slice(values: pl.Series, start: int | None, stop: int | None) -> pl.Series:
    """``value[start:stop]`` with Python's meaning (negative counts from the end), per row."""
    n = pl.col("v").str.len_chars().cast(pl.Int64)

    def bound(x: int | None, default: pl.Expr) -> pl.Expr:
        if x is None:
            return default
        return pl.min_horizontal(pl.lit(x, pl.Int64), n) if x >= 0 else pl.max_horizontal(n + x, pl.lit(0, pl.Int64))

    lo, hi = bound(start, pl.lit(0, pl.Int64)), bound(stop, n)
    length = pl.max_horizontal(hi - lo, pl.lit(0, pl.Int64))
    return pl.DataFrame({"v": values}).select(pl.col("v").str.slice(lo, length)).to_series().alias(values.name)


def _pass_keys(p: ExactPass | SortedNeighbourhoodPass) -> tuple[KeyExpression, ...]:
    return p.on if isinstance(p, ExactPass) else (p.key, *p.block_on)


def key_frame(records: pl.DataFrame, normalised: pl.DataFrame, p: ExactPass | SortedNeighbourhoodPass) -> pl.DataFrame:
    """One column per key (k0, k1, ...) and the row position, for records with every key present."""
    columns = {f"k{i}": key_values(records, normalised, k) for i, k in enumerate(_pass_keys(p))}
    return pl.DataFrame(columns).with_row_index("_row").drop_nulls()


@dataclass(frozen=True)
class PassEstimate:
    """How many pairs a pass will make, known before it runs (from key value counts)."""

    pairs: int
    largest_block: int
    top_blocks: tuple[str, ...]  # the key values of the largest blocks, for error messages


def rare_words(values: pl.Series, p: TokenPass) -> pl.DataFrame:
    """(row, word) keys of a token pass: each record's ``rarest`` rarest words held by 2 to
    ``max_records`` records (ties broken by the word, so the keys do not depend on row order)."""
    table = words(values)
    counts = table.group_by("word").agg(pl.len().alias("df"))
    kept = table.join(counts, on="word").filter((pl.col("df") >= 2) & (pl.col("df") <= p.max_records))
    return kept.sort("row", "df", "word").group_by("row", maintain_order=True).head(p.rarest).select("row", "word")


def estimate_pass(records: pl.DataFrame, normalised: pl.DataFrame, p: BlockingPass) -> PassEstimate:
    """Exact pair count of a block pass, upper bound for sorted neighbourhood and token passes,
    n*k for embedding."""
    if isinstance(p, EmbeddingPass):
        return PassEstimate(records.height * min(p.k, max(records.height - 1, 0)), p.k + 1, ())
    if isinstance(p, TokenPass):
        groups = rare_words(_field_values(records, normalised, p.field), p).group_by("word").len()
        if groups.height == 0:
            return PassEstimate(0, 0, ())
        counts = groups["len"].to_numpy().astype(np.float64)
        top = groups.sort("len", descending=True).head(3)
        shown = tuple(f"{w} ({c} records)" for w, c in top.iter_rows())
        return PassEstimate(int((counts * (counts - 1) / 2).sum()), int(counts.max()), shown)
    frame = key_frame(records, normalised, p)
    keys = [c for c in frame.columns if c != "_row"]
    if isinstance(p, SortedNeighbourhoodPass):
        keys = keys[1:]  # within each block_on group, pairs come from the sorted window
        groups = frame.group_by([*keys, "k0"]).len().sort([*keys, "k0"])
        counts = groups["len"].to_numpy().astype(np.float64)
        pairs = (counts * (counts - 1) / 2).sum()
        for d in range(1, (p.window - 1) // 2 + 1):  # neighbouring distinct keys (an upper bound with block_on)
            pairs += (counts[:-d] * counts[d:]).sum()
    else:
        groups = frame.group_by(keys).len()
        counts = groups["len"].to_numpy().astype(np.float64)
        pairs = (counts * (counts - 1) / 2).sum()
    if groups.height == 0:
        return PassEstimate(0, 0, ())
    top = groups.sort("len", descending=True).head(3)
    values = tuple(
        "/".join(str(v) for v in row[:-1]) + f" ({row[-1]} records)"
        for row in top.select([c for c in top.columns if c != "len"] + ["len"]).iter_rows()
    )
    return PassEstimate(int(pairs), int(counts.max()), values)


def guard_pass(estimate: PassEstimate, p: BlockingPass, limit: int) -> None:
    """Refuse a pass that would make more than ``limit`` pairs, before it runs out of memory."""
    if estimate.pairs > limit:
        raise BlockingError(
            f"blocking pass {p.name} would produce {estimate.pairs:,} candidate pairs, more than the limit "
            f"{limit:,} (blocking_max_pairs); largest blocks: {', '.join(estimate.top_blocks)}. "
            f"Add a key to this pass or remove it."
        )


def run_pass(
    records: pl.DataFrame, normalised: pl.DataFrame, p: BlockingPass, part: int = 0, parts: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Row-position pairs (unordered, possibly unsorted) produced by one rule pass.

    With ``parts > 1`` only the records whose block key hashes to ``part`` take part: records in
    different partitions never share a block, so the partitions' pairs add up to the whole pass.
    A sorted neighbourhood pass is partitioned on its ``block_on`` keys; without them it runs
    whole in partition 0.
    """
    empty = np.empty(0, np.int64), np.empty(0, np.int64)
    if isinstance(p, EmbeddingPass):
        return empty  # needs a trained encoder: see embedding_neighbours
    from dedup import indexers  # recordlinkage loads sklearn (0.8 s) and pandas: only when a pass runs

    if isinstance(p, TokenPass):
        algorithm = indexers.RareWords(partial(rare_words, p=p), part, parts)
        text = _field_values(records, normalised, p.field).alias("text").to_frame()
        return indexers.index_pairs(indexers.recordlinkage_frame(text, algorithm), algorithm)
    frame = key_frame(records, normalised, p)
    names = [c for c in frame.columns if c != "_row"]
    if parts > 1:
        keys = names if isinstance(p, ExactPass) else names[1:]
        if keys:
            frame = frame.filter(pl.struct(keys).hash(seed=0) % parts == part)
        elif part != 0:
            return empty
    if frame.height < 2:
        return empty
    if isinstance(p, ExactPass):
        algorithm = indexers.KeyBlock()
    elif len(names) == 1:
        algorithm = indexers.sorted_neighbourhood(names[0], p.window)
    else:  # recordlinkage 0.16's own block_left_on fails under pandas 2
        algorithm = indexers.BlockedSortedNeighbourhood(names[0], names[1:], p.window)
    rows = frame["_row"].to_numpy().astype(np.int64)
    return indexers.index_pairs(indexers.recordlinkage_frame(frame.drop("_row"), algorithm, rows), algorithm)


def vectors_of(embeddings: FieldEmbeddings) -> RecordVectors:
    """Every record's unit vector (``record_vectors``), gathered from the field tables when the
    search asks: the tables and a length per record are all it holds (a quarter of the 2 GB the
    vectors take at 1M records).

    The tables are stacked into one array for the search's gathers, and ``embeddings`` then
    reads its tables from that array (views, the same values): training keeps its embeddings
    after the search, and would otherwise hold every table twice.
    """
    fields = embeddings.fields
    stacked = stack_tables(embeddings.tables)
    return RecordVectors.measure([embeddings.tables[f] for f in fields], [embeddings.codes[f] for f in fields], stacked)


def record_vectors(embeddings: FieldEmbeddings) -> np.ndarray:
    """One unit vector per record: its field embeddings side by side (nulls are zeros).

    Filled and normalised in blocks of records, into the one result: at 1M records that result
    is 2 GB, and each field's dense copy, a concatenation and ``np.linalg.norm``'s squares were
    as much again each (the 1M-record run's peak was here and in the union that follows). Each
    block computes what ``np.linalg.norm(axis=1)`` computes for its rows, so the vectors are
    the same.
    """
    return vectors_of(embeddings).dense()


def union_pairs(
    per_pass: Iterable[tuple[np.ndarray, np.ndarray]], names: tuple[str, ...], width: int | None = None
) -> CandidatePairs:
    """Union the passes' pairs, ordering each pair and keeping the first pass that found it.

    Each pass is turned into one int64 key per distinct pair (the pair, and the pass in the
    lowest digits) as it comes, so an iterator of passes is held a pass at a time: at 1M records
    the rule passes' 39M pairs as arrays, then as lists of halves, then concatenated were the
    block stage's peak. ``width``: more than the largest row position (needed up front with an
    iterator; from the pairs otherwise).
    """
    if width is None:
        per_pass = list(per_pass)
        width = max((int(max(a.max(initial=0), b.max(initial=0))) for a, b in per_pass), default=0) + 1
    kinds = max(len(names), 1)
    if width * width * kinds >= 2**63:  # too many records for one int64 key
        return _union_by_columns(list(per_pass), names)
    keys = [_distinct_keys(a, b, i, width, kinds) for i, (a, b) in enumerate(per_pass)]  # a pass's arrays go with it
    if len(keys) > kinds:
        raise ValueError(f"{len(keys)} passes but {len(names)} names")
    counts = tuple(len(k) for k in keys)
    key = np.concatenate(keys) if keys else np.empty(0, np.int64)
    keys.clear()
    return _first_of_keys(key, width, kinds, names, counts)


def _distinct_keys(a: np.ndarray, b: np.ndarray, i: int, width: int, kinds: int) -> np.ndarray:
    """Pass ``i``'s distinct pairs as keys ``(low * width + high) * kinds + i``, sorted."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b)
    keep = lo != hi
    code = _distinct(lo[keep] * width + hi[keep])  # a pass may find a pair twice (kNN: i->j, j->i)
    code *= kinds
    code += i
    return code


def _union_by_columns(per_pass: list[tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]) -> CandidatePairs:
    """``union_pairs`` for record counts too large for one int64 key per pair and pass: each
    pass's distinct pairs (its key without the pass digit), then ``_first_pass``'s own way."""
    parts: list[Part] = []
    for i, (a, b) in enumerate(per_pass):
        width = int(max(a.max(initial=0), b.max(initial=0))) + 1
        code = _distinct_keys(a, b, 0, width, 1)
        parts.append((code // width, code % width, i))
    return _first_pass(parts, names, tuple(len(left) for left, _, _ in parts))


def _distinct(codes: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an int64 array (sorted in place; runs sort fast)."""
    codes.sort(kind="stable")
    return codes[_run_starts(codes)]


def _run_starts(ordered: np.ndarray) -> np.ndarray:
    """Where each run of equal values in a sorted array begins."""
    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    return starts


Part = tuple[np.ndarray, np.ndarray, "np.ndarray | int"]  # left, right, pass (per pair, or one for all)


def _first_pass(parts: list[Part], names: tuple[str, ...], counts: tuple[int, ...]) -> CandidatePairs:
    """Each distinct pair of ``parts`` once, with the earliest pass that found it, ordered by
    (left, right).

    One in-place sort of a key holding the pair and, in its lowest digits, the pass: the first
    key of each pair is its earliest pass. The parts are written straight into the key, not
    concatenated first. (An argsort by pass and a ``np.unique`` with indices held about 120
    bytes a pair at the peak: 5.5 GB for 44M pairs at 1M records; this holds the key and the
    result.)
    """
    width = max((int(max(left.max(initial=0), right.max(initial=0))) for left, right, _ in parts), default=0) + 1
    kinds = max([len(names), 1] + [int(np.max(p, initial=0)) + 1 for left, _, p in parts if len(left)])
    if width * width * kinds >= 2**63:  # too many records for one int64 key
        left, right = (np.concatenate([part[k] for part in parts]) for k in (0, 1))
        pass_index = np.concatenate([np.broadcast_to(np.int16(p), len(a)) for a, _, p in parts]).astype(np.int16)
        order = np.argsort(pass_index, kind="stable")
        left, right, pass_index = left[order], right[order], pass_index[order]
        _, first = np.unique(left * width + right, return_index=True)
        return CandidatePairs(left[first], right[first], pass_index[first], names, counts)
    key = np.empty(sum(len(left) for left, _, _ in parts), dtype=np.int64)
    at = 0
    for left, right, p in parts:
        part = key[at : at + len(left)]
        np.multiply(left, np.int64(width), out=part)  # in int64 whatever the rows' dtype
        part += right
        part *= kinds
        part += p
        at += len(left)
    return _first_of_keys(key, width, kinds, names, counts)


def _first_of_keys(
    key: np.ndarray, width: int, kinds: int, names: tuple[str, ...], counts: tuple[int, ...]
) -> CandidatePairs:
    """The first pass of each pair, from keys ``(left * width + right) * kinds + pass`` (sorted in place)."""
    key.sort(kind="stable")  # timsort: the passes' pairs arrive as sorted runs
    pairs, passes = np.divmod(key[_run_starts(key // kinds)], kinds)
    return CandidatePairs(
        left=pairs // width,
        right=pairs % width,
        pass_index=passes.astype(np.int16),
        pass_names=names,
        pass_counts=counts,
    )


def pass_allowed(estimate: PassEstimate, p: BlockingPass, config: DedupConfig, records: int) -> bool:
    """Whether a pass may run (``skip_reason``); a skipped default pass is a warning."""
    reason = skip_reason(estimate, p, config, records)
    if reason:
        warnings.warn(reason, stacklevel=2)
    return reason is None


def skip_reason(estimate: PassEstimate, p: BlockingPass, config: DedupConfig, records: int) -> str | None:
    """Why a pass may not run, or None: over ``blocking_max_pairs`` a configured pass is an
    error; a default pass (none configured) is skipped over that limit or over
    ``DEFAULT_PAIRS_PER_RECORD`` pairs per record (a pass on a field with few values, such as
    a city or a year, would otherwise bury the duplicates under millions of pairs).

    Returned, not only warned: pieces running side by side on threads cannot tell their
    warnings apart (``warnings.catch_warnings`` is process-wide)."""
    if config.blocking is None:
        limit = min(config.blocking_max_pairs, max(DEFAULT_PAIRS_PER_RECORD * records, 1000))
        return skipped_default(estimate, p, limit)
    guard_pass(estimate, p, config.blocking_max_pairs)
    return None


def skipped_default(estimate: PassEstimate, p: BlockingPass, limit: int) -> str | None:
    """Why a default pass is skipped, or None."""
    if estimate.pairs <= limit or isinstance(p, EmbeddingPass):
        return None
    return (
        f"skipping default blocking pass {p.name}: it would make {estimate.pairs:,} candidate pairs "
        f"(limit {limit:,}); largest blocks: {', '.join(estimate.top_blocks)}"
    )


def block(
    records: pl.DataFrame,
    normalised: pl.DataFrame,
    config: DedupConfig,
    estimates: list[PassEstimate] | None = None,
) -> CandidatePairs:
    """Run every rule pass (embedding passes come later, with a trained encoder) and union them.

    ``estimates`` (one per pass) saves recounting them when the caller has them.
    """
    estimates = estimates or [estimate_pass(records, normalised, p) for p in config.passes]
    per_pass = []
    for p, estimate in zip(config.passes, estimates, strict=True):
        allowed = pass_allowed(estimate, p, config, records.height)
        per_pass.append(run_pass(records, normalised, p) if allowed else (np.empty(0, np.int64),) * 2)
    return union_pairs(per_pass, tuple(p.name for p in config.passes))


def has_embedding_pass(config: DedupConfig) -> bool:
    return any(isinstance(p, EmbeddingPass) for p in config.passes)


def embedding_neighbours(config: DedupConfig, vectors: np.ndarray | RecordVectors) -> dict[int, CandidatePairs]:
    """Each embedding pass's pairs (by its position in ``config.passes``): the search alone, so
    a caller can let the vectors go before the union (``with_found``)."""
    import pandas as pd

    from dedup.indexers import EmbeddingNeighbours, index_pairs

    frame = pd.DataFrame(index=pd.RangeIndex(len(vectors)))
    found = {}
    for i, p in enumerate(config.passes):
        if isinstance(p, EmbeddingPass):
            algorithm = EmbeddingNeighbours(vectors, p.k, p.min_similarity, method=p.method)
            found[i] = union_pairs([index_pairs(frame, algorithm)], (p.name,))
    return found


def with_embedding_passes(
    config: DedupConfig,
    rule_pairs: Callable[[], CandidatePairs],
    embeddings: Callable[[], FieldEmbeddings],
) -> CandidatePairs:
    """The rule passes' pairs plus the embedding passes', read in the order that holds least at
    once (2 GB less at 1M records than all together): the record vectors are joined from the
    field tables, which can then go; the vectors go once the neighbours are found; only then are
    the rule pairs read, for the union."""
    vectors = vectors_of(embeddings())
    found = embedding_neighbours(config, vectors)
    del vectors
    return with_found(rule_pairs(), config, found)


def with_found(pairs: CandidatePairs, config: DedupConfig, found: dict[int, CandidatePairs]) -> CandidatePairs:
    """Rule-pass candidates plus the embedding passes' (``embedding_neighbours``), each pair
    once with the first pass in config order that found it."""
    if not found:
        return pairs
    parts: list[Part] = [(pairs.left, pairs.right, pairs.pass_index)]
    counts = list(pairs.pass_counts)
    for i, pass_pairs in found.items():
        parts.append((pass_pairs.left, pass_pairs.right, i))
        counts[i] = len(pass_pairs)
    return _first_pass(parts, pairs.pass_names, tuple(counts))


def found_by_embedding(pairs: CandidatePairs, config: DedupConfig) -> np.ndarray:
    """Which pairs an embedding pass brought (the first pass to find them)."""
    return np.isin(pairs.pass_index, [i for i, p in enumerate(config.passes) if isinstance(p, EmbeddingPass)])


def with_neighbours(rule_pairs: CandidatePairs, searched: CandidatePairs, config: DedupConfig) -> CandidatePairs:
    """``rule_pairs`` plus the embedding passes' pairs of ``searched`` (the output of
    ``with_found`` over the same records, on a subset of those rule pairs): what
    ``with_found(rule_pairs, ...)`` gives, without searching the neighbours again."""
    found = found_by_embedding(searched, config)
    return _first_pass(
        [
            (rule_pairs.left, rule_pairs.right, rule_pairs.pass_index),
            (searched.left[found], searched.right[found], searched.pass_index[found]),
        ],
        rule_pairs.pass_names,
        searched.pass_counts,  # every pass's own count: the rule passes' came with the sample
    )


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


@dataclass
class PassAnalysis:
    """What one pass contributes: its own pairs, the new ones, its largest block, and recall."""

    name: str
    pairs: int
    new_pairs: int
    largest_block: int
    refused: str | None = None  # why the pass was not run (over blocking_max_pairs)
    pair_completeness: float | None = None  # share of true pairs this pass finds on its own
    cumulative_completeness: float | None = None  # ... together with the passes before it


def analyse_blocking(
    records: pl.DataFrame,
    normalised: pl.DataFrame,
    config: DedupConfig,
    truth: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
) -> tuple[list[PassAnalysis], dict[str, float]]:
    """Per-pass analysis (``dedup blocking``) and overall figures; ``truth`` is an entity per row.

    Embedding passes need ``vectors`` (``record_vectors`` of a trained model's embeddings).
    """
    n = records.height
    width = max(n, 1)
    true_codes = _true_pair_codes(truth, width) if truth is not None else None
    seen = np.empty(0, np.int64)
    rows: list[PassAnalysis] = []
    for p in config.passes:
        estimate = estimate_pass(records, normalised, p)
        try:
            guard_pass(estimate, p, config.blocking_max_pairs)
        except BlockingError as exc:
            rows.append(PassAnalysis(p.name, 0, 0, estimate.largest_block, refused=str(exc)))
            continue
        limit = max(DEFAULT_PAIRS_PER_RECORD * n, 1000)
        if config.blocking is None and (reason := skipped_default(estimate, p, limit)):
            rows.append(PassAnalysis(p.name, 0, 0, estimate.largest_block, refused=reason))
            continue
        if isinstance(p, EmbeddingPass):
            if vectors is None:
                rows.append(PassAnalysis(p.name, 0, 0, 0, refused="needs a trained model (--model)"))
                continue
            a, b = nearest_neighbours(vectors, vectors, p.k, p.min_similarity, 2048, exclude_self=True, method=p.method)
        else:
            a, b = run_pass(records, normalised, p)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        codes = np.unique((lo * width + hi)[lo != hi])
        new = codes[~np.isin(codes, seen, assume_unique=True)]
        seen = np.union1d(seen, codes)
        row = PassAnalysis(p.name, len(codes), len(new), estimate.largest_block)
        if true_codes is not None and len(true_codes):
            row.pair_completeness = float(np.isin(true_codes, codes).mean())
            row.cumulative_completeness = float(np.isin(true_codes, seen).mean())
        rows.append(row)
    total = n * (n - 1) / 2
    overall = {
        "candidate_pairs": float(len(seen)),
        "pairs_per_record": len(seen) / max(n, 1),
        "reduction_ratio": 1 - len(seen) / total if total else 0.0,
    }
    if true_codes is not None:
        overall["true_pairs"] = float(len(true_codes))
        overall["pair_completeness"] = float(np.isin(true_codes, seen).mean()) if len(true_codes) else 1.0
    return rows, overall


def _true_pair_codes(truth: np.ndarray, width: int) -> np.ndarray:
    """Codes ``left * width + right`` of every pair of rows sharing an entity (vectorised)."""
    frame = pl.DataFrame({"t": truth, "row": np.arange(len(truth))}).drop_nulls("t")
    pairs = frame.join(frame, on="t", suffix="_r").filter(pl.col("row") < pl.col("row_r"))
    return np.sort(pairs["row"].to_numpy().astype(np.int64) * width + pairs["row_r"].to_numpy())
