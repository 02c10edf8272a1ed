"""Alerts: what went wrong in a run, told to people by e-mail and to systems by webhook.

An alert is built from what the run already recorded (its id, stage, the failing gate's checks, the
registry's decision, fairness findings) and never from the data itself: it carries ids of runs,
versions and checks, counts, and the commands to run next, never a customer's name, e-mail, contact
id or free text (error text goes through clarion.privacy.scrub, and only the error's class is sent).

`Watch` follows one pipeline run (flows/pipeline.py) and sends its alerts once the warehouse lock is
released; sending (clarion.ops.alerts_send) never raises: a failed delivery is logged and kept in
``{var_dir}/alerts/alerts.sqlite`` so it is not lost, and the run's own result stands. A late run is
noticed by a Prefect automation (clarion.ops.alerts_prefect), since a run that never starts cannot
report itself. The body's schema is documented in docs/alerts.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from clarion import audit
from clarion.config import Settings
from clarion.privacy import scrub

log = logging.getLogger(__name__)

SCHEMA = "clarion.alert/1"
TITLES = {
    "failed_run": "Clarion run failed",
    "late_run": "Clarion daily run is late",
    "gate_failed": "Clarion quality gate failed",
    "model_not_promoted": "Clarion model not promoted",
    "fairness_flag": "Clarion fairness finding",
    "test": "Clarion test alert",
}


@dataclass(frozen=True)
class Alert:
    """One alert: the event, where it happened, figures, and what a person should do next."""

    event: str
    summary: str
    run_id: str | None = None
    stage: str | None = None
    deployment: str | None = None
    flow_run_id: str | None = None
    prefect_url: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)
    occurred_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def title(self) -> str:
        return TITLES.get(self.event, "Clarion alert")

    def body(self) -> dict[str, Any]:
        """The webhook's JSON body (docs/alerts.md#the-alert-body)."""
        return {"schema": SCHEMA, "title": self.title} | asdict(self)

    def subject(self) -> str:
        where = f" {self.run_id}" if self.run_id else ""
        what = self.title.removeprefix("Clarion ")
        return " ".join(f"[Clarion] {what}{where}: {self.summary}".split())[:200]

    def text(self) -> str:
        """The e-mail's plain text."""
        lines = [self.title, "", self.summary, ""]
        rows = [
            ("event", self.event),
            ("run", self.run_id),
            ("stage", self.stage),
            ("deployment", self.deployment),
            ("flow run", self.flow_run_id),
            ("Prefect UI", self.prefect_url),
            ("at", self.occurred_at),
        ]
        lines += [f"{k:<11} {v}" for k, v in rows if v]
        lines += [f"{k:<11} {v}" for k, v in self.counts.items()]
        for k, v in self.details.items():
            shown = ", ".join(map(str, v)) if isinstance(v, list) else v
            lines.append(f"{k:<11} {shown}")
        if self.next_steps:
            lines += ["", "What to do next:"] + [f"  {s}" for s in self.next_steps]
        lines += ["", "-- sent by Clarion (alerts: in clarion.yaml); aggregates and ids only."]
        return "\n".join(lines) + "\n"


# -- the events ------------------------------------------------------------------------------------
def failed_run(run_id: str | None, stage: str | None, exc: BaseException, **where: Any) -> Alert:
    """A run that stopped with an error: its class, and the scrubbed first line of a ClarionError's
    message (Clarion writes those; another error's message may quote data, so it stays home)."""
    from clarion.errors import ClarionError

    first = scrub.scrub(str(exc)).strip().splitlines() if isinstance(exc, ClarionError) else []
    return Alert(
        "failed_run",
        f"stopped at stage {stage or 'start'} with {type(exc).__name__}",
        run_id=run_id,
        stage=stage,
        details={"error": type(exc).__name__, "message": first[0][:300] if first else ""},
        next_steps=[
            "clarion status            # the run, its stages and its (scrubbed) error",
            "clarion run --resume      # continue it once the cause is fixed",
        ],
        **where,
    )


def gate_failed(run_id: str | None, stage: str | None, gate: Any, **where: Any) -> Alert:
    """A quality gate with failing `fail` checks (clarion.quality.gate.GateResult): check ids, tables
    and columns only; the failing values' samples stay in audit.quality_results."""
    failures = gate.failures
    return Alert(
        "gate_failed",
        f"quality gate '{gate.suite}' failed: {len(failures)} check(s) with severity fail; nothing published",
        run_id=run_id,
        stage=stage,
        counts={"failed_checks": len(failures), "checks": len(gate.results)},
        details={
            "suite": gate.suite,
            "suite_version": gate.version,
            "checks": [
                f"{r.check_id} ({'.'.join(x for x in (r.table, r.column) if x) or 'all tables'})"
                for r in failures
            ],
        },
        next_steps=[
            "clarion check             # the gates again, with each failing check",
            "clarion quarantine        # rejected rows, by where they came from",
        ],
        **where,
    )


def model_not_promoted(run_id: str | None, kept: dict[str, Any], **where: Any) -> Alert:
    """The segment stage's registry decision kept the promoted version (audit event model.kept)."""
    candidate, version = kept.get("candidate"), kept.get("version")
    held = version == candidate or not kept.get("previous")
    stays = "no version is promoted" if held else f"{version} stays promoted"
    reason = str(kept.get("reason") or "")
    return Alert(
        "model_not_promoted",
        f"candidate {candidate} was not promoted; {stays}",
        run_id=run_id,
        stage="segment",
        details={
            "candidate": candidate,
            "promoted": None if held else version,
            "candidate_roc_auc": kept.get("candidate_roc_auc"),
            "previous_roc_auc": kept.get("previous_roc_auc"),
            "reason": scrub.scrub(reason)[:500],
        },
        next_steps=[
            f"clarion models show {candidate}   # its card: metrics, calibration, fairness",
            "clarion models list       # every version and which one scores",
            f"clarion models promote {candidate}   # only after review, to override",
        ],
        **where,
    )


def fairness_flag(run_id: str | None, findings: list[dict[str, Any]], **where: Any) -> Alert:
    """Unsigned fairness findings at warn or fail. Scope kind, attribute, metric and figures only:
    neither group values nor finding ids (which name them) travel."""
    fails = [f for f in findings if f["severity"] == "fail"]
    kinds = sorted({str(f["id"]).split(":", 1)[0] for f in findings})
    return Alert(
        "fairness_flag",
        f"{len(findings)} fairness finding(s) not signed off ({len(fails)} at fail)",
        run_id=run_id,
        stage="segment",
        counts={"findings": len(findings), "fail": len(fails), "warn": len(findings) - len(fails)},
        details={
            "scopes": kinds,
            "attributes": sorted({str(f.get("attribute")) for f in findings}),
            "metrics": sorted({str(f.get("metric")) for f in findings}),
        },
        next_steps=[
            f"clarion fairness --run {run_id}   # the figures and each finding's id"
            if run_id
            else "clarion fairness",
            "clarion fairness accept FINDING_ID --by NAME --because TEXT   # sign one off after review",
        ],
        **where,
    )


def late_run(deployment: str, minutes: float, flow_run_id: str | None = None, **where: Any) -> Alert:
    return Alert(
        "late_run",
        f"no completed run of {deployment} within {minutes:g} minutes of its schedule",
        deployment=deployment,
        flow_run_id=flow_run_id,
        details={"late_after_minutes": minutes},
        next_steps=[
            "check that `clarion serve` or the worker of the deployment's work pool is running",
            "clarion status            # is a run writing, or did it fail?",
        ],
        **where,
    )


def test_alert(settings: Settings) -> Alert:
    return Alert(
        "test",
        "a test alert from `clarion alerts test`: this channel works",
        details={"channels": settings.alerts.channels(), "events": list(settings.alerts.events)},
        next_steps=["nothing: this is a test"],
    )


# -- what a run recorded ---------------------------------------------------------------------------
def from_run(settings: Settings, con: duckdb.DuckDBPyConnection, run_id: str, **where: Any) -> list[Alert]:
    """The alerts a run's records call for: a model kept (audit model.kept) and fairness findings
    nobody signed off (of the versions it registered and of what it scored and selected)."""
    wanted = set(settings.alerts.events)
    out: list[Alert] = []
    events = con.execute(
        "select action, details from audit.events where run_id = ? and action in (?, ?) order by seq",
        [run_id, audit.MODEL_KEPT, audit.MODEL_REGISTERED],
    ).fetchall()
    decoded = [(a, json.loads(d) if isinstance(d, str) else (d or {})) for a, d in events]
    if "model_not_promoted" in wanted:
        out += [model_not_promoted(run_id, d, **where) for a, d in decoded if a == audit.MODEL_KEPT]
    if "fairness_flag" in wanted:
        findings = _open_findings(
            settings, con, run_id, [d.get("version") for a, d in decoded if a != audit.MODEL_KEPT]
        )
        if findings:
            out.append(fairness_flag(run_id, findings, **where))
    return out


def _open_findings(
    settings: Settings, con: duckdb.DuckDBPyConnection, run_id: str, registered: list[str | None]
) -> list[dict[str, Any]]:
    from clarion import fairness
    from clarion.warehouse import relation_exists
    from models.registry import Registry, RegistryError

    found: dict[str, dict[str, Any]] = {}
    reg = Registry(settings.var_dir / "registry")
    for version in filter(None, registered):
        try:
            found |= {f["id"]: f for f in fairness.version_findings(reg.get(version).meta, version)}
        except RegistryError:
            continue
    scored = (
        relation_exists(con, "ml", "customer_scores")
        and con.execute("select count(*) > 0 from ml.customer_scores where run_id = ?", [run_id]).fetchone()[
            0
        ]
    )
    if scored:
        found |= {f["id"]: f for f in fairness.run_figures(settings, con, run_id)["findings"]}
    signed = fairness.signoffs(con, list(found))
    return [f for i, f in found.items() if i not in signed and f["severity"] in ("warn", "fail")]


# -- one pipeline run ------------------------------------------------------------------------------
class Watch:
    """Follows one pipeline run: the flow tells it the run id and stage as they change; it gathers
    the alerts the run calls for and sends them once, after the warehouse lock is released."""

    def __init__(self, settings: Settings | None, flow_run_id: str | None = None) -> None:
        self.settings = settings
        self.run_id: str | None = None
        self.stage: str | None = None
        self.pending: list[Alert] = []
        self.where = _prefect_context(flow_run_id)
        self.outcome: dict[str, Any] = {"configured": bool(settings and settings.alerts.configured)}

    @property
    def on(self) -> bool:
        return bool(self.outcome["configured"])

    def wants(self, event: str) -> bool:
        return self.on and self.settings is not None and event in self.settings.alerts.events

    def recorded(self, con: duckdb.DuckDBPyConnection) -> None:
        """Gather what the run recorded (model kept, fairness); never raises."""
        if not self.on or self.run_id is None or self.settings is None:
            return
        try:
            self.pending += from_run(self.settings, con, self.run_id, **self.where)
        except Exception as exc:  # an alert must not fail the run
            log.warning("alerts: could not read run %s's records (%s)", self.run_id, type(exc).__name__)

    def failed(self, exc: BaseException) -> None:
        """The run stopped with ``exc``: a failed gate is told as such (one incident, one alert, when
        gate_failed is wanted), any other error as failed_run."""
        from clarion.quality.gate import QualityGateError

        if not self.on:
            return
        try:
            if isinstance(exc, QualityGateError) and self.wants("gate_failed"):
                self.pending.append(gate_failed(self.run_id, self.stage, exc.gate, **self.where))
            elif self.wants("failed_run"):
                self.pending.append(failed_run(self.run_id, self.stage, exc, **self.where))
        except Exception as error:
            log.warning("alerts: could not describe the failure (%s)", type(error).__name__)

    def send(self) -> dict[str, Any]:
        """Send what was gathered (never raises); the outcome goes into the run's summary."""
        if self.on and self.settings is not None and self.pending:
            from clarion.ops.alerts_send import deliver

            results = deliver(self.settings, self.pending)
            self.outcome |= {
                "sent": sum(r["status"] == "sent" for r in results),
                "failed": sum(r["status"] == "failed" for r in results),
                "events": sorted({a.event for a in self.pending}),
            }
            self.pending = []
        return self.outcome


def _prefect_context(flow_run_id: str | None) -> dict[str, Any]:
    """The deployment, flow run and its Prefect UI link, when this runs inside a flow run."""
    out: dict[str, Any] = {"flow_run_id": flow_run_id or None}
    try:
        from prefect.runtime import deployment, flow_run

        name = deployment.name
        out["deployment"] = f"{flow_run.flow_name}/{name}" if name else None
        out["prefect_url"] = flow_run.ui_url if flow_run_id else None
    except Exception:  # outside Prefect, or no UI configured
        pass
    return out
