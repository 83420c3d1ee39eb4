"""A run's result is published as one unit: kill -9 at any step leaves the old or the new, never a mix."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from dedup.publish import CURRENT, GENERATIONS, publish_generation, remove_leftovers, run_dir, switch

# every named step of publishing (dedup/report.py publish, dedup/publish.py switch), in order
DEDUP = str(Path(sys.executable).with_name("dedup"))
BEFORE_SWITCH = ("generation", "model", "pairs.parquet", "clusters.parquet", "charts", "report.json", "switch")
AFTER_SWITCH = ("switched", "linked-pairs.parquet", "linked-clusters.parquet", "linked-report.json", "linked-model")


def _dedup_run(source: Path, config: Path, out: Path, kill_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DEDUP_KILL_AT"}
    if kill_at:
        env["DEDUP_KILL_AT"] = kill_at
    return subprocess.Popen(
        [DEDUP, "run", str(source), "--config", str(config), "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def _finish(process: subprocess.Popen) -> int:
    _, err = process.communicate(timeout=300)
    assert process.returncode in (0, -signal.SIGKILL), err[-3000:]
    return process.returncode


def _digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_ipc(None).getvalue()).hexdigest()


def result_state(out: Path) -> tuple[object, ...]:
    """What a reader of ``out`` sees through the names it opens, checked to be one run's files."""
    report = json.loads((out / "report.json").read_text())
    pairs = pl.read_parquet(out / "pairs.parquet")
    clusters = pl.read_parquet(out / "clusters.parquet")
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert report["run"] == run_dir(out).name  # the report is the current generation's
    assert report["counts"]["matches"] == pairs["is_match"].sum()
    assert report["counts"]["candidate_pairs"] == pairs.height
    assert report["counts"]["clusters"] == clusters["cluster_id"].n_unique()
    assert report["model_fingerprint"] == hashlib.sha256(json.dumps(meta["files"], sort_keys=True).encode()).hexdigest()
    assert sorted(p.name for p in (out / "charts").iterdir()) == sorted(
        p.name for p in (run_dir(out) / "charts").iterdir()
    )
    return (
        report["threshold"],
        report["model_fingerprint"],
        _digest(pairs.select(pairs.columns[:2] + ["match_probability"])),
        _digest(clusters.select("cluster_id")),
    )


def _leftovers(out: Path) -> list[str]:
    generations = sorted(p.name for p in (out / GENERATIONS).iterdir())
    assert generations == [run_dir(out).name]
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name not in (".lock", GENERATIONS))


@pytest.fixture(scope="module")
def two_results(tmp_path_factory: pytest.TempPathFactory, febrl1_file: Path, tiny_config_file: Path) -> dict:
    """An output holding result A, and result B (another seed and threshold) made elsewhere."""
    root = tmp_path_factory.mktemp("publish")
    other = root / "other.yaml"
    other.write_text(tiny_config_file.read_text() + "\nseed: 7\nthreshold: 0.7\n")
    a, b = root / "a", root / "b"
    assert _finish(_dedup_run(febrl1_file, tiny_config_file, a)) == 0
    assert _finish(_dedup_run(febrl1_file, other, b)) == 0
    state_a, state_b = result_state(a), result_state(b)
    assert all(x != y for x, y in zip(state_a[:3], state_b[:3], strict=True))  # clusters may agree
    # A published, with B's stage results cached (a run of B killed at its first publish step):
    # the kills below then cost a read and a report each, not a training
    staged = root / "a-staged"
    _copy_output(a, staged)
    assert _finish(_dedup_run(febrl1_file, other, staged, kill_at="generation")) == -signal.SIGKILL
    assert result_state(staged) == state_a
    return {
        "a": a,
        "a_staged": staged,
        "config_b": other,
        "state_a": state_a,
        "state_b": state_b,
        "source": febrl1_file,
    }


def _copy_output(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)  # keeps the symlinks as symlinks


@pytest.mark.parametrize("step", BEFORE_SWITCH + AFTER_SWITCH)
def test_kill_at_each_publish_step_leaves_old_or_new(two_results: dict, tmp_path: Path, step: str) -> None:
    out = tmp_path / "out"
    _copy_output(two_results["a_staged"], out)
    killed = _dedup_run(two_results["source"], two_results["config_b"], out, kill_at=step)
    assert _finish(killed) == -signal.SIGKILL  # the kill point was reached
    expected = two_results["state_a"] if step in BEFORE_SWITCH else two_results["state_b"]
    assert result_state(out) == expected
    if step not in ("report.json", "switched", "linked-clusters.parquet"):
        return  # the rest is the same after any kill: checked after one kill each side of the switch
    # the next run cleans what the killed one left and publishes a complete result
    assert _finish(_dedup_run(two_results["source"], two_results["config_b"], out)) == 0
    assert result_state(out) == two_results["state_b"]
    assert _leftovers(out) == []
    if step != "switched":
        return
    first = pl.read_parquet(out / "pairs.parquet").row(0)
    explained = subprocess.run(
        [DEDUP, "explain", str(out), "--id", str(first[0]), "--id", str(first[1])],
        capture_output=True,
        text=True,
    )
    assert explained.returncode == 0, explained.stderr


def test_kill_at_random_moments_leaves_old_or_new(two_results: dict, tmp_path: Path) -> None:
    """A sample of the random kill points `benchmarks/kill.py` runs a hundred of."""
    out = tmp_path / "out"
    _copy_output(two_results["a"], out)
    rng = random.Random(int(os.environ.get("DEDUP_KILL_SEED", "0")))
    for _ in range(3):
        process = _dedup_run(two_results["source"], two_results["config_b"], out)
        time.sleep(rng.uniform(1.0, 8.0))
        process.send_signal(signal.SIGKILL)
        _finish(process)
        state = result_state(out)
        assert state in (two_results["state_a"], two_results["state_b"])
    assert _finish(_dedup_run(two_results["source"], two_results["config_b"], out)) == 0
    assert result_state(out) == two_results["state_b"] and _leftovers(out) == []


def test_an_output_of_an_older_version_becomes_links(tmp_path: Path) -> None:
    """Outputs written before generations hold real files; the first switch replaces them with links."""
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "meta.json").write_text("old")
    (out / "report.json").write_text("old")
    (out / ".model.old.123").mkdir()  # what a kill in an older version's model swap left
    assert run_dir(out) == out
    new = out / GENERATIONS / "g1"
    (new / "model").mkdir(parents=True)
    (new / "model" / "meta.json").write_text("new")
    (new / "report.json").write_text("new")
    switch(out, new)
    assert (out / CURRENT).is_symlink() and run_dir(out) == new
    assert (out / "model").is_symlink() and (out / "model" / "meta.json").read_text() == "new"
    assert (out / "report.json").read_text() == "new"
    assert not (out / ".model.old.123").exists()
    # a later run without a model of its own (a registry model) leaves no dangling model link
    later = out / GENERATIONS / "g2"
    later.mkdir()
    (later / "report.json").write_text("later")
    switch(out, later)
    assert not (out / "model").exists() and not (out / "model").is_symlink()
    assert sorted(p.name for p in (out / GENERATIONS).iterdir()) == ["g2"]
    remove_leftovers(out)
    assert (out / "report.json").read_text() == "later"


def test_two_results_published_in_one_second_by_one_process_both_switch_in(tmp_path: Path) -> None:
    """A generation's name has a one-second stamp and the pid; an update right after a run (one
    process, same second) gets a name of its own instead of failing on the current one's."""
    out = tmp_path / "out"
    names = []
    for text in ("first", "second", "third"):
        generation = publish_generation(out, lambda g, text=text: (g / "report.json").write_text(text))
        names.append(generation.name)
        assert run_dir(out) == generation and (out / "report.json").read_text() == text
    assert len(set(names)) == 3
    assert sorted(p.name for p in (out / GENERATIONS).iterdir()) == [names[-1]]


def test_flushing_syncs_the_files_there_while_the_block_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``flushing`` flushes the files present when it starts on a thread, done by the block's end;
    a file removed meanwhile (a temporary one) is no error: ``switch``'s flush is the one that counts."""
    import dedup.publish as publish

    (tmp_path / "sub").mkdir()
    files = [tmp_path / "a.parquet", tmp_path / "sub" / "b.npz", tmp_path / "gone.tmp"]
    for f in files:
        f.write_bytes(b"x" * 100)
    synced: list[Path] = []
    real = publish._sync

    def slow_sync(path: Path) -> None:
        time.sleep(0.05)
        real(path)
        synced.append(path)

    monkeypatch.setattr(publish, "_sync", slow_sync)
    with publish.flushing(tmp_path):
        files[2].unlink()
        (tmp_path / "later.png").write_bytes(b"y")  # made after the start: switch flushes it
    assert sorted(synced) == sorted(files[:2])
