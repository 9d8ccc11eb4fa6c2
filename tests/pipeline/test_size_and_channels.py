"""Storefront-true assets through the pipeline: real-world size from a sidecar, the catalogue or a flag, an
aspect mismatch held for review, and several channels published under one asset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trimesh

from asset3d.cli import main
from asset3d.cli.convert import convert_local
from asset3d.pipeline.settings import load_settings
from storage.catalogue import Catalogue


def _source(tmp_path: Path, photo_bytes: dict[str, bytes], sidecar: str | None = None) -> Path:
    root = tmp_path / "photos"
    (root / "SKU-chair").mkdir(parents=True)
    (root / "SKU-chair" / "chair.png").write_bytes(photo_bytes["chair.png"])
    if sidecar is not None:
        (root / "sizes.csv").write_text(sidecar)
    return root


def _run(source: Path, tmp_path: Path, options: dict[str, Any], **overrides: Any) -> Any:
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    settings = load_settings(**{**options, "dest": str(tmp_path / "assets"), "catalogue_url": url, **overrides})
    (outcome,) = convert_local(str(source), settings).outcomes
    return outcome


def _glb_height(glb_uri: str) -> float:
    mesh = trimesh.load(glb_uri.removeprefix("file://"), force="mesh")
    return float(mesh.bounds[1][1] - mesh.bounds[0][1])


def _metrics(glb_uri: str) -> dict[str, Any]:
    return json.loads(Path(glb_uri.removeprefix("file://")).with_name("metrics.json").read_text())


def test_a_sidecar_height_scales_the_glb(tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any]) -> None:
    source = _source(tmp_path, photo_bytes, "key,height,unit\nSKU-chair/chair.png,320,mm\n")
    outcome = _run(source, tmp_path, fast_options, sidecar="sizes.csv")
    assert outcome.status == "published"
    assert _glb_height(outcome.glb_uri) == pytest.approx(0.32, rel=0.01)
    scale = _metrics(outcome.glb_uri)["metrics"]["scale"]
    assert scale["source"] == "sidecar" and scale["unscaled"] is False


def test_the_catalogue_product_size_scales_the_glb_and_unscaled_is_said(
    tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any]
) -> None:
    import migrations

    source = _source(tmp_path, photo_bytes)
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    migrations.upgrade(url, "head")
    cat = Catalogue(url)
    try:
        cat.upsert_product("SKU-chair", height_m=0.32)
    finally:
        cat.close()
    outcome = _run(source, tmp_path, fast_options)
    assert _glb_height(outcome.glb_uri) == pytest.approx(0.32, rel=0.01)
    assert _metrics(outcome.glb_uri)["metrics"]["scale"]["source"] == "catalogue"

    other = tmp_path / "other"
    unscaled = _run(_source(other, photo_bytes), other, fast_options)  # no dimensions anywhere
    assert _metrics(unscaled.glb_uri)["metrics"]["scale"]["unscaled"] is True
    cat = Catalogue(f"sqlite:///{other / 'cat.db'}")
    try:
        gate = cat.get_asset(unscaled.asset_id).gate
        assert gate is not None and any("unscaled" in note["message"] for note in gate["notes"])  # the review page shows it
    finally:
        cat.close()


def test_an_aspect_mismatch_holds_the_asset_naming_the_rule(tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any]) -> None:
    source = _source(tmp_path, photo_bytes)
    first = _run(source, tmp_path, fast_options, width_m=0.5)  # only a width: no proportions to compare
    assert first.status == "published"
    mesh = trimesh.load(first.glb_uri.removeprefix("file://"), force="mesh")
    w, h, _ = mesh.extents
    # a product three times taller, relative to its width, than the reconstruction
    (tmp_path / "b").mkdir()
    held = _run(source, tmp_path / "b", fast_options, width_m=0.5, height_m=0.5 * h / w * 3.0)
    assert held.status == "needs_review"
    cat = Catalogue(f"sqlite:///{tmp_path / 'b' / 'cat.db'}")
    try:
        gate = cat.get_asset(held.asset_id).gate
    finally:
        cat.close()
    assert gate is not None
    (reason,) = [r for r in gate["reasons"] if r["rule"] == "review_max_aspect_mismatch"]
    assert reason["threshold"] == 1.5 and reason["value"] == pytest.approx(3.0, rel=0.02) and "aspect mismatch" in reason["message"]
    assert _metrics(held.glb_uri)["metrics"]["scale"]["aspect_mismatch"] == pytest.approx(3.0, rel=0.02)


def test_several_channels_publish_under_one_asset(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chair = tmp_path / "chair.png"
    chair.write_bytes(photo_bytes["chair.png"])
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    args = ["convert", str(chair), "--out", str(tmp_path / "out"), "--catalogue-url", url, "--config", str(config_file)]
    assert main([*args, "--preset", "shopify,apple", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["photos"]
    folder = Path(row["glb_uri"].removeprefix("file://")).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = {e["key"]: e for e in manifest["files"]}
    assert entries["model.glb"]["content_type"] == "model/gltf-binary"
    assert entries["model.usdz"]["content_type"] == "model/vnd.usdz+zip"
    import hashlib

    for key in ("model.glb", "model.usdz"):
        assert hashlib.sha256((folder / key).read_bytes()).hexdigest() == entries[key]["sha256"]
    assert main([*args, "--preset", "shopify,nosuch"]) == 1  # refused before work: one line naming the setting
    assert "preset" in capsys.readouterr().err
