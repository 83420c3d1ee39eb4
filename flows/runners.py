"""Where a flow's tasks run: threads in the flow's process, or a Dask cluster.

Dask workers must be able to import ``dedup`` and ``flows`` (``pip install -e .`` in their
environment) and read and write the same paths as the flow (one machine, or shared storage).
Set ``PREFECT_API_URL`` for the flow and the workers when using Dask: without a server each
worker would start its own temporary one.
"""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

LOCAL_THREADS = 2  # one per core: the pieces are numpy/torch work that releases the GIL


def task_runner(runner: Literal["local", "dask"], dask_address: str | None = None) -> TaskRunner:
    """``local``: a thread pool; ``dask``: the cluster at ``dask_address``, else a temporary local one."""
    if runner == "local":
        if dask_address:
            raise ValueError("dask_address is only used with runner='dask'")
        return ThreadPoolTaskRunner(max_workers=LOCAL_THREADS)
    from prefect.settings import PREFECT_API_URL
    from prefect_dask import DaskTaskRunner

    if not PREFECT_API_URL.value():
        raise ValueError(
            "runner='dask' needs a Prefect server that the Dask workers report to: start one "
            "(prefect server start) and set PREFECT_API_URL for the flow and the workers"
        )
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    )
