from __future__ import annotations

import numpy as np
import pytest
import trimesh
from mesh_helpers import colored_sphere, smooth_color

from meshing.cleanup import clean_mesh
from meshing.colors import SurfaceIndex, closest_barycentric, query_field, transfer_colors
from meshing.decimate import decimate
from meshing.errors import MeshingError
from meshing.metrics import color_error


def test_transfer_interpolates_barycentrically() -> None:
    # one triangle, red / green / blue corners: the colour at a point is its barycentric mix
    tri = trimesh.Trimesh(
        vertices=[[0, 0, 0], [1, 0, 0], [0, 1, 0]],
        faces=[[0, 1, 2]],
        vertex_colors=[[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]],
        process=False,
    )
    pts = np.array([[0.2, 0.3, 0.05], [0.6, 0.2, -0.1], [1.0, 1.0, 0.0]])
    rgb = transfer_colors(tri, pts)
    np.testing.assert_allclose(rgb[0], [0.5, 0.2, 0.3], atol=1e-9)
    np.testing.assert_allclose(rgb[1], [0.2, 0.6, 0.2], atol=1e-9)
    np.testing.assert_allclose(rgb[2], [0.0, 0.5, 0.5], atol=1e-9)  # closest point is the edge midpoint


def test_closest_point_finds_the_surface() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(500, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    closest, dist, _, bary = SurfaceIndex(sphere).closest(dirs * 1.05, k=4)
    assert np.all(np.abs(dist - 0.05) < 2e-3)
    np.testing.assert_allclose(bary.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(closest, axis=1), 1.0, atol=2e-3)


def test_decimation_keeps_colours_from_the_source(flor: trimesh.Trimesh) -> None:
    clean, _ = clean_mesh(flor)
    low = decimate(clean, 20_000)
    assert len(low.faces) <= 20_000
    assert low.visual.kind == "vertex" and len(low.visual.vertex_colors) == len(low.vertices)
    err = color_error(low, clean, n_points=20_000)
    assert max(err["mean_abs"]) <= 4.0, err
    # not a flat colour: the flower keeps its contrast
    assert low.visual.vertex_colors[:, :3].std(axis=0).min() > 20


def test_decimation_resamples_from_the_field() -> None:
    sphere = colored_sphere(5)
    calls: list[np.ndarray] = []

    def field(points: np.ndarray) -> np.ndarray:
        calls.append(points)
        return smooth_color(points)

    low = decimate(sphere, 2_000, field_color=field)
    assert calls and all(c.dtype == np.float32 and c.shape[1] == 3 for c in calls)
    got = low.visual.vertex_colors[:, :3].astype(float)
    np.testing.assert_allclose(got, np.rint(smooth_color(low.vertices) * 255), atol=1.0)


@pytest.mark.parametrize("bad", [lambda p: np.zeros((len(p), 4)), lambda p: np.full((len(p), 3), np.nan)])
def test_bad_field_is_refused(bad) -> None:  # noqa: ANN001
    with pytest.raises(MeshingError) as err:
        query_field(bad, np.zeros((10, 3)))
    assert err.value.reason == "bad_field"


def test_mesh_without_colours_needs_a_field() -> None:
    with pytest.raises(MeshingError) as err:
        decimate(trimesh.creation.icosphere(3), 100)
    assert err.value.reason == "bad_input"


def test_closest_barycentric_matches_a_dense_search() -> None:
    rng = np.random.default_rng(0)
    tris = rng.normal(size=(300, 3, 3))
    pts = rng.normal(size=(300, 3)) * 2.0  # many fall in vertex and edge regions
    bary = closest_barycentric(tris, pts)
    assert (bary >= -1e-12).all()
    np.testing.assert_allclose(bary.sum(axis=1), 1.0)
    own = np.linalg.norm(np.einsum("nc,ncd->nd", bary, tris) - pts, axis=1)
    # dense barycentric grid over each triangle
    g = np.linspace(0, 1, 121)
    u, v = np.meshgrid(g, g)
    keep = u + v <= 1
    grid = np.stack([1 - u[keep] - v[keep], u[keep], v[keep]], axis=1)  # (m, 3)
    dense = np.einsum("mc,ncd->nmd", grid, tris)
    best = np.linalg.norm(dense - pts[:, None, :], axis=2).min(axis=1)
    assert (own <= best + 1e-12).all()  # never worse than any grid point
    assert (best - own).max() < 0.05  # and the grid gets close to it
