"""Intake speed on a 2048x2048 studio photo: per-method time, printed as JSON.

    python bench/intake.py --json bench/out/intake.json [--repeats 5] [--shared ../shared]

The photo is the shared chair cut-out upscaled to 2048x2048 on the blue seamless backdrop with a
contact shadow (JPEG q90); the alpha method runs on the same cut-out as a 2048x2048 RGBA PNG.
Target: plain-backdrop <= 1.0 s per photo (median of the repeats).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from intake import RembgConfig, decode_image, preprocess  # noqa: E402
from intake.alpha import alpha_segmentation  # noqa: E402
from intake.backdrop import plain_backdrop_segmentation  # noqa: E402
from intake.framing import frame_object  # noqa: E402
from intake.rembg_method import model_status, rembg_segmentation  # noqa: E402
from intake.synthetic import BACKDROPS, composite, iou  # noqa: E402

TARGET_PLAIN_BACKDROP_S = 1.0
SIDE = 2048


def timed(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, float], Any]:
    """Run ``fn`` once to warm up, then ``repeats`` times; return timing stats and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True, metavar="OUT", help="where to write the JSON report")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ASSET3D_SHARED", REPO.parent / "shared"))
    )
    args = ap.parse_args(argv)

    cutout_path = args.shared / "photos" / "chair.png"
    if not cutout_path.is_file():
        print(f"bench/intake.py: shared cut-out not found at {cutout_path} (pass --shared)", file=sys.stderr)
        return 2
    cutout = np.asarray(Image.open(cutout_path).convert("RGBA"))
    scale = SIDE // cutout.shape[0]
    photo_bytes, truth = composite(cutout, BACKDROPS[2], jpeg_quality=90, scale=scale)
    rgba = np.asarray(Image.fromarray(cutout).resize((SIDE, SIDE), Image.Resampling.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG")
    rgba_bytes = buf.getvalue()

    decode_t, decoded = timed(lambda: decode_image(photo_bytes, name="photo.jpg"), args.repeats)
    rgb = decoded.rgb
    assert rgb.shape == (SIDE, SIDE, 3)
    cut = decode_image(rgba_bytes, name="cutout.png")

    methods: dict[str, Any] = {}
    t, seg = timed(lambda: plain_backdrop_segmentation(rgb, name="photo.jpg"), args.repeats)
    methods["plain-backdrop"] = {**t, "mask_iou": iou(seg.mask >= 128, truth), "confidence": seg.confidence}
    t, _ = timed(lambda: alpha_segmentation(cut.alpha, name="cutout.png"), args.repeats)
    methods["alpha"] = t
    config = RembgConfig()
    status = model_status(config)
    if status.available:
        t, rseg = timed(lambda: rembg_segmentation(rgb, name="photo.jpg", config=config), args.repeats)
        methods["rembg"] = {**t, "model": config.model, "mask_iou": iou(rseg.mask >= 128, truth)}
    else:
        methods["rembg"] = {"available": False, "model": config.model, "detail": status.detail}

    framing_t, _ = timed(lambda: frame_object(rgb, seg.mask), args.repeats)
    auto_t, result = timed(lambda: preprocess(photo_bytes, name="photo.jpg"), args.repeats)

    report = {
        "photo": {"side": SIDE, "source": "shared/photos/chair.png x4 on blue seamless + shadow, JPEG q90"},
        "decode": decode_t,
        "methods": methods,
        "framing": framing_t,
        "preprocess_auto": {**auto_t, "method": result.method, "usable": result.usable},
        "target": {
            "plain_backdrop_s": TARGET_PLAIN_BACKDROP_S,
            "met": methods["plain-backdrop"]["median_s"] <= TARGET_PLAIN_BACKDROP_S,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "repeats": args.repeats,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
