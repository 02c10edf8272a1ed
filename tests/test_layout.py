"""The project's fixed layout and its deployment file stay wired to real code."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path

import yaml
from prefect import Flow

REPO = Path(__file__).resolve().parents[1]


def test_top_level_layout_is_as_designed() -> None:
    for folder in ("flows", "dbt", "models", "expectations", "clarion", "campaigns", "tests", "bench"):
        assert (REPO / folder).is_dir(), folder
    for file in ("prefect.yaml", "pyproject.toml", "Makefile", "README.md", "clarion.yaml", ".ci/run"):
        assert (REPO / file).is_file(), file


def test_every_deployment_entrypoint_is_a_prefect_flow() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        assert (REPO / path).is_file(), deployment["entrypoint"]
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert isinstance(flow, Flow), deployment["name"]
        # parameters in the file must be parameters of the flow
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties), deployment["name"]


def test_models_library_does_not_import_prefect() -> None:
    for path in (REPO / "models").rglob("*.py"):
        assert "prefect" not in path.read_text(), (
            f"{path} imports Prefect; models/ must stay orchestration-free"
        )


def test_docs_document_every_verb_config_key_and_defect_kind() -> None:
    from clarion.cli import cli
    from clarion.config import describe
    from clarion.synth.defects import KINDS

    first = (REPO / "README.md").read_text()
    assert first.index("make demo") < first.index("## ")  # the two commands come first
    # the README is the way in; the reference (every verb, key and table) lives in docs/
    manual = "\n".join([first, *(page.read_text() for page in sorted((REPO / "docs").rglob("*.md")))])
    for verb in cli.commands:
        assert f"clarion {verb}" in manual, verb
    for row in describe():
        assert f"`{row['key']}" in manual or f"`{row['key'].split('.')[0]}." in manual, row["key"]
        assert row["key"].rsplit(".", 1)[-1] in manual, row["key"]
    for kind in {k.name for k in KINDS}:
        assert f"`{kind}`" in manual, kind


def test_make_demo_tune_runs_the_brand_adapter_on_the_demo_project() -> None:
    """`make demo-tune` (dry run): the demo first where no warehouse exists, then `clarion content tune`."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(  # on its own, not as a sub-make of `make test VENV=...`
        ["make", "-n", "demo-tune", "STAMP=Makefile", "VENV=.venv"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line.strip() for line in out.splitlines()]
    assert "test -e var/warehouse.duckdb || make demo" in lines, out
    assert ".venv/bin/clarion content tune" in lines, out
    assert lines.index(".venv/bin/clarion content tune") > lines.index(
        "test -e var/warehouse.duckdb || make demo"
    )
