"""Orientation and placement for glTF: official z-up frame -> y-up, front to +z, resting on y = 0.

The official TripoSR frame is z-up with the photographed front facing +x (see FACTS.md). glTF is
y-up, metres, and viewers treat +z as the front. The proper rotation (x, y, z) -> (y, z, x) maps
one onto the other: official +z (up) becomes +y, official +x (front) becomes +z.
"""

from __future__ import annotations

import numpy as np
import trimesh

from meshing.errors import MeshingError

# rows give the new axes: x' = y, y' = z, z' = x
OFFICIAL_TO_GLTF = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def official_to_gltf_matrix() -> np.ndarray:
    """The (4, 4) homogeneous rotation from the official frame to glTF axes."""
    m = np.eye(4)
    m[:3, :3] = OFFICIAL_TO_GLTF
    return m


def gltf_extents(vertices_official: np.ndarray) -> np.ndarray:
    """Bounding-box size of official-frame vertices on the glTF axes.

    Returns
    -------
    (3,) float: width (x), height (y), depth (z) in the model's units.
    """
    v = np.asarray(vertices_official, dtype=np.float64).reshape(-1, 3)
    if len(v) == 0:
        raise MeshingError("empty_mesh", "extent of a mesh without vertices")
    rotated = v @ OFFICIAL_TO_GLTF.T
    return rotated.max(axis=0) - rotated.min(axis=0)


def placement_matrix(vertices_official: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """Rotation to glTF axes, uniform scale, then translation onto the floor and the y axis.

    After the transform the bounding box is centred in x and z and its minimum y is 0; its size
    is the model's times `scale` (see `meshing.scale.fit_scale` for a product's dimensions; 1
    keeps the model's units, taken as metres).

    Parameters
    ----------
    vertices_official
        (n, 3) vertices in the official z-up frame.
    scale
        Uniform factor, model units -> metres.

    Returns
    -------
    (4, 4) float transform, official frame -> asset frame.
    """
    v = np.asarray(vertices_official, dtype=np.float64).reshape(-1, 3)
    if len(v) == 0:
        raise MeshingError("empty_mesh", "placement of a mesh without vertices")
    if not (np.isfinite(scale) and scale > 0):
        raise MeshingError("bad_input", f"scale={scale}: must be a positive finite factor")
    rotated = v @ OFFICIAL_TO_GLTF.T
    lo, hi = rotated.min(axis=0) * scale, rotated.max(axis=0) * scale
    shift = np.array([-(lo[0] + hi[0]) / 2.0, -lo[1], -(lo[2] + hi[2]) / 2.0])
    m = np.eye(4)
    m[:3, :3] = OFFICIAL_TO_GLTF * scale
    m[:3, 3] = shift
    return m


def orient_for_gltf(mesh: trimesh.Trimesh, *, scale: float = 1.0) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A copy of `mesh` in the asset frame (y-up, front +z, on y = 0, centred in x/z), scaled.

    Returns
    -------
    mesh, transform
        The placed copy (visuals kept) and the (4, 4) official -> asset transform.
    """
    m = placement_matrix(mesh.vertices, scale=scale)
    out = mesh.copy()
    out.apply_transform(m)
    return out, m
