"""The data generator: exact size, seeded, known clusters of 1-10, and the errors it promises."""

from __future__ import annotations

import numpy as np
import polars as pl

from dedup.synth import FIELDS, SynthSettings, cached, cluster_sizes, generate, write


def test_sizes_sum_to_n_and_stay_within_bounds() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 1000, 12345):
        sizes = cluster_sizes(n, SynthSettings(), rng)
        assert sizes.sum() == n and sizes.min() >= 1 and sizes.max() <= 10


def test_same_seed_same_records_other_seed_other_records() -> None:
    a, b, c = generate(3000, seed=1), generate(3000, seed=1), generate(3000, seed=2)
    assert a.equals(b) and not a.equals(c)
    assert a.columns == ["unique_id", *FIELDS, "cluster"]
    assert a.height == 3000 and a["unique_id"].n_unique() == 3000


def test_duplicates_carry_realistic_errors() -> None:
    records = generate(20000, seed=3)
    sizes = records["cluster"].value_counts()["count"]
    assert sizes.max() <= 10 and 0.25 < (sizes > 1).mean() < 0.45  # ~35% of entities have duplicates
    for field in FIELDS:  # ~5% missing per field
        assert 0.03 < records[field].null_count() / records.height < 0.08
    pairs = records.join(records, on="cluster", suffix="_r").filter(pl.col("unique_id") < pl.col("unique_id_r"))
    differs = {f: (pairs[f] != pairs[f"{f}_r"]).mean() for f in FIELDS}
    assert all(0.05 < share < 0.6 for share in differs.values()), differs  # messy, but recognisably the same
    nickname = pairs.filter((pl.col("first_name") == "robert") & (pl.col("first_name_r") == "bob"))
    swapped = pairs.filter(pl.col("first_name") == pl.col("surname_r"))
    abbreviated = pairs.filter(pl.col("address").str.ends_with(" street") & pl.col("address_r").str.ends_with(" st"))
    same_year = pl.col("dob").str.slice(0, 4) == pl.col("dob_r").str.slice(0, 4)
    slipped = pairs.filter(same_year, pl.col("dob") != pl.col("dob_r"))
    assert min(nickname.height, swapped.height, abbreviated.height, slipped.height) > 0


def test_write_is_a_parquet_file(tmp_path) -> None:
    path = write(500, tmp_path / "people.parquet", seed=0)
    assert pl.read_parquet(path).equals(generate(500, seed=0))


def test_hard_mode_has_namesakes_households_and_transcription_noise() -> None:
    easy, hard = generate(20000, seed=3), generate(20000, seed=3, settings=SynthSettings.hard())

    def cross(records: pl.DataFrame, on: list[str]) -> int:
        """Pairs of *different* people agreeing on ``on``."""
        pairs = records.join(records, on=on, suffix="_r").filter(pl.col("unique_id") < pl.col("unique_id_r"))
        return int((pairs["cluster"] != pairs["cluster_r"]).sum())

    assert cross(easy, ["first_name", "surname", "dob"]) == 0
    assert cross(hard, ["first_name", "surname", "dob"]) > 100  # namesakes born the same day
    assert cross(hard, ["surname", "address", "postcode"]) > 2 * cross(easy, ["surname", "address", "postcode"])
    common = set(hard["surname"].value_counts().sort("count", descending=True)["surname"].head(20).to_list())
    assert hard["surname"].is_in(list(common)).mean() > easy["surname"].is_in(list(common)).mean()

    # transcription: duplicates' dates differ by a misread digit (1/7, 3/8, 5/6 ...) more often
    def misread_pairs(records: pl.DataFrame) -> int:
        pairs = records.join(records, on="cluster", suffix="_r").filter(pl.col("unique_id") < pl.col("unique_id_r"))
        same = pl.col("dob").str.replace_all("[17]", "1") == pl.col("dob_r").str.replace_all("[17]", "1")
        return int(pairs.filter(same & (pl.col("dob") != pl.col("dob_r"))).height)

    assert misread_pairs(hard) > misread_pairs(easy)


def test_cached_inputs_are_generated_once(tmp_path) -> None:  # noqa: ANN001
    first = cached(40, tmp_path, seed=2)
    made = first.stat().st_mtime_ns
    assert cached(40, tmp_path, seed=2) == first and first.stat().st_mtime_ns == made
    assert first.name == "synth_40_2.parquet"
    assert cached(40, tmp_path, seed=2, hard=True).name == "synth_40_2_hard.parquet"
