"""The stages cut into independent pieces: what a flow fans out over workers.

- block: one piece per (pass, hash partition of that pass's key). Records whose keys hash to
  different partitions can never share a block, so no pair crosses partitions; a sorted
  neighbourhood pass without ``block_on`` runs whole in partition 0.
- encode: one piece per range of records, each writing its fields' distinct-value tables.
- score: one piece per range of candidate pairs, each writing its rows of ``pairs.parquet`` and
  a compact ``(left, right, match_probability)`` file; clustering reads only the rows at or above
  the threshold (the edges), and the per-record confidence streams the compact files one at a time.

Every piece reads its inputs from files and writes its result to a file named after its range,
so the same functions serve the CLI (in its own process, block and encode pieces two at a time
on threads) and a Prefect flow on Dask (in parallel).
"""

from __future__ import annotations

import json
import struct
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from dedup.blocking import (
    CandidatePairs,
    EmbeddingPass,
    estimate_pass,
    has_embedding_pass,
    run_pass,
    skip_reason,
    union_pairs,
    with_embedding_passes,
)
from dedup.clustering import ANSWERS, COMPONENTS, cluster_frame, cluster_labels, components, confidence_sums
from dedup.config import DedupConfig
from dedup.encoder import FieldEmbeddings, stack_field
from dedup.evaluation import train_labels
from dedup.frequencies import FieldStatistics, field_statistics
from dedup.io import (
    INTERMEDIATE,
    copy_candidates,
    load_candidates,
    load_input,
    read_fields,
    read_ids,
    read_normalised,
    save_candidates,
    write_json,
    write_parquet,
    write_parquet_lazy,
)
from dedup.labels import labelled_rows, read_labels
from dedup.model import DedupModel
from dedup.scoring import score_pairs
from dedup.threads import limited, map_side_by_side, share
from dedup.word_counts import save_word_counts

T = TypeVar("T")
RECORDS_PER_PART = 250_000
PAIRS_PER_PART = 2_000_000


def ranges(total: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``size`` covering ``0..total`` (one empty range for 0)."""
    size = max(size, 1)
    return [(start, min(start + size, total)) for start in range(0, max(total, 1), size)]


# ---- block ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockPart:
    """What one block piece found: which pass and partition, its pairs' file, the pass's largest
    block and, if the pass was skipped, why (the same for every partition of a pass)."""

    pass_index: int
    part: int
    pairs: Path  # left, right (row positions)
    largest_block: int
    skipped: str | None


def block_part(
    input_path: str | Path, config: DedupConfig, pass_index: int, part: int, parts: int, dest: str | Path
) -> BlockPart:
    """One hash partition of one rule pass: its pairs to ``dest/block-<pass>-<part>.parquet``."""
    records, normalised = read_fields(input_path, config)
    p = config.passes[pass_index]
    estimate = estimate_pass(records, normalised, p)
    left = right = np.empty(0, np.int64)
    skipped = skip_reason(estimate, p, config, records.height)
    if skipped:
        warnings.warn(skipped, stacklevel=1)
    if skipped is None and not isinstance(p, EmbeddingPass):
        left, right = run_pass(records, normalised, p, part, parts)
    target = write_parquet(
        pl.DataFrame({"left": left, "right": right}), Path(dest) / f"block-{pass_index}-{part}.parquet"
    )
    return BlockPart(pass_index, part, target, estimate.largest_block, skipped)


def merge_blocks(config: DedupConfig, pieces: list[BlockPart], dest: str | Path) -> Path:
    """Union the pieces into ``dest/candidates.parquet`` (each pair once, with its first pass)."""
    by_pass: dict[int, list[Path]] = {i: [] for i in range(len(config.passes))}
    largest: dict[int, int] = {}
    skipped: dict[int, str] = {}
    for piece in pieces:
        by_pass[piece.pass_index].append(piece.pairs)
        largest[piece.pass_index] = piece.largest_block
        if piece.skipped:
            skipped[piece.pass_index] = piece.skipped

    def one_pass(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        frame = pl.concat([pl.read_parquet(p) for p in paths]) if paths else pl.DataFrame({"left": [], "right": []})
        return frame["left"].to_numpy().astype(np.int64), frame["right"].to_numpy().astype(np.int64)

    # read a pass at a time (the union keeps each as its keys): at 1M records holding every
    # pass's pieces while uniting them was the block stage's peak
    files = [p for paths in by_pass.values() for p in paths]
    width = 1
    if files:
        top = pl.scan_parquet(files).select(pl.max_horizontal(pl.col("left").max(), pl.col("right").max()))
        width += int(top.collect().item() or 0)
    per_pass = (one_pass(by_pass[i]) for i in range(len(config.passes)))
    pairs = union_pairs(per_pass, tuple(p.name for p in config.passes), width)
    return save_candidates(
        pairs,
        Path(dest),
        [largest.get(i, 0) for i in range(len(config.passes))],
        [skipped.get(i) for i in range(len(config.passes))],
    )


# ---- train ----------------------------------------------------------------------------------
def train_part(input_path: str | Path, config: DedupConfig, candidates: str | Path, model_dir: str | Path) -> Path:
    """Train the encoder and combiner on the input (labels outside the held-out share, if any)
    and save the model directory. One piece: it works on a bounded sample, whatever N is.

    It trains on every core this process may use (``share()``: ``DEDUP_THREADS`` if set),
    whatever share of them the runner gave the piece: the train stage is this one piece, so
    nothing runs beside it, and the encoder's float32 sums depend on the number of threads
    that made them. So the CLI, a Prefect flow (which gives each piece half the cores, as two
    pieces of other stages run at once) and a Dask worker train the same model on one machine.
    """
    records, normalised = load_input(input_path, config)
    labels, _ = train_labels(records, config)
    answers = answered_rows(config, records[config.id_column])
    with limited(share()):
        model = DedupModel(config).fit(normalised, load_candidates(candidates), labels, answers)
    saved = model.save(model_dir)
    if model.candidates_ is not None:
        save_candidates(model.candidates_, neighbours_dir(saved))
    save_statistics(model.statistics_, statistics_path(saved))
    return saved


def neighbours_dir(trained_model: str | Path) -> Path:
    """Where ``train_part`` leaves the candidates with the trained model's embedding neighbours
    (when training saw every record): beside the model in the train stage's folder."""
    return Path(trained_model).parent / "neighbours"


def statistics_path(trained_model: str | Path) -> Path:
    """Where ``train_part`` leaves the input's value statistics (``field_statistics`` of every
    record, which training counts before it samples): the score stage reads them from there
    instead of counting them again (6 s at 1M records)."""
    return Path(trained_model).parent / "statistics.npz"


Answers = tuple[np.ndarray, np.ndarray, np.ndarray]  # a person's: left rows, right rows, is-match


def answered_rows(config: DedupConfig, ids: pl.Series) -> Answers | None:
    """The config's pair labels (``labels:``) as row positions of ``ids``, or None without labels."""
    if config.labels is None:
        return None
    return labelled_rows(read_labels(config.labels), ids)


def said_different(answers: Answers | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The pairs answered non-match (row positions): clustering keeps them apart."""
    if answers is None:
        return None
    left, right, is_match = answers
    return left[~is_match], right[~is_match]


def with_answers(scored: pl.DataFrame, answers: Answers | None, pairs: CandidatePairs) -> pl.DataFrame:
    """A person's answer decides its pair: probability 1 (match) or 0 (non-match), and the
    ``label`` column says so (null for pairs nobody answered). Only with answers (``labels:``)."""
    if answers is None:
        return scored
    left, right, is_match = answers

    def unordered(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": np.minimum(a, b), "b": np.maximum(a, b)}

    label = pl.DataFrame(unordered(pairs.left, pairs.right)).join(
        pl.DataFrame({**unordered(left, right), "said": is_match}).unique(["a", "b"], keep="last"),
        on=["a", "b"],
        how="left",
        maintain_order="left",
    )["said"]
    return scored.with_columns(
        pl.when(label.is_null())
        .then(pl.col("match_probability"))
        .otherwise(label.cast(pl.Float32))
        .cast(pl.Float32)
        .alias("match_probability"),
        pl.when(label).then(pl.lit("match")).when(~label).then(pl.lit("non-match")).alias("label"),
    )


# ---- encode ---------------------------------------------------------------------------------
def encode_part(
    input_path: str | Path, config: DedupConfig, model_dir: str | Path, start: int, stop: int, dest: str | Path
) -> Path:
    """Embed records ``[start, stop)``: per field a distinct-value table and the rows' codes.

    The rows' normalised fields are kept beside them (``normalised-<start>.parquet``): an update
    reads the master's instead of normalising every record again (``dedup.update``)."""
    normalised = read_normalised(input_path, config, start, stop)  # this piece's rows only
    model = DedupModel.load(model_dir, expect=config)
    clock = time.perf_counter()
    embeddings = model.embed(normalised)
    target = save_embeddings(embeddings, Path(dest) / f"embeddings-{start:012d}.npz")
    write_parquet(normalised, Path(dest) / f"normalised-{start:012d}.parquet")
    write_json({"encode": round(time.perf_counter() - clock, 4)}, target.with_suffix(".json"))
    return target


def statistics_part(input_path: str | Path, config: DedupConfig, dest: str | Path) -> Path:
    """Value frequencies and word vectors of the whole input (one pass, polars): what every score
    piece needs to weigh an agreement by its rarity. Written once, read by each score piece."""
    normalised = read_normalised(input_path, config)  # the config's columns only
    return save_statistics(field_statistics(normalised, config), Path(dest) / "statistics.npz")


def save_statistics(statistics: FieldStatistics, target: Path) -> Path:
    """``statistics`` to ``target`` atomically (``load_statistics`` reads it), and the text
    fields' word counts beside it (``word_counts_dir``), which the run publishes for updates."""
    target.parent.mkdir(parents=True, exist_ok=True)
    save_word_counts(statistics, word_counts_dir(target))
    tmp = target.with_name(f".{target.name}.tmp.npz")
    np.savez(tmp, **statistics.to_arrays())
    tmp.replace(target)
    return target


def word_counts_dir(statistics: str | Path) -> Path:
    """Where ``save_statistics`` leaves the word counts (``dedup.word_counts``) of the input
    whose statistics are in ``statistics``."""
    return Path(statistics).parent / "words"


_SHARED: dict[tuple[str, ...], Any] | None = None
_SHARED_LOCK = threading.Lock()


@contextmanager
def shared_loads() -> Iterator[None]:
    """Inside: what pieces of this process load through ``shared`` is loaded once and kept until
    the block ends (an executor running several pieces here, side by side or one after
    another). Outside (a piece alone in a task or a worker process), each load is its own."""
    global _SHARED
    outer = _SHARED is None
    if outer:
        _SHARED = {}
    try:
        yield
    finally:
        if outer:
            _SHARED = None


def shared(key: tuple[str, ...], load: Callable[[], T]) -> T:
    """``load()``, or inside ``shared_loads`` the value loaded for ``key`` before (read-only:
    the pieces share it). One load at a time: a second piece waits for the first's copy."""
    kept = _SHARED  # read once: another thread's block may end meanwhile
    if kept is None:
        return load()
    with _SHARED_LOCK:
        if key not in kept:
            kept[key] = load()
        return kept[key]


def load_statistics(path: str | Path, fields: list[str]) -> FieldStatistics:
    with np.load(path, allow_pickle=False) as arrays:
        return FieldStatistics.from_arrays(dict(arrays), fields)


def load_embeddings(paths: list[str | Path], fields: list[str]) -> FieldEmbeddings:
    """Join the encode pieces (in record order) into one ``FieldEmbeddings``.

    Each array is mapped from its file, not read (``stored_array``): a single piece's tables
    are paged in only where scoring gathers them, and several pieces are stacked field by
    field, one field's copy at a time (all pieces read, then stacked, held 1M people's 0.86 GB
    of tables twice)."""
    ordered = sorted(map(Path, paths))
    # two fields at a time (``side_by_side``): a copy out of the mapped files is page faults
    # and memory traffic on one core
    stacked = list(map_side_by_side(lambda j: stack_field(stored_field(ordered, j)), range(len(fields))))
    return FieldEmbeddings.from_fields(fields, stacked)


def stored_field(paths: list[Path], j: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Field ``j``'s ``(table, codes)`` in each encode piece file, mapped (``stored_array``)."""
    return [(stored_array(path, f"table.{j}"), stored_array(path, f"codes.{j}")) for path in paths]


def stored_array(path: Path, name: str) -> np.ndarray:
    """Array ``name`` of an ``np.savez`` file, mapped copy-on-write from the file (``np.savez``
    stores members uncompressed, so each one's bytes lie in the file as they are); read
    whole when the member is compressed."""
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo(f"{name}.npy")
        if member.compress_type != zipfile.ZIP_STORED:
            return np.load(path, allow_pickle=False)[name]
    with open(path, "rb") as handle:
        handle.seek(member.header_offset + 26)  # the local header's name and extra-field lengths
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
        handle.seek(member.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: {name} holds Python objects")
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="c", shape=shape, offset=offset, order="F" if fortran else "C")


def save_embeddings(embeddings: FieldEmbeddings, target: Path) -> Path:
    """One encode piece's file, written atomically (``load_embeddings`` reads it)."""
    # keyed by field position: a field name may hold characters a zip member name cannot
    arrays = {f"table.{j}": embeddings.tables[f] for j, f in enumerate(embeddings.fields)}
    arrays |= {f"codes.{j}": embeddings.codes[f] for j, f in enumerate(embeddings.fields)}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(target)
    return target


def complete_candidates(
    config: DedupConfig,
    candidates: str | Path,
    embeddings: list[str | Path],
    dest: str | Path,
    known: str | Path | None = None,
) -> Path:
    """The candidates to score: the rule passes' plus, with embedding passes, the model's neighbours.

    ``known``: the same, found by training this model on this input (``neighbours_dir``), used
    as it is: the neighbour search is then done once per model, not again here."""
    if not has_embedding_pass(config):
        return Path(candidates)
    if known is not None and Path(known).is_file():
        return copy_candidates(known, Path(dest))
    pairs = with_embedding_passes(
        config, lambda: load_candidates(candidates), lambda: load_embeddings(embeddings, config.field_names)
    )
    return save_candidates(pairs, Path(dest))


# ---- score ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScorePart:
    """What one score piece wrote."""

    pairs: Path  # rows of pairs.parquet
    scores: Path  # left, right (row positions), match_probability


def score_part(
    input_path: str | Path,
    config: DedupConfig,
    model_dir: str | Path,
    candidates: str | Path,
    embeddings: list[str | Path],
    statistics: str | Path,
    start: int,
    stop: int,
    dest: str | Path,
) -> ScorePart:
    """Score candidate pairs ``[start, stop)``."""
    ids = read_ids(input_path, config)  # not the rest of the table: the pairs' evidence is on disk
    fields = config.field_names
    # the same for every score piece: loaded once for the pieces this process runs together
    model = shared(("model", str(model_dir)), lambda: DedupModel.load(model_dir, expect=config))
    stored = shared(("embeddings", *map(str, embeddings)), lambda: load_embeddings(embeddings, fields))
    statistics_ = shared(("statistics", str(statistics)), lambda: load_statistics(statistics, fields))
    pairs = load_candidates(candidates, start, stop)
    timings: dict[str, float] = {}
    scored = score_pairs(config.id_column, model.combiner_, ids, stored, statistics_, pairs, timings)
    scored = with_answers(scored, answered_rows(config, ids), pairs)
    scored = scored.with_columns((pl.col("match_probability") >= config.threshold).alias("is_match"))
    dest = Path(dest)
    clock = time.perf_counter()
    rows = write_parquet(scored, dest / f"pairs-{start:012d}.parquet", INTERMEDIATE)
    scores = write_parquet(
        pl.DataFrame({"left": pairs.left, "right": pairs.right, "match_probability": scored["match_probability"]}),
        dest / f"scores-{start:012d}.parquet",
        INTERMEDIATE,
    )
    timings["write_pairs"] = round(time.perf_counter() - clock, 4)
    write_json(timings, dest / f"scores-{start:012d}.json")
    return ScorePart(rows, scores)


def merge_scores(parts: list[ScorePart], dest: str | Path, encoded: float | None = None) -> Path:
    """``dest/pairs.parquet`` from the pieces (streamed, in pair order) and the summed timings;
    ``encoded``: the encode pieces' wall time (else their summed time, which counts pieces that
    ran side by side twice)."""
    dest = Path(dest)
    ordered = sorted(parts, key=lambda p: p.pairs.name)
    clock = time.perf_counter()
    target = write_parquet_lazy(pl.concat([pl.scan_parquet(p.pairs) for p in ordered]), dest / "pairs.parquet")
    timings: dict[str, float] = {"write_pairs": 0.0, "similarities": 0.0}
    for part in ordered:
        for key, value in json.loads(part.scores.with_suffix(".json").read_text()).items():
            timings[key] = round(timings.get(key, 0.0) + value, 4)
    timings["write_pairs"] = round(timings["write_pairs"] + time.perf_counter() - clock, 4)
    encode = [json.loads(p.read_text())["encode"] for p in sorted(dest.glob("embeddings/embeddings-*.json"))]
    if encoded is not None or encode:
        timings["encode"] = encoded if encoded is not None else round(sum(encode), 4)
    write_json({"parts": [str(p.scores.relative_to(dest)) for p in ordered]}, dest / "scores.json")
    write_json(timings, dest / "score_timings.json")
    for part in ordered:
        part.pairs.unlink()
    return target


# ---- cluster --------------------------------------------------------------------------------
def score_files(pairs_path: str | Path) -> list[Path]:
    """The compact score pieces behind a ``pairs.parquet`` written by ``merge_scores``."""
    listing = Path(pairs_path).with_name("scores.json")
    return [listing.parent / p for p in json.loads(listing.read_text())["parts"]]


def cluster_part(input_path: str | Path, config: DedupConfig, pairs_path: str | Path, dest: str | Path) -> Path:
    """Clusters from the edges at or above the threshold; confidence streamed over all scored
    pairs: every input row with its cluster to ``dest/clusters.parquet``."""
    records, _ = load_input(input_path, config)
    scores = score_files(pairs_path)
    edges = (
        pl.concat([pl.scan_parquet(p) for p in scores])
        .filter(pl.col("match_probability") >= config.threshold)
        .collect()
    )
    answers = answered_rows(config, records[config.id_column])  # a person's: non-matches are kept apart
    labels = cluster_labels(
        records.height,
        edges["left"].to_numpy(),
        edges["right"].to_numpy(),
        edges["match_probability"].to_numpy(),
        config.threshold,
        config.clustering,
        apart=said_different(answers),
    )
    total = np.zeros(records.height)
    count = np.zeros(records.height, dtype=np.int64)
    for path in scores:  # one piece in memory at a time
        part = pl.read_parquet(path)
        t, c = confidence_sums(
            labels, part["left"].to_numpy(), part["right"].to_numpy(), part["match_probability"].to_numpy()
        )
        total += t
        count += c
    clusters = cluster_frame(records, config.id_column, labels, total, count)
    save_components(components(records.height, edges["left"].to_numpy(), edges["right"].to_numpy()), Path(dest))
    if answers is not None:
        save_answers(answer_ids(records[config.id_column], answers), Path(dest))
    return write_parquet(clusters, Path(dest) / "clusters.parquet")


def save_components(labels: np.ndarray, folder: Path) -> Path:
    """Each record's component of the match graph (the edges at or above the threshold), in
    record order: published with the embeddings, so that an update that only adds records joins
    the master's components by the new matches instead of reading all of the master's match
    edges again (0.3 s of a 1M-record update). The labels are numbers without meaning of their
    own; records with the same number are connected."""
    return write_parquet(pl.DataFrame({"component": labels.astype(np.int64)}), folder / COMPONENTS)


def answer_ids(ids: pl.Series, answers: Answers) -> pl.DataFrame:
    """Answers by row as answers by id (``left_id``, ``right_id`` as text, ``label``)."""
    left, right, is_match = answers
    frame = pl.DataFrame({"left_id": ids.gather(left), "right_id": ids.gather(right)})
    label = pl.Series("label", np.where(is_match, "match", "non-match"), dtype=pl.String)
    return frame.select(pl.all().cast(pl.String)).with_columns(label)


def save_answers(answers: pl.DataFrame, folder: Path) -> Path:
    """The answers a run applied (``answer_ids``): published beside the components, so that an
    update applies them as the run did (they decide their pairs, clusters keep non-matches apart)."""
    return write_parquet(answers, folder / ANSWERS)


def load_answers(folder: Path, ids: pl.Series) -> Answers | None:
    """``save_answers``' answers as row positions of ``ids`` (answers naming a record ``ids`` no
    longer holds left out), or None when ``folder`` has none."""
    path = folder / ANSWERS
    if not path.is_file():
        return None
    return labelled_rows(pl.read_parquet(path).with_columns(pl.lit(None, pl.Float64).alias("time")), ids)


def load_components(folder: Path, records: int) -> np.ndarray | None:
    """``save_components``' labels, or None when ``folder`` has none for ``records`` records
    (an output of an older version)."""
    path = folder / COMPONENTS
    if not path.is_file():
        return None
    labels = pl.read_parquet(path)["component"].to_numpy()
    return labels if len(labels) == records else None


def candidate_count(candidates: str | Path) -> int:
    return pl.scan_parquet(candidates).select(pl.len()).collect().item()
