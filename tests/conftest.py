"""Shared fixtures: the read-only `../shared` data folder, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loopback import aws_env, s3_endpoint  # noqa: F401  (shared session fixtures: moto S3 on loopback)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASSET3D_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder beside the checkout (`../shared`); fails loudly when absent."""
    if not (SHARED / "README.md").is_file():
        pytest.fail(f"shared data folder not found at {SHARED} (set ASSET3D_SHARED or put shared/ beside the checkout)")
    return SHARED


@pytest.fixture(scope="session")
def tiny_model(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny conformance model as a model folder (``config.yaml`` + ``model.ckpt``), as workers load one.
    ``tests/model`` overrides it with the loaded model itself."""
    import torch
    import yaml

    fixture = torch.load(shared / "triposr" / "tiny_conformance.pt", weights_only=True)
    folder = tmp_path_factory.mktemp("tiny-model")
    (folder / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    torch.save(fixture["state_dict"], folder / "model.ckpt")
    return folder


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.manual_seed(0)
