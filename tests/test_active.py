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
