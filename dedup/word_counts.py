"""Text fields' word counts kept beside a run's output, so an update counts only what changed.

Scoring weighs a text field's words by how many records hold them (``dedup.frequencies``), and
which two adjacent words are read as one (``kx tca92`` -> ``kxtca92``) depends on the words some
record writes alone. Counting both again over a 1M-record master cost an update 1.6 of its 9.5
seconds, more than scoring its new pairs. So a run stores, per text field, every word's ``df``
(records holding it: the vocabulary) and ``held`` (records writing it as a word of its own: what
a join may make), in parts like its pairs' (``words-<field>-<first row>.parquet``, summed when
read); an update adds the changed records' counts and stores the difference as one more part.

The counts stay exact, not approximate: a value's words depend on the other records only through
the joins, and a join changes only where a word starts or stops being held by some record
(``held`` crosses zero). The unchanged values holding two adjacent words that make such a word are
counted again with the new words (found by ``str.contains_any`` on the two words, a superset),
so an update's counts equal a recount of every record (``tests/test_word_counts.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dedup.config import DedupConfig
from dedup.frequencies import TOKEN_KINDS, FieldStatistics, Vocabulary, _split, counted_words, words
from dedup.io import write_parquet

COUNTS = {"word": pl.String, "df": pl.Int64, "held": pl.Int64}


def text_fields(config: DedupConfig) -> dict[int, str]:
    """The text fields by position (files are named by position: a name can hold any character)."""
    return {j: f for j, f in enumerate(config.field_names) if config.fields[f] in TOKEN_KINDS}


def part_name(j: int, start: int) -> str:
    return f"words-{j}-{start:012d}.parquet"


def count_parts(folder: Path, j: int) -> list[Path]:
    """Field ``j``'s stored parts in ``folder``, in record order."""
    return sorted(folder.glob(f"words-{j}-*.parquet"))


def save_word_counts(statistics: FieldStatistics, folder: Path) -> list[Path]:
    """Every text field's counts of a whole input (``field_statistics`` of every record) as part 0."""
    written = []
    for j, f in enumerate(statistics.value_ids):
        vocabulary = (statistics.vocabulary or {}).get(f)
        if vocabulary is not None and vocabulary.held is not None:
            table = vocabulary.words.join(vocabulary.held, on="word", how="full", coalesce=True)
            written.append(write_parquet(_tidy(table), folder / part_name(j, 0)))
    return written


def read_word_counts(parts: list[Path]) -> pl.DataFrame:
    """One field's counts, its parts summed (word, df, held)."""
    table = pl.read_parquet(parts) if parts else pl.DataFrame(schema=COUNTS)
    return table if len(parts) == 1 else _tidy(table)


def merged_counts(table: pl.DataFrame, change: pl.DataFrame) -> pl.DataFrame:
    """``table`` with ``change`` added: the counts as one part."""
    return _tidy(pl.concat([table, change]))


@dataclass(frozen=True)
class UpdatedWords:
    """A text field's counts after an update: what ``field_statistics(..., counted=...)`` needs to
    weigh the scored rows' words, and the change to store."""

    vocabulary: Vocabulary  # the df after the update of the rows' words (and of every word that changed)
    known: pl.Series  # the scored rows' adjacent-word joins that some record holds as a word
    change: pl.DataFrame  # word, df, held: added minus removed


def updated_words(
    table: pl.DataFrame, now: pl.Series, added: pl.Series, removed: pl.Series, rows: np.ndarray
) -> UpdatedWords:
    """The counts ``table`` (the master's) after ``removed`` values left and ``added`` ones came;
    ``now``: the field's value in every record after the update; ``rows``: the records to score."""
    delta = _value_delta(added, removed)
    held_change = counted_words(delta, lambda v: _split(v).unique(["row", "word"]), "held")
    crossed = _lookup(held_change.rename({"held": "change"}), table).filter(
        (pl.col("held") > 0) != (pl.col("held") + pl.col("change") > 0)
    )["word"]
    touched = pl.concat([delta["value"], _holding_a_join_of(crossed, now, table)]).unique()
    after = now.filter(now.is_in(touched.implode())).alias("value").value_counts(name="after")
    touched = (
        pl.DataFrame({"value": touched})
        .join(after, on="value", how="left")
        .join(delta, on="value", how="left")
        .with_columns(pl.col("after").fill_null(0).cast(pl.Int64), pl.col("n").fill_null(0))
        .with_columns(before=pl.col("after") - pl.col("n"))
    )
    scored = now.gather(rows)
    held_after = _lookup(_joins(pl.concat([touched["value"], scored])), table, held_change)
    known_before = held_after.filter(pl.col("held") > 0)["word"]
    known_after = held_after.filter(pl.col("held") + pl.col("change") > 0)["word"]
    df_change = pl.concat(
        [
            counted_words(touched.select("value", n="after"), lambda v: words(v, known_after), "df"),
            counted_words(touched.select("value", n=-pl.col("before")), lambda v: words(v, known_before), "df"),
        ]
    )
    change = _tidy(pl.concat([df_change, held_change], how="diagonal"))
    # the rows' words are all the vocabulary's weights are asked for: not the master's every word
    wanted = words(scored, known_after).select("word").unique()
    vocabulary = pl.concat(
        [table.select("word", "df").join(wanted, on="word", how="semi"), change.select("word", "df")]
    )
    vocabulary = vocabulary.group_by("word").agg(pl.col("df").sum()).filter(pl.col("df") > 0)
    present = max(now.len() - now.null_count(), 1)
    return UpdatedWords(Vocabulary(vocabulary, present), known_after, change)


def _value_delta(added: pl.Series, removed: pl.Series) -> pl.DataFrame:
    """Per distinct value, how many more records hold it (value, n)."""
    counts = [
        s.drop_nulls().alias("value").value_counts(name="n").with_columns(pl.col("n").cast(pl.Int64) * sign)
        for s, sign in ((added, 1), (removed, -1))
    ]
    return pl.concat(counts).group_by("value").agg(pl.col("n").sum()).filter(pl.col("n") != 0)


def _lookup(wanted: pl.DataFrame | pl.Series, table: pl.DataFrame, change: pl.DataFrame | None = None) -> pl.DataFrame:
    """``wanted`` words with the master's ``held`` (0 if none) and, given ``change``, its change."""
    frame = wanted.to_frame("word") if isinstance(wanted, pl.Series) else wanted
    frame = frame.join(table.select("word", "held"), on="word", how="left").with_columns(pl.col("held").fill_null(0))
    if change is not None:
        frame = frame.join(change.rename({"held": "change"}), on="word", how="left")
        frame = frame.with_columns(pl.col("change").fill_null(0))
    return frame


def _joins(values: pl.Series) -> pl.Series:
    """Every two adjacent words of the values written as one (a superset of the joins ``words`` tries)."""
    split = _split(values)
    joined = split.select(
        pl.when(pl.col("row") == pl.col("row").shift(-1)).then(pl.col("word") + pl.col("word").shift(-1)).alias("word")
    )
    return joined["word"].drop_nulls().unique()


def _holding_a_join_of(crossed: pl.Series, now: pl.Series, table: pl.DataFrame) -> pl.Series:
    """The distinct values in ``now`` that may hold two adjacent words making a ``crossed`` word:
    those containing ``a b`` for a split ``a`` + ``b`` of the word into two words the master holds."""
    if not crossed.len():
        return now.clear().drop_nulls()
    cuts = (
        pl.DataFrame({"w": crossed})
        .with_columns(i=pl.int_ranges(1, pl.col("w").str.len_chars()))
        .explode("i")
        .drop_nulls("i")
        .select(a=pl.col("w").str.slice(0, pl.col("i")), b=pl.col("w").str.slice(pl.col("i")))
    )
    held = table.filter(pl.col("held") > 0).select("word")
    cuts = cuts.join(held, left_on="a", right_on="word", how="semi").join(
        held, left_on="b", right_on="word", how="semi"
    )
    if not cuts.height:
        return now.clear().drop_nulls()
    patterns = (cuts["a"] + " " + cuts["b"]).unique().to_list()
    return now.filter(now.str.contains_any(patterns)).unique()


def _tidy(table: pl.DataFrame) -> pl.DataFrame:
    """One row per word (word, df, held: Int64, 0 where absent), words that count nothing dropped."""
    table = table.group_by("word").agg(pl.col("df", "held").fill_null(0).cast(pl.Int64).sum())
    return table.filter((pl.col("df") != 0) | (pl.col("held") != 0)).sort("word")
