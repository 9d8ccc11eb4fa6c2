"""Fixtures for the pipeline suite: a Prefect test harness, a tiny model, photos, S3 on loopback, both SQL engines.

* Prefect: one `prefect_test_harness` for the session (a temporary server and database), with
  ``PREFECT_HOME`` in a temporary folder, so no result cache or database outlives the session;
* ``tiny_model``: a model folder (config.yaml + model.ckpt) written from ``../shared/triposr/tiny_conformance.pt``;
* ``s3_endpoint``: moto's HTTP S3 server on 127.0.0.1 (fake credentials, no AWS files);
* ``catalogue_url``: parametrized ``sqlite`` / ``postgresql``: a migrated, empty catalogue per test (a new
  schema in database ``test`` at 127.0.0.1:5432 for PostgreSQL; it fails under ``CI=true`` when the server
  is unreachable, and skips otherwise);
* ``fast_options``: settings that keep one photo to about a second (32^3 grid, two small previews) and a
  review policy that approves whatever the untrained-looking tiny model makes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import POSTGRES_URL

# Before anything imports Prefect: a private home (database, result cache) and no telemetry.
_HOME = tempfile.mkdtemp(prefix="asset3d-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

PHOTOS = ("chair.png", "cerebro.jpg", "flor.png", "hamburger.png", "robot.png", "teapot.png")

#: Thresholds that approve any built asset: the tiny model's shapes mean nothing, the plumbing is tested.
PERMISSIVE_REVIEW = {
    "reject_below_silhouette_iou": 0.0,
    "approve_min_silhouette_iou": 0.0,
    "approve_min_masked_psnr_db": 0.0,
    "approve_max_color_error": 255.0,
    "approve_max_seam_p95": 255.0,
    "approve_max_components": 1_000_000,
    "approve_max_boundary_edges": 1_000_000_000,
}


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def tiny_model(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    import yaml

    fixture = torch.load(shared / "triposr" / "tiny_conformance.pt", weights_only=True)
    folder = tmp_path_factory.mktemp("tiny-model")
    (folder / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    torch.save(fixture["state_dict"], folder / "model.ckpt")
    return folder


@pytest.fixture
def fast_options(tiny_model: Path) -> dict[str, Any]:
    return {
        "model": str(tiny_model),
        "device": "cpu",
        "dtype": "fp32",
        "mc_resolution": 32,
        "preview_views": 2,
        "preview_size": 128,
        "batch_size": 3,
        "retry_delay_s": 0.05,
        "retry_jitter": 0.0,
        "review": PERMISSIVE_REVIEW,
    }


@pytest.fixture
def config_file(fast_options: dict[str, Any], tmp_path: Path) -> Path:
    """``fast_options`` as a YAML settings file (what `--config` reads)."""
    import yaml

    path = tmp_path / "asset3d.yaml"
    path.write_text(yaml.safe_dump(fast_options))
    return path


@pytest.fixture(scope="session")
def photo_bytes(shared: Path) -> dict[str, bytes]:
    """The shared photos by file name, and a corrupt one (a PNG cut short)."""
    out = {name: (shared / "photos" / name).read_bytes() for name in PHOTOS}
    out["broken.png"] = out["chair.png"][:2000]
    return out


# -- S3 on loopback ------------------------------------------------------------------------------------------


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
    """URL of a moto S3 server on 127.0.0.1 (a real HTTP S3 API)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client on the moto server; the pipeline's stores reach it through ``AWS_ENDPOINT_URL``."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"shop-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


# -- SQL -----------------------------------------------------------------------------------------------------


def _require_postgres() -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(POSTGRES_URL)
    try:
        with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database, connect_timeout=3) as c:
            c.execute("SELECT 1")
    except psycopg.Error as err:
        message = f"PostgreSQL unreachable at {u.render_as_string(hide_password=True)}: {type(err).__name__}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL half must run)")
        pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A migrated catalogue in a brand-new schema of database ``test``; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    import migrations

    _require_postgres()
    schema = f"asset3d_pipe_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    migrations.upgrade(url, "head")
    yield url
    from asset3d.pipeline.records import close_catalogue

    close_catalogue(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty catalogue on each engine in turn."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    import migrations

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    migrations.upgrade(url, "head")
    return url


@pytest.fixture
def result_cache(tmp_path: Path) -> Iterator[Path]:
    """A result cache of this test's own, so one test's cached stages never answer another's."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    folder = tmp_path / "prefect-results"
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: folder}):
        yield folder


# the real Prefect server of the deployment and scale-out tests (session scope: started once)
from server_fixtures import api, deployed, prefect_server  # noqa: E402, F401
