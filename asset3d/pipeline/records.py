"""The pipeline's side of the catalogue: runs, what is already converted, assets, failures.

Every read and write goes through `storage.catalogue.Catalogue`. Each function takes the run's
`RunContext` (which names the catalogue by URL) and opens the process's catalogue for it, so the same
functions run inline and as Prefect tasks.

A photo that fails for good (corrupt file, refused by intake, empty surface, validator errors) is
recorded as a ``failed`` asset plus a failure row: the catalogue counts it as converted, and the same
bytes with the same model and parameters are not tried again. Any other failure (a storage or database
outage after every retry, a destination that refuses writes, a whole micro-batch that failed) leaves only
a failure row, so the next run tries the photo again (`settles`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asset3d import __version__
from asset3d.pipeline.assets import BuiltAsset, flat_metrics
from asset3d.pipeline.errors import StageError, describe, is_transient
from asset3d.pipeline.models import model_identity
from asset3d.pipeline.options import StageOptions
from asset3d.pipeline.photos import PhotoFacts, PhotoRef, Refusal
from asset3d.pipeline.publishing import Staged
from asset3d.pipeline.vocabulary import Stage
from meshing.review import GateDecision
from meshing.scale import ProductSize
from storage.catalogue import (
    AssetRecord,
    AssetStatus,
    Catalogue,
    ConvertedPhoto,
    FailureRecord,
    RunStatus,
    params_hash,
)

_GATE_STATUS = {
    GateDecision.auto_approved: AssetStatus.auto_approved,
    GateDecision.needs_review: AssetStatus.needs_review,
    GateDecision.rejected: AssetStatus.rejected,  # built and valid, refused by the gate: a reviewer may overturn it
}


@dataclass(frozen=True)
class RunContext:
    """One conversion run: its catalogue row, the model and parameters every photo of it uses."""

    run_id: int
    flow_run_id: str | None
    catalogue_url: str
    model_id: str
    model_label: str
    model_source: str
    weights_sha256: str
    parameters: dict[str, Any]
    params_hash: str
    preset: str


@dataclass(frozen=True)
class Plan:
    """What a batch must do: photos to convert, photos skipped unread, and what is known of the rest."""

    todo: list[PhotoRef]
    skipped: dict[str, ConvertedPhoto]
    #: converted photos of ``todo`` whose ETag changed (maybe not their bytes)
    known: dict[str, ConvertedPhoto]
    #: real-world sizes the catalogue's products give, by SKU
    sizes: dict[str, ProductSize] = field(default_factory=dict)


_catalogues: dict[str, Catalogue] = {}
_catalogues_lock = threading.Lock()
#: This process's catalogues by reference (the URL with its password masked) -> the URL itself.
_references: dict[str, str] = {}


def catalogue_ref(url: str) -> str:
    """A reference to the catalogue at ``url`` that holds no secret (its password masked), usable by this
    process's `open_catalogue`. Run contexts and task inputs carry the reference, never the URL."""
    from storage.catalogue import redact_url

    ref = redact_url(url)
    with _catalogues_lock:
        _references[ref] = url
    return ref


def open_catalogue(url: str, *, auto_migrate: bool = True) -> Catalogue:
    """The process's `Catalogue` for ``url`` (or a `catalogue_ref` of it; one engine per URL); a SQLite file
    is migrated on first use.

    PostgreSQL is never migrated here: run ``asset3d db upgrade`` (a missing schema raises
    `CatalogueUnavailable` with reason ``not_migrated``).
    """
    with _catalogues_lock:
        url = _references.get(url, url)
        cat = _catalogues.get(url)
        if cat is None:
            if auto_migrate and url.startswith("sqlite"):
                import migrations

                migrations.upgrade(url, "head")
            cat = Catalogue(url)
            _catalogues[url] = cat
        return cat


def close_catalogue(url: str) -> None:
    """Forget the process's `Catalogue` for ``url`` and release its connections."""
    with _catalogues_lock:
        cat = _catalogues.pop(_references.get(url, url), None)
    if cat is not None:
        cat.close()


def start_run(options: StageOptions, catalogue_url: str, auto_migrate: bool, flow_run_id: str | None) -> RunContext:
    """Identify the model (weights SHA-256, without loading it) and open the run's catalogue row (the same
    row again when a flow run is retried).

    ``catalogue_url`` is a `catalogue_ref` (or a URL without a secret).

    Raises
    ------
    StageError
        ``start/weights_mismatch``: the run must use other weights than this worker's model has.
    """
    choice, model_id, weights_sha256 = model_identity(options.machine.model)
    if options.weights_sha256 and options.weights_sha256 != weights_sha256:
        raise StageError(
            "start", "weights_mismatch",
            f"this worker's model {model_id} has weights {weights_sha256[:12]}, the run must use {options.weights_sha256[:12]} "
            "(the server's conversion parameters); give the worker those weights (ASSET3D_MODEL)",
        )  # fmt: skip
    cat = open_catalogue(catalogue_url, auto_migrate=auto_migrate)
    parameters = options.conversion_params()
    run = cat.start_run(
        model_id=model_id, weights_sha256=weights_sha256, pipeline_version=__version__, parameters=parameters,
        flow_run_id=flow_run_id,
    )  # fmt: skip
    return RunContext(
        run_id=run.id,
        flow_run_id=flow_run_id,
        catalogue_url=catalogue_url,
        model_id=model_id,
        model_label=choice.label,
        model_source=choice.source,
        weights_sha256=weights_sha256,
        parameters=parameters,
        params_hash=params_hash(parameters),
        preset=options.build.preset,
    )


def finish_run(ctx: RunContext, status: RunStatus = RunStatus.completed) -> None:
    """Close the run's catalogue row."""
    open_catalogue(ctx.catalogue_url).finish_run(ctx.run_id, status)


def plan(refs: Sequence[PhotoRef], ctx: RunContext, force: bool = False) -> Plan:
    """The photos to convert, and those already converted for their current ETag (skipped unread).

    A converted photo whose ETag changed is converted again unless its bytes turn out the same once
    downloaded (`check_bytes`). With ``force`` every photo is converted again.
    """
    cat = open_catalogue(ctx.catalogue_url)
    sizes = {}
    for sku, p in cat.products(r.sku for r in refs).items():
        if p.width_m or p.height_m or p.depth_m:
            sizes[sku] = ProductSize(p.width_m, p.height_m, p.depth_m, source="catalogue")
    if force:
        return Plan(list(refs), {}, {}, sizes)
    done = cat.converted_photos(params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256, uris=[r.uri for r in refs])
    todo: list[PhotoRef] = []
    skipped: dict[str, ConvertedPhoto] = {}
    for ref in refs:
        hit = done.get(ref.uri)
        if hit is not None and ref.etag is not None and hit.etag == ref.etag:
            skipped[ref.uri] = hit
        else:
            todo.append(ref)
    return Plan(todo, skipped, {r.uri: done[r.uri] for r in todo if r.uri in done}, sizes)


def _photo_row(cat: Catalogue, ref: PhotoRef, facts: PhotoFacts) -> int:
    bucket, key = ref.bucket_and_key()
    photo = cat.upsert_photo(
        ref.sku, uri=ref.uri, bucket=bucket, key=key, sha256=facts.sha256, size_bytes=facts.size, etag=ref.etag,
        width=facts.width, height=facts.height,
    )  # fmt: skip
    return photo.id


@dataclass(frozen=True)
class Claim:
    """Whether this run may convert a photo: ``ok``, or which run holds (or made) its conversion."""

    ok: bool
    holder_run: int | None = None
    asset: AssetRecord | None = None


def claim(ctx: RunContext, photo_uri: str, conversion_key: str, ttl_s: float, recheck: bool = True) -> Claim:
    """Claim a photo's conversion for this run (a lease in the catalogue), unless an overlapping run holds it
    or (with ``recheck``) has recorded it since this run's plan."""
    import hashlib

    cat = open_catalogue(ctx.catalogue_url)
    if recheck:
        done = cat.asset_by_key(photo_uri, conversion_key)
        if done is not None and done.run_id != ctx.run_id:
            return Claim(False, done.run_id, done)
    lease = hashlib.sha256(f"{conversion_key}:{photo_uri}".encode()).hexdigest()  # this photo's conversion
    holder = cat.claim(lease, ctx.run_id, ttl_s=ttl_s)
    return Claim(holder is None, holder)


def check_bytes(ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, done: ConvertedPhoto | None) -> bool:
    """True when a re-listed photo (new ETag) has the bytes it was converted from; its row takes the new
    ETag, so the next run skips it without downloading it."""
    if done is None or done.sha256 != facts.sha256:
        return False
    _photo_row(open_catalogue(ctx.catalogue_url), ref, facts)
    return True


def record_asset(ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, built: BuiltAsset, staged: Staged) -> AssetRecord:
    """Photo row, then the asset row with its metrics and the gate's verdict (files staged, no manifest yet).

    The gate's ``rejected`` becomes a ``rejected`` asset (a reviewer can overturn it with a comment) plus a
    failure row (stage ``review``, the gate's reasons). Idempotent: the conversion key decides.
    """
    cat = open_catalogue(ctx.catalogue_url)
    photo_id = _photo_row(cat, ref, facts)
    asset, created = cat.record_asset(
        photo_id=photo_id, run_id=ctx.run_id, params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256,
        preset=ctx.preset, status=_GATE_STATUS[built.decision], glb_uri=staged.glb_uri,
        glb_sha256=built.glb.sha256, size_bytes=len(built.glb.data), faces=built.faces, vertices=built.vertices,
        preview_uris=list(staged.preview_uris), metrics=flat_metrics(built.metrics), gate=built.gate,
    )  # fmt: skip
    if created and built.decision is GateDecision.rejected:
        cat.record_failure(
            stage=Stage.review, reason="quality_gate", message=f"{ref.uri}: " + "; ".join(built.reasons),
            photo_id=photo_id, run_id=ctx.run_id, asset_id=asset.id,
        )  # fmt: skip
    return asset


def release(ctx: RunContext, asset_id: int, staged: Staged | None) -> AssetRecord:
    """The gate approved the asset: its manifest (listing the staged files, or with ``None`` the files stored
    in its folder), then the catalogue's publication (`asset3d.pipeline.review.publish_approved`). Returns the
    asset as it now stands."""
    from asset3d.pipeline.review import publish_approved

    cat = open_catalogue(ctx.catalogue_url)
    publish_approved(cat, asset_id, staged.files if staged is not None else None)
    return cat.get_asset(asset_id)


#: Stages whose permanent refusal is the photo's own doing (its bytes, with this model and these parameters).
PHOTO_STAGES = frozenset({Stage.fetch, Stage.intake, Stage.reconstruct, Stage.build})
#: Reasons that blame the machine, not the photo: a missing glTF validator, OpenGL or model file.
MACHINE_REASONS = frozenset({"validator_unavailable", "renderer_unavailable", "model_unavailable", "weights_mismatch"})


def settles(stage: Stage, exc: BaseException) -> bool:
    """True when a failure says the photo itself cannot be converted with this model and these parameters
    (so it is recorded as a ``failed`` asset and not tried again); a destination, catalogue, machine or
    transient failure is tried again next run."""
    reason, _ = describe(exc)
    return stage in PHOTO_STAGES and reason not in MACHINE_REASONS and not is_transient(exc)


def record_failure(
    ctx: RunContext, ref: PhotoRef, stage: Stage, exc: BaseException, facts: PhotoFacts | None = None, settle: bool | None = None
) -> FailureRecord:
    """One failure row for a photo (stage, reason, message). When the failure `settles` the photo (or
    ``settle`` says so) and its bytes were read, a ``failed`` asset is recorded too, so the same inputs are
    not converted again."""
    cat = open_catalogue(ctx.catalogue_url)
    reason, message = describe(exc)
    if ref.uri not in message:
        message = f"{ref.uri}: {message}"
    photo_id = asset_id = None
    if facts is not None:
        photo_id = _photo_row(cat, ref, facts)
        if settles(stage, exc) if settle is None else settle:
            asset, _ = cat.record_asset(
                photo_id=photo_id, run_id=ctx.run_id, params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256,
                preset=ctx.preset, status=AssetStatus.failed,
            )  # fmt: skip
            asset_id = asset.id
    return cat.record_failure(
        stage=stage, reason=reason, message=message, photo_id=photo_id, run_id=ctx.run_id, asset_id=asset_id,
        photo_uri=ref.uri,
    )  # fmt: skip


def record_refusal(ctx: RunContext, refusal: Refusal) -> FailureRecord:
    """A photo discovery refused (bad SKU folder, unsafe key): one failure row, settled: the same refusal of
    the same photo is recorded once, not again on every run."""
    return open_catalogue(ctx.catalogue_url).record_failure(
        stage=Stage.discover, reason=refusal.reason, message=refusal.message, run_id=ctx.run_id,
        photo_uri=refusal.uri, once=True,
    )  # fmt: skip


def outcomes_from_catalogue(ctx: RunContext, refs: Sequence[PhotoRef], since: Any) -> Mapping[str, tuple[ConvertedPhoto | None, FailureRecord | None]]:
    """For each photo: its asset for this run's parameters and weights, and its newest failure since
    ``since`` (how a fanned-out batch learns what its sub-batches did)."""
    cat = open_catalogue(ctx.catalogue_url)
    done = cat.converted_photos(params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256, uris=[r.uri for r in refs])
    failures: dict[str, FailureRecord] = {}
    for f in cat.failures_since(since):
        if f.photo_uri is not None:
            failures.setdefault(f.photo_uri, f)  # newest first
    return {r.uri: (done.get(r.uri), failures.get(r.uri)) for r in refs}
