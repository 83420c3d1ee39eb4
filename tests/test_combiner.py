from __future__ import annotations

import numpy as np

from dedup.combiner import Combiner


def _synthetic(rng: np.random.Generator, n_match: int, n_non: int) -> tuple[np.ndarray, np.ndarray]:
    match = np.clip(rng.normal(0.95, 0.05, size=(n_match, 3)), -1, 1)
    non = np.clip(rng.normal(0.3, 0.2, size=(n_non, 3)), -1, 1)
    sims = np.concatenate([match, non]).astype(np.float32)
    sims[rng.random(sims.shape) < 0.1] = np.nan  # missing values
    return sims, np.r_[np.ones(n_match, bool), np.zeros(n_non, bool)]


def test_em_without_labels_separates_and_estimates_prior() -> None:
    rng = np.random.default_rng(0)
    sims, truth = _synthetic(rng, 1000, 9000)
    m_seed, _ = _synthetic(rng, 500, 0)
    u_seed = np.clip(rng.normal(0.2, 0.2, size=(3000, 3)), -1, 1).astype(np.float32)
    combiner = Combiner(["a", "b", "c"]).fit_em(sims, m_seed, u_seed)
    assert abs(combiner.prior_ - 0.1) < 0.02
    predicted = combiner.predict_proba(sims) >= 0.5
    assert (predicted == truth).mean() > 0.98


def test_labelled_fit_weights_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    sims, truth = _synthetic(rng, 500, 2000)
    combiner = Combiner(["a", "b", "c"]).fit_labelled(sims, truth)
    weights = combiner.field_weights(sims)
    assert (weights[np.isnan(sims)] == 0).all()  # nulls are neutral
    log_odds = combiner.prior_weight() + weights.sum(axis=1)
    assert np.allclose(1 / (1 + 2.0**-log_odds), combiner.predict_proba(sims), atol=1e-5)
    again = Combiner.from_dict(combiner.to_dict())
    assert np.array_equal(again.predict_proba(sims), combiner.predict_proba(sims))
