from __future__ import annotations

import numpy as np
import polars as pl
import torch

from dedup.config import FieldKind, TrainingConfig
from dedup.encoder import SiameseEncoder, encode_field
from dedup.training import Adam, contrastive_loss, field_examples, train_encoder


def test_contrastive_loss_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # distance sqrt(2) for both
    y = torch.tensor([1.0, 0.0])
    # positive: d^2 = 2; negative: max(1.5 - 1.414, 0)^2 = 0.0074; mean of the two
    assert torch.isclose(contrastive_loss(a, b, y, margin=1.5), torch.tensor((2 + (1.5 - 2**0.5) ** 2) / 2))


def test_adam_steps_exactly_as_torchs_fused_adam() -> None:
    """Bit for bit, a parameter that gets no gradient in some steps included (both skip it)."""

    def model() -> torch.nn.Module:
        torch.manual_seed(3)
        return torch.nn.ModuleDict({"a": torch.nn.EmbeddingBag(50, 8, mode="mean"), "b": torch.nn.Linear(8, 3)})

    ours, theirs = model(), model()
    mine, reference = Adam(ours.parameters(), lr=0.05), torch.optim.Adam(theirs.parameters(), lr=0.05, fused=True)
    rng = np.random.default_rng(0)
    for step in range(6):
        ids = torch.from_numpy(rng.integers(0, 50, size=(16, 4)))
        for net, optimiser in ((ours, mine), (theirs, reference)):
            optimiser.zero_grad()
            out = net["a"](ids)
            if step % 3 != 1:  # every third step leaves the linear layer without a gradient
                out = net["b"](out)
            out.pow(2).sum().backward()
            optimiser.step()
        for x, y in zip(ours.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(x, y)
    assert not torch.equal(ours["b"].weight, model()["b"].weight)  # the steps did move it


def test_training_makes_typos_closer_than_other_names(febrl1: pl.DataFrame) -> None:
    names = febrl1["surname"].str.to_lowercase()
    torch.manual_seed(0)
    encoder = SiameseEncoder({"surname": FieldKind.name}, 1 << 15, 64, 24)
    settings = TrainingConfig(batch_size=128, max_values=2000)  # default margin pushes negatives apart
    rng = np.random.default_rng(0)
    examples = {"surname": field_examples(encoder, names, "surname", 2000, rng)}
    history = train_encoder(encoder, examples, settings, rng, steps=120)
    assert np.mean(history[-10:]) < 0.5 * np.mean(history[:5])

    # typo pairs and different-name pairs that the model never saw as such
    probe = pl.Series(["thompson", "thomspon", "mcdonald", "macdonald", "white", "whyte"])
    vectors = encode_field(encoder, probe, "surname")
    typo = [float(vectors[i] @ vectors[i + 1]) for i in (0, 2, 4)]
    other = [float(vectors[i] @ vectors[j]) for i, j in ((0, 2), (0, 4), (2, 4))]
    assert min(typo) > 0.85 and max(other) < 0.5


def test_a_diverging_training_stops_with_a_clear_error(febrl1: pl.DataFrame) -> None:
    import pytest

    from dedup.errors import ModelError

    encoder = SiameseEncoder({"surname": FieldKind.name}, 1 << 12, 16, 24)
    settings = TrainingConfig(batch_size=64, max_values=500, learning_rate=1e38)
    rng = np.random.default_rng(0)
    examples = {"surname": field_examples(encoder, febrl1["surname"].str.to_lowercase(), "surname", 500, rng)}
    with pytest.raises(ModelError, match=r"training diverged: the loss is nan at step \d+ .*learning_rate 1e\+38"):
        train_encoder(encoder, examples, settings, rng, steps=20)
