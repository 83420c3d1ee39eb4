"""Synthetic person records with known duplicates, for benchmarks at any size (offline, seeded).

Entities get a clean record (name, date of birth, address, town, postcode, e-mail, phone); some
entities get 1-9 more records made from the clean one by the errors real registers show: typos,
nicknames, first name and surname swapped, abbreviated street types, date slips (a digit, a
day/month swap), a changed e-mail domain or town, and missing values. Column ``cluster`` holds
the true entity. ``SynthSettings.hard()`` (``dedup synth --hard``) adds what makes real registers
hard: namesakes sharing a birth date, households sharing an address and landline, mostly common
surnames, more typos and transcription misreads. Everything is drawn with numpy and assembled
with polars, so a million records take seconds; typos reuse the training corruptions
(``dedup.corrupt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dedup import synth_names as names
from dedup.config import FieldKind
from dedup.corrupt import corrupt, misread
from dedup.encoder import to_codepoints
from dedup.errors import DedupError
from dedup.io import write_parquet

FIELDS = ("first_name", "surname", "dob", "address", "city", "postcode", "email", "phone")
WIDTH = 40  # longest generated value, in characters


@dataclass(frozen=True)
class SynthSettings:
    """How messy the generated data is. Shares are per record unless said otherwise."""

    duplicate_entities: float = 0.35  # share of entities with more than one record
    max_cluster_size: int = 10
    missing: float = 0.05  # each field of each record independently
    typo: float = 0.15  # each field of each duplicate record independently
    nickname: float = 0.15
    name_swap: float = 0.03
    abbreviation: float = 0.2
    moved: float = 0.05  # a duplicate with another town and postcode
    other_domain: float = 0.1
    # the hard cases real registers hold (all off by default; see ``hard``)
    common_surnames: float = 0.6  # share of people with a surname from the common list
    namesakes: float = 0.0  # share of people sharing first name, surname and birth date with another person
    households: float = 0.0  # share of people living with another: same surname, address, town, postcode, phone
    transcription: float = 0.0  # each field of each duplicate: characters misread (OCR, handwriting)

    @classmethod
    def hard(cls) -> SynthSettings:
        """Namesakes sharing a birth date, common surnames, households sharing an address, more
        typos and transcription noise: what historical and administrative records look like."""
        return cls(typo=0.25, common_surnames=0.9, namesakes=0.03, households=0.2, transcription=0.15)


def cluster_sizes(n: int, settings: SynthSettings, rng: np.random.Generator) -> np.ndarray:
    """Entity sizes (1..max_cluster_size) summing to exactly ``n``."""
    entities = int(n / (1 + settings.duplicate_entities * 2)) + 16
    extra = np.minimum(rng.geometric(0.45, size=entities) - 1, settings.max_cluster_size - 2)
    sizes = np.where(rng.random(entities) < settings.duplicate_entities, 2 + extra, 1)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, np.ones(n - int(sizes.sum()), dtype=sizes.dtype)])
    total = np.cumsum(sizes)
    last = int(np.searchsorted(total, n))
    sizes = sizes[: last + 1].copy()
    sizes[-1] -= int(total[last] - n)
    return sizes


def _zipf_choice(words: list[str] | tuple[str, ...], size: int, rng: np.random.Generator, a: float = 0.8) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(words) + 1) ** a
    return np.asarray(words, dtype=object)[rng.choice(len(words), size=size, p=weights / weights.sum())]


def _invented_surnames(count: int, rng: np.random.Generator) -> np.ndarray:
    syllables = np.asarray(names.SYLLABLES, dtype=object)
    parts = syllables[rng.integers(0, len(syllables), size=(count, 3))]
    two = rng.random(count) < 0.5
    return np.where(two, parts[:, 0] + parts[:, 1], parts[:, 0] + parts[:, 1] + parts[:, 2])


def _digits(size: int, count: int, rng: np.random.Generator) -> pl.Series:
    values = rng.integers(0, 10**count, size=size)
    return pl.Series(values).cast(pl.String).str.zfill(count)


def entities(count: int, rng: np.random.Generator, settings: SynthSettings | None = None) -> pl.DataFrame:
    """One clean record per entity (then namesakes and households, if the settings ask for them)."""
    settings = settings or SynthSettings()
    first = _zipf_choice(names.FIRST_NAMES, count, rng, a=0.5)
    pool = _invented_surnames(max(count // 10, 100), rng)  # the long tail of rare surnames
    common = _zipf_choice(names.SURNAMES, count, rng, a=0.5)
    surname = np.where(
        rng.random(count) < settings.common_surnames, common, pool[rng.integers(0, len(pool), size=count)]
    )
    days = rng.integers(0, (np.datetime64("2005-12-31") - np.datetime64("1940-01-01")).astype(int), size=count)
    dob = (np.datetime64("1940-01-01") + days.astype("timedelta64[D]")).astype(str)
    letters = np.asarray(list("ABCDEFGHJKLMNPRSTUWYZ"), dtype=object)
    frame = pl.DataFrame(
        {
            "first_name": first.astype(str),
            "surname": surname.astype(str),
            "dob": dob,
            "house": rng.integers(1, 250, size=count),
            "street": _zipf_choice(names.STREET_WORDS, count, rng, a=0.3).astype(str),
            "street_type": _zipf_choice(names.STREET_TYPES, count, rng, a=1.0).astype(str),
            "city": _zipf_choice(names.CITIES, count, rng, a=1.0).astype(str),
            "pc1": (letters[rng.integers(0, len(letters), count)] + letters[rng.integers(0, len(letters), count)]),
            "pc2": rng.integers(1, 30, size=count),
            "pc3": letters[rng.integers(0, len(letters), count)] + letters[rng.integers(0, len(letters), count)],
            "sep": np.asarray([".", "_", ""], dtype=object)[rng.integers(0, 3, size=count)],
            "domain": _zipf_choice(names.EMAIL_DOMAINS, count, rng, a=1.2).astype(str),
        }
    ).with_columns(
        pc3=pl.lit(rng.integers(0, 10, size=count)).cast(pl.String) + pl.col("pc3"),
        mail_digits=pl.Series(rng.integers(1, 10_000, size=count)).cast(pl.String),  # e-mails are personal
        phone="07" + _digits(count, 9, rng),
    )
    people = frame.select(
        "first_name",
        "surname",
        "dob",
        (pl.col("house").cast(pl.String) + " " + pl.col("street") + " " + pl.col("street_type")).alias("address"),
        "city",
        (pl.col("pc1") + pl.col("pc2").cast(pl.String) + " " + pl.col("pc3")).alias("postcode"),
        (
            pl.col("first_name") + pl.col("sep") + pl.col("surname") + pl.col("mail_digits") + "@" + pl.col("domain")
        ).alias("email"),
        "phone",
    )
    people = _copy_from_others(people, settings.households, ["surname", "address", "city", "postcode", "phone"], rng)
    return _copy_from_others(people, settings.namesakes, ["first_name", "surname", "dob"], rng)


def _copy_from_others(people: pl.DataFrame, share: float, columns: list[str], rng: np.random.Generator) -> pl.DataFrame:
    """``share`` of the people take ``columns`` from another, randomly chosen person (a
    household member shares the address; a namesake the name and birth date). They stay
    distinct entities: their other fields are their own."""
    count = people.height
    takers = np.flatnonzero(rng.random(count) < share)
    if count < 2 or takers.size == 0:
        return people
    givers = (takers + rng.integers(1, count, size=takers.size)) % count  # never themselves
    updated = {}
    for column in columns:
        values = people[column].to_numpy().astype(object)
        values[takers] = values[givers]
        updated[column] = pl.Series(column, values, dtype=pl.String)
    return people.with_columns(**updated)


def _typos(values: pl.Series, kind: FieldKind, mask: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """``values`` with the masked rows given one or two typing errors."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return values
    codes, lengths = to_codepoints(values.gather(rows), WIDTH)
    codes, _ = corrupt(codes, lengths, kind, rng)
    typed = np.ascontiguousarray(codes).view(f"<U{WIDTH}").ravel()
    out = values.to_numpy().astype(object)
    out[rows] = typed
    return pl.Series(values.name, out, dtype=pl.String)


def _where(mask: np.ndarray, new: pl.Series | pl.Expr, old: str) -> pl.Expr:
    return pl.when(pl.lit(pl.Series(mask))).then(new).otherwise(pl.col(old)).alias(old)


def duplicates(clean: pl.DataFrame, settings: SynthSettings, rng: np.random.Generator) -> pl.DataFrame:
    """Messy copies of ``clean`` (one per row), with the errors of ``SynthSettings``."""
    n = clean.height
    p = settings

    def draw(share: float) -> np.ndarray:
        return rng.random(n) < share

    nick = pl.col("first_name").replace_strict(names.NICKNAMES, default=pl.col("first_name"))
    swap = draw(p.name_swap)
    abbreviate = pl.col("address").str.replace_many(
        [f" {k}" for k in names.STREET_ABBREVIATIONS], [f" {v}" for v in names.STREET_ABBREVIATIONS.values()]
    )
    moved = draw(p.moved)
    new_city = pl.Series(_zipf_choice(names.CITIES, n, rng, a=1.0).astype(str))
    new_domain = pl.Series(_zipf_choice(names.EMAIL_DOMAINS, n, rng, a=0.5).astype(str))
    frame = clean.with_columns(
        _where(draw(p.nickname), nick, "first_name"),
        _where(draw(p.abbreviation), abbreviate, "address"),
        _where(moved, new_city, "city"),
        _where(draw(p.other_domain), pl.col("email").str.replace(r"@.*$", "@") + new_domain, "email"),
    ).with_columns(
        _where(swap, pl.col("surname"), "first_name"),
        _where(swap, pl.col("first_name"), "surname"),
    )
    kinds = {
        "first_name": FieldKind.name,
        "surname": FieldKind.name,
        "dob": FieldKind.date,
        "address": FieldKind.text,
        "city": FieldKind.name,
        "postcode": FieldKind.code,
        "email": FieldKind.text,
        "phone": FieldKind.code,
    }
    typed = {f: _typos(frame[f], kind, draw(p.typo) | ((f == "postcode") & moved), rng) for f, kind in kinds.items()}
    misread = {f: _misread(typed[f], kind, draw(p.transcription), rng) for f, kind in kinds.items()}
    return frame.with_columns(**misread)


MISREAD_AMONG = {FieldKind.name: "letters", FieldKind.date: "digits"}  # others: any character


def _misread(values: pl.Series, kind: FieldKind, mask: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """``values`` with the masked rows given a transcription error (a character misread)."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return values
    codes, lengths = to_codepoints(values.gather(rows), WIDTH)
    codes, _ = misread(codes, lengths, rng, MISREAD_AMONG.get(kind, "any"))
    out = values.to_numpy().astype(object)
    out[rows] = np.ascontiguousarray(codes).view(f"<U{WIDTH}").ravel()
    return pl.Series(values.name, out, dtype=pl.String)


def generate(n: int, seed: int = 0, settings: SynthSettings | None = None) -> pl.DataFrame:
    """``n`` person records: ``unique_id``, the fields of ``FIELDS`` and the true ``cluster``."""
    if n < 1:
        raise DedupError(f"the number of records to generate must be at least 1, got {n}")
    settings = settings or SynthSettings()
    rng = np.random.default_rng(seed)
    sizes = cluster_sizes(n, settings, rng)
    clean = entities(len(sizes), rng, settings)
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    first = np.zeros(n, dtype=bool)
    first[np.concatenate([[0], np.cumsum(sizes)[:-1]])] = True
    records = clean[cluster]
    copies = duplicates(records.filter(pl.Series(~first)), settings, rng)
    records = (
        records.with_row_index("_row")
        .update(copies.with_columns(pl.Series("_row", np.flatnonzero(~first), dtype=pl.UInt32)), on="_row")
        .drop("_row")
    )
    records = records.with_columns(
        _where(rng.random(n) < settings.missing, pl.lit(None, dtype=pl.String), f) for f in FIELDS
    )
    order = rng.permutation(n)
    return records[order].select(
        pl.arange(0, n, eager=True).alias("unique_id"), *FIELDS, pl.Series("cluster", cluster[order])
    )


def write(n: int, path: str | Path, seed: int = 0, hard: bool = False) -> Path:
    """Generate ``n`` records (``hard``: with ``SynthSettings.hard``) and write them to ``path`` (atomically)."""
    return write_parquet(generate(n, seed, SynthSettings.hard() if hard else None), Path(path))


def cached(n: int, directory: str | Path, seed: int = 0, hard: bool = False) -> Path:
    """``directory/synth_<n>_<seed>[_hard].parquet``, generated (``write``) unless already there:
    the benchmarks' inputs, made once and reused."""
    path = Path(directory) / f"synth_{n}_{seed}{'_hard' if hard else ''}.parquet"
    return path if path.exists() else write(n, path, seed=seed, hard=hard)
