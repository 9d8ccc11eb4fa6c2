"""Decoder: the NeRF MLP mapping triplane features at a point to raw density and colour features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}


@dataclass(frozen=True)
class DecoderConfig:
    in_channels: int
    n_neurons: int
    n_hidden_layers: int
    activation: str = "silu"
    bias: bool = True


class NeRFMLP(nn.Module):
    """`forward(features (..., Cin)) -> (..., 4)`: raw density then three raw colour features.

    Layers: Linear(Cin, n), act, (n_hidden_layers - 1) x [Linear(n, n), act], Linear(n, 4); the linear
    layers sit at even indices of `layers` (`layers.0`, `layers.2`, ...), as in the checkpoint.
    """

    Config = DecoderConfig

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        try:
            act = _ACTIVATIONS[cfg.activation]
        except KeyError:
            raise ValueError(f"decoder: unknown activation {cfg.activation!r} (known: {sorted(_ACTIVATIONS)})") from None
        if cfg.n_hidden_layers < 1:
            raise ValueError("decoder: n_hidden_layers must be >= 1")
        self.cfg = cfg
        layers: list[nn.Module] = [nn.Linear(cfg.in_channels, cfg.n_neurons, bias=cfg.bias), act()]
        for _ in range(cfg.n_hidden_layers - 1):
            layers += [nn.Linear(cfg.n_neurons, cfg.n_neurons, bias=cfg.bias), act()]
        layers.append(nn.Linear(cfg.n_neurons, 4, bias=cfg.bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
