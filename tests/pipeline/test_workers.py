"""Many machines on Prefect, on loopback: a real Prefect server (PostgreSQL), process workers as subprocesses,
moto S3, a PostgreSQL catalogue.

* a worker lost with its flow run: the shipped automation crashes the run within 2 minutes (its heartbeats
  stop), `asset3d runs reconcile` closes its catalogue row, a re-run publishes one asset per photo;
* GPU slots are GPUs: with the global ``gpu`` limit at 2, two workers' device sections overlap; at 1, never;
* a fan-out keeps its secrets: no parameter, log line, artifact or Prefect database row holds the catalogue
  password; children use their own worker's machine settings and the server's conversion parameters (the
  same parameter hash as an event-started run).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import upload_photos
from reliability_helpers import assert_published_once
from server_fixtures import client, start_worker, stop, wait_for

from storage.catalogue import Catalogue

pytestmark = pytest.mark.slow
CONVERT = "convert-batch/convert-batch"


@pytest.fixture
def conversion_variable(api: str) -> Iterator[dict[str, Any]]:
    """The server's conversion parameters (every run uses them), removed afterwards."""
    from prefect.variables import Variable

    value = {"mc_resolution": 32, "preview_views": 2, "preview_size": 128}
    Variable.set("asset3d-conversion", value, overwrite=True)
    try:
        yield value
    finally:
        Variable.unset("asset3d-conversion")


def _worker_env(bucket: str, config_file: Path, catalogue_url: str, s3_endpoint: str, **more: str) -> dict[str, str]:
    return {
        "ASSET3D_CONFIG": str(config_file), "ASSET3D_ALLOWED_SOURCES": f"s3://{bucket}", "ASSET3D_CATALOGUE_URL": catalogue_url,
        "AWS_ENDPOINT_URL": s3_endpoint, **more,
    }  # fmt: skip


def _run(deployment: str, parameters: dict[str, Any]) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters=parameters, timeout=0)


def _final(run_id: Any, timeout: float) -> Any:
    def done() -> Any:
        with client() as c:
            run = c.read_flow_run(run_id)
        return run if run.state is not None and run.state.is_final() else None

    return wait_for(f"flow run {run_id} to end", done, timeout=timeout, every=1.0)


def _logs(run_ids: list[Any]) -> list[Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    out: list[Any] = []
    with client() as c:
        while True:
            page = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(run_ids))), limit=200, offset=len(out))
            out += page
            if len(page) < 200:
                return out


def test_a_lost_worker_crashes_its_run_and_a_rerun_completes(
    prefect_server: dict[str, Any], deployed: dict[str, Any], api: str, s3: Any, s3_endpoint: str, bucket: str,
    postgres_url: str, photo_bytes: dict[str, bytes], config_file: Path, tmp_path: Path,
) -> None:
    assert deployed["rc"] == 0, deployed["out"]
    names = ("chair.png", "robot.png", "hamburger.png", "cerebro.jpg")
    upload_photos(s3, bucket, {n: photo_bytes[n] for n in names})
    # a grid big enough that the batch is still running when its machine goes
    env = _worker_env(bucket, config_file, postgres_url, s3_endpoint, ASSET3D_MC_RESOLUTION="256", ASSET3D_BATCH_SIZE="1")
    worker, _log = start_worker(prefect_server, "doomed", "gpu", tmp_path, env)
    params = {"source": f"s3://{bucket}/incoming", "dest": f"s3://{bucket}/assets"}
    run = _run(CONVERT, params)
    try:
        def started() -> bool:
            with client() as c:
                state = c.read_flow_run(run.id).state
            if state is None or not state.is_running():
                return False
            cat = Catalogue(postgres_url)
            try:
                return bool(cat.runs_in_progress())  # the run row is open: the batch is under way
            finally:
                cat.close()

        wait_for("the batch to be under way", started, timeout=180, every=0.5)
        with client() as c:
            pid = int(str(c.read_flow_run(run.id).infrastructure_pid or "0").rsplit(":", 1)[-1] or 0)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the machine is gone: its worker and the flow run's process
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed = time.monotonic()
    crashed = _final(run.id, timeout=150)
    assert crashed.state.is_crashed(), crashed.state
    assert time.monotonic() - killed <= 120, "the automation took more than 2 minutes"
    cat = Catalogue(postgres_url)
    try:
        (row,) = cat.runs_in_progress()  # nobody could close it: the process died with the machine
        assert row.flow_run_id == str(run.id)
    finally:
        cat.close()
    rec = subprocess.run(
        [sys.executable, "-m", "asset3d", "runs", "reconcile", "--catalogue-url", postgres_url],
        env={**os.environ, "PREFECT_API_URL": prefect_server["url"]}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rec.returncode == 0 and f"run {row.id} closed as failed" in rec.stdout, rec.stdout + rec.stderr
    # a re-run on another worker completes the batch, one asset per photo
    fresh, _ = start_worker(prefect_server, "fresh", "gpu", tmp_path, _worker_env(bucket, config_file, postgres_url, s3_endpoint))
    try:
        rerun = _final(_run(CONVERT, params).id, timeout=300)
        assert rerun.state.is_completed(), rerun.state
    finally:
        stop(fresh)
    uris = [f"s3://{bucket}/incoming/SKU-{n.split('.')[0]}/{n}" for n in names]
    assert_published_once(f"s3://{bucket}/assets", postgres_url, uris)


def _unique(png: bytes, tag: str) -> bytes:
    """The same picture as other bytes (a text chunk), so its sha256 is its own."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("asset3d-test", tag)
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _device_sections(run_ids: list[Any]) -> list[tuple[Any, float, float]]:
    """(flow run, start, end) of every device section, from the gpu-slot log lines."""
    out = []
    for log in _logs(run_ids):
        m = re.search(r"gpu slot released after ([0-9.]+) s on the device", log.message)
        if m:
            end = log.timestamp.timestamp() if isinstance(log.timestamp, datetime) else float(log.timestamp)
            out.append((log.flow_run_id, end - float(m.group(1)), end))
    return out


def _overlap(sections: list[tuple[Any, float, float]]) -> bool:
    return any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in sections for b in sections)


def test_gpu_slots_are_gpus(
    prefect_server: dict[str, Any], deployed: dict[str, Any], api: str, s3: Any, s3_endpoint: str, bucket: str,
    postgres_url: str, photo_bytes: dict[str, bytes], config_file: Path, tmp_path: Path,
) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    assert deployed["rc"] == 0, deployed["out"]
    # device sections of about 2 s each (192^3 with the tiny model), three per run, one photo per micro-batch
    env = _worker_env(bucket, config_file, postgres_url, s3_endpoint, ASSET3D_MC_RESOLUTION="192", ASSET3D_BATCH_SIZE="1")
    workers = [start_worker(prefect_server, f"gpu-{i}", "gpu", tmp_path, env)[0] for i in range(2)]
    try:
        for slots, rounds in ((2, "a"), (1, "b")):
            with client() as c:
                c.update_global_concurrency_limit("gpu", GlobalConcurrencyLimitUpdate(limit=slots))
            runs = []
            for batch in (f"{rounds}1", f"{rounds}2"):  # bytes of their own: no cache or claim answers for another run
                photos = {n: _unique(photo_bytes[n], batch) for n in ("chair.png", "robot.png", "hamburger.png")}
                upload_photos(s3, bucket, photos, prefix=f"in-{batch}")
                runs.append(_run(CONVERT, {"source": f"s3://{bucket}/in-{batch}", "dest": f"s3://{bucket}/out"}).id)
            for run_id in runs:
                assert _final(run_id, timeout=300).state.is_completed()
            sections = _device_sections(runs)
            assert len(sections) == 6, sections
            assert _overlap(sections) is (slots == 2), (slots, sections)
            waits = [log.message for log in _logs(runs) if "gpu slot taken after waiting" in log.message]
            assert len(waits) == 6  # every wait is logged with its length
    finally:
        for w in workers:
            stop(w)
        with client() as c:
            c.update_global_concurrency_limit("gpu", GlobalConcurrencyLimitUpdate(limit=2))


@pytest.fixture
def catalogue_with_password() -> Iterator[dict[str, str]]:
    """A PostgreSQL catalogue reached with a role that has a password (the secret the test hunts for)."""
    from loopback import postgres_database_with_role

    with postgres_database_with_role("a3d_fan") as db:
        yield db


def test_a_fan_out_keeps_its_secrets_and_each_worker_its_settings(
    prefect_server: dict[str, Any], deployed: dict[str, Any], api: str, s3: Any, s3_endpoint: str, bucket: str,
    photo_bytes: dict[str, bytes], config_file: Path, tmp_path: Path, conversion_variable: dict[str, Any],
    catalogue_with_password: dict[str, str],
) -> None:
    if not prefect_server["postgres"]:
        pytest.skip("the Prefect database is searched on PostgreSQL")
    assert deployed["rc"] == 0, deployed["out"]
    secret, url = catalogue_with_password["password"], catalogue_with_password["url"]
    upload_photos(s3, bucket, {n: photo_bytes[n] for n in ("chair.png", "robot.png", "hamburger.png", "cerebro.jpg")})
    upload_photos(s3, bucket, {"teapot.png": photo_bytes["teapot.png"]}, prefix="event")
    # worker-specific machine settings, and a cpu worker whose own grid the server's Variable must override
    cpu = start_worker(prefect_server, "cpu-0", "cpu", tmp_path, _worker_env(bucket, config_file, url, s3_endpoint, ASSET3D_BATCH_SIZE="2", ASSET3D_MC_RESOLUTION="64"))
    gpus = [start_worker(prefect_server, f"gpu-{i}", "gpu", tmp_path, _worker_env(bucket, config_file, url, s3_endpoint, ASSET3D_BATCH_SIZE="3")) for i in range(2)]
    try:
        nightly = _run("nightly-catalogue/nightly-catalogue", {"source": f"s3://{bucket}/incoming", "dest": f"s3://{bucket}/assets", "fan_out": 2})
        event = _run(CONVERT, {"source": f"s3://{bucket}/event", "dest": f"s3://{bucket}/assets"})  # as an event starts it
        assert _final(nightly.id, timeout=400).state.is_completed()
        assert _final(event.id, timeout=300).state.is_completed()
    finally:
        for proc, _ in (cpu, *gpus):
            stop(proc)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with client() as c:
        runs = list(c.read_flow_runs())
        children = list(c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[nightly.id]))))
        artifacts = list(c.read_artifacts())
    logs = _logs([r.id for r in runs])
    assert len(children) == 2
    # machine settings: each run says which it used; the children ran with the gpu workers' batch size
    batch_size = {str(log.flow_run_id): m.group(1) for log in logs if (m := re.search(r"batch size (\d+)", log.message))}
    assert batch_size[str(nightly.id)] == "2" and all(batch_size[str(r.id)] == "3" for r in children)
    # conversion parameters: the server's, the same hash for the parent, the children and the event-started run
    cat = Catalogue(catalogue_with_password["owner"])
    try:
        rows = [r for r in cat.recent_runs() if r.flow_run_id]
        assert {r.flow_run_id for r in rows} >= {str(nightly.id), str(event.id), *(str(r.id) for r in children)}
        params = {json.dumps(r.parameters, sort_keys=True) for r in rows}
        assert len(params) == 1 and json.loads(params.pop())["mc_resolution"] == 32
    finally:
        cat.close()
    # no secret: parameters, logs, artifacts, and every row of Prefect's own database
    assert not any(secret in json.dumps(r.parameters, default=str) for r in runs)
    assert not any(secret in log.message for log in logs)
    assert not any(secret in json.dumps(a.data, default=str) for a in artifacts)
    import psycopg
    from sqlalchemy.engine import make_url

    pg = make_url(prefect_server["database_url"])
    with psycopg.connect(host=pg.host, port=pg.port or 5432, user=pg.username, dbname=pg.database) as db:
        tables = [t for (t,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                assert secret not in json.dumps([str(v) for v in row]), f"the password is in Prefect's table {table}"
