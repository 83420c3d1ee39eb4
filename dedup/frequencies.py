"""Rarity of values and words: the record-level statistics behind term-frequency evidence.

Agreeing on a rare value is stronger evidence than agreeing on a common one: two records sharing
the surname "Okonkwo-Baptiste" are far more likely the same person than two sharing "Smith". So
for every field each record gets a global value id (equal ids = equal normalised values) and each
value its frequency (the chance that another record holds it too); an exact agreement is then
weighed against the probability that a random other record shares *that* value (Splink's
term-frequency adjustment).

Long text (titles, product descriptions) rarely agrees exactly, and a character encoder sees
only its first ``max_chars`` characters. Its evidence is in the words the two values share,
weighted by rarity: each ``text`` value becomes a sparse vector of its distinct words weighted
by inverse document frequency, L2-normalised, so the dot product of two records' vectors is
their IDF-weighted word cosine (a shared model number counts, a shared "the" hardly does).

Everything is computed once per record with polars group-bys and one scipy sparse matrix per
text field; pairs then gather rows (``token_similarity``), never loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import polars as pl
import scipy.sparse as sp

from dedup.config import DedupConfig, FieldKind
from dedup.threads import map_side_by_side

TOKEN_KINDS = (FieldKind.text,)  # kinds that get word-level evidence
NUMBER_WITH_UNIT = r"^(\d+(?:\.\d+)?)\p{L}+$"  # 32gb, 1.5tb, 3rd: the number is a word too
# a storage size: 32gb, 32 gb, French 32go / 1to (glued: "4 to 8" is English), 1.5tb, 512mb; the
# third group catches a speed (95 mb/s reads "95 mb s" once normalised), which is no size
SIZE = r"\b(\d+(?:\.\d+)?)( ?(?:gb|go|tb|mb|mo)|to)\b( s\b)?"
TERA, MEGA = (1000.0, 1024.0), (1e-3, 1 / 1024)  # in gigabytes, read both ways: decimal and binary
GIGABYTES = {"gb": (1.0,), "go": (1.0,), "tb": TERA, "to": TERA, "mb": MEGA, "mo": MEGA}
IDENTIFIER_WEIGHT = 3.0  # weight of a word holding a digit, relative to other words of equal rarity


@dataclass(frozen=True)
class Vocabulary:
    """A text field's words and how many records hold each (``df``), out of ``present``."""

    words: pl.DataFrame  # word, df
    present: int
    held: pl.DataFrame | None = None  # word, held: records writing it as a word of its own (what a join may make)

    def weights(self, words: pl.Series) -> np.ndarray:
        """log(present / df) per word; a word the data never had counts as held by one record."""
        found = pl.DataFrame({"word": words}).join(self.words, on="word", how="left", maintain_order="left")
        df = found["df"].fill_null(1).to_numpy().astype(np.float64)
        return np.log(self.present / df).astype(np.float32)


@dataclass(frozen=True)
class FieldStatistics:
    """Per field: each record's value id (int32, 0 = null) and each id's frequency; per text
    field, each record's IDF-weighted word vector (CSR, rows L2-normalised, empty for nulls)."""

    value_ids: dict[str, np.ndarray]
    frequency: dict[str, np.ndarray]  # float64, index = value id: chance another record shares it
    tokens: dict[str, sp.csr_matrix]
    vocabulary: dict[str, Vocabulary] | None = None  # text fields' word counts (training only, not saved)
    exact_u: dict[str, float] | None = None  # per field: chance two random records agree exactly
    codes: dict[str, sp.csr_matrix] = dataclass_field(default_factory=dict)  # text fields: ``model_codes``
    sizes: dict[str, sp.csr_matrix] = dataclass_field(default_factory=dict)  # text fields: ``size_numbers``
    numbers: dict[str, np.ndarray] = dataclass_field(default_factory=dict)  # number fields: each record's, NaN if none

    @property
    def records(self) -> int:
        return len(next(iter(self.value_ids.values())))

    def take(self, rows: np.ndarray) -> FieldStatistics:
        """The statistics of a subset of records (frequencies stay those of the whole input)."""
        return FieldStatistics(
            {f: ids[rows] for f, ids in self.value_ids.items()},
            self.frequency,
            {f: matrix[rows] for f, matrix in self.tokens.items()},
            self.vocabulary,
            self.exact_u,
            {f: matrix[rows] for f, matrix in self.codes.items()},
            {f: matrix[rows] for f, matrix in self.sizes.items()},
            {f: values[rows] for f, values in self.numbers.items()},
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez`` (keys by field position: names can hold any character)."""
        arrays: dict[str, np.ndarray] = {}
        for j, f in enumerate(self.value_ids):
            arrays[f"ids.{j}"] = self.value_ids[f]
            arrays[f"freq.{j}"] = self.frequency[f]
            if f in self.tokens:
                m = self.tokens[f]
                arrays |= {f"tok_data.{j}": m.data, f"tok_indices.{j}": m.indices, f"tok_indptr.{j}": m.indptr}
                arrays[f"tok_shape.{j}"] = np.asarray(m.shape, dtype=np.int64)
            for name, table in (("code", self.codes), ("size", self.sizes)):
                if f in table:
                    m = table[f]
                    arrays |= {f"{name}_indices.{j}": m.indices, f"{name}_indptr.{j}": m.indptr}
                    arrays[f"{name}_shape.{j}"] = np.asarray(m.shape, dtype=np.int64)
            if f in self.numbers:
                arrays[f"number.{j}"] = self.numbers[f]
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], fields: list[str]) -> FieldStatistics:
        ids, freq, tokens, codes, sizes, numbers = {}, {}, {}, {}, {}, {}
        for j, f in enumerate(fields):
            ids[f], freq[f] = arrays[f"ids.{j}"], arrays[f"freq.{j}"]
            if f"number.{j}" in arrays:
                numbers[f] = arrays[f"number.{j}"]
            if f"tok_data.{j}" in arrays:
                shape = tuple(int(x) for x in arrays[f"tok_shape.{j}"])
                tokens[f] = sp.csr_matrix(
                    (arrays[f"tok_data.{j}"], arrays[f"tok_indices.{j}"], arrays[f"tok_indptr.{j}"]), shape=shape
                )
            for name, table in (("code", codes), ("size", sizes)):
                if f"{name}_indices.{j}" in arrays:
                    indices, shape = arrays[f"{name}_indices.{j}"], tuple(int(x) for x in arrays[f"{name}_shape.{j}"])
                    ones = np.ones(len(indices), dtype=np.float32)
                    table[f] = sp.csr_matrix((ones, indices, arrays[f"{name}_indptr.{j}"]), shape=shape)
        return cls(ids, freq, tokens, codes=codes, sizes=sizes, numbers=numbers)


def field_statistics(
    normalised: pl.DataFrame,
    config: DedupConfig,
    rows: np.ndarray | None = None,
    counted: dict[str, tuple[Vocabulary, pl.Series]] | None = None,
) -> FieldStatistics:
    """Value ids and frequencies for every field, word vectors for text fields.

    ``rows``: the statistics of these records only (in that order), their values' and words'
    rarity still counted over every record: what scoring a few records' pairs needs (``dedup
    update``, ``dedup explain``), without ranking every value and building every word vector.
    ``counted`` (with ``rows``): per text field, its words' counts over every record and the
    words the rows' joins may make (``dedup.word_counts``: an update's, from the master's
    stored counts), instead of counting every record's words again.
    """
    ids, freq, tokens, vocabulary, exact_u, codes, sizes, numbers = {}, {}, {}, {}, {}, {}, {}, {}
    chosen = None if rows is None else chosen_counts(normalised.select(list(config.fields)), rows)

    def count(field: str, kind: FieldKind) -> None:
        values = normalised[field]
        if chosen is None:
            ids[field], counts, held = value_counts(values)
            freq[field], exact_u[field] = others_holding(counts, held), agreement_chance(held)
        else:  # only the rows' values are counted (over every record); exact_u is the fit's, not needed
            ids[field], counts = chosen[field]
            freq[field] = others_holding(counts, np.array([float(values.len() - values.null_count())]))
        if kind is FieldKind.number:  # normalised to the number's float: read it back
            chosen_values = values if rows is None else values.gather(rows)
            numbers[field] = chosen_values.cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()
        if kind in TOKEN_KINDS:
            if rows is None:
                split = _split(values)  # once: the counts and the vectors read the same words
                found = _words_of(split, split["word"])
                vocabulary[field] = count_words(values, found, split)
                del split  # a row per word of every record: not kept past the counts
            else:  # counted over every distinct value (or given); split into words for the rows only
                if counted is not None and field in counted:
                    vocabulary[field], known = counted[field]
                else:
                    vocabulary[field] = count_words(values)
                    known = _split(values.drop_nulls().unique())["word"]  # what a join may make
                values = values.gather(rows)
                found = words(values, known)
            tokens[field] = word_vectors(values, vocabulary[field], found)
            codes[field], sizes[field] = model_codes(found, values.len()), size_numbers(values)

    # the fields side by side: polars runs many of these steps on one core (a 1M-record
    # column's splits, regexes and joins), so two fields at once keep both busy
    list(map_side_by_side(count, config.fields, config.fields.values()))
    order = list(config.fields)  # each field's statistics in config order, whichever finished first
    ids, freq, exact_u = ({f: d[f] for f in order if f in d} for d in (ids, freq, exact_u))
    tokens, vocabulary, codes, sizes, numbers = (
        {f: d[f] for f in order if f in d} for d in (tokens, vocabulary, codes, sizes, numbers)
    )
    return FieldStatistics(ids, freq, tokens, vocabulary, exact_u if rows is None else None, codes, sizes, numbers)


def exact_agreement(values: pl.Series) -> float:
    """The chance two random distinct non-null records hold the same value: sum c(c-1) / N(N-1)."""
    return agreement_chance(value_counts(values)[2])


def agreement_chance(held: np.ndarray) -> float:
    """``exact_agreement`` from the count of every distinct non-null value."""
    present = held.sum()
    return float((held * (held - 1.0)).sum() / max(present * (present - 1.0), 1.0))


def others_holding(counts: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Per value id, the chance that another non-null record holds the same value:
    (count - 1) / (non-null records - 1), ``held`` being every distinct value's count.

    That is the u of an exact agreement on the value (two records drawn *without* replacement:
    with replacement, a record agreeing with itself would add 1/N to every value).
    """
    return np.maximum(counts - 1.0, 0.0) / max(held.sum() - 1.0, 1.0)


def dense_ids(values: pl.Series, uniques: pl.Series | None = None) -> np.ndarray:
    """Each value's 1-based position among the sorted distinct non-null values (``uniques``,
    when the caller has them already), 0 for null: ``rank("dense")``'s ids, int32.

    Found by a hash join with the sorted distinct values: only the distinct values are sorted,
    not every record's (the 8 columns of 1M generated people: 3.2 s ranked, 1.3-1.5 s joined).
    """
    if uniques is None:
        uniques = values.drop_nulls().unique().sort()
    positions = pl.DataFrame({"value": uniques}).with_row_index("id", offset=1)
    found = values.alias("value").to_frame().join(positions, on="value", how="left", maintain_order="left")
    return found["id"].fill_null(0).to_numpy().astype(np.int32)


def number_closeness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - |a - b| / max(|a|, |b|) per pair of numbers, in [0, 1] (1 for equal numbers, 0 for
    opposite signs); NaN where either is NaN. What a price or a length's agreement is read on:
    59.99 and 61.00 are close (0.98), 399 and 39.9 are not (0.1), however alike their digits."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        closeness = 1.0 - np.abs(a - b) / scale
    closeness = np.where(scale == 0, 1.0, np.clip(closeness, 0.0, 1.0))
    closeness[np.isnan(a) | np.isnan(b)] = np.nan
    return closeness.astype(np.float32)


def value_counts(values: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense value ids of every record (1-based in sorted order, 0 for null), each id's count
    (float64, index 0 = 0), and the count of every distinct non-null value (for
    ``agreement_chance``)."""
    ids = dense_ids(values)
    counts = np.bincount(ids, minlength=1).astype(np.float64)
    counts[0] = 0.0
    return ids, counts, counts[1:]


def chosen_counts(columns: pl.DataFrame, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``value_counts`` of ``rows`` only, per column: their dense value ids, and each id's count
    among all records. Only the rows' own values are looked for among the others (a hash lookup
    per record), not every value counted: an update's 60k rows among 1M records. The columns
    are counted in one polars query, side by side on the cores."""
    chosen = {values.name: values.gather(rows) for values in columns.iter_columns()}
    held = {name: pl.DataFrame({"value": values.drop_nulls().unique().sort()}) for name, values in chosen.items()}
    queries = [
        values.alias("value")
        .to_frame()
        .lazy()
        .filter(pl.col("value").is_in(held[values.name]["value"].implode()))
        .group_by("value")
        .agg(pl.len().alias("count"))
        for values in columns.iter_columns()
    ]
    result = {}
    for (name, values), every in zip(chosen.items(), pl.collect_all(queries), strict=True):
        counted = held[name].join(every, on="value", how="left", maintain_order="left")
        ids = dense_ids(values, held[name]["value"])
        result[name] = ids, np.concatenate([[0.0], counted["count"].cast(pl.Float64).to_numpy()])
    return result


def words(values: pl.Series, known: pl.Series | None = None) -> pl.DataFrame:
    """(row, word) for every distinct word of every value (words split on spaces).

    A word that is a number with a unit or suffix glued on (``32gb``, ``32go``, ``1.5tb``,
    ``3rd``) also yields the bare number: shops write a size as ``32GB``, ``32 GB`` or (French)
    ``32Go``, and only the number says which product it is. Measured on the real product sets
    (``benchmarks/realdata.py``): SIGMOD X1 0.819 -> 0.862 cluster pair-F1, Abt-Buy 0.171 ->
    0.200, the others unchanged or up.

    Two adjacent words written as one word elsewhere are that one word: a model number is
    ``KX-TCA92`` in one shop and ``KXTCA92`` in another (normalisation turns the hyphen into a
    space), a title says ``instance based`` or ``instance-based``. The two words are replaced by
    the joined one, so both spellings hold the same words and a difference is not counted twice.
    Only joins that ``known`` holds as a word of its own (the values' own words when not given)
    count, so a join nobody writes changes nothing. Some shops shuffle a title's words (SIGMOD
    X1), where any two words can be neighbours; so only a run of letters followed by a word that
    is not a number (``kx tca92``, ``instance based``) or by a number of two or more digits
    (``avr 1609``) is joined, never a number with what follows (``2 8gb`` is no ``28gb``: the
    bare-number rule above already makes ``32 gb`` and ``32gb`` agree on ``32``). Measured
    (``benchmarks/realdata.py``): Abt-Buy 0.199 -> 0.219, Cora 0.899 -> 0.921, SIGMOD X1 unchanged,
    X2 0.340 -> 0.326 ("clase 10" and "class10" no longer share the 10).
    """
    split = _split(values)
    return _words_of(split, split["word"] if known is None else known)


def _words_of(split: pl.DataFrame, known: pl.Series) -> pl.DataFrame:
    """``words`` of the values whose ``_split`` is ``split``."""
    base = _joined(split, known)
    numbers = base.with_columns(word=pl.col("word").str.extract(NUMBER_WITH_UNIT, 1)).drop_nulls("word")
    return pl.concat([base, numbers]).unique(["row", "word"], maintain_order=True)


def _split(values: pl.Series) -> pl.DataFrame:
    """(row, word) for each word of each value as written (split on spaces), in order."""
    return (
        pl.DataFrame({"word": values.str.split(" ")})
        .with_row_index("row")
        .explode("word")
        .drop_nulls("word")
        .filter(pl.col("word").str.len_chars() > 0)
    )


def _joined(split: pl.DataFrame, known: pl.Series) -> pl.DataFrame:
    """(row, word) with each two adjacent words that make a code or a compound ``known`` holds
    (see ``words``) replaced by their concatenation."""
    nxt = pl.col("word").shift(-1)
    shaped = (
        (pl.col("row").shift(-1) == pl.col("row"))
        & pl.col("word").str.contains(r"^\p{L}+$")
        & (
            ~nxt.str.contains(r"^[\d.]+$")
            | (pl.col("word").str.contains(r"^\p{L}{2,}$") & nxt.str.contains(r"^\d{2,}$"))
        )
    ).fill_null(False)
    indexed = split.with_row_index("at")
    # the shape first, then a hash join with the known words: few rows get as far as the join
    joins = (
        indexed.select("at", "row", word=pl.col("word") + nxt, shaped=shaped)
        .filter(pl.col("shaped"))
        .select("at", "row", "word")
        .join(pl.DataFrame({"word": known.unique()}), on="word", how="semi")
    )
    ends = pl.concat([joins["at"], joins["at"] + 1]).implode()
    kept = indexed.filter(~pl.col("at").is_in(ends)).select("row", "word")
    return pl.concat([kept, joins.select("row", "word")])


def count_words(values: pl.Series, found: pl.DataFrame | None = None, split: pl.DataFrame | None = None) -> Vocabulary:
    """Every word of a text column and the number of records holding it (``found``: the
    column's ``words`` when they are known already; ``split``: its ``_split``, to count the
    words as written too, ``Vocabulary.held``). Without ``found``, each distinct value is
    split into words once and its words counted as often as records hold it: the same counts
    (a value's words do not depend on the rows beside it) for the cost of the distinct values."""
    present = max(values.len() - values.null_count(), 1)
    if found is not None:
        held = None if split is None else split.unique(["row", "word"]).group_by("word").agg(pl.len().alias("held"))
        return Vocabulary(found.group_by("word").agg(pl.len().alias("df")), present, held)
    held = values.drop_nulls().alias("value").value_counts(name="n")
    return Vocabulary(counted_words(held, words, "df"), present)


def counted_words(values: pl.DataFrame, found: Callable[[pl.Series], pl.DataFrame], name: str) -> pl.DataFrame:
    """(word, ``name``): the words ``found`` in each distinct value (``found`` of the ``value``
    column gives row, word) counted as often as its records ``n`` say (negative: records gone)."""
    if not values.height:
        return pl.DataFrame(schema={"word": pl.String, name: pl.Int64})
    per_value = found(values["value"]).join(values.select("n").with_row_index("row"), on="row")
    return per_value.group_by("word").agg(pl.col("n").sum().cast(pl.Int64).alias(name))


def word_vectors(
    values: pl.Series, vocabulary: Vocabulary | None = None, found: pl.DataFrame | None = None
) -> sp.csr_matrix:
    """Each value's distinct words weighted by log(N / records holding the word), unit length.

    A word found in every record weighs 0; a word found in two records weighs log(N/2). The
    dot product of two rows is their IDF-weighted word cosine. The weights come from
    ``vocabulary`` (the column's own counts when not given), so values that are not in the data
    (synthetic duplicates) are weighed as the data would weigh them. ``found``: the values'
    ``words`` when they are known already (the joins ``words`` makes by the values' own words
    are the ones it makes by the vocabulary's: a join is made only into a word written alone).
    """
    vocabulary = vocabulary or count_words(values)
    n = values.len()
    pairs = words(values, vocabulary.words["word"]) if found is None else found
    columns = dense_ids(pairs["word"]).astype(np.int64) - 1 if pairs.height else np.empty(0, np.int64)
    weight = vocabulary.weights(pairs["word"])
    # words with digits are identifiers (model, house and part numbers, sizes): one differing
    # such word should outweigh several shared ordinary ones
    weight *= np.where(pairs["word"].str.contains(r"\d").to_numpy(), IDENTIFIER_WEIGHT, 1.0).astype(np.float32)
    rows = pairs["row"].to_numpy().astype(np.int64)
    width = int(columns.max()) + 1 if len(columns) else 1
    matrix = sp.csr_matrix((weight, (rows, columns)), shape=(n, width), dtype=np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    matrix = sp.diags(scale) @ matrix
    matrix.eliminate_zeros()
    return matrix.tocsr()


def model_codes(found: pl.DataFrame, n: int) -> sp.csr_matrix:
    """Each value's model or part numbers: its words holding both a letter and a digit
    (``kdl46s4100``), as a 0/1 row over the distinct codes (``codes_differ`` reads them). A
    number with a unit or suffix (``16gb``, ``4th``, ``133x``) is a size, not a model: two memory
    cards of 16 GB are still two models (``ts16gsdhc6s5w`` / ``mb913lla``). Measured on Abt-Buy
    over seeds 0-3 (``benchmarks/realdata.py``'s scoring): 0.342 mean cluster pair-F1 with sizes
    counted as models, 0.405 without; the other sets unchanged.

    A code is read whole, letters included: ``du1055bk`` and ``du1055ss`` (one dishwasher in black
    and in steel) are two products to a shop, and so are ``cli8c`` and ``cli8m`` (two ink colours).
    Read by their digits alone, as they were, they agreed: among Abt-Buy's candidate pairs, those
    whose codes share digits but no whole code are 22 true of 794 (SIGMOD X2 14 of 478, X1 4 of
    357), and they made 256 of the label-free run's false matches. Two spellings of one code
    still agree where the title's words join (``kx-tca92`` and ``kxtca92``, see ``words``); a
    colour or region suffix added in one shop only (``fdb130wh`` / ``fdb130rgs``) now differs.
    Measured over seeds 0-4 (``benchmarks/HISTORY.md``): Abt-Buy 0.424 -> 0.475 mean cluster
    pair-F1, X1 unchanged, X2 0.364 -> 0.351 (one seed's knife-edge group, see there).
    """
    code = found.filter(
        pl.col("word").str.contains(r"\d")
        & pl.col("word").str.contains(r"\p{L}")
        & ~pl.col("word").str.contains(NUMBER_WITH_UNIT)  # a size or an ordinal (16gb, 4th): not a model
    )
    return _keyed_rows(code["row"], code["word"], n)


def size_numbers(values: pl.Series) -> sp.csr_matrix:
    """Each value's storage sizes in gigabytes (``32gb``, ``32 Go``, ``32768 mb``, ``1 tb``) as a
    0/1 row over their numbers (``codes_differ`` reads them): a 32 GB and a 64 GB card of one line
    are two products.

    A size is read whatever its unit (a terabyte and a megabyte both ways, decimal and binary, so
    ``32768 mb`` is ``32gb`` and ``1tb`` is ``1000gb``). Not sizes: speeds (``95 MB/s``) and, in a
    value that names gigabytes or terabytes, the megabytes (a disk's cache, a card's speed
    written without "/s"): a card's "95 MB/s" shared by a 32 GB and a 64 GB card made them agree.
    Measured over seeds 0-3 (``benchmarks/realdata.py``'s scoring), sizes against no sizes: SIGMOD
    X2 0.265-0.330 -> 0.340-0.351, X1 0.859-0.863 -> 0.874-0.878, Abt-Buy 0.399-0.416 ->
    0.393-0.405, the other sets unchanged; this reading's own figures are in HISTORY."""
    parts = pl.col("size").str.extract_groups(SIZE)
    found = (
        pl.DataFrame({"size": values.str.extract_all(SIZE)})
        .with_row_index("row")
        .explode("size")
        .drop_nulls()
        .filter(parts.struct[2].is_null())  # "95 mb s": a speed
        .select(
            pl.col("row").cast(pl.Int64),
            parts.struct[0].cast(pl.Float64).alias("number"),
            parts.struct[1].str.strip_chars().alias("unit"),
        )
    )
    larger = ~pl.col("unit").is_in(["mb", "mo"])
    found = found.filter(larger | ~larger.any().over("row"))  # megabytes only where nothing larger is named
    scale = pl.col("unit").replace_strict(GIGABYTES, return_dtype=pl.List(pl.Float64))
    sizes = (
        found.with_columns(scale=scale)
        .explode("scale")
        .select("row", (pl.col("number") * pl.col("scale")).round(2).cast(pl.String).alias("gigabytes"))
    )
    return _keyed_rows(sizes["row"], sizes["gigabytes"], values.len())


def _keyed_rows(rows: pl.Series, keys: pl.Series, n: int) -> sp.csr_matrix:
    """A 0/1 matrix: row ``rows[i]`` holds ``keys[i]`` (one column per distinct key: a code, a size)."""
    columns = dense_ids(keys).astype(np.int64) - 1 if keys.len() else np.empty(0, np.int64)
    width = int(columns.max()) + 1 if len(columns) else 1
    matrix = sp.csr_matrix(
        (np.ones(len(columns), np.float32), (rows.to_numpy().astype(np.int64), columns)), shape=(n, width)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def codes_differ(codes: sp.csr_matrix, left: np.ndarray, right: np.ndarray, long: np.ndarray) -> np.ndarray:
    """Per pair: two long text values (``long``: ``LONG_TEXT_WORDS`` words each) that both name
    a model or part number and share none (``codes``: ``model_codes``), or a size
    (``size_numbers``).

    In a product's title one differing model number says more than every shared word: two
    televisions of one series share brand, series, size and kind, and differ in that number
    alone. Short values (an e-mail, a code) are left to their similarity: there a typo is what
    makes the numbers differ.
    """
    has = np.diff(codes.indptr) > 0
    both = has[left] & has[right] & long
    out = np.zeros(len(left), dtype=bool)
    at = np.flatnonzero(both)
    for start in range(0, len(at), 1 << 16):
        chosen = at[start : start + (1 << 16)]
        shared = np.asarray(codes[left[chosen]].multiply(codes[right[chosen]]).sum(axis=1)).ravel()
        out[chosen] = shared == 0
    return out


def value_pair_similarity(left: pl.Series, right: pl.Series, vocabulary: Vocabulary) -> np.ndarray:
    """IDF-weighted word cosine of ``left[i]`` and ``right[i]`` (values outside the data too)."""
    n = left.len()
    matrix = word_vectors(pl.concat([left.cast(pl.String), right.cast(pl.String)]), vocabulary)
    return token_similarity(matrix, np.arange(n), np.arange(n, 2 * n))


def token_similarity(matrix: sp.csr_matrix, left: np.ndarray, right: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """IDF-weighted word cosine per pair (float32); NaN where either record has no words."""
    out = np.empty(len(left), dtype=np.float32)
    has = np.diff(matrix.indptr) > 0
    for start in range(0, len(left), chunk):
        a, b = left[start : start + chunk], right[start : start + chunk]
        out[start : start + len(a)] = np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1)).ravel()
    out[~(has[left] & has[right])] = np.nan
    return np.clip(out, 0.0, 1.0, out=out)
