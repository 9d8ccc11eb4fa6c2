"""The synthetic dataset: closed meshes, images and masks that agree with them, cameras, determinism."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from meshing.metrics import silhouette_iou
from tests.training.conftest import SMALL
from tests.training.helpers import raster_mask, winding_number
from training.data.cameras import INPUT_FOVY_DEG, camera_rays, input_camera, orbit_camera, project
from training.data.dataset import DatasetError, SyntheticDataset
from training.data.shapes import KINDS, make_shape
from training.data.synthetic import MAX_EXTENT, make_dataset, make_object, mesh_from_sdf


def test_layout_and_meshes_watertight(small_dataset: Path) -> None:
    info = json.loads((small_dataset / "dataset.json").read_text())
    assert info["seed"] == 11 and info["objects"] == ["000000", "000001", "000002"]
    data = SyntheticDataset(small_dataset, cond_size=64, view_size=32)  # views box-reduced from 256
    for i in range(len(data)):
        folder = data.folder(i)
        names = {p.name for p in folder.iterdir()}
        assert {"mesh.ply", "cond.png", "cond_mask.png", "cameras.json", "samples.safetensors", "meta.json"} <= names
        assert {f"view_{k:02d}.png" for k in range(SMALL.views)} <= names
        mesh = data.mesh(i)
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
        assert np.abs(mesh.vertices).max() <= MAX_EXTENT
        assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
        rec = data[i]
        assert rec.cond.shape == (3, 64, 64) and rec.views.shape == (SMALL.views, 32, 32, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_meshes_closed(kind: str) -> None:
    mesh = mesh_from_sdf(make_shape(kind, np.random.default_rng(3)), resolution=48)
    assert mesh.is_watertight, kind
    assert mesh.volume > 0, kind


def test_masks_match_mesh_silhouettes(small_dataset: Path) -> None:
    """Stored masks vs the mesh rasterised independently (OpenCV) through the stored cameras: IoU >= 0.99."""
    data = SyntheticDataset(small_dataset)
    for i in range(len(data)):
        mesh, cams = data.mesh(i), data.cameras(i)
        folder = data.folder(i)
        for k, cam in enumerate(cams["views"]):
            mask = np.asarray(Image.open(folder / f"mask_{k:02d}.png")) >= 128
            assert silhouette_iou(raster_mask(mesh, cam), mask) >= 0.99, (i, k)
        cond_mask = np.asarray(Image.open(folder / "cond_mask.png")) >= 128
        assert silhouette_iou(raster_mask(mesh, cams["cond"]), cond_mask) >= 0.99, i
        # images agree with masks: white background outside, object colours inside
        view = np.asarray(Image.open(folder / "view_00.png")).astype(int)
        mask0 = np.asarray(Image.open(folder / "mask_00.png"))
        assert (view[mask0 == 0] == 255).all()


def test_conditioning_view_is_framed_like_intake(small_dataset: Path) -> None:
    """Object centred, its longer side 0.85 of the image, gray 127 background, seen from +x."""
    data = SyntheticDataset(small_dataset)
    for i in range(len(data)):
        mask = np.asarray(Image.open(data.folder(i) / "cond_mask.png")) >= 128
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        size = mask.shape[0]
        span = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / size
        assert span == pytest.approx(0.85, abs=0.02)
        assert (rows[0] + rows[-1] + 1) / 2 == pytest.approx(size / 2, abs=2)
        assert (cols[0] + cols[-1] + 1) / 2 == pytest.approx(size / 2, abs=2)
        image = data.cond_image(i)
        assert (image[~mask & (np.asarray(Image.open(data.folder(i) / "cond_mask.png")) == 0)] == 127).all()
    cam = input_camera(64)
    assert np.allclose(cam.eye, [1.9, 0, 0]) and cam.fovy_deg == INPUT_FOVY_DEG
    # image right is +y, image up is +z
    (c_right, r_right), (c_up, r_up) = project(cam, np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.3]]))[0]
    assert c_right > 32 and abs(r_right - 32) < 1e-6 and r_up < 32 and abs(c_up - 32) < 1e-6


def test_occupancy_labels_agree_with_mesh(small_dataset: Path) -> None:
    """Inside labels vs the mesh's winding number, away from the surface (marching-cubes tolerance)."""
    data = SyntheticDataset(small_dataset)
    rng = np.random.default_rng(0)
    for i in range(len(data)):
        rec, mesh = data[i], data.mesh(i)
        sel = rng.choice(len(rec.points), 300, replace=False)
        pts = rec.points[sel].astype(np.float64)
        from scipy.spatial import cKDTree

        far = cKDTree(np.asarray(mesh.vertices)).query(pts)[0] > 0.03
        inside = winding_number(mesh, pts[far]) > 0.5
        assert far.sum() > 60
        assert (inside == rec.occupancy[sel][far]).all()
        assert 0.05 < rec.occupancy.mean() < 0.6
        # surface samples lie on the mesh, with colours
        d = cKDTree(np.asarray(mesh.vertices)).query(rec.surface_points[:200])[0]
        assert d.max() < 0.03


def test_rays_pass_through_projected_points() -> None:
    cam = orbit_camera(37.0, 21.0, size=64)
    pts = np.random.default_rng(1).uniform(-0.5, 0.5, (50, 3))
    uv, _ = project(cam, pts)
    inside = (uv >= 0).all(1) & (uv < 64).all(1)
    rows, cols = np.floor(uv[inside, 1]).astype(int), np.floor(uv[inside, 0]).astype(int)
    o, d = camera_rays(torch.tensor(cam.matrix), cam.fovy_deg, 64, 64, torch.from_numpy(rows), torch.from_numpy(cols))
    p = torch.from_numpy(pts[inside])
    t = ((p - o) * d).sum(-1, keepdim=True)
    miss = (o + t * d - p).norm(dim=-1)
    pixel = 2 * 1.9 * np.tan(np.radians(20)) / 64 * 2.5  # at most about a pixel's footprint at the depth
    assert float(miss.max()) < pixel
    # a ray through a pixel's own centre hits it exactly
    c = np.array([[(cols[0] + 0.5), (rows[0] + 0.5)]])
    dir_ = d[0].numpy()
    back, _ = project(cam, (o[0].numpy() + 1.7 * dir_)[None])
    assert np.allclose(back, c, atol=1e-6)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    a = make_dataset(11, 1, tmp_path / "a", SMALL)
    b = make_dataset(11, 1, tmp_path / "b", SMALL)
    c = make_dataset(12, 1, tmp_path / "c", SMALL)
    names = sorted(p.name for p in (a / "objects" / "000000").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a / "objects" / "000000", b / "objects" / "000000", names, shallow=False)
    assert mismatch == [] and errors == [] and match == names
    assert filecmp.cmp(a / "dataset.json", b / "dataset.json", shallow=False)  # no paths or times stored
    assert not filecmp.cmp(a / "objects" / "000000" / "mesh.ply", c / "objects" / "000000" / "mesh.ply", shallow=False)


def test_object_does_not_depend_on_count(small_dataset: Path) -> None:
    obj = make_object(11, 2, SMALL)
    data = SyntheticDataset(small_dataset)
    assert np.array_equal(obj.cond_image, data.cond_image(2))
    assert np.allclose(obj.mesh.vertices, data.mesh(2).vertices, atol=1e-6)


def test_not_a_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no dataset.json") as err:
        SyntheticDataset(tmp_path)
    assert err.value.reason == "not_a_dataset"


def test_dataset_make_command(tmp_path: Path) -> None:
    from asset3d.cli import main

    out = tmp_path / "d"
    args = ["dataset", "make", "--seed", "3", "--count", "2", "--out", str(out), "--views", "2", "--view-size", "32",
            "--cond-size", "64", "--quiet"]
    assert main(args) == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["count"] == 2 and info["config"]["views"] == 2
    assert np.asarray(Image.open(out / "objects" / "000001" / "cond.png")).shape == (64, 64, 3)
    assert np.asarray(Image.open(out / "objects" / "000001" / "view_01.png")).shape == (32, 32, 3)
    assert main(["dataset", "make", "--seed", "3", "--count", "0", "--out", str(out)]) == 2
