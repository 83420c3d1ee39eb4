"""Report stage: counts, blocking passes, timings, fit diagnostics and (with labels) held-out
metrics; then the finished outputs are put in place.

``publish`` puts the stage results, charts and report into a new generation directory and
switches ``OUTPUT/current`` to it in one rename (``dedup.publish``): a failed or killed run never
mixes new files with old ones.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dedup.blocking import CandidatePairs
from dedup.charts import write_charts
from dedup.clustering import ANSWERS, COMPONENTS, input_renames
from dedup.combiner import Combiner
from dedup.config import DedupConfig
from dedup.evaluation import evaluate_frames, train_labels
from dedup.fingerprint import model_fingerprint
from dedup.io import largest_blocks, load_candidates, load_input, skipped_passes, write_json
from dedup.publish import checkpoint, flushing, place, publish_generation
from dedup.summary import largest_clusters

DOMINANT_SHARE = 0.5  # a pass bringing more of the candidates than this is flagged in the report


@dataclass(frozen=True)
class Layout:
    """Where one run's files live."""

    output: Path

    @property
    def work(self) -> Path:
        """Scratch space of versions before the stage graph; removed when a run starts."""
        return self.output / ".work"

    @property
    def stages(self) -> Path:
        """Content-addressed stage results the Prefect flow reuses across runs."""
        return self.output / ".stages"


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
    embeddings: Path | None = None  # the encode pieces: published so `dedup update` reuses them


def report_stage(
    input_path: str | Path,
    config: DedupConfig,
    output: str | Path,
    timings: dict[str, float],
    files: StageFiles,
    keep_sources: bool = False,
    warnings: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Counts, blocking passes, timings and (with labels) held-out metrics; publishes the run.

    ``keep_sources`` copies the stage files into place instead of moving them (the flow keeps
    them as its cache). ``warnings``: what the run did otherwise than the config said (a field
    set aside or read as another kind, ``dedup.normalise.fields_as_read``), for ``report.json`` → ``warnings``.
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
    report["field_kinds"] = {f: kind.value for f, kind in config.fields.items()}
    report["warnings"] = list(warnings)
    report["input"] = str(input_path)
    # relative to the output directory when it lives there, so the output can be moved and read
    # from any working directory (``dedup explain``, the notebook)
    report["model"] = "model" if files.publish_model else str(Path(files.model).resolve())
    report["model_fingerprint"] = model_fingerprint(files.model)  # ties the report to its model's files
    combiner = Combiner.from_dict(json.loads((Path(files.model) / "combiner.json").read_text()))
    report["prior_weight_bits"] = combiner.prior_weight()
    report["model_fit"] = combiner.fit_report_.to_dict()
    if config.labels is not None:
        report["labels"] = label_summary(combiner, config.labels)
    report["renamed_input_columns"] = input_renames(records.columns)
    report["largest_clusters"] = largest_clusters(
        clusters, config.field_names, count=10, renames=report["renamed_input_columns"]
    )
    publish(layout, report, files, config, keep_sources)
    return report


def label_summary(combiner: Combiner, path: str) -> dict[str, Any]:
    """What the pair labels did: how many answers the model learned from and how it changed."""
    scale = getattr(combiner, "label_scale_", None)
    summary: dict[str, Any] = {"file": path, "answers_used": combiner.label_answers_}
    if scale is None:
        summary["correction"] = "none: no correction decided more held-out answers right than the model"
    else:
        summary["correction"] = {
            "penalty": combiner.label_penalty_,
            "shift_bits": round(combiner.label_shift_, 3),
            "field_scale": {f: round(float(a), 3) for f, a in zip(combiner.fields, scale, strict=True)},
        }
        # bits a field gains (or loses) when one of the two values is null, where answers said so
        nulls = combiner.label_slopes_[-len(combiner.fields) :].diagonal()
        said = {f: round(float(b), 3) for f, b in zip(combiner.fields, nulls, strict=True) if abs(b) > 1e-6}
        if said:
            summary["correction"]["null_on_one_side_bits"] = said
    return summary


def publish(layout: Layout, report: dict[str, Any], files: StageFiles, config: DedupConfig, keep_sources: bool) -> None:
    """Put the whole result in place as one unit (see ``dedup.publish``), then clean up."""

    def build(generation: Path) -> None:
        checkpoint("generation")
        if files.publish_model:
            place(files.model, generation / "model", keep_sources)
            checkpoint("model")
        for source, name in ((files.pairs, "pairs.parquet"), (files.clusters, "clusters.parquet")):
            place(source, generation / name, keep_sources)
            checkpoint(name)
        if files.embeddings is not None and files.embeddings.is_dir():
            place(files.embeddings, generation / "embeddings", keep_sources)
            for name in (COMPONENTS, ANSWERS):  # for updates, beside the embeddings
                if (files.clusters.parent / name).is_file():
                    place(files.clusters.parent / name, generation / "embeddings" / name, keep_sources)
        with flushing(generation):  # the result goes to disk while the charts are drawn
            write_charts(generation, config)
        checkpoint("charts")
        report["run"] = generation.name  # names the generation directory the result lives in
        write_json(report, generation / "report.json")
        checkpoint("report.json")

    publish_generation(layout.output, build)
    shutil.rmtree(layout.work, ignore_errors=True)


def result_counts(records: int, candidate_pairs: int, matches: int, clusters: pl.DataFrame) -> dict[str, int]:
    """``report.json`` → ``counts``: what a run (or an update) ended with."""
    sizes = clusters.select("cluster_id", "cluster_size").unique()
    return {
        "records": records,
        "candidate_pairs": candidate_pairs,
        "matches": matches,
        "clusters": sizes.height,
        "duplicate_clusters": int((sizes["cluster_size"] > 1).sum()),
        "records_in_duplicate_clusters": int((clusters["cluster_size"] > 1).sum()),
        "largest_cluster": int(sizes["cluster_size"].max()),
    }


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
    first = np.bincount(pairs.pass_index, minlength=len(pairs.pass_names))
    report: dict[str, Any] = {
        "counts": result_counts(records.height, len(pairs), int(scored["is_match"].sum()), clusters),
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
    for entry in report["blocking"]:
        entry["share_of_candidates"] = round(entry["new_pairs"] / max(len(pairs), 1), 4)
        if entry["share_of_candidates"] > DOMINANT_SHARE and len(report["blocking"]) > 1:
            # a low-cardinality key (a city's soundex, a year) buys few duplicates with many pairs
            entry["warning"] = (
                f"this pass alone brought {entry['share_of_candidates']:.0%} of the candidate pairs "
                f"({entry['new_pairs']:,}); check its recall with `dedup blocking` before keeping it"
            )
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
            "evaluated_on": f"held-out entities: {int(test.sum())} records ({config.label_test_share:.0%} of entities, "
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
