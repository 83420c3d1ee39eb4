"""``dedup explain``: why two records were (or were not) matched, field by field.

For a pair it shows each field's two values side by side, their similarity, and that field's
contribution to the match log-odds (bits; positive is evidence for a match), then the prior,
the total and the probability. Pairs blocking never proposed are scored on the fly with the
run's saved model, so any two records can be explained. Everything shown is also in
``pairs.parquet`` (``sim_<f>``, ``bf_<f>``, ``match_weight``) for notebooks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dedup.errors import InputError
from dedup.frequencies import field_statistics
from dedup.io import check_run_output, model_path, read_clusters
from dedup.model import DedupModel
from dedup.normalise import normalise_fields
from dedup.scoring import compare_pairs


@dataclass
class FieldEvidence:
    field: str
    left: str | None
    right: str | None
    similarity: float | None
    bits: float
    codes_differ: bool = False  # long texts naming different model numbers or sizes: scored as different


@dataclass
class Explanation:
    ids: tuple[str, str]
    fields: list[FieldEvidence]
    prior_bits: float
    match_weight: float
    probability: float
    candidate: bool  # found by blocking (else scored on the fly)
    clusters: tuple[str, str]


def explain_pair(output_dir: str | Path, id_a: str, id_b: str) -> Explanation:
    output_dir = check_run_output(output_dir, ("clusters.parquet", "pairs.parquet", "report.json"))
    report = json.loads((output_dir / "report.json").read_text())
    model = DedupModel.load(model_path(output_dir, report))
    config = model.config
    clusters, outputs = read_clusters(output_dir)
    ids = clusters[config.id_column].cast(pl.String)
    rows = []
    for wanted in (id_a, id_b):
        found = np.flatnonzero((ids == str(wanted)).to_numpy())
        if len(found) == 0:
            raise InputError(f"{output_dir / 'clusters.parquet'}: no record with {config.id_column} = {wanted!r}")
        rows.append(int(found[0]))
    pair = clusters[rows]
    # rarity is a property of the whole input (clusters.parquet holds every input row)
    statistics = field_statistics(normalise_fields(clusters, config), config, rows=np.asarray(rows))
    embeddings = model.embed(normalise_fields(pair, config))
    evidence = compare_pairs(embeddings, statistics, np.array([0]), np.array([1]))
    sims = evidence.sims
    bits = model.combiner_.field_weights(evidence)[0]
    weight = float(model.combiner_.match_weight(evidence)[0])
    pairs = pl.read_parquet(output_dir / "pairs.parquet", columns=[f"{config.id_column}_l", f"{config.id_column}_r"])
    left, right = pairs[f"{config.id_column}_l"].cast(pl.String), pairs[f"{config.id_column}_r"].cast(pl.String)
    a, b = str(id_a), str(id_b)
    candidate = bool((((left == a) & (right == b)) | ((left == b) & (right == a))).any())
    fields = [
        FieldEvidence(
            f,
            pair[f][0] if pair[f][0] is None else str(pair[f][0]),
            pair[f][1] if pair[f][1] is None else str(pair[f][1]),
            None if np.isnan(sims[0, j]) else float(sims[0, j]),
            float(bits[j]),
            bool(evidence.codes_differ[0, j]),
        )
        for j, f in enumerate(config.fields)
    ]
    return Explanation(
        ids=(a, b),
        fields=fields,
        prior_bits=model.combiner_.prior_weight(),
        match_weight=weight,
        probability=float(1 / (1 + 2.0**-weight)),
        candidate=candidate,
        clusters=(str(outputs["cluster_id"][rows[0]]), str(outputs["cluster_id"][rows[1]])),
    )


def format_explanation(e: Explanation, width: int = 28) -> str:
    def cut(value: str | None) -> str:
        text = "(missing)" if value is None else value
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = [f"{'field':16s} {cut(e.ids[0]):{width}s} {cut(e.ids[1]):{width}s} {'similarity':>10s} {'bits':>7s}"]
    for f in e.fields:
        sim = "" if f.similarity is None else f"{f.similarity:.3f}"
        note = "  (different model numbers or sizes)" if f.codes_differ else ""
        lines.append(f"{f.field:16s} {cut(f.left):{width}s} {cut(f.right):{width}s} {sim:>10s} {f.bits:+7.2f}{note}")
    lines.append(f"{'prior':16s} {'':{width}s} {'':{width}s} {'':>10s} {e.prior_bits:+7.2f}")
    verdict = "same cluster" if e.clusters[0] == e.clusters[1] else "different clusters"
    found = "a candidate pair" if e.candidate else "not proposed by blocking (scored now)"
    lines.append(
        f"match weight {e.match_weight:+.2f} bits -> probability {e.probability:.4f}; {found}; "
        f"{verdict} ({e.clusters[0]}, {e.clusters[1]})"
    )
    return "\n".join(lines)
