from __future__ import annotations

import numpy as np

from dedup.encoder import FieldEmbeddings
from dedup.scoring import pair_similarities


def test_similarities_are_gathered_dot_products_with_nulls() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    nulls = np.zeros(50, bool)
    nulls[3] = True
    emb = FieldEmbeddings.from_dense({"f": vectors, "g": vectors[::-1].copy()}, {"f": nulls, "g": np.zeros(50, bool)})
    left, right = rng.integers(0, 50, 1000), rng.integers(0, 50, 1000)
    sims = pair_similarities(emb, left, right, chunk=64)  # several chunks
    expected = np.sum(vectors[left] * vectors[right], axis=1)
    has_null = (left == 3) | (right == 3)
    assert np.isnan(sims[has_null, 0]).all()
    assert np.allclose(sims[~has_null, 0], expected[~has_null], atol=1e-6)
    assert not np.isnan(sims[:, 1]).any()
