"""Acceptance on the real TripoSR output: every preset, validated, within limits, on the floor,
colours within 4/255 per channel after decimation to 20k faces, textures without visible seams."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from mesh_helpers import channel_result
from PIL import Image

from asset3d.cli import mesh2glb
from meshing import AssetOptions, AssetResult, MeshingError, ProductSize, build_asset
from meshing.colors import SurfaceIndex
from meshing.glb import check_limits, inspect_glb, read_glb_mesh
from meshing.metrics import color_error, seam_color_difference
from meshing.presets import PRESETS
from meshing.validate import validate_glb

PRESET_NAMES = ("web", "shopify", "amazon")
ALL_PRESETS = ("web", "shopify", "amazon", "google", "apple")


def _reload_official(result: AssetResult) -> trimesh.Trimesh:
    """The written GLB read back by trimesh and moved back into the official frame."""
    mesh = read_glb_mesh(result.glb_path)
    extras = pygltflib.GLTF2.load_binary(str(result.glb_path)).asset.extras
    mesh.apply_transform(np.linalg.inv(np.asarray(extras["meshing"]["official_to_asset"])))
    return mesh


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_preset_glb_is_valid_and_within_limits(flor_assets: dict[str, AssetResult], preset: str) -> None:
    result = flor_assets[preset]
    report = validate_glb(result.glb_path)  # independently of the stage's own run
    assert report.errors == 0, report.messages
    info = inspect_glb(result.glb_path)
    check = check_limits(info, PRESETS[preset])
    assert check.ok, check.failures
    assert info.triangles <= 20_000
    assert abs(info.bounds_min[1]) <= 1e-4  # resting on y = 0
    assert (
        abs(info.bounds_min[0] + info.bounds_max[0]) < 1e-4
        and abs(info.bounds_min[2] + info.bounds_max[2]) < 1e-4
    )
    if preset == "web":
        assert info.has_vertex_colors and not info.textures
    else:
        assert info.textures[0].width == info.textures[0].height == 2048
    extras = info.extras
    assert extras["sku"] == f"FLOR-{preset}" and extras["run_id"] == "test-run"
    assert extras["meshing"]["preset"] == preset and extras["meshing"]["units"] == "m"


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_preset_is_y_up_with_the_front_at_plus_z(
    flor: trimesh.Trimesh, flor_assets: dict[str, AssetResult], preset: str
) -> None:
    mesh = trimesh.load(flor_assets[preset].glb_path, force="mesh")
    assert abs(mesh.bounds[0][1]) <= 1e-4
    # official (x, y, z) -> asset (y, z, x): the official height (z) is the asset's y extent
    np.testing.assert_allclose(mesh.extents, np.asarray(flor.extents)[[1, 2, 0]], rtol=0.02)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_preset_colours_match_the_source(
    flor: trimesh.Trimesh, flor_assets: dict[str, AssetResult], preset: str
) -> None:
    mesh = _reload_official(flor_assets[preset])
    err = color_error(mesh, SurfaceIndex(flor), n_points=30_000, seed=7)
    assert max(err["mean_abs"]) <= 4.0, err


@pytest.mark.parametrize("preset", ["shopify", "amazon"])
def test_preset_texture_has_no_visible_seams(flor_assets: dict[str, AssetResult], preset: str) -> None:
    mesh = trimesh.load(flor_assets[preset].glb_path, force="mesh")
    seams = seam_color_difference(mesh)
    assert seams["seam_edges"] > 1000
    # the colour on both sides of a chart border agrees to about a grey level on average
    assert seams["mean_abs"] <= 1.5 and seams["p95_abs"] <= 4.0, seams


def test_result_reports_metrics_and_previews(flor_assets: dict[str, AssetResult]) -> None:
    web = flor_assets["web"]
    m = web.metrics
    assert m["validation"]["errors"] == 0 and m["limits"]["ok"]
    assert m["source"]["faces"] == 68_508 and m["asset"]["faces"] <= 20_000
    assert m["file"]["bytes"] == web.glb_path.stat().st_size
    for key in ("vertices", "components", "watertight", "boundary_edges", "surface_area", "bbox_size"):
        assert key in m["asset"]
    assert len(web.preview_paths) == 8 and web.contact_sheet is not None
    front = np.asarray(Image.open(web.preview_paths[0]))
    assert front.shape == (512, 512, 4) and (front[..., 3] > 0).mean() > 0.05
    json.dumps(web.as_dict())  # JSON-ready
    assert (
        "seams" in flor_assets["amazon"].metrics
        and flor_assets["amazon"].metrics["file"]["texture_size"] == 2048
    )


@pytest.mark.parametrize(
    ("preset", "kwargs", "needle"),
    [
        ("web", {"faces": 60_000}, "at most 50000"),
        ("amazon", {"texture_size": 1000}, "power of two"),
        ("shopify", {"texture_size": 4096}, "larger than"),
    ],
)
def test_unmet_preset_fails_clearly(
    flor: trimesh.Trimesh, tmp_path: Path, preset: str, kwargs: dict, needle: str
) -> None:
    with pytest.raises(MeshingError) as err:
        build_asset(flor, AssetOptions(preset=preset, **kwargs), out_dir=tmp_path)
    assert err.value.reason == "preset_unmet" and needle in str(err.value)


def test_bad_metadata_is_refused(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    with pytest.raises(MeshingError) as err:
        build_asset(flor, AssetOptions(), out_dir=tmp_path, metadata={"weights_sha256": "not-a-hash"})
    assert err.value.reason == "bad_input" and "weights_sha256" in str(err.value)


def test_product_size_and_field_colour(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    seen: list[np.ndarray] = []

    def field(points: np.ndarray) -> np.ndarray:
        seen.append(points)
        return np.tile([0.2, 0.4, 0.6], (len(points), 1))

    result = build_asset(
        flor,
        AssetOptions(faces=5_000, size=ProductSize(depth_m=0.25, source="flag"), previews=False),
        out_dir=tmp_path,
        field_color=field,
    )
    mesh = read_glb_mesh(result.glb_path)
    assert mesh.extents[2] == pytest.approx(0.25, rel=1e-4)
    assert seen and seen[0].dtype == np.float32
    # the field's points are in the official frame: inside the model's box, not the scaled asset's
    assert np.abs(np.concatenate(seen)).max() > 0.3
    np.testing.assert_array_equal(np.unique(mesh.visual.vertex_colors[:, :3], axis=0), [[51, 102, 153]])


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    mesh2glb.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_a_glb_and_prints_metrics(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "flor.glb"
    mesh = str(shared / "meshes" / "triposr_flor.obj")
    rc = _cli(
        "mesh2glb",
        mesh,
        "--out",
        str(out),
        "--faces",
        "8000",
        "--previews",
        str(tmp_path / "pv"),
        "--height-m",
        "0.32",
        "--json",
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["validation"]["errors"] == 0 and printed["metrics"]["asset"]["faces"] <= 8000
    assert printed["metrics"]["scale"]["source"] == "flag"
    assert printed["metrics"]["asset"]["bbox_size"][1] == pytest.approx(0.32, rel=1e-3)
    assert out.is_file() and (tmp_path / "pv" / "contact_sheet.png").is_file()
    rc = _cli("mesh2glb", mesh, "--out", str(tmp_path / "x.glb"), "--faces", "60000")
    captured = capsys.readouterr()
    assert rc == 2 and "preset_unmet" in captured.err
    assert _cli("mesh2glb", str(tmp_path / "missing.obj"), "--out", str(out)) == 2


def test_textured_preset_bakes_the_field(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    def field(points: np.ndarray) -> np.ndarray:  # red grows with official height (z)
        return np.stack(
            [np.clip(points[:, 2] + 0.5, 0, 1), np.full(len(points), 0.5), np.full(len(points), 0.25)], 1
        )

    result = build_asset(
        flor,
        AssetOptions(preset="shopify", faces=4_000, texture_size=256, previews=False),
        out_dir=tmp_path,
        field_color=field,
    )
    mesh = _reload_official(result)
    from meshing.metrics import sample_surface, surface_colors

    pts, face = sample_surface(mesh, 5_000, seed=2)
    err = np.abs(surface_colors(mesh, pts, face) - field(pts)) * 255
    assert err.mean() < 2.0, err.mean(axis=0)


def test_options_are_checked_and_json_ready() -> None:
    options = AssetOptions(preset="amazon", faces=30_000, draco=True)
    assert json.loads(json.dumps(options.as_dict()))["faces"] == 30_000
    assert hash(options) == hash(AssetOptions(preset="amazon", faces=30_000, draco=True))
    for bad in ({"preset": "etsy"}, {"name": "../x"}, {"faces": 2}, {"color_points": -1}):
        with pytest.raises(MeshingError) as err:
            AssetOptions(**bad)
        assert err.value.reason in ("unknown_preset", "bad_input")


def _usd_mesh(path: Path) -> trimesh.Trimesh:
    """The triangles of a USDZ package, read back with usd-core."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(path))
    (geom,) = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    points = np.asarray(geom.GetPointsAttr().Get(), dtype=np.float64)
    assert set(geom.GetFaceVertexCountsAttr().Get()) == {3}
    faces = np.asarray(geom.GetFaceVertexIndicesAttr().Get(), dtype=np.int64).reshape(-1, 3)
    return trimesh.Trimesh(vertices=points, faces=faces, process=False)


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_topology_is_that_of_the_welded_surface_for_every_preset(
    flor: trimesh.Trimesh, flor_assets: dict[str, AssetResult], preset: str
) -> None:
    from meshing.cleanup import clean_mesh
    from meshing.decimate import decimate_geometry
    from meshing.metrics import mesh_stats, topology_stats

    clean, _ = clean_mesh(flor)
    reference = mesh_stats(decimate_geometry(clean, 20_000))  # the welded source, same decimation
    result = channel_result(flor_assets, preset)
    stored = (
        result.metrics["asset"] if result.preset == preset else result.metrics["channels"][preset]["asset"]
    )
    assert stored["topology_basis"] == "welded_by_position"
    for key in ("components", "boundary_edges"):
        assert abs(stored[key] - reference[key]) <= 2, (key, stored[key], reference[key])
    # the written file, read back and welded, shows the same surface
    f = result.file_for(preset)
    written = (
        _usd_mesh(f.path) if f.name.endswith(".usdz") else trimesh.load(f.path, force="mesh", process=False)
    )
    from_file = topology_stats(written)
    assert (from_file["components"], from_file["boundary_edges"]) == (
        stored["components"],
        stored["boundary_edges"],
    )


def test_topology_agrees_across_presets(flor_assets: dict[str, AssetResult]) -> None:
    counts = []
    for preset in ALL_PRESETS:
        result = channel_result(flor_assets, preset)
        stats = (
            result.metrics["asset"]
            if result.preset == preset
            else result.metrics["channels"][preset]["asset"]
        )
        counts.append((stats["components"], stats["boundary_edges"]))
    assert max(c for c, _ in counts) - min(c for c, _ in counts) <= 2, counts
    assert max(b for _, b in counts) - min(b for _, b in counts) <= 2, counts


@pytest.mark.parametrize("preset", ["shopify", "amazon"])
def test_textured_preset_passes_the_default_topology_rules(
    flor_assets: dict[str, AssetResult], preset: str
) -> None:
    from meshing.review import load_policy, review

    policy = load_policy()
    verdict = review(flor_assets[preset].metrics, policy=policy)
    assert not [
        r for r in verdict.reasons if "approve_max_components" in r or "approve_max_boundary_edges" in r
    ]
    assert flor_assets[preset].metrics["asset"]["components"] <= policy.approve_max_components


@pytest.mark.parametrize("preset", [*PRESET_NAMES, "google"])
def test_every_primitive_has_the_presets_dielectric_material(
    flor_assets: dict[str, AssetResult], preset: str
) -> None:
    gltf = pygltflib.GLTF2.load_binary(str(channel_result(flor_assets, preset).file_for(preset).path))
    primitives = [prim for mesh in gltf.meshes for prim in mesh.primitives]
    assert primitives
    for prim in primitives:
        assert prim.material is not None
        material = gltf.materials[prim.material]
        pbr = material.pbrMetallicRoughness
        assert pbr.metallicFactor == 0.0
        assert pbr.roughnessFactor == pytest.approx(PRESETS[preset].roughness)
        assert material.doubleSided is False  # flor is closed but for small marching-cubes holes
        has_orm = pbr.metallicRoughnessTexture is not None
        assert has_orm is PRESETS[preset].orm_texture
        if has_orm:
            orm = gltf.images[gltf.textures[pbr.metallicRoughnessTexture.index].source]
            assert orm.mimeType == "image/png" and material.occlusionTexture is not None
    result = channel_result(flor_assets, preset)
    assert result.metrics["channels"][preset]["material"]["metallic"] == 0.0


def test_height_alone_sizes_the_written_glb(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    options = AssetOptions(faces=3_000, size=ProductSize(height_m=0.32, source="sidecar"), previews=False)
    result = build_asset(flor, options, out_dir=tmp_path)
    info = inspect_glb(result.glb_path)  # the file's own accessor bounds
    height = info.bounds_max[1] - info.bounds_min[1]
    assert height == pytest.approx(0.32, rel=0.01)
    assert abs(info.bounds_min[1]) <= 1e-4  # on the floor
    assert (
        abs(info.bounds_min[0] + info.bounds_max[0]) < 1e-4
        and abs(info.bounds_min[2] + info.bounds_max[2]) < 1e-4
    )
    scale = result.metrics["scale"]
    assert scale["source"] == "sidecar" and scale["basis"] == "height_m" and not scale["unscaled"]
    assert scale["aspect_mismatch"] is None  # one dimension: nothing to compare
    assert info.extras["meshing"]["scale"]["scale_factor"] == pytest.approx(scale["scale_factor"])


def test_wrong_proportions_hold_the_asset(flor: trimesh.Trimesh, tmp_path: Path) -> None:
    from meshing.orient import gltf_extents
    from meshing.review import GateDecision, review

    width, height, _ = gltf_extents(flor.vertices)
    # the product is three times as wide, for its height, as the model
    size = ProductSize(width_m=0.3 * 3 * width / height, height_m=0.3, source="catalogue")
    result = build_asset(flor, AssetOptions(faces=3_000, size=size, previews=False), out_dir=tmp_path)
    assert result.metrics["scale"]["aspect_mismatch"] == pytest.approx(3.0, rel=0.03)
    verdict = review(result.metrics)
    assert verdict.status is GateDecision.needs_review
    assert any("review_max_aspect_mismatch" in r for r in verdict.reasons), verdict.reasons


def test_unscaled_asset_is_noted(flor_assets: dict[str, AssetResult]) -> None:
    from meshing.review import load_policy, review

    metrics = flor_assets["shopify"].metrics
    assert metrics["scale"]["unscaled"] and metrics["scale"]["scale_factor"] == 1.0
    verdict = review(metrics)
    assert any(n.startswith("unscaled") for n in verdict.notes)
    assert not any("unscaled" in r for r in verdict.reasons)
    strict = review(metrics, policy=load_policy({"hold_unscaled": True}))
    assert strict.status != "auto_approved" and any("hold_unscaled" in r for r in strict.reasons)


def test_cli_writes_every_channels_file(
    shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh = str(shared / "meshes" / "triposr_flor.obj")
    out = tmp_path / "flor.glb"
    args = ("--out", str(out), "--faces", "2000", "--texture-size", "256")
    assert _cli("mesh2glb", mesh, "--preset", "shopify,apple", *args) == 0
    assert out.is_file() and (tmp_path / "flor.usdz").is_file()
    assert "flor.usdz (model/vnd.usdz+zip, channel apple)" in capsys.readouterr().err
    assert _cli("mesh2glb", mesh, "--preset", "etsy", *args) == 2
    assert "unknown_preset" in capsys.readouterr().err
