"""An independent reading of a generated CRM export: which rows break the contract, and why.

Tests compare it with the generator's defects manifest in both directions: every listed defect is
really there with that reason, and no unlisted row breaks the contract. It reads the files the way a
careful analyst would (pandas over text), sharing nothing with the generator but the contract.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from clarion.contract import ENTITIES, MAX_TEXT_CHARS

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
INT = r"^-?\d+$"
DECIMAL = r"^-?\d+(\.\d+)?$"
NON_NEGATIVE_AMOUNTS = {
    "price",
    "subtotal_amount",
    "discount_amount",
    "total_amount",
    "unit_price",
    "line_amount",
}
ORDER = [
    "missing_column",
    "missing_required",
    "encoding_error",
    "wrong_type",
    "invalid_date",
    "invalid_enum",
    "invalid_email",
    "out_of_range",
    "future_date",
    "oversized_text",
    "orphan",
    "duplicate_key",
    "normalised",
]


def read_text(path: Path) -> pd.DataFrame:
    """Every value as text, nulls as ''. Parquet is rendered the way the CSV export writes it."""
    if path.suffix == ".csv":
        return pd.read_csv(
            path,
            dtype=object,
            keep_default_na=False,
            na_values=[],
            encoding="utf-8",
            encoding_errors="surrogateescape",
        )
    table = pq.read_table(path)
    return pd.DataFrame(
        {n: [_render(v) for v in table.column(n).to_pylist()] for n in table.column_names}, dtype=object
    )


def _render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def violations(folder: Path, manifest: dict) -> dict[tuple[str, int], str]:
    """(file, 1-based row) -> the reason that row cannot load as is. Rows that load are absent."""
    cutoff_end = datetime.fromisoformat(manifest["cutoff"]) + timedelta(days=1)
    frames: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for entity, info in manifest["entities"].items():
        frames[entity] = [(f, read_text(folder / f)) for f in info["files"]]
    ids = {
        entity: set().union(
            *(set(df[ENTITIES[entity].primary_key]) for _, df in parts if ENTITIES[entity].primary_key in df)
        )
        for entity, parts in frames.items()
    }
    found: dict[tuple[str, int], str] = {}
    for entity, parts in frames.items():
        spec = ENTITIES[entity]
        seen: set[str] = set()
        for file, df in parts:
            reasons = _check(spec, df, ids, cutoff_end)
            # first occurrence of a key wins, across the entity's files in order
            pk = df[spec.primary_key] if spec.primary_key in df else pd.Series("", index=df.index)
            for i, (key, why) in enumerate(zip(pk, reasons, strict=True)):
                if not why and key:
                    if key in seen:
                        why = "duplicate_key"
                    seen.add(key)
                if not why and _normalisable(df, i):
                    why = "normalised"
                if not why and set(df.columns) - set(spec.column_names):
                    why = "new_column"
                if why:
                    found[(file, i + 1)] = why
    return found


def _normalisable(df: pd.DataFrame, i: int) -> bool:
    if "email" not in df:
        return False
    raw = df["email"].iat[i]
    return bool(raw) and raw != raw.strip().lower()


def _check(spec, df: pd.DataFrame, ids: dict[str, set], cutoff_end: datetime) -> list[str]:
    reason = pd.Series("", index=df.index)

    def flag(mask: pd.Series, why: str) -> None:
        reason[(reason == "") & mask] = why

    # A file without one of the contract's columns stops: loading it would silently null that field.
    missing = [c for c in spec.column_names if c not in df.columns]
    if missing:
        return ["missing_column"] * len(df)
    for col in spec.required:
        flag(df[col] == "", "missing_required")
    text_cols = [c.name for c in spec.columns if c.type == "string" and c.name in df]
    for col in text_cols:
        flag(df[col].str.contains("[\udc80-\udcff\ufffd]", regex=True), "encoding_error")
    for c in spec.columns:
        v = df[c.name]
        present = v != ""
        if c.type == "int":
            flag(present & ~v.str.match(INT), "wrong_type")
        elif c.type == "decimal":
            flag(present & ~v.str.match(DECIMAL), "wrong_type")
        elif c.type == "bool":
            flag(present & ~v.isin(["true", "false"]), "wrong_type")
        elif c.type == "date":
            parsed = pd.to_datetime(v.where(present), format="%Y-%m-%d", errors="coerce")
            flag(present & parsed.isna(), "invalid_date")
        elif c.type == "timestamp":
            parsed = pd.to_datetime(v.where(present), format="%Y-%m-%dT%H:%M:%SZ", errors="coerce")
            flag(present & parsed.isna(), "invalid_date")
            flag(present & (parsed >= pd.Timestamp(cutoff_end)), "future_date")
    for c in spec.columns:
        if c.enum:
            flag((df[c.name] != "") & ~df[c.name].isin(c.enum), "invalid_enum")
    if "email" in df:
        normal = df["email"].str.strip().str.lower()
        flag((normal != "") & ~normal.str.match(EMAIL), "invalid_email")
    for col in NON_NEGATIVE_AMOUNTS & set(df.columns):
        amount = pd.to_numeric(df[col], errors="coerce")
        flag((amount < 0) | (amount >= 1_000_000), "out_of_range")
    if "quantity" in df:
        qty = pd.to_numeric(df["quantity"], errors="coerce")
        flag((qty < 1) | (qty > 1000), "out_of_range")
    for col in ("subject", "body"):
        if col in df:
            flag(df[col].str.len() > MAX_TEXT_CHARS, "oversized_text")
    for fk, parent in spec.parents.items():
        flag((df[fk] != "") & ~df[fk].isin(ids[parent]), "orphan")
    # reasons come out in the order of the checks above; ORDER documents it for readers
    assert set(reason.unique()) <= set(ORDER) | {""}
    return reason.tolist()
