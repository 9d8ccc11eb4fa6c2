"""Independent geometry for the dataset checks: triangle rasterisation and the winding number."""

from __future__ import annotations

import cv2
import numpy as np
import trimesh

from training.data.cameras import CameraSpec, project


def raster_mask(mesh: trimesh.Trimesh, camera: CameraSpec, supersample: int = 4) -> np.ndarray:
    """(H, W) bool: pixels whose centre a projected triangle covers, by OpenCV polygon filling.

    Rasterised at `supersample` times the size with sub-pixel coordinates, then each output pixel
    takes the sample at its centre's neighbourhood majority (area coverage >= 0.5).
    """
    uv, depth = project(camera, np.asarray(mesh.vertices))
    assert (depth > 0).all()
    shift = 4  # cv2 fixed-point bits
    k = supersample
    pts = np.round(uv * k * (1 << shift) - 0.5 * (1 << shift)).astype(np.int32)  # pixel centres at integers
    canvas = np.zeros((camera.height * k, camera.width * k), np.uint8)
    tris = pts[np.asarray(mesh.faces)]  # (F, 3, 2)
    for t in tris:  # one convex fill per triangle (fillPoly would apply the even-odd rule to overlaps)
        cv2.fillConvexPoly(canvas, t, 1, lineType=cv2.LINE_8, shift=shift)
    cover = canvas.reshape(camera.height, k, camera.width, k).mean(axis=(1, 3))
    return cover >= 0.5


def winding_number(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Generalised winding number (1 inside a closed outward mesh, 0 outside), van Oosterom-Strackee."""
    tri = np.asarray(mesh.triangles)  # (F, 3, 3)
    out = np.zeros(len(points))
    for start in range(0, len(points), 16):
        p = points[start : start + 16, None, None, :]  # (n, 1, 1, 3)
        r = tri[None] - p  # (n, F, 3, 3)
        a, b, c = r[:, :, 0], r[:, :, 1], r[:, :, 2]
        la, lb, lc = (np.linalg.norm(v, axis=-1) for v in (a, b, c))
        num = np.einsum("nfk,nfk->nf", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("nfk,nfk->nf", a, b) * lc + np.einsum("nfk,nfk->nf", b, c) * la + np.einsum("nfk,nfk->nf", c, a) * lb
        out[start : start + 16] = 2.0 * np.arctan2(num, den).sum(axis=1) / (4 * np.pi)
    return out
