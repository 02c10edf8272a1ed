"""Quality suites: versioned YAML files, one check per entry, each with a severity.

A check is either a Great Expectations expectation on a table (``table`` + ``expectation`` +
``kwargs``), or a bound on a metric Clarion computes in SQL (``metric`` + ``min``/``max``, for some
``tables`` and ``columns``), validated with Great Expectations as well. ``fail`` stops the run;
``warn`` is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import great_expectations as gx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from clarion.errors import ConfigError

# Custom metrics only for what no single table's rows show: volume against the last publication,
# the share a load rejected, the age of the latest load, drift, labels past the loaded orders. Row
# counts, missing values, keys and ranges are Great Expectations expectations (or dbt tests).
METRICS = {
    "raw": ("row_count_ratio", "quarantine_rate", "hours_since_load"),
    "marts": ("row_count_ratio", "psi", "unfinished_labels"),
}
INSTEAD = {
    "row_count": "expect_table_row_count_to_be_between",
    "null_rate": "expect_column_values_to_not_be_null (with `mostly`)",
}


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    severity: Literal["fail", "warn"]
    why: str = ""
    # an expectation on a table
    table: str | None = None
    expectation: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # or a bound on a metric
    metric: str | None = None
    tables: list[str] | None = None  # None: every table the metric is computed for
    column: str | None = None
    columns: list[str] | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_kind(self, info: ValidationInfo) -> Check:
        suite = (info.context or {}).get("suite")
        if self.metric is not None and suite in METRICS and self.metric not in METRICS[suite]:
            instead = f"; use the expectation {INSTEAD[self.metric]}" if self.metric in INSTEAD else ""
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(METRICS[suite])}{instead}")
        if (self.expectation is None) == (self.metric is None):
            raise ValueError("give either `expectation` (with `table`) or `metric` (with `min`/`max`)")
        if self.expectation is not None:
            if not self.table:
                raise ValueError("an expectation needs the `table` it applies to")
            name = "".join(part.title() for part in self.expectation.split("_"))
            if not hasattr(gx.expectations, name):
                raise ValueError(f"Great Expectations has no expectation {self.expectation!r}")
        elif self.min is None and self.max is None:
            raise ValueError("a metric check needs `min`, `max` or both")
        return self

    @property
    def is_metric(self) -> bool:
        return self.metric is not None

    @property
    def names(self) -> list[tuple[str | None, str | None]]:
        """(table, column) pairs the check refers to; column None: the table itself, table None:
        every table the metric is measured for."""
        if not self.is_metric:
            columns = [self.kwargs.get(k) for k in ("column", "column_A", "column_B")]
            columns += list(self.kwargs.get("column_list") or [])
            return [(self.table, None)] + [(self.table, c) for c in columns if c]
        columns = [c for c in self.metric_columns if c]
        return [(t, c) for t in (self.tables or [None]) for c in [None, *columns]]

    @property
    def metric_columns(self) -> list[str | None]:
        return self.columns or [self.column]

    def gx_expectation(self) -> Any:
        """The Great Expectations object this check validates with (metric checks: on the metrics frame)."""
        meta = {"check": self.id, "severity": self.severity}
        if not self.is_metric:
            cls = getattr(gx.expectations, "".join(part.title() for part in self.expectation.split("_")))
            return cls(**self.kwargs, meta=meta)
        from great_expectations.expectations.row_conditions import Column

        condition = Column("metric") == self.metric
        if self.tables:
            condition = condition & Column("table").is_in(self.tables)
        columns = [c for c in self.metric_columns if c]
        if columns:
            condition = condition & Column("column").is_in(columns)
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column="value", min_value=self.min, max_value=self.max, row_condition=condition, meta=meta
        )


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: Literal["raw", "marts"]
    version: int = Field(ge=1)
    checks: list[Check]
    _path: str = PrivateAttr(default="")

    @property
    def path(self) -> str:
        """The file the suite was read from (for messages)."""
        return self._path or f"{self.suite}.yml"

    @model_validator(mode="after")
    def _checks_fit(self) -> Suite:
        seen: set[str] = set()
        for check in self.checks:
            if check.id in seen:
                raise ValueError(f"check id {check.id!r} appears twice")
            seen.add(check.id)
        return self

    @property
    def table_checks(self) -> dict[str, list[Check]]:
        grouped: dict[str, list[Check]] = {}
        for check in self.checks:
            if not check.is_metric:
                grouped.setdefault(check.table, []).append(check)
        return grouped

    @property
    def metric_checks(self) -> list[Check]:
        return [c for c in self.checks if c.is_metric]


def load_suite(folder: Path, name: str) -> Suite:
    """Read and validate ``<folder>/<name>.yml``; a wrong check stops with its place and what to fix."""
    path = Path(folder) / f"{name}.yml"
    if not path.is_file():
        raise ConfigError(
            [f"no suite file {path}: restore it from git or point quality.suites_dir elsewhere"]
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        context = {"suite": data.get("suite")} if isinstance(data, dict) else {}
        suite = Suite.model_validate(data, context=context)
        suite._path = str(path)
        return suite
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = err["loc"]
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "checks" and isinstance(loc[1], int):
                check = (data.get("checks") or [])[loc[1]]
                ident = check.get("id", f"#{loc[1] + 1}") if isinstance(check, dict) else f"#{loc[1] + 1}"
                where = f"check {ident}" + ("." + ".".join(str(p) for p in loc[2:]) if loc[2:] else "")
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(problems, source=str(path)) from None
