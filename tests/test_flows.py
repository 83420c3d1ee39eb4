"""The Prefect flow, run for real in local (ephemeral) mode: same result as the CLI."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from dedup import parts, registry
from dedup.pipeline import run
from flows.deduplicate import deduplicate
from flows.train_encoder import train_encoder


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


def _done_markers(output: Path) -> dict[str, str]:
    return {p.parent.name.split("-")[0]: p.read_text() for p in (output / ".stages").glob("*/DONE")}


def test_rerun_reuses_training_and_resumes_after_failure(
    febrl1_file: Path, tiny_config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("worker lost while clustering")

    with monkeypatch.context() as patch:
        patch.setattr(parts, "cluster_part", crash)
        failed = deduplicate(str(febrl1_file), str(tiny_config_file), str(out), return_state=True)
    assert failed.is_failed() and not (out / "clusters.parquet").exists()
    finished = _done_markers(out)
    assert set(finished) == {"block", "train", "score"}

    resumed = deduplicate(str(febrl1_file), str(tiny_config_file), str(out))
    markers = _done_markers(out)
    assert {k: markers[k] for k in finished} == finished  # block, train, score were not redone
    assert "cluster" in markers and resumed["counts"]["records"] == 1000
    assert (out / "model" / "meta.json").exists()

    again = deduplicate(str(febrl1_file), str(tiny_config_file), str(out))
    assert _done_markers(out) == markers and again["counts"] == resumed["counts"]


def test_train_encoder_versions_and_deduplicate_uses_latest(
    febrl1_file: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    first = Path(train_encoder(str(febrl1_file), str(tiny_config_file), str(models), "people"))
    assert first.parent == models / "people" and (first / "encoder.pt").is_file()
    assert registry.latest(models, "people") == first
    # unchanged input, config and code: the finished training is reused, no new version
    assert Path(train_encoder(str(febrl1_file), str(tiny_config_file), str(models), "people")) == first

    report = deduplicate(str(febrl1_file), str(tiny_config_file), str(tmp_path / "out"), str(models), "people")
    assert report["model"] == str(first) and "train" not in report["timings_seconds"]
    assert not (tmp_path / "out" / "model").exists()  # the registered model is used in place

    retrained = deduplicate(
        str(febrl1_file), str(tiny_config_file), str(tmp_path / "out2"), str(models), "people", retrain=True
    )
    assert "train" in retrained["timings_seconds"]


def test_flow_run_has_report_and_cluster_artifacts(febrl1_file: Path, tiny_config_file: Path, tmp_path: Path) -> None:
    state = deduplicate(str(febrl1_file), str(tiny_config_file), str(tmp_path / "out"), return_state=True)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert "1,000" in by_key["dedup-report"].data and "Blocking passes" in by_key["dedup-report"].data
    assert by_key["dedup-charts"].data.count("data:image/png;base64,") == 3
    table = by_key["dedup-largest-clusters"].data
    assert "given_name" in str(table) and "size" in str(table)


def test_command_line_flows_check_inputs_before_prefect_starts(tiny_config_file: Path, tmp_path: Path) -> None:
    """A bad input: one line on stderr, exit 2, in seconds (no temporary Prefect server)."""
    import subprocess
    import sys

    bad = tmp_path / "people.csv"
    bad.write_text("rec_id,given_name\n1,anna\n")
    for module in ("flows.deduplicate", "flows.train_encoder"):
        args = [sys.executable, "-m", module, "--input", str(bad), "--config", str(tiny_config_file)]
        args += ["--output", str(tmp_path / "out")] if module == "flows.deduplicate" else []
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "named in the config are missing" in lines[0] and str(bad) in lines[0]
        assert not (tmp_path / "out").exists()
