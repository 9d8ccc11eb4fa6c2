"""Small mesh builders shared by the meshing tests."""

from __future__ import annotations

import numpy as np
import trimesh

from meshing import AssetResult


def colored_sphere(subdivisions: int = 4, radius: float = 0.4) -> trimesh.Trimesh:
    """An icosphere whose vertex colours vary smoothly with position."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    rgb = smooth_color(m.vertices)
    m.visual = trimesh.visual.ColorVisuals(
        m, vertex_colors=np.hstack([np.rint(rgb * 255), np.full((len(rgb), 1), 255)])
    )
    return m


def smooth_color(points: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3) colours in [0, 1], smooth in position."""
    p = np.asarray(points, dtype=np.float64)
    return np.clip(
        0.5 + 0.45 * np.stack([np.sin(4 * p[:, 0]), np.cos(3 * p[:, 1]), np.sin(5 * p[:, 2] + 1)], 1), 0, 1
    )


def channel_result(flor_assets: dict[str, AssetResult], preset: str) -> AssetResult:
    """The build of the `flor_assets` fixture that holds a preset's file (apple and google ride with shopify)."""
    return flor_assets["shopify" if preset in ("apple", "google") else preset]
