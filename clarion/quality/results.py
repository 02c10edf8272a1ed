"""What a quality gate found: each check's result, the gate's verdict, and the error that stops a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clarion.errors import ClarionError
from clarion.privacy.scrub import PII_FIELDS

COMPARED = ("row_count_ratio", "psi")  # metrics measured against a previous publication
NOTHING = "nothing_to_measure"


class QualityGateError(ClarionError):
    """A `fail` check did not pass: nothing is published, later stages do not run."""

    exit_code = 4

    def __init__(self, gate: GateResult) -> None:
        self.gate = gate
        lines = [f"quality gate '{gate.suite}' failed: {len(gate.failures)} check(s) with severity fail"]
        lines += [f"  - {r.describe()}" for r in gate.failures]
        if gate.data_docs:
            lines.append(f"  Data Docs: {gate.data_docs}")
        lines.append(
            "  Nothing was published: marts keep the last good build. Fix the data (rejected rows:"
            " `clarion quarantine`), or, if the change is expected, edit the check in"
            f" {gate.suite}.yml of quality.suites_dir and raise its version; then run again."
        )
        super().__init__("\n".join(lines))


@dataclass
class CheckResult:
    check_id: str
    severity: str
    status: str  # passed | failed | skipped (no earlier publication) | nothing_to_measure | invalid
    kind: str  # the expectation, or metric:<name>
    table: str | None = None
    column: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)
    sample: list[Any] = field(default_factory=list)
    why: str = ""

    def describe(self) -> str:
        if self.status == "invalid":
            return f"{self.check_id}: {self.why}"
        where = ".".join(x for x in (self.table, self.column) if x) or "all tables"
        shown_observed = {k: v for k, v in self.observed.items() if k not in ("measured", "outside")}
        measured, outside = self.observed.get("measured"), self.observed.get("outside")
        if measured is not None:  # a metric: how many of its measurements broke the bound
            unit = "table" if measured == 1 else "tables"
            shown_observed["out of bounds"] = f"{outside} of {measured} {unit}"
        seen = ", ".join(f"{k} {v}" for k, v in shown_observed.items() if v is not None)
        shown = [_sample_text(s, self.column) for s in self.sample[:5]]
        sample = f"; e.g. {', '.join(shown)}" if shown else ""
        why = f". {self.why}" if self.why else ""
        if self.status == NOTHING:
            seen = "nothing to measure" + (f" ({seen})" if seen else "")
        return f"{self.check_id} ({self.kind} on {where}): {seen}{sample}{why}"


@dataclass
class GateResult:
    suite: str
    version: int
    results: list[CheckResult]
    data_docs: str | None = None
    seconds: float = 0.0

    @property
    def failures(self) -> list[CheckResult]:
        """Broken `fail` checks, `fail` checks with nothing to measure, and any check whose table or
        column does not exist (whatever its severity: a check that cannot run guards nothing)."""
        return [
            r
            for r in self.results
            if r.status == "invalid" or (r.status in ("failed", NOTHING) and r.severity == "fail")
        ]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.status in ("failed", NOTHING) and r.severity == "warn"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        counts = {s: sum(1 for r in self.results if r.status == s) for s in ("passed", "skipped", NOTHING)}
        return {
            "suite": self.suite,
            "version": self.version,
            "ok": self.passed,
            **counts,
            "failed": len(self.failures) + len(self.warnings),
            "failures": [r.describe() for r in self.failures],
            "warnings": [r.describe() for r in self.warnings],
            "data_docs": self.data_docs,
        }


def _sample_text(sample: Any, column: str | None = None) -> str:
    """A failing metric row as `table.column=value`; a failing table row as `value=...`.

    Messages leave the warehouse (the CLI, Prefect's failure state, logs), so a row's contact id is
    not in them (the rows are in audit.quality_results; the artifact names them by pseudonym) and a
    personal column's value is withheld."""
    if isinstance(sample, dict):
        value = sample.get("value")
        shown = f"{value:.4g}" if isinstance(value, float) else value
        if "table" in sample:
            where = ".".join(str(sample[k]) for k in ("table", "column") if sample.get(k))
            return f"{where}={shown}"
        return " ".join(
            f"{k}={'[withheld]' if (k in PII_FIELDS or column in PII_FIELDS) and v is not None else v}"
            for k, v in sample.items()
            if k != "contact_id"
        )
    return "[withheld]" if column in PII_FIELDS and sample is not None else str(sample)
