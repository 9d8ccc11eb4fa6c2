"""Assets out: the meshing stage on one reconstruction and the review gate's decision; staging the files.

The files of an asset (`BuiltAsset.files`) and where they go: `asset3d.pipeline.publishing`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asset3d import __version__
from asset3d.pipeline import publishing
from asset3d.pipeline.models import Reconstruction, color_field, get_model
from asset3d.pipeline.options import BuildOptions, MachineOptions, PublishOptions
from asset3d.pipeline.photos import Prepared
from meshing.review import GateDecision
from meshing.scale import ProductSize

_METRIC = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".usdz": "model/vnd.usdz+zip",
    ".png": "image/png",
    ".json": "application/json",
}


@dataclass(frozen=True)
class AssetFile:
    """One file of an asset: its name relative to the asset folder, bytes and content type."""

    name: str
    data: bytes = field(repr=False)
    content_type: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def entry(self) -> dict[str, Any]:
        """The file's line in the manifest."""
        return {"key": self.name, "sha256": self.sha256, "bytes": len(self.data), "content_type": self.content_type}


@dataclass(frozen=True)
class AssetIdentity:
    """Which asset a build makes: its conversion key, the photo and product it shows, and the product's real
    dimensions when known (the GLB is scaled to them)."""

    conversion_key: str
    sku: str
    photo_uri: str
    size: ProductSize | None = None


@dataclass(frozen=True)
class BuiltAsset:
    """What the build stage made of one photo: files, metrics and the review gate's decision."""

    conversion_key: str
    sku: str
    photo_uri: str
    photo_sha256: str
    files: tuple[AssetFile, ...] = field(repr=False)
    metrics: dict[str, Any] = field(repr=False)
    decision: GateDecision
    reasons: tuple[str, ...]
    #: the gate's verdict as the catalogue keeps it (decision, reasons, notes, intake summary)
    gate: dict[str, Any] = field(repr=False)
    faces: int
    vertices: int
    timings_s: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def glb(self) -> AssetFile:
        return next(f for f in self.files if f.name == "model.glb")

    @property
    def prefix(self) -> str:
        return f"{self.sku}/{self.conversion_key}"


#: meshing renders with one OpenGL context per thread; every build of this process runs on this one thread,
#: so a worker holds one context however many photos it builds (builds wait; other stages do not).
_render_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asset3d-render")


def content_type(name: str) -> str:
    return _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics dict as catalogue metrics: ``{"input_view.silhouette_iou": 0.93, ...}``.

    Booleans, lists, text, non-finite numbers, timings and names the catalogue cannot hold are left out.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{str(key).lower()}"
        if key == "timings_s":
            continue
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, name + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            if _METRIC.match(name):
                out[name] = float(value)
    return out


@dataclass(frozen=True)
class KeyMetrics:
    """The few numbers a batch report shows for an asset (the full set is in ``metrics.json`` and the catalogue)."""

    bytes: int | None = None
    silhouette_iou: float | None = None
    masked_psnr_db: float | None = None
    validator_warnings: int | None = None

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> KeyMetrics:
        def get(*path: str) -> Any:
            cur: Any = metrics
            for p in path:
                cur = cur.get(p) if isinstance(cur, Mapping) else None
            return cur

        return cls(
            bytes=get("file", "bytes"),
            silhouette_iou=get("input_view", "silhouette_iou"),
            masked_psnr_db=get("input_view", "masked_psnr_db"),
            validator_warnings=get("validation", "warnings"),
        )


def build(prepared: Prepared, recon: Reconstruction, options: BuildOptions, machine: MachineOptions, identity: AssetIdentity) -> BuiltAsset:
    """Mesh -> validated GLB, previews and metrics for one photo, and the review gate's decision.

    The GLB's ``asset.extras`` carry the SKU, conversion key, photo SHA-256, model id, weights SHA-256 and
    pipeline version (no run id, so identical inputs give identical bytes). The files also hold the framed
    model input and its mask (``intake/``), what a reviewer compares the model with.

    Raises
    ------
    meshing.MeshingError
        The preset cannot be met, the validator found errors, or the mesh is unusable.
    """
    from meshing import AssetOptions, build_asset
    from meshing.review import load_policy, review

    loaded = get_model(machine.model, machine.device, machine.dtype)
    metadata = {
        "sku": identity.sku,
        "conversion_key": identity.conversion_key,
        "source_photo_sha256": prepared.sha256,
        "model_id": loaded.model_id,
        "weights_sha256": loaded.weights_sha256,
        "pipeline_version": __version__,
    }
    asset_options = AssetOptions(
        preset=options.preset,
        faces=options.faces,
        texture_size=options.texture_size,
        size=identity.size,
        name="model",
        previews=True,
        preview_views=options.preview_views,
        preview_size=options.preview_size,
    )
    with tempfile.TemporaryDirectory(prefix="asset3d-build-") as tmp:
        result = _render_thread.submit(
            build_asset,
            recon.mesh,
            asset_options,
            out_dir=tmp,
            field_color=color_field(loaded, recon.scene_code),
            metadata=metadata,
            input_mask=prepared.mask,
            input_image=prepared.image,
        ).result()
        # every channel's file (model.glb first, model.usdz for apple, ...), then the previews
        files = [AssetFile(f.name, f.path.read_bytes(), f.content_type) for f in result.files]
    files += [
        AssetFile("intake/input.png", _png(prepared.image), "image/png"),
        AssetFile("intake/mask.png", _png(prepared.mask.astype(np.uint8) * 255), "image/png"),
    ]
    verdict = review(result.metrics, intake_flags=prepared.flags, policy=load_policy(options.review))
    metrics = {k: v for k, v in result.metrics.items() if k != "timings_s"}
    intake_summary = {"method": prepared.intake.get("method"), "flags": list(prepared.flags)}
    gate = {**verdict.as_dict(), "decision": verdict.status.value, "intake": intake_summary}
    gate.pop("status", None)
    report = {
        "conversion_key": identity.conversion_key,
        "sku": identity.sku,
        "photo": {"uri": identity.photo_uri, "sha256": prepared.sha256},
        "review": verdict.as_dict(),
        "intake": prepared.intake,
        "metrics": metrics,
    }
    files.append(AssetFile("metrics.json", _json_bytes(report), "application/json"))
    asset_stats = result.metrics.get("asset", {})
    return BuiltAsset(
        conversion_key=identity.conversion_key,
        sku=identity.sku,
        photo_uri=identity.photo_uri,
        photo_sha256=prepared.sha256,
        files=tuple(files),
        metrics=metrics,
        decision=GateDecision(verdict.status),
        reasons=tuple(str(r) for r in verdict.reasons),
        gate=gate,
        faces=int(asset_stats.get("faces", 0)),
        vertices=int(asset_stats.get("vertices", 0)),
        timings_s=dict(result.timings_s),
    )


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()


def stage(built: BuiltAsset, options: PublishOptions) -> publishing.Staged:
    """The publish stage's first step: every file of the asset into its folder of the destination, no
    manifest (`asset3d.pipeline.publishing.stage`; identical files are not written again)."""
    folder = publishing.asset_folder(options.dest, built.sku, built.conversion_key)
    files = [(f.name, f.data, f.content_type) for f in built.files]
    return publishing.stage(folder, files, metadata={"conversion-key": built.conversion_key, "sku": built.sku})
