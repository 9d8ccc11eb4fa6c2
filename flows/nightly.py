"""`nightly_catalogue`: the whole source, every night; only new, changed or not-yet-converted photos."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.batch import STATE_HOOKS, convert_photos, flow_settings
from flows.triggers import admit_batch, batch_run_name
from tasks.policy import step_task_runner


@flow(
    name="nightly-catalogue", log_prints=True, flow_run_name=batch_run_name("nightly-catalogue"), task_runner=step_task_runner(), **STATE_HOOKS
)
def nightly_catalogue(
    source: str | None = None,
    dest: str | None = None,
    preset: str | None = None,
    fan_out: int | None = None,
    catalogue_url: str | None = None,
) -> dict[str, Any]:
    """Scan all of ``source`` and convert what the catalogue lacks for the current model and parameters.

    A photo is converted when it is new, when its ETag changed and its bytes did too (a changed photo gets
    the next asset version), or when it has no asset for the current model weights and parameters.
    Photos whose ETag matches a converted photo are skipped without being downloaded; a new ETag over the
    same bytes costs one download and no conversion. The report is the same as `convert_batch`'s.

    Parameters
    ----------
    source, dest, preset, fan_out
        What the batch is (default: the worker's settings, ``ASSET3D_SOURCE`` ...); the rest is the worker's
        and the server's (`flows.batch.flow_settings`).
    catalogue_url
        A catalogue URL without a password (one with a password is refused: parameters are stored).
    """
    settings = flow_settings(source=source, dest=dest, preset=preset, fan_out=fan_out, catalogue_url=catalogue_url)
    admit_batch(settings.source, settings)  # a source outside the worker's allowed sources, SQLite on a pool: refused
    return convert_photos(settings.source, settings, kind="nightly-catalogue")
