"""Cameras of the synthetic data and the rays the training renders along.

Conventions (FACTS.md): world z up; OpenGL cameras (they look down their -z axis, +y is image up);
a camera is stored as its camera-to-world matrix `c2w` (4, 4), its vertical field of view and its
image size; the focal length is f = 0.5 H / tan(fovy / 2). Pixel (row i, column j) has its centre at
(j + 0.5, i + 0.5), row 0 at the top.

* The conditioning camera is the photo's: on +x at distance 1.9 looking at the origin, image right
  = +y, image up = +z, fovy 32.5 deg (`INPUT_DISTANCE`, `INPUT_FOVY_DEG`).
* Supervision cameras orbit the origin: azimuth a, elevation e, distance d at
  d (cos e cos a, cos e sin a, sin e), up +z, fovy 40 deg by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

INPUT_DISTANCE = 1.9
INPUT_FOVY_DEG = 32.5
VIEW_DISTANCE = 1.9
VIEW_FOVY_DEG = 40.0
FOREGROUND_RATIO = 0.85


@dataclass(frozen=True)
class CameraSpec:
    """One pinhole camera: c2w (4, 4) OpenGL camera-to-world, vertical fov, image size."""

    c2w: tuple[tuple[float, ...], ...]
    fovy_deg: float
    width: int
    height: int

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.c2w, dtype=np.float64)

    @property
    def focal(self) -> float:
        return 0.5 * self.height / math.tan(math.radians(self.fovy_deg) / 2.0)

    @property
    def eye(self) -> np.ndarray:
        return self.matrix[:3, 3]

    def to_json(self) -> dict[str, Any]:
        return {"c2w": [list(r) for r in self.c2w], "fovy_deg": self.fovy_deg, "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CameraSpec:
        return cls(tuple(tuple(float(v) for v in r) for r in data["c2w"]), float(data["fovy_deg"]), int(data["width"]), int(data["height"]))


def look_at(eye: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world for a camera at `eye` looking at `target` (default the origin), z up:
    the inverse of `meshing.preview.Camera.view_matrix`, the renderer's own look-at."""
    from meshing.preview import Camera

    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    view = Camera(eye=tuple(np.asarray(eye, dtype=np.float64)), target=tuple(target), up=tuple(up)).view_matrix()
    c2w = np.eye(4)
    c2w[:3, :3] = view[:3, :3].T  # rigid: the inverse rotation is the transpose
    c2w[:3, 3] = -view[:3, :3].T @ view[:3, 3]
    return c2w


def orbit_camera(azimuth_deg: float, elevation_deg: float, *, distance: float = VIEW_DISTANCE,
                 fovy_deg: float = VIEW_FOVY_DEG, size: int = 128) -> CameraSpec:
    """A camera on the sphere of `distance` (FACTS.md convention), looking at the origin, z up."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = distance * np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    c2w = look_at(eye)
    return CameraSpec(tuple(tuple(float(v) for v in r) for r in c2w), float(fovy_deg), size, size)


def input_camera(size: int = 512) -> CameraSpec:
    """The conditioning (photo) camera: +x, distance 1.9, fovy 32.5 deg."""
    return orbit_camera(0.0, 0.0, distance=INPUT_DISTANCE, fovy_deg=INPUT_FOVY_DEG, size=size)


def project(camera: CameraSpec, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> pixel coordinates (N, 2) as (column, row) floats, and depth (N,)."""
    w2c = np.linalg.inv(camera.matrix)
    pc = points @ w2c[:3, :3].T + w2c[:3, 3]  # (N, 3) camera frame, looking down -z
    depth = -pc[:, 2]
    f = camera.focal
    col = camera.width / 2.0 + f * pc[:, 0] / depth
    row = camera.height / 2.0 - f * pc[:, 1] / depth
    return np.stack([col, row], axis=-1), depth


def camera_rays(c2w: torch.Tensor, fovy_deg: torch.Tensor | float, height: int, width: int,
                rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays through pixel centres.

    Parameters
    ----------
    c2w : (4, 4) float camera-to-world (OpenGL)
    fovy_deg : vertical field of view
    height, width : image size
    rows, cols : (N,) integer pixel indices; all pixels (row-major) when omitted

    Returns
    -------
    rays_o (N, 3), rays_d (N, 3) unit directions; N = height * width when all pixels
    """
    dev, dt = c2w.device, c2w.dtype
    if rows is None or cols is None:
        rr, cc = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij")
        rows, cols = rr.reshape(-1), cc.reshape(-1)
    f = 0.5 * height / torch.tan(torch.deg2rad(torch.as_tensor(fovy_deg, dtype=dt, device=dev)) / 2.0)
    x = (cols.to(dt) + 0.5 - width / 2.0) / f
    y = -(rows.to(dt) + 0.5 - height / 2.0) / f
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (N, 3)
    d = d_cam @ c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[:3, 3].expand_as(d)
    return o.contiguous(), d
