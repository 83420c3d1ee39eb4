"""Peak memory of every stage piece, each in a process of its own, as Dask or Prefect would run it.

    python benchmarks/pieces.py --n 1000000                    # generates people, trains, runs
    python benchmarks/pieces.py --n 1000000 --model DIR        # a model trained already (same fields)

The job is ``dedup.graph.deduplicate`` on generated people (``dedup synth``, seeded, cached in
--workdir) with benchmarks/configs/synth.yaml, run by an executor that starts a fresh Python
process for every piece (``spawn``, one piece per process), so each piece's peak RSS is its own:
interpreter and imports included (printed separately as ``imports``: a process that only imports
the pieces' module). Printed per stage: pieces, seconds (wall, spawn included) and the largest
peak RSS among its pieces.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory import peak_rss_mb  # noqa: E402  (benchmarks/memory.py: a piece's own peak, not its parent's)

from dedup.config import load_config  # noqa: E402
from dedup.graph import Partitioning, deduplicate  # noqa: E402
from dedup.synth import cached  # noqa: E402
from dedup.threads import run_with_threads, share  # noqa: E402

CONFIG = ROOT / "benchmarks" / "configs" / "synth.yaml"
T = TypeVar("T")


def _measured(fn: Callable[..., T], args: tuple[Any, ...], threads: int) -> tuple[T, float]:
    """Run one piece on its share of the cores; its result and this process's peak RSS (MB)."""
    result = run_with_threads(threads, fn, *args)
    return result, peak_rss_mb()


def _imports_only() -> float:
    import dedup.parts  # noqa: F401  (what every piece's process loads)

    return peak_rss_mb()


class ProcessPerPiece:
    """A graph executor: every piece in a new process (two at a time, the machine's cores)."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.peaks: dict[str, list[float]] = {}
        self.seconds: dict[str, float] = {}

    def map(self, stage: str, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        context = multiprocessing.get_context("spawn")
        start = time.perf_counter()
        with ProcessPoolExecutor(min(self.workers, len(calls)), mp_context=context, max_tasks_per_child=1) as pool:
            threads = [share(min(self.workers, len(calls)))] * len(calls)
            done = list(pool.map(_measured, [fn] * len(calls), calls, threads))
        name = f"{stage}: {fn.__name__}"
        self.peaks.setdefault(name, []).extend(peak for _, peak in done)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return [result for result, _ in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--model", default=None, help="a trained model for these fields (skips training)")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    args = parser.parse_args()
    config = load_config(CONFIG)
    source = cached(args.n, args.workdir)
    executor = ProcessPerPiece()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        imports = pool.submit(_imports_only).result()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.workdir) as out:
        report = deduplicate(source, config, Path(out) / "out", executor, Partitioning(), model=args.model)
    total = time.perf_counter() - start
    print(f"{args.n:,} records, {report['counts']['candidate_pairs']:,} candidate pairs, {total:.1f}s in all")
    print(f"{'piece':42s} {'pieces':>6s} {'seconds':>8s} {'peak RSS MB':>12s}")
    print(f"{'imports (a process that only imports them)':42s} {1:6d} {'':>8s} {imports:12.0f}")
    for name, peaks in executor.peaks.items():
        print(f"{name:42s} {len(peaks):6d} {executor.seconds[name]:8.1f} {max(peaks):12.0f}")


if __name__ == "__main__":
    main()
