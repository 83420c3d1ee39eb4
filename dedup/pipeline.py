"""The whole job, stage by stage: read -> block -> train -> encode -> score -> cluster -> write.

``run`` is what ``dedup run`` calls; the Prefect flow calls the same stage functions one task
each. Every stage is timed for the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dedup.blocking import CandidatePairs, block
from dedup.clustering import cluster_records
from dedup.config import DedupConfig, load_config
from dedup.evaluation import evaluate_frames
from dedup.io import prepare_output_dir, read_records, write_json, write_parquet
from dedup.model import DedupModel
from dedup.normalise import normalise_fields
from dedup.scoring import score_pairs

TEST_SHARE = 0.3  # share of labelled clusters held out from training for the report's metrics


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def label_split(labels: pl.Series, seed: int, test_share: float = TEST_SHARE) -> np.ndarray:
    """True for records whose entity is held out for testing; whole clusters stay together."""
    hashed = labels.cast(pl.String).hash(seed=seed).to_numpy()
    return (hashed % 10_000) < int(test_share * 10_000)


def train_labels(records: pl.DataFrame, config: DedupConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Labels for training (held-out records masked to None) and the held-out mask."""
    if not config.label_column:
        return None, None
    labels = records[config.label_column].cast(pl.String)
    test = label_split(labels, config.seed)
    train = labels.to_numpy().astype(object)
    train[test] = None
    return train, test


def fit_or_load(
    config: DedupConfig, normalised: pl.DataFrame, pairs: CandidatePairs, records: pl.DataFrame,
    model_path: str | Path | None,
) -> DedupModel:
    if model_path is not None:
        return DedupModel.load(model_path, expect=config)
    labels, _ = train_labels(records, config)
    return DedupModel(config).fit(normalised, pairs, labels)


def summarise(
    config: DedupConfig, records: pl.DataFrame, pairs: CandidatePairs, scored: pl.DataFrame,
    clusters: pl.DataFrame, timings: Timings,
) -> dict[str, Any]:
    """The report: counts, blocking passes, timings and, with labels, held-out metrics."""
    sizes = clusters.select("cluster_id", "cluster_size").unique()
    first = np.bincount(pairs.pass_index, minlength=len(pairs.pass_names)) if len(pairs) else []
    report: dict[str, Any] = {
        "counts": {
            "records": records.height,
            "candidate_pairs": len(pairs),
            "matches": int(scored["is_match"].sum()),
            "clusters": sizes.height,
            "duplicate_clusters": int((sizes["cluster_size"] > 1).sum()),
            "records_in_duplicate_clusters": int((clusters["cluster_size"] > 1).sum()),
            "largest_cluster": int(sizes["cluster_size"].max()),
        },
        "threshold": config.threshold,
        "blocking": [
            {"pass": name, "pairs": int(count), "new_pairs": int(new)}
            for name, count, new in zip(pairs.pass_names, pairs.pass_counts, first, strict=False)
        ],
        "timings_seconds": dict(timings.seconds),
    }
    if config.label_column:
        _, test = train_labels(records, config)
        test_ids = clusters.filter(pl.Series(test))[config.id_column]
        id_l, id_r = f"{config.id_column}_l", f"{config.id_column}_r"
        held_out = clusters.filter(pl.Series(test))
        held_pairs = scored.filter(pl.col(id_l).is_in(test_ids.implode()) & pl.col(id_r).is_in(test_ids.implode()))
        report["metrics"] = {
            "evaluated_on": f"held-out clusters ({int(test.sum())} records, {TEST_SHARE:.0%} of entities)",
            **evaluate_frames(held_out, held_pairs, config.id_column, held_out[config.label_column]),
        }
    return report


def run(
    input_path: str | Path,
    config: DedupConfig | str | Path,
    output_dir: str | Path,
    model_path: str | Path | None = None,
) -> dict[str, Any]:
    """Deduplicate ``input_path`` into ``output_dir``; returns the report (also written)."""
    if not isinstance(config, DedupConfig):
        config = load_config(config)
    output = prepare_output_dir(output_dir)
    timings = Timings()
    with timings.stage("read"):
        records = read_records(input_path, config)
        normalised = normalise_fields(records, config)
    with timings.stage("block"):
        pairs = block(records, normalised, config)
    with timings.stage("train"):
        model = fit_or_load(config, normalised, pairs, records, model_path)
    with timings.stage("encode"):
        embeddings = model.embed(normalised)
    with timings.stage("score"):
        scored = score_pairs(model, records, embeddings, pairs)
        scored = scored.with_columns((pl.col("match_probability") >= config.threshold).alias("is_match"))
    with timings.stage("cluster"):
        clusters = cluster_records(
            records, config.id_column, pairs.left, pairs.right,
            scored["match_probability"].to_numpy(), config.threshold,
        )
    with timings.stage("write"):
        if model_path is None:
            model.save(output / "model")
        write_parquet(scored, output / "pairs.parquet")
        write_parquet(clusters, output / "clusters.parquet")
    report = summarise(config, records, pairs, scored, clusters, timings)
    report["input"] = str(input_path)
    report["model"] = str(model_path or output / "model")
    write_json(report, output / "report.json")
    return report
