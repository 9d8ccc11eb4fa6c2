"""Which model runs, loaded once per process, and reconstruction in micro-batches.

`choose_model` is the one place that decides what ``model: auto`` means:

1. the official ``stabilityai/TripoSR`` weights, when they are already in the local Hugging Face cache;
2. else the project's bundled demo model, when ``triposr.load_model("demo")`` resolves;
3. else an untrained tiny model built in code from a fixed seed, labelled as such: its geometry is
   meaningless and it exists so the plumbing runs on a fresh clone with nothing downloaded.

`get_model` loads the chosen model once per process (per source, device and dtype) and hands the same
instance to every caller; `reconstruct_batch` runs one micro-batch of framed photos through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from asset3d.pipeline.errors import StageError
from asset3d.pipeline.options import MachineOptions, ReconstructOptions
from asset3d.pipeline.vocabulary import Stage

if TYPE_CHECKING:
    import trimesh

    from asset3d.pipeline.photos import Prepared
    from triposr import TSR

OFFICIAL = "stabilityai/TripoSR"
DEMO = "demo"
UNTRAINED = "untrained-tiny"
UNTRAINED_LABEL = "untrained tiny model: geometry is meaningless, for plumbing only"
DEMO_LABEL = "the project's bundled demo model (small, trained; not the official weights)"
UNTRAINED_SEED = 0

#: The untrained model's architecture: the tiny conformance configuration (1.3 MB of weights).
TINY_CONFIG: dict[str, Any] = {
    "cond_image_size": 64,
    "image_tokenizer_cls": "tsr.models.tokenizers.image.DINOSingleImageTokenizer",
    "image_tokenizer": {
        "pretrained_model_name_or_path": "tiny-dino-vit",
        "vit_config": {
            "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
            "hidden_size": 64, "image_size": 224, "initializer_range": 0.02, "intermediate_size": 128,
            "layer_norm_eps": 1.0e-12, "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 2,
            "patch_size": 16, "qkv_bias": True,
        },
    },
    "tokenizer_cls": "tsr.models.tokenizers.triplane.Triplane1DTokenizer",
    "tokenizer": {"num_channels": 64, "plane_size": 4},
    "backbone_cls": "tsr.models.transformer.transformer_1d.Transformer1D",
    "backbone": {"attention_head_dim": 16, "cross_attention_dim": 64, "in_channels": 64, "num_attention_heads": 4, "num_layers": 2},
    "post_processor_cls": "tsr.models.network_utils.TriplaneUpsampleNetwork",
    "post_processor": {"in_channels": 64, "out_channels": 8},
    "decoder_cls": "tsr.models.network_utils.NeRFMLP",
    "decoder": {"activation": "silu", "in_channels": 24, "n_hidden_layers": 3, "n_neurons": 16},
    "renderer_cls": "tsr.models.nerf_renderer.TriplaneNeRFRenderer",
    "renderer": {"density_activation": "exp", "density_bias": -1.0, "feature_reduction": "concat", "num_samples_per_ray": 16, "radius": 0.87},
}  # fmt: skip


@dataclass(frozen=True)
class ModelChoice:
    """What `choose_model` picked: the source to load, its kind, and the line printed about it."""

    source: str
    kind: Literal["official", "demo", "untrained", "explicit"]
    label: str


@dataclass
class LoadedModel:
    """A loaded model with what provenance needs, and the lock that keeps one batch on the device at a time."""

    model: TSR
    choice: ModelChoice
    model_id: str
    weights_sha256: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class Reconstruction:
    """The raw mesh of one photo (official z-up frame) and its scene code ``(3, C, R, R) float32``."""

    sha256: str
    mesh: trimesh.Trimesh = field(repr=False)
    scene_code: np.ndarray = field(repr=False)


def official_weights_cached() -> bool:
    """True when the official config and weights are in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(OFFICIAL, "config.yaml")
    weights = [try_to_load_from_cache(OFFICIAL, name) for name in ("model.safetensors", "model.ckpt")]
    return isinstance(config, str) and any(isinstance(w, str) for w in weights)


def choose_model(requested: str = "auto") -> ModelChoice:
    """The model ``requested`` names (``demo`` and ``untrained-tiny`` by their labels); for ``auto``: official
    weights if cached, else demo, else untrained."""
    from triposr import ModelNotAvailable
    from triposr.loading import resolve_source

    if requested not in ("auto", ""):
        if requested == UNTRAINED:
            return ModelChoice(UNTRAINED, "untrained", UNTRAINED_LABEL)
        if requested == DEMO:
            return ModelChoice(DEMO, "demo", DEMO_LABEL)
        return ModelChoice(requested, "explicit", f"model {requested}")
    if official_weights_cached():
        return ModelChoice(OFFICIAL, "official", f"official {OFFICIAL} weights (from the local Hugging Face cache)")
    try:
        resolve_source(DEMO)
    except ModelNotAvailable:
        pass
    else:
        return ModelChoice(DEMO, "demo", DEMO_LABEL)
    return ModelChoice(UNTRAINED, "untrained", UNTRAINED_LABEL)


def state_sha256(model: TSR) -> str:
    """SHA-256 of a state dict's tensors (names and bytes in name order): the provenance of built weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def build_untrained(device: str | None = "cpu", dtype: str | None = "fp32") -> TSR:
    """The seeded, untrained tiny model, its density calibrated so the field has a surface at 25.

    The last decoder layer's density row is rescaled (``W0 *= S``, ``b0 = B`` with ``S = 2.5 / std``,
    ``B = 1 - S * median`` of its pre-activation over a grid, for a plain gray input) so that about a
    tenth of the volume lies above the default threshold. Nothing about the result resembles the photo.
    """
    import torch

    from triposr import TSR
    from triposr.devices import pick_device, pick_dtype

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = TSR.from_config(TINY_CONFIG).eval()
    last = model.decoder.layers[-1]
    hidden: list[torch.Tensor] = []
    hook = model.decoder.layers[-2].register_forward_hook(lambda _m, _i, out: hidden.append(out.detach()))
    try:
        with torch.inference_mode():
            codes = model.encode(np.full((1, 64, 64, 3), 0.5, np.float32))  # (1, 3, C, R, R)
            axis = torch.linspace(-0.8, 0.8, 16)
            grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)  # (1, 4096, 3)
            model.query(codes, grid)
    finally:
        hook.remove()
    h = torch.cat([x.reshape(-1, x.shape[-1]) for x in hidden])  # (N, n_neurons)
    pre = h @ last.weight[0].detach()  # (N,)
    scale = 2.5 / float(pre.std())
    with torch.no_grad():
        last.weight[0] *= scale
        last.bias[0] = 1.0 - scale * float(pre.median())
    dev = pick_device(device)
    model.to(dev)
    model.compute_dtype = pick_dtype(dtype, dev)
    model.weights_sha256 = state_sha256(model)
    model.model_id = f"{UNTRAINED} (seed {UNTRAINED_SEED})"
    return model


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Read the Hugging Face cache without asking the hub (the official weights are loaded only if cached)."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


_models: dict[tuple[str, str, str], LoadedModel] = {}
_models_lock = threading.Lock()


def get_model(requested: str = "auto", device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """The model for these settings, loaded on first use and shared by every task of this process.

    Raises
    ------
    triposr.ModelNotAvailable
        The source names no folder, no cached hub model and no bundled model.
    """
    key = (requested, device, dtype)
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            from triposr import load_model

            choice = choose_model(requested)
            if choice.kind == "untrained":
                model = build_untrained(device, dtype)
            elif choice.kind == "official":
                with _offline():
                    model = load_model(choice.source, device=device, dtype=dtype)
            else:
                model = load_model(choice.source, device=device, dtype=dtype)
            assert model.weights_sha256 is not None
            loaded = LoadedModel(model, choice, str(model.model_id or choice.source), model.weights_sha256)
            _models[key] = loaded
        return loaded


_identities: dict[str, tuple[ModelChoice, str, str]] = {}


def clear_models() -> None:
    """Drop every loaded model and remembered identity of this process (frees their memory)."""
    with _models_lock:
        _models.clear()
        _identities.clear()


def model_identity(requested: str = "auto") -> tuple[ModelChoice, str, str]:
    """``(choice, model_id, weights_sha256)`` of the model ``requested`` names, without loading it.

    The same id and SHA-256 as `get_model` gives (the weights file is hashed; the untrained model is built
    once, it is small). Cached per process.

    Raises
    ------
    triposr.ModelNotAvailable
        As `get_model`.
    """
    with _models_lock:
        hit = _identities.get(requested)
    if hit is not None:
        return hit
    from triposr import sha256_file
    from triposr.loading import resolve_source

    choice = choose_model(requested)
    if choice.kind == "untrained":
        model = build_untrained("cpu", "fp32")
        assert model.weights_sha256 is not None
        identity = (choice, str(model.model_id), model.weights_sha256)
    else:
        with _offline() if choice.kind == "official" else contextlib.nullcontext():
            _config, weights, model_id = resolve_source(choice.source)
        identity = (choice, model_id, sha256_file(weights))
    with _models_lock:
        _identities[requested] = identity
    return identity


#: What guards the device section: a context manager factory (the flows pass Prefect's `gpu` concurrency slot).
DeviceSlot = Callable[[], AbstractContextManager[Any]]


def reconstruct_batch(
    loaded: LoadedModel, photos: Sequence[Prepared], *, resolution: int, threshold: float, slot: DeviceSlot | None = None
) -> list[Reconstruction | StageError]:
    """One micro-batch: encode the framed photos together, then extract one mesh per photo.

    The device section runs under this process's model lock and, inside it, ``slot()`` (a slot of a limit
    shared by every worker): a process waits for its own device first and holds a shared slot only while it
    uses the device.

    Returns one entry per photo, in order: its `Reconstruction`, or a `StageError` (``empty_surface``)
    when the field has no surface at ``threshold``.
    """
    import torch

    if not photos:
        return []
    images = np.stack([p.image for p in photos])  # (B, 512, 512, 3) uint8
    with loaded.lock, (slot or contextlib.nullcontext)(), torch.inference_mode():
        codes = loaded.model.encode(images)  # (B, 3, C, R, R)
        meshes = loaded.model.extract_mesh(codes, resolution=resolution, threshold=threshold, vertex_colors=True)
    out: list[Reconstruction | StageError] = []
    for photo, code, mesh in zip(photos, codes, meshes, strict=True):
        if mesh.metadata.get("surface_empty") or len(mesh.faces) == 0:
            out.append(StageError(Stage.reconstruct, "empty_surface", f"the field has no surface at density {threshold}"))
        else:
            out.append(Reconstruction(photo.sha256, mesh, code.float().cpu().numpy()))
    return out


def reconstruct(
    batch: Sequence[Prepared], machine: MachineOptions, options: ReconstructOptions, weights_sha256: str,
    slot: DeviceSlot | None = None,
) -> list[Reconstruction | StageError]:
    """The reconstruct stage: one micro-batch through this process's model, which must have the run's weights.

    Raises
    ------
    StageError
        ``reconstruct/weights_mismatch``: this worker's model is not the one the run identified.
    triposr.ModelNotAvailable
        The model cannot be loaded here.
    """
    loaded = get_model(machine.model, machine.device, machine.dtype)
    if loaded.weights_sha256 != weights_sha256:
        raise StageError(
            Stage.reconstruct, "weights_mismatch",
            f"model {loaded.model_id} here has weights {loaded.weights_sha256[:12]}, the run expects {weights_sha256[:12]}",
        )  # fmt: skip
    return reconstruct_batch(loaded, batch, resolution=options.mc_resolution, threshold=options.mc_threshold, slot=slot)


def color_field(loaded: LoadedModel, scene_code: np.ndarray) -> Any:
    """``points (n, 3) official z-up -> colours (n, 3) in [0, 1]`` from the model's field (for meshing)."""
    import torch

    code = torch.from_numpy(np.ascontiguousarray(scene_code, dtype=np.float32))[None]  # (1, 3, C, R, R)

    def field_color(points: np.ndarray) -> np.ndarray:
        pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))[None]  # (1, n, 3)
        with torch.inference_mode():
            rgb = loaded.model.query(code, pts)["color"][0]  # (n, 3)
        return rgb.clamp(0.0, 1.0).cpu().numpy()

    return field_color
