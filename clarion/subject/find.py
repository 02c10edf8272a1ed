"""Who a request is about: a contact id or an e-mail address, resolved to one ``contact_id``.

A person is known when the CRM gave Clarion their contact (``raw.contacts``) or when the published
marts still describe them (``marts.dim_customers``). An e-mail is compared trimmed and lower-cased
(the contract stores it lower-cased), against the contacts as loaded and against e-mails a correction
gave them. Messages name what was looked up (a contact id, an e-mail) but never log the e-mail: it is
the requester's own input, shown back only in the CLI's answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from clarion.errors import ClarionError
from clarion.warehouse import relation_exists

_ID = re.compile(r"^\s*[0-9]{1,18}\s*$")

PRIVACY_DDL = (
    "create schema if not exists privacy",
    """
    create table if not exists privacy.corrections (
        contact_id bigint, field varchar, value varchar, reference varchar,
        requested_at timestamptz, requested_by varchar
    )
    """,
    """
    create table if not exists privacy.objections (
        contact_id bigint, reference varchar, requested_at timestamptz, requested_by varchar
    )
    """,
)


class SubjectError(ClarionError):
    """The person asked about is unknown, or the request cannot be applied as given."""

    exit_code = 2


class UnknownSubjectError(SubjectError):
    """Nobody in the warehouse is the person asked about."""

    http_status = 404


@dataclass(frozen=True)
class Subject:
    contact_id: int
    looked_up: str  # "contact id" or "e-mail": how the request named them


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The rights' own tables (schema ``privacy``): corrections and objections, as requested."""
    for ddl in PRIVACY_DDL:
        con.execute(ddl)


def find(con: duckdb.DuckDBPyConnection, who: str) -> Subject:
    """The one contact ``who`` names: digits are a contact id, anything with an ``@`` an e-mail."""
    text = (who or "").strip()
    if _ID.match(text):
        contact_id = int(text)
        if not _known(con, contact_id):
            raise UnknownSubjectError(
                f"no contact with id {contact_id} in raw.contacts or marts.dim_customers: check the id "
                "(`clarion explain ID` shows a scored customer), or look the person up by e-mail"
            )
        return Subject(contact_id, "contact id")
    if "@" not in text:
        raise SubjectError(
            "name the person by contact id (digits) or by e-mail address (with an @); got neither"
        )
    ids = by_email(con, text)
    if not ids:
        raise UnknownSubjectError(
            f"no contact has the e-mail {text!r} (compared trimmed and in lower case) in raw.contacts "
            "or among recorded corrections: check the address, or use the contact id"
        )
    if len(ids) > 1:
        listed = ", ".join(str(i) for i in ids[:10])
        raise SubjectError(
            f"{len(ids)} contacts share the e-mail {text!r} (ids {listed}): run the command once per "
            "contact id"
        )
    return Subject(ids[0], "e-mail")


def by_email(con: duckdb.DuckDBPyConnection, email: str) -> list[int]:
    """Every contact id whose e-mail is ``email``: as loaded, or as a correction set it (newest)."""
    wanted = email.strip().lower()
    parts = []
    if relation_exists(con, "raw", "contacts"):
        parts.append("select contact_id from raw.contacts where lower(trim(email)) = $e")
    if relation_exists(con, "privacy", "corrections"):
        parts.append(
            "select contact_id from (select contact_id, value, row_number() over (partition by contact_id "
            "order by requested_at desc) as rn from privacy.corrections where field = 'email') "
            "where rn = 1 and lower(trim(value)) = $e"
        )
    if not parts:
        return []
    sql = " union ".join(parts)
    return [
        r[0]
        for r in con.execute(f"select distinct contact_id from ({sql}) order by 1", {"e": wanted}).fetchall()
    ]


def by_pseudonym(
    con: duckdb.DuckDBPyConnection, pseudonymize: Callable[[Any], str], pseudonym: str
) -> int | None:
    """The contact id a pseudonym stands for, or None: the pseudonym of every known contact is
    computed (in SQL, the key bound as a parameter) and compared; nothing maps back without the key."""
    sources = [
        f"select contact_id from {schema}.{table}"
        for schema, table in (("raw", "contacts"), ("marts", "dim_customers"))
        if relation_exists(con, schema, table)
    ]
    if not sources:
        return None
    expr, params = pseudonymize.sql("contact_id")  # type: ignore[attr-defined]
    row = con.execute(
        f"select contact_id from ({' union '.join(sources)}) where {expr} = ? limit 1",
        [*params, pseudonym],
    ).fetchone()
    return int(row[0]) if row else None


def requester(actor: str | None) -> str:
    """Who a request is recorded under: the caller that authenticated one (the API) or the OS user."""
    from clarion.audit.events import default_actor

    return actor if actor else default_actor()


def _known(con: duckdb.DuckDBPyConnection, contact_id: int) -> bool:
    for schema, table in (("raw", "contacts"), ("marts", "dim_customers")):
        if relation_exists(con, schema, table):
            hit = con.execute(
                f"select 1 from {schema}.{table} where contact_id = ? limit 1", [contact_id]
            ).fetchone()
            if hit:
                return True
    return False


def record_request(
    settings: Any,
    con: duckdb.DuckDBPyConnection,
    action: str,
    pseudonym: str,
    write: Callable[[], dict[str, int]],
    actor: str | None = None,
) -> None:
    """``write`` the request's rows and its audit event (subject: the pseudonym; details: the counts
    ``write`` returns) in one transaction: both are kept, or neither. ``actor``: see
    :func:`requester`."""
    from clarion.audit import AuditLog

    con.execute("begin transaction")
    try:
        details = write()
        AuditLog.for_settings(settings).record(
            con, action, pseudonym, actor=requester(actor), details=details
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
