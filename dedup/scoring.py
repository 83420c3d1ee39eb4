"""Score stage: per-field similarities and match probabilities for every candidate pair.

Each record's fields are embedded once (O(records), ``embed_records``); a pair's similarity on a
field is then the dot product of two cached unit vectors, computed for a chunk of pairs at a time
with one gather and one reduction (O(pairs), vectorised). The network never sees a pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from dedup.blocking import CandidatePairs
from dedup.encoder import SiameseEncoder, encode_field
from dedup.progress import progress

if TYPE_CHECKING:
    from dedup.model import DedupModel

PAIR_CHUNK = 1 << 18


class FieldEmbeddings:
    """Cached unit-norm embeddings of every record, per field, with null masks."""

    def __init__(self, vectors: dict[str, np.ndarray], nulls: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.nulls = nulls

    @property
    def fields(self) -> list[str]:
        return list(self.vectors)


def embed_records(encoder: SiameseEncoder, normalised: pl.DataFrame) -> FieldEmbeddings:
    """Embed each field of each record once."""
    vectors = {f: encode_field(encoder, normalised[f], f) for f in progress(encoder.fields, desc="encoding fields")}
    nulls = {f: normalised[f].is_null().to_numpy() for f in encoder.fields}
    return FieldEmbeddings(vectors, nulls)


def pair_similarities(
    embeddings: FieldEmbeddings, left: np.ndarray, right: np.ndarray, chunk: int = PAIR_CHUNK
) -> np.ndarray:
    """Cosine similarity per pair and field, ``(pairs, fields)`` float32; NaN where either is null."""
    fields = embeddings.fields
    out = np.empty((len(left), len(fields)), dtype=np.float32)
    for j, f in enumerate(progress(fields, desc="scoring pairs") if len(left) > PAIR_CHUNK else fields):
        vec, null = embeddings.vectors[f], embeddings.nulls[f]
        for start in range(0, len(left), chunk):
            lo, hi = left[start : start + chunk], right[start : start + chunk]
            sims = np.einsum("ij,ij->i", vec[lo], vec[hi])
            sims[null[lo] | null[hi]] = np.nan
            out[start : start + chunk, j] = np.clip(sims, -1.0, 1.0)
    return out


def score_pairs(
    model: DedupModel, records: pl.DataFrame, embeddings: FieldEmbeddings, pairs: CandidatePairs
) -> pl.DataFrame:
    """The pairs table users read.

    Per pair: ids, ``match_probability``, ``match_weight`` (log2 odds), per field ``sim_<f>`` (cosine
    of the embeddings, null if either value is missing) and ``bf_<f>`` (that field's contribution
    to the log2 odds, 0 for nulls), and the blocking pass. ``match_weight`` = the model's prior
    weight (``report.json``: ``prior_weight_bits``) + the sum of the ``bf_`` columns, except that
    records identical on every field are floored at 30 bits.
    """
    id_col = model.config.id_column
    sims = pair_similarities(embeddings, pairs.left, pairs.right)
    ids = records[id_col]
    combiner = model.combiner_
    match_weight = combiner.match_weight(sims)
    contributions = combiner.field_weights(sims)
    frame = pl.DataFrame(
        {
            f"{id_col}_l": ids.gather(pairs.left),
            f"{id_col}_r": ids.gather(pairs.right),
            "match_probability": combiner.predict_proba(sims),
            "match_weight": match_weight.astype(np.float32),
            **{f"sim_{f}": pl.Series(sims[:, j]).fill_nan(None) for j, f in enumerate(embeddings.fields)},
            **{f"bf_{f}": contributions[:, j] for j, f in enumerate(embeddings.fields)},
            "blocking_pass": pl.Series(
                np.asarray(pairs.pass_names, dtype=object)[pairs.pass_index] if len(pairs) else [],
                dtype=pl.String,
            ),
        }
    )
    return frame
