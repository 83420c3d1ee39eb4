"""Background servers for tests: start in their own process group, wait until healthy, stop all.

Used by the Prefect server fixture (conftest.py) and the Dask cluster of test_dask.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """A command from the venv's bin/ in the background, in its own process group, output to ``log``."""
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            env=env,
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group twice (a Prefect worker ignores the first), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str, timeout: float = 120
) -> None:
    """Poll ``ready`` until it is true; fail with the log's tail if the process dies or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if ready():
                return
        except Exception:  # not up yet
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        time.sleep(1)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s: {log.read_text()[-2000:]}")
