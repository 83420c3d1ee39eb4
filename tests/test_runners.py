from __future__ import annotations

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import task_runner


def test_local_runner_is_a_thread_pool_and_refuses_an_address() -> None:
    assert isinstance(task_runner("local"), ThreadPoolTaskRunner)
    with pytest.raises(ValueError, match="only used with runner='dask'"):
        task_runner("local", "tcp://127.0.0.1:8786")


def test_dask_runner_needs_a_server_and_takes_an_address() -> None:
    with temporary_settings(updates={PREFECT_API_URL: None}):
        with pytest.raises(ValueError, match="PREFECT_API_URL"):
            task_runner("dask")
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        runner = task_runner("dask", "tcp://127.0.0.1:8786")
        assert runner.address == "tcp://127.0.0.1:8786"
