"""The combiner: per-field evidence -> calibrated match probability, in Fellegi-Sunter form.

Each field of a pair falls into one *level*: null (either value missing), exact (same normalised
value), then fuzzy levels from "more similar than all but a few random pairs" down to
"different". Each level carries a weight log2(m/u), where m and u are the level's probability
among matching and non-matching pairs; the match log-odds is the prior's plus the field weights,
so each field's weight is exactly its contribution to the score (``bf_<field>``).

What real, messy data needs, and how this module provides it:

- **Term-frequency adjustment.** Agreeing on a rare value is stronger evidence than agreeing on a
  common one. For an exact agreement on value v, u is the share of records holding v (two random
  records agree on v with probability tf(v)^2, a match holding v agrees with probability m·tf(v)),
  so the weight is log2(m_exact / tf(v)), as in Splink.
- **Level edges learned from the data.** A similarity of 0.9 means different things for dates,
  names and long titles, and for different encoders. So the fuzzy levels are cut at quantiles of
  the similarity among *random* pairs (``TAILS``): the top fuzzy level holds pairs more similar
  than all but 0.03% of random pairs, whatever the field's similarity scale. A field with several
  measures (text: embedding cosine and IDF-weighted word cosine) takes the highest level any of
  them reaches.
- **u from random pairs, m from the data by EM.** Random pairs are almost all non-matches, so
  they give u directly (with the few likely matches among them discounted); EM then only has to
  find m and the prior on the candidates, with the random pairs standing in for every pair
  blocking left out, so the prior is the match rate over all pairs.
- **Monotone weights.** A more similar level never weighs less than a less similar one: after
  every M-step the likelihood ratios m/u are made non-increasing down the levels by pooling
  adjacent violators (weighted by u), which also keeps sparse levels from overfitting.
- **A guard against degenerate fits** (``check_fit``): EM can settle on a class that is not
  "same entity" (records that share a household, a city, a brand) and call far too many pairs
  matches. The fit is checked against what the data can hold; when it fails, EM restarts from
  the seed with the prior pinned at a plausible value, and ``report.json`` says so.

A null on either side is neutral (weight 0). Two records equal on every configured field are
duplicates whatever the tables say (``IDENTICAL_BITS``): nothing the config compares can tell
them apart, and without the rule a table of identical rows would give EM nothing to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dedup.evidence import PairEvidence

NULL_LEVEL = 0
EXACT_LEVEL = 1
# Fuzzy levels start where a similarity is reached by only this share of random pairs
# (most similar last): level 2 = above the 0.03% tail, ..., the last level = below the 30% tail.
TAILS: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003)
IDENTICAL_BITS = 30.0
# pair labels (``fit_pair_labels``): the penalty toward "no change", in nats per unit of a field's
# scale, and the shift of the prior (bits) that costs as much as a scale of 0 or 2
LABEL_PENALTIES = (16.0, 4.0, 1.0, 0.25)  # tried strongest first; cross-validation picks one (or none)
# free parameters: the prior; + each field's scale; + each field's null-on-one-side term; + slopes
LABEL_FAMILIES = ("shift", "scales", "nulls", "full")
LABEL_FOLDS = 5
LABEL_SHIFT_BITS = 8.0
LABEL_SLOPE_BITS = 8.0  # a slope of this many bits per unit of similarity costs as much
SEED_PAIRS = 10.0  # weight of the synthetic duplicates' exact share and noise, in anchor pairs
NOISE = 0.05  # starting share of duplicates whose value in a field is unrelated noise
MIN_NOISE = 0.01  # never less: one garbled field costs at most about log2(1/MIN_NOISE) bits
ANCHOR = 0.99  # a pair the other fields call a match with this posterior anchors a field
START_PER_RECORD = 0.5  # the prior EM starts from: one duplicate per two records
MIN_ANCHORS = 10  # a field with fewer anchors has nothing vouching for its matches
SHAPE_ITERATIONS = 50
AGREE_TAIL = 0.01  # for field dependence, a field "agrees" at or above this random-pair tail
MIN_TOGETHER = 5  # pairs agreeing on both fields needed before their dependence is measured
MAX_DEPENDENCE_CUT = 0.5
MEASURES = ("sims", "tokens")  # PairEvidence arrays that carry a similarity
# what the label correction's slopes read: the similarities, then "one value null" (0 or 1)
SLOPE_MEASURES = (*MEASURES, "one_null")


@dataclass
class FitReport:
    """How the label-free fit went: what ``report.json`` shows under ``model_fit``."""

    iterations: int = 0
    estimated_matching_pairs: float = 0.0
    prior: float = 0.0
    restarts: int = 0
    warnings: list[str] = field(default_factory=list)
    exact_share: dict[str, float] = field(default_factory=dict)  # per field: duplicates agreeing exactly
    noise: dict[str, float] = field(default_factory=dict)  # per field: duplicates whose value is unrelated

    def to_dict(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "estimated_matching_pairs": self.estimated_matching_pairs,
            "prior": self.prior,
            "restarts": self.restarts,
            "warnings": list(self.warnings),
            "exact_share": dict(self.exact_share),
            "noise": dict(self.noise),
        }


class Combiner:
    """Fellegi-Sunter combiner over levelled field evidence.

    Parameters are set in ``__init__``; ``fit_edges`` learns ``edges_`` (per measure, field and
    tail, the similarity a random pair reaches with that share), ``fit_em`` / ``fit_labelled``
    learn ``m_``, ``u_`` (``(fields, levels)``) and ``prior_`` (the share of all pairs that match).
    """

    def __init__(
        self,
        fields: list[str],
        tails: tuple[float, ...] = TAILS,
        em_iterations: int = 100,
        smoothing: float = 1e-3,
    ) -> None:
        self.fields = list(fields)
        self.tails = tuple(tails)
        self.em_iterations = em_iterations
        self.smoothing = smoothing

    @property
    def n_levels(self) -> int:
        return 2 + len(self.tails) + 1  # null, exact, one per tail, "different"

    # ---- levels -----------------------------------------------------------------------------
    def fit_edges(self, random: PairEvidence, exact_u: list[float], frequencies: list[np.ndarray]) -> Combiner:
        """Similarity edges per measure and field from random pairs (non-null, not exact); the
        exact level's u per field (the chance two random records agree exactly) and, from the
        per-value frequencies (``FieldStatistics.frequency``), the floor for TF weights."""
        self.exact_u_ = np.asarray(exact_u, dtype=np.float64)
        self.min_frequency_ = np.array(
            [float(f[1:][f[1:] > 0].min()) if (f[1:] > 0).any() else 1.0 for f in frequencies], dtype=np.float64
        )
        edges = {}
        for measure in MEASURES:
            values = getattr(random, measure)
            table = np.full((len(self.fields), len(self.tails)), np.inf, dtype=np.float64)
            for j in range(len(self.fields)):
                s = values[:, j][~random.exact[:, j] & ~np.isnan(values[:, j])]
                if len(s) >= 20:
                    table[j] = np.quantile(s.astype(np.float64), 1.0 - np.asarray(self.tails))
            # a tail edge never below a wider tail's edge, and strictly above: equal similarities
            # (a category's few distinct values) must not land in a level their u never saw
            table = np.maximum.accumulate(table, axis=1)
            edges[measure] = table
        self.edges_ = edges
        return self

    def levels(self, evidence: PairEvidence, codes: bool = True) -> np.ndarray:
        """Level per pair and field, ``(P, F)`` int8: 0 null, 1 exact, 2 most similar ... last different.

        ``codes``: two long text values naming different model or part numbers
        (``PairEvidence.codes_differ``) are at the "different" level whatever their similarity.
        The label-free fit reads the similarity alone (``fit_em``).
        """
        per = []
        for measure in MEASURES:
            values = getattr(evidence, measure)
            reached = np.full(evidence.sims.shape, -1, dtype=np.int16)
            for j in range(len(self.fields)):
                column = values[:, j]
                known = ~np.isnan(column)
                reached[known, j] = np.searchsorted(self.edges_[measure][j], column[known], side="right")
            per.append(reached)
        embedding, words = per
        # text: in long values (titles, descriptions) the words decide and the character view
        # mostly sees shared boilerplate; in short ones (an address, an e-mail) a typo breaks a
        # word, so the pair sits midway between the levels the two views reach
        midway = (embedding + words + 1) // 2
        reached = np.where(words >= 0, np.where(evidence.long, words, midway), embedding)
        reached = np.maximum(reached, 0)
        levels = (2 + len(self.tails) - reached).astype(np.int8)
        if codes:  # another model number: different, however alike the rest reads
            levels[evidence.codes_differ] = self.n_levels - 1
        levels[evidence.exact] = EXACT_LEVEL
        levels[np.isnan(evidence.sims) & ~evidence.exact] = NULL_LEVEL
        return levels

    # ---- weights ----------------------------------------------------------------------------
    def _bits(self, levels: np.ndarray, evidence: PairEvidence, m: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Per pair and field: log2(m/u) of its level, with the exact level's u per value (TF),
        less each field's half of its dependence with other agreeing fields (``interaction_``).

        One gather from the ``(fields, levels)`` table by each pair's flat index, then the
        exact agreements' log2 frequency taken off (0 elsewhere): the same numbers as a 2-D
        lookup and a ``where``, at a third of the cost (EM asks for every pair's bits each
        iteration)."""
        table = np.log2(m) - np.log2(u)  # (F, L)
        table[:, NULL_LEVEL] = 0.0
        any_exact, log_tf = self._log_frequencies(levels, evidence)
        if any_exact:
            scale = np.log2(getattr(self, "tf_scale_", np.ones(levels.shape[1])))
            table[:, EXACT_LEVEL] = np.log2(m[:, EXACT_LEVEL]) - scale
        bits = np.take(table.ravel(), self._level_index(levels))
        if any_exact:
            bits -= log_tf
        interaction = getattr(self, "interaction_", None)
        if interaction is not None and interaction.any():
            bits = bits - self._dependence(levels, bits, interaction)
        return bits

    def _level_index(self, levels: np.ndarray) -> np.ndarray:
        """Each pair and field's position in a raveled ``(fields, levels)`` table, ``(P, F)``:
        fixed for a set of pairs, so kept for the last one seen (EM reads the same pairs at
        every iteration)."""
        cached = getattr(self, "_index_cache", None)
        if cached is not None and cached[0] is levels:
            return cached[1]
        offsets = np.arange(levels.shape[1], dtype=np.intp) * self.n_levels
        index = levels.astype(np.intp)
        index += offsets[None, :]
        self._index_cache = (levels, index)
        return index

    def _log_frequencies(self, levels: np.ndarray, evidence: PairEvidence) -> tuple[bool, np.ndarray]:
        """Whether any pair agrees exactly, and log2 of the shared value's frequency (floored at
        the rarest shared value's; 0 where a field does not agree exactly): fixed for a set of
        pairs, so kept for the last one seen."""
        cached = getattr(self, "_frequency_cache", None)
        if cached is not None and cached[0] is evidence and cached[1] is levels:
            return cached[2], cached[3]
        exact = levels == EXACT_LEVEL
        tf = np.where(exact, evidence.frequency, 1.0).astype(np.float64)
        log_tf = np.log2(np.maximum(tf, np.maximum(self.min_frequency_, 1e-12)[None, :]))
        log_tf[~exact] = 0.0
        self._frequency_cache = (evidence, levels, bool(exact.any()), log_tf)
        return self._frequency_cache[2], log_tf

    def _forget_pairs(self) -> None:
        """Drop what the last fit kept about its pairs (the caches above)."""
        self._frequency_cache = self._index_cache = self._agree_cache = None

    def _agree(self, levels: np.ndarray) -> np.ndarray:
        """Whether each field agrees: exact, or more similar than all but 1% of random pairs."""
        top = sum(1 for t in self.tails if t <= AGREE_TAIL)
        return (levels >= EXACT_LEVEL) & (levels <= EXACT_LEVEL + top)

    def _dependence(self, levels: np.ndarray, bits: np.ndarray, interaction: np.ndarray) -> np.ndarray:
        """Per pair and field: the bits to take off for agreeing together with correlated fields.

        For each pair of fields that agree, ``interaction_[f, g]`` bits (never more than the
        weaker of the two fields' own weight) are taken off, half from each field, so the
        ``bf_`` columns still add up; no field loses more than ``MAX_DEPENDENCE_CUT`` of its
        own weight in all.
        """
        out = np.zeros_like(bits)
        several, agree, together = self._agreeing(levels)
        if several.size == 0:
            return out
        # field-major (one contiguous row per field) and masked arithmetic instead of boolean
        # indexing: a cut of 0 adds nothing, so the sums are the same, in the same order
        part_bits = bits[several].T.copy()
        part = np.zeros_like(part_bits)
        fields = levels.shape[1]
        for f in range(fields):
            for g in range(f + 1, fields):
                if interaction[f, g] <= 0:
                    continue
                if (f, g) not in together:
                    together[f, g] = agree[f] & agree[g]
                both = together[f, g]
                if not both.any():
                    continue
                cut = np.minimum(interaction[f, g], np.maximum(np.minimum(part_bits[f], part_bits[g]), 0.0))
                half = np.where(both, cut / 2, 0.0)
                part[f] += half
                part[g] += half
        # many mutually correlated fields (a citation's venue, publisher, address, year) would
        # otherwise lose more than their evidence: each keeps at least half of its own weight
        out[several] = np.minimum(part, np.maximum(part_bits, 0.0) * MAX_DEPENDENCE_CUT).T
        return out

    def _agreeing(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[tuple[int, int], np.ndarray]]:
        """The pairs where two or more fields agree, each field's agreement among them (field
        major), and a store for two fields' agreement together: fixed for a set of pairs, so kept
        for the last one seen (EM takes the dependence off at every iteration)."""
        cached = getattr(self, "_agree_cache", None)
        if cached is not None and cached[0] is levels:
            return cached[1]
        agree = self._agree(levels)
        several = np.flatnonzero(agree.sum(axis=1) >= 2)  # only these can lose anything
        found = (several, agree[several].T.copy(), {})
        self._agree_cache = (levels, found)
        return found

    def _fit_interaction(self, levels: np.ndarray, weights: np.ndarray, post: np.ndarray) -> np.ndarray:
        """log2 of how much more often two fields agree together among non-matches than
        independence says, per field pair (0 where they are independent or too rare to tell).

        Fellegi-Sunter multiplies the fields' evidence as if it were independent. Fields that
        carry the same information (a product's name and a description that starts with it;
        a journal and its publisher) agree together far more often among *non-matches* than
        apart, and a near miss then counts twice. Measured on the whole population, each pair
        counted as a non-match by 1 - posterior.
        """
        agree = self._agree(levels)
        present = levels != NULL_LEVEL
        w = weights * (1.0 - post)
        fields = levels.shape[1]
        table = np.zeros((fields, fields))
        for f in range(fields):
            for g in range(f + 1, fields):
                both_known = present[:, f] & present[:, g]
                total = w[both_known].sum()
                if total <= 0:
                    continue
                af, ag = agree[both_known, f], agree[both_known, g]
                together = af & ag
                if together.sum() < MIN_TOGETHER:
                    continue
                ww = w[both_known]
                pf, pg, pfg = ww[af].sum() / total, ww[ag].sum() / total, ww[together].sum() / total
                ratio = pfg / max(pf * pg, 1e-300)
                if ratio > 1.0:
                    table[f, g] = table[g, f] = float(np.log2(ratio))
        return table

    def field_weights(self, evidence: PairEvidence) -> np.ndarray:
        """Each field's contribution to the match log-odds, in bits (log2 Bayes factor)."""
        return self._contributions(self.levels(evidence), evidence).astype(np.float32)

    def prior_weight(self) -> float:
        return float(np.log2(self.prior_ / (1 - self.prior_))) + float(getattr(self, "label_shift_", 0.0))

    def _contributions(self, levels: np.ndarray, evidence: PairEvidence) -> np.ndarray:
        """Per pair and field: the fitted bits, as the pair labels (if any) corrected them."""
        bits = self._bits(levels, evidence, self.m_, self.u_)
        scale = getattr(self, "label_scale_", None)
        if scale is None:
            return bits
        return bits * scale + _measure_terms(evidence, self.label_centre_) @ self.label_slopes_

    def fit_pair_labels(self, evidence: PairEvidence, is_match: np.ndarray, threshold: float = 0.5) -> Combiner:
        """Let a person's answers correct the fitted model (``dedup review``'s labels).

        A few dozen answers cannot re-estimate every m/u table, but they can say what the
        label-free fit got most wrong: where the decision boundary lies (a shift of the prior,
        in bits), which fields it over- or under-trusts (a scale per field on its bits: a field
        whose agreement is common among non-matches, like a manufacturer, drops toward 0), what
        a field missing on one side says (a term per field, either sign: when one shop never
        fills a field the other does, every match has it null on one side, while one shop's
        siblings agree on it; the label-free fit weighs every null as 0 bits and cannot learn
        this without answers, ``benchmarks/HISTORY.md``), and how much the raw similarities the
        levels rounded off still tell (a slope per field and measure, in bits per unit of
        similarity, around the answered pairs' mean). All are
        fitted by penalised logistic regression on the answered pairs; the penalty pulls toward
        "no change" (scale 1, shift and slopes 0). How hard it pulls is chosen by cross-validation
        over the answers (``LABEL_PENALTIES``), "no change at all" included: a correction is made
        only when it decides more held-out answers right than the model itself (at ``threshold``).
        A scale never goes below 0, nor a similarity's slope: agreeing never counts against a match.
        """
        y = np.asarray(is_match, dtype=np.float64)
        self.label_scale_ = None
        self.label_shift_ = 0.0
        self.label_answers_ = len(y)
        if not len(y):
            return self
        bits = self._bits(self.levels(evidence), evidence, self.m_, self.u_).astype(np.float64)
        self.label_centre_ = _measure_centres(evidence)
        features = np.concatenate([bits, np.ones((len(y), 1)), _measure_terms(evidence, self.label_centre_)], axis=1)
        fields = bits.shape[1]
        slopes = features.shape[1] - fields - 1
        # a field's null term is fitted only where answers of both kinds show the field null on
        # one side: with one kind alone the term has no finite best value, and the penalty
        # alone would set it (Cora, 100 answers: institution null on one side in 4 non-matches
        # and no match, -13 bits)
        nulls = evidence.one_null_or_none()
        said = (nulls & (y[:, None] > 0.5)).any(axis=0) & (nulls & (y[:, None] < 0.5)).any(axis=0)
        features[:, -fields:][:, ~said] = 0.0
        choice = _held_out_choice(features, y, self.prior_weight(), fields, threshold)
        self.label_penalty_ = None if choice is None else list(choice)
        if choice is None:  # no correction predicts held-out answers better than none
            return self
        boundary = float(np.log2(threshold / (1.0 - threshold)))
        fitted = fit_correction(features, y, self.prior_weight(), fields, choice, boundary)
        self.label_scale_, self.label_shift_ = fitted[:fields], float(fitted[fields])
        self.label_slopes_ = np.zeros((slopes, fields))
        self.label_slopes_[np.arange(slopes), np.tile(np.arange(fields), len(SLOPE_MEASURES))] = fitted[fields + 1 :]
        return self

    def score(self, evidence: PairEvidence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair: field weights (bits, ``(P, F)``), match weight (bits) and match probability.

        Match weight = prior weight + the field weights, except that records identical on every
        field get at least ``IDENTICAL_BITS``.
        """
        levels = self.levels(evidence)
        contributions = self._contributions(levels, evidence).astype(np.float32)
        bits = self.prior_weight() + contributions.sum(axis=1, dtype=np.float64)
        identical = (levels == EXACT_LEVEL).all(axis=1)
        bits = np.where(identical, np.maximum(bits, IDENTICAL_BITS), bits)
        return contributions, bits, _sigmoid(bits * np.log(2)).astype(np.float32)

    def match_weight(self, evidence: PairEvidence) -> np.ndarray:
        return self.score(evidence)[1]

    def predict_proba(self, evidence: PairEvidence) -> np.ndarray:
        return self.score(evidence)[2]

    # ---- fitting ----------------------------------------------------------------------------
    def _u_from_random(self, levels: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """u per field and level from weighted pairs (non-matches), exact level included.

        The exact level's u is measured like the others, not taken from value counts: in a
        data set with many duplicates (a citation copied 200 times) the counts are mostly
        the duplicates themselves. The per-value frequencies that TF-adjust it are scaled to
        the measured level (``tf_scale_``), so rare values still weigh more than common ones.
        """
        u = self._distribution(levels, weights)
        measured = u[:, EXACT_LEVEL]
        self.tf_scale_ = np.clip(measured / np.maximum(self.exact_u_, 1e-300), 1e-6, 1.0)
        self.tf_scale_[self.exact_u_ <= 0] = 1.0
        return np.maximum(u, 1e-12)

    def _distribution(self, levels: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted level frequencies per field over the non-null levels (smoothed), null = 1.

        One bincount over every (field, level) cell: each cell adds its pairs in their order,
        as a bincount per field would."""
        fields = levels.shape[1]
        cells = np.bincount(
            self._level_index(levels).ravel(), weights=np.repeat(weights, fields), minlength=fields * self.n_levels
        ).reshape(fields, self.n_levels)
        cells = cells.astype(np.float64, copy=False)  # no pairs: numpy counts in integers
        table = np.empty((fields, self.n_levels))
        total = max(float(weights.sum()), 1e-300)
        for f in range(fields):
            counts = cells[f]
            counts[NULL_LEVEL] = 0.0
            counts[1:] += self.smoothing * total / self.n_levels
            table[f] = counts / counts[1:].sum()
        table[:, NULL_LEVEL] = 1.0
        return table

    def _monotone(self, m: np.ndarray, u: np.ndarray) -> np.ndarray:
        """m with m/u non-increasing from the exact level down (pool adjacent violators, weight u)."""
        out = m.copy()
        for f in range(m.shape[0]):
            blocks: list[list[float]] = []  # [sum m, sum u, count]
            for level in range(EXACT_LEVEL, self.n_levels):
                blocks.append([m[f, level], u[f, level], 1])
                while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
                    mm, uu, cc = blocks.pop()
                    blocks[-1][0] += mm
                    blocks[-1][1] += uu
                    blocks[-1][2] += cc
            level = EXACT_LEVEL
            for mm, uu, cc in blocks:
                ratio = mm / uu
                for k in range(level, level + int(cc)):
                    out[f, k] = ratio * u[f, k]
                level += int(cc)
            out[f, 1:] /= out[f, 1:].sum()
        return out

    def fit_em(
        self,
        candidates: PairEvidence,
        random: PairEvidence,
        seed: PairEvidence,
        total_pairs: float,
        pair_weight: float = 1.0,
        records: int | None = None,
        pairs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Combiner:
        """Label-free fit: m shaped by the synthetic duplicates, u and the prior from the data.

        ``candidates``: the candidate pairs, each standing for ``pair_weight`` candidates (a
        sample when there are many); ``random``: random pairs that are *not* candidates, standing
        for every pair blocking left out; ``seed``: synthetic duplicates (a value and a corrupted
        copy of it); ``total_pairs``: all pairs of records, N(N-1)/2; ``pairs``: the candidates'
        row positions (left, right), for the plausibility check (``check_fit``).

        m is never let loose: EM over free m tables settles on whatever large class of related
        records the data holds (same city, same household). Instead each field's m keeps the
        shape of its synthetic duplicates, with two numbers per field fitted to the data: how
        often duplicates agree exactly (``exact_share_``) and how often the field is unrelated
        noise in a duplicate (``noise_``: a wrong column, another guide's cuisine). Those two
        come from *anchors*, pairs the other fields alone call matches (see ``_anchor_step``),
        once, so no loop feeds a field's m with its own votes. u and the prior are fitted by EM
        on the whole population with m held.

        The fit reads each field's similarity alone, not differing model numbers
        (``levels(codes=False)``), which only scoring applies. Measured on the real sets
        (``benchmarks/realdata.py``): fitted with them, EM moved the cut where nothing anchors a
        field (Abt-Buy: the free shape was kept, 6,681 matching pairs estimated for 1,106 true;
        cluster pair-F1 0.220), and the level edges cut without the pairs naming other models
        lowered SIGMOD X1's titles' levels (0.863 -> 0.860); applied when scoring only, Abt-Buy
        went 0.219 -> 0.383 with no set lower. What the candidates' clusters can hold (the
        plausibility check) is judged as scoring sees the pairs, numbers read: judged without
        them, Abt-Buy's free shape passed and the set fell to 0.169.

        Once the prior is fitted, u is read once more from the same posteriors, with the levels
        as scoring reads them: u is the chance of a level among non-matches, and scoring never
        puts a pair naming another model at its words' level. Read without them, a title's top
        word levels count one shop's siblings (two colours of one case, one series' sizes)
        whose model numbers tell them apart, and a pair of one model there got too few bits.
        Measured (``benchmarks/realdata.py``, seeds 0-4): Abt-Buy 0.491 -> 0.515 mean cluster
        pair-F1, SIGMOD X2 0.378 -> 0.377, the other sets unchanged.
        """
        total_pairs = max(total_pairs, 1.0)
        records = records or int(np.sqrt(2 * total_pairs)) + 1
        levels = np.concatenate([self.levels(candidates, codes=False), self.levels(random, codes=False)])
        evidence = PairEvidence.concat([candidates, random])
        rest = max(total_pairs - len(candidates) * pair_weight, 0.0)
        weights = np.concatenate(
            [np.full(len(candidates), pair_weight), np.full(len(random), rest / max(len(random), 1))]
        )
        self.seed_m_ = self._distribution(self.levels(seed, codes=False), np.ones(len(seed)))
        self.exact_share_ = self.seed_m_[:, EXACT_LEVEL].copy()
        self.noise_ = np.full(len(self.fields), NOISE)
        self.anchored_ = np.ones(len(self.fields), dtype=bool)  # until the anchor step says otherwise
        self.interaction_ = np.zeros((len(self.fields), len(self.fields)))
        report = FitReport()
        start = float(np.clip(START_PER_RECORD * records / total_pairs, 1e-9, 0.5))
        u = self._u_step(levels, weights, np.zeros(len(levels)))
        prior, u, iterations = self._prior_step(levels, evidence, weights, start, u)
        report.iterations += iterations
        self.interaction_ = self._fit_interaction(levels, weights, self._posterior(levels, evidence, u, prior))
        self._anchor_step(levels[: len(candidates)], candidates, self._shaped_m(u), u, prior)
        u = self._u_step(levels, weights, np.zeros(len(levels)))  # afresh, with the anchors' verdict
        prior, u, iterations = self._prior_step(levels, evidence, weights, start, u)
        # what the clusters can hold is judged as scoring will see the pairs: model numbers read
        scored = self.levels(candidates)
        held = self._holder(scored, candidates, records, pairs, pair_weight)
        if not self.anchored_.any():  # nothing in the data vouches for any field's matches
            before = (prior, u)
            prior, u, more = self._shape_step(levels, evidence, weights, prior, u, len(candidates))
            iterations += more
            problem = check_fit(prior * total_pairs, held(u, prior), records, total_pairs)
            if problem:
                report.warnings.append(
                    f"{problem} after learning the fields' shape; kept the synthetic duplicates' shape"
                )
                report.restarts += 1
                del self.free_m_
                prior, u = before
        report.iterations += iterations
        problem = check_fit(prior * total_pairs, held(u, prior), records, total_pairs)
        if problem:
            fallback = max(held(u, prior), records / 2.0)
            report.warnings.append(
                f"{problem}; the prior is held at {fallback:,.0f} matching pairs (what those clusters hold) instead"
            )
            report.restarts += 1
            prior = float(np.clip(fallback / total_pairs, 1e-12, 0.5))
        # u as scoring reads the levels (pairs naming other models at "different"), same posteriors
        post = self._posterior(levels, evidence, u, prior)
        u = self._u_step(np.concatenate([scored, self.levels(random)]), weights, post)
        self.m_, self.u_, self.prior_ = self._shaped_m(u), u, prior
        report.prior = prior
        report.estimated_matching_pairs = prior * total_pairs
        report.exact_share = {f: round(float(a), 4) for f, a in zip(self.fields, self.exact_share_, strict=True)}
        report.noise = {f: round(float(e), 4) for f, e in zip(self.fields, self.noise_, strict=True)}
        self.fit_report_ = report
        self._forget_pairs()
        return self

    def _shaped_m(self, u: np.ndarray, learned: bool = True) -> np.ndarray:
        """m = (1 - noise) [exact_share at the exact level + the rest shaped like the synthetic
        duplicates' fuzzy levels] + noise u, made monotone."""
        fuzzy = self.seed_m_.copy()
        fuzzy[:, : EXACT_LEVEL + 1] = 0.0
        fuzzy /= np.maximum(fuzzy.sum(axis=1, keepdims=True), 1e-300)
        m = (1.0 - self.exact_share_)[:, None] * fuzzy
        m[:, EXACT_LEVEL] = self.exact_share_
        m = (1.0 - self.noise_)[:, None] * m + self.noise_[:, None] * u
        m[:, NULL_LEVEL] = 1.0
        m = self._monotone(m, u)
        if learned and hasattr(self, "free_m_"):  # fields nothing vouches for, once their shape was learned
            m[~self.anchored_] = self.free_m_[~self.anchored_]
        return m

    def _u_step(self, levels: np.ndarray, weights: np.ndarray, post: np.ndarray) -> np.ndarray:
        """u from the whole population, each pair counted as a non-match by 1 - posterior, with
        the most similar levels capped by the tail of the levels below them (``_tail_cap``)."""
        u = self._u_from_random(levels, weights * (1.0 - post))
        return self._tail_cap(u, ~self.anchored_)

    def _tail_cap(self, u: np.ndarray, fields: np.ndarray) -> np.ndarray:
        """Cap the top fuzzy levels' u of ``fields`` (a mask) by a geometric tail fitted below.

        Where other fields vouch for a field's matches (anchors), EM separates them from its
        u. A field nothing vouches for (the only field of a data set) has no such help: the
        population estimate of its u is circular where matches crowd the most similar levels,
        any prior explains them equally well, and EM drifts to no matches at all. For those
        fields u comes from a weak assumption instead: non-match similarity has a smooth tail,
        and the levels are cut at random-pair tails a constant factor apart, so u falls
        geometrically towards the top. It is fitted (log-linear) on the levels below the 1%
        tail, where matches are too few to matter, and the top levels' u is at most the line's
        extension. (Fields with anchors keep the data's u: there, near misses such as houses on
        the same street make a heavier tail than a line would say.)
        """
        if not fields.any():
            return u
        fuzzy = np.arange(2, self.n_levels)  # most similar first
        top = sum(1 for t in self.tails if t < 0.01)  # levels above the 1% tail
        fit_levels = fuzzy[top : len(fuzzy) - 1]  # below it, except the catch-all "different" level
        if top == 0 or len(fit_levels) < 2:
            return u
        out = u.copy()
        x = fit_levels.astype(np.float64)
        for f in np.flatnonzero(fields):
            y = np.log(np.maximum(u[f, fit_levels], 1e-300))
            slope, intercept = np.polyfit(x, y, 1)
            if slope <= 0:  # u must grow towards the less similar levels, else the fit says nothing
                continue
            line = np.exp(intercept + slope * fuzzy[:top])
            out[f, fuzzy[:top]] = np.minimum(u[f, fuzzy[:top]], line)
        fuzzy_mass = out[:, 2:].sum(axis=1, keepdims=True)
        out[:, 2:] *= u[:, 2:].sum(axis=1, keepdims=True) / np.maximum(fuzzy_mass, 1e-300)
        return out

    def _posterior(self, levels: np.ndarray, evidence: PairEvidence, u: np.ndarray, prior: float) -> np.ndarray:
        bits = np.log2(prior / (1 - prior)) + self._bits(levels, evidence, self._shaped_m(u), u).sum(axis=1)
        return _sigmoid(bits * np.log(2))

    def _prior_step(
        self, levels: np.ndarray, evidence: PairEvidence, weights: np.ndarray, prior: float, u: np.ndarray
    ) -> tuple[float, np.ndarray, int]:
        """EM for the prior and u with m's shape held."""
        iterations = 0
        while iterations < self.em_iterations:
            iterations += 1
            m = self._shaped_m(u)
            bits = np.log2(prior / (1 - prior)) + self._bits(levels, evidence, m, u).sum(axis=1)
            post = _sigmoid(bits * np.log(2))
            new_prior = _weighted_share(post, weights, prior)
            u = self._u_step(levels, weights, post)
            converged = abs(new_prior - prior) <= 1e-4 * prior
            prior = new_prior
            if converged:
                break
        return prior, u, iterations

    def _holder(
        self,
        levels: np.ndarray,
        candidates: PairEvidence,
        records: int,
        pairs: tuple[np.ndarray, np.ndarray] | None,
        pair_weight: float,
    ):
        """A function (u, prior) -> the matching pairs the candidates' clusters can hold."""

        def held(u: np.ndarray, prior: float) -> float:
            if pairs is None:
                return np.inf
            post = self._posterior(levels, candidates, u, prior)
            return held_pairs(records, pairs[0], pairs[1], post) * pair_weight

        return held

    def _shape_step(
        self,
        levels: np.ndarray,
        evidence: PairEvidence,
        weights: np.ndarray,
        prior: float,
        u: np.ndarray,
        candidates: int,
    ) -> tuple[float, np.ndarray, int]:
        """EM for the whole m of the fields nothing vouches for, with their u held by the tail.

        Such a field (the only field of a data set) keeps the synthetic duplicates' shape only
        until the data can say more: with the top levels' u pinned by the geometric tail
        (``_tail_cap``), the pairs there beyond what non-matches explain are duplicates, and
        their spread over the levels is m. (Where anchors exist this is not needed, and not
        safe: plain EM there learns whatever large class of related records the data holds.)
        """
        free = ~self.anchored_
        is_candidate = np.arange(len(levels)) < candidates
        iterations = 0
        while iterations < SHAPE_ITERATIONS:
            iterations += 1
            m = self._shaped_m(u)
            m[free] = self.free_m_[free] if hasattr(self, "free_m_") else m[free]
            bits = np.log2(prior / (1 - prior)) + self._bits(levels, evidence, m, u).sum(axis=1)
            post = _sigmoid(bits * np.log(2))
            # m from the candidates only: duplicates are what blocking finds, while the random
            # pairs' tiny posteriors times their huge weights would spread m over every level
            learned = self._monotone(self._distribution(levels, post * weights * is_candidate), u)
            floor = MIN_NOISE * u + (1.0 - MIN_NOISE) * learned
            floor[:, NULL_LEVEL] = 1.0
            moved = float(np.abs(floor[free] - m[free]).max())
            self.free_m_ = floor
            new_prior = _weighted_share(post, weights, prior)
            converged = abs(new_prior - prior) <= 1e-4 * prior and moved < 1e-4
            prior = new_prior
            if converged:
                break
        return prior, u, iterations

    def _anchor_step(
        self, levels: np.ndarray, candidates: PairEvidence, m: np.ndarray, u: np.ndarray, prior: float
    ) -> None:
        """Fit each field's exact share and noise on its anchors.

        Field f's anchors are the candidate pairs whose match posterior *without f* is at least
        ``ANCHOR``: the other fields vouch for them, so f's levels among them are an unbiased
        look at f in real duplicates (the self-training signal of the combiner). EM over the
        three parts of m (exact, fuzzy, noise) on those levels, with ``SEED_PAIRS`` pseudo-pairs
        holding the starting values where anchors are few.
        """
        bits = self._bits(levels, candidates, m, u)
        logit = np.log2(prior / (1 - prior)) + bits.sum(axis=1)
        without = _sigmoid((logit[:, None] - bits) * np.log(2))
        fuzzy = self.seed_m_.copy()
        fuzzy[:, : EXACT_LEVEL + 1] = 0.0
        fuzzy /= np.maximum(fuzzy.sum(axis=1, keepdims=True), 1e-300)
        is_exact = np.arange(self.n_levels) == EXACT_LEVEL
        for f in range(len(self.fields)):
            chosen = (without[:, f] >= ANCHOR) & (levels[:, f] != NULL_LEVEL)
            self.anchored_[f] = chosen.sum() >= MIN_ANCHORS
            if not chosen.any():
                continue
            counts = np.bincount(levels[chosen, f], minlength=self.n_levels).astype(np.float64)
            counts[NULL_LEVEL] = 0.0
            a0, e0 = self.exact_share_[f], self.noise_[f]
            a, e = a0, e0
            for _ in range(50):
                clean = a * is_exact + (1.0 - a) * fuzzy[f]
                mixed = np.maximum((1.0 - e) * clean + e * u[f], 1e-300)
                noise_part = e * u[f] / mixed
                exact_part = (1.0 - e) * a * is_exact / mixed
                kept = counts * (1.0 - noise_part)
                e = (float((counts * noise_part).sum()) + SEED_PAIRS * e0) / (counts.sum() + SEED_PAIRS)
                a = (float((counts * exact_part).sum()) + SEED_PAIRS * a0) / (float(kept.sum()) + SEED_PAIRS)
            self.exact_share_[f] = float(np.clip(a, 0.01, 0.999))
            self.noise_[f] = float(np.clip(e, MIN_NOISE, 0.95))

    def fit_labelled(
        self,
        candidates: PairEvidence,
        is_match: np.ndarray,
        random: PairEvidence,
        total_pairs: float,
        pair_weight: float = 1.0,
    ) -> Combiner:
        """Supervised fit: m from labelled matches; u and the fields' dependence from random pairs
        known not to match; the prior from the labels."""
        y = is_match.astype(np.float64)
        if y.sum() == 0:
            raise ValueError("the labelled candidate pairs contain no matches")
        random_levels = self.levels(random)
        u = self._u_from_random(random_levels, np.ones(len(random)))
        self.interaction_ = self._fit_interaction(random_levels, np.ones(len(random)), np.zeros(len(random)))
        m = self._distribution(self.levels(candidates), y)
        # a level no labelled match happened to show is not impossible for a match: some of
        # a field's duplicates carry unrelated noise (as in the label-free fit's floor)
        m = (1.0 - MIN_NOISE) * m + MIN_NOISE * u
        m[:, NULL_LEVEL] = 1.0
        self.m_, self.u_ = self._monotone(m, u), u
        self.prior_ = float(np.clip(y.sum() * pair_weight / max(total_pairs, 1.0), 1e-12, 0.5))
        self.fit_report_ = FitReport(prior=self.prior_, estimated_matching_pairs=self.prior_ * total_pairs)
        return self

    # ---- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "tails": list(self.tails),
            "em_iterations": self.em_iterations,
            "smoothing": self.smoothing,
            "edges": {k: v.tolist() for k, v in self.edges_.items()},
            "exact_u": self.exact_u_.tolist(),
            "min_frequency": self.min_frequency_.tolist(),
            "m": self.m_.tolist(),
            "u": self.u_.tolist(),
            "interaction": self.interaction_.tolist(),
            "tf_scale": self.tf_scale_.tolist(),
            "prior": self.prior_,
            "fit": self.fit_report_.to_dict(),
            "label_answers": int(getattr(self, "label_answers_", 0)),
            "labels": None if getattr(self, "label_scale_", None) is None else self._label_dict(),
        }

    def _label_dict(self) -> dict[str, Any]:
        return {
            "scale": self.label_scale_.tolist(),
            "shift": self.label_shift_,
            "centre": self.label_centre_.tolist(),
            "slopes": self.label_slopes_.tolist(),
            "penalty": self.label_penalty_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Combiner:
        combiner = cls(data["fields"], tuple(data["tails"]), data["em_iterations"], data["smoothing"])
        combiner.edges_ = {k: np.asarray(v, dtype=np.float64) for k, v in data["edges"].items()}
        combiner.exact_u_ = np.asarray(data["exact_u"], dtype=np.float64)
        combiner.min_frequency_ = np.asarray(data["min_frequency"], dtype=np.float64)
        combiner.m_ = np.asarray(data["m"], dtype=np.float64)
        combiner.u_ = np.asarray(data["u"], dtype=np.float64)
        combiner.interaction_ = np.asarray(data["interaction"], dtype=np.float64)
        combiner.tf_scale_ = np.asarray(data["tf_scale"], dtype=np.float64)
        combiner.prior_ = float(data["prior"])
        combiner.fit_report_ = FitReport(**data["fit"])
        labels = data.get("labels")
        combiner.label_scale_, combiner.label_shift_ = None, 0.0
        combiner.label_answers_ = int(data.get("label_answers", 0))
        if labels is not None:
            combiner.label_penalty_ = labels.get("penalty")
            combiner.label_scale_ = np.asarray(labels["scale"], dtype=np.float64)
            combiner.label_shift_ = float(labels["shift"])
            combiner.label_centre_ = np.asarray(labels["centre"], dtype=np.float64)
            combiner.label_slopes_ = np.asarray(labels["slopes"], dtype=np.float64)
            missing = len(SLOPE_MEASURES) * len(combiner.fields) - len(combiner.label_centre_)
            if missing > 0:  # saved before the null pattern had a slope: it has none
                combiner.label_centre_ = np.concatenate([combiner.label_centre_, np.zeros(missing)])
                combiner.label_slopes_ = np.vstack([combiner.label_slopes_, np.zeros((missing, len(combiner.fields)))])
        return combiner


def check_fit(estimated: float, held: float, records: int, total_pairs: float) -> str | None:
    """Why a fitted prior is implausible, or None.

    ``held``: the matching pairs the clusters seen among the candidates can hold (sum of
    s(s-1)/2 over the clusters of pairs scored >= 0.5, chains cut). A fit is degenerate when it claims
    half of all pairs match, or many more matches than those clusters can hold (the rest would
    have to hide among pairs no blocking pass proposed, beyond one per record).
    """
    if estimated >= 0.5 * total_pairs * 0.999:
        return f"EM estimated {estimated:,.0f} matching pairs, half of all pairs"
    if estimated > 2.0 * held + records:
        return (
            f"EM estimated {estimated:,.0f} matching pairs, more than twice the {held:,.0f} the clusters "
            f"among the candidates can hold"
        )
    return None


def held_pairs(records: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray) -> float:
    """Pairs inside the clusters of the pairs scored >= 0.5 (the default clustering, which cuts
    chains): what the candidates' clusters can hold."""
    from dedup.clustering import cluster_labels
    from dedup.config import ClusteringConfig

    labels = cluster_labels(records, left, right, probability, 0.5, ClusteringConfig())
    sizes = np.bincount(labels).astype(np.float64)
    return float((sizes * (sizes - 1) / 2).sum())


def _weighted_share(post: np.ndarray, weights: np.ndarray, fallback: float) -> float:
    """The weighted share of matches (the prior), kept as it was when there is nothing to weigh
    (one record: no pairs at all)."""
    total = float(weights.sum())
    if total <= 0:
        return fallback
    return float(np.clip((post * weights).sum() / total, 1e-12, 0.5))


def fit_correction(
    features: np.ndarray,
    y: np.ndarray,
    base: float,
    fields: int,
    choice: tuple[str, float],
    boundary: float | None = None,
) -> np.ndarray:
    """The label correction's parameters (scales, shift, slopes) for one penalty strength.

    ``features``: per answered pair, its fields' bits, a 1 (for the shift), then its centred
    similarities; ``choice``: which parameters are free (``LABEL_FAMILIES``) and the penalty that
    pulls them toward scale 1, shift and slopes 0, each in its own units.

    ``boundary`` (the threshold's match weight, bits): the shift may move the boundary only
    within the match weights of the answered pairs, not past them (``shift_bounds``).
    """
    from scipy.optimize import minimize

    family, penalty = choice
    slopes = features.shape[1] - fields - 1
    prior = np.concatenate([np.ones(fields), [0.0], np.zeros(slopes)])
    spread = np.concatenate([np.ones(fields), [LABEL_SHIFT_BITS], np.full(slopes, LABEL_SLOPE_BITS)])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = (base + features @ theta) * np.log(2)
        residual = (_sigmoid(z) - y) * np.log(2)
        distance = (theta - prior) / spread
        value = float(np.sum(np.logaddexp(0.0, z) - y * z)) + penalty * float(distance @ distance)
        return value, features.T @ residual + 2 * penalty * distance / spread

    free_scales, free_slopes, free_nulls = family != "shift", family == "full", family in ("nulls", "full")
    shift = (None, None) if boundary is None else shift_bounds(base + features[:, :fields].sum(axis=1), boundary)
    bounds = (
        [(0.0, None) if free_scales else (1.0, 1.0)] * fields
        + [shift]
        + [(0.0, None) if free_slopes else (0.0, 0.0)] * (slopes - fields)
        # a null on one side may count either way (one shop never fills a field the other does)
        + [(None, None) if free_nulls else (0.0, 0.0)] * fields
    )
    return minimize(loss, prior, jac=True, method="L-BFGS-B", bounds=bounds).x


def shift_bounds(weights: np.ndarray, boundary: float) -> tuple[float, float]:
    """How far the answers may shift the prior (bits): until the boundary reaches the lowest or
    the highest match weight among the answered pairs, no further.

    Answers come from around the boundary (the queue asks where the model is least sure), so
    they measure its calibration there and nowhere else. Shifted past them, the boundary lands
    among pairs no one judged: on Cora 24 of the first 25 answers (match weights -0.5 to +0.8
    bits) were matches, the fitted shift of +3.8 bits took in pairs four bits lower, which join
    Cora's big clusters (pair-F1 0.92 -> 0.74); on SIGMOD X2 nine non-matches of ten gave -3.2
    bits (0.38 -> 0.16). Within the answers' span the next round's queue asks around the new
    boundary, and the shift can go on from there.
    """
    return float(boundary - weights.max()), float(boundary - weights.min())


def _held_out_choice(
    features: np.ndarray, y: np.ndarray, base: float, fields: int, threshold: float
) -> tuple[str, float] | None:
    """The correction (family and penalty) that decides the most answers right that it was not
    fitted on (``LABEL_FOLDS``-fold), or None when none decides more of them right than the model
    as it is. Families are tried simplest first (a shift, then scales, then slopes), each only
    with at least one answered point per parameter it frees, and penalties strongest first; a
    later one must do strictly better: few answers buy a small change. Answers whose pairs have
    the same evidence are one point: ten answers drawn from three groups of look-alike pairs
    (the queue's first picks on SIGMOD X2) fix a shift, not five fields' scales, which they
    chose at random (name scaled to 0.69: pair-F1 0.38 -> 0.22). And the rarer kind of answer
    bounds the parameters too: one match among 24 non-matches cannot say which field misled
    (Abt-Buy's first 25 answers, seed 0: the name's scale fell to 0.80, 0.529 -> 0.439; with
    this bound 0.534, and Restaurant's first 10 answers 0.903 -> 0.956).

    Decisions, not log loss, choose: answers the model already decides right reward a correction
    that only makes it surer (a larger scale on every field), and that moves every other pair
    near the boundary for nothing. Among corrections that fix as many held-out decisions, the
    one with the lower held-out log loss wins.
    """
    folds = min(LABEL_FOLDS, len(y)) if len(y) >= 2 and y.min() != y.max() else 1
    if folds < 2:
        return None
    fold = np.random.default_rng(0).permutation(len(y)) % folds
    boundary = float(np.log2(threshold / (1.0 - threshold)))
    slopes = features.shape[1] - fields - 1
    unchanged = np.concatenate([np.ones(fields), [0.0], np.zeros(slopes)])

    def held_out(choice: tuple[str, float] | None) -> tuple[int, float]:
        wrong, loss = 0, 0.0
        for k in range(folds):
            train, test = fold != k, fold == k
            theta = (
                unchanged
                if choice is None
                else fit_correction(features[train], y[train], base, fields, choice, boundary)
            )
            p = np.clip(_sigmoid((base + features[test] @ theta) * np.log(2)), 1e-6, 1 - 1e-6)
            wrong += int(((p >= threshold) != (y[test] > 0.5)).sum())
            loss -= float(np.sum(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p)))
        return wrong, loss

    told = int(np.any(features[:, -fields:] != 0.0, axis=0).sum())  # null terms the answers can fit
    sizes = {"shift": 1, "scales": fields + 1, "nulls": fields + 1 + told, "full": features.shape[1]}  # free parameters
    # what the answers tell apart: pairs with the same evidence are one point, however many
    distinct = {
        "shift": len(y),
        "scales": len(np.unique(features[:, :fields], axis=0)),
        "nulls": len(np.unique(np.concatenate([features[:, :fields], features[:, -fields:]], axis=1), axis=0)),
        "full": len(np.unique(features, axis=0)),
    }
    best, best_score = None, held_out(None)
    # a family is tried only with at least one answered point per free parameter it would fit
    minority = int(min(y.sum(), len(y) - y.sum()))  # the rarer answer bounds what can be told apart
    families = [family for family in LABEL_FAMILIES if sizes[family] <= min(distinct[family], minority)]
    for choice in ((family, penalty) for family in families for penalty in LABEL_PENALTIES):
        score = held_out(choice)
        if score[0] < best_score[0] or (best is not None and score[0] == best_score[0] and score[1] < best_score[1]):
            best, best_score = choice, score
    return best


def _measure_values(evidence: PairEvidence) -> np.ndarray:
    """Every slope measure per pair, measure after measure: ``(pairs, len(SLOPE_MEASURES) * fields)``
    (the null pattern 0 where not measured)."""
    return np.concatenate([*(getattr(evidence, m) for m in MEASURES), evidence.one_null_or_none()], axis=1).astype(
        np.float64
    )


def _measure_centres(evidence: PairEvidence) -> np.ndarray:
    """Per measure and field, the mean similarity over the pairs (0 where none is known)."""
    values = _measure_values(evidence)
    known = ~np.isnan(values)
    return np.where(known.any(axis=0), np.nansum(values, axis=0) / np.maximum(known.sum(axis=0), 1), 0.0)


def _measure_terms(evidence: PairEvidence, centre: np.ndarray) -> np.ndarray:
    """Each measure's similarity minus its centre, 0 where unknown: ``(pairs, measures * fields)``."""
    return np.nan_to_num(_measure_values(evidence) - centre, nan=0.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))
