"""Versioned model directories: ``MODELS/<name>/<version>/`` plus a ``LATEST`` pointer.

A scheduled training flow adds versions; a deduplication flow reads ``LATEST``. The pointer is
a small text file replaced atomically, so a reader sees the old version or the new one, never a
half-copied model. A version remembers the key of the training that made it; registering the
same training again returns the existing version instead of a duplicate.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from dedup.errors import ModelError
from dedup.io import _atomic_write, replace_directory

POINTER = "LATEST"


def latest(models_dir: str | Path, name: str) -> Path | None:
    """The newest registered version of model ``name``, or None if there is none."""
    pointer = Path(models_dir) / name / POINTER
    if not pointer.is_file():
        return None
    version = Path(models_dir) / name / pointer.read_text().strip()
    if not (version / "meta.json").is_file():
        raise ModelError(f"{pointer} points at {version}, which is not a model directory")
    return version


def register(models_dir: str | Path, name: str, model_dir: str | Path, training_key: str) -> Path:
    """Copy a trained model in as a new version and point ``LATEST`` at it."""
    current = latest(models_dir, name)
    if current is not None and _training_key(current) == training_key:
        return current
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = Path(models_dir) / name / version

    def build(tmp: Path) -> None:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        (tmp / "version.json").write_text(json.dumps({"training_key": training_key, "created": version}))

    replace_directory(build, target)
    _atomic_write(Path(models_dir) / name / POINTER, lambda tmp: tmp.write_text(version + "\n"))
    return target


def _training_key(version: Path) -> str | None:
    info = version / "version.json"
    return json.loads(info.read_text()).get("training_key") if info.is_file() else None
