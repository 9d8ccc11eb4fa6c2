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
from scipy.spatial import cKDTree

from meshing.cleanup import vertex_colors_of
from meshing.colors import SurfaceIndex, transfer_colors
from meshing.errors import MeshingError

Normalize = Literal["none", "unit_cube"]
Align = Literal["none", "rotate_icp"]


def mesh_stats(mesh: trimesh.Trimesh) -> dict[str, Any]:
    """Counts and measures of one mesh (units as the mesh's: metres for assets).

    Returns
    -------
    dict with vertices, faces, components, watertight, winding_consistent, boundary_edges,
    surface_area, volume (None unless watertight), bbox_min, bbox_max, bbox_size.
    """
    boundary = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    watertight = bool(mesh.is_watertight)
    lo, hi = np.asarray(mesh.bounds, dtype=np.float64)
    return {
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "components": int(labels.max() + 1) if len(labels) else 0,
        "watertight": watertight,
        "winding_consistent": bool(mesh.is_winding_consistent),
        "boundary_edges": int(len(boundary)),
        "surface_area": float(mesh.area),
        "volume": float(abs(mesh.volume)) if watertight else None,
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
