"""One configuration object for every stage: ``clarion.yaml`` plus ``CLARION_*`` environment overrides.

The settings are read once (by the CLI or the flow entry point) and passed down; library code never
reads the environment or the file itself. Every key can be overridden from the environment with
``CLARION_<SECTION>__<KEY>`` (double underscore between levels), e.g.
``CLARION_WAREHOUSE__LOCK_WAIT_SECONDS=30``. Values are parsed as YAML scalars, so ``true``, ``30``
and ``[a, b]`` mean what they look like. A wrong key or value fails before anything runs, naming the
key path, where it came from, and what is expected.

Layout: `base` (the section base class, project-relative paths), `sources` (the `sources:` and
`extract:` sections), `sections` (every other section and `Settings`), `loading` (file + environment
-> Settings, messages naming the wrong key, `describe()`). Import from `clarion.config`.
"""

from clarion.config.alerts import AlertsSettings
from clarion.config.api import ApiSettings
from clarion.config.base import CONFIG_ENV, DEFAULT_FILE, ENV_PREFIX, SHIPPED, ProjectPath, Section
from clarion.config.loading import describe, find_config_file, load_settings
from clarion.config.loop import ExperimentsSettings, NbaSettings
from clarion.config.ml import MlSettings, RecommendationSettings, VocSettings
from clarion.config.privacy import FairnessSettings, OversightSettings, PrivacySettings, RetentionSettings
from clarion.config.sections import (
    REPORT_SUBJECT_FIELDS,
    AuditSettings,
    ContentSettings,
    GenerateSettings,
    LoggingSettings,
    PrefectSettings,
    QualitySettings,
    ReportSettings,
    SegmentSettings,
    Settings,
    TransformSettings,
    WarehouseSettings,
)
from clarion.config.sources import (
    SOURCE_KINDS,
    DatabaseSource,
    EntityName,
    ExtractSettings,
    FileEntity,
    FilesSource,
    HubSpotSource,
    SecretRef,
    SourceName,
    SourceSpec,
    TableSpec,
    TransactionsFile,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_FILE",
    "ENV_PREFIX",
    "REPORT_SUBJECT_FIELDS",
    "SHIPPED",
    "SOURCE_KINDS",
    "AlertsSettings",
    "ApiSettings",
    "AuditSettings",
    "ContentSettings",
    "DatabaseSource",
    "EntityName",
    "ExperimentsSettings",
    "ExtractSettings",
    "FairnessSettings",
    "FileEntity",
    "FilesSource",
    "GenerateSettings",
    "HubSpotSource",
    "LoggingSettings",
    "MlSettings",
    "NbaSettings",
    "OversightSettings",
    "PrefectSettings",
    "PrivacySettings",
    "ProjectPath",
    "QualitySettings",
    "RecommendationSettings",
    "ReportSettings",
    "RetentionSettings",
    "SecretRef",
    "Section",
    "SegmentSettings",
    "Settings",
    "SourceName",
    "SourceSpec",
    "TableSpec",
    "TransactionsFile",
    "TransformSettings",
    "VocSettings",
    "WarehouseSettings",
    "describe",
    "find_config_file",
    "load_settings",
]
