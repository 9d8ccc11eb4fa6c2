"""`asset3d eval`: Chamfer distance and F-scores of a model on a synthetic dataset, against a sphere baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="reconstruct a dataset's conditioning views and report Chamfer / F-score (docs/metrics.md)",
        description=(
            "Reconstruct every conditioning image, extract at 256 and report per object and mean Chamfer "
            "distance and F-score at 0.1 / 0.2 / 0.5 (protocol of docs/metrics.md: unit-cube normalisation, "
            "rotation search + ICP), with a sphere baseline, as a table in the TripoSR report's layout."
        ),
    )
    p.add_argument("--model", required=True, help="model source: folder, hub id (stabilityai/TripoSR) or demo")
    p.add_argument("--dataset", required=True, help="dataset folder made by `asset3d dataset make`")
    p.add_argument("--json", dest="json_out", default=None, help="write the full result as JSON here")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N objects")
    p.add_argument("--resolution", type=int, default=256, help="extraction grid resolution (default 256)")
    p.add_argument("--align", choices=("rotate_icp", "none"), default="rotate_icp", help="alignment (default rotate_icp)")
    p.add_argument("--normalize", choices=("unit_cube", "none"), default="unit_cube", help="normalisation (default unit_cube)")
    p.add_argument("--device", default="auto", help="cuda, cpu, mps or auto (default: auto)")
    p.add_argument("--dtype", default="auto", help="fp32, bf16, fp16 or auto (default: auto)")
    p.add_argument("--per-object", action="store_true", help="also print one line per object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.data.dataset import DatasetError, SyntheticDataset
    from training.evaluation import EvalProtocol, evaluate, format_table, per_kind
    from triposr.loading import ModelNotAvailable, load_model

    try:
        model = load_model(args.model, device=args.device, dtype=args.dtype)
        data = SyntheticDataset(args.dataset, cond_size=model.cfg.cond_image_size)
    except (ModelNotAvailable, DatasetError) as exc:
        print(f"asset3d eval: {exc}", file=sys.stderr)
        return 2
    protocol = EvalProtocol(resolution=args.resolution, normalize=args.normalize, align=args.align)
    result = evaluate(model, data, protocol, limit=args.limit, progress=not args.quiet)
    result["per_kind"] = per_kind(result)
    if args.per_object:
        for r in result["objects"]:
            print(f"{r['name']} {r['kind']:<7} CD {r['chamfer']:.3f}  F@0.1 {r['fscore@0.1']:.3f}  "
                  f"F@0.2 {r['fscore@0.2']:.3f}  F@0.5 {r['fscore@0.5']:.3f}  (sphere F@0.1 {r['baseline']['fscore@0.1']:.3f})")
    print(format_table(result, name=str(args.model)))
    print(f"{result['dataset']['objects']} objects, {result['empty']} empty, {result['seconds']:.0f} s")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    return 0
