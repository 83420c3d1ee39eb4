"""Synthetic corruptions: the positives for label-free training.

A duplicate record differs from its original the way real records drift: typing errors and
transpositions, characters misread by OCR or a transcriber (``rn``/``m`` style confusions:
``0``/``o``, ``1``/``l``, ``5``/``s``), nicknames, initials, date slips and short years, and in
longer text whole words dropped, reordered, abbreviated or added (a retailer's "amazon com", a
colour), numbers written differently ("16 gb" / "16gb"). Word-level edits run first, on the
strings, with polars (one explode / group-by per batch); character-level edits then work on the
code-point arrays from ``encoder.to_codepoints`` by index arithmetic (one gather per batch). No
Python loop over values.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dedup.config import FieldKind
from dedup.normalise import read_numbers

# (operation, weight) per kind; each value gets one operation, then maybe a second.
OPERATIONS: dict[FieldKind, tuple[tuple[str, float], ...]] = {
    FieldKind.name: (
        ("substitute", 3),
        ("delete", 2),
        ("insert", 2),
        ("transpose", 2),
        ("initial", 1),
        ("swap_tokens", 1),
        ("truncate", 1),
        ("misread_letters", 2),
    ),
    FieldKind.text: (
        ("substitute", 3),
        ("delete", 2),
        ("insert", 2),
        ("transpose", 2),
        ("swap_tokens", 1),
        ("drop_token", 2),
        ("truncate", 1),
        ("misread", 1),
    ),
    FieldKind.date: (("substitute", 3), ("transpose", 2), ("swap_day_month", 2), ("misread_digits", 1)),
    FieldKind.code: (("substitute", 3), ("transpose", 2), ("delete", 1), ("insert", 1), ("misread", 1)),
    FieldKind.category: (("substitute", 1), ("delete", 1), ("insert", 1)),
    # an amount's typos are rare beside the differences between two sources' figures (``jitter``)
    FieldKind.number: (("keep", 12), ("substitute", 1), ("transpose", 1), ("delete", 1), ("insert", 1)),
}
SECOND_EDIT = 0.3
SPACE = ord(" ")


# Word-level edits per kind, (edit, weight), and the share of values that get one. Character
# edits (``OPERATIONS``) follow for every value.
WORD_EDITS: dict[FieldKind, tuple[tuple[str, float], ...]] = {
    FieldKind.name: (("nickname", 3), ("drop_words", 1), ("abbreviate", 1)),
    FieldKind.text: (
        ("drop_words", 3),
        ("shuffle_words", 2),
        ("abbreviate", 2),
        ("insert_words", 3),
        ("number_format", 1),
    ),
    FieldKind.date: (("short_year", 1),),
    FieldKind.code: (),
    FieldKind.category: (),
    FieldKind.number: (("jitter", 1),),
}
WORD_EDIT_SHARE: dict[FieldKind, float] = {
    FieldKind.name: 0.25,
    FieldKind.text: 0.6,
    FieldKind.date: 0.1,
    FieldKind.code: 0.0,
    FieldKind.category: 0.0,
    FieldKind.number: 0.8,
}
JITTER = 0.15  # spread (natural log) of the factor ``jitter`` multiplies an amount by
# characters a reader or an OCR engine takes for one another (both directions): letters for
# letters in names, digits for digits in dates, and across the two in codes and text
LETTER_MISREADS = ("ce", "uv", "nm", "hn", "ao", "il", "ec", "rn", "bh", "gq", "yv")
DIGIT_MISREADS = ("17", "38", "56", "08", "35", "49", "69")
MIXED_MISREADS = ("0o", "1l", "1i", "5s", "8b", "6b", "2z", "9g", "9q")


def corrupt_values(
    values: pl.Series, kind: FieldKind, rng: np.random.Generator, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A corrupted copy of every value as code points ``(n, width)`` and lengths: word-level
    edits on the strings, then character-level edits (``corrupt``). Nulls stay empty."""
    from dedup.encoder import to_codepoints  # the encoder module imports this one

    codes, lengths = to_codepoints(word_edits(values, kind, rng), width)
    return corrupt(codes, lengths, kind, rng)


def edit_words_pool(values: pl.Series, kind: FieldKind, rng: np.random.Generator, variants: int) -> pl.Series:
    """``variants`` word-edited copies of every value, variant-major (copy k of value i at
    ``k * len(values) + i``): one batch of polars work for a whole training run."""
    return word_edits(pl.concat([values.cast(pl.String)] * variants), kind, rng)


def word_edits(values: pl.Series, kind: FieldKind, rng: np.random.Generator) -> pl.Series:
    """The word-level part of ``corrupt_values``: one edit, and for text a second one."""
    edited = edit_words(values, kind, rng)
    if kind is FieldKind.text:  # listings of one product or paper by two sources rewrite a lot
        edited = edit_words(edited, kind, rng)
    return edited


def edit_words(values: pl.Series, kind: FieldKind, rng: np.random.Generator) -> pl.Series:
    """``values`` with ``WORD_EDIT_SHARE`` of them given one word-level edit."""
    edits = WORD_EDITS[kind]
    n = values.len()
    if not edits or n == 0:
        return values.cast(pl.String)
    names, weights = zip(*edits, strict=True)
    p = np.asarray(weights, dtype=float) / sum(weights)
    chosen = np.where(rng.random(n) < WORD_EDIT_SHARE[kind], rng.choice(len(names), size=n, p=p), -1)
    frame = pl.DataFrame({"value": values.cast(pl.String), "edit": chosen}).with_row_index("row")
    out = frame["value"]
    for i, name in enumerate(names):
        rows = np.flatnonzero(chosen == i)
        if rows.size:
            part = frame[rows]
            out = out.scatter(rows, _WORD_EDITS[name](part["value"], rng, values))
    return out


def _words(values: pl.Series, rng: np.random.Generator) -> pl.DataFrame:
    """(row, position, word, words in the row, r) for every word, r uniform in [0, 1)."""
    frame = (
        pl.DataFrame({"word": values.str.split(" ")})
        .with_row_index("row")
        .explode("word")
        .with_columns(
            pl.int_range(pl.len()).over("row").alias("pos"),
            pl.len().over("row").alias("count"),
        )
    )
    return frame.with_columns(pl.Series("r", rng.random(frame.height)))


def _join(frame: pl.DataFrame, rows: int, original: pl.Series) -> pl.Series:
    """Words back into one string per row (sorted by ``key``); rows that lost all words keep theirs."""
    joined = (
        frame.drop_nulls("word")
        .sort("row", "key")
        .group_by("row", maintain_order=True)
        .agg(pl.col("word").str.join(" "))
    )
    full = pl.DataFrame({"row": np.arange(rows, dtype=np.uint32)}).join(joined, on="row", how="left")
    return full["word"].fill_null(original.rename("word")).alias(original.name)


def _drop_words(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """Each word dropped with probability 0.3 (the row's luckiest word always stays)."""
    frame = _words(values, rng)
    keep = (pl.col("r") >= 0.3) | (pl.col("r") == pl.col("r").max().over("row"))
    return _join(frame.filter(keep).with_columns(pl.col("pos").alias("key")), values.len(), values)


def _shuffle_words(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """Words moved by up to about three places."""
    frame = _words(values, rng).with_columns((pl.col("pos") + pl.col("r") * 3.5).alias("key"))
    return _join(frame, values.len(), values)


def _abbreviate(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """Long words cut to 1-4 letters ('international' -> 'int'), each with probability 0.5."""
    frame = _words(values, rng)
    frame = frame.with_columns(pl.Series("r2", rng.random(frame.height)))
    short = pl.col("word").str.slice(0, (1 + pl.col("r2") * 4).cast(pl.Int64))
    frame = frame.with_columns(
        pl.when((pl.col("r") < 0.5) & (pl.col("word").str.len_chars() > 4)).then(short).otherwise("word").alias("word"),
        pl.col("pos").alias("key"),
    )
    return _join(frame, values.len(), values)


def _insert_words(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """One to three words taken from other values (boilerplate, colours, sizes) put in at random."""
    frame = _words(values, rng).with_columns(pl.col("pos").cast(pl.Float64).alias("key"))
    donors = pool.drop_nulls().str.split(" ").explode().drop_nulls()
    if donors.len() == 0:
        return values
    extra = rng.integers(1, 4, size=values.len())
    rows = np.repeat(np.arange(values.len(), dtype=np.uint32), extra)
    added = pl.DataFrame(
        {
            "row": rows,
            "word": donors.gather(rng.integers(0, donors.len(), size=len(rows))),
            "key": rng.random(len(rows)) * (values.str.split(" ").list.len().fill_null(0).gather(rows).to_numpy() + 1)
            - 0.5,
        }
    )
    return _join(pl.concat([frame.select("row", "word", "key"), added]), values.len(), values)


def _number_format(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """Numbers and their units joined or split ('16 gb' <-> '16gb'), digit groups split ('1000' -> '1 000')."""
    joined = values.str.replace_all(r"(\d) ([a-z])", "${1}${2}")
    split = values.str.replace_all(r"(\d)([a-z])", "${1} ${2}")
    grouped = values.str.replace_all(r"(\d)(\d\d\d)\b", "${1} ${2}")
    pick = rng.integers(0, 3, size=values.len())
    out = pl.select(
        pl.when(pl.lit(pl.Series(pick == 0)))
        .then(pl.lit(joined))
        .when(pl.lit(pl.Series(pick == 1)))
        .then(pl.lit(split))
        .otherwise(pl.lit(grouped))
    ).to_series()
    return out.alias(values.name)


def _jitter(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """A number as another source gives it: times a factor around 1 (log-normal, ``JITTER``),
    to the value's own decimals (a price of one product in two shops, a length rounded
    otherwise); values that hold no number stay as they are."""
    number = read_numbers(values)
    factor = np.exp(rng.normal(0.0, JITTER, size=values.len()))
    original = number.to_numpy()
    decimals = np.nan_to_num(original) % 1 != 0  # whole amounts stay whole
    moved = original * factor
    moved = np.where(decimals, np.round(moved, 2), np.round(moved))
    out = pl.Series(moved).cast(pl.String)
    return pl.select(pl.when(number.is_not_null()).then(out).otherwise(values)).to_series().alias(values.name)


def _nickname(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """Known first names to their nickname and back ('william' <-> 'bill'); others unchanged."""
    from dedup.synth_names import NICKNAMES

    both = {**NICKNAMES, **{v: k for k, v in NICKNAMES.items()}}
    return values.replace(both).alias(values.name)


def _short_year(values: pl.Series, rng: np.random.Generator, pool: pl.Series) -> pl.Series:
    """An eight-digit date written with a two-digit year (19870512 -> 870512)."""
    return (
        pl.select(pl.when(values.str.len_chars() == 8).then(values.str.slice(2)).otherwise(values))
        .to_series()
        .alias(values.name)
    )


_WORD_EDITS = {
    "drop_words": _drop_words,
    "shuffle_words": _shuffle_words,
    "abbreviate": _abbreviate,
    "insert_words": _insert_words,
    "number_format": _number_format,
    "jitter": _jitter,
    "nickname": _nickname,
    "short_year": _short_year,
}


def corrupt(
    codes: np.ndarray, lengths: np.ndarray, kind: FieldKind, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A corrupted copy of every value (same shape); values of length 0 stay empty."""
    codes, lengths = _apply(codes, lengths, kind, rng)
    again = rng.random(len(lengths)) < SECOND_EDIT
    if again.any():
        c2, l2 = _apply(codes[again], lengths[again], kind, rng)
        codes[again], lengths[again] = c2, l2
    return codes, lengths


def _apply(codes: np.ndarray, lengths: np.ndarray, kind: FieldKind, rng: np.random.Generator):
    ops, weights = zip(*OPERATIONS[kind], strict=True)
    p = np.asarray(weights, dtype=float) / sum(weights)
    choice = rng.choice(len(ops), size=len(lengths), p=p)
    out, out_len = codes.copy(), lengths.copy()
    for i, op in enumerate(ops):
        rows = np.flatnonzero(choice == i)
        if rows.size:
            out[rows], out_len[rows] = _EDITS[op](codes[rows], lengths[rows], rng)
    return out, out_len


def _random_chars(codes: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Characters drawn from the batch itself, so substitutions stay in the data's alphabet."""
    pool = codes[codes != 0]
    if pool.size == 0:
        return np.full(len(lengths), ord("a"), dtype=codes.dtype)
    return pool[rng.integers(0, pool.size, size=len(lengths))]


def _positions(lengths: np.ndarray, rng: np.random.Generator, reserve: int = 0) -> np.ndarray:
    span = np.maximum(lengths - reserve, 1)
    return (rng.random(len(lengths)) * span).astype(np.int64)


def _gather(codes: np.ndarray, src: np.ndarray, new_len: np.ndarray) -> np.ndarray:
    width = codes.shape[1]
    src = np.clip(src, 0, width - 1)
    out = np.take_along_axis(codes, src, axis=1)
    out[np.arange(width)[None, :] >= new_len[:, None]] = 0
    return out


def _substitute(codes, lengths, rng):
    out = codes.copy()
    pos = _positions(lengths, rng)
    has = lengths > 0
    out[np.flatnonzero(has), pos[has]] = _random_chars(codes, lengths, rng)[has]
    return out, lengths


def _delete(codes, lengths, rng):
    j = np.arange(codes.shape[1])[None, :]
    pos = _positions(lengths, rng)[:, None]
    new_len = np.where(lengths > 1, lengths - 1, lengths)
    src = np.where(lengths[:, None] > 1, j + (j >= pos), j)
    return _gather(codes, src, new_len), new_len


def _insert(codes, lengths, rng):
    width = codes.shape[1]
    j = np.arange(width)[None, :]
    pos = _positions(lengths + 1, rng)
    ok = (lengths > 0)[:, None]
    src = np.where(ok, j - (j > pos[:, None]), j)
    new_len = np.where(lengths > 0, np.minimum(lengths + 1, width), lengths)
    out = _gather(codes, src, new_len)
    rows = np.flatnonzero(lengths > 0)
    out[rows, np.minimum(pos[rows], width - 1)] = _random_chars(codes, lengths, rng)[rows]
    return out, new_len


def _transpose(codes, lengths, rng):
    j = np.arange(codes.shape[1])[None, :]
    pos = _positions(lengths, rng, reserve=1)[:, None]
    src = np.where(j == pos, pos + 1, np.where(j == pos + 1, pos, j))
    src = np.where(lengths[:, None] >= 2, src, j)
    return _gather(codes, src, lengths), lengths


def _truncate(codes, lengths, rng):
    keep = np.maximum(1, np.ceil(lengths * (0.4 + 0.5 * rng.random(len(lengths))))).astype(np.int64)
    new_len = np.minimum(lengths, keep)
    return _gather(codes, np.broadcast_to(np.arange(codes.shape[1]), codes.shape), new_len), new_len


def _first_space(codes, lengths):
    width = codes.shape[1]
    is_space = (codes == SPACE) & (np.arange(width)[None, :] < lengths[:, None])
    has = is_space.any(axis=1)
    return has, np.where(has, is_space.argmax(axis=1), 0)


def _swap_tokens(codes, lengths, rng):
    """'ab cd' -> 'cd ab' around the first space; values without a space are unchanged."""
    j = np.arange(codes.shape[1])[None, :]
    has, s = _first_space(codes, lengths)
    n, s = lengths[:, None], s[:, None]
    src = np.where(j < n - s - 1, s + 1 + j, np.where(j == n - s - 1, s, j - (n - s)))
    src = np.where(has[:, None], src, j)
    return _gather(codes, src, lengths), lengths


def _drop_token(codes, lengths, rng):
    """Drop the first word ('12 main street' -> 'main street'); one-word values are unchanged."""
    j = np.arange(codes.shape[1])[None, :]
    has, s = _first_space(codes, lengths)
    new_len = np.where(has, lengths - s - 1, lengths)
    src = np.where(has[:, None], j + s[:, None] + 1, j)
    return _gather(codes, src, new_len), new_len


def _swap_day_month(codes, lengths, rng):
    """YYYYMMDD -> YYYYDDMM for 8-digit dates; other lengths get a transposition instead."""
    width = codes.shape[1]
    perm = np.arange(width)
    if width >= 8:
        perm[4:8] = [6, 7, 4, 5]
    eight = (lengths == 8)[:, None]
    out = np.where(eight, _gather(codes, np.broadcast_to(perm, codes.shape), lengths), codes)
    other = lengths != 8
    if other.any():
        out[other], _ = _transpose(codes[other], lengths[other], rng)
    return out, lengths


def _confusions(pairs: tuple[str, ...]) -> np.ndarray:
    """Code point -> the character it is misread as (0: none)."""
    table = np.zeros(0x250, dtype=np.uint32)
    for a, b in pairs:
        table[ord(a)], table[ord(b)] = ord(b), ord(a)
    return table


_CONFUSIONS = {
    "letters": _confusions(LETTER_MISREADS),
    "digits": _confusions(DIGIT_MISREADS),
    "any": _confusions(LETTER_MISREADS + DIGIT_MISREADS + MIXED_MISREADS),
}


def misread(
    codes: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, among: str = "any"
) -> tuple[np.ndarray, np.ndarray]:
    """One character replaced by one it is commonly misread as (OCR, handwriting), from the
    ``among`` table (letters, digits or any); a value with no such character gets a
    substitution instead."""
    confusable = _CONFUSIONS[among]
    out = codes.copy()
    width = codes.shape[1]
    inside = np.arange(width)[None, :] < lengths[:, None]
    table = confusable[np.minimum(codes, len(confusable) - 1)] * (codes < len(confusable))
    candidate = inside & (table > 0)
    has = candidate.any(axis=1)
    # a random confusable position per row: the argmax of random scores over the candidates
    score = np.where(candidate, rng.random(codes.shape), -1.0)
    pos = score.argmax(axis=1)
    rows = np.flatnonzero(has)
    out[rows, pos[rows]] = table[rows, pos[rows]]
    if (~has).any():
        other = np.flatnonzero(~has)
        out[other], _ = _substitute(codes[other], lengths[other], rng)
    return out, lengths


def _initial_edit(codes, lengths, rng):
    new_len = np.minimum(lengths, 1)
    return _gather(codes, np.broadcast_to(np.arange(codes.shape[1]), codes.shape), new_len), new_len


_EDITS = {
    "keep": lambda codes, lengths, rng: (codes, lengths),
    "substitute": _substitute,
    "delete": _delete,
    "insert": _insert,
    "transpose": _transpose,
    "initial": _initial_edit,
    "truncate": _truncate,
    "swap_tokens": _swap_tokens,
    "drop_token": _drop_token,
    "swap_day_month": _swap_day_month,
    "misread": misread,
    "misread_letters": lambda codes, lengths, rng: misread(codes, lengths, rng, "letters"),
    "misread_digits": lambda codes, lengths, rng: misread(codes, lengths, rng, "digits"),
}
