"""TSR: the whole TripoSR model, image -> scene codes -> field -> render or mesh.

Stages (one module each): `image_tokenizer` (DINO ViT) -> `tokenizer` (learned triplane tokens) ->
`backbone` (1-D transformer, cross-attending to the image tokens) -> `post_processor` (2x upsampling
into scene codes) ; `decoder` (NeRF MLP) + `renderer` (field queries, volume rendering) ;
`isosurface` (density grid + marching cubes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from einops import rearrange
from torch import nn

from triposr.config import STAGES, TSRConfig, build_stage_config, parse_config
from triposr.isosurface import IsosurfaceConfig, dense_density_grid, marching_cubes, sparse_density_grid
from triposr.registry import resolve
from triposr.renderer import CPU_CHUNK_SIZE, DEFAULT_CHUNK_SIZE

#: the stages from image to scene codes (everything but the NeRF decoder and the renderer)
ENCODER_STAGES = ("image_tokenizer", "tokenizer", "backbone", "post_processor")


def images_to_tensor(images: Any) -> torch.Tensor:
    """(B, H, W, 3) float32 in [0, 1] from a tensor, an array, or a list of PIL images / arrays.

    uint8 input is divided by 255; float input is taken as already in [0, 1].
    """
    if isinstance(images, torch.Tensor):
        x = images
    elif isinstance(images, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, Sequence):
        arrays = [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in images]
        x = torch.from_numpy(np.stack(arrays))
    else:
        raise TypeError(f"images must be a tensor, an array or a list of images, got {type(images).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3) RGB, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


class TSR(nn.Module):
    """TripoSR inference (and the forward pass training differentiates through).

    Attributes
    ----------
    weights_sha256 : str | None
        sha256 of the weights file the model was loaded from (provenance); None for fresh weights.
    model_id : str | None
        where the weights came from (hub id or folder).
    compute_dtype : torch.dtype
        fp32, or bf16 / fp16 run under autocast. Weights stay fp32 unless `cast_encoder_weights`
        stores the encoder's in the compute dtype (what `load_model` does for bf16 / fp16).
    chunk_size : int | None
        points per decoder call in field queries; bounds memory. None picks a size per device:
        small tiles on CPU (they stay in cache, several times faster), large ones on GPU.
    """

    def __init__(self, cfg: TSRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # resolve and validate every stage before building any (an error costs nothing)
        plan = []
        for name in STAGES:
            spec = cfg.stages[name]
            cls = resolve(name, spec.cls)
            plan.append((name, cls, build_stage_config(cls.Config, spec.options, name)))  # type: ignore[attr-defined]
        for name, cls, stage_cfg in plan:
            self.add_module(name, cls(stage_cfg))
        self.weights_sha256: str | None = None
        self.model_id: str | None = None
        self.compute_dtype: torch.dtype = torch.float32
        self.chunk_size: int | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | TSRConfig) -> TSR:
        """Build from a dict shaped like the official `config.yaml` (works under `torch.device("meta")`)."""
        return cls(cfg if isinstance(cfg, TSRConfig) else parse_config(cfg))

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def radius(self) -> float:
        return float(self.renderer.cfg.radius)

    @property
    def query_chunk_size(self) -> int:
        """Points per decoder call: `chunk_size`, or the device's default."""
        if self.chunk_size is not None:
            return self.chunk_size
        return CPU_CHUNK_SIZE if self.device.type == "cpu" else DEFAULT_CHUNK_SIZE

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to `compute_dtype` on the model's device (a no-op for fp32)."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.compute_dtype)

    def preprocess(self, images: Any) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1] -> (B, 3, S, S) on the model's device, resized as the official preprocessor."""
        x = images_to_tensor(images).to(self.device)
        x = rearrange(x, "b h w c -> b c h w")
        s = self.cfg.cond_image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, (s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    # -- the public API ------------------------------------------------------------------------------
    def encode(self, images: Any) -> torch.Tensor:
        """Images (B, H, W, 3) RGB in [0, 1], object on gray -> scene codes (B, 3, C, R, R).

        Gradients follow the caller's grad mode (wrap in `torch.inference_mode()` for inference).
        """
        x = self.preprocess(images)  # (B, 3, S, S)
        with self.autocast():
            image_tokens = self.image_tokenizer(x)  # (B, Ci, Nt)
            context = rearrange(image_tokens, "b c t -> b t c")  # (B, Nt, Ci)
            tokens = self.tokenizer(x.shape[0])  # (B, Ct, 3*P*P)
            tokens = self.backbone(tokens, context)  # (B, Ct, 3*P*P)
            scene_codes = self.post_processor(self.tokenizer.detokenize(tokens))  # (B, 3, C, R, R)
        return scene_codes.float()

    forward = encode

    def image_tokens(self, images: Any) -> torch.Tensor:
        """The ViT tokens (B, C, Nt) of the conditioning images (for inspection and tests)."""
        with self.autocast():
            return self.image_tokenizer(self.preprocess(images)).float()

    def query(self, scene_codes: torch.Tensor, points: torch.Tensor, chunk_size: int | None = None) -> dict[str, torch.Tensor]:
        """Field at world points: points (B, N, 3) -> {"density": (B, N, 1) activated, "color": (B, N, 3)}."""
        with self.autocast():
            out = self.renderer.query(
                self.decoder,
                scene_codes.to(self.device),
                points.to(self.device, torch.float32),
                chunk_size=self.query_chunk_size if chunk_size is None else chunk_size,
                keys=("density", "color"),
            )
        return {k: v.float() for k, v in out.items()}

    def render(self, scene_codes: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor) -> torch.Tensor:
        """Rays (B, H, W, 3) origin and direction -> RGB (B, H, W, 3) over white."""
        with self.autocast():
            rgb = self.renderer.render(
                self.decoder,
                scene_codes.to(self.device),
                rays_o.to(self.device),
                rays_d.to(self.device),
                self.query_chunk_size,
            )
        return rgb.float()

    def density_fn(self, scene_code: torch.Tensor) -> Any:
        """The field of one scene (3, C, R, R) as a function world points (N, 3) -> density (N,)."""
        code = scene_code[None].to(self.device)

        def fn(points: torch.Tensor) -> torch.Tensor:
            return self.query(code, points[None])["density"][0, :, 0]

        return fn

    def extract_mesh(
        self,
        scene_codes: torch.Tensor,
        resolution: int = 256,
        threshold: float = 25.0,
        vertex_colors: bool = True,
        method: Literal["sparse", "dense"] = "sparse",
    ) -> list[trimesh.Trimesh]:
        """One mesh per scene, in the official z-up world frame.

        An empty surface gives an empty mesh with `mesh.metadata["surface_empty"] = True` (never an
        error). `mesh.metadata["extraction"]` holds the method, resolution, threshold and query count.
        """
        if method not in ("sparse", "dense"):
            raise ValueError(f"method must be 'sparse' or 'dense', got {method!r}")
        cfg = IsosurfaceConfig(resolution=resolution, threshold=threshold)
        grid_fn = sparse_density_grid if method == "sparse" else dense_density_grid
        meshes = []
        with torch.no_grad():
            for code in scene_codes:
                grid = grid_fn(self.density_fn(code), cfg, self.radius, self.device)
                verts, faces = marching_cubes(grid.density, threshold, self.radius, grid.box)
                colors = None
                if vertex_colors and len(verts):
                    pts = torch.from_numpy(verts)[None]
                    colors = self.query(code[None], pts)["color"][0].clamp(0, 1).cpu().numpy()
                mesh = trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=colors, process=False)
                mesh.metadata["surface_empty"] = len(faces) == 0
                mesh.metadata["extraction"] = {
                    "method": grid.method,
                    "resolution": resolution,
                    "threshold": threshold,
                    "queries": grid.queries,
                }
                meshes.append(mesh)
        return meshes

    def cast_encoder_weights(self, dtype: torch.dtype | None = None) -> TSR:
        """Store the weights of the encoding stages (tokenizer, backbone, post-processor) in `dtype`.

        For bf16 / fp16 inference: half the memory, and autocast no longer casts ~420 M weights on every
        pass. The decoder stays fp32 (it is tiny, and the surface threshold wants its precision), and
        the computation stays under autocast, so norms and softmax still run in fp32. Not for training.
        `dtype` defaults to `compute_dtype`.
        """
        dtype = self.compute_dtype if dtype is None else dtype
        for name in ENCODER_STAGES:
            getattr(self, name).to(dtype)
        return self

    def reset_buffers(self) -> None:
        """Recompute the non-persistent buffers (after `to_empty` from the meta device)."""
        for _, stage in self.stages():
            reset = getattr(stage, "reset_buffers", None)
            if reset is not None:
                reset()

    # -- convenience ---------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def stages(self) -> Iterator[tuple[str, nn.Module]]:
        for name in STAGES:
            yield name, getattr(self, name)
