"""Where CRM data comes from: the `sources:` section (files, PostgreSQL/MariaDB, HubSpot) and `extract:`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from clarion.config.base import ProjectPath, Section

EntityName = Literal[
    "contacts", "products", "orders", "order_items", "email_events", "support_tickets", "consents"
]
SOURCE_KINDS = ("files", "postgres", "mariadb", "hubspot")
_NAME = r"^[a-z][a-z0-9_]{0,40}$"
NULL_MARKERS = ("", "NULL", "\\N", "N/A")
LOAD_TIME = "load_time"  # a default meaning the time of the load (updated_at of an export without one)
MAX_RECORD_BYTES = 8 << 20  # the text readers' block is 16 MiB: a longer record could not be read at all


class FileEntity(Section):
    """How one entity's files look: which files, which columns mean what, how values are written."""

    files: list[str] | None = Field(
        None,
        description="glob(s) under the source path [default: '<entity>*' with a known suffix, "
        ".csv|.tsv|.txt|.parquet|.jsonl|.ndjson, optionally .gz|.zst, any letter case]",
    )
    columns: dict[str, str] = Field(default_factory=dict, description="source column -> canonical column")
    date_format: str | None = Field(None, description="strptime format of date columns, e.g. '%d/%m/%Y'")
    timestamp_format: str | None = Field(None, description="strptime format of timestamp columns")
    delimiter: str = Field(",", description="one character, '\\t', or 'whitespace' (runs of spaces/tabs)")
    encoding: str = Field("utf-8", description="text encoding of CSV/JSON files, e.g. latin-1, cp1252")
    decimal_separator: Literal[".", ","] = "."
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="canonical column -> value used when the files lack that column "
        "('load_time': the time of the load, for a date or timestamp column)",
    )
    header: bool = Field(True, description="false: CSV files have no header line; give column_names")
    column_names: list[str] | None = Field(
        None, description="the columns of header-less CSV files, in file order (with header: false)"
    )
    null_markers: list[str] = Field(
        default_factory=lambda: list(NULL_MARKERS),
        description="CSV values read as null (unquoted, exact) [empty, NULL, \\N, N/A]",
    )
    max_record_bytes: int = Field(
        1 << 20,
        ge=1,
        le=MAX_RECORD_BYTES,
        description="a line of a CSV/JSON-lines file longer than this is quarantined (oversized_record)",
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="contract column -> {value as the export writes it: contract value}, e.g. "
        "status: {paid: completed, refunded: returned}; values not listed are checked as they are",
    )
    sql: str | None = Field(
        None,
        description="a DuckDB SELECT over the source's files (each file is a table named after it: "
        "orders_export.csv -> orders_export) whose columns are the contract's; replaces files/columns",
    )
    inputs: dict[str, str] | None = Field(
        None,
        description="with sql: table name -> glob under the source path [default: every data file "
        "of the folder, named after its file]",
    )

    @field_validator("values")
    @classmethod
    def _value_maps(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
        return {col: {str(k): str(v) for k, v in (m or {}).items()} for col, m in value.items()}

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        value = "\t" if value in {"\\t", "tab"} else value
        if value != "whitespace" and len(value) != 1:
            raise ValueError("must be one character, '\\t' or 'whitespace'")
        return value

    @model_validator(mode="after")
    def _sql_alone(self):
        if self.sql is not None:
            if not self.sql.strip():
                raise ValueError("sql: is empty; give a SELECT, or remove it")
            clash = [k for k in ("files", "column_names") if getattr(self, k)]
            if self.columns:
                clash.append("columns")
            if clash:
                raise ValueError(
                    f"sql: names its output columns itself; drop {', '.join(clash)} (use inputs: to "
                    "choose the files it reads)"
                )
        elif self.inputs is not None:
            raise ValueError("inputs: names the tables of a sql: mapping; add sql: or remove inputs:")
        return self

    @model_validator(mode="after")
    def _header_or_names(self):
        if not self.header and not self.column_names:
            raise ValueError("header: false needs column_names: [...] (the columns in file order)")
        if self.header and self.column_names:
            raise ValueError(
                "column_names is for header-less files (header: false); to rename columns use columns:"
            )
        names = self.column_names or []
        if any(not n.strip() for n in names) or len(set(names)) != len(names):
            raise ValueError("column_names must be distinct, non-empty names")
        return self


class TransactionsFile(FileEntity):
    """A transactions-only export: one row per purchase. Contacts and orders are derived from it."""

    currency: str = Field("EUR", description="currency of the amounts when the file has no currency column")


class FilesSource(Section):
    kind: Literal["files"]
    path: ProjectPath = Field(description="folder holding the files (globs are relative to it)")
    entities: dict[EntityName, FileEntity] | None = Field(
        None, description="entities to read and how [default: every entity whose files are present]"
    )
    transactions: TransactionsFile | None = None


class TableSpec(Section):
    table: str | None = Field(None, description="table name in the source [default: the entity name]")
    columns: dict[str, str] = Field(default_factory=dict, description="source column -> canonical column")
    cursor: str | None = Field(None, description="source column to load incrementally by [contract cursor]")
    sql: str | None = Field(
        None,
        description="a SELECT in the source database's own SQL whose columns are the contract's, read "
        "instead of a table (joins, sums, unit conversions); incremental by its cursor column",
    )

    @model_validator(mode="after")
    def _sql_or_table(self):
        if self.sql is not None:
            if not self.sql.strip():
                raise ValueError("sql: is empty; give a SELECT, or remove it")
            if self.table or self.columns:
                raise ValueError("sql: names its output columns itself; drop table and columns")
        return self


class SecretRef(Section):
    """Where a secret lives: an environment variable, or a Prefect Secret block. Never the value."""

    @model_validator(mode="after")
    def _one_secret(self):
        env, block = self._secret_fields()
        if bool(getattr(self, env)) == bool(getattr(self, block)):
            raise ValueError(
                f"give exactly one of {env} (an environment variable) or {block} (a Prefect Secret)"
            )
        return self

    def _secret_fields(self) -> tuple[str, str]:
        raise NotImplementedError


class DatabaseSource(SecretRef):
    kind: Literal["postgres", "mariadb"]
    dsn_env: str | None = Field(None, description="environment variable holding the DSN")
    dsn_secret: str | None = Field(None, description="name of a Prefect Secret block holding the DSN")
    schema_name: str = Field(
        "public", alias="schema", description="schema (PostgreSQL) or database (MariaDB)"
    )
    entities: dict[EntityName, TableSpec] | None = Field(None, description="[default: all seven, same names]")
    backend: Literal["connectorx", "pyarrow"] = "connectorx"
    chunk_size: int = Field(200_000, ge=1000)
    lookback_hours: float = Field(
        24.0,
        ge=0,
        description="incremental reads start this long before the newest cursor loaded, so rows that "
        "commit late with an older cursor are still read (unchanged rows stay unchanged)",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)

    def _secret_fields(self) -> tuple[str, str]:
        return "dsn_env", "dsn_secret"


class HubSpotSource(SecretRef):
    kind: Literal["hubspot"]
    base_url: str = Field(description="e.g. https://api.hubapi.com")
    token_env: str | None = Field(None, description="environment variable holding the private-app token")
    token_secret: str | None = Field(None, description="name of a Prefect Secret block holding the token")
    objects: dict[str, EntityName] = Field(
        default_factory=lambda: {
            "contacts": "contacts",
            "products": "products",
            "deals": "orders",
            "line_items": "order_items",
            "email_events": "email_events",
            "tickets": "support_tickets",
            "consents": "consents",
        },
        description="HubSpot object -> entity",
    )
    columns: dict[EntityName, dict[str, str]] = Field(default_factory=dict, description="property -> column")
    modified_properties: dict[str, str] = Field(
        default_factory=dict,
        description="object -> property searched for incremental loads "
        "[contacts: lastmodifieddate, others: hs_lastmodifieddate]",
    )
    page_size: int = Field(100, ge=1, le=100)

    @field_validator("objects")
    @classmethod
    def _one_object_per_entity(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for obj, entity in value.items():
            if entity in seen:
                raise ValueError(f"objects {seen[entity]!r} and {obj!r} both map to {entity}; keep one")
            seen[entity] = obj
        return value

    def modified_property(self, obj: str) -> str:
        return self.modified_properties.get(
            obj, "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"
        )

    def _secret_fields(self) -> tuple[str, str]:
        return "token_env", "token_secret"


SourceSpec = Annotated[FilesSource | DatabaseSource | HubSpotSource, Field(discriminator="kind")]


def _source_name(name: str) -> str:
    import re

    if not re.match(_NAME, name):
        raise ValueError("a source name is lower-case letters, digits and _, starting with a letter")
    return name


SourceName = Annotated[str, AfterValidator(_source_name)]


class ExtractSettings(Section):
    sources: list[str] | None = Field(None, description="which sources `clarion run` extracts [all]")
    retries: int = Field(2, ge=0, le=10, description="retries of an entity's extraction before it fails")
    retry_delay_seconds: float = Field(10.0, ge=0, description="first retry delay; doubles each retry")
    future_tolerance_hours: float = Field(
        24.0, ge=0, description="timestamps later than now + this are future_date defects"
    )
    batch_rows: int = Field(500_000, ge=1000, description="rows per batch read from files")
    keep_landing: bool = Field(False, description="keep the landed Parquet files after publishing")
