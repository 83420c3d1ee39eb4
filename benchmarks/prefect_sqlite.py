"""Concurrent writers to one local Prefect server on SQLite: where `database is locked` comes from.

    python benchmarks/prefect_sqlite.py --flows 3 --heartbeat 1    # 3 runs of 150 tasks, 2 workers, 1 s beats
    python benchmarks/prefect_sqlite.py --flows 1 --heartbeat 30   # one flow run, the default heartbeat

Starts a server on a free 127.0.0.1 port with a temporary PREFECT_HOME, a process work pool with
two workers, runs the flow runs against it at once, stops everything and prints the flow runs'
exit codes, the count of `database is locked` errors in the server log, and the failed statements.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
FLOW = """
from prefect import flow, task

@task
def piece(i: int) -> int:
    return i * i

@flow
def many(n: int = 150) -> int:
    return sum(f.result() for f in piece.map(range(n)))

if __name__ == "__main__":
    many()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=3)
    parser.add_argument("--heartbeat", type=int, default=1, help="worker heartbeat seconds")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="prefect-sqlite-"))
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": str(args.heartbeat),
    }
    port = env["PREFECT_API_URL"].split(":")[2].split("/")[0]
    log = home / "server.log"
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {log}")
            time.sleep(0.5)
        subprocess.run([BIN / "prefect", "work-pool", "create", "p", "--type", "process"], env=env, capture_output=True)
        workers = [
            subprocess.Popen(
                [BIN / "prefect", "worker", "start", "--pool", "p", "--name", f"w{i}"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        flow = home / "many.py"
        flow.write_text(FLOW)
        start = time.perf_counter()
        runs = [
            subprocess.Popen([sys.executable, str(flow)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(args.flows)
        ]
        codes = [run.wait() for run in runs]
        took = time.perf_counter() - start
        time.sleep(3)
    finally:
        for process in [*workers, server]:
            process.kill()
            process.wait()
    text = log.read_text()
    print(
        f"{args.flows} flow run(s), heartbeat {args.heartbeat} s: exit codes {codes} in {took:.1f} s; "
        f"server log: {text.count('database is locked')} 'database is locked'"
    )
    for line in text.splitlines():
        if "ERROR" in line or line.startswith("[SQL: "):
            print("  ", line[:150])
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
