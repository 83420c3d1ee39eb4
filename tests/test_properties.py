"""Property-based runs over generated small tables and configs (hypothesis).

For any table (text, integer, float-with-NaN or date fields; integer or text ids) and config:
the run succeeds, unless a field is missing in every row, which is the one error valid data can
get; every input record appears exactly once in clusters.parquet; clusters agree with the pairs
above the threshold (components: every such pair shares a cluster; density: clusters only ever
split components, checked for every member of every cluster) and each cluster id is its
smallest member id.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup.clustering import components
from dedup.config import parse_config
from dedup.errors import InputError
from dedup.pipeline import run

VALUES = st.one_of(
    st.none(),
    st.sampled_from(["anna", "ana", "bob", "bobby", "  ", "", "Zoë", "李", "x" * 80, "12-03-1990", "1990-03-12"]),
    st.text(max_size=6),
)
TYPED = {  # a column's values and its Arrow type
    "text": (VALUES, pl.String),
    "int": (st.one_of(st.none(), st.integers(-(2**40), 2**40)), pl.Int64),
    "float": (st.one_of(st.none(), st.sampled_from([float("nan"), 0.5, -1e300, 3.0])), pl.Float64),
    "date": (st.one_of(st.none(), st.dates()), pl.Date),
}
KINDS = st.sampled_from(["name", "text", "date", "category", "code"])
TINY = "training: {dim: 8, buckets: 512, epochs: 1, steps_per_epoch: 3, batch_size: 16, random_pairs: 200}\n"


@st.composite
def jobs(draw: st.DrawFn) -> tuple[pl.DataFrame, str]:
    rows = draw(st.integers(min_value=1, max_value=25))
    kinds = draw(st.lists(KINDS, min_size=1, max_size=3))
    types = draw(st.lists(st.sampled_from(sorted(TYPED)), min_size=len(kinds), max_size=len(kinds)))
    columns = {
        f"f{i}": pl.Series(draw(st.lists(TYPED[t][0], min_size=rows, max_size=rows)), dtype=TYPED[t][1])
        for i, t in enumerate(types)
    }
    if draw(st.booleans()):
        ids = pl.Series(draw(st.lists(st.integers(0, 10_000), min_size=rows, max_size=rows, unique=True)))
    else:
        ids = pl.Series(draw(st.lists(st.text(min_size=1, max_size=5), min_size=rows, max_size=rows, unique=True)))
    frame = pl.DataFrame({"id": ids, **columns})
    method = draw(st.sampled_from(["components", "density"]))
    threshold = draw(st.sampled_from([0.2, 0.5, 0.9]))
    passes = draw(
        st.sampled_from(
            [
                "[[f0]]",
                '[["f0[:2]"]]',
                "[{sorted_neighbourhood: f0, window: 3}]",
                '[["soundex(f0)"], [f0]]',
            ]
        )
    )
    fields = ", ".join(f"f{i}: {k}" for i, k in enumerate(kinds))
    config = (
        f"id_column: id\nfields: {{{fields}}}\nblocking: {passes}\nthreshold: {threshold}\n"
        f"clustering: {{method: {method}}}\n{TINY}"
    )
    return frame, config


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_runs_never_crash_and_clusters_are_consistent(job: tuple[pl.DataFrame, str]) -> None:
    frame, config_text = job
    config = parse_config(config_text)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.parquet"
        frame.write_parquet(source)
        if all(_missing_everywhere(frame[c]) for c in config.fields):  # the one error valid data can get
            with pytest.raises(InputError, match="every field is null in every row"):
                run(source, config, Path(tmp) / "out")
            return
        run(source, config, Path(tmp) / "out")
        clusters = pl.read_parquet(Path(tmp) / "out" / "clusters.parquet")
        pairs = pl.read_parquet(Path(tmp) / "out" / "pairs.parquet")

    assert clusters["id"].to_list() == frame["id"].to_list()  # every record exactly once, in order
    members = clusters.group_by("cluster_id").agg(pl.col("id").min().alias("smallest"), pl.len())
    assert (members["cluster_id"] == members["smallest"]).all()
    sizes = dict(zip(members["cluster_id"], members["len"], strict=True))
    assert clusters["cluster_size"].to_list() == [sizes[c] for c in clusters["cluster_id"]]

    cluster_of = dict(zip(clusters["id"], clusters["cluster_id"], strict=True))
    row = {v: i for i, v in enumerate(clusters["id"])}
    above = pairs.filter(pl.col("match_probability") >= config.threshold)
    left = np.array([row[v] for v in above["id_l"]], dtype=np.int64)
    right = np.array([row[v] for v in above["id_r"]], dtype=np.int64)
    component = components(len(row), left, right)
    # same cluster => connected above threshold, for every member of every cluster
    spread = (
        clusters.with_columns(component=pl.Series(component)).group_by("cluster_id").agg(pl.col("component").n_unique())
    )
    assert (spread["component"] == 1).all()
    if config.clustering.method == "components":
        assert all(cluster_of[a] == cluster_of[b] for a, b in zip(above["id_l"], above["id_r"], strict=True))


def _missing_everywhere(column: pl.Series) -> bool:
    """Null, NaN or blank in every row (what dedup reads as a missing value)."""
    if column.dtype.is_float():
        column = column.fill_nan(None)
    text = column.cast(pl.String).str.strip_chars()
    return bool((text.is_null() | (text == "")).all())
