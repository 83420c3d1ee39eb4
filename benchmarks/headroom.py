"""How much a label-free run's threshold leaves on the table: cluster pair-F1 with every pair's
match weight shifted by a constant, and the best pair-F1 any cut of its ranking reaches.

    python benchmarks/headroom.py sigmod_x2                # one set, seed 0
    python benchmarks/headroom.py sigmod_x2 abtbuy --seed 1

A shift of the match weights is what a correction of the prior does (``dedup review``'s answers
shift it first), so the best row of the table bounds what such a correction can gain: past it,
only a better ranking of the pairs (new evidence) helps. The pairs are clustered again as
``dedup run`` clusters them (the set's config: threshold, clustering). "ranking" is the best
pair-F1 over every cut of the candidate pairs sorted by match weight, counted against every
true pair (the ones blocking missed included); "best field" the same for the best single
field's bits (``bf_<field>``). Sets and configs: ``benchmarks/realdata.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from realdata import CONFIGS, DEDUP, SETS, load, scores, true_pairs, variant

from dedup.clustering import cluster_labels
from dedup.config import load_config

SHIFTS = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)  # bits added to every pair's match weight


def ranking_f1(weights: np.ndarray, same: np.ndarray, truth_pairs: int) -> float:
    """Best pair-F1 over every cut of the pairs sorted by ``weights`` (highest first)."""
    order = np.argsort(-weights, kind="stable")
    found = np.cumsum(same[order])
    called = np.arange(1, len(order) + 1)
    return float((2 * found / (called + truth_pairs)).max()) if len(order) else 0.0


def headroom(name: str, seed: int, work: Path) -> None:
    data = load(name)
    data.table.drop(data.truth_column).write_parquet(work / "input.parquet")
    config_path = variant(CONFIGS / f"{data.config_name}.yaml", work, seed=seed)
    out = work / "out"
    subprocess.run(
        [str(DEDUP), "run", str(work / "input.parquet"), "--config", str(config_path), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    config = load_config(config_path)
    idc = data.id_column
    ids = data.table[idc].cast(pl.String)
    position = pl.DataFrame({idc: ids, "row": np.arange(len(ids))})
    pairs = pl.read_parquet(out / "pairs.parquet").with_columns(
        pl.col(f"{idc}_l").cast(pl.String), pl.col(f"{idc}_r").cast(pl.String)
    )
    rows = [
        pairs.select(pl.col(f"{idc}_{side}").alias(idc)).join(position, on=idc, how="left", maintain_order="left")
        for side in ("l", "r")
    ]
    left, right = (side["row"].to_numpy() for side in rows)
    truth = data.table[data.truth_column].cast(pl.String).to_numpy()
    same = truth[left] == truth[right]
    weight = pairs["match_weight"].to_numpy().astype(np.float64)
    print(f"== {name} (seed {seed}; {len(pairs):,} candidate pairs, {int(same.sum()):,} of them true)")
    for shift in SHIFTS:
        probability = 1.0 / (1.0 + np.exp2(-(weight + shift)))
        labels = cluster_labels(len(ids), left, right, probability, config.threshold, config.clustering)
        clusters = pl.DataFrame({idc: ids, "cluster_id": pl.Series(labels).cast(pl.String)})
        result = scores(data.table[idc], data.table[data.truth_column], clusters, idc)
        mark = "  (as run)" if shift == 0 else ""
        print(
            f"  shift {shift:+4.1f} bits: cluster pair-F1 {result['f1']:.3f} "
            f"(P {result['precision']:.3f} R {result['recall']:.3f}){mark}"
        )
    total = true_pairs(data.table[data.truth_column])
    fields = [c for c in pairs.columns if c.startswith("bf_")]
    best_field = max(fields, key=lambda f: ranking_f1(pairs[f].to_numpy(), same, total))
    print(
        f"  ranking: pair-F1 {ranking_f1(weight, same, total):.3f} at its best cut; best field "
        f"{best_field.removeprefix('bf_')} alone {ranking_f1(pairs[best_field].to_numpy(), same, total):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", choices=SETS)
    parser.add_argument("--seed", type=int, default=0, help="dedup's config seed")
    args = parser.parse_args()
    for name in args.sets:
        with tempfile.TemporaryDirectory() as tmp:
            headroom(name, args.seed, Path(tmp))


if __name__ == "__main__":
    main()
