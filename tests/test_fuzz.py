"""The CLI contract for every class of odd input: a correct result, or exit 2 with one line.

Each row of ``CASES`` is a row of the README's fuzz table (input class -> behaviour); the test
checks the behaviour through ``dedup run`` (exit code, stderr, and for results that every input
row comes back once, in order, with two identical records in one cluster) and that the README
lists the row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from dedup.cli import main
from dedup.datasets import load_febrl
from dedup.lock import output_lock

ROOT = Path(__file__).resolve().parents[1]
TINY = "training: {dim: 8, buckets: 512, epochs: 1, steps_per_epoch: 5, batch_size: 16, random_pairs: 500}\n"
ROWS = 24


def base() -> pl.DataFrame:
    """24 people, the second an exact copy of the first under another id."""
    people = load_febrl(1).head(ROWS).select(pl.int_range(ROWS).alias("id"), "given_name", "surname", "date_of_birth")
    return people.with_columns(
        [pl.when(pl.col("id") == 1).then(pl.col(c).first()).otherwise(pl.col(c)).alias(c) for c in people.columns[1:]]
    )


def config(fields: dict[str, str] | None = None, extra: str = "") -> str:
    fields = {"given_name": "name", "surname": "name", "date_of_birth": "date", **(fields or {})}
    listed = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return f"id_column: id\nfields: {{{listed}}}\nblocking: [[date_of_birth], [surname]]\n{TINY}{extra}"


def with_column(name: str, values: list, dtype: pl.DataType | None = None) -> pl.DataFrame:
    column = pl.Series(name, values, dtype=dtype)
    return base().with_columns(column)


def repeat(values: list) -> list:
    """``ROWS`` values cycling ``values``, the second row equal to the first (the duplicate)."""
    out = [values[i % len(values)] for i in range(ROWS)]
    out[1] = out[0]
    return out


@dataclass
class Case:
    name: str  # the input class, as the README's table names it
    behaviour: str  # what dedup does: "result" or the error line's start, as the README says it
    table: Callable[[], pl.DataFrame] | None = base
    config_text: str = ""
    write: str = "parquet"  # parquet, csv, parts, raw (bytes below), none
    raw: bytes = b""
    error: str = ""  # a substring of the one line on stderr (empty: a result is expected)
    warning: str = ""  # for a result: a substring of what stderr says (empty: stderr stays empty)


SCALARS = {
    "u8": (repeat([1, 2, 3]), pl.UInt8, "code"),
    "i64": (repeat([10**12, -5, 0]), pl.Int64, "code"),
    "f64": (repeat([1.5, float("nan"), None, 2.25]), pl.Float64, "number"),
    "flag": (repeat([True, False, None]), pl.Boolean, "category"),
    "day": (repeat([dt.date(2020, 1, 2), dt.date(1999, 12, 31)]), pl.Date, "date"),
    "stamp": (repeat([dt.datetime(2020, 1, 2, 3, 4, 5)]), pl.Datetime("us", "Europe/Paris"), "date"),
    "clock": (repeat([dt.time(3, 4, 5), dt.time(23, 59)]), pl.Time, "code"),
    "wait": (repeat([dt.timedelta(days=1), dt.timedelta(seconds=5)]), pl.Duration("ms"), "code"),
    "price": (repeat([decimal.Decimal("1.50"), decimal.Decimal("20.00")]), pl.Decimal(10, 2), "number"),
    "colour": (repeat(["red", "blue", None]), pl.Categorical, "category"),
}


def every_scalar_type() -> pl.DataFrame:
    return base().with_columns(pl.Series(name, values, dtype=dtype) for name, (values, dtype, _) in SCALARS.items())


ODD_NAMES = {"a.b": "name", "with space": "name", "Zoë 名": "name", "$x": "name", "cluster_id": "name"}


def odd_names() -> pl.DataFrame:
    frame = base()
    return frame.with_columns(pl.col("given_name").alias(n) for n in ODD_NAMES)


CASES = [
    Case("input file missing", "error: input file not found", None, write="none", error="input file not found"),
    Case(
        "not a Parquet file",
        "error: not a readable Parquet file",
        None,
        write="raw",
        raw=b"id,x\n1,2\n\x00\xff",
        error="not a readable Parquet file",
    ),
    Case(
        "truncated Parquet file",
        "error: not a readable Parquet file",
        write="truncated",
        error="not a readable Parquet file",
    ),
    Case("table with no rows", "error: the table has no rows", lambda: base().head(0), error="the table has no rows"),
    Case(
        "column named in the config missing",
        "error: column(s) ... missing (the file has: ...)",
        lambda: base().drop("surname"),
        error="column(s) 'surname' named in the config are missing",
    ),
    Case(
        "null id",
        "error: id column has N null value(s), first at row(s) ...",
        lambda: base().with_columns(pl.when(pl.col("id") == 3).then(None).otherwise(pl.col("id")).alias("id")),
        error="'id' has 1 null value(s), first at row(s) 3",
    ),
    Case(
        "NaN id",
        "error: id column has N null value(s) ...",
        lambda: base().with_columns(pl.when(pl.col("id") == 4).then(float("nan")).otherwise(pl.col("id")).alias("id")),
        error="'id' has 1 null value(s), first at row(s) 4",
    ),
    Case(
        "duplicated ids",
        "error: id column has N duplicated value(s), e.g. ...",
        lambda: base().with_columns(pl.col("id") // 2),
        error="duplicated value(s), e.g. 0",
    ),
    Case(
        "list or struct id",
        "error: id column has type ..., expected text or numbers",
        lambda: base().with_columns(pl.concat_list("id")),
        error="has type List(Int64), expected text or numbers",
    ),
    Case(
        "list or binary field",
        "error: column has type ..., expected text or numbers",
        lambda: with_column("extra", [b"x"] * ROWS, pl.Binary),
        config(fields={"extra": "code"}),
        error="column 'extra' has type Binary",
    ),
    Case(
        "field null, NaN or blank in every row",
        "result (the field is left out, with a warning)",
        lambda: with_column("extra", [" "] * ROWS),
        config(fields={"extra": "name"}),
        warning="fields.extra: null in every row, so it tells nothing: left out of the comparison",
    ),
    Case(
        "every field null in every row",
        "error: every field is null in every row",
        lambda: base().with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("given_name", "surname", "date_of_birth")
        ),
        error="every field is null in every row, so there is nothing to compare",
    ),
    Case(
        "every scalar Arrow type as fields (ints, NaN floats, bool, date, tz datetime, time, duration, "
        "decimal, categorical)",
        "result",
        every_scalar_type,
        config(fields={name: kind for name, (_, _, kind) in SCALARS.items()}),
    ),
    Case(
        "odd column names (dots, spaces, non-ASCII, `$`, an output column's name)",
        "result (an input column named like an output column is kept as `<name>_input`)",
        odd_names,
        config(fields=ODD_NAMES),
    ),
    Case(
        "string ids with leading zeros, CSV input",
        "result (ids keep their zeros)",
        lambda: base().with_columns(pl.format("00{}", "id").alias("id")),
        write="csv",
    ),
    Case("folder of Parquet parts", "result", write="parts"),
    Case(
        "one record",
        "result (one cluster)",
        lambda: base().drop_nulls().head(1).with_columns(pl.lit("x").alias("extra")),
        config(fields={"extra": "name"}),
    ),
    Case(
        "10,000-character and non-Latin values",
        "result",
        lambda: with_column("extra", repeat(["x" * 10_000, "Ελληνικά", "עברית", "🙂🙂"])),
        config(fields={"extra": "text"}),
    ),
    Case(
        "unknown field kind",
        "error: fields.<name> (line N): unknown kind ...",
        config_text=config({"surname": "nam"}),
        error="fields.surname (line 2): unknown kind 'nam'",
    ),
    Case(
        "duplicate YAML key",
        "error: not valid YAML (line N, column M): key ... is given twice",
        config_text=config() + "threshold: 0.5\nthreshold: 0.6\n",
        error="not valid YAML (line 6, column 1): key 'threshold' is given twice",
    ),
    Case(
        "non-finite number in the config",
        "error: <key> (line N): Input should be a finite number",
        config_text=config() + "threshold: .inf\n",
        error="threshold (line 5): Input should be a finite number",
    ),
    Case(
        "negative key slice",
        "result (Python slice semantics)",
        config_text=config().replace("[[date_of_birth], [surname]]", '[[date_of_birth], ["surname[:-1]"]]'),
    ),
    Case(
        "output path is a file",
        "error: output path exists and is not a directory",
        write="parquet",
        error="output path exists and is not a directory",
    ),
    Case(
        "output held by another run",
        "error: another dedup run (pid N) is writing to this directory",
        error="is writing to this directory",
    ),
]
IDS = [c.name.split(" (")[0] for c in CASES]


def _inputs(case: Case, tmp: Path) -> tuple[Path, Path, Path]:
    source = tmp / "in.parquet"
    frame = case.table() if case.table else None
    if case.write == "parquet" and frame is not None:
        frame.write_parquet(source)
    elif case.write == "truncated":
        frame.write_parquet(source)
        source.write_bytes(source.read_bytes()[:-40])
    elif case.write == "csv":
        source = tmp / "in.csv"
        frame.write_csv(source)
    elif case.write == "parts":
        source = tmp / "parts"
        source.mkdir()
        frame.head(10).write_parquet(source / "a.parquet")
        frame.slice(10).write_parquet(source / "b.parquet")
    elif case.write == "raw":
        source.write_bytes(case.raw)
    config_path = tmp / "config.yaml"
    config_path.write_text(case.config_text or config())
    out = tmp / "out"
    if case.name == "output path is a file":
        out.write_text("not a directory")
    return source, config_path, out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_input_class_is_a_result_or_one_line(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, config_path, out = _inputs(case, tmp_path)
    argv = ["run", str(source), "--config", str(config_path), "--output", str(out)]
    if case.name.startswith("output held"):
        out.mkdir()
        with output_lock(out):
            code = main(argv)
    else:
        code = main(argv)
    captured = capsys.readouterr()
    if case.error:
        lines = captured.err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("dedup: error: "), captured.err
        assert case.error in lines[0]
        return
    assert code == 0 and (case.warning in captured.err if case.warning else captured.err == ""), captured.err
    clusters = pl.read_parquet(out / "clusters.parquet")
    frame = case.table()
    expected_ids = frame["id"].cast(pl.String).to_list()
    assert clusters["id"].cast(pl.String).to_list() == expected_ids  # every row once, in order
    if frame.height > 1:
        assert clusters["cluster_id"][0] == clusters["cluster_id"][1]  # the exact copy is found
    if case.name.startswith("odd column names"):
        assert "cluster_id_input" in clusters.columns
        assert "note: the input's column 'cluster_id' is written as 'cluster_id_input'" in captured.out
    shutil.rmtree(out, ignore_errors=True)


def test_the_readme_lists_every_case() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [c.name for c in CASES if f"| {c.name} | {c.behaviour} |" not in readme]
    assert not missing, "README fuzz table lacks: " + "; ".join(missing)
