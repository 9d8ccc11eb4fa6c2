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


def test_model_fetch_downloads_config_and_weights_from_the_hub(
    tmp_path: Path, tiny_fixture: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real huggingface_hub client against a stand-in hub on loopback (`HF_ENDPOINT`); a second fetch
    downloads nothing."""
    from hub_stand_in import COMMIT, hub_stand_in
    from huggingface_hub import constants

    from triposr.loading import PROXY_VARIABLES

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.yaml").write_text(yaml.safe_dump(tiny_fixture["config"]))
    torch.save(tiny_fixture["state_dict"], repo / "model.ckpt")
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # huggingface_hub read HF_HOME at import
    for name in (*PROXY_VARIABLES, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    with hub_stand_in({"stabilityai/TripoSR": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert main(["model", "fetch", "stabilityai/TripoSR"]) == 0
        snapshot = cache / "models--stabilityai--TripoSR" / "snapshots" / COMMIT
        out = capsys.readouterr().out
        assert f"fetched stabilityai/TripoSR: {snapshot / 'config.yaml'}, {snapshot / 'model.ckpt'}" in out
        assert f"weights sha256 {sha256_file(repo / 'model.ckpt')}" in out
        assert sha256_file(snapshot / "model.ckpt") == sha256_file(repo / "model.ckpt")
        before = len(hub.requests)
        assert main(["model", "fetch", "stabilityai/TripoSR"]) == 0
        assert {method for method, _path in hub.requests[before:]} == {"HEAD"}  # cached: nothing downloaded again
        assert main(["model", "fetch", "nobody/nothing"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("asset3d model fetch: could not download nobody/nothing from http://127.0.0.1:")
        assert "RepositoryNotFoundError" in err and len(err.splitlines()) == 1
