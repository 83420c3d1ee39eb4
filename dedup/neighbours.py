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
"""

from __future__ import annotations

import math

import numpy as np
import torch

EXACT_LIMIT = 20_000  # up to this many base vectors the exact search is fast enough
REDUCED_DIM = 64
NPROBE = 16
OVERSAMPLE = 3
TRAIN_SAMPLE = 100_000
RERANK_STEP = 256  # queries re-ranked together


def nearest_neighbours(
    queries: np.ndarray,
    base: np.ndarray,
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
    k = min(k, len(base) - (1 if exclude_self else 0))
    if k <= 0 or len(queries) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if method == "approximate" or (method == "auto" and len(base) > EXACT_LIMIT):
        return _approximate(queries, base, k, min_similarity, exclude_self, seed)
    return _exact(queries, base, k, min_similarity, chunk, exclude_self)


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
    queries: np.ndarray, base: np.ndarray, k: int, min_similarity: float | None, exclude_self: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())  # the share dedup.threads gave this piece
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = base if exclude_self else np.ascontiguousarray(queries, dtype=np.float32)
    rng = np.random.default_rng(seed)
    sample = base[np.sort(rng.choice(len(base), size=min(len(base), TRAIN_SAMPLE), replace=False))]
    dim = min(REDUCED_DIM, base.shape[1])
    pca = faiss.PCAMatrix(base.shape[1], dim)
    pca.train(sample)
    lists = max(1, min(int(4 * math.sqrt(len(base))), len(sample) // 39))  # faiss wants ~39 points a list
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, lists, faiss.METRIC_L2)
    index.cp.seed = seed
    index.train(pca.apply(sample))
    reduced_base = pca.apply(base)
    index.add(reduced_base)
    index.nprobe = min(NPROBE, lists)
    wanted = min(OVERSAMPLE * k + (1 if exclude_self else 0), len(base))
    reduced_queries = reduced_base if exclude_self else pca.apply(queries)  # the base asks: projected once
    del reduced_base
    lefts, rights = [], []
    step = 8192  # queries per faiss search
    # one buffer for every block's gathered candidates: a fresh 16 MB block per 256 queries sits
    # below glibc's adaptive mmap threshold, and the freed blocks fragmented the heap until a 1M-
    # record search held 24 GB (400k records: 12.7 GB with fresh blocks, 1.9 GB with this buffer)
    gathered = torch.empty((RERANK_STEP * wanted, base.shape[1]), dtype=torch.float32)
    base_t = torch.from_numpy(base)
    for start in range(0, len(queries), step):
        _, found = index.search(reduced_queries[start : start + step], wanted)  # -1 where fewer
        # re-ranked a few hundred queries at a time: their gathered candidates stay in the CPU's
        # cache (twice as fast at 50k records x 512 dimensions as one 8192-query block)
        for sub in range(0, len(found), RERANK_STEP):
            part = found[sub : sub + RERANK_STEP]
            rows = np.arange(start + sub, start + sub + len(part))
            left, right = _rerank(
                queries[rows[0] : rows[-1] + 1], base_t, part, rows, k, min_similarity, exclude_self, gathered
            )
            lefts.append(left)
            rights.append(right)
    return np.concatenate(lefts), np.concatenate(rights)


def _rerank(
    queries: np.ndarray,
    base: torch.Tensor,
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
        torch.index_select(base, 0, torch.from_numpy(safe.ravel()), out=candidates)
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
