"""Task logic through ``task.fn()``: retries for transient errors only, cache keys made of everything a result
depends on, micro-batches with one model load per process, staging files with no manifest, releasing
with the manifest last, and idempotent re-publishing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import S3FaultProxy

from asset3d.pipeline import models, photos, publishing
from asset3d.pipeline.assets import AssetIdentity
from asset3d.pipeline.errors import StageError, is_transient
from asset3d.pipeline.options import StageOptions
from asset3d.pipeline.photos import PhotoRef
from asset3d.pipeline.settings import Settings, load_settings
from intake import IntakeError
from meshing import MeshingError
from storage import ObjectTooLarge, PermanentStorageError, TransientStorageError
from storage.catalogue import CatalogueUnavailable
from storage.local import LocalStore
from tasks import stages
from tasks.policy import retry_transient


@pytest.fixture
def settings(fast_options: dict[str, Any]) -> Settings:
    return load_settings(**fast_options)


@pytest.fixture
def opts(settings: Settings) -> StageOptions:
    return settings.stage_options()


def _ref(folder: Path, name: str, data: bytes, sku: str = "SKU-1") -> PhotoRef:
    store = LocalStore(folder)
    info = store.put(name, data)
    return PhotoRef(store.uri_for(name), store.uri, name, sku, info.etag, info.size)


# -- retries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransientStorageError("get s3://b/k: SlowDown (HTTP 503)", reason="throttled"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (CatalogueUnavailable("catalogue unavailable", reason="unreachable"), True),
        (PermanentStorageError("get s3://b/k: AccessDenied (HTTP 403)", reason="accessdenied"), False),
        (ObjectTooLarge("too big"), False),
        (CatalogueUnavailable("no schema", reason="not_migrated"), False),
        (StageError("fetch", "truncated", "corrupt photo"), False),
        (MeshingError("validator_errors", "3 errors"), False),
        (ValueError("bad"), False),
    ],
)
def test_only_transient_errors_are_retried(error: Exception, transient: bool) -> None:
    from prefect.states import Failed

    assert is_transient(error) is transient
    assert retry_transient(stages.fetch, None, Failed(data=error)) is transient  # type: ignore[arg-type]


def test_every_stage_task_retries_with_backoff_and_the_condition() -> None:
    from asset3d.pipeline.driver import Step

    assert set(stages.TASKS) == set(Step)  # every step of the driver has its task
    for step, t in stages.TASKS.items():
        name = step.value
        assert t.retries >= 1 and t.retry_condition_fn is retry_transient, name
        assert t.retry_jitter_factor and callable(t.retry_delay_seconds) is False  # a list of growing delays
        assert list(t.retry_delay_seconds) == sorted(t.retry_delay_seconds) and t.retry_delay_seconds[0] > 0
    assert "gpu" not in stages.reconstruct.tags  # the device section takes a slot of the global `gpu` limit instead


def test_a_flow_run_keeps_no_step_result_in_memory(prefect_harness: None, tmp_path: Path, photo_bytes: dict[str, bytes], settings: Settings) -> None:
    """Prefect keeps every persisted task result of a flow run in an in-memory cache of 1,000 records; for a
    batch that is every photo's download, pixels, mesh and GLB until the run ends (the soak's growth). The
    configured tasks persist their results for re-runs but leave that cache empty; the states still carry
    the values to the driver."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from asset3d.pipeline.driver import Step
    from flows.batch import PrefectRunner

    opts = settings.stage_options()
    names = ("chair.png", "flor.png", "robot.png")
    refs = [_ref(tmp_path, f"SKU-{i}/{name}", photo_bytes[name], f"SKU-{i}") for i, name in enumerate(names)]

    @flow
    def probe() -> tuple[list[int], int]:
        runner = PrefectRunner(settings)
        fetched = [runner.call(Step.fetch, ref, opts.fetch) for ref in refs]
        context = FlowRunContext.get()
        assert context is not None and context.result_store is not None
        return [len(r.value.data) for r in fetched if r.ok], len(context.result_store.cache)

    sizes, cached = probe()
    assert sizes == [len(photo_bytes[n]) for n in names]
    assert cached == 0


# -- fetch, intake, cache keys --------------------------------------------------------------------------------


def test_fetch_hashes_caps_and_checks_decoding(tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
    from asset3d.pipeline.options import FetchOptions

    data = photo_bytes["chair.png"]
    good = _ref(tmp_path, "SKU-1/chair.png", data)
    out = stages.fetch.fn(good, FetchOptions(10 << 20))
    assert out.value.sha256 == hashlib.sha256(data).hexdigest() and (out.value.width, out.value.height) == (512, 512)
    assert out.seconds > 0
    with pytest.raises(ObjectTooLarge):
        stages.fetch.fn(good, FetchOptions(1000))
    bad = _ref(tmp_path, "SKU-2/broken.png", photo_bytes["broken.png"])
    with pytest.raises(StageError) as exc:
        stages.fetch.fn(bad, FetchOptions(10 << 20))
    assert exc.value.stage == "fetch" and exc.value.reason in ("truncated", "corrupt")
    assert exc.value.facts.sha256 == hashlib.sha256(photo_bytes["broken.png"]).hexdigest()  # the catalogue can name it


def test_cache_keys_hold_what_the_result_depends_on_and_nothing_else(
    tmp_path: Path, photo_bytes: dict[str, bytes], settings: Settings, opts: StageOptions
) -> None:
    ref = _ref(tmp_path, "SKU-1/chair.png", photo_bytes["chair.png"])
    fk = {"ref": ref, "options": opts.fetch}
    assert stages._fetch_key(None, fk) == stages._fetch_key(None, dict(fk))
    assert stages._fetch_key(None, {**fk, "ref": PhotoRef(ref.uri, ref.store, ref.key, ref.sku, None)}) is None
    changed = PhotoRef(ref.uri, ref.store, ref.key, ref.sku, "other-etag")
    assert stages._fetch_key(None, {**fk, "ref": changed}) != stages._fetch_key(None, fk)
    fetched = stages.fetch.fn(ref, opts.fetch).value
    assert not hasattr(fetched, "ref")  # a cached download names no photo: the same bytes may be two photos
    key = stages._intake_key(None, {"fetched": fetched, "options": opts.intake})
    same = settings.overlay(batch_size=99, retries=0, device="cpu").stage_options()
    assert key == stages._intake_key(None, {"fetched": fetched, "options": same.intake})
    other = settings.overlay(foreground_ratio=0.7).stage_options()
    assert key != stages._intake_key(None, {"fetched": fetched, "options": other.intake})
    prepared = stages.intake.fn(fetched, opts.intake, ref.uri).value
    assert not hasattr(prepared, "ref")
    rk = {"batch": [prepared], "options": opts.reconstruct, "weights_sha256": "a" * 64}
    assert stages._reconstruct_key(None, rk) != stages._reconstruct_key(None, {**rk, "weights_sha256": "b" * 64})
    res64 = settings.overlay(mc_resolution=64).stage_options().reconstruct
    assert stages._reconstruct_key(None, rk) != stages._reconstruct_key(None, {**rk, "options": res64})
    identity = AssetIdentity("c" * 64, "SKU-1", ref.uri)
    bk = {"identity": identity, "options": opts.build}
    assert stages._build_key(None, bk) != stages._build_key(None, {**bk, "options": settings.overlay(review={"approve_max_components": 1}).stage_options().build})
    # the GLB and metrics.json name the SKU and the photo: two SKUs with the same bytes are two builds
    assert stages._build_key(None, bk) != stages._build_key(None, {**bk, "identity": AssetIdentity("c" * 64, "SKU-2", ref.uri)})


def test_intake_refuses_what_the_policy_rejects(tmp_path: Path, settings: Settings) -> None:
    import numpy as np
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 255, np.uint8)).save(blank)
    opts = settings.stage_options()
    fetched = stages.fetch.fn(_ref(tmp_path, "SKU-1/blank.png", blank.read_bytes()), opts.fetch).value
    with pytest.raises((IntakeError, StageError)):
        stages.intake.fn(fetched, opts.intake, "blank.png")


# -- reconstruction -------------------------------------------------------------------------------------------


def _prepared(tmp_path: Path, photo_bytes: dict[str, bytes], settings: Settings, names: tuple[str, ...]) -> list[photos.Prepared]:
    out = []
    for name in names:
        ref = _ref(tmp_path, f"SKU-{name.split('.')[0]}/{name}", photo_bytes[name], sku=f"SKU-{name.split('.')[0]}")
        opts = settings.stage_options()
        out.append(stages.intake.fn(stages.fetch.fn(ref, opts.fetch).value, opts.intake, ref.uri).value)
    return out


def test_reconstruct_runs_a_micro_batch_on_one_model_per_process(
    tmp_path: Path, photo_bytes: dict[str, bytes], settings: Settings, tiny_model: Path
) -> None:
    from triposr import sha256_file

    batch = _prepared(tmp_path, photo_bytes, settings, ("chair.png", "robot.png", "hamburger.png"))
    sha = sha256_file(tiny_model / "model.ckpt")
    o = settings.stage_options()
    first = stages.reconstruct.fn(batch, o.machine, o.reconstruct, sha)
    loaded = models.get_model(settings.model, settings.device, settings.dtype)
    second = stages.reconstruct.fn(batch[:1], o.machine, o.reconstruct, sha)
    assert models.get_model(settings.model, settings.device, settings.dtype) is loaded  # loaded once, shared
    assert len(first.value) == 3 and all(len(r.mesh.faces) > 0 for r in first.value)
    assert [r.sha256 for r in first.value] == [p.sha256 for p in batch]
    assert first.value[0].scene_code.shape == (3, 8, 8, 8)
    # the first photo gives the same mesh alone or in a batch of three
    assert len(second.value[0].mesh.faces) == len(first.value[0].mesh.faces)
    with pytest.raises(StageError, match="run expects") as exc:
        stages.reconstruct.fn(batch[:1], o.machine, o.reconstruct, "0" * 64)
    assert exc.value.reason == "weights_mismatch" and exc.value.transient is False


def test_empty_surface_is_a_photo_error_not_a_batch_error(tmp_path: Path, photo_bytes: dict[str, bytes], settings: Settings, tiny_model: Path) -> None:
    from triposr import sha256_file

    batch = _prepared(tmp_path, photo_bytes, settings, ("chair.png",))
    o = settings.overlay(mc_threshold=1e12).stage_options()
    out = stages.reconstruct.fn(batch, o.machine, o.reconstruct, sha256_file(tiny_model / "model.ckpt"))
    (err,) = out.value
    assert isinstance(err, StageError) and err.reason == "empty_surface" and "no surface" in err.message


# -- build and publish ----------------------------------------------------------------------------------------


@pytest.fixture
def built(tmp_path: Path, photo_bytes: dict[str, bytes], settings: Settings, tiny_model: Path) -> Any:
    from storage.catalogue import conversion_key
    from triposr import sha256_file

    (prepared,) = _prepared(tmp_path, photo_bytes, settings, ("chair.png",))
    sha = sha256_file(tiny_model / "model.ckpt")
    o = settings.stage_options()
    (recon,) = stages.reconstruct.fn([prepared], o.machine, o.reconstruct, sha).value
    identity = AssetIdentity(conversion_key(prepared.sha256, "d" * 64, sha), "SKU-chair", "file:///photos/SKU-chair/chair.png")
    return stages.build.fn(prepared, recon, o.build, o.machine, identity).value


def test_build_makes_glb_previews_metrics_and_a_decision(built: Any) -> None:
    names = [f.name for f in built.files]
    assert names[0] == "model.glb" and names[-1] == "metrics.json"
    assert {"previews/view_00.png", "previews/view_01.png", "previews/contact_sheet.png"} <= set(names)
    assert {"intake/input.png", "intake/mask.png"} <= set(names)  # what a reviewer compares the model with
    assert built.glb.data[:4] == b"glTF"
    report = json.loads(next(f for f in built.files if f.name == "metrics.json").data)
    assert report["review"]["status"] == built.decision == "auto_approved"  # the permissive test policy
    assert report["metrics"]["validation"]["errors"] == 0 and built.faces == report["metrics"]["asset"]["faces"] > 0


def test_publish_stages_files_and_release_writes_the_manifest_last(built: Any, tmp_path: Path) -> None:
    from asset3d.pipeline.options import PublishOptions

    dest = tmp_path / "assets"
    staged = stages.publish.fn(built, PublishOptions(str(dest))).value
    assert staged.written == len(built.files) and staged.unchanged == 0
    folder = dest / built.sku / built.conversion_key
    assert not (folder / "manifest.json").exists()  # files only: consumers see nothing yet
    manifest_uri = publishing.release(staged.folder, {"flow_run_id": "run-1"}, staged.files)
    assert manifest_uri == (folder / "manifest.json").as_uri()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [f["key"] for f in manifest["files"]] == [f.name for f in built.files]
    for entry in manifest["files"]:
        data = (folder / entry["key"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert manifest["provenance"] == {"flow_run_id": "run-1"}
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again = stages.publish.fn(built, PublishOptions(str(dest))).value
    assert again.written == 0 and again.unchanged == len(built.files)
    publishing.release(again.folder, {"flow_run_id": "run-2"}, again.files)  # the same files: left as it is
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamps
    assert json.loads((folder / "manifest.json").read_text())["provenance"] == {"flow_run_id": "run-1"}
    # a file that is not what the manifest would promise: nothing is released
    (folder / "manifest.json").unlink()
    (folder / "metrics.json").write_bytes(b"{}")
    with pytest.raises(StageError) as exc:
        publishing.release(staged.folder, {}, staged.files)
    assert exc.value.reason == "object_mismatch" and not (folder / "manifest.json").exists()
    assert publishing.withdraw(staged.folder) is False


def test_no_manifest_when_a_file_cannot_be_written(built: Any, s3_endpoint: str, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from asset3d.pipeline.options import PublishOptions

    def deny_metrics(method: str, path: str, nth: int) -> tuple[int, str] | None:
        return (403, "AccessDenied") if method == "PUT" and path.endswith("/metrics.json") else None

    proxy = S3FaultProxy(s3_endpoint, deny_metrics).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(PermanentStorageError):
            stages.publish.fn(built, PublishOptions(f"s3://{bucket}/assets"))
    finally:
        proxy.stop()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert f"assets/{built.prefix}/model.glb" in keys
    assert not any(k.endswith("manifest.json") for k in keys)  # consumers never see the half-written asset


@pytest.mark.parametrize(
    ("stage", "error", "settles"),
    [
        ("fetch", StageError("fetch", "truncated", "corrupt photo"), True),
        ("build", MeshingError("validator_errors", "3 errors"), True),
        ("reconstruct", StageError("reconstruct", "empty_surface", "no surface"), True),
        ("fetch", TransientStorageError("503", reason="server_error"), False),
        ("publish", PermanentStorageError("AccessDenied (HTTP 403)", reason="accessdenied"), False),
        ("record", CatalogueUnavailable("no schema", reason="not_migrated"), False),
        ("build", MeshingError("validator_unavailable", "gltf-validator is not installed"), False),
    ],
)
def test_only_the_photos_own_failures_settle_it(stage: str, error: Exception, settles: bool) -> None:
    """A photo is recorded as a failed conversion (not tried again) only when its own bytes are at fault."""
    from asset3d.pipeline.records import settles as settles_fn
    from asset3d.pipeline.vocabulary import Stage

    assert settles_fn(Stage(stage), error) is settles
