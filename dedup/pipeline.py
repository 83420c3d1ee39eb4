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

from dedup import parts
from dedup.blocking import CandidatePairs
from dedup.charts import write_charts
from dedup.clustering import input_renames
from dedup.combiner import Combiner
from dedup.config import DedupConfig, load_config
from dedup.evaluation import evaluate_frames
from dedup.io import (
    copy_file,
    largest_blocks,
    load_candidates,
    load_input,
    prepare_output_dir,
    replace_directory,
    skipped_passes,
    swap_directory,
    write_json,
)
from dedup.model import DedupModel
from dedup.summary import largest_clusters

TEST_SHARE = 0.3  # share of labelled entities held out from training for the report's metrics


@dataclass(frozen=True)
class Layout:
    """Where one run's files live."""

    output: Path

    @property
    def work(self) -> Path:
        return self.output / ".work"

    @property
    def stages(self) -> Path:
        """Content-addressed stage results the Prefect flow reuses across runs."""
        return self.output / ".stages"

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
def block_stage(input_path: str | Path, config: DedupConfig, dest: str | Path, partitions: int = 1) -> Path:
    """Candidate pairs (row positions + first pass) to ``dest/candidates.parquet``."""
    dest = Path(dest)
    pieces = [
        parts.block_part(input_path, config, i, k, partitions, dest / "blocks")
        for i in range(len(config.passes))
        for k in range(partitions)
    ]
    target = parts.merge_blocks(config, pieces, dest)
    shutil.rmtree(dest / "blocks", ignore_errors=True)
    return target


def train_stage(input_path: str | Path, config: DedupConfig, candidates: str | Path, model_dir: str | Path) -> Path:
    """Train the encoder and combiner on the input and save the model directory."""
    records, normalised = load_input(input_path, config)
    labels, _ = train_labels(records, config)
    model = DedupModel(config).fit(normalised, load_candidates(candidates), labels)
    return model.save(model_dir)


def score_stage(
    input_path: str | Path,
    config: DedupConfig,
    model_dir: str | Path,
    candidates: str | Path,
    dest: str | Path,
    records_per_part: int = parts.RECORDS_PER_PART,
    pairs_per_part: int = parts.PAIRS_PER_PART,
) -> Path:
    """Encode every record once, score every candidate pair, write ``dest/pairs.parquet``.

    Records are encoded and pairs scored a piece at a time (``dedup.parts``), so memory holds
    one piece of pairs, never all of them.
    """
    dest = Path(dest)
    records, _ = load_input(input_path, config)
    embeddings = [
        parts.encode_part(input_path, config, model_dir, start, stop, dest / "embeddings")
        for start, stop in parts.ranges(records.height, records_per_part)
    ]
    candidates = parts.complete_candidates(config, model_dir, candidates, embeddings, dest)
    statistics = parts.statistics_part(input_path, config, dest)
    scored = [
        parts.score_part(
            input_path, config, model_dir, candidates, embeddings, statistics, start, stop, dest / "scores"
        )
        for start, stop in parts.ranges(parts.candidate_count(candidates), pairs_per_part)
    ]
    return parts.merge_scores(scored, dest)


def cluster_stage(input_path: str | Path, config: DedupConfig, pairs_path: str | Path, dest: str | Path) -> Path:
    """Clusters from the scored pairs: every input row with its cluster to ``dest/clusters.parquet``."""
    return parts.cluster_parts(input_path, config, parts.score_files(pairs_path), dest)


def scored_candidates(pairs_path: str | Path, candidates: str | Path) -> Path:
    """The candidates the score stage used: completed by embedding passes if it wrote them."""
    completed = Path(pairs_path).with_name("candidates.parquet")
    return completed if completed.exists() else Path(candidates)


@dataclass(frozen=True)
class StageFiles:
    """The files one run's stages produced (under ``.work/`` for the CLI, ``.stages/`` for the flow)."""

    candidates: Path
    pairs: Path
    clusters: Path
    model: Path
    publish_model: bool  # True when the model was trained by this run and belongs in OUTPUT/model


def report_stage(
    input_path: str | Path,
    config: DedupConfig,
    output: str | Path,
    timings: dict[str, float],
    files: StageFiles,
    keep_sources: bool = False,
) -> dict[str, Any]:
    """Counts, blocking passes, timings and (with labels) held-out metrics; publishes the run.

    ``keep_sources`` copies the stage files into place instead of moving them (the flow keeps
    them as its cache).
    """
    layout = Layout(Path(output))
    records, _ = load_input(input_path, config)
    pairs = load_candidates(scored_candidates(files.pairs, files.candidates))
    id_l, id_r = f"{config.id_column}_l", f"{config.id_column}_r"
    scored = pl.read_parquet(files.pairs, columns=[id_l, id_r, "is_match"])  # all the report needs
    clusters = pl.read_parquet(files.clusters)
    inner_path = files.pairs.with_name("score_timings.json")
    inner = json.loads(inner_path.read_text()) if inner_path.exists() else {}
    if "encode" in inner:  # the score stage encodes first: report the two parts separately
        timings = {**timings, "encode": inner["encode"]}
        if "score" in timings:
            timings["score"] = round(max(timings["score"] - inner["encode"], 0.0), 4)
    report = summarise(config, records, pairs, scored, clusters, timings, largest_blocks(files.candidates))
    for entry, reason in zip(report["blocking"], skipped_passes(files.candidates) or [], strict=False):
        if reason:
            entry["skipped"] = reason
    report["score_breakdown_seconds"] = inner
    report["input"] = str(input_path)
    report["model"] = str(layout.model if files.publish_model else files.model)
    combiner = Combiner.from_dict(json.loads((Path(files.model) / "combiner.json").read_text()))
    report["prior_weight_bits"] = combiner.prior_weight()
    report["model_fit"] = combiner.fit_report_.to_dict()
    report["renamed_input_columns"] = input_renames(records.columns)
    report["largest_clusters"] = largest_clusters(
        clusters, config.field_names, count=10, renames=report["renamed_input_columns"]
    )
    publish(layout, report, files, keep_sources)
    write_charts(layout.output, config)
    return report


def publish(layout: Layout, report: dict[str, Any], files: StageFiles, keep_sources: bool) -> None:
    """Put the finished outputs in place (each by an atomic rename), the report last, then clean up."""
    if files.publish_model:
        if keep_sources:
            replace_directory(lambda tmp: shutil.copytree(files.model, tmp, dirs_exist_ok=True), layout.model)
        else:
            swap_directory(files.model, layout.model)
    for source, name in ((files.pairs, "pairs.parquet"), (files.clusters, "clusters.parquet")):
        if keep_sources:
            copy_file(source, layout.output / name)
        else:
            os.replace(source, layout.output / name)
    write_json(report, layout.output / "report.json")
    shutil.rmtree(layout.work, ignore_errors=True)


def summarise(
    config: DedupConfig,
    records: pl.DataFrame,
    pairs: CandidatePairs,
    scored: pl.DataFrame,
    clusters: pl.DataFrame,
    timings: dict[str, float],
    blocks: list[int] | None = None,
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
            {"pass": name, "pairs": int(count), "new_pairs": int(new), "largest_block": block_size}
            for name, count, new, block_size in zip(
                pairs.pass_names, pairs.pass_counts, first, blocks or [None] * len(first), strict=False
            )
        ],
        "blocking_summary": {
            "candidate_pairs": len(pairs),
            "pairs_per_record": round(len(pairs) / max(records.height, 1), 4),
            "reduction_ratio": 1 - len(pairs) / max(records.height * (records.height - 1) / 2, 1),
        },
        "timings_seconds": dict(timings),
    }
    if config.label_column:
        _, test = train_labels(records, config)
        held = pl.Series(test)
        held_ids = records[config.id_column].filter(held)  # clusters rows are the input's, in order
        id_l, id_r = f"{config.id_column}_l", f"{config.id_column}_r"
        test_ids = held_ids.implode()
        held_pairs = scored.filter(pl.col(id_l).is_in(test_ids) & pl.col(id_r).is_in(test_ids))
        truth = records[config.label_column].cast(pl.String).to_numpy()
        same = truth[pairs.left] == truth[pairs.right]
        true_pairs = _pairs_among(records[config.label_column])
        for i, entry in enumerate(report["blocking"]):  # true pairs found by this pass and those before it
            entry["pair_completeness_cumulative"] = float(same[pairs.pass_index <= i].sum() / max(true_pairs, 1))
        report["blocking_summary"]["pair_completeness"] = float(same.sum() / max(true_pairs, 1))
        report["metrics"] = {
            "evaluated_on": f"held-out entities: {int(test.sum())} records ({TEST_SHARE:.0%} of entities, "
            f"never used in training)",
            **evaluate_frames(
                held_ids,
                clusters["cluster_id"].filter(held),
                held_pairs,
                config.id_column,
                records[config.label_column].filter(held),
            ),
        }
    return report


def _pairs_among(labels: pl.Series) -> float:
    sizes = labels.drop_nulls().value_counts()["count"].cast(pl.Float64)
    return float((sizes * (sizes - 1) / 2).sum())


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
        candidates = block_stage(input_path, config, layout.work)
    model_dir = Path(model_path) if model_path else layout.new_model
    if model_path is None:
        with timings.stage("train"):
            train_stage(input_path, config, candidates, model_dir)
    with timings.stage("score"):
        pairs_path = score_stage(input_path, config, model_dir, candidates, layout.work)
    with timings.stage("cluster"):
        clusters_path = cluster_stage(input_path, config, pairs_path, layout.work)
    with timings.stage("report"):
        files = StageFiles(candidates, pairs_path, clusters_path, model_dir, publish_model=model_path is None)
        return report_stage(input_path, config, layout.output, timings.seconds, files)
