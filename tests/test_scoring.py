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


def test_fields_embedded_side_by_side_are_the_fields_embedded_one_after_another(monkeypatch) -> None:
    import polars as pl

    from dedup.config import FieldKind
    from dedup.encoder import SiameseEncoder
    from dedup.scoring import embed_records

    # six fields of one kind share one tower: two threads run it at once
    rng = np.random.default_rng(1)
    fields = {f"f{i}": FieldKind.name for i in range(6)}
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    records = pl.DataFrame(
        {f: ["".join(rng.choice(letters, rng.integers(3, 20))) for _ in range(5000)] for f in fields}
    )
    encoder = SiameseEncoder(fields, buckets=4096, dim=16, max_chars=20)
    encoder.eval()
    monkeypatch.setenv("DEDUP_LANES", "1")
    alone = embed_records(encoder, records)
    monkeypatch.setenv("DEDUP_LANES", "2")
    for _ in range(3):
        together = embed_records(encoder, records)
        for f in fields:
            assert np.array_equal(together.tables[f], alone.tables[f])
            assert np.array_equal(together.codes[f], alone.codes[f])
