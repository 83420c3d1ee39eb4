"""The ``deduplicate`` flow: read, block, score with the latest model (or train one), cluster, write.

Runs without a server (``python -m flows.deduplicate --input ... --config ... --output ...``) and
as the scheduled deployment in ``prefect.yaml``. All work happens in ``dedup``; this file only
decides the order, where stage results live, and what to show in the Prefect UI.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any, Literal

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from dedup import graph, parts
from dedup.config import DedupConfig, load_config
from dedup.errors import DedupError
from dedup.graph import Partitioning
from dedup.io import load_input_as_read
from dedup.model import DedupModel
from dedup.publish import generation_dir
from dedup.summary import largest_clusters, report_markdown
from dedup.threads import share
from flows.runners import LOCAL_THREADS, task_runner
from flows.tasks import PrefectExecutor


def publish_artifacts(result: dict[str, Any], config: DedupConfig, output: Path) -> None:
    """A markdown report and a table of the largest clusters on the flow run."""
    create_markdown_artifact(
        key="dedup-report",
        markdown=report_markdown(result, title=f"dedup: {output}"),
        description="Counts, blocking passes, stage timings and metrics of this run",
    )
    files = generation_dir(output, result["run"])  # this run's files, even if another run followed
    charts = sorted((files / "charts").glob("*.png"))
    images = "\n\n".join(
        f"### {chart.stem.replace('_', ' ')}\n\n`{output.absolute() / 'charts' / chart.name}`\n\n"
        f"![{chart.stem}](data:image/png;base64,{base64.b64encode(chart.read_bytes()).decode()})"
        for chart in charts
    )
    create_markdown_artifact(
        key="dedup-charts",
        markdown=f"# Charts of {output}\n\n{images}\n",
        description="Match probabilities, cluster sizes, per-field similarity (and precision-recall with labels)",
    )
    clusters = pl.read_parquet(files / "clusters.parquet")
    rows = largest_clusters(clusters, config.field_names, renames=result.get("renamed_input_columns"))
    create_table_artifact(
        key="dedup-largest-clusters",
        table=rows or [{"cluster_id": "(none)", "size": 0}],
        description="The largest duplicate clusters and their distinct field values",
    )


@flow(name="deduplicate", log_prints=True)
def deduplicate(
    input_path: str = "data/febrl3.parquet",
    config_path: str = "data/febrl3.yaml",
    output: str = "out/deduplicate",
    models_dir: str | None = None,
    model_name: str = "default",
    retrain: bool = False,
    model: str | None = None,
    runner: Literal["local", "dask"] = "local",
    dask_address: str | None = None,
    block_partitions: int = 1,
    records_per_part: int = parts.RECORDS_PER_PART,
    pairs_per_part: int = parts.PAIRS_PER_PART,
) -> dict[str, Any]:
    """Deduplicate one Parquet file.

    The model is ``model`` if given; else the latest version of ``model_name`` under
    ``models_dir`` unless ``retrain``; else one trained on the input (registered as a new version
    when ``models_dir`` is set, otherwise written to ``OUTPUT/model``).

    ``runner``: ``local`` runs the stage pieces on threads in this process; ``dask`` runs them on
    a Dask cluster, the one at ``dask_address`` (``tcp://host:8786``) or a temporary local one.
    ``block_partitions``, ``records_per_part`` and ``pairs_per_part`` set the pieces' size.
    """
    partitioning = Partitioning(block_partitions, records_per_part, pairs_per_part)
    stages = run_stages.with_options(task_runner=task_runner(runner, dask_address))
    threads = share(LOCAL_THREADS) if runner == "local" else 0  # 0: each Dask worker decides
    result = stages(input_path, config_path, output, models_dir, model_name, retrain, model, partitioning, threads)
    publish_artifacts(result, load_config(config_path), Path(output))  # on this run, where the UI looks
    return result


@flow(name="deduplicate-stages", log_prints=True)
def run_stages(
    input_path: str,
    config_path: str,
    output: str,
    models_dir: str | None,
    model_name: str,
    retrain: bool,
    model: str | None,
    partitioning: Partitioning,
    threads: int = 1,
) -> dict[str, Any]:
    """The stage graph, a task per piece, on the task runner the ``deduplicate`` flow chose,
    each piece on ``threads`` torch threads."""
    return graph.deduplicate(
        input_path,
        load_config(config_path),
        output,
        PrefectExecutor(threads),
        partitioning,
        model=model,
        models_dir=models_dir,
        model_name=model_name,
        retrain=retrain,
        keep_stages=True,  # the next run on the same input reuses them
        logger=get_run_logger(),
    )


def check_before_starting(input_path: str, config_path: str, model: str | None = None) -> str | None:
    """The user's mistakes (config, input, model) as one line, found before Prefect starts a
    server or a run: None when all is well."""
    try:
        config = load_config(config_path)
        config, _ = load_input_as_read(input_path, config)  # kept in memory: the flow's read stage reuses it
        if model is not None:
            DedupModel.load(model, expect=config)
    except DedupError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the deduplicate flow locally (no server needed).")
    parser.add_argument("--input", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--models-dir", default=None, help="versioned models; the latest is used if present")
    parser.add_argument("--model-name", default="default")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--model", default=None, help="a saved model directory to use")
    parser.add_argument("--runner", choices=["local", "dask"], default="local")
    parser.add_argument("--dask-address", default=None, help="scheduler of an existing Dask cluster (tcp://host:8786)")
    parser.add_argument("--block-partitions", type=int, default=1)
    parser.add_argument("--records-per-part", type=int, default=parts.RECORDS_PER_PART)
    parser.add_argument("--pairs-per-part", type=int, default=parts.PAIRS_PER_PART)
    args = parser.parse_args(argv)
    problem = check_before_starting(args.input, args.config, args.model)
    if problem:
        print(f"deduplicate: error: {problem}", file=sys.stderr)
        return 2
    deduplicate(
        str(Path(args.input)),
        str(Path(args.config)),
        str(Path(args.output)),
        args.models_dir,
        args.model_name,
        args.retrain,
        args.model,
        args.runner,
        args.dask_address,
        args.block_partitions,
        args.records_per_part,
        args.pairs_per_part,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
