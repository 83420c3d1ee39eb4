from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from dedup.blocking import CandidatePairs, block
from dedup.config import DedupConfig, EmbeddingPass, FieldKind
from dedup.corrupt import corrupt_values
from dedup.encoder import to_codepoints, tokenise
from dedup.errors import ModelError
from dedup.frequencies import field_statistics
from dedup.model import DedupModel, random_non_candidates, synthetic_duplicate_evidence, training_sample
from dedup.normalise import normalise_fields
from dedup.scoring import compare_pairs, pair_similarities
from tests.conftest import febrl_config


def probabilities(model: DedupModel, normalised: pl.DataFrame, pairs: CandidatePairs) -> np.ndarray:
    """The model's match probability for each candidate pair."""
    evidence = compare_pairs(
        model.embed(normalised), field_statistics(normalised, model.config), pairs.left, pairs.right
    )
    return model.combiner_.predict_proba(evidence)


@pytest.fixture(scope="module")
def trained(febrl1: pl.DataFrame, tiny_config: DedupConfig):
    normalised = normalise_fields(febrl1, tiny_config)
    pairs = block(febrl1, normalised, tiny_config)
    return DedupModel(tiny_config).fit(normalised, pairs), normalised, pairs


def test_label_free_model_separates_true_pairs(trained, febrl1: pl.DataFrame) -> None:
    model, normalised, pairs = trained
    proba = probabilities(model, normalised, pairs)
    truth = febrl1["cluster"].to_numpy()
    same = truth[pairs.left] == truth[pairs.right]
    predicted = proba >= 0.5
    precision = (predicted & same).sum() / predicted.sum()
    recall = (predicted & same).sum() / same.sum()
    assert precision > 0.97 and recall > 0.97


def test_save_load_round_trips_exactly(trained, tmp_path: Path, tiny_config: DedupConfig) -> None:
    model, normalised, pairs = trained
    model.save(tmp_path / "m")
    loaded = DedupModel.load(tmp_path / "m", expect=tiny_config)
    before = pair_similarities(model.embed(normalised), pairs.left, pairs.right)
    after = pair_similarities(loaded.embed(normalised), pairs.left, pairs.right)
    assert np.array_equal(before, after, equal_nan=True)
    assert np.array_equal(probabilities(model, normalised, pairs), probabilities(loaded, normalised, pairs))


def test_load_rejects_other_config_and_tampering(trained, tmp_path: Path) -> None:
    model, _, _ = trained
    path = model.save(tmp_path / "m")
    other = febrl_config().model_copy(update={"fields": {"given_name": FieldKind.name}})
    with pytest.raises(ModelError, match="trained for fields"):
        DedupModel.load(path, expect=other)
    weights = path / "encoder.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="checksum"):
        DedupModel.load(path)
    with pytest.raises(ModelError, match="no such model directory"):
        DedupModel.load(tmp_path / "nowhere")


def test_other_format_version_is_refused(trained, tmp_path: Path) -> None:
    model, _, _ = trained
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match="model format 99 is not supported"):
        DedupModel.load(path)


def _rehash(path: Path, name: str) -> None:
    """What a careful tamperer does: fix the manifest after changing a file."""
    meta = json.loads((path / "meta.json").read_text())
    meta["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))


def test_every_model_file_is_checked_and_damage_is_one_line(trained, tmp_path: Path) -> None:
    model, _, _ = trained
    original = model.save(tmp_path / "good")

    def damaged(name: str) -> Path:
        import shutil

        copy = tmp_path / f"bad-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(original, copy)
        return copy

    path = damaged("combiner")  # a tampered table is refused, however plausible
    tables = json.loads((path / "combiner.json").read_text())
    tables["prior"] = 0.4
    (path / "combiner.json").write_text(json.dumps(tables))
    with pytest.raises(ModelError, match="combiner.json does not match its checksum"):
        DedupModel.load(path)
    _rehash(path, "combiner.json")  # ... unless the manifest was rewritten too: then it is the user's model
    DedupModel.load(path)

    path = damaged("list")
    (path / "meta.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match=r"damaged meta.json \(expected an object, found list\)"):
        DedupModel.load(path)

    path = damaged("combiner list")
    (path / "combiner.json").write_text("[1, 2]")
    _rehash(path, "combiner.json")
    with pytest.raises(ModelError, match=r"damaged combiner.json"):
        DedupModel.load(path)

    path = damaged("directory")
    (path / "encoder.pt").unlink()
    (path / "encoder.pt").mkdir()
    with pytest.raises(ModelError, match="encoder.pt is not a regular file"):
        DedupModel.load(path)

    path = damaged("fifo")
    (path / "config.yaml").unlink()
    os.mkfifo(path / "config.yaml")  # reading it would block for ever
    with pytest.raises(ModelError, match="config.yaml is not a regular file"):
        DedupModel.load(path)

    path = damaged("nan")
    state = torch.load(path / "encoder.pt", weights_only=True)
    state["field_scale"] = state["field_scale"] * float("nan")
    torch.save(state, path / "encoder.pt")
    _rehash(path, "encoder.pt")
    with pytest.raises(ModelError, match="encoder.pt holds non-finite weights"):
        DedupModel.load(path)


class _Payload:
    def __reduce__(self):  # what a malicious pickle would run on load
        return (Path.touch, (Path(os.environ["DEDUP_TEST_MARKER"]),))


def test_pickled_code_in_weights_is_never_executed(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _, _ = trained
    path = model.save(tmp_path / "m")
    marker = tmp_path / "pwned"
    monkeypatch.setenv("DEDUP_TEST_MARKER", str(marker))
    torch.save({"towers.name.bag.weight": _Payload()}, path / "encoder.pt")
    meta = json.loads((path / "meta.json").read_text())  # a careful attacker fixes the checksum too
    meta["files"]["encoder.pt"] = hashlib.sha256((path / "encoder.pt").read_bytes()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="cannot load encoder weights"):
        DedupModel.load(path)
    assert not marker.exists()


def test_synthetic_duplicates_read_the_records_own_embeddings_with_the_bits_encoding_gives(
    trained, tiny_config: DedupConfig
) -> None:
    """The seed of m reads a sampled record's embedding from the records' table and encodes only
    the corrupted copies: every cosine it keeps is the one encoding both sides gives, bit for bit."""
    model, normalised, _ = trained
    encoder, count = model.encoder_, 400
    statistics = field_statistics(normalised, tiny_config)
    embeddings = model.embed(normalised)
    evidence = synthetic_duplicate_evidence(
        encoder, normalised, statistics, embeddings, np.random.default_rng(3), count
    )
    rng = np.random.default_rng(3)  # its draws replayed: the rows, then per field a copy of each and which are edited
    rows = rng.integers(0, normalised.height, size=count)
    compared = 0
    with torch.inference_mode():
        for j, (field, kind) in enumerate(encoder.fields.items()):
            values, width = normalised[field].gather(rows), encoder.width(field)
            codes, lengths = to_codepoints(values, width)
            copies, copy_lengths = corrupt_values(values, kind, rng, width)
            changed = (rng.random(count) < 0.35) & (lengths > 0) & (copy_lengths > 0)
            a = encoder(torch.from_numpy(tokenise(codes, lengths, kind, encoder.buckets, trim=True)), field)
            b = encoder(torch.from_numpy(tokenise(copies, copy_lengths, kind, encoder.buckets, trim=True)), field)
            np.testing.assert_array_equal(evidence.sims[changed, j], (a * b).sum(dim=1).numpy()[changed])
            compared += int(changed.sum())
    assert compared > 100


def test_supervised_fit_with_labels(febrl1: pl.DataFrame, tiny_config: DedupConfig) -> None:
    config = tiny_config.model_copy(update={"label_column": "cluster"})
    normalised = normalise_fields(febrl1, config)
    pairs = block(febrl1, normalised, config)
    labels = febrl1["cluster"].to_numpy().astype(object)
    held_out = np.arange(febrl1.height) % 3 == 0
    labels[held_out] = None
    model = DedupModel(config).fit(normalised, pairs, labels)
    both = held_out[pairs.left] & held_out[pairs.right]  # judged only on records it never saw
    proba = probabilities(model, normalised, pairs)
    truth = febrl1["cluster"].to_numpy()
    same = (truth[pairs.left] == truth[pairs.right])[both]
    predicted = proba[both] >= 0.5
    assert (predicted == same).mean() > 0.99 and (predicted & same).sum() / same.sum() > 0.95


def test_without_self_training_one_round_trains_every_step_and_encodes_once(
    trained, febrl1: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``training.self_training: false``: the encoder trains all its steps on synthetic
    duplicates, the records are encoded and the combiner fitted once, and the model still
    separates Febrl's duplicates."""
    import dedup.model

    full, normalised, pairs = trained
    config = febrl_config("\n  self_training: false\n")  # appended under training
    assert not config.training.self_training and full.config.training.self_training
    encodings: list[int] = []
    embed = dedup.model.embed_records
    monkeypatch.setattr(dedup.model, "embed_records", lambda e, n: encodings.append(n.height) or embed(e, n))
    once = DedupModel(config).fit(normalised, pairs)
    assert encodings == [normalised.height]
    assert len(once.training_loss_) == len(full.training_loss_)  # the same steps in one round
    encodings.clear()
    DedupModel(full.config).fit(normalised, pairs)
    assert encodings == [normalised.height] * 2  # self-training encodes after each round
    proba = probabilities(once, normalised, pairs)
    truth = febrl1["cluster"].to_numpy()
    same = truth[pairs.left] == truth[pairs.right]
    predicted = proba >= 0.5
    assert (predicted & same).sum() / predicted.sum() > 0.97 and (predicted & same).sum() / same.sum() > 0.97
    assert not np.array_equal(proba, probabilities(full, normalised, pairs))  # another model


def test_training_sample_bounds_the_pairs_and_keeps_their_weight() -> None:
    rng = np.random.default_rng(0)
    left = np.sort(rng.integers(0, 5000, 20000))
    right = left + rng.integers(1, 50, 20000)
    pairs = CandidatePairs(left, right, np.zeros(20000, np.int16), ("p",), (20000,))
    assert training_sample(pairs, 5100, 20000, 100, rng) is None  # small enough: train on everything
    sample = training_sample(pairs, 5100, 1000, 300, rng)
    assert len(sample.pairs) == 1000 and sample.pair_weight == 20.0
    assert np.all(np.diff(sample.rows) > 0) and len(sample.u_rows) == 300
    # positions map back to the original rows, and each sampled pair is a real candidate pair
    original = set(zip(left.tolist(), right.tolist(), strict=True))
    back = zip(sample.rows[sample.pairs.left].tolist(), sample.rows[sample.pairs.right].tolist(), strict=True)
    assert all(pair in original for pair in back)


def test_a_model_fitted_on_a_pair_sample_scores_like_one_fitted_on_all(trained, febrl1: pl.DataFrame) -> None:
    full, normalised, pairs = trained
    config = febrl_config("\n  max_pairs: 1000\n")  # appended under training: 1,000 of 7,513 candidate pairs
    assert config.training.max_pairs == 1000
    sampled = DedupModel(config).fit(normalised, pairs)
    proba = probabilities(sampled, normalised, pairs)
    truth = febrl1["cluster"].to_numpy()
    same = truth[pairs.left] == truth[pairs.right]
    predicted = proba >= 0.5
    assert (predicted & same).sum() / predicted.sum() > 0.97 and (predicted & same).sum() / same.sum() > 0.97
    # the weighted sample keeps the learned match rate close to the full fit's
    assert abs(np.log(sampled.combiner_.prior_ / full.combiner_.prior_)) < np.log(2)


def test_a_config_with_an_embedding_pass_also_trains_on_a_bounded_sample(febrl1: pl.DataFrame) -> None:
    """kNN neighbours are looked for among the sampled records only, and kept at the share that
    makes each stand for as many pairs as a sampled rule pair."""
    config = febrl_config("\n  max_pairs: 1000\n").model_copy(
        update={"blocking": (*febrl_config().blocking, EmbeddingPass(k=5))}
    )
    normalised = normalise_fields(febrl1, config)
    rule_pairs = block(febrl1, normalised, config)
    model = DedupModel(config).fit(normalised, rule_pairs)
    assert 0.0 < model._neighbour_share < 1.0
    pairs = model.candidates(rule_pairs, model.embed(normalised))  # at inference: every neighbour
    assert len(pairs) > len(rule_pairs)
    proba = probabilities(model, normalised, pairs)
    truth = febrl1["cluster"].to_numpy()
    same = truth[pairs.left] == truth[pairs.right]
    predicted = proba >= 0.5
    assert (predicted & same).sum() / predicted.sum() > 0.97 and (predicted & same).sum() / same.sum() > 0.97


def test_random_pairs_standing_for_the_non_candidates_are_never_candidates() -> None:
    rng = np.random.default_rng(3)
    left = rng.integers(0, 300, 20_000)
    right = rng.integers(0, 300, 20_000)
    pairs = CandidatePairs(np.minimum(left, right), np.maximum(left, right), np.zeros(20_000, np.int16), ("p",))
    a, b = random_non_candidates(np.arange(300), 5_000, pairs, rng)
    candidates = set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    drawn = list(zip(a.tolist(), b.tolist(), strict=True))
    assert drawn and all(x < y for x, y in drawn)
    assert not candidates.intersection(drawn)
    # and nothing else is dropped: about the share of pairs that are not candidates survives
    share = 1 - len(candidates) / (300 * 299 / 2)
    assert abs(len(drawn) / 5_000 - share) < 0.05


def test_pairs_are_weighed_a_chunk_at_a_time_with_the_same_result(
    trained, febrl1: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``score_pairs`` weighs pairs in chunks (memory at 1M: a 2M-pair piece's float64
    intermediates at once were ~1 GB); the table must not depend on where the chunks end."""
    import dedup.scoring as scoring

    model, normalised, pairs = trained
    args = (
        "rec_id",
        model.combiner_,
        febrl1["rec_id"],
        model.embed(normalised),
        field_statistics(normalised, model.config),
        pairs,
    )
    whole = scoring.score_pairs(*args)
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 37)  # many chunks, the last one short
    assert len(pairs) > 10 * 37 and len(pairs) % 37
    chunked = scoring.score_pairs(*args)
    assert chunked.equals(whole)
    empty = CandidatePairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16), pairs.pass_names)
    assert scoring.score_pairs(*args[:-1], empty).columns == whole.columns
