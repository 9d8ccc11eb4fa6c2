"""Renderer: the triplane field (query points -> density, colour) and its volume rendering.

Conventions of the official renderer:

* a world point p in [-radius, radius]^3 samples the planes (x, y), (x, z), (y, z) at p / radius with
  bilinear `grid_sample` (align_corners=False, zero padding); the three feature vectors are
  concatenated plane0 | plane1 | plane2 before the decoder;
* density = activation(raw + density_bias) (exp by default), colour = sigmoid(features);
* rays are clipped to the box [-r(1-1e-3), r(1-1e-3)]^3; `num_samples_per_ray` midpoints between near
  and far; delta = 1 / num_samples (normalised, not world distance); white background; rays that miss
  the box are white.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

DEFAULT_CHUNK_SIZE = 1 << 18  # points per decoder call on GPU: bounds memory, not the grid
CPU_CHUNK_SIZE = 1 << 14  # on CPU, tiles that stay in cache run the width-64 MLP several times faster


class _TruncExp(torch.autograd.Function):
    """exp with a gradient clamped at exp(15): stable for training, identical forward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * torch.exp(x.clamp(max=15.0))


DENSITY_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exp": torch.exp,
    "trunc_exp": _TruncExp.apply,
    "softplus": F.softplus,
    "relu": F.relu,
}


@dataclass(frozen=True)
class RendererConfig:
    radius: float
    feature_reduction: str = "concat"
    density_activation: str = "exp"
    density_bias: float = -1.0
    num_samples_per_ray: int = 128


class TriplaneNeRFRenderer(nn.Module):
    """Field queries and volume rendering over scene codes; holds no parameters."""

    Config = RendererConfig

    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        if cfg.feature_reduction not in ("concat", "mean"):
            raise ValueError(f"renderer: feature_reduction must be concat or mean, got {cfg.feature_reduction!r}")
        if cfg.density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(
                f"renderer: unknown density_activation {cfg.density_activation!r} (known: {sorted(DENSITY_ACTIVATIONS)})"
            )
        self.cfg = cfg
        self._activation = DENSITY_ACTIVATIONS[cfg.density_activation]

    # -- the field -------------------------------------------------------------------------------
    def sample_features(self, scene_codes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Triplane features at world points.

        Parameters
        ----------
        scene_codes : (B, 3, C, R, R) float
        points : (B, N, 3) float, world coordinates

        Returns
        -------
        (B, N, 3C) float for concat, (B, N, C) for mean
        """
        b = scene_codes.shape[0]
        uv = points / self.cfg.radius  # (B, N, 3) in [-1, 1]
        grid = torch.stack([uv[..., [0, 1]], uv[..., [0, 2]], uv[..., [1, 2]]], dim=1)  # (B, 3, N, 2)
        grid = rearrange(grid, "b np n two -> (b np) 1 n two").to(scene_codes.dtype)
        planes = rearrange(scene_codes, "b np c h w -> (b np) c h w")
        feats = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # feats: (B*3, C, 1, N)
        if self.cfg.feature_reduction == "concat":
            return rearrange(feats, "(b np) c 1 n -> b n (np c)", b=b, np=3)
        return rearrange(feats, "(b np) c 1 n -> b n np c", b=b, np=3).mean(dim=2)

    def decode(self, decoder: nn.Module, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoder outputs -> activated density (..., 1) and colour (..., 3); also the raw density."""
        out = decoder(features)  # (..., 4)
        raw = out[..., 0:1]
        return {
            "density_raw": raw,
            "density": self._activation(raw + self.cfg.density_bias),
            "color": torch.sigmoid(out[..., 1:4]),
        }

    def query(
        self,
        decoder: nn.Module,
        scene_codes: torch.Tensor,
        points: torch.Tensor,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        keys: tuple[str, ...] = ("density", "color"),
    ) -> dict[str, torch.Tensor]:
        """Density and colour at world points, in chunks of `chunk_size` points per scene.

        Parameters
        ----------
        scene_codes : (B, 3, C, R, R) float
        points : (B, N, 3) float

        Returns
        -------
        dict with "density" (B, N, 1) activated and "color" (B, N, 3) in [0, 1] (and "density_raw" on request)
        """
        n = points.shape[1]
        step = n if chunk_size <= 0 else chunk_size
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for start in range(0, n, step):
            out = self.decode(decoder, self.sample_features(scene_codes, points[:, start : start + step]))
            for k in keys:
                parts[k].append(out[k])
        return {k: torch.cat(v, dim=1) if len(v) != 1 else v[0] for k, v in parts.items()}

    # -- volume rendering ------------------------------------------------------------------------
    def ray_box(self, rays_o: torch.Tensor, rays_d: torch.Tensor, valid_thresh: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Near and far of each ray against the slightly shrunk box, and which rays hit it.

        Parameters
        ----------
        rays_o, rays_d : (N, 3) float

        Returns
        -------
        near (N, 1), far (N, 1), valid (N,) bool; near = far = 0 where not valid
        """
        r = (1.0 - 1.0e-3) * self.cfg.radius
        d = torch.where(rays_d.abs() < 1e-6, torch.full_like(rays_d, 1e-6), rays_d)
        t0 = (r - rays_o) / d  # (N, 3)
        t1 = (-r - rays_o) / d
        near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
        far = torch.maximum(t0, t1).amin(dim=-1)
        valid = far - near > valid_thresh
        near = torch.where(valid, near, torch.zeros_like(near))
        far = torch.where(valid, far, torch.zeros_like(far))
        return near[:, None], far[:, None], valid

    def render(
        self,
        decoder: nn.Module,
        scene_codes: torch.Tensor,
        rays_o: torch.Tensor,
        rays_d: torch.Tensor,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> torch.Tensor:
        """Volume-render RGB over a white background.

        Parameters
        ----------
        scene_codes : (B, 3, C, R, R) float
        rays_o, rays_d : (B, H, W, 3) float, world frame

        Returns
        -------
        (B, H, W, 3) float in [0, 1]
        """
        return self.render_with_opacity(decoder, scene_codes, rays_o, rays_d, chunk_size)[0]

    def render_with_opacity(
        self,
        decoder: nn.Module,
        scene_codes: torch.Tensor,
        rays_o: torch.Tensor,
        rays_d: torch.Tensor,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB (B, H, W, 3) over white and opacity (B, H, W, 1); differentiable (used for training)."""
        b, h, w, _ = rays_o.shape
        s = self.cfg.num_samples_per_ray
        t = torch.linspace(0.0, 1.0, s + 1, device=rays_o.device, dtype=rays_o.dtype)
        t_mid = (t[:-1] + t[1:]) / 2.0  # (S,)
        delta = t[1:] - t[:-1]  # (S,)
        rays_per_chunk = max(1, chunk_size // s) if chunk_size > 0 else h * w
        rgb_out, opa_out = [], []
        for i in range(b):
            o = rays_o[i].reshape(-1, 3)
            d = rays_d[i].reshape(-1, 3)
            near, far, valid = self.ray_box(o, d)
            rgb = torch.ones(h * w, 3, device=o.device, dtype=scene_codes.dtype)
            opacity = torch.zeros(h * w, 1, device=o.device, dtype=scene_codes.dtype)
            idx = valid.nonzero(as_tuple=True)[0]
            rgb_parts, opa_parts = [], []
            for start in range(0, idx.numel(), rays_per_chunk):
                sel = idx[start : start + rays_per_chunk]
                z = near[sel] * (1.0 - t_mid) + far[sel] * t_mid  # (n, S)
                xyz = o[sel, None, :] + z[..., None] * d[sel, None, :]  # (n, S, 3)
                field = self.decode(decoder, self.sample_features(scene_codes[i : i + 1], xyz.reshape(1, -1, 3)))
                sigma = field["density"].reshape(-1, s)  # (n, S)
                color = field["color"].reshape(-1, s, 3)  # (n, S, 3)
                alpha = 1.0 - torch.exp(-delta * sigma)
                trans = torch.cumprod(1.0 - alpha[:, :-1] + 1e-10, dim=-1)
                trans = torch.cat([torch.ones_like(alpha[:, :1]), trans], dim=-1)  # (n, S) exclusive
                weights = alpha * trans
                acc = weights.sum(dim=-1, keepdim=True)  # (n, 1)
                rgb_parts.append((weights[..., None] * color).sum(dim=-2) + (1.0 - acc))
                opa_parts.append(acc)
            if rgb_parts:
                rgb = rgb.index_put((idx,), torch.cat(rgb_parts).to(rgb.dtype))
                opacity = opacity.index_put((idx,), torch.cat(opa_parts).to(opacity.dtype))
            rgb_out.append(rgb.reshape(h, w, 3))
            opa_out.append(opacity.reshape(h, w, 1))
        return torch.stack(rgb_out), torch.stack(opa_out)
