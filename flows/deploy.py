"""Deploying to a Prefect server: the work pools and the ``gpu`` limit `prefect.yaml` names, then
``prefect deploy --all``.

`prefect deploy` refuses a deployment whose work pool does not exist, and `prefect.yaml` has no way to
create one, so `ensure_infrastructure` creates what the file's ``definitions`` section lists (idempotent:
existing pools are left as they are, the limit is set to the value given).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"


def definitions(prefect_yaml: Path = PREFECT_YAML) -> dict[str, Any]:
    """The ``definitions`` section of ``prefect_yaml`` (work pools and concurrency limits)."""
    doc = yaml.safe_load(prefect_yaml.read_text()) or {}
    return dict(doc.get("definitions") or {})


def ensure_infrastructure(prefect_yaml: Path = PREFECT_YAML, *, gpu_slots: int | None = None) -> dict[str, Any]:
    """Create the work pools and tag concurrency limits of ``prefect_yaml`` on the server (PREFECT_API_URL).

    Returns ``{"work_pools": {name: "created" | "exists"}, "concurrency_limits": {tag: limit}}``.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    spec = definitions(prefect_yaml)
    out: dict[str, Any] = {"work_pools": {}, "concurrency_limits": {}}
    with get_client(sync_client=True) as client:
        for pool in (spec.get("work_pools") or {}).values():
            if pool.get("type", "process") != "process":
                raise ValueError(f"work pool {pool['name']!r}: only process pools are created here")
            try:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool["name"], type="process", description=pool.get("description"),
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )  # fmt: skip
                out["work_pools"][pool["name"]] = "created"
            except ObjectAlreadyExists:
                out["work_pools"][pool["name"]] = "exists"
        for tag, limit in (spec.get("concurrency_limits") or {}).items():
            value = int(gpu_slots) if tag == "gpu" and gpu_slots is not None else int(limit)
            client.create_concurrency_limit(tag=tag, concurrency_limit=value)
            out["concurrency_limits"][tag] = value
    return out


def deploy_all(prefect_yaml: Path = PREFECT_YAML, *, timezone: str = "UTC") -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all`` on ``prefect_yaml`` from its folder, with the schedule's time zone set."""
    env = {**os.environ, "ASSET3D_TIMEZONE": timezone, "PWD": str(prefect_yaml.parent)}
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_yaml)]
    return subprocess.run(command, cwd=prefect_yaml.parent, env=env, capture_output=True, text=True, check=False)
