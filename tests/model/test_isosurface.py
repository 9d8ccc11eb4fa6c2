"""Sparse extraction gives the dense mesh with far fewer queries; empty fields give empty meshes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from triposr import TSR
from triposr.isosurface import IsosurfaceConfig, dense_density_grid, marching_cubes, sparse_density_grid

RADIUS = 0.87
THRESHOLD = 25.0


def _field(signed_distance: Callable[[torch.Tensor], torch.Tensor], sharpness: float = 40.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A TripoSR-like density: exp of a linear function of the signed distance (positive inside)."""

    def fn(p: torch.Tensor) -> torch.Tensor:
        return THRESHOLD * torch.exp(sharpness * signed_distance(p))

    return fn


def sphere(p: torch.Tensor) -> torch.Tensor:
    return 0.5 - p.norm(dim=-1)


def torus(p: torch.Tensor) -> torch.Tensor:
    ring = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - 0.45
    return 0.15 - torch.sqrt(ring**2 + p[:, 2] ** 2)


def thin_plate(resolution: int) -> Callable[[torch.Tensor], torch.Tensor]:
    half = 1.2 * (2 * RADIUS / (resolution - 1))  # 2.4 voxels thick

    def sd(p: torch.Tensor) -> torch.Tensor:
        return torch.minimum(half - p[:, 2].abs() + 0.003, torch.minimum(0.6 - p[:, 0].abs(), 0.6 - p[:, 1].abs()))

    return sd


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def _components(v: np.ndarray, f: np.ndarray) -> int:
    return len(trimesh.Trimesh(v, f, process=False).split(only_watertight=False))


@pytest.mark.parametrize("name", ["sphere", "torus", "thin_plate"])
def test_sparse_matches_dense_on_analytic_fields(name: str) -> None:
    resolution = 128
    sd = {"sphere": sphere, "torus": torus, "thin_plate": thin_plate(resolution)}[name]
    fn = _field(sd)
    cfg = IsosurfaceConfig(resolution=resolution, threshold=THRESHOLD, chunk_size=1 << 16)
    dense = dense_density_grid(fn, cfg, RADIUS)
    sparse = sparse_density_grid(fn, cfg, RADIUS)
    vd, fd = marching_cubes(dense.density, THRESHOLD, RADIUS)
    vs, fs = marching_cubes(sparse.density, THRESHOLD, RADIUS, sparse.box)
    voxel = 2 * RADIUS / (resolution - 1)
    assert len(fd) > 1000
    assert _chamfer(vs, vd) <= 0.5 * voxel
    assert _components(vs, fs) == _components(vd, fd)
    assert dense.queries == resolution**3
    assert sparse.queries * 4 <= dense.queries, sparse.levels
    assert trimesh.Trimesh(vs, fs, process=False).volume > 0  # wound outward


def test_sparse_equals_dense_exactly_where_queried() -> None:
    fn = _field(torus)
    cfg = IsosurfaceConfig(resolution=96, threshold=THRESHOLD)
    dense = dense_density_grid(fn, cfg, RADIUS)
    sparse = sparse_density_grid(fn, cfg, RADIUS)
    vd, fd = marching_cubes(dense.density, THRESHOLD, RADIUS)
    vs, fs = marching_cubes(sparse.density, THRESHOLD, RADIUS, sparse.box)
    assert sparse.box is not None and sparse.box != ((0, 0, 0), (96, 96, 96))  # the scan was cropped
    assert len(vs) == len(vd) and len(fs) == len(fd)
    np.testing.assert_allclose(np.sort(vs, axis=0), np.sort(vd, axis=0), atol=1e-6)


def test_sparse_matches_dense_on_tiny_model(tiny_model: TSR, tiny_fixture: dict) -> None:
    codes = tiny_fixture["scene_codes"]
    with torch.no_grad():
        (dense,) = tiny_model.extract_mesh(codes, resolution=64, method="dense")
        (sparse,) = tiny_model.extract_mesh(codes, resolution=64, method="sparse")
    voxel = 2 * RADIUS / 63
    assert _chamfer(np.asarray(sparse.vertices), np.asarray(dense.vertices)) <= 0.5 * voxel
    assert len(sparse.split(only_watertight=False)) == len(dense.split(only_watertight=False))
    assert sparse.metadata["extraction"]["queries"] < dense.metadata["extraction"]["queries"]


def test_empty_surface_gives_flagged_empty_mesh(tiny_model: TSR, tiny_fixture: dict) -> None:
    codes = tiny_fixture["scene_codes"]
    with torch.no_grad():
        meshes = tiny_model.extract_mesh(codes, resolution=32, threshold=1e12, method="sparse")
        dense = tiny_model.extract_mesh(codes, resolution=32, threshold=1e12, method="dense")
    for mesh in meshes + dense:
        assert mesh.metadata["surface_empty"] is True
        assert len(mesh.vertices) == 0 and len(mesh.faces) == 0


def test_bad_method_is_refused(tiny_model: TSR, tiny_fixture: dict) -> None:
    with pytest.raises(ValueError, match="sparse' or 'dense"):
        tiny_model.extract_mesh(tiny_fixture["scene_codes"], method="octree")  # type: ignore[arg-type]
