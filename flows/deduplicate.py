"""The ``deduplicate`` Prefect flow: one task per pipeline stage, passing file paths.

Runs without a server (``python -m flows.deduplicate --input ... --config ... --output ...``
starts a temporary local one) and as a deployment. All work happens in ``dedup.pipeline``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from dedup import pipeline
from dedup.config import DedupConfig, load_config


@task(retries=2, retry_delay_seconds=2)
def block(input_path: str, config: DedupConfig, output: str) -> str:
    return str(pipeline.block_stage(input_path, config, output))


@task
def train(input_path: str, config: DedupConfig, candidates: str, model_dir: str) -> str:
    return str(pipeline.train_stage(input_path, config, candidates, model_dir))


@task(retries=2, retry_delay_seconds=2)
def score(input_path: str, config: DedupConfig, model_dir: str, candidates: str, output: str) -> str:
    return str(pipeline.score_stage(input_path, config, model_dir, candidates, output))


@task(retries=2, retry_delay_seconds=2)
def cluster(input_path: str, config: DedupConfig, candidates: str, pairs: str, output: str) -> str:
    return str(pipeline.cluster_stage(input_path, config, candidates, pairs, output))


@task(retries=2, retry_delay_seconds=2)
def report(input_path: str, config: DedupConfig, output: str, timings: dict[str, float], model_dir: str) -> dict:
    return pipeline.report_stage(input_path, config, output, timings, model_dir)


@flow(name="deduplicate", log_prints=True)
def deduplicate(input_path: str, config_path: str, output: str, model: str | None = None) -> dict[str, Any]:
    """Read, block, train (unless ``model`` is given), score, cluster and write one Parquet file."""
    logger = get_run_logger()
    config = load_config(config_path)
    out = pipeline.start(output).output
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        timings[name] = round(time.perf_counter() - start, 4)
        logger.info("%s done in %.2fs", name, timings[name])
        return result

    candidates = timed("block", block, input_path, config, str(out))
    model_dir = model or str(pipeline.Layout(out).new_model)  # published only if the run succeeds
    if model is None:
        timed("train", train, input_path, config, candidates, model_dir)
    pairs = timed("score", score, input_path, config, model_dir, candidates, str(out))
    timed("cluster", cluster, input_path, config, candidates, pairs, str(out))
    result = report(input_path, config, str(out), timings, model_dir)
    counts = result["counts"]
    logger.info(
        "%d records -> %d clusters (%d with duplicates)",
        counts["records"],
        counts["clusters"],
        counts["duplicate_clusters"],
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the deduplicate flow locally.")
    parser.add_argument("--input", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    deduplicate(str(Path(args.input)), str(Path(args.config)), str(Path(args.output)), args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
