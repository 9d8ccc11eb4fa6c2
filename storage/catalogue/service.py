"""The catalogue's service layer: every read and write the pipeline, the CLI and reviewers need.

::

    from storage.catalogue import Catalogue, AssetStatus, params_hash

    cat = Catalogue()                                   # URL from ASSET3D_CATALOGUE_URL, else ./.asset3d/catalogue.db
    photo = cat.upsert_photo("SKU-1", uri="s3://photos/SKU-1/front.png", bucket="photos",
                             key="SKU-1/front.png", sha256=..., size_bytes=123456, width=820, height=480)
    run = cat.start_run(model_id="stabilityai/TripoSR", weights_sha256=..., pipeline_version="0.1.0",
                        parameters={"preset": "web", "mc_resolution": 256}, flow_run_id="...")
    asset, created = cat.record_asset(photo_id=photo.id, run_id=run.id, preset="web",
                                      params_hash=params_hash(run.parameters), weights_sha256=run.weights_sha256,
                                      glb_uri="s3://assets/...", metrics={"faces": 20000})
    cat.set_status(asset.id, AssetStatus.needs_review)   # the quality gate's verdict
    cat.review(asset.id, "approve", reviewer="ana")      # validated; writes a review event
    cat.publish(asset.id)                                # older versions of that photo -> superseded
    cat.finish_run(run.id)

Every method runs in its own transaction and returns frozen dataclass records (no ORM objects or sessions
escape). Errors are `storage.catalogue.errors`; database outages become `CatalogueUnavailable` with the
URL redacted.

Idempotency: ``record_asset`` is keyed by the photo and its `conversion_key` (photo sha256 + parameters hash + weights
sha256, unique in the table): recording the same conversion again, also from two processes at the same
moment, returns the one existing asset with ``created=False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine, and_, case, delete, exists, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from storage.catalogue.errors import CatalogueUnavailable, InvalidInput, NotFound, TransitionRefused
from storage.catalogue.models import (
    Asset,
    AssetStatus,
    Failure,
    Lease,
    Metric,
    Photo,
    Product,
    ReviewDecision,
    ReviewEvent,
    Run,
    RunStatus,
    utcnow,
)
from storage.catalogue.records import (
    METRIC_NAME,
    AssetDetail,
    AssetRecord,
    ConvertedPhoto,
    Distribution,
    FailureRecord,
    MetricFilter,
    MetricRecord,
    PhotoRecord,
    ProductRecord,
    ReviewRecord,
    RunRecord,
    asset_record,
    photo_record,
    product_record,
    review_record,
    run_record,
)
from storage.catalogue.settings import make_engine, redact_secrets, redact_url

T = TypeVar("T")
log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_MESSAGE = 8000
_CONFLICT_RETRIES = 8

# -- rules -------------------------------------------------------------------------------------------------

#: Review decisions: (decision, from status) -> (to status, comment required).
REVIEW_TRANSITIONS: dict[tuple[ReviewDecision, AssetStatus], tuple[AssetStatus, bool]] = {
    (ReviewDecision.approve, AssetStatus.needs_review): (AssetStatus.approved, False),
    (ReviewDecision.approve, AssetStatus.auto_approved): (AssetStatus.approved, False),
    (ReviewDecision.approve, AssetStatus.rejected): (AssetStatus.approved, True),
    (ReviewDecision.reject, AssetStatus.needs_review): (AssetStatus.rejected, False),
    (ReviewDecision.reject, AssetStatus.auto_approved): (AssetStatus.rejected, False),
    (ReviewDecision.reject, AssetStatus.approved): (AssetStatus.rejected, True),
    (ReviewDecision.request_review, AssetStatus.auto_approved): (AssetStatus.needs_review, False),
    (ReviewDecision.request_review, AssetStatus.approved): (AssetStatus.needs_review, True),
    (ReviewDecision.request_review, AssetStatus.rejected): (AssetStatus.needs_review, True),
}

#: Pipeline (non-review) status changes: from status -> allowed to statuses.
PIPELINE_TRANSITIONS: dict[AssetStatus, frozenset[AssetStatus]] = {
    AssetStatus.pending: frozenset(
        {AssetStatus.auto_approved, AssetStatus.needs_review, AssetStatus.rejected, AssetStatus.failed}
    ),
    AssetStatus.auto_approved: frozenset({AssetStatus.failed}),
    AssetStatus.needs_review: frozenset({AssetStatus.failed}),
}

#: Statuses an asset may be published from.
PUBLISHABLE = frozenset({AssetStatus.auto_approved, AssetStatus.approved})


# -- keys --------------------------------------------------------------------------------------------------


def params_hash(parameters: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of conversion parameters (sorted keys, no whitespace).

    Two parameter dicts that are equal as JSON give the same hash, whatever their key order.
    """
    try:
        text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"conversion parameters are not plain JSON: {err}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def conversion_key(photo_sha256: str, parameters_hash: str, weights_sha256: str) -> str:
    """The identity of one conversion: SHA-256 (hex) of photo sha256, parameters hash and weights sha256."""
    for name, value in (("photo sha256", photo_sha256), ("params hash", parameters_hash), ("weights sha256", weights_sha256)):
        _check_sha(value, name)
    return hashlib.sha256(f"{photo_sha256}:{parameters_hash}:{weights_sha256}".encode()).hexdigest()


def _check_sha(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidInput(f"{what} {value!r} is not a lower-case hex SHA-256 (64 characters)")
    return value


# -- the service -------------------------------------------------------------------------------------------


@dataclass
class Catalogue:
    """The SQL asset catalogue.

    Parameters
    ----------
    engine_or_url
        A SQLAlchemy `Engine`, a URL, or ``None`` for `storage.catalogue.settings.catalogue_url`.
        The schema must exist: ``asset3d db upgrade`` (or `migrations.upgrade`) creates it.
    """

    engine_or_url: Engine | str | URL | None = None
    engine: Engine = field(init=False)
    _sessions: sessionmaker[Session] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        e = self.engine_or_url
        self.engine = e if isinstance(e, Engine) else make_engine(e)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL with its password hidden."""
        return redact_url(self.engine.url)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- plumbing ----------------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One transaction; driver errors become `CatalogueUnavailable` without secrets."""
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError:
            raise
        except (OperationalError, ProgrammingError) as err:
            text = str(err.orig) if err.orig is not None else str(err)
            if "no such table" in text or "no such column" in text or (("relation" in text or "column" in text) and "does not exist" in text):
                raise CatalogueUnavailable(
                    f"catalogue {self.url} has no schema, or an older one: run `asset3d db upgrade` ({redact_secrets(text.splitlines()[0])})",
                    reason="not_migrated",
                ) from None
            if isinstance(err, OperationalError):
                raise CatalogueUnavailable(
                    f"catalogue {self.url} unavailable: {redact_secrets(text.strip().splitlines()[0] if text.strip() else type(err.orig).__name__)}",
                    reason="unreachable",
                ) from None
            raise
        except DBAPIError as err:
            if err.connection_invalidated:
                raise CatalogueUnavailable(f"catalogue {self.url}: connection lost", reason="unreachable") from None
            raise

    def _retry_on_conflict(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (which opens its own transaction) again when a concurrent writer won a unique key."""
        for attempt in range(1, _CONFLICT_RETRIES):
            try:
                return fn()
            except IntegrityError as err:
                log.debug("unique-key conflict with a concurrent writer (attempt %d), retrying: %s", attempt, type(err.orig).__name__)
        return fn()

    @staticmethod
    def _get(session: Session, model: type[T], ident: int, what: str) -> T:
        obj = session.get(model, ident)
        if obj is None:
            raise NotFound(f"no {what} with id {ident}")
        return obj

    # -- products and photos -----------------------------------------------------------------------------

    def upsert_product(
        self,
        sku: str,
        *,
        title: str | None = None,
        width_m: float | None = None,
        height_m: float | None = None,
        depth_m: float | None = None,
    ) -> ProductRecord:
        """Create the product or update the fields given (``None`` leaves a field as it is)."""
        if not sku or not isinstance(sku, str) or len(sku) > 128 or sku != sku.strip():
            raise InvalidInput(f"SKU {sku!r} refused: 1-128 characters without surrounding spaces")
        for name, v in (("width_m", width_m), ("height_m", height_m), ("depth_m", depth_m)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InvalidInput(f"product {sku}: {name}={v!r} must be a positive number of metres")

        def go() -> ProductRecord:
            with self._tx() as s:
                p = self._product_row(s, sku)
                for name, v in (("title", title), ("width_m", width_m), ("height_m", height_m), ("depth_m", depth_m)):
                    if v is not None:
                        setattr(p, name, v)
                s.flush()
                return product_record(p)

        return self._retry_on_conflict(go)

    @staticmethod
    def _product_row(s: Session, sku: str) -> Product:
        p = s.scalar(select(Product).where(Product.sku == sku))
        if p is None:
            p = Product(sku=sku)
            s.add(p)
            s.flush()
        return p

    def upsert_photo(
        self,
        sku: str,
        *,
        uri: str,
        bucket: str,
        key: str,
        sha256: str,
        size_bytes: int,
        etag: str | None = None,
        width: int | None = None,
        height: int | None = None,
        seen_at: datetime | None = None,
    ) -> PhotoRecord:
        """Record that a photo was seen in a bucket (creating the product when new).

        The photo is identified by ``uri``; its bytes, ETag and size are updated when they changed, and
        ``last_seen`` moves to ``seen_at`` (default now). A changed ``sha256`` makes its next conversion a
        new asset version.
        """
        _check_sha(sha256, f"photo {uri} sha256")
        if not uri or size_bytes < 0:
            raise InvalidInput(f"photo {uri!r}: needs a URI and a size >= 0")
        when = seen_at or utcnow()

        def go() -> PhotoRecord:
            with self._tx() as s:
                product = self._product_row(s, sku)
                photo = s.scalar(select(Photo).where(Photo.uri == uri))
                if photo is None:
                    photo = Photo(uri=uri, product_id=product.id, first_seen=when)
                    s.add(photo)
                photo.product_id = product.id
                photo.bucket, photo.key, photo.sha256, photo.size_bytes = bucket, key, sha256, size_bytes
                photo.etag = etag
                if width is not None:
                    photo.width = width
                if height is not None:
                    photo.height = height
                photo.last_seen = when
                s.flush()
                return photo_record(photo, product.sku)

        return self._retry_on_conflict(go)

    def get_photo(self, photo_id: int) -> PhotoRecord:
        """One photo by id (`NotFound` otherwise)."""
        with self._tx() as s:
            p = self._get(s, Photo, photo_id, "photo")
            return photo_record(p, p.product.sku)

    # -- runs --------------------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        model_id: str,
        weights_sha256: str,
        pipeline_version: str,
        parameters: Mapping[str, Any] | None = None,
        flow_run_id: str | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> RunRecord:
        """Open a conversion run; with a ``flow_run_id`` already known, return that run (flow retries).

        ``host`` and ``pid`` (default: this machine and process) let `asset3d gc` tell a run whose process
        is gone."""
        _check_sha(weights_sha256, "weights sha256")
        params = dict(parameters or {})
        params_hash(params)  # refuses non-JSON parameters now rather than at commit

        def go() -> RunRecord:
            with self._tx() as s:
                if flow_run_id is not None:
                    existing = s.scalar(select(Run).where(Run.flow_run_id == flow_run_id))
                    if existing is not None:
                        return run_record(existing)
                run = Run(
                    flow_run_id=flow_run_id, parameters=params, model_id=model_id, weights_sha256=weights_sha256,
                    pipeline_version=pipeline_version, host=host or socket.gethostname(), status=RunStatus.running,
                    pid=pid if pid is not None else os.getpid(),
                )  # fmt: skip
                s.add(run)
                s.flush()
                return run_record(run)

        return self._retry_on_conflict(go)

    def finish_run(self, run_id: int, status: RunStatus | str = RunStatus.completed) -> RunRecord:
        """Close a run with its final status (``completed``, ``failed`` or ``cancelled``)."""
        final = _as_enum(RunStatus, status, "run status")
        if final is RunStatus.running:
            raise InvalidInput(f"run {run_id}: finish_run needs a final status, not 'running'")
        with self._tx() as s:
            run = self._get(s, Run, run_id, "run")
            run.status, run.finished_at = final, utcnow()
            s.execute(delete(Lease).where(Lease.run_id == run_id))  # its claims go with it
            s.flush()
            return run_record(run)

    def run_of_flow_run(self, flow_run_id: str) -> RunRecord | None:
        """The run a Prefect flow run opened, if any."""
        with self._tx() as s:
            run = s.scalar(select(Run).where(Run.flow_run_id == flow_run_id))
            return run_record(run) if run is not None else None

    def recent_runs(self, limit: int = 50) -> list[RunRecord]:
        """The newest runs first."""
        with self._tx() as s:
            return [run_record(r) for r in s.scalars(select(Run).order_by(Run.id.desc()).limit(limit))]

    def runs_in_progress(self) -> list[RunRecord]:
        """Runs still marked ``running`` (live ones, and those whose process or flow run was lost)."""
        with self._tx() as s:
            return [run_record(r) for r in s.scalars(select(Run).where(Run.status == RunStatus.running).order_by(Run.id))]

    def close_run(self, run_id: int, status: RunStatus | str) -> bool:
        """Close a run that is still ``running`` (a no-op, False, for one already closed)."""
        final = _as_enum(RunStatus, status, "run status")
        if final is RunStatus.running:
            raise InvalidInput(f"run {run_id}: close_run needs a final status, not 'running'")
        with self._tx() as s:
            run = s.scalar(select(Run).where(Run.id == run_id, Run.status == RunStatus.running).with_for_update())
            if run is None:
                return False
            run.status, run.finished_at = final, utcnow()
            s.execute(delete(Lease).where(Lease.run_id == run_id))  # its claims go with it
            return True

    # -- leases ------------------------------------------------------------------------------------------

    def claim(self, conversion_key: str, run_id: int, *, ttl_s: float) -> int | None:
        """Claim a conversion for ``run_id`` for ``ttl_s`` seconds; returns None when claimed, else the id of
        the live run that holds it. An expired claim, or one of a run no longer ``running``, is taken over;
        claiming again renews."""
        _check_sha(conversion_key, "conversion key")
        now = utcnow()
        until = now + timedelta(seconds=ttl_s)

        def go() -> int | None:
            with self._tx() as s:
                lease = s.scalar(select(Lease).where(Lease.conversion_key == conversion_key).with_for_update())
                if lease is None:
                    s.add(Lease(conversion_key=conversion_key, run_id=run_id, expires_at=until))
                    s.flush()
                    return None
                if lease.run_id != run_id and lease.expires_at > now:
                    holder = s.get(Run, lease.run_id)
                    if holder is not None and RunStatus(holder.status) is RunStatus.running:
                        return lease.run_id
                lease.run_id, lease.expires_at = run_id, until
                return None

        return self._retry_on_conflict(go)

    def asset_by_key(self, photo_uri: str, conversion_key: str) -> AssetRecord | None:
        """The asset a photo has for a conversion key, if one was recorded."""
        with self._tx() as s:
            a = s.scalar(
                select(Asset).join(Photo, Asset.photo_id == Photo.id).where(Photo.uri == photo_uri, Asset.conversion_key == conversion_key)
            )
            return asset_record(a, a.photo.product.sku) if a is not None else None

    def release(self, conversion_key: str, run_id: int) -> None:
        """Give a claim back (only the claiming run's)."""
        with self._tx() as s:
            s.execute(delete(Lease).where(Lease.conversion_key == conversion_key, Lease.run_id == run_id))

    def get_run(self, run_id: int) -> RunRecord:
        """One run by id (`NotFound` otherwise)."""
        with self._tx() as s:
            return run_record(self._get(s, Run, run_id, "run"))

    # -- assets ------------------------------------------------------------------------------------------

    def record_asset(
        self,
        *,
        photo_id: int,
        params_hash: str,
        weights_sha256: str,
        preset: str,
        run_id: int | None = None,
        status: AssetStatus | str = AssetStatus.pending,
        glb_uri: str | None = None,
        glb_sha256: str | None = None,
        size_bytes: int | None = None,
        faces: int | None = None,
        vertices: int | None = None,
        preview_uris: Sequence[str] = (),
        metrics: Mapping[str, float] | None = None,
        units: Mapping[str, str] | None = None,
        gate: Mapping[str, Any] | None = None,
    ) -> tuple[AssetRecord, bool]:
        """Record a conversion's asset once; return ``(asset, created)``.

        The conversion key is computed from the photo's current sha256, ``params_hash`` and
        ``weights_sha256``. When an asset with that key exists (recorded earlier, or a moment ago by
        another process) it is returned unchanged with ``created=False``. Otherwise a new asset is written
        with the photo's next version number, together with its metrics, in one transaction.
        ``status`` may be ``pending`` (default) or the gate's verdict (``auto_approved``,
        ``needs_review``, ``rejected``, ``failed``); ``gate`` is the gate's verdict (JSON: decision, reasons,
        intake summary), what reviewers are shown.
        """
        initial = _as_enum(AssetStatus, status, "asset status")
        if initial not in (AssetStatus.pending, *PIPELINE_TRANSITIONS[AssetStatus.pending]):
            raise InvalidInput(f"a new asset cannot start as {initial.value!r}")
        if glb_sha256 is not None:
            _check_sha(glb_sha256, "GLB sha256")
        clean_metrics = _clean_metrics(metrics or {})

        def go() -> tuple[AssetRecord, bool]:
            with self._tx() as s:
                photo = self._get(s, Photo, photo_id, "photo")
                key = conversion_key(photo.sha256, params_hash, weights_sha256)
                found = s.scalar(select(Asset).where(Asset.photo_id == photo_id, Asset.conversion_key == key))
                if found is not None:
                    return asset_record(found, photo.product.sku), False
                if run_id is not None:
                    self._get(s, Run, run_id, "run")
                version = (s.scalar(select(func.max(Asset.version)).where(Asset.photo_id == photo_id)) or 0) + 1
                now = utcnow()
                asset = Asset(
                    photo_id=photo_id, run_id=run_id, conversion_key=key, photo_sha256=photo.sha256,
                    params_hash=params_hash, weights_sha256=weights_sha256, preset=preset, version=version,
                    status=initial, glb_uri=glb_uri, glb_sha256=glb_sha256, size_bytes=size_bytes, faces=faces,
                    vertices=vertices, preview_uris=list(preview_uris), created_at=now, updated_at=now,
                    gate=dict(gate) if gate is not None else None,
                )  # fmt: skip
                s.add(asset)
                s.flush()  # a concurrent twin makes this raise IntegrityError -> retried, then found above
                for name, value in clean_metrics.items():
                    s.add(Metric(asset_id=asset.id, name=name, value=value, unit=(units or {}).get(name), recorded_at=now))
                s.flush()
                return asset_record(asset, photo.product.sku), True

        return self._retry_on_conflict(go)

    def get_asset(self, asset_id: int) -> AssetRecord:
        """One asset by id (`NotFound` otherwise)."""
        with self._tx() as s:
            a = self._get(s, Asset, asset_id, "asset")
            return asset_record(a, a.photo.product.sku)

    def set_status(self, asset_id: int, status: AssetStatus | str) -> AssetRecord:
        """Apply the pipeline's verdict (``pending`` -> ``auto_approved`` / ``needs_review`` / ``rejected`` / ``failed``).

        Reviewer decisions go through `review`; this refuses every change `PIPELINE_TRANSITIONS` lacks.
        """
        target = _as_enum(AssetStatus, status, "asset status")
        with self._tx() as s:
            a = self._locked_asset(s, asset_id)
            current = AssetStatus(a.status)
            if target not in PIPELINE_TRANSITIONS.get(current, frozenset()):
                raise TransitionRefused(
                    f"asset {asset_id}: the pipeline cannot move it from {current.value} to {target.value}",
                    reason="not_allowed",
                )
            a.status, a.updated_at = target, utcnow()
            s.flush()
            return asset_record(a, a.photo.product.sku)

    def publish(self, asset_id: int) -> list[int]:
        """Mark an asset published; older versions of the same photo become ``superseded``.

        Only ``auto_approved`` or ``approved`` assets can be published, and not when a newer version of the
        photo is already published. Returns the ids of the assets it superseded. Publishing twice is a no-op.
        """
        with self._tx() as s:
            return self._publish_locked(s, self._locked_asset(s, asset_id))

    @staticmethod
    def _publish_locked(s: Session, a: Asset) -> list[int]:
        if a.published_at is not None:
            return []
        if AssetStatus(a.status) not in PUBLISHABLE:
            raise TransitionRefused(
                f"asset {a.id} is {AssetStatus(a.status).value}: only auto_approved or approved assets are published",
                reason="not_publishable",
            )
        newer = s.scalar(
            select(Asset.id).where(Asset.photo_id == a.photo_id, Asset.version > a.version, Asset.published_at.is_not(None))
        )
        if newer is not None:
            raise TransitionRefused(
                f"asset {a.id} (version {a.version}): newer asset {newer} of the same photo is already published",
                reason="newer_published",
            )
        now = utcnow()
        a.published_at, a.updated_at = now, now
        older = s.scalars(
            select(Asset)
            .where(
                Asset.photo_id == a.photo_id,
                Asset.version < a.version,
                Asset.status.not_in([AssetStatus.superseded, AssetStatus.failed]),
            )
            .with_for_update()
        ).all()
        for old in older:
            old.status, old.superseded_by_id, old.updated_at = AssetStatus.superseded, a.id, now
            old.published_at = None
        s.flush()
        return sorted(o.id for o in older)

    def review_target(self, asset_id: int, decision: ReviewDecision | str, *, comment: str | None = None) -> AssetStatus:
        """The status `review` would move the asset to, without changing anything (refusals raise as `review`)."""
        dec = _as_enum(ReviewDecision, decision, "review decision")
        with self._tx() as s:
            a = self._get(s, Asset, asset_id, "asset")
            return self._target(a, dec, (comment or "").strip() or None)

    @staticmethod
    def _target(a: Asset, dec: ReviewDecision, note: str | None) -> AssetStatus:
        current = AssetStatus(a.status)
        rule = REVIEW_TRANSITIONS.get((dec, current))
        if rule is None:
            raise TransitionRefused(_refusal(a.id, dec, current), reason=_refusal_reason(dec, current))
        target, needs_comment = rule
        if needs_comment and note is None:
            raise TransitionRefused(
                f"asset {a.id} is {current.value}: {dec.value} overturns an earlier review and needs a comment",
                reason="comment_required",
            )
        return target

    def review(
        self,
        asset_id: int,
        decision: ReviewDecision | str,
        *,
        reviewer: str,
        comment: str | None = None,
        publish: bool = False,
    ) -> ReviewRecord:
        """Apply a reviewer's decision, validated by `REVIEW_TRANSITIONS`, and write its review event.

        The status change, the event and the publication are one transaction: with ``publish``, an approval
        also marks the asset published (older versions superseded, listed in ``superseded_ids``); a decision
        that leaves a published asset unpublishable (reject, request review) always clears its publication.
        Raises `TransitionRefused` with reason ``failed_asset``, ``superseded``, ``not_ready`` (still
        pending), ``no_change`` or ``comment_required`` (overturning an earlier human decision needs a comment).
        """
        dec = _as_enum(ReviewDecision, decision, "review decision")
        who = (reviewer or "").strip()
        if not who or len(who) > 128:
            raise InvalidInput("a review needs a reviewer name (1-128 characters)")
        note = (comment or "").strip() or None
        with self._tx() as s:
            a = self._locked_asset(s, asset_id)
            current = AssetStatus(a.status)
            target = self._target(a, dec, note)
            now = utcnow()
            a.status, a.updated_at = target, now
            superseded: list[int] = []
            if target in PUBLISHABLE and publish:
                superseded = self._publish_locked(s, a)
            elif target not in PUBLISHABLE:
                a.published_at = None
            event = ReviewEvent(
                asset_id=a.id, reviewer=who, decision=dec, from_status=current, to_status=target, comment=note,
                created_at=now,
            )  # fmt: skip
            s.add(event)
            s.flush()
            return dataclasses.replace(review_record(event), superseded_ids=tuple(superseded))

    def approve(self, asset_id: int, *, reviewer: str, comment: str | None = None) -> ReviewRecord:
        """`review` with ``approve``."""
        return self.review(asset_id, ReviewDecision.approve, reviewer=reviewer, comment=comment)

    def reject(self, asset_id: int, *, reviewer: str, comment: str | None = None) -> ReviewRecord:
        """`review` with ``reject``."""
        return self.review(asset_id, ReviewDecision.reject, reviewer=reviewer, comment=comment)

    @staticmethod
    def _locked_asset(s: Session, asset_id: int) -> Asset:
        a = s.scalar(select(Asset).where(Asset.id == asset_id).with_for_update())
        if a is None:
            raise NotFound(f"no asset with id {asset_id}")
        return a

    # -- metrics and failures ----------------------------------------------------------------------------

    def record_metrics(
        self, asset_id: int, metrics: Mapping[str, float], *, units: Mapping[str, str] | None = None
    ) -> None:
        """Set metric values of an asset (existing names are overwritten)."""
        clean = _clean_metrics(metrics)
        with self._tx() as s:
            self._get(s, Asset, asset_id, "asset")
            existing = {m.name: m for m in s.scalars(select(Metric).where(Metric.asset_id == asset_id))}
            now = utcnow()
            for name, value in clean.items():
                m = existing.get(name) or Metric(asset_id=asset_id, name=name)
                m.value, m.unit, m.recorded_at = value, (units or {}).get(name, m.unit), now
                s.add(m)

    def record_failure(
        self,
        *,
        stage: str,
        reason: str,
        message: str,
        photo_id: int | None = None,
        run_id: int | None = None,
        asset_id: int | None = None,
        photo_uri: str | None = None,
        at: datetime | None = None,
        once: bool = False,
    ) -> FailureRecord:
        """Record that ``stage`` failed (for a photo, a run, or both); secrets in ``message`` are masked.

        ``photo_uri`` names the photo also when it has no photo row yet (its bytes were never read); with a
        ``photo_id`` it defaults to that photo's URI. With ``once``, a failure of the same photo URI at the
        same stage for the same reason is recorded only the first time (a settled refusal); later calls
        return that row.
        """
        if not stage or not reason:
            raise InvalidInput("a failure needs a stage and a reason")
        text = redact_secrets(message)[:_MAX_MESSAGE]
        with self._tx() as s:
            photo = self._get(s, Photo, photo_id, "photo") if photo_id is not None else None
            if run_id is not None:
                self._get(s, Run, run_id, "run")
            if asset_id is not None:
                self._get(s, Asset, asset_id, "asset")
            uri = photo_uri or (photo.uri if photo else None)
            if once and uri is not None:
                earlier = s.scalar(
                    select(Failure)
                    .where(Failure.photo_uri == uri, Failure.stage == stage[:64], Failure.reason == reason[:64])
                    .order_by(Failure.id)
                    .limit(1)
                )
                if earlier is not None:
                    return FailureRecord(
                        earlier.id, earlier.photo_id, earlier.run_id, earlier.asset_id, photo.product.sku if photo else None,
                        uri, earlier.stage, earlier.reason, earlier.message, earlier.created_at,
                    )  # fmt: skip
            f = Failure(
                photo_id=photo_id, run_id=run_id, asset_id=asset_id, photo_uri=uri, stage=stage[:64], reason=reason[:64],
                message=text, created_at=at or utcnow(),
            )  # fmt: skip
            s.add(f)
            s.flush()
            return FailureRecord(
                f.id, photo_id, run_id, asset_id, photo.product.sku if photo else None, uri, f.stage, f.reason, f.message,
                f.created_at,
            )  # fmt: skip

    # -- queries -----------------------------------------------------------------------------------------

    def review_queue(
        self,
        *,
        statuses: Iterable[AssetStatus | str] | None = None,
        sku: str | None = None,
        metric_filters: Iterable[MetricFilter] = (),
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[AssetRecord]:
        """Assets for people to look at: ``needs_review`` first, then oldest first.

        Parameters
        ----------
        statuses
            Keep only these statuses; default every status but ``superseded``.
        sku
            Keep only this product's assets.
        metric_filters
            Keep only assets whose metrics pass every threshold.
        limit, offset
            Paging (``limit=None``: everything).
        """
        wanted = _statuses(statuses)
        q = (
            select(Asset, Product.sku)
            .join(Photo, Asset.photo_id == Photo.id)
            .join(Product, Photo.product_id == Product.id)
            .where(Asset.status.in_(wanted))
        )
        if sku is not None:
            q = q.where(Product.sku == sku)
        for f in metric_filters:
            q = q.where(
                exists().where(and_(Metric.asset_id == Asset.id, Metric.name == f.name, _compare(Metric.value, f.op, f.value)))
            )
        q = q.order_by(case((Asset.status == AssetStatus.needs_review, 0), else_=1), Asset.created_at, Asset.id)
        q = q.offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self._tx() as s:
            return [asset_record(a, sku_) for a, sku_ in s.execute(q).all()]

    def asset_detail(self, asset_id: int) -> AssetDetail:
        """An asset with its photo, product, run, metrics and review history (`NotFound` otherwise)."""
        with self._tx() as s:
            a = s.scalar(
                select(Asset)
                .where(Asset.id == asset_id)
                .options(
                    joinedload(Asset.photo).joinedload(Photo.product),
                    joinedload(Asset.run),
                    selectinload(Asset.metrics),
                    selectinload(Asset.reviews),
                )
            )
            if a is None:
                raise NotFound(f"no asset with id {asset_id}")
            product = a.photo.product
            return AssetDetail(
                asset=asset_record(a, product.sku),
                photo=photo_record(a.photo, product.sku),
                product=product_record(product),
                run=run_record(a.run) if a.run is not None else None,
                metrics={m.name: MetricRecord(m.name, m.value, m.unit, m.recorded_at) for m in a.metrics},
                reviews=tuple(review_record(e) for e in a.reviews),
            )

    def failures_since(self, since: datetime | None = None, *, limit: int | None = None) -> list[FailureRecord]:
        """Failures at or after ``since`` (default: all), newest first."""
        q = (
            select(Failure, Photo.uri, Product.sku)
            .outerjoin(Photo, Failure.photo_id == Photo.id)
            .outerjoin(Product, Photo.product_id == Product.id)
        )
        if since is not None:
            if since.tzinfo is None:
                raise InvalidInput(f"since={since.isoformat()} has no timezone; give e.g. 2024-05-01T00:00:00+00:00")
            q = q.where(Failure.created_at >= since)
        q = q.order_by(Failure.created_at.desc(), Failure.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self._tx() as s:
            return [
                FailureRecord(f.id, f.photo_id, f.run_id, f.asset_id, sku, f.photo_uri or uri, f.stage, f.reason, f.message, f.created_at)
                for f, uri, sku in s.execute(q).all()
            ]

    def counts_by_status(self) -> dict[AssetStatus, int]:
        """Number of assets in each status (every status present, zeros included)."""
        with self._tx() as s:
            rows = s.execute(select(Asset.status, func.count()).group_by(Asset.status)).all()
        counts = dict.fromkeys(AssetStatus, 0)
        for status, n in rows:
            counts[AssetStatus(status)] = int(n)
        return counts

    def metric_distributions(
        self, names: Iterable[str] | None = None, *, statuses: Iterable[AssetStatus | str] | None = None
    ) -> dict[str, Distribution]:
        """Min, median, 95th percentile and max of each metric over assets (default: all but superseded)."""
        wanted = _statuses(statuses)
        q = select(Metric.name, Metric.value).join(Asset, Metric.asset_id == Asset.id).where(Asset.status.in_(wanted))
        if names is not None:
            q = q.where(Metric.name.in_(list(names)))
        with self._tx() as s:
            rows = s.execute(q.order_by(Metric.name)).all()
        grouped: dict[str, list[float]] = {}
        for name, value in rows:
            grouped.setdefault(name, []).append(float(value))
        out: dict[str, Distribution] = {}
        for name, values in grouped.items():
            v = np.asarray(values, dtype=np.float64)  # (n,)
            median, p95 = np.percentile(v, [50.0, 95.0])
            out[name] = Distribution(int(v.size), float(v.min()), float(median), float(p95), float(v.max()))
        return out

    def sku_history(self, sku: str) -> list[AssetRecord]:
        """Every asset ever made for a SKU (superseded ones too), by photo then version."""
        with self._tx() as s:
            if s.scalar(select(Product.id).where(Product.sku == sku)) is None:
                raise NotFound(f"no product with SKU {sku!r}")
            q = (
                select(Asset)
                .join(Photo, Asset.photo_id == Photo.id)
                .join(Product, Photo.product_id == Product.id)
                .where(Product.sku == sku)
                .order_by(Photo.uri, Asset.version)
            )
            return [asset_record(a, sku) for a in s.scalars(q)]

    def photos_to_convert(
        self, *, params_hash: str, weights_sha256: str, sku: str | None = None, limit: int | None = None
    ) -> list[PhotoRecord]:
        """Photos without an asset for their current bytes with these parameters and weights.

        Photos whose only conversion attempts failed before an asset was recorded are listed again (the
        next run retries them); an asset recorded with status ``failed`` counts as converted.
        """
        done = exists().where(_converted(params_hash, weights_sha256))
        q = select(Photo, Product.sku).join(Product, Photo.product_id == Product.id).where(~done)
        if sku is not None:
            q = q.where(Product.sku == sku)
        q = q.order_by(Photo.id)
        if limit is not None:
            q = q.limit(limit)
        with self._tx() as s:
            return [photo_record(p, sku_) for p, sku_ in s.execute(q).all()]


    def photos_by_uri(self, uris: Iterable[str]) -> dict[str, PhotoRecord]:
        """The catalogue's photos among ``uris`` (by URI), with their SKU."""
        wanted = sorted(set(uris))
        out: dict[str, PhotoRecord] = {}
        with self._tx() as s:
            for i in range(0, len(wanted), 500):
                q = select(Photo, Product.sku).join(Product, Photo.product_id == Product.id).where(Photo.uri.in_(wanted[i : i + 500]))
                for p, sku in s.execute(q).all():
                    out[p.uri] = photo_record(p, sku)
        return out

    def products(self, skus: Iterable[str]) -> dict[str, ProductRecord]:
        """The catalogue's products among ``skus`` (by SKU): titles and real-world sizes."""
        wanted = sorted(set(skus))
        out: dict[str, ProductRecord] = {}
        with self._tx() as s:
            for i in range(0, len(wanted), 500):
                for p in s.scalars(select(Product).where(Product.sku.in_(wanted[i : i + 500]))):
                    out[p.sku] = product_record(p)
        return out

    def relabel_photos(self, uris: Iterable[str], sku: str) -> int:
        """Move the photos ``uris`` (and so their assets) to the product ``sku``, created when new; returns
        how many moved. Their assets keep their files where they are."""
        wanted = sorted(set(uris))

        def go() -> int:
            with self._tx() as s:
                product = self._product_row(s, sku)
                moved = 0
                for i in range(0, len(wanted), 500):
                    for photo in s.scalars(select(Photo).where(Photo.uri.in_(wanted[i : i + 500]))):
                        if photo.product_id != product.id:
                            photo.product_id = product.id
                            moved += 1
                return moved

        return self._retry_on_conflict(go)

    def converted_photos(
        self, *, params_hash: str, weights_sha256: str, uris: Iterable[str] | None = None
    ) -> dict[str, ConvertedPhoto]:
        """Photos (by URI; default all) with an asset for their current bytes, these parameters and weights.

        The complement of `photos_to_convert`; a batch skips these without downloading them again.
        """
        base = select(
            Photo.uri, Photo.etag, Photo.sha256, Asset.id, Asset.status, Asset.published_at, Asset.glb_uri, Asset.faces
        ).join(Asset, _converted(params_hash, weights_sha256))
        wanted = sorted(set(uris)) if uris is not None else None
        queries = [base] if wanted is None else [base.where(Photo.uri.in_(wanted[i : i + 500])) for i in range(0, len(wanted), 500)]
        out: dict[str, ConvertedPhoto] = {}
        with self._tx() as s:
            for q in queries:
                for uri, etag, sha, asset_id, status, published_at, glb_uri, faces in s.execute(q):
                    out[uri] = ConvertedPhoto(uri, etag, sha, asset_id, AssetStatus(status), published_at is not None, glb_uri, faces)
        return out

    # -- reviewers' queries (asset3d review, asset3d catalogue, the review app) ----------------------------

    def metric_names(self) -> list[str]:
        """Every metric name recorded for any asset, sorted: the names metric filters take."""
        with self._tx() as s:
            return sorted(s.scalars(select(Metric.name).distinct()).all())

    def find_assets(
        self,
        *,
        statuses: Iterable[AssetStatus | str] | None = None,
        sku: str | None = None,
        run_id: int | None = None,
        metric_filters: Iterable[MetricFilter] = (),
        newest_first: bool = True,
        limit: int | None = 50,
        offset: int = 0,
    ) -> tuple[list[AssetRecord], int]:
        """One page of assets, ``needs_review`` first, and how many match in all.

        Parameters
        ----------
        statuses, sku, metric_filters
            As `review_queue` (default every status but ``superseded``).
        run_id
            Keep only the assets this conversion run made.
        newest_first
            Within each group (``needs_review``, the rest), newest first (default) or oldest first.
        limit, offset
            Paging (``limit=None``: everything).

        Returns
        -------
        tuple[list[AssetRecord], int]
            The page, and the number of assets matching the filters.
        """
        if (limit is not None and limit < 1) or offset < 0:
            raise InvalidInput(f"paging limit={limit} offset={offset}: limit must be >= 1 and offset >= 0")
        conditions = [Asset.status.in_(_statuses(statuses))]
        if sku is not None:
            conditions.append(Product.sku == sku)
        if run_id is not None:
            conditions.append(Asset.run_id == run_id)
        for f in metric_filters:
            conditions.append(
                exists().where(and_(Metric.asset_id == Asset.id, Metric.name == f.name, _compare(Metric.value, f.op, f.value)))
            )
        joined = (
            select(Asset, Product.sku)
            .join(Photo, Asset.photo_id == Photo.id)
            .join(Product, Photo.product_id == Product.id)
            .where(*conditions)
        )
        when, ident = (Asset.created_at.desc(), Asset.id.desc()) if newest_first else (Asset.created_at, Asset.id)
        page = joined.order_by(case((Asset.status == AssetStatus.needs_review, 0), else_=1), when, ident).offset(offset)
        if limit is not None:
            page = page.limit(limit)
        counted = (
            select(func.count(Asset.id))
            .join(Photo, Asset.photo_id == Photo.id)
            .join(Product, Photo.product_id == Product.id)
            .where(*conditions)
        )
        with self._tx() as s:
            total = int(s.scalar(counted) or 0)
            return [asset_record(a, sku_) for a, sku_ in s.execute(page).all()], total

    # -- garbage collection (asset3d gc) -------------------------------------------------------------------

    def asset_folders(self, prefix: str) -> set[str]:
        """The folders (GLB URI without its file name) of every asset whose GLB URI starts with ``prefix``."""
        with self._tx() as s:
            uris = s.scalars(select(Asset.glb_uri).where(Asset.glb_uri.startswith(prefix, autoescape=True))).all()
        return {u.rsplit("/", 1)[0] for u in uris if u}

    def known_conversion_keys(self, keys: Iterable[str]) -> set[str]:
        """The conversion keys among ``keys`` that some asset of the catalogue has (whatever its folder)."""
        wanted = sorted(set(keys))
        out: set[str] = set()
        with self._tx() as s:
            for i in range(0, len(wanted), 500):
                out.update(s.scalars(select(Asset.conversion_key).where(Asset.conversion_key.in_(wanted[i : i + 500]))).all())
        return out


# -- helpers -----------------------------------------------------------------------------------------------


def _converted(params_hash: str, weights_sha256: str) -> Any:
    """The join condition "this asset converts this photo's current bytes with these parameters and weights"."""
    _check_sha(params_hash, "params hash")
    _check_sha(weights_sha256, "weights sha256")
    return and_(
        Asset.photo_id == Photo.id,
        Asset.photo_sha256 == Photo.sha256,
        Asset.params_hash == params_hash,
        Asset.weights_sha256 == weights_sha256,
    )



def _as_enum(cls: type[Any], value: Any, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidInput(f"{what} {value!r} is not one of: {allowed}") from None


def _statuses(statuses: Iterable[AssetStatus | str] | None) -> list[AssetStatus]:
    """The statuses asked for, validated; by default every status but ``superseded``."""
    if statuses is None:
        return [x for x in AssetStatus if x is not AssetStatus.superseded]
    return [_as_enum(AssetStatus, x, "asset status") for x in statuses]


def _clean_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not METRIC_NAME.match(name):
            raise InvalidInput(f"metric name {name!r}: use lower-case letters, digits, '_' and '.' (max 64)", reason="invalid_metric")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"metric {name}={value!r} is not a number", reason="invalid_metric") from None
        if not math.isfinite(number):
            raise InvalidInput(f"metric {name}={value!r} is not finite", reason="invalid_metric")
        out[name] = number
    return out


def _compare(column: Any, op: str, value: float) -> Any:
    return {
        "<": column < value,
        "<=": column <= value,
        ">": column > value,
        ">=": column >= value,
        "==": column == value,
    }[op]


def _refusal_reason(decision: ReviewDecision, current: AssetStatus) -> str:
    if current is AssetStatus.failed:
        return "failed_asset"
    if current is AssetStatus.superseded:
        return "superseded"
    if current is AssetStatus.pending:
        return "not_ready"
    return "no_change"


def _refusal(asset_id: int, decision: ReviewDecision, current: AssetStatus) -> str:
    reason = _refusal_reason(decision, current)
    why = {
        "failed_asset": "it failed; re-run the conversion instead",
        "superseded": "a newer version replaced it",
        "not_ready": "its quality gate has not run yet",
        "no_change": f"it is already {current.value}" if decision is not ReviewDecision.request_review
        else f"it is {current.value}",
    }[reason]
    return f"asset {asset_id} is {current.value}: cannot {decision.value.replace('_', ' ')} ({why})"
