from __future__ import annotations

import numpy as np
import pytest

from dedup.combiner import Combiner


def _synthetic(rng: np.random.Generator, n_match: int, n_non: int) -> tuple[np.ndarray, np.ndarray]:
    match = np.clip(rng.normal(0.95, 0.05, size=(n_match, 3)), -1, 1)
    non = np.clip(rng.normal(0.3, 0.2, size=(n_non, 3)), -1, 1)
    sims = np.concatenate([match, non]).astype(np.float32)
    sims[rng.random(sims.shape) < 0.1] = np.nan  # missing values
    return sims, np.r_[np.ones(n_match, bool), np.zeros(n_non, bool)]


def _random(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(rng.normal(0.0, 0.25, size=(n, 3)), -1, 1).astype(np.float32)


def test_em_without_labels_separates_and_estimates_the_all_pairs_prior() -> None:
    rng = np.random.default_rng(0)
    sims, truth = _synthetic(rng, 1000, 9000)  # candidates: 1,000 matches among 10,000 pairs
    m_seed, _ = _synthetic(rng, 500, 0)
    total = 1_000_000  # all pairs of the (imagined) table; the other 990,000 look random
    combiner = Combiner(["a", "b", "c"]).fit_em(sims, m_seed, _random(rng, 20000), total_pairs=total)
    assert combiner.prior_ == pytest.approx(1000 / total, rel=0.1)
    predicted = combiner.predict_proba(sims) >= 0.5
    assert (predicted == truth).mean() > 0.98


def test_labelled_fit_weights_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    sims, truth = _synthetic(rng, 500, 2000)
    combiner = Combiner(["a", "b", "c"]).fit_labelled(sims, truth, _random(rng, 5000), total_pairs=100_000)
    assert combiner.prior_ == pytest.approx(500 / 100_000)
    weights = combiner.field_weights(sims)
    assert (weights[np.isnan(sims)] == 0).all()  # nulls are neutral
    log_odds = combiner.prior_weight() + weights.sum(axis=1)
    assert np.allclose(1 / (1 + 2.0**-log_odds), combiner.predict_proba(sims), atol=1e-5)
    again = Combiner.from_dict(combiner.to_dict())
    assert np.array_equal(again.predict_proba(sims), combiner.predict_proba(sims))
