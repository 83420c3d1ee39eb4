"""Training stage: contrastive training of the field encoders, and the pairs the combiner learns from.

The encoder learns with the contrastive loss ``y*d^2 + (1-y)*max(margin-d, 0)^2`` on the distance
between two L2-normalised field embeddings. Positives are a value and a synthetic corruption of it
(``corrupt``), pairs the model is confident are duplicates (self-training), or, when labels
exist, two values of the same entity; negatives are other records'
values, and hard negatives are the differing values of candidate pairs that are known (labels) or
confidently scored (self-training) to be non-matches. Training cost is bounded by
``steps * batch``, not by the number of records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from dedup.config import TrainingConfig
from dedup.corrupt import corrupt, edit_words_pool
from dedup.encoder import SiameseEncoder, to_codepoints, tokenise
from dedup.errors import ModelError
from dedup.progress import progress


@dataclass
class FieldExamples:
    """Distinct values of one field, ready for batching, plus labelled value-index pairs."""

    values: pl.Series  # (U,) the distinct values, sorted
    codes: np.ndarray  # (U, width) uint32 code points
    lengths: np.ndarray  # (U,)
    tokens: np.ndarray  # (U, T) hashed token ids
    positives: np.ndarray  # (k, 2) indices into the values: same entity, different value
    negatives: np.ndarray  # (k, 2) indices: hard negatives


def field_examples(
    encoder: SiameseEncoder,
    values: pl.Series,
    field: str,
    max_values: int,
    rng: np.random.Generator,
    positive_rows: tuple[np.ndarray, np.ndarray] | None = None,
    negative_rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> FieldExamples:
    """Sample up to ``max_values`` records' values and map record-row pairs to value pairs."""
    return examples_of(encoder, values, field, *drawn_rows(values.len(), max_values, rng, positive_rows, negative_rows))


PairRows = tuple[np.ndarray, np.ndarray]


def drawn_rows(
    n: int,
    max_values: int,
    rng: np.random.Generator,
    positive_rows: PairRows | None = None,
    negative_rows: PairRows | None = None,
) -> tuple[list[np.ndarray], list[PairRows | None]]:
    """``field_examples``' random part: up to ``max_values`` of ``n`` records, and of each set of
    record-row pairs; the rows they hold and the pairs (None for a set that is empty)."""
    rows = [rng.choice(n, size=min(n, max_values), replace=False)]
    pair_sets: list[PairRows | None] = []
    for pair_rows in (positive_rows, negative_rows):
        if pair_rows is None or len(pair_rows[0]) == 0:
            pair_sets.append(None)
            continue
        take = rng.choice(len(pair_rows[0]), size=min(len(pair_rows[0]), max_values), replace=False)
        left, right = pair_rows[0][take], pair_rows[1][take]
        pair_sets.append((left, right))
        rows += [left, right]
    return rows, pair_sets


def examples_of(
    encoder: SiameseEncoder, values: pl.Series, field: str, rows: list[np.ndarray], pair_sets: list[PairRows | None]
) -> FieldExamples:
    """``field_examples``' fixed part, for the rows and pairs ``drawn_rows`` drew: no randomness,
    so fields can be built side by side."""
    sample = values.gather(np.concatenate(rows))
    uniques = sample.drop_nulls().unique().sort()
    codes, lengths = to_codepoints(uniques, encoder.width(field))
    tokens = tokenise(codes, lengths, encoder.fields[field], encoder.buckets)

    lookup = pl.DataFrame({"value": uniques, "index": np.arange(uniques.len())})

    def value_pairs(pair: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        if pair is None:
            return np.empty((0, 2), np.int64)
        frame = pl.DataFrame({"l": values.gather(pair[0]), "r": values.gather(pair[1])})
        frame = frame.drop_nulls().filter(pl.col("l") != pl.col("r"))
        frame = frame.join(lookup, left_on="l", right_on="value").join(
            lookup, left_on="r", right_on="value", suffix="_r"
        )
        return np.stack([frame["index"].to_numpy(), frame["index_r"].to_numpy()], axis=1).astype(np.int64)

    return FieldExamples(uniques, codes, lengths, tokens, value_pairs(pair_sets[0]), value_pairs(pair_sets[1]))


VARIANTS = 4  # word-edited variants drawn per distinct value for a training run


class Adam:
    """Adam with torch's fused CPU kernel, the update ``torch.optim.Adam(fused=True)`` makes.

    Why not that class: constructing any ``torch.optim`` optimiser imports ``torch._dynamo``
    (``Optimizer.__init__`` is wrapped to keep the compiler out), 0.8 s of a 10k-record run's
    16 s. This calls the same kernel on the same state, so training is bit for bit the same
    (``tests/test_training.py`` checks it against torch's class). Parameters without a gradient
    are skipped, as torch skips them.
    """

    def __init__(self, parameters: Iterable[torch.Tensor], lr: float) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.lr = lr
        self.betas, self.eps = (0.9, 0.999), 1e-8
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [p for p in self.parameters if p.grad is not None]
        if not live:
            return
        for p in live:
            if id(p) not in self.state:  # torch's lazy state: step count (float32), moments
                self.state[id(p)] = (torch.zeros((), dtype=torch.float32), torch.zeros_like(p), torch.zeros_like(p))
        steps, means, squares = (list(s) for s in zip(*(self.state[id(p)] for p in live), strict=True))
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            live,
            [p.grad for p in live],
            means,
            squares,
            [],
            steps,
            amsgrad=False,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Hadsell-Chopra-LeCun contrastive loss on the euclidean distance of two embeddings."""
    d = (a - b).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()
    return (y * d.pow(2) + (1 - y) * torch.clamp(margin - d, min=0).pow(2)).mean()


def train_encoder(
    encoder: SiameseEncoder,
    examples: dict[str, FieldExamples],
    settings: TrainingConfig,
    rng: np.random.Generator,
    steps: int,
) -> list[float]:
    """Train ``encoder`` in place for ``steps`` steps over all fields; returns the loss per step."""
    optimiser = Adam(encoder.parameters(), lr=settings.learning_rate)  # one kernel per step
    batch = settings.batch_size
    history: list[float] = []
    if not any(len(ex.lengths) >= 2 for ex in examples.values()):
        return history  # every field has at most one distinct value: nothing to tell apart
    # word-level edits are polars queries: drawn for every value once (``VARIANTS`` each) and
    # read as code points once, then every step picks a variant and adds fresh character edits
    # (numpy; a step's strings were half of its non-torch time)
    variants = {
        field: to_codepoints(edit_words_pool(ex.values, encoder.fields[field], rng, VARIANTS), encoder.width(field))
        for field, ex in examples.items()
        if len(ex.lengths) >= 2
    }
    encoder.train()
    for _ in progress(range(steps), total=steps, desc="training encoder"):
        optimiser.zero_grad()
        batches: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for field, ex in examples.items():
            count = len(ex.lengths)
            if count < 2:
                continue
            kind = encoder.fields[field]
            anchor = rng.integers(0, count, size=batch)
            other = rng.integers(0, count, size=batch)
            distinct = other != anchor  # a value is not its own negative
            pool_codes, pool_lengths = variants[field]
            edited = anchor + count * rng.integers(0, VARIANTS, size=batch)
            c2, l2 = corrupt(pool_codes[edited], pool_lengths[edited], kind, rng)
            left = [ex.tokens[anchor], ex.tokens[anchor[distinct]]]
            right = [tokenise(c2, l2, kind, encoder.buckets), ex.tokens[other[distinct]]]
            labels = [np.ones(batch), np.zeros(int(distinct.sum()))]
            for pairs, target in ((ex.positives, 1.0), (ex.negatives, 0.0)):
                if len(pairs):
                    pick = pairs[rng.integers(0, len(pairs), size=batch // 2)]
                    left.append(ex.tokens[pick[:, 0]])
                    right.append(ex.tokens[pick[:, 1]])
                    labels.append(np.full(len(pick), target))
            ta = torch.from_numpy(np.concatenate(left))
            tb = torch.from_numpy(np.concatenate(right))
            batches[field] = (ta, tb, torch.from_numpy(np.concatenate(labels)).float())
        embedded = encoder.forward_fields({f: torch.cat([ta, tb]) for f, (ta, tb, _) in batches.items()})
        total = torch.zeros(())
        for field, (ta, _, y) in batches.items():
            e = embedded[field]
            total = total + contrastive_loss(e[: len(ta)], e[len(ta) :], y, settings.margin)
        loss = float(total.detach())
        if not np.isfinite(loss):
            raise ModelError(
                f"training diverged: the loss is {loss} at step {len(history) + 1} "
                f"(training.learning_rate {settings.learning_rate} is too high for this data; try a tenth of it)"
            )
        total.backward()
        optimiser.step()
        history.append(loss)
    encoder.eval()
    return history
