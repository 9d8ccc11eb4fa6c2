"""`asset3d gc`: runs whose process is gone are closed, orphaned asset folders removed, nothing else touched.

One real asset is converted (tiny model) into a local folder or a moto S3 prefix; around it the test lays
what killed runs leave behind -- staged files with neither manifest nor catalogue row, a run row whose
process is dead -- and what gc must never touch: a published asset, a folder a catalogue row names (staged
for a reviewer), a folder younger than the grace period or than a live run, objects that are not asset
folders, runs of other hosts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import assert_consistent, assert_counts, assert_no_secret, assert_published_once
from sqlalchemy.engine import make_url

from asset3d.cli.convert import convert_local
from asset3d.pipeline import gc
from asset3d.pipeline.settings import load_settings
from storage import open_store
from storage.catalogue import AssetStatus, Catalogue, RunStatus, params_hash

ORPHAN_KEY = "0" * 63 + "a"
SECRET = "gc-test-Pa55word"
OTHER_FILES = ("readme.txt", "SKU-chair/notes/todo.txt", "SKU-chair/" + "b" * 64 + ".png")  # not asset folders


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _world(
    kind: str, tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], request: pytest.FixtureRequest,
    url: str | None = None,
) -> dict[str, Any]:
    """A destination with one published asset, one orphan folder, non-asset objects; a catalogue (SQLite
    unless ``url`` names one)."""
    if kind == "s3":
        bucket = request.getfixturevalue("bucket")
        dest = f"s3://{bucket}/assets"
    else:
        dest = str(tmp_path / "assets")
    photos = tmp_path / "photos" / "SKU-chair"
    photos.mkdir(parents=True)
    (photos / "chair.png").write_bytes(photo_bytes["chair.png"])
    url = url or f"sqlite:///{tmp_path / 'cat.db'}"
    settings = load_settings(**{**fast_options, "dest": dest, "catalogue_url": url})
    report = convert_local(str(tmp_path / "photos"), settings).as_dict()
    assert report["counts"]["published"] == 1
    store = open_store(dest)
    published = sorted(i.key for i in store.list("SKU-chair/"))
    folder = published[0].split("/")[1]
    for key in published:  # a killed run's staged copy: files, no manifest, no row
        if not key.endswith("manifest.json"):
            store.put(key.replace(folder, ORPHAN_KEY), store.get(key), content_type="application/octet-stream")
    for key in OTHER_FILES:
        store.put(key, b"not an asset", content_type="text/plain")
    return {"dest": dest, "url": url, "store": store, "report": report, "photo": (photos / "chair.png").as_uri(), "published": published}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_gc_removes_orphans_and_closes_dead_runs_only(
    kind: str, tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    w = _world(kind, tmp_path, photo_bytes, fast_options, request)
    store, dest, url = w["store"], w["dest"], w["url"]
    cat = Catalogue(url)
    try:
        ref = cat.recent_runs()[0]
        here = socket.gethostname()
        run_args = {"model_id": ref.model_id, "weights_sha256": ref.weights_sha256, "pipeline_version": ref.pipeline_version}
        dead = cat.start_run(**run_args, host=here, pid=_dead_pid())
        other = cat.start_run(**run_args, host="another-host", pid=os.getpid())
        before = sorted(i.key for i in store.list(""))

        dry = gc.collect(cat, [dest], grace_hours=0, dry_run=True)  # says what it would do, changes nothing
        assert [v.run.id for v in dry.closed] == [dead.id]
        assert [v.folder.conversion_key for v in dry.removed] == [ORPHAN_KEY]
        assert sorted(i.key for i in store.list("")) == before
        assert {r.id for r in cat.runs_in_progress()} == {dead.id, other.id}

        young = gc.collect(cat, [dest], dry_run=True)  # the default grace period keeps a fresh orphan
        assert not young.removed
        assert any("younger than the grace period" in v.because for v in young.folders)

        done = gc.collect(cat, [dest], grace_hours=0)
        assert [v.run.id for v in done.closed] == [dead.id]
        assert cat.get_run(dead.id).status is RunStatus.failed
        assert cat.get_run(other.id).status is RunStatus.running  # another host: left to reconcile
        assert done.objects_removed == len(w["published"]) - 1
        after = sorted(i.key for i in store.list(""))
        assert after == sorted(w["published"] + list(OTHER_FILES))  # the orphan went, nothing else
        again = gc.collect(cat, [dest], grace_hours=0)  # nothing left to do
        assert not again.closed and not again.removed
    finally:
        cat.close()
    assert_published_once(dest, url, [w["photo"]])
    assert_counts(w["report"], photos=1)


def test_gc_keeps_folders_a_row_names_and_those_of_live_runs(
    tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    w = _world("local", tmp_path, photo_bytes, fast_options, request)
    store, dest, url = w["store"], w["dest"], w["url"]
    cat = Catalogue(url)
    try:
        photo = cat.photos_by_uri([w["photo"]])[w["photo"]]
        ref = cat.recent_runs()[0]
        # staged for a reviewer: a row (needs_review), files, no manifest
        held, _ = cat.record_asset(
            photo_id=photo.id, params_hash=params_hash({"other": "parameters"}), weights_sha256=ref.weights_sha256,
            preset="web", status=AssetStatus.needs_review, glb_uri=store.uri_for("SKU-chair/" + "c" * 64 + "/model.glb"),
        )  # fmt: skip
        store.put("SKU-chair/" + "c" * 64 + "/model.glb", b"glb", content_type="model/gltf-binary")
        # a live run (this process) that started before the orphan's files were written
        live = cat.start_run(model_id=ref.model_id, weights_sha256=ref.weights_sha256, pipeline_version="x")
        store.put(f"SKU-chair/{ORPHAN_KEY}/late.bin", b"written by the live run", content_type="application/octet-stream")
        report = gc.collect(cat, [dest], grace_hours=0)
        assert not report.closed and not report.removed
        why = {v.folder.conversion_key: v.because for v in report.folders}
        assert why["c" * 64] == "a catalogue asset names it"
        assert why[ORPHAN_KEY] == "written since a run still running started"
        assert why[w["published"][0].split("/")[1]] == "has a manifest"
        cat.finish_run(live.id)
        report = gc.collect(cat, [dest], grace_hours=0)  # the run ended: now the orphan goes
        assert [v.folder.conversion_key for v in report.removed] == [ORPHAN_KEY]
        assert store.exists("SKU-chair/" + "c" * 64 + "/model.glb") and cat.get_asset(held.id).status is AssetStatus.needs_review
    finally:
        cat.close()
    assert_consistent(dest, url)


def test_asset3d_gc_command(
    tmp_path: Path, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], request: pytest.FixtureRequest, postgres_url: str
) -> None:
    url = make_url(postgres_url).set(password=SECRET).render_as_string(hide_password=False)  # trust auth ignores it
    w = _world("local", tmp_path, photo_bytes, fast_options, request, url=url)
    cat = Catalogue(w["url"])
    try:
        ref = cat.recent_runs()[0]
        dead = cat.start_run(model_id=ref.model_id, weights_sha256=ref.weights_sha256, pipeline_version="x", pid=_dead_pid())
    finally:
        cat.close()
    server_home = tmp_path / "tmp" / "asset3d-tempserver-left"  # a killed command's temporary server folder
    server_home.mkdir(parents=True)
    (server_home / "owner").write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    argv = [sys.executable, "-m", "asset3d", "gc", "--dest", w["dest"], "--catalogue-url", w["url"], "--grace-hours", "0"]

    dry = subprocess.run([*argv, "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert f"run {dead.id}: would close as failed" in dry.stdout
    assert f"{ORPHAN_KEY}/: would remove" in dry.stdout and "dry run: nothing changed" in dry.stderr
    assert server_home.exists() and w["store"].exists(f"SKU-chair/{ORPHAN_KEY}/metrics.json")

    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["run_id"] for r in out["runs_closed"]] == [dead.id]
    assert [f["uri"].rsplit("/", 1)[1] for f in out["folders_removed"]] == [ORPHAN_KEY]
    assert out["server_folders_removed"] == [str(server_home)] and not server_home.exists()
    assert not list(w["store"].list(f"SKU-chair/{ORPHAN_KEY}/"))
    assert_published_once(w["dest"], w["url"], [w["photo"]])
    assert_counts(w["report"], photos=1)
    refused = subprocess.run([*argv[:4], "--dest", "ftp://nowhere/x", "--catalogue-url", w["url"]], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "ftp" in refused.stderr, refused.stderr
    texts = [p.stdout + p.stderr for p in (dry, done, refused)]
    assert_no_secret([SECRET], texts=texts, catalogue_url=postgres_url, dest=w["dest"])


def test_catalogue_queries_for_gc(catalogue_url: str) -> None:
    """`asset_folders` (a prefix with LIKE's special characters taken literally) and `known_conversion_keys`."""
    cat = Catalogue(catalogue_url)
    try:
        photo = cat.upsert_photo("SKU-1", uri="s3://p/SKU-1/a.png", bucket="p", key="SKU-1/a.png", sha256="1" * 64, size_bytes=1)
        asset, _ = cat.record_asset(
            photo_id=photo.id, params_hash="2" * 64, weights_sha256="3" * 64, preset="web",
            glb_uri="s3://assets/100%_x/SKU-1/" + "4" * 64 + "/model.glb",
        )  # fmt: skip
        assert cat.asset_folders("s3://assets/100%_x/") == {"s3://assets/100%_x/SKU-1/" + "4" * 64}
        assert cat.asset_folders("s3://assets/100%_") == {"s3://assets/100%_x/SKU-1/" + "4" * 64}
        assert cat.asset_folders("s3://assets/100%%") == set() and cat.asset_folders("s3://assets/1000") == set()
        assert cat.known_conversion_keys([asset.conversion_key, "5" * 64]) == {asset.conversion_key}
    finally:
        cat.close()


def test_pid_alive_tells_a_taken_over_pid() -> None:
    me = os.getpid()
    assert gc.pid_alive(me) and gc.pid_alive(me, started_before=datetime.now(UTC))
    assert not gc.pid_alive(me, started_before=datetime.now(UTC) - timedelta(days=1))  # started after the run: another process
    assert not gc.pid_alive(_dead_pid())
    assert gc.process_gone(socket.gethostname(), _dead_pid()) and not gc.process_gone("another-host", _dead_pid())
    assert not gc.process_gone(None, None)
