"""Score stage: per-field evidence and match probabilities for every candidate pair.

Each record's fields are embedded once (O(records), ``embed_records``) and its values' rarity
counted once (``dedup.frequencies``); a pair's evidence on a field is then gathered from those
caches: the cosine of two unit vectors, whether the two values are the same and how common that
value is, and for text the IDF-weighted cosine of their word vectors. All computed for a chunk of
pairs at a time with gathers and reductions (O(pairs), vectorised). The network never sees a pair.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import torch

from dedup.blocking import CandidatePairs
from dedup.combiner import Combiner
from dedup.encoder import FieldEmbeddings, SiameseEncoder, encode_values
from dedup.evidence import LONG_TEXT_WORDS, PairEvidence
from dedup.frequencies import FieldStatistics, codes_differ, number_closeness, token_similarity
from dedup.progress import progress
from dedup.threads import map_side_by_side

PAIR_CHUNK = 1 << 14  # pairs per gather: two 4 MB blocks of vectors stay in cache
SCORE_CHUNK = 1 << 18  # pairs weighed at a time: the evidence and the combiner's arrays for them


def embed_records(encoder: SiameseEncoder, normalised: pl.DataFrame) -> FieldEmbeddings:
    """Embed each field of each record once (each distinct value once).

    The fields go side by side on threads (``side_by_side``: one per torch thread): a field's
    distinct values, tokens and copies are numpy and polars work on one core, which the other
    field's network calls overlap. A value's embedding does not depend on the threads that
    made it (``KindEncoder.forward``), so the tables are the same."""
    fields = list(encoder.fields)
    made = map_side_by_side(lambda f: encode_values(encoder, normalised[f], f), fields)
    done = list(progress(made, total=len(fields), desc="encoding fields"))
    return FieldEmbeddings.from_fields(fields, done)


def pair_similarities(
    embeddings: FieldEmbeddings,
    left: np.ndarray,
    right: np.ndarray,
    chunk: int = PAIR_CHUNK,
    skip: frozenset[str] = frozenset(),
) -> np.ndarray:
    """Cosine similarity per pair and field, ``(pairs, fields)`` float32; NaN where either is null.

    Per field, the pairs' table rows are gathered a cache-sized chunk at a time and multiplied
    (torch, on all cores); a random gather over the whole pair list at once runs 5x slower.
    Fields in ``skip`` (compared otherwise: numbers) are left NaN, not gathered.
    """
    fields = embeddings.fields
    out = np.full((len(fields), len(left)), np.nan, dtype=np.float32)  # field-major: each column contiguous
    with torch.inference_mode():
        for j, f in enumerate(progress(fields, desc="scoring pairs") if len(left) > 1 << 20 else fields):
            if f in skip:
                continue
            table = torch.from_numpy(embeddings.tables[f])
            codes = embeddings.codes[f]
            code_l = torch.from_numpy(codes[left].astype(np.int64))
            code_r = torch.from_numpy(codes[right].astype(np.int64))
            result = torch.from_numpy(out[j])
            for start in range(0, len(left), chunk):
                a = table.index_select(0, code_l[start : start + chunk])
                b = table.index_select(0, code_r[start : start + chunk])
                result[start : start + chunk] = (a * b).sum(dim=1)
            result.clamp_(-1.0, 1.0)
            result[(code_l == 0) | (code_r == 0)] = torch.nan
    return out.T


def compare_pairs(
    embeddings: FieldEmbeddings, statistics: FieldStatistics, left: np.ndarray, right: np.ndarray
) -> PairEvidence:
    """Every field's evidence for the pairs ``(left[i], right[i])`` (row positions)."""
    sims = pair_similarities(embeddings, left, right, skip=frozenset(statistics.numbers))
    fields = embeddings.fields
    tokens = np.full(sims.shape, np.nan, dtype=np.float32)
    exact = np.zeros(sims.shape, dtype=bool)
    long = np.zeros(sims.shape, dtype=bool)
    differ = np.zeros(sims.shape, dtype=bool)
    one_null = np.zeros(sims.shape, dtype=bool)
    frequency = np.full(sims.shape, np.nan, dtype=np.float32)

    def compare(j: int, f: str) -> None:  # writes column j of each array, nothing else
        ids = statistics.value_ids[f]
        a, b = ids[left], ids[right]
        same = (a == b) & (a > 0)
        exact[:, j] = same
        one_null[:, j] = (a == 0) != (b == 0)
        frequency[same, j] = statistics.frequency[f][a[same]]
        if f in statistics.numbers:  # an amount: how far apart, not how alike its digits read
            numbers = statistics.numbers[f]
            sims[:, j] = number_closeness(numbers[left], numbers[right])
        sims[same, j] = 1.0  # equal values embed equally; say so exactly
        if f in statistics.tokens:
            matrix = statistics.tokens[f]
            tokens[:, j] = token_similarity(matrix, left, right)
            count = np.diff(matrix.indptr)
            long[:, j] = np.minimum(count[left], count[right]) >= LONG_TEXT_WORDS
            if f in statistics.codes:
                differ[:, j] = codes_differ(statistics.codes[f], left, right, long[:, j]) & ~same
            if f in statistics.sizes:
                differ[:, j] |= codes_differ(statistics.sizes[f], left, right, long[:, j]) & ~same

    # the fields side by side: the word cosines are scipy's sparse row products, on one core each
    list(map_side_by_side(compare, range(len(fields)), fields))
    return PairEvidence(sims, tokens, exact, frequency, long, differ, one_null)


def score_pairs(
    id_col: str,
    combiner: Combiner,
    ids: pl.Series,
    embeddings: FieldEmbeddings,
    statistics: FieldStatistics,
    pairs: CandidatePairs,
    timings: dict[str, float] | None = None,
) -> pl.DataFrame:
    """The pairs table users read (``ids``: the id of every record, by row position).

    Per pair: ids, ``match_probability``, ``match_weight`` (log2 odds), per field ``sim_<f>`` (cosine
    of the embeddings, for number fields ``number_closeness``; 1 for equal values, null if either
    value is missing), for text fields
    ``tok_<f>`` (IDF-weighted word cosine), ``bf_<f>`` (that field's contribution to the log2
    odds, 0 for nulls), and the blocking pass. ``match_weight`` = the combiner's prior weight
    (``report.json``: ``prior_weight_bits``) + the sum of the ``bf_`` columns, except that records
    identical on every field are floored at 30 bits.
    """
    fields = embeddings.fields
    n, width = len(pairs), len(fields)
    sims = np.empty((n, width), np.float32)
    tokens = np.empty((n, width), np.float32)
    contributions = np.empty((n, width), np.float32)
    match_weight = np.empty(n, np.float64)
    probability = np.empty(n, np.float32)
    seconds = 0.0
    # a chunk at a time: the combiner's float64 intermediates for 2M pairs were ~1 GB at once
    for begin in range(0, max(n, 1), SCORE_CHUNK):
        at = slice(begin, begin + SCORE_CHUNK)
        clock = time.perf_counter()
        evidence = compare_pairs(embeddings, statistics, pairs.left[at], pairs.right[at])
        seconds += time.perf_counter() - clock
        sims[at], tokens[at] = evidence.sims, evidence.tokens
        contributions[at], match_weight[at], probability[at] = combiner.score(evidence)
    if timings is not None:
        timings["similarities"] = round(seconds, 4)
    frame = pl.DataFrame(
        {
            f"{id_col}_l": ids.gather(pairs.left),
            f"{id_col}_r": ids.gather(pairs.right),
            "match_probability": probability,
            "match_weight": match_weight.astype(np.float32),
            **{f"sim_{f}": pl.Series(sims[:, j]).fill_nan(None) for j, f in enumerate(fields)},
            **{
                f"tok_{f}": pl.Series(tokens[:, j]).fill_nan(None)
                for j, f in enumerate(fields)
                if f in statistics.tokens
            },
            **{f"bf_{f}": contributions[:, j] for j, f in enumerate(fields)},
            "blocking_pass": pl.Series(pairs.pass_index, dtype=pl.Int16).replace_strict(
                dict(enumerate(pairs.pass_names)), return_dtype=pl.String
            ),
        }
    )
    return frame
