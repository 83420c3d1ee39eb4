from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dedup.config import FieldKind, config_to_yaml, parse_config
from dedup.errors import InputError, OutputError
from dedup.io import (
    count_rows,
    prepare_output_dir,
    read_fields,
    read_ids,
    read_normalised,
    read_records,
    read_rows,
    replace_directory,
    run_config,
    write_parquet,
)
from dedup.normalise import normalise_fields

CONFIG = parse_config("""
id_column: id
fields: {name: name, age: code}
blocking: [[name]]
""")


def _write(tmp_path: Path, frame: pl.DataFrame) -> Path:
    path = tmp_path / "in.parquet"
    frame.write_parquet(path)
    return path


def test_reads_and_casts_numbers_to_text(tmp_path: Path) -> None:
    path = _write(tmp_path, pl.DataFrame({"id": [1, 2], "name": ["a", "b"], "age": [30, None], "x": [1.5, 2.5]}))
    records = read_records(path, CONFIG)
    assert records.columns == ["id", "name", "age", "x"]
    assert records["age"].to_list() == ["30", None]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"id": [1], "name": ["a"]}), "column(s) 'age' named in the config are missing"),
        (pl.DataFrame({"key": [1], "name": ["a"], "age": [1]}), "column(s) 'id' named in the config are missing"),
        (pl.DataFrame({"id": [1], "name": [b"\x00"], "age": [1]}), "column 'name' has type Binary"),
        (pl.DataFrame({"id": [1, None], "name": ["a", "b"], "age": [1, 2]}), "1 null value(s), first at row(s) 1"),
        (pl.DataFrame({"id": [1, 1, 2], "name": ["a", "b", "c"], "age": [1, 2, 3]}), "duplicated value(s), e.g. 1"),
        (pl.DataFrame({"id": [1], "name": [[1]], "age": [1]}), "column 'name' has type List"),
        (pl.DataFrame({"id": [], "name": [], "age": []}), "the table has no rows"),
    ],
)
def test_bad_tables_name_the_problem(tmp_path: Path, frame: pl.DataFrame, message: str) -> None:
    path = _write(tmp_path, frame)
    with pytest.raises(InputError) as info:
        read_records(path, CONFIG)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_and_non_parquet_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input file not found"):
        read_records(tmp_path / "nope.parquet", CONFIG)
    bad = tmp_path / "bad.parquet"
    bad.write_text("id,name\n1,a\n")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_records(bad, CONFIG)


def test_truncated_parquet(tmp_path: Path) -> None:
    good = _write(tmp_path, pl.DataFrame({"id": range(1000), "name": ["a"] * 1000, "age": [1] * 1000}))
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match=f"{cut}: not a readable Parquet file"):
        read_records(cut, CONFIG)


def test_atomic_writes_leave_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), target)

    class Boom(pl.DataFrame):
        def write_parquet(self, *args, **kwargs):  # type: ignore[override]
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_parquet(Boom({"a": [2]}), target)
    assert pl.read_parquet(target)["a"].to_list() == [1]  # previous good file untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no temp left behind


def test_replace_directory_keeps_old_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model"
    replace_directory(lambda d: (d / "w").write_text("v1"), target)

    def fail(d: Path) -> None:
        (d / "w").write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        replace_directory(fail, target)
    assert (target / "w").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_output_dir_that_is_a_file_or_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        prepare_output_dir(tmp_path / "out")
    with pytest.raises(OutputError, match=f"cannot create output directory {tmp_path / 'out' / 'sub'}"):
        prepare_output_dir(tmp_path / "out" / "sub")  # a file in the way: unwritable even for root


def test_csv_and_a_folder_of_parquet_parts_read_as_the_same_table(tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": ["007", "008", "009"], "name": ["a", "b", None], "age": ["30", "31", "32"]})
    frame.write_csv(tmp_path / "in.csv")
    parts = tmp_path / "parts"
    parts.mkdir()
    frame.slice(0, 2).write_parquet(parts / "part-0.parquet")
    frame.slice(2, 1).write_parquet(parts / "part-1.parquet")
    from_csv = read_records(tmp_path / "in.csv", CONFIG)
    assert from_csv["id"].to_list() == ["007", "008", "009"]  # ids read as text keep their zeros
    assert from_csv.equals(read_records(parts, CONFIG))
    assert count_rows(tmp_path / "in.csv") == count_rows(parts) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="input folder holds no .parquet files"):
        read_records(tmp_path / "empty", CONFIG)
    (tmp_path / "bad.parquet").write_text("id,name\n1,a\n")
    with pytest.raises(InputError, match=r"not a readable Parquet file .*\.csv/\.tsv"):
        read_records(tmp_path / "bad.parquet", CONFIG)


def test_nan_and_blank_values_are_missing_and_odd_types_are_named(tmp_path: Path) -> None:
    import datetime

    frame = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["x", "  ", ""],
            "age": [1.5, float("nan"), None],
            "wait": [datetime.timedelta(days=1), datetime.timedelta(hours=2), None],
        }
    )
    config = parse_config("id_column: id\nfields: {name: name, age: code, wait: code}\n")
    records = read_records(_write(tmp_path, frame), config)
    assert records["name"].to_list() == ["x", None, None]  # blanks never agree with each other
    assert records["age"].to_list() == ["1.5", None, None]  # NaN is not the text "NaN"
    assert records["wait"].to_list() == ["P1D", "PT2H", None]
    # NaN in every row is a field null in every row: read, then left out of the comparison
    assert read_records(_write(tmp_path, frame.with_columns(age=pl.lit(float("nan")))), config)["age"].null_count() == 3
    with pytest.raises(InputError, match="id column 'id' has 1 null value"):
        read_records(_write(tmp_path, frame.with_columns(id=pl.Series([1.0, float("nan"), 3.0]))), config)
    with pytest.raises(InputError, match=r"id column 'id' has type Struct"):
        read_records(_write(tmp_path, frame.with_columns(id=pl.struct(a=pl.col("id")))), config)


@pytest.mark.parametrize("kind", ["parquet", "csv", "parts"])
def test_a_piece_reads_its_rows_and_the_config_columns_only(tmp_path: Path, kind: str) -> None:
    frame = pl.DataFrame(
        {
            "id": [f"{i:03d}" for i in range(10)],
            "name": ["ann", "bob", None, None, None, "cy", "dee", "ed", "flo", "gus"],
            "age": [str(20 + i) for i in range(10)],
            "notes": ["a long payload nobody compares"] * 10,
        }
    )
    if kind == "parquet":
        path = _write(tmp_path, frame)
    elif kind == "csv":
        path = tmp_path / "in.csv"
        frame.write_csv(path)
    else:
        path = tmp_path / "parts"
        path.mkdir()
        frame.slice(0, 4).write_parquet(path / "part-0.parquet")
        frame.slice(4, 6).write_parquet(path / "part-1.parquet")
    whole = read_records(path, CONFIG)
    rows = read_rows(path, CONFIG, 2, 7)  # across the parts' boundary
    assert rows.columns == ["id", "name", "age"]  # not "notes"
    assert rows.equals(whole.select(rows.columns).slice(2, 5))
    assert read_rows(path, CONFIG, 2, 5)["name"].null_count() == 3  # a field null in the whole slice is fine
    assert read_normalised(path, CONFIG, 5, 10).equals(normalise_fields(whole, CONFIG).slice(5, 5))
    assert read_ids(path, CONFIG).equals(whole["id"])
    records, normalised = read_fields(path, CONFIG)
    assert records.equals(whole.select(records.columns)) and normalised.equals(normalise_fields(whole, CONFIG))


def test_float_ids_read_alone_lose_their_nans_like_the_whole_table(tmp_path: Path) -> None:
    path = _write(tmp_path, pl.DataFrame({"id": [1.0, 2.0, 3.0], "name": ["a", "b", "c"], "age": ["1", "2", "3"]}))
    assert read_ids(path, CONFIG).equals(read_records(path, CONFIG)["id"])


def test_the_read_stage_reads_and_normalises_once_with_the_kinds_as_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A title declared ``name`` is read as ``text`` and an empty field set aside: the file is
    read once and normalised once, as read, and the stages after it (``load_input`` with the
    config as read) and a second call (the flow's check, then its read stage) read nothing."""
    import dedup.io as io

    path = tmp_path / "in.parquet"
    pl.DataFrame(
        {
            "id": ["1", "2", "3"],
            "title": ["Sony Bravia 46in LCD TV", "Canon PowerShot SD1100 IS 8MP", "Bose QC3 Headphones Black"],
            "empty": [None, "  ", None],
        }
    ).write_parquet(path)
    config = parse_config("id_column: id\nfields:\n  title: name\n  empty: code\n")
    reads: list[Path] = []
    kinds: list[dict] = []
    read_table, normalise = io.read_table, io.normalise_fields
    monkeypatch.setattr(io, "read_table", lambda p: reads.append(p) or read_table(p))
    monkeypatch.setattr(io, "normalise_fields", lambda r, c: kinds.append(dict(c.fields)) or normalise(r, c))

    as_read, notes = io.load_input_as_read(path, config)
    records, normalised = io.load_input(path, as_read)
    assert io.load_input_as_read(path, config) == (as_read, notes)

    assert as_read.fields == {"title": FieldKind.text}
    assert [n.split(":")[0] for n in notes] == ["fields.title", "fields.empty"]
    assert len(reads) == 1 and kinds == [{"title": FieldKind.text}]
    assert normalised.columns == ["title"] and records.height == 3


def test_a_runs_config_is_its_models_and_a_missing_one_is_named(tmp_path: Path) -> None:
    """``dedup evaluate`` reads the id column from the run's config, not from a column's name."""
    config = parse_config("id_column: rec\nfields: {name: name, rec_l: code}")  # a field named like a pair column
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.yaml").write_text(config_to_yaml(config))
    with pytest.raises(InputError, match="no report.json"):
        run_config(out)
    (out / "report.json").write_text('{"model": "model"}')
    read = run_config(out)
    assert read.id_column == "rec" and list(read.fields) == ["name", "rec_l"]
    (out / "report.json").write_text('{"model": "elsewhere"}')
    with pytest.raises(InputError, match="elsewhere is not there"):
        run_config(out)
