"""Training and fine-tuning TripoSR on a synthetic dataset (the recipe of the TripoSR report).

Recipe: AdamW at learning rate 4e-4, linear warm-up then cosine annealing (2,000 warm-up steps at
full scale; a short run warms up for at most `warmup_max_fraction` of its steps), loss = MSE on
rendered RGB + 0.05 mask loss + 2.0 LPIPS. LPIPS needs a pretrained perceptual network; none can be
fetched here, so unless `lpips` and its backbone weights are already on disk the term is skipped and
the run log says so. Optional 3D supervision from the ground-truth meshes (cheap, and what makes a
CPU run converge): occupancy of sampled points, as a logistic loss on the log density around the
extraction threshold (the surface lands where density = 25), and colour at surface points.

Rendering for the loss uses the model's own renderer with fewer samples per ray on a random subset
of the supervision pixels (half of them on the object), so each step is cheap. bf16 autocast where
the device supports it natively; gradient checkpointing of the backbone and ViT on request.

Everything a step draws comes from generators seeded by (seed, step), so a resumed run draws what
the uninterrupted run would have drawn. Outputs in `out/`: `checkpoint.pt` (model, optimiser,
scheduler, step; read back with `weights_only=True`), `config.yaml` + `model.safetensors` (a
`load_model` source), `train_log.jsonl`, `loss.png`, `summary.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from training.data.cameras import camera_rays
from training.data.dataset import ObjectRecord, SyntheticDataset
from triposr.config import load_config_file
from triposr.devices import cpu_has_native_bf16, pick_device
from triposr.model import TSR
from triposr.renderer import TriplaneNeRFRenderer

SURFACE_DENSITY = 25.0
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Options of a training run (a YAML mapping; `model` is a config dict or a path to config.yaml)."""

    model: Mapping[str, Any] | str | None = None
    steps: int = 1000
    batch_size: int = 4
    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 2000
    warmup_max_fraction: float = 0.05
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    field_lr_scale: float = 1.0  # learning-rate multiplier of the triplane tokens, upsampler and decoder
    # losses
    rgb_weight: float = 1.0
    mask_weight: float = 0.05
    lpips_weight: float = 2.0
    occupancy_weight: float = 1.0
    occupancy_points: int = 4096
    occupancy_temperature: float = 2.0
    color_weight: float = 1.0
    color_points: int = 1024
    # rendering for the loss
    render_rays: int = 256
    render_samples: int = 32
    view_size: int = 64
    foreground_ray_fraction: float = 0.5
    # augmentation: mirror the scene y -> -y (and the image left-right) with this probability
    mirror_probability: float = 0.5
    # machinery
    precision: str = "auto"  # auto (bf16 where native), bf16, fp32
    gradient_checkpointing: bool = False
    checkpoint_every: int = 250
    log_every: int = 10
    seed: int = 0
    num_threads: int | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: Path | None = None) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"training config: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        kw = dict(data)
        if isinstance(kw.get("model"), str) and base is not None:
            kw["model"] = str((base / kw["model"]).resolve()) if not Path(kw["model"]).is_absolute() else kw["model"]
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: training config must be a YAML mapping")
        return cls.from_mapping(data, base=path.parent)

    def model_config(self) -> dict[str, Any]:
        if self.model is None:
            raise ValueError("training config has no model (give `model:` or start from --init)")
        if isinstance(self.model, str):
            return load_config_file(self.model)
        return dict(self.model)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# -- schedule ------------------------------------------------------------------------------------
def warmup_length(cfg: TrainConfig, total_steps: int) -> int:
    """2,000 steps at full scale, at most `warmup_max_fraction` of a shorter run (at least 1)."""
    return max(1, min(cfg.warmup_steps, int(math.ceil(cfg.warmup_max_fraction * total_steps))))


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at `step` (0-based): linear warm-up, then cosine to min_ratio."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- perceptual loss -----------------------------------------------------------------------------
def load_perceptual_loss(device: torch.device) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, str]:
    """LPIPS when the `lpips` package and its pretrained backbone are on disk; else (None, why).

    Nothing is downloaded: a network that is not already cached counts as unavailable.
    """
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError:
        return None, "LPIPS skipped: the `lpips` package is not installed (no perceptual network offline)"
    try:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        if not any(hub.glob("vgg16-*.pth")):
            return None, f"LPIPS skipped: the VGG16 backbone is not in {hub} and cannot be fetched offline"
        net = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
    except Exception as exc:  # any failure to build it means it is not available
        return None, f"LPIPS skipped: {type(exc).__name__}: {exc}"
    net.requires_grad_(False)

    def fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # (B, h, w, 3) in [0, 1] -> LPIPS expects (B, 3, h, w) in [-1, 1]
        return net(pred.permute(0, 3, 1, 2) * 2 - 1, target.permute(0, 3, 1, 2) * 2 - 1).mean()

    return fn, "LPIPS on (VGG16)"


# -- batches -------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One step's inputs and targets (B objects)."""

    cond: torch.Tensor  # (B, 3, S, S)
    rays_o: torch.Tensor  # (B, 1, R, 3)
    rays_d: torch.Tensor  # (B, 1, R, 3)
    rgb: torch.Tensor  # (B, 1, R, 3)
    mask: torch.Tensor  # (B, 1, R, 1)
    points: torch.Tensor  # (B, P, 3)
    occupancy: torch.Tensor  # (B, P)
    surface_points: torch.Tensor  # (B, Q, 3)
    surface_colors: torch.Tensor  # (B, Q, 3)
    patch_rgb: torch.Tensor | None = None  # (B, h, w, 3) a whole view, for LPIPS
    patch_rays: tuple[torch.Tensor, torch.Tensor] | None = None


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), 7])


def _object_sample(rec: ObjectRecord, cfg: TrainConfig, rng: np.random.Generator, patch: bool) -> dict[str, Any]:
    v, h, w = rec.masks.shape
    n = cfg.render_rays
    n_fg = int(round(n * cfg.foreground_ray_fraction))
    fg = np.argwhere(rec.masks > 127)  # (K, 3) view, row, col
    pick_fg = fg[rng.integers(len(fg), size=n_fg)] if len(fg) else np.zeros((0, 3), np.int64)
    pick_any = np.stack([rng.integers(v, size=n - len(pick_fg)), rng.integers(h, size=n - len(pick_fg)),
                         rng.integers(w, size=n - len(pick_fg))], axis=-1)
    pix = np.concatenate([pick_fg, pick_any]).astype(np.int64)
    c2w = torch.from_numpy(rec.c2w)
    rays_o = torch.empty(n, 3)
    rays_d = torch.empty(n, 3)
    for k in np.unique(pix[:, 0]):
        sel = torch.from_numpy(np.flatnonzero(pix[:, 0] == k))
        rays_o[sel], rays_d[sel] = camera_rays(c2w[k], float(rec.fovy[k]), h, w, torch.from_numpy(pix[sel, 1]),
                                               torch.from_numpy(pix[sel, 2]))
    rgb = torch.from_numpy(rec.views[pix[:, 0], pix[:, 1], pix[:, 2]].astype(np.float32) / 255.0)
    mask = torch.from_numpy(rec.masks[pix[:, 0], pix[:, 1], pix[:, 2]].astype(np.float32) / 255.0)[:, None]
    half = cfg.occupancy_points // 2  # half near the surface (stored first), half anywhere
    n_pts = len(rec.points)
    idx_pts = np.concatenate([rng.integers(n_pts * 2 // 3, size=half), rng.integers(n_pts, size=cfg.occupancy_points - half)])
    idx_col = rng.integers(len(rec.surface_points), size=cfg.color_points)
    out = {
        "cond": rec.cond,
        "rays_o": rays_o,
        "rays_d": rays_d,
        "rgb": rgb,
        "mask": mask,
        "points": torch.from_numpy(rec.points[idx_pts]),
        "occupancy": torch.from_numpy(rec.occupancy[idx_pts].astype(np.float32)),
        "surface_points": torch.from_numpy(rec.surface_points[idx_col]),
        "surface_colors": torch.from_numpy(rec.surface_colors[idx_col].astype(np.float32) / 255.0),
    }
    if patch:
        k = int(rng.integers(v))
        o, d = camera_rays(c2w[k], float(rec.fovy[k]), h, w)
        out["patch_rgb"] = torch.from_numpy(rec.views[k].astype(np.float32) / 255.0)
        out["patch_rays"] = (o.reshape(h, w, 3), d.reshape(h, w, 3))
    if rng.uniform() < cfg.mirror_probability:  # the mirror image of the scene: y -> -y
        flip = torch.tensor([1.0, -1.0, 1.0])
        out["cond"] = torch.flip(out["cond"], dims=[-1])
        for key in ("rays_o", "rays_d", "points", "surface_points"):
            out[key] = out[key] * flip
        if patch:
            o, d = out["patch_rays"]
            out["patch_rays"] = (o * flip, d * flip)
    return out


def make_batch(data: SyntheticDataset, cfg: TrainConfig, step: int, *, patch: bool = False) -> Batch:
    """The batch of `step`: objects and samples drawn from generators seeded by (seed, step)."""
    rng = step_rng(cfg.seed, step)
    ids = rng.choice(len(data), size=min(cfg.batch_size, len(data)), replace=False)
    items = [_object_sample(data[int(i)], cfg, rng, patch) for i in ids]

    def stack(key: str) -> torch.Tensor:
        return torch.stack([it[key] for it in items])

    return Batch(
        cond=stack("cond"),
        rays_o=stack("rays_o")[:, None],
        rays_d=stack("rays_d")[:, None],
        rgb=stack("rgb")[:, None],
        mask=stack("mask")[:, None],
        points=stack("points"),
        occupancy=stack("occupancy"),
        surface_points=stack("surface_points"),
        surface_colors=stack("surface_colors"),
        patch_rgb=stack("patch_rgb") if patch else None,
        patch_rays=(torch.stack([it["patch_rays"][0] for it in items]), torch.stack([it["patch_rays"][1] for it in items]))
        if patch
        else None,
    )


# -- the model under training --------------------------------------------------------------------
def training_dtype(precision: str, device: torch.device) -> torch.dtype:
    """bf16 where the device has it natively (CUDA with bf16, CPUs with AMX / AVX512-BF16), else fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def enable_gradient_checkpointing(model: TSR) -> None:
    """Recompute backbone blocks and ViT layers in the backward pass (less memory, more compute)."""
    model.backbone.cfg = dataclasses.replace(model.backbone.cfg, gradient_checkpointing=True)
    vit = model.image_tokenizer.model
    getattr(vit, "activation_checkpointing_enable", vit.gradient_checkpointing_enable)()  # renamed in transformers 5


def log_density(model: TSR, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Natural log of the activated density, computed stably from the raw output for exp activations."""
    rcfg = model.renderer.cfg
    if rcfg.density_activation in ("exp", "trunc_exp"):
        return out["density_raw"] + rcfg.density_bias
    return torch.log(out["density"].clamp_min(1e-8))


def compute_losses(model: TSR, renderer: TriplaneNeRFRenderer, batch: Batch, cfg: TrainConfig,
                   perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The weighted loss terms of one batch ("loss" is their sum)."""
    dev = model.device
    codes = model.encode(batch.cond.permute(0, 2, 3, 1).to(dev))  # (B, 3, C, R, R)
    terms: dict[str, torch.Tensor] = {}
    with model.autocast():
        rgb, opacity = renderer.render_with_opacity(model.decoder, codes, batch.rays_o.to(dev), batch.rays_d.to(dev), 0)
    rgb, opacity = rgb.float(), opacity.float()
    terms["rgb_mse"] = F.mse_loss(rgb, batch.rgb.to(dev))
    terms["mask"] = F.binary_cross_entropy(opacity.clamp(1e-5, 1 - 1e-5), batch.mask.to(dev))
    total = cfg.rgb_weight * terms["rgb_mse"] + cfg.mask_weight * terms["mask"]
    if perceptual is not None and cfg.lpips_weight > 0 and batch.patch_rays is not None and batch.patch_rgb is not None:
        o, d = batch.patch_rays
        with model.autocast():
            prgb, _ = renderer.render_with_opacity(model.decoder, codes, o.to(dev), d.to(dev), 0)
        terms["lpips"] = perceptual(prgb.float(), batch.patch_rgb.to(dev))
        total = total + cfg.lpips_weight * terms["lpips"]
    if cfg.occupancy_weight > 0:
        keys = ("density_raw", "density")
        with model.autocast():
            out = renderer.query(model.decoder, codes, batch.points.to(dev), chunk_size=0, keys=keys)
        logits = (log_density(model, {k: v.float() for k, v in out.items()}) - math.log(SURFACE_DENSITY)) / cfg.occupancy_temperature
        terms["occupancy"] = F.binary_cross_entropy_with_logits(logits[..., 0], batch.occupancy.to(dev))
        with torch.no_grad():
            terms["occupancy_acc"] = ((logits[..., 0] > 0).float() == batch.occupancy.to(dev)).float().mean()
        total = total + cfg.occupancy_weight * terms["occupancy"]
    if cfg.color_weight > 0:
        with model.autocast():
            col = renderer.query(model.decoder, codes, batch.surface_points.to(dev), chunk_size=0, keys=("color",))["color"]
        terms["color_mse"] = F.mse_loss(col.float(), batch.surface_colors.to(dev))
        total = total + cfg.color_weight * terms["color_mse"]
    terms["loss"] = total
    return terms


# -- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(path: Path, model: TSR, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                    step: int, cfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "model_config": json.dumps(model.cfg.to_dict()),
        "train_config": json.dumps(cfg.to_json()),
    }, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, read without a full unpickler."""
    return torch.load(path, map_location="cpu", weights_only=True)


def export_model(model: TSR, out: Path) -> Path:
    """Write `config.yaml` + `model.safetensors` (a folder `load_model` reads)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(model.cfg.to_dict(), sort_keys=False))
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    return out / "model.safetensors"


def plot_losses(log: list[dict[str, Any]], path: Path) -> None:
    """Loss curves (log scale) of a run as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("loss", "rgb_mse", "mask", "occupancy", "color_mse", "lpips") if any(k in r for r in log)]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for k in keys:
        pts = [(r["step"], r[k]) for r in log if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (unweighted terms)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the loop ------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    out: Path
    steps: int
    final_loss: float
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def initialize_for_training(model: TSR, prior_occupancy: float = 0.3, temperature: float = 2.0) -> None:
    """Initialisation of a model trained from scratch (the modules' own defaults vanish in depth).

    PyTorch's default Linear init shrinks the signal about threefold per layer, so through the
    ten-layer decoder the field starts constant and its gradients vanish. Instead: unit-variance
    triplane embeddings and scene codes, variance-preserving decoder layers (gain 1/sqrt(E[silu(x)^2])),
    a unit-gain last layer whose density
    bias puts every point at `prior_occupancy` of the occupancy loss, zero colour bias (grey).
    Parameter names and the forward pass are untouched.
    """
    with torch.no_grad():
        model.tokenizer.embeddings.normal_(0.0, 1.0)
        up = model.post_processor.upsample
        torch.nn.init.normal_(up.weight, 0.0, 1.0 / math.sqrt(up.in_channels))
        torch.nn.init.zeros_(up.bias)
        linears = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
        gain = 1.0 / math.sqrt(0.3554) if model.decoder.cfg.activation == "silu" else math.sqrt(2.0)  # E[silu(x)^2] = 0.3554
        for lin in linears[:-1]:
            torch.nn.init.normal_(lin.weight, 0.0, gain / math.sqrt(lin.in_features))
            if lin.bias is not None:
                torch.nn.init.zeros_(lin.bias)
        last = linears[-1]
        torch.nn.init.normal_(last.weight, 0.0, 1.0 / math.sqrt(last.in_features))
        if last.bias is not None:
            rcfg = model.renderer.cfg
            logit = math.log(prior_occupancy / (1.0 - prior_occupancy))
            last.bias.zero_()
            last.bias[0] = math.log(SURFACE_DENSITY) + temperature * logit - rcfg.density_bias


FIELD_STAGES = ("tokenizer", "post_processor", "decoder")


def param_groups(model: TSR, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only; the field stages (triplane tokens, upsampler,
    decoder) at `field_lr_scale` times the learning rate."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.split(".")[0] in FIELD_STAGES, p.ndim >= 2), []).append(p)
    return [
        {"params": ps, "weight_decay": cfg.weight_decay if matrix else 0.0, "lr": cfg.lr * (cfg.field_lr_scale if field else 1.0)}
        for (field, matrix), ps in sorted(groups.items())
    ]


def build_model(cfg: TrainConfig, init: str | None, device: torch.device) -> TSR:
    """A fresh model from the config (seeded, `initialize_for_training`), or any `load_model` source."""
    if init is not None:
        from triposr.loading import load_model

        return load_model(init, device=device, dtype="fp32")
    torch.manual_seed(cfg.seed)
    model = TSR.from_config(cfg.model_config())
    initialize_for_training(model, temperature=cfg.occupancy_temperature)
    return model.to(device)


def train(cfg: TrainConfig, dataset: str | Path | SyntheticDataset, out: str | Path, *, init: str | None = None,
          steps: int | None = None, resume: bool = False, device: str | None = None, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train (or fine-tune from `init`) for `steps` steps; write checkpoints and the model to `out`.

    `stop_after` ends the run early after that many steps (the schedule still spans `steps`): an
    interrupted run, for testing resume.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=int(steps))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = pick_device(device)
    ckpt_path = out / CHECKPOINT_NAME
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if resume and state is None:
        raise FileNotFoundError(f"--resume: no {CHECKPOINT_NAME} in {out}")
    if state is not None:
        model = TSR.from_config(json.loads(state["model_config"])).to(dev)
        model.load_state_dict(state["model"], strict=True)
    else:
        model = build_model(cfg, init, dev)
    model.train()
    model.compute_dtype = training_dtype(cfg.precision, dev)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    renderer = TriplaneNeRFRenderer(dataclasses.replace(model.renderer.cfg, num_samples_per_ray=cfg.render_samples))
    data = dataset if isinstance(dataset, SyntheticDataset) else SyntheticDataset(dataset, model.cfg.cond_image_size, cfg.view_size)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas)
    warmup = warmup_length(cfg, cfg.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, cfg.steps, cfg.min_lr_ratio))
    start = 0
    log: list[dict[str, Any]] = []
    log_path = out / "train_log.jsonl"
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        if log_path.is_file():
            log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
            log = [r for r in log if r.get("step", 0) <= start]
    perceptual, note = (None, "LPIPS off (lpips_weight = 0)") if cfg.lpips_weight <= 0 else load_perceptual_loss(dev)
    notes = [note, f"device {dev}, autocast {str(model.compute_dtype).removeprefix('torch.')}, warm-up {warmup} steps",
             f"{model.num_parameters():,} parameters, {len(data)} objects"]
    with open(out / "run_notes.txt", "a", encoding="utf-8") as fh:
        fh.write(f"run at step {start}: " + "; ".join(notes) + "\n")
    if progress:
        for n in notes:
            tqdm.write(n)

    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    t0 = time.perf_counter()
    seen = 0
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, disable=not progress, unit="step", dynamic_ncols=True)
    last: dict[str, float] = {}
    with open(log_path, "w", encoding="utf-8") as fh:
        for rec in log:
            fh.write(json.dumps(rec) + "\n")
        for step in bar:
            batch = make_batch(data, cfg, step, patch=perceptual is not None)
            terms = compute_losses(model, renderer, batch, cfg, perceptual)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            seen += batch.cond.shape[0]
            last = {k: float(v.detach()) for k, v in terms.items()}
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{rate:.2f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            done = step + 1
            if done % cfg.log_every == 0 or done == end:
                rec = {"step": done, "lr": sched.get_last_lr()[0], "images_per_s": rate,
                       "elapsed_s": time.perf_counter() - t0, **last}
                log.append(rec)
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
            if done % cfg.checkpoint_every == 0 or done == end:
                save_checkpoint(ckpt_path, model, opt, sched, done, cfg)
    bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    export_model(model, out)
    if log:
        plot_losses(log, out / "loss.png")
    summary = {"steps": end, "planned_steps": cfg.steps, "seconds": seconds, "final": last, "notes": notes,
               "config": cfg.to_json(), "dataset": str(data.root), "init": init}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return TrainResult(out, end, last.get("loss", float("nan")), seconds, log, notes)
