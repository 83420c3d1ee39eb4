"""The stage graph: one declaration, any executor, any cut into pieces, the same result."""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dedup import graph
from dedup.config import parse_config
from dedup.graph import InProcess, Partitioning, deduplicate
from tests.conftest import FEBRL_YAML, TINY_TRAINING, febrl_config

# an embedding (kNN) pass beside the rules: the model's neighbours complete the candidates
EMBEDDING = parse_config(
    FEBRL_YAML.split("blocking:")[0]
    + TINY_TRAINING
    + """
blocking:
  - [surname]
  - {embedding: {k: 5}}
"""
)


class Recording(InProcess):
    """In process, noting how many pieces each stage was cut into."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: dict[str, int] = {}

    def map(self, stage, fn, calls):  # noqa: ANN001, ANN201
        self.pieces[stage] = self.pieces.get(stage, 0) + len(calls)
        return super().map(stage, fn, calls)


def test_pieces_add_up_to_the_whole_with_an_embedding_pass(febrl1_file: Path, tmp_path: Path) -> None:
    whole = deduplicate(febrl1_file, EMBEDDING, tmp_path / "whole")
    model = tmp_path / "whole" / "model"
    cut = Recording()
    pieces = Partitioning(block_partitions=3, records_per_part=300, pairs_per_part=1500)
    # the same model, so the comparison is about blocking, encoding and scoring in pieces
    again = deduplicate(febrl1_file, EMBEDDING, tmp_path / "cut", cut, pieces, model=model)
    assert cut.pieces["encode"] == 4 and cut.pieces["block"] == 3 * 2 + 1  # pieces + the union
    assert again["counts"]["candidate_pairs"] == whole["counts"]["candidate_pairs"]
    assert again["blocking"][1]["pairs"] > 0  # the embedding pass found neighbours
    key = ["rec_id_l", "rec_id_r"]
    pairs = [pl.read_parquet(tmp_path / name / "pairs.parquet").sort(key) for name in ("whole", "cut")]
    assert_frame_equal(pairs[0], pairs[1])  # to the bit: embeddings do not depend on the piece
    clusters = [pl.read_parquet(tmp_path / name / "clusters.parquet") for name in ("whole", "cut")]
    assert clusters[0].equals(clusters[1])
    # the CLI's run keeps no stage cache behind
    assert not (tmp_path / "whole" / ".stages").exists() and not (tmp_path / "cut" / ".stages").exists()


def test_a_rerun_after_a_failure_resumes_from_the_finished_stages(
    febrl1_file: Path, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    from dedup import parts

    config = febrl_config()
    calls: list[str] = []
    original = parts.train_part

    def counted(*args: object) -> Path:
        calls.append("train")
        return original(*args)

    def crash(*args: object) -> None:
        raise RuntimeError("killed while scoring")

    monkeypatch.setattr(parts, "train_part", counted)
    with monkeypatch.context() as patch:
        patch.setattr(parts, "score_part", crash)
        try:
            deduplicate(febrl1_file, config, tmp_path / "out")
        except RuntimeError:
            pass
    assert calls == ["train"] and list((tmp_path / "out" / ".stages").glob("train-*/DONE"))
    report = deduplicate(febrl1_file, config, tmp_path / "out")
    assert calls == ["train"]  # the finished training was reused
    assert report["counts"]["records"] == 1000 and (tmp_path / "out" / "model" / "meta.json").is_file()


def _rss_mb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) // 1024


def _fragmenting_piece() -> tuple[list[np.ndarray], int]:
    """Frees 400 MB of 4 KB heap blocks as holes among blocks it keeps; the RSS it leaves."""
    blocks = [np.ones(512) for _ in range(100_000)]
    kept = blocks[::100]  # every hundredth stays: the freed ones are holes, not the heap's top
    del blocks
    return kept, _rss_mb()


def _has_malloc_trim() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "malloc_trim")
    except OSError:
        return False


@pytest.mark.skipif(not (Path("/proc/self/status").exists() and _has_malloc_trim()), reason="glibc and /proc only")
def test_the_in_process_runner_gives_freed_heap_pages_back_after_a_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``malloc_trim`` glibc keeps the holes a piece freed (400 MB here), and the next
    piece's peak stacks on them; with it they go back when the piece returns."""
    trim = graph.give_back_freed_memory
    monkeypatch.setattr(graph, "give_back_freed_memory", lambda: None)
    [(kept, left)] = InProcess(threads=1).map("test", _fragmenting_piece, [()])
    assert left - _rss_mb() < 100 and len(kept) == 1000  # the premise: the holes stay without a trim
    del kept
    trim()

    monkeypatch.setattr(graph, "give_back_freed_memory", trim)
    [(kept, left)] = InProcess(threads=1).map("test", _fragmenting_piece, [()])
    assert left - _rss_mb() > 300 and len(kept) == 1000  # the kept blocks are still held


class _Overlap:
    """Wraps a piece function: counts the pieces running at once (each waits a little, so two
    lanes do overlap) and how long each took."""

    def __init__(self, fn, pause: float = 0.3) -> None:  # noqa: ANN001
        self.fn, self.pause = fn, pause
        self.running = self.most = 0
        self.seconds: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, *args):  # noqa: ANN002, ANN204
        start = time.perf_counter()
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.pause)
            return self.fn(*args)
        finally:
            with self.lock:
                self.running -= 1
                self.seconds.append(time.perf_counter() - start)


def test_block_and_encode_pieces_run_side_by_side_with_the_same_result(
    febrl1_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dedup import parts

    model = tmp_path / "trained" / "model"
    deduplicate(febrl1_file, EMBEDDING, tmp_path / "trained")
    pieces = Partitioning(block_partitions=2, records_per_part=250, pairs_per_part=1500)
    results, most = {}, {}
    for lanes in (1, 2):
        block, encode_piece, score = (_Overlap(f) for f in (parts.block_part, parts.encode_part, parts.score_part))
        monkeypatch.setattr(parts, "block_part", block)
        monkeypatch.setattr(parts, "encode_part", encode_piece)
        monkeypatch.setattr(parts, "score_part", score)
        out = tmp_path / f"lanes{lanes}"
        report = deduplicate(febrl1_file, EMBEDDING, out, InProcess(lanes=lanes), pieces, model=model)
        most[lanes] = (block.most, encode_piece.most, score.most)
        results[lanes] = [pl.read_parquet(out / name) for name in ("pairs.parquet", "clusters.parquet")]
        # the report's encoding time is the pieces' wall time: their summed time one at a time,
        # about half of it two at a time (four equal pieces); not the time each spent encoding
        encode, pieces_took = report["timings_seconds"]["encode"], sum(encode_piece.seconds)
        assert encode < 0.8 * pieces_took if lanes == 2 else encode >= pieces_took - 0.001
        monkeypatch.undo()
    assert most[1] == (1, 1, 1)
    assert most[2] == (2, 2, 1)  # score pieces stay one at a time: each holds its slice's evidence
    for one, two in zip(results[1], results[2], strict=True):
        assert_frame_equal(one, two)


def test_score_pieces_run_here_load_the_shared_inputs_once(
    febrl1_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dedup import parts

    loads: list[int] = []
    original = parts.load_embeddings

    def counted(*args):  # noqa: ANN002, ANN202
        loads.append(1)
        return original(*args)

    monkeypatch.setattr(parts, "load_embeddings", counted)
    cut = Partitioning(records_per_part=400, pairs_per_part=1000)
    report = deduplicate(febrl1_file, febrl_config(), tmp_path / "out", InProcess(), cut)
    assert report["counts"]["candidate_pairs"] > 2 * 1000  # three or more score pieces
    assert len(loads) == 1  # loaded by the first, shared by the others
    loads.clear()
    with parts.shared_loads():
        pass
    assert parts.shared(("x",), lambda: 1) == 1 and parts._SHARED is None  # outside: nothing kept


def test_default_passes_skipped_side_by_side_each_report_their_own_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dedup import blocking

    judge = blocking.skipped_default
    monkeypatch.setattr(blocking, "skipped_default", lambda *args: time.sleep(0.2) or judge(*args))  # overlap
    n = 300  # one date of birth for everyone: every default pass keyed on it would pair them all
    records = pl.DataFrame(
        {"id": [str(i) for i in range(n)], "surname": [f"smith{i}" for i in range(n)], "dob": ["19700101"] * n}
    )
    path = tmp_path / "people.parquet"
    records.write_parquet(path)
    config = parse_config("id_column: id\nfields: {surname: name, dob: date}" + TINY_TRAINING)
    with pytest.warns(UserWarning, match="skipping default blocking pass"):
        report = deduplicate(path, config, tmp_path / "out", InProcess(lanes=2))
    reasons = {entry["pass"]: entry.get("skipped") for entry in report["blocking"]}
    skipped = {name: reason for name, reason in reasons.items() if reason}
    assert {"block(dob)", "block(soundex(surname), dob[:4])"} <= set(skipped), reasons
    for name, reason in skipped.items():  # each names its own pass, not the one beside it
        assert f"pass {name}:" in reason, (name, reason)
    # and its own largest block: everyone shares the one date of birth, no two records a surname
    largest = {entry["pass"]: entry.get("largest_block") for entry in report["blocking"]}
    assert largest["block(dob)"] == n and largest["block(surname)"] == 1, largest
