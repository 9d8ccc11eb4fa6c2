"""`asset3d dataset make`: write a synthetic product dataset (layout: docs/training.md)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset",
        help="make synthetic product data (meshes, conditioning views, supervision views, 3D samples)",
        description="Synthetic training and evaluation data for TripoSR, deterministic by seed.",
    )
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", title="actions")
    make = dsub.add_parser(
        "make",
        help="write N objects of seed S to DIR",
        description=(
            "Write COUNT product-like objects (cartons, cans, bottles, jars, balls, cones, mugs, stools, chairs) "
            "drawn from SEED: a watertight ground-truth mesh, the framed conditioning view, supervision views with "
            "masks, cameras and 3D occupancy samples per object. Object i of a seed is the same whatever COUNT."
        ),
    )
    make.add_argument("--seed", type=int, required=True, help="dataset seed (use different seeds for training and evaluation)")
    make.add_argument("--count", type=int, required=True, help="number of objects")
    make.add_argument("--out", required=True, help="output folder")
    make.add_argument("--start", type=int, default=0, help="index of the first object (default 0)")
    make.add_argument("--views", type=int, default=6, help="supervision views per object (default 6)")
    make.add_argument("--view-size", type=int, default=128, help="supervision view size in pixels (default 128)")
    make.add_argument("--cond-size", type=int, default=512, help="conditioning image size (default 512, the model input)")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    make.set_defaults(func=run_make)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_make(args: argparse.Namespace) -> int:
    from training.data.synthetic import SynthConfig, make_dataset

    if args.count < 1 or args.views < 1 or args.view_size < 8 or args.cond_size < 16:
        print("asset3d dataset make: --count and --views must be >= 1, sizes positive", file=sys.stderr)
        return 2
    cfg = SynthConfig(cond_size=args.cond_size, view_size=args.view_size, views=args.views)
    out = make_dataset(args.seed, args.count, args.out, cfg, start=args.start, progress=not args.quiet)
    print(f"wrote {args.count} objects of seed {args.seed} to {out}")
    return 0
