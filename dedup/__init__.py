"""dedup: find duplicate records with a field-wise Siamese encoder.

The stages, in pipeline order, one module each: ``io`` (read) -> ``blocking`` -> ``encoder`` /
``training`` / ``model`` (train) -> ``scoring`` (encode and score) -> ``clustering`` ->
``report`` and ``publish`` (write); ``graph`` declares them and their pieces, ``pipeline.run`` runs the graph
in this process, ``flows/`` runs it on Prefect and Dask. ``config`` describes a job; ``update``
applies new, corrected and deleted records to a finished run.

The public API is below (imported on first use, so ``import dedup`` stays light):

>>> import dedup
>>> report = dedup.run("data/febrl3.parquet", "data/febrl3.yaml", "out/febrl3")  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    # a job
    "DedupConfig": "dedup.config",
    "FieldKind": "dedup.config",
    "load_config": "dedup.config",
    "parse_config": "dedup.config",
    "run": "dedup.pipeline",
    "update": "dedup.update",
    "apply_inbox": "dedup.update",
    # the stage graph, for other orchestrators
    "deduplicate": "dedup.graph",
    "Partitioning": "dedup.graph",
    "InProcess": "dedup.graph",
    "Executor": "dedup.graph",
    # the model
    "DedupModel": "dedup.model",
    # outputs and their evaluation
    "run_dir": "dedup.publish",
    "read_clusters": "dedup.io",
    "explain_pair": "dedup.explain",
    "format_explanation": "dedup.explain",
    "evaluate_output": "dedup.evaluation",
    "cluster_metrics": "dedup.evaluation",
    "blocking_report": "dedup.analysis",
    # data
    "generate": "dedup.synth",
    "DedupError": "dedup.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dedup' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
