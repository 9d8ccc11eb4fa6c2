"""Model configuration: the official `config.yaml` schema, parsed into small frozen dataclasses.

The official file names each stage's class as a dotted import path (`*_cls`). Nothing is ever
imported by name here: every accepted name maps, through the explicit `REGISTRY`, to one of this
package's classes, and an unknown name is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES: tuple[str, ...] = (
    "image_tokenizer",
    "tokenizer",
    "backbone",
    "post_processor",
    "decoder",
    "renderer",
)


class ConfigError(ValueError):
    """A model configuration that does not describe a model this package can build."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of the model: the registry key of its class and its raw options."""

    cls: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class TSRConfig:
    """The whole model: conditioning image size and one `StageSpec` per stage."""

    cond_image_size: int
    stages: Mapping[str, StageSpec] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The config back in the official file's shape (what `config.yaml` holds)."""
        out: dict[str, Any] = {"cond_image_size": self.cond_image_size}
        for name in STAGES:
            spec = self.stages[name]
            out[f"{name}_cls"] = spec.cls
            out[name] = _plain(spec.options)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def parse_config(raw: Mapping[str, Any]) -> TSRConfig:
    """Validate a config dict shaped like the official `config.yaml`.

    Raises `ConfigError` naming the missing or unexpected key.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"model config must be a mapping, got {type(raw).__name__}")
    expected = {"cond_image_size"} | {f"{s}_cls" for s in STAGES} | set(STAGES)
    unknown = sorted(set(raw) - expected)
    if unknown:
        raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
    missing = sorted(k for k in expected if k not in raw)
    if missing:
        raise ConfigError(f"model config is missing: {', '.join(missing)}")
    size = raw["cond_image_size"]
    if not isinstance(size, int) or size <= 0:
        raise ConfigError(f"cond_image_size must be a positive integer, got {size!r}")
    stages: dict[str, StageSpec] = {}
    for name in STAGES:
        cls = raw[f"{name}_cls"]
        options = raw[name] or {}
        if not isinstance(cls, str):
            raise ConfigError(f"{name}_cls must be a string, got {cls!r}")
        if not isinstance(options, Mapping):
            raise ConfigError(f"{name} must be a mapping of options, got {type(options).__name__}")
        stages[name] = StageSpec(cls=cls, options=dict(options))
    return TSRConfig(cond_image_size=size, stages=stages)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML model config (the edge where YAML is parsed)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a YAML mapping")
    return data


def build_stage_config(config_cls: type, options: Mapping[str, Any], stage: str) -> Any:
    """Instantiate a stage's frozen config dataclass from raw options; unknown options are an error."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"{stage}: unknown options {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    try:
        return config_cls(**options)
    except TypeError as exc:  # a required option is missing
        raise ConfigError(f"{stage}: {exc}") from None
