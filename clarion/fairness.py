"""Fairness in the warehouse: who each segment, campaign audience and next-best action selects per
group of every protected attribute (settings.fairness.attributes, columns of marts.dim_customers),
the model's per-group figures from its registry card, the sign-offs of findings, and the export gate.

The figures and findings come from models.fairness; this module only reads the groups and selections
from the warehouse, keeps sign-offs in ``privacy.fairness_signoffs``, and refuses a content export
whose audience has an unsigned ``fail`` finding (`clarion fairness accept` signs one off by name).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clarion import audit
from clarion.config import Settings
from clarion.errors import ClarionError
from clarion.warehouse import Warehouse, relation_exists
from models import fairness as lib
from models.features import FEATURES
from models.registry import Registry, RegistryError

SIGNOFFS_DDL = """
    create table if not exists privacy.fairness_signoffs (
        finding_id varchar, severity varchar, value double, accepted_by varchar, os_user varchar,
        reason varchar, accepted_at timestamptz
    )
"""
VERSION_PLACEHOLDER = "{version}"  # the registry names a version when it registers it
log = logging.getLogger(__name__)
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FairnessError(ClarionError):
    """A fairness finding stops something (an export), or a sign-off names no current finding."""

    exit_code = 2


def limits(settings: Settings) -> lib.Limits:
    f = settings.fairness
    return lib.Limits(
        min_group=f.min_group,
        di_warn=f.disparate_impact_warn,
        di_fail=f.disparate_impact_fail,
        ece_gap_warn=f.ece_gap_warn,
        ece_gap_fail=f.ece_gap_fail,
        rate_gap_warn=f.rate_gap_warn,
        rate_gap_fail=f.rate_gap_fail,
        alpha=f.significance,
    )


def attributes(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[str]:
    """The configured protected attributes that marts.dim_customers has (never model inputs). One it
    lacks cannot be judged: `missing` names it, the CLI and the report say so, the export logs it."""
    names = list(settings.fairness.attributes)
    inputs = sorted(set(names) & set(FEATURES))
    if inputs:
        raise FairnessError(
            f"fairness.attributes names model input(s) {inputs}: a protected attribute must never be a "
            "model input; remove it from fairness.attributes or from the model's features"
        )
    lacking = set(missing(settings, con))
    return [a for a in names if a not in lacking]


def missing(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Configured protected attributes that are not columns of marts.dim_customers."""
    if not relation_exists(con, "marts", "dim_customers"):
        return list(settings.fairness.attributes)
    columns = {r[0] for r in con.execute("describe marts.dim_customers").fetchall()}
    return [a for a in settings.fairness.attributes if a not in columns or not _COLUMN.match(a)]


# -- the model ------------------------------------------------------------------------------------
def model_figures(
    settings: Settings, frame: pd.DataFrame, churn: np.ndarray, at_risk: np.ndarray, decision: str
) -> dict[str, Any]:
    """The model's per-group figures on the validation customers (``frame`` with contact_id and the
    label ``purchased_in_horizon``): churn risk against observed churn, and the at-risk decision.
    The attributes are joined here from marts.dim_customers: they never enter the model's matrix."""
    lim = limits(settings)
    with Warehouse.from_settings(settings).connect("fairness attributes") as con:
        names = attributes(settings, con)
        groups = (
            con.execute(f"select contact_id, {', '.join(names)} from marts.dim_customers").df()
            if names
            else pd.DataFrame({"contact_id": []})
        )
    ids = frame[["contact_id"]].reset_index(drop=True)
    joined = ids.merge(groups.drop_duplicates("contact_id"), on="contact_id", how="left")
    y = 1.0 - frame["purchased_in_horizon"].astype(float).to_numpy()
    scope = f"model:{VERSION_PLACEHOLDER}"
    out: dict[str, Any] = {"decision": decision, "limits": lim.__dict__, "attributes": [], "findings": []}
    for a in names:
        rows = lib.model(joined[a].to_numpy(), y, churn, at_risk, lim)
        out["attributes"].append({"attribute": a, "groups": rows})
        out["findings"] += [f.as_dict() for f in lib.model_findings(rows, scope, a, lim)]
    return out


def version_findings(meta: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A registered version's findings with their ids naming the version (older versions: none)."""
    fair = meta.get("fairness")
    if not isinstance(fair, dict):
        return []
    return [_named(f, name) for f in fair.get("findings", [])]


def _named(f: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v.replace(VERSION_PLACEHOLDER, name) if isinstance(v, str) else v for k, v in f.items()}


def promotion_refusal(meta: dict[str, Any], name: str) -> str | None:
    """Why a candidate must not be promoted automatically: its fail findings, or None."""
    fails = [f["id"] for f in version_findings(meta, name) if f["severity"] == "fail"]
    if not fails:
        return None
    return f"fairness finding(s) at fail: {', '.join(fails)} (see its card's Fairness section)"


# -- selections -----------------------------------------------------------------------------------
def _selection(
    con: duckdb.DuckDBPyConnection, names: list[str], sql: str, params: list[Any], lim: lib.Limits, scope: str
) -> list[dict[str, Any]]:
    """One selection (rows of (selected, attribute values...)) judged per attribute, from each
    attribute value's members and selected counted in the warehouse (labelled as ``lib.labels``
    labels each member's value)."""
    out = []
    for a in names:
        grouped = con.execute(
            f"select __group, count(*) as members, count(*) filter (where __selected) as selected "
            f"from ({sql.replace('{attributes}', f'd.{a}')}) as t(__selected, __group) group by __group",
            params,
        ).df()
        counts: dict[str, tuple[int, int]] = {}
        # to_numpy as for each member's value: whole numbers beside a missing one become floats
        for label, n, k in zip(
            lib.labels(grouped["__group"].to_numpy()), grouped["members"], grouped["selected"], strict=True
        ):
            before = counts.get(label, (0, 0))
            counts[label] = (before[0] + int(n), before[1] + int(k))
        rows = lib.selection_counts(counts, lim)
        findings = lib.selection_findings(rows, scope, a, lim)
        out.append({"attribute": a, "groups": rows, "findings": [f.as_dict() for f in findings]})
    return out


def audience_sql(settings: Settings, campaign: str, segment: str) -> str:
    """The SQL condition of a campaign's audience for one segment, as the export applies it."""
    from clarion.content.export import _audience_sql
    from models.content.brief import load_brief

    path = settings.content.briefs / f"{campaign}.yaml"
    return _audience_sql(load_brief(path) if path.is_file() else None, segment)


def audience(
    settings: Settings, con: duckdb.DuckDBPyConnection, run_id: str, campaign: str, segment: str
) -> list[dict[str, Any]]:
    """Per attribute: the share of each group of a scoring run's customers that a campaign's audience
    (for one segment) selects, and its findings (scope ``audience:RUN:CAMPAIGN:SEGMENT``)."""
    names = attributes(settings, con)
    if not names:
        return []
    sql = (
        f"select coalesce(({audience_sql(settings, campaign, segment)}), false), {{attributes}} "
        "from ml.customer_scores s left join marts.dim_customers d using (contact_id) where s.run_id = ?"
    )
    return _selection(con, names, sql, [run_id], limits(settings), f"audience:{run_id}:{campaign}:{segment}")


def run_figures(settings: Settings, con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """Everything fairness says about one scoring run: the model's figures (its version's card),
    selection into each segment, each campaign audience drafted for the run, and each next-best
    action; every finding with its sign-off, if any."""
    lim = limits(settings)
    names = attributes(settings, con)
    (version,) = con.execute(
        "select any_value(model_version) from ml.customer_scores where run_id = ?", [run_id]
    ).fetchone()
    if version is None:
        raise FairnessError(f"no scoring run {run_id!r} in ml.customer_scores: `clarion runs` lists the runs")
    out: dict[str, Any] = {
        "run_id": run_id,
        "model_version": version,
        "attributes": names,
        "missing_attributes": missing(settings, con),
        "limits": lim.__dict__,
    }
    try:
        meta = Registry(settings.var_dir / "registry").get(version).meta
    except RegistryError:
        meta = {}
    fair = meta.get("fairness")
    out["model"] = (
        {**fair, "findings": version_findings(meta, version)} if isinstance(fair, dict) else {"legacy": fair}
    )
    selections = []
    segments = [
        r[0]
        for r in con.execute(
            "select distinct segment from ml.customer_scores where run_id = ? order by 1", [run_id]
        ).fetchall()
    ]
    base = (
        "select coalesce({cond}, false), {{attributes}} from ml.customer_scores s "
        "left join marts.dim_customers d using (contact_id) where s.run_id = ?"
    )
    for seg in segments if names else []:
        figures = _selection(
            con, names, base.format(cond="s.segment = ?"), [seg, run_id], lim, f"segment:{run_id}:{seg}"
        )
        selections.append({"kind": "segment", "name": seg, "attributes": figures})
    if names and relation_exists(con, "content", "drafts"):
        drafted = con.execute(
            "select distinct campaign, segment from content.drafts where scoring_run_id = ? order by 1, 2",
            [run_id],
        ).fetchall()
        for campaign, seg in drafted:
            figures = audience(settings, con, run_id, campaign, seg)
            selections.append({"kind": "audience", "name": f"{campaign} / {seg}", "attributes": figures})
    if names and relation_exists(con, "ml", "next_best_action"):
        nba = con.execute(
            "select nba_run_id from ml.next_best_action where run_id = ? group by 1 "
            "order by max(decided_at) desc limit 1",
            [run_id],
        ).fetchone()
        if nba:
            sql = (
                "select coalesce(n.action = ?, false), {attributes} from ml.next_best_action n "
                "left join marts.dim_customers d using (contact_id) where n.nba_run_id = ?"
            )
            actions = con.execute(
                "select distinct action from ml.next_best_action where nba_run_id = ? and action <> 'none' "
                "order by 1",
                [nba[0]],
            ).fetchall()
            for (action,) in actions:
                figures = _selection(con, names, sql, [action, nba[0]], lim, f"nba:{nba[0]}:{action}")
                selections.append({"kind": "next best action", "name": action, "attributes": figures})
    out["selections"] = selections
    findings = list(out["model"].get("findings", []))
    findings += [f for s in selections for a in s["attributes"] for f in a["findings"]]
    signed = signoffs(con, [f["id"] for f in findings])
    out["findings"] = [{**f, "signed_off": signed.get(f["id"])} for f in findings]
    out["worst"] = lib.worst(findings)
    return out


# -- sign-offs ------------------------------------------------------------------------------------
def signoffs(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The newest sign-off of each finding id that has one."""
    if not ids or not relation_exists(con, "privacy", "fairness_signoffs"):
        return {}
    rows = con.execute(
        "select finding_id, arg_max(accepted_by, accepted_at), arg_max(os_user, accepted_at), "
        "max(accepted_at) "
        "from privacy.fairness_signoffs where finding_id in (select unnest(?::varchar[])) group by 1",
        [ids],
    ).fetchall()
    return {r[0]: {"by": r[1], "os_user": r[2], "at": r[3]} for r in rows}


def find(settings: Settings, con: duckdb.DuckDBPyConnection, finding_id: str) -> dict[str, Any]:
    """The current finding with this id (model findings from the registry, the others recomputed
    from the run the id names), or FairnessError."""
    kind, _, rest = finding_id.partition(":")
    scope_id = rest.split(":", 1)[0]
    found: list[dict[str, Any]] = []
    if kind == "model":
        try:
            found = version_findings(Registry(settings.var_dir / "registry").get(scope_id).meta, scope_id)
        except RegistryError:
            found = []
    elif kind in ("segment", "audience") and relation_exists(con, "ml", "customer_scores"):
        exists = con.execute(
            "select count(*) from ml.customer_scores where run_id = ?", [scope_id]
        ).fetchone()[0]
        found = run_figures(settings, con, scope_id)["findings"] if exists else []
    elif kind == "nba" and relation_exists(con, "ml", "next_best_action"):
        run = con.execute(
            "select any_value(run_id) from ml.next_best_action where nba_run_id = ?", [scope_id]
        ).fetchone()[0]
        found = run_figures(settings, con, run)["findings"] if run else []
    match = next((f for f in found if f["id"] == finding_id), None)
    if match is None:
        raise FairnessError(
            f"no current fairness finding {finding_id!r}: `clarion fairness --run RUN_ID` lists the findings "
            "of a run and their ids (model:VERSION:..., segment:RUN:..., audience:RUN:..., nba:NBA_RUN:...)"
        )
    return match


def accept(settings: Settings, finding_id: str, by: str, because: str) -> dict[str, Any]:
    """Sign a finding off by name, with a reason; recorded beside the operating-system user and in
    the audit log (finding id, severity, value; the reason, free text, stays in the table)."""
    if not by.strip():
        raise FairnessError("say who signs the finding off: --by NAME")
    if not because.strip():
        raise FairnessError("a sign-off needs a reason: --because TEXT")
    with Warehouse.from_settings(settings).connect("fairness accept") as con:
        finding = find(settings, con, finding_id)
        con.execute("create schema if not exists privacy")
        con.execute(SIGNOFFS_DDL)
        who = audit.os_identity()
        now = datetime.now(UTC)
        con.execute(
            "insert into privacy.fairness_signoffs values (?, ?, ?, ?, ?, ?, ?)",
            [finding_id, finding["severity"], finding["value"], by, who["os_user"], because, now],
        )
        audit.AuditLog.for_settings(settings).record(
            con,
            audit.FAIRNESS_ACCEPTED,
            finding_id,
            actor=by,
            details={
                "finding_id": finding_id,
                "severity": finding["severity"],
                "metric": finding["metric"],
                "value": finding["value"],
                "limit": finding["limit"],
                "os_user": who["os_user"],
            },
        )
    return {**finding, "signed_off": {"by": by, "os_user": who["os_user"], "at": now}}


# -- the export gate ------------------------------------------------------------------------------
def gate_export(
    settings: Settings, con: duckdb.DuckDBPyConnection, latest: list[tuple[str, str]], scoring_run: str | None
) -> None:
    """Refuse the export when an approved draft's audience has a fail finding nobody signed off.
    ``latest`` is the (campaign, content run) pairs to export; ``scoring_run`` overrides the drafts'
    own scoring run (a trigger's subset export)."""
    lacking = missing(settings, con)
    if lacking:
        log.warning("fairness.attributes %s are not columns of marts.dim_customers: not judged", lacking)
    blocking: list[dict[str, Any]] = []
    for campaign, run_id in latest:
        pairs = con.execute(
            "select distinct scoring_run_id, segment from content.drafts where campaign = ? and run_id = ? "
            "and status = 'approved' order by 1, 2",
            [campaign, run_id],
        ).fetchall()
        for drafted_for, segment in pairs:
            for figures in audience(settings, con, scoring_run or drafted_for, campaign, segment):
                blocking += [f for f in figures["findings"] if f["severity"] == "fail"]
    signed = signoffs(con, [f["id"] for f in blocking])
    open_ = [f for f in blocking if f["id"] not in signed]
    if open_:
        lines = "\n".join(f"  - {lib.Finding(**f).text()}" for f in open_)
        raise FairnessError(
            f"export refused: {len(open_)} fairness finding(s) at fail for the audience, not signed off:\n"
            f"{lines}\n"
            "Review the figures (`clarion fairness --run RUN_ID`), then sign each finding off by name: "
            f"`clarion fairness accept {open_[0]['id']} --by NAME --because TEXT`, or change the audience"
        )


def latest_run(con: duckdb.DuckDBPyConnection) -> str:
    """The newest settled scoring run (as the report picks it)."""
    from clarion.runs import NOT_SETTLED

    row = (
        con.execute(
            f"select run_id from ml.customer_scores where run_id not in ({NOT_SETTLED}) "
            "group by run_id order by max(scored_at) desc limit 1"
        ).fetchone()
        if relation_exists(con, "ml", "customer_scores")
        else None
    )
    if row is None:
        raise FairnessError("no scoring run yet: run `clarion run` (or `clarion segment`) first")
    return row[0]


def report(settings: Settings, run_id: str | None = None) -> dict[str, Any]:
    """`clarion fairness`: the figures and findings of a scoring run [the latest]."""
    with Warehouse.from_settings(settings).read() as con:
        return run_figures(settings, con, run_id or latest_run(con))
