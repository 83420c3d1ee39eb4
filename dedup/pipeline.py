"""The whole job, stage by stage: read -> block -> train -> encode/score -> cluster -> write.

Each stage is a function from files to files, so the CLI (``run``) and the Prefect flow (one task
per stage) share one code path and pass paths, never pickled tables. Stage results go to
``OUTPUT/.work/``; ``publish`` moves the finished set into ``OUTPUT/`` at the end (each file by an
atomic rename, the report last), so a failed run never mixes new files with old ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dedup.blocking import CandidatePairs, block, pairs_from_frame, pairs_to_frame
from dedup.clustering import cluster_records
from dedup.config import DedupConfig, load_config
from dedup.evaluation import evaluate_frames
from dedup.io import prepare_output_dir, read_records, swap_directory, write_json, write_parquet
from dedup.model import DedupModel
from dedup.normalise import normalise_fields
from dedup.scoring import score_pairs

TEST_SHARE = 0.3  # share of labelled entities held out from training for the report's metrics
OUTPUTS = ("pairs.parquet", "clusters.parquet")


@dataclass(frozen=True)
class Layout:
    """Where one run's files live."""

    output: Path

    @property
    def work(self) -> Path:
        return self.output / ".work"

    @property
    def candidates(self) -> Path:
        return self.work / "candidates.parquet"

    @property
    def candidates_meta(self) -> Path:
        return self.work / "candidates.json"

    @property
    def model(self) -> Path:
        """Where the run's model is published."""
        return self.output / "model"

    @property
    def new_model(self) -> Path:
        """Where a model trained by this run waits until the run succeeds."""
        return self.work / "model"


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


def start(output_dir: str | Path) -> Layout:
    """Create the output directory and clear what an earlier failed run left in ``.work/``."""
    layout = Layout(prepare_output_dir(output_dir))
    shutil.rmtree(layout.work, ignore_errors=True)
    return layout


def as_config(config: DedupConfig | str | Path) -> DedupConfig:
    return config if isinstance(config, DedupConfig) else load_config(config)


def load_input(input_path: str | Path, config: DedupConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read stage: the validated table and its normalised field values."""
    records = read_records(input_path, config)
    return records, normalise_fields(records, config)


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


# ---- stages: files in, files out -----------------------------------------------------------
def block_stage(input_path: str | Path, config: DedupConfig, output: str | Path) -> Path:
    """Candidate pairs (row positions + first pass) to ``.work/candidates.parquet``."""
    layout = Layout(Path(output))
    records, normalised = load_input(input_path, config)
    pairs = block(records, normalised, config)
    write_parquet(pairs_to_frame(pairs), layout.candidates)
    write_json({"pass_names": pairs.pass_names, "pass_counts": pairs.pass_counts}, layout.candidates_meta)
    return layout.candidates


def load_candidates(path: str | Path) -> CandidatePairs:
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    pairs = pairs_from_frame(pl.read_parquet(path), tuple(meta["pass_names"]))
    return CandidatePairs(pairs.left, pairs.right, pairs.pass_index, pairs.pass_names, tuple(meta["pass_counts"]))


def train_stage(input_path: str | Path, config: DedupConfig, candidates: str | Path, model_dir: str | Path) -> Path:
    """Train the encoder and combiner on the input and save the model directory."""
    records, normalised = load_input(input_path, config)
    labels, _ = train_labels(records, config)
    model = DedupModel(config).fit(normalised, load_candidates(candidates), labels)
    return model.save(model_dir)


def score_stage(
    input_path: str | Path, config: DedupConfig, model_dir: str | Path, candidates: str | Path, output: str | Path
) -> Path:
    """Encode every record once, score every candidate pair, write ``.work/pairs.parquet``."""
    records, normalised = load_input(input_path, config)
    model = DedupModel.load(model_dir, expect=config)
    start = time.perf_counter()
    embeddings = model.embed(normalised)
    encode_seconds = time.perf_counter() - start
    scored = score_pairs(model, records, embeddings, load_candidates(candidates))
    write_json({"encode": round(encode_seconds, 4)}, Layout(Path(output)).work / "score_timings.json")
    scored = scored.with_columns((pl.col("match_probability") >= config.threshold).alias("is_match"))
    return write_parquet(scored, Layout(Path(output)).work / "pairs.parquet")


def cluster_stage(
    input_path: str | Path, config: DedupConfig, candidates: str | Path, pairs_path: str | Path, output: str | Path
) -> Path:
    """Connected components over matches; every input row with its cluster to ``.work/clusters.parquet``."""
    records = read_records(input_path, config)
    pairs = load_candidates(candidates)
    probability = pl.read_parquet(pairs_path, columns=["match_probability"])["match_probability"].to_numpy()
    clusters = cluster_records(
        records, config.id_column, pairs.left, pairs.right, probability, config.threshold, config.clustering
    )
    return write_parquet(clusters, Layout(Path(output)).work / "clusters.parquet")


def report_stage(
    input_path: str | Path, config: DedupConfig, output: str | Path, timings: dict[str, float], model_dir: str | Path
) -> dict[str, Any]:
    """Counts, blocking passes, timings and (with labels) held-out metrics; publishes the run."""
    layout = Layout(Path(output))
    records = read_records(input_path, config)
    pairs = load_candidates(layout.candidates)
    scored = pl.read_parquet(layout.work / "pairs.parquet")
    clusters = pl.read_parquet(layout.work / "clusters.parquet")
    inner = layout.work / "score_timings.json"
    if inner.exists():  # the score stage encodes first: report the two parts separately
        encode = json.loads(inner.read_text())["encode"]
        timings = {**timings, "encode": encode}
        if "score" in timings:
            timings["score"] = round(max(timings["score"] - encode, 0.0), 4)
    report = summarise(config, records, pairs, scored, clusters, timings)
    report["input"] = str(input_path)
    trained = Path(model_dir) == layout.new_model
    report["model"] = str(layout.model if trained else model_dir)
    publish(layout, report, trained)
    return report


def publish(layout: Layout, report: dict[str, Any], trained: bool) -> None:
    """Move the finished outputs into place (atomic renames), then the report, then clean up."""
    if trained:
        swap_directory(layout.new_model, layout.model)
    for name in OUTPUTS:
        os.replace(layout.work / name, layout.output / name)
    write_json(report, layout.output / "report.json")
    shutil.rmtree(layout.work, ignore_errors=True)


def summarise(
    config: DedupConfig,
    records: pl.DataFrame,
    pairs: CandidatePairs,
    scored: pl.DataFrame,
    clusters: pl.DataFrame,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The report's content."""
    sizes = clusters.select("cluster_id", "cluster_size").unique()
    first = np.bincount(pairs.pass_index, minlength=len(pairs.pass_names))
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
        "timings_seconds": dict(timings),
    }
    if config.label_column:
        _, test = train_labels(records, config)
        held_out = clusters.filter(pl.Series(test))
        test_ids = held_out[config.id_column].implode()
        id_l, id_r = f"{config.id_column}_l", f"{config.id_column}_r"
        held_pairs = scored.filter(pl.col(id_l).is_in(test_ids) & pl.col(id_r).is_in(test_ids))
        report["metrics"] = {
            "evaluated_on": f"held-out entities: {int(test.sum())} records ({TEST_SHARE:.0%} of entities, "
            f"never used in training)",
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
    config = as_config(config)
    layout = start(output_dir)
    timings = Timings()
    with timings.stage("read"):
        load_input(input_path, config)
    with timings.stage("block"):
        candidates = block_stage(input_path, config, layout.output)
    model_dir = Path(model_path) if model_path else layout.new_model
    if model_path is None:
        with timings.stage("train"):
            train_stage(input_path, config, candidates, model_dir)
    with timings.stage("score"):
        pairs_path = score_stage(input_path, config, model_dir, candidates, layout.output)
    with timings.stage("cluster"):
        cluster_stage(input_path, config, candidates, pairs_path, layout.output)
    with timings.stage("report"):
        return report_stage(input_path, config, layout.output, timings.seconds, model_dir)
