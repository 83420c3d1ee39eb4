"""Error types the pipeline raises on purpose.

Every error a user can cause (a bad file, a bad config, a stale model) is one of these, with a
message that names the file, key, column or row at fault. The CLI prints them in one line and
the Prefect flow fails its run with the same text; anything else is a bug.
"""

from __future__ import annotations


class DedupError(Exception):
    """Base class for the errors a user can cause and fix."""


class ConfigError(DedupError):
    """The YAML config is malformed, has an unknown key or kind, or names a missing column."""


class InputError(DedupError):
    """The input file is missing, unreadable, or its table breaks the config's contract."""


class ModelError(DedupError):
    """A saved model is missing, damaged, or was trained for another config."""


class OutputError(DedupError):
    """The output directory cannot be written."""


class BlockingError(DedupError):
    """A blocking pass would produce more candidate pairs than the configured limit."""
