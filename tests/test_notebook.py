"""The inspection notebook, executed headlessly (nbclient) against a fresh run's output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dedup.pipeline import run
from tests.conftest import ROOT


def test_notebook_runs_on_fresh_output(
    febrl1_file: Path, tiny_config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    run(febrl1_file, tiny_config_file, out)
    monkeypatch.setenv("DEDUP_OUTPUT", str(out))
    notebook = nbformat.read(ROOT / "notebooks" / "inspect_output.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "'records': 1000" in text  # the report
    assert "match weight" in text and "pairs.parquet says" in text  # one pair explained
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # match probability, cluster sizes, field similarity (no labels)


def test_committed_notebook_is_what_the_builder_writes() -> None:
    spec = importlib.util.spec_from_file_location("builder", ROOT / "notebooks" / "build_inspect_output.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    committed = nbformat.read(ROOT / "notebooks" / "inspect_output.ipynb", as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in builder.build().cells]
