"""The orchestration both flows share: photos in, one report out. No stage logic lives here.

`convert_photos` runs inside a flow run:

1. ``discover`` the photos and their SKUs, ``start-run`` (model identity + catalogue run row), ``plan``
   (photos already converted for their current ETag are skipped without being downloaded);
2. per photo: ``fetch`` -> ``intake``; framed photos collect into micro-batches of ``batch_size`` for
   ``reconstruct`` (tag ``gpu``); per photo again: ``build`` -> ``publish`` -> ``record``. Every stage
   of every photo is submitted as soon as its input is ready, so downloads, intake and builds overlap
   the reconstruction of other batches;
3. a photo that fails at any stage gets a failure row (``record-failure``) and drops out; the others go
   on. A progress artifact moves as photos finish, and a log line gives the counts;
4. at the end: a table artifact (one row per photo) and a markdown summary (counts by status, slowest
   stages, failures).

With ``fan_out > 0`` and more photos than that, the photos are split into sub-batches that run as
runs of the ``convert-batch`` deployment (`prefect.deployments.run_deployment`), on whichever workers
serve its pool; each photo goes to exactly one sub-batch, and the report is read back from the catalogue.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from asset3d.pipeline import records
from asset3d.pipeline.assets import BuiltAsset, Published
from asset3d.pipeline.errors import describe
from asset3d.pipeline.photos import Fetched, PhotoFacts, PhotoRef, Prepared
from asset3d.pipeline.records import ConvertedPhoto, RunContext
from asset3d.pipeline.settings import Settings
from asset3d.pipeline.summary import BatchSummary, PhotoOutcome
from storage.catalogue import AssetStatus, RunStatus, conversion_key
from tasks import stages
from tasks.policy import configured

Source = str | Sequence[str | Mapping[str, str]]
#: The progress artifact moves at most this often (each update is a round trip to the server).
PROGRESS_EVERY_S = 1.0


class _Tasks:
    """The stage tasks with this run's retry and cache settings."""

    def __init__(self, settings: Settings) -> None:
        for name in (
            "discover", "start_run", "plan", "finish_run", "fetch", "check_bytes", "intake", "reconstruct", "build",
            "publish", "record", "record_failure",
        ):  # fmt: skip
            setattr(self, name, configured(getattr(stages, name), settings))


def _artifact_key(kind: str, what: str) -> str:
    return f"{kind}-{what}".lower().replace("_", "-")


class _Photos:
    """One batch's photos in flight: submits each stage when its input is ready and records outcomes."""

    def __init__(
        self, ctx: RunContext, settings: Settings, tasks: _Tasks, outcomes: dict[str, PhotoOutcome],
        known: Mapping[str, ConvertedPhoto], on_done: Callable[[], None],
    ) -> None:  # fmt: skip
        self.ctx, self.s, self.t = ctx, settings, tasks
        self.outcomes = outcomes
        self.known = known
        self.on_done = on_done
        self.events: queue.SimpleQueue[tuple[str, Any, PrefectFuture[Any]]] = queue.SimpleQueue()
        self.inflight = 0
        self.front = 0  # photos still in fetch or intake
        self.ready: list[Prepared] = []
        self.facts: dict[str, PhotoFacts] = {}
        self.log = get_run_logger()

    # -- plumbing --------------------------------------------------------------------------------------------

    def submit(self, stage: str, item: Any, task: Any, *args: Any) -> None:
        future = task.submit(*args)
        self.inflight += 1
        future.add_done_callback(lambda f, stage=stage, item=item: self.events.put((stage, item, f)))

    @staticmethod
    def outcome_of(future: PrefectFuture[Any]) -> tuple[bool, Any, bool]:
        """``(ok, value or exception, cached)``; a cached stage counts no work."""
        future.wait()  # the future is done: this only takes its final state, without asking the API
        state = future.state
        if state.is_completed():
            return True, future.result(), state.name == "Cached"
        return False, future.result(raise_on_failure=False), False

    def timing(self, ref: PhotoRef, stage: str, seconds: float, cached: bool) -> None:
        self.outcomes[ref.uri].timings_s[stage] = 0.0 if cached else seconds

    def fail(self, ref: PhotoRef, stage: str, error: BaseException, *, settle: bool | None = None) -> None:
        reason, message = describe(error)
        o = self.outcomes[ref.uri]
        o.status, o.stage, o.reason, o.message = "failed", getattr(error, "stage", stage), reason, message
        self.log.warning("%s failed at %s: %s", ref.uri, o.stage, message)
        facts = self.facts.get(ref.uri) or getattr(error, "facts", None)
        self.submit("record_failure", ref, self.t.record_failure, self.ctx, ref, o.stage, error, facts, settle)

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self, todo: Sequence[PhotoRef]) -> None:
        for ref in todo:
            self.front += 1
            self.submit("fetch", ref, self.t.fetch, ref, self.s.max_photo_bytes)
        while self.inflight:
            stage, item, future = self.events.get()
            self.inflight -= 1
            getattr(self, f"on_{stage}")(item, *self.outcome_of(future))
            self.flush()

    def flush(self) -> None:
        """Start a reconstruction micro-batch when one is full, or with what is left once intake is done."""
        size = self.s.batch_size
        while len(self.ready) >= size or (self.front == 0 and self.ready):
            batch, self.ready = self.ready[:size], self.ready[size:]
            self.submit("reconstruct", batch, self.t.reconstruct, batch, self.s, self.ctx.weights_sha256)

    # -- stage outcomes --------------------------------------------------------------------------------------

    def on_fetch(self, ref: PhotoRef, ok: bool, value: Any, cached: bool) -> None:
        if not ok:
            self.front -= 1
            return self.fail(ref, "fetch", value)
        fetched: Fetched = value.value
        self.timing(ref, "fetch", value.seconds, cached)
        self.facts[ref.uri] = fetched.facts()
        done = self.known.get(ref.uri)
        if done is not None and done.sha256 == fetched.sha256:  # a new ETag, the same bytes
            self.submit("check_bytes", (ref, fetched), self.t.check_bytes, self.ctx, ref, fetched.facts(), done)
        else:
            self.submit("intake", ref, self.t.intake, fetched, self.s)

    def on_check_bytes(self, item: tuple[PhotoRef, Fetched], ok: bool, value: Any, cached: bool) -> None:
        ref, fetched = item
        if ok and value:
            self.front -= 1
            _skipped(self.outcomes[ref.uri], self.known[ref.uri])
            self.on_done()
        elif not ok:
            self.front -= 1
            self.fail(ref, "record", value)
        else:
            self.submit("intake", ref, self.t.intake, fetched, self.s)

    def on_intake(self, ref: PhotoRef, ok: bool, value: Any, cached: bool) -> None:
        self.front -= 1
        if not ok:
            return self.fail(ref, "intake", value)
        self.timing(ref, "intake", value.seconds, cached)
        self.ready.append(value.value)

    def on_reconstruct(self, batch: list[Prepared], ok: bool, value: Any, cached: bool) -> None:
        if not ok:  # the whole micro-batch failed (device, memory): no photo's fault, try them again next run
            for prepared in batch:
                self.fail(prepared.ref, "reconstruct", value, settle=False)
            return
        share = value.seconds / len(batch)
        for prepared, recon in zip(batch, value.value, strict=True):
            ref = prepared.ref
            if isinstance(recon, BaseException):
                self.fail(ref, "reconstruct", recon)
                continue
            self.timing(ref, "reconstruct", share, cached)
            asset_id = conversion_key(prepared.sha256, self.ctx.params_hash, self.ctx.weights_sha256)
            self.submit("build", (ref, prepared), self.t.build, prepared, recon, self.s, asset_id)

    def on_build(self, item: tuple[PhotoRef, Prepared], ok: bool, value: Any, cached: bool) -> None:
        ref, prepared = item
        if not ok:
            return self.fail(ref, "build", value)
        built: BuiltAsset = value.value
        self.timing(ref, "build", value.seconds, cached)
        provenance = records.provenance(self.ctx, ref, built)
        manifest = built.decision == "auto_approved"
        self.submit("publish", (ref, built), self.t.publish, built, self.s.dest, provenance, manifest)

    def on_publish(self, item: tuple[PhotoRef, BuiltAsset], ok: bool, value: Any, cached: bool) -> None:
        ref, built = item
        if not ok:
            return self.fail(ref, "publish", value)
        published: Published = value.value
        self.timing(ref, "publish", value.seconds, cached)
        self.submit("record", (ref, built, published), self.t.record, self.ctx, ref, self.facts[ref.uri], built, published)

    def on_record(self, item: tuple[PhotoRef, BuiltAsset, Published], ok: bool, value: Any, cached: bool) -> None:
        ref, built, published = item
        if not ok:
            return self.fail(ref, "record", value)
        self.timing(ref, "record", value.seconds, cached)
        self.outcomes[ref.uri].converted(value.value, built, published)
        self.on_done()

    def on_record_failure(self, ref: PhotoRef, ok: bool, value: Any, cached: bool) -> None:
        if not ok:
            self.log.error("could not record the failure of %s in the catalogue: %s", ref.uri, describe(value)[1])
        self.on_done()


def _fan_out(todo: list[PhotoRef], settings: Settings, ctx: RunContext, outcomes: dict[str, PhotoOutcome], since: datetime) -> None:
    """Run ``todo`` as sub-batches of the ``convert-batch`` deployment and read their outcomes back."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    log = get_run_logger()
    size = settings.fan_out
    options = settings.model_dump(mode="json", exclude={"fan_out", "source", "dest", "catalogue_url", "model"})
    children: list[UUID] = []
    for i in range(0, len(todo), size):
        chunk = todo[i : i + size]
        parameters = {
            "source": [{"uri": r.uri, "sku": r.sku} for r in chunk],
            "dest": settings.dest,
            "catalogue_url": ctx.catalogue_url,
            "model": ctx.model_source,
            "options": {**options, "fan_out": 0},
        }
        run = run_deployment(
            settings.deployment, parameters=parameters, timeout=0, as_subflow=True,
            idempotency_key=f"{ctx.flow_run_id}-{i // size}" if ctx.flow_run_id else None,
        )  # fmt: skip
        children.append(run.id)
    log.info("fanned %d photos out into %d sub-batches of %s", len(todo), len(children), settings.deployment)
    pending = set(children)
    with get_client(sync_client=True) as client:
        while pending:
            for run_id in sorted(pending):
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    pending.discard(run_id)
                    log.info("sub-batch %s finished: %s", run_id, state.name)
            if pending:
                time.sleep(1.0)
    cat = records.open_catalogue(ctx.catalogue_url)
    done = records.converted_photos(cat, params_hash=ctx.params_hash, weights_sha256=ctx.weights_sha256, uris=[r.uri for r in todo])
    failures = {}
    for f in cat.failures_since(since):
        uri = f.photo_uri or f.message.split(": ", 1)[0]
        failures.setdefault(uri, f)  # newest first
    for ref in todo:
        o = outcomes[ref.uri]
        hit = done.get(ref.uri)
        fail = failures.get(ref.uri)
        if hit is not None and hit.status not in (AssetStatus.failed, AssetStatus.rejected):
            o.status = "published" if hit.published else hit.status.value
            o.asset_id, o.glb_key, o.faces = hit.asset_id, hit.glb_uri, hit.faces
        elif fail is not None:
            o.status = "rejected" if fail.stage == "review" else "failed"
            o.stage, o.reason, o.message, o.asset_id = fail.stage, fail.reason, fail.message, hit.asset_id if hit else None
        elif hit is not None:  # refused before this run's failure window: report what the catalogue says
            o.status, o.asset_id, o.glb_key, o.faces = hit.status.value, hit.asset_id, hit.glb_uri, hit.faces
            o.stage, o.reason, o.message = "review", hit.status.value, "recorded earlier"
        else:
            o.status, o.stage, o.reason, o.message = "failed", "fan-out", "not_converted", "its sub-batch left no asset and no failure"


def _skipped(outcome: PhotoOutcome, done: ConvertedPhoto) -> None:
    outcome.status = "skipped"
    outcome.asset_id, outcome.glb_key, outcome.faces = done.asset_id, done.glb_uri, done.faces
    outcome.message = f"already converted (asset {done.asset_id}, {done.status.value})"


def convert_photos(source: Source, settings: Settings, *, kind: str) -> dict[str, Any]:
    """Convert the photos of ``source``; returns the batch report (`BatchSummary.as_dict`)."""
    log = get_run_logger()
    t0 = time.perf_counter()
    since = datetime.now(UTC)
    t = _Tasks(settings)
    found = t.discover(source, settings)
    started = t.start_run(settings, str(flow_run.id) if flow_run.id else None)
    ctx: RunContext = started.value
    planned = t.plan(found.value, ctx)
    todo, skipped = planned.value.todo, planned.value.skipped
    refs: list[PhotoRef] = found.value
    outcomes = {r.uri: PhotoOutcome(r.uri, r.sku) for r in refs}
    for uri, done in skipped.items():
        _skipped(outcomes[uri], done)
    summary = BatchSummary(
        kind=kind, outcomes=list(outcomes.values()), model_label=ctx.model_label, model_id=ctx.model_id,
        weights_sha256=ctx.weights_sha256, run_ids=[ctx.run_id], flow_run_id=ctx.flow_run_id,
        batch_timings_s={"discover": found.seconds, "start_run": started.seconds, "plan": planned.seconds},
    )  # fmt: skip
    total = len(refs)
    log.info("%s: %d photos, %d to convert, %d already converted; model: %s", kind, total, len(todo), len(skipped), ctx.model_label)
    progress = create_progress_artifact(
        progress=100.0 * len(skipped) / total if total else 100.0,
        key=_artifact_key(kind, "progress"),
        description=f"{kind}: photos finished (converted, failed or skipped) out of {total}",
    )

    last_update = [0.0]

    def on_done() -> None:
        counts = summary.counts()
        finished = sum(1 for o in outcomes.values() if o.status != "pending")
        log.info("%d/%d photos finished: %s", finished, total, ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        now = time.monotonic()
        if now - last_update[0] >= PROGRESS_EVERY_S or finished == total:  # one API call per second at most
            update_progress_artifact(progress, 100.0 * finished / total)
            last_update[0] = now

    status = RunStatus.completed
    try:
        if settings.fan_out and len(todo) > settings.fan_out:
            _fan_out(todo, settings, ctx, outcomes, since)
            update_progress_artifact(progress, 100.0)
        else:
            _Photos(ctx, settings, t, outcomes, planned.value.known, on_done).run(todo)
    except BaseException:
        status = RunStatus.failed
        raise
    finally:
        t.finish_run(ctx, status.value)
    summary.wall_s = time.perf_counter() - t0
    create_table_artifact(summary.table(), key=_artifact_key(kind, "photos"), description=f"{kind}: one row per photo")
    create_markdown_artifact(summary.markdown(), key=_artifact_key(kind, "summary"), description=f"{kind}: summary")
    counts = summary.counts()
    log.info("%s done in %.1f s: %s", kind, summary.wall_s, ", ".join(f"{n} {s}" for s, n in counts.items()))
    return summary.as_dict()
