"""`clarion init --from-dsn-env VAR`: profile the tables of a PostgreSQL/MariaDB schema and propose a
`kind: postgres|mariadb` source (per entity `table:`, `columns:`, `cursor:`).

Tables are read through connectorx (at most ``SAMPLE_ROWS`` rows each, into DuckDB) and profiled
like files. A database source maps columns by name only (no SQL mapping), so what a table lacks
becomes a question. The DSN never appears in output: only the variable's name is written.
"""

from __future__ import annotations

import duckdb

from clarion.contract import ENTITIES
from clarion.onboard import roles as r
from clarion.onboard.profile import SAMPLE_ROWS, FileProfile, profile_relation
from clarion.onboard.propose import EntityPlan, Key, Proposal, classify
from clarion.onboard.write import InitError

ROLE_ENTITY = {"contacts": "contacts", "orders": "orders", "payments": None}
# role of a column (clarion.onboard.roles) -> contract column, per entity
ROLE_COLUMN = {
    "contacts": {"id": "contact_id", "customer_id": "contact_id", "email": "email", "country": "country",
                 "first_name": "first_name", "last_name": "last_name", "when": "signup_date"},
    "orders": {"order_id": "order_id", "customer_id": "contact_id", "when": "ordered_at", "status": "status",
               "currency": "currency", "total": "total_amount", "subtotal": "subtotal_amount",
               "discount": "discount_amount", "discount_code": "discount_code"},
}  # fmt: skip


def _scheme(dsn: str) -> str:
    return "mariadb" if dsn.split(":", 1)[0].lower() in ("mysql", "mariadb") else "postgres"


def profile_database(dsn: str, schema: str) -> list[FileProfile]:
    import connectorx as cx

    def arrow(sql: str):
        try:
            return cx.read_sql(dsn, sql, return_type="arrow")
        except Exception as exc:  # connectorx raises its own runtime errors; never show the DSN
            raise InitError(
                f"could not read the database ({type(exc).__name__}); check the DSN and schema"
            ) from None

    listing = arrow(
        "select table_name from information_schema.tables "
        f"where table_schema = '{schema.replace(chr(39), '')}' and table_type = 'BASE TABLE' "
        "order by table_name"
    )
    names = [str(v) for v in listing.column(0).to_pylist()]
    if not names:
        raise InitError(f"schema {schema!r} has no tables (or they are not readable with this DSN)")
    con = duckdb.connect()
    out = []
    try:
        for name in names:
            quote = "`" if _scheme(dsn) == "mariadb" else '"'
            data = arrow(f"select * from {quote}{schema}{quote}.{quote}{name}{quote} limit {SAMPLE_ROWS}")
            con.register("_table", data)
            prof = profile_relation(con, name, "_table", name)
            count = arrow(f"select count(*) from {quote}{schema}{quote}.{quote}{name}{quote}")
            prof.rows = int(count.column(0)[0].as_py())
            con.unregister("_table")
            out.append(prof)
    finally:
        con.close()
    return out


def propose_database(
    profiles: list[FileProfile], dsn: str, var: str, schema: str, source_name: str
) -> Proposal:
    from clarion.onboard.propose import FileRole

    prop = Proposal(_scheme(dsn), source_name, f"schema {schema} (DSN in ${var})", profiles)
    prop.settings = {"dsn_env": Key(var, None), "schema": Key(schema, None)}
    taken: set[str] = set()
    for p in profiles:
        role, conf, reason, _ = classify(p)
        entity = p.table if p.table in ENTITIES else ROLE_ENTITY.get(role)
        if p.table in ENTITIES:
            conf, reason = 0.9, f"the table is named {p.table}"
        prop.files.append(FileRole(p.path, entity or role, conf, reason))
        if entity is None or entity in taken:
            prop.questions.append(f"table {p.path}: not used ({reason})")
            continue
        taken.add(entity)
        plan = EntityPlan(entity, conf, f"table {p.path}: {reason}")
        contract = set(ENTITIES[entity].column_names)
        columns: dict[str, Key] = {}
        for c in p.columns:
            if c.name in contract:
                continue
            target = next(
                (
                    ROLE_COLUMN.get(entity, {}).get(x.role)
                    for x in r.roles(c)
                    if ROLE_COLUMN.get(entity, {}).get(x.role) and x.confidence >= 0.5
                ),
                None,
            )
            if target and target not in {k.value for k in columns.values()}:
                x = r.roles(c)[0]
                columns[c.name] = Key(target, x.confidence, x.evidence)
        plan.keys["table"] = Key(p.path, conf, reason)
        if columns:
            plan.keys["columns"] = Key(columns)
        mapped = {k.value for k in columns.values()} | {c.name for c in p.columns}
        cursor = ENTITIES[entity].cursor
        if cursor not in mapped:
            stamp = next((c for c in p.columns if c.type == "timestamp" and "updat" in c.name.lower()), None)
            if stamp is not None:
                plan.keys["cursor"] = Key(stamp.name, 0.8, "the table's update time")
            else:
                plan.keys[
                    "table"
                ].question = f"{p.path} has no update time to load incrementally by ({cursor})"
                prop.questions.append(plan.keys["table"].question)
        missing = [c for c in ENTITIES[entity].required if c not in mapped and c != cursor]
        missing = [c for c in missing if not (entity == "contacts" and c.endswith(("consent", "objection")))]
        if missing:
            qtext = f"table {p.path} has no {', '.join(missing)} for {entity}; add them (a view) or map them"
            plan.keys["table"].question = (
                (plan.keys["table"].question or "") + (" " if plan.keys["table"].question else "") + qtext
            )
            prop.questions.append(qtext)
        prop.entities.append(plan)
    return prop
