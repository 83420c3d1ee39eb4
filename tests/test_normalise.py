from __future__ import annotations

import polars as pl
import pytest

from dedup.config import FieldKind, parse_config
from dedup.errors import InputError
from dedup.normalise import fields_as_read, normalise_expr


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


def test_numbers_are_read_as_people_write_them() -> None:
    """Currency signs, units and the grouping of thousands do not change a number; the decimal
    mark is read from the layout; a value without a number is null."""
    values = ["$1,299.00", "1.299,00 EUR", "1 299,00", "1299", "59,99", "0.125", "1.299.000", "-4.5 kg"]
    assert _norm(values, FieldKind.number) == [
        "1299.0",
        "1299.0",
        "1299.0",
        "1299.0",
        "59.99",
        "0.125",
        "1299000.0",
        "-4.5",
    ]
    assert _norm(["n/a", "  ", None, "about 12 items"], FieldKind.number) == [None, None, None, "12.0"]


def test_text_keeps_email_punctuation() -> None:
    assert _norm(["Rob.Smith@Example.COM", "12, Main   St."], FieldKind.text) == [
        "rob.smith@example.com",
        "12 main st.",
    ]


def test_a_field_holding_titles_is_read_as_text() -> None:
    """Product titles declared ``name``, ``code`` or ``category`` are read as ``text`` (word
    evidence, token blocking), with a note saying so; person names (a long one among them),
    phone numbers in four digit groups and dates keep their kinds."""
    titles = [
        "Sony Bravia 46in LCD TV - KDL46S4100",
        "Canon PowerShot SD1100 IS 8MP",
        None,
        "Bose QC3 Headphones Black",
    ]
    records = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "title": titles,
            "sku": titles,
            "line": titles,
            "person": ["Ann Lee", "Bo Smith", "Maria de los Angeles Garcia", "Li Wu"],
            "phone": ["+1 415 555 0100", "+1 415 555 0199", "+44 20 7946 0958", None],
            "seen": ["Monday 24 June 1971 noon", "Tuesday 2 March 1999 noon", None, "Friday 1 May 2020 noon"],
        }
    )
    fields = "  title: name\n  sku: code\n  line: category\n  person: name\n  phone: code\n  seen: date\n"
    read, notes = fields_as_read(records, parse_config(f"id_column: id\nfields:\n{fields}"), "in.parquet")
    text = FieldKind.text
    kept = {"person": FieldKind.name, "phone": FieldKind.code, "seen": FieldKind.date}
    assert read.fields == {"title": text, "sku": text, "line": text, **kept}
    assert [n.split(",")[0] for n in notes] == [
        "fields.title: declared name",
        "fields.sku: declared code",
        "fields.line: declared category",
    ]
    assert all("read as text" in n for n in notes)
    assert "tokens(title, rarest=3, max_records=50)" in [p.name for p in read.passes]
    declared = parse_config("id_column: id\nfields:\n  person: name\n  title: text\n")
    unchanged, none = fields_as_read(records, declared, "in.parquet")
    assert none == [] and unchanged is declared


def test_a_field_holding_prices_is_read_as_numbers_and_phones_and_postcodes_stay_codes() -> None:
    """Prices declared ``code`` or ``category`` are read as ``number`` (with a note, and without
    a blocking pass on them); whole numbers (phones, postcodes, ids) and dates keep their kinds."""
    records = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "price": ["$399.00", "$1,299.00", None, "$49.99"],
            "eur": ["59,99 €", "12,00 €", "8,50 €", "1.299,00 €"],
            "raw": ["59.0", "5290.0", "6.99", "13.99"],
            "phone": ["5551234", "5559876", "5550000", None],
            "zip": ["02139", "94110", "10001", "60614"],
            "when": ["12.05.2020", "01.01.1999", "03.03.2003", None],
        }
    )
    kinds = "  price: code\n  eur: category\n  raw: code\n  phone: code\n  zip: code\n  when: code\n"
    read, notes = fields_as_read(records, parse_config(f"id_column: id\nfields:\n{kinds}"), "in.parquet")
    number = FieldKind.number
    assert read.fields == {
        "price": number,
        "eur": number,
        "raw": number,
        **{f: FieldKind.code for f in ("phone", "zip", "when")},
    }
    assert [n.split(",")[0] for n in notes] == [
        "fields.price: declared code",
        "fields.eur: declared category",
        "fields.raw: declared code",
    ]
    assert all("read as number" in n for n in notes)
    assert not any("price" in p.name or "raw" in p.name for p in read.passes)  # amounts get no default pass
    assert "block(phone)" in [p.name for p in read.passes]


def test_a_field_null_in_every_row_is_left_out_and_no_field_left_is_an_error() -> None:
    records = pl.DataFrame({"id": ["1", "2"], "name": ["Ann", "Bo"], "extra": [None, "  -- "], "gone": [None, None]})
    config = parse_config("id_column: id\nfields:\n  name: name\n  extra: name\n  gone: code\n")
    read, notes = fields_as_read(records, config, "in.parquet")
    assert read.fields == {"name": FieldKind.name}  # "--" normalises to nothing: null as well
    assert [n.split(":")[0] for n in notes] == ["fields.extra", "fields.gone"]
    assert all(n.endswith("null in every row, so it tells nothing: left out of the comparison") for n in notes)
    with pytest.raises(InputError, match="in.parquet: every field is null in every row"):
        fields_as_read(records, parse_config("id_column: id\nfields:\n  gone: code\n"), "in.parquet")
