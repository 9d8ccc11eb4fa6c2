"""Evaluation: the metrics are the mesh stage's, the baseline, and the bundled demo model on held-out objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from asset3d.cli import main
from meshing.metrics import chamfer_fscore
from training.data.dataset import SyntheticDataset
from training.data.synthetic import SynthConfig, make_dataset
from training.evaluation import (
    EMPTY_CHAMFER,
    METRIC_KEYS,
    EvalProtocol,
    evaluate,
    format_table,
    score,
    sphere_baseline,
)
from triposr import load_model

HELD_OUT_SEED = 2  # the demo model was trained on seed 1


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 5 objects of the held-out set (meshes and conditioning views do not depend on `views`)."""
    cfg = SynthConfig(views=1, view_size=32, n_surface=256, n_near=256, n_uniform=256)
    return make_dataset(HELD_OUT_SEED, 5, tmp_path_factory.mktemp("heldout") / "seed2", cfg)


def test_score_is_the_mesh_stage_function(small_dataset: Path) -> None:
    data = SyntheticDataset(small_dataset)
    gt = data.mesh(0)
    pred = gt.copy()
    pred.apply_transform(trimesh.transformations.rotation_matrix(0.3, [0, 0, 1]))
    pred.vertices = pred.vertices * [1.0, 1.15, 0.9]
    protocol = EvalProtocol(n_points=2000)
    got = score(pred, gt, protocol)
    ref = chamfer_fscore(pred, gt, n_points=2000, normalize="unit_cube", align="rotate_icp")
    assert got == {k: ref[k] for k in METRIC_KEYS}
    assert 0 < got["chamfer"] < 0.1 and got["fscore@0.5"] == 1.0
    same = score(gt, gt, protocol)
    assert same["chamfer"] == pytest.approx(0.0, abs=1e-9) and same["fscore@0.1"] == 1.0
    empty = score(trimesh.Trimesh(), gt, protocol)
    assert empty == {"chamfer": EMPTY_CHAMFER, "fscore@0.1": 0.0, "fscore@0.2": 0.0, "fscore@0.5": 0.0}
    ball = sphere_baseline(0.4)
    assert score(trimesh.creation.icosphere(subdivisions=5, radius=0.3), ball, protocol)["fscore@0.1"] == 1.0


@pytest.mark.slow
def test_demo_model_beats_the_sphere_on_held_out_objects(tmp_path: Path, held_out: Path) -> None:
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "demo", "--dataset", str(held_out), "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert set(result["mean"]) == set(METRIC_KEYS) and set(result["baseline"]) == set(METRIC_KEYS)
    assert len(result["objects"]) == 5 and result["protocol"]["resolution"] == 256
    assert result["mean"]["fscore@0.1"] > result["baseline"]["fscore@0.1"]
    assert result["mean"]["chamfer"] < result["baseline"]["chamfer"]
    assert result["empty"] == 0
    table = format_table(result, name="demo")
    assert table.splitlines()[0] == "| method | CD | FS@0.1 | FS@0.2 | FS@0.5 |"


def test_evaluate_rows_are_the_mesh_stage_metrics(held_out: Path) -> None:
    """Each row is `meshing.metrics.chamfer_fscore` of the extracted mesh (a coarse grid keeps it quick)."""
    model = load_model("demo", device="cpu", dtype="fp32")
    data = SyntheticDataset(held_out, cond_size=model.cfg.cond_image_size)
    protocol = EvalProtocol(resolution=64, n_points=2000)
    row = evaluate(model, data, protocol, limit=1)["objects"][0]
    with torch.inference_mode():
        mesh = model.extract_mesh(model.encode(data.cond_image(0)[None]), resolution=64, vertex_colors=False)[0]
    ref = chamfer_fscore(mesh, data.mesh(0), n_points=2000, normalize="unit_cube", align="rotate_icp")
    for k in METRIC_KEYS:
        assert row[k] == pytest.approx(ref[k], rel=1e-9), k


def test_demo_model_loads_and_ships(shared: Path) -> None:
    from triposr.loading import DEMO_DIR

    weights = DEMO_DIR / "model.safetensors"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    assert (DEMO_DIR / "MODEL_CARD.md").is_file()
    model = load_model("demo", device="cpu")
    official = yaml_load(shared / "triposr" / "config.yaml")
    cfg = model.cfg.to_dict()
    # the official triplane (resolution and channels), decoder and renderer; a small tokenizer and backbone
    assert cfg["tokenizer"]["plane_size"] == official["tokenizer"]["plane_size"]
    assert cfg["post_processor"]["out_channels"] == official["post_processor"]["out_channels"]
    assert cfg["decoder"] == official["decoder"] and cfg["renderer"] == official["renderer"]
    assert model.num_parameters() < 10_000_000
    codes = model.encode(np.zeros((1, 64, 64, 3), np.uint8) + 127)
    assert codes.shape == (1, 3, 40, 64, 64)


def test_eval_refuses_a_missing_model(tmp_path: Path, held_out: Path) -> None:
    assert main(["eval", "--model", str(tmp_path / "nope"), "--dataset", str(held_out), "--quiet"]) == 2


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())
