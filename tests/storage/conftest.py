"""Fixtures for the storage and catalogue suites: a real S3 endpoint, both stores, both SQL engines.

* ``s3_endpoint``: moto's `ThreadedMotoServer` on 127.0.0.1, port 0 (a real HTTP S3 API on loopback),
  reached through real boto3 clients; fake credentials, no shared AWS files.
* ``store``: parametrized ``local`` / ``s3``: one fresh, empty store per test.
* ``catalogue_url``: parametrized ``sqlite`` / ``postgresql``: a fresh empty database per test (a SQLite
  file in tmp_path; a new PostgreSQL schema in database ``test`` at 127.0.0.1:5432, dropped afterwards).
  Override the server with ``ASSET3D_TEST_POSTGRES_URL``. When PostgreSQL is unreachable the PostgreSQL
  half skips locally but FAILS when ``CI=true``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from loopback import postgres_schema, require_postgres

import migrations
from storage.catalogue import Catalogue
from storage.local import LocalStore
from storage.objects import ObjectStore
from storage.s3 import S3Store

ENGINES = ("sqlite", "postgresql")


# -- S3 ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str) -> Any:
    """A plain boto3 client on the moto server, for set-up and for looking behind the store's back."""
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def s3_bucket(s3_admin: Any) -> str:
    """A new, empty bucket on the moto server."""
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3Store:
    """An S3 store under a prefix, with small list pages (so pagination is exercised) and fast failure."""
    return S3Store(s3_bucket, "incoming/v1", endpoint_url=s3_endpoint, list_page_size=3, max_attempts=2)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each backend in turn, fresh and empty."""
    if request.param == "local":
        return LocalStore(tmp_path / "bucket")
    return request.getfixturevalue("s3_store")


# -- SQL ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_available() -> None:
    require_postgres()


@pytest.fixture
def postgres_probe() -> Callable[[str], None]:
    """`require_postgres` itself, for the test of the CI rule."""
    return require_postgres


@pytest.fixture
def postgres_schema_url(postgres_available: None) -> Iterator[str]:
    """A URL whose connections use a brand-new schema in database ``test``; the schema is dropped after."""
    with postgres_schema("asset3d_test") as url:
        yield url


@pytest.fixture(params=ENGINES)
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each engine in turn (no tables yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.db'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def migrated_url(catalogue_url: str) -> str:
    """An empty database on each engine, upgraded to the head migration."""
    migrations.upgrade(catalogue_url, "head")
    return catalogue_url


@pytest.fixture
def catalogue(migrated_url: str) -> Iterator[Catalogue]:
    """The service layer over a freshly migrated database, on each engine."""
    cat = Catalogue(migrated_url)
    yield cat
    cat.close()
