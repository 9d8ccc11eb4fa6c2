"""A real `prefect server start` on loopback, shared by the deployment and scale-out tests (session scope).

* ``prefect_server``: on a free 127.0.0.1 port with its own PREFECT_HOME, on a fresh PostgreSQL database when
  PostgreSQL answers (required under ``CI=true``), else SQLite; stopped (and the database dropped) at the end;
* ``api``: points this process (Prefect settings) and its children (``PREFECT_API_URL``) at it;
* ``deployed``: ``asset3d deploy --timezone Europe/Madrid --gpu-slots 2`` run once, as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import unused_port
from pipeline_helpers import POSTGRES_URL

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the Prefect server (None when PostgreSQL is not there)."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(POSTGRES_URL)
    name = f"prefect_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: PostgreSQL must answer for the Prefect server test")
        yield None
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield u.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`prefect server start` on a free loopback port, its own PREFECT_HOME; stopped afterwards."""
    home = tmp_path_factory.mktemp("prefect-server")
    databases = _postgres_database()
    pg = next(databases)
    port = unused_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": pg or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        import httpx

        def healthy() -> bool:
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the Prefect server", healthy, timeout=150)
        yield {"url": url, "home": home, "postgres": pg is not None, "database_url": pg}
    finally:
        stop(proc)
        log.close()
        next(databases, None)


@pytest.fixture
def api(prefect_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process and its children talk to the real server.

    Prefect keeps one events worker per process for any running server, holding the API URL it was created
    with: it is drained before and after, so events go to this server and not to one an earlier test used
    (``prefect_harness``)."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server["url"])
    EventsWorker.drain_all(timeout=10)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        try:
            yield prefect_server["url"]
        finally:
            EventsWorker.drain_all(timeout=10)


@pytest.fixture(scope="session")
def deployed(prefect_server: dict[str, Any]) -> dict[str, Any]:
    """`asset3d deploy --timezone Europe/Madrid --gpu-slots 2`, run as a user would."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server["url"], "PREFECT_HOME": str(prefect_server["home"])}
    proc = subprocess.run(
        [str(BIN / "asset3d"), "deploy", "--timezone", "Europe/Madrid", "--gpu-slots", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr}


def start_worker(server: dict[str, Any], name: str, pool: str, home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """A process worker (its own session, one flow run at a time, polling every second) with ``env`` on top of
    this process's environment; returns the process and its log file."""
    full = {
        **os.environ, "PREFECT_API_URL": server["url"], "PREFECT_HOME": str(home / name), "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO", **env,
    }  # fmt: skip
    log = home / f"{name}.log"
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name, "--limit", "1"],
        env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
    )  # fmt: skip
    return proc, log


def client() -> Any:
    from prefect import get_client

    return get_client(sync_client=True)


def runs_of(deployment: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter

    with client() as c:
        d = c.read_deployment_by_name(deployment)
        return list(c.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [d.id]})))


def delete_runs(deployment: str) -> None:
    with client() as c:
        for r in runs_of(deployment):
            c.delete_flow_run(r.id)
