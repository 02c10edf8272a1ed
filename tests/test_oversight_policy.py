"""The low tier's policy approval on real drafting: the shipped language model drafts for a low and
a standard brief (on a copy of the session's `small_run`), starved of tokens so that the briefs'
own copy is used; when drafting finishes, exactly the low brief's drafts that are its own copy and
passed every check are approved by policy (re-derived here from the brief's templates and the
stored check reports), and they export without a person.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml
from trigger_helpers import WINBACK

from clarion.config import load_settings
from clarion.content import runner
from models.content.brief import load_brief

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]
RUN = "20990201T000000Z-policy"


def _own_copy(brief, channel: str) -> dict[str, str]:
    """The brief's seeds and facts in its templates, by plain substitution ({first_name} stays)."""
    values = {**brief.seeds.all(), **brief.facts()}
    out = {}
    for part in brief.parts(channel):
        text = brief.template(part)
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        out[part] = text
    return out


def test_policy_approves_exactly_the_low_briefs_own_copy_that_passed_every_check(
    small_run: dict, tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "project"
    shutil.copytree(small_run["root"], root)
    monkeypatch.chdir(root)
    settings = load_settings(root / "clarion.yaml", env={})
    settings = settings.model_copy(
        update={"content": settings.content.model_copy(update={"max_new_tokens": 1, "candidates": 2})}
    )
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    (segment,) = con.execute(
        "select segment from ml.customer_scores group by all order by count(*) desc limit 1"
    ).fetchone()
    con.close()
    data = yaml.safe_load(WINBACK.read_text())
    data.pop("trigger", None)
    (root / "campaigns").mkdir(exist_ok=True)
    for name, tier in (("real-low", "low"), ("real-standard", "standard")):
        data.update(
            name=name, audience={"segments": [segment]}, channels=["email"], variants=2, risk_tier=tier
        )
        (root / "campaigns" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    summary = runner.generate(settings, RUN, ("real-low", "real-standard"))

    drafts = runner.list_drafts(settings, run_id=RUN)
    brief = load_brief(root / "campaigns" / "real-low.yaml")
    qualifying = {
        d["draft_id"]
        for d in drafts
        if d["campaign"] == "real-low"
        and not d["ai_generated"]
        and d["content"] == _own_copy(brief, d["channel"])
        and all(c["passed"] for c in d["checks"])
    }
    low = [d for d in drafts if d["campaign"] == "real-low"]
    assert qualifying and len(qualifying) < len(low)  # B repeats A: its near-duplicate check fails
    assert summary["approved_by_policy"] == {"real-low": len(qualifying)}
    approved = {d["draft_id"] for d in drafts if d["status"] == "approved"}
    assert approved == qualifying
    con = duckdb.connect(str(settings.warehouse.path), read_only=True)
    decided = con.execute(
        "select draft_id, decided_by, note from content.decisions where via = 'policy'"
    ).fetchall()
    events = con.execute(
        "select subject, details from audit.events where action = 'draft.approved' and actor = 'policy'"
    ).fetchall()
    con.close()
    assert {r[0] for r in decided} == qualifying and {r[1:] for r in decided} == {("policy", "risk_tier=low")}
    assert {e[0] for e in events} == qualifying
    assert all(json.loads(e[1])["policy"] == "risk_tier=low" for e in events)

    exports = {e["campaign"]: e for e in runner.export(settings)["exports"]}
    assert exports["real-low"]["recipients"] > 0
    assert set(exports["real-low"]["drafts_exported"]) == qualifying
    assert exports["real-standard"]["recipients"] == 0  # a standard brief still waits for a person
