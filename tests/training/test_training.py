"""The training loop on the tiny config: the loss goes down, resume is exact, fine-tuning, outputs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from asset3d.cli import main
from training.data.dataset import SyntheticDataset
from training.recipe import (
    TrainConfig,
    build_model,
    compute_losses,
    export_model,
    load_checkpoint,
    lr_factor,
    make_batch,
    train,
    warmup_length,
)
from triposr import TSR, load_model

FAST = {"batch_size": 2, "render_rays": 64, "render_samples": 8, "view_size": 32, "occupancy_points": 512,
        "color_points": 128, "log_every": 1, "checkpoint_every": 2, "num_threads": None}


def tiny_train_config(tiny_config: dict[str, Any], **kw: Any) -> TrainConfig:
    return TrainConfig(model=tiny_config, **{**FAST, **kw})


def test_schedule_warms_up_then_anneals() -> None:
    cfg = TrainConfig()
    assert warmup_length(cfg, 100_000) == 2000  # full scale
    assert warmup_length(cfg, 1000) == 50  # short runs: 5 % of the steps
    assert warmup_length(cfg, 3) == 1
    w, total = 50, 1000
    assert lr_factor(0, w, total, 0.0) == pytest.approx(1 / 50)
    assert lr_factor(49, w, total, 0.0) == pytest.approx(1.0)
    assert lr_factor(50, w, total, 0.0) == pytest.approx(1.0)
    assert lr_factor(525, w, total, 0.0) == pytest.approx(0.5)
    assert lr_factor(1000, w, total, 0.1) == pytest.approx(0.1)
    assert TrainConfig().lr == 4e-4 and TrainConfig().mask_weight == 0.05 and TrainConfig().lpips_weight == 2.0


def test_a_few_steps_reduce_the_loss(tmp_path: Path, small_dataset: Path, tiny_config: dict[str, Any]) -> None:
    cfg = tiny_train_config(tiny_config, lr=3e-3, steps=12, batch_size=3)
    data = SyntheticDataset(small_dataset, cond_size=64, view_size=cfg.view_size)
    probe = make_batch(data, cfg, 0)

    def probe_loss(model: TSR) -> float:
        from triposr.renderer import TriplaneNeRFRenderer

        renderer = TriplaneNeRFRenderer(dataclasses.replace(model.renderer.cfg, num_samples_per_ray=cfg.render_samples))
        with torch.no_grad():
            return float(compute_losses(model, renderer, probe, cfg, None)["loss"])

    before = probe_loss(build_model(cfg, None, torch.device("cpu")))
    result = train(cfg, data, tmp_path / "run", progress=False)
    after = probe_loss(load_model(tmp_path / "run", device="cpu", dtype="fp32"))
    assert math.isfinite(after) and after < 0.9 * before, (before, after)
    assert result.steps == 12 and len(result.log) == 12
    for name in ("checkpoint.pt", "config.yaml", "model.safetensors", "train_log.jsonl", "loss.png", "summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    notes = (tmp_path / "run" / "run_notes.txt").read_text()
    assert "LPIPS skipped" in notes
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert all(r["images_per_s"] > 0 and "occupancy" in r and "rgb_mse" in r and "mask" in r for r in rows)


def test_resume_continues_from_the_same_step_and_optimiser_state(tmp_path: Path, small_dataset: Path,
                                                                   tiny_config: dict[str, Any]) -> None:
    cfg = tiny_train_config(tiny_config, steps=4, checkpoint_every=1)
    data = SyntheticDataset(small_dataset, cond_size=64, view_size=cfg.view_size)
    train(cfg, data, tmp_path / "straight", progress=False)
    train(cfg, data, tmp_path / "split", progress=False, stop_after=2)
    half = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert half["step"] == 2
    assert {float(s["step"]) for s in half["optimizer"]["state"].values()} == {2.0}
    result = train(cfg, data, tmp_path / "split", progress=False, resume=True)
    assert result.steps == 4
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)
    for k, st in a["optimizer"]["state"].items():
        torch.testing.assert_close(b["optimizer"]["state"][k]["exp_avg_sq"], st["exp_avg_sq"], rtol=0, atol=1e-9)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    with pytest.raises(FileNotFoundError, match="no checkpoint.pt"):
        train(cfg, data, tmp_path / "nothing", progress=False, resume=True)


def test_fine_tune_from_a_load_model_source(tmp_path: Path, small_dataset: Path, tiny_fixture_model: TSR,
                                            tiny_config: dict[str, Any]) -> None:
    export_model(tiny_fixture_model, tmp_path / "init")
    cfg = tiny_train_config(None, steps=2)  # the model comes from --init
    result = train(cfg, small_dataset, tmp_path / "ft", init=str(tmp_path / "init"), progress=False)
    assert result.steps == 2 and math.isfinite(result.final_loss)
    tuned = load_model(tmp_path / "ft", device="cpu")
    assert yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text()) == tiny_fixture_model.cfg.to_dict()
    start = tiny_fixture_model.state_dict()
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, start[k])]
    assert "decoder.layers.0.weight" in changed  # trained from the given weights, not from scratch
    delta = max(float((tuned.state_dict()[k] - start[k]).abs().max()) for k in changed)
    assert delta < 0.05  # two small steps away from the initial weights
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["init"] == str(tmp_path / "init")


def test_gradient_checkpointing_gives_the_same_gradients(small_dataset: Path, tiny_config: dict[str, Any]) -> None:
    from training.recipe import enable_gradient_checkpointing
    from triposr.renderer import TriplaneNeRFRenderer

    cfg = tiny_train_config(tiny_config)
    data = SyntheticDataset(small_dataset, cond_size=64, view_size=cfg.view_size)
    batch = make_batch(data, cfg, 0)
    grads = []
    for ckpt in (False, True):
        model = build_model(cfg, None, torch.device("cpu")).train()
        if ckpt:
            enable_gradient_checkpointing(model)
        renderer = TriplaneNeRFRenderer(dataclasses.replace(model.renderer.cfg, num_samples_per_ray=cfg.render_samples))
        compute_losses(model, renderer, batch, cfg, None)["loss"].backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=1e-4, atol=1e-6, msg=k)


def test_train_command(tmp_path: Path, small_dataset: Path, tiny_config: dict[str, Any]) -> None:
    cfg_path = tmp_path / "train.yaml"
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(tiny_config))
    cfg_path.write_text(yaml.safe_dump({"model": "model.yaml", **FAST, "num_threads": 1}))
    code = main(["train", "--config", str(cfg_path), "--dataset", str(small_dataset), "--out", str(tmp_path / "out"),
                 "--steps", "2", "--no-progress"])
    assert code == 0
    assert load_model(tmp_path / "out", device="cpu").cfg.to_dict()["cond_image_size"] == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: model.yaml\nlearning_rate: 1\n")
    assert main(["train", "--config", str(bad), "--dataset", str(small_dataset), "--out", str(tmp_path / "o2")]) == 2
    assert main(["train", "--config", str(cfg_path), "--dataset", str(tmp_path), "--out", str(tmp_path / "o3")]) == 2
