"""Deploying to a Prefect server: what `prefect.yaml` needs that `prefect deploy` does not create, then
``prefect deploy --all``.

`prefect deploy` refuses a deployment whose work pool does not exist and cannot create limits or
automations, so `ensure_infrastructure` creates what the file's ``definitions`` section lists, idempotently:

* the work pools, each of its declared type (``process``, ``docker``, ``kubernetes``, ...) with that type's
  default base job template (a pool that exists is kept; one of another type is an error);
* the global concurrency limits (``gpu``: devices in use at once over all workers; set to the value given,
  ``--gpu-slots``); a tag limit of the same name left by an older deploy is removed;
* the automation that marks a flow run ``Crashed`` when its heartbeats stop (`CRASH_AUTOMATION`; Prefect's
  documented zombie-run detection: the deployments send a heartbeat every 30 s, ``job_variables`` in
  prefect.yaml, and a run with neither a heartbeat nor a terminal state for 90 s is crashed).

`deploy_all` then runs ``prefect deploy --all`` on a copy of the file with this deploy's choices written in
(`render`): the nightly schedule's time zone, the trigger's de-duplication window, and the allowed sources
as the trigger's match, so an event outside them starts nothing. Plain ``prefect deploy --all`` on the
shipped file works too (UTC, a 60 s window, every batch event accepted; the runs still refuse sources
outside the workers' settings).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from asset3d.pipeline.sources import Location, fnmatch_prefix

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "prefect.yaml"
#: The automation that crashes runs whose heartbeats stopped (one per server; recreated by every deploy).
CRASH_AUTOMATION = "asset3d: crash runs whose heartbeats stop"
#: A run with no heartbeat and no terminal state for this long is crashed (heartbeats every 30 s: 3 missed).
CRASH_AFTER = timedelta(seconds=90)
BATCH_EVENT = "asset3d.batch.arrived"


def definitions(prefect_yaml: Path = PREFECT_YAML) -> dict[str, Any]:
    """The ``definitions`` section of ``prefect_yaml`` (work pools, concurrency limits)."""
    doc = yaml.safe_load(prefect_yaml.read_text()) or {}
    return dict(doc.get("definitions") or {})


def default_job_template(pool_type: str) -> dict[str, Any]:
    """The default base job template of a work-pool type: the installed worker's, else Prefect's registry.

    Raises
    ------
    ValueError
        A type neither installed nor in the registry.
    """
    import asyncio

    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    template = asyncio.run(get_default_base_job_template_for_infrastructure_type(pool_type))
    if not template:
        raise ValueError(f"work pool type {pool_type!r}: no default job template (process, docker, kubernetes, ...)")
    return dict(template)


def crash_automation() -> Any:
    """Prefect's zombie-run automation: no heartbeat or terminal state within `CRASH_AFTER` -> ``Crashed``."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    terminal = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description="A flow run that stopped sending heartbeats (its machine or process died) is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *terminal},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=CRASH_AFTER,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message="no heartbeat for 90 s: its worker or machine was lost")],
    )


def ensure_infrastructure(prefect_yaml: Path = PREFECT_YAML, *, gpu_slots: int | None = None) -> dict[str, Any]:
    """Create the work pools, global concurrency limits and the crash automation on the server (PREFECT_API_URL).

    Returns ``{"work_pools": {name: "created TYPE" | "exists TYPE"}, "concurrency_limits": {name: limit},
    "automations": {name: "created" | "updated"}, "removed": [...]}``.

    Raises
    ------
    ValueError
        A pool that exists with another type, an unknown pool type, a bad slot count.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    spec = definitions(prefect_yaml)
    out: dict[str, Any] = {"work_pools": {}, "concurrency_limits": {}, "automations": {}, "removed": []}
    with get_client(sync_client=True) as client:
        for pool in (spec.get("work_pools") or {}).values():
            kind = str(pool.get("type", "process"))
            try:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool["name"], type=kind, description=pool.get("description"),
                        base_job_template=default_job_template(kind),
                    )
                )  # fmt: skip
                out["work_pools"][pool["name"]] = f"created {kind}"
            except ObjectAlreadyExists:
                existing = client.read_work_pool(pool["name"]).type
                if existing != kind:
                    raise ValueError(f"work pool {pool['name']!r} exists with type {existing!r}, prefect.yaml declares {kind!r}") from None
                out["work_pools"][pool["name"]] = f"exists {kind}"
        for name, limit in (spec.get("global_concurrency_limits") or {}).items():
            value = int(gpu_slots) if name == "gpu" and gpu_slots is not None else int(limit)
            if value < 1:
                raise ValueError(f"concurrency limit {name!r}: {value} slots (at least 1)")
            client.upsert_global_concurrency_limit_by_name(name, value)
            out["concurrency_limits"][name] = value
            try:  # the tag limit of the same name an older deploy made would throttle tagged tasks as well
                client.read_concurrency_limit_by_tag(name)
                client.delete_concurrency_limit_by_tag(name)
                out["removed"].append(f"tag concurrency limit {name}")
            except ObjectNotFound:
                pass
        automation = crash_automation()
        found = client.read_automations_by_name(automation.name)
        if found:
            client.update_automation(found[0].id, automation)
            for extra in found[1:]:
                client.delete_automation(extra.id)
            out["automations"][automation.name] = "updated"
        else:
            client.create_automation(automation)
            out["automations"][automation.name] = "created"
    return out


def render(
    prefect_yaml: Path,
    *,
    timezone: str | None = None,
    window_s: int | None = None,
    allowed: Sequence[Location] = (),
) -> dict[str, Any]:
    """``prefect_yaml`` with this deploy's choices written in.

    Parameters
    ----------
    timezone
        IANA name for every cron schedule (None: the file's).
    window_s
        The batch trigger's de-duplication window: ``within`` and ``schedule_after`` (None: the file's).
    allowed
        Sources a batch event may name: the trigger then matches only their prefixes (empty: the file's).
    """
    doc = yaml.safe_load(prefect_yaml.read_text()) or {}
    for deployment in doc.get("deployments") or []:
        for schedule in deployment.get("schedules") or []:
            if timezone and "cron" in schedule:
                schedule["timezone"] = timezone
        for trigger in deployment.get("triggers") or []:
            if BATCH_EVENT not in (trigger.get("expect") or []):
                continue
            if window_s is not None:
                trigger["within"] = int(window_s)
                trigger["schedule_after"] = int(window_s)
            if allowed:
                trigger.setdefault("match", {})["prefect.resource.name"] = [fnmatch_prefix(a) for a in allowed]
    return doc


def deploy_all(
    prefect_yaml: Path = PREFECT_YAML,
    *,
    timezone: str | None = None,
    window_s: int | None = None,
    allowed: Sequence[Location] = (),
) -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all`` on `render` of ``prefect_yaml``, from its folder."""
    doc = render(prefect_yaml, timezone=timezone, window_s=window_s, allowed=allowed)
    prefect = Path(sys.executable).with_name("prefect")
    with tempfile.TemporaryDirectory(prefix="asset3d-deploy-") as tmp:
        rendered = Path(tmp) / "prefect.yaml"
        rendered.write_text(yaml.safe_dump(doc, sort_keys=False))
        command = [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(rendered)]
        return subprocess.run(command, cwd=prefect_yaml.parent, env=dict(os.environ), capture_output=True, text=True, check=False)
