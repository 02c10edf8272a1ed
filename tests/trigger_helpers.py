"""Scoring runs and drafts written straight into a real warehouse, so trigger tests control exactly
whose churn risk jumped (the scores a model would give are beside the point there)."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import yaml

from clarion import runs
from clarion.content.runner import draft_id
from clarion.content.store import ensure_tables as ensure_content_tables
from clarion.segment.scoring import ensure_tables as ensure_ml_tables
from models.content.brief import Brief
from models.content.drafts import content_hash

T0 = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
WINBACK = Path(__file__).resolve().parents[1] / "campaigns" / "winback-summer.yaml"


def write_brief(folder: Path, name: str, audience: dict, trigger: dict | None) -> None:
    """The shipped winback-summer brief under another name, audience and trigger (None: none)."""
    data = yaml.safe_load(WINBACK.read_text())
    data.update(name=name, audience=audience)
    data.pop("trigger", None)
    if trigger is not None:
        data["trigger"] = trigger
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def sent_to(path: str) -> list[int]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [int(r["contact_id"]) for r in csv.DictReader(fh)]


def held_out(ids: set[int], campaign: str, seed: str, holdout: float, global_control: float) -> set[int]:
    """Independently of clarion.experiments: who the export keeps out, by the documented rule (the
    first 8 bytes of sha256("seed:campaign:id") or of sha256("seed:global:id"), as a share of 2**64)."""

    def position(scope: str, cid: int) -> float:
        digest = hashlib.sha256(f"{seed}:{scope}:{cid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return {c for c in ids if position("global", c) < global_control or position(campaign, c) < holdout}


def reachable(people: pd.DataFrame, channel: str) -> set[int]:
    """Independently of the export: who may get a channel (consent, an address, no objection)."""
    consent, address = ("email_consent", "email") if channel == "email" else ("sms_consent", "phone")
    ok = people[people[consent] & people[address].notna() & ~people["marketing_objection"]]
    return set(ok["contact_id"].astype(int))


def write_scoring_run(
    con: duckdb.DuckDBPyConnection, run_id: str, hour: int, scores: pd.DataFrame, status: str = "completed"
) -> None:
    """One scoring run: audit.runs (with its status), ml.customer_scores (contact_id, churn_risk,
    segment from ``scores``) and ml.segments, scored ``hour`` hours after T0."""
    ensure_ml_tables(con)
    scored_at = T0 + timedelta(hours=hour)
    runs.start_run(con, run_id=run_id, command="clarion run", config_hash="test")
    if status in ("completed", "failed"):
        runs.finish_run(con, run_id, status=status, stages={})
    elif status == "interrupted":
        con.execute("update audit.runs set status = 'interrupted' where run_id = ?", [run_id])
    frame = scores[["contact_id", "churn_risk", "segment"]].copy()
    frame["purchase_probability"] = 1.0 - frame["churn_risk"]
    con.register("crafted", frame)
    try:
        con.execute(
            """
            insert into ml.customer_scores (run_id, contact_id, as_of, horizon_days, model_version,
                purchase_probability, churn_risk, expected_value_eur, segment, scored_at)
            select $run, contact_id, $as_of, 90, 'v0001', purchase_probability, churn_risk, 50.0, segment,
                   $at
            from crafted
            """,
            {"run": run_id, "as_of": scored_at.date(), "at": scored_at},
        )
        con.execute(
            """
            insert into ml.segments (run_id, as_of, model_version, segment, customers, share,
                mean_churn_risk, scored_at)
            select $run, $as_of, 'v0001', segment, count(*), count(*) / sum(count(*)) over (),
                   avg(churn_risk), $at
            from crafted group by segment
            """,
            {"run": run_id, "as_of": scored_at.date(), "at": scored_at},
        )
    finally:
        con.unregister("crafted")


def jumped_scores(
    contact_ids: np.ndarray, jump: float, seed: int, segments: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two runs' scores of the same customers: most move a little; some rise by more than ``jump``,
    some by exactly ``jump`` in decimal terms (0.20 -> 0.35: the doubles' difference is just under
    0.15), some by just under it, and some fall. Segments are drawn at random from ``segments``."""
    rng = np.random.default_rng(seed)
    n = len(contact_ids)
    before = np.round(rng.uniform(0.05, 0.6, n), 4)
    kind = rng.choice(["drift", "jump", "exact", "under", "fall"], n, p=[0.55, 0.15, 0.1, 0.1, 0.1])
    after = before + rng.normal(0, 0.03, n)
    after = np.where(kind == "jump", before + jump + rng.uniform(0.001, 0.3, n), after)
    exact = np.round(rng.choice([0.05, 0.1, 0.2, 0.3], n), 2)
    before = np.where(kind == "exact", exact, before)
    after = np.where(kind == "exact", exact + jump, after)
    after = np.where(kind == "under", before + jump - 0.001, after)
    after = np.where(kind == "fall", before - rng.uniform(0.05, 0.2, n), after)
    after = np.clip(after, 0.0, 1.0)
    seg_before = rng.choice(list(segments), n)
    seg_after = np.where(rng.uniform(size=n) < 0.3, rng.choice(list(segments), n), seg_before)
    ids = np.asarray(contact_ids, dtype="int64")
    return (
        pd.DataFrame({"contact_id": ids, "churn_risk": before, "segment": seg_before}),
        pd.DataFrame({"contact_id": ids, "churn_risk": after, "segment": seg_after}),
    )


def write_drafts(
    con: duckdb.DuckDBPyConnection, brief: Brief, content_run: str, scoring_run: str, segments: list[str]
) -> list[str]:
    """Pending drafts of a brief (its own seed copy in its templates) per segment, channel and
    variant, as the content stage stores them, by a run that finished drafting (its content stage
    recorded, when the run is in audit.runs); returns their ids for a real approval."""
    ensure_content_tables(con)
    if con.execute("select count(*) from audit.runs where run_id = ?", [content_run]).fetchone()[0]:
        runs.record_stage(con, content_run, "content", {"campaigns": [brief.name]})
    facts = brief.facts()
    slots = brief.seeds.all()
    ids = []
    now = datetime.now(UTC)
    for segment in segments:
        for channel in brief.channels:
            for variant in ("A", "B")[: brief.variants]:
                content = {
                    part: brief.template(part).format(**facts, **slots, first_name="{first_name}")
                    for part in brief.parts(channel)
                }
                sha = content_hash(content)
                did = draft_id(content_run, brief.name, segment, channel, variant, sha)
                provenance = {"brief": {"sha256": brief.sha256()}, "draft_id": did}
                con.execute(
                    "insert into content.drafts values (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, true, false, "
                    "'[]', ?, ?, ?)",
                    [
                        did,
                        content_run,
                        scoring_run,
                        brief.name,
                        segment,
                        channel,
                        variant,
                        json.dumps(content),
                        sha,
                        json.dumps(provenance),
                        now,
                        now,
                    ],
                )
                ids.append(did)
    return ids


def write_contacts(con: duckdb.DuckDBPyConnection, contact_ids: np.ndarray, seed: int) -> pd.DataFrame:
    """marts.dim_customers and raw.contacts for crafted customers: consent, objection and addresses
    drawn at random, so exports have someone to leave out. Returns what was written."""
    rng = np.random.default_rng(seed)
    n = len(contact_ids)
    people = pd.DataFrame(
        {
            "contact_id": np.asarray(contact_ids, dtype="int64"),
            "first_name": [f"Person{i}" for i in range(n)],
            "email": np.where(rng.uniform(size=n) < 0.9, [f"p{i}@example.com" for i in range(n)], None),
            "phone": np.where(rng.uniform(size=n) < 0.7, [f"+4930{i:07d}" for i in range(n)], None),
            "email_consent": rng.uniform(size=n) < 0.7,
            "sms_consent": rng.uniform(size=n) < 0.4,
            "marketing_objection": rng.uniform(size=n) < 0.05,
        }
    )
    con.register("people", people)
    try:
        con.execute(
            "create table marts.dim_customers as select contact_id, email_consent, sms_consent, "
            "marketing_objection from people"
        )
        con.execute("create table raw.contacts as select contact_id, first_name, email, phone from people")
    finally:
        con.unregister("people")
    return people
