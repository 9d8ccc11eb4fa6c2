"""`convert_batch`: convert one batch of photos (a prefix, a folder, or a list of photo URIs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow

from flows.batch import STATE_HOOKS, convert_photos, flow_settings
from flows.triggers import admit_batch, batch_run_name
from tasks.policy import step_task_runner


@flow(
    name="convert-batch", log_prints=True, flow_run_name=batch_run_name("convert-batch"), task_runner=step_task_runner(), **STATE_HOOKS
)
def convert_batch(
    source: str | list[str | dict[str, Any]],
    dest: str | None = None,
    preset: str | None = None,
    fan_out: int | None = None,
    sku_pattern: str | None = None,
    sidecar: str | None = None,
    catalogue_url: str | None = None,
) -> dict[str, Any]:
    """Convert the photos of ``source`` into published assets; returns the batch report.

    The parameters say what the batch is; everything else is the worker's (`flows.batch.flow_settings`):
    device, dtype, batch size and model from its environment, the catalogue from ``ASSET3D_CATALOGUE_URL`` or
    a Secret block, the conversion parameters from the server's ``asset3d-conversion`` Variable.

    Parameters
    ----------
    source
        ``s3://bucket/prefix``, ``file:///abs/folder`` or a folder (every photo below it), or a list of
        photo URIs (items may be ``{"uri": ..., "sku": ..., "size": {...}}``).
    dest
        Where assets are published (default: the worker's ``dest`` setting).
    preset
        The storefront channel(s), e.g. ``shopify`` or ``shopify,apple`` (default: the server's or worker's).
    fan_out, sku_pattern, sidecar
        Sub-batch size on the deployment; how photos are named to SKUs.
    catalogue_url
        A catalogue URL without a password (one with a password is refused: parameters are stored).
    """
    settings = flow_settings(
        dest=dest, preset=preset, fan_out=fan_out, sku_pattern=sku_pattern, sidecar=sidecar, catalogue_url=catalogue_url
    )
    batch: str | Sequence[str | Mapping[str, Any]] = source
    admit_batch(batch, settings)  # a source outside the worker's allowed sources, SQLite on a pool: refused
    return convert_photos(batch, settings, kind="convert-batch")
