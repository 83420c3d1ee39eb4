"""The stage graph: the one declaration of the stages, their pieces and their cache keys.

read -> block (a piece per pass and key partition, then their union) -> train (unless a model is
given) -> score (encode a piece per record range, complete the candidates with the model's
embedding neighbours, value statistics, score a piece per pair range) -> cluster -> report.

An ``Executor`` decides where pieces run: ``InProcess`` runs them here, block and encode pieces
two at a time on threads (the CLI, notebooks, ``dedup.pipeline.run``); the Prefect flow passes
one that makes each piece a task on threads or on Dask (``flows/tasks.py``). Both run this
code, so their results are the same.

Each stage writes into ``OUTPUT/.stages/<stage>-<key>/``; the key hashes everything the result
depends on (input bytes, config, code and library versions, the model; ``dedup.fingerprint``).
A ``DONE`` marker is written last, so a rerun after a failure resumes from the last finished
stage and a rerun on unchanged input reuses them. Pieces exchange file paths only.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dedup import parts, registry
from dedup.config import DedupConfig
from dedup.fingerprint import config_digest, file_digest, model_fingerprint, stage_key
from dedup.io import (
    check_input_file,
    count_rows,
    disk_full_is_an_output_error,
    load_input_as_read,
    prepare_output_dir,
)
from dedup.labels import labels_digest, read_labels
from dedup.lock import output_lock
from dedup.publish import place, remove_leftovers
from dedup.report import Layout, StageFiles, report_stage
from dedup.threads import lanes as lanes_for
from dedup.threads import limited, share

T = TypeVar("T")
DONE = "DONE"
SIDE_BY_SIDE = frozenset({"block", "encode"})  # stages whose pieces run side by side here
log = logging.getLogger("dedup")


@dataclass(frozen=True)
class Partitioning:
    """How finely blocking and scoring are cut into pieces (results do not depend on it)."""

    block_partitions: int = 1  # hash partitions per blocking pass
    records_per_part: int = parts.RECORDS_PER_PART
    pairs_per_part: int = parts.PAIRS_PER_PART


DEFAULT_PIECES = Partitioning()


class Executor(Protocol):
    """Runs a stage's pieces: ``map`` calls ``fn(*args)`` for each ``args`` and returns the
    results in order."""

    def map(self, stage: str, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]: ...


class InProcess:
    """Every piece here, on all the cores this process may use (or ``DEDUP_THREADS``); the
    pieces of ``SIDE_BY_SIDE`` stages up to ``lanes`` at a time on threads (``dedup.threads.lanes``:
    ``DEDUP_LANES``, else one per core up to two), each with its share of torch's threads.

    A piece alone keeps two cores about 70% busy (numpy, the tokeniser and the GIL between
    polars and torch calls leave one idle); two block or encode pieces side by side fill them
    (1M people: blocking 4.9 -> 3.9 s, encoding 10.2 -> 8.5 s) for no more memory. Score pieces
    run one at a time: two at once saved 2 s at 1M but held 0.4 GB more (2.37 -> 2.80 GB).
    Pieces exchange file paths and share no mutable state, so the result does not depend on
    the lanes; what every score piece loads is loaded once (``parts.shared_loads``).
    """

    def __init__(self, threads: int | None = None, lanes: int | None = None) -> None:
        self.threads = threads
        self.lanes = lanes

    def map(self, stage: str, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        threads = self.threads or share()
        lanes = (self.lanes or lanes_for(threads)) if stage in SIDE_BY_SIDE else 1
        lanes = max(min(lanes, len(calls)), 1)

        def one(args: tuple[Any, ...]) -> T:
            result = fn(*args)
            give_back_freed_memory()
            return result

        with limited(max(threads // lanes, 1)), parts.shared_loads():
            if lanes == 1:
                return [one(args) for args in calls]
            with ThreadPoolExecutor(lanes, thread_name_prefix=f"dedup-{stage}") as pool:
                return list(pool.map(one, calls))


def give_back_freed_memory() -> None:
    """Return the C heap's freed pages to the system, between pieces (glibc's ``malloc_trim``).

    A piece's arrays are freed when it returns, but glibc keeps their pages for reuse, so the
    next piece's peak stacks on memory nobody uses: at 1M records the process kept 0.6-0.9 GB
    after training, each encode piece and the neighbour search (2,359 -> 1,498 MB after the
    train piece). Without glibc this does nothing.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _one(executor: Executor, stage: str, fn: Callable[..., T], *args: Any) -> T:
    return executor.map(stage, fn, [args])[0]


@dataclass
class StageClock:
    """Wall time per stage for the report, and a log line as each one starts and ends."""

    logger: logging.Logger | logging.LoggerAdapter = log
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        self.logger.info("%s: started", name)
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)
            self.logger.info("%s: done in %.2fs", name, self.seconds[name])


def _finished(dest: Path, result: Path, logger: logging.Logger | logging.LoggerAdapter) -> bool:
    if (dest / DONE).is_file() and result.exists():
        logger.info("%s: reusing the finished result", dest.name)
        return True
    return False


def _mark_done(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / DONE).write_text(json.dumps({"finished": time.time()}))


# ---- the stages -----------------------------------------------------------------------------
def block(
    input_path: str, config: DedupConfig, dest: Path, executor: Executor, partitioning: Partitioning, logger=log
) -> Path:
    """Candidate pairs of the rule passes: a piece per (pass, key partition), then their union."""
    result = dest / "candidates.parquet"
    if _finished(dest, result, logger):
        return result
    k = partitioning.block_partitions
    calls = [
        (input_path, config, i, part, k, str(dest / "blocks")) for i in range(len(config.passes)) for part in range(k)
    ]
    pieces = executor.map("block", parts.block_part, calls)
    merged = _one(executor, "block", parts.merge_blocks, config, pieces, str(dest))
    for piece in pieces:  # merged: the pieces' pairs go
        piece.pairs.unlink(missing_ok=True)
    _mark_done(dest)
    return Path(merged)


def _one_piece(
    stage: str, fn: Callable[..., Any], dest: Path, result: Path, executor: Executor, logger, *args: Any
) -> Path:
    """A stage that is a single piece: run it unless its finished result is there."""
    if not _finished(dest, result, logger):
        _one(executor, stage, fn, *args)
        _mark_done(dest)
    return result


def train(input_path: str, config: DedupConfig, candidates: Path, dest: Path, executor: Executor, logger=log) -> Path:
    """The encoder and combiner, trained on the input, saved to ``dest/model``."""
    model = dest / "model"
    return _one_piece(
        "train", parts.train_part, dest, model, executor, logger, input_path, config, str(candidates), str(model)
    )


def score(
    input_path: str,
    config: DedupConfig,
    model_dir: Path,
    candidates: Path,
    dest: Path,
    executor: Executor,
    partitioning: Partitioning,
    logger=log,
    known: Path | None = None,
    known_statistics: Path | None = None,
) -> Path:
    """Encode (a piece per record range), complete the candidates (``known``: the trained
    model's, when training found them), score (a piece per pair range). ``known_statistics``:
    the input's value statistics as training counted them, when it did."""
    result = dest / "pairs.parquet"
    if _finished(dest, result, logger):
        return result
    model, where = str(model_dir), str(dest)
    record_ranges = parts.ranges(count_rows(input_path), partitioning.records_per_part)
    encoding = time.perf_counter()
    embeddings = [
        str(p)
        for p in executor.map(
            "encode",
            parts.encode_part,
            [(input_path, config, model, a, b, str(dest / "embeddings")) for a, b in record_ranges],
        )
    ]
    encoded = round(time.perf_counter() - encoding, 4)  # wall time: the pieces may overlap
    completed = str(
        _one(
            executor,
            "score",
            parts.complete_candidates,
            config,
            str(candidates),
            embeddings,
            where,
            None if known is None else str(known),
        )
    )
    if known_statistics is not None and known_statistics.is_file():  # counted by training on this input
        statistics = str(known_statistics)
    else:
        statistics = str(_one(executor, "score", parts.statistics_part, input_path, config, where))
    for counts in sorted(parts.word_counts_dir(statistics).glob("*.parquet")):  # published for updates
        if not (dest / "embeddings" / counts.name).exists():
            place(counts, dest / "embeddings" / counts.name, keep_source=True)
    pair_ranges = parts.ranges(parts.candidate_count(completed), partitioning.pairs_per_part)
    calls = [
        (input_path, config, model, completed, embeddings, statistics, a, b, str(dest / "scores"))
        for a, b in pair_ranges
    ]
    scored = executor.map("score", parts.score_part, calls)
    pairs = Path(_one(executor, "score", parts.merge_scores, scored, where, encoded))
    _mark_done(dest)
    return pairs


def cluster(input_path: str, config: DedupConfig, pairs: Path, dest: Path, executor: Executor, logger=log) -> Path:
    """Every input row with its cluster, to ``dest/clusters.parquet``."""
    result = dest / "clusters.parquet"
    return _one_piece(
        "cluster", parts.cluster_part, dest, result, executor, logger, input_path, config, str(pairs), str(dest)
    )


# ---- whole jobs ------------------------------------------------------------------------------
def labels_key(config: DedupConfig) -> tuple[str, ...]:
    """The pair labels' part of a cache key: their bytes, or nothing without labels (so keys of
    runs without labels stay what they were)."""
    return () if config.labels is None else (labels_digest(config.labels),)


def training_key(input_key: str, config: DedupConfig) -> str:
    """What a trained model depends on: the input and config (``input_key``) and the labels.
    The train stage's cache and the model registry both key on it."""
    return stage_key("train", input_key, *labels_key(config))


def candidates_and_model(
    input_path: str,
    config: DedupConfig,
    stages: Path,
    executor: Executor,
    clock: StageClock,
    partitioning: Partitioning = DEFAULT_PIECES,
    train_model: bool = True,
) -> tuple[str, Path, Path | None]:
    """Block, then (if ``train_model``) train: ``(input key, candidates, trained model or None)``."""
    input_key = stage_key("block", file_digest(check_input_file(input_path)), config_digest(config))
    candidates = clock(
        "block", block, input_path, config, stages / f"block-{input_key}", executor, partitioning, clock.logger
    )
    trained = None
    if train_model:
        train_dir = stages / f"train-{training_key(input_key, config)}"
        trained = clock("train", train, input_path, config, candidates, train_dir, executor, clock.logger)
    return input_key, candidates, trained


def deduplicate(
    input_path: str | Path,
    config: DedupConfig,
    output: str | Path,
    executor: Executor | None = None,
    partitioning: Partitioning = DEFAULT_PIECES,
    model: str | Path | None = None,
    models_dir: str | Path | None = None,
    model_name: str = "default",
    retrain: bool = False,
    keep_stages: bool = False,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> dict[str, Any]:
    """Deduplicate ``input_path`` into ``output``; returns the report (also written there).

    The model is ``model`` if given; else the latest version of ``model_name`` under
    ``models_dir`` unless ``retrain``; else one trained on the input (registered as a new version
    when ``models_dir`` is set, otherwise published to ``OUTPUT/model``). ``keep_stages`` keeps
    the stage results as a cache for the next run (the flow); otherwise they are moved into
    place and removed.
    """
    executor = executor or InProcess()
    input_path = str(input_path)
    layout = Layout(prepare_output_dir(output))
    with output_lock(layout.output), disk_full_is_an_output_error(layout.output):  # one writer at a time
        return _deduplicate(
            input_path,
            config,
            layout,
            executor,
            partitioning,
            model,
            models_dir,
            model_name,
            retrain,
            keep_stages,
            logger,
        )


def _deduplicate(
    input_path: str,
    config: DedupConfig,
    layout: Layout,
    executor: Executor,
    partitioning: Partitioning,
    model: str | Path | None,
    models_dir: str | Path | None,
    model_name: str,
    retrain: bool,
    keep_stages: bool,
    logger: logging.Logger | logging.LoggerAdapter,
) -> dict[str, Any]:
    remove_leftovers(layout.output)  # what a killed run or an older version left
    clock = StageClock(logger)
    # fails early, naming the file, column or rows; empty fields aside, titles read as text
    config, notes = clock("read", load_input_as_read, input_path, config)
    for note in notes:
        logger.warning(note)
    if config.labels is not None:
        read_labels(config.labels)  # so does a bad labels file
    found = None
    if model is None and models_dir and not retrain:
        found = registry.latest(models_dir, model_name)
        if found is not None:
            logger.info("using model %s", found)
    train_model = model is None and found is None
    input_key, candidates, trained = candidates_and_model(
        input_path, config, layout.stages, executor, clock, partitioning, train_model
    )
    publish_model = False
    if model is not None:
        model_dir = Path(model)
    elif found is not None:
        model_dir = found
    elif models_dir:
        model_dir = registry.register(models_dir, model_name, trained, training_key(input_key, config))
        logger.info("registered model %s", model_dir)
    else:
        model_dir, publish_model = trained, True
    score_key = stage_key("score", input_key, model_fingerprint(model_dir), *labels_key(config))
    pairs = clock(
        "score",
        score,
        input_path,
        config,
        model_dir,
        candidates,
        layout.stages / f"score-{score_key}",
        executor,
        partitioning,
        logger,
        None if trained is None else parts.neighbours_dir(trained) / "candidates.parquet",
        None if trained is None else parts.statistics_path(trained),
    )
    cluster_dir = layout.stages / f"cluster-{stage_key('cluster', score_key)}"
    clusters = clock("cluster", cluster, input_path, config, pairs, cluster_dir, executor, logger)
    files = StageFiles(candidates, pairs, clusters, model_dir, publish_model, pairs.parent / "embeddings")
    start = time.perf_counter()
    report = _one(
        executor,
        "report",
        report_stage,
        input_path,
        config,
        str(layout.output),
        clock.seconds,
        files,
        keep_stages,
        tuple(notes),
    )
    if not keep_stages:  # the results were moved into place; what an earlier failed run left goes too
        shutil.rmtree(layout.stages, ignore_errors=True)
    counts = report["counts"]
    logger.info(
        "%d records -> %d clusters (%d with duplicates, largest %d) in %.1fs of report; wrote %s",
        counts["records"],
        counts["clusters"],
        counts["duplicate_clusters"],
        counts["largest_cluster"],
        time.perf_counter() - start,
        layout.output,
    )
    return report
