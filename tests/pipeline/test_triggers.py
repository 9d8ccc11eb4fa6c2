"""Safe triggers against a real `prefect server start` on 127.0.0.1, moto's S3 + SQS over HTTP and PostgreSQL:

* an ``asset3d.batch.arrived`` event outside the allowed sources starts nothing; duplicate events of one
  prefix within the trigger's window start one run (Prefect's debouncing, as `asset3d deploy` writes it);
* an S3 upload notified through SQS starts one run for its batch within 15 s (`asset3d listen`), and the
  notifications leave the queue once their events are sent;
* a run of the deployment whose source lies outside its worker's allowed sources, or that would use a SQLite
  catalogue on a work pool, is refused at start by the flow itself and converts nothing (the run executed by
  Prefect's engine in a process of its own, in a folder of its own, as a process worker starts it).

The deployment here is ``convert-batch/guarded``: the shipped convert-batch deployment under another name,
deployed with ``ASSET3D_ALLOWED_SOURCES`` and a 6 s window, so the shipped one stays as the other tests expect.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_helpers import upload_photos
from server_fixtures import BIN, REPO, client, delete_runs, runs_of, stop, wait_for

pytestmark = pytest.mark.slow
GUARDED = "convert-batch/guarded"
WINDOW_S = 6
SHOP = "s3://shop-photos/incoming"
DROP_BUCKET = f"drop-{uuid.uuid4().hex[:10]}"  # the bucket that notifies SQS


@pytest.fixture(scope="module")
def guarded(prefect_server: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The shipped convert-batch deployment as ``convert-batch/guarded``, deployed with allowed sources."""
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (batch,) = [d for d in doc["deployments"] if d["name"] == "convert-batch"]
    doc["deployments"] = [{**batch, "name": "guarded"}]
    doc["definitions"] = {"work_pools": doc["definitions"]["work_pools"]}  # the gpu limit is the other tests'
    path = tmp_path_factory.mktemp("guarded") / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {
        **os.environ, "PREFECT_API_URL": prefect_server["url"], "PREFECT_HOME": str(prefect_server["home"]),
        "ASSET3D_ALLOWED_SOURCES": f"{SHOP},s3://{DROP_BUCKET}/incoming",
    }  # fmt: skip
    command = [str(BIN / "asset3d"), "deploy", "--prefect-file", str(path), "--trigger-window", str(WINDOW_S)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"batch events accepted for: {SHOP}/, s3://{DROP_BUCKET}/incoming/" in proc.stdout
    return GUARDED


def _sources(deployment: str) -> list[str]:
    return sorted(str(r.parameters.get("source")) for r in runs_of(deployment))


def _clean_up() -> None:
    """Delete the runs the events made, here and in the shipped deployment (when deployed): no later worker
    should find them scheduled."""
    from prefect.exceptions import ObjectNotFound

    for deployment in (GUARDED, "convert-batch/convert-batch"):
        try:
            delete_runs(deployment)
        except ObjectNotFound:
            pass


def test_outside_events_start_nothing_and_duplicates_start_one_run(guarded: str, api: str) -> None:
    from flows.triggers import emit_batch

    for outside in (f"{SHOP}-old/batch-1/", "s3://other-shop/incoming/batch-1/", "file:///etc/", "/etc"):
        emit_batch(outside)
    emit_batch(f"{SHOP}/batch-1/")
    emit_batch(f"{SHOP}/batch-1")  # the same prefix written differently: the same batch
    emit_batch(f"{SHOP}/batch-1/", photos=3)
    emit_batch(f"{SHOP}/batch-2/")
    wanted = [f"{SHOP}/batch-1/", f"{SHOP}/batch-2/"]
    wait_for("the runs of two batches", lambda: set(_sources(guarded)) >= set(wanted), 30)
    time.sleep(3)  # what would come late has come
    assert _sources(guarded) == wanted  # one run per batch, none for the outside events
    for run in runs_of(guarded):
        delay = (run.expected_start_time - run.created).total_seconds()
        assert 0 < delay <= WINDOW_S + 1  # scheduled at the end of the window (late debouncing)
    _clean_up()


@pytest.fixture
def drop_queue(s3: Any, s3_endpoint: str) -> Iterator[tuple[Any, str]]:
    """Bucket ``DROP_BUCKET`` notifying an SQS queue of every ObjectCreated (moto over HTTP)."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=s3_endpoint)
    queue = sqs.create_queue(QueueName=f"photos-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=DROP_BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=DROP_BUCKET, NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]}
    )  # fmt: skip
    yield sqs, queue
    sqs.delete_queue(QueueUrl=queue)


def test_an_upload_notified_through_sqs_starts_one_run_per_batch(
    guarded: str, api: str, s3: Any, s3_endpoint: str, drop_queue: tuple[Any, str], photo_bytes: dict[str, bytes], tmp_path: Path
) -> None:
    sqs, queue = drop_queue
    env = {**os.environ, "PREFECT_API_URL": api, "ASSET3D_ALLOWED_SOURCES": f"s3://{DROP_BUCKET}/incoming", "AWS_ENDPOINT_URL": s3_endpoint}
    log = tmp_path / "listen.log"
    listener = subprocess.Popen(
        [str(BIN / "asset3d"), "listen", "--queue", queue, "--wait", "1", "--hold", "5"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for("the listener", lambda: "listening on" in log.read_text(), 60)
        started = time.monotonic()
        upload_photos(s3, DROP_BUCKET, {n: photo_bytes[n] for n in ("chair.png", "robot.png")}, prefix="incoming/batch-7")
        upload_photos(s3, DROP_BUCKET, {"teapot.png": photo_bytes["teapot.png"]}, prefix="incoming/batch-8")
        s3.put_object(Bucket=DROP_BUCKET, Key="incoming/batch-7/notes.txt", Body=b"not a photo")
        s3.put_object(Bucket=DROP_BUCKET, Key="elsewhere/x/flor.png", Body=photo_bytes["flor.png"])
        wanted = [f"s3://{DROP_BUCKET}/incoming/batch-7/", f"s3://{DROP_BUCKET}/incoming/batch-8/"]
        wait_for("a run per uploaded batch", lambda: set(_sources(guarded)) >= set(wanted), 15)
        assert time.monotonic() - started < 15
        time.sleep(2)
        assert _sources(guarded) == wanted  # one run each: five notifications, two batches

        def queue_empty() -> bool:
            attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
            return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0

        wait_for("the notifications deleted after their events", queue_empty, 15)
    finally:
        stop(listener)
        _clean_up()
    text = log.read_text()
    assert "asset3d.batch.arrived " + f"s3://{DROP_BUCKET}/incoming/batch-7/ (2 photos notified)" in text, text
    assert f"refused: s3://{DROP_BUCKET}/elsewhere/x/flor.png is outside the allowed sources" in text


def _engine_run(deployment: str, source: Any, env: dict[str, str], cwd: Path) -> Any:
    """Create a run of ``deployment`` and execute it as a process worker would (`python -m prefect.engine`)."""
    with client() as c:
        run = c.create_flow_run_from_deployment(c.read_deployment_by_name(deployment).id, parameters={"source": source})
    proc = subprocess.run(
        [str(BIN / "python"), "-m", "prefect.engine"], env={**env, "PREFECT__FLOW_RUN_ID": str(run.id)}, cwd=cwd,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    with client() as c:
        return c.read_flow_run(run.id), proc


def test_a_refused_run_converts_nothing(
    guarded: str, api: str, s3: Any, bucket: str, postgres_url: str, photo_bytes: dict[str, bytes], tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, text

    upload_photos(s3, bucket, {"chair.png": photo_bytes["chair.png"]})
    worker = {
        **os.environ, "PREFECT_API_URL": api, "ASSET3D_ALLOWED_SOURCES": f"s3://{bucket}/incoming",
        "ASSET3D_DEST": f"s3://{bucket}/assets", "ASSET3D_CATALOGUE_URL": postgres_url,
    }  # fmt: skip
    inside = f"s3://{bucket}/incoming/SKU-chair/chair.png"
    run, proc = _engine_run(guarded, [inside, f"s3://{bucket}/incoming/../private/key.png"], worker, tmp_path)
    assert run.state.is_failed(), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "outside the allowed sources" in run.state.message or "'..' segments" in run.state.message
    assert run.name.startswith(f"convert-batch/s3://{bucket}/incoming/")  # the run's name carries its batch

    sqlite = {**worker, "ASSET3D_CATALOGUE_URL": f"sqlite:///{tmp_path / 'catalogue.db'}"}
    run, proc = _engine_run(guarded, f"s3://{bucket}/incoming/", sqlite, tmp_path)
    assert run.state.is_failed(), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ASSET3D_CATALOGUE_URL" in run.state.message and "SQLite" in run.state.message, run.state.message
    assert run.name == f"convert-batch/s3://{bucket}/incoming/"

    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="assets/")  # nothing published
    assert not (tmp_path / "catalogue.db").exists()
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0  # no run was even opened
    finally:
        engine.dispose()
    _clean_up()


def test_listen_reads_s3_notifications() -> None:
    """The notification shapes `listen` reads: S3's own (keys URL-encoded), wrapped by SNS, and S3's test event."""
    from flows.triggers import notification_objects

    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "drop"}, "object": {"key": "incoming/b+1/a%C3%B1o.png"}}}
    body = json.dumps({"Records": [record, {**record, "eventName": "ObjectRemoved:Delete"}]})
    assert notification_objects(body) == [("drop", "incoming/b 1/año.png")]
    assert notification_objects(json.dumps({"Type": "Notification", "Message": body})) == [("drop", "incoming/b 1/año.png")]
    assert notification_objects(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert notification_objects("not json") == []


def test_sources_canonical_and_contained(tmp_path: Path) -> None:
    """The one check: canonical locations, segment-wise containment, symlinks and '..' resolved locally."""
    from asset3d.pipeline.sources import SourceRefused, batch_of, check_source, locate

    check_source("s3://shop/incoming/batch-1/", ["s3://shop/incoming"])
    check_source([{"uri": "s3://shop/incoming/a/1.png", "sku": "A"}, "s3://shop/incoming/b/2.png"], ["s3://shop/incoming/"])
    for bad in ("s3://shop/incoming-old/a/", "s3://shop2/incoming/a/", "s3://shop/incoming/../x/", "s3://shop/incoming//x", "http://shop/incoming/"):
        with pytest.raises(SourceRefused):
            check_source(bad, ["s3://shop/incoming"])
    (tmp_path / "photos" / "batch").mkdir(parents=True)
    (tmp_path / "photos" / "link").symlink_to(tmp_path)  # a link that leaves the folder
    check_source(str(tmp_path / "photos" / "batch"), [tmp_path / "photos"])
    for bad in (str(tmp_path / "photos" / "link" / "secret"), str(tmp_path / "photos" / ".." / "x"), "file:///etc/"):
        with pytest.raises(SourceRefused):
            check_source(bad, [tmp_path / "photos"])
    with pytest.raises(SourceRefused, match="no allowed source"):
        check_source("s3://shop/incoming/", [])
    roots = [locate("s3://shop/incoming")]
    assert batch_of("s3://shop/incoming/b7/sku/1.png", roots, 1) == "s3://shop/incoming/b7/"
    assert batch_of("s3://shop/incoming/b7/sku/1.png", roots, 2) == "s3://shop/incoming/b7/sku/"
    assert batch_of("s3://shop/incoming/1.png", roots, 1) == "s3://shop/incoming/"
    assert batch_of("s3://shop/other/1.png", roots, 1) is None
