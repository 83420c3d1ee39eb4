from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from dedup.cli import main


def test_run_then_evaluate(febrl1_file: Path, tiny_config_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", str(febrl1_file), "--config", str(tiny_config_file), "--output", str(out)]) == 0
    assert "1000 records" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--truth", str(febrl1_file), "--label-column", "cluster"]) == 0
    printed = capsys.readouterr().out
    assert "cluster_pairs" in printed and "pair completeness" in printed


def test_errors_are_one_line_on_stderr(tiny_config_file: Path, tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "missing.parquet")
    code = main(["run", missing, "--config", str(tiny_config_file), "--output", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip() == f"dedup: error: input file not found: {tmp_path / 'missing.parquet'}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("id_column: x\nfields: {a: nam}\nblocking: [[a]]\n")
    assert main(["run", "x.parquet", "--config", str(bad), "--output", str(tmp_path)]) == 2
    assert "fields.a (line 2): unknown kind 'nam'" in capsys.readouterr().err
    with pytest.raises(Exception, match="not found"):
        main(["--debug", "run", "nope.parquet", "--config", str(tiny_config_file), "--output", str(tmp_path)])


def test_blocking_analysis_command(febrl1_file: Path, tiny_config_file: Path, capsys) -> None:
    args = ["blocking", str(febrl1_file), "--config", str(tiny_config_file), "--label-column", "cluster"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "block(given_name, surname)" in printed and "PC so far" in printed
    assert "pair completeness" in printed.splitlines()[-1]


def test_explain_a_candidate_pair_and_any_other_pair(
    febrl1_file: Path, tiny_config_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(febrl1_file), "--config", str(tiny_config_file), "--output", str(out)]) == 0
    pairs = pl.read_parquet(out / "pairs.parquet").sort("match_probability", descending=True)
    best = pairs.row(0, named=True)
    capsys.readouterr()
    assert main(["explain", str(out), "--id", best["rec_id_l"], "--id", best["rec_id_r"]]) == 0
    printed = capsys.readouterr().out
    assert "soc_sec_id" in printed and "a candidate pair" in printed and "same cluster" in printed
    shown = float(re.search(r"match weight ([+-][\d.]+) bits", printed).group(1))
    assert shown == pytest.approx(best["match_weight"], abs=0.01)  # the same evidence as pairs.parquet
    ids = pl.read_parquet(out / "clusters.parquet")["rec_id"]
    assert main(["explain", str(out), "--id", ids[0], "--id", ids[500]]) == 0
    assert "not proposed by blocking" in capsys.readouterr().out
    assert main(["explain", str(out), "--id", "nobody", "--id", ids[0]]) == 2
    assert "no record with rec_id = 'nobody'" in capsys.readouterr().err


def test_synth_writes_seeded_records(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert main(["synth", "--n", "500", "--output", str(first), "--seed", "4"]) == 0
    assert main(["synth", "--n", "500", "--output", str(second), "--seed", "4"]) == 0
    assert "wrote 500 records" in capsys.readouterr().out
    records = pl.read_parquet(first)
    assert records.height == 500 and "cluster" in records.columns
    assert records.equals(pl.read_parquet(second))
    assert main(["synth", "--n", "0", "--output", str(first)]) == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


def test_the_command_freezes_what_its_imports_made_and_in_process_calls_do_not(tmp_path: Path) -> None:
    """``dedup`` (``console``) imports a command's code with the collector off and freezes the
    result; ``main`` called in a process that goes on (tests, notebooks) leaves it alone."""
    import gc
    import subprocess
    import sys

    script = (
        "import gc, sys; from dedup.cli import console; "
        f"sys.argv = ['dedup', 'synth', '--n', '50', '--output', {str(tmp_path / 'a.parquet')!r}]; "
        "code = console(); print(gc.get_freeze_count(), gc.isenabled(), code)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    frozen, enabled, code = done.stdout.splitlines()[-1].split()
    assert code == "0" and enabled == "True", done.stderr
    assert int(frozen) > 10_000  # polars and the synth module's objects, at least
    before = gc.get_freeze_count()
    assert main(["synth", "--n", "50", "--output", str(tmp_path / "b.parquet")]) == 0
    assert gc.get_freeze_count() == before and gc.isenabled()


def test_every_command_names_the_module_the_dedup_command_imports_first() -> None:
    """``console`` imports ``COMMAND_MODULES[command]`` before running it: a command missing
    there would fail only in the real ``dedup`` process, never in ``main`` called here."""
    import importlib

    from dedup.cli import COMMAND_MODULES, _parser

    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    assert set(commands) == set(COMMAND_MODULES)
    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(module)
