"""Value statistics: words, their IDF-weighted cosine, exact-agreement chances."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.frequencies import count_words, exact_agreement, value_pair_similarity, words


def test_a_number_with_a_unit_also_counts_as_the_bare_number() -> None:
    table = words(pl.Series(["sandisk 32gb usb", "32 go", "1.5tb drive", "v30 3rd", None, ""]))
    by_row = table.group_by("row").agg(pl.col("word").sort()).sort("row")
    found = dict(zip(by_row["row"].to_list(), by_row["word"].to_list(), strict=True))
    assert found[0] == ["32", "32gb", "sandisk", "usb"]
    assert found[1] == ["32", "go"]
    assert found[2] == ["1.5", "1.5tb", "drive"]
    assert found[3] == ["3", "3rd", "v30"]  # a code that starts with letters stays whole
    assert 4 not in found and 5 not in found


def test_sizes_written_differently_agree_and_different_sizes_do_not() -> None:
    catalogue = pl.Series(
        [
            "toshiba exceria pro 32go silber",
            "toshiba exceria pro 32 gb uhs",
            "toshiba exceria pro 64 gb uhs",
            "sandisk ultra 16gb",
            "sandisk extreme 128gb",
            "lexar jumpdrive 8 gb",
        ]
    )
    vocabulary = count_words(catalogue)
    same, other = value_pair_similarity(catalogue[[0, 0]], catalogue[[1, 2]], vocabulary)
    assert same > other + 0.2  # the shared 32 outweighs the shared boilerplate


def test_exact_agreement_is_the_chance_two_records_share_a_value() -> None:
    # values a, a, b, null: one agreeing pair out of the 3 pairs of non-null records
    assert exact_agreement(pl.Series(["a", "a", "b", None])) == pytest.approx(1 / 3)
    assert np.isclose(exact_agreement(pl.Series(["x", "y"])), 0.0)
