"""Human-readable summaries of a finished run: a markdown report and the largest clusters.

Used for the Prefect artifacts attached to each flow run; plain strings and dicts, so a notebook
or another orchestrator can use them too.
"""

from __future__ import annotations

from typing import Any

import polars as pl


def report_markdown(report: dict[str, Any], title: str = "dedup run") -> str:
    """The run report as markdown: counts, blocking passes, stage timings, metrics if any."""
    counts = report["counts"]
    lines = [
        f"# {title}",
        "",
        f"Input `{report.get('input', '?')}`, model `{report.get('model', '?')}`, threshold {report['threshold']}.",
        "",
        "| records | candidate pairs | matches | clusters | with duplicates | largest cluster |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {counts['records']:,} | {counts['candidate_pairs']:,} | {counts['matches']:,} | {counts['clusters']:,} "
        f"| {counts['duplicate_clusters']:,} | {counts['largest_cluster']:,} |",
        "",
        "## Blocking passes",
        "",
        "| pass | pairs | new pairs |",
        "|---|---:|---:|",
        *(f"| `{p['pass']}` | {p['pairs']:,} | {p['new_pairs']:,} |" for p in report["blocking"]),
        "",
        "## Stage timings (seconds)",
        "",
        "| " + " | ".join(report["timings_seconds"]) + " |",
        "|" + "---:|" * len(report["timings_seconds"]),
        "| " + " | ".join(f"{v:.2f}" for v in report["timings_seconds"].values()) + " |",
    ]
    metrics = report.get("metrics")
    if metrics:
        lines += [
            "",
            f"## Metrics ({metrics['evaluated_on']})",
            "",
            "| view | precision | recall | F1 |",
            "|---|---:|---:|---:|",
            *(
                f"| {view} | {metrics[view]['precision']:.4f} | {metrics[view]['recall']:.4f} "
                f"| {metrics[view]['f1']:.4f} |"
                for view in ("pairwise", "cluster_pairs", "b_cubed")
            ),
        ]
    return "\n".join(lines) + "\n"


def largest_clusters(
    clusters: pl.DataFrame, fields: list[str], count: int = 10, renames: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The ``count`` largest duplicate clusters: id, size, and each field's distinct values.

    ``renames``: input columns ``clusters.parquet`` holds under another name (a field named
    ``cluster_id`` is stored as ``cluster_id_input``, see ``report.json``)."""
    renames = renames or {}
    stored = {f: renames.get(f, f) for f in fields}
    multi = clusters.filter(pl.col("cluster_size") > 1)
    if multi.height == 0:
        return []
    grouped = (
        multi.group_by("cluster_id")
        .agg(
            pl.len().alias("size"),
            pl.col("cluster_confidence").mean().round(4).alias("confidence"),
            *(
                pl.col(column).cast(pl.String).drop_nulls().unique().sort().str.join(" | ").alias(f"\0{f}")
                for f, column in stored.items()
            ),
        )
        .sort(["size", "cluster_id"], descending=[True, False])
        .head(count)
    )
    rows = grouped.with_columns(pl.col("cluster_id").cast(pl.String)).to_dicts()
    return [{k.removeprefix("\0"): v for k, v in row.items()} for row in rows]
