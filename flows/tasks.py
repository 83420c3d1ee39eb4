"""Prefect tasks for the pipeline's stages and their pieces, shared by the flows.

Each stage writes into a content-addressed directory ``OUTPUT/.stages/<stage>-<key>/``, whose key
hashes everything the result depends on (input bytes, config, code version, upstream keys; see
``dedup.fingerprint``). A ``DONE`` marker is written last; a stage that finds it returns the
finished result at once. So a rerun after a failure resumes from the last finished stage, and a
rerun on unchanged input reuses the training. (Prefect's own result cache would hand back a
stored path without knowing whether the files behind it still exist.)

Blocking and scoring fan out over pieces (``dedup.parts``): one task per (pass, key partition),
per range of records to encode and per range of pairs to score. The task runner decides where
they run (threads here, or Dask workers); tasks exchange file paths only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task, unmapped

from dedup import parts, pipeline
from dedup.config import DedupConfig
from dedup.io import count_rows

DONE = "DONE"


def finished(stage: str, dest: Path, result: Path) -> bool:
    if (dest / DONE).is_file() and result.exists():
        get_run_logger().info("%s: reusing finished result %s", stage, dest.name)
        return True
    return False


def mark_done(dest: Path) -> None:
    (dest / DONE).write_text(json.dumps({"finished": time.time()}))


@dataclass(frozen=True)
class Partitioning:
    """How finely the flow cuts blocking and scoring into tasks."""

    block_partitions: int = 1  # hash partitions per blocking pass
    records_per_part: int = parts.RECORDS_PER_PART
    pairs_per_part: int = parts.PAIRS_PER_PART


# ---- block ----------------------------------------------------------------------------------
@task(retries=2, retry_delay_seconds=2)
def block_piece(input_path: str, config: DedupConfig, pass_index: int, part: int, partitions: int, dest: str) -> str:
    return str(parts.block_part(input_path, config, pass_index, part, partitions, dest))


@task(retries=2, retry_delay_seconds=2)
def merge_blocks(config: DedupConfig, pieces: list[str], dest: str) -> str:
    return str(parts.merge_blocks(config, pieces, dest))


def block(input_path: str, config: DedupConfig, dest: str, partitioning: Partitioning) -> str:
    """Candidate pairs: one task per pass and key partition, then their union."""
    path = Path(dest)
    result = path / "candidates.parquet"
    if finished("block", path, result):
        return str(result)
    jobs = [(i, k) for i in range(len(config.passes)) for k in range(partitioning.block_partitions)]
    futures = block_piece.map(
        input_path,
        unmapped(config),
        [i for i, _ in jobs],
        [k for _, k in jobs],
        unmapped(partitioning.block_partitions),
        unmapped(str(path / "blocks")),
    )
    candidates = merge_blocks(config, [f.result() for f in futures], str(path))
    mark_done(path)
    return candidates


# ---- train ----------------------------------------------------------------------------------
@task
def train(input_path: str, config: DedupConfig, candidates: str, dest: str) -> str:
    path = Path(dest)
    model = path / "model"
    if not finished("train", path, model):
        pipeline.train_stage(input_path, config, candidates, model)
        mark_done(path)
    return str(model)


# ---- encode + score -------------------------------------------------------------------------
@task(retries=2, retry_delay_seconds=2)
def encode_piece(input_path: str, config: DedupConfig, model_dir: str, start: int, stop: int, dest: str) -> str:
    return str(parts.encode_part(input_path, config, model_dir, start, stop, dest))


@task
def complete_candidates(config: DedupConfig, model_dir: str, candidates: str, embeddings: list[str], dest: str) -> str:
    return str(parts.complete_candidates(config, model_dir, candidates, embeddings, dest))


@task(retries=2, retry_delay_seconds=2)
def statistics_piece(input_path: str, config: DedupConfig, dest: str) -> str:
    return str(parts.statistics_part(input_path, config, dest))


@task(retries=2, retry_delay_seconds=2)
def score_piece(
    input_path: str,
    config: DedupConfig,
    model_dir: str,
    candidates: str,
    embeddings: list[str],
    statistics: str,
    start: int,
    stop: int,
    dest: str,
) -> tuple[str, str]:
    done = parts.score_part(input_path, config, model_dir, candidates, embeddings, statistics, start, stop, dest)
    return str(done.pairs), str(done.scores)


@task(retries=2, retry_delay_seconds=2)
def merge_scores(pieces: list[tuple[str, str]], dest: str) -> str:
    return str(parts.merge_scores([parts.ScorePart(Path(a), Path(b)) for a, b in pieces], dest))


def score(
    input_path: str, config: DedupConfig, model_dir: str, candidates: str, dest: str, partitioning: Partitioning
) -> str:
    """Encode (one task per range of records), then score (one task per range of pairs)."""
    path = Path(dest)
    result = path / "pairs.parquet"
    if finished("score", path, result):
        return str(result)
    record_ranges = parts.ranges(count_rows(input_path), partitioning.records_per_part)
    encoded = encode_piece.map(
        input_path,
        unmapped(config),
        unmapped(model_dir),
        [a for a, _ in record_ranges],
        [b for _, b in record_ranges],
        unmapped(str(path / "embeddings")),
    )
    embeddings = [f.result() for f in encoded]
    completed = complete_candidates(config, model_dir, candidates, embeddings, str(path))
    statistics = statistics_piece(input_path, config, str(path))
    pair_ranges = parts.ranges(parts.candidate_count(completed), partitioning.pairs_per_part)
    scored = score_piece.map(
        input_path,
        unmapped(config),
        unmapped(model_dir),
        unmapped(completed),
        unmapped(embeddings),
        unmapped(statistics),
        [a for a, _ in pair_ranges],
        [b for _, b in pair_ranges],
        unmapped(str(path / "scores")),
    )
    pairs = merge_scores([f.result() for f in scored], str(path))
    mark_done(path)
    return pairs


# ---- cluster + report -----------------------------------------------------------------------
@task(retries=2, retry_delay_seconds=2)
def cluster(input_path: str, config: DedupConfig, pairs: str, dest: str) -> str:
    path = Path(dest)
    result = path / "clusters.parquet"
    if not finished("cluster", path, result):
        pipeline.cluster_stage(input_path, config, pairs, path)
        mark_done(path)
    return str(result)


@task(retries=2, retry_delay_seconds=2)
def report(
    input_path: str, config: DedupConfig, output: str, timings: dict[str, float], files: pipeline.StageFiles
) -> dict[str, Any]:
    return pipeline.report_stage(input_path, config, output, timings, files, keep_sources=True)


class StageClock:
    """Runs stages, logging each one's progress and keeping its wall time for the report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.logger = get_run_logger()

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        self.logger.info("%s: started", name)
        start = time.perf_counter()
        result = fn(*args)
        self.seconds[name] = round(time.perf_counter() - start, 4)
        self.logger.info("%s: done in %.2fs", name, self.seconds[name])
        return result
