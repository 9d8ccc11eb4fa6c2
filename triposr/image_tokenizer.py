"""Image tokenizer: DINO ViT-B/16 (transformers' `ViTModel`) turning the conditioning image into tokens.

Two things keep it checkpoint-exact whatever transformers is installed:

* position embeddings are interpolated as transformers 4.35 did (the version the official weights
  were trained with): bicubic with `scale_factor=(h0 + 0.1) / 14`, not `size=(h0, w0)`;
* state-dict keys are always the 4.35 names (`encoder.layer.{i}.attention.attention.query...`). When
  the installed transformers names its layers differently (5.x: `layers.{i}.attention.q_proj...`),
  keys are mapped on load and on save.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformers import ViTConfig, ViTModel

# facebook/dino-vitb16, built in so that no hub call is needed to construct the model.
DINO_VITB16: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
}
BUILTIN_VIT_CONFIGS: dict[str, dict[str, Any]] = {"facebook/dino-vitb16": DINO_VITB16}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTokenizerConfig:
    pretrained_model_name_or_path: str = "facebook/dino-vitb16"
    vit_config: Mapping[str, Any] | None = None  # inline ViTConfig arguments; override the built-in
    freeze_backbone_params: bool = False
    enable_gradient_checkpointing: bool = False

    def resolved_vit_config(self) -> dict[str, Any]:
        if self.vit_config is not None:
            return {**DINO_VITB16, **dict(self.vit_config)}
        try:
            return dict(BUILTIN_VIT_CONFIGS[self.pretrained_model_name_or_path])
        except KeyError:
            raise ValueError(
                f"image_tokenizer: no built-in ViT config for {self.pretrained_model_name_or_path!r}; "
                "give the ViTConfig arguments inline as image_tokenizer.vit_config"
            ) from None


def legacy_interpolate_pos_encoding(
    position_embeddings: torch.Tensor, height: int, width: int, patch_size: int
) -> torch.Tensor:
    """Position embeddings for an HxW input, interpolated exactly as transformers 4.35 did.

    Parameters
    ----------
    position_embeddings : (1, 1 + n*n, C) float
        CLS position then the n x n grid the ViT was trained with.
    height, width : int
        Input size in pixels.

    Returns
    -------
    (1, 1 + (height // patch) * (width // patch), C) float
    """
    num_positions = position_embeddings.shape[1] - 1
    grid = int(math.sqrt(num_positions))
    h0 = height // patch_size + 0.1  # the 0.1 that the checkpoint was trained with
    w0 = width // patch_size + 0.1
    cls_pos = position_embeddings[:, :1]  # (1, 1, C)
    patch_pos = rearrange(position_embeddings[:, 1:], "1 (h w) c -> 1 c h w", h=grid, w=grid)
    patch_pos = F.interpolate(
        patch_pos, scale_factor=(h0 / grid, w0 / grid), mode="bicubic", align_corners=False
    )  # (1, C, int(h0), int(w0))
    patch_pos = rearrange(patch_pos, "1 c h w -> 1 (h w) c")
    return torch.cat([cls_pos, patch_pos], dim=1)


# Per-layer names: (transformers >= 5, transformers 4.35 = the official checkpoint), under
# `layers.{i}.` and `encoder.layer.{i}.` respectively. Embeddings, final layernorm and pooler agree.
_LAYER_NAMES_5X: tuple[tuple[str, str], ...] = (
    ("attention.q_proj", "attention.attention.query"),
    ("attention.k_proj", "attention.attention.key"),
    ("attention.v_proj", "attention.attention.value"),
    ("attention.o_proj", "attention.output.dense"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
    ("layernorm_before", "layernorm_before"),
    ("layernorm_after", "layernorm_after"),
)
_NATIVE_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_OFFICIAL_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


def _rename(key: str, to_official: bool) -> str:
    """One ViT key between the installed transformers' name and the checkpoint's name."""
    match = (_NATIVE_LAYER if to_official else _OFFICIAL_LAYER).match(key)
    if match is None:
        return key
    index, rest = match.groups()
    for native, official in _LAYER_NAMES_5X:
        src, dst = (native, official) if to_official else (official, native)
        if rest.startswith(src + "."):
            head = "encoder.layer" if to_official else "layers"
            return f"{head}.{index}.{dst}{rest[len(src):]}"
    return key


class DINOImageTokenizer(nn.Module):
    """RGB images -> ViT tokens (last hidden state, CLS included), channels first.

    `forward(images (B, 3, H, W) in [0, 1]) -> (B, C, 1 + H/16 * W/16)`.
    """

    Config = ImageTokenizerConfig

    def __init__(self, cfg: ImageTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        vit_cfg = ViTConfig(**cfg.resolved_vit_config())
        vit_cfg._attn_implementation = "sdpa"  # torch's fused attention
        self.model = ViTModel(vit_cfg, add_pooling_layer=True)
        if cfg.enable_gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if cfg.freeze_backbone_params:
            self.model.requires_grad_(False)
        patch = vit_cfg.patch_size

        def interpolate(emb_self: nn.Module, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
            n_patches = embeddings.shape[1] - 1
            n_positions = emb_self.position_embeddings.shape[1] - 1
            if n_patches == n_positions and height == width:
                return emb_self.position_embeddings
            return legacy_interpolate_pos_encoding(emb_self.position_embeddings, height, width, patch)

        self.model.embeddings.interpolate_pos_encoding = types.MethodType(interpolate, self.model.embeddings)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self._map_names = not any(k.startswith("encoder.layer.") for k in self.model.state_dict(keep_vars=True))
        self.register_state_dict_post_hook(_to_official_names)
        self.register_load_state_dict_pre_hook(_to_native_names)

    def reset_buffers(self) -> None:
        with torch.no_grad():
            self.image_mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.image_std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.image_mean.to(images.dtype)) / self.image_std.to(images.dtype)  # (B, 3, H, W)
        out = self.model(pixel_values=x, interpolate_pos_encoding=True)
        return rearrange(out.last_hidden_state, "b t c -> b c t")  # (B, C, Nt)


def _rename_in_place(module: DINOImageTokenizer, state_dict: dict[str, Any], prefix: str, to_official: bool) -> None:
    if not module._map_names:
        return
    base = prefix + "model."
    items = list(state_dict.items())
    state_dict.clear()  # rebuilt in place so that the key order is kept
    for key, value in items:
        if key.startswith(base):
            key = base + _rename(key[len(base) :], to_official)
        state_dict[key] = value


def _to_official_names(module: DINOImageTokenizer, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    _rename_in_place(module, state_dict, prefix, to_official=True)


def _to_native_names(
    module: DINOImageTokenizer,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    _rename_in_place(module, state_dict, prefix, to_official=False)
