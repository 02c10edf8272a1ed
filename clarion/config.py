"""One configuration object for every stage: ``clarion.yaml`` plus ``CLARION_*`` environment overrides.

The settings are read once (by the CLI or the flow entry point) and passed down; library code never
reads the environment or the file itself. Every key can be overridden from the environment with
``CLARION_<SECTION>__<KEY>`` (double underscore between levels), e.g.
``CLARION_WAREHOUSE__LOCK_WAIT_SECONDS=30``. Values are parsed as YAML scalars, so ``true``, ``30``
and ``[a, b]`` mean what they look like. A wrong key or value fails before anything runs, naming the
key path, where it came from, and what is expected.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clarion.errors import ConfigError

ENV_PREFIX = "CLARION_"
SHIPPED = Path(__file__).resolve().parents[1]  # the dbt project and the suites ship beside the package
CONFIG_ENV = "CLARION_CONFIG"  # names the file; not an override
DEFAULT_FILE = "clarion.yaml"


def _under_root(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the directory holding clarion.yaml (or the cwd without one)."""
    root = (info.context or {}).get("root")
    value = value.expanduser()
    return value if value.is_absolute() or root is None else Path(root) / value


ProjectPath = Annotated[Path, AfterValidator(_under_root)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class WarehouseSettings(Section):
    path: ProjectPath = Field(
        Path("var/warehouse.duckdb"), description="DuckDB file holding every schema of the warehouse"
    )
    lock_wait_seconds: float = Field(
        0.0,
        ge=0,
        description="how long a second writer waits for the first to finish; 0 fails at once with a message",
    )
    threads: int = Field(2, ge=1, le=256, description="DuckDB worker threads")
    memory_limit: str = Field(
        "4GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", description="DuckDB memory limit"
    )


class GenerateSettings(Section):
    customers: int = Field(2000, ge=10, le=20_000_000, description="contacts to simulate")
    seed: int = Field(7, ge=0, description="same seed and customers give byte-identical files")
    start: date = Field(date(2023, 1, 1), description="first day of CRM history")
    cutoff: date = Field(date(2026, 6, 30), description="last day in the export; the future lies after it")
    future_days: int = Field(180, ge=90, le=730, description="days simulated past the cutoff (truth only)")
    email_history_days: int = Field(730, ge=30, le=3650, description="days of e-mail events before cutoff")
    products: int = Field(500, ge=20, le=100_000, description="size of the product catalogue")
    defects: float = Field(0.0, ge=0, le=0.2, description="share of extra defective rows per entity")
    format: Literal["csv", "parquet"] = Field("csv", description="file format of the export")
    out: ProjectPath = Field(Path("var/crm"), description="folder the export, truth and defects go to")
    profile: Literal["crm", "transactions"] = Field(
        "crm",
        description="crm: the full CRM export; transactions: a shop's purchases only "
        "(customer_id, order_date, amount in USD)",
    )


class PrefectSettings(Section):
    home: ProjectPath = Field(
        Path("var/prefect"),
        description="PREFECT_HOME used when neither PREFECT_HOME nor PREFECT_API_URL is set",
    )


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


EntityName = Literal[
    "contacts", "products", "orders", "order_items", "email_events", "support_tickets", "consents"
]
SOURCE_KINDS = ("files", "postgres", "mariadb", "hubspot")
_NAME = r"^[a-z][a-z0-9_]{0,40}$"


class FileEntity(Section):
    """How one entity's files look: which files, which columns mean what, how values are written."""

    files: list[str] | None = Field(
        None, description="glob(s) under the source path [default: '<entity>*.csv|parquet|jsonl']"
    )
    columns: dict[str, str] = Field(default_factory=dict, description="source column -> canonical column")
    date_format: str | None = Field(None, description="strptime format of date columns, e.g. '%d/%m/%Y'")
    timestamp_format: str | None = Field(None, description="strptime format of timestamp columns")
    delimiter: str = Field(",", description="one character, '\\t', or 'whitespace' (runs of spaces/tabs)")
    encoding: str = Field("utf-8", description="text encoding of CSV/JSON files, e.g. latin-1, cp1252")
    decimal_separator: Literal[".", ","] = "."
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="canonical column -> value used when the files lack that column"
    )

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        value = "\t" if value in {"\\t", "tab"} else value
        if value != "whitespace" and len(value) != 1:
            raise ValueError("must be one character, '\\t' or 'whitespace'")
        return value


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


class TransformSettings(Section):
    as_of: date | None = Field(
        None, description="features describe the customers as of this day [the day after the latest order]"
    )
    horizon_days: int = Field(90, ge=7, le=730, description="labels: purchases in [as_of, as_of + horizon)")
    dbt_project_dir: ProjectPath = Field(
        SHIPPED / "dbt", description="the dbt project and its profiles.yml [the one Clarion ships]"
    )
    keep_staging: bool = Field(True, description="keep the staging build after publishing (for debugging)")
    dbt_node_tasks: bool = Field(
        False,
        description="run every dbt model and test as its own Prefect task (prefect-dbt); finer in the UI, "
        "but about 10 s more per run [one dbt-build task with a table of nodes]",
    )


class QualitySettings(Section):
    suites_dir: ProjectPath = Field(
        SHIPPED / "expectations", description="versioned suites raw.yml, marts.yml [the ones Clarion ships]"
    )
    data_docs: bool = Field(True, description="build Great Expectations Data Docs under var/gx")
    sample_failures: int = Field(10, ge=0, le=1000, description="failing values/rows kept per expectation")


class SegmentSettings(Section):
    horizon_days: int = Field(
        90, ge=14, le=365, description="targets: purchase and spend in the days after as_of"
    )
    retrain: bool = Field(
        False, description="train a new model version on every run [reuse the promoted one]"
    )
    max_model_age_days: int = Field(
        35,
        ge=1,
        le=3650,
        description="retrain when the promoted version was trained for a day more than this many days "
        "before the day to score",
    )
    snapshots: int = Field(
        13, ge=1, le=60, description="past days stacked into the training data (labels complete for each)"
    )
    snapshot_every_days: int = Field(28, ge=7, le=182, description="days between those snapshot days")
    training_rows: int = Field(
        300_000,
        ge=1000,
        description="about this many customer-days across the snapshots; each day's customers are "
        "sampled by a hash of the id when there are more",
    )
    seed: int = Field(7, description="seed of the customer-base (BG/NBD) fits' subsamples")
    calibration: Literal["auto", "isotonic", "platt"] = Field(
        "auto", description="probability calibration; auto picks the lower Brier on held-out customers"
    )
    trees: int = Field(
        60,
        ge=10,
        le=2000,
        description="most boosting rounds (early stopping may keep fewer; explaining costs grow with trees)",
    )
    leaves: int = Field(8, ge=4, le=255, description="leaves per tree")
    max_depth: int = Field(
        3, ge=2, le=16, description="depth per tree (explaining cost grows with its square)"
    )
    promote_tolerance: float = Field(
        0.005,
        ge=0,
        le=0.1,
        description="a new version is not promoted if its ROC AUC is lower than the promoted one's by more",
    )
    calibration_tolerance: float = Field(
        0.01,
        ge=0,
        le=0.2,
        description="... nor if its ECE is higher than the promoted one's by more than this",
    )
    reasons: int = Field(4, ge=1, le=8, description="reason codes per customer")
    min_reason_effect: float = Field(0.02, ge=0, description="smallest SHAP effect (log-odds) worth a reason")
    close_to_average: float = Field(
        0.1,
        ge=0,
        description="a score within this many log-odds of the average customer's is called close to average",
    )
    risk_basis: Literal["relative", "absolute"] = Field(
        "relative",
        description="relative: at risk / safe against the shop's own purchase rate (at_risk_below, "
        "safe_from); absolute: fixed churn-risk thresholds (risk_high, risk_low)",
    )
    at_risk_below: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="relative: at risk when the purchase probability is below this multiple of the "
        "shop's mean purchase probability",
    )
    safe_from: float = Field(
        1.5,
        gt=1,
        description="relative: safe (loyal, champions) from this multiple of the shop's mean purchase "
        "probability",
    )
    risk_high: float = Field(0.6, gt=0, lt=1, description="absolute: churn risk at or above this is at risk")
    risk_low: float = Field(0.3, gt=0, lt=1, description="absolute: churn risk below this is safe")
    value_high_quantile: float = Field(
        0.75, gt=0, lt=1, description="12-month spend at or above this quantile of buyers is high value"
    )
    new_days: int = Field(90, ge=0, description="customers for fewer days than this are new")
    explain_chunk_rows: int = Field(100_000, ge=1000, description="customers explained per chunk")

    @model_validator(mode="after")
    def _ordered(self):
        if self.risk_low >= self.risk_high:
            raise ValueError(
                f"segment.risk_low ({self.risk_low}) must be below segment.risk_high ({self.risk_high})"
            )
        return self


class ContentSettings(Section):
    briefs: ProjectPath = Field(Path("campaigns"), description="folder of campaign briefs (*.yaml)")
    source: ProjectPath | None = Field(
        None,
        description="a local Hugging Face causal-LM directory or .gguf file [embedded SmolLM2-135M-Instruct]",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when torch sees one")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' precision; auto: bfloat16 on a GPU, float32 on the CPU"
    )
    batch_size: int = Field(32, ge=1, le=1024, description="prompts x candidates per forward pass")
    candidates: int = Field(6, ge=1, le=64, description="sampled candidates per slot and variant")
    max_new_tokens: int = Field(32, ge=4, le=256, description="longest slot the model may write, in tokens")
    temperature: float = Field(0.8, gt=0, le=2, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling")
    seed: int = Field(7, description="same seed, same briefs and segments: same drafts")
    min_meaning: float = Field(
        0.6, ge=-1, le=1, description="a rewritten slot must keep this cosine similarity to the brief's seed"
    )


# fields a report subject may name (clarion/report/mail.py fills them)
REPORT_SUBJECT_FIELDS = (
    "as_of",
    "run_id",
    "customers",
    "at_risk_share",
    "at_risk_customers",
    "expected_value_eur",
    "model_version",
)
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _address(value: str) -> str:
    from email.utils import parseaddr

    _, addr = parseaddr(value)
    if "@" not in addr or addr.startswith("@") or addr.endswith("@") or " " in addr:
        raise ValueError(
            f"{value!r} is not an e-mail address (name@example.com or 'Name <name@example.com>')"
        )
    return value


class ReportSettings(Section):
    """The marketer report (`clarion report`) and its delivery by SMTP. Credentials are never in the
    file: ``username_env`` / ``password_env`` name the environment variables that hold them."""

    recipients: list[str] = Field(
        default_factory=list, description="who receives the report by e-mail [none: written, not sent]"
    )
    sender: str = Field("clarion@localhost", description="From: address of the report e-mail")
    smtp_host: str = Field("localhost", min_length=1, description="SMTP server that accepts the report")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port (587 with starttls is common)")
    starttls: bool = Field(
        False, description="upgrade to TLS with STARTTLS; fails when the server does not offer it"
    )
    username_env: str | None = Field(
        None, pattern=_ENV_NAME, description="environment variable holding the SMTP user name (AUTH)"
    )
    password_env: str | None = Field(
        None, pattern=_ENV_NAME, description="environment variable holding the SMTP password"
    )
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="SMTP connect and reply timeout")
    retries: int = Field(3, ge=0, le=10, description="retries of a failed send before it is reported")
    retry_seconds: float = Field(2.0, ge=0, le=600, description="pause between send attempts")
    subject: str = Field(
        "Clarion segment report {as_of}: {customers} customers, {at_risk_share} at risk",
        min_length=1,
        description="subject template; fields: " + ", ".join(REPORT_SUBJECT_FIELDS),
    )
    outbox: ProjectPath | None = Field(
        None,
        description="local outbox folder: the report is sent to an SMTP server inside Clarion that saves "
        "it there as <timestamp>-<n>.eml (demo, no SMTP server) [none: send to smtp_host]",
    )

    @field_validator("recipients", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # CLARION_REPORT__RECIPIENTS=a@x.com,b@y.com
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _address(value)

    @field_validator("subject")
    @classmethod
    def _template(cls, value: str) -> str:
        import string

        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(names - set(REPORT_SUBJECT_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; known: {', '.join(REPORT_SUBJECT_FIELDS)}")
        return value

    @model_validator(mode="after")
    def _both_credentials(self):
        if bool(self.username_env) != bool(self.password_env):
            raise ValueError("give both username_env and password_env (SMTP AUTH), or neither")
        return self


class Settings(Section):
    """The whole configuration. Sections appear as the stages that read them arrive."""

    var_dir: ProjectPath = Field(Path("var"), description="runtime state: runs, registry, reports")
    currency: str | None = Field(
        None,
        pattern=r"^[A-Z]{3}$",
        description="the currency people read amounts in (reasons, explain, report), converted from the "
        "EUR features are kept in [the most common currency of the loaded orders]",
    )
    warehouse: WarehouseSettings = WarehouseSettings()
    generate: GenerateSettings = GenerateSettings()
    sources: dict[SourceName, SourceSpec] = Field(
        default_factory=lambda: {"crm": {"kind": "files", "path": "var/crm"}},
        description="named CRM sources: files, postgres, mariadb, hubspot",
    )
    extract: ExtractSettings = ExtractSettings()
    transform: TransformSettings = TransformSettings()
    quality: QualitySettings = QualitySettings()
    segment: SegmentSettings = SegmentSettings()
    content: ContentSettings = ContentSettings()
    report: ReportSettings = ReportSettings()
    prefect: PrefectSettings = PrefectSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _known_extract_sources(self):
        unknown = [n for n in self.extract.sources or [] if n not in self.sources]
        if unknown:
            raise ValueError(
                f"extract.sources names {unknown}, which are not in sources ({list(self.sources)})"
            )
        return self

    def fingerprint(self) -> str:
        """A stable hash of every setting, recorded with each run so a result names its config."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# loading


def find_config_file(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: --config, then $CLARION_CONFIG, then ./clarion.yaml if present."""
    env = os.environ if env is None else env
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"config file {path} does not exist: check --config / {CONFIG_ENV}"])
        return path
    if env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
        if not path.is_file():
            raise ConfigError([f"{CONFIG_ENV}={path} names a file that does not exist"])
        return path
    default = Path.cwd() / DEFAULT_FILE
    return default if default.is_file() else None


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the file, apply environment then command-line overrides, validate, fail with every problem.

    ``overrides`` is a nested mapping (``{"generate": {"customers": 500}}``) from command-line flags;
    ``None`` values in it are ignored so unset flags do not mask the file.
    """
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    source_name = str(file) if file else "default settings"
    if file is not None:
        data = _read_yaml(file)
        for key_path in _leaf_paths(data):
            origin[key_path] = str(file.name)
    problems: list[str] = []
    for name, spec in Settings.model_fields.items():
        # an override of one key inside a defaulted mapping (CLARION_SOURCES__CRM__PATH) edits the
        # default mapping rather than replacing it
        overridden = any(k.startswith(f"{ENV_PREFIX}{name.upper()}__") for k in env)
        if get_origin(spec.annotation) is dict and spec.default_factory and name not in data and overridden:
            data[name] = json.loads(json.dumps(spec.default_factory(), default=str))
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key_path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        problem = _check_known_path(key_path, name)
        if problem:
            problems.append(problem)
            continue
        _set_path(data, key_path, _parse_scalar(raw))
        origin[key_path] = name
    for key_path, value in _leaf_items(overrides or {}):
        if value is None:
            continue
        _set_path(data, key_path, value)
        origin[key_path] = "command line"
    if problems:
        raise ConfigError(problems, source=source_name)
    root = file.parent.resolve() if file else Path.cwd()
    for name, spec in Settings.model_fields.items():
        # a section left out is validated from {} so its defaults get the same path handling
        if isinstance(spec.annotation, type) and issubclass(spec.annotation, BaseModel):
            data.setdefault(name, {})
    try:
        return Settings.model_validate(data, context={"root": root})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin), source=source_name) from None


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"], source=str(file)
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            [f"the top level must be a mapping of sections, found {type(loaded).__name__}"], source=str(file)
        )
    return loaded


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _leaf_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    return [path for path, _ in _leaf_items(data, prefix)]


def _leaf_items(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    items: list[tuple[tuple[str, ...], Any]] = []
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            items += _leaf_items(value, path)
        else:
            items.append((path, value))
    return items


def _set_path(data: dict[str, Any], key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in key_path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[key_path[-1]] = value


def _model_at(key_path: tuple[str, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """Walk the settings classes along a key path; return the last model and the first unknown key.

    A mapping (``sources``) takes any key; below a union of models (a source of some kind) the
    path cannot be checked here, and validation reports what is wrong instead.
    """
    model: type[BaseModel] = Settings
    i = 0
    while i < len(key_path):
        part = key_path[i]
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return model, part
        annotation = field.annotation
        if get_origin(annotation) is dict and i + 1 < len(key_path):
            i += 1  # the mapping's key
            value_type = get_args(annotation)[1]
            annotation = value_type
            if get_origin(annotation) is Annotated:
                annotation = get_args(annotation)[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif any(isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(annotation)):
            return None, None  # a union of models: validation judges the rest
        elif i < len(key_path) - 1:
            return None, key_path[i + 1]
        i += 1
    return model, None


def _model_for(raw_loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The settings class at an error's location, following the union tag pydantic puts in it."""
    if len(raw_loc) >= 3 and raw_loc[0] == "sources" and raw_loc[2] in SOURCE_KINDS:
        by_kind = {"files": FilesSource, "postgres": DatabaseSource, "mariadb": DatabaseSource}
        model: type[BaseModel] = by_kind.get(raw_loc[2], HubSpotSource)
        for part in raw_loc[3:]:
            field = model.model_fields.get(part)
            annotation = field.annotation if field else None
            if get_origin(annotation) is dict:
                annotation = get_args(annotation)[1]
            if (
                get_origin(annotation) in (None,)
                and isinstance(annotation, type)
                and issubclass(annotation, BaseModel)
            ):
                model = annotation
            else:
                args = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
                if not args:
                    continue
                model = args[0]
        return model
    return _model_at(raw_loc)[0]


def _check_known_path(key_path: tuple[str, ...], env_name: str) -> str | None:
    model, unknown = _model_at(key_path)
    if unknown is None:
        return None
    dotted = ".".join(key_path)
    if model is None:
        return f"{env_name} ({dotted}): '{unknown}' is below a plain value, not a section"
    return f"{env_name} ({dotted}): unknown key '{unknown}'{_suggest(unknown, model)}"


def _suggest(key: str, model: type[BaseModel]) -> str:
    valid = list(model.model_fields)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} Valid keys here: {', '.join(valid)}"


def _explain(exc: ValidationError, origin: Mapping[tuple[str, ...], str]) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err["loc"])
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
            loc = loc[:2] + loc[3:]  # pydantic puts the union's tag in the path; people do not write it
        dotted = ".".join(loc) or "(top level)"
        where = origin.get(loc)
        where_txt = f" (from {where})" if where else ""
        if err["type"] == "extra_forbidden":
            model = _model_for(tuple(str(p) for p in err["loc"][:-1])) or Settings
            problems.append(f"{dotted}{where_txt}: unknown key '{loc[-1]}'{_suggest(loc[-1], model)}")
            continue
        given = err.get("input")
        if loc and loc[-1] == "[key]":
            parent = ".".join(loc[:-2])  # the mapping that holds the key, not the key itself
            problems.append(f"{parent}{where_txt}: {given!r} is not allowed here; {_expected(err)}")
            continue
        if err["type"] == "missing" or isinstance(given, dict):
            problems.append(f"{dotted}{where_txt}: {_expected(err)}")
            continue
        problems.append(f"{dotted}{where_txt}: {_expected(err)}, got {given!r}")
    return problems


def _expected(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "union_tag_invalid":
        return f"expected kind one of {', '.join(SOURCE_KINDS)}"
    if kind == "union_tag_not_found":
        return f"needs a 'kind': one of {', '.join(SOURCE_KINDS)}"
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return "expected a whole number"
    if kind in {"float_parsing", "float_type"}:
        return "expected a number"
    if kind in {"bool_parsing", "bool_type"}:
        return "expected true or false"
    if kind.startswith("date"):
        return "expected a date as YYYY-MM-DD"
    if kind == "model_type" or kind == "dict_type":
        return "expected a section (a mapping of keys)"
    if kind == "string_pattern_mismatch":
        return "expected a size such as 4GB or 512MB"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return err["msg"].replace("Input should be", "expected a value")
    return err["msg"].replace("Input should be", "expected")


def describe() -> list[dict[str, Any]]:
    """Every key with its type, default and meaning, for `clarion config --keys` and the README."""
    rows: list[dict[str, Any]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            dotted = f"{prefix}{name}"
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, dotted + ".")
                continue
            rows.append(
                {
                    "key": dotted,
                    "env": ENV_PREFIX + dotted.upper().replace(".", "__"),
                    "default": field.default if not isinstance(field.default, Path) else str(field.default),
                    "description": field.description or "",
                }
            )

    walk(Settings, "")
    return rows
