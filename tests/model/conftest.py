"""Fixtures for the model tests: the tiny conformance fixture and a model built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from triposr import TSR


@pytest.fixture(scope="session")
def tiny_fixture(shared: Path) -> dict[str, Any]:
    return torch.load(shared / "triposr" / "tiny_conformance.pt", weights_only=True)


@pytest.fixture(scope="session")
def tiny_model(tiny_fixture: dict[str, Any]) -> TSR:
    model = TSR.from_config(tiny_fixture["config"])
    model.load_state_dict(tiny_fixture["state_dict"], strict=True)
    return model.eval()
