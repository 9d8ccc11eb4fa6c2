"""Fixtures for the review-app and review-CLI suite: catalogues made by the real ``asset3d convert``.

* ``tiny_model``: the conformance fixture's tiny TripoSR as a model folder (a second per photo);
* ``hold_config``: fast settings whose gate holds every asset for review (silhouette IoU must be 0.999);
* ``converted``: module-scoped, parametrized ``sqlite`` / ``postgresql``: three photos (chair, teapot,
  cerebro) converted into a local destination bucket with a catalogue on that engine, plus one corrupt
  photo (a failure row). PostgreSQL uses a new schema of database ``test`` (skips when unreachable, FAILS
  under ``CI=true``);
* ``reviewers``: a reviewers file with ``ana`` and ``bo`` and their tokens;
* ``make_client``: a `fastapi.testclient.TestClient` on `create_app` over a ``Converted``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import postgres_schema
from web_helpers import Converted, convert_photos

#: Fast settings (32^3 grid, two small previews) whose gate holds every asset: silhouette IoU >= 0.999.
HOLD_REVIEW = {
    "reject_below_silhouette_iou": 0.0,
    "approve_min_silhouette_iou": 0.999,
    "approve_min_masked_psnr_db": 0.0,
    "approve_max_color_error": 255.0,
    "approve_max_seam_p95": 255.0,
    "approve_max_components": 1_000_000,
    "approve_max_boundary_edges": 1_000_000_000,
}
PHOTOS = ("chair.png", "teapot.png", "cerebro.jpg")


@pytest.fixture(scope="session")
def hold_config(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    options: dict[str, Any] = {
        "model": str(tiny_model), "device": "cpu", "dtype": "fp32", "mc_resolution": 32, "preview_views": 2,
        "preview_size": 128, "batch_size": 3, "retry_delay_s": 0.05, "retry_jitter": 0.0, "review": HOLD_REVIEW,
    }  # fmt: skip
    path = tmp_path_factory.mktemp("config") / "hold.yaml"
    path.write_text(yaml.safe_dump(options))
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def converted(
    request: pytest.FixtureRequest, shared: Path, hold_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Converted]:
    """Three held assets and one failure, converted by `asset3d convert`, on each engine in turn."""
    root = tmp_path_factory.mktemp(f"converted-{request.param}")
    if request.param == "sqlite":
        yield convert_photos(shared, root, f"sqlite:///{root / 'catalogue.db'}", hold_config, PHOTOS)
        return
    import migrations
    from asset3d.pipeline.records import close_catalogue

    with postgres_schema("asset3d_web") as url:
        migrations.upgrade(url, "head")
        try:
            yield convert_photos(shared, root, url, hold_config, PHOTOS)
        finally:
            close_catalogue(url)


@pytest.fixture
def reviewers(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A reviewers file with ``ana`` and ``bo``; their tokens by name."""
    from asset3d.web.reviewers import add_reviewer

    path = tmp_path / "reviewers.json"
    return path, {name: add_reviewer(path, name) for name in ("ana", "bo")}


@pytest.fixture
def make_client(reviewers: tuple[Path, dict[str, str]]) -> Iterator[Callable[..., Any]]:
    """``make_client(converted, **settings)``: a TestClient on the app over that catalogue and its buckets."""
    from fastapi.testclient import TestClient

    from asset3d.web.app import create_app
    from asset3d.web.settings import load_serve_settings

    clients: list[Any] = []

    def make(data: Converted | None = None, **overrides: Any) -> Any:
        values: dict[str, Any] = {"reviewers_file": reviewers[0]}
        if data is not None:
            values.update(catalogue_url=data.url, buckets=(str(data.out), str(data.photos)))
        values.update(overrides)
        client = TestClient(create_app(load_serve_settings(**values)), base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
