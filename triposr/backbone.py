"""Backbone: a 1-D transformer that reads the image tokens (cross-attention) into the triplane tokens.

GroupNorm -> proj_in -> N x [LayerNorm -> self-attention ; LayerNorm -> cross-attention ; LayerNorm ->
GEGLU feed-forward] -> proj_out -> + residual. Attention runs through
`torch.nn.functional.scaled_dot_product_attention`. Parameter names follow the official checkpoint
(`transformer_blocks.{i}.attn1.to_q`, `ff.net.0.proj`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class BackboneConfig:
    in_channels: int
    num_attention_heads: int = 16
    attention_head_dim: int = 64
    num_layers: int = 16
    cross_attention_dim: int | None = None
    norm_num_groups: int = 32
    dropout: float = 0.0
    attention_bias: bool = False
    activation_fn: str = "geglu"
    gradient_checkpointing: bool = False


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None, bias: bool, dropout: float) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        q = rearrange(self.to_q(x), "b t (h d) -> b h t d", h=self.heads)  # (B, h, T, d)
        k = rearrange(self.to_k(ctx), "b s (h d) -> b h s d", h=self.heads)  # (B, h, S, d)
        v = rearrange(self.to_v(ctx), "b s (h d) -> b h s d", h=self.heads)  # (B, h, S, d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, T, d)
        out = rearrange(out, "b h t d -> b t (h d)")  # (B, T, h*d)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    """Linear to 2 x inner, then value * GELU(gate)."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)  # (B, T, inner) each
        if torch.is_grad_enabled():
            return value * F.gelu(gate)
        return F.gelu(gate).mul_(value)  # inference: one (B, T, inner) buffer fewer


class FeedForward(nn.Module):
    """GEGLU -> dropout -> linear, applied token by token.

    At inference on the CPU the tokens go through in slices of at most `rows` (all batches
    flattened), so the (rows, 8 x dim) projection stays at 16 MiB in fp32: the whole (B, 3072, 8192)
    projection is 100 MB per block, which the C library maps fresh and page-faults in on every pass.
    The result is the same, token for token. Training, and GPUs (whose caching allocator keeps
    blocks), run the whole sequence at once.
    """

    rows = 512

    def __init__(self, dim: int, dropout: float, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim)])

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (B*T, D)
        if torch.is_grad_enabled() or x.device.type != "cpu" or flat.shape[0] <= self.rows:
            return self._tokens(x)
        parts = [self._tokens(flat[i : i + self.rows]) for i in range(0, flat.shape[0], self.rows)]
        return torch.cat(parts).view(x.shape)  # (B, T, D)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, cfg: BackboneConfig) -> None:
        super().__init__()
        heads, hd = cfg.num_attention_heads, cfg.attention_head_dim
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, hd, None, cfg.attention_bias, cfg.dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, hd, cfg.cross_attention_dim, cfg.attention_bias, cfg.dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, cfg.dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))  # (B, T, D)
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer1D(nn.Module):
    """`forward(tokens (B, C, T), context (B, S, Cc)) -> (B, C, T)`."""

    Config = BackboneConfig

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if cfg.activation_fn != "geglu":
            raise ValueError(f"backbone: only the geglu feed-forward is supported, got {cfg.activation_fn!r}")
        self.cfg = cfg
        inner = cfg.num_attention_heads * cfg.attention_head_dim
        self.norm = nn.GroupNorm(cfg.norm_num_groups, cfg.in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(cfg.in_channels, inner)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, cfg) for _ in range(cfg.num_layers)])
        self.proj_out = nn.Linear(inner, cfg.in_channels)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        residual = tokens  # (B, C, T)
        x = rearrange(self.norm(tokens), "b c t -> b t c")
        x = self.proj_in(x)  # (B, T, D)
        for block in self.transformer_blocks:
            if self.cfg.gradient_checkpointing and self.training:
                x = checkpoint(block, x, context, use_reentrant=False)
            else:
                x = block(x, context)
        x = self.proj_out(x)  # (B, T, C)
        return rearrange(x, "b t c -> b c t") + residual
