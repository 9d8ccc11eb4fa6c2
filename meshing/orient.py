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


def placement_matrix(vertices_official: np.ndarray, *, real_size_m: float | None = None) -> np.ndarray:
    """Rotation to glTF axes, optional scale, then translation onto the floor and the y axis.

    After the transform the bounding box is centred in x and z, its minimum y is 0, and (when
    `real_size_m` is given) its longest side is `real_size_m` metres; otherwise the model's
    units are taken as metres unchanged.

    Parameters
    ----------
    vertices_official
        (n, 3) vertices in the official z-up frame.
    real_size_m
        Longest side of the real object in metres (from the catalogue), or None.

    Returns
    -------
    (4, 4) float transform, official frame -> asset frame.
    """
    v = np.asarray(vertices_official, dtype=np.float64).reshape(-1, 3)
    if len(v) == 0:
        raise MeshingError("empty_mesh", "placement of a mesh without vertices")
    rotated = v @ OFFICIAL_TO_GLTF.T
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    scale = 1.0
    if real_size_m is not None:
        longest = float((hi - lo).max())
        if not np.isfinite(real_size_m) or real_size_m <= 0:
            raise MeshingError("bad_input", f"real_size_m={real_size_m}: must be a positive number of metres")
        if longest <= 0:
            raise MeshingError("bad_input", "mesh has zero extent; cannot scale it to a real size")
        scale = float(real_size_m) / longest
    lo, hi = lo * scale, hi * scale
    shift = np.array([-(lo[0] + hi[0]) / 2.0, -lo[1], -(lo[2] + hi[2]) / 2.0])
    m = np.eye(4)
    m[:3, :3] = OFFICIAL_TO_GLTF * scale
    m[:3, 3] = shift
    return m


def orient_for_gltf(
    mesh: trimesh.Trimesh, *, real_size_m: float | None = None
) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A copy of `mesh` in the asset frame (y-up, front +z, on y = 0, centred in x/z).

    Returns
    -------
    mesh, transform
        The placed copy (visuals kept) and the (4, 4) official -> asset transform.
    """
    m = placement_matrix(mesh.vertices, real_size_m=real_size_m)
    out = mesh.copy()
    out.apply_transform(m)
    return out, m
