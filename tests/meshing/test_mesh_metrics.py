from __future__ import annotations

import numpy as np
import pytest
import trimesh

from meshing.errors import MeshingError
from meshing.metrics import chamfer_fscore, masked_psnr, mesh_stats, normal_consistency, silhouette_iou


def test_identical_meshes_give_zero_and_ones() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=4)
    out = chamfer_fscore(mesh, mesh.copy(), n_points=5_000)
    assert out["chamfer"] == 0.0
    assert out["fscore@0.1"] == out["fscore@0.2"] == out["fscore@0.5"] == 1.0
    assert normal_consistency(mesh, mesh.copy()) == pytest.approx(1.0)


def test_concentric_spheres_give_the_analytic_chamfer() -> None:
    # every point of one sphere is exactly 0.1 from the other: CD = (0.1 + 0.1) / 2
    unit = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    big = trimesh.creation.icosphere(subdivisions=5, radius=1.1)
    out = chamfer_fscore(unit, big, n_points=100_000, thresholds=(0.05, 0.2), seed=3)
    assert out["chamfer"] == pytest.approx(0.1, abs=1e-3)
    assert out["chamfer_pred_to_gt"] == pytest.approx(0.1, abs=1.5e-3)
    assert out["chamfer_gt_to_pred"] == pytest.approx(0.1, abs=1.5e-3)
    assert out["fscore@0.05"] == 0.0 and out["fscore@0.2"] == 1.0


def test_unit_cube_normalisation_removes_scale_and_offset() -> None:
    mesh = trimesh.creation.box(extents=[1.0, 2.0, 3.0])
    moved = mesh.copy()
    moved.apply_scale(2.5)
    moved.apply_translation([4.0, -1.0, 2.0])
    raw = chamfer_fscore(mesh, moved, n_points=20_000)
    norm = chamfer_fscore(mesh, moved, n_points=20_000, normalize="unit_cube")
    assert raw["chamfer"] > 1.0
    assert norm["chamfer"] < 0.01 and norm["fscore@0.1"] == 1.0


def test_rotation_search_and_icp_align_a_turned_copy() -> None:
    mesh = trimesh.creation.box(extents=[0.4, 0.8, 0.2])
    bump = trimesh.creation.box(extents=[0.1, 0.1, 0.3])
    bump.apply_translation([0.15, 0.3, 0.2])
    mesh = trimesh.util.concatenate([mesh, bump])
    turned = mesh.copy()
    # a quarter turn keeps the box's longest side, so the unit-cube normalisation scales both alike
    turned.apply_transform(trimesh.transformations.rotation_matrix(np.radians(90), [0, 0, 1]))
    turned.apply_translation([0.05, -0.02, 0.0])
    plain = chamfer_fscore(turned, mesh, n_points=10_000, normalize="unit_cube")
    aligned = chamfer_fscore(turned, mesh, n_points=10_000, normalize="unit_cube", align="rotate_icp")
    assert aligned["chamfer"] < 0.01 < plain["chamfer"]
    assert aligned["fscore@0.1"] > 0.99


def test_mesh_stats_of_a_box() -> None:
    stats = mesh_stats(trimesh.creation.box(extents=[1.0, 2.0, 3.0]))
    assert stats["vertices"] == 8 and stats["faces"] == 12 and stats["components"] == 1
    assert stats["watertight"] and stats["boundary_edges"] == 0
    assert stats["surface_area"] == pytest.approx(22.0) and stats["volume"] == pytest.approx(6.0)
    assert stats["bbox_size"] == pytest.approx([1.0, 2.0, 3.0])
    opened = trimesh.creation.box()
    opened.update_faces(np.arange(1, 12))
    s2 = mesh_stats(opened)
    assert not s2["watertight"] and s2["boundary_edges"] == 3 and s2["volume"] is None


def test_iou_and_psnr_known_values() -> None:
    a = np.zeros((10, 10), dtype=bool)
    b = np.zeros((10, 10), dtype=bool)
    a[:, :6] = True
    b[:, 4:] = True
    assert silhouette_iou(a, b) == pytest.approx(20 / 100)
    img = np.full((10, 10, 3), 100, dtype=np.uint8)
    other = img.copy()
    other[a] += 10  # error 10/255 inside a
    assert masked_psnr(img, other, a) == pytest.approx(20 * np.log10(255 / 10))
    assert masked_psnr(img, other, ~a) == float("inf")
    with pytest.raises(MeshingError):
        silhouette_iou(a, b[:5])


def test_uv_seams_are_neither_holes_nor_cuts() -> None:
    # a closed sphere split into one chart per face (every edge a UV seam), as a texture atlas does
    sphere = trimesh.creation.icosphere(subdivisions=2)
    split = trimesh.Trimesh(
        vertices=sphere.vertices[sphere.faces.ravel()],
        faces=np.arange(3 * len(sphere.faces)).reshape(-1, 3),
        process=False,
    )
    assert len(split.vertices) == 3 * len(sphere.faces)
    stats = mesh_stats(split)
    assert stats["topology_basis"] == "welded_by_position"
    assert stats["components"] == 1 and stats["boundary_edges"] == 0 and stats["non_manifold_edges"] == 0
    assert stats["watertight"] and stats["winding_consistent"]
    assert stats["welded_vertices"] == len(sphere.vertices) and stats["vertices"] == len(split.vertices)
    assert stats["volume"] == pytest.approx(sphere.volume)


def test_non_manifold_edges_join_their_faces_into_one_component() -> None:
    # three triangles on one edge (a "book" of three pages) and a separate triangle
    vertices = np.array(
        [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [5, 5, 5], [6, 5, 5], [5, 6, 5]], float
    )
    faces = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [5, 6, 7]])
    stats = mesh_stats(trimesh.Trimesh(vertices=vertices, faces=faces, process=False))
    assert stats["components"] == 2 and stats["non_manifold_edges"] == 1
    assert stats["boundary_edges"] == 3 * 2 + 3 and not stats["watertight"]
