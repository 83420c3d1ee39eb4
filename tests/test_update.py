"""Incremental runs: new, corrected and deleted records join a master run with stable cluster ids."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dedup.charts import pair_counts
from dedup.cli import main
from dedup.clustering import cluster_frame, cluster_labels, components, confidence_sums
from dedup.config import DedupConfig, parse_config
from dedup.errors import BlockingError
from dedup.evaluation import cluster_metrics
from dedup.frequencies import field_statistics
from dedup.io import read_clusters
from dedup.model import DedupModel
from dedup.normalise import normalise_fields
from dedup.parts import load_components, load_embeddings
from dedup.pipeline import run
from dedup.publish import run_dir
from dedup.review.session import ReviewSession
from dedup.update import _settled_ids, _skipped_passes, change_list, stable_cluster_ids, update
from dedup.word_counts import count_parts, read_word_counts, save_word_counts
from tests.conftest import FEBRL_YAML, TINY_TRAINING, febrl_config

ROOT = Path(__file__).resolve().parents[1]
FEBRL3 = pl.read_parquet(ROOT / "data" / "febrl3.parquet")


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, tiny_config: DedupConfig) -> dict:
    """Febrl3's first 3,000 records deduplicated; the rest arrive in two daily drops."""
    root = tmp_path_factory.mktemp("update")
    base, first, second = FEBRL3.head(3000), FEBRL3.slice(3000, 1000), FEBRL3.slice(4000)
    paths = {}
    for name, frame in (("base", base), ("first", first), ("second", second), ("all", FEBRL3)):
        paths[name] = root / f"{name}.parquet"
        frame.write_parquet(paths[name])
    run(paths["base"], tiny_config, root / "master")
    return {"root": root, "config": tiny_config, **paths}


def _agreement(a: pl.DataFrame, b: pl.DataFrame) -> float:
    joined = a.select("rec_id", "cluster_id").join(b.select("rec_id", "cluster_id"), on="rec_id", suffix="_b")
    assert joined.height == a.height == b.height
    metrics = cluster_metrics(
        joined["cluster_id"].cast(pl.String).to_numpy(), joined["cluster_id_b"].cast(pl.String).to_numpy()
    )
    return metrics["cluster_pairs"]["f1"]


def test_daily_drops_agree_with_a_full_rerun(master: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = update(master["first"], master["root"] / "master", out)
    second = update(master["second"], out)  # the master updated in place, as a new generation
    clusters = pl.read_parquet(out / "clusters.parquet")
    assert clusters["rec_id"].to_list() == FEBRL3["rec_id"].to_list()  # every record once, master order first
    full = run(master["all"], master["config"], tmp_path / "full", model_path=master["root"] / "master" / "model")
    assert _agreement(clusters, pl.read_parquet(tmp_path / "full" / "clusters.parquet")) >= 0.99
    # the cost follows the new records: 1,000 of 5,000 records touch 1 - 0.8² = 36% of the pairs
    assert second["update"]["pairs_scored"] < 0.45 * full["counts"]["candidate_pairs"]
    assert first["update"]["new_records"] == second["update"]["new_records"] == 1000
    assert second["updated_from"]["run"] == first["run"] and second["run"] != first["run"]
    _assert_the_word_counts_are_a_recount(out, master["config"], tmp_path / "recount")
    assert len(list((run_dir(out) / "embeddings").glob("words-3-*.parquet"))) == 3  # the master's part and one per drop
    # the master's model is reused, not retrained, and the output explains itself
    assert second["model_fingerprint"] == first["model_fingerprint"]
    assert main(["explain", str(out), "--id", "rec-1496-org", "--id", "rec-552-dup-3"]) == 0


def test_ids_of_unchanged_clusters_stay_and_changes_are_listed(master: dict, tmp_path: Path) -> None:
    before = pl.read_parquet(master["root"] / "master" / "clusters.parquet").select("rec_id", "cluster_id")
    update(master["first"], master["root"] / "master", tmp_path / "out")
    after = pl.read_parquet(tmp_path / "out" / "clusters.parquet").select("rec_id", "cluster_id")
    changes = pl.read_parquet(tmp_path / "out" / "changes.parquet")
    moved = before.join(after, on="rec_id", suffix="_after").filter(pl.col("cluster_id") != pl.col("cluster_id_after"))
    # every master record whose id changed is listed, with the reason, and nothing else of theirs
    listed = changes.filter(pl.col("previous_cluster_id").is_not_null())
    assert sorted(moved["rec_id"].to_list()) == sorted(listed["rec_id"].to_list())
    assert set(listed["reason"].cast(pl.String)) <= {"merged", "split"}
    new = changes.filter(pl.col("previous_cluster_id").is_null())
    assert new.height == 1000 and set(new["reason"].cast(pl.String)) <= {"new", "joined"}
    joined = new.filter(pl.col("reason") == "joined")
    assert joined["cluster_id"].is_in(before["cluster_id"].implode()).all()  # joined = kept an old id
    # clusters that only gained records kept their id: most of the master's ids are still there
    assert before["cluster_id"].is_in(after["cluster_id"].implode()).mean() > 0.99


def test_corrections_and_deletions(master: dict, tmp_path: Path) -> None:
    clusters = pl.read_parquet(master["root"] / "master" / "clusters.parquet")
    pair = clusters.filter(pl.col("cluster_size") == 2).sort("rec_id").head(2)  # one cluster of two
    assert pair["cluster_id"].n_unique() == 1
    keep, drop = pair["rec_id"].to_list()
    other = clusters.filter(pl.col("cluster_size") == 1).row(-1, named=True)  # later in the master than keep
    # delete one member of the pair; rewrite a singleton to be an exact copy of the kept member
    copy = (
        pair.filter(pl.col("rec_id") == keep)
        .select(FEBRL3.columns)
        .with_columns(pl.lit(other["rec_id"]).alias("rec_id"))
    )
    changes = pl.concat(
        [
            copy.with_columns(pl.lit("upsert").alias("op")),
            pair.filter(pl.col("rec_id") == drop).select(FEBRL3.columns).with_columns(pl.lit("delete").alias("op")),
        ]
    )
    changes.write_parquet(tmp_path / "changes.parquet")
    report = update(tmp_path / "changes.parquet", master["root"] / "master", tmp_path / "out")
    after = pl.read_parquet(tmp_path / "out" / "clusters.parquet")
    assert after.height == clusters.height - 1 and drop not in after["rec_id"].to_list()
    moved = after.filter(pl.col("rec_id").is_in([keep, other["rec_id"]]))
    assert moved["cluster_id"].n_unique() == 1  # the corrected record now matches the kept one
    assert moved["cluster_id"][0] == pair["cluster_id"][0]  # the cluster seen first keeps its id
    listed = pl.read_parquet(tmp_path / "out" / "changes.parquet")
    reasons = dict(zip(listed["rec_id"].to_list(), listed["reason"].cast(pl.String).to_list(), strict=True))
    assert reasons[drop] == "deleted" and reasons[other["rec_id"]] == "merged"
    assert report["update"]["deleted_records"] == 1 and report["update"]["corrected_records"] == 1
    # only the components the changes touch were clustered again: the same as clustering every pair
    config = master["config"]
    assert _agreement(after, _clustered_from_every_pair(tmp_path / "out", config)) == 1.0
    assert after["cluster_confidence"].equals(
        _clustered_from_every_pair(tmp_path / "out", config)["cluster_confidence"]
    )
    assert pl.read_parquet(tmp_path / "out" / "pairs.parquet").height == report["counts"]["candidate_pairs"]
    # a record corrected out of a bigger cluster splits it; the rest of the master stands
    big = after.filter(pl.col("cluster_size") >= 3).sort("rec_id").head(1)
    nowhere = {c: "zzyzx qqq" for c in FEBRL3.columns if c != "rec_id"}  # like no other record
    leaving = big.select(FEBRL3.columns).with_columns(
        pl.lit(v).cast(FEBRL3.schema[c]).alias(c) for c, v in nowhere.items()
    )
    leaving.write_parquet(tmp_path / "split.parquet")
    update(tmp_path / "split.parquet", tmp_path / "out")
    split = pl.read_parquet(tmp_path / "out" / "clusters.parquet")
    assert split.filter(pl.col("rec_id") == big["rec_id"][0])["cluster_size"][0] == 1
    scratch = _clustered_from_every_pair(tmp_path / "out", config)
    assert _agreement(split, scratch) == 1.0 and split["cluster_confidence"].equals(scratch["cluster_confidence"])
    _assert_the_word_counts_are_a_recount(tmp_path / "out", config, tmp_path / "recount")
    assert len(list((run_dir(tmp_path / "out") / "embeddings").glob("words-3-*.parquet"))) == 1  # rewritten as one


def _assert_the_word_counts_are_a_recount(out: Path, config: DedupConfig, scratch: Path) -> None:
    """The text fields' stored word counts (what the next update reads) are those of every record."""
    records, _ = read_clusters(out)
    written = save_word_counts(field_statistics(normalise_fields(records, config), config), scratch)
    assert [p.name for p in written] == ["words-3-000000000000.parquet", "words-4-000000000000.parquet"]
    for j in (3, 4):  # address_1, address_2
        stored = read_word_counts(count_parts(run_dir(out) / "embeddings", j))
        assert stored.equals(read_word_counts(count_parts(scratch, j)))


def test_records_a_person_said_differ_stay_apart_through_updates(master: dict, tmp_path: Path) -> None:
    """A non-match answer inside a cluster of three or more parts the cluster in the run that
    reads it (a third record joined the two), and an update that scores the pair and clusters
    the cluster again (a correction of one of the two) applies the answer and keeps the two
    apart too, as a full rerun with the answer does."""
    root = master["root"] / "master"
    clusters = pl.read_parquet(root / "clusters.parquet").select("rec_id", "cluster_id", "cluster_size")
    big = clusters.filter(pl.col("cluster_size") >= 3)
    inside = (
        pl.read_parquet(root / "pairs.parquet")
        .filter(pl.col("is_match"))
        .join(big.rename(lambda c: f"{c}_l"), on="rec_id_l")
        .join(big.rename(lambda c: f"{c}_r"), on="rec_id_r")
        .filter(pl.col("cluster_id_l") == pl.col("cluster_id_r"))
        .sort("match_probability", "rec_id_l", "rec_id_r")
    )
    a, b, cluster = (
        inside.row(0, named=True)["rec_id_l"],
        inside.row(0, named=True)["rec_id_r"],
        inside["cluster_id_l"][0],
    )
    third = big.filter((pl.col("cluster_id") == cluster) & ~pl.col("rec_id").is_in([a, b]))["rec_id"][0]
    labels = tmp_path / "labels.parquet"
    pl.DataFrame({"left_id": [a], "right_id": [b], "label": ["non-match"]}).write_parquet(labels)
    model, config = root / "model", master["config"]

    def cluster_of(out: Path) -> dict[str, str]:
        return dict(pl.read_parquet(out / "clusters.parquet").select("rec_id", "cluster_id").iter_rows())

    run(master["base"], config, tmp_path / "labelled", model_path=model, labels=labels)
    before = cluster_of(tmp_path / "labelled")
    assert before[a] != before[b] and before[third] in (before[a], before[b])
    assert (run_dir(tmp_path / "labelled") / "embeddings" / "answers.parquet").is_file()
    # one of the two corrected to the same values: its pairs are scored again, its cluster clustered again
    FEBRL3.filter(pl.col("rec_id") == a).write_parquet(tmp_path / "change.parquet")
    report = update(tmp_path / "change.parquet", tmp_path / "labelled", tmp_path / "updated")
    assert report["update"]["corrected_records"] == 1
    after = cluster_of(tmp_path / "updated")
    assert after[a] != after[b] and after[third] in (after[a], after[b])
    answered = pl.read_parquet(tmp_path / "updated" / "pairs.parquet").filter(pl.col("label").is_not_null())
    assert answered.select("label", "match_probability").rows() == [("non-match", 0.0)]
    full = run(master["base"], config, tmp_path / "full", model_path=model, labels=labels)
    assert full["counts"]["clusters"] == report["counts"]["clusters"]
    assert (
        _agreement(
            pl.read_parquet(tmp_path / "updated" / "clusters.parquet"),
            pl.read_parquet(tmp_path / "full" / "clusters.parquet"),
        )
        == 1.0
    )
    # published again for the next update
    assert (run_dir(tmp_path / "updated") / "embeddings" / "answers.parquet").is_file()


def test_deleting_the_middle_of_a_chain_splits_it(master: dict, tmp_path: Path) -> None:
    """A cluster of three held by two match edges (a chain) loses its middle record: its ends
    share no edge, so they part, though neither end changed (the component that held the
    deleted record is clustered again, not only the changed records' new components)."""
    clusters = pl.read_parquet(master["root"] / "master" / "clusters.parquet").select("rec_id", "cluster_id")
    edges = (
        pl.read_parquet(master["root"] / "master" / "pairs.parquet").filter("is_match").select("rec_id_l", "rec_id_r")
    )
    inside = edges.join(clusters.rename({"rec_id": "rec_id_l"}), on="rec_id_l").join(
        clusters.rename({"rec_id": "rec_id_r", "cluster_id": "other"}), on="rec_id_r"
    )
    inside = inside.filter(pl.col("cluster_id") == pl.col("other"))
    size = clusters.group_by("cluster_id").len("size")
    chains = (
        inside.group_by("cluster_id")
        .len("edges")
        .join(size, on="cluster_id")
        .filter((pl.col("size") == 3) & (pl.col("edges") == 2))
    )
    assert chains.height, "the master holds no chain of three to test with"
    chain = inside.filter(pl.col("cluster_id") == chains.sort("cluster_id")["cluster_id"][0])
    ends = pl.concat([chain["rec_id_l"], chain["rec_id_r"]]).value_counts()
    middle = ends.filter(pl.col("count") == 2)["rec_id_l"][0]
    outer = ends.filter(pl.col("count") == 1)["rec_id_l"].to_list()
    FEBRL3.filter(pl.col("rec_id") == middle).with_columns(pl.lit("delete").alias("op")).write_parquet(
        tmp_path / "delete.parquet"
    )
    update(tmp_path / "delete.parquet", master["root"] / "master", tmp_path / "out")
    after = pl.read_parquet(tmp_path / "out" / "clusters.parquet")
    assert after.filter(pl.col("rec_id").is_in(outer))["cluster_id"].n_unique() == 2
    assert _agreement(after, _clustered_from_every_pair(tmp_path / "out", master["config"])) == 1.0


def _published_embeddings(out: Path) -> tuple[list[Path], dict[str, np.ndarray]]:
    """The embedding files of a result and every record's vectors they hold, per field."""
    files = sorted((run_dir(out) / "embeddings").glob("embeddings-*.npz"))
    config = DedupModel.load(out / "model").config
    loaded = load_embeddings(files, config.field_names)
    return files, {f: loaded.dense(f) for f in config.field_names}


def test_an_update_that_only_adds_records_links_the_masters_embeddings(master: dict, tmp_path: Path) -> None:
    """The cost of new records: the master's embedding files are linked into the new result,
    only the added records' embeddings are written; a correction rewrites them whole."""
    masters, _ = _published_embeddings(master["root"] / "master")
    update(master["first"], master["root"] / "master", tmp_path / "out")
    files, vectors = _published_embeddings(tmp_path / "out")
    assert len(files) == len(masters) + 1 and files[-1].name == "embeddings-000000003000.npz"
    assert all(os.path.samefile(a, b) for a, b in zip(masters, files, strict=False))
    model = DedupModel.load(tmp_path / "out" / "model")
    records = pl.read_parquet(tmp_path / "out" / "clusters.parquet")
    fresh = model.embed(normalise_fields(records, model.config))  # what a full run would publish
    assert all(np.array_equal(vectors[f], fresh.dense(f)) for f in model.config.field_names)
    # the records' normalised fields are kept beside them the same way, and read by the next update
    stored = sorted((run_dir(tmp_path / "out") / "embeddings").glob("normalised-*.parquet"))
    assert [p.name for p in stored] == ["normalised-000000000000.parquet", "normalised-000000003000.parquet"]
    assert os.path.samefile(stored[0], run_dir(master["root"] / "master") / "embeddings" / stored[0].name)
    assert pl.read_parquet(stored).equals(normalise_fields(records, model.config))
    # a correction changes a master row: the files are written anew, in one piece
    corrected = FEBRL3.head(1).with_columns(pl.lit("someone else").alias("surname"))
    corrected.write_parquet(tmp_path / "correction.parquet")
    update(tmp_path / "correction.parquet", tmp_path / "out")
    files, vectors = _published_embeddings(tmp_path / "out")
    assert [f.name for f in files] == ["embeddings-000000000000.npz"]
    stored = sorted((run_dir(tmp_path / "out") / "embeddings").glob("normalised-*.parquet"))
    assert [p.name for p in stored] == ["normalised-000000000000.parquet"]
    records = pl.read_parquet(tmp_path / "out" / "clusters.parquet")
    assert pl.read_parquet(stored).equals(normalise_fields(records, model.config))
    assert not np.array_equal(vectors["surname"][0], fresh.dense("surname")[0])
    assert all(np.array_equal(vectors[f][1:], fresh.dense(f)[1:]) for f in model.config.field_names)


def test_the_stored_word_counts_score_as_a_recount_does(master: dict, tmp_path: Path) -> None:
    """An update weighs the new pairs' words by the master's stored counts plus the drop's; a
    master without them (an older version's) is counted again over every record: same scores."""
    update(master["first"], master["root"] / "master", tmp_path / "stored")
    older = tmp_path / "older"
    shutil.copytree(run_dir(master["root"] / "master"), older)
    for part in (older / "embeddings").glob("words-*.parquet"):
        part.unlink()
    update(master["first"], older, tmp_path / "recounted")
    assert not list((run_dir(tmp_path / "recounted") / "embeddings").glob("words-*"))  # nothing to add to
    a, b = (pl.read_parquet(tmp_path / name / "pairs.parquet") for name in ("stored", "recounted"))
    assert a.height > 30000 and a.equals(b)


def _clustered_from_every_pair(out: Path, config: DedupConfig) -> pl.DataFrame:
    """The clusters a from-scratch clustering of every published pair gives (what the update's
    clustering of the touched components only must equal)."""
    records = pl.read_parquet(out / "clusters.parquet")
    position = records.select("rec_id").with_row_index("row")
    pairs = pl.read_parquet(out / "pairs.parquet").select("rec_id_l", "rec_id_r", "match_probability")
    pairs = pairs.join(position.rename({"rec_id": "rec_id_l", "row": "l"}), on="rec_id_l")
    pairs = pairs.join(position.rename({"rec_id": "rec_id_r", "row": "r"}), on="rec_id_r")
    left, right = pairs["l"].to_numpy().astype(np.int64), pairs["r"].to_numpy().astype(np.int64)
    probability = pairs["match_probability"].to_numpy()
    labels = cluster_labels(records.height, left, right, probability, config.threshold, config.clustering)
    total, count = confidence_sums(labels, left, right, probability)
    inputs = records.drop("cluster_id", "cluster_size", "cluster_confidence")
    return cluster_frame(inputs, "rec_id", labels, total, count)


def test_an_update_that_only_adds_records_adds_a_part_of_pairs_and_reclusters_what_they_touch(
    master: dict, tmp_path: Path
) -> None:
    """The master's pairs are linked, not rewritten; only the components the new records touch are
    clustered again, with the same result as clustering every pair; the charts' counts add up."""
    out = tmp_path / "out"
    masters_pairs = run_dir(master["root"] / "master") / "pairs.parquet"
    first = update(master["first"], master["root"] / "master", out)
    parts = sorted((run_dir(out) / "pairs.parquet").iterdir())
    assert [p.name for p in parts] == ["part-000000000000.parquet", "part-000000003000.parquet"]
    assert os.path.samefile(parts[0], masters_pairs)
    new = pl.read_parquet(parts[1])
    assert new.height == first["update"]["pairs_scored"] and new.columns == pl.read_parquet(masters_pairs).columns
    assert pl.read_parquet(out / "pairs.parquet").height == first["counts"]["candidate_pairs"]
    second = update(master["second"], out)  # a second drop: one more part, the first two linked
    names = [p.name for p in sorted((run_dir(out) / "pairs.parquet").iterdir())]
    assert names == ["part-000000000000.parquet", "part-000000003000.parquet", "part-000000004000.parquet"]
    config = master["config"]
    clusters = pl.read_parquet(out / "clusters.parquet")
    scratch = _clustered_from_every_pair(out, config)
    assert _agreement(clusters, scratch) == 1.0  # the same clusters, record for record
    assert clusters["cluster_confidence"].equals(scratch["cluster_confidence"])
    assert second["counts"]["matches"] == int(pl.read_parquet(out / "pairs.parquet")["is_match"].sum())
    everything = pl.scan_parquet(out / "pairs.parquet")
    assert json.loads((out / "charts" / "counts.json").read_text()) == pair_counts(everything, config.field_names)
    # a deletion removes pairs from the master's parts: they are written anew, as one file
    FEBRL3.head(1).with_columns(pl.lit("delete").alias("op")).write_parquet(tmp_path / "delete.parquet")
    third = update(tmp_path / "delete.parquet", out)
    assert (run_dir(out) / "pairs.parquet").is_file()
    assert pl.read_parquet(out / "pairs.parquet").height == third["counts"]["candidate_pairs"]
    assert _agreement(pl.read_parquet(out / "clusters.parquet"), _clustered_from_every_pair(out, config)) == 1.0


def _match_components(out: Path) -> np.ndarray:
    """Each published record's component of the published match graph, from scratch."""
    records = pl.read_parquet(out / "clusters.parquet").select("rec_id").with_row_index("row")
    edges = pl.read_parquet(out / "pairs.parquet").filter(pl.col("is_match"))
    edges = edges.join(records.rename({"rec_id": "rec_id_l", "row": "l"}), on="rec_id_l")
    edges = edges.join(records.rename({"rec_id": "rec_id_r", "row": "r"}), on="rec_id_r")
    return components(records.height, edges["l"].to_numpy(), edges["r"].to_numpy())


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = pl.DataFrame({"a": a, "b": b}).unique()
    return len(a) == len(b) and pairs.height == pairs["a"].n_unique() == pairs["b"].n_unique()


def test_the_stored_components_are_the_match_graphs_after_runs_and_updates(master: dict, tmp_path: Path) -> None:
    """A run stores each record's match-graph component beside its embeddings; an update that only
    adds records grows the master's by the new matches, one with a deletion counts them again:
    each time they are the components of the published match edges. An update of a master
    without them (an older version's) reads the master's edges instead, to the same result."""
    out = tmp_path / "out"
    assert _same_partition(
        load_components(run_dir(master["root"] / "master") / "embeddings", 3000),
        _match_components(master["root"] / "master"),
    )
    update(master["first"], master["root"] / "master", out)
    update(master["second"], out)
    assert _same_partition(load_components(run_dir(out) / "embeddings", FEBRL3.height), _match_components(out))
    older = tmp_path / "older"
    shutil.copytree(master["root"] / "master", older, symlinks=True)
    (run_dir(older) / "embeddings" / "components.parquet").unlink()
    update(master["first"], older)
    update(master["second"], older)
    assert pl.read_parquet(older / "clusters.parquet").equals(pl.read_parquet(out / "clusters.parquet"))
    assert _same_partition(load_components(run_dir(older) / "embeddings", FEBRL3.height), _match_components(older))
    FEBRL3.slice(10, 3).with_columns(pl.lit("delete").alias("op")).write_parquet(tmp_path / "delete.parquet")
    update(tmp_path / "delete.parquet", out)
    kept = load_components(run_dir(out) / "embeddings", FEBRL3.height - 3)
    assert kept is not None and _same_partition(kept, _match_components(out))


def test_bad_change_files_are_one_line(master: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        (FEBRL3.head(3).drop("surname"), "the columns differ from the previous run's input; missing: 'surname'"),
        (FEBRL3.head(3).with_columns(pl.lit("erase").alias("op")), "column 'op' must be 'upsert' or 'delete'"),
        (FEBRL3.slice(4000, 2).with_columns(pl.lit("delete").alias("op")), "cannot delete id(s) the previous run"),
    ]
    for frame, message in cases:
        frame.write_parquet(tmp_path / "bad.parquet")
        code = main(["update", str(tmp_path / "bad.parquet"), "--previous", str(master["root"] / "master")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err


def _ids(labels: list[int], previous: list[str | None], first: list[int | None], ids: list[str]) -> list[str]:
    return stable_cluster_ids(
        np.array(labels), pl.Series(previous, dtype=pl.String), pl.Series(first, dtype=pl.Int64), pl.Series(ids)
    ).to_list()


def test_past_the_part_limit_the_pairs_are_written_as_one_file_again(
    master: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    first = update(master["first"], master["root"] / "master", out)
    assert len(list((run_dir(out) / "pairs.parquet").iterdir())) == 2
    monkeypatch.setattr("dedup.update.PAIR_PARTS", 2)  # a third part would pass the limit
    second = update(master["second"], out)
    assert (run_dir(out) / "pairs.parquet").is_file()
    pairs = pl.read_parquet(out / "pairs.parquet")
    second_drop = FEBRL3["rec_id"].slice(4000).implode()
    new_pairs = pairs.filter(pl.col("rec_id_l").is_in(second_drop) | pl.col("rec_id_r").is_in(second_drop))
    assert pairs.height == second["counts"]["candidate_pairs"] == first["counts"]["candidate_pairs"] + new_pairs.height
    assert new_pairs.height == second["update"]["pairs_scored"]


def test_a_drop_whose_key_block_is_too_big_is_refused_and_nothing_is_published(tmp_path: Path) -> None:
    """The update's key passes join only the changed records, but they obey ``blocking_max_pairs``
    as a run's passes do. The master's 400 records are spread over 8 states (9,800 pairs); a drop
    of 300 records all in one of them would make 300 x 50 + 300 x 299 / 2 = 59,850 more."""
    config = parse_config(
        FEBRL_YAML.split("blocking:")[0] + "blocking:\n  - [state]\nblocking_max_pairs: 20000\n" + TINY_TRAINING
    )
    states = pl.Series(["nsw", "vic", "qld", "wa", "sa", "tas", "act", "nt"] * 50)
    FEBRL3.head(400).with_columns(states.alias("state")).write_parquet(tmp_path / "base.parquet")
    run(tmp_path / "base.parquet", config, tmp_path / "out")
    before = run_dir(tmp_path / "out")
    FEBRL3.slice(400, 300).with_columns(pl.lit("vic").alias("state")).write_parquet(tmp_path / "drop.parquet")
    with pytest.raises(BlockingError, match=r"block\(state\).* 59,850 candidate pairs.*vic \(350 records\)"):
        update(tmp_path / "drop.parquet", tmp_path / "out")
    assert run_dir(tmp_path / "out") == before


def test_passes_the_master_skipped_are_skipped() -> None:
    config = febrl_config()
    names = [p.name for p in config.passes]
    report = {"blocking": [{"pass": n, "pairs": 1} for n in names]}
    report["blocking"][1]["skipped"] = "skipping default blocking pass block(date_of_birth): ..."
    assert _skipped_passes(report, config) == [False, True] + [False] * (len(names) - 2)
    assert _skipped_passes({}, config) is None  # an older master: estimated again
    assert _skipped_passes({"blocking": report["blocking"][:2]}, config) is None  # other passes


def test_the_review_page_retrains_an_updated_master_on_every_record(master: dict, tmp_path: Path) -> None:
    """An update's report names its change file as input: a retrain from ``dedup review`` must
    not run on those 1,000 records alone (the master would lose the other 3,000), but on all."""
    out = tmp_path / "out"
    update(master["first"], master["root"] / "master", out)
    source = ReviewSession(out).retrain_input()
    assert source is not None and source != master["first"]
    assert pl.read_parquet(source).equals(FEBRL3.head(4000))


def test_stable_id_rules() -> None:
    # a cluster that only gains records keeps its id, even when the newcomer's id sorts first
    assert _ids([0, 0, 0], ["b", "b", None], [0, 1, None], ["b", "c", "a"]) == ["b", "b", "b"]
    # a new record alone gets its own id
    assert _ids([0, 1], ["b", None], [0, None], ["b", "z"]) == ["b", "z"]
    # a merge keeps the id of the cluster whose oldest record came first
    assert _ids([0, 0, 0], ["x", "x", "a"], [3, 4, 7], ["x", "y", "a"]) == ["x", "x", "x"]
    # a split: the part holding the oldest record keeps the id, the other part takes its smallest free id
    assert _ids([0, 1, 1], ["p", "p", "p"], [0, 1, 2], ["p", "q", "r"]) == ["p", "q", "q"]
    # ... also when the record named like the cluster left it: every member id taken, any free id
    assert _ids([0, 1, 1], ["p", "p", "p"], [5, 0, 1], ["p", "q", "r"]) == ["q", "p", "p"]
    # a new cluster whose smallest id already names another cluster takes its next free id
    assert _ids([0, 1, 1], ["a", None, None], [0, None, None], ["b", "a", "c"]) == ["a", "c", "c"]


def _scenario(rng: np.random.Generator) -> dict:
    """Records after an update as ``_cluster_touched`` leaves them: the previous clusters it did
    not touch keep their label, the touched ones and the new records are merged and split at
    random; cluster ids are record ids, not always a member's (as after a split), and a few
    records were corrected or deleted."""
    n_master, n_new = int(rng.integers(5, 40)), int(rng.integers(0, 10))
    n = n_master + n_new
    ids = pl.Series("rec_id", [f"r{i:03d}" for i in rng.permutation(200)[:n]])
    clusters = rng.integers(0, max(n_master // 2, 1), size=n_master)
    names = rng.choice(ids.to_numpy(), size=clusters.max() + 1, replace=False)
    previous = pl.Series([*names[clusters], *[None] * n_new], dtype=pl.String)
    first = pl.Series([*rng.permutation(n_master + 5)[:n_master].tolist(), *[None] * n_new], dtype=pl.Int64)
    hit = rng.random(clusters.max() + 1) < 0.4
    touched = np.concatenate([hit[clusters], np.ones(n_new, dtype=bool)])
    labels = np.concatenate([clusters, np.zeros(n_new, dtype=np.int64)])
    labels[touched] = clusters.max() + 1 + rng.integers(0, max(int(touched.sum()) // 2, 1), size=int(touched.sum()))
    changed = touched & (rng.random(n) < 0.3)
    changed[n_master:] = True
    before = pl.DataFrame({"cluster_id": previous, "_first": first, "corrected": changed & (np.arange(n) < n_master)})
    # the touched rows as given: every new record, and of each touched cluster one member or more
    given = touched & ((rng.random(n) < 0.5) | (np.arange(n) >= n_master))
    given[np.unique(clusters, return_index=True)[1][hit[np.unique(clusters)]]] = True
    deletes = pl.Series("rec_id", [f"gone{i}" for i in range(int(rng.integers(0, 3)))])
    return {
        "labels": labels,
        "touched": np.flatnonzero(given),
        "before": before,
        "ids": ids,
        "changed": changed,
        "deletes": deletes,
    }


def test_ids_settled_over_the_touched_clusters_equal_ids_settled_over_every_record() -> None:
    """``_settled_ids`` works out ids and changes over the touched records' previous clusters
    only; on any update it gives what the rules give over every record (ids taken by untouched
    clusters are not free, the rare spare id is found among every record's)."""
    for seed in range(300):
        case = _scenario(np.random.default_rng(seed))
        before, ids, labels = case["before"], case["ids"], case["labels"]
        every = stable_cluster_ids(labels, before["cluster_id"], before["_first"], ids)
        changes = change_list(ids, before, every, labels, case["changed"], case["deletes"], "rec_id")
        settled, listed = _settled_ids(labels, case["touched"], before, ids, case["changed"], case["deletes"], "rec_id")
        assert settled.to_list() == every.to_list(), seed
        assert listed.equals(changes), seed


def _dedup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("dedup")), *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_inbox_applies_each_file_exactly_once_even_after_kill_9(master: dict, tmp_path: Path) -> None:
    """The ledger is published with the result: a kill right after the switch (result in, and
    nothing else done) and one before it (nothing in) both end with every file applied once."""
    out = tmp_path / "master"
    subprocess.run(["cp", "-a", str(master["root"] / "master"), str(out)], check=True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    FEBRL3.slice(3000, 1000).write_parquet(inbox / "day1.parquet")
    FEBRL3.slice(4000).write_parquet(inbox / "day2.parquet")
    env = {k: v for k, v in os.environ.items() if k != "DEDUP_KILL_AT"}
    killed = _dedup("inbox", str(inbox), "--master", str(out), env={**env, "DEDUP_KILL_AT": "switched"})
    assert killed.returncode == -signal.SIGKILL  # day1 published with its ledger entry, then killed
    killed = _dedup("inbox", str(inbox), "--master", str(out), env={**env, "DEDUP_KILL_AT": "report.json"})
    assert killed.returncode == -signal.SIGKILL  # day2 written but never switched in
    done = _dedup("inbox", str(inbox), "--master", str(out), env=env)
    assert done.returncode == 0 and "applied 1 file(s): day2.parquet" in done.stdout, done.stderr
    again = _dedup("inbox", str(inbox), "--master", str(out), env=env)
    assert "applied 0 file(s): none new" in again.stdout
    clusters = pl.read_parquet(out / "clusters.parquet")
    assert clusters["rec_id"].to_list() == FEBRL3["rec_id"].to_list()  # nothing skipped, nothing twice
    ledger = json.loads((out / "report.json").read_text())["ledger"]
    assert [entry["file"] for entry in ledger] == ["day1.parquet", "day2.parquet"]


def test_the_prefect_flow_applies_the_inbox(master: dict, tmp_path: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.update_inbox import update_inbox

    out = tmp_path / "master"
    subprocess.run(["cp", "-a", str(master["root"] / "master"), str(out)], check=True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    FEBRL3.slice(3000, 500).write_parquet(inbox / "a.parquet")
    with prefect_test_harness(server_startup_timeout=120):
        state = update_inbox(str(inbox), str(out), return_state=True)
        assert state.is_completed() and state.result() == ["a.parquet"]
        assert update_inbox(str(inbox), str(out)) == []
    assert pl.read_parquet(out / "clusters.parquet").height == 3500


def test_the_inbox_flow_checks_its_arguments_before_prefect_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows.update_inbox", "--inbox", str(tmp_path), "--master", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"update-inbox: error: {tmp_path / 'none'}: no clusters.parquet here; is this the output of `dedup run`?"
    ]


@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_the_changed_records_embedding_neighbours_are_their_nearest_among_every_record(method: str) -> None:
    """The update's embedding pass (record vectors gathered from the tables, never all held)
    finds each changed record's k nearest among all records, as the joined vectors rank them."""
    from dedup.blocking import record_vectors
    from dedup.config import EmbeddingPass
    from dedup.encoder import FieldEmbeddings
    from dedup.update import Embeddings, _embedding_neighbours

    rng = np.random.default_rng(7)
    n, tables, codes = 3000, {}, {}
    for field, distinct in (("name", 400), ("city", 50)):
        table = rng.normal(size=(distinct + 1, 16)).astype(np.float32)
        table /= np.linalg.norm(table, axis=1, keepdims=True)
        table[0] = 0.0
        tables[field], codes[field] = table, rng.integers(0, distinct + 1, size=n).astype(np.int32)
    vectors = record_vectors(FieldEmbeddings(dict(tables), dict(codes)))
    changed = np.array([3, 1200, 2999])
    embeddings = Embeddings([], FieldEmbeddings(tables, codes), np.arange(n), linked=False)
    left, right = _embedding_neighbours(embeddings, changed, EmbeddingPass(k=4, method=method))
    similarity = vectors[changed] @ vectors.T
    similarity[np.arange(len(changed)), changed] = -np.inf  # not its own neighbour
    expected = {(int(changed[i]), int(j)) for i in range(len(changed)) for j in np.argsort(-similarity[i])[:4]}
    found = set(zip(left.tolist(), right.tolist(), strict=True))
    assert found == expected if method == "exact" else len(found & expected) >= 0.9 * len(expected)
