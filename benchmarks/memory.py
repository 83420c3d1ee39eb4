"""A process's own peak memory, for the benchmarks that run each tool or piece in a child process.

Why not ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: Linux keeps it across ``execve``, and a
child starts as a fork of its parent, so a child's ``ru_maxrss`` is at least the parent's RSS at
the moment it was started (a parent holding 1.6 GB starts a Python that reports 1,553 MB and
uses 13 MB). ``VmHWM`` in ``/proc/self/status`` is the high-water mark of the process's own
address space, which ``execve`` replaces: what the child itself used.
"""

from __future__ import annotations

import resource
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_mb() -> float:
    """This process's own peak resident set size in MB (``VmHWM``; ``ru_maxrss`` off Linux)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
