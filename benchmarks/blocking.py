"""Blocking setups side by side: pairs per record, pair completeness, end-to-end F1, time.

    python benchmarks/blocking.py                      # Febrl3, fake_1000, restaurant, abtbuy
    python benchmarks/blocking.py cora sigmod_x1       # any set of benchmarks/realdata.py

Setups, per data set: the hand-written rules of benchmarks/configs/realdata/<set>_rules.yaml,
the same rules plus the learned embedding pass ({embedding: {k: K}}), and no blocking at all in
the config (the defaults chosen from the field kinds). Every row is a full label-free `dedup run` (training included);
"block s" is the rule passes' time, "run s" the whole run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dedup.config import parse_config
from dedup.evaluation import evaluate_output
from dedup.pipeline import run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import CONFIGS, load  # noqa: E402

EMBEDDING_K = int(os.environ.get("EMBEDDING_K", "5"))  # compare 3, 5 and 10 with EMBEDDING_K=...


def setups(config_path: Path) -> dict[str, str]:
    raw = yaml.safe_load(config_path.read_text())
    rules = [p for p in raw["blocking"] if not (isinstance(p, dict) and "embedding" in p)]
    raw = {**raw, "blocking": rules}
    with_embedding = {**raw, "blocking": [*rules, {"embedding": {"k": EMBEDDING_K}}]}
    default = {k: v for k, v in raw.items() if k != "blocking"}
    return {
        "rules": yaml.safe_dump(raw),
        f"rules+embedding(k={EMBEDDING_K})": yaml.safe_dump(with_embedding),
        "default (none configured)": yaml.safe_dump(default),
    }


def main(names: list[str]) -> None:
    print(
        f"{'data':10s} {'blocking':28s} {'pairs':>9s} {'per rec':>8s} {'PC':>7s} {'clu F1':>7s} "
        f"{'pair F1':>7s} {'block s':>8s} {'run s':>6s}"
    )
    for name in names:
        data = load(name)
        table = data.table
        for label, text in setups(CONFIGS / f"{data.config_name}_rules.yaml").items():
            with tempfile.TemporaryDirectory() as tmp:
                source = Path(tmp) / "in.parquet"
                table.write_parquet(source)
                start = time.perf_counter()
                report = run(source, parse_config(text), Path(tmp) / "out")
                seconds = time.perf_counter() - start
                m = evaluate_output(Path(tmp) / "out", source, data.truth_column)
            pairs = report["counts"]["candidate_pairs"]
            print(
                f"{name:10s} {label:28s} {pairs:9d} {pairs / table.height:8.2f} "
                f"{m['blocking']['pair_completeness']:7.4f} {m['cluster_pairs']['f1']:7.4f} "
                f"{m['pairwise']['f1']:7.4f} {report['timings_seconds']['block']:8.3f} {seconds:6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:] or ["febrl3", "fake_1000", "restaurant", "abtbuy"])
