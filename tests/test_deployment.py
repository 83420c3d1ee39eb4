"""End to end against a real Prefect server: deploy prefect.yaml, trigger a run, let a worker run it.

Starts `prefect server start` on 127.0.0.1 (free port, temporary PREFECT_HOME), creates the
process work pool, runs `prefect deploy --all` from the repo root, checks both deployments and
their schedules, triggers `deduplicate/nightly` with a small input, runs a worker until the flow
run finishes, and checks the state, the output Parquet and the markdown artifact. Every process
it starts is stopped. Select or skip it with `-m deployment` / `-m "not deployment"`.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from dedup.evaluation import evaluate_output
from tests.processes import BIN, ROOT, start, stop

pytestmark = pytest.mark.deployment


def _prefect(env: dict[str, str], *args: str, timeout: int = 120) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_scheduled_deployment_runs_on_a_worker(
    prefect_server: dict[str, str], febrl1_file: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    env, api = prefect_server, prefect_server["PREFECT_API_URL"]
    _prefect(env, "work-pool", "create", "dedup-pool", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--all")

    nightly = httpx.get(f"{api}/deployments/name/deduplicate/nightly").json()
    weekly = httpx.get(f"{api}/deployments/name/train-encoder/weekly").json()
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert [s["schedule"]["cron"] for s in weekly["schedules"]] == ["0 3 * * 0"]
    assert nightly["work_pool_name"] == "dedup-pool" and nightly["parameters"]["input_path"] == "data/febrl3.parquet"
    # one run at a time per deployment: two nightly runs never write one output together
    assert nightly["global_concurrency_limit"]["limit"] == 1 and weekly["global_concurrency_limit"]["limit"] == 1
    inbox = httpx.get(f"{api}/deployments/name/update-inbox/inbox").json()
    assert [s["schedule"]["cron"] for s in inbox["schedules"]] == ["0 * * * *"]
    assert inbox["global_concurrency_limit"]["limit"] == 1 and inbox["parameters"]["master"] == "out/scheduled/febrl3"

    out, models = tmp_path / "out", tmp_path / "models"
    started = _prefect(
        env,
        "deployment",
        "run",
        "deduplicate/nightly",
        "--param",
        f"input_path={febrl1_file}",
        "--param",
        f"config_path={tiny_config_file}",
        "--param",
        f"output={out}",
        "--param",
        f"models_dir={models}",
    )
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)

    worker = start(["prefect", "worker", "start", "--pool", "dedup-pool"], env, tmp_path / "worker.log", cwd=tmp_path)
    try:
        deadline = time.time() + 300
        state = None
        while time.time() < deadline:
            state = httpx.get(f"{api}/flow_runs/{run_id}").json()["state"]
            if state and state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                break
            time.sleep(2)
    finally:
        stop(worker)
    assert state is not None and state["type"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]

    clusters = pl.read_parquet(out / "clusters.parquet")
    assert clusters.height == 1000 and {"cluster_id", "cluster_size"} <= set(clusters.columns)
    assert evaluate_output(out, febrl1_file, "cluster")["cluster_pairs"]["f1"] >= 0.97
    assert (models / "febrl3" / "LATEST").is_file()  # no model yet, so one was trained and registered

    artifacts = httpx.post(f"{api}/artifacts/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).json()
    report = [a for a in artifacts if a["key"] == "dedup-report"]
    assert report and report[0]["type"] == "markdown" and "1,000" in report[0]["data"]
