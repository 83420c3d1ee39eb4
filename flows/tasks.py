"""Prefect tasks, one per pipeline stage, shared by the flows.

Each task writes into a content-addressed directory ``OUTPUT/.stages/<stage>-<key>/``, whose key
hashes everything the result depends on (input bytes, config, code version, upstream keys; see
``dedup.fingerprint``). A ``DONE`` marker is written last; a task that finds it returns the
finished result at once. So a rerun after a failure resumes from the last finished stage, and a
rerun on unchanged input reuses the training. (Prefect's own result cache would hand back a
stored path without knowing whether the files behind it still exist.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from dedup import pipeline
from dedup.config import DedupConfig

DONE = "DONE"


def _reuse_or_run(stage: str, dest: Path, result: Path, produce: Callable[[], object]) -> str:
    logger = get_run_logger()
    if (dest / DONE).is_file() and result.exists():
        logger.info("%s: reusing finished result %s", stage, dest.name)
        return str(result)
    produce()
    (dest / DONE).write_text(json.dumps({"finished": time.time()}))
    return str(result)


@task(retries=2, retry_delay_seconds=2)
def block(input_path: str, config: DedupConfig, dest: str) -> str:
    path = Path(dest)
    return _reuse_or_run(
        "block", path, path / "candidates.parquet", lambda: pipeline.block_stage(input_path, config, path)
    )


@task
def train(input_path: str, config: DedupConfig, candidates: str, dest: str) -> str:
    path = Path(dest)
    model = path / "model"
    return _reuse_or_run("train", path, model, lambda: pipeline.train_stage(input_path, config, candidates, model))


@task(retries=2, retry_delay_seconds=2)
def score(input_path: str, config: DedupConfig, model_dir: str, candidates: str, dest: str) -> str:
    path = Path(dest)
    return _reuse_or_run(
        "score",
        path,
        path / "pairs.parquet",
        lambda: pipeline.score_stage(input_path, config, model_dir, candidates, path),
    )


@task(retries=2, retry_delay_seconds=2)
def cluster(input_path: str, config: DedupConfig, pairs: str, dest: str) -> str:
    path = Path(dest)
    return _reuse_or_run(
        "cluster", path, path / "clusters.parquet", lambda: pipeline.cluster_stage(input_path, config, pairs, path)
    )


@task(retries=2, retry_delay_seconds=2)
def report(
    input_path: str, config: DedupConfig, output: str, timings: dict[str, float], files: pipeline.StageFiles
) -> dict[str, Any]:
    return pipeline.report_stage(input_path, config, output, timings, files, keep_sources=True)


class StageClock:
    """Runs tasks, logging each stage's progress and keeping its wall time for the report."""

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
