"""Stored word counts: an update's counts equal a recount of every record, joins included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dedup.config import DedupConfig, FieldKind
from dedup.frequencies import field_statistics, token_similarity
from dedup.word_counts import count_parts, read_word_counts, save_word_counts, updated_words

CONFIG = DedupConfig(id_column="id", fields={"name": FieldKind.name, "title": FieldKind.text})
# short words that join into each other (kx + tca92 = kxtca92, in + stance = instance) and numbers
PIECES = ["kx", "tca92", "kxtca92", "in", "stance", "instance", "based", "12", "ab", "ab12", "32gb", "32", "gb"]


def _titles(rng: np.random.Generator, n: int) -> list[str | None]:
    lengths = rng.integers(1, 5, size=n)
    titles = [" ".join(rng.choice(PIECES, size=k)) for k in lengths]
    return [None if rng.random() < 0.05 else t for t in titles]


def _counts(titles: list[str | None], folder: Path) -> pl.DataFrame:
    """A full run's stored counts of these titles."""
    frame = pl.DataFrame({"name": ["x"] * len(titles), "title": pl.Series(titles, dtype=pl.String)})
    folder.mkdir(parents=True, exist_ok=True)
    save_word_counts(field_statistics(frame, CONFIG), folder)
    return read_word_counts(count_parts(folder, 1))


@pytest.mark.parametrize("seed", range(6))
def test_updated_counts_equal_a_recount_of_every_record(seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    master = _titles(rng, 200)
    if seed == 0:  # the only record writing kxtca92 alone leaves: kx tca92 stops joining
        master = [t if t is None or "kxtca92" not in t else t.replace("kxtca92", "ab") for t in master]
        master[3] = "kxtca92"
    table = _counts(master, tmp_path / "master")
    keep = rng.random(len(master)) > 0.2  # a fifth deleted or corrected
    if seed == 0:
        keep[3] = False
    removed = [t for t, k in zip(master, keep, strict=True) if not k]
    added = _titles(rng, 40) + ["in stance", "abkx"]  # words the master may never write alone
    now = [t for t, k in zip(master, keep, strict=True) if k] + added
    rows = rng.choice(len(now), size=30)
    series = pl.Series("title", now, dtype=pl.String)
    got = updated_words(table, series, pl.Series(added, dtype=pl.String), pl.Series(removed, dtype=pl.String), rows)

    recount = _counts(now, tmp_path / "now")
    stored = pl.concat([table, got.change]).group_by("word").agg(pl.col("df", "held").sum())
    stored = stored.filter((pl.col("df") != 0) | (pl.col("held") != 0)).sort("word")
    assert stored.to_dicts() == recount.to_dicts()  # what the next update reads
    df = dict(got.vocabulary.words.iter_rows())
    assert all(df[word] == count for word, count in recount.select("word", "df").iter_rows() if word in df)
    scored = {w for t in series.gather(rows).drop_nulls() for w in t.split(" ")}
    assert scored - {"kx", "tca92", "in", "stance"} <= set(df)  # the rows' words (these may be joined)

    frame = pl.DataFrame({"name": ["x"] * len(now), "title": series})
    expected = field_statistics(frame, CONFIG, rows=rows)
    incremental = field_statistics(frame, CONFIG, rows=rows, counted={"title": (got.vocabulary, got.known)})
    left, right = np.repeat(np.arange(len(rows)), len(rows)), np.tile(np.arange(len(rows)), len(rows))
    assert np.array_equal(
        token_similarity(incremental.tokens["title"], left, right),
        token_similarity(expected.tokens["title"], left, right),
        equal_nan=True,  # a null title has no words
    )
    for numbers in ("codes", "sizes"):
        assert (getattr(incremental, numbers)["title"] != getattr(expected, numbers)["title"]).nnz == 0


def test_a_word_written_alone_for_the_first_time_joins_the_masters_two_words(tmp_path: Path) -> None:
    table = _counts(["kx tca92 usb", "kx tca92", "usb"], tmp_path / "master")
    now = pl.Series("title", ["kx tca92 usb", "kx tca92", "usb", "kxtca92"])
    got = updated_words(table, now, now.tail(1), now.clear(), np.arange(4))
    df = dict(got.vocabulary.words.iter_rows())
    assert df["kxtca92"] == 3 and "kx" not in df and "tca92" not in df  # the master's two now read as one
    assert df["usb"] == 2
