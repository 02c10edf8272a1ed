"""SQL mappings: an entity whose rows come from a DuckDB SELECT over a files source's files.

Real exports rarely have one file per contract entity with the contract's columns: orders and
payments come apart, amounts are in cents, statuses are the shop's own words, a customer's signup
date is their first order. ``sources.<name>.entities.<entity>.sql`` says how to get the entity from
the files: every data file of the folder is a table named after it (:func:`table_name`), or
``inputs:`` names them. The SELECT's columns are contract columns (others are kept as extra raw
columns). Its output goes through the same contract check as a file: quarantine with reasons,
accounting, ledger (the step is read again when an input file or the SQL changes).
"""

from __future__ import annotations

import re
from pathlib import Path

DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".ndjson")
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")


def table_name(path: Path | str) -> str:
    """The table a file is under in a SQL mapping: its name up to the first dot, lower-cased, with
    runs of other characters than letters and digits as ``_`` ("Orders Export.csv" -> orders_export,
    "orders.part2.csv" -> orders: the parts of one export are one table). A name starting with a
    digit gets ``t_`` in front ("2024 orders.csv" -> t_2024_orders)."""
    stem = Path(path).name.split(".", 1)[0]
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "file"
    return f"t_{name}" if name[0].isdigit() else name


def is_data_file(path: Path) -> bool:
    """Whether a file is one a files source can read (by its suffix, in any letter case)."""
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return not path.name.startswith(".") and name.endswith(DATA_SUFFIXES)
