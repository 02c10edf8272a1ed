"""An independent reading of a generated CRM export: which rows break the contract, and why.

Tests compare it with the generator's defects manifest in both directions: every listed defect is
really there with that reason, and no unlisted row breaks the contract. It reads the files the way a
careful analyst would (pandas over text), sharing nothing with the generator but the contract.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from clarion.contract import ENTITIES, MAX_TEXT_CHARS, load_order

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
    "malformed_row",
]


def read_text(path: Path) -> pd.DataFrame:
    """Every value as text, nulls as ''. Parquet is rendered the way the CSV export writes it."""
    if path.suffix == ".csv" and malformed_lines(path):  # only the records that parse (see there)
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            good = [r for r in reader if len(r) == len(header)]
        return pd.DataFrame(good, columns=header, dtype=object)
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


def malformed_lines(path: Path) -> dict[int, int]:
    """A CSV file's records with a field count other than the header's: record number -> line number."""
    if path.suffix != ".csv":
        return {}
    bad = {}
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        width = len(next(reader, []))
        for record, fields in enumerate(reader, start=1):
            if len(fields) != width:
                bad[record] = reader.line_num
    return bad


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
    return {k: reason for k, (_, reason) in outcomes(folder, manifest).items()}


def outcomes(folder: Path, manifest: dict) -> dict[tuple[str, int], tuple[str, str]]:
    """(file, 1-based row) -> (what extraction must do, reason) for every row that does not load as is:
    ``quarantine`` (the row is rejected), ``finding`` (it loads, an optional field nulled), ``clean``
    (it loads normalised) or ``load`` (it loads, reported). Parents are judged before their children:
    a child of a rejected parent is an orphan (the cascade), a child of a parent loaded with a finding
    is not (reason ``parent_finding``, it loads). Judged once per folder (the exports are read-only)."""
    cached = _JUDGED.get(str(folder))
    if cached is not None and cached[0] == manifest:
        return cached[1]
    found = _judge(folder, manifest)
    _JUDGED[str(folder)] = (manifest, found)
    return found


_JUDGED: dict[str, tuple[dict, dict]] = {}


def _judge(folder: Path, manifest: dict) -> dict[tuple[str, int], tuple[str, str]]:
    cutoff_end = datetime.fromisoformat(manifest["cutoff"]) + timedelta(days=1)
    frames: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for entity, info in manifest["entities"].items():
        frames[entity] = [(f, read_text(folder / f)) for f in info["files"]]
    loadable: dict[str, set] = {}  # entity -> keys that reach raw
    with_finding: dict[str, set] = {}  # entity -> keys that reach raw with a field nulled
    found: dict[tuple[str, int], tuple[str, str]] = {}
    for entity in load_order():
        if entity not in frames:
            continue
        spec = ENTITIES[entity]
        seen: set[str] = set()
        loadable[entity], with_finding[entity] = set(), set()
        for file, df in frames[entity]:
            bad = malformed_lines(folder / file)
            for line in bad.values():  # a line that does not parse is rejected whole, located by line
                found[(file, line)] = ("quarantine", "malformed_row")
            records = [r for r in range(1, len(df) + len(bad) + 1) if r not in bad]
            reasons, findings = _check(spec, df, loadable, cutoff_end)
            # first occurrence of a key wins, across the entity's files in order
            pk = df[spec.primary_key] if spec.primary_key in df else pd.Series("", index=df.index)
            for i, (key, why, finding) in enumerate(zip(pk, reasons, findings, strict=True)):
                outcome = "quarantine"
                if not why and key:
                    if key in seen:
                        why = "duplicate_key"
                    seen.add(key)
                if not why:
                    outcome, why = _loads(spec, df, i, finding, with_finding)
                    loadable[entity].add(key)
                    if outcome == "finding":
                        with_finding[entity].add(key)
                if why:
                    found[(file, records[i])] = (outcome, why)
    return found


def _loads(spec, df: pd.DataFrame, i: int, finding: str, with_finding: dict[str, set]) -> tuple[str, str]:
    """What a row that loads reports: its finding, its normalisation, its new column, or its parent's
    finding (a child of a parent loaded with a nulled field is loaded, not an orphan)."""
    if finding:
        return "finding", finding
    if _normalisable(df, i):
        return "clean", "normalised"
    if set(df.columns) - set(spec.column_names):
        return "load", "new_column"
    for fk, parent in spec.parents.items():
        if df[fk].iat[i] in with_finding.get(parent, set()):
            return "load", "parent_finding"
    return "", ""


def _normalisable(df: pd.DataFrame, i: int) -> bool:
    if "email" not in df:
        return False
    raw = df["email"].iat[i]
    return bool(raw) and raw != raw.strip().lower()


def _check(
    spec, df: pd.DataFrame, loadable: dict[str, set], cutoff_end: datetime
) -> tuple[list[str], list[str]]:
    """Per row: the reason it is rejected (or ''), and the first finding on an optional field (or '')."""
    reason = pd.Series("", index=df.index)
    finding = pd.Series("", index=df.index)
    row_level = {c.name for c in spec.columns if c.required} | {spec.primary_key, spec.cursor}

    def flag(mask: pd.Series, why: str, column: str | None = None) -> None:
        if column is not None and column not in row_level:
            finding[(finding == "") & mask] = why  # an optional field: nulled, the row loads
        else:
            reason[(reason == "") & mask] = why

    # A file without one of the contract's columns stops: loading it would silently null that field.
    missing = [c for c in spec.column_names if c not in df.columns]
    if missing:
        return ["missing_column"] * len(df), [""] * len(df)
    for col in spec.required:
        flag(df[col] == "", "missing_required")
    text_cols = [c.name for c in spec.columns if c.type == "string" and c.name in df]
    for col in text_cols:
        flag(df[col].str.contains("[\udc80-\udcff\ufffd]", regex=True), "encoding_error", col)
    for c in spec.columns:
        v = df[c.name]
        present = v != ""
        if c.type == "int":
            flag(present & ~v.str.match(INT), "wrong_type", c.name)
        elif c.type == "decimal":
            flag(present & ~v.str.match(DECIMAL), "wrong_type", c.name)
        elif c.type == "bool":
            flag(present & ~v.isin(["true", "false"]), "wrong_type", c.name)
        elif c.type == "date":
            parsed = pd.to_datetime(v.where(present), format="%Y-%m-%d", errors="coerce")
            flag(present & parsed.isna(), "invalid_date", c.name)
        elif c.type == "timestamp":
            parsed = pd.to_datetime(v.where(present), format="%Y-%m-%dT%H:%M:%SZ", errors="coerce")
            flag(present & parsed.isna(), "invalid_date", c.name)
    for c in spec.columns:
        if c.enum:
            flag((df[c.name] != "") & ~df[c.name].isin(c.enum), "invalid_enum", c.name)
    if "email" in df:
        normal = df["email"].str.strip().str.lower()
        flag((normal != "") & ~normal.str.match(EMAIL), "invalid_email", "email")
    for col in sorted(NON_NEGATIVE_AMOUNTS & set(df.columns)):
        amount = pd.to_numeric(df[col], errors="coerce")
        flag((amount < 0) | (amount >= 1_000_000), "out_of_range", col)
    if "quantity" in df:
        qty = pd.to_numeric(df["quantity"], errors="coerce")
        flag((qty < 1) | (qty > 1000), "out_of_range", "quantity")
    if "satisfaction_score" in df:  # a 1-5 answer
        score = pd.to_numeric(df["satisfaction_score"], errors="coerce")
        flag((score < 1) | (score > 5), "out_of_range", "satisfaction_score")
    for c in spec.columns:
        if c.type == "timestamp":
            parsed = pd.to_datetime(
                df[c.name].where(df[c.name] != ""), format="%Y-%m-%dT%H:%M:%SZ", errors="coerce"
            )
            flag(parsed >= pd.Timestamp(cutoff_end), "future_date", c.name)
    for col in ("subject", "body"):
        if col in df:
            flag(df[col].str.len() > MAX_TEXT_CHARS, "oversized_text", col)
    for fk, parent in spec.parents.items():
        flag((df[fk] != "") & ~df[fk].isin(loadable.get(parent, set())), "orphan")
    # reasons come out in the order of the checks above; ORDER documents it for readers
    assert set(reason.unique()) | set(finding.unique()) <= set(ORDER) | {""}
    return reason.tolist(), finding.tolist()
