"""Keeping the catalogue's ``runs`` rows true to Prefect's flow runs.

A run row is closed by the driver when its batch ends (``finally``). When the flow run's process dies with
it, Prefect still knows: the flows' state hooks (`close_run_row`, on crash and cancellation) close the row
where Prefect runs them, and `reconcile` closes every row still ``running`` whose flow run Prefect has
ended -- a machine loss, where no hook could run -- or does not know while the row's process is gone.
``asset3d runs reconcile`` runs it, and so does every batch before it starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.states import State

from asset3d.pipeline.gc import process_gone
from storage.catalogue import Catalogue, RunStatus

log = logging.getLogger(__name__)

#: Prefect's final state types -> the catalogue's run status.
_FINAL = {"COMPLETED": RunStatus.completed, "CANCELLED": RunStatus.cancelled}


def run_status(state: State[Any] | None) -> RunStatus | None:
    """The catalogue status for a Prefect state: None while the flow run may still go on."""
    if state is None or not state.is_final():
        return None
    return _FINAL.get(state.type.value, RunStatus.failed)  # FAILED, CRASHED


@dataclass(frozen=True)
class Reconciled:
    """A run row `reconcile` closed: its id, its flow run, and why."""

    run_id: int
    flow_run_id: str
    status: RunStatus
    because: str


def reconcile(cat: Catalogue) -> list[Reconciled]:
    """Close every ``running`` row whose Prefect flow run is over, or is unknown to the server and whose
    process is gone from this host (`asset3d.pipeline.gc.process_gone`: a row of another host or of a live
    process, unknown here, may belong to another server's run, e.g. another command's temporary one)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    rows = [r for r in cat.runs_in_progress() if r.flow_run_id]
    if not rows:
        return []
    ids = {}
    for r in rows:
        try:
            ids[UUID(str(r.flow_run_id))] = r
        except ValueError:
            continue
    with get_client(sync_client=True) as client:
        found = {fr.id: fr for fr in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))}
    out = []
    for flow_run_id, row in ids.items():
        flow_run = found.get(flow_run_id)
        # a server that never saw the flow run (another command's temporary server, another Prefect server)
        # cannot tell that it ended: such a row is closed only when its process is gone from this host
        if flow_run is None and not process_gone(row.host, row.pid, started_before=row.started_at):
            continue
        status = RunStatus.failed if flow_run is None else run_status(flow_run.state)
        if status is None:
            continue
        because = (
            f"not known to the Prefect server, and its process {row.pid} on {row.host} is gone"
            if flow_run is None
            else f"its flow run is {flow_run.state.name}"
        )
        if cat.close_run(row.id, status):
            out.append(Reconciled(row.id, str(flow_run_id), status, because))
            log.info("closed catalogue run %d as %s: %s", row.id, status.value, because)
    return out


def close_run_row(catalogue_url: str, flow_run: FlowRun, state: State[Any]) -> bool:
    """Close the run row of ``flow_run`` (a state hook: the run crashed or was cancelled)."""
    from asset3d.pipeline.records import open_catalogue

    status = run_status(state) or RunStatus.failed
    cat = open_catalogue(catalogue_url, auto_migrate=False)
    row = cat.run_of_flow_run(str(flow_run.id))
    return row is not None and cat.close_run(row.id, status)
