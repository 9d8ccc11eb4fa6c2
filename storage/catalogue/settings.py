"""Where the catalogue lives, and how to connect to it safely.

The URL comes from, in order: an explicit argument (``--url``), ``ASSET3D_CATALOGUE_URL``,
``ASSET3D_DATABASE_URL`` (accepted as an alias), else a SQLite file ``./.asset3d/catalogue.db``.
PostgreSQL URLs use psycopg 3: ``postgresql+psycopg://user:password@host:5432/dbname`` (a bare
``postgresql://`` or ``postgres://`` is taken to mean the same driver). A PostgreSQL schema can be chosen
with ``?options=-csearch_path%3Dmyschema``.

Passwords never leave this module in clear: show URLs with `redact_url`, and pass any driver message
through `redact_secrets` before printing or logging it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from storage.catalogue.errors import CatalogueUnavailable

ENV_URL = "ASSET3D_CATALOGUE_URL"
ENV_URL_ALIAS = "ASSET3D_DATABASE_URL"
DEFAULT_URL = "sqlite:///.asset3d/catalogue.db"

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")
_KV_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\"[^\"]*\"|\S+)")


def catalogue_url(explicit: str | None = None) -> str:
    """The catalogue URL: ``explicit``, else the environment, else the local SQLite default."""
    return explicit or os.environ.get(ENV_URL) or os.environ.get(ENV_URL_ALIAS) or DEFAULT_URL


def redact_secrets(text: str) -> str:
    """``text`` with passwords in URLs (``scheme://user:***@host``) and ``password=...`` pairs masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def parse_url(url: str | URL) -> URL:
    """Parse a catalogue URL, mapping ``postgresql://`` and ``postgres://`` to psycopg 3.

    Raises
    ------
    CatalogueUnavailable
        ``reason="bad_url"``, with the URL shown redacted.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CatalogueUnavailable(f"catalogue URL {redact_secrets(str(url))!r} is not a valid database URL", reason="bad_url") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact_url(url: str | URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    try:
        return parse_url(url).render_as_string(hide_password=True)
    except CatalogueUnavailable:
        return redact_secrets(str(url))


def make_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """Create the SQLAlchemy engine for a catalogue URL (default: `catalogue_url`).

    SQLite engines get foreign keys on, WAL journalling, a 30 s busy timeout, and ``BEGIN IMMEDIATE``
    transactions, so that two processes writing at once queue up instead of failing with "database is
    locked". The folder of a SQLite file is created when missing.
    """
    parsed = parse_url(url if url is not None else catalogue_url())
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": 30.0, **kwargs.pop("connect_args", {})}
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if database and database != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(parsed, pool_pre_ping=True, **kwargs)
