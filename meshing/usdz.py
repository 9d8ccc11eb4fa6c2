"""USDZ for Apple AR Quick Look, written and checked with Pixar's usd-core (`pxr`).

The stage holds one `UsdGeom.Mesh` (triangles, vertex normals, `st` texture coordinates) under
an `Xform` default prim of kind `component`, bound to a `UsdPreviewSurface` material whose
diffuse colour reads the baked texture through `UsdUVTexture` / `UsdPrimvarReader_float2`
(metallic and roughness as the asset's material states them). Stage metadata: `upAxis` Y,
`metersPerUnit` 1 (the asset frame is glTF's: y-up, metres). `UsdUtils.CreateNewARKitUsdzPackage`
packs the layer and its texture; `UsdUtils.ComplianceChecker(arkit=True)` checks the package.
"""

from __future__ import annotations

import json
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from meshing.errors import MeshingError
from meshing.glb import LimitsCheck, file_limit_failures, safe_vertex_normals
from meshing.materials import MaterialSpec
from meshing.presets import Preset

USDZ_CONTENT_TYPE = "model/vnd.usdz+zip"
_TEXTURE_NAME = "base_color.png"


def _pxr() -> Any:
    try:
        import pxr  # noqa: F401
        from pxr import Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt
    except ImportError as exc:  # pragma: no cover - usd-core is a dependency
        raise MeshingError("bad_input", f"usd-core (pxr) is not installed: {exc}") from exc
    return Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt


def write_usdz(
    mesh: trimesh.Trimesh,
    path: str | Path,
    *,
    material: MaterialSpec,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a textured asset-frame mesh as an ARKit USDZ package.

    Parameters
    ----------
    mesh
        (v, 3) vertices in the asset frame (y-up, metres), (f, 3) faces, `TextureVisuals` with
        (v, 2) UVs (v up) and a PBR material with a base-colour texture.
    path
        The `.usdz` file to write (parent folders created).
    material
        Roughness, metallic and `doubleSided` of the asset (the occlusion-roughness-metallic map
        of a GLB is constant, so the factors say everything it says).
    metadata
        Provenance, stored as JSON-ready `customLayerData` of the root layer.

    Returns
    -------
    Path of the package.

    Raises
    ------
    MeshingError
        `bad_input` for a mesh without a base-colour texture, or when packaging fails.
    """
    Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt = _pxr()
    visual = mesh.visual
    texture = getattr(getattr(visual, "material", None), "baseColorTexture", None)
    if getattr(visual, "kind", None) != "texture" or visual.uv is None or texture is None:
        raise MeshingError("bad_input", "a USDZ asset needs a textured mesh (UVs and a base-colour texture)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vertices = np.asarray(mesh.vertices, dtype=np.float32)  # (v, 3)
    faces = np.asarray(mesh.faces, dtype=np.int32)  # (f, 3)
    normals = safe_vertex_normals(mesh).astype(np.float32)  # (v, 3)
    uv = np.asarray(visual.uv, dtype=np.float32)  # (v, 2)
    with tempfile.TemporaryDirectory(prefix="asset3d-usdz-") as tmp:
        layer_path = Path(tmp) / "model.usdc"
        texture.convert("RGB").save(Path(tmp) / _TEXTURE_NAME, format="PNG", compress_level=3)
        stage = Usd.Stage.CreateNew(str(layer_path))
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, UsdGeom.LinearUnits.meters)
        root = UsdGeom.Xform.Define(stage, "/Asset")
        stage.SetDefaultPrim(root.GetPrim())
        Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)
        if metadata:
            stage.GetRootLayer().customLayerData = {
                "asset3d": json.dumps(dict(metadata), sort_keys=True, default=str)
            }

        geom = UsdGeom.Mesh.Define(stage, "/Asset/Geometry")
        points = Vt.Vec3fArray.FromNumpy(vertices)
        geom.CreatePointsAttr(points)
        geom.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, dtype=np.int32)))
        geom.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(faces.ravel()))
        geom.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(normals))
        geom.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        geom.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        geom.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)  # counter-clockwise fronts, as glTF
        geom.CreateDoubleSidedAttr(bool(material.double_sided))
        geom.CreateExtentAttr(UsdGeom.PointBased.ComputeExtent(points))
        st = UsdGeom.PrimvarsAPI(geom).CreatePrimvar(
            "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
        )
        st.Set(Vt.Vec2fArray.FromNumpy(uv))

        mat = UsdShade.Material.Define(stage, "/Asset/Materials/Baked")
        surface = UsdShade.Shader.Define(stage, "/Asset/Materials/Baked/PreviewSurface")
        surface.CreateIdAttr("UsdPreviewSurface")
        surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(material.metallic))
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(material.roughness))
        reader = UsdShade.Shader.Define(stage, "/Asset/Materials/Baked/TexCoords")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
        base = UsdShade.Shader.Define(stage, "/Asset/Materials/Baked/BaseColor")
        base.CreateIdAttr("UsdUVTexture")
        base.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(_TEXTURE_NAME))
        base.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        base.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        base.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
        base.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
        base.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
            base.ConnectableAPI(), "rgb"
        )
        mat.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
        UsdShade.MaterialBindingAPI.Apply(geom.GetPrim()).Bind(mat)
        stage.GetRootLayer().Save()
        if path.exists():
            path.unlink()
        # the ARKit packager localises the texture to "0/base_color.png" and then warns that the
        # rewritten path does not resolve beside the source layer; the package itself resolves it
        # (the compliance checker's missing-reference rule passes), so its warnings are collected
        # here instead of printed
        delegate = UsdUtils.CoalescingDiagnosticDelegate()
        ok = UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer_path)), str(path))
        delegate.TakeUncoalescedDiagnostics()
        del delegate
        if not ok:
            raise MeshingError("bad_input", f"{path.name}: usd-core could not create the USDZ package")
    return path


@dataclass(frozen=True)
class UsdzInfo:
    """What a USDZ package holds, read back with usd-core.

    Attributes
    ----------
    bytes
        File size.
    triangles, vertices
        Totals over the stage's meshes (faces of n corners count n - 2 triangles).
    bounds_min, bounds_max
        (3,) world-space bounding box of the default prim (stage units).
    meters_per_unit, up_axis
        Stage metadata.
    textures
        `(width, height)` of every image in the package.
    files
        Names inside the package, in order.
    """

    bytes: int
    triangles: int
    vertices: int
    bounds_min: list[float]
    bounds_max: list[float]
    meters_per_unit: float
    up_axis: str
    textures: list[tuple[int, int]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_usdz(path: str | Path) -> UsdzInfo:
    """Open a USDZ with `pxr.Usd.Stage.Open` and measure it.

    Raises
    ------
    MeshingError
        `bad_input` when the file is missing or usd-core cannot open it.
    """
    _, _, _, Usd, UsdGeom, _, _, _ = _pxr()
    path = Path(path)
    if not path.is_file():
        raise MeshingError("bad_input", f"{path}: no such USDZ file")
    stage = Usd.Stage.Open(str(path))
    if stage is None:
        raise MeshingError("bad_input", f"{path}: usd-core cannot open it")
    triangles = vertices = 0
    for prim in stage.Traverse():
        if prim.IsA(UsdGeom.Mesh):
            geom = UsdGeom.Mesh(prim)
            counts = np.asarray(geom.GetFaceVertexCountsAttr().Get() or [], dtype=np.int64)
            triangles += int(np.clip(counts - 2, 0, None).sum())
            vertices += len(geom.GetPointsAttr().Get() or [])
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    box = cache.ComputeWorldBound(stage.GetDefaultPrim() or stage.GetPseudoRoot()).ComputeAlignedRange()
    textures: list[tuple[int, int]] = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        for name in names:
            if name.lower().endswith((".png", ".jpg", ".jpeg")):
                with archive.open(name) as f, Image.open(f) as image:
                    textures.append((image.width, image.height))
    return UsdzInfo(
        bytes=path.stat().st_size,
        triangles=triangles,
        vertices=vertices,
        bounds_min=[float(x) for x in box.GetMin()],
        bounds_max=[float(x) for x in box.GetMax()],
        meters_per_unit=float(UsdGeom.GetStageMetersPerUnit(stage)),
        up_axis=str(UsdGeom.GetStageUpAxis(stage)),
        textures=textures,
        files=names,
    )


@dataclass(frozen=True)
class ComplianceReport:
    """Pixar's ARKit compliance checker on one package: errors (failed rules included) and warnings."""

    path: str
    errors: list[str]
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_arkit_compliance(path: str | Path) -> ComplianceReport:
    """`pxr.UsdUtils.ComplianceChecker(arkit=True)` on a package, as `usdchecker --arkit` runs it.

    Both the checker's errors and its failed rule checks count as errors (usdchecker fails on either).
    """
    _, _, _, _, _, _, UsdUtils, _ = _pxr()
    with warnings.catch_warnings():
        # deprecated since usd-core 26.x in favour of the Usd Validation Framework, which has no ARKit
        # rules yet; usd-core is pinned below 26.8, where the checker is gone
        warnings.simplefilter("ignore", DeprecationWarning)
        checker = UsdUtils.ComplianceChecker(arkit=True)
    checker.CheckCompliance(str(path))
    return ComplianceReport(
        path=str(path),
        errors=[*checker.GetErrors(), *checker.GetFailedChecks()],
        warnings=list(checker.GetWarnings()),
    )


def check_usdz_limits(info: UsdzInfo, preset: Preset) -> LimitsCheck:
    """Hold a written USDZ (`inspect_usdz`) against the preset: triangles, size, textures, metres, y-up, floor."""
    fail, warn = file_limit_failures(
        preset, triangles=info.triangles, n_bytes=info.bytes, textures=info.textures, min_y=info.bounds_min[1]
    )
    if not info.textures:
        fail.append("no texture in the package")
    if info.meters_per_unit != 1.0:
        fail.append(f"metersPerUnit {info.meters_per_unit}, expected 1 (metres)")
    if info.up_axis != "Y":
        fail.append(f"upAxis {info.up_axis}, expected Y")
    measured = {
        "triangles": info.triangles,
        "bytes": info.bytes,
        "textures": [f"{w}x{h}" for w, h in info.textures],
        "meters_per_unit": info.meters_per_unit,
        "up_axis": info.up_axis,
        "min_y_m": info.bounds_min[1],
    }
    return LimitsCheck(preset=preset.name, ok=not fail, failures=fail, measured=measured, warnings=warn)


def extent_difference(
    a_min: list[float], a_max: list[float], b_min: list[float], b_max: list[float]
) -> float:
    """Largest per-axis relative difference of box `a`'s size from box `b`'s (0.01 = 1 %)."""
    sa = np.asarray(a_max, dtype=np.float64) - np.asarray(a_min, dtype=np.float64)
    sb = np.asarray(b_max, dtype=np.float64) - np.asarray(b_min, dtype=np.float64)
    return float(np.max(np.abs(sa - sb) / np.maximum(np.abs(sb), 1e-12)))
