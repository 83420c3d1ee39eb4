"""Pair labels: the atomic store, reading a labels file back, and answers mapped to rows."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dedup.errors import InputError
from dedup.labels import LabelStore, labelled_rows, latest_answers, read_labels


def test_answers_are_appended_and_the_latest_about_a_pair_wins(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.parquet")
    assert store.append("a", "b", "match") == 1
    assert store.append("c", "d", "unsure") == 2
    assert store.append("b", "a", "non-match") == 3  # the same pair, the other way round
    frame = read_labels(tmp_path / "labels.parquet")
    assert frame.columns == ["left_id", "right_id", "label", "time"]
    assert frame["time"].null_count() == 0
    latest = latest_answers(frame)
    assert latest.select("left_id", "right_id", "label").rows() == [("c", "d", "unsure"), ("a", "b", "non-match")]


def test_undo_removes_only_the_latest_answer_about_that_pair(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.parquet")
    store.append("a", "b", "match")
    store.append("c", "d", "match")
    store.append("a", "b", "non-match")
    assert store.undo("b", "a")
    assert latest_answers(store.read()).select("left_id", "label").rows() == [("a", "match"), ("c", "match")]
    assert store.undo("a", "b") and not store.undo("a", "b")
    assert store.read().height == 1


def test_an_unknown_label_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.parquet")
    with pytest.raises(ValueError, match="label must be one of"):
        store.append("a", "b", "maybe")
    assert not (tmp_path / "labels.parquet").exists()


def test_threads_answering_at_once_lose_nothing(tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "labels.parquet")

    def answer(worker: int) -> None:
        for i in range(15):
            store.append(f"w{worker}-{i}", f"x{i}", "match")

    threads = [threading.Thread(target=answer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read().height == 60


def _answer_in_process(path: str, worker: int) -> None:
    store = LabelStore(path)
    for i in range(10):
        store.append(f"p{worker}-{i}", "y", "non-match")


def test_processes_answering_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "labels.parquet")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_answer_in_process, args=(path, w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert LabelStore(path).read().height == 30


def test_a_damaged_or_wrong_labels_file_is_one_line_naming_it(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="damaged.parquet: not a readable labels file"):
        read_labels(damaged)
    wrong = tmp_path / "wrong.parquet"
    pl.DataFrame({"left_id": ["a"], "right_id": ["b"], "label": ["yes"]}).write_parquet(wrong)
    with pytest.raises(InputError, match=r"wrong.parquet: row 0: label must be one of"):
        read_labels(wrong)
    with pytest.raises(InputError, match="lacks column"):
        pl.DataFrame({"left_id": ["a"]}).write_parquet(wrong)
        read_labels(wrong)
    with pytest.raises(InputError, match="not found"):
        read_labels(tmp_path / "missing.parquet")


def test_a_labels_file_written_by_hand_needs_no_time_and_may_use_integer_ids(tmp_path: Path) -> None:
    path = tmp_path / "mine.parquet"
    pl.DataFrame(
        {"left_id": [1, 3, 5], "right_id": [2, 4, 99], "label": ["match", "non-match", "match"]}
    ).write_parquet(path)
    left, right, is_match = labelled_rows(read_labels(path), pl.Series([5, 4, 3, 2, 1]))
    # id 99 is not in the input: that answer is left out; ids map to row positions
    assert sorted(zip(left.tolist(), right.tolist(), is_match.tolist(), strict=True)) == [(2, 1, False), (4, 3, True)]
    assert left.dtype == np.int64


def test_dedup_run_learns_from_a_labels_file_and_answers_decide_their_pairs(
    tmp_path: Path, febrl1_file: Path, tiny_config_file: Path
) -> None:
    from dedup.cli import main

    first = tmp_path / "first"
    assert main(["run", str(febrl1_file), "--config", str(tiny_config_file), "--output", str(first)]) == 0
    pairs = pl.read_parquet(first / "pairs.parquet")
    truth = pl.read_parquet(febrl1_file).select("rec_id", "cluster")
    known = (
        pairs.join(truth.rename({"rec_id": "rec_id_l", "cluster": "a"}), on="rec_id_l")
        .join(truth.rename({"rec_id": "rec_id_r", "cluster": "b"}), on="rec_id_r")
        .sort("match_probability")
    )
    # 30 answers: the 15 least likely pairs answered "match" and 15 likely ones "non-match",
    # against the model, so the next run must show the answers deciding those pairs
    asked = pl.concat([known.head(15), known.tail(15)])
    labels = asked.select(
        pl.col("rec_id_l").alias("left_id"),
        pl.col("rec_id_r").alias("right_id"),
        pl.when(pl.col("match_probability") < 0.5).then(pl.lit("match")).otherwise(pl.lit("non-match")).alias("label"),
    )
    labels.write_parquet(tmp_path / "labels.parquet")
    second = tmp_path / "second"
    command = ["run", str(febrl1_file), "--config", str(tiny_config_file), "--output", str(second)]
    assert main([*command, "--labels", str(tmp_path / "labels.parquet")]) == 0
    after = pl.read_parquet(second / "pairs.parquet").filter(pl.col("label").is_not_null())
    assert after.height == 30
    assert (after["match_probability"] == (after["label"] == "match").cast(pl.Float32)).all()
    assert (after["is_match"] == (after["label"] == "match")).all()
    report = pl.read_json(second / "report.json")
    assert report["labels"][0]["answers_used"] == 30

    (tmp_path / "bad.parquet").write_text("not parquet")
    assert main([*command, "--labels", str(tmp_path / "bad.parquet")]) == 2
