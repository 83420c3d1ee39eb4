"""kill -9 at random moments of real `dedup run` processes: the output is always a complete result.

    python benchmarks/kill.py --kills 100            # ~15 minutes on 2 cores
    python benchmarks/kill.py --kills 10 --seed 3

An output holds result A (Febrl1, seed 0). Then, again and again, a run of configuration B
(seed 7, threshold 0.7) into the same output is killed with SIGKILL after a random delay
(uniform over one run's length, so kills land in reading, training, scoring, clustering and
publishing alike; the stage cache kept by killed runs makes later attempts shorter, so the
delay is drawn afresh from the measured length of the last complete run). After each kill the
output, read through the names people open (``clusters.parquet``, ``pairs.parquet``,
``report.json``, ``model/``), must be exactly A or exactly B: report, pairs, clusters and model
from one run. Every 10 kills the output is reset to A. Printed: kills that left A, left B,
and any that left something else (the goal is 0), with the seconds each step of a run took.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dedup.datasets import load_febrl  # noqa: E402
from dedup.publish import run_dir  # noqa: E402

DEDUP = str(Path(sys.executable).with_name("dedup"))
TRAINING = "\ntraining:\n  dim: 32\n  epochs: 2\n  steps_per_epoch: 25\n  batch_size: 128\n"


def state(out: Path) -> tuple[object, ...]:
    """The result a reader sees, after checking that its parts come from one run."""
    report = json.loads((out / "report.json").read_text())
    pairs = pl.read_parquet(out / "pairs.parquet")
    clusters = pl.read_parquet(out / "clusters.parquet", columns=["cluster_id"])
    meta = json.loads((out / "model" / "meta.json").read_text())
    fingerprint = hashlib.sha256(json.dumps(meta["files"], sort_keys=True).encode()).hexdigest()
    consistent = (
        report["run"] == run_dir(out).name
        and report["counts"]["matches"] == pairs["is_match"].sum()
        and report["counts"]["clusters"] == clusters["cluster_id"].n_unique()
        and report["model_fingerprint"] == fingerprint
    )
    if not consistent:
        return ("MIXED",)
    digest = hashlib.sha256(pairs.select(pairs.columns[:2] + ["match_probability"]).write_ipc(None).getvalue())
    return (report["threshold"], fingerprint, digest.hexdigest())


def run(source: Path, config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [DEDUP, "run", str(source), "--config", str(config), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "febrl1.parquet"
        load_febrl(1).write_parquet(source)
        config_a, config_b = tmp / "a.yaml", tmp / "b.yaml"
        base = (ROOT / "data" / "febrl3.yaml").read_text() + TRAINING
        config_a.write_text(base)
        config_b.write_text(base + "seed: 7\nthreshold: 0.7\n")
        a, b, out = tmp / "a", tmp / "b", tmp / "out"
        started = time.perf_counter()
        for config, target in ((config_a, a), (config_b, b)):
            done = run(source, config, target)
            if done.wait() != 0:
                raise SystemExit(done.stderr.read() if done.stderr else "run failed")
        length = (time.perf_counter() - started) / 2
        expected = {state(a): "A", state(b): "B"}
        outcomes: dict[str, int] = {"A": 0, "B": 0, "finished": 0, "other": 0}
        for kill in range(args.kills):
            if kill % 10 == 0:
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(["cp", "-a", str(a), str(out)], check=True)
            process = run(source, config_b, out)
            began = time.perf_counter()
            time.sleep(rng.uniform(0.0, length))
            process.send_signal(signal.SIGKILL)
            code = process.wait()
            try:
                seen = expected.get(state(out), "other")
            except (OSError, KeyError, ValueError) as exc:  # a missing or unreadable part
                seen = "other"
                print(f"kill {kill}: {exc}", file=sys.stderr)
            if code == 0:  # the kill came after the run had finished
                length = time.perf_counter() - began
                seen = "finished" if seen == "B" else "other"
            outcomes[seen] += 1
            if seen == "other":
                print(f"kill {kill}: the output is neither A nor B", file=sys.stderr)
        print(f"{args.kills} kills (seed {args.seed}, a run lasts ~{length:.1f} s): ", end="")
        print(
            f"{outcomes['A']} left A, {outcomes['B']} left B, {outcomes['finished']} came too late "
            f"(the run had finished: B), {outcomes['other']} left anything else"
        )


if __name__ == "__main__":
    main()
