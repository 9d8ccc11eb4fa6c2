"""`asset3d preprocess`: writes the model input and mask, prints JSON, exits 2 on a refused input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asset3d.cli import preprocess as command


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="asset3d")
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["preprocess", *argv])
    return int(args.func(args))


def test_writes_input_and_mask_and_prints_json(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, mask = tmp_path / "in.png", tmp_path / "sub" / "mask.png"
    code = cli([str(photos / "cerebro.jpg"), "--out", str(out), "--mask-out", str(mask), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"method", "flags", "usable", "foreground_fraction", "bbox"} <= set(summary)
    assert summary["method"] == "plain-backdrop" and summary["usable"] is True
    img = np.asarray(Image.open(out))
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [127, 127, 127]
    m = np.asarray(Image.open(mask))
    assert m.shape == (360, 360) and m.dtype == np.uint8
    assert abs((m >= 128).mean() - summary["foreground_fraction"]) < 1e-9
    x0, y0, x1, y1 = summary["bbox"]
    assert m[y0:y1, x0:x1].any() and not m[:y0].any() and not m[:, x1:].any()


def test_method_and_ratio_options(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "chair.png"
    code = cli(
        [
            str(photos / "chair.png"),
            "--out",
            str(out),
            "--method",
            "alpha",
            "--foreground-ratio",
            "0.5",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "alpha"
    ys = np.flatnonzero((np.abs(np.asarray(Image.open(out)).astype(int) - 127).sum(-1) > 30).any(axis=1))
    assert abs((ys[-1] - ys[0] + 1) - 0.5 * 512) <= 6


def test_refused_input_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "drawing.jpg"
    bad.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"/>')
    out = tmp_path / "never.png"
    assert cli([str(bad), "--out", str(out), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "refused": True,
        "reason": "unsupported_format",
        "name": str(bad),
        "detail": "SVG is not an accepted format (accepted: JPEG, PNG, WEBP, TIFF)",
    }
    assert "unsupported_format" in captured.err and str(bad) in captured.err
    assert not out.exists()


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_plain_output_line(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([str(photos / "teapot.png"), "--out", str(tmp_path / "t.png")]) == 0
    line = capsys.readouterr().out
    assert "plain-backdrop" in line and "usable" in line
