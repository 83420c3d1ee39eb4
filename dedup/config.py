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
    number: an amount (price, length, weight, year of a release): the first number in the value,
        compared by how far apart the two numbers are relative to the larger (1% apart is close
        whatever the digits look like), as Splink's percentage-difference comparison does.
    """

    name = "name"
    text = "text"
    date = "date"
    category = "category"
    code = "code"
    number = "number"


class KeyExpression(BaseModel):
    """One blocking key: a column, optionally a phonetic code of it, optionally a slice."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    column: str
    function: str | None = None
    start: int | None = None
    stop: int | None = None
    text: str

    @classmethod
    def of_column(cls, column: str, function: str | None = None, stop: int | None = None) -> KeyExpression:
        """A key on a column by its exact name (any characters), as the default passes build them."""
        text = column if function is None else f"{function}({column})"
        return cls(column=column, function=function, stop=stop, text=text if stop is None else f"{text}[:{stop}]")

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

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    on: tuple[KeyExpression, ...]

    @property
    def name(self) -> str:
        return "block(" + ", ".join(k.text for k in self.on) + ")"


class SortedNeighbourhoodPass(BaseModel):
    """Records are candidates when their key sorts within ``window`` of each other."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    key: KeyExpression
    window: int = 7
    block_on: tuple[KeyExpression, ...] = ()

    @property
    def name(self) -> str:
        suffix = "".join(f", {k.text}" for k in self.block_on)
        return f"sorted_neighbourhood({self.key.text}, window={self.window}{suffix})"


class EmbeddingPass(BaseModel):
    """Each record's ``k`` nearest neighbours by cosine of its field embeddings (learned blocking)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    k: int = Field(10, ge=1, le=1000)
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0)
    method: Literal["auto", "exact", "approximate"] = Field(
        "auto", description="exact search, approximate (faiss IVF), or auto: approximate above 20,000 records"
    )

    @property
    def name(self) -> str:
        floor = "" if self.min_similarity is None else f", min_similarity={self.min_similarity}"
        return f"embedding(k={self.k}{floor})"


class TokenPass(BaseModel):
    """Records are candidates when they share one of their ``rarest`` rarest words of ``field``.

    Words held by more than ``max_records`` records are no key at all (a shared "the" or
    "laptop" says nothing): token blocking with block purging, the standard first pass for
    product titles and other long text, where whole values rarely agree.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    field: str
    rarest: int = Field(3, ge=1, le=100)
    max_records: int = Field(50, ge=2)

    @property
    def name(self) -> str:
        return f"tokens({self.field}, rarest={self.rarest}, max_records={self.max_records})"


BlockingPass = ExactPass | SortedNeighbourhoodPass | EmbeddingPass | TokenPass
DEFAULT_PAIRS_PER_RECORD = 50  # a default pass making more pairs than this per record is skipped


class TrainingConfig(BaseModel):
    """Sizes of the encoder and its training run; the defaults suit up to ~1M records."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dim: int = Field(64, ge=4, le=1024, description="embedding size per field")
    buckets: int = Field(2**15, ge=256, description="hashed n-gram vocabulary size per kind")
    max_chars: int = Field(40, ge=4, le=512, description="values are truncated to this for encoding")
    text_max_chars: int = Field(80, ge=4, le=2048, description="the same for text fields (titles, descriptions)")
    epochs: int = Field(4, ge=1, description="passes over the sampled training values")
    steps_per_epoch: int = Field(40, ge=1)
    passes: float = Field(
        4.0, gt=0, description="on small data, train only until each distinct value was drawn about this often"
    )
    batch_size: int = Field(256, ge=8)
    learning_rate: float = Field(0.01, gt=0)
    margin: float = Field(1.4, gt=0, le=2.0, description="contrastive margin on euclidean distance")
    max_values: int = Field(20000, ge=10, description="distinct values sampled per field")
    em_iterations: int = Field(100, ge=1, description="EM iterations for the label-free combiner")
    self_training: bool = Field(
        True,
        description="label-free: a second round of encoder training on the pairs the first model is "
        "sure of; off: one round (a quarter to a third less training time; on the real benchmark sets, "
        "five seeds each, mean cluster pair-F1 moved by -0.009 on SIGMOD X2 to +0.009 on Abt-Buy: "
        "benchmarks/HISTORY.md)",
    )
    self_training_confidence: float = Field(
        0.99,
        gt=0.5,
        lt=1.0,
        description="pairs scored above this teach the encoder as matches, below 1 - this as non-matches",
    )
    random_pairs: int = Field(
        200_000, ge=100, description="random pairs: the non-match similarity (u) and the fuzzy level edges"
    )
    max_pairs: int = Field(
        200_000, ge=1000, description="candidate pairs sampled to fit on: training time is bounded by this, not by N"
    )


class ClusteringConfig(BaseModel):
    """How matches become clusters (see ``dedup.clustering``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    method: Literal["density", "components"] = "density"
    min_density: float = Field(0.6, ge=0.0, le=1.0, description="share of a cluster's pairs that must match")
    min_support: float = Field(
        0.5, ge=0.0, le=1.0, description="share of neighbours an edge's two records must share, else it is cut"
    )
    ladder: tuple[float, ...] = Field(
        (0.8, 0.9, 0.95, 0.99),
        description="stricter thresholds a sparse cluster is re-split at; an edge at or above the last is never cut",
    )

    @field_validator("ladder")
    @classmethod
    def _ladder_rises(cls, ladder: tuple[float, ...]) -> tuple[float, ...]:
        if not ladder or list(ladder) != sorted(set(ladder)) or not all(0.0 < t < 1.0 for t in ladder):
            raise ValueError("ladder must be rising probabilities between 0 and 1")
        return ladder


def is_column_pattern(name: str) -> bool:
    """Whether polars reads ``name`` as a pattern, not a column: ``*``, or ``^...$``."""
    return name == "*" or (name.startswith("^") and name.endswith("$"))


class DedupConfig(BaseModel):
    """Everything that describes one dedup job."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id_column: str
    fields: dict[str, FieldKind]
    blocking: tuple[BlockingPass, ...] | None = None  # None: passes chosen from the field kinds
    blocking_max_pairs: int = Field(50_000_000, ge=1, description="refuse a pass that would make more pairs")
    label_column: str | None = None
    label_test_share: float = Field(
        0.3, gt=0.0, lt=1.0, description="share of labelled entities held out of training for the report's metrics"
    )
    labels: str | None = Field(
        None, description="pair labels (dedup review's labels.parquet): they retrain the model and decide their pairs"
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="random seed: same input + config + seed = same clusters")
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
        if value is None:
            return None
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
        for column in [self.id_column, *self.fields, self.label_column or "", *sorted(self.blocking_columns())]:
            if "\x00" in column:
                # Arrow's C interface passes column names as C strings, which end at NUL
                raise ValueError(f"column name {column!r} contains a NUL character, which Arrow cannot carry")
            if is_column_pattern(column):
                raise ValueError(
                    f"column name {column!r} is a pattern to polars ('*' is every column, '^...$' a regular "
                    "expression); rename the column"
                )
        return self

    @property
    def field_names(self) -> list[str]:
        return list(self.fields)

    @property
    def passes(self) -> tuple[BlockingPass, ...]:
        """The blocking passes: as configured, or the defaults for these field kinds."""
        return self.blocking if self.blocking is not None else default_passes(self.fields)

    def blocking_columns(self) -> set[str]:
        columns: set[str] = set()
        for p in self.passes:
            if isinstance(p, ExactPass):
                columns.update(k.column for k in p.on)
            elif isinstance(p, SortedNeighbourhoodPass):
                columns.update(k.column for k in (p.key, *p.block_on))
            elif isinstance(p, TokenPass):
                columns.add(p.field)
        return columns


def default_passes(fields: dict[str, FieldKind]) -> tuple[BlockingPass, ...]:
    """Blocking for a config that names none, from the field kinds (see README, "Blocking").

    - all name fields equal; each name field's soundex with the first date's year (alone when
      there is no date);
    - each date and code field exactly (dates of birth, phones, ids);
    - each text field by its rarest words (``TokenPass``): long text rarely agrees whole;
    - the 10 nearest neighbours of every record by its learned field embeddings.
    Categories and numbers get no pass of their own (a handful of values make huge blocks; one
    price is shared by unrelated products, and two listings of one product often differ in
    price). A default pass that would make more than ``DEFAULT_PAIRS_PER_RECORD`` pairs per
    record on the data (or more than ``blocking_max_pairs``) is skipped with a warning and
    reported.
    """
    names = [f for f, k in fields.items() if k is FieldKind.name]
    dates = [f for f, k in fields.items() if k is FieldKind.date]
    passes: list[BlockingPass] = []
    if names:
        passes.append(ExactPass(on=tuple(KeyExpression.of_column(f) for f in names)))
        year = [KeyExpression.of_column(dates[0], stop=4)] if dates else []
        for f in names:
            passes.append(ExactPass(on=(KeyExpression.of_column(f, "soundex"), *year)))
    for f, kind in fields.items():
        if kind in (FieldKind.date, FieldKind.code):
            passes.append(ExactPass(on=(KeyExpression.of_column(f),)))
        elif kind is FieldKind.text:
            passes.append(TokenPass(field=f))
    passes.append(EmbeddingPass(k=10))
    return tuple(passes)


def _parse_pass(item: Any, index: int) -> BlockingPass:
    try:
        return _build_pass(item, index)
    except ValidationError as exc:  # a nested model's error: one line, not pydantic's dump
        kind = next(iter(item)) if isinstance(item, dict) and item else "pass"
        problems = "; ".join(
            f"{'.'.join(map(str, (kind, *error['loc'])))}: {error['msg']}" for error in exc.errors(include_url=False)
        )
        raise ValueError(f"blocking pass {index}: {problems}") from None


def _build_pass(item: Any, index: int) -> BlockingPass:
    if isinstance(item, BaseModel):
        return item  # already parsed (a config built in code and copied)
    if isinstance(item, str):
        item = [item]
    if isinstance(item, list | tuple):
        if not item:
            raise ValueError(f"blocking pass {index} is an empty list")
        return ExactPass(on=tuple(KeyExpression.parse(str(k)) for k in item))
    if isinstance(item, dict) and "embedding" in item:
        if set(item) != {"embedding"}:
            raise ValueError(f"blocking pass {index}: unknown key(s) {sorted(set(item) - {'embedding'})}")
        options = item["embedding"] or {}
        if not isinstance(options, dict):
            raise ValueError(f"blocking pass {index}: expected {{embedding: {{k: 10}}}}, got {item!r}")
        return EmbeddingPass(**options)
    if isinstance(item, dict) and "tokens" in item:
        unknown = set(item) - {"tokens", "rarest", "max_records"}
        if unknown:
            raise ValueError(f"blocking pass {index}: unknown key(s) {sorted(unknown)}")
        return TokenPass(field=str(item["tokens"]), **{k: v for k, v in item.items() if k != "tokens"})
    if isinstance(item, dict) and "sorted_neighbourhood" in item:
        unknown = set(item) - {"sorted_neighbourhood", "window", "block_on"}
        if unknown:
            raise ValueError(f"blocking pass {index}: unknown key(s) {sorted(unknown)}")
        window = item.get("window", 7)
        if not isinstance(window, int) or window < 3 or window % 2 == 0:
            raise ValueError(f"blocking pass {index}: window must be an odd integer >= 3, got {window!r}")
        block_on = item.get("block_on", [])
        if isinstance(block_on, str):  # one key given without a list
            block_on = [block_on]
        return SortedNeighbourhoodPass(
            key=KeyExpression.parse(str(item["sorted_neighbourhood"])),
            window=window,
            block_on=tuple(KeyExpression.parse(str(k)) for k in block_on),
        )
    raise ValueError(
        f"blocking pass {index}: expected a list of keys, {{sorted_neighbourhood: key, window: n}}, "
        f"{{tokens: field}} or {{embedding: {{k: n}}}}, got {item!r}"
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: where (line, column) and what."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f": {' '.join(str(exc).split())}"
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    what = "; ".join(part for part in (exc.context, exc.problem) if part)
    return f"{where}: {' '.join(what.split())}"


def parse_config(source: str, origin: str = "<config>") -> DedupConfig:
    """Validate YAML text into a config; errors name the origin, key and line."""
    try:
        raw = yaml.load(source, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML{_yaml_problem(exc)}") from None
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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    return parse_config(text, origin=str(path))


def config_to_yaml(config: DedupConfig) -> str:
    """Serialise a config back to the user-facing YAML form (used when saving models)."""
    passes: list[Any] = []
    for p in config.blocking or ():
        if isinstance(p, ExactPass):
            passes.append([k.text for k in p.on])
        elif isinstance(p, EmbeddingPass):
            passes.append({"embedding": p.model_dump(exclude_none=True)})
        elif isinstance(p, TokenPass):
            passes.append({"tokens": p.field, "rarest": p.rarest, "max_records": p.max_records})
        else:
            item: dict[str, Any] = {"sorted_neighbourhood": p.key.text, "window": p.window}
            if p.block_on:
                item["block_on"] = [k.text for k in p.block_on]
            passes.append(item)
    data: dict[str, Any] = {
        "id_column": config.id_column,
        "fields": {f: k.value for f, k in config.fields.items()},
        "threshold": config.threshold,
        "seed": config.seed,
        "clustering": config.clustering.model_dump(),
        "training": config.training.model_dump(),
    }
    if config.blocking is not None:
        data["blocking"] = passes
    if config.blocking_max_pairs != 50_000_000:
        data["blocking_max_pairs"] = config.blocking_max_pairs
    if config.label_column:
        data["label_column"] = config.label_column
    return yaml.safe_dump(data, sort_keys=False)
