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

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import postgres_schema

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


@pytest.fixture
def worker_env(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a worker configured with ``fast_options`` (its config file in ``ASSET3D_CONFIG``): flows
    take their machine and conversion settings from the worker, never from parameters."""
    monkeypatch.setenv("ASSET3D_CONFIG", str(config_file))
    return config_file


@pytest.fixture(scope="session")
def photo_bytes(shared: Path) -> dict[str, bytes]:
    """The shared photos by file name, and a corrupt one (a PNG cut short)."""
    out = {name: (shared / "photos" / name).read_bytes() for name in PHOTOS}
    out["broken.png"] = out["chair.png"][:2000]
    return out


# -- S3 on loopback ------------------------------------------------------------------------------------------


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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A migrated catalogue in a brand-new schema of database ``test``; dropped afterwards."""
    import migrations
    from asset3d.pipeline.records import close_catalogue

    with postgres_schema("asset3d_pipe") as url:
        migrations.upgrade(url, "head")
        yield url
        close_catalogue(url)


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
