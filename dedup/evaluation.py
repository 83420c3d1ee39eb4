"""Evaluation: how predicted matches and clusters compare with ground-truth entity labels.

Three views, as used by Splink, dedupe and the entity-resolution literature:
- pairwise: the candidate pairs predicted as matches against all true pairs (so pairs lost in
  blocking count as misses);
- cluster pairs: every pair of records sharing a predicted cluster against every pair sharing a
  true one (what connected components actually produce);
- B-cubed: per-record precision and recall of its cluster, averaged.
Plus blocking quality: pair completeness (share of true pairs among candidates) and reduction
ratio (share of all pairs that blocking avoided). All counts come from group-bys, no pair loops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from dedup.config import DedupConfig
from dedup.encoder import to_codepoints
from dedup.errors import InputError
from dedup.io import check_run_output, read_clusters, run_config

_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def stable_hash(values: pl.Series, seed: int) -> np.ndarray:
    """FNV-1a of each string's code points, seeded: the same on every machine and polars
    version (``Series.hash`` promises neither), vectorised over the rows."""
    strings = values.cast(pl.String).fill_null("")
    width = max(int(strings.str.len_chars().max() or 0), 1)
    codes, lengths = to_codepoints(strings, width)
    h = np.full(len(strings), _FNV_OFFSET ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(width):
            h = np.where(k < lengths, (h ^ codes[:, k].astype(np.uint64)) * _FNV_PRIME, h)
        h = (h ^ lengths.astype(np.uint64)) * _FNV_PRIME
    return h


def label_split(labels: pl.Series, seed: int, test_share: float) -> np.ndarray:
    """True for records whose entity is held out for testing; whole clusters stay together."""
    return (stable_hash(labels, seed) % np.uint64(10_000)) < np.uint64(int(test_share * 10_000))


def train_labels(records: pl.DataFrame, config: DedupConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Labels for training (held-out records masked to None) and the held-out mask."""
    if not config.label_column:
        return None, None
    labels = records[config.label_column].cast(pl.String)
    test = label_split(labels, config.seed, config.label_test_share)
    train = labels.to_numpy().astype(object)
    train[test] = None
    return train, test


def _prf(tp: float, predicted: float, actual: float) -> dict[str, float]:
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _pairs_in(sizes: pl.Series) -> float:
    s = sizes.cast(pl.Float64)
    return float((s * (s - 1) / 2).sum())


def cluster_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Cluster-pair and B-cubed precision/recall/F1 for per-record predicted and true labels."""
    frame = pl.DataFrame({"p": predicted, "t": truth})
    cells = frame.group_by("p", "t").len()
    tp = _pairs_in(cells["len"])
    pred_pairs = _pairs_in(frame.group_by("p").len()["len"])
    true_pairs = _pairs_in(frame.group_by("t").len()["len"])
    per_record = frame.with_columns(
        pl.len().over("p", "t").alias("both"), pl.len().over("p").alias("np"), pl.len().over("t").alias("nt")
    )
    b_precision = float((per_record["both"] / per_record["np"]).mean())
    b_recall = float((per_record["both"] / per_record["nt"]).mean())
    b_f1 = 2 * b_precision * b_recall / (b_precision + b_recall)
    return {
        "cluster_pairs": {**_prf(tp, pred_pairs, true_pairs), "true_pairs": true_pairs, "predicted_pairs": pred_pairs},
        "b_cubed": {"precision": b_precision, "recall": b_recall, "f1": b_f1},
    }


def pair_metrics(
    truth: np.ndarray, left: np.ndarray, right: np.ndarray, is_match: np.ndarray
) -> dict[str, dict[str, float]]:
    """Pairwise metrics of predicted matches and blocking quality, on row positions."""
    n = len(truth)
    true_pairs = _pairs_in(pl.Series(truth).value_counts()["count"])
    same = truth[left] == truth[right]
    total_pairs = n * (n - 1) / 2
    return {
        "pairwise": {
            **_prf(float((same & is_match).sum()), float(is_match.sum()), true_pairs),
            "true_pairs": true_pairs,
            "predicted_matches": float(is_match.sum()),
        },
        "blocking": {
            "candidate_pairs": float(len(left)),
            "pair_completeness": float(same.sum()) / true_pairs if true_pairs else 1.0,
            "reduction_ratio": 1.0 - len(left) / total_pairs if total_pairs else 0.0,
        },
    }


def evaluate_frames(
    ids: pl.Series, cluster_ids: pl.Series, pairs: pl.DataFrame, id_column: str, truth: pl.Series
) -> dict[str, dict[str, float]]:
    """Metrics for a run's records (their ``ids`` and ``cluster_ids``) and pairs table; ``truth``
    is aligned with ``ids``."""
    truth_codes = truth.cast(pl.String).rank("dense").to_numpy()
    pred_codes = cluster_ids.cast(pl.String).rank("dense").to_numpy()
    # a record with no label is its own entity
    missing = np.isnan(truth_codes) if truth_codes.dtype.kind == "f" else np.zeros(len(truth_codes), bool)
    truth_codes = np.where(missing, -1 - np.arange(len(truth_codes)), np.nan_to_num(truth_codes)).astype(np.int64)
    position = pl.DataFrame({"_id": ids, "_pos": np.arange(ids.len())})
    located = (
        pairs.select(pl.col(f"{id_column}_l").alias("_l"), pl.col(f"{id_column}_r").alias("_r"), pl.col("is_match"))
        .join(position, left_on="_l", right_on="_id", how="inner")
        .join(position, left_on="_r", right_on="_id", how="inner", suffix="_r")
    )
    metrics = pair_metrics(
        truth_codes, located["_pos"].to_numpy(), located["_pos_r"].to_numpy(), located["is_match"].to_numpy()
    )
    metrics.update(cluster_metrics(pred_codes.astype(np.int64), truth_codes))
    return metrics


def evaluate_output(output_dir: str | Path, truth_path: str | Path, label_column: str) -> dict[str, dict[str, float]]:
    """``dedup evaluate``: score a finished run's output against a labelled file."""
    output_dir = check_run_output(output_dir)
    inputs, outputs = read_clusters(output_dir)
    pairs = pl.read_parquet(output_dir / "pairs.parquet")
    id_column = run_config(output_dir).id_column
    truth_path = Path(truth_path)
    if not truth_path.is_file():
        raise InputError(f"truth file not found: {truth_path}")
    truth = pl.read_parquet(truth_path)
    for column in (id_column, label_column):
        if column not in truth.columns:
            raise InputError(f"{truth_path}: column {column!r} is missing (the file has: {', '.join(truth.columns)})")
    aligned = inputs.select(id_column).join(
        truth.select(id_column, pl.col(label_column).alias("_truth")),
        on=id_column,
        how="left",
        maintain_order="left",
    )
    return evaluate_frames(inputs[id_column], outputs["cluster_id"], pairs, id_column, aligned["_truth"])
