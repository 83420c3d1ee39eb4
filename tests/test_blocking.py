from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
import recordlinkage

from dedup.blocking import (
    CandidatePairs,
    analyse_blocking,
    block,
    estimate_pass,
    key_values,
    record_vectors,
    run_pass,
    union_pairs,
    vectors_of,
    with_found,
)
from dedup.config import DedupConfig, KeyExpression, parse_config
from dedup.encoder import FieldEmbeddings
from dedup.errors import BlockingError
from dedup.indexers import EmbeddingNeighbours, KeyBlock
from dedup.normalise import normalise_fields

# Six hand-made records; expected pairs counted by hand below.
RECORDS = pl.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e", "f"],
        "first": ["John", "john", "Jon", "Mary", None, "Mary"],
        "last": ["Smith", "Smith", "Smyth", "Smith", "Smithe", None],
        "dob": ["1980-01-02", "1980-01-02", "1980-03-04", "1990-01-02", "1980-01-02", "1990-05-05"],
    }
)


def _pairs(passes: str) -> CandidatePairs:
    config = parse_config(f"id_column: id\nfields: {{first: name, last: name, dob: date}}\nblocking: {passes}")
    return block(RECORDS, normalise_fields(RECORDS, config), config)


def _as_set(pairs: CandidatePairs) -> set[tuple[str, str]]:
    ids = RECORDS["id"].to_numpy()
    return {(ids[a], ids[b]) for a, b in zip(pairs.left, pairs.right, strict=True)}


def test_exact_block_on_normalised_keys_skips_nulls() -> None:
    # first+last equal after normalisation: a-b only (e has no first name, f no surname)
    assert _as_set(_pairs("[[first, last]]")) == {("a", "b")}


def test_key_block_finds_the_pairs_recordlinkage_block_finds() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"k0": rng.choice(["a", "b", "c", "dd"], 300), "k1": rng.integers(0, 5, 300)},
        index=pd.Index(rng.permutation(1000)[:300]),  # row positions, not 0..n
    )
    for keys in (["k0"], ["k0", "k1"]):
        ours, theirs = recordlinkage.Index(), recordlinkage.Index()
        ours.add(KeyBlock())
        theirs.add(recordlinkage.index.Block(left_on=keys))
        found = sorted(tuple(sorted(p)) for p in ours.index(frame[keys]))  # each pair once, either way round
        assert found == sorted(tuple(sorted(p)) for p in theirs.index(frame[keys])) and len(found) > 1000


def test_prefix_and_phonetic_keys() -> None:
    # surname[:3] = 'smi' for a, b, d, e ('smy' for c; f null) -> 4 records -> 6 pairs
    assert len(_pairs('[["last[:3]"]]')) == 6
    # soundex(last): smith=smyth=smithe=S530 -> a, b, c, d, e -> 10 pairs
    assert len(_pairs('[["soundex(last)"]]')) == 10
    # year of birth: 1980 for a, b, c, e -> 6 pairs; 1990 for d, f -> 1 pair
    assert len(_pairs('[["dob[:4]"]]')) == 7


def test_sorted_neighbourhood_window() -> None:
    # recordlinkage windows over the sorted *distinct* keys: john(a, b), jon(c), mary(d, f).
    # Window 3 joins equal keys and adjacent distinct keys: john~jon, jon~mary, never john~mary.
    assert _as_set(_pairs("[{sorted_neighbourhood: first, window: 3}]")) == {
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
        ("c", "d"),
        ("c", "f"),
        ("d", "f"),
    }


def test_union_keeps_first_pass_and_orders_pairs() -> None:
    pairs = _pairs('[[first, last], ["dob[:4]"]]')
    assert pairs.pass_counts == (1, 7)
    assert len(pairs) == 7  # a-b found by both passes, kept once
    assert np.all(pairs.left < pairs.right)
    found_by = {(int(a), int(b)): int(k) for a, b, k in zip(pairs.left, pairs.right, pairs.pass_index, strict=True)}
    assert found_by.pop((0, 1)) == 0 and set(found_by.values()) == {1}
    assert pairs.pass_names == ("block(first, last)", "block(dob[:4])")


def test_union_pairs_deduplicates_reversed_and_self_pairs() -> None:
    pairs = union_pairs([(np.array([2, 1, 3]), np.array([1, 2, 3]))], ("x",))
    assert list(zip(pairs.left, pairs.right, strict=True)) == [(1, 2)]


@pytest.mark.parametrize("streamed", [False, True], ids=["list", "iterator-with-width"])
@pytest.mark.parametrize("offset", [0, 3_000_000_000], ids=["one-int64-key", "rows-too-large-for-one-key"])
def test_union_of_many_passes_is_each_pair_once_with_its_earliest_pass(offset: int, streamed: bool) -> None:
    """Against a plain reference: distinct unordered pairs, the earliest pass that found each,
    ordered by (left, right); each pass's count is its own distinct pairs. Passes given one at a
    time (an iterator, with the width up front) give the same."""
    rng = np.random.default_rng(7)
    per_pass = [(rng.integers(0, 300, n) + offset, rng.integers(0, 300, n) + offset) for n in (2000, 50, 3000, 0, 800)]
    names = tuple(f"p{i}" for i in range(len(per_pass)))
    pairs = union_pairs(iter(per_pass), names, offset + 300) if streamed else union_pairs(per_pass, names)
    earliest: dict[tuple[int, int], int] = {}
    counts = []
    for i, (a, b) in enumerate(per_pass):
        own = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist(), strict=True) if x != y}
        counts.append(len(own))
        for pair in own:
            earliest.setdefault(pair, i)
    expected = sorted(earliest.items())
    assert [(int(a), int(b)) for a, b in zip(pairs.left, pairs.right, strict=True)] == [p for p, _ in expected]
    assert pairs.pass_index.tolist() == [i for _, i in expected]
    assert pairs.pass_counts == tuple(counts)
    assert pairs.left.dtype == np.int64 and pairs.pass_index.dtype == np.int16


TRUTH = np.array(["X", "X", "X", "Y", "Z", "Y"])  # a, b, c are one person; d and f another; e alone


def test_analysis_matches_hand_counted_pairs() -> None:
    config = parse_config(
        'id_column: id\nfields: {first: name, last: name, dob: date}\nblocking: [[first, last], ["dob[:4]"]]'
    )
    rows, overall = analyse_blocking(RECORDS, normalise_fields(RECORDS, config), config, TRUTH)
    # true pairs: a-b, a-c, b-c, d-f (4). Pass 1 finds a-b (block "john/smith", 2 records).
    # Pass 2: 1980 = {a, b, c, e} -> 6 pairs, 1990 = {d, f} -> 1 pair; a-b was already found.
    first, second = rows
    assert (first.pairs, first.new_pairs, first.largest_block) == (1, 1, 2)
    assert (first.pair_completeness, first.cumulative_completeness) == (0.25, 0.25)
    assert (second.pairs, second.new_pairs, second.largest_block) == (7, 6, 4)
    assert (second.pair_completeness, second.cumulative_completeness) == (1.0, 1.0)
    assert overall["candidate_pairs"] == 7 and overall["true_pairs"] == 4
    assert overall["reduction_ratio"] == pytest.approx(1 - 7 / 15)


def test_estimates_are_exact_for_blocks_and_bound_sorted_neighbourhood() -> None:
    config = parse_config(
        "id_column: id\nfields: {first: name, last: name, dob: date}\n"
        'blocking: [["dob[:4]"], {sorted_neighbourhood: first, window: 3}]'
    )
    normalised = normalise_fields(RECORDS, config)
    exact, snh = config.passes
    assert estimate_pass(RECORDS, normalised, exact).pairs == 7
    actual = len(union_pairs([run_pass(RECORDS, normalised, snh)], ("snh",)))
    assert estimate_pass(RECORDS, normalised, snh).pairs >= actual == 6


def test_guard_refuses_an_exploding_pass_naming_the_block() -> None:
    text = 'id_column: id\nfields: {first: name, last: name, dob: date}\nblocking: [["dob[:4]"]]\nblocking_max_pairs: 5'
    config = parse_config(text)
    with pytest.raises(
        BlockingError, match=r"block\(dob\[:4\]\) would produce 7 .* largest blocks: 1980 \(4 records\)"
    ):
        block(RECORDS, normalise_fields(RECORDS, config), config)
    rows, _ = analyse_blocking(RECORDS, normalise_fields(RECORDS, config), config)
    assert rows[0].refused and "would produce 7" in rows[0].refused
    # a default pass (no blocking configured) that would explode is skipped with a warning instead
    defaults = parse_config("id_column: id\nfields: {first: name, dob: date}\nblocking_max_pairs: 1")
    with pytest.warns(UserWarning, match="skipping default blocking pass"):
        block(RECORDS, normalise_fields(RECORDS, defaults), defaults)


def test_embedding_neighbours_is_a_recordlinkage_index_algorithm() -> None:
    vectors = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99], [-1.0, 0.0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    indexer = recordlinkage.Index()
    indexer.add(EmbeddingNeighbours(vectors, k=1))
    pairs = indexer.index(pd.DataFrame(index=pd.RangeIndex(5)))
    # nearest by cosine: 0<->1, 2<->3, and 4 ([-1, 0]) is closest to 2 ([0, 1]: cosine 0)
    assert {tuple(sorted(p)) for p in pairs} == {(0, 1), (2, 3), (2, 4)}
    strict = recordlinkage.Index()
    strict.add(EmbeddingNeighbours(vectors, k=1, min_similarity=0.5))
    assert {tuple(sorted(p)) for p in strict.index(pd.DataFrame(index=pd.RangeIndex(5)))} == {(0, 1), (2, 3)}


def test_default_passes_from_field_kinds() -> None:
    config = parse_config("id_column: id\nfields: {first: name, last: name, dob: date, email: text, zip: category}")
    assert [p.name for p in config.passes] == [
        "block(first, last)",
        "block(soundex(first), dob[:4])",
        "block(soundex(last), dob[:4])",
        "block(dob)",
        "tokens(email, rarest=3, max_records=50)",
        "embedding(k=10)",
    ]


def _products() -> tuple[pl.DataFrame, DedupConfig]:
    titles = [
        "sony turntable pslx350h the best",
        "sony pslx350h belt drive turntable the",
        "canon camera case 2595b002 the",
        "canon psc 85 soft case 2595b002",
        "bose speaker system am53bk the",
    ] + [f"generic item {i} the" for i in range(60)]
    frame = pl.DataFrame({"id": [str(i) for i in range(len(titles))], "title": titles})
    return frame, parse_config("id_column: id\nfields: {title: text}\nblocking: [{tokens: title, rarest: 2}]")


def test_token_pass_joins_records_sharing_a_rare_word() -> None:
    records, config = _products()
    normalised = normalise_fields(records, config)
    pairs = block(records, normalised, config)
    found = set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    assert {(0, 1), (2, 3)} <= found  # pslx350h, 2595b002 (and their other rare words)
    assert (0, 4) not in found  # "the" is in 60+ records: no key (block purging)
    estimate = estimate_pass(records, normalised, config.passes[0])
    assert estimate.pairs >= len(pairs)


def test_token_pass_partitions_add_up_to_the_whole_pass() -> None:
    records, config = _products()
    normalised = normalise_fields(records, config)
    whole = run_pass(records, normalised, config.passes[0])
    pieces = [run_pass(records, normalised, config.passes[0], part, 3) for part in range(3)]
    codes = {a * 1000 + b for piece in pieces for a, b in zip(*piece, strict=True)}
    assert codes == {a * 1000 + b for a, b in zip(*whole, strict=True)}


def test_a_default_pass_making_too_many_pairs_per_record_is_skipped_with_a_reason() -> None:
    n = 200
    records = pl.DataFrame(
        {"id": [str(i) for i in range(n)], "city": ["springfield"] * n, "dob": [str(i) for i in range(n)]}
    )
    config = parse_config("id_column: id\nfields: {city: name, dob: date}")  # default passes
    normalised = normalise_fields(records, config)
    with pytest.warns(UserWarning, match=r"skipping default blocking pass block\(city\)"):
        pairs = block(records, normalised, config)
    assert len(pairs) <= n * 10  # the city pass (19,900 pairs) did not run
    rows, _ = analyse_blocking(records, normalised, config)
    assert rows[0].refused and "19,900" in rows[0].refused


def test_sorted_neighbourhood_inside_blocks() -> None:
    records = pl.DataFrame(
        {
            "id": [str(i) for i in range(7)],
            "name": ["anna", "anne", "anton", "bert", "anna", "anne", "zoe"],
            "city": ["x", "x", "x", "x", "y", "y", "x"],
        }
    )
    config = parse_config(
        "id_column: id\nfields: {name: name, city: name}\n"
        "blocking: [{sorted_neighbourhood: name, window: 3, block_on: [city]}]"
    )
    pairs = block(records, normalise_fields(records, config), config)
    found = set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    # city x sorted: anna(0) anne(1) anton(2) bert(3) zoe(6): neighbours one apart; city y: anna(4) anne(5)
    assert found == {(0, 1), (1, 2), (2, 3), (3, 6), (4, 5)}


def test_block_pairs_name_rows_where_records_without_a_key_leave_gaps() -> None:
    """The passes see only records with every key present, so their frame's positions are not
    the records' rows: the pairs must name the rows (records 0, 2 and 5 have no city here)."""
    records = pl.DataFrame(
        {
            "id": [str(i) for i in range(9)],
            "name": ["zed", "anna", "anna", "anne", "anton", "anna", None, "anne", "anna"],
            "city": [None, "x", None, "x", "x", None, "x", "y", "y"],
        }
    )
    config = parse_config(
        "id_column: id\nfields: {name: name, city: name}\n"
        "blocking: [{sorted_neighbourhood: name, window: 3, block_on: [city]}, [city, name], [name]]"
    )
    pairs = block(records, normalise_fields(records, config), config)
    found = set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    # city x: anna(1) anne(3) anton(4); city y: anne(7) anna(8); name anna: 1, 2, 5, 8; anne: 3, 7
    expected = {(1, 3), (3, 4), (7, 8), (1, 2), (1, 5), (1, 8), (2, 5), (2, 8), (5, 8), (3, 7)}
    assert found == expected


@pytest.mark.parametrize("expression", ["name[:-1]", "name[-3:]", "name[1:-1]", "name[:-100]", "name[2:]", "name[:3]"])
def test_key_slices_mean_what_they_mean_in_python(expression: str) -> None:
    values = ["abcdef", "ab", None, "xyz"]
    records = pl.DataFrame({"id": ["1", "2", "3", "4"], "name": values})
    config = parse_config("id_column: id\nfields: {name: category}\n")
    key = KeyExpression.parse(expression)
    got = key_values(records, normalise_fields(records, config), key).to_list()
    python_slice = slice(key.start, key.stop)
    assert got == [(v[python_slice] or None) if v is not None else None for v in values]


def test_record_vectors_filled_in_blocks_are_the_joined_fields_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of records (7 here, so blocks end mid-table) give what joining every field and
    ``np.linalg.norm`` give, bit for bit; a record with every field null stays zero."""
    import dedup.neighbours

    rng = np.random.default_rng(5)
    tables, codes = {}, {}
    for field, (distinct, width) in {"name": (9, 4), "city": (4, 3), "email": (30, 5)}.items():
        table = rng.normal(size=(distinct + 1, width)).astype(np.float32)
        table /= np.linalg.norm(table, axis=1, keepdims=True)
        table[0] = 0.0  # the null row
        tables[field], codes[field] = table, rng.integers(0, distinct + 1, size=40).astype(np.int32)
    for field in codes:
        codes[field][3] = 0
    embeddings = FieldEmbeddings(tables, codes)
    joined = np.concatenate([embeddings.dense(f) for f in embeddings.fields], axis=1)
    expected = joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)

    monkeypatch.setattr(dedup.neighbours, "VECTOR_ROWS", 7)
    vectors = record_vectors(embeddings)
    assert vectors.dtype == np.float32 and vectors.shape == (40, 12)
    assert np.array_equal(vectors, expected)
    assert not vectors[3].any()
    # gathered from the tables when asked for (the search's way): the same rows, bit for bit;
    # the embeddings then read their tables from the one stacked array (views, not copies)
    before = {f: t.copy() for f, t in embeddings.tables.items()}
    rows = rng.permutation(40)[:25]
    gathered = vectors_of(embeddings)
    assert np.array_equal(gathered.take(rows), expected[rows])
    assert all(np.array_equal(embeddings.tables[f], before[f]) for f in before)
    assert all(np.shares_memory(t, gathered.table) for t in embeddings.tables.values())


def test_found_neighbours_join_the_rule_pairs_once_with_their_first_pass() -> None:
    """Row positions past 46,341 (their keys overflow 32 bits) in int32 arrays: the union is
    still computed in int64. A pair both kinds of pass found keeps the earlier pass."""
    config = parse_config("id_column: id\nfields: {name: name}\nblocking: [[name], {embedding: {k: 2}}, [name]]")
    big = 70_000
    rules = CandidatePairs(
        np.array([1, 5, big], dtype=np.int32),
        np.array([2, big, big + 1], dtype=np.int32),
        np.array([0, 2, 0], dtype=np.int16),
        tuple(p.name for p in config.passes),
        (2, 0, 1),
    )
    found = {
        1: CandidatePairs(np.array([0, 5], np.int64), np.array([1, big], np.int64), np.zeros(2, np.int16), ("e",), (2,))
    }
    pairs = with_found(rules, config, found)
    assert list(zip(pairs.left.tolist(), pairs.right.tolist(), pairs.pass_index.tolist(), strict=True)) == [
        (0, 1, 1),
        (1, 2, 0),
        (5, big, 1),
        (big, big + 1, 0),
    ]
    assert pairs.pass_counts == (2, 2, 1) and pairs.left.dtype == np.int64
