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
    elif kind is FieldKind.number:
        return number_expr(expr).cast(pl.String).alias(column)
    return _tidy(expr).alias(column)


# a number as people write it: digits grouped by commas, dots, spaces or apostrophes, a decimal part
NUMBER = r"-?\d+(?:[,.' \u2019]\d{3})*(?:[.,]\d+)?"


def number_expr(text: pl.Expr) -> pl.Expr:
    """The first number in each value, as a float (null where there is none).

    ``$1,299.00``, ``1.299,00 EUR``, ``1 299,00`` and ``1299`` are one number. A value with both
    a comma and a dot takes the later as the decimal mark; a lone comma before exactly three
    digits groups thousands (``1,299``), otherwise it is the decimal mark (``59,99``); a lone
    dot is the decimal mark unless it groups more than one block of three (``1.299.000``).
    """
    found = text.str.extract(NUMBER, 0).str.replace_all(r"[' \u2019]", "")
    comma, dot = found.str.contains(",", literal=True), found.str.contains(".", literal=True)
    comma_decimal = found.str.contains(r"\..*,")  # both, the comma later: 1.299,00
    grouped_commas = found.str.contains(r"^-?[1-9]\d{0,2}(,\d{3})+$")
    grouped_dots = found.str.contains(r"^-?[1-9]\d{0,2}(\.\d{3}){2,}$")
    plain = (
        pl.when(comma & dot & comma_decimal)
        .then(found.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True))
        .when(comma & dot)
        .then(found.str.replace_all(",", "", literal=True))
        .when(comma & grouped_commas)
        .then(found.str.replace_all(",", "", literal=True))
        .when(comma)
        .then(found.str.replace(",", ".", literal=True))
        .when(dot & grouped_dots)
        .then(found.str.replace_all(".", "", literal=True))
        .otherwise(found)
    )
    return plain.cast(pl.Float64, strict=False)


def read_numbers(values: pl.Series) -> pl.Series:
    """``number_expr`` of every value of a series (Float64, null where no number reads)."""
    return values.to_frame("v").select(number_expr(pl.col("v"))).to_series()


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


# an amount as a value of its own: a number (thousands grouped or not, one decimal mark) with at
# most a few non-digits around it ($, EUR, kg)
AMOUNT = r"^\D{0,4}-?\d{1,3}(?:[,.' ]?\d{3})*(?:[.,]\d{1,2})?\D{0,4}$"
DECIMALS_OR_CURRENCY = r"[.,]\d{1,2}\D{0,4}$|[$€£¥]"
AMOUNT_SHARE = 0.95


def _amount_share(sample: pl.DataFrame) -> float | None:
    """The share of ``sample``'s values that are amounts, if they are what the field holds (see
    ``fields_as_read``), else None."""
    values = sample["value"].cast(pl.String).str.strip_chars()
    if values.len() == 0:
        return None
    share = float(values.str.contains(AMOUNT).mean())
    decimals = float(values.str.contains(DECIMALS_OR_CURRENCY).mean())
    return share if share >= AMOUNT_SHARE and decimals >= 0.5 else None


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
    - Such a field whose values are amounts (``AMOUNT``: all but ``1 - AMOUNT_SHARE`` of them a
      number with at most a currency or unit around it, half of them or more with decimals or a
      currency sign) holds prices or measures: it is read as ``number``, compared by how far
      apart the numbers are, not digit by digit. Phone numbers, postcodes and ids are whole
      numbers, so they stay codes. Declared ``code``, prices are compared as strings (59.99 and
      59.90 close, 59.99 and 61.00 not) and blocked on exactly (SIGMOD X2: 5,448 candidate
      pairs, 41 of them true).
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
        amounts = _amount_share(sample)
        if amounts is not None:
            kinds[field] = FieldKind.number
            notes.append(
                f"fields.{field}: declared {kind.value}, but {amounts:.0%} of its values are amounts with "
                "decimals or a currency: read as number (compared by how far apart they are); declare it "
                "number to silence this"
            )
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
