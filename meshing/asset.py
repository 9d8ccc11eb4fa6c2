"""The stage's entry point: reconstructed mesh in, every channel's validated file, previews and metrics out."""

from __future__ import annotations

import hashlib
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
from meshing.glb import MESHOPT, WEBP, GlbInfo, LimitsCheck, check_limits, inspect_glb, write_glb
from meshing.materials import DoubleSidedDecision, MaterialSpec, needs_double_sided
from meshing.metrics import color_error, masked_psnr, mesh_stats, seam_color_difference, silhouette_iou
from meshing.options import AssetOptions
from meshing.orient import gltf_extents, orient_for_gltf
from meshing.presets import Preset, get_preset
from meshing.preview import Camera, render_views, triposr_input_camera, write_previews
from meshing.scale import fit_scale
from meshing.texture import bake_texture, textured_mesh, unwrap
from meshing.usdz import (
    USDZ_CONTENT_TYPE,
    check_arkit_compliance,
    check_usdz_limits,
    extent_difference,
    inspect_usdz,
    write_usdz,
)
from meshing.validate import ValidationReport, validate_files

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


GLB_CONTENT_TYPE = "model/gltf-binary"
PNG_CONTENT_TYPE = "image/png"
#: files of a USDZ channel must match the GLB's bounding box within this share, per axis
USDZ_EXTENT_TOLERANCE = 0.01


@dataclass(frozen=True)
class OutputFile:
    """One file the stage wrote for the asset.

    Attributes
    ----------
    name
        Path relative to `out_dir` in POSIX form (`model.glb`, `model.usdz`,
        `previews/view_00.png`); the name to publish it under, beside the asset's other files.
    path
        Where it is on disk.
    content_type
        MIME type (`model/gltf-binary`, `model/vnd.usdz+zip`, `image/png`).
    channel
        The preset whose deliverable it is; None for previews and the contact sheet.
    """

    name: str
    path: Path
    content_type: str
    channel: str | None = None

    def sha256(self) -> str:
        """SHA-256 of the file's bytes (hex)."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "content_type": self.content_type,
            "channel": self.channel,
            "bytes": self.path.stat().st_size,
        }


@dataclass
class AssetResult:
    """Everything the stage produced for one asset.

    `glb_path`, `validation`, `limits`, `transform` and the top-level metrics are the primary
    channel's (the first preset); `files` lists every written file of every channel, previews
    included, and `metrics["channels"]` holds each channel's own checks.
    """

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
    files: list[OutputFile] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)

    def file_for(self, channel: str, content_type: str | None = None) -> OutputFile:
        """The file a channel delivers (its GLB, or its USDZ for a USDZ channel)."""
        for f in self.files:
            if f.channel == channel and (content_type is None or f.content_type == content_type):
                return f
        raise KeyError(
            f"no file for channel {channel!r}" + (f" of type {content_type}" if content_type else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "channels": list(self.channels),
            "glb_path": str(self.glb_path),
            "files": [f.as_dict() for f in self.files],
            "preview_paths": [str(p) for p in self.preview_paths],
            "contact_sheet": str(self.contact_sheet) if self.contact_sheet else None,
            "metrics": self.metrics,
            "validation": self.validation.as_dict() if self.validation else None,
            "limits": self.limits.as_dict(),
            "cleanup": self.cleanup.as_dict(),
            "transform": self.transform.tolist(),
            "timings_s": self.timings_s,
        }


@dataclass(frozen=True)
class _ChannelPlan:
    """What one channel builds and writes (checked against its preset before any work)."""

    preset: Preset
    primary: bool
    faces: int
    texture_size: int | None
    draco: bool
    meshopt: bool
    texture_format: str

    @property
    def writes_glb(self) -> bool:
        return self.primary or self.preset.container == "glb"

    def glb_name(self, stem: str) -> str:
        return f"{stem}.glb" if self.primary else f"{stem}.{self.preset.name}.glb"


def _plan_channels(o: AssetOptions) -> list[_ChannelPlan]:
    """Every channel's budget, texture and compression, refused early where a preset cannot take them."""
    plans = []
    for i, p in enumerate(o.channels):
        primary = i == 0
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
        elif p.container == "usdz":
            raise MeshingError("bad_input", f"preset {p.name}: a USDZ channel needs a textured appearance")
        writes_glb = primary or p.container == "glb"
        draco = writes_glb and (p.compression == "draco" if o.draco is None else bool(o.draco))
        if draco and "KHR_draco_mesh_compression" not in p.allowed_extensions:
            raise MeshingError("preset_unmet", f"preset {p.name} does not accept Draco compression")
        meshopt = o.meshopt and writes_glb and MESHOPT in p.allowed_extensions
        webp = o.webp and writes_glb and p.appearance == "texture" and WEBP in p.allowed_extensions
        plans.append(
            _ChannelPlan(
                preset=p,
                primary=primary,
                faces=target,
                texture_size=size,
                draco=draco,
                meshopt=meshopt,
                texture_format="webp" if webp else p.texture_format,
            )
        )
    names = ", ".join(p.name for p in o.channels)
    if o.meshopt and not any(plan.meshopt for plan in plans):
        raise MeshingError("preset_unmet", f"no requested channel ({names}) accepts {MESHOPT}")
    if o.webp and not any(plan.texture_format == "webp" for plan in plans):
        raise MeshingError(
            "preset_unmet", f"no requested channel ({names}) has a texture it may encode as WebP ({WEBP})"
        )
    return plans


def _file_metrics(info: GlbInfo) -> dict[str, Any]:
    return {
        "bytes": info.bytes,
        "triangles": info.triangles,
        "textures": [f"{t.width}x{t.height}" for t in info.textures],
        "texture_size": max((max(t.width, t.height) for t in info.textures), default=None),
        "extensions": info.extensions_used,
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
    """Clean, decimate, colour, bake, size and place, write every channel's file, validate, check,
    preview and measure.

    Parameters
    ----------
    mesh
        Raw reconstruction in the official z-up frame with vertex colours (or a `field_color`).
    options
        What to build: channel(s), budgets, compression, product size, previews, clean-up
        (`AssetOptions`).
    out_dir
        Folder for every channel's file (`<name>.glb` for the primary, `<name>.<preset>.glb` for
        further GLB channels, `<name>.usdz` for apple) and the previews.
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
        `files` lists every written file (name, path, content type, channel).

    Raises
    ------
    MeshingError
        `preset_unmet` when a request exceeds a preset or a written file breaks a limit;
        `validator_errors` when a GLB has glTF-Validator errors or the USDZ ARKit-checker errors;
        others for bad input.
    """
    if not isinstance(options, AssetOptions):
        raise MeshingError("bad_input", f"options: expected AssetOptions, got {type(options).__name__}")
    o = options
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(key: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[key] = round(timings.get(key, 0.0) + now - t0, 4)
        t0 = now

    plans = _plan_channels(o)
    mesh = check_mesh(mesh)
    extras = check_metadata(metadata)
    if field_color is None and vertex_colors_of(mesh) is None:
        raise MeshingError("bad_input", "mesh has no vertex colours and no field_color was given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lap("checks")

    clean, cleanup = clean_mesh(mesh, min_component_share=o.min_component_share, fill_holes=o.fill_holes)
    lap("cleanup")
    source = SurfaceIndex(clean) if vertex_colors_of(clean) is not None else None

    def color_fn(points: np.ndarray) -> np.ndarray:
        return sample_colors(points, source=source, field_color=field_color, k=1)

    # channels with the same budget share one decimation, and with the same texture one bake
    decimated: dict[int, trimesh.Trimesh] = {}
    baked: dict[tuple[int, int], trimesh.Trimesh] = {}

    def surface(plan: _ChannelPlan) -> trimesh.Trimesh:
        if plan.faces not in decimated:
            decimated[plan.faces] = decimate(clean, plan.faces, field_color=field_color, source_index=source)
            lap("decimate")
        low = decimated[plan.faces]
        if plan.preset.appearance != "texture":
            return low
        assert plan.texture_size is not None
        key = (plan.faces, plan.texture_size)
        if key not in baked:
            atlas = unwrap(low, resolution=plan.texture_size)
            lap("unwrap")
            image = bake_texture(low, atlas, color_fn, size=plan.texture_size).image
            baked[key] = textured_mesh(low, atlas, image, roughness=plan.preset.roughness)
            lap("bake")
        return baked[key]

    files: list[OutputFile] = []
    channel_metrics: dict[str, dict[str, Any]] = {}
    placed: dict[str, tuple[trimesh.Trimesh, trimesh.Trimesh, np.ndarray]] = {}  # official, asset, transform
    glbs: dict[str, OutputFile] = {}
    usdz_file: OutputFile | None = None
    sides_of: dict[int, DoubleSidedDecision] = {}
    for plan in plans:
        p = plan.preset
        official = surface(plan)
        if id(official) not in sides_of:
            sides_of[id(official)] = needs_double_sided(official)
        sides = sides_of[id(official)]
        material = MaterialSpec(
            roughness=p.roughness, double_sided=sides.double_sided, orm_texture=p.orm_texture
        )
        lap("material")
        fit = fit_scale(gltf_extents(official.vertices), o.size)
        asset, transform = orient_for_gltf(official, scale=fit.scale)
        placed[p.name] = (official, asset, transform)
        lap("place")
        channel_extras = dict(extras)
        channel_extras["meshing"] = {
            "preset": p.name,
            "faces": int(len(asset.faces)),
            "texture_size": plan.texture_size,
            "draco": plan.draco,
            "meshopt": plan.meshopt,
            "texture_format": plan.texture_format if plan.texture_size else None,
            "units": "m",
            "frame": "glTF y-up, front +z, resting on y=0",
            "scale": fit.as_dict(),
            "official_to_asset": transform.round(9).tolist(),
            "material": material.as_dict(),
        }
        written: list[str] = []
        if plan.writes_glb:
            name = plan.glb_name(o.name)
            path = write_glb(
                asset,
                out_dir / name,
                metadata=channel_extras,
                draco=plan.draco,
                meshopt=plan.meshopt,
                texture_format=plan.texture_format,
                material=material,
            )
            glbs[p.name] = OutputFile(name, path, GLB_CONTENT_TYPE, p.name)
            files.append(glbs[p.name])
            written.append(name)
        if p.container == "usdz":
            name = f"{o.name}.usdz"
            path = write_usdz(asset, out_dir / name, material=material, metadata=channel_extras)
            usdz_file = OutputFile(name, path, USDZ_CONTENT_TYPE, p.name)
            files.append(usdz_file)
            written.append(name)
        lap("write")
        channel_metrics[p.name] = {
            "files": written,
            "faces": int(len(asset.faces)),
            "texture_size": plan.texture_size,
            "compression": {
                "draco": plan.draco,
                "meshopt": plan.meshopt,
                "texture_format": plan.texture_format,
            },
            "scale": fit.as_dict(),
            "material": {**material.as_dict(), "double_sided_reason": sides.reason},
        }

    reports: dict[str, ValidationReport] = {}
    if o.validate:
        checked = validate_files([f.path for f in glbs.values()])
        for (channel, f), report in zip(glbs.items(), checked, strict=True):
            if report.errors:
                raise MeshingError(
                    "validator_errors",
                    f"{f.name}: glTF-Validator reported {report.errors} errors",
                    details=report.as_dict(),
                )
            reports[channel] = report
    lap("validate")
    primary = plans[0].preset
    primary_glb = glbs[primary.name]
    info = inspect_glb(primary_glb.path)
    limits = check_limits(info, primary)
    for channel, f in glbs.items():
        chan_info = info if channel == primary.name else inspect_glb(f.path)
        chan_limits = limits if channel == primary.name else check_limits(chan_info, get_preset(channel))
        if not chan_limits.ok:
            raise MeshingError(
                "preset_unmet",
                f"{f.name} breaks preset {channel}: " + "; ".join(chan_limits.failures),
                details=chan_limits.as_dict(),
            )
        report = reports.get(channel)
        channel_metrics[channel].update(
            file=_file_metrics(chan_info),
            validation={"errors": report.errors, "warnings": report.warnings} if report else None,
            limits={"ok": chan_limits.ok, "failures": chan_limits.failures, "warnings": chan_limits.warnings},
        )
        if channel != primary.name:
            channel_metrics[channel]["asset"] = mesh_stats(placed[channel][1])
    if usdz_file is not None:
        assert usdz_file.channel is not None
        usdz_info = inspect_usdz(usdz_file.path)
        usdz_limits = check_usdz_limits(usdz_info, get_preset(usdz_file.channel))
        compliance = check_arkit_compliance(usdz_file.path) if o.validate else None
        if compliance is not None and compliance.errors:
            raise MeshingError(
                "validator_errors",
                f"{usdz_file.name}: the ARKit compliance checker reported {len(compliance.errors)} errors",
                details=compliance.as_dict(),
            )
        extent = extent_difference(
            usdz_info.bounds_min, usdz_info.bounds_max, info.bounds_min, info.bounds_max
        )
        if extent > USDZ_EXTENT_TOLERANCE:
            usdz_limits.failures.append(
                f"extent differs from {primary_glb.name}'s by {extent:.2%} (> {USDZ_EXTENT_TOLERANCE:.0%})"
            )
        if usdz_limits.failures:
            raise MeshingError(
                "preset_unmet",
                f"{usdz_file.name} breaks preset {usdz_file.channel}: " + "; ".join(usdz_limits.failures),
                details=usdz_limits.as_dict(),
            )
        channel_metrics[usdz_file.channel]["usdz"] = {
            **usdz_info.as_dict(),
            "arkit_compliance": compliance.as_dict() if compliance else None,
            "extent_vs_glb": extent,
            "limits": {"ok": True, "failures": [], "warnings": usdz_limits.warnings},
        }
        if usdz_file.channel != primary.name:
            channel_metrics[usdz_file.channel]["asset"] = mesh_stats(placed[usdz_file.channel][1])
    lap("limits")

    official, asset, transform = placed[primary.name]
    preview_paths: list[Path] = []
    sheet = None
    if o.previews:
        pv = write_previews(asset, out_dir / o.preview_dir, views=o.preview_views, size=o.preview_size)
        preview_paths, sheet = pv.views, pv.contact_sheet
        for picture in [*preview_paths, *([sheet] if sheet else [])]:
            files.append(OutputFile(_relative_name(picture, out_dir, "previews"), picture, PNG_CONTENT_TYPE))
    lap("previews")

    first = channel_metrics[primary.name]
    metrics: dict[str, Any] = {
        "preset": primary.name,
        "source": mesh_stats(mesh),
        "asset": mesh_stats(asset),
        "file": first["file"],
        "validation": first["validation"],
        "limits": first["limits"],
        "cleanup": cleanup.as_dict(),
        "scale": first["scale"],
        "material": {**first["material"], "largest_opening": sides_of[id(official)].largest_opening},
        "channels": channel_metrics,
    }
    if source is not None and o.color_points > 0:
        metrics["color_error"] = color_error(official, source, n_points=o.color_points, seed=0)
    if primary.appearance == "texture":
        metrics["seams"] = seam_color_difference(official)
    view = input_view_metrics(official, mask=input_mask, image=input_image, camera=input_camera)
    if view:
        metrics["input_view"] = view
    lap("metrics")
    metrics["timings_s"] = dict(timings)
    return AssetResult(
        preset=primary.name,
        glb_path=primary_glb.path,
        preview_paths=preview_paths,
        contact_sheet=sheet,
        metrics=metrics,
        validation=reports.get(primary.name),
        limits=limits,
        cleanup=cleanup,
        transform=transform,
        timings_s=timings,
        files=files,
        channels=[plan.preset.name for plan in plans],
    )


def _relative_name(path: Path, root: Path, folder: str) -> str:
    """`path` relative to `root` in POSIX form; a file outside it is named `<folder>/<file name>`."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return f"{folder}/{path.name}"
