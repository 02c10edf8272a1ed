"""The pieces of a proposal (keys with confidence, evidence and questions; entities; file roles)
and the helpers the recipes share (status words, currency, defaults, countries)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clarion.onboard import roles as r
from clarion.onboard.profile import ColumnProfile, FileProfile
from clarion.onboard.roles import txt

SEP = ",\n       "
SWAPPABLE = {
    ("%d/%m/%Y", "%m/%d/%Y"),
    ("%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M"),
    ("%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S"),
}


@dataclass
class Key:
    """One key of the proposed YAML: its value (a scalar, a ``dict[str, Key]``, or SQL text when
    ``sql`` is set), the confidence and evidence written beside it, and a question if any."""

    value: Any
    confidence: float | None = None
    evidence: str = ""
    question: str | None = None
    sql: bool = False


@dataclass
class EntityPlan:
    entity: str
    confidence: float
    reason: str
    keys: dict[str, Key] = field(default_factory=dict)


@dataclass
class FileRole:
    path: str
    role: str  # orders | order_lines | invoice_lines | contacts | payments | unknown
    confidence: float
    reason: str


@dataclass
class Proposal:
    kind: str  # files | postgres | mariadb
    source_name: str
    location: str  # folder, or "schema" of the database
    profiles: list[FileProfile]
    files: list[FileRole] = field(default_factory=list)
    entities: list[EntityPlan] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    settings: dict[str, Key] = field(default_factory=dict)  # source-level keys (dsn_env, schema)

    def ask(self, key: Key, question: str) -> None:
        key.question = question if key.question is None else f"{key.question} {question}"
        self.questions.append(question)


def date_question(prop: Proposal, key: Key, col: ColumnProfile) -> None:
    fmts = set(col.date_formats)
    if any(a in fmts and b in fmts for a, b in SWAPPABLE):
        prop.ask(key, f"{col.name}: every day is 12 or less, so dates may be day/month or month/day; "
                 f"{col.date_format} assumed")  # fmt: skip


def status_map(prop: Proposal, col: ColumnProfile, where: str) -> tuple[dict[str, str], Key]:
    mapping, unclear = r.map_status(col.values or [])
    key = Key(None, 0.9 if not unclear else 0.6, f"{col.name}: {', '.join(col.values or [])}")
    if unclear:
        prop.ask(key, f"{where}: {', '.join(unclear)} mapped to completed; is that right?")
    return mapping, key


def default_keys(conf_updated: str = "the export has no change time") -> Key:
    return Key({"updated_at": Key("load_time", 0.9, conf_updated)})


def currency(prop: Proposal, found: dict, where: str) -> tuple[str, Key | None]:
    """SQL for the currency, and a Key carrying the question when the files name none."""
    if "currency" in found:
        col = found["currency"][0]
        return f"max({txt(col.name)})", None
    key = Key(None)
    prop.ask(key, f"{where}: the files name no currency; EUR assumed")
    return "'EUR'", key


def sql_key(prop: Proposal, sql: str, conf: float, evidence: str, *questions: Key | None) -> Key:
    key = Key(sql.strip() + "\n", conf, evidence, sql=True)
    for qk in questions:
        if qk is not None and qk.question:
            key.question = qk.question if key.question is None else f"{key.question} {qk.question}"
    return key


def country_sql(found: dict) -> str | None:
    if "country" in found:
        return r.country(txt(found["country"][0].name), names=False)
    if "country_name" in found:
        return r.country(txt(found["country_name"][0].name), names=True)
    return None
