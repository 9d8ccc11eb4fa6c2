"""Decimation to a face budget (fast-simplification's quadric collapse), colours re-sampled."""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh

from meshing.cleanup import check_mesh, vertex_colors_of
from meshing.colors import FieldColor, SurfaceIndex, sample_colors, to_rgba8
from meshing.errors import MeshingError


def decimate_geometry(
    mesh: trimesh.Trimesh, target_faces: int, *, aggressiveness: float = 7.0
) -> trimesh.Trimesh:
    """Quadric-error decimation of the geometry alone (no colours).

    Parameters
    ----------
    mesh
        (v, 3) vertices, (f, 3) faces.
    target_faces
        Face budget; a mesh already within it is returned as a copy.
    aggressiveness
        fast-simplification's `agg` (higher is faster and coarser).

    Returns
    -------
    trimesh.Trimesh
        At most `target_faces` faces, degenerate faces dropped, winding kept.
    """
    mesh = check_mesh(mesh)
    if target_faces < 4:
        raise MeshingError("bad_input", f"target_faces={target_faces}: need at least 4")
    if len(mesh.faces) <= target_faces:
        return trimesh.Trimesh(vertices=mesh.vertices.copy(), faces=mesh.faces.copy(), process=False)
    points, faces = fast_simplification.simplify(
        np.asarray(mesh.vertices, dtype=np.float32),
        np.asarray(mesh.faces, dtype=np.int32),
        target_count=int(target_faces),
        agg=aggressiveness,
    )
    out = trimesh.Trimesh(vertices=np.asarray(points, dtype=np.float64), faces=faces, process=False)
    out.update_faces(out.nondegenerate_faces())
    out.remove_unreferenced_vertices()
    if len(out.faces) == 0:
        raise MeshingError("empty_mesh", f"decimation to {target_faces} faces left no faces")
    return out


def decimate(
    mesh: trimesh.Trimesh,
    target_faces: int,
    *,
    field_color: FieldColor | None = None,
    source_index: SurfaceIndex | None = None,
    aggressiveness: float = 7.0,
) -> trimesh.Trimesh:
    """Decimate, then re-sample vertex colours (never dropped).

    Colours come from `field_color` at the new vertices when it is given; otherwise they are
    transferred from the input surface (closest point + barycentric).

    Parameters
    ----------
    mesh
        Input with vertex colours (required unless `field_color` is given).
    target_faces
        Face budget.
    field_color
        Optional field query in the mesh's frame (the official z-up frame).
    source_index
        A prepared `SurfaceIndex` of `mesh`, to reuse.

    Returns
    -------
    trimesh.Trimesh with (v', 4) uint8 vertex colours.
    """
    mesh = check_mesh(mesh)
    if field_color is None and vertex_colors_of(mesh) is None:
        raise MeshingError("bad_input", "mesh has no vertex colours and no field_color was given")
    out = decimate_geometry(mesh, target_faces, aggressiveness=aggressiveness)
    source = source_index if source_index is not None else (None if field_color else SurfaceIndex(mesh))
    rgb = sample_colors(out.vertices, source=source, field_color=field_color)
    out.visual = trimesh.visual.ColorVisuals(out, vertex_colors=to_rgba8(rgb))
    return out
