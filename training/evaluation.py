"""Evaluation on a synthetic dataset: Chamfer distance and F-scores, per object and mean, and a baseline.

Every conditioning image is reconstructed, its mesh extracted at resolution 256 (threshold 25, the
official level set) and compared with the ground-truth mesh by `meshing.metrics.chamfer_fscore`, with
the protocol of docs/metrics.md that the TripoSR report's numbers follow: 10,000 surface samples,
each cloud normalised to the unit cube (longest side 1), alignment by a rotation search about the up
axis then rigid ICP; F-scores at 0.1, 0.2 and 0.5. The same function scores the mesh stage, so
both agree by construction.

The trivial baseline is a sphere whose radius is half the mean longest side of the ground-truth
boxes, centred at the origin, scored the same way against every object.

An empty reconstruction (no surface at the threshold) scores F = 0 at every threshold and Chamfer
`EMPTY_CHAMFER` (the longest distance inside a unit cube), and is counted in `empty`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import trimesh

from meshing.metrics import chamfer_fscore
from training.data.dataset import SyntheticDataset
from triposr.model import TSR

THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.5)
EMPTY_CHAMFER = math.sqrt(3.0)
METRIC_KEYS: tuple[str, ...] = ("chamfer", *(f"fscore@{t:g}" for t in THRESHOLDS))


@dataclass(frozen=True)
class EvalProtocol:
    """How meshes are extracted and compared (defaults: the TripoSR report's, docs/metrics.md)."""

    resolution: int = 256
    threshold: float = 25.0
    n_points: int = 10_000
    normalize: str = "unit_cube"
    align: str = "rotate_icp"
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "threshold": self.threshold, "n_points": self.n_points,
                "normalize": self.normalize, "align": self.align, "seed": self.seed, "thresholds": list(THRESHOLDS)}


def score(pred: trimesh.Trimesh, gt: trimesh.Trimesh, protocol: EvalProtocol) -> dict[str, float]:
    """Chamfer and F-scores of one prediction (the keys of `METRIC_KEYS`)."""
    if len(pred.faces) == 0:
        return {"chamfer": EMPTY_CHAMFER, **{f"fscore@{t:g}": 0.0 for t in THRESHOLDS}}
    m = chamfer_fscore(pred, gt, n_points=protocol.n_points, thresholds=THRESHOLDS, seed=protocol.seed,
                       normalize=protocol.normalize, align=protocol.align)  # type: ignore[arg-type]
    return {k: float(m[k]) for k in METRIC_KEYS}


def sphere_baseline(radius: float) -> trimesh.Trimesh:
    """The baseline surface: an icosphere (subdivision 4) of `radius` at the origin."""
    return trimesh.creation.icosphere(subdivisions=4, radius=radius)


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in METRIC_KEYS}


def evaluate(model: TSR, dataset: SyntheticDataset, protocol: EvalProtocol | None = None, *,
             limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Reconstruct and score every object (or the first `limit`).

    Returns
    -------
    dict with "mean" and "baseline" (chamfer, fscore@0.1, fscore@0.2, fscore@0.5), "objects" (per
    object: name, kind, the metrics, "baseline" metrics, faces, empty, seconds), "empty", "protocol",
    "baseline_radius", "model", "dataset", "seconds".
    """
    protocol = protocol or EvalProtocol()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n < 1:
        raise ValueError("nothing to evaluate: the dataset is empty")
    gts = [dataset.mesh(i) for i in range(n)]
    radius = 0.5 * float(np.mean([float(np.max(g.extents)) for g in gts]))
    sphere = sphere_baseline(radius)
    indices: Any = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="eval", unit="obj")
    rows = []
    t_all = time.perf_counter()
    model.eval()
    for i in indices:
        t0 = time.perf_counter()
        with torch.inference_mode():
            codes = model.encode(dataset.cond_image(i)[None])
        mesh = model.extract_mesh(codes, resolution=protocol.resolution, threshold=protocol.threshold,
                                  vertex_colors=False, method="sparse")[0]
        row: dict[str, Any] = {"name": dataset.names[i], "kind": dataset.meta(i)["kind"]}
        row.update(score(mesh, gts[i], protocol))
        row["baseline"] = score(sphere, gts[i], protocol)
        row["faces"] = int(len(mesh.faces))
        row["empty"] = bool(len(mesh.faces) == 0)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    return {
        "mean": mean_metrics(rows),
        "baseline": mean_metrics([r["baseline"] for r in rows]),
        "objects": rows,
        "empty": int(sum(r["empty"] for r in rows)),
        "protocol": protocol.to_json(),
        "baseline_radius": radius,
        "model": {"id": model.model_id, "weights_sha256": model.weights_sha256, "parameters": model.num_parameters()},
        "dataset": {"root": str(dataset.root), "seed": dataset.info.get("seed"), "objects": n},
        "seconds": time.perf_counter() - t_all,
    }


def per_kind(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean metrics per shape kind."""
    kinds = sorted({r["kind"] for r in result["objects"]})
    return {k: mean_metrics([r for r in result["objects"] if r["kind"] == k]) for k in kinds}


def format_table(result: dict[str, Any], name: str = "model") -> str:
    """The paper's layout: one row per method, CD then F-score at 0.1 / 0.2 / 0.5 (Markdown)."""
    lines = ["| method | CD | FS@0.1 | FS@0.2 | FS@0.5 |", "|---|---|---|---|---|"]
    for label, m in ((name, result["mean"]), ("sphere baseline", result["baseline"])):
        lines.append(f"| {label} | {m['chamfer']:.3f} | {m['fscore@0.1']:.3f} | {m['fscore@0.2']:.3f} | {m['fscore@0.5']:.3f} |")
    return "\n".join(lines)
