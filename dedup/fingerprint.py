"""Content fingerprints: what a stage's result depends on, hashed.

A stage's result is reusable exactly when its input file's bytes, the config, and the code that
computes it are unchanged. Paths and modification times are not enough (a file rewritten in
place keeps its path), so the input is hashed by content.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from dedup.config import DedupConfig, config_to_yaml

_PACKAGE = Path(__file__).resolve().parent


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def config_digest(config: DedupConfig) -> str:
    return hashlib.sha256(config_to_yaml(config).encode()).hexdigest()


@cache
def code_version() -> str:
    """Hash of the dedup package's source: any code change invalidates cached stages."""
    digest = hashlib.sha256()
    for source in sorted(_PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(_PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def stage_key(stage: str, *parts: str) -> str:
    """Short hex key for a stage from the fingerprints it depends on."""
    return hashlib.sha256("\0".join((stage, code_version(), *parts)).encode()).hexdigest()[:20]
