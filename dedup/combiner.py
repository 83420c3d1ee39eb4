"""The combiner: per-field similarities (and null indicators) -> calibrated match probability.

It is a small log-linear model in the Fellegi-Sunter form that Splink users know: each field's
cosine similarity falls into a level (exact, very close, ..., different, or null), and each level
carries a learned weight log2(m/u), where m and u are the level's frequency among matches and
non-matches. The match log-odds is the prior's log-odds plus the field weights, so each field's
weight is exactly its contribution to the score, and the probability is calibrated when m, u and
the prior are.

The model describes *all* pairs of records, not only the candidates: blocking chooses which pairs
get scored, it must not change what their evidence means. (Fitting u on candidates alone learns
that non-matches often share a first name, because a first-name pass put them there, and then
discounts a real first-name agreement.) So the fit sees the candidate pairs plus a sample of
random pairs standing for the non-candidates, each weighted by how many pairs it represents, and
the prior is the match rate over all pairs.

Without labels m, u and the prior are fitted by expectation-maximisation on that mixture,
seeded with m from synthetic corrupted duplicates and u from the random pairs. With labels, m
and u are counted from labelled candidate pairs and the random pairs. A null on either side is
neutral (weight 0): absence of a value is not evidence either way.

One rule sits outside the fitted tables: two records that agree exactly on every configured field
are duplicates (nothing the config compares can tell them apart), so their log-odds are at least
``IDENTICAL_BITS``. Without it a table of identical rows would leave EM nothing to learn from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Lower bounds of the similarity levels, from "exact" down; below the last is "different".
DEFAULT_EDGES: tuple[float, ...] = (0.9999, 0.95, 0.85, 0.7, 0.5, 0.3)
NULL_LEVEL = 0
EXACT_LEVEL = 1
IDENTICAL_BITS = 30.0


class Combiner:
    """Fellegi-Sunter style combiner over binned embedding similarities.

    Parameters are set in ``__init__``; ``fit_em`` / ``fit_labelled`` learn ``m_``, ``u_`` (arrays
    ``(fields, levels)``) and ``prior_`` (the share of candidate pairs that match).
    """

    def __init__(
        self,
        fields: list[str],
        edges: tuple[float, ...] = DEFAULT_EDGES,
        em_iterations: int = 30,
        smoothing: float = 1e-4,
    ) -> None:
        self.fields = list(fields)
        self.edges = tuple(edges)
        self.em_iterations = em_iterations
        self.smoothing = smoothing

    @property
    def n_levels(self) -> int:
        return len(self.edges) + 2  # null, one per edge, "different"

    def levels(self, sims: np.ndarray) -> np.ndarray:
        """Level per pair and field: 0 null, 1 exact ... n_levels-1 different. ``sims`` is (P, F)."""
        ascending = np.sort(np.asarray(self.edges, dtype=np.float32))
        # 1 + the number of edges above the similarity (a binary search, not a (P, F, edges) array)
        levels = (1 + len(ascending) - np.searchsorted(ascending, sims, side="right")).astype(np.int8)
        levels[np.isnan(sims)] = NULL_LEVEL
        return levels

    def _frequencies(self, levels: np.ndarray, weights: np.ndarray) -> np.ndarray:
        table = np.empty((levels.shape[1], self.n_levels))
        for f in range(levels.shape[1]):
            counts = np.bincount(levels[:, f], weights=weights, minlength=self.n_levels).astype(np.float64)
            counts[NULL_LEVEL] = 0.0
            counts[1:] += self.smoothing * max(weights.sum(), 1.0)
            table[f] = counts / counts[1:].sum()
        table[:, NULL_LEVEL] = 1.0  # neutral
        return table

    def _log_odds(self, levels: np.ndarray, m: np.ndarray, u: np.ndarray, prior: float) -> np.ndarray:
        weights = np.log(m) - np.log(u)  # (F, L)
        cols = np.arange(levels.shape[1])[None, :]
        return np.log(prior / (1 - prior)) + weights[cols, levels].sum(axis=1)

    def fit_em(
        self, sims: np.ndarray, m_sims: np.ndarray, u_sims: np.ndarray, total_pairs: float, pair_weight: float = 1.0
    ) -> Combiner:
        """Label-free fit.

        ``sims``: candidate pairs, each standing for ``pair_weight`` candidates (a sample of them
        when there are many); ``m_sims``: synthetic duplicates (seed m only); ``u_sims``: random
        pairs, standing for the pairs blocking left out.
        """
        total_pairs = max(total_pairs, 1.0)
        levels, weights = self._population(sims, u_sims, total_pairs, pair_weight)
        m = self._frequencies(self.levels(m_sims), np.ones(len(m_sims)))
        u = self._frequencies(self.levels(u_sims), np.ones(len(u_sims)))
        prior = float(np.clip(0.05 * len(sims) * pair_weight / total_pairs, 1e-9, 0.5))
        for _ in range(self.em_iterations if weights.sum() > 0 else 0):  # no pairs: keep the seeds
            post = _sigmoid(self._log_odds(levels, m, u, prior))
            matched = post * weights
            new_prior = float(np.clip(matched.sum() / weights.sum(), 1e-12, 0.5))
            m = self._frequencies(levels, matched)
            u = self._frequencies(levels, (1.0 - post) * weights)
            converged = abs(new_prior - prior) <= 1e-6 * prior
            prior = new_prior
            if converged:
                break
        self.m_, self.u_, self.prior_ = m, u, prior
        return self

    def fit_labelled(
        self, sims: np.ndarray, is_match: np.ndarray, u_sims: np.ndarray, total_pairs: float, pair_weight: float = 1.0
    ) -> Combiner:
        """Supervised fit: m from labelled matches; u from labelled non-matches and random pairs."""
        y = is_match.astype(np.float64)
        if y.sum() == 0:
            raise ValueError("the labelled candidate pairs contain no matches")
        levels, weights = self._population(sims, u_sims, total_pairs, pair_weight)
        target = np.concatenate([y, np.zeros(len(u_sims))])
        self.m_ = self._frequencies(levels, target * weights)
        self.u_ = self._frequencies(levels, (1.0 - target) * weights)
        self.prior_ = float(np.clip(y.sum() * pair_weight / total_pairs, 1e-12, 0.5))
        return self

    def _population(
        self, sims: np.ndarray, u_sims: np.ndarray, total_pairs: float, pair_weight: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Levels and weights of candidates (``pair_weight`` each) plus random pairs (the rest)."""
        rest = max(total_pairs - len(sims) * pair_weight, 0.0)
        weights = np.concatenate([np.full(len(sims), pair_weight), np.full(len(u_sims), rest / max(len(u_sims), 1))])
        return np.concatenate([self.levels(sims), self.levels(u_sims)]), weights

    def field_weights(self, sims: np.ndarray) -> np.ndarray:
        """Each field's contribution to the match log-odds, in bits (log2 Bayes factor)."""
        return self._weights_at(self.levels(sims))

    def _weights_at(self, levels: np.ndarray) -> np.ndarray:
        weights = np.log2(self.m_) - np.log2(self.u_)
        return weights[np.arange(levels.shape[1])[None, :], levels].astype(np.float32)

    def prior_weight(self) -> float:
        return float(np.log2(self.prior_ / (1 - self.prior_)))

    def score(self, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair: field weights (bits, ``(P, F)``), match weight (bits) and match probability.

        Match weight = prior weight + the field weights, except that records identical on every
        field get at least ``IDENTICAL_BITS`` (EM has nothing to learn from identical rows).
        """
        levels = self.levels(sims)
        contributions = self._weights_at(levels)
        bits = self.prior_weight() + contributions.sum(axis=1, dtype=np.float64)
        identical = (levels == EXACT_LEVEL).all(axis=1)
        bits = np.where(identical, np.maximum(bits, IDENTICAL_BITS), bits)
        return contributions, bits, _sigmoid(bits * np.log(2)).astype(np.float32)

    def match_weight(self, sims: np.ndarray) -> np.ndarray:
        """Match log-odds in bits (see ``score``)."""
        return self.score(sims)[1]

    def predict_proba(self, sims: np.ndarray) -> np.ndarray:
        """Match probability per pair."""
        return self.score(sims)[2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "edges": list(self.edges),
            "em_iterations": self.em_iterations,
            "smoothing": self.smoothing,
            "m": self.m_.tolist(),
            "u": self.u_.tolist(),
            "prior": self.prior_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Combiner:
        combiner = cls(data["fields"], tuple(data["edges"]), data["em_iterations"], data["smoothing"])
        combiner.m_ = np.asarray(data["m"], dtype=np.float64)
        combiner.u_ = np.asarray(data["u"], dtype=np.float64)
        combiner.prior_ = float(data["prior"])
        return combiner


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))
