"""Odd but valid data runs end to end; a failed run leaves the last good output untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from dedup import parts
from dedup.config import DedupConfig
from dedup.pipeline import run

BASE = pl.read_parquet(Path(__file__).resolve().parents[1] / "data" / "febrl3.parquet").head(60)


def _run(tmp_path: Path, frame: pl.DataFrame, config: DedupConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    source = tmp_path / "in.parquet"
    frame.write_parquet(source)
    run(source, config, tmp_path / "out")
    return pl.read_parquet(tmp_path / "out" / "clusters.parquet"), pl.read_parquet(tmp_path / "out" / "pairs.parquet")


def test_single_record(tmp_path: Path, tiny_config: DedupConfig) -> None:
    clusters, pairs = _run(tmp_path, BASE.head(1), tiny_config)
    assert clusters["cluster_size"].to_list() == [1] and pairs.height == 0


def test_identical_records_are_one_cluster(tmp_path: Path, tiny_config: DedupConfig) -> None:
    frame = pl.concat([BASE.head(1)] * 12).with_columns(pl.Series("rec_id", [f"r{i:02d}" for i in range(12)]))
    clusters, pairs = _run(tmp_path, frame, tiny_config)
    assert clusters["cluster_id"].unique().to_list() == ["r00"] and pairs["is_match"].all()


def test_unicode_long_strings_and_single_valued_fields(tmp_path: Path, tiny_config: DedupConfig) -> None:
    odd = ["Zoë Ångström", "李小龍", "Mañana 😀", "ø" * 3] * 15
    long = ["x" * 5000 + str(i) for i in range(60)]
    frame = BASE.with_columns(pl.Series("given_name", odd), pl.Series("address_1", long), pl.lit("nsw").alias("state"))
    clusters, pairs = _run(tmp_path, frame, tiny_config)
    assert clusters["given_name"].to_list() == odd  # kept intact in the output
    assert clusters["address_1"].to_list() == long  # truncated only for the encoder
    assert pairs["sim_state"].drop_nulls().min() == pytest.approx(1.0, abs=1e-5)


def test_whitespace_only_values_are_null(tmp_path: Path, tiny_config: DedupConfig) -> None:
    blank = pl.int_range(pl.len()) % 2 == 0
    frame = BASE.with_columns(pl.when(blank).then(pl.lit("   ")).otherwise(pl.col("surname")).alias("surname"))
    clusters, pairs = _run(tmp_path, frame, tiny_config)
    assert clusters.filter(blank)["surname"].null_count() == BASE.height // 2
    ids = set(frame.filter(blank)["rec_id"].to_list())
    involved = pairs.filter(pl.col("rec_id_l").is_in(ids) | pl.col("rec_id_r").is_in(ids))
    assert involved.height > 0 and involved["sim_surname"].null_count() == involved.height
    (tmp_path / "all").mkdir()  # blank in every row: the field tells nothing and is left out
    clusters, _ = _run(tmp_path / "all", BASE.with_columns(pl.lit(" \t").alias("suburb")), tiny_config)
    report = json.loads((tmp_path / "all" / "out" / "report.json").read_text())
    assert "suburb" not in report["field_kinds"] and set(report["field_kinds"]) == set(tiny_config.fields) - {"suburb"}
    assert report["warnings"] == ["fields.suburb: null in every row, so it tells nothing: left out of the comparison"]
    assert clusters.height == BASE.height


def test_failed_run_leaves_previous_output_untouched(
    tmp_path: Path, tiny_config: DedupConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.parquet"
    BASE.write_parquet(source)
    out = tmp_path / "out"
    run(source, tiny_config, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed while clustering")

    monkeypatch.setattr(parts, "cluster_part", crash)
    changed = tiny_config.model_copy(update={"seed": 7})  # a different model would be trained
    with pytest.raises(RuntimeError, match="killed"):
        run(source, changed, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".stages" not in p.parts}
    assert after == before  # clusters, pairs, report and model all from the good run

    monkeypatch.undo()
    run(source, tiny_config, out)  # the next run clears the leftovers and succeeds
    assert not (out / ".stages").exists()
    assert (out / "clusters.parquet").read_bytes() == before[Path("clusters.parquet")]


def _dedup_run(source: Path, config: Path, out: Path) -> subprocess.Popen:
    dedup = Path(sys.executable).with_name("dedup")
    return subprocess.Popen(
        [str(dedup), "run", str(source), "--config", str(config), "--output", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _lock_is_held(out: Path) -> bool:
    import fcntl

    if not (out / ".lock").exists():
        return False
    with open(out / ".lock") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def test_a_second_run_into_the_same_output_is_refused(
    febrl1_file: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    from dedup.lock import output_lock

    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):  # what a running dedup process holds
        second = _dedup_run(febrl1_file, tiny_config_file, out)
        _, err = second.communicate(timeout=120)
    assert second.returncode == 2
    assert err.strip().splitlines() == [
        f"dedup: error: {out}: another dedup run (pid {os.getpid()}) is writing to this directory; "
        "wait for it to finish or choose another output"
    ]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of ours was touched


def test_a_run_killed_with_sigkill_leaves_a_lock_the_next_run_takes_over(
    febrl1_file: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = _dedup_run(febrl1_file, tiny_config_file, out)
    deadline = time.monotonic() + 60
    while not _lock_is_held(out):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert (out / ".lock").exists() and not _lock_is_held(out)  # the file stays, the lock died with it
    second = _dedup_run(febrl1_file, tiny_config_file, out)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-2000:]
    assert pl.read_parquet(out / "clusters.parquet").height == 1000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 MB file system (tmpfs) that the test can fill; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64M", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_the_previous_outputs_stay(
    small_disk: Path, febrl1_file: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    out = small_disk / "out"
    first = _dedup_run(febrl1_file, tiny_config_file, out)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    # leave 256 kB: the retrained model alone needs more
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 256 * 1024))
    reseeded = tmp_path / "seed7.yaml"
    reseeded.write_text(tiny_config_file.read_text() + "\nseed: 7\n")
    second = _dedup_run(febrl1_file, reseeded, out)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dedup: error: {out}: no space left on the device ("), lines
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert {k: v for k, v in after.items() if ".stages" not in k.parts} == before
