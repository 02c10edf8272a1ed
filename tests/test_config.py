"""Configuration: one validated object from clarion.yaml + CLARION_* overrides; wrong input fails fast."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from clarion.cli import cli
from clarion.config import describe, load_settings
from clarion.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clarion.yaml"
    path.write_text(text)
    return path


def problems(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(path, env=env or {})
    return str(err.value)


def test_the_checked_in_example_is_valid_and_documents_every_key() -> None:
    settings = load_settings(REPO / "clarion.yaml", env={})
    assert settings.warehouse.path == REPO / "var" / "warehouse.duckdb"
    text = (REPO / "clarion.yaml").read_text()
    for row in describe():
        assert row["key"].split(".")[-1] + ":" in text, f"{row['key']} is not shown in clarion.yaml"


def test_without_a_file_the_defaults_apply_relative_to_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.warehouse.path == tmp_path / "var" / "warehouse.duckdb"
    assert settings.generate.customers == 2000


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "proj"
    sub.mkdir()
    settings = load_settings(write(sub, "warehouse:\n  path: data/wh.duckdb\n"), env={})
    assert settings.warehouse.path == sub / "data" / "wh.duckdb"


def test_environment_overrides_any_key_with_yaml_typed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "generate:\n  customers: 100\n")
    settings = load_settings(
        path,
        env={
            "CLARION_GENERATE__CUSTOMERS": "5000",
            "CLARION_GENERATE__CUTOFF": "2025-12-31",
            "CLARION_WAREHOUSE__LOCK_WAIT_SECONDS": "2.5",
            "CLARION_LOGGING__LEVEL": "DEBUG",
            "UNRELATED": "x",
        },
    )
    assert settings.generate.customers == 5000
    assert settings.generate.cutoff == date(2025, 12, 31)
    assert settings.warehouse.lock_wait_seconds == 2.5
    assert settings.logging.level == "DEBUG"


def test_command_line_overrides_beat_the_environment_and_none_means_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "generate:\n  seed: 1\n  customers: 100\n")
    settings = load_settings(
        path, env={"CLARION_GENERATE__SEED": "2"}, overrides={"generate": {"seed": 3, "customers": None}}
    )
    assert settings.generate.seed == 3
    assert settings.generate.customers == 100


def test_an_unknown_key_names_its_path_and_suggests_the_right_one(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "warehouse:\n  pth: x.duckdb\n"))
    assert "warehouse.pth (from clarion.yaml): unknown key 'pth'; did you mean 'path'?" in message
    assert "Valid keys here: path, lock_wait_seconds" in message


def test_an_unknown_section_is_reported(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "warehous:\n  path: x\n"))
    assert "unknown key 'warehous'; did you mean 'warehouse'?" in message


def test_a_wrong_type_says_what_was_expected_and_what_came(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "generate:\n  customers: many\n  cutoff: soon\n"))
    assert "generate.customers (from clarion.yaml): expected a whole number, got 'many'" in message
    assert "generate.cutoff (from clarion.yaml): expected a date as YYYY-MM-DD, got 'soon'" in message
    assert "2 problems" in message  # every problem at once, not one per attempt


def test_a_value_outside_its_choices_lists_them(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "generate:\n  format: xlsx\n"))
    assert "generate.format (from clarion.yaml): expected one of 'csv' or 'parquet', got 'xlsx'" in message


def test_a_value_out_of_range_names_the_bound(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "generate:\n  defects: 0.9\n"))
    assert "generate.defects" in message and "less than or equal to 0.2" in message


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    message = problems(write(tmp_path, ""), env={"CLARION_WAREHOUSE__THREADS": "lots"})
    assert (
        "warehouse.threads (from CLARION_WAREHOUSE__THREADS): expected a whole number, got 'lots'" in message
    )


def test_an_unknown_environment_variable_fails_instead_of_being_ignored(tmp_path: Path) -> None:
    message = problems(write(tmp_path, ""), env={"CLARION_WAREHOUSE__PTH": "x"})
    assert "CLARION_WAREHOUSE__PTH (warehouse.pth): unknown key 'pth'; did you mean 'path'?" in message
    message = problems(write(tmp_path, ""), env={"CLARION_GENERATE__SEED__X": "1"})
    assert "below a plain value" in message


def test_broken_yaml_points_at_the_line(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "warehouse:\n  path: [unclosed\n"))
    assert "not valid YAML at line" in message


def test_a_missing_config_file_is_an_error_not_silently_defaults(tmp_path: Path) -> None:
    message = problems(tmp_path / "nope.yaml")
    assert "nope.yaml does not exist" in message


def test_the_cli_reports_config_problems_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "generate:\n  format: xlsx\n")
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert result.exit_code == 2
    assert "error:" in result.output and "generate.format" in result.output
    assert "Traceback" not in result.output


def test_clarion_config_shows_effective_values_and_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "generate:\n  customers: 123\n")
    result = CliRunner().invoke(
        cli, ["--config", str(path), "config", "--json"], env={"CLARION_GENERATE__SEED": "9"}
    )
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    assert data["generate"]["customers"] == 123 and data["generate"]["seed"] == 9
    keys = CliRunner().invoke(cli, ["config", "--keys"])
    assert "CLARION_WAREHOUSE__LOCK_WAIT_SECONDS" in keys.output


def test_source_problems_name_the_source_and_what_to_write(tmp_path: Path) -> None:
    message = problems(
        write(
            tmp_path,
            "sources:\n"
            "  crm: {kind: files, path: x, entities: {ordres: {}}}\n"
            "  db: {kind: postgres, schema: crm}\n"
            "  api: {kind: hubspot, base_url: 'http://x', token_env: T, pth: 1}\n"
            "  odd: {kind: ftp}\n"
            "  Bad-Name: {kind: files, path: x}\n",
        )
    )
    assert "sources.crm.entities: 'ordres' is not allowed here; expected one of 'contacts'" in message
    assert "sources.db: give exactly one of dsn_env (an environment variable) or dsn_secret" in message
    assert "sources.api.pth (from clarion.yaml): unknown key 'pth'" in message and "token_env" in message
    assert "sources.odd: expected kind one of files, postgres, mariadb, hubspot" in message
    assert (
        "sources: 'Bad-Name' is not allowed here; a source name is lower-case letters, digits and _"
        in message
    )


def test_a_delimiter_must_be_one_character_tab_or_whitespace(tmp_path: Path) -> None:
    message = problems(
        write(tmp_path, "sources:\n  crm: {kind: files, path: x, entities: {orders: {delimiter: ';;'}}}\n")
    )
    assert "sources.crm.entities.orders.delimiter (from clarion.yaml): must be one character" in message


def test_extract_sources_must_name_configured_sources(tmp_path: Path) -> None:
    message = problems(write(tmp_path, "extract:\n  sources: [crm, nope]\n"))
    assert "extract.sources names ['nope'], which are not in sources (['crm'])" in message


def test_an_environment_override_edits_the_default_source_instead_of_replacing_it(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={"CLARION_SOURCES__CRM__PATH": "/data/export"})
    assert settings.sources["crm"].kind == "files"
    assert settings.sources["crm"].path == Path("/data/export")


def test_two_hubspot_objects_cannot_feed_one_entity(tmp_path: Path) -> None:
    message = problems(
        write(
            tmp_path,
            "sources:\n  api: {kind: hubspot, base_url: 'http://x', token_env: T, "
            "objects: {deals: orders, orders: orders}}\n",
        )
    )
    assert "objects 'deals' and 'orders' both map to orders; keep one" in message
