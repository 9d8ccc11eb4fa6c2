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

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import migrations
from storage.catalogue import Catalogue
from storage.local import LocalStore
from storage.objects import ObjectStore
from storage.s3 import S3Store

POSTGRES_URL = os.environ.get("ASSET3D_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgresql")


# -- S3 ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake credentials and no shared AWS config, so nothing can reach a real account."""
    empty = tmp_path_factory.mktemp("aws")
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(empty / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty / "credentials"),
    }
    drop = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN")
    saved = {k: os.environ.get(k) for k in (*values, *drop)}
    os.environ.update(values)
    for k in drop:
        os.environ.pop(k, None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_endpoint(aws_env: None) -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 (port chosen by the OS)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


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


def require_postgres(url: str = POSTGRES_URL) -> None:
    """Return when PostgreSQL answers at ``url``; otherwise skip, or fail when ``CI=true``."""
    import psycopg

    parsed = make_url(url)
    try:
        with psycopg.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username, password=parsed.password,
            dbname=parsed.database, connect_timeout=3,
        ) as conn:  # fmt: skip
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        message = f"PostgreSQL unreachable at {parsed.render_as_string(hide_password=True)}: {type(err).__name__}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL half of the catalogue suite must run)")
        pytest.skip(message)


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
    schema = f"asset3d_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


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
