"""What ``dedup review`` serves: one run's records, pairs and answers, and the retrain job.

Everything the page shows comes from the published run (``run_dir``: clusters, pairs, report)
and from ``OUTPUT/labels.parquet``. Nothing here writes anywhere but ``OUTPUT``: the answers
(``LabelStore``) and, for a retrain, a ``dedup run`` into the same output with the answers so far
(a copy at ``OUTPUT/.review/labels-used.parquet``, so answers given during the retrain wait for
the next one instead of half-entering this one).
"""

from __future__ import annotations

import collections
import difflib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dedup.config import load_config
from dedup.errors import InputError
from dedup.io import check_run_output, model_path, read_clusters, write_parquet
from dedup.labels import LABELS_FILE, LabelStore, latest_answers
from dedup.publish import run_dir
from dedup.review.active import ActiveQueue, expected_f1_change, priority_frame

HANDED_OUT_SECONDS = 120.0  # a pair shown in one tab is not shown in another for this long
MAX_MEMBERS = 200  # members and links a cluster view lists


class Retrain:
    """A ``dedup run`` with the answers, in a subprocess; its output lines are the progress."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=40)
        self.state = "idle"  # idle, running, finished, failed
        self.started = self.finished = 0.0
        self.labels_used = 0

    def start(self, command: list[str], labels_used: int, on_exit) -> bool:
        if self.state == "running":
            return False
        self.lines.clear()
        self.state, self.started, self.labels_used = "running", time.time(), labels_used
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL
        )
        threading.Thread(target=self._follow, args=(on_exit,), daemon=True).start()
        return True

    def _follow(self, on_exit) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            # progress bars rewrite one line with carriage returns; keep its latest state
            text = line.rstrip("\n").split("\r")[-1].strip()
            if text:
                self.lines.append(text)
        code = self.process.wait()
        self.finished = time.time()
        self.state = "finished" if code == 0 else "failed"
        if code == 0:
            on_exit()

    def status(self) -> dict[str, Any]:
        end = self.finished if self.state in ("finished", "failed") else time.time()
        return {
            "state": self.state,
            "seconds": round(end - self.started, 1) if self.started else 0.0,
            "last_line": self.lines[-1] if self.lines else "",
            "labels_used": self.labels_used,
        }


class ReviewSession:
    """The state behind the page: the run being reviewed, the queue, the answers."""

    def __init__(self, output: str | Path, input_path: str | Path | None = None) -> None:
        self.output = Path(output).resolve()
        check_run_output(self.output, ("clusters.parquet", "pairs.parquet", "report.json"))
        self.store = LabelStore(self.output / LABELS_FILE)
        self.retrain = Retrain()
        self._lock = threading.RLock()
        self._handed_out: dict[int, tuple[str, float]] = {}
        self._input = Path(input_path).resolve() if input_path else None
        self.load()

    # ---- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)read the published run: after a retrain the page moves on to the new one."""
        run = run_dir(self.output)
        report = json.loads((run / "report.json").read_text())
        model = model_path(run, report)
        config = load_config(model / "config.yaml")
        inputs, outputs = read_clusters(run)
        ids = inputs[config.id_column].cast(pl.String)
        pairs = pl.read_parquet(
            run / "pairs.parquet", columns=[f"{config.id_column}_l", f"{config.id_column}_r", "match_probability"]
        )
        frame = priority_frame(run / "pairs.parquet", config.id_column, config.field_names, config.threshold)
        with self._lock:
            self.run, self.report, self.config, self.model_dir = run, report, config, model
            self.records, self.clusters = inputs, outputs
            self.row_of = dict(zip(ids.to_list(), range(ids.len()), strict=True))
            # each pair's ids in order (a < b), as the answers are kept: the estimated gain joins them
            sides = [pl.col(f"{config.id_column}_{side}").cast(pl.String) for side in "lr"]
            self.pair_keys = pairs.select(
                pl.min_horizontal(sides).alias("a"), pl.max_horizontal(sides).alias("b")
            ).with_row_index("pair")
            self.probability = pairs["match_probability"].to_numpy().astype(np.float64)
            self.queue = ActiveQueue(frame, config.id_column)
            self._handed_out.clear()
            self._replay_answers()

    def retrain_input(self) -> Path | None:
        """What a retrain runs on: ``--input``, else the run's input file. An update's input is
        its change file, not every record, so its records are written out (``.review/records.parquet``)
        and retrained on instead."""
        if self._input is not None:
            return self._input
        if "update" in self.report:
            return write_parquet(self.records, self.output / ".review" / "records.parquet")
        given = Path(self.report.get("input", ""))
        return given.resolve() if given.is_file() else None

    def _replay_answers(self) -> None:
        answers = latest_answers(self.store.read())
        self.queue = ActiveQueue(self.queue.frame, self.config.id_column)
        for left, right, label in zip(answers["left_id"], answers["right_id"], answers["label"], strict=True):
            self.queue.note_answer(left, right, self._pass_of(left, right), label)

    def _pass_of(self, left: str, right: str) -> str | None:
        frame = self.queue.frame
        c = self.config.id_column
        hit = frame.filter(
            ((pl.col(f"{c}_l") == left) & (pl.col(f"{c}_r") == right))
            | ((pl.col(f"{c}_l") == right) & (pl.col(f"{c}_r") == left))
        )
        return hit["blocking_pass"][0] if hit.height and "blocking_pass" in hit.columns else None

    # ---- pairs --------------------------------------------------------------------------------
    def next_pair(self, tab: str) -> dict[str, Any] | None:
        with self._lock:
            now = time.time()
            busy = {i for i, (owner, at) in self._handed_out.items() if owner != tab and now - at < HANDED_OUT_SECONDS}
            chosen = self.queue.next_pairs(1, skip=busy)
            if not chosen:
                return None
            self._handed_out[chosen[0]] = (tab, now)
            row = self.queue.frame.row(chosen[0], named=True)
        c = self.config.id_column
        return self.pair_view(row[f"{c}_l"], row[f"{c}_r"], row)

    def pair_view(self, left: str, right: str, row: dict[str, Any] | None = None) -> dict[str, Any]:
        """Both records, field by field with the differing characters marked, and the evidence."""
        c = self.config.id_column
        for record_id in (left, right):
            if record_id not in self.row_of:
                raise InputError(f"no record with {c} = {record_id!r}")
        if row is None:
            row = self._pair_row(left, right)
        a, b = self.records.row(self.row_of[left], named=True), self.records.row(self.row_of[right], named=True)
        fields = []
        for f in self.config.field_names:
            x, y = _text(a.get(f)), _text(b.get(f))
            left_parts, right_parts = character_diff(x, y)
            fields.append(
                {
                    "field": f,
                    "left": left_parts,
                    "right": right_parts,
                    "similarity": _number(row.get(f"sim_{f}")) if row else None,
                    "bits": _number(row.get(f"bf_{f}")) if row else None,
                }
            )
        answer = self.answer_of(left, right)
        return {
            "left": left,
            "right": right,
            "fields": fields,
            "probability": _number(row.get("match_probability")) if row else None,
            "weight": _number(row.get("match_weight")) if row else None,
            "blocking_pass": row.get("blocking_pass") if row else None,
            "candidate": row is not None,
            "clusters": [self.cluster_of(left), self.cluster_of(right)],
            "answer": answer,
        }

    def _pairs(self) -> pl.LazyFrame:
        """The run's scored pairs, ids as text (what the browser sends), read lazily."""
        c = self.config.id_column
        return pl.scan_parquet(self.run / "pairs.parquet").with_columns(
            pl.col(f"{c}_l").cast(pl.String), pl.col(f"{c}_r").cast(pl.String)
        )

    def _pair_row(self, left: str, right: str) -> dict[str, Any] | None:
        c = self.config.id_column
        hit = (
            self._pairs()
            .filter(
                ((pl.col(f"{c}_l") == left) & (pl.col(f"{c}_r") == right))
                | ((pl.col(f"{c}_l") == right) & (pl.col(f"{c}_r") == left))
            )
            .head(1)
            .collect()
        )
        return hit.row(0, named=True) if hit.height else None

    def cluster_of(self, record_id: str) -> str:
        return str(self.clusters["cluster_id"][self.row_of[record_id]])

    def answer_of(self, left: str, right: str) -> str | None:
        answers = latest_answers(self.store.read())
        a, b = min(left, right), max(left, right)
        hit = answers.filter((pl.col("left_id") == a) & (pl.col("right_id") == b))
        return hit["label"][0] if hit.height else None

    # ---- answers ------------------------------------------------------------------------------
    def answer(self, left: str, right: str, label: str) -> int:
        for record_id in (left, right):
            if record_id not in self.row_of:
                raise InputError(f"no record with {self.config.id_column} = {record_id!r}")
        if left == right:
            raise InputError("a record cannot be paired with itself")
        count = self.store.append(left, right, label)
        with self._lock:
            self.queue.note_answer(left, right, self._pass_of(left, right), label)
        return count

    def undo(self, left: str, right: str) -> bool:
        undone = self.store.undo(left, right)
        with self._lock:
            self._replay_answers()
            self._handed_out.clear()
        return undone

    def progress(self) -> dict[str, Any]:
        given = self.store.read()
        answers = latest_answers(given)
        counts = {label: int((answers["label"] == label).sum()) for label in ("match", "non-match", "unsure")}
        decided = self.pair_keys.join(
            answers.filter(pl.col("label") != "unsure").select(
                pl.col("left_id").alias("a"), pl.col("right_id").alias("b"), (pl.col("label") == "match").alias("y")
            ),
            on=["a", "b"],
        )
        answered = np.zeros(len(self.probability), dtype=bool)
        answer = np.zeros(len(self.probability))
        answered[decided["pair"].to_numpy()] = True
        answer[decided["pair"].to_numpy()] = decided["y"].to_numpy()
        return {
            "answers": int(answers.height),
            "counts": counts,
            "given": given.height,
            "estimated_f1_gain": round(
                expected_f1_change(self.probability, answered, answer, self.config.threshold), 4
            ),
            "pairs": int(len(self.probability)),
            "run": self.report.get("run"),
            "retrain": self.retrain.status(),
        }

    # ---- clusters and search ------------------------------------------------------------------
    def cluster_view(self, cluster_id: str) -> dict[str, Any]:
        members = self.clusters.with_row_index("row").filter(pl.col("cluster_id").cast(pl.String) == cluster_id)
        if members.is_empty():
            raise InputError(f"no cluster {cluster_id!r}")
        rows = members["row"].to_numpy()[:MAX_MEMBERS]
        c = self.config.id_column
        ids = self.records[c].cast(pl.String).gather(rows).to_list()
        links = (
            self._pairs()
            .select(f"{c}_l", f"{c}_r", "match_probability")
            .filter(pl.col(f"{c}_l").is_in(ids) & pl.col(f"{c}_r").is_in(ids))
            .sort("match_probability")
            .head(MAX_MEMBERS)
            .collect()
        )
        return {
            "cluster_id": cluster_id,
            "size": int(members.height),
            "members": [
                {"id": i, "values": {f: _text(self.records[f][int(r)]) for f in self.config.field_names}}
                for i, r in zip(ids, rows, strict=True)
            ],
            "links": [{"left": a, "right": b, "probability": _number(p)} for a, b, p in links.iter_rows()],
        }

    def split(self, left: str, right: str) -> dict[str, Any]:
        """ "Split here": cut the cluster at the link (left, right). Links no stronger than it are
        removed; if that separates the two records, every scored pair across the cut is answered
        non-match (so the next run keeps the parts apart); otherwise only this pair is, and the
        reply says which stronger links still hold them together."""
        cluster = self.cluster_of(left)
        if cluster != self.cluster_of(right):
            raise InputError(f"{left!r} and {right!r} are not in one cluster")
        view = self.cluster_view(cluster)
        links = [(a, b, p or 0.0) for a, b, p in ((x["left"], x["right"], x["probability"]) for x in view["links"])]
        cut = next((p for a, b, p in links if {a, b} == {left, right}), 0.0)
        kept = [(a, b) for a, b, p in links if p > cut and p >= self.config.threshold]
        side = _component(left, kept)
        if right in side:
            self.answer(left, right, "non-match")
            return {"separated": False, "answered": [[left, right]]}
        across = [(a, b) for a, b, _ in links if (a in side) != (b in side)]
        for a, b in across:
            self.store.append(a, b, "non-match")
        with self._lock:
            self._replay_answers()
        return {"separated": True, "answered": [list(pair) for pair in across]}

    def record_view(self, record_id: str) -> dict[str, Any]:
        if record_id not in self.row_of:
            raise InputError(f"no record with {self.config.id_column} = {record_id!r}")
        c = self.config.id_column
        pairs = (
            self._pairs()
            .select(f"{c}_l", f"{c}_r", "match_probability")
            .filter((pl.col(f"{c}_l") == record_id) | (pl.col(f"{c}_r") == record_id))
            .sort("match_probability", descending=True)
            .head(20)
            .collect()
        )
        row = self.row_of[record_id]
        return {
            "id": record_id,
            "cluster_id": self.cluster_of(record_id),
            "values": {f: _text(self.records[f][row]) for f in self.config.field_names},
            "pairs": [
                {"other": b if a == record_id else a, "probability": _number(p)} for a, b, p in pairs.iter_rows()
            ],
        }

    # ---- retrain ------------------------------------------------------------------------------
    def start_retrain(self) -> dict[str, Any]:
        source = self.retrain_input()
        if source is None:
            raise InputError(
                f"the run's input {self.report.get('input')!r} is not found from here; "
                "start `dedup review` with --input FILE to retrain"
            )
        snapshot = self.output / ".review" / "labels-used.parquet"
        frame = self.store.read()
        if frame.is_empty():
            raise InputError("no answers yet: label some pairs first")
        write_parquet(frame, snapshot)
        command = [
            sys.executable,
            "-m",
            "dedup.cli",
            "run",
            str(source),
            "--config",
            str(self.model_dir / "config.yaml"),
            "--output",
            str(self.output),
            "--labels",
            str(snapshot),
        ]
        self.retrain.start(command, frame.height, self.load)
        return self.retrain.status()


def character_diff(a: str | None, b: str | None) -> tuple[list[list[Any]], list[list[Any]]]:
    """Both values as ``[text, same]`` runs: ``same`` is False for the characters that differ."""
    if a is None or b is None:
        return ([[a, False]] if a is not None else []), ([[b, False]] if b is not None else [])
    left: list[list[Any]] = []
    right: list[list[Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i2 > i1:
            left.append([a[i1:i2], op == "equal"])
        if j2 > j1:
            right.append([b[j1:j2], op == "equal"])
    return left, right


def _component(start: str, links: list[tuple[str, str]]) -> set[str]:
    neighbours: dict[str, set[str]] = collections.defaultdict(set)
    for a, b in links:
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen, todo = {start}, [start]
    while todo:
        for other in neighbours[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else round(value, 4)
