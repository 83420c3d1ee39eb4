"""How many threads torch may use: each process or piece its share of the cores.

torch starts as many intra-op threads as the machine has cores, in every process. Two pieces on
a two-thread Prefect pool, two Dask worker processes, or two runs at once would then each run
two threads on two cores: oversubscribed, every BLAS call waits for the others (a 100k run took
206 s under load, 52 s on one thread each). ``DEDUP_THREADS`` sets the share explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

ENV = "DEDUP_THREADS"
LANES_ENV = "DEDUP_LANES"
LANES = 2  # pieces at once by default


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def share(concurrent: int = 1) -> int:
    """Threads for one of ``concurrent`` pieces running at once: ``DEDUP_THREADS`` if set."""
    return _chosen(ENV, "threads") or max(available_cores() // max(concurrent, 1), 1)


def lanes(threads: int) -> int:
    """Pieces a process runs at once on its ``threads``: ``DEDUP_LANES`` if set, else one per
    thread up to ``LANES`` (each more holds one more piece's memory)."""
    return _chosen(LANES_ENV, "pieces") or min(threads, LANES)


def side_by_side() -> int:
    """Tasks one piece runs at once on threads (a column per task): one per torch thread the piece
    was given (``limited``; a process outside any piece has its share), up to ``lanes``. Two
    pieces on two lanes then run one task each, as before, and no core is asked twice."""
    return lanes(torch.get_num_threads())


T = TypeVar("T")


def map_side_by_side(fn: Callable[..., T], *items: Iterable[Any]) -> Iterator[T]:
    """``fn`` over ``items`` (one call per column, as ``map``), ``side_by_side()`` calls at a time
    on threads; the results in order, an error raised where its result is read. Columns of one
    piece are independent numpy, polars, scipy or torch work that leaves the interpreter, so two
    of them keep two cores busy where one after another kept one."""
    with ThreadPoolExecutor(side_by_side()) as pool:
        yield from pool.map(fn, *items)


def _chosen(name: str, unit: str) -> int | None:
    """The whole number in environment variable ``name`` (None when unset or below 1)."""
    chosen = os.environ.get(name, "").strip()
    if not chosen:
        return None
    try:
        value = int(chosen)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of {unit}, not {chosen!r}") from None
    return value if value >= 1 else None


@contextmanager
def limited(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block (process-wide, as torch has it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_with_threads(threads: int, fn, *args):  # noqa: ANN001, ANN201 (any piece function)
    """``fn(*args)`` on ``threads`` torch threads: what a Prefect or Dask task runs. ``0``: decide
    where it runs: ``DEDUP_THREADS`` there, else one (a Dask worker process per core is the
    usual layout, and the flow cannot see the worker's machine)."""
    if threads <= 0:
        threads = share(available_cores())
    with limited(threads):
        return fn(*args)
