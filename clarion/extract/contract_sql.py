"""The contract as SQL: one set-based pass that types every landed row and names what is wrong with it.

Given the landed columns and their types, :func:`check_sql` builds a query that adds a typed copy of
each contract column (``__t_<column>``) and ``__why``: ``reason|field`` for a row that breaks the
contract, NULL for a row that may load. Reasons are tried in a fixed order, so a row gets the first
problem it has. Text is cast with ``try_cast``/``try_strptime`` (a bad value is a quarantined row,
never a failed load); typed Parquet and database columns are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clarion.contract import MAX_TEXT_CHARS, Column, Entity
from clarion.extract.readers import FILE, ROW, SEQ

REASONS = (
    "unnamed_column",
    "missing_column",
    "missing_required",
    "encoding_error",
    "wrong_type",
    "excess_precision",
    "invalid_date",
    "invalid_enum",
    "invalid_email",
    "out_of_range",
    "future_date",
    "oversized_text",
    "orphan",
    "duplicate_key",
)
LINE_REASONS = ("malformed_row", "oversized_record", "unbalanced_quote")  # lines never parsed, kept as text
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
DUCKDB_TYPES = {
    "int": "BIGINT",
    "decimal": "DECIMAL(14,2)",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}
TEXT_TYPES = {"VARCHAR"}


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def typed(name: str) -> str:
    return q(f"__t_{name}")


@dataclass(frozen=True)
class Formats:
    date_format: str | None = None
    timestamp_format: str | None = None
    decimal_separator: str = "."
    # column -> ((value as the export writes it, contract value), ...): the entity's `values:` maps
    values: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @classmethod
    def of(cls, spec) -> Formats:
        """The formats a files entity's settings declare (a FileEntity)."""
        values = tuple(sorted((col, tuple(sorted(m.items()))) for col, m in spec.values.items()))
        return cls(spec.date_format, spec.timestamp_format, spec.decimal_separator, values)

    def value_map(self, column: str) -> tuple[tuple[str, str], ...]:
        return next((m for col, m in self.values if col == column), ())


def _mapped(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    """The text with the export's words replaced by the contract's (exact match after trimming)."""
    if not pairs:
        return text
    whens = " ".join(f"WHEN {lit(src)} THEN {lit(dst)}" for src, dst in pairs)
    return f"(CASE {text} {whens} ELSE {text} END)"


@dataclass
class CheckSpec:
    entity: Entity
    landed: dict[str, str]  # landing column -> DuckDB type
    formats: Formats = field(default_factory=Formats)
    rejected_files: dict[str, list[str]] = field(default_factory=dict)  # file -> missing columns
    bad_files: dict[str, tuple[str, str]] = field(default_factory=dict)  # file -> (reason, field)
    future_hours: float = 24.0
    parents_available: bool = True  # raw parent tables exist (orphan checks)

    @property
    def present(self) -> list[Column]:
        return [c for c in self.entity.columns if c.name in self.landed]


def _text(col: Column, landed_type: str) -> str:
    """The column as trimmed text, NULL when empty: what a text value 'is' for presence checks."""
    expr = q(col.name) if landed_type in TEXT_TYPES else f"CAST({q(col.name)} AS VARCHAR)"
    return f"nullif(trim({expr}), '')"


def typed_expr(col: Column, landed_type: str, formats: Formats) -> str:
    """The contract-typed value of a landed column (NULL when it does not parse)."""
    target = DUCKDB_TYPES[col.type]
    name = q(col.name)
    pairs = formats.value_map(col.name)
    if landed_type not in TEXT_TYPES and not pairs:
        if landed_type == target or (col.type == "string"):
            return name if landed_type == target else f"CAST({name} AS VARCHAR)"
        if col.type == "timestamp" and landed_type.startswith("TIMESTAMP"):
            return f"CAST({name} AS TIMESTAMPTZ)"  # naive database times are UTC (session zone)
        return f"try_cast({name} AS {target})"
    text = _mapped(_text(col, landed_type), pairs)
    if col.type == "string":
        return f"lower({text})" if col.name == "email" else text
    if col.type == "decimal":
        text = _decimal_text(text, formats)
    if col.type == "int":
        # try_cast('1.5' AS BIGINT) rounds to 2: a whole number must look like one first
        return f"CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+') THEN try_cast({text} AS BIGINT) END"
    if col.type == "timestamp":
        # the configured format first, then ISO 8601, then a bare date (midnight UTC)
        tries = []
        if formats.timestamp_format:
            tries.append(f"CAST(try_strptime({text}, {lit(formats.timestamp_format)}) AS TIMESTAMPTZ)")
        tries += [f"try_cast({text} AS TIMESTAMPTZ)", f"CAST(try_cast({text} AS DATE) AS TIMESTAMPTZ)"]
        if formats.date_format:
            tries.append(f"CAST(try_strptime({text}, {lit(formats.date_format)}) AS TIMESTAMPTZ)")
        return f"coalesce({', '.join(tries)})"
    if col.type == "date":
        tries = (
            [f"CAST(try_strptime({text}, {lit(formats.date_format)}) AS DATE)"] if formats.date_format else []
        )
        tries += [f"try_cast({text} AS DATE)", f"CAST(try_cast({text} AS TIMESTAMPTZ) AS DATE)"]
        return f"coalesce({', '.join(tries)})"
    return f"try_cast({text} AS {target})"


def _decimal_text(text: str, formats: Formats) -> str:
    if formats.decimal_separator == ",":
        return f"replace(replace({text}, '.', ''), ',', '.')"
    return text


def _excess_precision(col: Column, landed_type: str, formats: Formats) -> str:
    """A decimal with non-zero digits beyond the contract's scale (two places): casting would round
    it, so the row is quarantined instead. Trailing zeros (12.500) are not extra digits; a floating
    point column is compared with a tolerance (19.99 is 19.989999... in binary)."""
    if landed_type in TEXT_TYPES:
        exact = f"try_cast({_decimal_text(_text(col, landed_type), formats)} AS DECIMAL(38,18))"
        return f"{exact} <> {typed(col.name)}"
    if landed_type in {"DOUBLE", "FLOAT", "REAL"}:
        value = q(col.name)
        return f"abs({value} - {typed(col.name)}) > 1e-9 * greatest(1, abs({value}))"
    if landed_type.startswith("DECIMAL"):
        return f"{q(col.name)} <> {typed(col.name)}"
    return "FALSE"


def _present(col: Column, landed_type: str) -> str:
    if landed_type in TEXT_TYPES:
        return f"{_text(col, landed_type)} IS NOT NULL"
    return f"{q(col.name)} IS NOT NULL"


def typed_columns(spec: CheckSpec) -> list[str]:
    """``<typed value> AS "__t_<column>"`` for every contract column (typed NULL when not landed)."""
    cols = []
    for c in spec.entity.columns:
        if c.name in spec.landed:
            cols.append(f"{typed_expr(c, spec.landed[c.name], spec.formats)} AS {typed(c.name)}")
        else:
            cols.append(f"CAST(NULL AS {DUCKDB_TYPES[c.type]}) AS {typed(c.name)}")
    return cols


def row_level(spec: CheckSpec, col: Column) -> bool:
    """A column whose bad value rejects the whole row: required ones, the key and the cursor. A bad
    value in any other (optional, nullable) column is nulled and recorded as a field finding."""
    return col.required or col.name in (spec.entity.primary_key, spec.entity.cursor)


def value_checks(spec: CheckSpec) -> list[tuple[Column, str, str]]:
    """(column, condition, reason) for every check of a landed value, in the order of REASONS."""
    landed = spec.landed
    present = spec.present
    checks: list[tuple[Column, str, str]] = []
    for c in present:
        if c.type == "string" and landed[c.name] in TEXT_TYPES:
            checks.append((c, f"strpos(t.{q(c.name)}, chr(65533)) > 0", "encoding_error"))
    for c in present:
        if c.type in {"int", "decimal", "bool"}:
            checks.append((c, f"{_present(c, landed[c.name])} AND {typed(c.name)} IS NULL", "wrong_type"))
        elif c.type in {"date", "timestamp"}:
            checks.append((c, f"{_present(c, landed[c.name])} AND {typed(c.name)} IS NULL", "invalid_date"))
    for c in present:
        if c.type == "decimal":
            checks.append((c, _excess_precision(c, landed[c.name], spec.formats), "excess_precision"))
    for c in present:
        if c.enum:
            values = ", ".join(lit(v) for v in c.enum)
            checks.append(
                (c, f"{typed(c.name)} IS NOT NULL AND {typed(c.name)} NOT IN ({values})", "invalid_enum")
            )
    if "email" in landed:
        cond = f"{typed('email')} IS NOT NULL AND NOT regexp_full_match({typed('email')}, {lit(EMAIL_RE)})"
        checks.append((spec.entity.column("email"), cond, "invalid_email"))
    for c in present:
        bounds = []
        if c.minimum is not None:
            bounds.append(f"{typed(c.name)} < {c.minimum}")
        if c.maximum is not None:
            bounds.append(f"{typed(c.name)} > {c.maximum}")
        if bounds:
            checks.append((c, " OR ".join(bounds), "out_of_range"))
    future = f"now() + INTERVAL {spec.future_hours * 3600:.0f} SECOND"
    for c in present:
        if c.type == "timestamp":
            checks.append((c, f"{typed(c.name)} > {future}", "future_date"))
        elif c.type == "date":
            checks.append((c, f"{typed(c.name)} > CAST({future} AS DATE)", "future_date"))
    for c in present:
        if c.free_text:
            checks.append((c, f"length(t.{q(c.name)}) > {MAX_TEXT_CHARS}", "oversized_text"))
    return checks


def field_findings(spec: CheckSpec) -> dict[str, str]:
    """Optional column -> a CASE giving the first reason its value is invalid (NULL when valid), over a
    relation aliased ``t`` that has the landed and the ``__t_*`` typed columns."""
    per_column: dict[str, list[tuple[str, str]]] = {}
    for col, cond, reason in value_checks(spec):
        if not row_level(spec, col):
            per_column.setdefault(col.name, []).append((cond, reason))
    return {
        name: "CASE " + " ".join(f"WHEN {cond} THEN {lit(reason)}" for cond, reason in whens) + " END"
        for name, whens in per_column.items()
    }


def check_sql(spec: CheckSpec, landing: str, parents: dict[str, tuple[str, str]]) -> str:
    """SELECT over ``landing`` adding ``__t_*`` typed columns and ``__why``.

    ``parents`` maps a foreign-key column to (table, key column) holding the valid parent keys.
    Only row-level problems set ``__why``; a bad optional value is a field finding (see
    :func:`field_findings`), not a reason to reject the row.
    """
    e, landed = spec.entity, spec.landed
    typed_cols = typed_columns(spec)
    whens: list[tuple[str, str]] = []

    def add(condition: str, reason: str, column: str) -> None:
        whens.append((condition, f"{reason}|{column}"))

    for file, (reason, column) in spec.bad_files.items():
        add(f"t.{q(FILE)} = {lit(file)}", reason, column)
    if spec.rejected_files:
        for file, missing in spec.rejected_files.items():
            add(f"t.{q(FILE)} = {lit(file)}", "missing_column", ",".join(missing))
    for c in e.columns:
        if c.required:
            if c.name in landed:
                add(f"NOT ({_present(c, landed[c.name])})", "missing_required", c.name)
            else:
                add("TRUE", "missing_column", c.name)
    for col, cond, reason in value_checks(spec):
        if row_level(spec, col):
            add(cond, reason, col.name)
    joins = []
    for i, (fk, (table, key)) in enumerate(sorted(parents.items())):
        alias = f"p{i}"
        joins.append(f"LEFT JOIN (SELECT {q(key)} AS k FROM {table}) {alias} ON {alias}.k = t.{typed(fk)}")
        add(f"{typed(fk)} IS NOT NULL AND {alias}.k IS NULL", "orphan", fk)
    case = "\n".join(f"      WHEN {cond} THEN {lit(why)}" for cond, why in whens)
    why = f"CASE\n{case}\n    END" if whens else "CAST(NULL AS VARCHAR)"
    return f"""
WITH t AS (
    SELECT l.*, {", ".join(typed_cols)}
    FROM {landing} l
)
SELECT t.*, {why} AS __why
FROM t
{chr(10).join(joins)}
"""


def row_hash(columns: list[str]) -> str:
    """A 64-bit fingerprint of a row's values: an unchanged row is not rewritten on merge."""
    return f"hash({', '.join(q(c) for c in columns)})"


__all__ = [
    "FILE",
    "LINE_REASONS",
    "REASONS",
    "ROW",
    "SEQ",
    "CheckSpec",
    "Formats",
    "check_sql",
    "field_findings",
    "lit",
    "q",
    "row_hash",
    "row_level",
    "typed",
]
