from __future__ import annotations

import polars as pl

from dedup.config import FieldKind, parse_config
from dedup.normalise import normalise_expr, read_kinds


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


def test_a_name_field_holding_titles_is_read_as_text() -> None:
    """Product titles declared ``name`` are read as ``text`` (word evidence, token blocking),
    with a note saying so; person names, even with a long one among them, stay names."""
    records = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "title": [
                "Sony Bravia 46in LCD TV - KDL46S4100",
                "Canon PowerShot SD1100 IS 8MP",
                None,
                "Bose QC3 Headphones Black",
            ],
            "person": ["Ann Lee", "Bo Smith", "Maria de los Angeles Garcia", "Li Wu"],
        }
    )
    config = parse_config("id_column: id\nfields:\n  title: name\n  person: name\n")
    read, notes = read_kinds(records, config)
    assert read.fields == {"title": FieldKind.text, "person": FieldKind.name}
    assert len(notes) == 1 and notes[0].startswith("fields.title: declared name") and "read as text" in notes[0]
    assert [p.name for p in read.passes if p.name.startswith("tokens(")] == ["tokens(title, rarest=3, max_records=50)"]
    unchanged, none = read_kinds(records, parse_config("id_column: id\nfields:\n  person: name\n  title: text\n"))
    assert none == [] and unchanged.fields == {"person": FieldKind.name, "title": FieldKind.text}
