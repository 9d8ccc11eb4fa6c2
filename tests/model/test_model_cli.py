"""`asset3d model info` and `asset3d model fetch`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from asset3d.cli import main
from triposr import sha256_file
from triposr.devices import pick_dtype


def test_model_info_on_a_folder(tmp_path: Path, tiny_fixture: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_fixture["config"]))
    torch.save(tiny_fixture["state_dict"], tmp_path / "model.ckpt")
    assert main(["model", "info", str(tmp_path), "--device", "cpu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights_sha256"] == sha256_file(tmp_path / "model.ckpt")
    assert info["parameters"] == sum(v.numel() for v in tiny_fixture["state_dict"].values())
    auto = str(pick_dtype("auto", torch.device("cpu"))).removeprefix("torch.")  # bf16 on CPUs with AMX / AVX512-BF16
    assert info["device"] == "cpu" and info["dtype"] == auto
    assert info["stages"]["backbone"]["num_layers"] == 2
    assert main(["model", "info", str(tmp_path), "--device", "cpu"]) == 0
    assert "parameters" in capsys.readouterr().out


def test_model_info_offline_hub_id_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["model", "info", "stabilityai/TripoSR"]) == 2
    assert "asset3d model fetch stabilityai/TripoSR" in capsys.readouterr().err


def test_model_fetch_fails_clearly_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["model", "fetch", "stabilityai/TripoSR"]) == 2
    assert "stabilityai/TripoSR cannot be downloaded" in capsys.readouterr().err



def test_model_fetch_without_a_route_to_the_hub(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from loopback import unused_port

    from triposr.loading import PROXY_VARIABLES

    port = unused_port()
    for name in (*PROXY_VARIABLES, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert main(["model", "fetch", "stabilityai/TripoSR"]) == 2
    err = capsys.readouterr().err
    assert f"cannot open a connection to http://127.0.0.1:{port}" in err
    assert "stabilityai/TripoSR cannot be downloaded here" in err
