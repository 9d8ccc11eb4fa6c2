"""Run a batch on a Prefect server's ``convert-batch`` deployment and wait for its report."""

from __future__ import annotations

from typing import Any


def submit_batch(deployment: str, parameters: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
    """Create a run of ``deployment`` with ``parameters``; with ``wait``, block until it ends.

    Returns ``{"flow_run_id", "state", "summary" (markdown or None), "photos" (table rows)}``; the rows
    and summary are the run's artifacts (keys ``convert-batch-photos`` / ``convert-batch-summary``).
    """
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, parameters=parameters, timeout=None if wait else 0, as_subflow=False)
    out: dict[str, Any] = {"flow_run_id": str(run.id), "state": run.state.name if run.state else None, "summary": None, "photos": []}
    if not wait:
        return out
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    for artifact in artifacts:
        if artifact.type == "markdown" and (artifact.key or "").endswith("-summary"):
            out["summary"] = artifact.data
        elif artifact.type == "table" and (artifact.key or "").endswith("-photos"):
            data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            out["photos"] = list(data or [])
    return out
