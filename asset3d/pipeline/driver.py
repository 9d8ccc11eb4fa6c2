"""The conversion driver: a photo's whole way through the pipeline, written once.

Both ways of converting run this module. The Prefect flows (`flows/`) hand it a runner that submits each
step as a task (retries, caches, the ``gpu`` tag, a worker pool); ``asset3d convert`` hands it `InlineRunner`,
which runs the same steps on a small thread pool in this process. The driver owns everything else:

1. the order: ``discover`` the photos and their SKUs, ``start-run`` (model identity and the catalogue's run
   row), ``plan`` (photos already converted for their current ETag are skipped unread); then per photo
   ``fetch`` -> ``intake``; framed photos collect into micro-batches of ``batch_size`` for ``reconstruct``;
   per photo again ``build`` -> ``publish`` (files) -> ``record`` (catalogue row) -> ``release`` (manifest,
   when the gate approved). Every step of every photo starts as soon as its input is ready, so downloads,
   intake and builds overlap the reconstruction of other batches;
2. bounded work: at most ``max_in_flight`` photos are between download and their outcome at once;
3. the failure policy: a photo that fails at any step gets its failure row and drops out, the others go on
   (`asset3d.pipeline.records.settles` decides whether the failure is the photo's own, for good); a photo
   discovery refused is a failure row of its own, recorded once;
4. the conversion key (`storage.catalogue.conversion_key`) and the manifest decision (only what the gate
   approved is released; reviewers release the rest, `asset3d.pipeline.review`);
5. the run's bookkeeping: the run row is closed whatever happens (``finally``), and the report
   (`BatchSummary`) counts every photo exactly once.

With a ``fan_out`` scheduler (the flows' sub-batch deployment runs) and more photos to convert than
``settings.fan_out``, the driver hands the photos over and reads each photo's outcome back from the catalogue.
"""

from __future__ import annotations

import queue
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from asset3d.pipeline import assets, models, photos, records
from asset3d.pipeline.assets import AssetIdentity, BuiltAsset
from asset3d.pipeline.errors import describe, is_transient
from asset3d.pipeline.memory import CycleCollection
from asset3d.pipeline.options import Deadlines, StageOptions, step_threads
from asset3d.pipeline.photos import Discovery, Fetched, PhotoFacts, PhotoRef, Prepared
from asset3d.pipeline.publishing import Staged
from asset3d.pipeline.records import RunContext
from asset3d.pipeline.settings import Settings
from asset3d.pipeline.summary import BatchSummary, PhotoOutcome
from asset3d.pipeline.vocabulary import PhotoStatus, Stage
from meshing.scale import ProductSize
from storage.catalogue import AssetRecord, AssetStatus, ConvertedPhoto, RunStatus, conversion_key

Source = str | Sequence[str | Mapping[str, str]]


class Step(StrEnum):
    """What a runner runs: the stages, split where the catalogue sits between them, and the bookkeeping."""

    discover = "discover"
    start_run = "start-run"
    plan = "plan"
    fetch = "fetch"
    check_bytes = "check-bytes"
    claim = "claim"
    intake = "intake"
    reconstruct = "reconstruct"
    build = "build"
    publish = "publish"
    record = "record"
    release = "release"
    heal = "heal"
    record_failure = "record-failure"
    record_refusal = "record-refusal"
    finish_run = "finish-run"


#: The plain function behind each step; the Prefect tasks (`tasks.stages`) wrap these, one task per step.
STEP_FUNCTIONS: dict[Step, Callable[..., Any]] = {
    Step.discover: photos.discover,
    Step.start_run: records.start_run,
    Step.plan: records.plan,
    Step.fetch: photos.fetch_photo,
    Step.check_bytes: records.check_bytes,
    Step.claim: records.claim,
    Step.intake: photos.prepare_photo,
    Step.reconstruct: models.reconstruct,
    Step.build: assets.build,
    Step.publish: assets.stage,
    Step.record: records.record_asset,
    Step.release: records.release,
    Step.heal: records.release,
    Step.record_failure: records.record_failure,
    Step.record_refusal: records.record_refusal,
    Step.finish_run: records.finish_run,
}

#: The stage a failed step is charged to in failure rows and reports.
STAGE_OF: dict[Step, Stage] = {
    Step.discover: Stage.discover,
    Step.fetch: Stage.fetch,
    Step.check_bytes: Stage.record,
    Step.claim: Stage.record,
    Step.intake: Stage.intake,
    Step.reconstruct: Stage.reconstruct,
    Step.build: Stage.build,
    Step.publish: Stage.publish,
    Step.record: Stage.record,
    Step.release: Stage.publish,
    Step.heal: Stage.publish,
}


@dataclass(frozen=True)
class StepResult:
    """A finished step: its value (or its exception when not ``ok``), seconds of work, and whether a cache
    answered (then no work was done)."""

    ok: bool
    value: Any
    seconds: float = 0.0
    cached: bool = False

    def unwrap(self) -> Any:
        if not self.ok:
            raise self.value
        return self.value


class Runner(Protocol):
    """Runs steps: `call` waits for one, `submit` calls ``done`` (from any thread) when it finishes."""

    def call(self, step: Step, *args: Any) -> StepResult: ...

    def submit(self, step: Step, args: tuple[Any, ...], done: Callable[[StepResult], None]) -> None: ...


class Reporter(Protocol):
    """Where the driver tells what happens (a log, a terminal, Prefect artifacts)."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def photo_done(self, outcome: PhotoOutcome, finished: int, total: int) -> None: ...


class QuietReporter:
    """A `Reporter` that says nothing."""

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def photo_done(self, outcome: PhotoOutcome, finished: int, total: int) -> None:
        pass


#: Runs the photos of ``todo`` elsewhere (sub-batch flow runs) and returns when all of them ended.
FanOut = Callable[[list[PhotoRef], RunContext], None]


class InlineRunner:
    """Runs steps in this process on a small thread pool, retrying transient errors like the tasks do.

    Parameters
    ----------
    workers
        Threads for concurrent steps (downloads, intake, catalogue writes; the model and the renderer
        keep their own locks); `for_settings` gives one per photo in flight, at most
        `asset3d.pipeline.options.STEP_THREADS`.
    retries, retry_delay_s, retry_jitter
        A transient failure (`asset3d.pipeline.errors.is_transient`) is tried again up to ``retries``
        times, after ``retry_delay_s`` doubling each time, with up to ``retry_jitter`` of it added at random.
    deadlines
        Per stage: no retry once it would end after the stage's deadline, counted from its first attempt
        (`asset3d.pipeline.options.Deadlines.allows_retry`, the rule the Prefect tasks follow too).
    """

    def __init__(
        self, *, workers: int = 4, retries: int = 3, retry_delay_s: float = 2.0, retry_jitter: float = 0.5,
        deadlines: Deadlines | None = None,
    ) -> None:  # fmt: skip
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asset3d-step")
        self.retries, self.retry_delay_s, self.retry_jitter = retries, retry_delay_s, retry_jitter
        self.deadlines = deadlines or Deadlines()

    @classmethod
    def for_settings(cls, settings: Settings) -> InlineRunner:
        options = settings.stage_options()
        return cls(
            workers=step_threads(options.max_in_flight), retries=settings.retries, retry_delay_s=settings.retry_delay_s,
            retry_jitter=settings.retry_jitter, deadlines=options.deadlines,
        )  # fmt: skip

    def call(self, step: Step, *args: Any) -> StepResult:
        fn = STEP_FUNCTIONS[step]
        stage = STAGE_OF.get(step)
        delay = self.retry_delay_s
        first = time.monotonic()
        for attempt in range(self.retries + 1):
            t0 = time.perf_counter()
            try:
                value = fn(*args)
            except Exception as err:
                took = time.perf_counter() - t0
                wait = delay * (1.0 + self.retry_jitter * random.random())
                fits = stage is None or self.deadlines.allows_retry(
                    stage, elapsed_s=time.monotonic() - first, attempt_s=took, delay_s=delay * (1.0 + self.retry_jitter)
                )
                if attempt < self.retries and is_transient(err) and fits:
                    time.sleep(wait)
                    delay *= 2
                    continue
                return StepResult(False, err, round(took, 4))
            return StepResult(True, value, round(time.perf_counter() - t0, 4))
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(self, step: Step, args: tuple[Any, ...], done: Callable[[StepResult], None]) -> None:
        self._pool.submit(self.call, step, *args).add_done_callback(lambda f: done(f.result()))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def provenance_key(ctx: RunContext, prepared: Prepared) -> str:
    """The conversion key of a photo in this run: photo bytes, conversion parameters, weights."""
    return conversion_key(prepared.sha256, ctx.params_hash, ctx.weights_sha256)


def needs_release(done: ConvertedPhoto) -> bool:
    """A converted photo whose approved asset was recorded but never released (no manifest yet)."""
    return done.status in (AssetStatus.auto_approved, AssetStatus.approved) and not done.published and bool(done.glb_uri)


def _under(uri: str, dest: str) -> bool:
    from storage import open_store

    try:
        return uri.startswith(open_store(dest).uri.rstrip("/") + "/")
    except Exception:  # an unusable dest has been reported elsewhere
        return True


def wants_release(asset: AssetRecord) -> bool:
    """The manifest decision: an asset the gate approved and that is not published yet is released now;
    anything the gate held waits for a reviewer (`asset3d.pipeline.review.decide`)."""
    return asset.status is AssetStatus.auto_approved and asset.published_at is None


class Driver:
    """Converts one batch. ``kind`` names it in reports (``convert``, ``convert-batch``, ``nightly-catalogue``).

    Parameters
    ----------
    settings
        The run's settings; each stage gets its own options (`Settings.stage_options`).
    runner
        How steps run (`InlineRunner`, or the flows' Prefect runner).
    reporter
        Progress and log lines (default: none).
    flow_run_id
        The Prefect flow run, when there is one (the catalogue run row names it; a retried flow run
        reuses its row).
    """

    def __init__(
        self, settings: Settings, runner: Runner, *, kind: str, reporter: Reporter | None = None, flow_run_id: str | None = None
    ) -> None:
        self.settings = settings
        self.options: StageOptions = settings.stage_options()
        self.runner = runner
        self.kind = kind
        self.report: Reporter = reporter or QuietReporter()
        self.flow_run_id = flow_run_id

    def run(self, source: Source, *, force: bool = False, fan_out: FanOut | None = None) -> BatchSummary:
        """Convert the photos of ``source``; returns the batch report.

        Raises
        ------
        Exception
            Only what stops the whole batch: the source cannot be listed, the catalogue or the model is
            unusable. The run row, once opened, is closed as ``failed`` (or ``cancelled``) first.
        """
        t0 = time.perf_counter()
        since = datetime.now(UTC)
        found = self.runner.call(Step.discover, source, self.options.discover)
        discovery: Discovery = found.unwrap()
        catalogue = records.catalogue_ref(self.settings.resolved_catalogue_url())  # no secret leaves this process
        started = self.runner.call(Step.start_run, self.options, catalogue, self.settings.auto_migrate, self.flow_run_id)
        ctx: RunContext = started.unwrap()
        status = RunStatus.failed
        try:
            summary = self._convert(ctx, discovery, force=force, fan_out=fan_out, since=since)
            summary.batch_timings_s = {"discover": found.seconds, "start_run": started.seconds, **summary.batch_timings_s}
            summary.wall_s = time.perf_counter() - t0
            status = RunStatus.completed
        except KeyboardInterrupt:
            status = RunStatus.cancelled
            raise
        finally:
            closed = self.patiently(Step.finish_run, ctx, status)
            if not closed.ok:
                self.report.warning(f"could not close catalogue run {ctx.run_id}: {describe(closed.value)[1]}")
        counts = summary.counts()
        self.report.info(f"{self.kind} done in {summary.wall_s:.1f} s: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return summary

    def patiently(self, step: Step, *args: Any) -> StepResult:
        """Run a bookkeeping step, waiting out a catalogue outage for up to ``catalogue_patience_s``: the end of
        a batch (its run row, failure rows the outage refused) is worth waiting for."""
        deadline = time.monotonic() + self.settings.catalogue_patience_s
        while True:
            result = self.runner.call(step, *args)
            if result.ok or not is_transient(result.value) or time.monotonic() >= deadline:
                return result
            self.report.warning(f"the catalogue does not answer ({describe(result.value)[1]}); waiting to {step.value}")
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def _convert(self, ctx: RunContext, discovery: Discovery, *, force: bool, fan_out: FanOut | None, since: datetime) -> BatchSummary:
        planned = self.runner.call(Step.plan, discovery.refs, ctx, force)
        plan: records.Plan = planned.unwrap()
        outcomes = {r.uri: PhotoOutcome(r.uri, r.sku) for r in discovery.refs}
        for refusal in discovery.refused:
            o = outcomes.setdefault(refusal.uri, PhotoOutcome(refusal.uri, ""))
            o.fail(Stage.discover, refusal.reason, refusal.message)
        unreleased = {uri: done for uri, done in plan.skipped.items() if needs_release(done)}
        for uri, done in plan.skipped.items():
            outcomes[uri].skipped(done)
        elsewhere = [done for uri, done in plan.skipped.items() if done.glb_uri and not _under(done.glb_uri, self.options.publish.dest)]
        if elsewhere:
            self.report.warning(
                f"{len(elsewhere)} photos were converted earlier into another destination (e.g. {elsewhere[0].glb_uri}); "
                f"nothing of theirs is published into {self.options.publish.dest}: the catalogue keeps one place per asset"
            )
        summary = BatchSummary(
            kind=self.kind, outcomes=list(outcomes.values()), model_label=ctx.model_label, model_id=ctx.model_id,
            weights_sha256=ctx.weights_sha256, run_ids=[ctx.run_id], flow_run_id=ctx.flow_run_id,
            batch_timings_s={"plan": planned.seconds},
        )  # fmt: skip
        total = len(outcomes)
        m = self.options.machine
        self.report.info(
            f"{self.kind}: {total} photos, {len(plan.todo)} to convert, {len(plan.skipped)} already converted, "
            f"{len(discovery.refused)} refused; model: {ctx.model_label}; this worker: device {m.device}, dtype {m.dtype}, "
            f"batch size {m.batch_size}; parameters {ctx.params_hash[:12]}"
        )
        batch = _Batch(self, ctx, plan, outcomes, force=force)
        for uri in plan.skipped:
            if uri in unreleased:  # recorded and approved, but its manifest never came (a run lost after record)
                batch.heal(uri, unreleased[uri])
            else:
                batch.finished(outcomes[uri])
        for refusal in discovery.refused:
            batch.refuse(refusal)
        if fan_out is not None and self.settings.fan_out and len(plan.todo) > self.settings.fan_out:
            fan_out(plan.todo, ctx)
            self._read_back(ctx, plan.todo, outcomes, since)
            for ref in plan.todo:
                batch.finished(outcomes[ref.uri])
            batch.wait()
        else:
            batch.run(plan.todo)
        batch.retry_pending_failures()
        return summary

    @staticmethod
    def _read_back(ctx: RunContext, todo: list[PhotoRef], outcomes: dict[str, PhotoOutcome], since: datetime) -> None:
        """Each photo's outcome after its sub-batch ran elsewhere, from the catalogue."""
        for uri, (hit, failure) in records.outcomes_from_catalogue(ctx, todo, since).items():
            o = outcomes[uri]
            if hit is not None and hit.status not in (AssetStatus.failed, AssetStatus.rejected):
                o.asset_id, o.glb_uri, o.faces = hit.asset_id, hit.glb_uri, hit.faces
                o.status = PhotoStatus.published if hit.published else PhotoStatus(hit.status.value)
            elif failure is not None:
                o.asset_id = hit.asset_id if hit else None
                if failure.stage == Stage.review:
                    o.status, o.stage, o.reason, o.message = PhotoStatus.rejected, failure.stage, failure.reason, failure.message
                else:
                    o.fail(failure.stage, failure.reason, failure.message)
            elif hit is not None:  # refused before this run's window: report what the catalogue says
                o.asset_id, o.glb_uri, o.faces = hit.asset_id, hit.glb_uri, hit.faces
                o.status = PhotoStatus.rejected if hit.status is AssetStatus.rejected else PhotoStatus.failed
                o.stage, o.reason, o.message = Stage.review, hit.status.value, "recorded earlier"
            else:
                o.fail(Stage.fan_out, "not_converted", "its sub-batch left no asset and no failure")


class _Batch:
    """One batch's photos in flight: starts each step when its input is ready and records outcomes."""

    def __init__(
        self, driver: Driver, ctx: RunContext, plan: records.Plan, outcomes: dict[str, PhotoOutcome], *, force: bool = False
    ) -> None:
        self.d, self.ctx, self.o = driver, ctx, driver.options
        self.force = force
        self.known: Mapping[str, ConvertedPhoto] = plan.known
        self.sizes = plan.sizes
        self.outcomes = outcomes
        self.events: queue.SimpleQueue[tuple[Step, Any, StepResult]] = queue.SimpleQueue()
        self.inflight = 0  # steps submitted and not yet handled
        self.waiting: deque[PhotoRef] = deque()
        self.admitted = 0  # photos admitted and not finished
        self.front = 0  # photos in fetch or intake
        self.ready: list[tuple[PhotoRef, Prepared]] = []
        self.ready_at = 0.0  # when the first photo of ``ready`` became ready
        #: photos whose bytes another photo of this batch is already taking through intake and reconstruction
        self.followers: dict[str, list[PhotoRef]] = {}
        #: failure rows the catalogue could not take yet (`retry_pending_failures`)
        self.pending: list[tuple[PhotoRef, tuple[Any, ...]]] = []
        self.facts: dict[str, PhotoFacts] = {}
        self.finished_count = 0
        self.total = len(outcomes)
        self.memory = CycleCollection()  # a finished photo's meshes are cycles: collected as the batch goes

    # -- plumbing --------------------------------------------------------------------------------------------

    def submit(self, step: Step, item: Any, *args: Any) -> None:
        self.inflight += 1
        self.d.runner.submit(step, args, lambda result, step=step, item=item: self.events.put((step, item, result)))

    def timing(self, ref: PhotoRef, stage: Stage, result: StepResult) -> None:
        self.outcomes[ref.uri].timings_s[stage.value] = 0.0 if result.cached else result.seconds

    def finished(self, outcome: PhotoOutcome) -> None:
        self.finished_count += 1
        self.d.report.photo_done(outcome, self.finished_count, self.total)
        self.memory.photo_done()

    def leave(self, ref: PhotoRef) -> None:
        """A photo reached its outcome: it frees its place for the next one."""
        self.admitted -= 1
        self.finished(self.outcomes[ref.uri])

    def fail(self, ref: PhotoRef, step: Step, error: BaseException, *, settle: bool | None = None) -> None:
        stage = Stage(getattr(error, "stage", None) or STAGE_OF[step])
        reason, message = describe(error)
        self.outcomes[ref.uri].fail(stage, reason, message)
        self.d.report.warning(f"{ref.uri} failed at {stage.value}: {message}")
        facts = self.facts.get(ref.uri) or getattr(error, "facts", None)
        args = (self.ctx, ref, stage, error, facts, settle)
        self.submit(Step.record_failure, (ref, args), *args)

    def size_of(self, ref: PhotoRef) -> ProductSize | None:
        """The product's real-world size: the run's flags, else the sidecar's, else the catalogue's product."""
        return self.o.product_size or ref.product_size or self.sizes.get(ref.sku)

    def refuse(self, refusal: photos.Refusal) -> None:
        self.submit(Step.record_refusal, refusal, self.ctx, refusal)

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self, todo: Sequence[PhotoRef]) -> None:
        self.waiting.extend(todo)
        with self.memory:
            self.admit()
            self.wait()

    def wait(self) -> None:
        while self.inflight:
            try:
                step, item, result = self.events.get(timeout=self.due_in())
            except queue.Empty:  # a partial micro-batch waited long enough for the photos still in the front
                self.flush()
                continue
            self.inflight -= 1
            getattr(self, f"on_{step.name}")(item, result)
            self.admit()
            self.flush()

    def admit(self) -> None:
        while self.waiting and self.admitted < self.o.max_in_flight:
            ref = self.waiting.popleft()
            self.admitted += 1
            self.front += 1
            self.submit(Step.fetch, ref, ref, self.o.fetch)

    def flush(self) -> None:
        """Start a reconstruction micro-batch when one is full, with what is left once intake is done, or with
        the photos that waited ``batch_wait_s`` for the rest of their batch (a stalled download holds no one)."""
        size = self.o.machine.batch_size
        due = bool(self.ready) and time.monotonic() >= self.ready_at + self.o.batch_wait_s
        while len(self.ready) >= size or (self.ready and (self.front == 0 or due)):
            batch, self.ready = self.ready[:size], self.ready[size:]
            self.ready_at = time.monotonic()
            self.submit(Step.reconstruct, batch, [p for _, p in batch], self.o.machine, self.o.reconstruct, self.ctx.weights_sha256)

    def due_in(self) -> float | None:
        """Seconds until the photos waiting for a micro-batch are due (None: none waits)."""
        return max(0.0, self.ready_at + self.o.batch_wait_s - time.monotonic()) if self.ready else None

    # -- step outcomes ---------------------------------------------------------------------------------------

    def on_fetch(self, ref: PhotoRef, r: StepResult) -> None:
        if not r.ok:
            self.front -= 1
            return self.fail(ref, Step.fetch, r.value)
        fetched: Fetched = r.value
        self.timing(ref, Stage.fetch, r)
        self.facts[ref.uri] = fetched.facts()
        done = self.known.get(ref.uri)
        if done is not None and done.sha256 == fetched.sha256:  # a new ETag, the same bytes
            self.submit(Step.check_bytes, (ref, fetched), self.ctx, ref, fetched.facts(), done)
        else:
            self.claim(ref, fetched)

    def claim(self, ref: PhotoRef, fetched: Fetched) -> None:
        """Take a lease on the photo's conversion before any costly work (overlapping runs skip it)."""
        key = conversion_key(fetched.sha256, self.ctx.params_hash, self.ctx.weights_sha256)
        self.submit(Step.claim, (ref, fetched), self.ctx, ref.uri, key, self.o.lease_s, not self.force)

    def on_claim(self, item: tuple[PhotoRef, Fetched], r: StepResult) -> None:
        ref, fetched = item
        if not r.ok:
            self.front -= 1
            return self.fail(ref, Step.claim, r.value)
        claim: records.Claim = r.value
        if claim.ok and fetched.sha256 in self.followers:  # the same bytes are already on their way (another SKU)
            self.front -= 1
            self.followers[fetched.sha256].append(ref)
            return
        if claim.ok:
            self.followers[fetched.sha256] = []
            self.submit(Step.intake, ref, fetched, self.o.intake, ref.uri)
            return
        self.front -= 1
        self.outcomes[ref.uri].other_run(claim.holder_run, claim.asset)
        self.leave(ref)

    def on_check_bytes(self, item: tuple[PhotoRef, Fetched], r: StepResult) -> None:
        ref, fetched = item
        if r.ok and r.value:
            self.front -= 1
            self.outcomes[ref.uri].skipped(self.known[ref.uri])
            self.leave(ref)
        elif not r.ok:
            self.front -= 1
            self.fail(ref, Step.check_bytes, r.value)
        else:
            self.claim(ref, fetched)

    def together(self, ref: PhotoRef, sha256: str) -> list[PhotoRef]:
        """``ref`` and the photos that wait on its computation (same bytes, other URIs), which ends here."""
        return [ref, *self.followers.pop(sha256, [])]

    def on_intake(self, ref: PhotoRef, r: StepResult) -> None:
        self.front -= 1
        if not r.ok:
            for each in self.together(ref, self.facts[ref.uri].sha256):  # the same bytes, the same refusal
                self.fail(each, Step.intake, r.value)
            return
        self.timing(ref, Stage.intake, r)
        if not self.ready:
            self.ready_at = time.monotonic()
        self.ready.append((ref, r.value))

    def on_reconstruct(self, batch: list[tuple[PhotoRef, Prepared]], r: StepResult) -> None:
        if not r.ok:  # the whole micro-batch failed (device, memory): no photo's fault, try them again next run
            for ref, prepared in batch:
                for each in self.together(ref, prepared.sha256):
                    self.fail(each, Step.reconstruct, r.value, settle=False)
            return
        share = StepResult(True, None, round(r.seconds / len(batch), 4), r.cached)
        for (ref, prepared), recon in zip(batch, r.value, strict=True):
            for each in self.together(ref, prepared.sha256):  # one computation, an asset per photo
                if isinstance(recon, BaseException):
                    self.fail(each, Step.reconstruct, recon)
                    continue
                self.timing(each, Stage.reconstruct, share if each is ref else StepResult(True, None, 0.0, True))
                identity = AssetIdentity(provenance_key(self.ctx, prepared), each.sku, each.uri, self.size_of(each))
                self.submit(Step.build, each, prepared, recon, self.o.build, self.o.machine, identity)

    def on_build(self, ref: PhotoRef, r: StepResult) -> None:
        if not r.ok:
            return self.fail(ref, Step.build, r.value)
        built: BuiltAsset = r.value
        self.timing(ref, Stage.build, r)
        self.submit(Step.publish, (ref, built), built, self.o.publish)

    def on_publish(self, item: tuple[PhotoRef, BuiltAsset], r: StepResult) -> None:
        ref, built = item
        if not r.ok:
            return self.fail(ref, Step.publish, r.value)
        self.timing(ref, Stage.publish, r)
        staged: Staged = r.value
        self.submit(Step.record, (ref, built, staged), self.ctx, ref, self.facts[ref.uri], built, staged)

    def on_record(self, item: tuple[PhotoRef, BuiltAsset, Staged], r: StepResult) -> None:
        ref, built, staged = item
        if not r.ok:
            return self.fail(ref, Step.record, r.value)
        self.timing(ref, Stage.record, r)
        asset: AssetRecord = r.value
        if wants_release(asset):
            self.submit(Step.release, (ref, built, staged), self.ctx, asset.id, staged)
            return
        self.outcomes[ref.uri].converted(asset, built, staged.glb_uri)
        self.leave(ref)

    def on_release(self, item: tuple[PhotoRef, BuiltAsset, Staged], r: StepResult) -> None:
        ref, built, staged = item
        if not r.ok:  # recorded and staged, not visible: the next run (or `asset3d gc`) releases it
            return self.fail(ref, Step.release, r.value)
        o = self.outcomes[ref.uri]
        o.timings_s[Stage.publish.value] = o.timings_s.get(Stage.publish.value, 0.0) + r.seconds
        o.converted(r.value, built, staged.glb_uri)
        self.leave(ref)

    def heal(self, uri: str, done: ConvertedPhoto) -> None:
        """Release an asset an earlier run recorded as approved but could not publish (no manifest)."""
        self.submit(Step.heal, (uri, done), self.ctx, done.asset_id, None)

    def on_heal(self, item: tuple[str, ConvertedPhoto], r: StepResult) -> None:
        uri, done = item
        o = self.outcomes[uri]
        if r.ok:
            o.status, o.message = PhotoStatus.published, f"published now: asset {done.asset_id} was recorded without its manifest"
        else:
            o.fail(Stage.publish, *describe(r.value))
            self.d.report.warning(f"{uri}: asset {done.asset_id} is still unpublished: {describe(r.value)[1]}")
        self.finished(o)

    def on_record_failure(self, item: tuple[PhotoRef, tuple[Any, ...]], r: StepResult) -> None:
        ref, args = item
        if not r.ok:
            self.pending.append((ref, args))
            self.d.report.warning(f"could not record the failure of {ref.uri} in the catalogue yet: {describe(r.value)[1]}")
        self.leave(ref)

    def retry_pending_failures(self) -> None:
        """Failure rows the catalogue refused during the batch (an outage), written once it answers again; a
        photo whose row still cannot be written is tried again by the next run (it has no asset)."""
        pending, self.pending = self.pending, []
        for ref, args in pending:
            r = self.d.patiently(Step.record_failure, *args)
            if not r.ok:
                self.d.report.warning(f"the failure of {ref.uri} is not recorded ({describe(r.value)[1]}); the next run tries it again")

    def on_record_refusal(self, refusal: photos.Refusal, r: StepResult) -> None:
        if not r.ok:
            self.d.report.warning(f"could not record the refusal of {refusal.uri} in the catalogue: {describe(r.value)[1]}")
        self.finished(self.outcomes[refusal.uri])

