"""Decisions that act on the bucket: publishing an approved asset, withdrawing one that is no longer approved.

The gate's approval (the driver) and a reviewer's (`decide`: ``asset3d review``, the review app) publish
the same way (`asset3d.pipeline.publishing`): the asset's files are already staged and its catalogue row
exists; the manifest is written last, after checking every file's SHA-256, and then the catalogue records
the publication. A decision that leaves a published asset unapproved takes the manifest away first, then
the catalogue says so. Publishing a newer version of a photo withdraws the manifests of the versions it
supersedes, so a consumer sees one version per photo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asset3d import __version__
from asset3d.pipeline import publishing
from asset3d.pipeline.errors import StageError
from asset3d.pipeline.vocabulary import Stage
from storage.catalogue import AssetDetail, AssetStatus, Catalogue, ReviewDecision
from storage.catalogue.service import PUBLISHABLE


@dataclass(frozen=True)
class ReviewOutcome:
    """What one decision did: the status change, its review event, and the asset's publication."""

    asset_id: int
    decision: ReviewDecision
    from_status: AssetStatus
    to_status: AssetStatus
    event_id: int
    #: a manifest exists after the decision (consumers see the asset)
    published: bool
    manifest_uri: str | None
    #: older versions of the photo whose manifests this publication took back
    withdrawn: tuple[int, ...] = ()


def provenance_of(detail: AssetDetail, *, review: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``provenance`` of an asset's manifest, from its catalogue row: the same run as the row, always."""
    a, photo, run = detail.asset, detail.photo, detail.run
    gate = a.gate or {}
    return {
        "asset_id": a.id,
        "conversion_key": a.conversion_key,
        "sku": a.sku,
        "version": a.version,
        "photo": {"uri": photo.uri, "sha256": a.photo_sha256, "etag": photo.etag},
        "model": {"id": run.model_id if run else None, "weights_sha256": a.weights_sha256},
        "parameters": run.parameters if run else {},
        "params_hash": a.params_hash,
        "pipeline_version": run.pipeline_version if run else __version__,
        "flow_run_id": run.flow_run_id if run else None,
        "catalogue_run_id": a.run_id,
        "gate": {"decision": gate.get("decision"), "reasons": gate.get("reasons", [])},
        "review": dict(review) if review else None,
    }


def _folder(detail: AssetDetail) -> str:
    if not detail.asset.glb_uri:
        raise StageError(Stage.publish, "no_files", f"asset {detail.asset.id} has no staged files (it failed before its GLB was written)")
    return publishing.folder_of(detail.asset.glb_uri)


def _withdraw_superseded(cat: Catalogue, asset_ids: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    out = []
    for old_id in asset_ids:
        old = cat.get_asset(old_id)
        if old.glb_uri and publishing.withdraw(publishing.folder_of(old.glb_uri)):
            out.append(old_id)
    return tuple(out)


def publish_approved(cat: Catalogue, asset_id: int, files: tuple[publishing.FileEntry, ...] | None = None) -> str:
    """Publish an asset the gate approved (status ``auto_approved``): manifest, then the catalogue's
    publication; the versions it supersedes are withdrawn. Returns the manifest's URI.

    Raises
    ------
    StageError
        ``publish/...``: a file is missing or not what the catalogue recorded; nothing is published.
    storage.StorageError, storage.catalogue.CatalogueError
        As they come: the manifest may then exist with the row still unpublished; `publish_approved` again
        (the next run) completes it.
    """
    detail = cat.asset_detail(asset_id)
    manifest = publishing.release(_folder(detail), provenance_of(detail), files)
    superseded = cat.publish(asset_id)
    _withdraw_superseded(cat, superseded)
    return manifest


def decide(
    cat: Catalogue, asset_id: int, decision: ReviewDecision | str, *, reviewer: str, comment: str | None = None
) -> ReviewOutcome:
    """Apply a reviewer's decision to the catalogue and the bucket.

    * approve an unpublished asset: its manifest is written (files checked by SHA-256), then the status
      change, the review event and the publication are one catalogue transaction; if the catalogue refuses
      at that point the manifest is taken back;
    * reject (or send back to review) a published asset: the manifest goes first, then the catalogue;
    * anything else changes the catalogue only.

    Raises
    ------
    storage.catalogue.NotFound, TransitionRefused, InvalidInput
        Unknown asset, a transition the rules refuse, a missing reviewer or comment; nothing changed.
    StageError, storage.StorageError
        Publishing or withdrawing failed; the asset keeps its status and no manifest is half-written.
    """
    dec = ReviewDecision(decision)
    target = cat.review_target(asset_id, dec, comment=comment)
    detail = cat.asset_detail(asset_id)
    before = detail.asset
    note = {"decision": dec.value, "reviewer": reviewer, "comment": comment}
    manifest: str | None = None
    if target in PUBLISHABLE and before.published_at is None:
        folder = _folder(detail)
        manifest = publishing.release(folder, provenance_of(detail, review=note))
        try:
            event = cat.review(asset_id, dec, reviewer=reviewer, comment=comment, publish=True)
        except BaseException:
            publishing.withdraw(folder)
            raise
        withdrawn = _withdraw_superseded(cat, event.superseded_ids)
        return ReviewOutcome(asset_id, dec, event.from_status, event.to_status, event.id, True, manifest, withdrawn)
    if target not in PUBLISHABLE and before.glb_uri:
        publishing.withdraw(publishing.folder_of(before.glb_uri))
        event = cat.review(asset_id, dec, reviewer=reviewer, comment=comment)
        return ReviewOutcome(asset_id, dec, event.from_status, event.to_status, event.id, False, None)
    event = cat.review(asset_id, dec, reviewer=reviewer, comment=comment, publish=True)
    published = before.glb_uri is not None and publishing.is_released(publishing.folder_of(before.glb_uri))
    if published and before.glb_uri:
        manifest = f"{publishing.folder_of(before.glb_uri)}/{publishing.MANIFEST}"
    return ReviewOutcome(asset_id, dec, event.from_status, event.to_status, event.id, published, manifest)
