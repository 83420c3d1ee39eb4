"""Value normalisation shared by blocking and encoding.

Blocking keys and encoder inputs must agree on what "the same value" means, so both read the
normalised table this module builds: lower case, accents folded, punctuation handled per field
kind, whitespace collapsed, and empty strings turned into nulls. All polars expressions, no
Python loop over records.
"""

from __future__ import annotations

import polars as pl

from dedup.config import DedupConfig, FieldKind
from dedup.errors import InputError
from dedup.evidence import LONG_TEXT_WORDS


def _base(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()


def _tidy(expr: pl.Expr) -> pl.Expr:
    """Collapse whitespace, trim, and turn empty strings into nulls."""
    tidy = expr.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(tidy.str.len_chars() > 0).then(tidy).otherwise(None)


def normalise_expr(column: str, kind: FieldKind) -> pl.Expr:
    """The polars expression that normalises ``column`` as a field of ``kind``."""
    expr = _base(pl.col(column))
    if kind is FieldKind.name:
        expr = expr.str.replace_all(r"[-_./,]", " ").str.replace_all(r"[^\p{L}\p{N} ]", "")
    elif kind is FieldKind.text:
        expr = expr.str.replace_all(r"[^\p{L}\p{N}@.]+", " ")
    elif kind is FieldKind.date:
        expr = expr.str.replace_all(r"\D", "")
    elif kind is FieldKind.code:
        expr = expr.str.replace_all(r"[^\p{L}\p{N}]", "")
    elif kind is FieldKind.category:
        expr = expr.str.replace_all(r"[^\p{L}\p{N}]+", " ")
    return _tidy(expr).alias(column)


def normalise_fields(records: pl.DataFrame, config: DedupConfig) -> pl.DataFrame:
    """One normalised string column per configured field, in input row order.

    Each distinct value is normalised once and joined back: names, dates and cities repeat,
    and the chain of string operations costs more than the join (1M generated people: 3.3 s
    -> 1.5 s, the same table)."""
    columns = []
    for f, kind in config.fields.items():
        values = records.get_column(f).cast(pl.String).alias("value").to_frame().lazy()  # any name, even "*"
        table = values.unique().with_columns(normalise_expr("value", kind).alias("normalised"))
        joined = values.join(table, on="value", how="left", maintain_order="left", nulls_equal=True)
        columns.append(joined.select(pl.col("normalised").alias(f)))
    return pl.concat(pl.collect_all(columns), how="horizontal") if columns else records.select()


READ_AS_TEXT = (FieldKind.name, FieldKind.code, FieldKind.category)  # kinds a field of free text can be mistaken for
KIND_SAMPLE = 10_000  # values a field's kind is read on


def _empty(present: pl.DataFrame, kind: FieldKind) -> bool:
    """Whether every distinct value of ``present`` normalises to nothing (``"--"``, ``"n/a"``)."""
    return present.unique().select(normalise_expr("value", kind).is_null().all()).item()


def fields_as_read(records: pl.DataFrame, config: DedupConfig, origin: str) -> tuple[DedupConfig, list[str]]:
    """The config with its fields as the data shows them, and one line per field read otherwise.

    - A field null (or blank) in every row tells nothing: it is set aside, as a field missing
      on one side of a pair is neutral. An extract where an optional column happens to be
      empty still runs (Cora's ``institution`` and SIGMOD X2's ``category`` are empty in a tenth
      of their entities). Only when every field is empty is there nothing to compare: an
      ``InputError`` naming ``origin``.
    - A ``name``, ``code`` or ``category`` field whose values hold ``LONG_TEXT_WORDS`` words or
      more with a letter in them (the median non-null value) holds titles or descriptions: it
      is read as ``text``, so it gets word-level evidence (rare words, model numbers) and token
      blocking. Declared otherwise, product titles lost every such signal (label-free cluster
      pair-F1, ``benchmarks/realdata.py --declare KIND``): every field declared ``name``,
      Abt-Buy 0.054, SIGMOD X1 0.285, X2 0.082; declared ``code`` (spaces dropped) 0.013, 0.205,
      0.072. Person and place names, phone numbers, postcodes and prices hold fewer words with
      letters (digit groups are not counted); dates are never read otherwise.
    """
    kinds, notes = dict(config.fields), []
    for field, kind in config.fields.items():
        # a fixed sample of the values decides (every value up to KIND_SAMPLE): reading all of
        # them twice took 9 s at 1M records
        present = records.select(pl.col(field).drop_nulls().alias("value"))
        sample = present.sample(min(present.height, KIND_SAMPLE), seed=0) if present.height else present
        if sample.select(normalise_expr("value", kind).is_null().all()).item() and _empty(present, kind):
            del kinds[field]
            notes.append(f"fields.{field}: null in every row, so it tells nothing: left out of the comparison")
            continue
        if kind not in READ_AS_TEXT:
            continue
        values = sample.select(normalise_expr("value", FieldKind.name)).to_series().drop_nulls()
        words = values.str.count_matches(r"\S*\p{L}\S*").median()
        if words is not None and words >= LONG_TEXT_WORDS:
            kinds[field] = FieldKind.text
            notes.append(
                f"fields.{field}: declared {kind.value}, but its values hold {words:.0f} words (median): "
                f"read as text (word-level evidence, token blocking); declare it text to silence this"
            )
    if not kinds:
        raise InputError(f"{origin}: every field is null in every row, so there is nothing to compare")
    if not notes:
        return config, notes
    return config.model_copy(update={"fields": kinds}), notes
