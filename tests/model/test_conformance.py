"""The tiny config reproduces the official implementation's outputs (fp32, CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from triposr import TSR

TOL = {"atol": 1e-5, "rtol": 1e-4}


def test_resize_matches_official_preprocessor(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    x = tiny_model.preprocess(tiny_fixture["preproc_test_image"][None]).permute(0, 2, 3, 1)
    torch.testing.assert_close(x, tiny_fixture["preproc_test_rgb_cond"], **TOL)
    same = tiny_model.preprocess(tiny_fixture["image"][None]).permute(0, 2, 3, 1)
    torch.testing.assert_close(same, tiny_fixture["rgb_cond"], **TOL)


def test_image_tokens(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    with torch.no_grad():
        tokens = tiny_model.image_tokens(tiny_fixture["image"][None])
    torch.testing.assert_close(tokens, tiny_fixture["image_tokens"][:, 0], **TOL)


def test_scene_codes(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    with torch.no_grad():
        codes = tiny_model.encode(tiny_fixture["rgb_cond"])
    assert codes.shape == (1, 3, 8, 8, 8)
    torch.testing.assert_close(codes, tiny_fixture["scene_codes"], **TOL)


def test_field_at_query_points(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    with torch.no_grad():
        out = tiny_model.query(tiny_fixture["scene_codes"], tiny_fixture["query_points"][None])
    assert out["density"].shape == (1, 1000, 1) and out["color"].shape == (1, 1000, 3)
    torch.testing.assert_close(out["density"][0], tiny_fixture["density_act"], **TOL)
    torch.testing.assert_close(out["color"][0], tiny_fixture["color"], **TOL)
    raw = tiny_model.renderer.decode(
        tiny_model.decoder,
        tiny_model.renderer.sample_features(tiny_fixture["scene_codes"], tiny_fixture["query_points"][None]),
    )["density_raw"]
    torch.testing.assert_close(raw[0], tiny_fixture["density_raw"], **TOL)


def test_chunked_query_equals_unchunked(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    with torch.no_grad():
        whole = tiny_model.query(tiny_fixture["scene_codes"], tiny_fixture["query_points"][None], chunk_size=0)
        parts = tiny_model.query(tiny_fixture["scene_codes"], tiny_fixture["query_points"][None], chunk_size=37)
    # chunks change the GEMM shapes, so BLAS may pick other kernels: equal to fp32 rounding, not bit for bit
    torch.testing.assert_close(parts["density"], whole["density"], atol=1e-6, rtol=1e-5)


def test_render(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    with torch.no_grad():
        rgb = tiny_model.render(tiny_fixture["scene_codes"], tiny_fixture["render_rays_o"], tiny_fixture["render_rays_d"])
    assert rgb.shape == (1, 16, 16, 3)
    torch.testing.assert_close(rgb[0], tiny_fixture["render_rgb"], **TOL)


def test_density_grid_and_mesh(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    from triposr.isosurface import IsosurfaceConfig, dense_density_grid

    grid = dense_density_grid(tiny_model.density_fn(tiny_fixture["scene_codes"][0]), IsosurfaceConfig(resolution=32), tiny_model.radius)
    np.testing.assert_allclose(grid.density, tiny_fixture["grid32_density_act"].numpy(), **TOL)
    ref = tiny_fixture["mesh32"]
    for method in ("dense", "sparse"):
        (mesh,) = tiny_model.extract_mesh(tiny_fixture["scene_codes"], resolution=32, threshold=ref["threshold"], method=method)
        assert (len(mesh.vertices), len(mesh.faces)) == (ref["n_vertices"], ref["n_faces"]), method
        assert mesh.visual.vertex_colors.shape == (ref["n_vertices"], 4)
        assert mesh.vertices.min() >= -0.87 - 1e-6 and mesh.vertices.max() <= 0.87 + 1e-6
