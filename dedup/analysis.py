"""``dedup blocking``: how much each blocking pass contributes, before committing to a full run.

Prints, per pass, the pairs it makes on its own, the pairs no earlier pass found, its largest
block and (with a label column) the share of true pairs it finds alone and cumulatively, then
the overall pairs per record, reduction ratio and pair completeness. Passes that would exceed
``blocking_max_pairs`` are reported as refused, with the key values responsible, not run.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dedup.blocking import analyse_blocking, block, has_embedding_pass, record_vectors
from dedup.config import load_config
from dedup.errors import InputError
from dedup.io import load_input, load_input_as_read
from dedup.model import DedupModel


def blocking_report(
    input_path: str | Path,
    config_path: str | Path,
    model_path: str | Path | None = None,
    label_column: str | None = None,
) -> str:
    config = load_config(config_path)
    config, _ = load_input_as_read(input_path, config)
    records, normalised = load_input(input_path, config)
    label_column = label_column or config.label_column
    truth = None
    if label_column:
        if label_column not in records.columns:
            raise InputError(f"{input_path}: label column {label_column!r} is missing")
        truth = records[label_column].cast(pl.String).to_numpy()
    vectors = None
    if has_embedding_pass(config):
        if model_path is not None:
            model = DedupModel.load(model_path, expect=config)
        else:
            model = DedupModel(config).fit(normalised, block(records, normalised, config))
        vectors = record_vectors(model.embed(normalised))
    rows, overall = analyse_blocking(records, normalised, config, truth, vectors)
    lines = [
        f"{'pass':48s} {'pairs':>11s} {'new pairs':>11s} {'largest block':>13s} {'PC alone':>9s} {'PC so far':>9s}"
    ]
    for row in rows:
        if row.refused:
            lines.append(f"{row.name:48s} REFUSED: {row.refused}")
            continue
        alone = "" if row.pair_completeness is None else f"{row.pair_completeness:.4f}"
        cumulative = "" if row.cumulative_completeness is None else f"{row.cumulative_completeness:.4f}"
        counts = f"{row.pairs:11,d} {row.new_pairs:11,d} {row.largest_block:13,d}"
        lines.append(f"{row.name:48s} {counts} {alone:>9s} {cumulative:>9s}")
    summary = (
        f"total: {int(overall['candidate_pairs']):,} candidate pairs, {overall['pairs_per_record']:.2f} per record, "
        f"reduction ratio {overall['reduction_ratio']:.6f}"
    )
    if "pair_completeness" in overall:
        summary += (
            f", pair completeness {overall['pair_completeness']:.4f} of {int(overall['true_pairs']):,} true pairs"
        )
    return "\n".join([*lines, summary])
