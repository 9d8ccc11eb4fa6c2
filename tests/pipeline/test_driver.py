"""One driver for both paths: `asset3d convert` (inline) and the `convert_batch` flow (Prefect tasks) make the
same catalogue rows and the same published objects; a converted photo is skipped unless ``--force``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from asset3d.cli import main
from storage.catalogue import Catalogue


def _photos(root: Path, photo_bytes: dict[str, bytes], names: tuple[str, ...]) -> Path:
    """``root/SKU-<stem>/<name>`` for each photo: the SKU is the parent folder on both paths."""
    for name in names:
        folder = root / f"SKU-{name.split('.')[0]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(photo_bytes[name])
    return root


def _objects(dest: Path) -> dict[str, str]:
    """Every published object below ``dest`` (relative path -> sha256), manifests by their file list only
    (their provenance names the run, which differs between two runs)."""
    out = {}
    for p in sorted(dest.rglob("*")):
        if not p.is_file() or ".asset3d-" in str(p.relative_to(dest)):
            continue
        rel = str(p.relative_to(dest))
        if p.name == "manifest.json":
            out[rel] = json.dumps(json.loads(p.read_text())["files"], sort_keys=True)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _rows(url: str) -> list[tuple[Any, ...]]:
    """What the catalogue says of each asset, without ids and times."""
    cat = Catalogue(url)
    try:
        rows = []
        for a in sorted(cat.review_queue(limit=None), key=lambda a: a.conversion_key):
            d = cat.asset_detail(a.id)
            metrics = {k: round(m.value, 6) for k, m in d.metrics.items()}
            rows.append((a.sku, d.photo.uri, a.status.value, a.conversion_key, a.params_hash, a.glb_sha256, a.faces,
                         a.published_at is not None, a.gate, metrics))  # fmt: skip
        return rows
    finally:
        cat.close()


@pytest.mark.usefixtures("prefect_harness", "result_cache", "worker_env")
def test_the_convert_command_and_the_flow_make_the_same_rows_and_objects(
    tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.convert import convert_batch

    photos = _photos(tmp_path / "photos", photo_bytes, ("chair.png", "robot.png", "broken.png"))
    cli_url, flow_url = f"sqlite:///{tmp_path / 'cli.db'}", f"sqlite:///{tmp_path / 'flow.db'}"
    rc = main(["convert", str(photos), "--out", str(tmp_path / "cli"), "--catalogue-url", cli_url, "--config", str(config_file)])
    assert rc == 2  # broken.png failed, the others went on
    capsys.readouterr()
    report = convert_batch(str(photos), dest=str(tmp_path / "flow"), catalogue_url=flow_url)
    assert report["counts"]["published"] == 2 and report["counts"]["failed"] == 1

    assert _rows(cli_url) == _rows(flow_url) and len(_rows(cli_url)) == 3  # two published, one failed
    cli_objects, flow_objects = _objects(tmp_path / "cli"), _objects(tmp_path / "flow")
    assert cli_objects == flow_objects
    assert sum(k.endswith("manifest.json") for k in cli_objects) == 2
    for url in (cli_url, flow_url):
        cat = Catalogue(url)
        try:
            (failure,) = cat.failures_since()
            assert (failure.stage, failure.photo_uri) == ("fetch", (photos / "SKU-broken" / "broken.png").as_uri())
        finally:
            cat.close()


def test_convert_twice_skips_and_force_converts_again(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chair = tmp_path / "chair.png"
    chair.write_bytes(photo_bytes["chair.png"])
    out, url = tmp_path / "out", f"sqlite:///{tmp_path / 'cat.db'}"
    args = ["convert", str(chair), "--out", str(out), "--catalogue-url", url, "--config", str(config_file), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["counts"]["published"] == 1
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    assert main(args) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out)
    assert second["counts"] == {**first["counts"], "published": 0, "skipped": 1}
    (row,) = second["photos"]
    assert row["status"] == "skipped" and row["asset_id"] == first["photos"][0]["asset_id"]
    assert "already converted" in row["message"] and "chair.png: skipped" in captured.err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps  # nothing rewritten
    assert second["photos"][0]["timings_s"] == {}  # not downloaded

    assert main([*args, "--force"]) == 0
    forced = json.loads(capsys.readouterr().out)
    (row,) = forced["photos"]
    assert row["status"] == "published" and {"fetch", "intake", "reconstruct", "build"} <= set(row["timings_s"])
    assert row["asset_id"] == first["photos"][0]["asset_id"]  # the same conversion: the same asset, not a new one
    cat = Catalogue(url)
    try:
        assert len(cat.sku_history("chair")) == 1
    finally:
        cat.close()


def test_convert_takes_folders_and_sku_relabelling_needs_a_flag(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path / "photos", photo_bytes, ("chair.png", "robot.png"))
    (photos / "notes.txt").write_text("not a photo")
    out, url = tmp_path / "out", f"sqlite:///{tmp_path / 'cat.db'}"
    base = ["--out", str(out), "--catalogue-url", url, "--config", str(config_file)]
    assert main(["convert", str(photos), *base]) == 0
    assert {p.parent.parent.name for p in out.glob("*/*/model.glb")} == {"SKU-chair", "SKU-robot"}
    capsys.readouterr()

    chair = photos / "SKU-chair" / "chair.png"
    assert main(["convert", str(chair), *base, "--sku", "OTHER-1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "catalogued under SKU SKU-chair" in err and "--relabel" in err
    cat = Catalogue(url)
    try:
        assert {a.sku for a in cat.review_queue(limit=None)} == {"SKU-chair", "SKU-robot"}  # nothing moved
    finally:
        cat.close()
    assert main(["convert", str(chair), *base, "--sku", "OTHER-1", "--relabel"]) == 0


def test_a_run_releases_what_an_earlier_run_recorded_but_never_published(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import create_engine, text

    chair = tmp_path / "chair.png"
    chair.write_bytes(photo_bytes["chair.png"])
    out, url = tmp_path / "out", f"sqlite:///{tmp_path / 'cat.db'}"
    args = ["convert", str(chair), "--out", str(out), "--catalogue-url", url, "--config", str(config_file), "--json"]
    assert main(args) == 0
    capsys.readouterr()
    (manifest,) = out.glob("chair/*/manifest.json")
    manifest.unlink()  # as a run killed after its catalogue row, before its manifest, leaves it
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE assets SET published_at = NULL"))
    engine.dispose()

    assert main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)["photos"]
    assert row["status"] == "published" and "recorded without its manifest" in row["message"]
    assert manifest.is_file()
    cat = Catalogue(url)
    try:
        (asset,) = cat.sku_history("chair")
        assert asset.published_at is not None
    finally:
        cat.close()
