"""Mesh clean-up: welding, degenerate and duplicate faces, floaters, winding and normals, small holes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import trimesh

from meshing.errors import MeshingError


@dataclass(frozen=True)
class CleanupReport:
    """What `clean_mesh` changed (counts are of the input and of the result)."""

    vertices_in: int
    faces_in: int
    vertices_out: int
    faces_out: int
    merged_vertices: int
    degenerate_faces: int
    duplicate_faces: int
    components_in: int
    components_removed: int
    area_removed_share: float
    holes_filled: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def vertex_colors_of(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """The mesh's per-vertex RGBA colours, or None when it has none.

    Returns
    -------
    (n, 4) uint8 or None
    """
    visual = mesh.visual
    if visual is None or getattr(visual, "kind", None) != "vertex":
        return None
    colors = np.asarray(visual.vertex_colors)
    if colors.shape != (len(mesh.vertices), 4):
        return None
    return colors


def check_mesh(mesh: object, *, item: str = "mesh") -> trimesh.Trimesh:
    """Refuse anything that is not a non-empty, finite triangle mesh.

    Raises
    ------
    MeshingError
        reason `bad_input` (wrong type, NaN or infinite coordinates) or `empty_mesh`.
    """
    if isinstance(mesh, trimesh.Scene):
        geoms = [g for g in mesh.geometry.values() if isinstance(g, trimesh.Trimesh)]
        if len(geoms) != 1:
            raise MeshingError("bad_input", f"{item}: a scene with {len(geoms)} meshes, expected exactly one")
        mesh = geoms[0]
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshingError("bad_input", f"{item}: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise MeshingError("empty_mesh", f"{item}: has no faces")
    if not np.isfinite(mesh.vertices).all():
        raise MeshingError("bad_input", f"{item}: vertex coordinates contain NaN or infinity")
    return mesh


def fill_small_holes(mesh: trimesh.Trimesh, max_hole_edges: int) -> tuple[trimesh.Trimesh, int]:
    """Close boundary loops of at most `max_hole_edges` edges.

    A loop of three edges gets one triangle; a longer one a fan around a new vertex at the
    loop's centroid (coloured with the loop's mean colour). The new faces follow the winding
    of their neighbours. Open borders longer than the limit (the rim of a cup) stay open.

    Parameters
    ----------
    mesh
        Mesh with consistent winding (run after welding).
    max_hole_edges
        Largest loop, in edges, that is closed.

    Returns
    -------
    mesh, holes_filled
        A new mesh (the input is not changed) and how many loops were closed.
    """
    edges = mesh.edges  # (3f, 2) directed as in the faces
    boundary = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    if len(boundary) == 0:
        return mesh.copy(), 0
    nxt: dict[int, int] = {}
    for a, b in edges[boundary]:
        if a in nxt:  # a non-manifold boundary vertex: loops through it are ambiguous
            nxt[a] = -1
        else:
            nxt[int(a)] = int(b)
    seen: set[int] = set()
    loops: list[list[int]] = []
    for start in list(nxt):
        if start in seen or nxt[start] < 0:
            continue
        loop = [start]
        seen.add(start)
        v = nxt[start]
        ok = True
        while v != start:
            if v in seen or nxt.get(v, -1) < 0 or len(loop) > max_hole_edges:
                ok = False
                break
            loop.append(v)
            seen.add(v)
            v = nxt[v]
        if ok and 3 <= len(loop) <= max_hole_edges:
            loops.append(loop)
    if not loops:
        return mesh.copy(), 0
    vertices = [np.asarray(mesh.vertices)]
    faces = [np.asarray(mesh.faces)]
    colors = vertex_colors_of(mesh)
    new_colors = [colors] if colors is not None else []
    n = len(mesh.vertices)
    for loop in loops:
        ring = np.asarray(loop)
        if len(ring) == 3:  # boundary a->b belongs to a face; the cap uses b->a
            faces.append(ring[::-1][None, :])
            continue
        vertices.append(mesh.vertices[ring].mean(axis=0, keepdims=True))
        if colors is not None:
            new_colors.append(colors[ring].mean(axis=0, keepdims=True).round().astype(np.uint8))
        nb = np.roll(ring, -1)
        faces.append(np.stack([nb, ring, np.full_like(ring, n)], axis=1))
        n += 1
    out = trimesh.Trimesh(
        vertices=np.concatenate(vertices),
        faces=np.concatenate(faces),
        vertex_colors=np.concatenate(new_colors) if colors is not None else None,
        process=False,
    )
    return out, len(loops)


def clean_mesh(
    mesh: trimesh.Trimesh,
    *,
    min_component_share: float = 0.01,
    fill_holes: bool = False,
    max_hole_edges: int = 32,
) -> tuple[trimesh.Trimesh, CleanupReport]:
    """Weld, drop bad faces and floaters, make winding consistent and outward.

    Parameters
    ----------
    mesh
        Input triangle mesh, (n, 3) vertices and (f, 3) faces, optional vertex colours.
        It is not modified.
    min_component_share
        Connected components whose surface area is below this share of the total are
        removed as floaters (the largest component always stays). 0 keeps all.
    fill_holes
        Close boundary loops of at most `max_hole_edges` edges.
    max_hole_edges
        Size limit for `fill_holes`.

    Returns
    -------
    mesh, report
        The cleaned mesh (vertex colours kept) and what was changed.

    Raises
    ------
    MeshingError
        `bad_input` / `empty_mesh` for an unusable mesh or share outside [0, 1).
    """
    mesh = check_mesh(mesh)
    if not 0.0 <= min_component_share < 1.0:
        raise MeshingError("bad_input", f"min_component_share={min_component_share}: must be in [0, 1)")
    v_in, f_in = len(mesh.vertices), len(mesh.faces)
    out = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces),
        vertex_colors=vertex_colors_of(mesh),
        process=False,
    )
    # weld coincident vertices (marching cubes emits them on shared edges)
    out.merge_vertices(merge_tex=True, merge_norm=True)
    merged = v_in - len(out.vertices)
    # degenerate faces: repeated index or zero area; then exact duplicates (any order)
    nondegenerate = out.nondegenerate_faces()
    degenerate = int((~nondegenerate).sum())
    out.update_faces(nondegenerate)
    unique = out.unique_faces()
    duplicate = int(len(out.faces) - unique.sum())
    out.update_faces(unique)
    out.remove_unreferenced_vertices()
    if len(out.faces) == 0:
        raise MeshingError("empty_mesh", "mesh: no faces left after removing degenerate faces")
    # floaters: components by shared edges, measured by area
    labels = trimesh.graph.connected_component_labels(out.face_adjacency, node_count=len(out.faces))
    area = np.bincount(labels, weights=out.area_faces)
    total = float(area.sum())
    keep_comp = area >= min_component_share * total
    keep_comp[int(np.argmax(area))] = True
    removed_share = float(area[~keep_comp].sum() / total) if total > 0 else 0.0
    if not keep_comp.all():
        out.update_faces(keep_comp[labels])
        out.remove_unreferenced_vertices()
    holes = 0
    if fill_holes:
        out, holes = fill_small_holes(out, max_hole_edges)
    # consistent winding per body, then flip bodies whose signed volume is negative
    trimesh.repair.fix_normals(out, multibody=True)
    out._cache.clear()
    report = CleanupReport(
        vertices_in=v_in,
        faces_in=f_in,
        vertices_out=len(out.vertices),
        faces_out=len(out.faces),
        merged_vertices=merged,
        degenerate_faces=degenerate,
        duplicate_faces=duplicate,
        components_in=len(area),
        components_removed=int((~keep_comp).sum()),
        area_removed_share=removed_share,
        holes_filled=holes,
    )
    return out, report
