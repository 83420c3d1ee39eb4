from __future__ import annotations

import numpy as np
import polars as pl
import torch

from dedup.config import FieldKind
from dedup.encoder import (
    TOKENISE_ROWS,
    KindEncoder,
    MeanBag,
    SiameseEncoder,
    encode_field,
    gather_field,
    stack_field,
    to_codepoints,
    tokenise,
)


def test_codepoints_truncate_and_mark_nulls() -> None:
    codes, lengths = to_codepoints(pl.Series(["ab", None, "日本😀", "x" * 50]), 8)
    assert codes.shape == (4, 8) and lengths.tolist() == [2, 0, 3, 8]
    assert codes[2, :3].tolist() == [ord("日"), ord("本"), ord("😀")]


def test_tokens_are_deterministic_and_null_is_empty() -> None:
    codes, lengths = to_codepoints(["smith", None, "smith", "smyth"], 16)
    tokens = tokenise(codes, lengths, FieldKind.name, 4096)
    assert (tokens[0] == tokens[2]).all()
    assert (tokens[1] == 0).all()
    assert ((tokens > 0) & (tokens < 4096)).all(where=tokens != 0)
    shared = len(set(tokens[0][tokens[0] > 0]) & set(tokens[3][tokens[3] > 0]))
    assert 0 < shared < (tokens[0] > 0).sum()


def test_positional_tokens_distinguish_digit_order() -> None:
    codes, lengths = to_codepoints(["19800102", "19800201"], 8)
    a, b = tokenise(codes, lengths, FieldKind.date, 1 << 16)
    assert set(a) != set(b)  # same digits, different positions


def test_a_value_gets_the_same_tokens_in_a_column_as_alone() -> None:
    """tokenise hashes TOKENISE_ROWS values at a time: a block boundary must change nothing."""
    rng = np.random.default_rng(0)
    letters = list("abcé日 -0123")
    values = ["".join(rng.choice(letters, rng.integers(0, 30))) for _ in range(TOKENISE_ROWS * 2 + 7)] + [None]
    codes, lengths = to_codepoints(values, 24)
    for kind in FieldKind:
        column = tokenise(codes, lengths, kind, 1 << 15)
        alone = [tokenise(codes[i : i + 1], lengths[i : i + 1], kind, 1 << 15) for i in range(len(values))]
        assert np.array_equal(column, np.concatenate(alone)), kind


def test_trimmed_tokens_are_each_values_ids_in_the_same_order() -> None:
    """``trim`` drops only columns of padding: every row's non-zero ids, in order (what the bag
    sums, in that order), are the full width's; and a block of short values hashes only its
    short windows, with the ids a wide block gives them."""
    rng = np.random.default_rng(1)
    letters = list("abcé日 -0123")
    values = ["".join(rng.choice(letters, rng.integers(0, 12))) for _ in range(TOKENISE_ROWS + 5)] + [None]
    values[-2] = "x" * 20  # one long value in the second block only
    codes, lengths = to_codepoints(values, 30)
    for kind in FieldKind:
        full = tokenise(codes, lengths, kind, 1 << 15)
        trimmed = tokenise(codes, lengths, kind, 1 << 15, trim=True)
        assert trimmed.shape[1] < full.shape[1], kind
        for a, b in zip(full, trimmed, strict=True):
            assert np.array_equal(a[a != 0], b[b != 0]), kind


def test_encode_field_unit_norm_shared_weights_and_nulls() -> None:
    torch.manual_seed(0)
    encoder = SiameseEncoder({"first": FieldKind.name, "last": FieldKind.name}, 4096, 16, 20)
    assert list(encoder.towers) == ["name"]  # one tower shared by both name fields
    values = pl.Series(["anna", None, "anna", "bob"])
    vectors = encode_field(encoder, values, "first")
    assert np.allclose(np.linalg.norm(vectors[[0, 2, 3]], axis=1), 1.0, atol=1e-5)
    assert (vectors[1] == 0).all()
    assert np.allclose(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[3])


def test_embeddings_do_not_depend_on_batch_or_threads() -> None:
    """A record range on a one-thread Dask worker gets the bits the whole set gets on two threads:
    a cosine on a level edge must not change level between runs."""
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    values = pl.Series(["".join(rng.choice(letters, rng.integers(3, 20))) for _ in range(3000)])
    encoder = SiameseEncoder({"a": FieldKind.name}, 2**12, 32, 24)
    with torch.no_grad():  # a trained-looking MLP, not the zero-initialised residual
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        whole = encode_field(encoder, values, "a")
        torch.set_num_threads(1)
        parts = [encode_field(encoder, values.slice(s, 701), "a", chunk=97) for s in range(0, 3000, 701)]
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(np.concatenate(parts), whole)


def test_the_bag_gives_what_the_padded_embedding_bag_gives_forward_and_backward() -> None:
    """The tower calls the bag's kernel without ``padding_idx`` (torch's fast path, which the
    padding id turns off) on the real ids only: its outputs are those of the module with
    ``padding_idx=0`` on the same ids, bit for bit, and on the padded rows (an empty bag, a
    null, is the zero vector); its weight gradient (``MeanBag``'s) is the module's up to the
    order of the sums."""
    torch.manual_seed(0)
    tower = KindEncoder(2**12, 16)  # fresh: its residual MLP adds exactly 0
    padded = torch.nn.EmbeddingBag(2**12, 16, mode="mean", padding_idx=0)
    padded.weight.data.copy_(tower.bag.weight.data)
    codes, lengths = to_codepoints(["smith", None, "anna-maria", "o", "smyth jones", "smith"], 16)
    tokens = torch.from_numpy(tokenise(codes, lengths, FieldKind.name, 2**12))
    present = tokens != 0
    counts = present.sum(dim=1)
    tower.train()
    ours = tower(tokens)
    expected = padded(tokens[present], torch.cumsum(counts, 0) - counts)
    assert torch.equal(ours, expected)
    assert torch.equal(ours, padded(tokens))
    assert torch.equal(ours[1], torch.zeros(16))
    weights = torch.linspace(-1, 1, 16)
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(tower.bag.weight.grad, padded.weight.grad, rtol=1e-6, atol=1e-7)


def test_the_mean_bags_gradient_is_torchs_whatever_the_threads() -> None:
    """``MeanBag``: forward bit for bit ``embedding_bag``'s; the gradient torch's up to rounding,
    empty bags, repeated ids and a table of more than 2**16 rows included; and the same bits on
    one thread or two (a run's training must not depend on the cores it was given)."""
    generator = torch.Generator().manual_seed(0)
    for rows in (2**12, 2**17):
        weight = torch.randn(rows, 8, generator=generator, requires_grad=True)
        counts = torch.randint(0, 30, (500,), generator=generator)
        counts[:3] = torch.tensor([0, 1, 0])
        ids = torch.randint(1, rows, (int(counts.sum()),), generator=generator)
        ids[: counts[1] + 5] = rows - 1  # one row many times
        grad = torch.randn(500, 8, generator=generator)
        offsets = torch.cumsum(counts, 0) - counts
        expected = torch.nn.functional.embedding_bag(ids, weight, offsets, mode="mean")
        (expected * grad).sum().backward()
        torchs, weight.grad = weight.grad, None
        grads = []
        threads = torch.get_num_threads()
        try:
            for n in (1, 2):
                torch.set_num_threads(n)
                ours = MeanBag.apply(weight, ids, offsets, counts)
                assert torch.equal(ours, expected)
                (ours * grad).sum().backward()
                grads.append(weight.grad)
                weight.grad = None
        finally:
            torch.set_num_threads(threads)
        assert torch.equal(grads[0], grads[1])
        torch.testing.assert_close(grads[0], torchs, rtol=1e-5, atol=1e-6)
        assert torch.count_nonzero(grads[0][0]) == 0  # the padding row is never a token


def test_gathering_some_records_from_pieces_gives_their_stacked_vectors() -> None:
    rng = np.random.default_rng(0)
    parts = []
    for size, distinct in ((50, 7), (30, 1), (40, 12)):
        table = np.vstack([np.zeros((1, 4), np.float32), rng.standard_normal((distinct, 4)).astype(np.float32)])
        parts.append((table, rng.integers(0, distinct + 1, size).astype(np.int32)))  # code 0: null
    table, codes = stack_field(parts)
    for rows in (rng.integers(0, 120, 60), np.flatnonzero(codes > 0)[:5], np.array([], np.int64)):
        gathered, picked = gather_field(parts, rows)
        assert np.array_equal(gathered[picked], table[codes[rows]])
        used = codes[rows][codes[rows] > 0]  # only the table rows the records use, and the null row
        assert not gathered[0].any() and len(gathered) == 1 + len(np.unique(used))
