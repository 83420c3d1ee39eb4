from __future__ import annotations

import numpy as np
import pytest

from dedup.neighbours import EXACT_LIMIT, RecordVectors, nearest_neighbours


def _clustered(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in small groups (a record and its near-duplicates) around random centres,
    and each vector's group."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 4, dim))
    group = rng.integers(0, len(centres), size=n)
    vectors = centres[group] + 0.4 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), group


def _as_sets(left: np.ndarray, right: np.ndarray) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        found.setdefault(a, set()).add(b)
    return found


def test_the_approximate_search_finds_the_near_duplicates_among_the_exact_neighbours() -> None:
    """What blocking needs: of each record's exact 10 nearest, the ones from its own group. (The
    rest of the 10 are near-ties scattered over the space; the approximate search finds only about
    60% of those, see benchmarks/knn.py.)"""
    vectors, group = _clustered(EXACT_LIMIT + 5000, 96)
    exact = _as_sets(*nearest_neighbours(vectors, vectors, 10, None, exclude_self=True, method="exact"))
    approx = _as_sets(*nearest_neighbours(vectors, vectors, 10, None, exclude_self=True))  # auto: approximate
    assert all(a not in bs and len(bs) == 10 for a, bs in approx.items())  # never itself, always k
    mates = [(a, b) for a, bs in exact.items() for b in bs if group[a] == group[b]]
    found = sum(1 for a, b in mates if b in approx.get(a, set()))
    assert len(mates) > 20_000 and found / len(mates) >= 0.95


@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_min_similarity_and_linking_two_sets(method: str) -> None:
    vectors, _ = _clustered(2000, 32, seed=1)
    left, right = nearest_neighbours(vectors[:500], vectors, 3, 0.5, method=method)
    sims = (vectors[:500][left] * vectors[right]).sum(axis=1)
    assert len(left) > 0 and (sims >= 0.5 - 1e-6).all()
    assert (left == right).sum() == len(np.unique(left))  # linking: each query finds itself first


@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_vectors_gathered_from_field_tables_find_what_the_joined_vectors_find(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search over ``RecordVectors`` (gathered from the field tables in blocks, never all
    held) finds the neighbours the materialised vectors find: the PCA's sample, the projection
    (in blocks of 700 here) and the re-rank read the same rows."""
    import dedup.neighbours

    monkeypatch.setattr(dedup.neighbours, "VECTOR_ROWS", 700)
    rng = np.random.default_rng(3)
    n, tables, codes = 4000, [], []
    for distinct, width in ((300, 8), (2500, 16), (60, 8)):
        table, _ = _clustered(distinct + 1, width, seed=distinct)
        table[0] = 0.0  # nulls
        tables.append(table)
        codes.append(rng.integers(0, distinct + 1, size=n).astype(np.int32))
    vectors = RecordVectors.measure(tables, codes)
    dense = vectors.dense()
    joined = np.concatenate([t[c] for t, c in zip(tables, codes, strict=True)], axis=1)
    assert np.array_equal(dense, joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12))
    gathered = nearest_neighbours(vectors, vectors, 5, None, exclude_self=True, method=method)
    materialised = nearest_neighbours(dense, dense, 5, None, exclude_self=True, method=method)
    assert _as_sets(*gathered) == _as_sets(*materialised) and len(gathered[0]) == 5 * n
