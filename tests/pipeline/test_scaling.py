"""Scale-out on Prefect's own machinery, on loopback: one Prefect server on PostgreSQL, two process workers
on the gpu pool, shared S3 (moto) and catalogue (PostgreSQL); a batch fans out into sub-batches with
`run_deployment` and no photo is converted twice. See docs/scaling.md.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import upload_photos
from server_fixtures import BIN, REPO, runs_of, stop

from asset3d.cli import main
from storage.catalogue import Catalogue

pytestmark = pytest.mark.slow


@pytest.fixture
def workers(
    prefect_server: dict[str, Any], deployed: dict[str, Any], s3: Any, bucket: str, tmp_path: Path, config_file: Path
) -> Iterator[list[Path]]:
    """Two process workers on the gpu pool, one flow run at a time each, polling every second, configured
    (model, grid, previews) by their environment."""
    assert deployed["rc"] == 0, deployed["out"]
    logs, procs = [], []
    for name in ("w1", "w2"):
        env = {
            **os.environ, "PREFECT_API_URL": prefect_server["url"], "PREFECT_HOME": str(tmp_path / name),
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_LOGGING_LEVEL": "INFO",
            "ASSET3D_CONFIG": str(config_file), "ASSET3D_ALLOWED_SOURCES": f"s3://{bucket}",
        }  # fmt: skip
        log = tmp_path / f"{name}.log"
        logs.append(log)
        procs.append(subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--name", name, "--limit", "1"],
            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        ))  # fmt: skip
    try:
        yield logs
    finally:
        for p in procs:
            stop(p)


def _submitted(log: Path) -> set[str]:
    text = log.read_text(errors="replace")
    taken = set(re.findall(r"submitting flow run '([0-9a-f-]+)'", text))
    return taken - set(re.findall(r"Aborted submission of flow run '([0-9a-f-]+)'", text))


def test_a_batch_fans_out_over_two_workers(
    prefect_server: dict[str, Any], workers: list[Path], api: str, s3: Any, bucket: str, postgres_url: str,
    photo_bytes: dict[str, bytes], fast_options: dict[str, Any], worker_env: Path, result_cache: Path, capsys: pytest.CaptureFixture[str],
    config_file: Path,
) -> None:
    """One Prefect server on PostgreSQL, two workers, shared S3 and catalogue: sub-batches via run_deployment."""
    if not prefect_server["postgres"]:
        pytest.skip("the scale-out test runs the Prefect server on PostgreSQL")
    from flows.convert import convert_batch

    photos = {n: photo_bytes[n] for n in ("chair.png", "robot.png", "hamburger.png", "cerebro.jpg")}
    upload_photos(s3, bucket, photos)
    report = convert_batch(
        f"s3://{bucket}/incoming", dest=f"s3://{bucket}/assets", catalogue_url=postgres_url, fan_out=2
    )
    assert report["counts"]["published"] == 4, report["photos"]

    children = {str(r.id): r for r in runs_of("convert-batch/convert-batch") if r.parent_task_run_id is not None}
    assert len(children) == 2 and all(r.state.is_completed() for r in children.values())
    by_worker = [_submitted(log) & set(children) for log in workers]
    assert all(by_worker) and not (by_worker[0] & by_worker[1]), by_worker  # both workers, each its own sub-batch
    cat = Catalogue(postgres_url)
    try:
        assets = cat.review_queue(limit=None)
        assert len(assets) == 4 and len({a.photo_id for a in assets}) == 4  # no photo converted twice
        runs = {a.run_id for a in assets}
        assert len(runs) == 2
        flow_runs = {cat.get_run(r).flow_run_id for r in runs}
        assert flow_runs == set(children)  # every asset made by one of the two sub-batches
        assert all(a.published_at is not None for a in assets)
    finally:
        cat.close()

    # the same deployment, awaited from the command line: a worker runs it, the report comes back
    upload_photos(s3, bucket, {"teapot.png": photo_bytes["teapot.png"]}, prefix="batch-2")
    options = ["--catalogue-url", postgres_url]  # no password: it may travel; the workers bring the rest
    rc = main(["run-batch", f"s3://{bucket}/batch-2", "--dest", f"s3://{bucket}/assets", *options, "--deployment"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "Completed" in out.out and "| published | 1 |" in out.out
