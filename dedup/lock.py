"""One writer per output directory: a lock held by the running process.

``OUTPUT/.lock`` is locked with ``flock`` for the whole run; a second run into the same
directory (another process, or another flow run in this one) gets a one-line ``OutputError``
instead of deleting the first run's stage files under it. The kernel drops the lock when its
holder exits, however it exits (kill -9 included), so a lock left by a dead run is simply taken
over by the next one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dedup.errors import OutputError

LOCK_NAME = ".lock"


@contextmanager
def output_lock(output_dir: str | Path) -> Iterator[None]:
    path = Path(output_dir) / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise OutputError(
                f"{output_dir}: another dedup run (pid {holder}) is writing to this directory; "
                "wait for it to finish or choose another output"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
