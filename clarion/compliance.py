"""The compliance pack of a run: what a reviewer needs to check why each customer is where they are,
which data and model put them there, that consent was respected, and that the record is intact.

`clarion compliance export RUN_ID` writes ``var/compliance/RUN_ID/`` (and a zip of it):

| file | what |
|---|---|
| model_card.md, model_card.json, calibration.svg | the card of the model version that scored the run |
| explanations.parquet | per customer (by `pseudonym`): probabilities, segment, reasons, model version |
| pseudonyms.json | which key made the pseudonyms (`key_id`, where the key came from; never the key) |
| manifest.json | the run's lineage manifest as it stands now (its latest revision; a new one if it changed) |
| audit_events.jsonl, audit_verification.json | the run's audit events, and the whole chain's check |
| quality_results.csv | every quality check of the run |
| consent_summary.json | contacts by consent state, who each export left out and why, its arm counts |
| content_provenance.jsonl | the provenance record of every exported draft |
| SHA256SUMS | the sha256 of each file above |

Customers appear by keyed pseudonym only (``p_`` + 16 hex digits, docs/privacy.md "Pseudonyms"):
no contact ids, names, e-mails, phones or free text. The same key gives the same pseudonym in every
pack, report and artifact; only inside the warehouse can a pseudonym be mapped back to a customer
(`clarion explain ID --json` names the pseudonym of a contact id).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import duckdb

from clarion import lineage
from clarion.audit import AuditLog
from clarion.config import Settings
from clarion.content.export import ARMS
from clarion.privacy import pseudonym
from clarion.warehouse import Warehouse, relation_exists

FILES_README = __doc__
EVENT_COLUMNS = 'seq, "at", actor, action, run_id, subject, details, prev_hash, hash'


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows))


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def latest_run(settings: Settings) -> str:
    with Warehouse.from_settings(settings).read() as con:
        row = (
            con.execute(
                "select run_id from audit.runs where status = 'completed' order by started_at desc limit 1"
            ).fetchone()
            if relation_exists(con, "audit", "runs")
            else None
        )
    if row is None:
        raise lineage.LineageError("no completed run yet: `clarion run` first")
    return row[0]


def export_pack(settings: Settings, run_id: str, make_zip: bool = True) -> dict[str, Any]:
    folder = settings.var_dir / "compliance" / run_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with Warehouse.from_settings(settings).connect("compliance export") as con:
        manifest = lineage.write(settings, run_id, con, reason="compliance export")  # raises: unknown run
        shutil.copy(manifest, folder / "manifest.json")
        counts: dict[str, Any] = {}
        pseudonyms = pseudonym.for_settings(settings, con)
        (folder / "pseudonyms.json").write_text(
            json.dumps(
                {
                    "key_id": pseudonyms.key_id,
                    "key_source": pseudonyms.source,
                    "format": f"{pseudonym.PREFIX} + {pseudonym.DIGITS} hex digits of HMAC-SHA256(key, "
                    f"'{pseudonym.DOMAIN}' || contact_id)",
                    "columns": {"explanations.parquet": "pseudonym"},
                },
                indent=2,
                sort_keys=True,
            )
        )
        if relation_exists(con, "ml", "customer_scores"):
            expr, params = pseudonyms.sql("contact_id")
            con.execute(  # ordered by pseudonym: the row order says nothing about the ids either
                f"""
                copy (
                    select {expr} as pseudonym, as_of, horizon_days, model_version, purchase_probability,
                           churn_risk, expected_value_eur, segment, reasons, reasons_text, scored_at
                    from ml.customer_scores where run_id = ? order by pseudonym
                ) to '{folder / "explanations.parquet"}' (format parquet)
                """,
                [*params, run_id],
            )
            (counts["customers_explained"], version) = con.execute(
                "select count(*), any_value(model_version) from ml.customer_scores where run_id = ?", [run_id]
            ).fetchone()
            card = settings.var_dir / "registry" / "purchase_propensity" / str(version)
            for name, target in (("card.md", "model_card.md"), ("card.json", "model_card.json")):
                if (card / name).exists():
                    shutil.copy(card / name, folder / target)
            if (card / "calibration.svg").exists():
                shutil.copy(card / "calibration.svg", folder / "calibration.svg")
        events = []
        if relation_exists(con, "audit", "events"):
            drafts = (
                [
                    r[0]
                    for r in con.execute(
                        "select draft_id from content.drafts where run_id = ?", [run_id]
                    ).fetchall()
                ]
                if relation_exists(con, "content", "drafts")
                else []
            )
            events = [
                e
                for e in _dicts(con, f"select {EVENT_COLUMNS} from audit.events order by seq", [])
                if e["run_id"] == run_id
                or e["subject"] in drafts
                or str(e["subject"]).startswith(f"{run_id}-")
            ]
        _jsonl(folder / "audit_events.jsonl", events)
        verification = AuditLog.for_settings(settings).verify(con)
        (folder / "audit_verification.json").write_text(json.dumps(verification, indent=2, default=str))
        con.execute(
            f"copy (select * from audit.quality_results where run_id = ? order by suite, check_id) "
            f"to '{folder / 'quality_results.csv'}' (header)",
            [run_id],
        )
        consent = _consent(con, run_id)
        (folder / "consent_summary.json").write_text(
            json.dumps(consent, indent=2, sort_keys=True, default=str)
        )
        provenance = []
        if relation_exists(con, "content", "exports"):
            exported = con.execute(
                "select drafts from content.exports where export_id like ?", [f"{run_id}-%"]
            ).fetchall()
            ids = sorted({d for (blob,) in exported for d in json.loads(blob).get("exported", [])})
            for did in ids:
                row = con.execute(
                    "select provenance, content, status from content.drafts where draft_id = ?", [did]
                ).fetchone()
                provenance.append(
                    {
                        "draft_id": did,
                        "status": row[2],
                        "content": json.loads(row[1]),
                        "provenance": json.loads(row[0]),
                    }
                )
        _jsonl(folder / "content_provenance.jsonl", provenance)
    (folder / "README.md").write_text(FILES_README or "")
    sums = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }
    (folder / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    archive = None
    if make_zip:
        archive = folder.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(folder.iterdir()):
                z.write(p, f"{run_id}/{p.name}")
    return {
        "run_id": run_id,
        "folder": str(folder),
        "zip": str(archive) if archive else None,
        "files": sums,
        "audit_ok": verification["ok"],
        "audit_events": len(events),
        "exported_drafts": len(provenance),
        "pseudonym_key_id": pseudonyms.key_id,
        **counts,
    }


def _consent(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if relation_exists(con, "marts", "dim_customers"):
        out["contacts"] = _dicts(
            con,
            "select count(*) contacts, count(*) filter (where email_consent) email_consent, "
            "count(*) filter (where sms_consent) sms_consent, "
            "count(*) filter (where marketing_objection) marketing_objection, "
            "count(*) filter (where can_email) can_email from marts.dim_customers",
            [],
        )[0]
    if relation_exists(con, "audit", "erasures"):
        out["erasure_requests"] = con.execute(
            "select count(distinct reference) from audit.erasures"  # requests, never who
        ).fetchone()[0]
    if relation_exists(con, "content", "exports"):
        arms = (
            "(select export_id, map_from_entries(list((arm, n))) as arms from ("
            "select export_id, arm, count(*) as n from content.assignments group by all) group by export_id)"
            if relation_exists(con, "content", "assignments")
            else "(select null as export_id, null as arms where false)"
        )
        out["exports"] = [
            {
                **{k: v for k, v in e.items() if k != "export_id"},
                "excluded": json.loads(e["excluded"]) if e["excluded"] else {},
                # who was held out to measure the campaign: counts only, never who
                "arms": {arm: int((e["arms"] or {}).get(arm, 0)) for arm in ARMS},
            }
            for e in _dicts(
                con,
                "select x.export_id, x.campaign, x.channel, x.recipients, x.excluded, x.file_sha256, a.arms "
                f"from content.exports x left join {arms} a using (export_id) "
                "where x.export_id like ? order by x.campaign, x.channel",
                [f"{run_id}-%"],
            )
        ]
    return out
