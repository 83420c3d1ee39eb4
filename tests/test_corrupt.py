from __future__ import annotations

import numpy as np

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
