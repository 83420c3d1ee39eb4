from __future__ import annotations

import numpy as np
import polars as pl

from dedup.config import FieldKind
from dedup.corrupt import _EDITS, corrupt
from dedup.encoder import to_codepoints


def _text(codes: np.ndarray, lengths: np.ndarray) -> list[str]:
    return ["".join(map(chr, row[:n])) for row, n in zip(codes, lengths, strict=True)]


def test_each_edit_on_known_values() -> None:
    codes, lengths = to_codepoints(["ab cd", "19800102"], 12)
    rng = np.random.default_rng(0)
    assert _text(*_EDITS["swap_tokens"](codes, lengths, rng))[0] == "cd ab"
    assert _text(*_EDITS["drop_token"](codes, lengths, rng))[0] == "cd"
    assert _text(*_EDITS["initial"](codes, lengths, rng)) == ["a", "1"]
    assert _text(*_EDITS["swap_day_month"](codes, lengths, rng))[1] == "19800201"
    deleted = _text(*_EDITS["delete"](codes, lengths, rng))
    assert [len(v) for v in deleted] == [4, 7]
    inserted = _text(*_EDITS["insert"](codes, lengths, rng))
    assert [len(v) for v in inserted] == [6, 9]


def test_corrupt_changes_values_keeps_nulls_and_is_seeded() -> None:
    values = ["robert smith", "london", "", "elizabeth"] * 50
    codes, lengths = to_codepoints(values, 20)
    a = _text(*corrupt(codes, lengths, FieldKind.name, np.random.default_rng(1)))
    b = _text(*corrupt(codes, lengths, FieldKind.name, np.random.default_rng(1)))
    assert a == b
    assert all(v == "" for v in a[2::4])
    changed = sum(x != y for x, y in zip(a, values, strict=True) if y)
    assert changed > 0.8 * 150  # nearly every non-empty value is edited


def test_word_edits_drop_move_shorten_add_and_reformat_words() -> None:
    from dedup.corrupt import _WORD_EDITS

    rng = np.random.default_rng(0)
    values = pl.Series(["sony pslx350h belt drive turntable black edition"] * 200)
    pool = pl.Series(["amazon com computers accessories"] * 10)
    dropped = _WORD_EDITS["drop_words"](values, rng, pool)
    assert (dropped.str.split(" ").list.len() < 7).mean() > 0.8
    assert dropped.str.split(" ").list.len().min() >= 1
    shuffled = _WORD_EDITS["shuffle_words"](values, rng, pool)
    assert (shuffled != values).mean() > 0.5
    assert (shuffled.str.split(" ").list.sort() == values.str.split(" ").list.sort()).all()  # same words
    shortened = _WORD_EDITS["abbreviate"](values, rng, pool)
    assert (shortened.str.len_chars() < values.str.len_chars()).mean() > 0.8
    added = _WORD_EDITS["insert_words"](values, rng, pool)
    assert added.str.contains("amazon|computers|accessories|com").mean() > 0.8
    sizes = _WORD_EDITS["number_format"](pl.Series(["sandisk 16 gb extreme", "sandisk 16gb extreme"] * 50), rng, pool)
    assert sizes.is_in(["sandisk 16gb extreme", "sandisk 16 gb extreme"]).any()
    nick = _WORD_EDITS["nickname"](pl.Series(["william", "bob"]), rng, pool)
    assert nick.to_list() == ["bill", "robert"]


def test_misreads_stay_within_letters_for_names_and_digits_for_dates() -> None:
    from dedup.corrupt import misread

    rng = np.random.default_rng(1)
    names, name_lengths = to_codepoints(pl.Series(["johnson", "martin", "celine"] * 100), 12)
    out, _ = misread(names, name_lengths, rng, "letters")
    text = np.ascontiguousarray(out).view("<U12").ravel()
    assert not any(ch.isdigit() for value in text for ch in value)
    assert (text != np.ascontiguousarray(names).view("<U12").ravel()).all()  # each got one misread
    dates, date_lengths = to_codepoints(pl.Series(["19870512"] * 100), 8)
    out, _ = misread(dates, date_lengths, rng, "digits")
    assert all(value.isdigit() for value in np.ascontiguousarray(out).view("<U8").ravel())


def test_numbers_move_by_a_few_percent_and_keep_their_decimals() -> None:
    """A number's copy is what another source gives for the same amount: near it, rarely a
    typo, whole amounts stay whole, and a value holding no number is left alone."""
    from dedup.corrupt import _jitter, corrupt_values

    values = pl.Series(["399.0", "52.99", None, "abc"] * 250)
    jittered = _jitter(values, np.random.default_rng(0), values)
    assert jittered[2] is None and jittered[3] == "abc"
    moved = jittered.gather(np.arange(0, 1000, 4)).cast(pl.Float64).to_numpy()
    assert (moved % 1 == 0).all()  # 399.0 stays whole
    ratio = moved / 399.0
    assert 0.1 < np.median(np.abs(np.log(ratio))) < 0.15 and (ratio != 1).mean() > 0.9
    codes, lengths = corrupt_values(values, FieldKind.number, np.random.default_rng(1), 12)
    copies = pl.Series(_text(codes, lengths)).gather(np.arange(1, 1000, 4)).cast(pl.Float64, strict=False)
    within = ((copies / 52.99 - 1).abs() < 0.5).mean()
    assert 0.7 < within < 1.0  # most are near; a few took a typo or kept their value
