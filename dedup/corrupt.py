"""Synthetic corruptions: the positives for label-free training.

A duplicate record usually differs from its original by typing errors, transpositions, dropped
or swapped words, initials and date slips. These functions apply such edits to whole batches of
values at once, working on the code-point arrays from ``encoder.to_codepoints`` by index
arithmetic (one gather per batch, no Python loop over values).
"""

from __future__ import annotations

import numpy as np

from dedup.config import FieldKind

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
    ),
    FieldKind.text: (
        ("substitute", 3),
        ("delete", 2),
        ("insert", 2),
        ("transpose", 2),
        ("swap_tokens", 1),
        ("drop_token", 2),
        ("truncate", 1),
    ),
    FieldKind.date: (("substitute", 3), ("transpose", 2), ("swap_day_month", 2)),
    FieldKind.code: (("substitute", 3), ("transpose", 2), ("delete", 1), ("insert", 1)),
    FieldKind.category: (("substitute", 1), ("delete", 1), ("insert", 1)),
}
SECOND_EDIT = 0.3
SPACE = ord(" ")


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


def _initial_edit(codes, lengths, rng):
    new_len = np.minimum(lengths, 1)
    return _gather(codes, np.broadcast_to(np.arange(codes.shape[1]), codes.shape), new_len), new_len


_EDITS = {
    "substitute": _substitute,
    "delete": _delete,
    "insert": _insert,
    "transpose": _transpose,
    "initial": _initial_edit,
    "truncate": _truncate,
    "swap_tokens": _swap_tokens,
    "drop_token": _drop_token,
    "swap_day_month": _swap_day_month,
}
