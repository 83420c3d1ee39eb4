from __future__ import annotations

import polars as pl

from dedup.config import FieldKind
from dedup.normalise import normalise_expr


def _norm(values: list[str | None], kind: FieldKind) -> list[str | None]:
    return pl.DataFrame({"v": values}).select(normalise_expr("v", kind))["v"].to_list()


def test_names_fold_case_accents_and_punctuation() -> None:
    assert _norm(["  José  O'Brien-Smith ", "   ", None, "ÅSA"], FieldKind.name) == [
        "jose obrien smith",
        None,
        None,
        "asa",
    ]


def test_dates_keep_digits_and_codes_drop_spaces() -> None:
    assert _norm(["1971-06-24", "24/06/1971", "n/a"], FieldKind.date) == ["19710624", "24061971", None]
    assert _norm(["SW1A 1AA", "2119"], FieldKind.code) == ["sw1a1aa", "2119"]


def test_text_keeps_email_punctuation() -> None:
    assert _norm(["Rob.Smith@Example.COM", "12, Main   St."], FieldKind.text) == [
        "rob.smith@example.com",
        "12 main st.",
    ]
