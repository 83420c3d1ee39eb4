"""Active learning: pair-F1 after 0, 10, 25, 50 and 100 answers, dedup review beside dedupe 3.

    python benchmarks/active_learning.py                    # every set, both tools
    python benchmarks/active_learning.py abtbuy sigmod_x2   # some sets
    python benchmarks/active_learning.py --tools dedup      # dedup only
    python benchmarks/active_learning.py --tools dedup --seed 1   # dedup with another training seed

A scripted user answers from the truth column, which neither tool otherwise sees:

- ``dedup``: ``dedup run`` (label-free), then ``dedup review OUT --port 0`` in a child process,
  driven through the same HTTP API the page uses: ``GET /api/next`` gives the pair to judge,
  ``POST /api/label`` the answer; at each budget ``POST /api/retrain`` and wait for it, then
  score ``clusters.parquet``. Answers accumulate (the 25 include the first 10).
- ``dedupe``: dedupe 3's own active learner (``prepare_training`` / ``uncertain_pairs`` /
  ``mark_pairs``), fields declared from the same config (text -> Text, others -> String, all
  ``missing`` allowed), ``train`` and ``partition`` at threshold 0.5 at each budget (a fresh
  learner per budget, given the answers its learner chose so far, then asking on). dedupe cannot
  work without answers, so its 0 column is empty; it needs both a match and a non-match to train
  (a budget where it has not seen both is marked ``-``).

Both are scored with cluster pair-F1 (``realdata.scores``). Sets: the real ones of
``benchmarks/data`` and fake_1000.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import CONFIGS, DEDUP, Dataset, load, scores, variant  # noqa: E402

SETS = ("cora", "restaurant", "abtbuy", "sigmod_x1", "sigmod_x2", "fake_1000")
BUDGETS = (0, 10, 25, 50, 100)
TOOLS = ("dedup", "dedupe")


def truth_of(data: Dataset) -> dict[str, str]:
    ids = data.table[data.id_column].cast(pl.String)
    return dict(zip(ids, data.table[data.truth_column].cast(pl.String), strict=True))


def f1_of(data: Dataset, clusters: pl.DataFrame) -> float:
    return scores(data.table[data.id_column], data.table[data.truth_column], clusters, data.id_column)["f1"]


# ---- dedup review, through its HTTP API ----------------------------------------------------------
class Review:
    def __init__(self, output: Path, source: Path) -> None:
        self.process = subprocess.Popen(
            [str(DEDUP), "review", str(output), "--port", "0", "--input", str(source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if not found:
            self.close()
            raise RuntimeError(f"dedup review did not start: {line}{self.process.stdout.read()[-2000:]}")
        self.url = found.group(1)

    def call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-Dedup": "1"} if body is not None else {}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    def close(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def run_dedup(data: Dataset, work: Path, seed: int | None = None) -> dict[int, float]:
    source, output = work / "input.parquet", work / "out-dedup"
    config = variant(CONFIGS / f"{data.config_name}.yaml", work, seed=seed)
    subprocess.run(
        [str(DEDUP), "run", str(source), "--config", str(config), "--output", str(output)],
        check=True,
        capture_output=True,
    )
    truth = truth_of(data)
    results = {0: f1_of(data, pl.read_parquet(output / "clusters.parquet"))}
    review = Review(output, source)
    try:
        given = 0
        for budget in BUDGETS[1:]:
            pair = review.call("/api/next?tab=bench")["pair"]
            while given < budget and pair is not None:
                label = "match" if truth[pair["left"]] == truth[pair["right"]] else "non-match"
                pair = review.call(
                    "/api/label", {"left": pair["left"], "right": pair["right"], "label": label, "tab": "bench"}
                )["pair"]
                given += 1
            review.call("/api/retrain", {})
            while (status := review.call("/api/progress")["retrain"])["state"] == "running":
                time.sleep(0.5)
            if status["state"] != "finished":
                raise RuntimeError(f"retrain failed: {status['last_line']}")
            time.sleep(0.5)  # the session reloads the new run after the process exits
            results[budget] = f1_of(data, pl.read_parquet(output / "clusters.parquet"))
    finally:
        review.close()
    return results


# ---- dedupe 3 -------------------------------------------------------------------------------------
def run_dedupe(data: Dataset) -> dict[int, float | None]:
    import dedupe

    config = yaml.safe_load((CONFIGS / f"{data.config_name}.yaml").read_text())
    fields = []
    for name, kind in config["fields"].items():
        variable = dedupe.variables.Text if kind == "text" else dedupe.variables.String
        fields.append(variable(name, has_missing=True))
    table = data.table.with_columns(pl.col(data.id_column).cast(pl.String))
    records = {}
    for row in table.iter_rows(named=True):
        values = {f: (None if row[f] is None or str(row[f]).strip() == "" else str(row[f])) for f in config["fields"]}
        records[row[data.id_column]] = {**values, "__id": row[data.id_column]}
    truth = truth_of(data)
    results: dict[int, float | None] = {}
    answered: dict[str, list] = {"match": [], "distinct": []}
    previous = None
    for budget in BUDGETS[1:]:
        # a fresh learner per budget, given the answers so far as a training file (dedupe's
        # partition resets the index predicates its active learner shares, so one learner
        # cannot go on after it)
        deduper = dedupe.Dedupe(fields, num_cores=1)
        if previous is None:
            deduper.prepare_training(records)
        else:
            training = io.StringIO()
            previous.write_training(training)
            training.seek(0)
            deduper.prepare_training(records, training_file=training)
        while len(answered["match"]) + len(answered["distinct"]) < budget:
            left, right = deduper.uncertain_pairs()[0]
            kind = "match" if truth[left["__id"]] == truth[right["__id"]] else "distinct"
            answered[kind].append((left, right))
            deduper.mark_pairs({"match": [], "distinct": [], kind: [(left, right)]})
        previous = deduper
        if not (answered["match"] and answered["distinct"]):
            results[budget] = None
            continue
        deduper.train()
        clusters = deduper.partition(records, threshold=0.5)
        rows = [(record_id, str(number)) for number, (ids, _) in enumerate(clusters) for record_id in ids]
        frame = pl.DataFrame(rows, schema={data.id_column: pl.String, "cluster_id": pl.String}, orient="row")
        results[budget] = f1_of(data, frame)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="*", default=list(SETS))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument("--seed", type=int, default=None, help="dedup's config seed (default: the config's)")
    args = parser.parse_args()
    tools = args.tools.split(",")
    print(f"{'set':11s} {'tool':7s} " + " ".join(f"{b:>7d}" for b in BUDGETS) + "   seconds", flush=True)
    everything: dict[str, dict] = {}
    for name in args.sets:
        data = load(name)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            data.table.drop(data.truth_column).write_parquet(work / "input.parquet")
            for tool in tools:
                start = time.perf_counter()
                try:
                    results = run_dedup(data, work, args.seed) if tool == "dedup" else run_dedupe(data)
                except Exception as exc:  # noqa: BLE001 (a benchmark row says what failed and goes on)
                    print(f"{name:11s} {tool:7s} failed: {str(exc).splitlines()[-1][:150]}", flush=True)
                    continue
                seconds = time.perf_counter() - start
                cells = " ".join(f"{results[b]:7.3f}" if results.get(b) is not None else f"{'-':>7s}" for b in BUDGETS)
                print(f"{name:11s} {tool:7s} {cells}   {seconds:7.1f}", flush=True)
                everything.setdefault(name, {})[tool] = {"f1": results, "seconds": seconds}
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
