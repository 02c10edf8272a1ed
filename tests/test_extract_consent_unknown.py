"""A customers export without consent columns loads with consent unknown (false: nothing is sent to
them), and says so with a count; a file lacking a column its sibling files have is still rejected."""

from __future__ import annotations

from pathlib import Path

from extract_helpers import by_entity, make_settings, query, run_extract

from clarion.cli.text import accounting_text

STAMP = "2025-01-01T00:00:00Z"


def write(folder: Path, name: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


def extract(tmp_path: Path, folder: Path):
    settings = make_settings(tmp_path / "p", {"shop": {"kind": "files", "path": str(folder)}})
    return settings, by_entity(run_extract(settings))


def test_contacts_without_consent_columns_load_with_consent_unknown(tmp_path: Path) -> None:
    ids = list(range(1, 38))
    write(
        tmp_path / "shop",
        "contacts.csv",
        ["contact_id,country,signup_date,updated_at"] + [f"{i},GB,2024-06-01,{STAMP}" for i in ids],
    )
    settings, results = extract(tmp_path, tmp_path / "shop")
    r = results["contacts"]
    assert (r.read, r.loaded, r.quarantined) == (len(ids), len(ids), 0)
    rows = query(
        settings, "select contact_id, email_consent, sms_consent, marketing_objection from raw.contacts"
    )
    assert sorted(rows) == [(i, False, False, False) for i in ids]
    assert "no consent columns (email_consent, sms_consent)" in r.message
    assert f"{len(ids)} contacts load with consent unknown" in r.message
    assert "no objection is recorded" in r.message
    [(message,)] = query(settings, "select message from audit.extract_loads where entity = 'contacts'")
    assert message == r.message
    assert f"{len(ids)} contacts load with consent unknown" in accounting_text([r.as_dict()])


def test_only_the_missing_consent_column_is_unknown(tmp_path: Path) -> None:
    write(
        tmp_path / "shop",
        "contacts.csv",
        ["contact_id,signup_date,email_consent,updated_at", f"1,2024-06-01,true,{STAMP}"],
    )
    settings, results = extract(tmp_path, tmp_path / "shop")
    assert query(settings, "select email_consent, sms_consent from raw.contacts") == [(True, False)]
    assert "no consent columns (sms_consent, marketing_objection)" not in results["contacts"].message
    assert "no consent columns (sms_consent)" in results["contacts"].message


def test_a_file_without_the_consent_columns_its_sibling_has_is_still_rejected(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    consent = "email_consent,sms_consent,marketing_objection"
    write(
        shop,
        "contacts.csv",
        [f"contact_id,signup_date,{consent},updated_at", f"1,2024-06-01,true,true,false,{STAMP}"],
    )
    write(
        shop,
        "contacts_part2.csv",
        ["contact_id,signup_date,updated_at", f"2,2024-06-01,{STAMP}", f"3,2024-06-01,{STAMP}"],
    )
    settings, results = extract(tmp_path, shop)
    r = results["contacts"]
    assert (r.loaded, r.quarantined) == (1, 2)
    found = query(settings, "select file, row, reason, field from quarantine.contacts order by row")
    assert found == [("contacts_part2.csv", i, "missing_column", consent) for i in (1, 2)]
    assert "consent unknown" not in r.message
