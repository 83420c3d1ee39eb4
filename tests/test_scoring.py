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


def test_a_number_field_is_compared_by_how_far_apart_its_numbers_are() -> None:
    """A price's evidence is the two numbers' closeness, whatever their digits look like:
    59.99 and 61.00 are close, 399 and 39.90 far; equal amounts written differently agree
    exactly; a missing number is null. The same from the statistics of a few rows and from
    statistics saved and read back (what ``dedup explain`` and the score pieces use)."""
    import polars as pl

    from dedup.config import DedupConfig, FieldKind
    from dedup.encoder import SiameseEncoder
    from dedup.frequencies import FieldStatistics, field_statistics, number_closeness
    from dedup.normalise import normalise_fields
    from dedup.scoring import compare_pairs, embed_records

    config = DedupConfig(id_column="id", fields={"title": FieldKind.name, "price": FieldKind.number})
    records = pl.DataFrame(
        {
            "title": ["acme drive", "acme drive", "acme drive", "acme drive", "acme drive", "acme drive"],
            "price": ["$59.99", "61,00 EUR", "$399", "39.90", "$1,299.00", None],
        }
    )
    normalised = normalise_fields(records, config)
    statistics = field_statistics(normalised, config)
    embeddings = embed_records(SiameseEncoder(dict(config.fields), buckets=512, dim=8, max_chars=20), normalised)
    left, right = np.array([0, 2, 4, 0, 3]), np.array([1, 3, 4, 5, 2])
    sims = compare_pairs(embeddings, statistics, left, right).sims[:, 1]
    assert np.allclose(sims[:3], [1 - 1.01 / 61.0, 1 - 359.1 / 399.0, 1.0], atol=1e-6)
    assert np.isnan(sims[3]) and sims[4] == sims[1]
    assert sims[0] > 0.98 and sims[1] < 0.11
    assert np.isnan(number_closeness(np.array([1.0, np.nan]), np.array([np.nan, 2.0]))).all()
    assert number_closeness(np.array([0.0, -5.0]), np.array([0.0, 5.0])).tolist() == [1.0, 0.0]
    rows = np.array([2, 3])
    some = field_statistics(normalised, config, rows=rows)
    again = FieldStatistics.from_arrays(statistics.to_arrays(), list(config.fields))
    for stats, (a, b) in ((some, (np.array([0]), np.array([1]))), (again, (np.array([2]), np.array([3])))):
        rows_embeddings = (
            embeddings
            if stats is again
            else embed_records(SiameseEncoder(dict(config.fields), buckets=512, dim=8, max_chars=20), normalised[rows])
        )
        assert compare_pairs(rows_embeddings, stats, a, b).sims[0, 1] == sims[1]
