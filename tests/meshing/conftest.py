"""Fixtures of the meshing tests: the real TripoSR output and the assets built from it (once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trimesh

from meshing import AssetOptions, AssetResult, build_asset


@pytest.fixture(scope="session")
def flor(shared: Path) -> trimesh.Trimesh:
    """`../shared/meshes/triposr_flor.obj`: 34,313 vertices, 68,508 faces, vertex colours, z-up."""
    path = shared / "meshes" / "triposr_flor.obj"
    if not path.is_file():
        pytest.fail(f"{path} is missing from the shared data folder")
    return trimesh.load(path, process=False)


@pytest.fixture(scope="session")
def flor_assets(flor: trimesh.Trimesh, tmp_path_factory: pytest.TempPathFactory) -> dict[str, AssetResult]:
    """Every preset built from the flor mesh at 20k faces (textures at the preset defaults).

    `web` and `amazon` alone; `shopify` as a storefront asking for three channels at once
    (`shopify,apple,google`: one 2048 px bake shared by the three, `asset.glb`, `asset.usdz`,
    `asset.google.glb`).
    """
    out = {}
    for key, preset in (("web", "web"), ("shopify", "shopify,apple,google"), ("amazon", "amazon")):
        out[key] = build_asset(
            flor,
            AssetOptions(preset=preset, faces=20_000, previews=key == "web"),
            out_dir=tmp_path_factory.mktemp(key),
            metadata={"sku": f"FLOR-{key}", "run_id": "test-run", "source_photo_sha256": "ab" * 32},
        )
    return out
