"""dlt's working files hold no personal data once an extract is published: its load packages (every
row it ever loaded, as Parquet) are deleted, and so is the landing zone's copy."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from clarion.config import GenerateSettings
from clarion.extract.sources import discard_packages, dlt_dir
from clarion.synth.generator import generate
from flows.pipeline import pipeline

pytestmark = pytest.mark.usefixtures("prefect_server")


def _cells(path: Path) -> str:
    """Every value of a file as text: Parquet through DuckDB, anything else as bytes."""
    if path.suffix == ".parquet":
        with duckdb.connect() as con:
            return repr(con.execute(f"select * from read_parquet('{path}')").fetchall()).lower()
    return path.read_bytes().decode("utf-8", "replace").lower()


def test_after_an_extract_no_file_under_var_dlt_or_var_landing_holds_a_contact(project, tmp_path) -> None:
    settings = project()
    generate(GenerateSettings(customers=120, seed=8, defects=0.0), out=tmp_path / "var" / "crm")
    result = pipeline(config_path="clarion.yaml", stages=["extract"])
    assert result["status"] == "completed"
    with duckdb.connect(str(settings.warehouse.path), read_only=True) as con:
        people = con.execute(
            "select lower(email), phone from raw.contacts where email is not null"
        ).fetchall()
        bodies = [r[0].lower()[:40] for r in con.execute("select body from raw.support_tickets").fetchall()]
    assert len(people) > 100 and bodies  # the extract loaded them: something to look for
    working = [p for d in ("dlt", "landing") for p in (settings.var_dir / d).rglob("*") if p.is_file()]
    assert any(p.is_relative_to(dlt_dir(settings, "crm")) for p in working)  # dlt's state stays
    leaks = {}
    for path in working:
        text = _cells(path)
        found = [e for e, _ in people if e in text] + [p for _, p in people if p and p.lower() in text]
        found += [b for b in bodies if b in text]
        if found:
            leaks[str(path.relative_to(settings.var_dir))] = len(found)
    assert leaks == {}
    assert not list(dlt_dir(settings, "crm").rglob("completed_jobs"))


def test_discard_packages_deletes_every_package_dlt_keeps(project) -> None:
    settings = project()
    root = dlt_dir(settings, "crm")
    planted = {
        "load/loaded/111.1/completed_jobs/contacts.abc.0.parquet",
        "load/normalized/222.2/new_jobs/contacts.def.0.parquet",
        "normalize/extracted/333.3/new_jobs/contacts.ghi.0.parquet",
    }
    for rel in planted | {"state.json", "schemas/clarion_crm.schema.json", "trace.pickle"}:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    assert discard_packages(settings, "crm") == ["111.1", "222.2", "333.3"]
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["schemas/clarion_crm.schema.json", "state.json"]
