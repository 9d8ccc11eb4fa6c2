"""The driver's steps as Prefect tasks: one thin task per `asset3d.pipeline.driver.Step`.

Each task runs the step's plain function (`STEP_FUNCTIONS`), times its own work and returns it as
`Timed` (the batch report's per-stage seconds), retries transient errors only (`tasks.policy.retry_transient`),
and, where its result depends on content alone, caches it under a key made of everything the result
depends on (`tasks.policy.content_key` over the step's options dataclass and inputs):

==============  ==========================================================  ==================================
task            cache key                                                    notes
==============  ==========================================================  ==================================
discover        none (a listing must be fresh)                               one per batch
start-run       none                                                         model identity, the run row
plan            none (asks the catalogue what is done)                       one per batch
fetch           photo URI + ETag + fetch options                             skipped when the ETag is unknown
check-bytes     none                                                         only for a converted photo's new ETag
intake          photo sha256 + intake options                                no URI or SKU in the result
reconstruct     photos' sha256 + reconstruct options + weights sha256        tag ``gpu``, one micro-batch
build           asset identity (conversion key, SKU, photo) + build options  GLB, previews, metrics, gate
publish         none: idempotent by checksums in the bucket itself           files only
record          none: idempotent by the catalogue's conversion key
release         none: the manifest, then the catalogue's publication         gate-approved assets only
==============  ==========================================================  ==================================

Publishing and recording are not cached on purpose: their "already done" lives in the bucket and the
catalogue, and a cached success could hide a bucket or database that was emptied since.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from asset3d.pipeline.assets import AssetIdentity, BuiltAsset
from asset3d.pipeline.driver import STEP_FUNCTIONS, Step
from asset3d.pipeline.models import Reconstruction
from asset3d.pipeline.options import (
    BuildOptions,
    DiscoverOptions,
    FetchOptions,
    IntakeOptions,
    MachineOptions,
    PublishOptions,
    ReconstructOptions,
    StageOptions,
    as_key,
)
from asset3d.pipeline.photos import Discovery, Fetched, PhotoFacts, PhotoRef, Prepared, Refusal
from asset3d.pipeline.publishing import Staged
from asset3d.pipeline.records import Claim, Plan, RunContext
from asset3d.pipeline.vocabulary import Stage
from storage.catalogue import AssetRecord, ConvertedPhoto, FailureRecord, RunStatus
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


def _run(step: Step, *args: Any) -> Timed[Any]:
    t0 = time.perf_counter()
    value = STEP_FUNCTIONS[step](*args)
    return Timed(value, round(time.perf_counter() - t0, 4))


# -- cache keys: everything the result depends on, nothing else ------------------------------------------------


def _fetch_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str | None:
    ref: PhotoRef = p["ref"]
    return content_key(Step.fetch, ref.uri, ref.etag, as_key(p["options"])) if ref.etag else None


def _intake_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str:
    return content_key(Step.intake, p["fetched"].sha256, as_key(p["options"]))


def _reconstruct_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str:
    shas = [x.sha256 for x in p["batch"]]
    return content_key(Step.reconstruct, shas, as_key(p["options"]), p["weights_sha256"])


def _build_key(_ctx: TaskRunContext, p: Mapping[str, Any]) -> str:
    return content_key(Step.build, as_key(p["identity"]), as_key(p["options"]))


# -- batch-level tasks -----------------------------------------------------------------------------------------


@task(name=Step.discover.value, **_UNCACHED)
def discover(source: str | Sequence[str | Mapping[str, str]], options: DiscoverOptions) -> Timed[Discovery]:
    """List the source (or head the listed URIs) and give each photo its SKU."""
    return _run(Step.discover, source, options)


@task(name=Step.start_run.value, **_UNCACHED)
def start_run(options: StageOptions, catalogue_url: str, auto_migrate: bool, flow_run_id: str | None) -> Timed[RunContext]:
    """Identify the model (weights SHA-256, without loading it) and open the run's catalogue row."""
    return _run(Step.start_run, options, catalogue_url, auto_migrate, flow_run_id)


@task(name=Step.plan.value, **_UNCACHED)
def plan(refs: list[PhotoRef], ctx: RunContext, force: bool = False) -> Timed[Plan]:
    """The photos to convert, and those already converted for their current ETag (skipped unread)."""
    return _run(Step.plan, refs, ctx, force)


@task(name=Step.finish_run.value, **_UNCACHED)
def finish_run(ctx: RunContext, status: RunStatus = RunStatus.completed) -> Timed[None]:
    """Close the run's catalogue row."""
    return _run(Step.finish_run, ctx, status)


# -- per-photo steps -------------------------------------------------------------------------------------------


@task(name=Step.fetch.value, task_run_name="fetch {ref.key}", **_cached(_fetch_key))
def fetch(ref: PhotoRef, options: FetchOptions) -> Timed[Fetched]:
    """Download one photo under the size cap, hash it, check that it decodes."""
    return _run(Step.fetch, ref, options)


@task(name=Step.check_bytes.value, task_run_name="check bytes {ref.key}", **_UNCACHED)
def check_bytes(ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, done: ConvertedPhoto | None) -> Timed[bool]:
    """True (and the photo row takes the new ETag) when a re-listed photo's bytes are the converted ones."""
    return _run(Step.check_bytes, ctx, ref, facts, done)


@task(name=Step.claim.value, task_run_name="claim {photo_uri}", **_UNCACHED)
def claim(ctx: RunContext, photo_uri: str, conversion_key: str, ttl_s: float, recheck: bool = True) -> Timed[Claim]:
    """A lease on the photo's conversion, unless an overlapping run holds it or recorded it."""
    return _run(Step.claim, ctx, photo_uri, conversion_key, ttl_s, recheck)


@task(name=Step.intake.value, task_run_name="intake {name}", **_cached(_intake_key))
def intake(fetched: Fetched, options: IntakeOptions, name: str) -> Timed[Prepared]:
    """Background removal, framing and flags for one photo."""
    return _run(Step.intake, fetched, options, name)


#: The global concurrency limit whose slots are the GPUs of all workers (`asset3d deploy --gpu-slots N`).
GPU_LIMIT = "gpu"
#: A slot's lease (the server's minimum), renewed while the device works: a killed holder's slot comes back after this long.
GPU_LEASE_S = 60.0


@functools.lru_cache(maxsize=8)
def _gpu_limit_exists(api_url: str | None) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(GPU_LIMIT)
    except ObjectNotFound:
        get_run_logger().info("no %r concurrency limit on this Prefect server: device sections are not limited across workers", GPU_LIMIT)
        return False
    return True


@contextlib.contextmanager
def gpu_slot() -> Iterator[None]:
    """A slot of the server's ``gpu`` limit around the device section, the wait logged with its length.

    Taken inside the process's model lock (`asset3d.pipeline.models.reconstruct_batch`): a process holds a
    slot only while its device works, so N slots keep N GPUs busy.
    """
    from prefect.concurrency.sync import concurrency
    from prefect.settings import PREFECT_API_URL

    if TaskRunContext.get() is None or not _gpu_limit_exists(PREFECT_API_URL.value()):  # not a task run: no server
        yield
        return
    log = get_run_logger()
    t0 = time.monotonic()
    with concurrency(GPU_LIMIT, occupy=1, lease_duration=GPU_LEASE_S):
        start = time.monotonic()
        log.info("gpu slot taken after waiting %.2f s", start - t0)
        try:
            yield
        finally:
            log.info("gpu slot released after %.2f s on the device", time.monotonic() - start)


@task(name=Step.reconstruct.value, **_cached(_reconstruct_key))
def reconstruct(
    batch: list[Prepared], machine: MachineOptions, options: ReconstructOptions, weights_sha256: str
) -> Timed[list[Reconstruction | Exception]]:
    """One micro-batch through the model (loaded once per process): a mesh per photo, or its error; the
    device section holds a slot of the server's ``gpu`` limit (`gpu_slot`)."""
    return _run(Step.reconstruct, batch, machine, options, weights_sha256, gpu_slot)


@task(name=Step.build.value, task_run_name="build {identity.sku}/{identity.conversion_key}", **_cached(_build_key))
def build(
    prepared: Prepared, recon: Reconstruction, options: BuildOptions, machine: MachineOptions, identity: AssetIdentity
) -> Timed[BuiltAsset]:
    """Mesh -> validated GLB, previews, metrics and the review gate's decision."""
    return _run(Step.build, prepared, recon, options, machine, identity)


@task(name=Step.publish.value, task_run_name="publish {built.prefix}", **_UNCACHED)
def publish(built: BuiltAsset, options: PublishOptions) -> Timed[Staged]:
    """The asset's files into the destination (no manifest yet); identical content writes nothing."""
    return _run(Step.publish, built, options)


@task(name=Step.record.value, task_run_name="record {ref.key}", **_UNCACHED)
def record(ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, built: BuiltAsset, staged: Staged) -> Timed[AssetRecord]:
    """Photo, asset, metrics and the gate's verdict in the catalogue."""
    return _run(Step.record, ctx, ref, facts, built, staged)


@task(name=Step.release.value, task_run_name="release asset {asset_id}", **_UNCACHED)
def release(ctx: RunContext, asset_id: int, staged: Staged | None) -> Timed[AssetRecord]:
    """The manifest of a gate-approved asset, then its publication in the catalogue."""
    return _run(Step.release, ctx, asset_id, staged)


@task(name=Step.heal.value, task_run_name="heal asset {asset_id}", **_UNCACHED)
def heal(ctx: RunContext, asset_id: int, staged: Staged | None) -> Timed[AssetRecord]:
    """The manifest of an approved asset an earlier run recorded but could not publish."""
    return _run(Step.heal, ctx, asset_id, staged)


@task(name=Step.record_failure.value, task_run_name="record failure {ref.key}", **_UNCACHED)
def record_failure(
    ctx: RunContext, ref: PhotoRef, stage: Stage, error: BaseException, facts: PhotoFacts | None, settle: bool | None = None
) -> Timed[FailureRecord]:
    """A failure row (and, when the photo itself is at fault, a ``failed`` asset: `records.settles`)."""
    return _run(Step.record_failure, ctx, ref, stage, error, facts, settle)


@task(name=Step.record_refusal.value, **_UNCACHED)
def record_refusal(ctx: RunContext, refusal: Refusal) -> Timed[FailureRecord]:
    """A photo discovery refused: one failure row, recorded once however many runs see it."""
    return _run(Step.record_refusal, ctx, refusal)


#: The task of each step (`flows.runner.PrefectRunner` submits these).
TASKS: dict[Step, Task[..., Any]] = {
    Step.discover: discover,
    Step.start_run: start_run,
    Step.plan: plan,
    Step.finish_run: finish_run,
    Step.fetch: fetch,
    Step.check_bytes: check_bytes,
    Step.claim: claim,
    Step.intake: intake,
    Step.reconstruct: reconstruct,
    Step.build: build,
    Step.publish: publish,
    Step.record: record,
    Step.release: release,
    Step.heal: heal,
    Step.record_failure: record_failure,
    Step.record_refusal: record_refusal,
}
