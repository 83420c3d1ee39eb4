"""The ``train-encoder`` flow: train on a Parquet file and register a new model version.

Writes ``MODELS/<name>/<version>/`` and points ``MODELS/<name>/LATEST`` at it; the
``deduplicate`` flow picks it up. Training on unchanged input, config and code reuses the
finished training and returns the version it already registered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow, get_run_logger

from dedup import registry
from dedup.config import load_config
from dedup.graph import StageClock, candidates_and_model, training_key
from dedup.io import prepare_output_dir
from dedup.threads import share
from flows.deduplicate import check_before_starting
from flows.tasks import PrefectExecutor


@flow(name="train-encoder", log_prints=True)
def train_encoder(
    input_path: str = "data/febrl3.parquet",
    config_path: str = "data/febrl3.yaml",
    models_dir: str = "models",
    model_name: str = "default",
) -> str:
    """Train the field encoder and combiner; returns the registered version's directory."""
    logger = get_run_logger()
    config = load_config(config_path)
    stages = prepare_output_dir(Path(models_dir) / model_name / ".stages")
    clock = StageClock(logger)
    input_key, _, trained = candidates_and_model(input_path, config, stages, PrefectExecutor(share()), clock)
    assert trained is not None
    version = registry.register(models_dir, model_name, trained, training_key(input_key, config))
    logger.info("model %s is now LATEST for %r", version, model_name)
    return str(version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the train-encoder flow locally.")
    parser.add_argument("--input", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--model-name", default="default")
    args = parser.parse_args(argv)
    problem = check_before_starting(args.input, args.config)
    if problem:
        print(f"train-encoder: error: {problem}", file=sys.stderr)
        return 2
    print(train_encoder(args.input, args.config, args.models_dir, args.model_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
