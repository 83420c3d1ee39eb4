"""Read stage and output writing: Parquet in, validated; Parquet/JSON out, atomically.

Reading checks the table against the config up front, so a bad input fails in one line naming
the file and column instead of deep inside blocking or training. Writing always goes to a
temporary name in the target directory and is renamed into place, so a crash never leaves a
half-written file where a notebook or the next run would pick it up.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa

from dedup.blocking import CandidatePairs, pairs_from_frame, pairs_to_frame
from dedup.config import DedupConfig, load_config
from dedup.errors import DedupError, InputError, OutputError
from dedup.normalise import fields_as_read, normalise_fields
from dedup.publish import run_dir

_TEXT_LIKE = (pl.String, pl.Categorical, pl.Enum)
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_records(path: str | Path, config: DedupConfig) -> pl.DataFrame:
    """Read the input (a Parquet file, a folder of Parquet parts, or a CSV file) and check it
    can be deduplicated with ``config``.

    Returns the full table (every column, input row order) with the field columns cast to
    strings. Raises ``InputError`` naming the file, column or rows when the contract is broken.
    """
    path = check_input_file(path)
    return validate_records(read_table(path), config, origin=str(path))


def input_files(path: Path) -> list[Path]:
    """The files an input path stands for: itself, or a folder's ``*.parquet`` parts in name order."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.parquet") if p.is_file())
    return [path]


def is_csv(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv")


def read_table(path: Path) -> pl.DataFrame:
    """The input as one table: CSV columns read as text (ids keep their leading zeros)."""
    try:
        if is_csv(path):
            return pl.read_csv(path, infer_schema=False, separator="\t" if path.suffix.lower() == ".tsv" else ",")
        files = input_files(path)
        return (
            pl.concat([pl.read_parquet(f) for f in files], how="vertical")
            if len(files) > 1
            else pl.read_parquet(files[0])
        )
    except Exception as exc:  # polars raises several types for bad files
        kind = "CSV" if is_csv(path) else "Parquet"
        hint = "" if is_csv(path) or path.is_dir() else " (inputs are Parquet, a folder of Parquet parts, or .csv/.tsv)"
        raise InputError(f"{path}: not a readable {kind} file ({type(exc).__name__}: {exc}){hint}") from None


def scan_table(path: Path) -> pl.LazyFrame:
    """The input as a lazy scan (``read_table``'s formats and options): a piece reads its rows
    and columns only."""
    if is_csv(path):
        return pl.scan_csv(path, infer_schema=False, separator="\t" if path.suffix.lower() == ".tsv" else ",")
    return pl.scan_parquet(input_files(path))


def config_columns(config: DedupConfig) -> list[str]:
    """The input columns a job reads: the id, the fields, blocking-only columns and the labels."""
    wanted = [config.id_column, *config.fields, *sorted(config.blocking_columns())]
    return list(dict.fromkeys(wanted + ([config.label_column] if config.label_column else [])))


def read_rows(input_path: str | Path, config: DedupConfig, start: int = 0, stop: int | None = None) -> pl.DataFrame:
    """Rows ``[start, stop)`` of the input, the config's columns only, checked and cast like
    ``read_records`` (the run checked the whole file first; a piece then needs only its slice).
    Served from ``load_input``'s cache when this process holds the whole input already."""
    cached = _cached_input(input_path, config)
    if cached is not None:
        return _rows(cached[0].select(config_columns(config)), start, stop)
    path = check_input_file(input_path)
    scan = _rows(scan_table(path).select(config_columns(config)), start, stop)
    where = f"{path} (rows {start:,} to {'the end' if stop is None else f'{stop:,}'})"
    return validate_records(scan.collect(), config, origin=where, whole=False)


def _rows(frame: FrameT, start: int, stop: int | None) -> FrameT:
    """Rows ``[start, stop)`` of an eager or lazy frame (``stop`` None: to the end)."""
    return frame.slice(start, None if stop is None else stop - start)


def read_normalised(
    input_path: str | Path, config: DedupConfig, start: int = 0, stop: int | None = None
) -> pl.DataFrame:
    """The normalised fields of rows ``[start, stop)`` (``read_rows``, then ``normalise_fields``)."""
    cached = _cached_input(input_path, config)
    if cached is not None:
        return _rows(cached[1], start, stop)
    return normalise_fields(read_rows(input_path, config, start, stop), config)


def read_fields(input_path: str | Path, config: DedupConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``load_input`` for pieces that need every row but only the config's columns (blocking):
    the input's other columns (descriptions, payloads) are never read."""
    cached = _cached_input(input_path, config)
    if cached is not None:
        return cached[0].select(config_columns(config)), cached[1]
    records = read_rows(input_path, config)
    return records, normalise_fields(records, config)


def read_ids(input_path: str | Path, config: DedupConfig) -> pl.Series:
    """The id column of every input row (as ``read_records`` gives it): what a score piece needs
    to name its pairs, without the rest of the table."""
    cached = _cached_input(input_path, config)
    if cached is not None:
        return cached[0][config.id_column]
    ids = scan_table(check_input_file(input_path)).select(config.id_column).collect().to_series()
    return ids.fill_nan(None) if ids.dtype.is_float() else ids


def check_input_file(path: str | Path) -> Path:
    """The input path, if it is an existing file or a folder holding Parquet parts; else the
    error ``read_records`` would give."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file not found: {path}")
    if path.is_dir() and not input_files(path):
        raise InputError(f"input folder holds no .parquet files: {path}")
    return path


def check_run_output(output_dir: str | Path, names: tuple[str, ...] = ("clusters.parquet", "pairs.parquet")) -> Path:
    """The directory of the finished run in ``output_dir`` (its current generation, so that every
    file read from it belongs to one run); else an error naming what is missing."""
    output_dir = Path(output_dir)
    files = run_dir(output_dir)
    for name in names:
        if not (files / name).exists():  # pairs.parquet is a folder of parts after updates
            raise InputError(f"{output_dir}: no {name} here; is this the output of `dedup run`?")
    return files


def model_path(output_dir: Path, report: dict) -> Path:
    """The run's model: ``report["model"]`` is relative to the output directory (or absolute)."""
    path = Path(output_dir) / report["model"]  # an absolute path stays itself
    if not path.is_dir():
        raise InputError(f"{output_dir / 'report.json'}: the run's model {path} is not there (no such directory)")
    return path


def run_config(output_dir: Path) -> DedupConfig:
    """The config a finished run (``check_run_output``'s directory) was made with: its model's."""
    report = output_dir / "report.json"
    if not report.is_file():
        raise InputError(f"{output_dir}: no report.json here; is this the output of `dedup run`?")
    return load_config(model_path(output_dir, json.loads(report.read_text())) / "config.yaml")


def validate_records(
    table: pl.DataFrame, config: DedupConfig, origin: str = "<table>", whole: bool = True
) -> pl.DataFrame:
    """Check an in-memory table against the config; see ``read_records``. ``whole=False``: the
    table is a slice of an input checked whole before, so it may have no rows. (A field null in
    every row is no error: ``dedup.normalise.fields_as_read`` sets it aside.)"""
    if table.height == 0 and whole:
        raise InputError(f"{origin}: the table has no rows")
    missing = [c for c in config_columns(config) if c not in table.columns]
    if missing:
        raise InputError(
            f"{origin}: column(s) {', '.join(map(repr, missing))} named in the config are missing "
            f"(the file has: {', '.join(table.columns)})"
        )
    ids = table[config.id_column]
    if isinstance(ids.dtype, pl.List | pl.Array | pl.Struct | pl.Object):
        raise InputError(f"{origin}: id column {config.id_column!r} has type {ids.dtype}, expected text or numbers")
    if ids.dtype.is_float() and ids.is_nan().any():  # NaN is no identity: treat it as missing
        table = table.with_columns(pl.col(config.id_column).fill_nan(None))
        ids = table[config.id_column]
    if ids.null_count():
        first = table.with_row_index("_row").filter(pl.col(config.id_column).is_null())["_row"].head(5)
        raise InputError(
            f"{origin}: id column {config.id_column!r} has {ids.null_count()} null value(s), "
            f"first at row(s) {', '.join(map(str, first.to_list()))}"
        )
    dupes = ids.filter(ids.is_duplicated()).unique(maintain_order=True)
    if dupes.len():
        shown = ", ".join(repr(v) for v in dupes.head(5).to_list())
        raise InputError(
            f"{origin}: id column {config.id_column!r} has {dupes.len()} duplicated value(s), e.g. {shown}"
        )
    casts = []
    for column in dict.fromkeys([*config.fields, *config.blocking_columns()]):
        dtype = table.schema[column]
        if isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Binary | pl.Object):
            raise InputError(f"{origin}: column {column!r} has type {dtype}, expected text or numbers")
        value = pl.col(column)
        if dtype.is_float():
            value = value.fill_nan(None)  # NaN is a missing number, not the text "NaN"
        if isinstance(dtype, pl.Duration):
            value = value.dt.to_string("iso")
        elif not isinstance(dtype, _TEXT_LIKE):
            value = value.cast(pl.String)
        # blank text is a missing value too: two blanks must not count as an agreement
        value = value.cast(pl.String)
        casts.append(pl.when(value.str.strip_chars() == "").then(None).otherwise(value).alias(column))
    return table.with_columns(casts) if casts else table


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full, from the OS, polars or arrow."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text


@contextmanager
def disk_full_is_an_output_error(output_dir: Path) -> Iterator[None]:
    """A full disk during a run becomes one line naming the directory and the space left; the
    previous outputs are untouched because nothing is published until every stage is done."""
    try:
        yield
    except DedupError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        free = shutil.disk_usage(output_dir).free
        raise OutputError(
            f"{output_dir}: no space left on the device ({free:,} bytes free); the previous outputs are "
            "unchanged: free some space and run again"
        ) from None


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write via ``write(tmp)`` to a temporary sibling of ``target``, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are for people to read
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# a run's own intermediate files (read back once, by the run): lz4 writes a 1.8M-pair part of
# pairs.parquet in 0.5 s where zstd, polars' default and the outputs', takes 0.9 s (a third larger)
INTERMEDIATE = "lz4"


def write_parquet(frame: pl.DataFrame | pa.Table, target: str | Path, compression: str = "zstd") -> Path:
    """Write a table to Parquet atomically."""
    target = Path(target)
    if isinstance(frame, pa.Table):
        frame = pl.from_arrow(frame)  # type: ignore[assignment]
    _atomic_write(target, lambda tmp: frame.write_parquet(tmp, compression=compression))  # type: ignore[union-attr]
    return target


def write_parquet_lazy(frame: pl.LazyFrame, target: str | Path) -> Path:
    """Stream a lazy query to Parquet atomically (never the whole table in memory)."""
    target = Path(target)
    _atomic_write(target, lambda tmp: frame.sink_parquet(tmp))
    return target


def write_json(data: Any, target: str | Path) -> Path:
    """Write JSON atomically (indented, keys in insertion order)."""
    target = Path(target)
    _atomic_write(target, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))
    return target


def replace_directory(build: Callable[[Path], None], target: str | Path) -> Path:
    """Build a directory under a temporary name with ``build(tmp_dir)``, then swap it into place.

    The previous directory (if any) is removed only after the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        swap_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def swap_directory(new: Path, target: Path) -> None:
    """Put the finished directory ``new`` at ``target`` (same filesystem), dropping the old one after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare_output_dir(path: str | Path) -> Path:
    """Create the output directory, or fail clearly when it is a file or not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path exists and is not a directory: {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"output directory is not writable: {path}")
    return path


def count_rows(path: str | Path) -> int:
    """Rows of the input: from the Parquet footers (no data read); a CSV is counted by polars."""
    import pyarrow.parquet as pq

    path = check_input_file(path)
    if is_csv(path):
        return pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item()
    return sum(pq.ParquetFile(f).metadata.num_rows for f in input_files(path))


# ---- files passed between stages ------------------------------------------------------------
_LOADED: dict[tuple, tuple[pl.DataFrame, pl.DataFrame]] = {}


def load_input(input_path: str | Path, config: DedupConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read stage: the validated table and its normalised field values.

    Every stage starts from the input file (so each can run on its own, as a flow task); the
    last file read is kept in memory, keyed on its path, size, modification time and the
    config, so stages run one after another in a process read and normalise it once.
    """
    key = _input_key(input_path, config)
    if key is not None and key in _LOADED:
        return _LOADED[key]
    records = read_records(input_path, config)
    loaded = records, normalise_fields(records, config)
    _LOADED.clear()
    if key is not None:
        _LOADED[key] = loaded
    return loaded


_AS_READ: dict[tuple, tuple[DedupConfig, list[str]]] = {}


def load_input_as_read(input_path: str | Path, config: DedupConfig) -> tuple[DedupConfig, list[str]]:
    """Read stage: the input checked, its fields read against the data (``fields_as_read``: the
    config as read, one line per field read otherwise), and the table with its values
    normalised as read kept for the stages after it (``load_input`` with the returned config).

    The file is read once and its values normalised once, with the kinds they are read as: a
    field read as ``text`` is not first normalised as the ``name`` it was declared. A second
    call for the same file and config (the flow's check, then its read stage) reads nothing.
    """
    key = _input_key(input_path, config)
    known = _AS_READ.get(key) if key is not None else None
    if known is not None and _cached_input(input_path, known[0]) is not None:
        return known
    path = check_input_file(input_path)
    table = read_table(path)
    records = validate_records(table, config, origin=str(path))
    as_read, notes = fields_as_read(records, config, str(input_path))
    if as_read is not config:  # a field set aside is no longer one: checked as the stages will see it
        records = validate_records(table, as_read, origin=str(path))
    loaded = records, normalise_fields(records, as_read)
    _LOADED.clear()
    _AS_READ.clear()
    read_key = _input_key(input_path, as_read)
    if read_key is not None and key is not None:
        _LOADED[read_key] = loaded
        _AS_READ[key] = (as_read, notes)
    return as_read, notes


def _input_key(input_path: str | Path, config: DedupConfig) -> tuple | None:
    path = Path(input_path)
    try:
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in input_files(path)]
    except OSError:
        return None  # read_records gives the proper error
    return (str(path.resolve()), tuple(stats), config.model_dump_json())


def _cached_input(input_path: str | Path, config: DedupConfig) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    key = _input_key(input_path, config)
    return None if key is None else _LOADED.get(key)


def save_candidates(
    pairs: CandidatePairs,
    dest: Path,
    largest_blocks: list[int] | None = None,
    skipped: list[str | None] | None = None,
) -> Path:
    """Candidate pairs (row positions, first pass) to ``dest/candidates.parquet`` plus a JSON sidecar
    (pass names and counts, each pass's largest block, and why a default pass was skipped)."""
    target = dest / "candidates.parquet"
    write_parquet(pairs_to_frame(pairs), target)
    meta = {
        "pass_names": pairs.pass_names,
        "pass_counts": pairs.pass_counts,
        "largest_blocks": largest_blocks,
        "skipped": skipped,
    }
    write_json(meta, target.with_suffix(".json"))
    return target


def largest_blocks(candidates: str | Path) -> list[int] | None:
    return json.loads(Path(candidates).with_suffix(".json").read_text()).get("largest_blocks")


def skipped_passes(candidates: str | Path) -> list[str | None] | None:
    return json.loads(Path(candidates).with_suffix(".json").read_text()).get("skipped")


def copy_candidates(source: str | Path, dest: Path) -> Path:
    """``save_candidates``'s two files copied into ``dest`` (each written aside, then renamed),
    so a stage folder holds the candidates it used whoever found them."""
    source, target = Path(source), dest / "candidates.parquet"
    for src, dst in ((source.with_suffix(".json"), target.with_suffix(".json")), (source, target)):
        _atomic_write(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
    return target


def load_candidates(path: str | Path, start: int = 0, stop: int | None = None) -> CandidatePairs:
    """Candidate pairs from ``save_candidates``'s file; rows ``[start, stop)`` only if given."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    frame = _rows(pl.scan_parquet(path), start, stop).collect()
    pairs = pairs_from_frame(frame, tuple(meta["pass_names"]))
    return CandidatePairs(pairs.left, pairs.right, pairs.pass_index, pairs.pass_names, tuple(meta["pass_counts"]))


def read_clusters(output_dir: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A run's ``clusters.parquet`` as (the input columns under their own names, the columns
    clustering added). Input columns named like an added column were written as
    ``<name>_input`` (``report.json``: ``renamed_input_columns``); they get their names back."""
    from dedup.clustering import OUTPUT_COLUMNS

    output_dir = run_dir(output_dir)  # both files from one run
    clusters = pl.read_parquet(output_dir / "clusters.parquet")
    report = output_dir / "report.json"
    renames = json.loads(report.read_text()).get("renamed_input_columns", {}) if report.is_file() else {}
    inputs = clusters.drop(OUTPUT_COLUMNS).rename({new: old for old, new in renames.items()})
    return inputs, clusters.select(OUTPUT_COLUMNS)
