"""Scale-out: the deduplicate flow on a real Dask cluster gives the same clusters as on threads.

Starts a Prefect server (conftest), a `dask scheduler` and a `dask worker` with 2 worker
processes on 127.0.0.1, all with PREFECT_API_URL set (otherwise every Dask worker would start
its own temporary Prefect server). The flow runs twice, from the command line as a user would,
with the work cut into several pieces (3 hash partitions per blocking pass, 4 record ranges, 4
pair ranges): once with `--runner local`, once with `--runner dask --dask-address ...`.
Both use one saved model, so the comparison is about the distributed stages.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from distributed import Client
from polars.testing import assert_frame_equal

from dedup.config import load_config
from dedup.pipeline import run
from tests.processes import ROOT, free_port, start, stop, wait_until

pytestmark = pytest.mark.deployment
PIECES = ["--block-partitions", "3", "--records-per-part", "250", "--pairs-per-part", "2000"]


@pytest.fixture(scope="module")
def dask_cluster(prefect_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    env = {**prefect_server, "DASK_LOGGING__DISTRIBUTED": "warning"}
    scheduler = start(
        ["dask", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], env, logs / "scheduler.log"
    )
    workers = start(
        ["dask", "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"], env, logs / "workers.log"
    )
    try:

        def two_workers() -> bool:
            with Client(address, timeout=5) as client:
                return len(client.scheduler_info()["workers"]) == 2

        wait_until(two_workers, workers, logs / "workers.log", "dask workers", timeout=90)
        yield address
    finally:
        stop(workers)
        stop(scheduler)


def _flow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flows.deduplicate", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _task_runs(env: dict[str, str], log: str, name: str) -> int:
    """How many task runs named ``name`` the stage subflow in ``log`` made (Prefect's REST API)."""
    subflow = re.search(r"Flow run '([^']+)' - Beginning subflow run '\1' for flow 'deduplicate-stages'", log)
    assert subflow, log[-2000:]
    link = re.search(rf"Flow run '{re.escape(subflow[1])}' - View at \S+/flow-run/([0-9a-f-]+)", log)
    assert link, log[-2000:]
    body = {"flow_runs": {"id": {"any_": [link[1]]}}, "task_runs": {"name": {"like_": name}}}
    answer = httpx.post(f"{env['PREFECT_API_URL']}/task_runs/count", json=body, timeout=30)
    answer.raise_for_status()
    return int(answer.json())


def test_dask_run_gives_the_local_runs_clusters(
    prefect_server: dict[str, str], dask_cluster: str, febrl1_file: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    run(febrl1_file, tiny_config_file, tmp_path / "cli")  # trains the model both flow runs use
    model = str(tmp_path / "cli" / "model")
    common = ["--input", str(febrl1_file), "--config", str(tiny_config_file), "--model", model]
    _flow(prefect_server, *common, "--output", str(tmp_path / "local"), *PIECES)
    dask_args = ["--runner", "dask", "--dask-address", dask_cluster]
    log = _flow(prefect_server, *common, "--output", str(tmp_path / "dask"), *PIECES, *dask_args)
    assert "DaskTaskRunner" in log or dask_cluster in log, log[-2000:]

    local = pl.read_parquet(tmp_path / "local" / "clusters.parquet")
    dask = pl.read_parquet(tmp_path / "dask" / "clusters.parquet")
    assert local.height == 1000 and local["cluster_size"].max() > 1
    assert dask.equals(local)
    # and the pieces add up to the unpartitioned run: the same pairs, scores and clusters
    cli = pl.read_parquet(tmp_path / "cli" / "clusters.parquet")
    assert cli.select("cluster_id", "cluster_size").equals(local.select("cluster_id", "cluster_size"))
    key = ["rec_id_l", "rec_id_r"]
    pairs = [pl.read_parquet(tmp_path / name / "pairs.parquet").sort(key) for name in ("cli", "local", "dask")]
    # floats may differ in the last bit: a Dask worker runs torch on one thread, the flow on two
    assert_frame_equal(pairs[1], pairs[2], check_exact=False, abs_tol=1e-5)
    assert_frame_equal(pairs[0], pairs[1], check_exact=False, abs_tol=1e-5)
    # the dask run really fanned out: one task per (pass, partition), record range and pair range
    stages = tmp_path / "dask" / ".stages"
    assert len(list(stages.glob("score-*/embeddings/embeddings-*.npz"))) == 4
    assert len(list(stages.glob("score-*/scores/scores-*.parquet"))) == 4  # 7,513 pairs / 2,000
    blocks = _task_runs(prefect_server, log, "block.block_part")  # their pairs were merged and removed
    assert blocks == 3 * len(load_config(tiny_config_file).passes)
