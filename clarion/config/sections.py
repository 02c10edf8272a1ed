"""The settings sections of every stage, and `Settings`, the whole configuration."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clarion.config.alerts import AlertsSettings
from clarion.config.api import ApiSettings
from clarion.config.base import (
    ENV_NAME,
    SHIPPED,
    ProjectPath,
    Section,
    _under_root,
    comma_list,
    email_address,
    not_a_setting,
)
from clarion.config.loop import ExperimentsSettings, NbaSettings
from clarion.config.ml import MlSettings
from clarion.config.privacy import FairnessSettings, OversightSettings, PrivacySettings, RetentionSettings
from clarion.config.sources import ExtractSettings, SourceName, SourceSpec


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
    data_docs_index_results: int = Field(
        200,
        ge=1,
        le=100_000,
        description="validation results the Data Docs index lists, newest first (every result keeps its"
        " own page under var/gx; the index is rebuilt at every gate, so it reads only these)",
    )
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
    rescore: Literal["changed", "all"] = Field(
        "changed",
        description="changed: a customer whose inputs, model and wording are those of the previous scoring "
        "run keeps its score, explanation and reasons (segments are assigned again); all: every customer "
        "is scored and explained again on every run",
    )
    lifecycle_fit: Literal["per_day", "per_run"] = Field(
        "per_day",
        description="per_day: the first run of a day fits BG/NBD and Gamma-Gamma and later runs of the "
        "same day reuse its parameters (a refit after an erasure), so late rows move only their own "
        "customers' lifecycle features; per_run: fitted again on every run",
    )

    @model_validator(mode="after")
    def _ordered(self):
        if self.risk_low >= self.risk_high:
            raise ValueError(
                f"segment.risk_low ({self.risk_low}) must be below segment.risk_high ({self.risk_high})"
            )
        return self


def _model_source(value: Any, info: ValidationInfo) -> Any:
    """content.source: a model server's URL (checked, kept as a string) or a project path."""
    if isinstance(value, str) and value.strip():
        from models.content.remote import endpoint, is_url, looks_like_address

        if is_url(value.strip()):
            return endpoint(value)
        if looks_like_address(value) and not Path(value).exists():
            raise ValueError(
                f"{value!r} looks like a model server's address without its scheme: write "
                f"http://{value.strip()} (or give a local model directory or .gguf file)"
            )
    if isinstance(value, str | Path):
        return _under_root(Path(value), info)
    return value


# a local model (directory or .gguf, relative to the project) or an OpenAI-compatible server's URL
ModelSource = Annotated[str | Path, BeforeValidator(_model_source)]


class ContentSettings(Section):
    briefs: ProjectPath = Field(Path("campaigns"), description="folder of campaign briefs (*.yaml)")
    source: ModelSource | None = Field(
        None,
        description="a local Hugging Face causal-LM directory or .gguf file, or the http(s) URL of an "
        "OpenAI-compatible model server (…/v1) [embedded SmolLM2-135M-Instruct]",
    )
    model_cache: ProjectPath | None = Field(
        None,
        description="folder for converted copies of .gguf models; empty: one per machine user, shared by "
        "every project ($XDG_CACHE_HOME/clarion/models, else "
        "~/.cache/clarion/models)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses a GPU when torch sees one")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' precision; auto: bfloat16 on a GPU, float32 on the CPU"
    )
    batch_size: int = Field(32, ge=1, le=1024, description="prompts x candidates per forward pass")
    candidates: int = Field(6, ge=1, le=64, description="sampled candidates per slot and variant")
    max_new_tokens: int = Field(
        80, ge=4, le=256, description="caps every slot's token budget (models/content/slots.py: a body 80)"
    )
    # measured on the demo briefs against 0.8 and 0.95: usable candidates 46% -> 75% (bench/RESULTS.md)
    temperature: float = Field(0.6, gt=0, le=2, description="sampling temperature")
    top_p: float = Field(0.8, gt=0, le=1, description="nucleus sampling")
    seed: int = Field(7, description="same seed, same briefs and segments: same drafts")
    min_meaning: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="the cosine similarity to the brief's seed a rewritten slot must keep; empty: each "
        "slot's floor calibrated on the brand corpus (docs/content.md, 'The meaning floor')",
    )
    # on-demand drafts (one segment, one channel, one variant, while someone waits): fewer candidates
    # and shorter slots than the batch stage, both slots in one generate call (bench/ondemand.py)
    on_demand_candidates: int = Field(
        2, ge=1, le=16, description="sampled candidates per slot of an on-demand draft"
    )
    on_demand_max_new_tokens: int = Field(
        64, ge=4, le=256, description="longest slot of an on-demand draft, in tokens"
    )
    on_demand_wait_seconds: float = Field(
        5.0, ge=0, le=600, description="how long an on-demand draft waits for the writer lock to store it"
    )
    # a model server instead of the embedded model: content.source set to an http(s) URL of an
    # OpenAI-compatible API (vLLM, llama.cpp server, TGI, Ollama, `transformers serve`), e.g.
    # http://127.0.0.1:8000/v1 (models/content/remote.py)
    model: str | None = Field(
        None, description="the model name a model server is asked for [the server's only/first model]"
    )
    api_key_env: str | None = Field(
        None, pattern=ENV_NAME, description="environment variable holding the model server's API key"
    )
    api_key_secret: str | None = Field(
        None, description="name of a Prefect Secret block holding the model server's API key"
    )
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight to a model server at once")
    request_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds one model-server request may take"
    )
    retries: int = Field(3, ge=0, le=20, description="retries of a failed model-server request, with backoff")
    # the brand: LoRA adapters learned from approved drafts, edits and a corpus (`clarion content tune`)
    adapter: str = Field(
        "auto",
        description="auto: the promoted adapter from the registry, if any; none; or a local adapter folder",
    )
    brand_corpus: ProjectPath | None = Field(
        Path("campaigns/brand"), description="folder of approved brand copy for `clarion content tune`"
    )

    @field_validator("api_key_env")
    @classmethod
    def _key_not_a_setting(cls, value: str | None) -> str | None:
        return not_a_setting(value, "model server's API key", "CONTENT_API_KEY")

    @model_validator(mode="after")
    def _one_key(self):
        if self.api_key_env and self.api_key_secret:
            raise ValueError(
                "content.api_key_env and content.api_key_secret are both set: give the model server's key "
                "in one place (an environment variable or a Prefect Secret block)"
            )
        return self


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
_ENV_NAME = ENV_NAME


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
        return comma_list(value)

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [email_address(v) for v in value]

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return email_address(value)

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


class AuditSettings(Section):
    """The audit log's anchors kept outside the warehouse (`clarion audit anchor|verify`)."""

    anchor_file: ProjectPath | None = Field(
        None,
        description="file `clarion audit anchor` appends the head (seq, hash) to, best on another disk or "
        "host; `clarion audit verify` checks every anchor in it [none: print only]",
    )
    hmac_key_env: str | None = Field(
        None,
        pattern=_ENV_NAME,
        description="environment variable holding the audit key: each event's hash is then an HMAC-SHA256 "
        "with it, which a writer without the key cannot forge [none: plain sha256]",
    )

    hmac_key_secret: str | None = Field(
        None,
        min_length=1,
        description="name of a Prefect Secret block holding the audit key (instead of hmac_key_env)",
    )

    @model_validator(mode="after")
    def _one_key(self):
        if self.hmac_key_env and self.hmac_key_secret:
            raise ValueError(
                "give hmac_key_env (an environment variable) or hmac_key_secret (a Prefect "
                "Secret block) for the audit key, not both"
            )
        return self

    @field_validator("hmac_key_env")
    @classmethod
    def _not_a_setting(cls, value: str | None) -> str | None:
        return not_a_setting(value, "audit key", "AUDIT_HMAC_KEY")


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
    audit: AuditSettings = AuditSettings()
    experiments: ExperimentsSettings = ExperimentsSettings()
    nba: NbaSettings = NbaSettings()
    ml: MlSettings = MlSettings()
    privacy: PrivacySettings = PrivacySettings()
    retention: RetentionSettings = RetentionSettings()
    fairness: FairnessSettings = FairnessSettings()
    oversight: OversightSettings = OversightSettings()
    alerts: AlertsSettings = AlertsSettings()
    api: ApiSettings = ApiSettings()
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
