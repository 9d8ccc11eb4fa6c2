from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from mesh_helpers import colored_sphere, smooth_color

from meshing.errors import MeshingError
from meshing.glb import check_limits, inspect_glb, write_glb
from meshing.orient import orient_for_gltf
from meshing.presets import PRESETS, get_preset
from meshing.texture import bake_texture, textured_mesh, unwrap
from meshing.validate import validate_files, validate_glb

META = {"sku": "SKU-1", "run_id": "r1", "source_photo_sha256": "0" * 64, "nested": {"a": [1, 2]}}


@pytest.fixture(scope="module")
def placed_sphere() -> trimesh.Trimesh:
    return orient_for_gltf(colored_sphere(4))[0]


@pytest.fixture(scope="module")
def textured_sphere() -> trimesh.Trimesh:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    atlas = unwrap(sphere, resolution=256)
    baked = bake_texture(sphere, atlas, smooth_color, size=256)
    return orient_for_gltf(textured_mesh(sphere, atlas, baked.image))[0]


def test_vertex_colour_glb_validates_with_metadata(placed_sphere: trimesh.Trimesh, tmp_path: Path) -> None:
    path = write_glb(placed_sphere, tmp_path / "a.glb", metadata=META)
    report = validate_glb(path)
    assert report.errors == 0 and report.warnings == 0, report.messages
    assert report.validator_version.startswith("2.")
    gltf = pygltflib.GLTF2.load_binary(str(path))
    assert gltf.asset.extras == META and gltf.scenes[0].extras == META
    info = inspect_glb(path)
    assert info.has_vertex_colors and info.triangles == len(placed_sphere.faces)
    assert abs(info.bounds_min[1]) < 1e-6
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.faces) == len(placed_sphere.faces)
    np.testing.assert_array_equal(loaded.visual.vertex_colors, placed_sphere.visual.vertex_colors)


@pytest.mark.parametrize(("draco", "fmt"), [(False, "png"), (False, "jpeg"), (True, "png")])
def test_textured_glb_variants_validate(
    textured_sphere: trimesh.Trimesh, tmp_path: Path, draco: bool, fmt: str
) -> None:
    path = write_glb(textured_sphere, tmp_path / "t.glb", metadata=META, draco=draco, texture_format=fmt)
    report = validate_glb(path)
    assert report.errors == 0, report.messages
    info = inspect_glb(path)
    assert info.textures[0].mime_type == f"image/{fmt}" and info.textures[0].width == 256
    assert ("KHR_draco_mesh_compression" in info.extensions_required) is draco
    loaded = trimesh.load(path, force="mesh")  # trimesh decodes Draco with DracoPy
    assert len(loaded.faces) == len(textured_sphere.faces)
    np.testing.assert_allclose(loaded.bounds, textured_sphere.bounds, atol=1e-4)


def test_draco_is_smaller(placed_sphere: trimesh.Trimesh, tmp_path: Path) -> None:
    plain = write_glb(placed_sphere, tmp_path / "p.glb")
    packed = write_glb(placed_sphere, tmp_path / "d.glb", draco=True)
    assert packed.stat().st_size < 0.7 * plain.stat().st_size


def test_validator_reports_errors_of_a_broken_file(placed_sphere: trimesh.Trimesh, tmp_path: Path) -> None:
    good = write_glb(placed_sphere, tmp_path / "g.glb")
    data = bytearray(good.read_bytes())
    data[8:12] = (len(data) + 100).to_bytes(4, "little")  # declared length no longer matches
    bad = tmp_path / "bad.glb"
    bad.write_bytes(bytes(data))
    reports = validate_files([good, bad])
    assert reports[0].errors == 0
    assert reports[1].errors >= 1 and any(m["severity"] == 0 for m in reports[1].messages)


def test_limits_fail_clearly(
    placed_sphere: trimesh.Trimesh, textured_sphere: trimesh.Trimesh, tmp_path: Path
) -> None:
    web = write_glb(placed_sphere, tmp_path / "w.glb")
    assert check_limits(inspect_glb(web), PRESETS["web"]).ok
    tight = dataclasses.replace(PRESETS["web"], max_triangles=100, max_bytes=1000)
    check = check_limits(inspect_glb(web), tight)
    assert not check.ok and len(check.failures) == 2
    assert any("triangles" in f for f in check.failures) and any("file size" in f for f in check.failures)
    # a vertex-coloured file is not what amazon wants, and a lifted one is off the floor
    assert any("texture" in f for f in check_limits(inspect_glb(web), PRESETS["amazon"]).failures)
    lifted = placed_sphere.copy()
    lifted.apply_translation([0, 0.01, 0])
    up = write_glb(lifted, tmp_path / "up.glb")
    assert any("floor" in f for f in check_limits(inspect_glb(up), PRESETS["web"]).failures)
    tex = write_glb(textured_sphere, tmp_path / "t.glb")
    assert check_limits(inspect_glb(tex), PRESETS["amazon"]).ok
    no_draco = dataclasses.replace(PRESETS["amazon"], allowed_extensions=frozenset())
    drc = write_glb(textured_sphere, tmp_path / "td.glb", draco=True)
    assert any("KHR_draco_mesh_compression" in f for f in check_limits(inspect_glb(drc), no_draco).failures)


def test_presets_state_their_limits() -> None:
    assert PRESETS["web"].max_triangles == 50_000 and PRESETS["web"].max_bytes == 5 * 1024 * 1024
    assert PRESETS["web"].appearance == "vertex_colors"
    assert PRESETS["shopify"].max_triangles == 100_000 and PRESETS["shopify"].max_texture_size == 2048
    amazon = PRESETS["amazon"]
    assert amazon.max_triangles == 200_000 and amazon.texture_size == 2048 and amazon.texture_square_pow2
    assert "KHR_draco_mesh_compression" in amazon.allowed_extensions
    assert (
        "EXT_meshopt_compression" not in amazon.allowed_extensions
        and "EXT_texture_webp" not in amazon.allowed_extensions
    )
    with pytest.raises(MeshingError) as err:
        get_preset("etsy")
    assert err.value.reason == "unknown_preset"
