"""`asset3d model`: inspect a model source and fetch the official weights."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model",
        help="inspect a TripoSR model source (folder or hub id) and fetch official weights",
        description="Inspect TripoSR model sources and fetch the official weights into the Hugging Face cache.",
    )
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", title="actions")
    info = msub.add_parser(
        "info",
        help="print config summary, parameter count, weights sha256, device and dtype",
        description=(
            "Load a model and print its config summary, parameter count, weights sha256, device and dtype. "
            "SOURCE is a folder with config.yaml and model.safetensors / model.ckpt, or a hub id such as "
            "stabilityai/TripoSR (read from the Hugging Face cache; HF_HUB_OFFLINE is respected)."
        ),
    )
    info.add_argument("source", metavar="SOURCE", help="model folder or hub id")
    info.add_argument("--device", default="auto", help="cuda, cpu, mps or auto (default: auto)")
    info.add_argument("--dtype", default="auto", help="fp32, bf16, fp16 or auto (default: auto)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    info.set_defaults(func=run_info)
    fetch = msub.add_parser(
        "fetch",
        help="download a hub model (config.yaml + weights) into the local cache",
        description=(
            "Download config.yaml and the weights of a hub model into the Hugging Face cache (HF_HOME; the hub is "
            "HF_ENDPOINT), with a progress bar, and print the weights' sha256. Cached files are not downloaded again."
        ),
    )
    fetch.add_argument("hub_id", metavar="HUB_ID", help="e.g. stabilityai/TripoSR")
    fetch.set_defaults(func=run_fetch)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def describe(model: Any) -> dict[str, Any]:
    """The summary `model info` prints."""
    cfg = model.cfg.to_dict()
    stages = {name: {"cls": cfg[f"{name}_cls"], **cfg[name]} for name in model.cfg.stages}
    return {
        "model_id": model.model_id,
        "weights_sha256": model.weights_sha256,
        "parameters": model.num_parameters(),
        "device": str(model.device),
        "dtype": str(model.compute_dtype).removeprefix("torch."),
        "cond_image_size": cfg["cond_image_size"],
        "stages": stages,
    }


def run_info(args: argparse.Namespace) -> int:
    from triposr import ModelNotAvailable, load_model

    try:
        model = load_model(args.source, device=args.device, dtype=args.dtype)
    except ModelNotAvailable as exc:
        print(f"asset3d model info: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        refusal = refused_model(args.source, exc)
        if refusal is None:  # not a problem of the model's files: a bug, for the command line's fatal-error line
            raise
        if getattr(args, "debug", False) or os.environ.get("ASSET3D_DEBUG", "") not in ("", "0", "false"):
            traceback.print_exc()
        print(f"asset3d model info: {refusal}", file=sys.stderr)
        return 2
    info = describe(model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model        {info['model_id']}")
    print(f"weights      sha256 {info['weights_sha256']}")
    print(f"parameters   {info['parameters']:,}")
    print(f"device       {info['device']}  dtype {info['dtype']}")
    print(f"input        {info['cond_image_size']} px")
    for name, stage in info["stages"].items():
        options = ", ".join(f"{k}={v}" for k, v in stage.items() if k not in ("cls", "vit_config"))
        print(f"  {name:<16} {stage['cls'].rsplit('.', 1)[-1]}  {options}")
    return 0


def refused_model(source: str, exc: BaseException) -> str | None:
    """One line saying why ``source``'s files cannot be loaded (which file, what is wrong with it), or None
    when ``exc`` is not about the model's files."""
    import pickle

    import yaml
    from safetensors import SafetensorError

    from triposr import ConfigError, UnsafeCheckpoint
    from triposr.loading import resolve_source

    try:
        config, weights, _ = resolve_source(source)
    except Exception:  # it resolved a moment ago; name the source as given
        config = weights = Path(source)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, yaml.YAMLError | ConfigError):
        return f"{config}: not a usable model config ({first})"
    if isinstance(exc, UnsafeCheckpoint | pickle.UnpicklingError | EOFError | SafetensorError) or (
        isinstance(exc, RuntimeError) and "PytorchStreamReader" in first
    ):
        return f"{weights}: {_weights_problem(weights, exc)}"
    if isinstance(exc, RuntimeError) and "state_dict" in first:
        missing, unexpected = _keys(str(exc), "Missing key(s)"), _keys(str(exc), "Unexpected key(s)")
        shapes = str(exc).count("size mismatch")
        return (
            f"{weights}: the weights do not fit {config.name} ({missing} tensors missing, {unexpected} unexpected, "
            f"{shapes} of another shape): weights and config of different models"
        )
    if isinstance(exc, OSError):
        return f"{weights.parent if weights.name else source}: cannot read the model files ({first})"
    return None


def _keys(message: str, section: str) -> int:
    """How many keys a section of torch's ``load_state_dict`` error lists (its line: ``section: "a", "b".``)."""
    for line in message.splitlines():
        if section in line:
            return len(re.findall(r'"[^"]+"', line))
    return 0


def _weights_problem(weights: Path, exc: BaseException) -> str:
    """What is wrong with a weights file that did not load."""
    try:
        with weights.open("rb") as f:
            head = f.read(4)
        size = weights.stat().st_size
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if size == 0:
        return "empty file, not a checkpoint"
    if weights.suffix == ".safetensors":
        return f"not a valid safetensors file ({(str(exc).strip().splitlines() or [''])[0]})"
    if head.startswith(b"PK"):  # torch.save's zip archive
        if "PytorchStreamReader" in str(exc):
            return "a damaged checkpoint (the zip archive is truncated or corrupt)"
    elif not head.startswith(b"\x80"):  # neither a zip archive nor a pickle
        return f"not a PyTorch checkpoint ({size} bytes that are neither a zip archive nor a pickle)"
    wants = re.search(r"unsupported GLOBAL (\S+)", str(exc)) or re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if wants:
        return (
            f"refused: loading it would run code ({wants.group(1)}); only tensors are loaded "
            "(weights_only): convert it to safetensors where it is trusted"
        )
    if "not a state dict" in str(exc):
        return "refused: it holds other objects than a state dict of tensors"
    return "refused: it holds objects that only a full unpickler could build (it could run code); convert it to safetensors where it is trusted"


def run_fetch(args: argparse.Namespace) -> int:
    from triposr.loading import ModelNotAvailable, fetch_model, hub_offline, sha256_file

    try:
        config, weights = fetch_model(args.hub_id)
    except ModelNotAvailable as exc:
        advice = (
            "unset it on a machine that can reach the Hugging Face hub and run this command again"
            if hub_offline()
            else "run the same command where the hub can be reached, then copy the cache (HF_HOME) "
            "or a folder with config.yaml and model.ckpt here"
        )
        print(f"asset3d model fetch: {exc}; {advice}.", file=sys.stderr)
        return 2
    print(f"fetched {args.hub_id}: {config}, {weights}")
    print(f"weights sha256 {sha256_file(weights)}")
    return 0
