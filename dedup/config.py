"""The job description: one pydantic settings object, loaded from the user's YAML.

Like Splink's settings dictionary, this is the single description of a dedup job: which column
is the id, which fields to compare and what kind each is, how to block, and (optionally) which
column holds ground-truth labels. Every stage takes this object; nothing else carries settings.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dedup.errors import ConfigError

PHONETIC_FUNCTIONS = ("soundex", "nysiis", "metaphone", "match_rating")

_KEY_RE = re.compile(
    r"^\s*(?:(?P<func>[a-z_]+)\(\s*(?P<fcol>[^()\[\]]+?)\s*\)|(?P<col>[^()\[\]]+?))\s*"
    r"(?:\[\s*(?P<start>-?\d*)\s*:\s*(?P<stop>-?\d*)\s*\])?\s*$"
)


class FieldKind(StrEnum):
    """How a field's values are normalised, corrupted for training, and tokenised.

    name: person or place names (case, accents, punctuation ignored; initials, nicknames).
    text: free text such as addresses or emails (token order may vary).
    date: dates in any layout; compared digit by digit (day/month swaps, digit typos).
    category: a small closed set (state, gender); the whole value is one token.
    code: identifiers made of digits or symbols (postcode, phone, ssn); position matters.
    """

    name = "name"
    text = "text"
    date = "date"
    category = "category"
    code = "code"


class KeyExpression(BaseModel):
    """One blocking key: a column, optionally a phonetic code of it, optionally a slice."""

    model_config = ConfigDict(frozen=True)

    column: str
    function: str | None = None
    start: int | None = None
    stop: int | None = None
    text: str

    @classmethod
    def parse(cls, text: str) -> KeyExpression:
        match = _KEY_RE.match(text)
        if not match:
            raise ValueError(
                f"bad blocking key expression {text!r}: expected 'column', 'column[:n]' "
                f"or 'function(column)' with function one of {', '.join(PHONETIC_FUNCTIONS)}"
            )
        func = match["func"]
        if func is not None and func not in PHONETIC_FUNCTIONS:
            raise ValueError(
                f"bad blocking key expression {text!r}: unknown function {func!r} "
                f"(known: {', '.join(PHONETIC_FUNCTIONS)})"
            )
        return cls(
            column=(match["fcol"] or match["col"]).strip(),
            function=func,
            start=int(match["start"]) if match["start"] else None,
            stop=int(match["stop"]) if match["stop"] else None,
            text=text.strip(),
        )


class ExactPass(BaseModel):
    """Records are candidates when all keys are equal (recordlinkage ``Index.block``)."""

    model_config = ConfigDict(frozen=True)

    on: tuple[KeyExpression, ...]

    @property
    def name(self) -> str:
        return "block(" + ", ".join(k.text for k in self.on) + ")"


class SortedNeighbourhoodPass(BaseModel):
    """Records are candidates when their key sorts within ``window`` of each other."""

    model_config = ConfigDict(frozen=True)

    key: KeyExpression
    window: int = 7
    block_on: tuple[KeyExpression, ...] = ()

    @property
    def name(self) -> str:
        suffix = "".join(f", {k.text}" for k in self.block_on)
        return f"sorted_neighbourhood({self.key.text}, window={self.window}{suffix})"


BlockingPass = ExactPass | SortedNeighbourhoodPass


class TrainingConfig(BaseModel):
    """Sizes of the encoder and its training run; the defaults suit up to ~1M records."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(64, ge=4, le=1024, description="embedding size per field")
    buckets: int = Field(2**15, ge=256, description="hashed n-gram vocabulary size per kind")
    max_chars: int = Field(40, ge=4, le=512, description="values are truncated to this for encoding")
    epochs: int = Field(4, ge=1, description="passes over the sampled training values")
    steps_per_epoch: int = Field(40, ge=1)
    batch_size: int = Field(256, ge=8)
    learning_rate: float = Field(0.01, gt=0)
    margin: float = Field(1.4, gt=0, le=2.0, description="contrastive margin on euclidean distance")
    max_values: int = Field(20000, ge=10, description="distinct values sampled per field")
    em_iterations: int = Field(100, ge=1, description="EM iterations for the label-free combiner")
    random_pairs: int = Field(50000, ge=100, description="random pairs used to learn non-match similarity")


class ClusteringConfig(BaseModel):
    """How matches become clusters (see ``dedup.clustering``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["density", "components"] = "density"
    min_density: float = Field(0.6, ge=0.0, le=1.0, description="share of a cluster's pairs that must match")


class DedupConfig(BaseModel):
    """Everything that describes one dedup job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: str
    fields: dict[str, FieldKind]
    blocking: tuple[BlockingPass, ...]
    label_column: str | None = None
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = 0
    clustering: ClusteringConfig = ClusteringConfig()
    training: TrainingConfig = TrainingConfig()

    @field_validator("fields")
    @classmethod
    def _fields_not_empty(cls, fields: dict[str, FieldKind]) -> dict[str, FieldKind]:
        if not fields:
            raise ValueError("at least one field is needed")
        return fields

    @field_validator("blocking", mode="before")
    @classmethod
    def _parse_blocking(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("blocking must be a non-empty list of passes")
        passes = []
        for i, item in enumerate(value):
            try:
                passes.append(_parse_pass(item, i))
            except ValueError as exc:
                message = str(exc)
                prefixed = message if message.startswith("blocking pass") else f"blocking pass {i}: {message}"
                raise ValueError(prefixed) from None
        return tuple(passes)

    @model_validator(mode="after")
    def _keys_name_known_columns(self) -> DedupConfig:
        if self.id_column in self.fields:
            raise ValueError(f"id column {self.id_column!r} cannot also be a field")
        return self

    @property
    def field_names(self) -> list[str]:
        return list(self.fields)

    def blocking_columns(self) -> set[str]:
        columns: set[str] = set()
        for p in self.blocking:
            keys = p.on if isinstance(p, ExactPass) else (p.key, *p.block_on)
            columns.update(k.column for k in keys)
        return columns


def _parse_pass(item: Any, index: int) -> BlockingPass:
    if isinstance(item, BaseModel):
        return item  # already parsed (a config built in code and copied)
    if isinstance(item, str):
        item = [item]
    if isinstance(item, list | tuple):
        if not item:
            raise ValueError(f"blocking pass {index} is an empty list")
        return ExactPass(on=tuple(KeyExpression.parse(str(k)) for k in item))
    if isinstance(item, dict) and "sorted_neighbourhood" in item:
        unknown = set(item) - {"sorted_neighbourhood", "window", "block_on"}
        if unknown:
            raise ValueError(f"blocking pass {index}: unknown key(s) {sorted(unknown)}")
        window = item.get("window", 7)
        if not isinstance(window, int) or window < 3 or window % 2 == 0:
            raise ValueError(f"blocking pass {index}: window must be an odd integer >= 3, got {window!r}")
        block_on = item.get("block_on", [])
        return SortedNeighbourhoodPass(
            key=KeyExpression.parse(str(item["sorted_neighbourhood"])),
            window=window,
            block_on=tuple(KeyExpression.parse(str(k)) for k in block_on),
        )
    raise ValueError(
        f"blocking pass {index}: expected a list of keys or {{sorted_neighbourhood: key, window: n}}, got {item!r}"
    )


def _yaml_line(source: str, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line in ``source`` where the value at ``loc`` (a pydantic error path) sits."""
    try:
        node = yaml.compose(source)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_config(source: str, origin: str = "<config>") -> DedupConfig:
    """Validate YAML text into a config; errors name the origin, key and line."""
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of settings at the top level")
    try:
        return DedupConfig.model_validate(raw)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            pass_index = re.match(r"Value error, blocking pass (\d+)", err["msg"])
            if loc == ("blocking",) and pass_index:
                loc = ("blocking", int(pass_index.group(1)))  # point at the pass's own line
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = _yaml_line(source, loc)
            where = f" (line {line})" if line else ""
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "enum":
                kinds = ", ".join(k.value for k in FieldKind)
                msg = f"unknown kind {err.get('input')!r} (known kinds: {kinds})"
            messages.append(f"{key}{where}: {msg}")
        raise ConfigError(f"{origin}: " + "; ".join(messages)) from None


def load_config(path: str | Path) -> DedupConfig:
    """Read and validate the YAML config at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return parse_config(path.read_text(encoding="utf-8"), origin=str(path))


def config_to_yaml(config: DedupConfig) -> str:
    """Serialise a config back to the user-facing YAML form (used when saving models)."""
    passes: list[Any] = []
    for p in config.blocking:
        if isinstance(p, ExactPass):
            passes.append([k.text for k in p.on])
        else:
            item: dict[str, Any] = {"sorted_neighbourhood": p.key.text, "window": p.window}
            if p.block_on:
                item["block_on"] = [k.text for k in p.block_on]
            passes.append(item)
    data: dict[str, Any] = {
        "id_column": config.id_column,
        "fields": {f: k.value for f, k in config.fields.items()},
        "blocking": passes,
        "threshold": config.threshold,
        "seed": config.seed,
        "clustering": config.clustering.model_dump(),
        "training": config.training.model_dump(),
    }
    if config.label_column:
        data["label_column"] = config.label_column
    return yaml.safe_dump(data, sort_keys=False)
