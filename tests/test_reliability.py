"""Odd but valid data runs end to end; a failed run leaves the last good output untouched."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dedup import parts
from dedup.config import DedupConfig
from dedup.errors import InputError
from dedup.pipeline import run

BASE = pl.read_parquet(Path(__file__).resolve().parents[1] / "data" / "febrl3.parquet").head(60)


def _run(tmp_path: Path, frame: pl.DataFrame, config: DedupConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    run(source, config, tmp_path / "out")
    return pl.read_parquet(tmp_path / "out" / "clusters.parquet"), pl.read_parquet(tmp_path / "out" / "pairs.parquet")


def test_single_record(tmp_path: Path, tiny_config: DedupConfig) -> None:
    clusters, pairs = _run(tmp_path, BASE.head(1), tiny_config)
    assert clusters["cluster_size"].to_list() == [1] and pairs.height == 0


def test_identical_records_are_one_cluster(tmp_path: Path, tiny_config: DedupConfig) -> None:
    frame = pl.concat([BASE.head(1)] * 12).with_columns(pl.Series("rec_id", [f"r{i:02d}" for i in range(12)]))
    clusters, pairs = _run(tmp_path, frame, tiny_config)
    assert clusters["cluster_id"].unique().to_list() == ["r00"] and pairs["is_match"].all()


def test_unicode_long_strings_and_single_valued_fields(tmp_path: Path, tiny_config: DedupConfig) -> None:
    odd = ["Zoë Ångström", "李小龍", "Mañana 😀", "ø" * 3] * 15
    long = ["x" * 5000 + str(i) for i in range(60)]
    frame = BASE.with_columns(pl.Series("given_name", odd), pl.Series("address_1", long), pl.lit("nsw").alias("state"))
    clusters, pairs = _run(tmp_path, frame, tiny_config)
    assert clusters["given_name"].to_list() == odd  # kept intact in the output
    assert clusters["address_1"].to_list() == long  # truncated only for the encoder
    assert pairs["sim_state"].drop_nulls().min() == pytest.approx(1.0, abs=1e-5)


def test_whitespace_only_values_are_null(tmp_path: Path, tiny_config: DedupConfig) -> None:
    blank = pl.int_range(pl.len()) % 2 == 0
    frame = BASE.with_columns(pl.when(blank).then(pl.lit("   ")).otherwise(pl.col("surname")).alias("surname"))
    clusters, pairs = _run(tmp_path, frame, tiny_config)
    assert clusters.filter(blank)["surname"].null_count() == BASE.height // 2
    ids = set(frame.filter(blank)["rec_id"].to_list())
    involved = pairs.filter(pl.col("rec_id_l").is_in(ids) | pl.col("rec_id_r").is_in(ids))
    assert involved.height > 0 and involved["sim_surname"].null_count() == involved.height
    (tmp_path / "all").mkdir()
    with pytest.raises(InputError, match="field 'suburb' is null in every row"):
        _run(tmp_path / "all", BASE.with_columns(pl.lit(" \t").alias("suburb")), tiny_config)


def test_failed_run_leaves_previous_output_untouched(
    tmp_path: Path, tiny_config: DedupConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.parquet"
    BASE.write_parquet(source)
    out = tmp_path / "out"
    run(source, tiny_config, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed while clustering")

    monkeypatch.setattr(parts, "cluster_part", crash)
    changed = tiny_config.model_copy(update={"seed": 7})  # a different model would be trained
    with pytest.raises(RuntimeError, match="killed"):
        run(source, changed, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".stages" not in p.parts}
    assert after == before  # clusters, pairs, report and model all from the good run

    monkeypatch.undo()
    run(source, tiny_config, out)  # the next run clears the leftovers and succeeds
    assert not (out / ".stages").exists()
    assert (out / "clusters.parquet").read_bytes() == before[Path("clusters.parquet")]
