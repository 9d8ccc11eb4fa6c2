"""Fault suite: photos that used to stop a batch or be converted twice.

* the same bytes under two SKUs, in one batch and across batches on a warm cache: two photos, two catalogue
  rows, one shared computation;
* badly named SKU folders (backslash, non-ASCII, NUL, very long) beside good photos: a failure row each,
  recorded once however many runs see them, and the batch goes on;
* two overlapping runs over the same photos: each photo converted once, both summaries true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import upload_photos
from reliability_helpers import assert_counts, assert_published_once

from asset3d.cli.convert import convert_local
from asset3d.pipeline.settings import load_settings
from storage.catalogue import Catalogue

pytestmark = pytest.mark.reliability


def _convert(source: Any, dest: str, url: str, options: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings(**{**options, "dest": dest, "catalogue_url": url})
    return convert_local(source, settings).as_dict()


def test_same_bytes_under_two_skus_in_one_batch(tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any]) -> None:
    root = tmp_path / "photos"
    for sku in ("SKU-A", "SKU-B"):
        (root / sku).mkdir(parents=True)
        (root / sku / "front.png").write_bytes(photo_bytes["chair.png"])
    (root / "SKU-C").mkdir()
    (root / "SKU-C" / "robot.png").write_bytes(photo_bytes["robot.png"])
    dest, url = str(tmp_path / "assets"), f"sqlite:///{tmp_path / 'cat.db'}"
    report = _convert(str(root), dest, url, fast_options)
    assert_counts(report, photos=3)
    assert report["counts"]["published"] == 3
    uris = [(root / s / n).as_uri() for s, n in (("SKU-A", "front.png"), ("SKU-B", "front.png"), ("SKU-C", "robot.png"))]
    assert_published_once(dest, url, uris)
    rows = {r["uri"]: r for r in report["photos"]}
    a, b = rows[uris[0]], rows[uris[1]]
    assert a["asset_id"] != b["asset_id"] and a["sku"] != b["sku"]
    # one reconstruction for the two photos of the same bytes: the second photo's share is nil
    assert sorted([a["timings_s"]["reconstruct"] == 0.0, b["timings_s"]["reconstruct"] == 0.0]) == [False, True]
    assert "intake" not in a["timings_s"] or "intake" not in b["timings_s"]
    # the second run skips both: two rows, not one
    again = _convert(str(root), dest, url, fast_options)
    assert again["counts"]["skipped"] == 3


@pytest.mark.usefixtures("prefect_harness", "result_cache", "worker_env")
def test_same_bytes_under_a_new_sku_on_a_warm_cache(tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
    from flows.convert import convert_batch

    first, second = tmp_path / "batch-1", tmp_path / "batch-2"
    (first / "SKU-A").mkdir(parents=True)
    (first / "SKU-A" / "front.png").write_bytes(photo_bytes["chair.png"])
    (second / "SKU-B").mkdir(parents=True)
    (second / "SKU-B" / "front.png").write_bytes(photo_bytes["chair.png"])  # the same bytes, another product
    (second / "SKU-C").mkdir()
    (second / "SKU-C" / "robot.png").write_bytes(photo_bytes["robot.png"])
    dest, url = str(tmp_path / "assets"), f"sqlite:///{tmp_path / 'cat.db'}"
    one = convert_batch(str(first), dest=dest, catalogue_url=url)
    two = convert_batch(str(second), dest=dest, catalogue_url=url)  # SKU-B's intake comes from the cache
    assert one["counts"]["published"] == 1 and two["counts"]["published"] == 2, two["photos"]
    assert_counts(two, photos=2)
    row = next(r for r in two["photos"] if r["sku"] == "SKU-B")
    assert row["timings_s"]["intake"] == 0.0  # the cached intake result, which names no photo (it used to name SKU-A's)
    uris = [(first / "SKU-A" / "front.png").as_uri(), (second / "SKU-B" / "front.png").as_uri(), (second / "SKU-C" / "robot.png").as_uri()]
    assert_published_once(dest, url, uris)
    three = convert_batch(str(second), dest=dest, catalogue_url=url)  # and nothing is converted again
    assert three["counts"]["skipped"] == 2


BAD_FOLDERS = ("Möbel", "back\\slash", "nul\x00byte", "x" * 300)


def test_bad_sku_folders_are_refused_one_by_one_and_once(
    s3: Any, bucket: str, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], tmp_path: Path
) -> None:
    upload_photos(s3, bucket, {n: photo_bytes[n] for n in ("chair.png", "robot.png")})
    for i, folder in enumerate(BAD_FOLDERS):
        s3.put_object(Bucket=bucket, Key=f"incoming/{folder}/photo-{i}.png", Body=photo_bytes["hamburger.png"])
    source, dest, url = f"s3://{bucket}/incoming", f"s3://{bucket}/assets", f"sqlite:///{tmp_path / 'cat.db'}"
    report = _convert(source, dest, url, fast_options)
    assert_counts(report, photos=2 + len(BAD_FOLDERS))
    assert report["counts"]["published"] == 2 and report["counts"]["failed"] == len(BAD_FOLDERS)
    refused = [r for r in report["photos"] if r["status"] == "failed"]
    assert {r["stage"] for r in refused} == {"discover"}
    assert {r["reason"] for r in refused} <= {"bad_sku", "invalid_key"}
    good = [f"s3://{bucket}/incoming/SKU-{n.split('.')[0]}/{n}" for n in ("chair.png", "robot.png")]
    assert_published_once(dest, url, good)
    cat = Catalogue(url)
    try:
        first = cat.failures_since()
        assert len(first) == len(BAD_FOLDERS) and all(f.photo_uri for f in first)
        again = _convert(source, dest, url, fast_options)  # the same refusals are settled: no new rows
        assert again["counts"]["failed"] == len(BAD_FOLDERS) and again["counts"]["skipped"] == 2
        assert len(cat.failures_since()) == len(BAD_FOLDERS)
    finally:
        cat.close()


def test_two_overlapping_runs_convert_each_photo_once(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, postgres_url: str
) -> None:
    root = tmp_path / "photos"
    names = ("chair.png", "robot.png", "hamburger.png", "cerebro.jpg", "flor.png", "teapot.png")
    for name in names:
        (root / f"SKU-{name.split('.')[0]}").mkdir(parents=True)
        (root / f"SKU-{name.split('.')[0]}" / name).write_bytes(photo_bytes[name])
    dest = tmp_path / "assets"
    env = {**os.environ, "ASSET3D_CATALOGUE_URL": postgres_url}
    argv = [sys.executable, "-m", "asset3d", "convert", str(root), "--out", str(dest), "--config", str(config_file), "--json"]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode in (0, 2), err
        reports.append(json.loads(out))
    uris = [(root / f"SKU-{n.split('.')[0]}" / n).as_uri() for n in names]
    assert_published_once(str(dest), postgres_url, uris)
    for report in reports:
        assert_counts(report, photos=len(names))
    for uri in uris:  # one run converted it; the other says so
        statuses = sorted(next(r["status"] for r in report["photos"] if r["uri"] == uri) for report in reports)
        assert statuses in (["other_run", "published"], ["published", "skipped"]), (uri, statuses)
    cat = Catalogue(postgres_url)
    try:
        assert len(cat.review_queue(limit=None)) == len(names)  # one asset per photo
        assert not cat.runs_in_progress()  # both runs closed (and their leases with them)
    finally:
        cat.close()
