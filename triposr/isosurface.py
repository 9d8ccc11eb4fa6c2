"""Isosurface: the density grid of a field and its marching-cubes mesh (PyMCubes).

The extraction grid is the official one: `R` points per axis at `linspace(0, 1, R)` scaled to
[-radius, radius], index order [x, y, z]; the surface is the level set density = threshold, faces
wound outward.

Two ways to fill the grid:

* `dense_density_grid` queries every point (R^3 queries), in chunks;
* `sparse_density_grid` goes coarse to fine: it queries a coarse lattice, keeps only blocks whose
  corners come near the threshold (a band around it, then one block of dilation as a safety margin
  for thin parts), and refines those down to full resolution. Points it never queried lie in blocks
  whose corners are all on one side of the level set; they are filled with a value on that side, so
  marching cubes on the filled grid gives the mesh of the dense grid wherever the surface was found.
  The band is multiplicative (density is exp of the network output, so a factor is a fixed step of
  the raw output) and widens with the block size, since more can hide between distant corners.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mcubes
import numpy as np
import torch
from scipy import ndimage

DensityFn = Callable[[torch.Tensor], torch.Tensor]
"""A field: world points (N, 3) float -> activated density (N,) float."""


@dataclass(frozen=True)
class IsosurfaceConfig:
    """Options of the extraction; the defaults are the official ones where the official code has any."""

    resolution: int = 256
    threshold: float = 25.0
    chunk_size: int = 1 << 18  # grid points handed to the field at a time (it may tile them further)
    coarse_stride: int = 8  # power of two; the first lattice of the sparse method
    band: float = 4.0  # a block of stride s is refined when its corners reach threshold / band**(s/2) .. threshold * band**(s/2)
    dilation: int = 1  # blocks of safety margin around every refined block, at every level


@dataclass
class GridResult:
    """A filled density grid and how it was obtained."""

    density: np.ndarray  # (R, R, R) float32, index order [x, y, z]
    queries: int
    method: str
    levels: list[dict[str, int]] = field(default_factory=list)
    # grid index box [lo, hi) outside which no cell can hold the surface (None: the whole grid)
    box: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None


def grid_axis(resolution: int, radius: float, device: torch.device | str | None = None) -> torch.Tensor:
    """(R,) world coordinates of the grid along one axis: linspace(0, 1, R) scaled to [-radius, radius]."""
    return torch.linspace(0.0, 1.0, resolution, device=device) * (2.0 * radius) - radius


def _evaluate(fn: DensityFn, idx: np.ndarray, axis: torch.Tensor, chunk: int) -> np.ndarray:
    """Density at grid points given as (N, 3) integer indices."""
    out = np.empty(len(idx), dtype=np.float32)
    step = chunk if chunk > 0 else max(1, len(idx))
    for start in range(0, len(idx), step):
        ii = torch.from_numpy(idx[start : start + step]).to(axis.device)
        pts = axis[ii]  # (n, 3)
        with torch.no_grad():
            out[start : start + step] = fn(pts).reshape(-1).float().cpu().numpy()
    return out


def dense_density_grid(fn: DensityFn, cfg: IsosurfaceConfig, radius: float, device: torch.device | str | None = None) -> GridResult:
    """Query the field at every grid point, `cfg.chunk_size` points at a time."""
    r = cfg.resolution
    axis = grid_axis(r, radius, device)
    grid = np.empty(r**3, dtype=np.float32)
    step = cfg.chunk_size if cfg.chunk_size > 0 else r**3
    for start in range(0, r**3, step):
        flat = np.arange(start, min(start + step, r**3))
        idx = np.stack(np.unravel_index(flat, (r, r, r)), axis=-1)  # (n, 3) [x, y, z]
        grid[start : start + len(flat)] = _evaluate(fn, idx, axis, 0)
    return GridResult(grid.reshape(r, r, r), queries=r**3, method="dense")


def _lattice(resolution: int, stride: int) -> np.ndarray:
    """Grid indices of a lattice: every `stride`-th index, plus the last one."""
    return np.unique(np.append(np.arange(0, resolution - 1, stride), resolution - 1))


def _corner_reduce(v: np.ndarray, op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """(m, m, m) corner values -> (m-1, m-1, m-1) reduction over each cell's 8 corners."""
    out = v[:-1, :-1, :-1]
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                if dx or dy or dz:
                    out = op(out, v[dx : v.shape[0] - 1 + dx, dy : v.shape[1] - 1 + dy, dz : v.shape[2] - 1 + dz])
    return out


def _cells_to_corners(cells: np.ndarray) -> np.ndarray:
    """(n, n, n) cell mask -> (n+1, n+1, n+1) mask of the corners of those cells."""
    n = cells.shape[0]
    out = np.zeros((n + 1,) * 3, dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                out[dx : n + dx, dy : n + dy, dz : n + dz] |= cells
    return out


def _children(blocks: np.ndarray, n_child: int) -> np.ndarray:
    """Block mask at stride s -> mask of its children at stride s/2 (n_child per axis)."""
    up = blocks.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    return up[:n_child, :n_child, :n_child]


def sparse_density_grid(fn: DensityFn, cfg: IsosurfaceConfig, radius: float, device: torch.device | str | None = None) -> GridResult:
    """Coarse-to-fine density grid: the field is queried only where the surface can be.

    Returns a full (R, R, R) grid; points never queried hold 0 (outside) or a value above the band
    (inside), chosen from the block they lie in.
    """
    r = cfg.resolution
    stride = cfg.coarse_stride
    if stride < 1 or stride & (stride - 1):
        raise ValueError(f"coarse_stride must be a power of two, got {stride}")
    while stride > 1 and (r - 1) // stride < 2:
        stride //= 2
    t = cfg.threshold
    axis = grid_axis(r, radius, device)
    vals = np.zeros((r, r, r), dtype=np.float32)
    known = np.zeros((r, r, r), dtype=bool)
    structure = ndimage.generate_binary_structure(3, 3)
    queries = 0
    levels: list[dict[str, int]] = []
    active: np.ndarray | None = None  # blocks to refine, at the previous level
    inside: np.ndarray | None = None  # blocks known to lie wholly inside, at the current level
    s = stride
    while True:
        lat = _lattice(r, s)
        nb = len(lat) - 1
        if active is None:
            cells_in_set = np.ones((nb,) * 3, dtype=bool)
        else:
            cells_in_set = _children(active, nb)
            inside = _children(inside, nb) if inside is not None else None
        need = _cells_to_corners(cells_in_set) & ~known[np.ix_(lat, lat, lat)]
        ijk = np.argwhere(need)  # (n, 3) lattice indices
        idx = lat[ijk]  # (n, 3) grid indices
        if len(idx):
            vals[idx[:, 0], idx[:, 1], idx[:, 2]] = _evaluate(fn, idx, axis, cfg.chunk_size)
            known[idx[:, 0], idx[:, 1], idx[:, 2]] = True
        queries += len(idx)
        level = {"stride": s, "blocks": int(cells_in_set.sum()), "queries": len(idx)}
        levels.append(level)
        if s == 1:
            break
        factor = cfg.band ** (s / 2)  # wider at coarse levels, where more can hide between corners
        lo, hi = t / factor, t * factor
        v = vals[np.ix_(lat, lat, lat)]
        cmax = _corner_reduce(v, np.maximum)
        cmin = _corner_reduce(v, np.minimum)
        seed = cells_in_set & (cmax >= lo) & (cmin <= hi)
        active = ndimage.binary_dilation(seed, structure=structure, iterations=cfg.dilation) if cfg.dilation else seed
        whole_inside = cells_in_set & ~active & (cmin > hi)
        inside = whole_inside if inside is None else (inside & ~active) | whole_inside
        level["refined"] = int(active.sum())
        s //= 2
    if inside is not None and (~known).any():
        # cells at stride 1 -> their corner points; the fill of unqueried points inside the object
        inside_pts = _cells_to_corners(inside) & ~known
        fill_in = max(t * cfg.band, float(vals.max())) * 2.0
        vals[inside_pts] = fill_in
    # every surface cell found lies among the cells refined last: marching cubes can skip the rest
    box = ((0, 0, 0), (0, 0, 0))
    if cells_in_set.any():
        lo_hi = []
        for ax in range(3):
            hit = np.flatnonzero(cells_in_set.any(axis=tuple(a for a in range(3) if a != ax)))
            lo_hi.append((int(hit[0]), int(hit[-1]) + 2))  # cell i spans grid points i and i + 1
        box = (tuple(a for a, _ in lo_hi), tuple(b for _, b in lo_hi))  # type: ignore[assignment]
    return GridResult(vals, queries=queries, method="sparse", levels=levels, box=box)


def marching_cubes(
    grid: np.ndarray,
    threshold: float,
    radius: float,
    box: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Level set density = threshold of an extraction grid.

    Parameters
    ----------
    grid : (R, R, R) float, index order [x, y, z]
    box : optional grid index box [lo, hi) that holds every surface cell; only it is scanned

    Returns
    -------
    vertices (V, 3) float32 in world coordinates, faces (F, 3) int64 wound outward
    """
    r = grid.shape[0]
    lo = np.zeros(3)
    if box is not None:
        (x0, y0, z0), (x1, y1, z1) = box
        grid = grid[x0:x1, y0:y1, z0:z1]
        lo = np.array([x0, y0, z0], dtype=np.float64)
    if min(grid.shape) < 2:
        return np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)
    v, f = mcubes.marching_cubes(np.ascontiguousarray(grid - threshold, dtype=np.float32), 0.0)
    verts = ((v + lo) / (r - 1.0) * (2.0 * radius) - radius).astype(np.float32)
    return verts, f.astype(np.int64)
