"""Post-processor: upsample each triplane 2x with a transposed convolution into the scene codes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn


@dataclass(frozen=True)
class PostProcessorConfig:
    in_channels: int
    out_channels: int


class TriplaneUpsampler(nn.Module):
    """`forward(planes (B, 3, Ci, H, W)) -> scene codes (B, 3, Co, 2H, 2W)`."""

    Config = PostProcessorConfig

    def __init__(self, cfg: PostProcessorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.upsample = nn.ConvTranspose2d(cfg.in_channels, cfg.out_channels, kernel_size=2, stride=2)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        b = planes.shape[0]
        x = rearrange(planes, "b np c h w -> (b np) c h w")
        x = self.upsample(x)  # (B*3, Co, 2H, 2W)
        return rearrange(x, "(b np) c h w -> b np c h w", b=b, np=3)
