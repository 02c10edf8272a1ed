"""`clarion voc` and `clarion voc topics` on a real project: the pipeline flow limited to the voc stage
(a real Prefect flow run on the session's test server), the tables it writes, the card, and what
the commands print."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from project_helpers import small_project

from clarion.cli import cli

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]  # three pipeline runs


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's 300-contact project (seed 5), extracted."""
    return small_project(tmp_path_factory.mktemp("voc_cli"))


def invoke(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.chdir(root)
    return CliRunner().invoke(cli, list(args))


def test_clarion_voc_runs_the_stage_as_a_flow_and_topics_lists_what_it_found(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extracted = invoke(project, monkeypatch, "extract")
    assert extracted.exit_code == 0, extracted.output
    result = invoke(project, monkeypatch, "voc", "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "completed" and list(run["stages"]) == ["prepare", "voc"]
    summary = run["stages"]["voc"]
    assert summary["tickets"] > 50 and summary["embedded"] == summary["tickets"]
    with duckdb.connect(str(project / "var" / "warehouse.duckdb"), read_only=True) as con:
        [(rows, topics)] = con.execute(
            "select count(*), count(distinct topic_id) from ml.ticket_topics where run_id = ?",
            [run["run_id"]],
        ).fetchall()
        [(status,)] = con.execute(
            "select status from audit.runs where run_id = ?", [run["run_id"]]
        ).fetchall()
    assert rows == summary["tickets"] and topics == summary["k"] and status == "completed"
    card = project / "var" / "registry" / "voc" / summary["model_version"] / "card.md"
    assert f"k = {summary['k']}" in card.read_text()
    shown_card = invoke(project, monkeypatch, "models", "show", "--model", "voc")
    assert shown_card.exit_code == 0 and f"k = {summary['k']}" in shown_card.output, shown_card.output

    text = invoke(project, monkeypatch, "voc")  # again: every embedding now comes from the cache
    assert text.exit_code == 0, text.output
    assert "voc" in text.output and "(0 embedded)" in text.output and f"{summary['k']} topics" in text.output

    listed = invoke(project, monkeypatch, "voc", "topics", "--json")
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.stdout)
    assert len(shown) == summary["k"] and sum(t["tickets"] for t in shown) == summary["tickets"]
    assert {t["topic"] for t in shown} == set(summary["topics"])
    human = invoke(project, monkeypatch, "voc", "topics")
    assert shown[0]["topic"] in human.output and "negative" in human.output


def test_voc_topics_before_any_run_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clarion.config import load_settings
    from clarion.warehouse import Warehouse

    (tmp_path / "clarion.yaml").write_text("warehouse:\n  path: var/warehouse.duckdb\n")
    Warehouse.from_settings(load_settings(tmp_path / "clarion.yaml", env={})).ensure()
    root = tmp_path
    shown = invoke(root, monkeypatch, "voc", "topics")
    assert shown.exit_code == 0 and "run `clarion voc`" in shown.output
