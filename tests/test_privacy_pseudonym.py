"""Keyed pseudonyms: the SQL twin equals the Python function, the key decides them, and it never shows."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pytest

from clarion.config import Settings
from clarion.privacy.pseudonym import Pseudonymizer, PseudonymKeyError, for_settings


def test_a_pseudonym_is_the_hmac_of_the_id_under_the_key_not_a_plain_hash() -> None:
    p = Pseudonymizer(b"a key of some length")
    expected = "p_" + hmac.new(b"a key of some length", b"contact:42", hashlib.sha256).hexdigest()[:16]
    assert p(42) == expected
    assert p(42) != "p_" + hashlib.sha256(b"contact:42").hexdigest()[:16]
    assert Pseudonymizer(b"another key")(42) != p(42)


@pytest.mark.parametrize("key", [b"short", b"k" * 64, b"a much longer key than one sha256 block " * 3])
def test_sql_twin_and_macro_give_the_python_pseudonym_for_every_id(key: bytes) -> None:
    p = Pseudonymizer(key)
    con = duckdb.connect()
    expr, params = p.sql("i")
    from_sql = con.execute(f"select i, {expr} from range(2000) t(i) order by i", params).fetchall()
    p.register(con)
    from_macro = con.execute("select i, pseudonymize(i) from range(2000) t(i) order by i").fetchall()
    python = [(i, p(i)) for i in range(2000)]
    assert from_sql == python
    assert from_macro == python
    assert len({v for _, v in python}) == 2000


def test_the_key_comes_from_the_environment_before_the_warehouse_and_never_shows(monkeypatch) -> None:
    con = duckdb.connect()
    settings = Settings()
    monkeypatch.delenv("PSEUDONYM_KEY", raising=False)
    kept = for_settings(settings, con)
    assert kept.source == "warehouse"
    assert for_settings(settings, con).key_id == kept.key_id  # generated once, then read back
    monkeypatch.setenv("PSEUDONYM_KEY", "from-the-environment")
    env = for_settings(settings, con)
    assert env.source == "$PSEUDONYM_KEY" and env(7) == Pseudonymizer(b"from-the-environment")(7)
    assert "from-the-environment" not in repr(env) and "from-the-environment" not in env.key_id


def test_require_key_refuses_the_warehouse_fallback(monkeypatch) -> None:
    monkeypatch.delenv("PSEUDONYM_KEY", raising=False)
    settings = Settings.model_validate({"privacy": {"require_key": True}})
    with pytest.raises(PseudonymKeyError, match="PSEUDONYM_KEY"):
        for_settings(settings, duckdb.connect())
