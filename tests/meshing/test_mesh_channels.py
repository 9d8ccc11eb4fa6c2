"""Channels as data, each checked on the written file: several channels for one asset, the apple
USDZ (usd-core, ARKit compliance), google's size rules, and web compression only where accepted."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from mesh_helpers import colored_sphere, smooth_color

from meshing import AssetOptions, AssetResult, MeshingError, ProductSize, build_asset
from meshing.glb import GlbInfo, TextureInfo, check_limits, inspect_glb, write_glb
from meshing.orient import orient_for_gltf
from meshing.presets import PRESETS
from meshing.texture import bake_texture, textured_mesh, unwrap
from meshing.validate import node_modules_dir, validate_glb

MB = 1024 * 1024


def test_one_asset_lists_every_channels_file(flor_assets: dict[str, AssetResult]) -> None:
    result = flor_assets["shopify"]  # preset "shopify,apple,google"
    assert result.channels == ["shopify", "apple", "google"] and result.preset == "shopify"
    models = {f.name: (f.content_type, f.channel) for f in result.files}
    assert models == {
        "asset.glb": ("model/gltf-binary", "shopify"),
        "asset.usdz": ("model/vnd.usdz+zip", "apple"),
        "asset.google.glb": ("model/gltf-binary", "google"),
    }
    for f in result.files:
        assert f.path.is_file() and f.path.parent == result.glb_path.parent
        assert f.sha256() == hashlib.sha256(f.path.read_bytes()).hexdigest()
    json.dumps(result.as_dict())
    channels = result.metrics["channels"]
    assert channels["shopify"]["files"] == ["asset.glb"] and channels["apple"]["files"] == ["asset.usdz"]
    assert channels["google"]["validation"]["errors"] == 0 and channels["google"]["limits"]["ok"]
    # one bake served the three channels: the apple and google meshes are shopify's
    assert channels["apple"]["faces"] == channels["google"]["faces"] == result.metrics["asset"]["faces"]
    web = flor_assets["web"]  # previews are files of the asset too
    assert sum(f.content_type == "image/png" for f in web.files) == 9
    assert {f.name for f in web.files} >= {"asset.glb", "previews/contact_sheet.png", "previews/view_00.png"}


@pytest.mark.filterwarnings("ignore:Use of UsdUtils.ComplianceChecker is deprecated:DeprecationWarning")
def test_apple_usdz_opens_is_arkit_compliant_and_matches_the_glb(flor_assets: dict[str, AssetResult]) -> None:
    from pxr import Usd, UsdGeom, UsdShade, UsdUtils

    result = flor_assets["shopify"]
    usdz = result.file_for("apple").path
    assert usdz.name == "asset.usdz" and usdz.parent == result.glb_path.parent
    stage = Usd.Stage.Open(str(usdz))
    assert stage is not None
    checker = UsdUtils.ComplianceChecker(arkit=True)
    checker.CheckCompliance(str(usdz))
    assert checker.GetErrors() == [] and checker.GetFailedChecks() == []
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == "Y"
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    triangles = sum(len(m.GetFaceVertexCountsAttr().Get()) for m in meshes)
    assert 0 < triangles <= 100_000
    points = np.concatenate([np.asarray(m.GetPointsAttr().Get(), dtype=np.float64) for m in meshes])
    info = inspect_glb(result.glb_path)
    size_usd = points.max(axis=0) - points.min(axis=0)
    size_glb = np.asarray(info.bounds_max) - np.asarray(info.bounds_min)
    np.testing.assert_allclose(size_usd, size_glb, rtol=0.01)
    assert abs(points[:, 1].min()) < 1e-4  # on the floor, y-up
    with zipfile.ZipFile(usdz) as archive:
        names = archive.namelist()
        assert names[0].endswith(".usdc")  # ARKit: the root layer first
        (texture,) = [n for n in names if n.endswith(".png")]
        from PIL import Image

        with archive.open(texture) as f, Image.open(f) as image:
            assert image.size == (2048, 2048)
    # the material: a dielectric with the preset's roughness
    (material,) = [UsdShade.Material(p) for p in stage.Traverse() if p.IsA(UsdShade.Material)]
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetIdAttr().Get() == "UsdPreviewSurface"
    assert surface.GetInput("metallic").Get() == 0.0
    assert surface.GetInput("roughness").Get() == pytest.approx(PRESETS["apple"].roughness)


def test_apple_alone_writes_its_glb_beside_the_usdz(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    size = ProductSize(height_m=0.32, source="catalogue")
    options = AssetOptions(preset="apple", faces=3_000, texture_size=256, size=size, previews=False)
    result = build_asset(flor, options, out_dir=tmp_path, metadata={"sku": "FLOR"})
    assert sorted(f.name for f in result.files) == ["asset.glb", "asset.usdz"]
    usdz = result.metrics["channels"]["apple"]["usdz"]
    assert usdz["arkit_compliance"]["errors"] == [] and usdz["extent_vs_glb"] < 0.01
    assert usdz["bounds_max"][1] - usdz["bounds_min"][1] == pytest.approx(0.32, rel=0.01)


def test_usdz_needs_a_texture(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    from meshing.materials import MaterialSpec
    from meshing.usdz import write_usdz

    with pytest.raises(MeshingError) as err:
        write_usdz(orient_for_gltf(colored_sphere(2))[0], tmp_path / "x.usdz", material=MaterialSpec(0.9))
    assert err.value.reason == "bad_input"


def test_google_size_and_texture_rules() -> None:
    google = PRESETS["google"]
    assert google.max_bytes == 15 * MB and google.target_bytes == 10 * MB and google.max_texture_size == 4096

    def info(n_bytes: int, side: int) -> GlbInfo:
        return GlbInfo(
            bytes=n_bytes,
            triangles=1000,
            vertices=600,
            bounds_min=[-0.1, 0.0, -0.1],
            bounds_max=[0.1, 0.3, 0.1],
            textures=[TextureInfo(side, side, "image/png")],
            has_texcoords=True,
            materials=[],
        )

    ok = check_limits(info(9 * MB, 4096), google)
    assert ok.ok and ok.warnings == []
    aim = check_limits(info(12 * MB, 4096), google)  # within the limit, over the aim: a warning
    assert aim.ok and any("recommends" in w for w in aim.warnings)
    over = check_limits(info(16 * MB, 8192), google)
    assert not over.ok and len(over.failures) == 2


def test_google_refuses_a_texture_over_4096_before_any_work(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    with pytest.raises(MeshingError) as err:
        build_asset(flor, AssetOptions(preset="google", texture_size=8192), out_dir=tmp_path)
    assert err.value.reason == "preset_unmet" and "4096" in str(err.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"preset": "amazon", "meshopt": True}, "EXT_meshopt_compression"),
        ({"preset": "amazon", "webp": True}, "WebP"),
        ({"preset": "shopify", "meshopt": True}, "EXT_meshopt_compression"),
        ({"preset": "web", "webp": True}, "WebP"),  # vertex colours: no texture to encode
    ],
)
def test_compression_a_channel_refuses_is_refused(
    flor: trimesh.Trimesh, tmp_path: Path, kwargs: dict, needle: str
) -> None:
    with pytest.raises(MeshingError) as err:
        build_asset(flor, AssetOptions(**kwargs), out_dir=tmp_path)
    assert err.value.reason == "preset_unmet" and needle in str(err.value)


def test_channel_options_are_checked() -> None:
    assert [p.name for p in AssetOptions(preset="shopify, apple").channels] == ["shopify", "apple"]
    assert [p.name for p in AssetOptions(preset=("web", PRESETS["amazon"])).channels] == ["web", "amazon"]
    for bad in ({"preset": "web,web"}, {"preset": "web,"}, {"draco": True, "meshopt": True}):
        with pytest.raises(MeshingError):
            AssetOptions(**bad)


# ---- meshopt and WebP, decoded by an independent implementation ----------------------------------

_DECODE = r"""
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
const lib = path.join(process.env.NODE_MODULES, 'three/examples/jsm/libs/meshopt_decoder.module.js');
const { MeshoptDecoder } = await import(pathToFileURL(lib).href);
await MeshoptDecoder.ready;
const data = fs.readFileSync(process.argv[1]);
const jsonLength = data.readUInt32LE(12);
const doc = JSON.parse(data.subarray(20, 20 + jsonLength).toString('utf8'));
const bin = data.subarray(20 + jsonLength + 8);
const out = {};
doc.bufferViews.forEach((view, i) => {
  const ext = (view.extensions || {}).EXT_meshopt_compression;
  if (!ext) return;
  const source = bin.subarray(ext.byteOffset || 0, (ext.byteOffset || 0) + ext.byteLength);
  const target = new Uint8Array(ext.count * ext.byteStride);
  MeshoptDecoder.decodeGltfBuffer(target, ext.count, ext.byteStride, source, ext.mode, ext.filter || 'NONE');
  out[i] = Buffer.from(target).toString('base64');
});
process.stdout.write(JSON.stringify(out));
"""


def _three_decoded_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """POSITION (n, 3) and triangles (f, 3) of a meshopt GLB, decoded by three.js's MeshoptDecoder."""
    modules = node_modules_dir()
    node = shutil.which("node")
    assert node, "Node.js is needed (the glTF-Validator runs on it too)"
    proc = subprocess.run(
        [node, "--input-type=module", "-e", _DECODE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "NODE_MODULES": str(modules)},
    )
    views = {int(k): base64.b64decode(v) for k, v in json.loads(proc.stdout).items()}
    gltf = pygltflib.GLTF2.load_binary(str(path))
    prim = gltf.meshes[0].primitives[0]
    pos = gltf.accessors[prim.attributes.POSITION]
    idx = gltf.accessors[prim.indices]
    points = np.frombuffer(views[pos.bufferView], dtype=np.float32).reshape(pos.count, 3)
    faces = np.frombuffer(views[idx.bufferView], dtype=np.uint32).reshape(-1, 3)
    return points, faces


def _triangle_set(points: np.ndarray, faces: np.ndarray) -> set[tuple[float, ...]]:
    """Triangles as rotation-normalised corner tuples (winding kept, vertex order ignored)."""
    out = set()
    for tri in np.round(np.asarray(points, dtype=np.float64)[faces], 6):
        k = min(range(3), key=lambda i: tuple(tri[i]))
        out.add(tuple(np.roll(tri, -k, axis=0).ravel()))
    return out


def test_meshopt_glb_validates_and_decodes_to_the_same_triangles(tmp_path: Path) -> None:
    sphere = orient_for_gltf(colored_sphere(3))[0]
    plain = write_glb(sphere, tmp_path / "plain.glb")
    packed = write_glb(sphere, tmp_path / "packed.glb", meshopt=True)
    report = validate_glb(packed)
    assert report.errors == 0 and report.warnings == 0, report.messages
    info = inspect_glb(packed)
    assert info.extensions_required == ["EXT_meshopt_compression"] and info.triangles == len(sphere.faces)
    assert packed.stat().st_size < 0.6 * plain.stat().st_size
    points, faces = _three_decoded_mesh(packed)
    assert _triangle_set(points, faces) == _triangle_set(sphere.vertices.astype(np.float32), sphere.faces)


def test_web_meshopt_only_where_the_channel_accepts_it(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    options = AssetOptions(preset="web,amazon", faces=2_000, texture_size=256, meshopt=True, previews=False)
    result = build_asset(flor, options, out_dir=tmp_path)
    web = inspect_glb(result.file_for("web").path)
    amazon = inspect_glb(result.file_for("amazon").path)
    assert "EXT_meshopt_compression" in web.extensions_required
    assert "EXT_meshopt_compression" not in amazon.extensions_used  # never for amazon
    assert result.metrics["channels"]["amazon"]["compression"]["meshopt"] is False
    assert (
        result.metrics["validation"]["errors"] == 0 and result.metrics["channels"]["amazon"]["limits"]["ok"]
    )


def test_webp_textures_for_a_textured_web_channel(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    sphere.visual = trimesh.visual.ColorVisuals(
        sphere,
        vertex_colors=np.hstack([np.rint(smooth_color(sphere.vertices) * 255), np.full((642, 1), 255)]),
    )
    textured_web = dataclasses.replace(
        PRESETS["web"], appearance="texture", texture_size=256, max_texture_size=2048
    )
    options = AssetOptions(preset=textured_web, faces=1_000, webp=True, meshopt=True, previews=False)
    result = build_asset(sphere, options, out_dir=tmp_path)
    info = inspect_glb(result.glb_path)
    assert [t.mime_type for t in info.textures] == ["image/webp"]
    assert set(info.extensions_required) == {"EXT_texture_webp", "EXT_meshopt_compression"}
    assert result.metrics["validation"]["errors"] == 0


def test_textured_webp_file_validates(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    atlas = unwrap(sphere, resolution=256)
    baked = bake_texture(sphere, atlas, smooth_color, size=256)
    placed = orient_for_gltf(textured_mesh(sphere, atlas, baked.image))[0]
    path = write_glb(placed, tmp_path / "w.glb", texture_format="webp")
    report = validate_glb(path)
    assert report.errors == 0 and report.warnings == 0, report.messages
    gltf = pygltflib.GLTF2.load_binary(str(path))
    assert gltf.textures[0].source is None and gltf.textures[0].extensions["EXT_texture_webp"]["source"] == 0


def test_usdz_limits_fail_clearly() -> None:
    from meshing.usdz import UsdzInfo, check_usdz_limits

    good = UsdzInfo(
        bytes=5 * MB,
        triangles=50_000,
        vertices=30_000,
        bounds_min=[-0.1, 0.0, -0.1],
        bounds_max=[0.1, 0.32, 0.1],
        meters_per_unit=1.0,
        up_axis="Y",
        textures=[(2048, 2048)],
    )
    assert check_usdz_limits(good, PRESETS["apple"]).ok
    bad = dataclasses.replace(
        good,
        triangles=120_000,
        meters_per_unit=0.01,
        up_axis="Z",
        textures=[(4096, 2048)],
        bounds_min=[0, 0.2, 0],
    )
    failures = check_usdz_limits(bad, PRESETS["apple"]).failures
    for needle in ("triangles", "metersPerUnit", "upAxis", "larger than 2048", "power-of-two", "floor"):
        assert any(needle in f for f in failures), (needle, failures)
