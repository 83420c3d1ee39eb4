"""Any column name works as a field (or as the id): a property test over awkward names, each
run end to end (read, block, train, score, cluster, write, explain)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup.config import is_column_pattern
from dedup.explain import explain_pair
from dedup.pipeline import run
from tests.conftest import TINY_TRAINING

AWKWARD = [
    "type",  # a torch Module attribute (ParameterDict crashed on it)
    "train",
    "float",
    "forward",
    "__init__",
    "a.b",  # torch refuses dots in parameter names
    "with space",
    " padded ",
    "naïve ünïcødé 名前",
    "$x$",  # matplotlib would read this as maths
    "a/b",
    "[x]",
    "soundex(x)",
    "x[:3]",
    "cluster_id",  # dedup's own output columns
    "cluster_size",
    "cluster_confidence",
    "match_probability",
    "sim_name",
    "bf_name",
    "tok_name",
    "is_match",
    "blocking_pass",
]
NAMES = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "" and "\x00" not in s and not is_column_pattern(s)),
)


def _records(id_column: str, fields: list[str]) -> pl.DataFrame:
    people = ["anna smith", "anna smyth", "bob jones", "bob jone", "carl brown", "dora white", "eve black"] * 4
    frame = {id_column: [f"r{i}" for i in range(len(people))]}
    for j, field in enumerate(fields):
        frame[field] = [f"{p} {j}" if i % 5 else None for i, p in enumerate(people)]
    return pl.DataFrame(frame)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, min_size=2, max_size=3, unique=True))
def test_any_column_names_work_end_to_end(names: list[str], tmp_path_factory) -> None:
    id_column, fields = names[0], names[1:]
    tmp = tmp_path_factory.mktemp("names")
    source = tmp / "in.parquet"
    records = _records(id_column, fields)
    records.write_parquet(source)
    config = tmp / "config.yaml"
    text = yaml.safe_dump(
        {"id_column": id_column, "fields": {f: "text" for f in fields}}, allow_unicode=True, sort_keys=False
    )
    config.write_text(text + TINY_TRAINING, encoding="utf-8")
    out = tmp / "out"
    report = run(source, config, out)
    assert report["counts"]["records"] == records.height
    clusters = pl.read_parquet(out / "clusters.parquet")
    assert clusters.height == records.height
    for column in ("cluster_id", "cluster_size", "cluster_confidence"):
        assert clusters.schema[column] in (pl.String, pl.Int64, pl.Float32)
    for name in names:  # every input column is still there, renamed only if it clashed
        kept = name if name not in ("cluster_id", "cluster_size", "cluster_confidence") else f"{name}_input"
        assert clusters[kept].to_list() == records[name].to_list()
    pairs = pl.read_parquet(out / "pairs.parquet")
    assert [f"sim_{f}" in pairs.columns and f"bf_{f}" in pairs.columns for f in fields] == [True] * len(fields)
    first = pairs.row(0, named=True)
    explained = explain_pair(out, first[f"{id_column}_l"], first[f"{id_column}_r"])
    assert [e.field for e in explained.fields] == fields
    assert Path(out / "charts").is_dir()
