"""Nothing lost, nothing forged, for content: `clarion content` killed inside its drafting and
`clarion export` killed inside its export, then run again, leave what a clean run leaves.

The project is the session's scored 300-contact run (conftest ``small_run``) with two tiny briefs
(one segment, e-mail, two variants each) and a short model budget; the real shipped model drafts.
Faults are placed by name through ``clarion.runtime.checkpoint`` (CLARION_TEST_KILL_AT=POINT[#N]).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from project_helpers import write_tiny_brief
from reliability_helpers import Cli, cli_env, cpu_seconds, csv_people

from clarion.cli import cli as clarion_cli

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

CONTENT = "content:\n  candidates: 3\n  max_new_tokens: 20\n"
# drafted in this order (load_briefs sorts by file name); both segments are large in the small project
BRIEFS = {"kill-a": "promising", "kill-b": "hibernating"}
DRAFT_KEY = "campaign, segment, channel, variant"


def _copy(source: Path, target: Path) -> Path:
    """A project folder copied without its locks and Prefect state (the converted model is the
    machine's, not the project's)."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n.endswith(".lock") or n == "prefect"]

    shutil.copytree(source, target, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def briefed(small_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scored small project with the two briefs, not drafted yet."""
    root = _copy(small_run["root"], tmp_path_factory.mktemp("briefed") / "project")
    (root / "clarion.yaml").write_text((root / "clarion.yaml").read_text() + CONTENT)
    for name, segment in BRIEFS.items():
        write_tiny_brief(root / "campaigns", name, segment, variants=2)
    return root


def _drafts(cli: Cli) -> list[tuple]:
    """What a draft is to its reviewers: key, content, its sha256 and status (ids and times differ
    between any two runs)."""
    return cli.sql(
        f"select {DRAFT_KEY}, content::varchar, content_sha256, status from content.drafts order by all"
    )


def _invoke(cli: Cli, *args: str, ok: bool = True) -> Result:
    """`clarion ARGS` in this process: the verbs no test kills (a process start costs seconds)."""
    result = CliRunner().invoke(clarion_cli, ["--config", str(cli.root / "clarion.yaml"), *args])
    cli.output += result.output
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _approve_all(cli: Cli) -> int:
    """Every pending draft approved through the CLI's `approve` verb."""
    pending = cli.sql("select draft_id from content.drafts where status = 'pending' order by all")
    for (did,) in pending:
        _invoke(cli, "approve", did, "--by", "marketing-lead")
    return len(pending)


def _exports(cli: Cli) -> list[tuple]:
    """content.exports as written, paths relative to the project (one row per export is the rule)."""
    return [
        (
            export_id,
            campaign,
            channel,
            recipients,
            json.loads(excluded),
            Path(path).relative_to(cli.root),
            sha,
        )
        for export_id, campaign, channel, recipients, excluded, path, sha in cli.sql(
            "select export_id, campaign, channel, recipients, excluded, path, file_sha256 "
            "from content.exports order by export_id"
        )
    ]


def _files(root: Path) -> dict[str, str]:
    """Every file under var/exports, relative path -> sha256 of its bytes (read from disk)."""
    folder = root / "var" / "exports"
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _content_run(cli: Cli, status: str = "completed") -> str:
    [(run_id,)] = cli.sql(
        "select run_id from audit.runs where command = 'clarion content' and status = ?", [status]
    )
    return run_id


def _assert_audit_and_lineage_verify(cli: Cli, run_id: str) -> None:
    assert "audit log verified" in _invoke(cli, "audit", "verify").stdout
    assert "output files match the manifest" in _invoke(cli, "lineage", "verify", run_id).stdout


@pytest.fixture(scope="module")
def clean(briefed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted `clarion content`, every draft approved, `clarion export`; ``snapshot`` is a
    copy of the project after the approvals and before the export."""
    started = time.perf_counter()
    cli = Cli(_copy(briefed, tmp_path_factory.mktemp("clean") / "project"), cli_env())
    cli.run("content")
    run_id = _content_run(cli)
    drafts = _drafts(cli)
    prompts = cli.sql("select campaign, segment, slot, sha256, prompt from content.prompts order by all")
    approved = _approve_all(cli)
    snapshot = _copy(cli.root, tmp_path_factory.mktemp("approved") / "project")
    _invoke(cli, "export")
    out = {
        "root": cli.root,
        "run_id": run_id,
        "drafts": drafts,
        "prompts": prompts,
        "approved": approved,
        "snapshot": snapshot,
        "exports": _exports(cli),
        "files": _files(cli.root),
        "csv": {name: _csv(cli, run_id, name) for name in BRIEFS},
    }
    print(f"clean content, approvals and export: {time.perf_counter() - started:.1f} s")
    return out


def _csv(cli: Cli, run_id: str, campaign: str) -> list[dict[str, str]]:
    with (cli.root / "var" / "exports" / run_id / campaign / "email.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_content_killed_between_briefs_is_never_reviewed_and_its_rerun_drafts_what_a_clean_run_drafts(
    briefed: Path, clean: dict[str, Any], tmp_path: Path
) -> None:
    started, cpu = time.perf_counter(), cpu_seconds()
    cli = Cli(_copy(briefed, tmp_path / "project"), cli_env())

    cli.killed_at("content.drafted#1", verb="content")  # kill-a's drafts committed, kill-b's never drafted
    killed_s = time.perf_counter() - started
    killed = _content_run(cli, "running")
    left = cli.sql("select campaign, count(*) from content.drafts group by all order by all")
    assert left == [("kill-a", len([d for d in clean["drafts"] if d[0] == "kill-a"]))]
    # the half run is not offered for review, cannot be approved, and is not exported
    assert json.loads(_invoke(cli, "drafts", "list", "--json").stdout) == []
    [(half,)] = cli.sql("select draft_id from content.drafts where variant = 'A'")
    refused = _invoke(cli, "approve", half, "--by", "marketing-lead", ok=False)
    assert refused.exit_code == 1 and "stopped before its drafting finished" in refused.stderr
    unexported = _invoke(cli, "export", ok=False)
    assert unexported.exit_code == 1 and killed in unexported.stderr
    assert "run `clarion content`" in unexported.stderr
    assert not (cli.root / "var" / "exports").exists()

    rerun_started = time.perf_counter()
    cli.run("content")
    rerun_s = time.perf_counter() - rerun_started
    rerun = _content_run(cli)
    assert cli.sql("select status from audit.runs where run_id = ?", [killed]) == [("interrupted",)]
    # the same drafts as the clean run, once each, all of the rerun; nothing of the killed run is left
    assert _drafts(cli) == clean["drafts"]
    assert cli.sql("select distinct run_id from content.drafts") == [(rerun,)]
    assert cli.sql("select count(*) from content.prompts where run_id = ?", [killed]) == [(0,)]
    assert (
        cli.sql("select campaign, segment, slot, sha256, prompt from content.prompts order by all")
        == clean["prompts"]
    )
    assert len(json.loads(_invoke(cli, "drafts", "list", "--json").stdout)) == len(clean["drafts"])

    assert _approve_all(cli) == clean["approved"]
    _invoke(cli, "export")
    assert cli.sql("select count(*), count(distinct draft_id) from content.decisions") == [
        (clean["approved"], clean["approved"])
    ]
    # the same recipients, copy and variants as the clean export; only the drafts' ids are the rerun's
    ids = dict(cli.sql("select campaign || '/' || variant, draft_id from content.drafts"))
    for campaign in BRIEFS:
        rows = _csv(cli, rerun, campaign)
        assert [r["draft_id"] for r in rows] == [ids[f"{campaign}/{r['variant']}"] for r in rows]
        assert [{**r, "draft_id": ""} for r in rows] == [
            {**r, "draft_id": ""} for r in clean["csv"][campaign]
        ]
        assert len(rows) > 0, campaign
    exports = _exports(cli)
    assert [(e[1], e[2], e[3], e[4]) for e in exports] == [(e[1], e[2], e[3], e[4]) for e in clean["exports"]]
    assert len({e[0] for e in exports}) == len(exports) == len(BRIEFS)
    assert not [f for f in _files(cli.root) if f.endswith(".tmp")]
    _assert_audit_and_lineage_verify(cli, rerun)
    cli.assert_no_personal_data_in_output(csv_people(cli.root / "var" / "crm"))
    print(
        f"content killed at content.drafted#1: killed after {killed_s:.1f} s, rerun {rerun_s:.1f} s, "
        f"test {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s"
    )


def test_export_killed_after_writing_a_file_is_rerun_to_the_clean_files_with_one_exports_row_each(
    clean: dict[str, Any], tmp_path: Path
) -> None:
    started, cpu = time.perf_counter(), cpu_seconds()
    cli = Cli(_copy(clean["snapshot"], tmp_path / "project"), cli_env())
    kill_a, kill_b = (f"{clean['run_id']}-{name}-email" for name in BRIEFS)

    # 1. kill-a's export recorded; kill-b's file in place, its row and audit event not yet written
    cli.killed_at("content.exported#2", verb="export")
    assert [e[0] for e in _exports(cli)] == [kill_a]
    assert _files(cli.root) == clean["files"]  # the files are whole: written aside, then moved in place
    # 2. killed again with kill-a's file written anew, before its row is replaced
    cli.killed_at("content.exported#1", verb="export")
    assert [e[0] for e in _exports(cli)] == [kill_a]
    # 3. the export runs to the end
    _invoke(cli, "export")

    assert _files(cli.root) == clean["files"]  # byte for byte, no stray .csv.tmp
    assert [e[:-1] for e in _exports(cli)] == [e[:-1] for e in clean["exports"]]  # one row per export
    assert [e[-1] for e in _exports(cli)] == [
        clean["files"][f"{clean['run_id']}/{n}/email.csv"] for n in BRIEFS
    ]
    events = cli.sql(
        "select subject, details->>'file_sha256' from audit.events "
        "where action = 'export.written' order by seq"
    )
    assert [s for s, _ in events] == [kill_a, kill_a, kill_b]  # attempt 1 recorded kill-a; attempt 3 both
    assert {s: sha for s, sha in events} == {e[0]: e[-1] for e in clean["exports"]}
    _assert_audit_and_lineage_verify(cli, clean["run_id"])
    print(f"export killed twice: {time.perf_counter() - started:.1f} s, CPU {cpu_seconds() - cpu:.0f} s")
