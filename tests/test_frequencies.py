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


def test_a_code_split_by_a_hyphen_is_the_word_another_record_writes_whole() -> None:
    # "KX-TCA92" normalises to "kx tca92"; another shop writes "KXTCA92"
    table = words(
        pl.Series(["panasonic kx tca92 headset", "panasonic headset kxtca92", "avr 1609 receiver", "avr1609"])
    )
    by_row = table.group_by("row").agg(pl.col("word").sort()).sort("row")
    found = dict(zip(by_row["row"].to_list(), by_row["word"].to_list(), strict=True))
    assert found[0] == ["headset", "kxtca92", "panasonic"]  # the parts give way to the joined word
    assert found[2] == ["avr1609", "receiver"]


def test_words_are_joined_only_into_words_someone_writes_and_never_number_to_number() -> None:
    # no record writes "pc3" or "kxtca93"; "18 55" stays two numbers though "1855" is a word;
    # a lone letter before a number ("w 4") or a number before anything is no code either
    table = words(pl.Series(["kx tca93 pc 3", "18 55 w 4 2 8gb", "1855 w4 28gb"]))
    by_row = table.group_by("row").agg(pl.col("word").sort()).sort("row")
    found = dict(zip(by_row["row"].to_list(), by_row["word"].to_list(), strict=True))
    assert found[0] == ["3", "kx", "pc", "tca93"]
    assert found[1] == ["18", "2", "4", "55", "8", "8gb", "w"]


def test_joined_words_let_two_spellings_of_a_model_number_agree() -> None:
    catalogue = pl.Series(
        ["panasonic hands free headset kxtca92", "panasonic kx tca92 headset", "panasonic kx tca94 headset"]
    )
    same, other = value_pair_similarity(catalogue[[0, 0]], catalogue[[1, 2]], count_words(catalogue))
    assert same > 0.6 > other


def test_statistics_read_each_text_column_once_and_give_the_vectors_a_column_gives_alone() -> None:
    from dedup.config import DedupConfig, FieldKind
    from dedup.frequencies import field_statistics, word_vectors

    values = pl.Series("title", ["kx tca92 headset", "kxtca92 headset", "instance based learning", "instance-based"])
    normalised = pl.DataFrame({"title": values.str.replace("-", " ")})
    config = DedupConfig(id_column="id", fields={"title": FieldKind.text})
    matrix = field_statistics(normalised, config).tokens["title"]
    alone = word_vectors(normalised["title"], count_words(normalised["title"]))
    assert (matrix != alone).nnz == 0 and matrix.shape == alone.shape


def test_statistics_of_some_rows_weigh_them_as_the_statistics_of_all_do() -> None:
    """``dedup update`` and ``dedup explain`` score a few records' pairs: their statistics are
    built for those rows only, with rarity still counted over every record."""
    from dedup.config import DedupConfig, FieldKind
    from dedup.frequencies import field_statistics, token_similarity

    rng = np.random.default_rng(4)
    words_ = np.array(["acme", "32gb", "usb", "drive", "pro", "64 gb", "ultra", "kx", "tca92"])
    titles = [" ".join(rng.choice(words_, size=rng.integers(1, 5))) for _ in range(300)]
    # "kx tca92" is one word because a row outside the subset writes it so: the join must be
    # decided by every record's words, not the subset's
    titles[5], titles[6] = "kx tca92 usb", "kxtca92 drive"
    titles[120] = "kx tca93 usb drive 32 gb"  # another model number, and a size written apart
    names = rng.choice(["ann", "bob", "cy", None], size=300).tolist()
    # a field named like polars' count column, and values held by rows outside the subset
    normalised = pl.DataFrame({"count": names, "title": titles})
    config = DedupConfig(id_column="id", fields={"count": FieldKind.name, "title": FieldKind.text})
    everyone = field_statistics(normalised, config)
    rows = np.array([5, 17, 17, 120, 299, 0])  # a row twice: ``explain`` of a record with itself
    some = field_statistics(normalised, config, rows=rows)
    for f in config.fields:
        full_ids, part_ids = everyone.value_ids[f][rows], some.value_ids[f]
        assert np.array_equal(full_ids[:, None] == full_ids[None, :], part_ids[:, None] == part_ids[None, :])
        assert np.array_equal((full_ids == 0), (part_ids == 0))
        assert np.allclose(everyone.frequency[f][full_ids], some.frequency[f][part_ids])
    assert some.exact_u is None  # the fit's own: scoring a few rows does not need it
    left, right = np.repeat(np.arange(len(rows)), len(rows)), np.tile(np.arange(len(rows)), len(rows))
    part = token_similarity(some.tokens["title"], left, right)
    full = token_similarity(everyone.tokens["title"], rows[left], rows[right])
    assert np.allclose(part, full, atol=1e-6, equal_nan=True)
    assert some.tokens["title"].shape[0] == len(rows)
    from dedup.frequencies import FieldStatistics, codes_differ

    long = np.ones(len(left), bool)
    again = FieldStatistics.from_arrays(everyone.to_arrays(), list(config.fields))  # saved, read back
    for numbers in ("codes", "sizes"):
        differ = codes_differ(getattr(everyone, numbers)["title"], rows[left], rows[right], long)
        assert differ.any() and np.array_equal(codes_differ(getattr(some, numbers)["title"], left, right, long), differ)
        assert np.array_equal(codes_differ(getattr(again, numbers)["title"], rows[left], rows[right], long), differ)


def test_long_titles_naming_different_model_numbers_or_sizes_differ_and_spellings_of_one_do_not() -> None:
    from dedup.frequencies import codes_differ, model_codes, size_numbers

    titles = pl.Series(
        [
            "sony bravia s series kdl 46s4100 46 lcd tv kdl46s4100",  # 0
            "sony bravia xbr series kdl 46xbr6 46 lcd tv kdl46xbr6",  # 1: another model
            "whirlpool 24 built in dishwasher du1055bk black",  # 2
            "whirlpool 24 built in dishwasher du1055ss stainless",  # 3: the same digits, another product
            "sony bravia 46 lcd tv",  # 4: names no model number
            "e.rogers3@hopkins.org",  # 5: short values: a typo is what differs there
            "e.rogers4@hopkins.org",  # 6
            "transcend 16gb sdhc card and compact card reader ts16gsdhc6s5w",  # 7
            "apple 16gb green 4th generation ipod nano mb913lla",  # 8: one size, another model
            "verbatim store n go usb 3.0 128 gb",  # 9: a size written apart from its unit
            "verbatim store n go usb stick 32go",  # 10: another size
            "verbatim store n go 3.0 128gb black",  # 11: the size of 9, written whole
            "sandisk cruzer blade 2.0 usb",  # 12: numbers, but neither a model nor a size
            "sandisk cruzer blade 3.0 usb",  # 13
            "sony turntable ps lx350h belt drive",  # 14: the code of 15, its hyphen made a space
            "sony belt drive turntable pslx350h black",  # 15
        ]
    )
    found = words(titles)
    models, sizes = model_codes(found, titles.len()), size_numbers(titles)
    left, right = np.array([0, 2, 0, 5, 0, 7, 9, 9, 12, 14]), np.array([1, 3, 4, 6, 0, 8, 10, 11, 13, 15])
    count = found.group_by("row").len().sort("row")["len"].to_numpy()
    long = np.minimum(count[left], count[right]) >= 4
    differ = codes_differ(models, left, right, long) | codes_differ(sizes, left, right, long)
    assert differ.tolist() == [True, True, False, False, False, True, True, False, False, False]


def test_sizes_are_read_in_one_unit_and_speeds_and_caches_are_no_sizes() -> None:
    from dedup.frequencies import codes_differ, size_numbers

    titles = pl.Series(
        [
            "toshiba exceria microsdhc 32gb 95mb s uhs i",  # 0
            "toshiba exceria microsdxc 64gb 95 mb s uhs i",  # 1: another size, the same speed
            "kingston datatraveler dt101g2 usb stick 32gb",  # 2
            "kingston datatraveler dt101g2 memoria usb 32768 mb",  # 3: 32 GB written in megabytes
            "seagate barracuda hard drive 1tb 64mb cache",  # 4
            "seagate barracuda hard drive 1000gb 32mb cache",  # 5: 1 TB, another cache
            "intenso basic line usb stick 16gb",  # 6
            "intenso basic line usb stick 32 go",  # 7: another size, in French
            "lexar jumpdrive c20c usb 128 go",  # 8
            "lexar jumpdrive c20c 4 to 8 times faster 128gb",  # 9: "4 to" is English, not 4 TB
        ]
    )
    sizes = size_numbers(titles)
    left, right = np.array([0, 2, 4, 6, 8]), np.array([1, 3, 5, 7, 9])
    differ = codes_differ(sizes, left, right, np.ones(len(left), dtype=bool))
    assert differ.tolist() == [True, False, False, True, False]
