"""Incremental runs: new, corrected and deleted records join a previous run's clusters.

``update`` takes a finished output (the master) and a file of changes, and publishes a new
result with the previous run's model (no retraining). Its cost grows with the changed records,
not with the master: only pairs that involve a changed record are scored; the master's other
pairs, embeddings and clusters' ids are reused.

1. Records: the master's rows (corrected ones replaced in place, deleted ones dropped), then the
   new rows. A change file may carry an ``op`` column: ``upsert`` (the default) or ``delete``.
2. Candidates: each rule pass joins the changed records' keys against every record's (block
   passes), or runs and keeps the pairs touching a changed record (the other passes); the
   embedding passes look up the changed records' nearest neighbours among all records, using
   the master's published embeddings and encoding only the changed records.
3. Scores: the new candidate pairs, with the previous model and the value frequencies of the
   updated records; the master's pairs between unchanged records are kept as they were.
4. Clusters: only the match-graph components that hold a changed record, or held a corrected or
   deleted one, are clustered again (:func:`_cluster_touched`); the others keep their clusters.
   The components are the master's stored ones (``components.parquet``) joined by the new
   matches when records were only added, else counted again from every match edge.
5. Stable ids (:func:`stable_cluster_ids`); ``changes.parquet`` lists every record whose
   cluster changed.

When records were only added, nothing of the master is rewritten: its pair files, embeddings and
normalised fields are hard-linked into the new result, which adds one part of each for the new
records (:class:`PairFiles`, :class:`Embeddings`), and the charts add the new pairs' bins to the
master's. A correction or deletion rewrites them whole.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from dedup.blocking import (
    CandidatePairs,
    EmbeddingPass,
    ExactPass,
    estimate_pass,
    key_frame,
    pass_allowed,
    run_pass,
    union_pairs,
    vectors_of,
)
from dedup.charts import add_counts, pair_counts, read_counts, write_charts
from dedup.clustering import cluster_frame, cluster_labels, components, confidence_sums, input_renames
from dedup.encoder import FieldEmbeddings, gather_field, stack_field
from dedup.errors import BlockingError, InputError
from dedup.fingerprint import file_digest, model_fingerprint
from dedup.frequencies import field_statistics
from dedup.io import (
    check_input_file,
    check_run_output,
    disk_full_is_an_output_error,
    model_path,
    prepare_output_dir,
    read_clusters,
    read_table,
    validate_records,
    write_json,
    write_parquet,
    write_parquet_lazy,
)
from dedup.lock import output_lock
from dedup.model import DedupModel
from dedup.neighbours import nearest_neighbours
from dedup.normalise import normalise_fields
from dedup.parts import (
    Answers,
    answer_ids,
    load_answers,
    load_components,
    said_different,
    save_answers,
    save_components,
    save_embeddings,
    stored_field,
    with_answers,
)
from dedup.publish import checkpoint, flushing, place, publish_generation, remove_leftovers, run_dir
from dedup.report import result_counts
from dedup.scoring import score_pairs
from dedup.threads import map_side_by_side
from dedup.word_counts import (
    UpdatedWords,
    count_parts,
    merged_counts,
    part_name,
    read_word_counts,
    text_fields,
    updated_words,
)

log = logging.getLogger("dedup")

OP_COLUMN = "op"
REASONS = ("new", "joined", "merged", "split", "updated", "deleted")


def update(
    changes_path: str | Path,
    previous: str | Path,
    output: str | Path | None = None,
    logger: logging.Logger | logging.LoggerAdapter = log,
    ledger_entry: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Apply the records in ``changes_path`` to the run in ``previous``; publish to ``output``
    (default: ``previous`` itself, as a new generation). Returns the report. ``ledger_entry``
    is added to the report's ledger of applied files (see :func:`apply_inbox`)."""
    previous = Path(previous)
    output = Path(output) if output is not None else previous
    prepare_output_dir(output)
    with output_lock(output), disk_full_is_an_output_error(output):
        remove_leftovers(output)
        return _update(Path(changes_path), previous, output, logger, ledger_entry)


def apply_inbox(
    inbox: str | Path, master: str | Path, logger: logging.Logger | logging.LoggerAdapter = log
) -> list[str]:
    """Apply every change file in ``inbox`` (``*.parquet``, ``*.csv``, in name order) to ``master``
    exactly once; returns the names applied now.

    The ledger of applied files (name and content SHA-256) is ``report.json`` → ``ledger``, so it
    is published in the same atomic switch as the result it describes: after a crash (kill -9
    included) at any moment, a file is either in the result and the ledger, or in neither, and
    the next call applies exactly the files still missing. A file whose content was applied
    before (under any name) is skipped.
    """
    return [path.name for path in inbox_files(inbox) if apply_file(path, master, logger)]


def inbox_files(inbox: str | Path) -> list[Path]:
    """The change files in a folder, in the order they are applied (by name)."""
    suffixes = (".parquet", ".csv", ".tsv")
    return sorted(p for p in Path(inbox).iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def apply_file(path: str | Path, master: str | Path, logger: logging.Logger | logging.LoggerAdapter = log) -> bool:
    """Apply one change file to ``master`` unless its content is in the ledger; True if applied."""
    path, master = Path(path), Path(master)
    digest = file_digest(path)
    ledger = json.loads((run_dir(master) / "report.json").read_text()).get("ledger", [])
    if digest in {entry["sha256"] for entry in ledger}:
        return False
    logger.info("applying %s", path.name)
    update(path, master, master, logger, ledger_entry={"file": path.name, "sha256": digest})
    return True


def _update(
    changes_path: Path,
    previous: Path,
    output: Path,
    logger: logging.Logger | logging.LoggerAdapter,
    ledger_entry: dict[str, str] | None = None,
) -> dict:
    clock: dict[str, float] = {}
    start = time.perf_counter()
    master = check_run_output(previous, ("clusters.parquet", "pairs.parquet", "report.json"))
    report_before = json.loads((master / "report.json").read_text())
    model_dir = model_path(master, report_before)
    model = DedupModel.load(model_dir)
    config = model.config
    id_col = config.id_column
    inputs, outputs = read_clusters(master)
    upserts, deletes = _read_changes(changes_path, config, inputs)
    records, changed, before = _merge(inputs, outputs, upserts, deletes, id_col)
    master_rows = before["_first"].to_numpy()[~changed].astype(np.int64)  # unchanged records' master rows
    only_added = np.array_equal(master_rows, np.arange(inputs.height))  # records only added, after the master's
    normalised = _normalised(master, records, config, inputs.height if only_added else 0)
    stays = np.zeros(inputs.height, dtype=bool)
    stays[master_rows] = True
    gone = np.flatnonzero(~stays)  # deleted or corrected master rows: their old values leave
    stored = _stored_words(master, config, normalised.filter(pl.Series(changed)), inputs, gone)
    clock["read"] = _lap(start)

    embeddings = _embeddings(master, model, normalised, changed, master_rows, inputs.height, only_added)
    clock["encode"] = _lap(start, clock)
    pairs = _candidates(records, normalised, config, embeddings, changed, _skipped_passes(report_before, config))
    clock["block"] = _lap(start, clock)
    scored, words = _score(model, normalised, records[id_col], embeddings, pairs, stored)
    answers = load_answers(master / "embeddings", records[id_col])  # a person's, as the master applied them
    scored = with_answers(scored, answers, pairs)
    scored = scored.with_columns((pl.col("match_probability") >= config.threshold).alias("is_match"))
    master_pairs = pl.scan_parquet(master / "pairs.parquet")
    scored = scored.select(
        pl.col(c).cast(t) if c in scored.columns else pl.lit(None, t).alias(c)  # a label nobody gave here
        for c, t in master_pairs.collect_schema().items()
    )
    clock["score"] = _lap(start, clock)

    kept = master_pairs if only_added else _kept_pairs(master, id_col, records[id_col].filter(~pl.Series(changed)))
    done = _cluster_touched(
        master / "pairs.parquet",
        kept,
        scored,
        records[id_col],
        inputs[id_col],
        outputs,
        before,
        changed,
        config,
        answers,
    )
    clusters = cluster_frame(records, id_col, done.labels, done.total, done.count)
    ids, changes = _settled_ids(done.labels, done.touched, before, records[id_col], changed, deletes, id_col)
    clusters = clusters.with_columns(ids.alias("cluster_id"))
    clock["cluster"] = _lap(start, clock)

    corrected = int(before["corrected"].sum())
    report = _report(report_before, config, records, clusters, done.counted, len(pairs), changes, corrected, clock)
    report["updated_from"] = {"output": str(previous), "run": report_before.get("run")}
    report["ledger"] = report_before.get("ledger", []) + ([ledger_entry] if ledger_entry else [])
    report["input"] = str(changes_path)
    report["renamed_input_columns"] = input_renames(records.columns)
    pair_files = PairFiles(master / "pairs.parquet", kept, scored, embeddings.linked, embeddings.start)
    _publish(
        output,
        model_dir,
        clusters,
        pair_files,
        changes,
        embeddings,
        normalised,
        report,
        config,
        stored,
        words,
        done.component,
        None if answers is None else answer_ids(records[id_col], answers),
    )
    logger.info(
        "%d records (%d new, %d corrected, %d deleted) -> %d clusters; %d pairs scored, %d kept",
        records.height,
        report["update"]["new_records"],
        report["update"]["corrected_records"],
        report["update"]["deleted_records"],
        report["counts"]["clusters"],
        len(pairs),
        done.counted["kept"],
    )
    return report


def _lap(start: float, clock: dict[str, float] | None = None) -> float:
    """Seconds since ``start`` not yet booked in ``clock``."""
    return round(time.perf_counter() - start - sum((clock or {}).values()), 4)


# ---- 1. records -----------------------------------------------------------------------------
def _read_changes(path: Path, config, inputs: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """(records to insert or correct, ids to delete), checked against the master's columns."""
    table = read_table(check_input_file(path))
    origin = str(path)
    id_col = config.id_column
    if id_col not in table.columns:
        raise InputError(f"{origin}: no id column {id_col!r} (the file has: {', '.join(table.columns)})")
    if OP_COLUMN in table.columns and OP_COLUMN not in inputs.columns:
        ops = table[OP_COLUMN].cast(pl.String).fill_null("upsert").str.to_lowercase()
        bad = table.with_row_index("_row").filter(~ops.is_in(["upsert", "delete"]))
        if bad.height:
            raise InputError(
                f"{origin}: column {OP_COLUMN!r} must be 'upsert' or 'delete', got {bad[OP_COLUMN][0]!r} "
                f"at row {bad['_row'][0]}"
            )
        deletes = table.filter(ops == "delete")[id_col]
        table = table.filter(ops != "delete").drop(OP_COLUMN)
    else:
        deletes = table[id_col].clear()
    extra = [c for c in table.columns if c not in inputs.columns]
    missing = [c for c in inputs.columns if c not in table.columns]
    if extra or missing:
        raise InputError(
            f"{origin}: the columns differ from the previous run's input"
            + (f"; missing: {', '.join(map(repr, missing))}" if missing else "")
            + (f"; not in the previous input: {', '.join(map(repr, extra))}" if extra else "")
        )
    try:
        table = table.select(pl.col(c).cast(inputs.schema[c]) for c in inputs.columns)
        deletes = deletes.cast(inputs.schema[id_col])
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{origin}: values do not fit the previous input's column types: {exc}") from None
    if table.height:
        validate_records(table, config, origin)
    unknown = deletes.filter(~deletes.is_in(inputs[id_col].implode()))
    if unknown.len():
        raise InputError(f"{origin}: cannot delete id(s) the previous run does not hold: {unknown.head(5).to_list()}")
    both = deletes.filter(deletes.is_in(table[id_col].implode()))
    if both.len():
        raise InputError(f"{origin}: id(s) both upserted and deleted: {both.head(5).to_list()}")
    return table, deletes


def _merge(
    inputs: pl.DataFrame, outputs: pl.DataFrame, upserts: pl.DataFrame, deletes: pl.Series, id_col: str
) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    """The updated records (master rows, corrected in place, minus deletions; then new rows),
    which rows changed, and per row its previous cluster and first-seen position (null if new)."""
    master = inputs.with_columns(
        outputs["cluster_id"].alias("_cluster_before"), pl.int_range(inputs.height).alias("_first")
    )
    master = master.filter(~pl.col(id_col).is_in(deletes.implode()))
    corrected = upserts.filter(pl.col(id_col).is_in(master[id_col].implode()))
    fresh = upserts.filter(~pl.col(id_col).is_in(master[id_col].implode()))
    if corrected.height:  # a correction replaces the whole record, nulls included
        replacement = corrected.rename({c: f"_new_{c}" for c in corrected.columns if c != id_col})
        master = master.join(
            replacement.with_columns(pl.lit(True).alias("_hit")), on=id_col, how="left", maintain_order="left"
        )
        master = master.with_columns(
            pl.when(pl.col("_hit")).then(pl.col(f"_new_{c}")).otherwise(pl.col(c)).alias(c)
            for c in inputs.columns
            if c != id_col
        ).drop([f"_new_{c}" for c in inputs.columns if c != id_col] + ["_hit"])
    records = pl.concat([master.select(inputs.columns), fresh], how="vertical_relaxed")
    changed = np.concatenate(
        [master[id_col].is_in(corrected[id_col].implode()).to_numpy(), np.ones(fresh.height, dtype=bool)]
    )
    none = pl.Series([None] * fresh.height)
    before = pl.DataFrame(
        {
            "cluster_id": pl.concat([master["_cluster_before"], none.cast(outputs["cluster_id"].dtype)]),
            "_first": pl.concat([master["_first"].cast(pl.Int64), none.cast(pl.Int64)]),
            "corrected": changed & (np.arange(records.height) < master.height),
        }
    )
    return records, changed, before


# ---- 2. candidates --------------------------------------------------------------------------
@dataclass(frozen=True)
class Embeddings:
    """Every record's embeddings as the pieces they came in: the master's published files and
    the changed records' tables (encoded now). A file is mapped only while one field is read
    from it, so scoring a few records' pairs holds the table rows they use (``take``), not the
    master's tables; the embedding pass and a rewrite stack them (``everyone``). ``linked``:
    the update only adds records, so the master's files go into the new result as they are and
    only the changed rows (from row ``start``) are written."""

    files: list[Path]  # the master's embedding files, in record order
    fresh: FieldEmbeddings  # the changed records' (every record's when there are no files)
    order: np.ndarray  # per record, its row in the files' codes and then ``fresh``'s
    linked: bool
    start: int = 0

    def take(self, rows: np.ndarray) -> FieldEmbeddings:
        """The records at ``rows``, the fields side by side (``side_by_side``: each is mostly
        reading its table rows from the mapped files)."""
        fields, order = self.fresh.fields, self.order[rows]
        done = list(map_side_by_side(lambda j: gather_field(self._pieces(j, fields[j]), order), range(len(fields))))
        return FieldEmbeddings.from_fields(fields, done)

    def everyone(self) -> FieldEmbeddings:
        tables, codes = {}, {}
        for j, f in enumerate(self.fresh.fields):
            tables[f], stacked = stack_field(self._pieces(j, f))
            codes[f] = stacked[self.order]
        return FieldEmbeddings(tables, codes)

    def written(self) -> FieldEmbeddings:
        """The rows to write to a file of their own: the changed ones, or every record."""
        return self.fresh if self.linked else self.everyone()

    def _pieces(self, j: int, field: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Field ``j``'s ``(table, codes)`` per piece; the files' are mapped until let go."""
        return stored_field(self.files, j) + [(self.fresh.tables[field], self.fresh.codes[field])]


def _normalised(master: Path, records: pl.DataFrame, config, kept: int) -> pl.DataFrame:
    """Every record's normalised fields: the master's stored ones (``normalised-*.parquet``,
    beside its embeddings) for its first ``kept`` rows when records were only added, and the
    rest normalised now; all of them normalised now when the master has none for those rows."""
    files = sorted((master / "embeddings").glob("normalised-*.parquet"))
    if kept and files:
        stored = pl.read_parquet(files)
        if stored.height == kept and stored.columns == config.field_names:
            return pl.concat([stored, normalise_fields(records.slice(kept), config)])
    return normalise_fields(records, config)


def _embeddings(
    master: Path,
    model: DedupModel,
    normalised: pl.DataFrame,
    changed: np.ndarray,
    master_rows: np.ndarray,
    master_count: int,
    only_added: bool,
) -> Embeddings:
    """Every record's embeddings: the master's published ones for unchanged rows (``master_rows``:
    their rows among the master's ``master_count``), the model's for changed rows (all rows
    when the master has none, e.g. it was written by an older version)."""
    files = sorted((master / "embeddings").glob("embeddings-*.npz"))
    if not files:
        return Embeddings([], model.embed(normalised), np.arange(normalised.height), linked=False)
    fresh = model.embed(normalised.filter(pl.Series(changed)))
    order = np.empty(normalised.height, np.int64)
    order[~changed] = master_rows
    order[changed] = master_count + np.arange(int(changed.sum()))
    return Embeddings(files, fresh, order, linked=only_added, start=master_count if only_added else 0)


def _skipped_passes(report: dict, config) -> list[bool] | None:
    """Per pass, whether the master's run skipped it (a default pass on a field with few
    values); None when its report does not say (an older version's), so the passes are
    estimated again."""
    entries = report.get("blocking")
    names = [p.name for p in config.passes]
    if not isinstance(entries, list) or [e.get("pass") for e in entries] != names:
        return None
    return [bool(e.get("skipped")) for e in entries]


def _candidates(
    records: pl.DataFrame,
    normalised: pl.DataFrame,
    config,
    embeddings: Embeddings,
    changed: np.ndarray,
    skipped: list[bool] | None = None,
) -> CandidatePairs:
    """Candidate pairs with at least one changed record, each with the first pass that found it.

    A pass the master's run skipped is skipped here too, and one it ran runs without estimating
    the whole pass again (``skipped``, from the master's report): the update's key passes make
    only the changed records' pairs, which ``_block_changed`` counts before it joins.
    """
    per_pass = []
    changed_rows = np.flatnonzero(changed)
    for i, p in enumerate(config.passes):
        if isinstance(p, EmbeddingPass):
            per_pass.append(_embedding_neighbours(embeddings, changed_rows, p))
            continue
        if skipped is not None and skipped[i]:
            per_pass.append((np.empty(0, np.int64),) * 2)
        elif skipped is None and not pass_allowed(estimate_pass(records, normalised, p), p, config, records.height):
            per_pass.append((np.empty(0, np.int64),) * 2)
        elif isinstance(p, ExactPass):
            per_pass.append(_block_changed(records, normalised, p, changed, config.blocking_max_pairs))
        else:  # sorted neighbourhood and token passes depend on their neighbours: run, then keep
            left, right = run_pass(records, normalised, p)
            touch = changed[left] | changed[right]
            per_pass.append((left[touch], right[touch]))
    return union_pairs(per_pass, tuple(p.name for p in config.passes))


def _block_changed(
    records: pl.DataFrame, normalised: pl.DataFrame, p: ExactPass, changed: np.ndarray, limit: int
) -> tuple:
    """An exact-key pass for the changed records only: their keys joined against everyone's,
    refused (like a run's pass) when that would make more than ``limit`` pairs."""
    keys = key_frame(records, normalised, p)
    names = [c for c in keys.columns if c != "_row"]
    mine = keys.filter(pl.Series(changed[keys["_row"].to_numpy()]))
    near = keys.join(mine.select(names).unique(), on=names, how="semi")  # in a changed record's block
    blocks = mine.group_by(names).len("mine").join(near.group_by(names).len("all"), on=names)
    m, a = blocks["mine"].cast(pl.Int64).to_numpy(), blocks["all"].cast(pl.Int64).to_numpy()
    made = int((m * (a - m) + m * (m - 1) // 2).sum())  # with the others in their block, and among themselves
    if made > limit:
        top = blocks.sort("all", descending=True).head(3)
        shown = ", ".join("/".join(str(v) for v in row[:-2]) + f" ({row[-1]} records)" for row in top.iter_rows())
        raise BlockingError(
            f"blocking pass {p.name} would give the changed records {made:,} candidate pairs, more than the "
            f"limit {limit:,} (blocking_max_pairs); largest blocks: {shown}. Add a key to this pass or remove it."
        )
    found = mine.join(near, on=names, suffix="_other").filter(pl.col("_row") != pl.col("_row_other"))
    return found["_row"].to_numpy().astype(np.int64), found["_row_other"].to_numpy().astype(np.int64)


def _embedding_neighbours(embeddings: Embeddings, changed_rows: np.ndarray, p: EmbeddingPass) -> tuple:
    """The changed records' ``k`` nearest neighbours among all records (both directions: a changed
    record can also be among an unchanged one's nearest, which the full run would find)."""
    vectors = vectors_of(embeddings.everyone())  # gathered from the tables: the 1M vectors are 2 GB
    left, right = nearest_neighbours(vectors.take(changed_rows), vectors, p.k + 1, p.min_similarity, method=p.method)
    left = changed_rows[left]
    keep = left != right
    return left[keep], right[keep]


def _kept_pairs(master: Path, id_col: str, unchanged: pl.Series) -> pl.LazyFrame:
    """The master's scored pairs between records that did not change (a lazy, streamed filter)."""
    ids = unchanged.implode()
    return pl.scan_parquet(master / "pairs.parquet").filter(
        pl.col(f"{id_col}_l").is_in(ids) & pl.col(f"{id_col}_r").is_in(ids)
    )


# ---- 3. scores ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredWords:
    """The master's text-field word counts (``dedup.word_counts``: per field position, its
    parts and their sum) and the values that come (``added``) and go (``removed``: deleted
    records' and the old values of corrected ones), normalised."""

    fields: dict[int, str]  # the text fields by position
    parts: dict[int, list[Path]]
    tables: dict[str, pl.DataFrame]
    added: pl.DataFrame
    removed: pl.DataFrame


def _stored_words(
    master: Path, config, added: pl.DataFrame, inputs: pl.DataFrame, gone: np.ndarray
) -> StoredWords | None:
    """The master's word counts, or None when it has none (written by an older version, or no
    text field): the update then counts every record's words again."""
    fields = text_fields(config)
    parts = {j: count_parts(master / "embeddings", j) for j in fields}
    if not fields or not all(parts.values()):
        return None
    tables = {fields[j]: read_word_counts(found) for j, found in parts.items()}
    removed = normalise_fields(inputs.select(pl.all().gather(gone)), config)
    return StoredWords(fields, parts, tables, added, removed)


def _score(
    model: DedupModel,
    normalised: pl.DataFrame,
    ids: pl.Series,
    embeddings: Embeddings,
    pairs: CandidatePairs,
    stored: StoredWords | None,
) -> tuple[pl.DataFrame, dict[str, UpdatedWords]]:
    """The pairs scored like a run's, from the statistics of the records they hold only (their
    rarity counted over every record): a few changed records' pairs need no word vector of
    the million others. Text fields' words are counted from the master's stored counts and
    the changed records' words (``stored``) when the master has them; also returned, to store."""
    rows = np.unique(np.concatenate([pairs.left, pairs.right]))
    local = CandidatePairs(
        np.searchsorted(rows, pairs.left), np.searchsorted(rows, pairs.right), pairs.pass_index, pairs.pass_names
    )
    words = {}
    if stored is not None:
        # the text fields side by side: each is mostly polars scans of every record's value
        found = map_side_by_side(
            lambda f: updated_words(stored.tables[f], normalised[f], stored.added[f], stored.removed[f], rows),
            list(stored.tables),
        )
        words = dict(zip(stored.tables, found, strict=True))
    counted = {f: (w.vocabulary, w.known) for f, w in words.items()}
    statistics = field_statistics(normalised, model.config, rows=rows, counted=counted)
    scored = score_pairs(
        model.config.id_column, model.combiner_, ids.gather(rows), embeddings.take(rows), statistics, local
    )
    return scored, words


# ---- 4. clusters ----------------------------------------------------------------------------
def _ends(pairs: pl.LazyFrame, position: pl.DataFrame, matches_only: bool = False) -> pl.DataFrame:
    """Pairs' row positions (``l``, ``r``) and probabilities (``p``), streamed from their ids."""
    id_col = position.columns[0]
    if matches_only:
        pairs = pairs.filter(pl.col("is_match"))
    ends = pairs.select(f"{id_col}_l", f"{id_col}_r", pl.col("match_probability").alias("p")).collect()
    ends = ends.join(position.rename({id_col: f"{id_col}_l", "_row": "l"}), on=f"{id_col}_l")
    return ends.join(position.rename({id_col: f"{id_col}_r", "_row": "r"}), on=f"{id_col}_r").select("l", "r", "p")


def _positions(ids: pl.Series) -> pl.DataFrame:
    """Each id's row position, for ``_ends``."""
    return pl.DataFrame({ids.name: ids, "_row": pl.int_range(ids.len(), eager=True)})


@dataclass(frozen=True)
class Reclustered:
    """The update's clustering, per record: ``labels`` (see ``_cluster_touched``), confidence sums
    and counts (``total``, ``count``), and its match-graph ``component`` (stored for the next
    update); ``counted``: pairs, matches and kept pairs; ``touched``: the rows clustered again."""

    labels: np.ndarray
    total: np.ndarray
    count: np.ndarray
    counted: dict[str, int]
    touched: np.ndarray
    component: np.ndarray


def _cluster_touched(
    pairs_path: Path,
    kept: pl.LazyFrame,
    scored: pl.DataFrame,
    ids: pl.Series,
    master_ids: pl.Series,
    outputs: pl.DataFrame,
    before: pl.DataFrame,
    changed: np.ndarray,
    config,
    answers: Answers | None = None,
) -> Reclustered:
    """Clusters after the update, re-clustering only what the changed records touch.

    Clustering looks at one component of the match graph at a time (the edges at or above the
    threshold: ``dedup.clustering``). A component that holds no changed record, and held no
    corrected or deleted one before, has the same edges as before and splits as it did: its
    records keep their clusters and confidences. The others are clustered again over their
    pairs (``kept``: the master's pairs that stay; ``scored``: the new ones), with the same rule.
    The components come from the master's stored ones (``dedup.parts.save_components``) joined
    by the new match edges when records were only added; otherwise (or for a master without
    them) the match edges are read whole (a sixth of the pairs at 1M records). Then the pairs
    inside the touched components are read. ``answers``: the ones the master applied; its
    non-matches inside the touched components are kept apart, as a full run keeps them.
    """
    n = ids.len()
    position = _positions(ids)
    master_pairs = pl.scan_parquet(pairs_path)
    first = before["_first"].to_numpy()  # each record's master row (NaN: a new one)
    from_master = ~np.isnan(first)
    seeds = changed.copy()
    unchanged_rows = first[~changed].astype(np.int64)  # the master rows that stay as they were
    only_added = np.array_equal(unchanged_rows, np.arange(master_ids.len()))
    stored = load_components(pairs_path.parent / "embeddings", master_ids.len())  # the master's, if kept
    new_edges = _ends(scored.lazy(), position, True)
    if only_added and stored is not None:  # the master's components, joined by the new matches
        component = grown_components(stored, n, new_edges["l"].to_numpy(), new_edges["r"].to_numpy())
        matches = kept.filter(pl.col("is_match")).select(pl.len()).collect().item() + new_edges.height
    else:
        edges = pl.concat([_ends(kept, position, matches_only=True), new_edges])
        component = components(n, edges["l"].to_numpy(), edges["r"].to_numpy())
        matches = edges.height
    if not only_added:  # a correction or a deletion: what its old component held is touched too
        old_component = stored
        if old_component is None:
            old = _ends(master_pairs, _positions(master_ids), matches_only=True)
            old_component = components(master_ids.len(), old["l"].to_numpy(), old["r"].to_numpy())
        dirty = np.ones(master_ids.len(), dtype=bool)
        dirty[unchanged_rows] = False
        hit = np.isin(old_component, np.unique(old_component[dirty]))  # held a corrected or deleted record
        seeds[~changed] |= hit[unchanged_rows]
    touched = np.isin(component, np.unique(component[seeds]))
    rows = np.flatnonzero(touched)
    inside_ids = ids.gather(rows).implode()
    inside = kept.filter(pl.col(f"{ids.name}_l").is_in(inside_ids) & pl.col(f"{ids.name}_r").is_in(inside_ids))
    ends = pl.concat([_ends(inside, position), _ends(scored.lazy(), position)])
    ends = ends.filter(pl.Series(touched[ends["l"].to_numpy()] & touched[ends["r"].to_numpy()]))
    left, right = np.searchsorted(rows, ends["l"].to_numpy()), np.searchsorted(rows, ends["r"].to_numpy())
    probability = ends["p"].to_numpy()
    apart = said_different(answers)  # a person's non-match answers: kept apart, as in a full run
    local_apart = None
    if apart is not None:
        both = touched[apart[0]] & touched[apart[1]]
        local_apart = (np.searchsorted(rows, apart[0][both]), np.searchsorted(rows, apart[1][both]))
    local = cluster_labels(len(rows), left, right, probability, config.threshold, config.clustering, local_apart)
    # the untouched keep their clusters (numbered by the master's ids), the touched follow
    previous = before["cluster_id"].rank("dense").fill_null(0).to_numpy().astype(np.int64)
    labels = previous.copy()
    labels[rows] = previous.max() + 1 + local
    sums, counts = confidence_sums(local, left, right, probability)
    confidence = np.full(n, np.nan)
    master_confidence = outputs["cluster_confidence"].to_numpy().astype(np.float64)
    confidence[from_master] = master_confidence[first[from_master].astype(np.int64)]
    total, count = np.nan_to_num(confidence, nan=0.0), (~np.isnan(confidence)).astype(np.int64)
    total[rows], count[rows] = sums, counts
    if only_added:  # every master pair is kept: their files say how many
        kept_count = sum(pq.ParquetFile(f).metadata.num_rows for f in pair_parts(pairs_path))
    else:
        kept_count = int(kept.select(pl.len()).collect().item())
    counted = {"pairs": kept_count + scored.height, "matches": matches, "kept": kept_count}
    return Reclustered(labels, total, count, counted, rows, component)


def grown_components(master: np.ndarray, n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The match graph's components once records were only added: the master's (``master``,
    per master row) joined by the new match edges (``left``, ``right``: rows), the new records
    (rows past the master's) alone until an edge joins them. Connected records share a label,
    as in ``components`` of every edge (the labels' numbers differ)."""
    start = np.concatenate([master, master.max(initial=-1) + 1 + np.arange(n - len(master))])
    joined = components(int(start.max(initial=-1)) + 1, start[left], start[right])
    return joined[start]


# ---- 5. stable cluster ids ------------------------------------------------------------------
def cluster_heirs(labels: np.ndarray, previous: pl.Series, first_seen: pl.Series) -> pl.DataFrame:
    """Per previous cluster (``previous``), the new label of its oldest surviving record (the
    one first in the master) and that record's position: who inherits the cluster's id."""
    frame = pl.DataFrame({"label": labels, "previous": previous, "first": first_seen})
    return (
        frame.filter(pl.col("previous").is_not_null())
        .sort("first")
        .group_by("previous", maintain_order=True)
        .first()
        .select("previous", "label", "first")
    )


def stable_cluster_ids(
    labels: np.ndarray,
    previous: pl.Series,
    first_seen: pl.Series,
    ids: pl.Series,
    others: pl.Series | None = None,
    every_id: pl.Series | None = None,
) -> pl.Series:
    """One cluster id per record, stable across updates (the README's rules):

    - each previous cluster's id goes to the new cluster holding its oldest surviving record
      (the one that came first in the master): a cluster that only gains records keeps its id,
      and after a split the part holding the oldest record keeps it;
    - a new cluster that inherits several ids (a merge) keeps the one whose oldest record came
      first; the others are retired;
    - a cluster that inherits none (only new records, or the other parts of a split) gets the
      smallest of its record ids that is no cluster's id yet.

    ``others``: the ids of clusters beyond these records, which keep them (see ``_settled_ids``:
    the records given are whole previous clusters); ``every_id``: every record's id, where a
    spare id is looked for in the rare case below (default ``ids``).
    """
    frame = pl.DataFrame({"label": labels, "id": ids})
    heirs = cluster_heirs(labels, previous, first_seen)
    kept = heirs.sort("first").group_by("label", maintain_order=True).first()
    kept = kept.select("label", pl.col("previous").alias("cluster_id"))
    others = kept["cluster_id"].clear() if others is None else others.cast(kept["cluster_id"].dtype)
    used = pl.concat([kept["cluster_id"], others]).implode()
    orphans = frame.filter(~pl.col("label").is_in(kept["label"].implode()))
    free = (
        orphans.filter(~pl.col("id").is_in(used))
        .sort("id")
        .group_by("label", maintain_order=True)
        .first()
        .select("label", pl.col("id").alias("cluster_id"))
    )
    assigned = pl.concat([kept, free.cast({"cluster_id": kept.schema["cluster_id"]})])
    stuck = orphans.filter(~pl.col("label").is_in(assigned["label"].implode()))["label"].unique().sort()
    if stuck.len():  # every member's id names another cluster (rare): any unused record id
        taken = pl.concat([assigned["cluster_id"], others]).implode()
        every_id = ids if every_id is None else every_id
        spare = every_id.filter(~every_id.is_in(taken)).sort().head(stuck.len())
        assigned = pl.concat([assigned, pl.DataFrame({"label": stuck, "cluster_id": spare.cast(ids.dtype)})])
    per_record = pl.DataFrame({"label": labels}).join(assigned, on="label", how="left", maintain_order="left")
    return per_record["cluster_id"].cast(ids.dtype).alias("cluster_id")


def _settled_ids(
    labels: np.ndarray,
    touched: np.ndarray,
    before: pl.DataFrame,
    ids: pl.Series,
    changed: np.ndarray,
    deletes: pl.Series,
    id_col: str,
) -> tuple[pl.Series, pl.DataFrame]:
    """Every record's stable cluster id and the change list, worked out over the ``touched`` rows
    and the rest of their previous clusters only: every other record is in the cluster it was in,
    under the same id, and has no change to list. (At 1M records and 10k new ones, 0.4 s less
    than working it out over every record; the same ids, ``tests/test_update.py``.)"""
    previous = before["cluster_id"]
    whole = np.zeros(len(labels), dtype=bool)
    whole[touched] = True
    whole |= previous.is_in(previous.gather(touched).drop_nulls().implode()).fill_null(False).to_numpy()
    rows = np.flatnonzero(whole)
    part = before[rows]
    settled = stable_cluster_ids(
        labels[rows], part["cluster_id"], part["_first"], ids.gather(rows), previous.filter(~whole), ids
    )
    every = previous.cast(ids.dtype).scatter(rows, settled).alias("cluster_id")
    changes = change_list(ids.gather(rows), part, settled, labels[rows], changed[rows], deletes, id_col)
    return every, changes


def change_list(
    ids: pl.Series,
    before: pl.DataFrame,
    after: pl.Series,
    labels: np.ndarray,
    changed: np.ndarray,
    deletes: pl.Series,
    id_col: str,
) -> pl.DataFrame:
    """``changes.parquet``: each record that is new, corrected, deleted or whose cluster id changed."""
    frame = pl.DataFrame(
        {
            id_col: ids,
            "previous_cluster_id": before["cluster_id"],
            "cluster_id": after,
            "_label": labels,
            "_first": before["_first"],
            "_corrected": before["corrected"],
            "_changed": changed,
        }
    )
    heirs = cluster_heirs(labels, before["cluster_id"], before["_first"]).select(
        pl.col("previous").alias("previous_cluster_id"), pl.col("label").alias("_heir")
    )
    frame = frame.join(heirs, on="previous_cluster_id", how="left", maintain_order="left")
    old_ids = before["cluster_id"].drop_nulls().unique().implode()
    reason = (
        pl.when(pl.col("previous_cluster_id").is_null())
        .then(pl.when(pl.col("cluster_id").is_in(old_ids)).then(pl.lit("joined")).otherwise(pl.lit("new")))
        .when(pl.col("cluster_id") == pl.col("previous_cluster_id"))
        .then(pl.when(pl.col("_corrected")).then(pl.lit("updated")).otherwise(None))
        .when(pl.col("_heir") == pl.col("_label"))
        .then(pl.lit("merged"))
        .otherwise(pl.lit("split"))
    )
    listed = frame.with_columns(reason.alias("reason")).filter(pl.col("reason").is_not_null())
    listed = listed.select(id_col, "previous_cluster_id", "cluster_id", "reason")
    gone = pl.DataFrame({id_col: deletes}).with_columns(
        pl.lit(None).cast(after.dtype).alias("previous_cluster_id"),
        pl.lit(None).cast(after.dtype).alias("cluster_id"),
        pl.lit("deleted").alias("reason"),
    )
    return pl.concat([listed, gone], how="vertical_relaxed").with_columns(pl.col("reason").cast(pl.Enum(list(REASONS))))


# ---- report and publish ---------------------------------------------------------------------
def _report(
    before: dict,
    config,
    records: pl.DataFrame,
    clusters: pl.DataFrame,
    counted: dict[str, int],
    scored: int,
    changes: pl.DataFrame,
    corrected: int,
    clock: dict[str, float],
) -> dict[str, Any]:
    reasons = changes["reason"].cast(pl.String).value_counts()
    by_reason = dict(zip(reasons["reason"].to_list(), reasons["count"].to_list(), strict=True))
    return {
        "counts": result_counts(records.height, counted["pairs"], counted["matches"], clusters),
        "update": {
            "records_before": before["counts"]["records"],
            "new_records": by_reason.get("new", 0) + by_reason.get("joined", 0),
            "corrected_records": corrected,
            "deleted_records": by_reason.get("deleted", 0),
            "pairs_scored": scored,
            "pairs_kept": counted["kept"],
            "changes": {reason: by_reason.get(reason, 0) for reason in REASONS},
        },
        "threshold": config.threshold,
        "timings_seconds": clock,
        "model": "model",
        "prior_weight_bits": before.get("prior_weight_bits"),
        "model_fit": before.get("model_fit"),
    }


PAIR_PARTS = 32  # past this many parts, an update writes pairs.parquet anew as one file


def pair_parts(path: Path) -> list[Path]:
    """The Parquet files behind a run's ``pairs.parquet``: the file itself, or (after updates
    that only added records) the parts in the folder it became, in record order."""
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]


@dataclass(frozen=True)
class PairFiles:
    """An update's pairs: the master's kept ones (``kept``, a scan of ``master``) and the newly
    scored ones. ``linked``: records were only added, so the master's pair files are kept as
    they are and the new pairs become one more part, named by their first record's row
    (``start``), like the embeddings."""

    master: Path
    kept: pl.LazyFrame
    scored: pl.DataFrame
    linked: bool
    start: int

    def write(self, target: Path) -> None:
        parts = pair_parts(self.master)
        if not self.linked or len(parts) + 1 > PAIR_PARTS:
            write_parquet_lazy(pl.concat([self.kept, self.scored.lazy()]), target)
            return
        target.mkdir()
        for i, part in enumerate(parts):  # hard links: a 1M-record master's pairs are never rewritten
            place(part, target / (part.name if self.master.is_dir() else f"part-{i:012d}.parquet"), keep_source=True)
        write_parquet(self.scored, target / f"part-{self.start:012d}.parquet")

    def chart_counts(self, fields: list[str]) -> dict | None:
        """The pairs' chart histograms (``dedup.charts.pair_counts``) from the master's and the new
        pairs' alone, when the master's pairs are all kept; None to count them over every pair."""
        master = read_counts(self.master.parent / "charts", fields) if self.linked else None
        return None if master is None else add_counts(master, pair_counts(self.scored.lazy(), fields))


def _publish(
    output: Path,
    model_dir: Path,
    clusters: pl.DataFrame,
    pairs: PairFiles,
    changes: pl.DataFrame,
    embeddings: Embeddings,
    normalised: pl.DataFrame,
    report: dict[str, Any],
    config,
    stored_words: StoredWords | None,
    words: dict[str, UpdatedWords],
    component: np.ndarray,
    answers: pl.DataFrame | None,
) -> None:
    """The whole updated result as one generation (see ``dedup.publish``), like a full run's."""

    def build(generation: Path) -> None:
        place(model_dir, generation / "model", keep_source=True)  # linked, not copied
        pairs.write(generation / "pairs.parquet")
        write_parquet(clusters, generation / "clusters.parquet")
        write_parquet(changes, generation / "changes.parquet")
        folder = generation / "embeddings"
        folder.mkdir(parents=True)
        stored = sorted(embeddings.files[0].parent.glob("normalised-*.parquet")) if embeddings.files else []
        for piece in [*embeddings.files, *stored] if embeddings.linked else []:  # only records were added: as they are
            place(piece, folder / piece.name, keep_source=True)
        written = embeddings.written()
        if len(written.codes[config.field_names[0]]):
            save_embeddings(written, folder / f"embeddings-{embeddings.start:012d}.npz")
            write_parquet(normalised.slice(embeddings.start), folder / f"normalised-{embeddings.start:012d}.parquet")
        if stored_words is not None:
            _write_word_counts(folder, stored_words, words, embeddings.linked, embeddings.start)
        save_components(component, folder)  # the match graph's, for the next update
        if answers is not None:  # the answers it applied, for the next update
            save_answers(answers, folder)
        counts = pairs.chart_counts(config.field_names)  # the master's plus the new pairs', when they add up
        with flushing(generation):  # what is written so far goes to disk while the charts are drawn
            write_charts(generation, config, counts)
        report["model_fingerprint"] = model_fingerprint(generation / "model")
        report["run"] = generation.name
        write_json(report, generation / "report.json")
        checkpoint("report.json")

    publish_generation(output, build)


def _write_word_counts(
    folder: Path, stored: StoredWords, words: dict[str, UpdatedWords], linked: bool, start: int
) -> None:
    """The word counts after the update: the master's parts (linked) and the change as one more,
    when records were only added (and there are fewer than ``PAIR_PARTS``); else one part."""
    for j, field in stored.fields.items():
        parts = stored.parts[j]
        if linked and len(parts) < PAIR_PARTS:
            for part in parts:
                place(part, folder / part.name, keep_source=True)
            write_parquet(words[field].change, folder / part_name(j, start))
        else:
            write_parquet(merged_counts(stored.tables[field], words[field].change), folder / part_name(j, 0))
