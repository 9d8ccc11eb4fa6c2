"""SKU rules, discovery, which model `auto` picks, and the untrained fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from asset3d.pipeline import models
from asset3d.pipeline.errors import StageError
from asset3d.pipeline.photos import discover, parse_sidecar, sku_for
from asset3d.pipeline.settings import load_settings


def test_sku_from_parent_folder_pattern_or_sidecar() -> None:
    assert sku_for("s3://shop/incoming/SKU-123/front.jpg") == "SKU-123"
    assert sku_for("s3://shop/incoming/SKU-123_front.jpg", pattern=r"/(?P<sku>[^/_]+)_[^/]+$") == "SKU-123"
    assert sku_for("file:///p/x/a.png", sidecar={"x/a.png": "CHAIR-9"}, key="x/a.png") == "CHAIR-9"
    assert sku_for("file:///p/x/a.png", sidecar={"file:///p/x/a.png": "CHAIR-9"}) == "CHAIR-9"
    with pytest.raises(StageError, match="does not match"):
        sku_for("s3://shop/a.png", pattern=r"(?P<sku>SKU-\d+)")
    with pytest.raises(StageError) as exc:
        sku_for("s3://shop/incoming/bad sku!/a.png")
    assert exc.value.reason == "bad_sku" and "bad sku!" in str(exc.value)


def test_sidecar_csv_and_json() -> None:
    assert parse_sidecar(b"key,sku\nA/1.png,SKU-1\nA/2.png,SKU-2\n", "skus.csv").skus == {"A/1.png": "SKU-1", "A/2.png": "SKU-2"}
    assert parse_sidecar(b'{"A/1.png": "SKU-1"}', "skus.json").skus == {"A/1.png": "SKU-1"}
    assert parse_sidecar(b'[{"key": "A/1.png", "sku": "SKU-1"}]', "skus.json").skus == {"A/1.png": "SKU-1"}
    with pytest.raises(StageError, match="'key' column and 'sku' or size columns"):
        parse_sidecar(b"name,product\na,b\n", "skus.csv")


def test_sidecar_sizes_in_metres_or_with_a_unit() -> None:
    side = parse_sidecar(b"key,sku,width_m,height_m\nA/1.png,SKU-1,0.5,0.32\n", "s.csv")
    assert side.skus == {"A/1.png": "SKU-1"} and side.sizes["A/1.png"].height_m == 0.32
    side = parse_sidecar(b"key,width,height,depth,unit\nA/1.png,500,320,,mm\n", "s.csv")
    size = side.sizes["A/1.png"]
    assert (size.width_m, size.height_m, size.depth_m, size.source) == (0.5, 0.32, None, "sidecar") and not side.skus
    assert parse_sidecar(b'[{"key": "A/1.png", "height": 32, "unit": "cm"}]', "s.json").sizes["A/1.png"].height_m == 0.32
    with pytest.raises(StageError, match="needs a unit"):
        parse_sidecar(b"key,height\nA/1.png,320\n", "s.csv")
    with pytest.raises(StageError, match="must be a positive size"):
        parse_sidecar(b"key,height_m\nA/1.png,-1\n", "s.csv")


def test_discover_a_folder_with_a_sidecar(tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
    (tmp_path / "batch-1").mkdir()
    (tmp_path / "batch-1" / "a.png").write_bytes(photo_bytes["chair.png"])
    (tmp_path / "batch-1" / "b.jpg").write_bytes(photo_bytes["cerebro.jpg"])
    (tmp_path / "skus.csv").write_text("key,sku\nbatch-1/a.png,CHAIR-1\nbatch-1/b.jpg,BRAIN-2\n")
    (tmp_path / "notes.txt").write_text("not a photo")
    refs = discover(str(tmp_path), load_settings(sidecar="skus.csv").stage_options().discover).refs
    assert [(r.key, r.sku) for r in refs] == [("batch-1/a.png", "CHAIR-1"), ("batch-1/b.jpg", "BRAIN-2")]
    assert all(r.etag and r.size for r in refs) and refs[0].uri == (tmp_path / "batch-1" / "a.png").as_uri()
    listed = discover([refs[1].uri, {"uri": refs[0].uri, "sku": "GIVEN-1"}], load_settings().stage_options().discover).refs
    assert [(r.uri, r.sku) for r in listed] == [(refs[1].uri, "batch-1"), (refs[0].uri, "GIVEN-1")]
    assert listed[0].etag == refs[1].etag


def _fake_hub_cache(root: Path, tiny_model: Path) -> None:
    """The Hugging Face cache layout holding the official repo id, with the tiny weights in it."""
    repo = root / "models--stabilityai--TripoSR"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name in ("config.yaml", "model.ckpt"):
        (snapshot / name).write_bytes((tiny_model / name).read_bytes())


def test_auto_prefers_cached_official_weights_then_demo_then_untrained(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    from triposr import ModelNotAvailable, sha256_file
    from triposr.loading import resolve_source

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    try:
        resolve_source("demo")
        expected = "demo"
    except ModelNotAvailable:
        expected = "untrained"
    assert models.choose_model("auto").kind == expected
    assert models.choose_model(str(tiny_model)) == models.ModelChoice(str(tiny_model), "explicit", f"model {tiny_model}")

    _fake_hub_cache(tmp_path / "hub", tiny_model)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    models.clear_models()
    try:
        choice = models.choose_model("auto")
        assert choice.kind == "official" and "official" in choice.label
        loaded = models.get_model("auto", "cpu", "fp32")  # read from the cache, offline
        assert loaded.model_id == "stabilityai/TripoSR"
        assert loaded.weights_sha256 == sha256_file(tiny_model / "model.ckpt")
        assert models.model_identity("auto")[1:] == (loaded.model_id, loaded.weights_sha256)
    finally:
        models.clear_models()


def test_untrained_fallback_is_seeded_labelled_and_has_a_surface() -> None:
    import torch

    a, b = models.build_untrained(), models.build_untrained()
    assert a.weights_sha256 == b.weights_sha256 == models.state_sha256(a)
    assert "meaningless" in models.choose_model(models.UNTRAINED).label
    with torch.inference_mode():
        codes = a.encode(torch.full((1, 64, 64, 3), 0.5))
    (mesh,) = a.extract_mesh(codes, resolution=32)
    assert len(mesh.faces) > 0


def test_identity_without_loading_matches_the_loaded_model(tiny_model: Path) -> None:
    choice, model_id, sha = models.model_identity(str(tiny_model))
    loaded = models.get_model(str(tiny_model), "cpu", "fp32")
    assert (model_id, sha) == (loaded.model_id, loaded.weights_sha256) and choice.kind == "explicit"
