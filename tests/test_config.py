from __future__ import annotations

import re

import pytest

from dedup.config import (
    ExactPass,
    FieldKind,
    KeyExpression,
    SortedNeighbourhoodPass,
    config_to_yaml,
    load_config,
    parse_config,
)
from dedup.errors import ConfigError

GOOD = """
id_column: unique_id
fields:
  first_name: name
  surname: name
  dob: date
  city: text
blocking:
  - [first_name, surname]
  - [dob]
  - ["surname[:3]", "dob[:4]"]
  - ["soundex(surname)", city]
  - {sorted_neighbourhood: surname, window: 7}
label_column: cluster
threshold: 0.7
clustering: {method: components}
"""


def test_parses_the_documented_example() -> None:
    config = parse_config(GOOD)
    assert config.fields["dob"] is FieldKind.date
    assert config.label_column == "cluster" and config.threshold == 0.7
    exact, dob, prefix, phonetic, snh = config.blocking
    assert isinstance(exact, ExactPass) and [k.column for k in exact.on] == ["first_name", "surname"]
    assert prefix.on[0] == KeyExpression(column="surname", stop=3, text="surname[:3]")
    assert phonetic.on[0].function == "soundex" and phonetic.on[0].column == "surname"
    assert isinstance(snh, SortedNeighbourhoodPass) and snh.window == 7
    assert config.blocking_columns() == {"first_name", "surname", "dob", "city"}


def test_yaml_round_trip_is_exact() -> None:
    config = parse_config(GOOD)
    assert parse_config(config_to_yaml(config)) == config


@pytest.mark.parametrize("name", ["*", "^ci.*$"])
def test_a_column_name_polars_reads_as_a_pattern_is_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"is a pattern to polars"):
        parse_config(GOOD.replace("city: text", f'"{name}": text'))
    with pytest.raises(ConfigError, match=r"is a pattern to polars"):
        parse_config(GOOD.replace("id_column: unique_id", f'id_column: "{name}"'))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("threshold: 0.7", "threshold: 0.7\ncolour: red"), "colour (line 16): unknown key"),
        (("method: components", "method: louvain"), "clustering.method (line 16): Input should be 'density' or"),
        (("city: text", "city: texty"), "fields.city (line 7): unknown kind 'texty'"),
        (('"soundex(surname)"', '"soundx(surname)"'), "blocking.3 (line 12): blocking pass 3: bad blocking key"),
        (("threshold: 0.7", "threshold: 1.5"), "threshold (line 15)"),
        (("window: 7", "window: 4"), "blocking.4 (line 13): blocking pass 4: window must be an odd integer"),
    ],
)
def test_errors_name_the_key_and_line(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(*change), origin="job.yaml")
    assert str(info.value).startswith("job.yaml: ")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "id_column: id\nfields: {a: name}\nblocking: [{embedding: {k: -5}}]\n",
            "<config>: blocking.0 (line 3): blocking pass 0: embedding.k: Input should be greater than or equal to 1",
        ),
        (
            "id_column: id\nfields: {a: name}\nblocking: [{tokens: a, rarest: 0}]\n",
            "<config>: blocking.0 (line 3): blocking pass 0: tokens.rarest: Input should be greater than or equal to 1",
        ),
        ("id_column: id\nfields: {a: name\n", "<config>: not valid YAML (line 3, column 1): while parsing a flow"),
        ("a: 1\na: 2\n", "<config>: not valid YAML (line 2, column 1): key 'a' is given twice"),
    ],
)
def test_nested_and_yaml_errors_are_one_line(source: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(source)
    assert "\n" not in str(info.value) and str(info.value).startswith(expected), str(info.value)


def test_missing_required_key_and_bad_yaml() -> None:
    with pytest.raises(ConfigError, match="id_column.*Field required"):
        parse_config(GOOD.replace("id_column: unique_id", ""))
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("fields: [unclosed")


def test_a_nul_in_a_column_name_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"column name 'ci\\x00ty' contains a NUL character"):
        parse_config(GOOD.replace("city: text", '"ci\\0ty": text'))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("seed: 0", "seed: 99999999999999999999999"), "seed (line 17): Input should be less than or equal to"),
        (("threshold: 0.7", "threshold: .nan"), "threshold (line 15): Input should be a finite number"),
        (("clustering: {method: components}", "training: {learning_rate: .inf}"), "Input should be a finite number"),
        (("threshold: 0.7", "threshold: 0.7\nthreshold: 0.8"), "key 'threshold' is given twice"),
    ],
)
def test_numbers_must_be_finite_and_keys_unique(change: tuple[str, str], expected: str) -> None:
    source = GOOD.replace("clustering: {method: components}", "clustering: {method: components}\nseed: 0")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(source.replace(*change))


def test_block_on_may_be_one_key_and_a_non_utf8_file_is_named(tmp_path) -> None:  # noqa: ANN001
    config = parse_config(GOOD.replace("window: 7}", "window: 7, block_on: city}"))
    assert [k.column for k in config.blocking[4].block_on] == ["city"]
    bad = tmp_path / "job.yaml"
    bad.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"job.yaml: not UTF-8 text"):
        load_config(bad)
