"""Pair labels a person gave (``dedup review`` writes them; ``labels:`` / ``--labels`` reads them).

``OUTPUT/labels.parquet`` holds one row per answer: ``left_id``, ``right_id``, ``label`` (match,
non-match or unsure) and ``time``. It lives beside the published names, outside the run
generations, so a rerun keeps it. Every answer rewrites the file under a temporary name and
renames it into place (under a lock, so two browser tabs or two processes lose nothing): a kill
at any moment leaves the file with or without the answer being written, never a torn one.
The latest answer about a pair wins; ``undo`` removes the latest one.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from dedup.errors import InputError
from dedup.fingerprint import file_digest
from dedup.io import write_parquet

LABELS_FILE = "labels.parquet"
LABELS = ("match", "non-match", "unsure")
SCHEMA = {"left_id": pl.String, "right_id": pl.String, "label": pl.String, "time": pl.Datetime("us", "UTC")}


class LabelStore:
    """The answers of one output directory, appended atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._thread_lock = threading.Lock()

    def read(self) -> pl.DataFrame:
        return read_labels(self.path) if self.path.exists() else pl.DataFrame(schema=SCHEMA)

    def append(self, left_id: str, right_id: str, label: str) -> int:
        """Record one answer; returns how many answers the file holds."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
        row = pl.DataFrame(
            {"left_id": [str(left_id)], "right_id": [str(right_id)], "label": [label], "time": [datetime.now(UTC)]},
            schema=SCHEMA,
        )
        with self._locked():
            frame = pl.concat([self.read(), row])
            write_parquet(frame, self.path)
            return frame.height

    def undo(self, left_id: str, right_id: str) -> bool:
        """Remove the latest answer about this pair (either order); False if there is none."""
        a, b = sorted((str(left_id), str(right_id)))
        with self._locked():
            keyed = _unordered(self.read()).with_row_index("order")
            hits = keyed.filter((pl.col("a") == a) & (pl.col("b") == b))["order"]
            if not hits.len():
                return False
            kept = keyed.filter(pl.col("order") != hits[-1]).select(*SCHEMA)
            write_parquet(kept, self.path)
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # threads of one server share the thread lock; other processes the file lock
        with self._thread_lock, open(self.path.with_name(f".{self.path.name}.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def read_labels(path: str | Path) -> pl.DataFrame:
    """A labels file, checked: the four columns, known labels (one-line error naming the file)."""
    path = Path(path)
    try:
        # one open file: a concurrent answer renames a new file into place, and reading by name
        # could take the footer from one file and the data from the other
        with open(path, "rb") as handle:
            frame = pl.read_parquet(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: labels file not found") from None
    except Exception as exc:  # noqa: BLE001 (polars raises many kinds for a damaged file)
        raise InputError(f"{path}: not a readable labels file ({type(exc).__name__})") from None
    missing = [c for c in ("left_id", "right_id", "label") if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: labels file lacks column(s) {', '.join(missing)}")
    if "time" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=SCHEMA["time"]).alias("time"))
    frame = frame.select(
        pl.col("left_id").cast(pl.String),
        pl.col("right_id").cast(pl.String),
        pl.col("label").cast(pl.String),
        pl.col("time").cast(SCHEMA["time"]),
    )
    bad = (~pl.col("label").is_in(LABELS) | pl.col("left_id").is_null() | pl.col("right_id").is_null()).fill_null(True)
    rows = frame.with_row_index().filter(bad)["index"]
    if rows.len():
        raise InputError(
            f"{path}: row {rows[0]}: label must be one of {', '.join(LABELS)} with both ids given "
            f"({rows.len()} such row(s))"
        )
    return frame


def latest_answers(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per unordered pair (``left_id`` < ``right_id``): its latest answer, ``unsure``
    included, in the order those answers were given."""
    return (
        _unordered(frame)
        .with_row_index("order")
        .group_by("a", "b")
        .last()
        .sort("order")  # in the order the latest answers were given
        .select(pl.col("a").alias("left_id"), pl.col("b").alias("right_id"), "label", "time")
    )


def _unordered(frame: pl.DataFrame) -> pl.DataFrame:
    """The answers with each pair's ids in order as ``a`` < ``b`` (either order is one pair)."""
    return frame.with_columns(
        pl.min_horizontal("left_id", "right_id").alias("a"), pl.max_horizontal("left_id", "right_id").alias("b")
    )


def labelled_rows(labels: pl.DataFrame, ids: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decided answers (match / non-match) as row positions of ``ids``: ``(left, right, is_match)``.

    Pairs naming an id the input no longer holds are left out (a record deleted since the answer).
    """
    answers = latest_answers(labels).filter(pl.col("label") != "unsure")
    rows = pl.DataFrame({"id": ids.cast(pl.String), "row": np.arange(ids.len(), dtype=np.int64)})
    joined = (
        answers.join(rows.rename({"id": "left_id", "row": "l"}), on="left_id")
        .join(rows.rename({"id": "right_id", "row": "r"}), on="right_id")
        .filter(pl.col("l") != pl.col("r"))
    )
    return (
        joined["l"].to_numpy().astype(np.int64),
        joined["r"].to_numpy().astype(np.int64),
        (joined["label"] == "match").to_numpy(),
    )


def labels_digest(path: str | Path | None) -> str:
    """What of the labels changes results (for the stage cache keys): the file's bytes."""
    if path is None:
        return "no-labels"
    return file_digest(path) if Path(path).exists() else "missing"
