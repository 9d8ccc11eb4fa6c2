"""`asset3d preprocess`: one photo -> the 512x512 model input, its mask and intake flags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from intake import IntakeError, RembgConfig, preprocess
from intake.rembg_method import CUSTOM_ARCHITECTURES, PERMISSIVE_MODELS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="turn one product photo into the model input (512x512 on gray 0.5), a mask and quality flags",
        description=(
            "Decode IMAGE safely (JPEG, PNG, WebP, TIFF; bounded size), find the object (its own alpha, "
            "a rembg model already on disk, or the built-in plain-backdrop method), frame it like the "
            "official TripoSR run.py and write the 512x512 model input. Prints a JSON summary with "
            "--json. A refused input prints its reason and exits 2."
        ),
    )
    p.add_argument("image", type=Path, metavar="IMAGE", help="the photo file")
    p.add_argument(
        "--out", type=Path, required=True, metavar="OUT.png", help="where to write the 512x512 model input"
    )
    p.add_argument(
        "--mask-out",
        type=Path,
        metavar="MASK.png",
        help="where to write the foreground mask (8-bit, at the photo's upright resolution)",
    )
    p.add_argument(
        "--method",
        choices=("auto", "alpha", "rembg", "plain-backdrop"),
        default="auto",
        help="foreground method; auto = alpha, then rembg if its model is on disk, then plain-backdrop (default)",
    )
    p.add_argument(
        "--foreground-ratio",
        type=float,
        default=0.85,
        metavar="R",
        help="fraction of the output side the object spans (default 0.85, as the official run.py)",
    )
    p.add_argument(
        "--rembg-model",
        default=RembgConfig().model,
        choices=sorted(PERMISSIVE_MODELS) + list(CUSTOM_ARCHITECTURES),
        help="rembg model name, looked up under REMBG_HOME (default %(default)s; never downloaded)",
    )
    p.add_argument(
        "--rembg-model-path",
        type=Path,
        metavar="MODEL.onnx",
        help="custom ONNX file for --rembg-model u2net_custom or dis_custom (must lie under REMBG_HOME)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON summary on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name = str(args.image)
    try:
        config = RembgConfig(model=args.rembg_model, model_path=args.rembg_model_path)
    except ValueError as exc:
        print(f"asset3d preprocess: {exc}", file=sys.stderr)
        return 2
    try:
        data = args.image.read_bytes()
    except OSError as exc:
        print(f"asset3d preprocess: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        result = preprocess(
            data, name=name, method=args.method, foreground_ratio=args.foreground_ratio, rembg=config
        )
    except IntakeError as exc:
        if args.json:
            print(
                json.dumps({"refused": True, "reason": exc.reason.value, "name": name, "detail": exc.detail})
            )
        print(f"asset3d preprocess: refused {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.image).save(args.out, "PNG")
    summary = result.to_json()
    summary["out"] = str(args.out)
    if args.mask_out is not None:
        args.mask_out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result.mask).save(args.mask_out, "PNG")
        summary["mask_out"] = str(args.mask_out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        state = "usable" if result.usable else "not usable: " + ", ".join(result.reasons)
        print(f"{name}: {result.method}, foreground {result.foreground_fraction:.3f}, {state} -> {args.out}")
    return 0
