"""An update of a big master with a small drop of records, beside the full runs it replaces.

    python benchmarks/incremental.py --base 1000000 --new 10000     # ~10 minutes on 2 cores
    python benchmarks/incremental.py --base 100000 --new 1000

Generated people (``dedup synth``, seeded; benchmarks/configs/synth.yaml: the scale benchmark's
fields and rule passes) are cut into a base of ``--base`` records and a drop of the last
``--new`` (duplicates of base records among them). Each step is a ``dedup`` child process timed
with its own peak RSS (``/usr/bin/time``):

1. ``dedup run`` on the base (training included): the master;
2. ``dedup update`` of the master with the drop;
3. ``dedup run`` on base + drop with the master's model (``--model``: what a full rerun without
   retraining costs) and, for scale, the training run of step 1.

Printed: seconds and peak RSS of each, the update's share of both full runs, the pairs the
update scored, and the cluster pair-F1 between the update's clusters and the full rerun's. Also
what a process costs before it reads a record: one that only imports what ``dedup update``
imports, and one that only imports torch (the encoder's library), timed the same way: the floor
under any update's time and memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dedup.evaluation import cluster_metrics  # noqa: E402
from dedup.synth import write  # noqa: E402

DEDUP = str(Path(sys.executable).with_name("dedup"))
CONFIG = ROOT / "benchmarks" / "configs" / "synth.yaml"


def timed(*args: str, command: tuple[str, ...] = (DEDUP,)) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one dedup command (or of ``command`` with ``args``)."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", *command, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join((*command, *args))} failed:\n{done.stderr[-3000:]}")
    seconds, kb = done.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kb) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        work = Path(args.workdir or tmp_name)
        work.mkdir(parents=True, exist_ok=True)
        everything = work / f"people_{args.base + args.new}.parquet"
        if not everything.exists():
            write(args.base + args.new, everything, seed=args.seed)
        people = pl.read_parquet(everything)
        base, drop = work / "base.parquet", work / "drop.parquet"
        people.head(args.base).write_parquet(base)
        people.tail(args.new).write_parquet(drop)
        master, full = work / "master", work / "full"
        trained = timed("run", str(base), "--config", str(CONFIG), "--output", str(master))
        updated = timed("update", str(drop), "--previous", str(master))
        rerun = timed(
            "run", str(everything), "--config", str(CONFIG), "--output", str(full), "--model", str(master / "model")
        )
        imports = timed("-c", "import dedup.cli, dedup.update", command=(sys.executable,))
        torch_only = timed("-c", "import torch", command=(sys.executable,))
        a = pl.read_parquet(master / "clusters.parquet", columns=["unique_id", "cluster_id"])
        b = pl.read_parquet(full / "clusters.parquet", columns=["unique_id", "cluster_id"])
        joined = a.join(b, on="unique_id", suffix="_full")
        f1 = cluster_metrics(
            joined["cluster_id"].cast(pl.String).to_numpy(), joined["cluster_id_full"].cast(pl.String).to_numpy()
        )["cluster_pairs"]["f1"]
        update = json.loads((master / "report.json").read_text())["update"]
        print(f"{args.base:,} base + {args.new:,} new records ({CONFIG.name}), 2 cores")
        print(f"  full run, training included : {trained[0]:7.1f} s  {trained[1]:5.2f} GB (the base)")
        print(f"  full rerun with the model   : {rerun[0]:7.1f} s  {rerun[1]:5.2f} GB (base + new)")
        print(
            f"  update                      : {updated[0]:7.1f} s  {updated[1]:5.2f} GB  "
            f"= {updated[0] / rerun[0]:.0%} / {updated[1] / rerun[1]:.0%} of the rerun's time / memory, "
            f"{updated[0] / trained[0]:.1%} / {updated[1] / trained[1]:.1%} of the full run's"
        )
        for name, (seconds, gb) in (("update's imports alone", imports), ("torch's import alone", torch_only)):
            print(
                f"  {name:28s}: {seconds:7.1f} s  {gb:5.2f} GB  "
                f"= {seconds / trained[0]:.1%} / {gb / trained[1]:.1%} of the full run's time / memory"
            )
        print(f"  pairs scored by the update  : {update['pairs_scored']:,} (kept {update['pairs_kept']:,})")
        print(f"  changes                     : {update['changes']}")
        print(f"  cluster pair-F1, update vs full rerun: {f1:.4f}")


if __name__ == "__main__":
    main()
