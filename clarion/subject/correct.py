"""Art. 16: correct a contact's record. A correction is checked by the contract, kept in an overlay
(``privacy.corrections``) and re-applied to ``raw.contacts`` by every extract publish of contacts.

Why an overlay and not an update of raw: the CRM may still hold the old value, and the next extract
would bring it back. The overlay wins over the source until the source agrees (then applying it
changes nothing). ``raw.contacts._row_hash`` keeps the source's fingerprint, so an unchanged source
row stays "unchanged" in the accounting, while raw holds the corrected value. The newest correction
of a (contact, field) wins; the correction takes effect on the next run (extract, then dbt).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion.contract import ENTITIES
from clarion.extract.contract_sql import DUCKDB_TYPES, CheckSpec, check_sql, field_findings, q
from clarion.subject.find import SubjectError, ensure_tables, find, record_request, requester
from clarion.warehouse import relation_exists

CONTACTS = ENTITIES["contacts"]
FIXED = (CONTACTS.primary_key, CONTACTS.cursor)  # the key names the person; updated_at is the CRM's clock
CORRECTABLE = tuple(c for c in CONTACTS.column_names if c not in FIXED)


class CorrectionError(SubjectError):
    """A correction the contract refuses: nothing was recorded."""

    http_status = 422


@dataclass(frozen=True)
class Correction:
    field: str
    value: str | None  # the contract's canonical text (e-mail lower-cased, dates ISO); None clears


def parse_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``field=value`` arguments into a mapping; unknown, fixed or repeated fields are refused."""
    if not pairs:
        raise CorrectionError(f"give at least one field=value; correctable fields: {', '.join(CORRECTABLE)}")
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CorrectionError(f"{pair.split('=')[0]!r} is not field=value (e.g. country=DE)")
        if name in FIXED:
            what = "the contact key" if name == CONTACTS.primary_key else "the CRM clock of the record"
            raise CorrectionError(f"{name} cannot be corrected: it is {what}")
        if name not in CONTACTS.column_names:
            raise CorrectionError(
                f"contacts has no field {name!r}; correctable fields: {', '.join(CORRECTABLE)}"
            )
        if name in out:
            raise CorrectionError(f"{name} is given twice: give each field once")
        out[name] = value
    return out


def validate(con: duckdb.DuckDBPyConnection, contact_id: int, values: dict[str, str]) -> list[Correction]:
    """Each value through the contract, as if the CRM had sent the contact with it: the contact's
    current row (as text) with the corrected fields replaced, checked by the same SQL that checks an
    extract. A reason on a corrected field refuses the whole correction, naming field and reason."""
    current = _current_row(con, contact_id)
    landed = {c: "VARCHAR" for c in CONTACTS.column_names}
    row = {**current, **{k: v for k, v in values.items()}}
    con.execute(
        "create or replace temp table __correction as select "
        + ", ".join(f"cast(? as varchar) as {q(c)}" for c in CONTACTS.column_names),
        [row.get(c) for c in CONTACTS.column_names],
    )
    try:
        spec = CheckSpec(CONTACTS, landed)
        findings = field_findings(spec)
        extra = ", ".join(f"{case} as {q('__f_' + name)}" for name, case in findings.items())
        checked = check_sql(spec, "temp.__correction", {})
        rel = con.execute(f"select * {', ' + extra if extra else ''} from ({checked}) as t")
        names = [d[0] for d in rel.description]
        result = dict(zip(names, rel.fetchone(), strict=True))
    finally:
        con.execute("drop table if exists temp.__correction")
    problems = []
    why = result["__why"]
    if why:
        reason, _, column = why.partition("|")
        if column in values:
            problems.append(f"{column}: {_say(reason, column)}")
    for name in values:
        reason = result.get(f"__f_{name}")
        if reason:
            problems.append(f"{name}: {_say(reason, name)}")
    if problems:
        raise CorrectionError(
            f"contact {contact_id}: the correction breaks the contract ({'; '.join(problems)}); nothing "
            "was recorded. Fix the value and run the command again."
        )
    out = []
    for name in values:
        value = result[f"__t_{name}"]
        out.append(Correction(name, None if value is None else _text(value)))
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _say(reason: str, column: str) -> str:
    col = CONTACTS.column(column)
    if reason == "invalid_enum" and col.enum:
        return f"invalid_enum (allowed: {', '.join(col.enum)})"
    if reason == "missing_required":
        return "missing_required (this field must have a value)"
    if reason == "wrong_type":
        return f"wrong_type (expected {'true or false' if col.type == 'bool' else col.type})"
    if reason == "invalid_date":
        return f"invalid_date (expected an ISO {col.type}, e.g. 2026-03-01)"
    if reason == "invalid_email":
        return "invalid_email (expected name@domain.tld)"
    return reason


def _current_row(con: duckdb.DuckDBPyConnection, contact_id: int) -> dict[str, str | None]:
    if not relation_exists(con, "raw", "contacts"):
        return {}
    cols = ", ".join(f"cast({q(c)} as varchar) as {q(c)}" for c in CONTACTS.column_names)
    rel = con.execute(f"select {cols} from raw.contacts where contact_id = ?", [contact_id])
    row = rel.fetchone()
    if row is None:
        return {CONTACTS.primary_key: str(contact_id)}
    return dict(zip(CONTACTS.column_names, row, strict=True))


def record(
    settings: Any,
    who: str,
    pairs: tuple[str, ...] | list[str],
    reference: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Validate and keep a correction; audit it by pseudonym (counts only). Returns what was kept.
    ``actor``: who asked (the API's principal; default the OS user)."""
    from clarion.audit.events import SUBJECT_CORRECTED
    from clarion.privacy.pseudonym import for_settings
    from clarion.warehouse import Warehouse

    values = parse_pairs(pairs)
    with Warehouse.from_settings(settings).connect("subject correct") as con:
        subject = find(con, who)
        corrections = validate(con, subject.contact_id, values)
        ensure_tables(con)
        pseudonym = for_settings(settings, con)(subject.contact_id)
        now, by = datetime.now(UTC), requester(actor)

        def write() -> dict[str, int]:
            con.executemany(
                "insert into privacy.corrections values (?, ?, ?, ?, ?, ?)",
                [[subject.contact_id, c.field, c.value, reference, now, by] for c in corrections],
            )
            return {"fields": len(corrections)}

        record_request(settings, con, SUBJECT_CORRECTED, pseudonym, write, actor)
    return {
        "contact_id": subject.contact_id,
        "pseudonym": pseudonym,
        "looked_up": subject.looked_up,
        "fields": [c.field for c in corrections],
        "reference": reference,
        "takes_effect": "next run (the extract applies it to raw.contacts, dbt to the marts)",
    }


def newest_sql() -> str:
    """The correction in force per (contact, field): the newest request wins."""
    return (
        "select contact_id, field, value from (select *, row_number() over (partition by contact_id, field "
        "order by requested_at desc) as rn from privacy.corrections) where rn = 1"
    )


def apply_overlay(con: duckdb.DuckDBPyConnection) -> int:
    """Corrections and objections onto ``raw.contacts``, in the caller's transaction (the extract's
    publish). Returns how many values it changed (0 when raw already agrees: idempotent)."""
    if not relation_exists(con, "raw", "contacts"):
        return 0
    changed = 0
    if relation_exists(con, "privacy", "corrections"):
        fields = [r[0] for r in con.execute("select distinct field from privacy.corrections").fetchall()]
        for name in fields:
            if name not in CORRECTABLE:
                continue  # a field the contract no longer has: kept, not applied
            kind = DUCKDB_TYPES[CONTACTS.column(name).type]
            col = q(name)
            (n,) = con.execute(
                f"""
                update raw.contacts as r set {col} = cast(c.value as {kind})
                from ({newest_sql()}) as c
                where c.field = ? and r.contact_id = c.contact_id
                  and r.{col} is distinct from cast(c.value as {kind})
                """,
                [name],
            ).fetchone()
            changed += n
    if relation_exists(con, "privacy", "objections"):
        (n,) = con.execute(
            "update raw.contacts set marketing_objection = true where contact_id in "
            "(select contact_id from privacy.objections) and marketing_objection is distinct from true"
        ).fetchone()
        changed += n
    return changed


def apply_to_load(con: duckdb.DuckDBPyConnection, notes: list[str]) -> int:
    """The publish hook: apply the overlay and say so in the load's notes (audit.extract_loads)."""
    n = apply_overlay(con)
    if n:
        notes.append(f"{n} value(s) set by recorded corrections/objections (privacy overlay)")
    return n


__all__ = ["CORRECTABLE", "Correction", "CorrectionError", "apply_overlay", "apply_to_load", "record"]
