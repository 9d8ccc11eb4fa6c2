"""Assets out: the meshing stage on one reconstruction, the review decision, and publishing to a bucket.

Layout of a published asset (``asset_id`` is the catalogue's conversion key: SHA-256 of the photo's
bytes, the conversion parameters and the weights)::

    {dest}/{sku}/{asset_id}/model.glb
    {dest}/{sku}/{asset_id}/previews/view_00.png ... contact_sheet.png
    {dest}/{sku}/{asset_id}/metrics.json
    {dest}/{sku}/{asset_id}/manifest.json      written last; consumers see an asset only once it exists

``manifest.json`` is ``{"files": [{"key", "sha256", "bytes", "content_type"}, ...], "provenance": {...}}``
with keys relative to the manifest's folder. Files whose stored SHA-256 already matches are not written
again, and a manifest listing the same files is left as it is: re-publishing identical content writes
nothing. Assets the review gate holds or rejects are staged (files, no manifest).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asset3d import __version__
from asset3d.pipeline.models import LoadedModel, Reconstruction, color_field
from asset3d.pipeline.photos import Prepared
from asset3d.pipeline.settings import Settings
from storage import ObjectNotFound, open_store

Decision = Literal["auto_approved", "needs_review", "rejected"]
MANIFEST = "manifest.json"
_METRIC = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_CONTENT_TYPES = {".glb": "model/gltf-binary", ".png": "image/png", ".json": "application/json"}


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
class BuiltAsset:
    """What the build stage made of one photo: files, metrics and the review gate's decision."""

    asset_id: str
    sku: str
    photo_uri: str
    photo_sha256: str
    files: tuple[AssetFile, ...] = field(repr=False)
    metrics: dict[str, Any] = field(repr=False)
    decision: Decision
    reasons: tuple[str, ...]
    faces: int
    vertices: int
    timings_s: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def glb(self) -> AssetFile:
        return next(f for f in self.files if f.name == "model.glb")

    @property
    def prefix(self) -> str:
        return f"{self.sku}/{self.asset_id}"


@dataclass(frozen=True)
class Published:
    """Where an asset's files went: URIs, whether the manifest exists, how many objects were written."""

    glb_uri: str
    preview_uris: tuple[str, ...]
    metrics_uri: str
    manifest_uri: str | None
    written: int
    unchanged: int


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


def key_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers a summary row shows."""

    def get(*path: str) -> Any:
        cur: Any = metrics
        for p in path:
            cur = cur.get(p) if isinstance(cur, Mapping) else None
        return cur

    return {
        "bytes": get("file", "bytes"),
        "silhouette_iou": get("input_view", "silhouette_iou"),
        "masked_psnr_db": get("input_view", "masked_psnr_db"),
        "validator_warnings": get("validation", "warnings"),
    }


def build(prepared: Prepared, recon: Reconstruction, loaded: LoadedModel, settings: Settings, *, asset_id: str) -> BuiltAsset:
    """Mesh -> validated GLB, previews and metrics for one photo, and the review gate's decision.

    The GLB's ``asset.extras`` carry the SKU, photo SHA-256, model id, weights SHA-256 and pipeline
    version (no run id, so identical inputs give identical bytes).

    Raises
    ------
    meshing.MeshingError
        The preset cannot be met, the validator found errors, or the mesh is unusable.
    """
    from meshing import AssetOptions, build_asset
    from meshing.review import load_policy, review

    ref = prepared.ref
    metadata = {
        "sku": ref.sku,
        "asset_id": asset_id,
        "source_photo_sha256": prepared.sha256,
        "model_id": loaded.model_id,
        "weights_sha256": loaded.weights_sha256,
        "pipeline_version": __version__,
    }
    with tempfile.TemporaryDirectory(prefix="asset3d-build-") as tmp:
        options = AssetOptions(
            preset=settings.preset,
            faces=settings.faces,
            texture_size=settings.texture_size,
            name="model",
            previews=True,
            preview_views=settings.preview_views,
            preview_size=settings.preview_size,
        )
        result = _render_thread.submit(
            build_asset,
            recon.mesh,
            options,
            out_dir=tmp,
            field_color=color_field(loaded, recon.scene_code),
            metadata=metadata,
            input_mask=prepared.mask,
            input_image=prepared.image,
        ).result()
        files = [AssetFile("model.glb", result.glb_path.read_bytes(), "model/gltf-binary")]
        pictures = [*result.preview_paths, *([result.contact_sheet] if result.contact_sheet else [])]
        files += [AssetFile(f"previews/{p.name}", p.read_bytes(), "image/png") for p in pictures]
    verdict = review(result.metrics, intake_flags=prepared.flags, policy=load_policy(settings.review_thresholds()))
    metrics = {k: v for k, v in result.metrics.items() if k != "timings_s"}
    report = {
        "asset_id": asset_id,
        "sku": ref.sku,
        "photo": {"uri": ref.uri, "sha256": prepared.sha256},
        "review": verdict.as_dict(),
        "intake": prepared.intake,
        "metrics": metrics,
    }
    files.append(AssetFile("metrics.json", _json_bytes(report), "application/json"))
    asset_stats = result.metrics.get("asset", {})
    return BuiltAsset(
        asset_id=asset_id,
        sku=ref.sku,
        photo_uri=ref.uri,
        photo_sha256=prepared.sha256,
        files=tuple(files),
        metrics=metrics,
        decision=verdict.status.value,
        reasons=tuple(verdict.reasons),
        faces=int(asset_stats.get("faces", 0)),
        vertices=int(asset_stats.get("vertices", 0)),
        timings_s=dict(result.timings_s),
    )


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()


def manifest_document(built: BuiltAsset, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of an asset: every file with checksum, size and content type, and its provenance."""
    return {"files": [f.entry() for f in built.files], "provenance": dict(provenance)}


def publish(built: BuiltAsset, dest: str, *, provenance: Mapping[str, Any], manifest: bool) -> Published:
    """Write an asset's files under ``{dest}/{sku}/{asset_id}/``, then (when ``manifest``) its manifest.

    Files already stored with the same SHA-256 are skipped; a manifest that lists the same files is left
    untouched (its provenance names the run that first published it).

    Raises
    ------
    storage.StorageError
        Any storage failure (``transient`` says whether to retry; a retry resumes where it stopped).
    """
    store = open_store(dest)
    written = unchanged = 0
    for f in built.files:
        key = f"{built.prefix}/{f.name}"
        try:
            same = store.head(key).sha256 == f.sha256
        except ObjectNotFound:
            same = False
        if same:
            unchanged += 1
            continue
        store.put(key, f.data, content_type=f.content_type, metadata={"asset-id": built.asset_id, "sku": built.sku})
        written += 1
    manifest_uri = None
    if manifest:
        key = f"{built.prefix}/{MANIFEST}"
        doc = manifest_document(built, provenance)
        try:
            current = json.loads(store.get(key, max_bytes=4 << 20))
        except (ObjectNotFound, ValueError):
            current = None
        if isinstance(current, dict) and current.get("files") == doc["files"]:
            unchanged += 1
        else:
            store.put(key, _json_bytes(doc), content_type="application/json", metadata={"asset-id": built.asset_id})
            written += 1
        manifest_uri = store.uri_for(key)
    return Published(
        glb_uri=store.uri_for(f"{built.prefix}/model.glb"),
        preview_uris=tuple(store.uri_for(f"{built.prefix}/{f.name}") for f in built.files if f.name.startswith("previews/")),
        metrics_uri=store.uri_for(f"{built.prefix}/metrics.json"),
        manifest_uri=manifest_uri,
        written=written,
        unchanged=unchanged,
    )

