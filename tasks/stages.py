"""The conversion stages as Prefect tasks: thin wrappers over `asset3d.pipeline`.

Each task times its own work and returns it as `Timed` (the batch report's per-stage seconds), retries
transient errors only (`tasks.policy.retry_transient`), and, where its result depends on content alone,
caches it under a content key (`tasks.policy.content_key`):

============  ========================================================  ===================================
task          cache key                                                 notes
============  ========================================================  ===================================
discover      none (a listing must be fresh)                            one per batch
plan          none (asks the catalogue what is done)                    one per batch
check-bytes   none                                                      only for a converted photo's new ETag
start_run     none                                                      loads the model, opens the run row
fetch         photo URI + ETag + size cap                               skipped when the ETag is unknown
intake        photo sha256 + intake settings
reconstruct   photos' sha256 + mesh settings + weights sha256           tag ``gpu``, one micro-batch
build         conversion key (photo, parameters, weights) + policy      GLB, previews, metrics, decision
publish       none: idempotent by checksums in the bucket itself        manifest last
record        none: idempotent by the catalogue's conversion key
============  ========================================================  ===================================

Publishing and recording are not cached on purpose: their "already done" lives in the bucket and the
catalogue, and a cached success could hide a bucket or database that was emptied since.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from asset3d.pipeline import assets, models, photos, records
from asset3d.pipeline.assets import BuiltAsset, Published
from asset3d.pipeline.models import Reconstruction
from asset3d.pipeline.photos import Fetched, PhotoFacts, PhotoRef, Prepared
from asset3d.pipeline.records import ConvertedPhoto, RunContext
from asset3d.pipeline.settings import Settings
from storage.catalogue import AssetRecord, FailureRecord, RunStatus
from tasks.policy import CACHE_FOR, RETRIES, RETRY_DELAY_S, RETRY_JITTER, content_key, retry_transient

T = TypeVar("T")

_RETRY: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": exponential_backoff(RETRY_DELAY_S),
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient,
}
_UNCACHED: dict[str, Any] = {**_RETRY, "cache_policy": NO_CACHE, "persist_result": False}


def _cached(key_fn: Any) -> dict[str, Any]:
    # plain pickle: the lzma of "compressed/pickle" costs ~80 ms per MB, more than most stages of a photo
    return {**_RETRY, "cache_key_fn": key_fn, "cache_expiration": CACHE_FOR, "result_serializer": "pickle"}


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A task's value and the seconds its work took (0 means it came from the cache)."""

    value: T
    seconds: float


def _timed(fn: Any, *args: Any, **kwargs: Any) -> Timed[Any]:
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return Timed(value, round(time.perf_counter() - t0, 4))


# -- cache keys ------------------------------------------------------------------------------------------------


def _fetch_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str | None:
    ref: PhotoRef = p["ref"]
    return content_key("fetch", ref.uri, ref.etag, p["max_bytes"]) if ref.etag else None


def _intake_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str:
    s: Settings = p["settings"]
    reject = sorted(s.review_thresholds().get("reject_intake_flags", ()))
    return content_key("intake", p["fetched"].sha256, s.intake_method, s.foreground_ratio, reject)


def _reconstruct_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str:
    s: Settings = p["settings"]
    shas = [x.sha256 for x in p["batch"]]
    return content_key("reconstruct", shas, s.mc_resolution, s.mc_threshold, p["weights_sha256"])


def _build_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str:
    s: Settings = p["settings"]
    return content_key("build", p["asset_id"], s.review_thresholds())


# -- batch-level tasks -----------------------------------------------------------------------------------------


@task(name="discover", **_UNCACHED)
def discover(source: str | Sequence[str | Mapping[str, str]], settings: Settings) -> Timed[list[PhotoRef]]:
    """List the source (or head the listed URIs) and give each photo its SKU."""
    return _timed(photos.discover, source, settings)


@task(name="start-run", **_UNCACHED)
def start_run(settings: Settings, flow_run_id: str | None) -> Timed[RunContext]:
    """Identify the model (weights SHA-256, without loading it) and open the run's catalogue row."""

    def go() -> RunContext:
        choice, model_id, weights_sha256 = models.model_identity(settings.model)
        cat = records.open_catalogue(settings.resolved_catalogue_url(), auto_migrate=settings.auto_migrate)
        return records.start_run(
            cat, settings, model_id=model_id, model_label=choice.label, model_source=choice.source,
            weights_sha256=weights_sha256, flow_run_id=flow_run_id,
        )  # fmt: skip

    return _timed(go)


@dataclass(frozen=True)
class Plan:
    """What a batch must do: photos to convert, photos skipped unread, and what is known of the rest."""

    todo: list[PhotoRef]
    skipped: dict[str, ConvertedPhoto]
    known: dict[str, ConvertedPhoto]  # converted photos of ``todo`` whose ETag changed (maybe not their bytes)


@task(name="plan", **_UNCACHED)
def plan(refs: list[PhotoRef], ctx: RunContext) -> Timed[Plan]:
    """The photos to convert, and those already converted for their current ETag (skipped unread)."""

    def go() -> Plan:
        cat = records.open_catalogue(ctx.catalogue_url)
        done = records.converted_photos(cat, params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256)
        todo, skipped = records.split_done(refs, done)
        return Plan(todo, {r.uri: done[r.uri] for r in skipped}, {r.uri: done[r.uri] for r in todo if r.uri in done})

    return _timed(go)


@task(name="finish-run", **_UNCACHED)
def finish_run(ctx: RunContext, status: str = RunStatus.completed.value) -> None:
    """Close the run's catalogue row."""
    records.open_catalogue(ctx.catalogue_url).finish_run(ctx.run_id, status)


# -- per-photo stages ------------------------------------------------------------------------------------------


@task(name="fetch", task_run_name="fetch {ref.key}", **_cached(_fetch_key))
def fetch(ref: PhotoRef, max_bytes: int) -> Timed[Fetched]:
    """Download one photo under the size cap, hash it, check that it decodes."""
    return _timed(photos.fetch_photo, ref, max_bytes=max_bytes)


@task(name="intake", task_run_name="intake {fetched.ref.key}", **_cached(_intake_key))
def intake(fetched: Fetched, settings: Settings) -> Timed[Prepared]:
    """Background removal, framing and flags for one photo."""
    return _timed(photos.prepare_photo, fetched, settings)


@task(name="reconstruct", tags=["gpu"], **_cached(_reconstruct_key))
def reconstruct(batch: list[Prepared], settings: Settings, weights_sha256: str) -> Timed[list[Reconstruction | Exception]]:
    """One micro-batch through the model (loaded once per process): a mesh per photo, or its error."""
    loaded = models.get_model(settings.model, settings.device, settings.dtype)
    if loaded.weights_sha256 != weights_sha256:
        raise RuntimeError(f"model {loaded.model_id} has weights {loaded.weights_sha256[:12]}, the run expects {weights_sha256[:12]}")
    return _timed(models.reconstruct_batch, loaded, batch, resolution=settings.mc_resolution, threshold=settings.mc_threshold)


@task(name="build", task_run_name="build {prepared.ref.key}", **_cached(_build_key))
def build(prepared: Prepared, recon: Reconstruction, settings: Settings, asset_id: str) -> Timed[BuiltAsset]:
    """Mesh -> validated GLB, previews, metrics and the review decision."""
    loaded = models.get_model(settings.model, settings.device, settings.dtype)
    return _timed(assets.build, prepared, recon, loaded, settings, asset_id=asset_id)


@task(name="publish", task_run_name="publish {built.prefix}", **_UNCACHED)
def publish(built: BuiltAsset, dest: str, provenance: dict[str, Any], manifest: bool) -> Timed[Published]:
    """Files, then the manifest (approved assets only); identical content writes nothing."""
    return _timed(assets.publish, built, dest, provenance=provenance, manifest=manifest)


@task(name="check-bytes", task_run_name="check bytes {ref.key}", **_UNCACHED)
def check_bytes(ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, done: ConvertedPhoto | None) -> bool:
    """True (and the photo row takes the new ETag) when a re-listed photo's bytes are the converted ones."""
    return records.same_bytes(records.open_catalogue(ctx.catalogue_url), ref, facts, done)


@task(name="record", task_run_name="record {ref.key}", **_UNCACHED)
def record(ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, built: BuiltAsset, published: Published) -> Timed[AssetRecord]:
    """Photo, asset, metrics and publication in the catalogue."""
    cat = records.open_catalogue(ctx.catalogue_url)
    return _timed(records.record_asset, cat, ctx, ref, facts, built, published)


@task(name="record-failure", task_run_name="record failure {ref.key}", **_UNCACHED)
def record_failure(
    ctx: RunContext, ref: PhotoRef, stage: str, error: BaseException, facts: PhotoFacts | None, settle: bool | None = None
) -> FailureRecord:
    """A failure row (and, when the photo itself is at fault, a ``failed`` asset: `records.settles`)."""
    cat = records.open_catalogue(ctx.catalogue_url)
    return records.record_failure(cat, ctx, ref, stage, error, facts, settle=settle)
