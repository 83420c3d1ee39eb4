"""Content fingerprints: what a stage's result depends on, hashed.

A stage's result is reusable exactly when its input file's bytes, the config, and the code that
computes it are unchanged. Paths and modification times are not enough (a file rewritten in
place keeps its path), so the input is hashed by content.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from dedup.config import DedupConfig, config_to_yaml
from dedup.io import input_files

_PACKAGE = Path(__file__).resolve().parent


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (of a folder's Parquet parts: names and contents, in order)."""
    digest = hashlib.sha256()
    path = Path(path)
    for part in input_files(path):
        if part != path:
            digest.update(part.name.encode() + b"\0")
        with open(part, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def config_digest(config: DedupConfig) -> str:
    return hashlib.sha256(config_to_yaml(config).encode()).hexdigest()


LIBRARIES = ("torch", "numpy", "polars", "pyarrow", "recordlinkage", "scipy", "pandas")


@cache
def code_version() -> str:
    """Hash of the dedup package's source and the versions of the libraries that compute with
    it: any change to either invalidates cached stages."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for name in LIBRARIES:
        try:
            digest.update(f"{name}=={version(name)}\0".encode())
        except PackageNotFoundError:
            digest.update(f"{name} missing\0".encode())
    for source in sorted(_PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(_PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def stage_key(stage: str, *parts: str) -> str:
    """Short hex key for a stage from the fingerprints it depends on."""
    return hashlib.sha256("\0".join((stage, code_version(), *parts)).encode()).hexdigest()[:20]


def model_fingerprint(model_dir: str | Path) -> str:
    """What scores depend on: every model file's checksum (the manifest in ``meta.json``)."""
    files = json.loads((Path(model_dir) / "meta.json").read_text())["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
