"""`convert_batch`: convert one batch of photos (a prefix, a folder, or a list of photo URIs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow

from asset3d.pipeline.settings import load_settings
from flows.batch import convert_photos


@flow(name="convert-batch", log_prints=True)
def convert_batch(
    source: str | list[str | dict[str, str]],
    dest: str | None = None,
    preset: str | None = None,
    model: str | None = None,
    catalogue_url: str | None = None,
    sku_pattern: str | None = None,
    sidecar: str | None = None,
    batch_size: int | None = None,
    fan_out: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert the photos of ``source`` into published assets; returns the batch report.

    Parameters
    ----------
    source
        ``s3://bucket/prefix``, ``file:///abs/folder`` or a folder (every photo below it), or a list of
        photo URIs (items may be ``{"uri": ..., "sku": ...}``).
    dest
        Where assets are published (default: the ``dest`` setting).
    preset, model, catalogue_url, sku_pattern, sidecar, batch_size, fan_out
        Override the settings of the same name (`asset3d.pipeline.settings.Settings`).
    options
        Any other settings, by field name (e.g. ``{"mc_resolution": 128, "review": {...}}``).
    """
    explicit = {
        "dest": dest, "preset": preset, "model": model, "catalogue_url": catalogue_url, "sku_pattern": sku_pattern,
        "sidecar": sidecar, "batch_size": batch_size, "fan_out": fan_out,
    }  # fmt: skip
    settings = load_settings(**{**dict(options or {}), **{k: v for k, v in explicit.items() if v is not None}})
    batch: str | Sequence[str | Mapping[str, str]] = source
    return convert_photos(batch, settings, kind="convert-batch")
