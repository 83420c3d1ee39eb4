"""Which pair is asked next (``dedup.review.active``), on a hand-made pairs.parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from dedup.review.active import ActiveQueue, expected_f1_change, priority_frame


def pairs_file(tmp_path: Path) -> Path:
    """Six pairs: two on the boundary, one near it sharing a record with the first, one far
    below, one far above, and one the encoder and the combiner disagree about."""
    frame = pl.DataFrame(
        {
            "id_l": ["a", "c", "a", "g", "i", "k"],
            "id_r": ["b", "d", "f", "h", "j", "l"],
            "match_probability": [0.5, 0.5, 0.45, 0.0001, 0.9999, 0.01],
            "match_weight": [0.0, 0.0, -0.3, -13.0, 13.0, -6.6],
            "sim_name": [0.6, 0.6, 0.5, 0.1, 0.99, 0.97],
            "bf_name": [1.0, 1.0, 2.0, -6.0, 6.0, -3.0],
            "bf_city": [-1.0, -1.0, -2.3, -7.0, 7.0, -3.6],
            "blocking_pass": ["block(city)", "block(city)", "block(city)", "block(city)", "block(city)", "embedding"],
        }
    )
    path = tmp_path / "pairs.parquet"
    frame.write_parquet(path)
    return path


def test_the_boundary_comes_first_then_pairs_about_other_records(tmp_path: Path) -> None:
    frame = priority_frame(pairs_file(tmp_path), "id", ["name"], threshold=0.5)
    queue = ActiveQueue(frame, "id")
    pairs = list(zip(frame["id_l"].to_list(), frame["id_r"].to_list(), strict=True))
    first = pairs[queue.next_pairs(1)[0]]
    assert first in {("a", "b"), ("c", "d")}  # on the boundary
    queue.note_answer(*first, "block(city)")
    order = [pairs[i] for i in queue.next_pairs(6)]
    assert first not in order and len(order) == 5  # answered pairs are never asked again
    if first == ("a", "b"):
        # the pair near the boundary about record a comes after every pair about fresh records
        assert order[0] == ("c", "d") and order[-1] == ("a", "f")
    # the pair the encoder likes (0.97) but the combiner does not, found by the pass with no
    # answers yet, beats pairs the model is sure of
    position = {left: i for i, (left, _) in enumerate(order)}
    assert position["k"] < position["g"] and position["k"] < position["i"]


def test_answered_pairs_are_left_out_after_a_retrain(tmp_path: Path) -> None:
    path = pairs_file(tmp_path)
    pl.read_parquet(path).with_columns(
        pl.when(pl.col("id_r") == "b").then(pl.lit("match")).otherwise(None).alias("label")
    ).write_parquet(path)
    frame = priority_frame(path, "id", ["name"], threshold=0.5)
    assert ("a", "b") not in list(zip(frame["id_l"], frame["id_r"], strict=True)) and frame.height == 5


def test_the_expected_f1_change_counts_what_answers_fix() -> None:
    probability = np.array([0.9, 0.6, 0.4, 0.1])
    nothing = np.zeros(4, dtype=bool)
    assert expected_f1_change(probability, nothing, np.zeros(4), 0.5) == 0.0
    # the 0.6 pair answered non-match: a predicted match the model doubted was wrong
    answered = np.array([False, True, False, False])
    assert expected_f1_change(probability, answered, np.zeros(4), 0.5) > 0.0
    # the 0.4 pair answered match: a missed match found
    answered = np.array([False, False, True, False])
    assert expected_f1_change(probability, answered, np.array([0, 0, 1.0, 0]), 0.5) > 0.0


def test_pairs_the_combiner_cannot_tell_apart_are_asked_about_in_no_particular_order(tmp_path: Path) -> None:
    """Forty pairs with one match weight near the boundary (the same levels on every field) and
    encoder views from 0.025 to 1, above 200 sure non-matches. Ranked one by one against the
    group's high weight, the least alike would come first, be answered "non-match" again and
    again for a group that is half matches, and the correction fitted on those answers would sink
    the whole group (SIGMOD X2: 24 of the first 25 answers). So the group's disagreement is one
    number, and its pairs come in an order unrelated to how alike they look."""
    rng = np.random.default_rng(0)
    views = np.arange(1, 41) / 40
    frame = pl.DataFrame(
        {
            "id_l": [f"l{i}" for i in range(240)],
            "id_r": [f"r{i}" for i in range(240)],
            "match_probability": [0.53] * 40 + [0.001] * 200,
            "match_weight": [0.19] * 40 + [-10.0] * 200,
            "sim_name": list(views) + list(rng.uniform(0.0, 0.5, 200)),
            "blocking_pass": ["tokens(name)"] * 240,
        }
    )
    path = tmp_path / "pairs.parquet"
    frame.write_parquet(path)
    queued = priority_frame(path, "id", ["name"], threshold=0.5)
    assert queued.filter(pl.col("match_weight") == 0.19)["disagreement"].n_unique() == 1
    queue = ActiveQueue(queued, "id")
    first = [queued["sim_name"][i] for i in queue.next_pairs(10)]
    assert all(queued["match_weight"][i] == 0.19 for i in queue.next_pairs(10))  # the boundary first
    assert 0.3 < float(np.mean(first)) < 0.7  # a fair sample of the group, not its least alike end


def two_groups(tmp_path: Path, labels: list[str | None] | None = None) -> pl.DataFrame:
    """Two groups of twenty look-alike pairs below the boundary (one match weight each, A nearer
    it than B), above sure non-matches; ``labels`` (optional) as a retrained run's label column."""
    frame = pl.DataFrame(
        {
            "id_l": [f"l{i}" for i in range(60)],
            "id_r": [f"r{i}" for i in range(60)],
            "match_probability": [0.45] * 20 + [0.35] * 20 + [0.001] * 20,
            "match_weight": [-0.29] * 20 + [-0.89] * 20 + [-10.0] * 20,
            "sim_name": [0.5] * 40 + [0.1] * 20,
            "blocking_pass": ["tokens(name)"] * 60,
        }
    )
    if labels is not None:
        frame = frame.with_columns(pl.Series("label", labels + [None] * (60 - len(labels)), dtype=pl.String))
    path = tmp_path / "pairs.parquet"
    frame.write_parquet(path)
    return priority_frame(path, "id", ["name"], threshold=0.5)


def groups_asked(queued: pl.DataFrame, queue: ActiveQueue, answers: dict[float, str], count: int) -> list[float]:
    """The match weights of the next ``count`` pairs asked, each answered as ``answers`` says
    for its group."""
    weights = []
    for _ in range(count):
        row = queue.next_pairs(1)[0]
        weight = queued["match_weight"][row]
        weights.append(weight)
        queue.note_answer(queued["id_l"][row], queued["id_r"][row], "tokens(name)", answers[weight])
    return weights


def test_a_group_whose_answers_bear_out_the_model_gives_way_to_the_next(tmp_path: Path) -> None:
    """Abt-Buy's queue (seed 0) spent 10 of its first 12 answers on one group of 18 look-alike
    pairs at -1.07 bits, every answer "non-match", as the model already said: nothing to correct.
    A group's answers update its probability (the model's worth ``GROUP_PRIOR`` answers), so
    once they bear the model out the next group is asked; a group whose answers contradict the
    model is asked on, since that is where a correction is to be learnt."""
    queued = two_groups(tmp_path)
    # A's pairs are non-matches (as the model says), B's matches (it says non-match)
    asked = groups_asked(queued, ActiveQueue(queued, "id"), {-0.29: "non-match", -0.89: "match"}, 12)
    assert asked[0] == -0.29 and asked[1] == -0.89  # A is nearer the boundary; one answer is enough to move on
    assert asked.count(-0.89) >= 8  # then mostly B, whose answers say the model is wrong
    # the other way round, A is asked on
    queued = two_groups(tmp_path)
    asked = groups_asked(queued, ActiveQueue(queued, "id"), {-0.29: "match", -0.89: "non-match"}, 12)
    assert asked.count(-0.29) >= 8  # (before answers counted, all twelve were A's either way)


def test_a_retrained_runs_answers_still_count_for_their_group(tmp_path: Path) -> None:
    # after a retrain the answered pairs are gone from the queue, their labels in pairs.parquet
    queued = two_groups(tmp_path, labels=["non-match"] * 4)
    assert queued.height == 56 and queued.filter(pl.col("match_weight") == -0.29)["group_non_matches"][0] == 4
    queue = ActiveQueue(queued, "id")
    assert queued["match_weight"][queue.next_pairs(1)[0]] == -0.89
    # without them the group nearer the boundary would come first
    fresh = two_groups(tmp_path)
    assert fresh["match_weight"][ActiveQueue(fresh, "id").next_pairs(1)[0]] == -0.29


def test_a_changed_answer_counts_once(tmp_path: Path) -> None:
    queued = two_groups(tmp_path)
    queue = ActiveQueue(queued, "id")
    for label in ("match", "non-match", "non-match"):  # answered, changed, then given again
        queue.note_answer("l0", "r0", "tokens(name)", label)
    row = queued["id_l"].to_list().index("l0")
    assert queue.group_answers(row) == (0, 1)
    queue.note_answer("l0", "r0", "tokens(name)", "unsure")  # unsure counts for neither
    assert queue.group_answers(row) == (0, 0)
