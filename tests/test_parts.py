"""The stage pieces add up to the whole: partitions, record ranges and pair ranges lose nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

import dedup.blocking
from dedup import parts
from dedup.blocking import block
from dedup.clustering import cluster_records
from dedup.config import DedupConfig, parse_config
from dedup.io import load_candidates, load_input
from dedup.model import DedupModel
from dedup.scoring import embed_records
from tests.conftest import FEBRL_YAML, TINY_TRAINING

# two exact passes and a sorted neighbourhood pass without block_on (which cannot be partitioned)
PASSES = [["surname"], ["given_name", "postcode"], {"sorted_neighbourhood": "surname", "window": 5}]


@pytest.fixture(scope="module")
def config() -> DedupConfig:
    raw = yaml.safe_load(FEBRL_YAML + TINY_TRAINING)
    return parse_config(yaml.safe_dump({**raw, "blocking": PASSES}))


@pytest.fixture(scope="module")
def model_dir(febrl1_file: Path, config: DedupConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    records, normalised = load_input(febrl1_file, config)
    model = DedupModel(config).fit(normalised, block(records, normalised, config))
    return model.save(tmp_path_factory.mktemp("model") / "model")


def test_ranges_cover_everything_once() -> None:
    assert parts.ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert parts.ranges(0, 4) == [(0, 0)]


def test_hash_partitions_of_each_pass_add_up_to_the_pass(febrl1_file: Path, config: DedupConfig, tmp_path) -> None:
    records, normalised = load_input(febrl1_file, config)
    whole = block(records, normalised, config)
    pieces = [
        parts.block_part(febrl1_file, config, i, k, 4, tmp_path / "blocks")
        for i in range(len(config.passes))
        for k in range(4)
    ]
    sizes = [pl.read_parquet(p.pairs).height for p in pieces]
    # each piece says which pass it holds; a pass's partitions agree on its largest block
    assert [(p.pass_index, p.part) for p in pieces] == [(i, k) for i in range(len(config.passes)) for k in range(4)]
    assert all(len({p.largest_block for p in pieces if p.pass_index == i}) == 1 for i in range(len(config.passes)))
    assert sum(1 for s in sizes[:4] if s > 0) > 1  # an exact pass really is spread over partitions
    assert sizes[9:] == [0, 0, 0] and sizes[8] > 0  # sorted neighbourhood without block_on: partition 0
    merged = load_candidates(parts.merge_blocks(config, pieces, tmp_path))
    assert np.array_equal(merged.left, whole.left) and np.array_equal(merged.right, whole.right)
    assert np.array_equal(merged.pass_index, whole.pass_index) and merged.pass_counts == whole.pass_counts


def test_record_ranges_encode_like_the_whole_table(febrl1_file: Path, config: DedupConfig, model_dir, tmp_path) -> None:
    _, normalised = load_input(febrl1_file, config)
    pieces = [parts.encode_part(febrl1_file, config, model_dir, a, b, tmp_path) for a, b in parts.ranges(1000, 300)]
    joined = parts.load_embeddings(pieces, config.field_names)
    whole = embed_records(DedupModel.load(model_dir).encoder_, normalised)
    for f in config.field_names:
        assert np.array_equal(joined.nulls(f), whole.nulls(f))
        assert np.allclose(joined.dense(f), whole.dense(f), atol=1e-6)


def test_stored_arrays_are_mapped_from_the_file_with_the_values_saved(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "table.0": rng.standard_normal((70, 16)).astype(np.float32),
        "codes.0": rng.integers(0, 70, 1000).astype(np.int32),
        "fortran": np.asfortranarray(rng.standard_normal((5, 3))),
        "empty": np.zeros((0, 16), np.float32),
    }
    np.savez(tmp_path / "stored.npz", **arrays)
    np.savez_compressed(tmp_path / "compressed.npz", **arrays)
    for name, saved in arrays.items():
        stored = parts.stored_array(tmp_path / "stored.npz", name)
        assert stored.dtype == saved.dtype and np.array_equal(stored, saved), name
        assert isinstance(stored, np.memmap) == (saved.size > 0)
        assert np.array_equal(parts.stored_array(tmp_path / "compressed.npz", name), saved)
    stored = parts.stored_array(tmp_path / "stored.npz", "codes.0")
    stored[0] = -1  # copy-on-write: the file keeps its values
    assert np.array_equal(parts.stored_array(tmp_path / "stored.npz", "codes.0"), arrays["codes.0"])


def test_pair_ranges_and_edges_give_the_unpartitioned_scores_and_clusters(
    febrl1_file: Path, config: DedupConfig, model_dir, tmp_path
) -> None:
    records, normalised = load_input(febrl1_file, config)
    candidates = parts.merge_blocks(
        config, [parts.block_part(febrl1_file, config, i, 0, 1, tmp_path) for i in range(len(config.passes))], tmp_path
    )
    embeddings = [parts.encode_part(febrl1_file, config, model_dir, 0, 1000, tmp_path / "embeddings")]
    statistics = parts.statistics_part(febrl1_file, config, tmp_path)
    total = parts.candidate_count(candidates)
    scored = [
        parts.score_part(febrl1_file, config, model_dir, candidates, embeddings, statistics, a, b, tmp_path / "scores")
        for a, b in parts.ranges(total, 700)
    ]
    pairs_path = parts.merge_scores(scored, tmp_path)
    pairs = pl.read_parquet(pairs_path)
    assert pairs.height == total and len(scored) == -(-total // 700)
    assert not any(p.pairs.exists() for p in scored)  # merged, then removed

    clusters = pl.read_parquet(parts.cluster_part(febrl1_file, config, pairs_path, tmp_path))
    everything = load_candidates(candidates)
    expected = cluster_records(
        records,
        config.id_column,
        everything.left,
        everything.right,
        pairs["match_probability"].to_numpy(),
        config.threshold,
        config.clustering,
    )
    assert clusters.drop("cluster_confidence").equals(expected.drop("cluster_confidence"))
    assert np.allclose(
        clusters["cluster_confidence"].to_numpy(), expected["cluster_confidence"].to_numpy(), equal_nan=True
    )


@pytest.mark.parametrize("max_pairs", [None, 1000], ids=["all-pairs", "sampled-pairs-every-record"])
def test_training_on_every_record_leaves_the_scoring_candidates_so_neighbours_are_searched_once(
    febrl1_file: Path, config: DedupConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_pairs: int | None
) -> None:
    raw = yaml.safe_load(FEBRL_YAML + TINY_TRAINING)
    if max_pairs is not None:  # training samples the pairs, but draws every record (random_pairs >= N)
        raw["training"] = {**raw.get("training", {}), "max_pairs": max_pairs}
    blocking = [["surname"], ["given_name"], ["postcode"], {"embedding": {"k": 3}}]
    with_embedding = parse_config(yaml.safe_dump({**raw, "blocking": blocking}))
    records, normalised = load_input(febrl1_file, with_embedding)
    rules = parts.block_part(febrl1_file, with_embedding, 0, 0, 1, tmp_path / "blocks")
    candidates = parts.merge_blocks(with_embedding, [rules], tmp_path)
    searches: list[int] = []
    search = dedup.blocking.embedding_neighbours
    monkeypatch.setattr(dedup.blocking, "embedding_neighbours", lambda *a: searches.append(1) or search(*a))

    model_dir = parts.train_part(febrl1_file, with_embedding, candidates, tmp_path / "train" / "model")
    assert len(searches) == 2  # the provisional and the final encoder's neighbours, in training
    known = parts.neighbours_dir(model_dir) / "candidates.parquet"
    embeddings = [str(parts.encode_part(febrl1_file, with_embedding, model_dir, 0, records.height, tmp_path / "emb"))]
    reused = parts.complete_candidates(with_embedding, candidates, embeddings, tmp_path / "s1", known)
    assert len(searches) == 2 and reused == tmp_path / "s1" / "candidates.parquet"  # scoring searched nothing
    searched = parts.complete_candidates(with_embedding, candidates, embeddings, tmp_path / "s2")
    assert len(searches) == 3
    a, b = load_candidates(reused), load_candidates(searched)  # and the search would find the same
    assert np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
    assert np.array_equal(a.pass_index, b.pass_index) and a.pass_counts == b.pass_counts
    assert "embedding(k=3)" in a.pass_names and len(a) > len(load_candidates(candidates))
    if max_pairs is not None:
        assert len(load_candidates(candidates)) > max_pairs  # the model trained on a sample of them


def test_block_encode_statistics_and_score_pieces_never_read_the_whole_table(
    febrl1_file: Path, config: DedupConfig, model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a process of their own (a Dask worker, a Prefect task run elsewhere), pieces read their
    rows and the config's columns (``read_rows``), never every column of every row."""
    from dedup import io

    embeddings = [parts.encode_part(febrl1_file, config, model_dir, 0, 1000, tmp_path / "e0")]
    candidates = parts.merge_blocks(config, [parts.block_part(febrl1_file, config, 0, 0, 1, tmp_path / "b0")], tmp_path)
    statistics = parts.statistics_part(febrl1_file, config, tmp_path)
    args = (febrl1_file, config, model_dir, candidates, embeddings, statistics, 0, 500, tmp_path / "s0")
    expected = pl.read_parquet(parts.score_part(*args).pairs)  # what an in-process run gives

    io._LOADED.clear()  # a fresh process: nothing read yet

    def whole_table(*args: object) -> None:
        raise AssertionError("a piece read the whole input")

    monkeypatch.setattr(io, "read_records", whole_table)
    monkeypatch.setattr(parts, "load_input", whole_table)
    fresh = tmp_path / "fresh"
    pieces = [parts.encode_part(febrl1_file, config, model_dir, a, b, fresh / "e") for a, b in parts.ranges(1000, 400)]
    block = parts.merge_blocks(config, [parts.block_part(febrl1_file, config, 0, 0, 1, fresh / "b")], fresh)
    statistics = parts.statistics_part(febrl1_file, config, fresh)
    scored = pl.read_parquet(
        parts.score_part(febrl1_file, config, model_dir, block, pieces, statistics, 0, 500, fresh / "s").pairs
    )
    assert_frame_equal(scored, expected)
