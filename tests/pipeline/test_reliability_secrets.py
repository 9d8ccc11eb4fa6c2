"""Fault suite: secrets. Fake AWS keys (moto takes any) and a PostgreSQL password (trust authentication ignores
it) are set as a worker sets them, in its environment; a batch with a broken photo, so error paths run too.
None of the three may turn up anywhere the run leaves text:

* `convert_batch` on the real Prefect server (``api``): what this process printed and logged; what the server
  answers for the flow run, its task runs, logs and artifacts (parameters included); every row of the
  server's database (or its SQLite file) and every file of its home and this process's; every row of the
  catalogue; every object in the bucket (its bytes and metadata); the local result cache;
* `asset3d convert` with the password URL given on ``--catalogue-url``: its output, where the catalogue line
  shows the URL with the password masked (``***``), and the catalogue's rows.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import upload_photos
from reliability_helpers import assert_consistent, assert_counts, assert_no_secret, assert_published_once
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.reliability

PG_SECRET = "pg-pa55-" + uuid.uuid4().hex
AWS_SECRET = "aws-secret-" + uuid.uuid4().hex
AWS_KEY_ID = "AKIA" + uuid.uuid4().hex[:16].upper()
SECRETS = [PG_SECRET, AWS_SECRET, AWS_KEY_ID]

PHOTOS = ("chair.png", "robot.png", "broken.png")


def _with_password(url: str) -> str:
    return make_url(url).set(password=PG_SECRET).render_as_string(hide_password=False)


def _files(*folders: Path) -> list[tuple[str, str]]:
    """Every file under ``folders``, as (path, its bytes as text)."""
    return [
        (str(p), p.read_bytes().decode("utf-8", "replace"))
        for folder in folders if folder.is_dir()
        for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
    ]  # fmt: skip


def _bucket_objects(s3: Any, bucket: str) -> list[tuple[str, str]]:
    """Every object of the bucket: its bytes and its metadata, as text."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=obj["Key"])
            meta = json.dumps({"metadata": got.get("Metadata"), "type": got.get("ContentType")})
            out.append((f"s3://{bucket}/{obj['Key']}", got["Body"].read().decode("utf-8", "replace") + meta))
    return out


def _server_answers(api: str, flow_run_id: str) -> list[tuple[str, str]]:
    """What the Prefect API says about the run: the run (parameters), its task runs, logs, artifacts."""
    import httpx

    run = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    out = [("GET flow_runs/{id}", httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=30).text)]
    for path, body in (
        ("flow_runs/filter", run),
        ("task_runs/filter", {**run, "limit": 200}),
        ("logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}),
        ("artifacts/filter", {**run, "limit": 200}),
    ):
        answer = httpx.post(f"{api}/{path}", json=body, timeout=30)
        assert answer.status_code == 200, (path, answer.text)
        out.append((f"POST {path}", answer.text))
    return out


def _server_database(server: dict[str, Any]) -> list[tuple[str, str]]:
    """Every row of the Prefect server's database (PostgreSQL); on SQLite its file is among the home's files."""
    if not server["postgres"]:
        return []
    import psycopg

    pg = make_url(server["database_url"])
    out = []
    with psycopg.connect(host=pg.host, port=pg.port or 5432, user=pg.username, password=pg.password, dbname=pg.database) as db:
        tables = [t for (t,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
            out.append((f"Prefect table {table}", json.dumps([[str(v) for v in row] for row in rows])))
    return out


def _assert_absent(haystacks: list[tuple[str, str]]) -> None:
    for secret in SECRETS:
        for where, text in haystacks:
            assert secret not in text, f"secret {secret[:8]}... found in {where}"


class Records(logging.Handler):
    """Every record logged in this process (any logger, INFO and up), formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.exc_text or ''}")

    @contextmanager
    def capturing(self) -> Iterator[Records]:
        """Prefect's loggers at INFO (the suite runs them at WARNING, and Prefect sets them when it configures
        logging: so set here, just before the run), every record here too."""
        root, prefect = logging.getLogger(), logging.getLogger("prefect")
        levels = root.level, prefect.level
        root.setLevel(logging.INFO)
        prefect.setLevel(logging.INFO)
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(levels[0])
            prefect.setLevel(levels[1])


@pytest.mark.usefixtures("result_cache", "worker_env")
def test_no_secret_in_anything_a_flow_run_leaves(
    api: str, prefect_server: dict[str, Any], s3: Any, bucket: str, postgres_url: str, photo_bytes: dict[str, bytes],
    result_cache: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    from flows.convert import convert_batch

    keys = upload_photos(s3, bucket, {n: photo_bytes[n] for n in PHOTOS})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("ASSET3D_CATALOGUE_URL", _with_password(postgres_url))  # the worker's: never a parameter
    source, dest = f"s3://{bucket}/incoming", f"s3://{bucket}/assets"
    with Records().capturing() as records:
        state = convert_batch(source, dest=dest, return_state=True)
        report = state.result()
        APILogHandler().flush()
    flow_run_id = str(state.state_details.flow_run_id)
    EventsWorker.drain_all(timeout=10)
    logged = "\n".join(records.lines)
    out, err = capfd.readouterr()

    # the run happened: the good photos published, the broken one failed (its error path ran)
    assert_counts(report, photos=len(PHOTOS))
    assert report["counts"]["published"] == 2 and report["counts"]["failed"] == 1, report["photos"]
    assert_published_once(dest, postgres_url, [f"s3://{bucket}/{keys[n]}" for n in ("chair.png", "robot.png")])
    assert_consistent(dest, postgres_url)
    broken = next(r for r in report["photos"] if r["uri"].endswith("broken.png"))
    assert broken["status"] == "failed" and broken["message"]
    # the failure reached the server's logs (below): what the pytest capture sees depends on earlier tests' handlers
    assert any(" INFO " in line for line in records.lines)
    answers = _server_answers(api, flow_run_id)
    assert flow_run_id in answers[0][1] and "convert-batch" in answers[0][1]
    sent = json.loads(dict(answers)["POST logs/filter"])
    assert any(log["level"] == logging.INFO for log in sent) and any("broken.png" in log["message"] for log in sent)

    texts = [json.dumps(report, default=str), out, err, logged]
    assert_no_secret(SECRETS, texts=texts, catalogue_url=postgres_url, dest=dest)
    _assert_absent(
        answers
        + _server_database(prefect_server)
        + _files(Path(prefect_server["home"]), Path(os.environ["PREFECT_HOME"]), result_cache)
        + _bucket_objects(s3, bucket)
    )


def test_cli_masks_the_password_it_is_given(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, postgres_url: str
) -> None:
    photos = tmp_path / "photos"
    for name in ("chair.png", "broken.png"):
        (photos / f"SKU-{name.split('.')[0]}").mkdir(parents=True)
        (photos / f"SKU-{name.split('.')[0]}" / name).write_bytes(photo_bytes[name])
    dest = tmp_path / "assets"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("ASSET3D_CATALOGUE_URL", None)
    argv = [str(photos), "--out", str(dest), "--config", str(config_file), "--catalogue-url", _with_password(postgres_url), "--json"]
    done = subprocess.run([sys.executable, "-m", "asset3d", "convert", *argv], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 2), done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["published"] == 1 and report["counts"]["failed"] == 1, report["photos"]
    catalogue_line = next(line for line in done.stderr.splitlines() if line.startswith("catalogue: "))
    assert catalogue_line == f"catalogue: {make_url(_with_password(postgres_url)).render_as_string(hide_password=True)}"
    assert ":***@" in catalogue_line
    assert_no_secret(SECRETS, texts=[done.stdout, done.stderr], catalogue_url=postgres_url, dest=str(dest))
    _assert_absent(_files(dest))
