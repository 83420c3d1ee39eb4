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
field's bits (``bf_<field>``). "direct" bounds what answers do by themselves, without any
correction of the model: a perfect judge answers ``match`` on the true candidate pair whose two
clusters (as run) raise pair-F1 most when joined, they are joined, and so on for 10, 25 and 50
answers (a person answers non-matches too, and they decide only their own pair here: a greedy
estimate of what the answered matches alone can do, not a proof). "correction from every
truth" bounds what ``dedup review``'s correction of the model can do with any number of answers:
its family (a shift, a scale per field, a slope per field's raw similarities, no null terms; the combiner's own
``fit_correction``, weakest penalty) fitted on the truth of every candidate pair (in sample),
and the pairs clustered again at the config's threshold and with the shifts above. Sets and
configs: ``benchmarks/realdata.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
from realdata import CONFIGS, DEDUP, SETS, load, scores, true_pairs, variant
from scipy import sparse

from dedup.clustering import cluster_labels
from dedup.combiner import LABEL_PENALTIES, fit_correction
from dedup.config import load_config

SHIFTS = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)  # bits added to every pair's match weight
ANSWERS = (10, 25, 50)  # the direct bound's budgets


def ranking_f1(weights: np.ndarray, same: np.ndarray, truth_pairs: int) -> float:
    """Best pair-F1 over every cut of the pairs sorted by ``weights`` (highest first)."""
    order = np.argsort(-weights, kind="stable")
    found = np.cumsum(same[order])
    called = np.arange(1, len(order) + 1)
    return float((2 * found / (called + truth_pairs)).max()) if len(order) else 0.0


def direct_answers(
    labels: np.ndarray, truth: np.ndarray, left: np.ndarray, right: np.ndarray, same: np.ndarray, budget: int
) -> dict[int, np.ndarray]:
    """The clusters after each of ``ANSWERS`` greedy perfect answers (see the module's text):
    each joins the two clusters of a true candidate pair whose union raises pair-F1 most (the
    true pairs it adds against every pair it makes); none when no join raises it."""
    labels = labels.copy()
    entity = np.unique(truth, return_inverse=True)[1]
    true_total = float((np.bincount(entity) * (np.bincount(entity) - 1) // 2).sum())
    after = {}
    for answer in range(1, budget + 1):
        sizes = np.bincount(labels, minlength=labels.max() + 1)
        counts = sparse.csr_matrix(
            (np.ones(len(labels)), (labels, entity)), shape=(len(sizes), entity.max() + 1)
        )  # records per (cluster, entity)
        found = float(((counts.multiply(counts)).sum() - len(labels)) / 2)
        called = float((sizes * (sizes - 1) // 2).sum())
        joinable = np.flatnonzero(same & (labels[left] != labels[right]))
        if not len(joinable):
            break
        a, b = labels[left[joinable]], labels[right[joinable]]
        gained = np.asarray(counts[a].multiply(counts[b]).sum(axis=1)).ravel()
        f1 = 2 * (found + gained) / (called + sizes[a] * sizes[b] + true_total)
        best = int(np.argmax(f1))
        if f1[best] <= 2 * found / (called + true_total):
            break
        labels[labels == b[best]] = a[best]
        if answer in ANSWERS:
            after[answer] = labels.copy()
    return after


def corrected_by_truth(pairs: pl.DataFrame, same: np.ndarray) -> np.ndarray:
    """Every pair's match weight after the answers' correction fitted on every candidate's truth
    (the features ``Combiner.fit_pair_labels`` fits: each field's bits, a constant, each measure's
    similarity minus its mean, 0 where unknown)."""
    bits = pairs.select(pl.col("^bf_.*$")).to_numpy().astype(np.float64)
    weight = pairs["match_weight"].to_numpy().astype(np.float64)
    base = float(np.median(weight - bits.sum(axis=1)))  # the prior's bits (identical records aside)
    measures = pairs.select(pl.col("^sim_.*$"), pl.col("^tok_.*$")).to_numpy().astype(np.float64)
    measures = np.nan_to_num(measures - np.nanmean(measures, axis=0), nan=0.0)
    # the correction's null terms read zeros: pairs.parquet does not say which side is null
    features = np.concatenate([bits, np.ones((len(bits), 1)), measures, np.zeros_like(bits)], axis=1)
    theta = fit_correction(features, same.astype(np.float64), base, bits.shape[1], ("full", min(LABEL_PENALTIES)))
    return base + features @ theta


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

    def scored(labels: np.ndarray) -> dict[str, float]:
        clusters = pl.DataFrame({idc: ids, "cluster_id": pl.Series(labels).cast(pl.String)})
        return scores(data.table[idc], data.table[data.truth_column], clusters, idc)

    def shifted(weights: np.ndarray, shift: float) -> np.ndarray:
        """The clusters, as ``dedup run`` makes them, with every weight ``shift`` bits higher."""
        probability = 1.0 / (1.0 + np.exp2(-(weights + shift)))
        return cluster_labels(len(ids), left, right, probability, config.threshold, config.clustering)

    clustered = {}  # per shift
    for shift in SHIFTS:
        labels = clustered[shift] = shifted(weight, shift)
        result = scored(labels)
        mark = "  (as run)" if shift == 0 else ""
        print(
            f"  shift {shift:+4.1f} bits: cluster pair-F1 {result['f1']:.3f} "
            f"(P {result['precision']:.3f} R {result['recall']:.3f}){mark}"
        )
    joined = direct_answers(clustered[0.0], truth, left, right, same, max(ANSWERS))
    print(
        "  direct: pair-F1 after "
        + ", ".join(f"{n} perfect matches {scored(joined[n])['f1']:.3f}" for n in ANSWERS if n in joined)
    )
    corrected = corrected_by_truth(pairs, same)
    line = [(shift, scored(shifted(corrected, shift))) for shift in SHIFTS]
    at, best = next(r for s, r in line if s == 0.0), max(line, key=lambda r: r[1]["f1"])
    print(
        f"  correction from every truth: cluster pair-F1 {at['f1']:.3f} (P {at['precision']:.3f} "
        f"R {at['recall']:.3f}); best shift {best[0]:+.1f} bits {best[1]['f1']:.3f}"
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
