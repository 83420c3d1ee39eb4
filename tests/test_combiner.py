from __future__ import annotations

import numpy as np
import pytest

from dedup.combiner import EXACT_LEVEL, Combiner
from dedup.evidence import PairEvidence

FIELDS = ["a", "b", "c"]


def evidence(sims: np.ndarray, exact: np.ndarray | None = None, frequency: float = 0.01) -> PairEvidence:
    """Evidence for pairs with these similarities (exact where given: equal values of that frequency)."""
    sims = np.asarray(sims, dtype=np.float32).copy()
    exact = np.zeros(sims.shape, bool) if exact is None else exact
    sims[exact] = 1.0
    freq = np.where(exact, frequency, np.nan).astype(np.float32)
    nothing = np.zeros(sims.shape, bool)
    return PairEvidence(sims, np.full_like(sims, np.nan), exact, freq, nothing, nothing)


def population(rng: np.random.Generator, n_match: int, n_non: int) -> tuple[PairEvidence, np.ndarray]:
    """Candidates: matches mostly exact or very similar, non-matches spread out; 10% nulls."""
    match = np.clip(rng.normal(0.95, 0.04, size=(n_match, 3)), -1, 0.9999)
    non = np.clip(rng.normal(0.3, 0.2, size=(n_non, 3)), -1, 0.9999)
    sims = np.concatenate([match, non])
    exact = np.zeros(sims.shape, bool)
    exact[:n_match] = rng.random((n_match, 3)) < 0.6
    sims[rng.random(sims.shape) < 0.1] = np.nan
    return evidence(sims, exact & ~np.isnan(sims)), np.r_[np.ones(n_match, bool), np.zeros(n_non, bool)]


def random_pairs(rng: np.random.Generator, n: int) -> PairEvidence:
    return evidence(np.clip(rng.normal(0.0, 0.25, size=(n, 3)), -1, 0.99))


def seed(rng: np.random.Generator, n: int = 2000) -> PairEvidence:
    sims = np.clip(rng.normal(0.93, 0.05, size=(n, 3)), -1, 0.9999)
    return evidence(sims, rng.random((n, 3)) < 0.6)


FREQUENCIES = [np.array([0.0, 0.0001, 0.01, 0.2, 0.3])] * 3  # per value id: chance another record shares it


def fitted(rng: np.random.Generator, candidates: PairEvidence, total: float, **kw) -> Combiner:
    random = random_pairs(rng, 50_000)
    combiner = Combiner(FIELDS).fit_edges(random, [1e-4] * 3, FREQUENCIES)
    return combiner.fit_em(candidates, random, seed(rng), total_pairs=total, **kw)


def test_em_without_labels_separates_and_estimates_the_number_of_matches() -> None:
    rng = np.random.default_rng(0)
    candidates, truth = population(rng, 1000, 9000)  # 1,000 matches among 10,000 candidates
    combiner = fitted(rng, candidates, total=1_000_000)  # the other 990,000 pairs look random
    assert combiner.fit_report_.estimated_matching_pairs == pytest.approx(1000, rel=0.15)
    predicted = combiner.predict_proba(candidates) >= 0.5
    assert (predicted == truth).mean() > 0.98


def test_level_edges_follow_each_fields_own_similarity_scale() -> None:
    rng = np.random.default_rng(1)
    # field a's random pairs live near 0.9 (dates compared digit by digit do), field b's near 0.1
    sims = np.stack([rng.normal(0.9, 0.02, 20000), rng.normal(0.1, 0.1, 20000), rng.normal(0, 0.2, 20000)], 1)
    combiner = Combiner(FIELDS).fit_edges(evidence(np.clip(sims, -1, 0.999)), [0.0] * 3, [np.zeros(2)] * 3)
    edges = combiner.edges_["sims"]
    assert edges[0, 0] > 0.85 and edges[1, 0] < 0.3  # the 30% tail of each field's own distribution
    # 0.93 is unremarkable for field a (about the 6% tail) but far out for field b
    levels = combiner.levels(evidence(np.array([[0.93, 0.93, 0.0]])))
    assert levels[0, 0] > levels[0, 1]  # a higher level number = less similar


def test_exact_agreement_on_a_rare_value_weighs_more_than_on_a_common_one() -> None:
    rng = np.random.default_rng(2)
    candidates, _ = population(rng, 500, 5000)
    combiner = fitted(rng, candidates, total=500_000)
    exact = np.array([[True, False, False], [True, False, False]])
    sims = np.array([[1.0, 0.2, 0.2], [1.0, 0.2, 0.2]])
    pairs = evidence(sims, exact)
    frequency = pairs.frequency.copy()
    frequency[0, 0], frequency[1, 0] = 0.0001, 0.2  # a surname held by 0.01% vs 20% of records
    pairs = PairEvidence(pairs.sims, pairs.tokens, pairs.exact, frequency, pairs.long, pairs.codes_differ)
    bits = combiner.field_weights(pairs)[:, 0]
    assert bits[0] - bits[1] == pytest.approx(np.log2(0.2 / 0.0001), abs=0.01)


def test_weights_never_rise_as_similarity_falls() -> None:
    rng = np.random.default_rng(3)
    candidates, _ = population(rng, 300, 3000)
    combiner = fitted(rng, candidates, total=300_000)
    table = np.log2(combiner.m_[:, EXACT_LEVEL:]) - np.log2(combiner.u_[:, EXACT_LEVEL:])
    assert (np.diff(table, axis=1) <= 1e-9).all()


def test_a_fit_claiming_a_city_sized_class_falls_back_and_says_so() -> None:
    rng = np.random.default_rng(4)
    # no duplicates at all, but a third of the candidates share field a exactly (a city):
    # a fit that calls them matches must be refused
    n = 30_000
    exact = np.zeros((n, 3), bool)
    exact[: n // 3, 0] = True
    sims = np.clip(rng.normal(0.2, 0.2, size=(n, 3)), -1, 0.99)
    candidates = evidence(sims, exact, frequency=0.3)
    records = 2000
    left, right = rng.integers(0, records, n), rng.integers(0, records, n)
    combiner = fitted(rng, candidates, total=records * (records - 1) / 2, records=records, pairs=(left, right))
    report = combiner.fit_report_
    assert report.estimated_matching_pairs < n / 3
    assert (combiner.predict_proba(candidates) >= 0.5).sum() < n / 100


def test_two_fields_carrying_the_same_information_are_not_counted_twice() -> None:
    rng = np.random.default_rng(5)
    n = 40_000
    base = np.clip(rng.normal(0.0, 0.3, n), -1, 0.999)
    # among non-matches, a and b agree together (b copies a); c is independent
    random = evidence(np.stack([base, base, np.clip(rng.normal(0.0, 0.3, n), -1, 0.999)], 1))
    combiner = Combiner(FIELDS).fit_edges(random, [0.0] * 3, [np.zeros(2)] * 3)
    candidates, _ = population(rng, 200, 2000)
    combiner.fit_em(candidates, random, seed(rng), total_pairs=2_000_000)
    # measured: a and b agree together far more often than a and c do
    assert combiner.interaction_[0, 1] > combiner.interaction_[0, 2] + 1.0
    near_miss = evidence(np.array([[0.999, 0.999, 0.0]]))
    plain = combiner._bits(combiner.levels(near_miss), near_miss, combiner.m_, combiner.u_).sum()
    assert combiner.field_weights(near_miss).sum() < plain  # the shared agreement counts less


def test_labelled_fit_weights_nulls_and_round_trip() -> None:
    rng = np.random.default_rng(6)
    candidates, truth = population(rng, 500, 2000)
    random = random_pairs(rng, 5000)
    combiner = Combiner(FIELDS).fit_edges(random, [1e-4] * 3, FREQUENCIES)
    combiner.fit_labelled(candidates, truth, random, total_pairs=100_000)
    assert combiner.prior_ == pytest.approx(500 / 100_000)
    weights = combiner.field_weights(candidates)
    assert (weights[np.isnan(candidates.sims)] == 0).all()  # nulls are neutral
    log_odds = combiner.prior_weight() + weights.sum(axis=1, dtype=np.float64)
    identical = (combiner.levels(candidates) == EXACT_LEVEL).all(axis=1)
    assert np.allclose(
        1 / (1 + 2.0 ** -log_odds[~identical]), combiner.predict_proba(candidates)[~identical], atol=1e-5
    )
    again = Combiner.from_dict(combiner.to_dict())
    assert np.array_equal(again.predict_proba(candidates), combiner.predict_proba(candidates))


def test_pair_labels_correct_a_field_the_label_free_fit_over_trusts_and_round_trip() -> None:
    rng = np.random.default_rng(7)
    candidates, truth = population(rng, 1000, 9000)
    combiner = fitted(rng, candidates, total=1_000_000)
    # the data the model meets: near-misses (a and b alike) that agree on field c (a shared
    # manufacturer), which the label-free fit calls matches
    misled, misled_truth = population(rng, 300, 3000)
    sims = misled.sims.copy()
    sims[~misled_truth, 2] = np.clip(rng.normal(0.97, 0.02, size=(~misled_truth).sum()), -1, 0.9999)
    sims[~misled_truth, :2] = np.clip(rng.normal(0.8, 0.08, size=((~misled_truth).sum(), 2)), -1, 0.9999)
    exact = misled.exact.copy()
    exact[~misled_truth, 2] = rng.random((~misled_truth).sum()) < 0.6
    misled = evidence(sims, exact & ~np.isnan(sims))
    before = (combiner.predict_proba(misled) >= 0.5) == misled_truth
    unchanged = Combiner.from_dict(combiner.to_dict())
    assert unchanged.fit_pair_labels(misled.take(np.array([], dtype=np.int64)), np.array([], bool)).label_scale_ is None
    asked = rng.choice(len(misled), size=60, replace=False)
    combiner.fit_pair_labels(misled.take(asked), misled_truth[asked])
    after = (combiner.predict_proba(misled) >= 0.5) == misled_truth
    assert before.mean() < 0.5
    assert combiner.label_scale_[2] < 0.5  # c's agreement is trusted less
    assert after.mean() > 0.85
    # the explanation still adds up: prior + field contributions = match weight
    weights = combiner.field_weights(misled)
    identical = (combiner.levels(misled) == EXACT_LEVEL).all(axis=1)
    log_odds = combiner.prior_weight() + weights.sum(axis=1, dtype=np.float64)
    assert np.allclose(log_odds[~identical], combiner.match_weight(misled)[~identical], atol=1e-3)
    again = Combiner.from_dict(combiner.to_dict())
    assert np.array_equal(again.predict_proba(misled), combiner.predict_proba(misled))


def test_answers_move_the_boundary_only_as_far_as_the_answered_pairs_and_look_alikes_count_once() -> None:
    """The queue asks about pairs around the boundary. When they are nearly all matches, the
    shift brings the boundary down to the lowest answered pair, not past it into pairs no one
    judged; and ten answers about two groups of look-alike pairs fix no field's scale."""
    from dedup.combiner import shift_bounds

    rng = np.random.default_rng(3)
    candidates, _ = population(rng, 1000, 9000)
    combiner = fitted(rng, candidates, total=1_000_000)
    weights = combiner.match_weight(candidates)
    band = np.flatnonzero((weights > -1.0) & (weights < 1.0))
    asked = rng.choice(band, size=25, replace=False)
    answers = np.ones(25, bool)
    answers[0] = False  # 24 of 25 matches: the model is too strict around its boundary
    lowest, highest = weights[asked].min(), weights[asked].max()
    assert shift_bounds(weights[asked], 0.0) == pytest.approx((-highest, -lowest))
    corrected = Combiner.from_dict(combiner.to_dict()).fit_pair_labels(candidates.take(asked), answers)
    assert 0 < corrected.label_shift_ <= -lowest + 1e-6
    shifted = Combiner.from_dict(combiner.to_dict())
    shifted.label_scale_, shifted.label_shift_ = np.ones(3), corrected.label_shift_
    shifted.label_centre_, shifted.label_slopes_ = corrected.label_centre_, np.zeros_like(corrected.label_slopes_)
    below = weights < lowest - 0.05
    assert below.sum() > 1000 and (shifted.predict_proba(candidates)[below] < 0.5).all()  # none judged down there
    # ten answers about two kinds of pair (each kind's pairs have the same evidence)
    twins = candidates.take(np.repeat(band[:2], 5))
    split = np.array([True, True, True, False, False, True, False, False, False, False])
    taught = Combiner.from_dict(combiner.to_dict()).fit_pair_labels(twins, split)
    assert taught.label_penalty_ is None or taught.label_penalty_[0] == "shift"
    assert taught.label_scale_ is None or np.all(taught.label_scale_ == 1.0)


def test_one_answered_match_among_many_non_matches_fixes_a_shift_not_the_fields_scales() -> None:
    """24 answered non-matches alike on one field and one match alike on the others: the one
    match cannot tell which field misleads, so the answers may shift the boundary but not
    rescale the fields (Abt-Buy's first 25 answers: the name's scale fell to 0.80, 0.53 -> 0.44)."""
    rng = np.random.default_rng(9)
    candidates, _ = population(rng, 400, 4000)
    combiner = fitted(rng, candidates, total=400_000)
    sims = np.empty((25, 3))
    sims[:24, 0] = rng.uniform(0.97, 0.999, 24)
    sims[:24, 1:] = rng.uniform(0.8, 0.9, (24, 2))
    sims[24] = [0.6, 0.98, 0.98]
    answers, is_match = evidence(sims), np.r_[np.zeros(24, bool), True]
    assert (combiner.predict_proba(answers) >= 0.5).all()  # the model calls all 25 matches
    taught = Combiner.from_dict(combiner.to_dict()).fit_pair_labels(answers, is_match)
    assert taught.label_penalty_ is not None and taught.label_penalty_[0] == "shift"
    assert np.all(taught.label_scale_ == 1.0) and taught.label_shift_ < 0
    # with matches enough to tell the fields apart, the scales are free again
    more = np.concatenate([sims, np.tile([[0.6, 0.98, 0.98]], (5, 1)) + rng.uniform(-0.01, 0.01, (5, 3))])
    freed = Combiner.from_dict(combiner.to_dict()).fit_pair_labels(evidence(more), np.r_[is_match, np.ones(5, bool)])
    assert freed.label_penalty_ is not None and freed.label_penalty_[0] != "shift"


def test_a_different_model_number_makes_the_field_different_when_scoring_not_when_fitting() -> None:
    """Two televisions of one series read alike but for their model numbers: scoring puts the
    field at its "different" level, while the label-free fit reads the similarity alone."""
    rng = np.random.default_rng(6)
    candidates, _ = population(rng, 400, 4000)
    combiner = fitted(rng, candidates, total=400_000)
    pairs = evidence(np.array([[0.99, 0.95, 0.95], [0.99, 0.95, 0.95]]))
    differ = np.zeros((2, 3), bool)
    differ[1, 0] = True
    pairs = PairEvidence(pairs.sims, pairs.tokens, pairs.exact, pairs.frequency, pairs.long, differ)
    levels = combiner.levels(pairs)
    assert levels[1, 0] == combiner.n_levels - 1 and levels[0, 0] < combiner.n_levels - 1
    assert combiner.levels(pairs, codes=False)[1, 0] == levels[0, 0]
    bits = combiner.field_weights(pairs)
    assert bits[0, 0] > 0 > bits[1, 0]
    # the other fields lose nothing (only their dependence with the first, now not agreeing)
    assert (bits[1, 1:] >= bits[0, 1:]).all()
    exact = pairs.exact.copy()
    exact[1, 0] = True  # equal values never differ
    both = PairEvidence(pairs.sims, pairs.tokens, exact, np.where(exact, 0.01, np.nan), pairs.long, differ)
    assert combiner.levels(both)[1, 0] == EXACT_LEVEL


def test_u_counts_the_pairs_naming_other_models_where_scoring_puts_them() -> None:
    """One shop's siblings (alike titles, other model numbers) sit at the "different" level when
    scoring, so they must not count in u at their words' level: there a pair of one model
    would get too few bits. The prior, fitted on the similarities alone, stays as it was."""
    rng = np.random.default_rng(7)
    candidates, _ = population(rng, 400, 4000)
    siblings = np.clip(rng.normal(0.95, 0.02, size=(3000, 3)), -1, 0.9999)
    siblings[:, 1:] = rng.normal(0.3, 0.2, size=(3000, 2))
    both = PairEvidence.concat([candidates, evidence(siblings)])
    differ = np.zeros(both.sims.shape, bool)
    differ[len(candidates) :, 0] = True  # every sibling names another model in field a
    named = PairEvidence(both.sims, both.tokens, both.exact, both.frequency, both.long, differ)
    plain = fitted(np.random.default_rng(8), both, total=400_000)
    read = fitted(np.random.default_rng(8), named, total=400_000)
    assert read.prior_ == plain.prior_
    one_model = evidence(np.array([[0.96, 0.3, 0.3]]))
    level = plain.levels(one_model)[0, 0]
    assert read.u_[0, level] < 0.85 * plain.u_[0, level]
    assert read.field_weights(one_model)[0, 0] > plain.field_weights(one_model)[0, 0] + 0.3
    assert (read.field_weights(one_model)[0, 1:] == plain.field_weights(one_model)[0, 1:]).all()
    # the pairs that do name other models weigh what the "different" level says, in both
    sibling = PairEvidence(
        one_model.sims, one_model.tokens, one_model.exact, one_model.frequency, one_model.long, np.eye(1, 3, dtype=bool)
    )
    assert read.field_weights(sibling)[0, 0] < 0


def test_bits_and_level_counts_are_the_plain_per_field_formulas() -> None:
    """``_bits`` gathers by a flat index and ``_distribution`` counts every (field, level) in
    one bincount; both must give exactly the per-field numbers: a lookup of log2(m/u), the
    exact level TF-adjusted, and a weighted bincount per field."""
    rng = np.random.default_rng(3)
    candidates, _ = population(rng, 500, 4500)
    combiner = fitted(rng, candidates, total=200_000)
    combiner.interaction_ = np.zeros((3, 3))  # the dependence cut is its own step
    levels = combiner.levels(candidates)
    m, u = combiner.m_, combiner.u_
    table = np.log2(m) - np.log2(u)
    table[:, 0] = 0.0
    plain = table[np.arange(3)[None, :], levels]
    exact = levels == EXACT_LEVEL
    tf = np.log2(np.maximum(np.where(exact, candidates.frequency, 1.0), combiner.min_frequency_[None, :]))
    plain = np.where(exact, (np.log2(m[:, EXACT_LEVEL]) - np.log2(combiner.tf_scale_))[None, :] - tf, plain)
    assert exact.any() and (levels == 0).any()
    assert np.array_equal(combiner._bits(levels, candidates, m, u), plain)

    weights = rng.random(len(levels))
    counted = combiner._distribution(levels, weights)
    for f in range(3):
        counts = np.bincount(levels[:, f], weights=weights, minlength=combiner.n_levels)
        counts[0] = 0.0
        counts[1:] += combiner.smoothing * weights.sum() / combiner.n_levels
        assert np.array_equal(counted[f, 1:], counts[1:] / counts[1:].sum())
    assert (counted[:, 0] == 1.0).all()


def test_answers_can_say_that_a_field_missing_on_one_side_marks_a_match_and_round_trip() -> None:
    """Two shops' records, one of which never fills field c (Abt-Buy's manufacturer): every
    match pairs a record with c to one without, while one shop's siblings, which the model takes
    for matches, agree on c. Scoring weighs a null as 0 bits; the answers free a term per field
    for "null on one side" (either sign), which separates the two where field scales cannot."""
    rng = np.random.default_rng(3)
    candidates, truth = population(rng, 1000, 9000)
    combiner = fitted(rng, candidates, total=1_000_000)
    n_match, n_sibling = 300, 600
    sims = np.clip(rng.normal(0.9, 0.05, size=(n_match + n_sibling, 3)), -1, 0.9999)
    sims[n_match:, :2] = np.clip(rng.normal(0.88, 0.05, size=(n_sibling, 2)), -1, 0.9999)
    sims[:n_match, 2] = np.nan  # c: missing on one side of every match
    sims[-100:, 2] = np.nan  # and of the non-matches across the shops
    sims[-100:, :2] = np.clip(rng.normal(0.6, 0.1, size=(100, 2)), -1, 0.9999)
    sims[n_match : n_match + 60, 1] = np.nan  # b: missing on one side of some siblings, no match
    exact = np.zeros(sims.shape, bool)
    exact[n_match:-100, 2] = rng.random(n_sibling - 100) < 0.7  # siblings share the manufacturer
    pairs = evidence(sims, exact)
    one_null = np.zeros(sims.shape, bool)
    one_null[:n_match, 2] = one_null[-100:, 2] = True
    one_null[n_match : n_match + 60, 1] = True
    pairs = PairEvidence(
        pairs.sims, pairs.tokens, pairs.exact, pairs.frequency, pairs.long, pairs.codes_differ, one_null
    )
    is_match = np.r_[np.ones(n_match, bool), np.zeros(n_sibling, bool)]
    before = ((combiner.predict_proba(pairs) >= 0.5) == is_match).mean()
    asked = rng.choice(len(is_match), size=60, replace=False)
    combiner.fit_pair_labels(pairs.take(asked), is_match[asked])
    after = ((combiner.predict_proba(pairs) >= 0.5) == is_match).mean()
    assert combiner.label_penalty_[0] in ("nulls", "full")
    null_terms = combiner.label_slopes_[-3:].diagonal()  # the null block: one term per field
    assert null_terms[2] > 0  # c missing on one side speaks for a match
    # b is null on one side only in non-matches among the answers: a term for it would have no
    # finite best value, so it gets none
    assert one_null[asked, 1].any() and null_terms[1] == 0.0
    assert before < 0.7 and after > 0.9
    again = Combiner.from_dict(combiner.to_dict())
    assert np.array_equal(again.predict_proba(pairs), combiner.predict_proba(pairs))
    # a model saved before the null terms existed loads with none
    saved = combiner.to_dict()
    saved["labels"]["centre"] = saved["labels"]["centre"][:6]
    saved["labels"]["slopes"] = saved["labels"]["slopes"][:6]
    old = Combiner.from_dict(saved)
    without = combiner.label_slopes_.copy()
    without[-3:] = 0.0
    assert np.array_equal(old.label_slopes_, without)
