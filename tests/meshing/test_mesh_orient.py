from __future__ import annotations

import numpy as np
import pytest
import trimesh

from meshing.errors import MeshingError
from meshing.orient import OFFICIAL_TO_GLTF, orient_for_gltf


def _marker_mesh() -> trimesh.Trimesh:
    """A box in the official frame with a tall spike on top (+z) and a short one at the front (+x)."""
    body = trimesh.creation.box(extents=[0.2, 0.4, 0.3])
    top = trimesh.creation.box(extents=[0.02, 0.02, 0.3])
    top.apply_translation([0, 0, 0.3])
    front = trimesh.creation.box(extents=[0.2, 0.02, 0.02])
    front.apply_translation([0.2, 0, 0])
    return trimesh.util.concatenate([body, top, front])


def test_rotation_is_proper_and_maps_axes() -> None:
    assert np.isclose(np.linalg.det(OFFICIAL_TO_GLTF), 1.0)
    np.testing.assert_array_equal(OFFICIAL_TO_GLTF @ [1, 2, 3], [2, 3, 1])  # (x, y, z) -> (y, z, x)


def test_up_becomes_y_front_becomes_z_and_it_stands_on_the_floor() -> None:
    mesh = _marker_mesh()
    placed, transform = orient_for_gltf(mesh)
    lo, hi = placed.bounds
    assert abs(lo[1]) < 1e-12  # resting on y = 0
    assert abs(lo[0] + hi[0]) < 1e-12 and abs(lo[2] + hi[2]) < 1e-12  # centred in x and z
    top = trimesh.transform_points([[0, 0, 0.45]], transform)[0]
    front = trimesh.transform_points([[0.3, 0, 0]], transform)[0]
    assert np.isclose(top[1], hi[1])  # the top spike is the highest point
    assert np.isclose(front[2], hi[2])  # the front spike points to +z
    np.testing.assert_allclose(placed.extents, mesh.extents[[1, 2, 0]])
    assert placed.volume > 0  # winding kept outward


def test_scale_is_uniform_and_keeps_the_placement() -> None:
    placed, transform = orient_for_gltf(_marker_mesh(), scale=2.5)
    np.testing.assert_allclose(placed.extents, _marker_mesh().extents[[1, 2, 0]] * 2.5)
    assert abs(placed.bounds[0][1]) < 1e-12
    assert abs(placed.bounds[0][0] + placed.bounds[1][0]) < 1e-12
    assert np.isclose(abs(np.linalg.det(transform[:3, :3])) ** (1 / 3), 2.5)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_bad_scale(scale: float) -> None:
    with pytest.raises(MeshingError) as err:
        orient_for_gltf(_marker_mesh(), scale=scale)
    assert err.value.reason == "bad_input"
