"""`asset3d train`: train or fine-tune a TripoSR model on a synthetic dataset."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune TripoSR on a synthetic dataset (the TripoSR recipe)",
        description=(
            "Train a TripoSR model with the report's recipe (AdamW 4e-4, warm-up + cosine, MSE + 0.05 mask "
            "[+ 2.0 LPIPS when available offline]) plus 3D occupancy supervision. Writes checkpoint.pt, "
            "config.yaml + model.safetensors, train_log.jsonl, loss.png and summary.json to OUT."
        ),
    )
    p.add_argument("--config", required=True, help="training config YAML (e.g. triposr/demo/train.yaml)")
    p.add_argument("--dataset", required=True, help="dataset folder made by `asset3d dataset make`")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--init", default=None, help="start from these weights: any load_model source (folder, hub id, demo)")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (step, optimiser and schedule)")
    p.add_argument("--device", default=None, help="cuda, cpu, mps or auto (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.data.dataset import DatasetError
    from training.recipe import TrainConfig, train
    from triposr.loading import ModelNotAvailable

    try:
        cfg = TrainConfig.from_file(args.config)
        result = train(cfg, args.dataset, args.out, init=args.init, steps=args.steps, resume=args.resume,
                       device=args.device, progress=not args.no_progress)
    except (DatasetError, ModelNotAvailable, FileNotFoundError, ValueError) as exc:
        print(f"asset3d train: {exc}", file=sys.stderr)
        return 2
    print(f"trained {result.steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.4f}; model in {result.out}")
    return 0
