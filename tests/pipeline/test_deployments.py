"""prefect.yaml against a real `prefect server start` on 127.0.0.1 (on PostgreSQL when it answers):
`asset3d deploy` (pools of each declared type, the global `gpu` limit, the crash automation, `prefect deploy
--all`), the deployments read back, the event trigger fired by `asset3d emit-batch` and `asset3d watch`, task
results in a shared S3Bucket block, and plain `prefect deploy --all` on the shipped file.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_helpers import upload_photos
from server_fixtures import BIN, REPO, client, delete_runs, runs_of, wait_for

from asset3d.cli import main

pytestmark = pytest.mark.slow
PREFIX_A = "s3://shop-photos/incoming/batch-a/"
HEARTBEATS = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}}


def test_prefect_deploy_all_and_read_back(deployed: dict[str, Any], api: str) -> None:
    """Pools, the global gpu limit (no tag limit), the crash automation and both deployments, as declared."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import Posture
    from prefect.exceptions import ObjectNotFound

    from flows.deploy import CRASH_AUTOMATION, ensure_infrastructure

    assert deployed["rc"] == 0, deployed["out"]
    assert "global concurrency limit gpu: 2" in deployed["out"]
    with client() as c:
        assert all(c.read_work_pool(p).type == "process" for p in ("cpu", "gpu"))
        assert c.read_global_concurrency_limit_by_name("gpu").limit == 2
        with pytest.raises(ObjectNotFound):
            c.read_concurrency_limit_by_tag("gpu")  # the old tag limit is gone
        (crash,) = c.read_automations_by_name(CRASH_AUTOMATION)
        nightly = c.read_deployment_by_name("nightly-catalogue/nightly-catalogue")
        batch = c.read_deployment_by_name("convert-batch/convert-batch")
        (automation,) = c.read_resource_related_automations(f"prefect.deployment.{batch.id}")

    trigger = crash.trigger
    assert trigger.posture == Posture.Proactive and trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.for_each == {"prefect.resource.id"} and trigger.within == timedelta(seconds=90)
    (action,) = crash.actions
    assert isinstance(action, ChangeFlowRunState) and action.state == StateType.CRASHED

    # deployed from the installed package: no pull step naming the deploying machine's folder
    assert nightly.entrypoint == "flows.nightly.nightly_catalogue" and batch.entrypoint == "flows.convert.convert_batch"
    assert not nightly.pull_steps and not batch.pull_steps
    assert nightly.job_variables == HEARTBEATS and batch.job_variables == HEARTBEATS
    assert nightly.work_pool_name == "cpu" and batch.work_pool_name == "gpu"
    (schedule,) = nightly.schedules
    assert schedule.active and schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Madrid"

    trigger = automation.trigger
    assert trigger.expect == {"asset3d.batch.arrived"} and trigger.match.root == {"prefect.resource.id": "asset3d.batch.*"}
    assert trigger.posture == Posture.Reactive and trigger.for_each == {"prefect.resource.id"}
    assert trigger.within == timedelta(seconds=60)
    (run,) = automation.actions
    assert isinstance(run, RunDeployment) and run.deployment_id == batch.id and run.schedule_after == timedelta(seconds=60)
    assert run.parameters == {"source": "{{ event.resource.name }}"}

    again = ensure_infrastructure(REPO / "prefect.yaml", gpu_slots=2)  # idempotent: kept, updated, never doubled
    assert again["work_pools"] == {"cpu": "exists process", "gpu": "exists process"}
    assert again["automations"] == {CRASH_AUTOMATION: "updated"} and not again["removed"]
    with client() as c:
        assert len(c.read_automations_by_name(CRASH_AUTOMATION)) == 1
        assert c.read_global_concurrency_limit_by_name("gpu").limit == 2


def test_a_docker_pool_declared_in_prefect_yaml(deployed: dict[str, Any], api: str, tmp_path: Path) -> None:
    """A docker-type pool is created with Prefect's docker job template and a deployment lands on it."""
    assert deployed["rc"] == 0
    doc = {
        "name": "asset3d-images",
        "definitions": {"work_pools": {"images": {"name": "asset3d-images", "type": "docker", "description": "image workers"}}},
        "pull": [],
        "deployments": [
            {
                "name": "in-a-container", "entrypoint": "flows.convert.convert_batch",
                "work_pool": {"name": "asset3d-images", "job_variables": {"image": "asset3d-gpu:latest", **HEARTBEATS}},
            }
        ],
    }  # fmt: skip
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**os.environ, "PREFECT_API_URL": api}
    proc = subprocess.run([str(BIN / "asset3d"), "deploy", "--prefect-file", str(path)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "work pool asset3d-images: created docker" in proc.stdout
    with client() as c:
        pool = c.read_work_pool("asset3d-images")
        deployment = c.read_deployment_by_name("convert-batch/in-a-container")
        assert c.read_global_concurrency_limit_by_name("gpu").limit == 2  # a file without limits leaves them
    assert pool.type == "docker" and {"image", "env", "volumes"} <= set(pool.base_job_template["variables"]["properties"])
    assert deployment.work_pool_name == "asset3d-images" and deployment.job_variables["image"] == "asset3d-gpu:latest"

    doc["definitions"]["work_pools"]["images"]["type"] = "kubernetes"  # a pool is never silently re-typed
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run([str(BIN / "asset3d"), "deploy", "--prefect-file", str(path)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1 and "exists with type 'docker'" in proc.stderr


def test_emit_batch_starts_a_convert_batch_run(deployed: dict[str, Any], api: str, tmp_path: Path) -> None:
    assert deployed["rc"] == 0
    proc = subprocess.run([str(BIN / "asset3d"), "emit-batch", PREFIX_A], env=os.environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = wait_for("a flow run from the event", lambda: [r for r in runs_of("convert-batch/convert-batch") if r.parameters == {"source": PREFIX_A}], 60)
    assert len(run) == 1

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "no-server")
    refused = subprocess.run([str(BIN / "asset3d"), "emit-batch", PREFIX_A], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "PREFECT_API_URL" in refused.stderr
    outside = subprocess.run(
        [str(BIN / "asset3d"), "emit-batch", "s3://shop-photos/elsewhere/x/"], env={**os.environ, "ASSET3D_ALLOWED_SOURCES": "s3://shop-photos/incoming"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert outside.returncode == 1 and "outside the allowed sources" in outside.stderr
    delete_runs("convert-batch/convert-batch")


def test_watch_keeps_its_state_on_the_server(deployed: dict[str, Any], api: str, tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
    """`watch` emits once per changed batch prefix; what it saw lives in Prefect Variables any machine reads."""
    from prefect.variables import Variable

    from flows.triggers import WatchState, watch

    assert deployed["rc"] == 0
    source = tmp_path / "incoming"
    for batch, name in (("batch-a", "chair.png"), ("batch-b", "robot.png")):
        (source / batch).mkdir(parents=True)
        (source / batch / name).write_bytes(photo_bytes[name])
    assert main(["watch", str(source), "--once"]) == 0
    prefixes = {(source / b).as_uri() + "/" for b in ("batch-a", "batch-b")}
    wait_for("two event-driven runs", lambda: {r.parameters.get("source") for r in runs_of("convert-batch/convert-batch")} >= prefixes, 60)
    state = WatchState(str(source))
    assert set(state.load()) == prefixes
    assert Variable.get(state.name((source / "batch-a").as_uri() + "/"))["photos"] == 1

    sent: list[tuple[str, int]] = []
    assert watch(str(source), interval=1, once=True, emit=lambda p, n: sent.append((p, n))) == 0  # another machine: nothing new
    (source / "batch-b" / "hamburger.png").write_bytes(photo_bytes["hamburger.png"])
    assert watch(str(source), interval=1, once=True, emit=lambda p, n: sent.append((p, n))) == 1
    assert sent == [((source / "batch-b").as_uri() + "/", 2)]
    for f in (source / "batch-a").iterdir():
        f.unlink()
    assert watch(str(source), interval=1, once=True, emit=lambda p, n: sent.append((p, n))) == 0
    assert set(state.load()) == {(source / "batch-b").as_uri() + "/"}  # a batch that left the listing is forgotten
    runs = [r.parameters.get("source") for r in runs_of("convert-batch/convert-batch")]
    assert sorted(runs) == sorted(prefixes)  # the quiet polls emitted nothing
    delete_runs("convert-batch/convert-batch")


def test_run_batch_submits_to_the_deployment(deployed: dict[str, Any], api: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`asset3d run-batch --deployment --no-wait` creates a run of convert-batch with what the batch is."""
    assert deployed["rc"] == 0
    rc = main(["run-batch", PREFIX_A, "--dest", "s3://shop-assets/v1", "--preset", "shopify", "--deployment", "--no-wait"])
    assert rc == 0, capsys.readouterr().err
    assert "flow run " in capsys.readouterr().out
    (run,) = [r for r in runs_of("convert-batch/convert-batch") if r.parameters.get("source") == PREFIX_A]
    assert run.parameters["dest"] == "s3://shop-assets/v1" and run.parameters["preset"] == "shopify"
    delete_runs("convert-batch/convert-batch")


def test_shared_results_go_to_the_s3_bucket_block(
    api: str, s3: Any, bucket: str, s3_endpoint: str, postgres_url: str, photo_bytes: dict[str, bytes],
    worker_env: Path, result_cache: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """With result_storage_block set, fetch, intake and reconstruct results land in the block's bucket folder
    (where any worker finds them), and build results stay on the worker. The batch has a broken photo: it
    ends with asset3d.batch.failed and its counts, and its run name, artifact keys and summary name it."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from flows.convert import convert_batch
    from flows.triggers import batch_resource
    from tasks.policy import shared_result_storage

    credentials = AwsCredentials(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint),
    )  # fmt: skip
    S3Bucket(bucket_name=bucket, bucket_folder="prefect-results", credentials=credentials).save("asset3d-results", overwrite=True)
    shared_result_storage.cache_clear()
    monkeypatch.setenv("ASSET3D_RESULT_STORAGE_BLOCK", "asset3d-results")
    upload_photos(s3, bucket, {n: photo_bytes[n] for n in ("chair.png", "broken.png")})
    source = f"s3://{bucket}/incoming"
    report = convert_batch(source, dest=f"s3://{bucket}/assets", catalogue_url=postgres_url)
    assert report["counts"]["published"] == 1 and report["counts"]["failed"] == 1, report["photos"]
    keys = [o["Key"].removeprefix("prefect-results/") for o in s3.list_objects_v2(Bucket=bucket, Prefix="prefect-results/").get("Contents", [])]
    stages = sorted({k.split("-")[1] for k in keys if k.startswith("asset3d-")})
    assert stages == ["fetch", "intake", "reconstruct"], keys
    assert any("asset3d-build-" in str(p) for p in result_cache.rglob("*"))  # not shared: stays on the worker
    shared_result_storage.cache_clear()

    def failed_events() -> list[dict[str, Any]]:
        with client() as c:
            body = {"filter": {"event": {"name": ["asset3d.batch.failed"]}, "resource": {"id": [batch_resource(source)["prefect.resource.id"]]}}}
            return list(c.request("POST", "/events/filter", json=body).json()["events"])

    (event,) = wait_for("the asset3d.batch.failed event", failed_events, 30)
    assert event["payload"]["failed"] == 1 and event["payload"]["photos"] == 2 and event["payload"]["source"] == source
    assert event["payload"]["counts"]["published"] == 1 and event["resource"]["prefect.resource.name"] == source + "/"
    run_id = report["flow_run_id"]
    with client() as c:
        assert c.read_flow_run(run_id).name == f"convert-batch/{source}"
        artifacts = {a.key: a for a in c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))}
    assert f"Source: `{source}`" in artifacts[f"convert-batch-{run_id}-summary"].data


def test_plain_prefect_deploy_all_stores_a_real_time_zone(deployed: dict[str, Any], api: str) -> None:
    """`prefect deploy --all` on the shipped prefect.yaml, without ASSET3D_TIMEZONE: the nightly runs in UTC.
    (Last in this module: it puts back the shipped file's UTC and trigger window.)"""
    assert deployed["rc"] == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSET3D_")}
    env["PREFECT_API_URL"] = api
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.monotonic() - started < 300
    with client() as c:
        (schedule,) = c.read_deployment_by_name("nightly-catalogue/nightly-catalogue").schedules
    assert schedule.schedule.timezone == "UTC"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (KEYWORD, arguments): continuations joined, comments and heredoc bodies skipped."""
    out: list[tuple[str, str]] = []
    lines = iter(dockerfile.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        keyword, _, args = line.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        if "<<'" in args:  # a heredoc: its body up to the delimiter
            delimiter = args.split("<<'", 1)[1].split("'", 1)[0]
            for body in lines:
                if body.strip() == delimiter:
                    break
    return out


@pytest.mark.parametrize(("name", "index", "pool"), [("Dockerfile.gpu", r"/whl/cu\d+$", "gpu"), ("Dockerfile.cpu", r"/whl/cpu$", "cpu")])
def test_worker_images(name: str, index: str, pool: str) -> None:
    """No Docker engine runs here: the Dockerfiles are parsed and their pieces checked against the repository."""
    import re
    import shlex

    from asset3d.cli import build_parser

    steps = _instructions(REPO / name)
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert steps[0][0] in ("ARG", "FROM") and any(k == "FROM" for k, _ in steps)
    assert re.search(index, args["TORCH_INDEX_URL"]) and args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/")
    makefile = (REPO / "Makefile").read_text()
    assert f"TORCH_SPEC ?= torch=={args['TORCH_VERSION']}" in makefile  # the same torch as `make install`
    runs = [a for k, a in steps if k == "RUN"]
    order = [i for i, r in enumerate(runs) if "pip install" in r]
    torch_step, project_step = order[0], order[1]
    assert '"torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"' in runs[torch_step]  # CUDA/CPU wheels first
    assert "pip install -e ." in runs[project_step] and 'python -c "import rembg.sessions"' in runs[project_step]
    assert any("npm ci" in r for r in runs) and any('asset3d model fetch "${MODEL}"' in r for r in runs)
    for keyword, arg in steps:
        if keyword == "COPY" and "<<" not in arg:
            for source in shlex.split(arg)[:-1]:
                if not source.startswith("--") and source != ".":
                    assert (REPO / source).exists(), source
    build_parser().parse_args(["model", "fetch", "stabilityai/TripoSR"])  # the baked-in fetch is a real command
    cmd = json_list(dict(steps)["CMD"])
    assert cmd[:4] == ["prefect", "worker", "start", "--pool"] and cmd[4] == pool
    assert pool in yaml.safe_load((REPO / "prefect.yaml").read_text())["definitions"]["work_pools"]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "node_modules", ".git"} <= set(ignored)
    assert not {"pyproject.toml", "README.md", "package.json", "package-lock.json", "flows", "asset3d"} & set(ignored)


def json_list(text: str) -> list[str]:
    import json

    return list(json.loads(text))
