from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from mesh_helpers import colored_sphere, smooth_color

from meshing.errors import MeshingError
from meshing.glb import check_limits, inspect_glb, read_glb_mesh, write_glb
from meshing.materials import MaterialSpec, constant_orm_image, needs_double_sided
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
    np.testing.assert_array_equal(
        read_glb_mesh(path).visual.vertex_colors, placed_sphere.visual.vertex_colors
    )


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
    assert check_limits(inspect_glb(tex), PRESETS["shopify"]).ok
    # amazon wants the metallic-roughness map as well
    assert any("metallic-roughness" in f for f in check_limits(inspect_glb(tex), PRESETS["amazon"]).failures)
    orm = write_glb(
        textured_sphere, tmp_path / "orm.glb", material=MaterialSpec(roughness=0.9, orm_texture=True)
    )
    assert check_limits(inspect_glb(orm), PRESETS["amazon"]).ok
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
    assert amazon.orm_texture and not PRESETS["web"].orm_texture
    assert all(p.roughness == 0.9 for p in PRESETS.values())
    assert (
        "EXT_meshopt_compression" not in amazon.allowed_extensions
        and "EXT_texture_webp" not in amazon.allowed_extensions
    )
    with pytest.raises(MeshingError) as err:
        get_preset("etsy")
    assert err.value.reason == "unknown_preset"


def test_every_glb_has_an_explicit_dielectric_material(
    placed_sphere: trimesh.Trimesh, textured_sphere: trimesh.Trimesh, tmp_path: Path
) -> None:
    vc = write_glb(placed_sphere, tmp_path / "vc.glb", material=MaterialSpec(roughness=0.7))
    gltf = pygltflib.GLTF2.load_binary(str(vc))
    prim = gltf.meshes[0].primitives[0]
    assert prim.material is not None and prim.attributes.COLOR_0 is not None
    pbr = gltf.materials[prim.material].pbrMetallicRoughness
    assert pbr.metallicFactor == 0.0 and pbr.roughnessFactor == pytest.approx(0.7)
    assert gltf.materials[prim.material].doubleSided is False
    assert validate_glb(vc).errors == 0
    orm = write_glb(
        textured_sphere, tmp_path / "orm.glb", material=MaterialSpec(roughness=0.9, orm_texture=True)
    )
    report = validate_glb(orm)
    assert report.errors == 0 and report.warnings == 0, report.messages
    info = inspect_glb(orm)
    (material,) = info.materials
    assert material is not None and material.metallic == 0.0 and material.roughness == pytest.approx(0.9)
    assert material.base_color_texture and material.metallic_roughness_texture and material.occlusion_texture
    assert [(t.width, t.height, t.mime_type) for t in info.textures] == [(256, 256, "image/png")] * 2
    with pytest.raises(MeshingError):  # no UVs to map an ORM texture with
        write_glb(placed_sphere, tmp_path / "x.glb", material=MaterialSpec(roughness=0.9, orm_texture=True))


def test_constant_orm_map_holds_multipliers() -> None:
    orm = constant_orm_image(4)
    assert orm.shape == (4, 4, 3) and orm.dtype == np.uint8
    assert (orm[..., 0] == 255).all() and (orm[..., 1] == 255).all() and (orm[..., 2] == 0).all()


def test_double_sided_only_where_back_faces_show() -> None:
    closed = trimesh.creation.icosphere(subdivisions=3)
    assert not needs_double_sided(closed).double_sided
    pierced = closed.copy()  # one small hole, as marching cubes leaves them
    pierced.update_faces(np.arange(1, len(closed.faces)))
    assert not needs_double_sided(pierced).double_sided
    cup = closed.copy()  # the top third cut off: an opening to look into
    cup.update_faces(cup.triangles_center[:, 2] < 0.5)
    decision = needs_double_sided(cup)
    assert decision.double_sided and "open border" in decision.reason
    flipped = closed.copy()
    flipped.faces[:10] = flipped.faces[:10, ::-1]
    assert needs_double_sided(flipped).double_sided
    with pytest.raises(MeshingError):
        MaterialSpec(roughness=1.5)
