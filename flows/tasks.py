"""Stage pieces as Prefect tasks: the executor the flows hand to the stage graph.

``dedup.graph`` declares the stages and their pieces and runs them through an executor; this
one makes every piece a Prefect task (retried on failure, visible in the UI) and submits a
stage's pieces together, so the flow's task runner (threads, or Dask workers) runs them in
parallel. Tasks exchange file paths only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from dedup.threads import run_with_threads

T = TypeVar("T")
RETRIES = 2  # a piece reads and writes files: a worker lost mid-piece is rerun


class PrefectExecutor:
    """Each piece a task on the current flow's task runner, on ``threads`` torch threads (its
    share of the cores: the pieces running at once must not oversubscribe them)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def map(self, stage: str, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        # the stage directories are the cache (content keys, DONE markers): Prefect's own
        # would hand back a stored path without knowing whether the files behind it still exist
        piece = task(
            run_with_threads,
            name=f"{stage}.{fn.__name__}",
            retries=RETRIES,
            retry_delay_seconds=2,
            cache_policy=NO_CACHE,
        )
        futures = [piece.submit(self.threads, fn, *args) for args in calls]
        return [future.result() for future in futures]
