"""Loading from folders (.ckpt and .safetensors), refusing unsafe pickles, and the offline hub path."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from loopback import unused_port
from safetensors.torch import save_file

from triposr import ModelNotAvailable, UnsafeCheckpoint, load_model, sha256_file


def _folder(tmp_path: Path, fixture: dict[str, Any], weights: str) -> Path:
    folder = tmp_path / weights.replace(".", "_")
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    if weights.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in fixture["state_dict"].items()}, str(folder / weights))
    else:
        torch.save(fixture["state_dict"], folder / weights)
    return folder


@pytest.mark.parametrize("weights", ["model.ckpt", "model.safetensors"])
def test_folder_round_trip(tmp_path: Path, tiny_fixture: dict[str, Any], weights: str) -> None:
    folder = _folder(tmp_path, tiny_fixture, weights)
    model = load_model(folder, device="cpu", dtype="fp32")
    assert model.weights_sha256 == sha256_file(folder / weights)
    assert len(model.weights_sha256) == 64
    assert model.model_id == str(folder.resolve())
    for k, v in model.state_dict().items():
        assert torch.equal(v, tiny_fixture["state_dict"][k]), k
    assert torch.equal(model.image_tokenizer.image_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    with torch.no_grad():
        codes = model.encode(tiny_fixture["rgb_cond"])
    torch.testing.assert_close(codes, tiny_fixture["scene_codes"], atol=1e-5, rtol=1e-4)


class _RunsCode:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path, tiny_fixture: dict[str, Any]) -> None:
    folder = _folder(tmp_path, tiny_fixture, "model.ckpt")
    with open(folder / "model.ckpt", "wb") as fh:
        pickle.dump({"state_dict": _RunsCode()}, fh)
    with pytest.raises(UnsafeCheckpoint, match="refused"):
        load_model(folder, device="cpu")


def test_missing_weights_name_the_folder(tmp_path: Path, tiny_fixture: dict[str, Any]) -> None:
    folder = _folder(tmp_path, tiny_fixture, "model.ckpt")
    (folder / "model.ckpt").unlink()
    with pytest.raises(ModelNotAvailable, match="no weights"):
        load_model(folder)


def _no_route_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: bool) -> Path:
    """An empty hub cache under tmp_path, and either HF_HUB_OFFLINE or an endpoint nobody listens on."""
    from huggingface_hub import constants

    from triposr.loading import PROXY_VARIABLES

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # huggingface_hub read the variable at import
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    return cache


@pytest.mark.parametrize("offline", [True, False])
def test_hub_id_without_network_raises_model_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: bool
) -> None:
    _no_route_to_the_hub(tmp_path, monkeypatch, offline)
    with pytest.raises(ModelNotAvailable) as exc:
        load_model("stabilityai/TripoSR")
    message = str(exc.value)
    assert "stabilityai/TripoSR" in message
    assert "asset3d model fetch stabilityai/TripoSR" in message
    assert ("HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached") in message


def test_cached_hub_model_loads_without_a_route_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_fixture: dict[str, Any]
) -> None:
    """A worker without network loads the weights an earlier `asset3d model fetch` left in the hub cache."""
    from triposr.loading import hub_reachable

    cache = _no_route_to_the_hub(tmp_path, monkeypatch, offline=False)
    assert not hub_reachable()
    commit = "0" * 40
    repo = cache / "models--stabilityai--TripoSR"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    snapshot = _folder(tmp_path, tiny_fixture, "model.ckpt").rename(repo / "snapshots" / commit)
    model = load_model("stabilityai/TripoSR", device="cpu", dtype="fp32")
    assert model.weights_sha256 == sha256_file(snapshot / "model.ckpt")
    with torch.no_grad():
        codes = model.encode(tiny_fixture["rgb_cond"])
    torch.testing.assert_close(codes, tiny_fixture["scene_codes"], atol=1e-5, rtol=1e-4)


def test_source_that_is_neither_folder_nor_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="neither a model folder nor a hub id"):
        load_model(tmp_path / "does-not-exist")


def test_fetch_from_a_repo_without_weights_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_fixture: dict[str, Any]
) -> None:
    """`fetch_model` against a stand-in hub (`HF_ENDPOINT` on loopback) whose repo has a config and no weights."""
    from hub_stand_in import hub_stand_in

    from triposr.loading import fetch_model

    cache = _no_route_to_the_hub(tmp_path, monkeypatch, offline=False)
    repo = _folder(tmp_path, tiny_fixture, "model.ckpt")
    (repo / "model.ckpt").unlink()
    with hub_stand_in({"someone/config-only": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        with pytest.raises(ModelNotAvailable, match=r"has config.yaml but no weights \(model.safetensors or model.ckpt\)"):
            fetch_model("someone/config-only", progress=False)
    assert any(cache.rglob("config.yaml"))


def test_weights_sha256_is_remembered_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from triposr import loading

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "model.ckpt"
    weights.write_bytes(b"a" * (2 << 20))
    first = loading.sha256_file(weights)
    assert first == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (tmp_path / "cache" / "triposr" / "sha256.json").is_file()  # another process reads it from there
    loading._hashes.clear()
    assert loading.sha256_file(weights) == first
    weights.write_bytes(b"b" * (2 << 20))  # same size, new bytes, new mtime: hashed again
    assert loading.sha256_file(weights) == hashlib.sha256(weights.read_bytes()).hexdigest() != first
