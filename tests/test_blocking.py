from __future__ import annotations

import numpy as np
import polars as pl

from dedup.blocking import CandidatePairs, block, union_pairs
from dedup.config import parse_config
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
