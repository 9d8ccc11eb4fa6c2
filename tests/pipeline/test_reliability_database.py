"""Fault suite: the catalogue database lost in the middle of a batch, then back.

PostgreSQL: the run's role loses CONNECT on its own database and its sessions are terminated in a loop
(``pg_terminate_backend``) for a few seconds, starting at the batch's first GLB upload; SQLite: another
connection holds an exclusive lock for as long. Whatever the run could not record it leaves unpublished (no
manifest without its row); the run ends with its report and its run row closed; a second run publishes what
is left: every good photo exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import POSTGRES_URL, postgres_database_with_role
from pipeline_helpers import S3FaultProxy, upload_photos
from reliability_helpers import assert_counts, assert_no_secret, assert_published_once

from asset3d.cli.convert import convert_local
from asset3d.pipeline.records import close_catalogue
from asset3d.pipeline.settings import load_settings
from storage.catalogue import Catalogue

pytestmark = pytest.mark.reliability
NAMES = ("chair.png", "robot.png", "hamburger.png", "cerebro.jpg")
OUTAGE_S = 6.0


@pytest.fixture
def postgres_role() -> Iterator[dict[str, str]]:
    """A database of its own, and a role with a password that alone may connect to it."""
    with postgres_database_with_role("a3d") as db:
        try:
            yield db
        finally:
            close_catalogue(db["url"])


def _pg_outage(database: str, role: str, seconds: float) -> None:
    """The role cannot connect, and its sessions are killed as they come, for ``seconds``."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(POSTGRES_URL)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, dbname=u.database, autocommit=True) as admin:
        admin.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM "{role}"')
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            time.sleep(0.2)
        admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')


def _sqlite_outage(path: Path, seconds: float) -> None:
    """Another connection holds the database exclusively for ``seconds``."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _run_with_outage(
    outage: Any, url: str, s3: Any, s3_endpoint: str, bucket: str, photo_bytes: dict[str, bytes], options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[dict[str, Any], dict[str, Any]]:
    upload_photos(s3, bucket, {n: photo_bytes[n] for n in NAMES})
    started: list[threading.Thread] = []

    def rule(method: str, path: str, nth: int) -> tuple[int, str] | None:
        if method == "PUT" and path.endswith("/model.glb") and not started:
            t = threading.Thread(target=outage, daemon=True)
            started.append(t)
            t.start()
        return None

    proxy = S3FaultProxy(s3_endpoint, rule).start()
    settings = load_settings(**{**options, "dest": f"s3://{bucket}/assets", "catalogue_url": url, "batch_size": 1, "retries": 2})
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        first = convert_local(f"s3://{bucket}/incoming", settings).as_dict()
        for t in started:
            t.join()
        second = convert_local(f"s3://{bucket}/incoming", settings).as_dict()
    finally:
        proxy.stop()
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert started, "the outage never started"
    return first, second


def _check(first: dict[str, Any], second: dict[str, Any], url: str, bucket: str) -> None:
    assert_counts(first, photos=len(NAMES))
    assert_counts(second, photos=len(NAMES))
    uris = [f"s3://{bucket}/incoming/SKU-{n.split('.')[0]}/{n}" for n in NAMES]
    assert_published_once(f"s3://{bucket}/assets", url, uris)
    assert {r["status"] for r in second["photos"]} <= {"published", "skipped"}
    cat = Catalogue(url)
    try:
        assert not cat.runs_in_progress()  # both runs closed their rows, the outage notwithstanding
        for run_id in first["run_ids"] + second["run_ids"]:
            assert cat.get_run(run_id).finished_at is not None
    finally:
        cat.close()


def test_postgres_lost_mid_batch_then_back(
    postgres_role: dict[str, str], s3: Any, s3_endpoint: str, bucket: str, photo_bytes: dict[str, bytes],
    fast_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    role = postgres_role

    def outage() -> None:
        _pg_outage(role["database"], role["role"], OUTAGE_S)

    first, second = _run_with_outage(outage, role["url"], s3, s3_endpoint, bucket, photo_bytes, fast_options, monkeypatch)
    _check(first, second, role["owner"], bucket)
    captured = capsys.readouterr()
    failed = [r for r in first["photos"] if r["status"] == "failed"]
    assert all(r["reason"] in ("unreachable", "transient") for r in failed), failed
    assert_no_secret([role["password"]], texts=[captured.out, captured.err, str(first), str(second)],
                     catalogue_url=role["owner"], dest=f"s3://{bucket}/assets")  # fmt: skip


def test_sqlite_locked_mid_batch_then_free(
    tmp_path: Path, s3: Any, s3_endpoint: str, bucket: str, photo_bytes: dict[str, bytes], fast_options: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import migrations

    path = tmp_path / "catalogue.db"
    url = f"sqlite:///{path}"
    migrations.upgrade(url, "head")

    def outage() -> None:
        _sqlite_outage(path, OUTAGE_S)

    first, second = _run_with_outage(outage, url, s3, s3_endpoint, bucket, photo_bytes, fast_options, monkeypatch)
    _check(first, second, url, bucket)
