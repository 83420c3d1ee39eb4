"""k nearest neighbours by cosine, exact for small inputs and approximate (faiss) for large ones.

The embedding blocking pass asks every record for its ``k`` most similar records. Exactly, that
is N² dot products of ``fields x dim`` floats: seconds at 20k records, hours at 1M. Above
``EXACT_LIMIT`` records the search is approximate, in three steps:

1. PCA (faiss ``PCAMatrix``, fitted on a sample) to ``REDUCED_DIM`` dimensions: the concatenated
   field embeddings are redundant, and a short vector is what makes step 2 cheap;
2. an inverted-file index (``IndexIVFFlat``, about 4·√N lists, k-means on a sample) searched
   with ``NPROBE`` lists per query for ``OVERSAMPLE`` x k candidates, by L2 distance (which, unlike
   the inner product, does not care that PCA centred the vectors);
3. the candidates re-ranked by their exact cosine on the full vectors, and the best ``k`` kept.

``benchmarks/knn.py`` measures its time and recall against the exact neighbours.

The base may be a ``RecordVectors``: every record's vector gathered from the field tables when a
step asks for it (the PCA's sample, blocks of the projection, the re-rank's candidates), so the
search never holds all the full vectors at once (2 GB at 1M records, the tables about a quarter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

EXACT_LIMIT = 20_000  # up to this many base vectors the exact search is fast enough
REDUCED_DIM = 64
NPROBE = 16
OVERSAMPLE = 3
TRAIN_SAMPLE = 100_000
RERANK_STEP = 256  # queries re-ranked together
VECTOR_ROWS = 65536  # records per block while record vectors are measured or projected


@dataclass(frozen=True, eq=False)
class RecordVectors:
    """One unit vector per record, never all held: its fields' embeddings side by side (nulls
    are zeros), divided by the joined vector's length.

    The field tables are stacked into one (``table``), and ``codes`` holds each record's row in
    it for every field (``(records, fields)``), so a block of records is one gather whose rows,
    read field after field, are the joined vectors (fields of one width, as the encoder makes
    them; tables of different widths are gathered field by field). ``norms``: per record, the
    joined vector's length (floored at 1e-12). ``take`` gives exactly the rows a materialised
    matrix would hold.
    """

    table: np.ndarray
    codes: np.ndarray
    norms: np.ndarray
    widths: tuple[int, ...]

    @classmethod
    def measure(
        cls, tables: list[np.ndarray], codes: list[np.ndarray], stacked: np.ndarray | None = None
    ) -> RecordVectors:
        """Measure every record's length, a block of records at a time. ``stacked``: ``tables``
        already stacked in this order (``stack_tables``); otherwise they are stacked here (a copy)."""
        n = len(codes[0]) if codes else 0
        offsets = np.cumsum([0, *(len(t) for t in tables[:-1])])
        table = stack_tables(dict(enumerate(tables))) if stacked is None else stacked
        dtype = np.int32 if len(table) < 2**31 else np.int64
        rows = np.empty((n, len(codes)), dtype=dtype)
        for j, (field_codes, offset) in enumerate(zip(codes, offsets, strict=True)):
            rows[:, j] = field_codes + offset
        unit = cls(table, rows, np.ones(n, dtype=np.float32), tuple(t.shape[1] for t in tables))
        norms = np.empty(n, dtype=np.float32)
        for start in range(0, n, VECTOR_ROWS):
            block = unit.take(np.arange(start, min(start + VECTOR_ROWS, n)))
            np.multiply(block, block, out=block)  # squared in place: one block held, not two
            norms[start : start + len(block)] = np.sqrt(np.add.reduce(block, axis=1))
        return cls(table, rows, np.maximum(norms, np.float32(1e-12)), unit.widths)

    @classmethod
    def of(cls, vectors: np.ndarray | RecordVectors) -> RecordVectors:
        """``vectors`` as they are, or an array of unit vectors read through the same interface
        (its rows as one table, each record its own row, lengths of 1: ``take`` gives its rows)."""
        if isinstance(vectors, RecordVectors):
            return vectors
        table = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = np.arange(len(table), dtype=np.int64 if len(table) >= 2**31 else np.int32)[:, None]
        return cls(table, rows, np.ones(len(table), dtype=np.float32), (table.shape[1],))

    def __len__(self) -> int:
        return len(self.norms)

    @property
    def dim(self) -> int:
        return sum(self.widths)

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The vectors of ``rows`` (``out``: where to write them, ``(len(rows), dim)`` float32,
        contiguous)."""
        out = np.empty((len(rows), self.dim), dtype=np.float32) if out is None else out
        picked = self.codes[rows]
        if len(set(self.widths)) == 1:  # one gather: row after row, field after field
            index = torch.from_numpy(picked.ravel().astype(np.int64))
            torch.index_select(
                torch.from_numpy(self.table), 0, index, out=torch.from_numpy(out).view(-1, self.widths[0])
            )
        else:
            column = 0
            for j, width in enumerate(self.widths):
                out[:, column : column + width] = self.table[picked[:, j], :width]
                column += width
        lengths = torch.from_numpy(self.norms)[torch.from_numpy(np.asarray(rows, dtype=np.int64))]
        torch.from_numpy(out).div_(lengths.unsqueeze(1))  # torch's division on all cores, same bits
        return out

    def dense(self) -> np.ndarray:
        """Every record's vector, in one ``(records, dim)`` array."""
        out = np.empty((len(self), self.dim), dtype=np.float32)
        for start in range(0, len(self), VECTOR_ROWS):
            rows = np.arange(start, min(start + VECTOR_ROWS, len(self)))
            self.take(rows, out[start : start + len(rows)])
        return out


def stack_tables(tables: dict[Any, np.ndarray]) -> np.ndarray:
    """The tables one after the other in one array (narrower ones padded with zeros); each value
    of ``tables`` becomes a view of its rows in it (the same values), one table at a time, so an
    original no one else holds goes as soon as it is copied."""
    widest = max((t.shape[1] for t in tables.values()), default=0)
    stacked = np.zeros((max(sum(len(t) for t in tables.values()), 1), widest), dtype=np.float32)
    start = 0
    for key in list(tables):
        size, width = tables[key].shape
        stacked[start : start + size, :width] = tables[key]
        tables[key] = stacked[start : start + size, :width]
        start += size
    return stacked


def nearest_neighbours(
    queries: np.ndarray | RecordVectors,
    base: np.ndarray | RecordVectors,
    k: int,
    min_similarity: float | None,
    chunk: int = 2048,
    exclude_self: bool = False,
    method: str = "auto",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(query index, base index) of each query's k most similar base vectors (unit vectors).

    ``exclude_self``: queries and base are the same rows; a row is not its own neighbour.
    ``method``: ``exact``, ``approximate``, or ``auto`` (approximate above ``EXACT_LIMIT``).
    """
    base = RecordVectors.of(base)
    queries = base if exclude_self else RecordVectors.of(queries)
    k = min(k, len(base) - (1 if exclude_self else 0))
    if k <= 0 or len(queries) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if method == "approximate" or (method == "auto" and len(base) > EXACT_LIMIT):
        return _approximate(queries, base, k, min_similarity, exclude_self, seed)
    dense = base.dense()  # few enough records to hold
    return _exact(dense if exclude_self else queries.dense(), dense, k, min_similarity, chunk, exclude_self)


def _projected(pca, vectors: RecordVectors) -> np.ndarray:  # noqa: ANN001 (a faiss PCAMatrix)
    """The PCA of every vector, a block of records at a time."""
    out = np.empty((len(vectors), pca.d_out), dtype=np.float32)
    for start in range(0, len(vectors), VECTOR_ROWS):
        rows = np.arange(start, min(start + VECTOR_ROWS, len(vectors)))
        out[start : start + len(rows)] = pca.apply(vectors.take(rows))
    return out


def _exact(
    queries: np.ndarray, base: np.ndarray, k: int, min_similarity: float | None, chunk: int, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray]:
    base_t = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
    lefts, rights = [], []
    with torch.inference_mode():
        for start in range(0, len(queries), chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + chunk], dtype=np.float32))
            sims = q @ base_t.T
            if exclude_self:
                idx = torch.arange(len(q))
                sims[idx, idx + start] = -torch.inf
            values, cols = torch.topk(sims, k, dim=1)
            rows = torch.arange(len(q))[:, None].expand_as(cols) + start
            keep = torch.isfinite(values)
            if min_similarity is not None:
                keep &= values >= min_similarity
            lefts.append(rows[keep].numpy())
            rights.append(cols[keep].numpy())
    return np.concatenate(lefts).astype(np.int64), np.concatenate(rights).astype(np.int64)


def _approximate(
    queries: RecordVectors,
    base: RecordVectors,
    k: int,
    min_similarity: float | None,
    exclude_self: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())  # the share dedup.threads gave this piece
    rng = np.random.default_rng(seed)
    dim_in = base.dim
    sample = base.take(np.sort(rng.choice(len(base), size=min(len(base), TRAIN_SAMPLE), replace=False)))
    dim = min(REDUCED_DIM, dim_in)
    pca = faiss.PCAMatrix(dim_in, dim)
    pca.train(sample)
    lists = max(1, min(int(4 * math.sqrt(len(base))), len(sample) // 39))  # faiss wants ~39 points a list
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, lists, faiss.METRIC_L2)
    index.cp.seed = seed
    index.train(pca.apply(sample))
    del sample
    reduced_base = _projected(pca, base)
    index.add(reduced_base)
    index.nprobe = min(NPROBE, lists)
    wanted = min(OVERSAMPLE * k + (1 if exclude_self else 0), len(base))
    reduced_queries = reduced_base if exclude_self else _projected(pca, queries)  # the base asks: projected once
    del reduced_base
    lefts, rights = [], []
    step = 8192  # queries per faiss search
    # one buffer for every block's gathered candidates: a fresh 16 MB block per 256 queries sits
    # below glibc's adaptive mmap threshold, and the freed blocks fragmented the heap until a 1M-
    # record search held 24 GB (400k records: 12.7 GB with fresh blocks, 1.9 GB with this buffer)
    gathered = torch.empty((RERANK_STEP * wanted, dim_in), dtype=torch.float32)
    for start in range(0, len(queries), step):
        _, found = index.search(reduced_queries[start : start + step], wanted)  # -1 where fewer
        # re-ranked a few hundred queries at a time: their gathered candidates stay in the CPU's
        # cache (twice as fast at 50k records x 512 dimensions as one 8192-query block)
        for sub in range(0, len(found), RERANK_STEP):
            part = found[sub : sub + RERANK_STEP]
            rows = np.arange(start + sub, start + sub + len(part))
            left, right = _rerank(queries.take(rows), base, part, rows, k, min_similarity, exclude_self, gathered)
            lefts.append(left)
            rights.append(right)
    return np.concatenate(lefts), np.concatenate(rights)


def _rerank(
    queries: np.ndarray,
    base: RecordVectors,
    found: np.ndarray,
    rows: np.ndarray,
    k: int,
    min_similarity: float | None,
    exclude_self: bool,
    gathered: torch.Tensor,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each query's candidates by exact cosine on the full vectors
    (``gathered``: a reused buffer with room for every candidate's vector)."""
    valid = found >= 0
    if exclude_self:
        valid &= found != rows[:, None]
    safe = np.where(valid, found, 0)
    q = torch.from_numpy(queries)
    with torch.inference_mode():
        candidates = gathered[: safe.size]
        base.take(safe.ravel(), candidates.numpy())
        sims = torch.bmm(candidates.view(len(q), safe.shape[1], -1), q.unsqueeze(2)).squeeze(2).numpy()
    sims = np.where(valid, sims, -np.inf)
    take = min(k, sims.shape[1])
    best = np.argpartition(-sims, take - 1, axis=1)[:, :take]
    best_sims = np.take_along_axis(sims, best, axis=1)
    keep = np.isfinite(best_sims)
    if min_similarity is not None:
        keep &= best_sims >= min_similarity
    left = np.broadcast_to(rows[:, None], best.shape)[keep]
    right = np.take_along_axis(safe, best, axis=1)[keep]
    return left.astype(np.int64), right.astype(np.int64)
