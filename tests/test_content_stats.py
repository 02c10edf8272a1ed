"""`clarion drafts stats` (clarion/content/stats.py) on a real DuckDB warehouse: which run it measures,
what it reads, what it prints; and, on drafts written by the real drafting path with the shipped model,
that the figures match counts made here from the drafts themselves."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clarion.cli import cli
from clarion.content import stats
from clarion.content.store import ContentError, ensure_tables, list_drafts
from clarion.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _slots(text: str, candidates: int, usable: int) -> dict[str, Any]:
    return {
        "body": {"text": text, "fallback": False, "meaning": 0.8, "candidates": candidates, "usable": usable},
    }


def _row(run_id: str, campaign: str, variant: str, body: str, usable: int, at: datetime) -> dict[str, Any]:
    return {
        "draft_id": f"d-{run_id}-{campaign}-{variant}",
        "run_id": run_id,
        "campaign": campaign,
        "segment": "loyal",
        "channel": "email",
        "variant": variant,
        "status": "pending",
        "content": {"email_subject": "Hello: 10% off", "email_body": f"Hi {{first_name}},\n\n{body}"},
        "checks": [{"name": "readability", "severity": "warn", "passed": variant == "A", "detail": "x"}],
        "provenance": {"slots": _slots(body, 10, usable)},
        "at": at,
    }


def _store(settings, rows: list[dict[str, Any]], runs: list[tuple[str, str, bool]]) -> None:
    """Drafts as content.drafts holds them, and audit.runs rows: (run id, command, drafting finished)."""
    with Warehouse.from_settings(settings).connect("test") as con:
        ensure_tables(con)
        for run_id, command, finished in runs:
            con.execute(
                "insert into audit.runs (run_id, command, status, started_at, stages, config_hash, "
                "code_version) values (?, ?, ?, now(), ?, 'x', 'x')",
                [
                    run_id,
                    command,
                    "completed" if finished else "running",
                    '{"content": {}}' if finished else None,
                ],
            )
        for r in rows:
            con.execute(
                "insert into content.drafts values "
                "(?, ?, 's1', ?, ?, ?, ?, ?, ?, 'sha', false, true, ?, ?, ?, ?)",
                [
                    r["draft_id"],
                    r["run_id"],
                    r["campaign"],
                    r["segment"],
                    r["channel"],
                    r["variant"],
                    r["status"],
                    json.dumps(r["content"]),
                    json.dumps(r["checks"]),
                    json.dumps(r["provenance"]),
                    r["at"],
                    r["at"],
                ],
            )


@pytest.fixture
def stored(project):
    settings = project()
    rows = [
        _row("r-old", "spring", "A", "Old words here.", 1, T0),
        _row("r-new", "spring", "A", "We picked new shirts for you.", 7, T0 + timedelta(days=1)),
        _row("r-new", "spring", "B", "Fresh colours came in this week.", 5, T0 + timedelta(days=1)),
        _row("r-new", "autumn", "A", "Warm layers are back.", 2, T0 + timedelta(days=1)),
        _row("r-killed", "spring", "A", "Half done.", 9, T0 + timedelta(days=2)),  # drafting never finished
        _row("r-od", "spring", "A", "One on demand.", 9, T0 + timedelta(days=3)),  # an on-demand run
    ]
    _store(
        settings,
        rows,
        [
            ("r-old", "clarion run", True),
            ("r-new", "clarion content", True),
            ("r-killed", "clarion run", False),
            ("r-od", "draft on-demand", True),
        ],
    )
    with Warehouse.from_settings(settings).connect("test") as con:
        con.executemany(
            "insert into content.decisions (draft_id, decision, decided_by, note, content_sha256, via, "
            "decided_at) values (?, ?, 'lead', null, 'sha', ?, ?)",
            [
                ["d-r-old-spring-A", "approve", "cli", T0],
                ["d-r-new-spring-A", "reject", "cli", T0 + timedelta(days=8)],
                ["d-r-new-spring-B", "approve", "policy", T0 + timedelta(days=8)],
                ["d-r-new-autumn-A", "edit", "api", T0 + timedelta(days=8)],
                ["d-r-killed-spring-A", "approve", "cli", T0 + timedelta(days=8)],  # an unfinished run's
            ],
        )
    return settings


def test_the_latest_finished_batch_run_is_measured_by_default(stored) -> None:
    s = stats.read_stats(stored)
    assert s["run_id"] == "r-new" and s["finished"] is True
    assert [c["campaign"] for c in s["campaigns"]] == ["autumn", "spring"]
    spring = s["campaigns"][1]
    assert spring["slots"]["body"]["candidates"] == 10  # one segment: its candidates once
    assert spring["slots"]["body"]["usable"] == 7  # the larger record of the segment's two drafts
    # variant B failed its readability check (warn); the older and the unfinished runs are not read
    assert s["totals"]["findings"]["by_check"] == {"readability": {"severity": "warn", "drafts": 1}}


def test_a_campaign_and_a_run_narrow_what_is_measured(stored) -> None:
    assert stats.read_stats(stored, campaign="autumn")["totals"]["drafts"] == 1
    old = stats.read_stats(stored, run_id="r-old")
    assert old["run_id"] == "r-old" and old["totals"]["drafts"] == 1
    killed = stats.read_stats(stored, run_id="r-killed")  # named: measured, and said to be unfinished
    assert killed["finished"] is False


def test_decisions_come_from_finished_runs_per_week(stored) -> None:
    d = stats.read_stats(stored)["decisions"]
    # r-old's approval in week 49; r-new's reject and edit in week 50, its policy approval apart;
    # the unfinished run's approval is not counted
    assert [(w["week"], w["decisions"]) for w in d["weeks"]] == [("2026-W49", 1), ("2026-W50", 2)]
    assert d["totals"]["policy_approvals"] == 1
    assert (d["totals"]["approve"], d["totals"]["edit"], d["totals"]["reject"]) == (1, 1, 1)
    spring = stats.read_stats(stored, campaign="spring")["decisions"]["totals"]
    assert (spring["approve"], spring["edit"], spring["reject"]) == (1, 0, 1)


def test_unknown_runs_and_empty_warehouses_say_what_to_do(stored, project) -> None:
    with pytest.raises(ContentError, match=r"run 'nope' has no drafts.*clarion drafts list"):
        stats.read_stats(stored, run_id="nope")
    with pytest.raises(ContentError, match=r"no finished content run of campaign 'winter'"):
        stats.read_stats(stored, campaign="winter")


def test_cli_prints_the_figures_and_json(stored) -> None:
    text = CliRunner().invoke(cli, ["drafts", "stats"])
    assert text.exit_code == 0, text.output
    assert "Content run r-new (finished" in text.output
    assert re.search(r"^spring\s+2\s+7/10 70%", text.output, re.MULTILINE), text.output
    assert "2026-W50" in text.output
    out = CliRunner().invoke(cli, ["drafts", "stats", "--campaign", "spring", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["run_id"] == "r-new" and [c["campaign"] for c in data["campaigns"]] == ["spring"]
    bad = CliRunner().invoke(cli, ["drafts", "stats", "--run", "nope"])
    assert bad.exit_code != 0 and "has no drafts" in bad.output
    helptext = CliRunner().invoke(cli, ["drafts", "stats", "--help"])
    assert "clarion drafts stats --campaign winback-summer" in helptext.output


# -- drafts written by today's drafting path, with the shipped model ---------------------------------
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def _count_words(text: str) -> int:
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"\{[a-z_]+\}", " name ", text)
    return len(WORD.findall(text))


@pytest.mark.slow
def test_stats_of_drafts_from_the_real_drafting_path(project) -> None:
    from clarion.content.runner import write_drafts
    from models.content.brief import load_brief
    from models.content.drafts import DraftParams, draft_brief
    from models.content.llm import LMSettings, LocalLM
    from models.content.meaning import default_meaning_model

    settings = project()
    brief = load_brief(REPO / "campaigns" / "winback-summer.yaml")
    lm = LocalLM.load(LMSettings(batch_size=32))
    segments = [{"segment": "at_risk_high_value", "top_drivers": []}]
    drafts, prompts = draft_brief(
        brief, segments, lm, default_meaning_model(), DraftParams(candidates=2, max_new_tokens=24), {}
    )
    with Warehouse.from_settings(settings).connect("test") as con:
        ensure_tables(con)
        write_drafts(con, "r-today", "s1", brief, drafts, prompts)
    s = stats.read_stats(settings)
    assert s["run_id"] == "r-today"
    stored = list_drafts(settings)
    assert len(stored) == len(drafts) == s["totals"]["drafts"]
    # usable rate per slot, from the Draft objects: the segment's candidates (all variants) and the
    # usable ones, the largest record (a draft re-assembled from the seeds records none)
    slots = {name for d in drafts for name in d.slots}
    assert {"subject", "preheader", "headline", "body", "cta", "sms"} <= slots
    for slot in slots:
        mine = [d.slots[slot] for d in drafts if slot in d.slots]
        best = max(mine, key=lambda x: x.candidates)
        got = s["totals"]["slots"][slot]
        assert (got["candidates"], got["usable"]) == (best.candidates, best.usable), slot
        assert best.candidates == 2 * brief.variants  # 2 candidates per variant, one segment
        assert (
            got["findings"] == {k: n for k, n in best.findings.items() if n}
            or got["findings"] == best.findings
        )
    # model-written share of e-mail words, counted here from the stored copy
    total = model = 0
    for d in stored:
        if d["channel"] != "email" or d["status"] == "blocked":
            continue
        parts = [d["content"].get(p, "") for p in ("email_subject", "email_preheader", "email_body")]
        total += sum(_count_words(p) for p in parts)
        for rec in d["provenance"]["slots"].values():
            if not rec["fallback"]:
                model += _count_words(rec["text"]) * sum(p.count(rec["text"]) for p in parts)
    got = s["totals"]["model_written"]
    assert (got["words"], got["model_words"]) == (total, model)
    assert s["totals"]["findings"]["invented_facts"] == sum(
        any(c["name"] == "invented_facts" and not c["passed"] for c in d["checks"]) for d in stored
    )
    text = CliRunner().invoke(cli, ["drafts", "stats"])
    assert text.exit_code == 0 and "winback-summer" in text.output and "headline" in text.output


def test_the_report_section_shows_the_figures_and_no_copy(stored) -> None:
    from clarion.report import content_quality

    with Warehouse.from_settings(stored).read() as con:
        q = content_quality.collect(con, {"run_id": "s1"})
        assert content_quality.collect(con, {"run_id": "another scoring run"}) is None
    # each campaign's latest finished batch run for the scoring run: r-new for both (not r-od, r-killed)
    assert [c["campaign"] for c in q["campaigns"]] == ["autumn", "spring"]
    assert q["totals"]["drafts"] == 3
    html = content_quality.html({"content_quality": q})
    assert html.startswith('<section id="content-quality"><h2>Content quality</h2>')
    row = re.search(r'<tr data-campaign="spring">(.*?)</tr>', html).group(1)
    assert "70% <span class='small'>(7 of 10)</span>" in row
    assert '<tr data-week="2026-W50">' in html and '<tr data-week="2026-W49">' in html
    for words in ("We picked new shirts", "Fresh colours", "lead"):  # no copy, no reviewer
        assert words not in html
    assert "nothing to measure" in content_quality.html({"content_quality": None})
