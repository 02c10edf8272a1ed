"""What a database or an API says a keyed load covers, counted apart from the rows the reader produced.

A file's records are counted by a scan of its bytes; a database table and an API have no bytes to
scan, so the source counts for itself. A database counts, on its own connection and in its own
query, the rows of the range the load reads: the cursor is NULL, or between ``since`` and the newest
cursor value when the load began (``until``, fixed before the read, so rows written after it count
in neither). The count is made as "every row but those provably outside the range" (before
``since`` or after ``until``), not with the reader's WHERE clause, so a class of rows the reader's
filter misses (a NULL cursor is neither >= nor <= anything) shows as a difference. It is made
before and after the read: a writer that changes the range meanwhile is told apart from a loss.

An API counts the records in each raw HTTP page it served (the ``results`` array of the response,
in a response hook, not dlt's parsed rows) and says how many match (HubSpot's search ``total``).
:func:`clarion.extract.accounting.keyed_read_count` compares these with the rows that landed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from clarion.config import DatabaseSource
from clarion.contract import ENTITIES
from clarion.extract.accounting import SourceCount
from clarion.extract.readers import ExtractError
from clarion.privacy.scrub import scrub

# -- SQL databases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableSpec:
    """Where an entity lives in a source database: table (or a SELECT), cursor column, source ->
    canonical names."""

    table: str
    cursor: str
    mapping: dict[str, str]
    sql: str | None = None  # a mapping in the database's own SQL, read instead of the table


def table_spec(source: DatabaseSource, entity: str) -> TableSpec:
    spec = (source.entities or {}).get(entity)
    mapping = dict(spec.columns) if spec else {}
    reverse = {canonical: src for src, canonical in mapping.items()}
    cursor = (spec.cursor if spec and spec.cursor else None) or reverse.get(
        ENTITIES[entity].cursor, ENTITIES[entity].cursor
    )
    sql = spec.sql.strip().rstrip(";").strip() if spec and spec.sql else None
    return TableSpec((spec.table if spec and spec.table else None) or entity, cursor, mapping, sql)


def mapped_query(con: Any, sql: str) -> Any:
    """A SQL mapping as a SQLAlchemy subquery with its output columns (asked of the database with a
    query that returns no row), so it is filtered and counted like a table."""
    names = list(con.execute(sa.text(f"select * from ({sql}) clarion_mapped where 1 = 0")).keys())
    return sa.text(sql).columns(*(sa.column(n) for n in names)).subquery("clarion_mapped")


@dataclass(frozen=True)
class CursorWindow:
    """The rows one database load reads: cursor NULL (a required field: they are read on every load
    and quarantined, never skipped), or ``since`` <= cursor <= ``until``. ``since`` None: from the
    start; ``until`` None: no row had a cursor when the load began."""

    since: datetime | None
    until: Any | None

    def where(self, column: Any) -> Any:
        """The reader's filter on ``column`` (a SQLAlchemy column)."""
        if self.until is None:
            return column.is_(None)
        ranged = column <= self.until if self.since is None else column.between(self.since, self.until)
        return sa.or_(column.is_(None), ranged)

    def describe(self, cursor: str) -> str:
        def show(value: Any) -> str:
            return value.isoformat() if hasattr(value, "isoformat") else str(value)

        if self.until is None:
            return f"whose {cursor} is null"
        low = f"from {show(self.since)} " if self.since is not None else ""
        return f"whose {cursor} is null or {low}up to {show(self.until)}"


class TableCount:
    """Counts of one source table on a connection of its own (not the reader's)."""

    def __init__(self, source_name: str, source: DatabaseSource, sa_url: str, entity: str) -> None:
        self.source_name, self.entity = source_name, entity
        self.spec = table_spec(source, entity)
        self.schema = source.schema_name
        self.engine = sa.create_engine(sa_url, poolclass=sa.pool.NullPool)  # nothing left open
        key = f"sources.{source_name}.entities.{entity}"
        try:
            with self.engine.connect() as con:
                if self.spec.sql is not None:
                    table = mapped_query(con, self.spec.sql)
                else:
                    table = sa.Table(self.spec.table, sa.MetaData(), schema=self.schema, autoload_with=con)
        except sa.exc.NoSuchTableError:
            raise ExtractError(
                f"source {source_name}: no table {self.schema}.{self.spec.table} for {entity}; "
                f"set {key}.table in clarion.yaml"
            ) from None
        except sa.exc.DBAPIError as exc:  # the mapping's SQL, as the database refused it
            if self.spec.sql is None:
                raise
            raise ExtractError(
                f"source {source_name}: {key}.sql failed in the database: {_first_line(exc)}"
            ) from None
        named = f"table {self.schema}.{self.spec.table}"
        self.what = f"rows of {key}.sql" if self.spec.sql else f"rows of {named}"
        if self.spec.cursor not in table.c:
            where = f"the output of {key}.sql" if self.spec.sql else f"table {self.spec.table}"
            raise ExtractError(
                f"source {source_name}: {where} has no cursor column {self.spec.cursor!r}; "
                f"set {key}.cursor in clarion.yaml"
            )
        self.table = table
        self.column = table.c[self.spec.cursor]
        self.before = 0

    def window(self, since: datetime | None) -> CursorWindow:
        """Fix the range before the read (its upper end is the newest cursor now) and count it."""
        with self.engine.connect() as con:
            until = con.execute(sa.select(sa.func.max(self.column))).scalar()
        window = CursorWindow(since, until)
        self.before = self.count(window)
        return window

    def count(self, window: CursorWindow) -> int:
        """Rows of the window: every row of the table but those before ``since`` or after ``until``,
        in one statement (one snapshot). Each part can use an index on the cursor."""

        def rows(*where: Any) -> Any:
            return sa.select(sa.func.count()).select_from(self.table).where(*where).scalar_subquery()

        outside = []
        if window.since is not None:
            outside.append(rows(self.column < window.since))
        if window.until is not None:
            outside.append(rows(self.column > window.until))
        else:  # no row had a cursor: only the NULL ones are in range
            outside.append(rows(self.column.is_not(None)))
        total = rows()
        for part in outside:
            total = total - part
        with self.engine.connect() as con:
            return int(con.execute(sa.select(total)).scalar())

    def source_count(self, window: CursorWindow) -> SourceCount:
        """The count after the read, with the one before it."""
        after = self.count(window)
        what = f"{self.what} {window.describe(self.spec.cursor)}"
        return SourceCount(after, what, kind="database", before=self.before)


def _first_line(exc: BaseException) -> str:
    """The database's own message, first line only (a driver may quote parameters after it)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return scrub((text.splitlines()[0] if text else type(exc).__name__)[:300])


# -- HubSpot-v3-like REST API -----------------------------------------------------------------------


@dataclass
class PageCount:
    """The records of the API's raw HTTP pages, counted in a response hook as they arrive."""

    records: int = 0
    ids: set[str] = field(default_factory=set)
    total: int | None = None  # how many records the API said match (search), from its first answer
    pages: int = 0

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: runs after the status check, once per page that arrived."""
        body = response.json()
        results = body.get("results") or []
        self.pages += 1
        self.records += len(results)
        self.ids.update(str(r.get("id")) for r in results if isinstance(r, dict))
        if self.total is None and isinstance(body.get("total"), int):
            self.total = body["total"]

    def source_count(self, obj: str) -> SourceCount:
        return SourceCount(
            self.records,
            f"records of {obj} in {self.pages} page(s)",
            kind="api",
            total=self.total,
            distinct=len(self.ids),
        )
