"""Label-free accuracy on Febrl1-3 and fake_1000, beside recordlinkage's ECM on the same pairs.

    python benchmarks/accuracy.py            # all data sets (fake_1000 needs ../shared/data)
    python benchmarks/accuracy.py febrl3     # one

For each data set: `dedup run` without labels (full-size default training), then pairwise and
cluster-pair precision/recall/F1 against the ground truth, and wall time. Rows:
- dedup: the default pipeline (density-split clustering);
- dedup/cc: the same scores clustered by plain connected components;
- rl ECM/cc and rl ECM: recordlinkage's ECMClassifier fitted on the same candidate pairs (binary
  agreement features: Jaro-Winkler >= 0.85 on name/text fields, exact on the rest), its match
  probabilities clustered by plain components and by our default clustering.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import recordlinkage

from dedup.clustering import cluster_labels
from dedup.config import ClusteringConfig, FieldKind, load_config
from dedup.datasets import load_febrl
from dedup.evaluation import cluster_metrics, evaluate_output, pair_metrics
from dedup.pipeline import block_stage, load_candidates, load_input, run

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "fake_1000.parquet"
CONFIGS = {"febrl": ROOT / "benchmarks/configs/febrl.yaml", "fake_1000": ROOT / "benchmarks/configs/fake_1000.yaml"}


def datasets(names: list[str]) -> Iterator[tuple[str, pl.DataFrame, Path]]:
    """(name, table, config) for each data set that is available here; says which are skipped."""
    for name in names:
        if name == "fake_1000" and not SHARED.exists():
            print(f"{name:10s} skipped: {SHARED} not found")
            continue
        yield (name, *dataset(name))


def dataset(name: str) -> tuple[pl.DataFrame, Path]:
    if name.startswith("febrl"):
        return load_febrl(int(name[-1])), CONFIGS["febrl"]
    return pl.read_parquet(SHARED), CONFIGS["fake_1000"]


def scores(labels: np.ndarray, left: np.ndarray, right: np.ndarray, probability: np.ndarray, how: str) -> dict:
    """Pairwise and cluster metrics for match probabilities on row-position pairs."""
    metrics = pair_metrics(labels, left, right, probability >= 0.5)
    settings = ClusteringConfig(method=how)
    metrics.update(cluster_metrics(cluster_labels(len(labels), left, right, probability, 0.5, settings), labels))
    return metrics


def ecm_baseline(input_path: Path, config_path: Path, candidates: Path) -> tuple[dict, dict, float]:
    """recordlinkage ECM on our candidate pairs: metrics with components, with density split."""
    config = load_config(config_path)
    start = time.perf_counter()
    records, normalised = load_input(input_path, config)
    pairs = load_candidates(candidates)
    frame = normalised.to_pandas()
    index = pd.MultiIndex.from_arrays([pairs.left, pairs.right])
    compare = recordlinkage.Compare()
    for field, kind in config.fields.items():
        if kind in (FieldKind.name, FieldKind.text):
            compare.string(field, field, method="jarowinkler", threshold=0.85, label=field)
        else:
            compare.exact(field, field, label=field)
    features = compare.compute(index, frame)
    ecm = recordlinkage.ECMClassifier(binarize=None)
    ecm.fit(features)
    probability = np.asarray(ecm.prob(features), dtype=np.float64)
    seconds = time.perf_counter() - start
    labels = records["cluster"].cast(pl.String).rank("dense").to_numpy()
    return (
        scores(labels, pairs.left, pairs.right, probability, "components"),
        scores(labels, pairs.left, pairs.right, probability, "density"),
        seconds,
    )


def ours_with_components(out: Path, source: Path, config_path: Path) -> dict:
    """Our run's probabilities, clustered by plain connected components."""
    config = load_config(config_path)
    records = pl.read_parquet(source)
    pairs = pl.read_parquet(out / "pairs.parquet")
    position = pl.DataFrame({config.id_column: records[config.id_column], "_pos": np.arange(records.height)})
    located = pairs.join(position, left_on=f"{config.id_column}_l", right_on=config.id_column).join(
        position, left_on=f"{config.id_column}_r", right_on=config.id_column, suffix="_r"
    )
    labels = records["cluster"].cast(pl.String).rank("dense").to_numpy()
    return scores(
        labels,
        located["_pos"].to_numpy(),
        located["_pos_r"].to_numpy(),
        located["match_probability"].to_numpy(),
        "components",
    )


def row(name: str, method: str, m: dict, seconds: float) -> str:
    p, c = m["pairwise"], m["cluster_pairs"]
    return (
        f"{name:10s} {method:14s} {p['precision']:7.4f} {p['recall']:7.4f} {p['f1']:7.4f}  "
        f"{c['precision']:7.4f} {c['recall']:7.4f} {c['f1']:7.4f}  {m['blocking']['pair_completeness']:6.4f} "
        f"{seconds:7.1f}"
    )


def main(names: list[str]) -> None:
    print(
        f"{'data':10s} {'method':14s} {'pair P':>7s} {'pair R':>7s} {'pair F1':>7s}  "
        f"{'clu P':>7s} {'clu R':>7s} {'clu F1':>7s}  {'PC':>6s} {'time s':>7s}"
    )
    for name, table, config_path in datasets(names):
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / f"{name}.parquet"
            table.write_parquet(source)
            out = Path(tmp) / "out"
            start = time.perf_counter()
            run(source, config_path, out)
            seconds = time.perf_counter() - start
            ours = evaluate_output(out, source, "cluster")
            print(row(name, "dedup", ours, seconds), flush=True)
            print(row(name, "dedup/cc", ours_with_components(out, source, config_path), seconds), flush=True)
            # the run published and removed its candidates; block again (same passes) for ECM
            candidates = block_stage(source, load_config(config_path), Path(tmp) / "ecm")
            ecm_cc, ecm_split, ecm_seconds = ecm_baseline(source, config_path, candidates)
            print(row(name, "rl ECM/cc", ecm_cc, ecm_seconds), flush=True)
            print(row(name, "rl ECM", ecm_split, ecm_seconds), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["febrl1", "febrl2", "febrl3", "fake_1000"])
