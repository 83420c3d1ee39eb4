"""The whole job in one call: read -> block -> train -> encode/score -> cluster -> report.

``run`` executes the stage graph (``dedup.graph``) in this process, piece after piece; the
Prefect flow executes the same graph with a task per piece. Stage results go to
``OUTPUT/.stages/`` and are moved into ``OUTPUT/`` when the run has finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dedup.config import DedupConfig, load_config
from dedup.graph import InProcess, Partitioning, deduplicate


def as_config(config: DedupConfig | str | Path) -> DedupConfig:
    return config if isinstance(config, DedupConfig) else load_config(config)


def run(
    input_path: str | Path,
    config: DedupConfig | str | Path,
    output_dir: str | Path,
    model_path: str | Path | None = None,
    partitioning: Partitioning | None = None,
    labels: str | Path | None = None,
) -> dict[str, Any]:
    """Deduplicate ``input_path`` into ``output_dir``; returns the report (also written).

    Trains a model on the input unless ``model_path`` names a saved one. ``labels`` (a
    ``dedup review`` labels file) overrides the config's ``labels:``.
    """
    config = as_config(config)
    if labels is not None:
        config = config.model_copy(update={"labels": str(labels)})
    return deduplicate(input_path, config, output_dir, InProcess(), partitioning or Partitioning(), model=model_path)
