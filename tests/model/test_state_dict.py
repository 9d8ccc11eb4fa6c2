"""The full model's parameters are the official checkpoint's: names, shapes, dtypes; the config is validated."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from triposr import TSR, ConfigError, load_config_file


@pytest.fixture(scope="module")
def official_config(shared: Path) -> dict[str, Any]:
    return load_config_file(shared / "triposr" / "config.yaml")


def test_full_model_state_dict_equals_manifest(official_config: dict[str, Any], shared: Path) -> None:
    manifest = json.loads((shared / "triposr" / "official_state_dict_manifest.json").read_text())
    with torch.device("meta"):
        model = TSR.from_config(official_config)
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    theirs = {name: (list(shape), dtype) for name, shape, dtype in manifest["tensors"]}
    assert sorted(set(ours) - set(theirs)) == []
    assert sorted(set(theirs) - set(ours)) == []
    mismatched = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert mismatched == {}
    assert model.num_parameters() == manifest["total_params"] == 419_275_628


def test_meta_device_model_loads_official_names_strictly(official_config: dict[str, Any]) -> None:
    with torch.device("meta"):
        model = TSR.from_config(official_config)
        state = {k: torch.empty_like(v) for k, v in model.state_dict().items()}
    result = model.load_state_dict(state, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_unknown_class_name_is_an_error_not_an_import(official_config: dict[str, Any]) -> None:
    cfg = copy.deepcopy(official_config)
    cfg["decoder_cls"] = "os.system"
    with pytest.raises(ConfigError, match="decoder_cls: unknown class 'os.system'"):
        TSR.from_config(cfg)


def test_unknown_option_and_missing_stage_are_errors(official_config: dict[str, Any]) -> None:
    cfg = copy.deepcopy(official_config)
    cfg["backbone"]["num_layerz"] = 3
    with pytest.raises(ConfigError, match="backbone: unknown options num_layerz"):
        TSR.from_config(cfg)
    cfg = copy.deepcopy(official_config)
    del cfg["renderer"]
    with pytest.raises(ConfigError, match="missing: renderer"):
        TSR.from_config(cfg)


def test_inline_vit_config_overrides_builtin(tiny_fixture: dict[str, Any]) -> None:
    model = TSR.from_config(tiny_fixture["config"])
    vit = model.image_tokenizer.model.config
    assert (vit.hidden_size, vit.num_hidden_layers, vit.num_attention_heads) == (64, 2, 2)


def test_state_dict_round_trip_keeps_official_names(tiny_model: TSR, tiny_fixture: dict[str, Any]) -> None:
    state = tiny_model.state_dict()
    assert sorted(state) == sorted(tiny_fixture["state_dict"])  # official names (order may differ)
    fresh = TSR.from_config(tiny_fixture["config"])
    fresh.load_state_dict(state, strict=True)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, tiny_fixture["state_dict"][k]), k
