from __future__ import annotations

import numpy as np
import pytest
import trimesh
from mesh_helpers import smooth_color

from meshing.cleanup import clean_mesh
from meshing.decimate import decimate_geometry
from meshing.errors import MeshingError
from meshing.metrics import sample_surface, seam_color_difference, surface_colors
from meshing.texture import bake_texture, rasterize, textured_mesh, unwrap


def test_rasterize_covers_texel_centres_inside_the_triangle() -> None:
    tri = np.array([[[0.0, 0.0], [64.0, 0.0], [0.0, 64.0]]])
    face, bary = rasterize(tri, 64, 64)
    covered = face >= 0
    # texel (x, y) is covered iff its centre (x + .5, y + .5) satisfies x + y + 1 <= 64
    yy, xx = np.mgrid[0:64, 0:64]
    np.testing.assert_array_equal(covered, xx + yy + 1 <= 64)
    # the barycentric weights give back the centre
    pts = np.einsum("hwc,cd->hwd", bary, tri[0])
    np.testing.assert_allclose(pts[covered], np.stack([xx + 0.5, yy + 0.5], -1)[covered], atol=1e-4)


def test_unwrap_refuses_dense_meshes() -> None:
    with pytest.raises(MeshingError) as err:
        unwrap(trimesh.creation.icosphere(4), max_faces=1000)
    assert err.value.reason == "too_dense"


@pytest.fixture(scope="module")
def baked_sphere() -> tuple[trimesh.Trimesh, object]:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    atlas = unwrap(sphere, resolution=512, tile_faces=600)
    return sphere, atlas


def test_baked_texture_reproduces_the_colour_function(baked_sphere) -> None:  # noqa: ANN001
    sphere, atlas = baked_sphere
    assert atlas.chart_count > 1  # the sphere needs seams, and tiles add some
    baked = bake_texture(sphere, atlas, smooth_color, size=512)
    tm = textured_mesh(sphere, atlas, baked.image)
    pts, face = sample_surface(tm, 20_000, seed=1)
    got = surface_colors(tm, pts, face)
    err = np.abs(got - smooth_color(pts)) * 255
    assert err.mean() < 0.6 and np.percentile(err, 99) < 2.5, (err.mean(), np.percentile(err, 99))
    assert baked.queried < 0.6 * (baked.image.shape[0] * baked.image.shape[1])  # the grid saves queries


def test_gutter_dilation_removes_seams(baked_sphere) -> None:  # noqa: ANN001
    sphere, atlas = baked_sphere
    baked = bake_texture(sphere, atlas, smooth_color, size=512)
    seams = seam_color_difference(textured_mesh(sphere, atlas, baked.image))
    assert seams["seam_edges"] > 50
    assert seams["mean_abs"] < 1.0 and seams["p95_abs"] < 3.0, seams
    # the same texture with its gutter left black shows the seams the check is there to catch
    raw = bake_texture(sphere, atlas, smooth_color, size=512, seam_px=0)
    covered = rasterize((atlas.uv * 512)[atlas.faces], 512, 512)[0][::-1] >= 0
    holes = raw.image.copy()
    holes[~covered] = 0
    bad = seam_color_difference(textured_mesh(sphere, atlas, holes))
    assert bad["mean_abs"] > 5 * max(seams["mean_abs"], 1.0), (bad, seams)


def test_unwrap_keeps_every_face_of_the_real_mesh(flor: trimesh.Trimesh) -> None:
    # xatlas, given the model in its own units, collapses hundreds of the small faces of a 50k-face
    # decimation to one atlas point (they would take a gutter's colour); the unwrap must keep them all
    low = decimate_geometry(clean_mesh(flor)[0], 50_000)
    atlas = unwrap(low, resolution=2048)
    uv = atlas.uv[atlas.faces]
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) / 2
    assert (area > 0).sum() >= len(area) - 3, (area == 0).sum()
