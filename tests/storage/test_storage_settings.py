"""The catalogue URL setting, password redaction, and the CI rule for the PostgreSQL half of the suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _pytest.outcomes import Failed, Skipped

import migrations
from storage.catalogue import Catalogue, catalogue_url, make_engine, redact_secrets, redact_url
from storage.catalogue.settings import DEFAULT_URL


def test_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSET3D_CATALOGUE_URL", raising=False)
    monkeypatch.delenv("ASSET3D_DATABASE_URL", raising=False)
    assert catalogue_url() == DEFAULT_URL == "sqlite:///.asset3d/catalogue.db"
    monkeypatch.setenv("ASSET3D_DATABASE_URL", "sqlite:///alias.db")
    assert catalogue_url() == "sqlite:///alias.db"
    monkeypatch.setenv("ASSET3D_CATALOGUE_URL", "sqlite:///main.db")
    assert catalogue_url() == "sqlite:///main.db"
    assert catalogue_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_default_is_a_sqlite_file_under_dot_asset3d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASSET3D_CATALOGUE_URL", raising=False)
    monkeypatch.delenv("ASSET3D_DATABASE_URL", raising=False)
    migrations.upgrade()
    cat = Catalogue()
    assert sum(cat.counts_by_status().values()) == 0
    cat.close()
    assert (tmp_path / ".asset3d" / "catalogue.db").is_file()


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("postgresql+psycopg://bot:p%40ss@db:5432/cat", "p%40ss"),
        ("could not connect to postgresql://u:topsecret@h/db: refused", "topsecret"),
        ("host=db user=bot password=topsecret dbname=cat", "topsecret"),
        ("password='two words' host=db", "two words"),
    ],
)
def test_redact_secrets(text: str, hidden: str) -> None:
    redacted = redact_secrets(text)
    assert hidden not in redacted and "***" in redacted


def test_redact_url_and_bare_postgres_urls_use_psycopg() -> None:
    assert redact_url("postgres://bot:pw@db/cat") == "postgresql+psycopg://bot:***@db/cat"
    assert make_engine("postgresql://bot:pw@db/cat").dialect.driver == "psycopg"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"


def test_postgres_unreachable_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, postgres_probe: Callable[[str], None]
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="CI=true"):
        postgres_probe("postgresql+psycopg://postgres@127.0.0.1:1/test")


def test_postgres_unreachable_skips_locally(
    monkeypatch: pytest.MonkeyPatch, postgres_probe: Callable[[str], None]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="unreachable"):
        postgres_probe("postgresql+psycopg://postgres@127.0.0.1:1/test")
