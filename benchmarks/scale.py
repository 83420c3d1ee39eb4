"""Speed and memory at scale: dedup and Splink side by side on generated people.

    python benchmarks/scale.py --n 100000 1000000     # both tools, both sizes
    python benchmarks/scale.py --n 1000000 --no-splink
    python benchmarks/scale.py --n 100000 --hard         # namesakes, households, transcription noise
    python benchmarks/scale.py --n 1000000 --embedding 10  # dedup also adds each record's 10 nearest
    python benchmarks/scale.py --n 10000 50000 --default-blocking --repeat 3   # a new user's config
    python benchmarks/scale.py --n 10000 --default-blocking --no-self-training  # dedup trains once

Per size: ``dedup.synth`` writes N records (seeded, cached under --workdir), then each tool runs
in its own child process (so peak RSS is its own) from the Parquet file to clusters and scored
pairs on disk:

- dedup: ``dedup.pipeline.run`` with benchmarks/configs/synth.yaml (label-free training included);
  with ``--embedding K`` its blocking gains an embedding pass (each record's K nearest by the
  trained encoder's record vectors), which Splink has no counterpart of: its rules stay the same;
  with ``--default-blocking`` dedup gets synth.yaml's fields without its ``blocking`` (the passes
  dedup picks from the field kinds, what a config written without blocking runs), Splink its rules;
  with ``--no-self-training`` dedup's config sets ``training.self_training: false``.
- Splink (DuckDB backend, ``pip install -e '.[bench]'``): the same blocking rules, Splink's own
  comparisons for people (names, date of birth, postcode, e-mail), its usual training recipe
  (random-sampling u, EM on two blocking rules), ``predict()`` of every candidate pair written to
  Parquet, connected components at 0.5 written to Parquet.

Both are scored with the same code against the generated truth (column ``cluster``). "total" is
the pipeline's own time inside the child, "wall" the child process from start to exit (interpreter
start and imports included: what ``time dedup run`` shows). ``--repeat R`` runs the two tools
alternately R times and prints each run and the min-max of each figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import yaml
from memory import peak_rss_mb  # benchmarks/memory.py: the process's own peak, not its parent's

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "benchmarks" / "configs" / "synth.yaml"
THRESHOLD = 0.5


# ---- the two workers (each runs in a child process) -------------------------------------------
def run_dedup(input_path: Path, output: Path, config: Path = CONFIG) -> dict:
    from dedup.config import load_config
    from dedup.pipeline import run

    start = time.perf_counter()
    report = run(input_path, config, output)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "stages": report["timings_seconds"],
        "score_breakdown": report["score_breakdown_seconds"],
        "pairs": report["counts"]["candidate_pairs"],
        "records": report["counts"]["records"],
        "fields": len(load_config(config).fields),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_splink(input_path: Path, output: Path) -> dict:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    output.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = round(now - clock, 3)
        clock = now

    start = clock
    db_api = DuckDBAPI()
    records = db_api.register(pl.read_parquet(input_path).drop("cluster").to_arrow())
    lap("read")
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "surname"),
            block_on("surname", "dob"),
            block_on("first_name", "dob"),
            block_on("postcode"),
            block_on("email"),
            block_on("phone"),
        ],
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.LevenshteinAtThresholds("address", [1, 3]),
            cl.NameComparison("city"),
            cl.PostcodeComparison("postcode"),
            cl.LevenshteinAtThresholds("email", [1, 2]),
            cl.LevenshteinAtThresholds("phone", [1, 2]),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(records, settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob"), block_on("email")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=0)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    lap("train")
    predictions = linker.inference.predict()
    predictions.to_parquet(str(output / "pairs.parquet"), overwrite=True)
    lap("predict+write pairs")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, THRESHOLD)
    clusters.to_parquet(str(output / "clusters.parquet"), overwrite=True)
    lap("cluster+write")
    return {"seconds": time.perf_counter() - start, "stages": stages, "peak_rss_mb": peak_rss_mb()}


# ---- the driver -----------------------------------------------------------------------------
def child(tool: str, input_path: Path, output: Path, config: Path = CONFIG) -> dict:
    """Run one tool in a fresh process and return its JSON result."""
    cmd = [sys.executable, __file__, "--worker", tool, "--input", str(input_path), "--output", str(output)]
    cmd += ["--config", str(config)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": wall}


def scores(truth_path: Path, output: Path, id_l: str, id_r: str) -> dict[str, float]:
    """Cluster-pair and pairwise F1 of one tool's output against the generated truth."""
    from dedup.evaluation import evaluate_frames

    truth = pl.read_parquet(truth_path, columns=["unique_id", "cluster"])
    clusters = pl.read_parquet(output / "clusters.parquet").select(
        pl.col("unique_id").cast(pl.Int64), pl.col("cluster_id").cast(pl.String)
    )
    aligned = truth.join(clusters, on="unique_id", how="left", maintain_order="left").with_columns(
        pl.col("cluster_id").fill_null(pl.col("unique_id").cast(pl.String))  # Splink drops no one, but be safe
    )
    pairs = pl.read_parquet(output / "pairs.parquet", columns=[id_l, id_r, "match_probability"]).select(
        pl.col(id_l).cast(pl.Int64).alias("unique_id_l"),
        pl.col(id_r).cast(pl.Int64).alias("unique_id_r"),
        (pl.col("match_probability") >= THRESHOLD).alias("is_match"),
    )
    metrics = evaluate_frames(aligned["unique_id"], aligned["cluster_id"], pairs, "unique_id", aligned["cluster"])
    return {"cluster_f1": metrics["cluster_pairs"]["f1"], "pair_f1": metrics["pairwise"]["f1"]}


def synth_config(workdir: Path, embedding: int = 0, default_blocking: bool = False, self_training: bool = True) -> Path:
    """synth.yaml as dedup runs it: as it is, with an embedding pass of ``embedding`` neighbours
    after its rule passes, or without its ``blocking`` (dedup picks the passes from the field
    kinds, an embedding pass among them), and with ``training.self_training`` off when
    ``self_training`` is False; a copy in ``workdir`` unless it is unchanged."""
    if not embedding and not default_blocking and self_training:
        return CONFIG
    raw = yaml.safe_load(CONFIG.read_text())
    if default_blocking:
        raw.pop("blocking", None)
    elif embedding:
        raw["blocking"] = [*raw["blocking"], {"embedding": {"k": embedding}}]
    if not self_training:
        raw.setdefault("training", {})["self_training"] = False
    name = "synth_default_blocking" if default_blocking else f"synth_embedding_{embedding}"
    path = workdir / f"{name}{'' if self_training else '_once'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def spread(runs: list[dict], key: str, scale: float = 1.0, digits: int = 1) -> str:
    """``low-high`` of one figure over the runs (one value when they agree to the digits shown)."""
    values = sorted(r[key] * scale for r in runs)
    low, high = f"{values[0]:.{digits}f}", f"{values[-1]:.{digits}f}"
    return low if low == high else f"{low}-{high}"


def bench(
    n: int,
    workdir: Path,
    seed: int,
    with_splink: bool,
    hard: bool = False,
    embedding: int = 0,
    default_blocking: bool = False,
    repeat: int = 1,
    self_training: bool = True,
) -> None:
    from dedup.synth import cached

    start = time.perf_counter()
    data = cached(n, workdir, seed=seed, hard=hard)
    print(f"input: {data} ({time.perf_counter() - start:.1f}s to find or generate)")
    tag = f"{n}{'_hard' if hard else ''}{f'_embedding{embedding}' if embedding else ''}"
    tag += ("_default" if default_blocking else "") + ("" if self_training else "_once")
    config = synth_config(workdir, embedding, default_blocking, self_training)
    extra = (" (hard: dedup synth --hard)" if hard else "") + (
        f" (dedup: + embedding pass, k={embedding})" if embedding else ""
    )
    extra += " (dedup: default blocking)" if default_blocking else ""
    extra += "" if self_training else " (dedup: no self-training)"
    print(f"\n== {n:,} records{extra} ==")
    ours_runs: list[dict] = []
    theirs_runs: list[dict] = []
    for _ in range(repeat):
        ours_runs.append(run_ours(data, workdir / f"dedup_{tag}", config))
        if with_splink:
            theirs_runs.append(run_theirs(data, workdir / f"splink_{tag}"))
    if repeat > 1:
        print(f"\n-- {n:,} records, {repeat} runs each (min-max) --")
        print(
            f"dedup   total {spread(ours_runs, 'seconds')}s  wall {spread(ours_runs, 'wall')}s  "
            f"train {spread([r['stages'] for r in ours_runs], 'train')}s  "
            f"peak RSS {spread(ours_runs, 'peak_rss_mb', 1 / 1024, 2)} GB  "
            f"cluster F1 {spread(ours_runs, 'cluster_f1', digits=4)}"
        )
        if theirs_runs:
            print(
                f"splink  total {spread(theirs_runs, 'seconds')}s  wall {spread(theirs_runs, 'wall')}s  "
                f"peak RSS {spread(theirs_runs, 'peak_rss_mb', 1 / 1024, 2)} GB  "
                f"cluster F1 {spread(theirs_runs, 'cluster_f1', digits=4)}"
            )
            ratios = sorted(t["seconds"] / o["seconds"] for o, t in zip(ours_runs, theirs_runs, strict=True))
            print(f"splink / dedup time, run by run: {ratios[0]:.2f}-{ratios[-1]:.2f}x")


def run_ours(data: Path, output: Path, config: Path) -> dict:
    """One dedup run in a child process, scored and printed."""
    ours = child("dedup", data, output, config)
    ours.update(scores(data, output, "unique_id_l", "unique_id_r"))
    breakdown, stages = ours["score_breakdown"], ours["stages"]
    n = ours["records"]
    pair_fields = ours["pairs"] * ours["fields"]
    print(
        f"dedup   total {ours['seconds']:7.1f}s  wall {ours['wall']:7.1f}s  "
        f"peak RSS {ours['peak_rss_mb'] / 1024:5.2f} GB  "
        f"pairs {ours['pairs']:,}  cluster F1 {ours['cluster_f1']:.4f}  pair F1 {ours['pair_f1']:.4f}"
    )
    print("        stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    print(
        f"        encode {n * ours['fields'] / stages['encode'] / 1e3:,.0f}k strings/s; "
        f"pair similarities {pair_fields / breakdown['similarities'] / 1e6:,.1f}M pair-fields/s; "
        f"pairs end to end {ours['pairs'] / ours['seconds'] / 1e3:,.0f}k/s; "
        f"write pairs {breakdown['write_pairs']:.1f}s"
    )
    return ours


def run_theirs(data: Path, output: Path) -> dict:
    """One Splink run in a child process, scored and printed."""
    theirs = child("splink", data, output)
    theirs.update(scores(data, output, "unique_id_l", "unique_id_r"))
    print(
        f"splink  total {theirs['seconds']:7.1f}s  wall {theirs['wall']:7.1f}s  "
        f"peak RSS {theirs['peak_rss_mb'] / 1024:5.2f} GB  "
        f"cluster F1 {theirs['cluster_f1']:.4f}  pair F1 {theirs['pair_f1']:.4f}"
    )
    print("        stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in theirs["stages"].items()))
    return theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dedup-scale"))
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument("--hard", action="store_true", help="generate with `dedup synth --hard`")
    parser.add_argument(
        "--embedding", type=int, default=0, metavar="K", help="add an embedding pass (K nearest) to dedup's blocking"
    )
    parser.add_argument(
        "--default-blocking", action="store_true", help="dedup without the blocking: the passes it picks"
    )
    parser.add_argument(
        "--no-self-training", action="store_true", help="dedup with training.self_training off (one round)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool, alternating; prints the min-max")
    parser.add_argument("--worker", choices=["dedup", "splink"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=CONFIG, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.embedding and args.default_blocking:
        parser.error("--default-blocking already has an embedding pass (k=10); give one of the two")
    if args.worker:
        result = (
            run_dedup(args.input, args.output, args.config)
            if args.worker == "dedup"
            else run_splink(args.input, args.output)
        )
        print(json.dumps(result))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    for n in args.n:
        options = (args.hard, args.embedding, args.default_blocking, args.repeat, not args.no_self_training)
        bench(n, args.workdir, args.seed, not args.no_splink, *options)


if __name__ == "__main__":
    main()
