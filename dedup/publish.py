"""The write stage's last step: a run's whole result becomes visible at once.

A run writes everything it publishes (``pairs.parquet``, ``clusters.parquet``, ``report.json``,
``charts/`` and the ``model/`` it trained) into a new generation directory
``OUTPUT/.generations/<name>/`` that nobody reads yet, then points the symlink ``OUTPUT/current``
at it with one ``rename`` (atomic on POSIX file systems). The names people open,
``OUTPUT/clusters.parquet`` and the others, are symlinks through ``current``. A kill -9 at any
moment therefore leaves the complete old result or the complete new one, never a mix; the next
run removes what a killed run left (an unfinished generation, a temporary link).

A reader that opens several files and needs them from one run (``dedup explain``: pairs, report
and model) resolves ``current`` once with :func:`run_dir` and reads everything from there.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

GENERATIONS = ".generations"
CURRENT = "current"
PUBLISHED = ("pairs.parquet", "clusters.parquet", "report.json", "model", "charts", "changes.parquet")
# what earlier versions or killed runs leave beside the outputs: temporary files and links
_LEFTOVERS = (".current.*", ".*.link.*", ".*.old.*", ".model.*", ".charts.*", ".pairs.parquet.*", ".clusters.parquet.*")
_LEFTOVERS += (".report.json.*", ".work")


def checkpoint(step: str) -> None:
    """A named step of publishing where the reliability tests kill the process for real
    (``DEDUP_KILL_AT=<step>`` in the environment); nothing happens otherwise."""
    if os.environ.get("DEDUP_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def run_dir(output: str | Path) -> Path:
    """The directory holding one complete run's files: the generation ``current`` points at.

    Outputs written before generations existed hold their files directly; those are returned as is.
    """
    output = Path(output)
    current = output / CURRENT
    if current.is_symlink():
        return generation_dir(output, Path(os.readlink(current)).name)
    return output


def generation_dir(output: str | Path, run: str) -> Path:
    """The files of the run named ``run`` (``report.json``: ``run``) while it is kept."""
    return Path(output) / GENERATIONS / run


def new_generation(output: str | Path) -> Path:
    """An empty directory for this run's result, invisible to readers until :func:`switch`."""
    root = Path(output) / GENERATIONS
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()  # microseconds, so one process's runs in one second get names of their own
    stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(now))}.{int(now % 1 * 1e6):06d}-{os.getpid()}"
    for attempt in range(1000):
        path = root / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:  # a clock that stood still or went back
            continue
        return path
    raise FileExistsError(f"{root}: no free generation name for {stamp}")


def publish_generation(output: str | Path, build: Callable[[Path], None]) -> Path:
    """Build a result in a new generation with ``build(generation)`` and switch it in; if the
    build fails (or is interrupted) the generation is removed and the previous result stays."""
    generation = new_generation(output)
    try:
        build(generation)
    except BaseException:
        shutil.rmtree(generation, ignore_errors=True)
        raise
    switch(output, generation)
    return generation


def place(source: Path, target: Path, keep_source: bool) -> None:
    """Put a stage's file or directory into a generation: moved, or hard-linked when the source
    stays (the flow's stage cache; linking costs no space), copied where links are impossible."""
    if not keep_source:
        os.replace(source, target)
    elif source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def switch(output: str | Path, generation: Path) -> None:
    """Make ``generation`` the output's result (one atomic rename), then drop the older ones.

    Everything in ``generation`` is flushed to disk first, so a crash of the machine (not only
    of the process) cannot leave ``current`` pointing at files the disk never got.
    """
    output = Path(output)
    _sync_tree(generation)
    link = output / f".current.{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(os.path.join(GENERATIONS, generation.name), link)
    checkpoint("switch")
    os.replace(link, output / CURRENT)  # the switch: readers now see the new result
    _sync(output)
    checkpoint("switched")
    for name in PUBLISHED:
        _link_name(output, name, present=(generation / name).exists())
        checkpoint(f"linked-{name}")
    remove_leftovers(output)


def _link_name(output: Path, name: str, present: bool) -> None:
    """``OUTPUT/<name>`` as a symlink through ``current`` (replacing a real file an earlier
    version wrote there), or no such name when this run has no such output (e.g. no model)."""
    path = output / name
    target = os.path.join(CURRENT, name)
    if not present:
        if path.is_symlink():
            path.unlink()
        return
    if path.is_symlink() and os.readlink(path) == target:
        return
    tmp = output / f".{name}.link.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    if path.is_dir() and not path.is_symlink():  # a directory cannot be renamed over: move it away first
        old = output / f".{name}.old.{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove_leftovers(output: str | Path, keep: Iterable[Path] = ()) -> None:
    """Remove every generation but the current one (and ``keep``) and what killed runs left."""
    output = Path(output)
    keep_names = {p.name for p in keep}
    current = run_dir(output)
    root = output / GENERATIONS
    if root.is_dir():
        for generation in root.iterdir():
            if generation != current and generation.name not in keep_names:
                _remove(generation)
    for pattern in _LEFTOVERS:
        for path in output.glob(pattern):
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def flushing(folder: Path) -> Iterator[None]:
    """Flush the files now in ``folder`` to disk on a thread of its own while the block runs.

    ``switch`` flushes a generation before it makes it current, and waits for the disk. Started
    while the charts are drawn (Python work; the flush is the disk's), that wait is mostly over
    by then: at 1M records 0.37 s of a run's publishing, and of an update's up to 0.4 s when
    other writes are pending (the disk flushes them first). Errors are left to ``switch``.
    """
    files = [Path(top) / name for top, _, names in os.walk(folder) for name in names]
    thread = threading.Thread(target=_sync_quietly, args=(files,), name="dedup-flush", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _sync_quietly(files: list[Path]) -> None:
    for path in files:
        try:
            _sync(path)
        except OSError:
            pass


def _sync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _sync(Path(folder) / name)
        _sync(Path(folder))


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
