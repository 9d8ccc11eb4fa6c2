"""The stage's entry point: reconstructed mesh in, validated marketplace GLB, previews and metrics out."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from meshing.cleanup import CleanupReport, check_mesh, clean_mesh, vertex_colors_of
from meshing.colors import FieldColor, SurfaceIndex, sample_colors
from meshing.decimate import decimate
from meshing.errors import MeshingError
from meshing.glb import LimitsCheck, check_limits, inspect_glb, write_glb
from meshing.materials import MaterialSpec, needs_double_sided
from meshing.metrics import color_error, masked_psnr, mesh_stats, seam_color_difference, silhouette_iou
from meshing.options import AssetOptions
from meshing.orient import gltf_extents, orient_for_gltf
from meshing.preview import Camera, render_views, triposr_input_camera, write_previews
from meshing.scale import fit_scale
from meshing.texture import bake_texture, textured_mesh, unwrap
from meshing.validate import ValidationReport, validate_glb

METADATA_KEYS = ("sku", "source_photo_sha256", "model_id", "weights_sha256", "run_id", "pipeline_version")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Provenance for `asset.extras`: known keys checked, others passed through (JSON values).

    Raises
    ------
    MeshingError
        `bad_input` for a sha256 field that is not 64 lowercase hex digits, or a non-string id.
    """
    out = dict(metadata or {})
    for key in ("source_photo_sha256", "weights_sha256"):
        value = out.get(key)
        if value is not None and not (isinstance(value, str) and _SHA256.match(value)):
            raise MeshingError("bad_input", f"metadata {key}={value!r}: expected 64 lowercase hex digits")
    for key in ("sku", "model_id", "run_id", "pipeline_version"):
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            raise MeshingError("bad_input", f"metadata {key}={value!r}: expected a string")
    return out


@dataclass
class AssetResult:
    """Everything the stage produced for one asset."""

    preset: str
    glb_path: Path
    preview_paths: list[Path]
    contact_sheet: Path | None
    metrics: dict[str, Any]
    validation: ValidationReport | None
    limits: LimitsCheck
    cleanup: CleanupReport
    transform: np.ndarray  # (4, 4) official frame -> asset frame
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "glb_path": str(self.glb_path),
            "preview_paths": [str(p) for p in self.preview_paths],
            "contact_sheet": str(self.contact_sheet) if self.contact_sheet else None,
            "metrics": self.metrics,
            "validation": self.validation.as_dict() if self.validation else None,
            "limits": self.limits.as_dict(),
            "cleanup": self.cleanup.as_dict(),
            "transform": self.transform.tolist(),
            "timings_s": self.timings_s,
        }


def input_view_metrics(
    mesh_official: trimesh.Trimesh,
    *,
    mask: np.ndarray | None = None,
    image: np.ndarray | None = None,
    camera: Camera | None = None,
) -> dict[str, Any]:
    """Silhouette IoU against the intake mask and masked PSNR against the photo.

    The mesh (official z-up frame) is rendered unlit from the input camera (default
    `triposr_input_camera()`) at the mask's size.

    Parameters
    ----------
    mask
        (h, w) bool foreground mask of the framed input photo.
    image
        (h, w, 3) uint8 framed input photo (same size), for PSNR inside the mask.
    """
    if mask is None:
        return {}
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise MeshingError("bad_input", f"input mask of shape {mask.shape}: expected (h, w)")
    cam = camera or triposr_input_camera()
    h, w = mask.shape
    rgba = render_views(mesh_official, [cam], width=w, height=h, lit=False, samples=0)[0]
    rendered = rgba[..., 3] > 0
    out: dict[str, Any] = {"silhouette_iou": silhouette_iou(rendered, mask), "size": [w, h]}
    if image is not None:
        both = rendered & mask
        out["masked_psnr_db"] = (
            masked_psnr(rgba[..., :3], np.asarray(image)[..., :3], both) if both.any() else None
        )
    return out


def build_asset(
    mesh: trimesh.Trimesh,
    options: AssetOptions,
    *,
    out_dir: str | Path,
    field_color: FieldColor | None = None,
    metadata: Mapping[str, Any] | None = None,
    input_mask: np.ndarray | None = None,
    input_image: np.ndarray | None = None,
    input_camera: Camera | None = None,
) -> AssetResult:
    """Clean, decimate, colour, orient, bake, write, validate, check, preview and measure.

    Parameters
    ----------
    mesh
        Raw reconstruction in the official z-up frame with vertex colours (or a `field_color`).
    options
        What to build: preset, budgets, compression, previews, clean-up (`AssetOptions`).
    out_dir
        Folder for `<options.name>.glb` and the previews.
    field_color
        `(n, 3) float32 official-frame points -> (n, 3) colours in [0, 1]` (e.g. the model's
        colour query); used for vertex colours and texels when given.
    metadata
        Provenance for `asset.extras` (see `METADATA_KEYS`).
    input_mask, input_image, input_camera
        Framed input photo and its mask, for silhouette IoU and masked PSNR.

    Returns
    -------
    AssetResult

    Raises
    ------
    MeshingError
        `preset_unmet` when a request exceeds the preset or the written file breaks a limit;
        `validator_errors` when the file has validator errors; others for bad input.
    """
    if not isinstance(options, AssetOptions):
        raise MeshingError("bad_input", f"options: expected AssetOptions, got {type(options).__name__}")
    o = options
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(key: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[key] = round(now - t0, 4)
        t0 = now

    p = o.resolved_preset
    mesh = check_mesh(mesh)
    extras = check_metadata(metadata)
    target = int(o.faces) if o.faces is not None else p.default_faces
    if target > p.max_triangles:
        raise MeshingError(
            "preset_unmet",
            f"{target} faces requested, preset {p.name} allows at most {p.max_triangles}",
            details={"faces": target, "max_triangles": p.max_triangles},
        )
    size = None
    if p.appearance == "texture":
        size = int(o.texture_size) if o.texture_size is not None else int(p.texture_size or 1024)
        if p.max_texture_size and size > p.max_texture_size:
            raise MeshingError(
                "preset_unmet", f"texture {size} px larger than preset {p.name}'s {p.max_texture_size}"
            )
        if p.texture_square_pow2 and size & (size - 1):
            raise MeshingError(
                "preset_unmet", f"texture {size} px is not a power of two, which preset {p.name} requires"
            )
    compress = p.compression == "draco" if o.draco is None else bool(o.draco)
    if compress and "KHR_draco_mesh_compression" not in p.allowed_extensions:
        raise MeshingError("preset_unmet", f"preset {p.name} does not accept Draco compression")
    if field_color is None and vertex_colors_of(mesh) is None:
        raise MeshingError("bad_input", "mesh has no vertex colours and no field_color was given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lap("checks")

    clean, cleanup = clean_mesh(mesh, min_component_share=o.min_component_share, fill_holes=o.fill_holes)
    lap("cleanup")
    source = SurfaceIndex(clean) if vertex_colors_of(clean) is not None else None
    low = decimate(clean, target, field_color=field_color, source_index=source)
    lap("decimate")

    if p.appearance == "texture":
        assert size is not None
        atlas = unwrap(low, resolution=size)
        lap("unwrap")

        def color_fn(points: np.ndarray) -> np.ndarray:
            return sample_colors(points, source=source, field_color=field_color, k=1)

        baked = bake_texture(low, atlas, color_fn, size=size)
        final_official = textured_mesh(low, atlas, baked.image, roughness=p.roughness)
        lap("bake")
    else:
        final_official = low
    sides = needs_double_sided(final_official)
    material = MaterialSpec(roughness=p.roughness, double_sided=sides.double_sided, orm_texture=p.orm_texture)
    fit = fit_scale(gltf_extents(final_official.vertices), o.size)
    asset, transform = orient_for_gltf(final_official, scale=fit.scale)
    extras["meshing"] = {
        "preset": p.name,
        "faces": int(len(asset.faces)),
        "texture_size": size,
        "draco": compress,
        "units": "m",
        "frame": "glTF y-up, front +z, resting on y=0",
        "scale": fit.as_dict(),
        "official_to_asset": transform.round(9).tolist(),
        "material": material.as_dict(),
    }
    glb_path = write_glb(
        asset,
        out_dir / f"{o.name}.glb",
        metadata=extras,
        draco=compress,
        texture_format=p.texture_format,
        material=material,
    )
    lap("write")

    report = None
    if o.validate:
        report = validate_glb(glb_path)
        if report.errors:
            raise MeshingError(
                "validator_errors",
                f"{glb_path.name}: glTF-Validator reported {report.errors} errors",
                details=report.as_dict(),
            )
    lap("validate")
    info = inspect_glb(glb_path)
    limits = check_limits(info, p)
    if not limits.ok:
        raise MeshingError(
            "preset_unmet",
            f"{glb_path.name} breaks preset {p.name}: " + "; ".join(limits.failures),
            details=limits.as_dict(),
        )
    lap("limits")

    preview_paths: list[Path] = []
    sheet = None
    if o.previews:
        pv = write_previews(asset, out_dir / o.preview_dir, views=o.preview_views, size=o.preview_size)
        preview_paths, sheet = pv.views, pv.contact_sheet
    lap("previews")

    metrics: dict[str, Any] = {
        "preset": p.name,
        "source": mesh_stats(mesh),
        "asset": mesh_stats(asset),
        "file": {
            "bytes": info.bytes,
            "triangles": info.triangles,
            "textures": [f"{t.width}x{t.height}" for t in info.textures],
            "texture_size": max((max(t.width, t.height) for t in info.textures), default=None),
            "extensions": info.extensions_used,
        },
        "validation": {"errors": report.errors, "warnings": report.warnings} if report else None,
        "limits": {"ok": limits.ok, "failures": limits.failures},
        "cleanup": cleanup.as_dict(),
        "scale": fit.as_dict(),
        "material": {
            **material.as_dict(),
            "double_sided_reason": sides.reason,
            "largest_opening": sides.largest_opening,
        },
    }
    if source is not None and o.color_points > 0:
        metrics["color_error"] = color_error(final_official, source, n_points=o.color_points, seed=0)
    if p.appearance == "texture":
        metrics["seams"] = seam_color_difference(final_official)
    view = input_view_metrics(final_official, mask=input_mask, image=input_image, camera=input_camera)
    if view:
        metrics["input_view"] = view
    lap("metrics")
    metrics["timings_s"] = dict(timings)
    return AssetResult(
        preset=p.name,
        glb_path=glb_path,
        preview_paths=preview_paths,
        contact_sheet=sheet,
        metrics=metrics,
        validation=report,
        limits=limits,
        cleanup=cleanup,
        transform=transform,
        timings_s=timings,
    )
