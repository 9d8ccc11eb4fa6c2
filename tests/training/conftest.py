"""Fixtures for the training tests: small synthetic datasets (made once per session) and the tiny model config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from training.data.synthetic import SynthConfig, make_dataset

# small files, same generator: a few seconds for the whole session
SMALL = SynthConfig(cond_size=256, view_size=256, views=3, n_surface=2048, n_near=2048, n_uniform=2048)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three objects (a carton, a can and a bottle: kinds follow the index) of seed 11."""
    return make_dataset(11, 3, tmp_path_factory.mktemp("synthetic") / "seed11", SMALL)


@pytest.fixture(scope="session")
def tiny_config(shared: Path) -> dict[str, Any]:
    """The tiny TSR config of the conformance fixture (1-2 layers, 8 channels)."""
    return torch.load(shared / "triposr" / "tiny_conformance.pt", weights_only=True)["config"]


@pytest.fixture()
def tiny_fixture_model(shared: Path) -> Any:
    """The tiny model with the conformance fixture's weights."""
    from triposr import TSR

    fx = torch.load(shared / "triposr" / "tiny_conformance.pt", weights_only=True)
    model = TSR.from_config(fx["config"])
    model.load_state_dict(fx["state_dict"], strict=True)
    return model.eval()
