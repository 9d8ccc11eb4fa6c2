"""Triplane tokens: the learned queries the backbone turns into a triplane.

Three planes (xy, xz, yz) of `plane_size`^2 tokens with `num_channels` channels each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn


@dataclass(frozen=True)
class TriplaneTokenizerConfig:
    plane_size: int
    num_channels: int


class TriplaneTokenizer(nn.Module):
    """Learned triplane embeddings, flattened to a 1-D token sequence for the backbone."""

    Config = TriplaneTokenizerConfig

    def __init__(self, cfg: TriplaneTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Parameter(
            torch.randn(3, cfg.num_channels, cfg.plane_size, cfg.plane_size) / math.sqrt(cfg.num_channels)
        )  # (3, Ct, Hp, Wp)

    def forward(self, batch_size: int) -> torch.Tensor:
        """(B, Ct, 3 * Hp * Wp) tokens, channels first."""
        tokens = repeat(self.embeddings, "np c h w -> b np c h w", b=batch_size)
        return rearrange(tokens, "b np c h w -> b c (np h w)")

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, Ct, 3 * Hp * Wp) -> planes (B, 3, Ct, Hp, Wp)."""
        p = self.cfg.plane_size
        if tokens.shape[-1] != 3 * p * p:
            raise ValueError(f"expected {3 * p * p} triplane tokens, got {tokens.shape[-1]}")
        return rearrange(tokens, "b c (np h w) -> b np c h w", np=3, h=p, w=p)
