from __future__ import annotations

import numpy as np
import pytest
import trimesh
from mesh_helpers import colored_sphere

from meshing.cleanup import clean_mesh
from meshing.errors import MeshingError


def _messy() -> tuple[trimesh.Trimesh, int]:
    sphere = colored_sphere(3)
    n_faces = len(sphere.faces)
    floater = trimesh.creation.icosphere(subdivisions=1, radius=0.01)
    floater.apply_translation([2.0, 0, 0])
    faces = sphere.faces.copy()
    faces[:40] = faces[:40, ::-1]  # inconsistent winding
    extra = np.array(
        [faces[50], faces[51][[1, 2, 0]], [0, 0, 1]]
    )  # duplicate, duplicate (rotated), degenerate
    vertices = np.vstack([sphere.vertices, floater.vertices])
    all_faces = np.vstack([faces, extra, floater.faces + len(sphere.vertices)])
    colors = np.vstack([sphere.visual.vertex_colors, np.tile([[255, 0, 0, 255]], (len(floater.vertices), 1))])
    return trimesh.Trimesh(vertices=vertices, faces=all_faces, vertex_colors=colors, process=False), n_faces


def test_clean_removes_duplicates_degenerates_floaters_and_fixes_winding() -> None:
    mesh, n_sphere = _messy()
    out, report = clean_mesh(mesh, min_component_share=0.01)
    assert report.degenerate_faces == 1
    assert report.duplicate_faces == 2
    assert report.components_removed == 1 and report.components_in == 2
    assert len(out.faces) == n_sphere
    assert out.is_winding_consistent and out.is_watertight
    assert out.volume > 0  # outward normals
    assert out.visual.kind == "vertex" and len(out.visual.vertex_colors) == len(out.vertices)
    assert not (out.visual.vertex_colors[:, :3] == [255, 0, 0]).all(axis=1).any()  # the red floater is gone
    assert len(mesh.faces) == n_sphere + 3 + 80  # input untouched


def test_clean_keeps_components_when_share_is_zero() -> None:
    mesh, _ = _messy()
    _, report = clean_mesh(mesh, min_component_share=0.0)
    assert report.components_removed == 0


def test_small_holes_are_filled_and_large_ones_kept() -> None:
    sphere = colored_sphere(3)
    # a small hole (one vertex's fan) and a large one (a cap of faces)
    v0 = 0
    fan = np.flatnonzero((sphere.faces == v0).any(axis=1))
    cap = np.flatnonzero(sphere.triangles_center[:, 2] < -0.3)
    keep = np.ones(len(sphere.faces), dtype=bool)
    keep[fan] = keep[cap] = False
    holed = trimesh.Trimesh(
        sphere.vertices, sphere.faces[keep], vertex_colors=sphere.visual.vertex_colors, process=False
    )
    holed.remove_unreferenced_vertices()
    assert not holed.is_watertight
    out, report = clean_mesh(holed, fill_holes=True, max_hole_edges=8)
    assert report.holes_filled == 1
    assert not out.is_watertight  # the cap's rim is longer than 8 edges
    out_all, report_all = clean_mesh(holed, fill_holes=True, max_hole_edges=1000)
    assert report_all.holes_filled == 2
    assert out_all.is_watertight and out_all.is_winding_consistent and out_all.volume > 0


def test_flor_cleanup(flor: trimesh.Trimesh) -> None:
    out, report = clean_mesh(flor)
    assert report.faces_in == 68_508
    assert report.components_removed == 1 and report.area_removed_share < 0.001
    assert out.is_winding_consistent
    closed, rep2 = clean_mesh(flor, fill_holes=True)
    assert rep2.holes_filled > 0 and closed.is_watertight and closed.volume > 0


@pytest.mark.parametrize(
    ("mesh", "reason"),
    [
        (trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=int)), "empty_mesh"),
        (
            trimesh.Trimesh(
                vertices=[[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], faces=[[0, 1, 2]], process=False
            ),
            "bad_input",
        ),
        ("not a mesh", "bad_input"),
    ],
)
def test_bad_meshes_are_refused(mesh: object, reason: str) -> None:
    with pytest.raises(MeshingError) as err:
        clean_mesh(mesh)  # type: ignore[arg-type]
    assert err.value.reason == reason
