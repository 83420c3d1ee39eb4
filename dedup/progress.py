"""Progress bars for the long stages, only where a person is watching.

Shown when stderr is a terminal; quiet in CI (``CI`` set), in pipes and log files, and inside a
Prefect flow run, which has its own logs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _inside_prefect_run() -> bool:
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def wanted() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI") and not _inside_prefect_run()


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """``items``, with a tqdm bar on a terminal and nothing elsewhere."""
    if not wanted():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)
