"""Which pair a person should judge next: active learning over a run's scored pairs.

An answer teaches the most where the model is least sure and where its parts disagree, so each
candidate pair gets a priority from three signals, all computed column-wise over ``pairs.parquet``:

- **uncertainty**: ``4 q (1 - q)`` with ``q`` the match probability re-centred on the threshold
  (1 on the decision boundary, near 0 far from it);
- **disagreement**: how far apart the encoder's view (rank of the pair's mean field similarity)
  and the combiner's verdict (rank of the match weight) are: pairs whose fields look alike but
  are called non-matches, or the reverse, are where the evidence model is wrong. It is measured
  per *group* of pairs with one match weight (the same levels on every field: pairs the combiner
  cannot tell apart), with the group's mean view, and a group's pairs come in a fixed shuffled
  order. Ranked one by one, the least alike pairs of a group would come first, their answers
  ("non-match", again and again) would misrepresent the group, and the correction fitted on them
  would sink all of it: on SIGMOD X2, 24 of the first 25 answers were non-matches and pair-F1
  fell from 0.34 to 0.04; with groups it rises (0.34 -> 0.36 after 50 answers, Abt-Buy 0.20 ->
  0.34; ``benchmarks/active_learning.py``);
- **coverage**: a bonus for blocking passes with few answers so far, so every way of finding
  candidates is checked, not only the pass that makes most pairs.

A group's answers count: its probability becomes the model's, worth ``GROUP_PRIOR`` answers,
updated by the answers about its pairs (a Beta posterior), and its uncertainty is that
posterior's; answers that agree with the model's decision also damp the group's disagreement.
Without this, Abt-Buy's queue (seed 0) spent 10 of its first 12 answers on one group of 18
look-alike pairs at -1.07 bits, every one "non-match" as the model already said: nothing to
correct. Now one or two such answers move the queue to the next group, while a group whose
answers contradict the model is asked on (that is where a correction is learnt). Measured with
``benchmarks/active_learning.py`` (seeds 0-2): pair-F1 after 50 answers on Abt-Buy 0.596 ->
0.602 (after 100: 0.625 -> 0.650), on SIGMOD X2 0.388 -> 0.391, and X2 no longer dips after
10 and 25 answers (0.353 / 0.364 -> 0.381 / 0.386); the other sets within 0.01.

Only the ``QUEUE`` highest-priority pairs are kept in memory (a bounded queue, whatever the number
of pairs); answered pairs are passed over and pairs sharing a record with an answered one come
last, so consecutive answers are about different records. (Tried and dropped: also putting last
the pairs whose evidence, every field's bits, equals an answered pair's. On Abt-Buy it turned
the first 25 answers' gain into a loss: the pairs on the boundary share their evidence, and answers
about them are what places the boundary.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

QUEUE = 2000
UNCERTAINTY, DISAGREEMENT, COVERAGE = 0.6, 0.4, 0.2  # weights of the three signals
GROUP_PRIOR = 2.0  # answers the model's own probability of a group is worth


def priority_frame(pairs_path: str | Path, id_column: str, fields: list[str], threshold: float) -> pl.DataFrame:
    """The ``QUEUE`` pairs with the highest base priority (uncertainty and disagreement), with
    every column of ``pairs.parquet`` (the page shows them) and the signals."""
    scan = pl.scan_parquet(pairs_path)
    names = scan.collect_schema().names()
    sims = [pl.col(f"sim_{f}") for f in fields if f"sim_{f}" in names]
    boundary = float(np.log2(max(threshold, 1e-6) / max(1 - threshold, 1e-6)))
    centred = 1.0 / (1.0 + (2.0 ** (-(pl.col("match_weight") - boundary))))
    uncertainty = 4.0 * centred * (1.0 - centred)
    encoder_view = pl.mean_horizontal(sims) if sims else pl.lit(0.0)
    unanswered = pl.col("label").is_null() if "label" in names else pl.lit(True)
    answered_as = (lambda kind: (pl.col("label") == kind).sum()) if "label" in names else (lambda kind: pl.lit(0))
    return (
        scan.with_row_index("pair")
        .with_columns(
            centred.alias("centred"),
            uncertainty.alias("uncertainty"),
            encoder_view.fill_null(0.0).alias("encoder_view"),
            answered_as("match").over("match_weight").cast(pl.Int64).alias("group_matches"),
            answered_as("non-match").over("match_weight").cast(pl.Int64).alias("group_non_matches"),
        )
        .with_columns(pl.col("encoder_view").rank("average").alias("view_rank"))
        .with_columns(
            (
                pl.col("view_rank").mean().over("match_weight") / pl.len()
                - pl.col("match_weight").rank("average") / pl.len()
            )
            .abs()
            .alias("disagreement"),
            ((pl.col("pair").cast(pl.UInt64) * 2654435761) % 4294967291).alias("shuffle"),
        )
        .with_columns((UNCERTAINTY * pl.col("uncertainty") + DISAGREEMENT * pl.col("disagreement")).alias("base"))
        .filter(unanswered)
        .sort("base", "shuffle", descending=[True, False])
        .head(QUEUE)
        .with_columns(pl.col(f"{id_column}_l").cast(pl.String), pl.col(f"{id_column}_r").cast(pl.String))
        .collect()
    )


@dataclass
class ActiveQueue:
    """The queue of pairs to ask about, updated as answers arrive."""

    frame: pl.DataFrame  # ``priority_frame``
    id_column: str
    answered_ids: set[str] = field(default_factory=set)  # records of answered (or handed-out) pairs
    pass_answers: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._left = self.frame[f"{self.id_column}_l"].to_numpy()
        self._right = self.frame[f"{self.id_column}_r"].to_numpy()
        passes = self.frame["blocking_pass"] if "blocking_pass" in self.frame.columns else None
        self._pass = passes.fill_null("").to_numpy() if passes is not None else np.full(self.frame.height, "")
        self._taken = np.zeros(self.frame.height, dtype=bool)
        # a group: the pairs with one match weight (``priority_frame`` counts a retrained run's
        # answers per group; ``note_answer`` adds the answers given since)
        _, first, self._group = np.unique(self.frame["match_weight"].to_numpy(), return_index=True, return_inverse=True)
        self._group_answers = {
            "match": self.frame["group_matches"].to_numpy()[first].astype(np.float64),
            "non-match": self.frame["group_non_matches"].to_numpy()[first].astype(np.float64),
        }
        self._labels: dict[int, str] = {}  # the answer counted for each answered row
        self._centred = self.frame["centred"].to_numpy().astype(np.float64)
        self._disagreement = self.frame["disagreement"].to_numpy().astype(np.float64)

    def note_answer(self, left_id: str, right_id: str, blocking_pass: str | None, label: str | None = None) -> None:
        self.answered_ids.update((left_id, right_id))
        key = blocking_pass or ""
        self.pass_answers[key] = self.pass_answers.get(key, 0) + 1
        hit = ((self._left == left_id) & (self._right == right_id)) | (
            (self._left == right_id) & (self._right == left_id)
        )
        self._taken |= hit
        if not hit.any():
            return
        row = int(np.flatnonzero(hit)[0])
        previous = self._labels.pop(row, None)  # an answer changed: the latest one counts
        if previous is not None:
            self._group_answers[previous][self._group[row]] -= 1
        if label in self._group_answers:
            self._group_answers[label][self._group[row]] += 1
            self._labels[row] = label

    def group_answers(self, row: int) -> tuple[int, int]:
        """Matches and non-matches answered so far in the group of ``frame``'s row ``row``."""
        group = self._group[row]
        return int(self._group_answers["match"][group]), int(self._group_answers["non-match"][group])

    def _group_base(self) -> np.ndarray:
        """The base priority with each group's answers so far taken in: the group's probability
        becomes the model's, worth ``GROUP_PRIOR`` answers, updated by the answers about it; answers
        that agree with the model's decision also damp the group's disagreement."""
        matches = self._group_answers["match"][self._group]
        non_matches = self._group_answers["non-match"][self._group]
        q = (GROUP_PRIOR * self._centred + matches) / (GROUP_PRIOR + matches + non_matches)
        agreeing = np.where(self._centred >= 0.5, matches, non_matches)
        return UNCERTAINTY * 4.0 * q * (1.0 - q) + DISAGREEMENT * self._disagreement * GROUP_PRIOR / (
            GROUP_PRIOR + agreeing
        )

    def priorities(self) -> np.ndarray:
        """Every queued pair's priority now (-inf for pairs not to ask)."""
        if not self.frame.height:
            return np.zeros(0)
        passes, index = np.unique(self._pass, return_inverse=True)
        answers = np.array([self.pass_answers.get(p, 0) for p in passes], dtype=np.float64)
        priority = self._group_base() + COVERAGE / (1.0 + answers[index])
        fresh = ~np.isin(self._left, list(self.answered_ids)) & ~np.isin(self._right, list(self.answered_ids))
        priority[self._taken] = -np.inf
        # pairs about records already asked about come after every fresh pair
        priority[~fresh & ~self._taken] -= 10.0
        return priority

    def next_pairs(self, count: int = 1, skip: set[int] | None = None) -> list[int]:
        """Row positions (into ``frame``) of the next ``count`` pairs to ask, best first."""
        priority = self.priorities()
        if skip:
            priority = priority.copy()
            priority[list(skip)] = -np.inf
        order = np.argsort(-priority, kind="stable")
        return [int(i) for i in order[:count] if np.isfinite(priority[i])]


def expected_f1_change(probability: np.ndarray, answered: np.ndarray, answer: np.ndarray, threshold: float) -> float:
    """How much the answers raise pair-F1 over the candidates, as far as is known now.

    What is known: answered pairs are what the answer says, the others matches with their
    probability. Judged against that, the decisions before the answers (probability at or above
    the threshold) are compared with the decisions after (answered pairs decided by the answer).
    """

    def f1(truth: np.ndarray, predicted: np.ndarray) -> float:
        tp = float(truth[predicted].sum())
        denominator = float(predicted.sum() + truth.sum())
        return 2 * tp / denominator if denominator else 0.0

    truth = np.where(answered, answer, probability)
    before = probability >= threshold
    after = np.where(answered, answer >= 0.5, before)
    return f1(truth, after) - f1(truth, before)
