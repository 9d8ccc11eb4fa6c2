"""prefect.yaml against a real `prefect server start` on 127.0.0.1 (on PostgreSQL when it answers):
`asset3d deploy` (pools, the gpu limit, `prefect deploy --all`), the deployments read back, and the event
trigger fired by `asset3d emit-batch` and `asset3d watch`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import BIN, REPO, client, delete_runs, runs_of, wait_for

from asset3d.cli import main

pytestmark = pytest.mark.slow
PREFIX_A = "s3://shop-photos/incoming/batch-a/"


def test_prefect_deploy_all_and_read_back(deployed: dict[str, Any], api: str) -> None:
    assert deployed["rc"] == 0, deployed["out"]
    assert "work pool cpu: created" in deployed["out"] and "work pool gpu: created" in deployed["out"]
    with client() as c:
        pools = {p: c.read_work_pool(p) for p in ("cpu", "gpu")}
        assert all(pool.type == "process" for pool in pools.values())
        assert c.read_concurrency_limit_by_tag("gpu").concurrency_limit == 2
        nightly = c.read_deployment_by_name("nightly-catalogue/nightly-catalogue")
        batch = c.read_deployment_by_name("convert-batch/convert-batch")
        automations = c.read_resource_related_automations(f"prefect.deployment.{batch.id}")
    assert nightly.work_pool_name == "cpu" and nightly.entrypoint == "flows/nightly.py:nightly_catalogue"
    (schedule,) = nightly.schedules
    assert schedule.active and schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Madrid"
    assert batch.work_pool_name == "gpu" and batch.entrypoint == "flows/convert.py:convert_batch"
    assert batch.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    (automation,) = automations
    trigger = automation.trigger
    assert trigger.expect == {"asset3d.batch.arrived"} and trigger.match.root == {"prefect.resource.id": "asset3d.batch.*"}
    (action,) = automation.actions
    assert action.deployment_id == batch.id and action.parameters == {"source": "{{ event.payload.prefix }}"}


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
    delete_runs("convert-batch/convert-batch")


def test_watch_emits_for_prefixes_with_new_photos(deployed: dict[str, Any], api: str, tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
    assert deployed["rc"] == 0
    source = tmp_path / "incoming"
    for batch, name in (("batch-a", "chair.png"), ("batch-b", "robot.png")):
        (source / batch).mkdir(parents=True)
        (source / batch / name).write_bytes(photo_bytes[name])
    state = tmp_path / "watch.json"
    assert main(["watch", str(source), "--once", "--state", str(state)]) == 0
    prefixes = {(source / b).as_uri() + "/" for b in ("batch-a", "batch-b")}
    wait_for("two event-driven runs", lambda: {r.parameters.get("source") for r in runs_of("convert-batch/convert-batch")} >= prefixes, 60)
    assert main(["watch", str(source), "--once", "--state", str(state)]) == 0  # nothing new: no event
    (source / "batch-b" / "hamburger.png").write_bytes(photo_bytes["hamburger.png"])
    from flows.triggers import watch

    sent: list[tuple[str, int]] = []
    assert watch(str(source), interval=1, once=True, state_file=state, emit=lambda p, n: sent.append((p, n))) == 1
    assert sent == [((source / "batch-b").as_uri() + "/", 1)]
    time.sleep(3)
    runs = [r.parameters.get("source") for r in runs_of("convert-batch/convert-batch")]
    assert sorted(runs) == sorted(prefixes)  # the quiet poll emitted nothing
    delete_runs("convert-batch/convert-batch")


def test_run_batch_submits_to_the_deployment(deployed: dict[str, Any], api: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`asset3d run-batch --deployment --no-wait` creates a run of convert-batch with the given settings."""
    assert deployed["rc"] == 0
    rc = main(["run-batch", PREFIX_A, "--dest", "s3://shop-assets/v1", "--preset", "shopify", "--deployment", "--no-wait"])
    assert rc == 0, capsys.readouterr().err
    assert "flow run " in capsys.readouterr().out
    (run,) = [r for r in runs_of("convert-batch/convert-batch") if r.parameters.get("source") == PREFIX_A]
    assert run.parameters["dest"] == "s3://shop-assets/v1" and run.parameters["options"] == {"preset": "shopify"}
    delete_runs("convert-batch/convert-batch")
