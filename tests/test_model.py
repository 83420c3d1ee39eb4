from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from dedup.blocking import block
from dedup.config import DedupConfig, FieldKind
from dedup.errors import ModelError
from dedup.model import DedupModel
from dedup.normalise import normalise_fields
from dedup.scoring import pair_similarities
from tests.conftest import febrl_config


@pytest.fixture(scope="module")
def trained(febrl1: pl.DataFrame, tiny_config: DedupConfig):
    normalised = normalise_fields(febrl1, tiny_config)
    pairs = block(febrl1, normalised, tiny_config)
    return DedupModel(tiny_config).fit(normalised, pairs), normalised, pairs


def test_label_free_model_separates_true_pairs(trained, febrl1: pl.DataFrame) -> None:
    model, normalised, pairs = trained
    proba = model.combiner_.predict_proba(pair_similarities(model.embed(normalised), pairs.left, pairs.right))
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
    assert np.array_equal(model.combiner_.predict_proba(before), loaded.combiner_.predict_proba(after))


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
    with pytest.raises(ModelError, match="not a dedup model directory"):
        DedupModel.load(tmp_path / "nowhere")


def test_other_format_version_is_refused(trained, tmp_path: Path) -> None:
    model, _, _ = trained
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelError, match="model format 99 is not supported"):
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
    meta["encoder_sha256"] = hashlib.sha256((path / "encoder.pt").read_bytes()).hexdigest()
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="cannot load encoder weights"):
        DedupModel.load(path)
    assert not marker.exists()


def test_supervised_fit_with_labels(febrl1: pl.DataFrame, tiny_config: DedupConfig) -> None:
    config = tiny_config.model_copy(update={"label_column": "cluster"})
    normalised = normalise_fields(febrl1, config)
    pairs = block(febrl1, normalised, config)
    labels = febrl1["cluster"].to_numpy().astype(object)
    held_out = np.arange(febrl1.height) % 3 == 0
    labels[held_out] = None
    model = DedupModel(config).fit(normalised, pairs, labels)
    both = held_out[pairs.left] & held_out[pairs.right]  # judged only on records it never saw
    proba = model.combiner_.predict_proba(pair_similarities(model.embed(normalised), pairs.left, pairs.right))
    truth = febrl1["cluster"].to_numpy()
    same = (truth[pairs.left] == truth[pairs.right])[both]
    predicted = proba[both] >= 0.5
    assert (predicted == same).mean() > 0.99 and (predicted & same).sum() / same.sum() > 0.95
