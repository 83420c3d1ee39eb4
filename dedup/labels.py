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
import os
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
        with self._locked():
            frame = self.read()
            key = _pair_key(frame)
            hits = np.flatnonzero(key == _key(str(left_id), str(right_id)))
            if not len(hits):
                return False
            keep = np.ones(frame.height, dtype=bool)
            keep[hits[-1]] = False
            write_parquet(frame.filter(pl.Series(keep)), self.path)
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
    """One row per unordered pair: the latest answer (file order), ``unsure`` included."""
    if frame.is_empty():
        return frame
    keyed = frame.with_columns(
        pl.min_horizontal("left_id", "right_id").alias("a"), pl.max_horizontal("left_id", "right_id").alias("b")
    )
    return (
        keyed.with_row_index("order")
        .sort("order")
        .group_by("a", "b", maintain_order=True)
        .last()
        .sort("order")
        .select(pl.col("a").alias("left_id"), pl.col("b").alias("right_id"), "label", "time")
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


def _key(a: str, b: str) -> str:
    return f"{min(a, b)}\x00{max(a, b)}"


def _pair_key(frame: pl.DataFrame) -> np.ndarray:
    return np.array([_key(a, b) for a, b in zip(frame["left_id"], frame["right_id"], strict=True)], dtype=object)


def labels_path_of(output: str | Path) -> Path:
    return Path(output) / LABELS_FILE


def ensure_writable(path: Path) -> None:
    """Fail now, not at the first answer, if the labels file cannot be written."""
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{path.parent}: not writable; labels cannot be saved")
