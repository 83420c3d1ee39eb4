"""Charts of a finished run, as PNG files in ``OUTPUT/charts/`` (matplotlib, no display needed).

- ``match_probability.png``: histogram of the candidate pairs' match probabilities, threshold marked;
- ``cluster_sizes.png``: how many clusters there are of each size;
- ``field_similarity.png``: each field's similarity for pairs scored as matches vs non-matches;
- ``precision_recall.png`` (when the config names a label column): pairwise precision and recall
  of the candidate pairs among held-out entities over thresholds, the chosen threshold marked.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from dedup.config import DedupConfig
from dedup.evaluation import label_split  # (the report's held-out entities)
from dedup.io import replace_directory

COUNTS_FILE = "counts.json"  # in charts/: the pair histograms' bin counts (see ``pair_counts``)
PROBABILITY_BINS = 50
SIMILARITY_BINS = 40
# a title's height, set: left to matplotlib, every chart's tick labels are measured again to see
# whether the title clears labels on top (there are none): 6-10% of the drawing, the same pixels
TITLE_AT = 1.0


def write_charts(output_dir: str | Path, config: DedupConfig, counts: dict | None = None) -> list[Path]:
    """Draw every chart from the run's Parquet files; returns the PNG paths.

    The histograms are aggregates computed by streaming scans (a few columns, counted per bin),
    so drawing them needs memory for the bins, not for every pair. Their bin counts are kept
    beside the charts (``counts.json``): an update that only adds pairs passes the master's
    counts plus its new pairs' (``counts``) instead of scanning every pair again.
    """
    output_dir = Path(output_dir)
    pairs = pl.scan_parquet(output_dir / "pairs.parquet")
    clusters = pl.scan_parquet(output_dir / "clusters.parquet")
    counts = counts or pair_counts(pairs, config.field_names)
    pictures = {
        "match_probability.png": _probability_histogram(counts["probability"], config.threshold),
        "cluster_sizes.png": _cluster_sizes(clusters),
        "field_similarity.png": _field_similarity(counts["similarity"], config.field_names),
    }
    if config.label_column and config.label_column in clusters.collect_schema().names():
        pictures["precision_recall.png"] = _precision_recall(pairs, clusters, config)

    def build(tmp: Path) -> None:
        for name, png in pictures.items():
            (tmp / name).write_bytes(png)
        (tmp / COUNTS_FILE).write_text(json.dumps(counts) + "\n")

    replace_directory(build, output_dir / "charts")
    return [output_dir / "charts" / name for name in pictures]


def pair_counts(pairs: pl.LazyFrame, fields: list[str]) -> dict:
    """The pair histograms' bin counts, in one streaming pass: ``probability`` (match
    probability over ``PROBABILITY_BINS`` bins of [0, 1]) and ``similarity`` (per field, the
    ``sim_<field>`` of matches and of non-matches over ``SIMILARITY_BINS`` bins of [-1, 1]).
    Counts add up over any split of the pairs (``add_counts``)."""
    queries = [_binned_query(pairs, "match_probability", 0.0, 1.0, PROBABILITY_BINS, None)]
    queries += [_binned_query(pairs, f"sim_{f}", -1.0, 1.0, SIMILARITY_BINS, "is_match") for f in fields]
    found = pl.collect_all(queries, engine="streaming")
    probability = _counts(found[0], PROBABILITY_BINS, None).get(None, np.zeros(PROBABILITY_BINS, np.int64))
    similarity = {}
    for field, counted in zip(fields, found[1:], strict=True):
        per = _counts(counted, SIMILARITY_BINS, "is_match")
        similarity[field] = {
            side: per.get(selected, np.zeros(SIMILARITY_BINS, np.int64)).tolist()
            for side, selected in (("matches", True), ("non_matches", False))
        }
    return {"probability": probability.tolist(), "similarity": similarity}


def add_counts(a: dict, b: dict) -> dict:
    """Bin counts of two sets of pairs together."""

    def plus(x: list[int], y: list[int]) -> list[int]:
        return (np.asarray(x, dtype=np.int64) + np.asarray(y, dtype=np.int64)).tolist()

    similarity = {
        field: {side: plus(sides[side], b["similarity"][field][side]) for side in sides}
        for field, sides in a["similarity"].items()
    }
    return {"probability": plus(a["probability"], b["probability"]), "similarity": similarity}


def read_counts(charts: Path, fields: list[str]) -> dict | None:
    """A run's pair histogram counts (``charts/counts.json``), or None if it has none for ``fields``."""
    try:
        counts = json.loads((charts / COUNTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if list(counts.get("similarity", {})) != list(fields) or len(counts.get("probability", [])) != PROBABILITY_BINS:
        return None
    return counts


def _figure(width: float, height: float) -> Figure:
    """A figure of its own, not pyplot's: no global state to close, and no pyplot to import."""
    return Figure(figsize=(width, height))


def _png(fig: Figure, top: float = 0.45, gaps: tuple[float, float] = (0.0, 0.0)) -> bytes:
    """``fig`` as PNG, with fixed margins and gaps between its charts (across, down), in inches
    (``top``: room for the title): measuring every label for ``tight_layout`` took half of the
    charts' time (0.3 s of 0.6 for the per-field grid), and an update draws them again."""
    width, height = fig.get_size_inches()
    left, right, bottom = 0.85, 0.2, 0.6
    grid = fig.axes[0].get_gridspec()
    across, down = gaps
    chart_width = (width - left - right - across * (grid.ncols - 1)) / grid.ncols
    chart_height = (height - top - bottom - down * (grid.nrows - 1)) / grid.nrows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=across / chart_width,  # matplotlib's gaps are shares of a chart's size
        hspace=down / chart_height,
    )
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # a field name in a script the font lacks is drawn as boxes; the chart is still right
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _binned_query(frame: pl.LazyFrame, column: str, low: float, high: float, bins: int, by: str | None) -> pl.LazyFrame:
    value = pl.col(column).cast(pl.Float64).fill_nan(None)
    index = ((value - low) / (high - low) * bins).floor().clip(0, bins - 1).cast(pl.Int32).alias("bin")
    keys = [by] if by else []
    return frame.select(*keys, index).drop_nulls("bin").group_by(*keys, "bin").len()


def _counts(counted: pl.DataFrame, bins: int, by: str | None) -> dict:
    groups = counted.partition_by([by], as_dict=True) if by else {(None,): counted}
    result: dict = {}
    for key, rows in groups.items():
        counts = np.zeros(bins, dtype=np.int64)
        counts[rows["bin"].to_numpy()] = rows["len"].to_numpy()
        result[key[0]] = counts
    return result


def _probability_histogram(binned: list[int], threshold: float) -> bytes:
    counts = np.asarray(binned, dtype=np.int64)
    total = int(counts.sum())
    fig = _figure(7, 4)
    ax = fig.subplots()
    ax.stairs(counts, np.linspace(0, 1, PROBABILITY_BINS + 1), fill=True, color="#4477aa")
    ax.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold}")
    if total:
        ax.set_yscale("log")
    ax.set_xlabel("match probability")
    ax.set_ylabel("candidate pairs (log scale)")
    ax.set_title(f"Match probability of {total:,} candidate pairs", y=TITLE_AT)
    ax.legend()
    return _png(fig)


def _cluster_sizes(clusters: pl.LazyFrame) -> bytes:
    sizes = (
        clusters.group_by("cluster_id")
        .agg(pl.len().alias("cluster_size"))
        .group_by("cluster_size")
        .len("count")
        .sort("cluster_size")
        .collect(engine="streaming")
    )
    records = int((sizes["cluster_size"] * sizes["count"]).sum())
    fig = _figure(7, 4)
    ax = fig.subplots()
    bars = ax.bar(sizes["cluster_size"].to_numpy(), sizes["count"].to_numpy(), color="#228833")
    # a linear axis with each bar's count written on it: on a log axis a bar of 3 clusters looked empty
    ax.bar_label(bars, labels=[f"{c:,}" for c in sizes["count"].to_list()], fontsize=7, padding=1)
    ax.set_xlabel("cluster size (records)")
    ax.set_ylabel("clusters")
    ax.set_title(f"{int(sizes['count'].sum()):,} clusters from {records:,} records", y=TITLE_AT)
    ax.set_xticks(sizes["cluster_size"].to_numpy()[:30])
    return _png(fig)


def _field_similarity(binned: dict[str, dict[str, list[int]]], fields: list[str]) -> bytes:
    cols = min(len(fields), 4)
    rows = int(np.ceil(len(fields) / cols))
    # at least 6.4 inches wide: the title of one or two fields' charts fits
    fig = _figure(max(3.2 * cols, 6.4), 2.6 * rows)
    grid = fig.add_gridspec(rows, cols)
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(len(fields))]  # no empty ones to draw
    edges = np.linspace(-1, 1, SIMILARITY_BINS + 1)
    widths = np.diff(edges)
    for ax, field in zip(axes, fields, strict=True):
        for side, label, colour in (("matches", "matches", "#228833"), ("non_matches", "non-matches", "#cc3311")):
            found = np.asarray(binned[field][side], dtype=np.float64)
            if found.sum():
                ax.stairs(found / (found.sum() * widths), edges, fill=True, alpha=0.55, color=colour, label=label)
        ax.set_title(field.replace("$", r"\$"), fontsize=10, y=TITLE_AT)  # a field name is text, not maths
        ax.set_xlabel("cosine similarity", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    fig.suptitle("Per-field similarity: pairs scored as matches vs non-matches")
    return _png(fig, top=0.75, gaps=(0.65, 0.7))


def _precision_recall(pairs_scan: pl.LazyFrame, clusters_scan: pl.LazyFrame, config: DedupConfig) -> bytes:
    id_l, id_r = f"{config.id_column}_l", f"{config.id_column}_r"
    pairs = pairs_scan.select(id_l, id_r, "match_probability").collect()
    clusters = clusters_scan.select(config.id_column, config.label_column).collect()
    held = pl.Series(label_split(clusters[config.label_column], config.seed, config.label_test_share))
    truth = clusters.filter(held).select(
        pl.col(config.id_column).cast(pl.String).alias("id"), pl.col(config.label_column).cast(pl.String).alias("t")
    )
    joined = (
        pairs.select(
            pl.col(f"{config.id_column}_l").cast(pl.String).alias("l"),
            pl.col(f"{config.id_column}_r").cast(pl.String).alias("r"),
            "match_probability",
        )
        .join(truth, left_on="l", right_on="id")
        .join(truth, left_on="r", right_on="id", suffix="_r")
    )
    same = (joined["t"] == joined["t_r"]).to_numpy()
    probability = joined["match_probability"].to_numpy()
    order = np.argsort(-probability, kind="stable")
    hits = np.cumsum(same[order])
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / max(same.sum(), 1)
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    ax.plot(recall, precision, color="#4477aa", label="candidate pairs ranked by probability")
    chosen = probability[order] >= config.threshold
    if chosen.any():
        k = int(chosen.sum()) - 1
        ax.scatter(
            [recall[k]],
            [precision[k]],
            color="#cc3311",
            zorder=3,
            label=f"threshold {config.threshold}: P {precision[k]:.3f}, R {recall[k]:.3f}",
        )
    ax.set_xlabel("recall (of true pairs among candidates)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(
        "Pairwise precision-recall over thresholds\n(held-out entities, never trained on)", fontsize=10, y=TITLE_AT
    )
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig, top=0.6)
