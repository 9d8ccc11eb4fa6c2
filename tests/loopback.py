"""Real services on loopback, shared by the suites: moto's S3 server and the local PostgreSQL.

* ``aws_env`` / ``s3_endpoint`` (session fixtures, re-exported by tests/conftest.py): fake credentials,
  no shared AWS files, and moto's `ThreadedMotoServer` on 127.0.0.1 with an OS-chosen port;
* `require_postgres`: returns when PostgreSQL answers, skips otherwise, and FAILS under ``CI=true``;
* `postgres_schema`: a URL whose connections use a brand-new schema in database ``test``, dropped after;
* `unused_port`: a loopback port nothing listens on (for refused connections, or a server to start).

Override the PostgreSQL server with ``ASSET3D_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

#: The PostgreSQL server of the suites (database ``test``, trust authentication).
POSTGRES_URL = os.environ.get("ASSET3D_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that the OS just handed out and nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    drop = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS")
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
    """URL of a moto S3 server on 127.0.0.1 (a real HTTP S3 API; port chosen by the OS)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def require_postgres(url: str = POSTGRES_URL) -> None:
    """Return when PostgreSQL answers at ``url``; otherwise skip, or fail when ``CI=true``."""
    import psycopg
    from sqlalchemy.engine import make_url

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
            pytest.fail(message + " (CI=true: the PostgreSQL half of the suite must run)")
        pytest.skip(message)


@contextlib.contextmanager
def postgres_schema(prefix: str = "asset3d_test") -> Iterator[str]:
    """A URL on a new schema of database ``test`` (connections get it as search_path); dropped on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    require_postgres()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def postgres_database_with_role(prefix: str = "a3d") -> Iterator[dict[str, str]]:
    """A migrated database of its own and a role with a password that alone may connect to it (besides the
    superuser): ``url`` (the role's, password included), ``owner`` (the superuser's), ``database``,
    ``role``, ``password``. Dropped on exit, open sessions included."""
    import psycopg
    from sqlalchemy.engine import make_url

    import migrations

    require_postgres()
    u = make_url(POSTGRES_URL)
    name, role = f"{prefix}_db_{uuid.uuid4().hex[:8]}", f"{prefix}_role_{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    admin = psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, dbname=u.database, autocommit=True)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        admin.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
        admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
        owner = u.set(database=name).render_as_string(hide_password=False)
        migrations.upgrade(owner, "head")
        with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, dbname=name, autocommit=True) as db:
            db.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
            db.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
            db.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        url = u.set(database=name, username=role, password=password).render_as_string(hide_password=False)
        yield {"url": url, "owner": owner, "database": name, "role": role, "password": password}
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()
