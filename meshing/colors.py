"""Colour on surfaces: closest-point + barycentric transfer from a source mesh, or a field query.

The field is any callable `field_color(points) -> colours` taking (n, 3) float32 points in the
official TripoSR z-up frame and returning (n, 3) floats in [0, 1]; the model is never imported here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from meshing.cleanup import vertex_colors_of
from meshing.errors import MeshingError

FieldColor = Callable[[np.ndarray], np.ndarray]


def closest_barycentric(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric coordinates of the point of each triangle closest to each point.

    The Voronoi-region test of Ericson (Real-Time Collision Detection, 5.1.5), vectorised over
    pairs: vertex, edge or interior region, then the projection onto that feature.

    Parameters
    ----------
    triangles
        (n, 3, 3) corners.
    points
        (n, 3) query points, one per triangle.

    Returns
    -------
    (n, 3) float weights (non-negative, summing to 1).
    """
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    ab, ac = b - a, c - a
    ap, bp, cp = points - a, points - b, points - c
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    n = len(points)
    out = np.empty((n, 3), dtype=np.float64)
    denom = va + vb + vc
    denom = np.where(np.abs(denom) > 1e-300, denom, 1e-300)
    out[:, 1], out[:, 2] = vb / denom, vc / denom  # interior
    out[:, 0] = 1.0 - out[:, 1] - out[:, 2]
    done = np.zeros(n, dtype=bool)

    def region(mask: np.ndarray, u: np.ndarray | float, v: np.ndarray | float, w: np.ndarray | float) -> None:
        m = mask & ~done
        for col, val in enumerate((u, v, w)):
            out[m, col] = val[m] if isinstance(val, np.ndarray) else val
        done[m] = True

    with np.errstate(divide="ignore", invalid="ignore"):
        region((d1 <= 0) & (d2 <= 0), 1.0, 0.0, 0.0)  # vertex a
        region((d3 >= 0) & (d4 <= d3), 0.0, 1.0, 0.0)  # vertex b
        t = d1 / (d1 - d3)
        region((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1.0 - t, t, 0.0)  # edge ab
        region((d6 >= 0) & (d5 <= d6), 0.0, 0.0, 1.0)  # vertex c
        t = d2 / (d2 - d6)
        region((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1.0 - t, 0.0, t)  # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        region((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), 0.0, 1.0 - t, t)  # edge bc
    # degenerate triangles can leave non-finite weights: fall back to the nearest corner
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        corner = np.argmin(np.linalg.norm(triangles[bad] - points[bad, None, :], axis=2), axis=1)
        out[bad] = np.eye(3)[corner]
    return out


class SurfaceIndex:
    """Closest-point queries on one triangle mesh (a k-d tree of triangle centroids).

    Candidates for a query point are the `k` triangles with the nearest centroids; the exact
    closest point on each is computed and the nearest kept. On the dense, even meshes that
    marching cubes emits this finds the true closest triangle or a neighbour sharing its edge,
    where positions and interpolated colours agree to well under a texel.

    Parameters
    ----------
    mesh
        The surface, (v, 3) vertices and (f, 3) faces.
    """

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.mesh = mesh
        self.triangles = np.asarray(mesh.triangles, dtype=np.float64)  # (f, 3, 3)
        self.tree = cKDTree(self.triangles.mean(axis=1))

    def closest(
        self, points: np.ndarray, *, k: int = 4
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Closest surface points.

        Parameters
        ----------
        points
            (n, 3) query points.
        k
            Candidate triangles per point.

        Returns
        -------
        closest (n, 3) float, distance (n,) float, triangle (n,) int, barycentric (n, 3) float
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        k = int(max(1, min(k, len(self.triangles))))
        _, cand = self.tree.query(points, k=k, workers=-1)
        cand = np.asarray(cand).reshape(len(points), k)  # (n, k)
        tri = self.triangles[cand.ravel()]  # (n k, 3, 3)
        rep = np.repeat(points, k, axis=0) if k > 1 else points
        bary = closest_barycentric(tri, rep)  # (n k, 3)
        cp = np.einsum("nc,ncd->nd", bary, tri).reshape(len(points), k, 3)
        d2 = ((cp - points[:, None, :]) ** 2).sum(axis=-1)  # (n, k)
        best = np.argmin(d2, axis=1)
        rows = np.arange(len(points))
        return (
            cp[rows, best],
            np.sqrt(d2[rows, best]),
            cand[rows, best],
            bary.reshape(len(points), k, 3)[rows, best],
        )


def interpolate_vertex_colors(mesh: trimesh.Trimesh, triangle: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of the mesh's vertex colours.

    Parameters
    ----------
    mesh
        Mesh with per-vertex colours.
    triangle
        (n,) face index per point.
    bary
        (n, 3) barycentric weights per point.

    Returns
    -------
    (n, 3) float in [0, 1]
    """
    colors = vertex_colors_of(mesh)
    if colors is None:
        raise MeshingError("bad_input", "source mesh has no vertex colours to transfer")
    rgb = colors[:, :3].astype(np.float64) / 255.0
    corner = rgb[mesh.faces[triangle]]  # (n, 3 corners, 3 rgb)
    return np.einsum("nc,ncr->nr", bary, corner)


def transfer_colors(source: trimesh.Trimesh | SurfaceIndex, points: np.ndarray, *, k: int = 4) -> np.ndarray:
    """Colours of the source surface at the points closest to `points`.

    Parameters
    ----------
    source
        Mesh with vertex colours (or a prepared `SurfaceIndex` of one, to reuse its tree).
    points
        (n, 3) query points in the source's frame.
    k
        Candidate triangles per point (see `SurfaceIndex`).

    Returns
    -------
    (n, 3) float in [0, 1]
    """
    index = source if isinstance(source, SurfaceIndex) else SurfaceIndex(source)
    _, _, triangle, bary = index.closest(points, k=k)
    return interpolate_vertex_colors(index.mesh, triangle, bary)


def query_field(field_color: FieldColor, points: np.ndarray, *, chunk: int = 262_144) -> np.ndarray:
    """Call the field in chunks and check what it returns.

    Parameters
    ----------
    field_color
        `(m, 3) float32 points (official z-up frame) -> (m, 3) float in [0, 1]`.
    points
        (n, 3) points in the official frame.

    Returns
    -------
    (n, 3) float64 in [0, 1]

    Raises
    ------
    MeshingError
        reason `bad_field` when the callable returns the wrong shape or non-finite values.
    """
    points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    out = np.empty((len(points), 3), dtype=np.float64)
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk]
        got = np.asarray(field_color(part), dtype=np.float64)
        if got.shape != (len(part), 3):
            raise MeshingError(
                "bad_field",
                f"field_color returned shape {got.shape} for {len(part)} points, expected ({len(part)}, 3)",
            )
        if not np.isfinite(got).all():
            raise MeshingError("bad_field", "field_color returned NaN or infinite colours")
        out[start : start + len(part)] = got
    return np.clip(out, 0.0, 1.0)


def sample_colors(
    points: np.ndarray,
    *,
    source: trimesh.Trimesh | SurfaceIndex | None = None,
    field_color: FieldColor | None = None,
    k: int = 4,
) -> np.ndarray:
    """Colours at points: from the field when given, otherwise transferred from `source`.

    Parameters
    ----------
    points
        (n, 3) points in the official z-up frame.

    Returns
    -------
    (n, 3) float in [0, 1]
    """
    if field_color is not None:
        return query_field(field_color, points)
    if source is None:
        raise MeshingError(
            "bad_input", "colour sampling needs a source mesh with vertex colours or a field_color"
        )
    return transfer_colors(source, points, k=k)


def to_rgba8(rgb: np.ndarray) -> np.ndarray:
    """(n, 3) float in [0, 1] -> (n, 4) uint8 with opaque alpha."""
    out = np.empty((len(rgb), 4), dtype=np.uint8)
    out[:, :3] = np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
    out[:, 3] = 255
    return out
