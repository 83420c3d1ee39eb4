"""The embedding pass's neighbour search at scale: time and recall of the approximate search.

    python benchmarks/knn.py --n 1000000                       # generates, trains, embeds, then searches
    python benchmarks/knn.py --n 1000000 --model out/m/model   # a model trained already (same fields)
    python benchmarks/knn.py --n 200000 --hnsw 128             # faiss HNSW on the full vectors instead

Records are generated people (``dedup synth``, benchmarks/configs/synth.yaml fields); their
record vectors (every field's embedding side by side, ``record_vectors``) are what the embedding
pass searches. Printed: seconds for the approximate k=10 search over all N records (index build
included), and its recall: the share of the exact 10 nearest neighbours of ``--queries`` random
records (found by brute force against all N) that the approximate search also returned, and the
share of those exact neighbours that are true duplicates (same generated ``cluster``) that it
returned: what blocking needs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dedup.blocking import record_vectors  # noqa: E402
from dedup.config import load_config  # noqa: E402
from dedup.io import load_input  # noqa: E402
from dedup.model import DedupModel  # noqa: E402
from dedup.neighbours import RecordVectors, nearest_neighbours  # noqa: E402
from dedup.synth import cached  # noqa: E402
from dedup.threads import limited, share  # noqa: E402

CONFIG = ROOT / "benchmarks" / "configs" / "synth.yaml"
TIE = 1e-3  # ann-benchmarks' epsilon: neighbours this much less similar than the exact k-th count as ties


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--model", default=None, help="a trained model for these fields")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument(
        "--hnsw", type=int, default=None, metavar="EF", help="search with faiss HNSW (M 16) at this efSearch instead"
    )
    args = parser.parse_args()
    config = load_config(CONFIG)
    source = cached(args.n, args.workdir)
    records, normalised = load_input(source, config)
    with limited(share()):
        if args.model:
            model = DedupModel.load(args.model, expect=config)
        else:
            clock = time.perf_counter()
            rows = np.sort(np.random.default_rng(0).choice(args.n, size=min(args.n, 100_000), replace=False))
            small = normalised[rows]
            from dedup.blocking import block

            model = DedupModel(config).fit(small, block(records[rows], small, config))
            print(f"trained on {len(rows):,} records in {time.perf_counter() - clock:.1f}s")
        clock = time.perf_counter()
        vectors = record_vectors(model.embed(normalised))
        print(f"embedded {args.n:,} records ({vectors.shape[1]} dims) in {time.perf_counter() - clock:.1f}s")

        clock = time.perf_counter()
        if args.hnsw:
            left, right = hnsw_neighbours(vectors, args.k, args.hnsw)
        else:
            left, right = nearest_neighbours(vectors, vectors, args.k, None, exclude_self=True, method="approximate")
        approximate_seconds = time.perf_counter() - clock
        # the search's own peak: the exact reference below adds its similarity blocks (1 GB at 1M)
        approximate_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

        rng = np.random.default_rng(1)
        queries = np.sort(rng.choice(args.n, size=args.queries, replace=False))
        clock = time.perf_counter()
        # 256 queries at a time: a 256 x N similarity block (1 GB at 1M), not 2,048 x N (8 GB)
        q_left, q_right = nearest_neighbours(vectors[queries], vectors, args.k + 1, None, chunk=256, method="exact")
        exact_seconds = time.perf_counter() - clock
    # exact: each query's k+1 best (torch.topk keeps them in order of similarity), itself dropped
    best: dict[int, list[int]] = {}
    for a, b in zip(queries[q_left].tolist(), q_right.tolist(), strict=True):
        if a != b and len(best.setdefault(a, [])) < args.k:
            best[a].append(b)
    approx = set(zip(left.tolist(), right.tolist(), strict=True))
    hits = sum(1 for a, bs in best.items() for b in bs if (a, b) in approx)
    total = sum(len(bs) for bs in best.values())
    tied = tied_recall(vectors, best, left, right, args.k)
    truth = pl.read_parquet(source, columns=["cluster"])["cluster"].to_numpy()
    duplicates = [(a, b) for a, bs in best.items() for b in bs if truth[a] == truth[b]]
    found = sum(1 for pair in duplicates if pair in approx)
    print(
        f"approximate k={args.k} over {args.n:,} records: {approximate_seconds:.1f}s "
        f"({len(left):,} pairs, {torch.get_num_threads()} threads); recall of the exact neighbours "
        f"{hits / total:.4f} on {len(best):,} random records (exact search for them: {exact_seconds:.1f}s), "
        f"counting ties as ann-benchmarks does (a neighbour as near as the exact k-th, less {TIE}, is a hit) "
        f"{tied:.4f}; "
        f"of those exact "
        f"neighbours that are true duplicates ({len(duplicates):,}) it found {found / max(len(duplicates), 1):.4f}; "
        f"peak RSS up to the end of the approximate search (training and embedding included) "
        f"{approximate_peak:.2f} GB"
    )


def hnsw_neighbours(vectors: np.ndarray | RecordVectors, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
    """Each record's ``k`` neighbours by faiss's HNSW graph on the full unit vectors (inner
    product; M 16, efConstruction 40, efSearch ``ef``), the record itself left out; build included
    in the caller's time. Prints the build's own seconds."""
    import faiss

    dense = vectors.dense() if isinstance(vectors, RecordVectors) else np.ascontiguousarray(vectors, np.float32)
    index = faiss.IndexHNSWFlat(dense.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    clock = time.perf_counter()
    index.add(dense)
    print(f"HNSW graph of {len(dense):,} vectors built in {time.perf_counter() - clock:.1f}s")
    index.hnsw.efSearch = ef
    _, found = index.search(dense, k + 1)
    # the record itself (where it was found) moved last, then k kept: no row gets k + 1
    itself = found == np.arange(len(dense))[:, None]
    found = np.take_along_axis(found, np.argsort(itself, axis=1, kind="stable"), axis=1)[:, :k].ravel()
    rows = np.repeat(np.arange(len(dense)), k)
    keep = found >= 0
    return rows[keep], found[keep]


def tied_recall(
    vectors: np.ndarray | RecordVectors, best: dict[int, list[int]], left: np.ndarray, right: np.ndarray, k: int
) -> float:
    """ann-benchmarks' recall (its ``knn`` metric): of each query's ``k`` returned neighbours, the
    share at least as near as its exact k-th nearest, less ``TIE`` (the exact neighbours of a
    generated person are often near-ties: which of two records at cosine 0.9012 and 0.9011 is
    the 10th is noise, and set recall counts it a miss)."""
    vectors = RecordVectors.of(vectors)
    queries = np.array(sorted(best), dtype=np.int64)
    chosen = np.isin(left, queries)
    q_left, q_right = left[chosen], right[chosen]
    found = np.einsum("ij,ij->i", vectors.take(q_left), vectors.take(q_right))
    last = np.array([best[a][-1] for a in queries.tolist()], dtype=np.int64)
    kth = np.einsum("ij,ij->i", vectors.take(queries), vectors.take(last))  # each query's exact k-th
    bar = kth[np.searchsorted(queries, q_left)] - TIE
    hits = np.bincount(np.searchsorted(queries, q_left), weights=found >= bar, minlength=len(queries))
    return float(np.minimum(hits, k).sum() / (k * len(queries)))


if __name__ == "__main__":
    main()
