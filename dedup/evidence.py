"""Pair evidence: what the combiner weighs for each candidate pair and field.

Computed by the score stage (``dedup.scoring.compare_pairs``) from cached embeddings and value
statistics; read by the combiner (``dedup.combiner``) to learn and apply match weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LONG_TEXT_WORDS = 4  # text values with at least this many words are "long": their words decide


@dataclass(frozen=True)
class PairEvidence:
    """What the combiner weighs, per pair and field (arrays ``(pairs, fields)``).

    ``sims``: cosine of the two values' embeddings, NaN where either is null; ``tokens``: the
    IDF-weighted word cosine for text fields, NaN elsewhere or where either has no words;
    ``exact``: the two normalised values are equal; ``frequency``: for exact agreements, the
    chance another record shares that value (term frequency), NaN otherwise; ``long``: both text
    values have at least ``LONG_TEXT_WORDS`` words (their words decide, see ``Combiner.levels``);
    ``codes_differ``: both long text values name a model or part number and share none, or a
    storage size and share none (``dedup.frequencies.codes_differ``): the field counts as
    different when scoring; ``one_null``: one value is null and the other is not (None where
    not measured). Scoring weighs every null as 0 bits; only a person's answers may say that a
    field missing on one side tells something (``Combiner.fit_pair_labels``).
    """

    sims: np.ndarray
    tokens: np.ndarray
    exact: np.ndarray
    frequency: np.ndarray
    long: np.ndarray
    codes_differ: np.ndarray
    one_null: np.ndarray | None = None

    def one_null_or_none(self) -> np.ndarray:
        """``one_null``, all False where it was not measured."""
        return self.one_null if self.one_null is not None else np.zeros(self.sims.shape, dtype=bool)

    def __len__(self) -> int:
        return int(self.sims.shape[0])

    def take(self, index: np.ndarray) -> PairEvidence:
        return PairEvidence(*(None if getattr(self, a) is None else getattr(self, a)[index] for a in _ARRAYS))

    @classmethod
    def concat(cls, parts: list[PairEvidence]) -> PairEvidence:
        def joined(a: str) -> np.ndarray | None:
            arrays = [getattr(p, a) for p in parts]
            return None if any(x is None for x in arrays) else np.concatenate(arrays)

        return cls(*(joined(a) for a in _ARRAYS))


_ARRAYS = ("sims", "tokens", "exact", "frequency", "long", "codes_differ", "one_null")
