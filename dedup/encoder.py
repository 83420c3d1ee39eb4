"""Encode stage: the field-wise Siamese encoder and the vectorised tokeniser that feeds it.

Any string becomes a bag of hashed tokens (character n-grams with boundary markers, plus
positional characters for dates and codes, plus the whole value for categories), so unseen
values, typos and any script are handled without a vocabulary. One ``KindEncoder`` per field
kind (an EmbeddingBag followed by a residual MLP) is shared by both sides of every pair and by
all fields of that kind; each field adds a learned per-dimension scale. Embeddings are L2
normalised, so the per-field similarity of two values is the cosine of their embeddings.

Tokenising works on fixed-width arrays of Unicode code points with numpy, so it runs on whole
columns at once; ``encode_values`` embeds each distinct value once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from dedup.config import FieldKind
from dedup.frequencies import dense_ids

BOS, EOS = 2, 3  # code points used as boundary markers (never in normalised text)
_P = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class TokenSpec:
    """Which token families a kind uses."""

    ngrams: tuple[int, ...] = ()
    positional: tuple[int, ...] = ()  # sizes of position-tagged n-grams
    whole: bool = False


TOKEN_SPECS: dict[FieldKind, TokenSpec] = {
    FieldKind.name: TokenSpec(ngrams=(1, 2, 3)),
    FieldKind.text: TokenSpec(ngrams=(2, 3, 4)),
    FieldKind.date: TokenSpec(positional=(1, 2)),
    FieldKind.code: TokenSpec(ngrams=(2,), positional=(1, 2)),
    FieldKind.category: TokenSpec(ngrams=(2, 3), whole=True),
    FieldKind.number: TokenSpec(ngrams=(2,), positional=(1, 2)),
}


def to_codepoints(values: pl.Series | Sequence[str | None], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """Strings as a ``(n, max_chars)`` uint32 code-point array (truncated, zero padded) and lengths.

    Nulls become length 0.
    """
    if isinstance(values, pl.Series):
        arr = values.fill_null("").to_numpy()
    else:
        arr = np.array(["" if v is None else v for v in values], dtype=object)
    fixed = np.asarray(arr, dtype=f"<U{max_chars}")
    codes = fixed.view(np.uint32).reshape(len(fixed), max_chars).copy()
    lengths = (codes != 0).sum(axis=1).astype(np.int64)
    return codes, lengths


TOKENISE_ROWS = 1024  # values hashed together: their uint64 work arrays stay in the CPU's cache


def _finalise(h: np.ndarray, salt: int, buckets: int) -> np.ndarray:
    """Mix a block of raw hashes into bucket ids 1 .. buckets - 1, in place (``h`` is consumed)."""
    h ^= np.uint64(salt * 0x2545F4914F6CDD1D & 0xFFFFFFFFFFFFFFFF)
    h *= _MIX
    h ^= h >> np.uint64(31)
    h %= np.uint64(buckets - 1)
    ids = h.view(np.int64)
    ids += 1
    return ids


def tokenise(codes: np.ndarray, lengths: np.ndarray, kind: FieldKind, buckets: int, trim: bool = False) -> np.ndarray:
    """Hashed token ids, ``(n, tokens)`` int64, with 0 as padding (ignored by the bag).

    Works ``TOKENISE_ROWS`` values at a time with in-place arithmetic: on a whole column the
    temporaries were hundreds of MB each, and a million e-mail addresses took 11 s instead of 2 s
    (the ids are the same: every value is hashed on its own).

    The columns are the token windows of the full width, family by family; ``trim``: only the
    windows the longest of these values can fill (the others hold only padding). A value's
    non-zero ids, in order, are the same either way, and so is its bag; without ``trim`` the
    column count depends on the width alone (training concatenates batches of values). Trimmed,
    a column of 20-character addresses read 80 wide is under a third of the size.
    """
    spec = TOKEN_SPECS[kind]
    width = codes.shape[1]
    reach = _filled_width(codes) if trim else width
    groups = [min(width + 3 - size, max(0, reach + 3 - size)) for size in spec.ngrams]
    groups += [min(width + 1 - size, max(0, reach + 1 - size)) for size in spec.positional]
    out = np.empty((len(codes), sum(groups) + (1 if spec.whole else 0)), dtype=np.int64)
    for start in range(0, len(codes), TOKENISE_ROWS):
        block = slice(start, start + TOKENISE_ROWS)
        _tokenise_block(codes[block], lengths[block], spec, buckets, groups, out[block])
    return out


def _filled_width(codes: np.ndarray) -> int:
    """Columns up to the last one any value fills: every column from there on is 0."""
    filled = np.flatnonzero(codes.any(axis=0))
    return int(filled[-1]) + 1 if len(filled) else 0


def _tokenise_block(
    codes: np.ndarray, lengths: np.ndarray, spec: TokenSpec, buckets: int, groups: list[int], out: np.ndarray
) -> None:
    """``tokenise`` for a few values, written into ``out`` (their rows of the result; ``groups``:
    its columns per token family).

    Only the windows up to the block's longest value are hashed (``used``): past it every
    window is padding, whose id is 0 anyway (names read 40 characters and are mostly under 15).
    """
    n, width = codes.shape
    longest = _filled_width(codes)
    padded = np.zeros((n, width + 2), dtype=np.uint64)
    padded[:, 1 : width + 1] = codes
    padded[:, 0] = BOS
    padded[np.arange(n), lengths + 1] = EOS
    present = lengths > 0
    column = 0
    columns = iter(groups)
    for size in spec.ngrams:
        windows = next(columns)
        used = min(windows, max(0, longest + 3 - size))  # windows that can hold a character
        h = padded[:, :used].copy()
        for k in range(1, size):
            h *= _P
            h += padded[:, k : k + used]
        start = np.arange(used)[None, :]
        if size == 1:  # single characters only, no bare boundary markers
            valid = (start >= 1) & (start <= lengths[:, None])
        else:
            valid = start <= (lengths[:, None] + 2 - size)
        valid &= present[:, None]
        np.multiply(_finalise(h, 100 + size, buckets), valid, out=out[:, column : column + used])
        out[:, column + used : column + windows] = 0
        column += windows
    for size in spec.positional:
        windows = next(columns)
        used = min(windows, max(0, longest + 1 - size))
        h = np.broadcast_to(np.arange(used, dtype=np.uint64)[None, :], (n, used)).copy()
        for k in range(size):
            h *= _P
            h += codes[:, k : k + used]
        valid = np.arange(used)[None, :] <= (lengths[:, None] - size)
        np.multiply(_finalise(h, 200 + size, buckets), valid, out=out[:, column : column + used])
        out[:, column + used : column + windows] = 0
        column += windows
    if spec.whole:
        h = np.zeros(n, dtype=np.uint64)
        for k in range(longest):
            h *= _P
            h += codes[:, k]
        h *= np.uint64(pow(int(_P), width - longest, 1 << 64))  # the zero columns' steps, at once
        out[:, column] = np.where(present, _finalise(h, 11, buckets), 0)


class MeanBag(torch.autograd.Function):
    """The mean of each row's token embeddings, with the table's gradient as one sparse product.

    Why not ``embedding_bag``'s own backward: on CPU it walks the token ids one by one into a
    zeroed table, 40% of a training step. The gradient is ``A.T @ grad`` for the (bags x table
    rows) matrix ``A`` whose row holds ``1 / size`` at its tokens; built sorted by table row, the
    product is a CSR matrix times a dense one, multi-threaded and the same bits on one thread or
    two (``tests/test_encoder.py``). The forward is ``embedding_bag``'s (the same bits); the
    gradient sums in another order (a 10k-record step 99 -> 85 ms).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, weight: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(ids, counts)
        ctx.rows = weight.shape[0]
        return nn.functional.embedding_bag(ids, weight, offsets, mode="mean")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        ids, counts = ctx.saved_tensors
        rows, flat = ctx.rows, ids.numpy()
        # tokens in table-row order (numpy's radix sort on 16-bit ids; stable either way)
        order = np.argsort(flat.astype(np.uint16) if rows <= 1 << 16 else flat, kind="stable")
        bag = np.repeat(np.arange(len(counts), dtype=np.int32), counts.numpy())[order]
        starts = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(np.bincount(flat, minlength=rows), out=starts[1:])
        share = (1.0 / counts.clamp_min(1).to(grad.dtype))[torch.from_numpy(bag)]
        with warnings.catch_warnings():  # torch calls sparse CSR tensors beta, once per process
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            transposed = torch.sparse_csr_tensor(  # int32 indices: the product runs 4x faster than with int64
                torch.from_numpy(starts), torch.from_numpy(bag), share, size=(rows, len(counts)), check_invariants=False
            )
        return transposed @ grad, None, None, None


class KindEncoder(nn.Module):
    """Bag of hashed tokens -> residual MLP: the shared tower for one field kind."""

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean", padding_idx=0)
        nn.init.normal_(self.bag.weight, std=1.0)
        with torch.no_grad():
            self.bag.weight[0].zero_()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # ragged: only the real token ids, with offsets (padding is most of a short value's
        # row, and the bag would still walk it); an empty bag is the zero vector, as before.
        # Picked out with numpy: torch's boolean indexing took four times as long
        ids = tokens.numpy()
        present = ids != 0
        counts = present.sum(axis=1, dtype=np.int64)
        flat, offsets = torch.from_numpy(ids[present]), torch.from_numpy(np.cumsum(counts) - counts)
        if self.training:
            bag = MeanBag.apply(self.bag.weight, flat, offsets, torch.from_numpy(counts))
            return bag + self.mlp(bag)
        # called without the module's padding_idx: no padding id is left to skip, and with one
        # set torch leaves its fast kernel (forward 4-10x, backward 1.4-1.6x slower; the same bits)
        bag = nn.functional.embedding_bag(flat, self.bag.weight, offsets, mode="mean")
        # inference in float64: a value's embedding must not depend on the batch it came in or
        # the threads that ran it (record ranges on Dask workers vs one process), or a cosine
        # sitting on a level edge would land in a different level from run to run
        # the MLP's own ops on float64 copies of its weights: no module state is swapped, so
        # fields of one kind may be encoded on two threads at once (``embed_records``)
        bag = bag.double()
        first, second = self.mlp[0], self.mlp[2]
        hidden = nn.functional.relu(nn.functional.linear(bag, first.weight.double(), first.bias.double()))
        return bag + nn.functional.linear(hidden, second.weight.double(), second.bias.double())


class SiameseEncoder(nn.Module):
    """Field embeddings: one shared tower per kind plus a learned per-field scale."""

    def __init__(
        self, fields: dict[str, FieldKind], buckets: int, dim: int, max_chars: int, text_max_chars: int | None = None
    ) -> None:
        super().__init__()
        self.fields = dict(fields)
        self.buckets, self.dim, self.max_chars = buckets, dim, max_chars
        self.text_max_chars = text_max_chars or max_chars
        kinds = sorted({k.value for k in fields.values()})
        self.towers = nn.ModuleDict({k: KindEncoder(buckets, dim) for k in kinds})
        # one row per field, by position: field names are user data (``type``, dots, any text), not
        # attribute names, so they never become keys of a module
        self.field_index = {f: i for i, f in enumerate(fields)}
        self.field_scale = nn.Parameter(torch.ones(len(fields), dim))

    def width(self, field: str) -> int:
        """Characters of a value the encoder reads: titles and descriptions need more than names."""
        return self.text_max_chars if self.fields[field] is FieldKind.text else self.max_chars

    def tokens(self, values: pl.Series | Sequence[str | None], field: str, trim: bool = False) -> torch.Tensor:
        """The values' token ids (``tokenise``; ``trim``: only the columns these values fill)."""
        codes, lengths = to_codepoints(values, self.width(field))
        return torch.from_numpy(tokenise(codes, lengths, self.fields[field], self.buckets, trim))

    def forward(self, tokens: torch.Tensor, field: str) -> torch.Tensor:
        kind = self.fields[field].value
        return self._scaled(self.towers[kind](tokens), field)

    def forward_fields(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``forward`` for several fields at once: the fields of one kind go through their tower
        in one call (row by row the same result; in training, one bag gradient per kind and
        step instead of one per field, which is most of a step's time)."""
        by_kind: dict[str, list[str]] = {}
        for field in tokens:
            by_kind.setdefault(self.fields[field].value, []).append(field)
        out: dict[str, torch.Tensor] = {}
        for kind, fields in by_kind.items():
            towers = self.towers[kind](torch.cat([tokens[f] for f in fields]))
            for field, tower in zip(fields, towers.split([len(tokens[f]) for f in fields]), strict=True):
                out[field] = self._scaled(tower, field)
        return out

    def _scaled(self, tower: torch.Tensor, field: str) -> torch.Tensor:
        raw = tower * self.field_scale[self.field_index[field]].to(tower.dtype)
        unit = nn.functional.normalize(raw, dim=1, eps=1e-8)
        return unit if self.training else unit.float()


def encode_values(
    encoder: SiameseEncoder, values: pl.Series, field: str, chunk: int = 32768
) -> tuple[np.ndarray, np.ndarray]:
    """One column's embeddings as a table of distinct values plus each row's index into it.

    Returns ``(table, codes)``: ``table`` is ``(distinct + 1, dim)`` float32 unit vectors whose
    row 0 is a zero vector for nulls; ``codes`` is int32, one per row (0 = null). Each distinct
    value goes through the network once, and the table is all the memory the field needs.
    """
    values = values.cast(pl.String)
    uniques = values.drop_nulls().unique().sort()
    table = np.zeros((uniques.len() + 1, encoder.dim), dtype=np.float32)
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, uniques.len(), chunk):
            part = uniques.slice(start, chunk)
            table[1 + start : 1 + start + part.len()] = encoder(encoder.tokens(part, field, trim=True), field).numpy()
    # 1-based position in the sorted uniques; null stays null -> 0
    codes = dense_ids(values, uniques)
    return table, codes


def encode_field(encoder: SiameseEncoder, values: pl.Series, field: str, chunk: int = 32768) -> np.ndarray:
    """Unit-norm embeddings ``(n, dim)`` float32 for one column; null values get zero vectors."""
    table, codes = encode_values(encoder, values, field, chunk)
    return table[codes]


def stack_field(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One field's ``(table, codes)`` pieces as one: tables stacked (later pieces drop their
    zero row), codes shifted to match. One piece is returned as it is, not copied."""
    if len(parts) == 1:
        return parts[0][0], parts[0][1].astype(np.int32, copy=False)
    offsets = np.cumsum([0] + [len(table) - 1 for table, _ in parts[:-1]])
    table = np.concatenate([parts[0][0]] + [t[1:] for t, _ in parts[1:]])
    codes = np.concatenate(
        [np.where(c > 0, c + o, 0).astype(np.int32) for (_, c), o in zip(parts, offsets, strict=True)]
    )
    return table, codes


def gather_field(parts: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``stack_field(parts)`` holds for the records at ``rows`` (positions in the pieces'
    codes, one piece after another), without stacking the tables: only the table rows those
    records use are copied, into a table of their own whose row 0 is the null row."""
    starts = np.cumsum([0] + [len(codes) for _, codes in parts])
    piece = np.searchsorted(starts, rows, side="right") - 1
    local = np.zeros(len(rows), np.int64)
    for i, (_, codes) in enumerate(parts):
        mine = piece == i
        local[mine] = codes[rows[mine] - starts[i]]
    width = max(len(table) for table, _ in parts)
    used, codes = np.unique(np.where(local > 0, piece * width + local, 0), return_inverse=True)
    if not len(used) or used[0] != 0:  # no null among them: row 0 is still the null row
        used, codes = np.concatenate([[0], used]), codes + 1
    table = np.zeros((len(used), parts[0][0].shape[1]), np.float32)
    for i, (source, _) in enumerate(parts):
        mine = (used // width == i) & (used % width > 0)
        table[mine] = source[used[mine] % width]
    return table, codes.astype(np.int32)


class FieldEmbeddings:
    """Cached embeddings of every record, per field, stored once per distinct value.

    ``tables[f]`` is ``(distinct + 1, dim)`` unit vectors with a zero row 0 for nulls, and
    ``codes[f]`` (int32) is each record's row in it, so memory grows with distinct values, not
    with records times dimensions.
    """

    def __init__(self, tables: dict[str, np.ndarray], codes: dict[str, np.ndarray]) -> None:
        self.tables = tables
        self.codes = codes

    @classmethod
    def from_fields(cls, fields: list[str], made: list[tuple[np.ndarray, np.ndarray]]) -> FieldEmbeddings:
        """From each field's ``(table, codes)``, in the order of ``fields``."""
        tables = {f: table for f, (table, _) in zip(fields, made, strict=True)}
        return cls(tables, {f: codes for f, (_, codes) in zip(fields, made, strict=True)})

    @classmethod
    def from_dense(cls, vectors: dict[str, np.ndarray], nulls: dict[str, np.ndarray]) -> FieldEmbeddings:
        """From one vector per record (tests, small data)."""
        tables, codes = {}, {}
        for f, vec in vectors.items():
            tables[f] = np.vstack([np.zeros((1, vec.shape[1]), np.float32), vec.astype(np.float32)])
            codes[f] = np.where(nulls[f], 0, np.arange(1, len(vec) + 1)).astype(np.int32)
        return cls(tables, codes)

    def take(self, rows: np.ndarray) -> FieldEmbeddings:
        """The records at ``rows`` (the tables are shared, not copied)."""
        return FieldEmbeddings(self.tables, {f: c[rows] for f, c in self.codes.items()})

    @property
    def fields(self) -> list[str]:
        return list(self.tables)

    def dense(self, field: str) -> np.ndarray:
        """One vector per record (zeros for nulls): ``(records, dim)``."""
        return self.tables[field][self.codes[field]]

    def nulls(self, field: str) -> np.ndarray:
        return self.codes[field] == 0
