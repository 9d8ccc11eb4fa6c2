"""The pipeline's side of the catalogue: runs, what is already converted, assets, failures.

Everything goes through `storage.catalogue.Catalogue` except one read, `converted_photos`, a single
query over the catalogue's models that tells which listed photos already have an asset for their current
bytes with these parameters and weights (so a re-run skips them without downloading them again).

A photo that fails for good (corrupt file, refused by intake, empty surface, validator errors) is
recorded as a ``failed`` asset plus a failure row: the catalogue counts it as converted, and the same
bytes with the same model and parameters are not tried again. Any other failure (a storage or database
outage after every retry, a destination that refuses writes, a whole micro-batch that failed) leaves only
a failure row, so the next run tries the photo again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asset3d import __version__
from asset3d.pipeline.assets import BuiltAsset, Published, flat_metrics
from asset3d.pipeline.errors import describe, is_transient
from asset3d.pipeline.photos import PhotoFacts, PhotoRef
from asset3d.pipeline.settings import Settings
from storage.catalogue import AssetRecord, AssetStatus, Catalogue, FailureRecord, params_hash

_GATE_STATUS = {
    "auto_approved": AssetStatus.auto_approved,
    "needs_review": AssetStatus.needs_review,
    "rejected": AssetStatus.rejected,  # built and valid, refused by the gate: a reviewer may overturn it
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
class ConvertedPhoto:
    """A photo that already has an asset for its current bytes, parameters and weights."""

    uri: str
    etag: str | None
    sha256: str
    asset_id: int
    status: AssetStatus
    published: bool
    glb_uri: str | None
    faces: int | None


_catalogues: dict[str, Catalogue] = {}
_catalogues_lock = threading.Lock()


def open_catalogue(url: str, *, auto_migrate: bool = True) -> Catalogue:
    """The process's `Catalogue` for ``url`` (one engine per URL); a SQLite file is migrated on first use.

    PostgreSQL is never migrated here: run ``asset3d db upgrade`` (a missing schema raises
    `CatalogueUnavailable` with reason ``not_migrated``).
    """
    with _catalogues_lock:
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
        cat = _catalogues.pop(url, None)
    if cat is not None:
        cat.close()


def start_run(
    cat: Catalogue, settings: Settings, *, model_id: str, model_label: str, model_source: str, weights_sha256: str,
    flow_run_id: str | None,
) -> RunContext:
    """Open the run's catalogue row (the same row again when a flow run is retried)."""
    parameters = settings.conversion_params()
    run = cat.start_run(
        model_id=model_id,
        weights_sha256=weights_sha256,
        pipeline_version=__version__,
        parameters=parameters,
        flow_run_id=flow_run_id,
    )
    return RunContext(
        run_id=run.id,
        flow_run_id=flow_run_id,
        catalogue_url=settings.resolved_catalogue_url(),
        model_id=model_id,
        model_label=model_label,
        model_source=model_source,
        weights_sha256=weights_sha256,
        parameters=parameters,
        params_hash=params_hash(parameters),
        preset=settings.preset,
    )


def converted_photos(cat: Catalogue, *, params_hash: str, weights_sha256: str, uris: Iterable[str] | None = None) -> dict[str, ConvertedPhoto]:
    """Photos (by URI) with an asset for their current bytes, these parameters and these weights."""
    from sqlalchemy import and_, select
    from sqlalchemy.orm import Session

    from storage.catalogue.models import Asset, Photo

    base = select(
        Photo.uri, Photo.etag, Photo.sha256, Asset.id, Asset.status, Asset.published_at, Asset.glb_uri, Asset.faces
    ).join(
        Asset,
        and_(
            Asset.photo_id == Photo.id,
            Asset.photo_sha256 == Photo.sha256,
            Asset.params_hash == params_hash,
            Asset.weights_sha256 == weights_sha256,
        ),
    )
    wanted = sorted(set(uris)) if uris is not None else None
    queries = [base] if wanted is None else [base.where(Photo.uri.in_(wanted[i : i + 500])) for i in range(0, len(wanted), 500)]
    out: dict[str, ConvertedPhoto] = {}
    with Session(cat.engine) as session:
        for q in queries:
            for uri, etag, sha, asset_id, status, published_at, glb_uri, faces in session.execute(q):
                out[uri] = ConvertedPhoto(uri, etag, sha, asset_id, AssetStatus(status), published_at is not None, glb_uri, faces)
    return out


def split_done(refs: Sequence[PhotoRef], done: Mapping[str, ConvertedPhoto]) -> tuple[list[PhotoRef], list[PhotoRef]]:
    """``(to_convert, skipped)``: a photo is skipped when its listed ETag equals the converted photo's.

    A converted photo whose ETag changed is converted again unless its bytes turn out the same once
    downloaded (`same_bytes`).
    """
    todo: list[PhotoRef] = []
    skipped: list[PhotoRef] = []
    for ref in refs:
        hit = done.get(ref.uri)
        (skipped if hit is not None and ref.etag is not None and hit.etag == ref.etag else todo).append(ref)
    return todo, skipped


def same_bytes(cat: Catalogue, ref: PhotoRef, facts: PhotoFacts, done: ConvertedPhoto | None) -> bool:
    """True when a re-listed photo (new ETag) has the bytes it was converted from; its row takes the new
    ETag, so the next run skips it without downloading it."""
    if done is None or done.sha256 != facts.sha256:
        return False
    _photo_row(cat, ref, facts)
    return True


def provenance(ctx: RunContext, ref: PhotoRef, built: BuiltAsset, *, etag: str | None = None) -> dict[str, Any]:
    """The ``provenance`` of an asset's manifest: photo, model, weights, parameters, code, runs, review."""
    return {
        "asset_id": built.asset_id,
        "sku": ref.sku,
        "photo": {"uri": ref.uri, "sha256": built.photo_sha256, "etag": etag if etag is not None else ref.etag},
        "model": {"id": ctx.model_id, "label": ctx.model_label, "weights_sha256": ctx.weights_sha256},
        "parameters": ctx.parameters,
        "params_hash": ctx.params_hash,
        "pipeline_version": __version__,
        "flow_run_id": ctx.flow_run_id,
        "catalogue_run_id": ctx.run_id,
        "review": {"status": built.decision, "reasons": list(built.reasons)},
    }


def _photo_row(cat: Catalogue, ref: PhotoRef, facts: PhotoFacts) -> int:
    bucket, key = ref.bucket_and_key()
    photo = cat.upsert_photo(
        ref.sku, uri=ref.uri, bucket=bucket, key=key, sha256=facts.sha256, size_bytes=facts.size, etag=ref.etag,
        width=facts.width, height=facts.height,
    )  # fmt: skip
    return photo.id


def record_asset(cat: Catalogue, ctx: RunContext, ref: PhotoRef, facts: PhotoFacts, built: BuiltAsset, published: Published) -> AssetRecord:
    """Photo row, asset row (with its metrics and the gate's status), then catalogue publication.

    The gate's ``rejected`` becomes a ``rejected`` asset (a reviewer can overturn it with a comment) plus a
    failure row (stage ``review``, the gate's reasons). The asset is
    marked published only when its manifest was written. Idempotent: the conversion key decides.
    """
    photo_id = _photo_row(cat, ref, facts)
    asset, created = cat.record_asset(
        photo_id=photo_id, run_id=ctx.run_id, params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256,
        preset=ctx.preset, status=_GATE_STATUS[built.decision], glb_uri=published.glb_uri,
        glb_sha256=built.glb.sha256, size_bytes=len(built.glb.data), faces=built.faces, vertices=built.vertices,
        preview_uris=list(published.preview_uris), metrics=flat_metrics(built.metrics),
    )  # fmt: skip
    if created and built.decision == "rejected":
        cat.record_failure(
            stage="review", reason="quality_gate", message=f"{ref.uri}: " + "; ".join(built.reasons),
            photo_id=photo_id, run_id=ctx.run_id, asset_id=asset.id,
        )  # fmt: skip
    if published.manifest_uri is not None and asset.status is AssetStatus.auto_approved and asset.published_at is None:
        cat.publish(asset.id)
        asset = cat.get_asset(asset.id)
    return asset


#: Stages whose permanent refusal is the photo's own doing (its bytes, with this model and these parameters).
PHOTO_STAGES = frozenset({"fetch", "intake", "reconstruct", "build"})
#: Reasons that blame the machine, not the photo: a missing glTF validator, OpenGL or model file.
MACHINE_REASONS = frozenset({"validator_unavailable", "renderer_unavailable", "model_unavailable"})


def settles(stage: str, exc: BaseException) -> bool:
    """True when a failure says the photo itself cannot be converted with this model and these parameters
    (so it is recorded as a ``failed`` asset and not tried again); a destination, catalogue, machine or
    transient failure is tried again next run."""
    reason, _ = describe(exc)
    return stage in PHOTO_STAGES and reason not in MACHINE_REASONS and not is_transient(exc)


def record_failure(
    cat: Catalogue, ctx: RunContext, ref: PhotoRef, stage: str, exc: BaseException, facts: PhotoFacts | None = None,
    *, settle: bool | None = None,
) -> FailureRecord:
    """One failure row for a photo (stage, reason, message). When the failure `settles` the photo (or
    ``settle`` says so) and its bytes were read, a ``failed`` asset is recorded too, so the same inputs are
    not converted again."""
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
    return cat.record_failure(stage=stage, reason=reason, message=message, photo_id=photo_id, run_id=ctx.run_id, asset_id=asset_id)
