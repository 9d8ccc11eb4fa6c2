"""`asset3d convert`: local files in, GLB + previews + metrics out, catalogue updated; exit codes 0, 2, 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asset3d.cli import main
from storage.catalogue import Catalogue


def test_convert_local_photos(tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chair, broken = tmp_path / "chair.png", tmp_path / "broken.png"
    chair.write_bytes(photo_bytes["chair.png"])
    broken.write_bytes(photo_bytes["broken.png"])
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    out = tmp_path / "out"
    args = ["convert", str(chair), "--out", str(out), "--catalogue-url", url, "--config", str(config_file), "--json"]

    assert main(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["counts"]["published"] == 1
    assert "[1/1] chair.png: published" in captured.err  # per-image progress
    (manifest,) = out.glob("chair/*/manifest.json")
    files = {f["key"] for f in json.loads(manifest.read_text())["files"]}
    assert {"model.glb", "metrics.json", "previews/view_00.png"} <= files
    assert all((manifest.parent / k).is_file() for k in files)

    assert main([*args[:2], str(broken), *args[2:]]) == 2  # one good, one corrupt
    captured = capsys.readouterr()
    failure_lines = [line for line in captured.err.splitlines() if line.startswith("failed ")]
    assert len(failure_lines) == 1 and "broken.png" in failure_lines[0] and "fetch" in failure_lines[0]
    cat = Catalogue(url)
    try:
        assert [f.stage for f in cat.failures_since()] == ["fetch"]
        assert len(cat.sku_history("chair")) == 1  # the second run found the same conversion
    finally:
        cat.close()


def test_convert_fatal_and_refused(tmp_path: Path, photo_bytes: dict[str, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    chair = tmp_path / "chair.png"
    chair.write_bytes(photo_bytes["chair.png"])
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    assert main(["convert", str(chair), "--out", str(tmp_path / "o"), "--catalogue-url", url, "--model", str(tmp_path / "nowhere")]) == 1
    assert "fatal" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 1  # refused before work
    assert "missing.png: no such file" in capsys.readouterr().err


def test_a_photo_the_gate_rejects_is_a_reviewable_rejected_asset(
    tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    strict = {**fast_options, "review": {**fast_options["review"], "reject_below_silhouette_iou": 0.999}}
    (config := tmp_path / "strict.yaml").write_text(yaml.safe_dump(strict))
    chair = tmp_path / "chair.png"
    chair.write_bytes(photo_bytes["chair.png"])
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    out = tmp_path / "out"
    assert main(["convert", str(chair), "--out", str(out), "--catalogue-url", url, "--config", str(config)]) == 2
    assert "silhouette IoU" in capsys.readouterr().err
    assert not list(out.glob("chair/*/manifest.json"))  # nothing visible to consumers
    cat = Catalogue(url)
    try:
        (asset,) = cat.sku_history("chair")
        assert asset.status.value == "rejected" and asset.glb_uri
        (failure,) = cat.failures_since()
        assert (failure.stage, failure.reason) == ("review", "quality_gate")
    finally:
        cat.close()
    # a reviewer may overturn the gate, with a comment
    assert main(["review", "approve", str(asset.id), "--reviewer", "ana", "--url", url]) == 2
    assert "comment" in capsys.readouterr().err
    assert main(["review", "approve", str(asset.id), "--reviewer", "ana", "--comment", "fine on the shelf", "--url", url]) == 0
    cat = Catalogue(url)
    try:
        assert cat.get_asset(asset.id).status.value == "approved"
    finally:
        cat.close()
