"""Quality metrics as pure functions returning plain dicts (JSON-ready).

Geometry and file statistics, Chamfer distance and F-score (the protocol is in docs/metrics.md),
normal consistency, silhouette IoU and masked PSNR against the input view, colour error against
a source surface, and colour differences across texture seams. Reused by the model evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from meshing.cleanup import vertex_colors_of
from meshing.colors import SurfaceIndex, transfer_colors
from meshing.errors import MeshingError

Normalize = Literal["none", "unit_cube"]
Align = Literal["none", "rotate_icp"]


TOPOLOGY_BASIS = "welded_by_position"
WELD_TOLERANCE = 1e-7  # share of the bounding-box diagonal


def weld_by_position(
    vertices: np.ndarray, faces: np.ndarray, *, tolerance: float = WELD_TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Faces re-indexed so that vertices at the same position are one vertex.

    A texture atlas splits the surface along its UV seams (one vertex per chart at the same
    position); welding by position alone gives back the surface a customer sees. Positions are
    snapped to a grid of `tolerance` times the bounding-box diagonal, so exact copies always
    weld and nearly coincident vertices usually do.

    Parameters
    ----------
    vertices
        (v, 3) float positions.
    faces
        (f, 3) int vertex indices.
    tolerance
        Grid step as a share of the bounding-box diagonal.

    Returns
    -------
    welded_vertices, welded_faces
        (w, 3) float positions (one per distinct position) and (f, 3) int faces into them.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(v) == 0:
        return v, f
    lo, hi = v.min(axis=0), v.max(axis=0)
    step = max(float(np.linalg.norm(hi - lo)) * tolerance, np.finfo(np.float64).tiny)
    key = np.rint((v - lo) / step).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return v[first], inverse.ravel()[f]


def topology_stats(mesh: trimesh.Trimesh, *, tolerance: float = WELD_TOLERANCE) -> dict[str, Any]:
    """Components, open and non-manifold edges of the surface welded by position.

    Counts are taken on `weld_by_position` of the mesh, so UV seams of a texture atlas are
    neither holes nor cuts. An edge is an unordered pair of welded vertices; a face touching
    only one welded vertex twice (collapsed by the weld) is ignored.

    Returns
    -------
    dict
        `topology_basis` (`welded_by_position`), `welded_vertices`, `components` (faces
        connected through shared edges, whatever the number of faces on the edge),
        `boundary_edges` (edges of one face), `non_manifold_edges` (edges of three or more
        faces), `watertight` (no boundary and no non-manifold edge), `winding_consistent`
        (every two-face edge is traversed in opposite directions by its faces).
    """
    verts, faces = weld_by_position(mesh.vertices, mesh.faces, tolerance=tolerance)
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    faces = faces[ok]
    out: dict[str, Any] = {"topology_basis": TOPOLOGY_BASIS, "welded_vertices": int(len(verts))}
    if len(faces) == 0:
        out.update(
            components=0, boundary_edges=0, non_manifold_edges=0, watertight=False, winding_consistent=True
        )
        return out
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3f, 2)
    undirected = np.sort(directed, axis=1)
    _, edge_id, count = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    edge_id = edge_id.ravel()
    face_of = np.tile(np.arange(len(faces)), 3)
    # faces joined through the edges they share (bipartite face-edge graph, squared)
    incidence = coo_matrix(
        (np.ones(len(edge_id)), (face_of, edge_id)), shape=(len(faces), len(count))
    ).tocsr()
    n_components, _ = connected_components(incidence @ incidence.T, directed=False)
    # a two-face edge is consistently wound when its two traversals run in opposite directions
    forward = directed[:, 0] < directed[:, 1]
    two = count[edge_id] == 2
    fwd_per_edge = np.bincount(edge_id[two], weights=forward[two].astype(np.float64), minlength=len(count))
    winding_ok = bool(np.all(fwd_per_edge[count == 2] == 1))
    boundary = int((count == 1).sum())
    non_manifold = int((count > 2).sum())
    out.update(
        components=int(n_components),
        boundary_edges=boundary,
        non_manifold_edges=non_manifold,
        watertight=boundary == 0 and non_manifold == 0,
        winding_consistent=winding_ok,
    )
    return out


def mesh_stats(mesh: trimesh.Trimesh) -> dict[str, Any]:
    """Counts and measures of one mesh (units as the mesh's: metres for assets).

    Topology (components, boundary and non-manifold edges, watertight, winding) is measured on
    the mesh welded by position (`topology_stats`): a textured mesh split along its UV seams
    counts like the surface it shows. `vertices` is the stored count (seam copies included).

    Returns
    -------
    dict with vertices, welded_vertices, faces, topology_basis, components, boundary_edges,
    non_manifold_edges, watertight, winding_consistent, surface_area, volume (None unless
    watertight), bbox_min, bbox_max, bbox_size.
    """
    topo = topology_stats(mesh)
    lo, hi = np.asarray(mesh.bounds, dtype=np.float64)
    volume = None
    if topo["watertight"]:
        # divergence theorem over the triangles: independent of how vertices are shared
        tri = np.asarray(mesh.triangles, dtype=np.float64)  # (f, 3, 3)
        volume = float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    return {
        "vertices": int(len(mesh.vertices)),
        "welded_vertices": topo["welded_vertices"],
        "faces": int(len(mesh.faces)),
        "topology_basis": topo["topology_basis"],
        "components": topo["components"],
        "watertight": topo["watertight"],
        "winding_consistent": topo["winding_consistent"],
        "boundary_edges": topo["boundary_edges"],
        "non_manifold_edges": topo["non_manifold_edges"],
        "surface_area": float(mesh.area),
        "volume": volume,
        "bbox_min": lo.tolist(),
        "bbox_max": hi.tolist(),
        "bbox_size": (hi - lo).tolist(),
    }


def sample_surface(mesh: trimesh.Trimesh, n_points: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted random surface samples.

    Returns
    -------
    points (n, 3) float, face index (n,) int
    """
    if n_points < 1:
        raise MeshingError("bad_input", f"n_points={n_points}: need at least one sample")
    points, face = trimesh.sample.sample_surface(mesh, int(n_points), seed=int(seed))
    return np.asarray(points, dtype=np.float64), np.asarray(face, dtype=np.int64)


def normalize_unit_cube(points: np.ndarray) -> np.ndarray:
    """Centre the points' bounding box at the origin and scale its longest side to 1."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    side = float((hi - lo).max())
    if side <= 0:
        raise MeshingError("bad_input", "cannot normalise a shape of zero extent")
    return (points - (lo + hi) / 2.0) / side


def _chamfer_terms(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances a->b and b->a."""
    d_ab, _ = cKDTree(b).query(a, k=1, workers=-1)
    d_ba, _ = cKDTree(a).query(b, k=1, workers=-1)
    return d_ab, d_ba


def _rotation_about(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def align_rotate_icp(
    pred: np.ndarray, gt: np.ndarray, *, up_axis: int = 2, steps: int = 24, icp_iterations: int = 30
) -> np.ndarray:
    """Align pred to gt: brute-force rotation about the up axis (lowest Chamfer), then rigid ICP.

    Returns
    -------
    (n, 3) aligned copy of `pred`.
    """
    best, best_cd = pred, np.inf
    for k in range(steps):
        cand = pred @ _rotation_about(up_axis, 2 * np.pi * k / steps).T
        d_ab, d_ba = _chamfer_terms(cand, gt)
        cd = 0.5 * (d_ab.mean() + d_ba.mean())
        if cd < best_cd:
            best, best_cd = cand, cd
    matrix, _, _ = trimesh.registration.icp(
        best, gt, max_iterations=icp_iterations, reflection=False, scale=False
    )
    return trimesh.transform_points(best, matrix)


def chamfer_fscore(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    *,
    n_points: int = 10_000,
    thresholds: Sequence[float] = (0.1, 0.2, 0.5),
    seed: int = 0,
    normalize: Normalize = "none",
    align: Align = "none",
    up_axis: int = 2,
) -> dict[str, Any]:
    """Chamfer distance and F-scores between two surfaces (protocol: docs/metrics.md).

    Both surfaces are sampled with `n_points` area-weighted points (the same seed for both, so
    identical meshes give identical samples). Optionally each cloud is normalised to the unit
    cube (bounding box centred, longest side 1), and pred is aligned to gt by a brute-force
    rotation search about `up_axis` followed by rigid ICP.

    CD = (mean_p min_q |p - q| + mean_q min_p |p - q|) / 2 (Euclidean, not squared).
    F-score at t = 2 P R / (P + R), P = share of pred points within t of gt, R = vice versa.

    Returns
    -------
    dict: chamfer, chamfer_pred_to_gt, chamfer_gt_to_pred, fscore@t, precision@t, recall@t
    (keys with t formatted like `0.1`), n_points, seed, normalize, align.
    """
    if normalize not in ("none", "unit_cube"):
        raise MeshingError("bad_input", f"normalize={normalize!r}: expected 'none' or 'unit_cube'")
    if align not in ("none", "rotate_icp"):
        raise MeshingError("bad_input", f"align={align!r}: expected 'none' or 'rotate_icp'")
    p, _ = sample_surface(pred, n_points, seed=seed)
    g, _ = sample_surface(gt, n_points, seed=seed)
    if normalize == "unit_cube":
        p, g = normalize_unit_cube(p), normalize_unit_cube(g)
    if align == "rotate_icp":
        p = align_rotate_icp(p, g, up_axis=up_axis)
    d_pg, d_gp = _chamfer_terms(p, g)
    out: dict[str, Any] = {
        "chamfer": float(0.5 * (d_pg.mean() + d_gp.mean())),
        "chamfer_pred_to_gt": float(d_pg.mean()),
        "chamfer_gt_to_pred": float(d_gp.mean()),
    }
    for t in thresholds:
        precision = float((d_pg < t).mean())
        recall = float((d_gp < t).mean())
        f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        key = f"{t:g}"
        out[f"fscore@{key}"] = f
        out[f"precision@{key}"] = precision
        out[f"recall@{key}"] = recall
    out.update({"n_points": int(n_points), "seed": int(seed), "normalize": normalize, "align": align})
    return out


def normal_consistency(
    pred: trimesh.Trimesh, gt: trimesh.Trimesh, *, n_points: int = 10_000, seed: int = 0
) -> float:
    """Mean |cos| between each sample's face normal and that of its nearest sample on the other
    surface, averaged over both directions (1 = normals agree everywhere, orientation ignored)."""
    p, fp = sample_surface(pred, n_points, seed=seed)
    g, fg = sample_surface(gt, n_points, seed=seed)
    np_, ng = pred.face_normals[fp], gt.face_normals[fg]
    _, i_pg = cKDTree(g).query(p, k=1, workers=-1)
    _, i_gp = cKDTree(p).query(g, k=1, workers=-1)
    a = np.abs((np_ * ng[i_pg]).sum(axis=1)).mean()
    b = np.abs((ng * np_[i_gp]).sum(axis=1)).mean()
    return float(0.5 * (a + b))


def silhouette_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Intersection over union of two (h, w) boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise MeshingError("bad_input", f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _as_float_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    out = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    return out[..., :3]


def masked_psnr(image_a: np.ndarray, image_b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 1.0) between two RGB images over the pixels where `mask` is true.

    Images are (h, w, 3+) uint8 or floats in [0, 1]. Returns inf for identical pixels.
    """
    a, b = _as_float_image(image_a), _as_float_image(image_b)
    m = np.asarray(mask, dtype=bool)
    if a.shape != b.shape or a.shape[:2] != m.shape:
        raise MeshingError("bad_input", f"image/mask shapes differ: {a.shape}, {b.shape}, {m.shape}")
    if not m.any():
        raise MeshingError("bad_input", "masked PSNR over an empty mask")
    mse = float(((a[m] - b[m]) ** 2).mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup, clamped at the border.

    Parameters
    ----------
    image
        (h, w, 3) uint8, row 0 at the top.
    uv
        (n, 2) coordinates with v up (trimesh / OBJ convention).

    Returns
    -------
    (n, 3) float in [0, 1]
    """
    img = np.asarray(image, dtype=np.float64)[..., :3] / 255.0
    h, w = img.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return (
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x1] * fx * (1 - fy)
        + img[y1, x0] * (1 - fx) * fy
        + img[y1, x1] * fx * fy
    )


def _texture_of(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray] | None:
    visual = mesh.visual
    if getattr(visual, "kind", None) != "texture" or visual.uv is None:
        return None
    material = visual.material
    tex = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if tex is None:
        return None
    return np.asarray(tex.convert("RGB")), np.asarray(visual.uv, dtype=np.float64)


def surface_colors(mesh: trimesh.Trimesh, points: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Colours a viewer shows at surface points: the texture, or interpolated vertex colours.

    Parameters
    ----------
    mesh
        Textured or vertex-coloured mesh.
    points
        (n, 3) points on the surface.
    face
        (n,) the face each point lies on.

    Returns
    -------
    (n, 3) float in [0, 1]
    """
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face], points)
    tex = _texture_of(mesh)
    if tex is not None:
        image, uv = tex
        return sample_texture(image, np.einsum("nc,ncd->nd", bary, uv[mesh.faces[face]]))
    colors = vertex_colors_of(mesh)
    if colors is None:
        raise MeshingError("bad_input", "mesh has neither a base-colour texture nor vertex colours")
    rgb = colors[:, :3].astype(np.float64) / 255.0
    return np.einsum("nc,ncd->nd", bary, rgb[mesh.faces[face]])


def color_error(
    pred: trimesh.Trimesh, source: trimesh.Trimesh | SurfaceIndex, *, n_points: int = 50_000, seed: int = 0
) -> dict[str, Any]:
    """Colour error of `pred` against the source surface, in 0-255 units per channel.

    Points are sampled on `pred` (area-weighted); each gets the colour `pred` shows there
    (texture or vertex colours) and the source's colour at its closest point (barycentric
    interpolation of the source's vertex colours). Both meshes must be in the same frame.

    Returns
    -------
    dict: mean_abs (3,), p95_abs (3,), mean_abs_all, n_points.
    """
    pts, face = sample_surface(pred, n_points, seed=seed)
    got = surface_colors(pred, pts, face)
    ref = transfer_colors(source, pts, k=4)
    diff = np.abs(got - ref) * 255.0
    return {
        "mean_abs": diff.mean(axis=0).tolist(),
        "p95_abs": np.percentile(diff, 95, axis=0).tolist(),
        "mean_abs_all": float(diff.mean()),
        "n_points": int(n_points),
    }


def seam_color_difference(
    mesh: trimesh.Trimesh, *, samples_per_edge: int = 5, digits: int = 6
) -> dict[str, Any]:
    """Colour jump across UV seams of a textured mesh, in 0-255 units.

    A seam edge is a 3D edge shared by two faces whose UVs differ there. Along it, points at
    evenly spaced parameters are looked up in the texture through the UVs of either side
    (bilinear, as a viewer samples); the absolute difference is what a viewer would see as a
    seam line.

    Returns
    -------
    dict: seam_edges, mean_abs, p95_abs, max_abs (over all channels and samples).
    """
    tex = _texture_of(mesh)
    if tex is None:
        raise MeshingError("bad_input", "seam check needs a textured mesh with UVs")
    image, uv = tex
    # weld by position only, so faces of different charts share 3D vertices again
    key = np.round(np.asarray(mesh.vertices) / 10.0 ** (-digits)).astype(np.int64)
    _, weld = np.unique(key, axis=0, return_inverse=True)
    weld = weld.ravel()
    faces = np.asarray(mesh.faces)
    corners = [(0, 1), (1, 2), (2, 0)]
    a = np.concatenate([faces[:, i] for i, _ in corners])
    b = np.concatenate([faces[:, j] for _, j in corners])
    wa, wb = weld[a], weld[b]
    swap = wa > wb
    lo_w, hi_w = np.where(swap, wb, wa), np.where(swap, wa, wb)
    lo_v, hi_v = np.where(swap, b, a), np.where(swap, a, b)  # original vertex at each welded end
    order = np.lexsort((hi_w, lo_w))
    lo_w, hi_w, lo_v, hi_v = lo_w[order], hi_w[order], lo_v[order], hi_v[order]
    same_next = (lo_w[:-1] == lo_w[1:]) & (hi_w[:-1] == hi_w[1:])
    i = np.flatnonzero(same_next)  # pairs (i, i + 1) are the two sides of one 3D edge
    j = i + 1
    seam = (np.abs(uv[lo_v[i]] - uv[lo_v[j]]).max(axis=1) > 1e-9) | (
        np.abs(uv[hi_v[i]] - uv[hi_v[j]]).max(axis=1) > 1e-9
    )
    i, j = i[seam], j[seam]
    if len(i) == 0:
        return {"seam_edges": 0, "mean_abs": 0.0, "p95_abs": 0.0, "max_abs": 0.0}
    t = ((np.arange(samples_per_edge) + 0.5) / samples_per_edge)[None, :, None]  # (1, s, 1)
    side_a = uv[lo_v[i]][:, None] * (1 - t) + uv[hi_v[i]][:, None] * t
    side_b = uv[lo_v[j]][:, None] * (1 - t) + uv[hi_v[j]][:, None] * t
    ca = sample_texture(image, side_a.reshape(-1, 2))
    cb = sample_texture(image, side_b.reshape(-1, 2))
    diff = np.abs(ca - cb) * 255.0
    return {
        "seam_edges": int(len(i)),
        "mean_abs": float(diff.mean()),
        "p95_abs": float(np.percentile(diff, 95)),
        "max_abs": float(diff.max()),
    }
