"""Batching, dtypes and chunking give the same answers."""

from __future__ import annotations

import pytest
import torch

from triposr import TSR
from triposr.devices import pick_device, pick_dtype, tune_cpu_allocator


def test_batch_of_b_equals_b_singles(tiny_model: TSR) -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(3, 80, 72, 3, generator=g)
    points = (torch.rand(3, 500, 3, generator=g) * 2 - 1) * 0.87
    with torch.no_grad():
        batch = tiny_model.encode(images)
        singles = torch.cat([tiny_model.encode(images[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-4)
        q_batch = tiny_model.query(batch, points)
        q_single = [tiny_model.query(batch[i : i + 1], points[i : i + 1]) for i in range(3)]
    for key in ("density", "color"):
        torch.testing.assert_close(q_batch[key], torch.cat([q[key] for q in q_single]), atol=1e-5, rtol=1e-4)


def test_bf16_close_to_fp32(tiny_model: TSR, tiny_fixture: dict) -> None:
    with torch.no_grad():
        ref = tiny_model.encode(tiny_fixture["rgb_cond"])
        tiny_model.compute_dtype = torch.bfloat16
        try:
            low = tiny_model.encode(tiny_fixture["rgb_cond"])
        finally:
            tiny_model.compute_dtype = torch.float32
    rel = (low - ref).norm() / ref.norm()
    assert low.dtype == torch.float32
    assert 0 < rel < 0.02


def test_bf16_weights_from_load_model(tmp_path, tiny_fixture: dict) -> None:
    """`load_model(dtype="bf16")` stores the encoder in bf16 (half the memory), the decoder in fp32, and stays close."""
    import yaml

    from triposr import load_model

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_fixture["config"]))
    torch.save(tiny_fixture["state_dict"], tmp_path / "model.ckpt")
    full = load_model(tmp_path, device="cpu", dtype="fp32")
    half = load_model(tmp_path, device="cpu", dtype="bf16")
    kept = load_model(tmp_path, device="cpu", dtype="bf16", cast_weights=False)
    assert {p.dtype for p in full.parameters()} == {p.dtype for p in kept.parameters()} == {torch.float32}
    assert {p.dtype for p in half.backbone.parameters()} == {p.dtype for p in half.image_tokenizer.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.decoder.parameters()} == {torch.float32}
    assert set(half.state_dict()) == set(full.state_dict())  # the official names, whatever the dtype
    with torch.no_grad():
        ref = full.encode(tiny_fixture["rgb_cond"])
        low = half.encode(tiny_fixture["rgb_cond"])
        points = tiny_fixture["query_points"][None]
        dens = half.query(low, points)["density"]
        ref_dens = full.query(ref, points)["density"]
    assert low.dtype == torch.float32 and dens.dtype == torch.float32
    assert 0 < float((low - ref).norm() / ref.norm()) < 0.02
    assert float((dens - ref_dens).norm() / ref_dens.norm()) < 0.05


def test_geglu_inference_path_equals_the_autograd_path(tiny_model: TSR) -> None:
    ff = tiny_model.backbone.transformer_blocks[0].ff.net[0]
    x = torch.randn(2, 7, ff.proj.in_features)
    with torch.enable_grad():
        graded = ff(x)
    with torch.no_grad():
        fast = ff(x)
    torch.testing.assert_close(fast, graded.detach(), atol=0, rtol=0)


def test_feed_forward_in_row_slices_equals_the_whole_sequence(tiny_model: TSR, tiny_fixture: dict, monkeypatch) -> None:
    """At inference the feed-forward runs in slices of `FeedForward.rows` tokens (batches flattened)."""
    from triposr.backbone import FeedForward

    ff = tiny_model.backbone.transformer_blocks[0].ff
    x = torch.randn(2, 11, ff.net[2].out_features)
    with torch.no_grad():
        whole = ff(x)
        monkeypatch.setattr(FeedForward, "rows", 5)  # 22 rows -> slices of 5, 5, 5, 5, 2, across the batch boundary
        sliced = ff(x)
        codes = tiny_model.encode(tiny_fixture["rgb_cond"])
    assert sliced.shape == whole.shape == x.shape
    torch.testing.assert_close(sliced, whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(codes, tiny_fixture["scene_codes"], atol=1e-5, rtol=1e-4)


def test_accepts_uint8_and_lists(tiny_model: TSR, tiny_fixture: dict) -> None:
    import numpy as np
    from PIL import Image

    image = tiny_fixture["image"].numpy()
    with torch.no_grad():
        from_uint8 = tiny_model.encode(image[None])
        from_pil = tiny_model.encode([Image.fromarray(image)])
    torch.testing.assert_close(from_uint8, tiny_fixture["scene_codes"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(from_pil, from_uint8)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        tiny_model.encode(np.zeros((1, 8, 8, 4), dtype=np.uint8))


def test_device_and_dtype_choice() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device(None).type in ("cpu", "mps")
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert pick_dtype("fp32", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype("int8", torch.device("cpu"))


def test_cpu_allocator_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    assert tune_cpu_allocator() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("TRIPOSR_NO_MALLOC_TUNING", "1")
    assert tune_cpu_allocator() is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_model: TSR, tiny_fixture: dict) -> None:
    import copy

    gpu = copy.deepcopy(tiny_model).to("cuda")
    with torch.no_grad():
        codes = gpu.encode(tiny_fixture["rgb_cond"]).cpu()
        (mesh,) = gpu.extract_mesh(codes.cuda(), resolution=32)
    torch.testing.assert_close(codes, tiny_fixture["scene_codes"], atol=1e-4, rtol=1e-3)
    assert abs(len(mesh.faces) - tiny_fixture["mesh32"]["n_faces"]) <= 0.01 * tiny_fixture["mesh32"]["n_faces"]
