"""The Prefect flow, run for real in local (ephemeral) mode: same result as the CLI."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from prefect.testing.utilities import prefect_test_harness

from dedup.pipeline import run
from flows.deduplicate import deduplicate


@pytest.fixture(scope="module", autouse=True)
def prefect_backend():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_run_matches_the_library(febrl1_file: Path, tiny_config_file: Path, tmp_path: Path) -> None:
    state = deduplicate(str(febrl1_file), str(tiny_config_file), str(tmp_path / "flow"), return_state=True)
    assert state.is_completed()
    report = state.result()
    assert report["counts"]["records"] == 1000
    run(febrl1_file, tiny_config_file, tmp_path / "cli")
    for name in ("clusters.parquet", "pairs.parquet"):
        assert pl.read_parquet(tmp_path / "flow" / name).equals(pl.read_parquet(tmp_path / "cli" / name))


def test_flow_fails_with_the_library_message(tiny_config_file: Path, tmp_path: Path) -> None:
    state = deduplicate(str(tmp_path / "nope.parquet"), str(tiny_config_file), str(tmp_path / "o"), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="input file not found"):
        state.result()
