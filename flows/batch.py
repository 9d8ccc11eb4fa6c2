"""What both flows share: the conversion driver run through Prefect tasks. Scheduling only.

`convert_photos` runs inside a flow run. The stage order, micro-batching, failure policy, conversion key
and manifest decision are the driver's (`asset3d.pipeline.driver`); this module gives it

* `PrefectRunner`: each driver step becomes a submission of its task (`tasks.stages.TASKS`) with this run's
  retry and cache settings, so steps run on Prefect's task runner, with the ``gpu`` tag on reconstruction;
* `FlowReporter`: log lines through the run logger, and a progress artifact that moves as photos finish;
* `fan_out`: sub-batches as runs of the ``convert-batch`` deployment (`prefect.deployments.run_deployment`)
  on whichever workers serve its pool; each photo goes to exactly one sub-batch;

and, at the end, a table artifact (one row per photo) and a markdown summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event
from prefect.futures import PrefectFuture
from prefect.logging import get_logger
from prefect.runtime import flow_run
from prefect.states import State

from asset3d.pipeline.driver import Driver, Step, StepResult
from asset3d.pipeline.errors import describe
from asset3d.pipeline.photos import PhotoRef
from asset3d.pipeline.records import RunContext
from asset3d.pipeline.settings import Settings
from asset3d.pipeline.summary import PhotoOutcome
from flows.triggers import FAILED_EVENT, batch_resource, source_label, source_prefix
from tasks.policy import configured
from tasks.stages import TASKS, Timed

Source = str | Sequence[str | Mapping[str, str]]
#: The progress artifact moves at most this often (each update is a round trip to the server).
PROGRESS_EVERY_S = 1.0
#: A fanned-out batch asks about its sub-batches this often (one query for all of them).
FAN_OUT_POLL_S = 2.0


def _result(state: State[Any]) -> StepResult:
    if state.is_completed():
        value = state.result()
        if isinstance(value, Timed):
            return StepResult(True, value.value, value.seconds, state.name == "Cached")
        return StepResult(True, value)
    return StepResult(False, state.result(raise_on_failure=False))


class PrefectRunner:
    """The driver's steps as task submissions, with this run's retry and cache settings."""

    def __init__(self, settings: Settings) -> None:
        self.tasks = {step: configured(task, settings) for step, task in TASKS.items()}

    def call(self, step: Step, *args: Any) -> StepResult:
        return _result(self.tasks[step](*args, return_state=True))

    def submit(self, step: Step, args: tuple[Any, ...], done: Callable[[StepResult], None]) -> None:
        def finished(future: PrefectFuture[Any]) -> None:
            future.wait()  # the future is done: this only takes its final state, without asking the API
            done(_result(future.state))

        self.tasks[step].submit(*args).add_done_callback(finished)


def _artifact_key(kind: str, what: str) -> str:
    """``convert-batch-<flow run id>-summary``: each run's artifacts under keys of their own."""
    run = f"-{flow_run.id}" if flow_run.id else ""
    return f"{kind}{run}-{what}".lower().replace("_", "-")


class FlowReporter:
    """The run logger, and a progress artifact updated at most once a second."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.log = get_run_logger()
        self.progress: UUID | None = None
        self._last = 0.0

    def info(self, message: str) -> None:
        self.log.info("%s", message)

    def warning(self, message: str) -> None:
        self.log.warning("%s", message)

    def photo_done(self, outcome: PhotoOutcome, finished: int, total: int) -> None:
        if self.progress is None:
            self.progress = create_progress_artifact(
                progress=0.0, key=_artifact_key(self.kind, "progress"),
                description=f"{self.kind}: photos finished (converted, failed or skipped) out of {total}",
            )  # fmt: skip
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S or finished == total:  # one API call per second at most
            update_progress_artifact(self.progress, 100.0 * finished / total if total else 100.0)
            self.log.info("%d/%d photos finished (last: %s %s)", finished, total, outcome.name, outcome.status.value)
            self._last = now


def _item(ref: PhotoRef) -> dict[str, Any]:
    """A photo of a sub-batch: its URI, the SKU and real-world size already decided here."""
    item: dict[str, Any] = {"uri": ref.uri, "sku": ref.sku}
    if ref.product_size is not None:
        item["size"] = ref.product_size.as_dict()
    return item


def fan_out(settings: Settings) -> Callable[[list[PhotoRef], RunContext], None]:
    """Run photos as sub-batches of the ``convert-batch`` deployment and wait until every one ended.

    Each sub-batch gets only what it is (its photos with their SKU and size, the destination, the preset):
    its worker brings its own machine settings and the server its conversion parameters, so a sub-batch
    makes what an event-started run would. Prefect creates flow runs one call at a time (an idempotency key
    per sub-batch makes a retried parent reuse them); the wait is one filtered query per poll.
    """

    def run(todo: list[PhotoRef], ctx: RunContext) -> None:
        from prefect import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.deployments import run_deployment

        from storage.catalogue.settings import parse_url

        log = get_run_logger()
        size = settings.fan_out
        url = settings.catalogue_url
        shared = {"dest": settings.dest, "preset": settings.preset, "fan_out": 0}
        if url and not parse_url(url).password:
            shared["catalogue_url"] = url  # never a password: parameters are stored
        children: list[UUID] = []
        for i in range(0, len(todo), size):
            run = run_deployment(
                settings.deployment, parameters={"source": [_item(r) for r in todo[i : i + size]], **shared}, timeout=0,
                as_subflow=True, idempotency_key=f"{ctx.flow_run_id}-{i // size}" if ctx.flow_run_id else None,
            )  # fmt: skip
            children.append(run.id)
        log.info("fanned %d photos out into %d sub-batches of %s", len(todo), len(children), settings.deployment)
        pending = set(children)
        with get_client(sync_client=True) as client:
            while pending:
                for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=sorted(pending)))):
                    if run.state is not None and run.state.is_final():
                        pending.discard(run.id)
                        log.info("sub-batch %s finished: %s", run.id, run.state.name)
                if pending:
                    time.sleep(FAN_OUT_POLL_S)

    return run


def flow_settings(**batch: Any) -> Settings:
    """The settings of a flow run: what the batch is (its parameters), this worker's own settings (its
    environment and config file: device, dtype, batch size, model source, catalogue, credentials), and the
    server's conversion parameters (the Prefect Variable ``conversion_variable``, when it exists), which win
    so that every run makes the same asset version whoever starts it.

    Raises
    ------
    SettingsError
        A catalogue URL with a password as a parameter (parameters are stored in Prefect's database: put the
        URL in the worker's environment, ASSET3D_CATALOGUE_URL, or a Secret block, ASSET3D_CATALOGUE_SECRET),
        or a bad setting.
    """
    from prefect.variables import Variable

    from asset3d.pipeline.settings import SettingsError, load_settings
    from storage.catalogue.settings import parse_url

    url = batch.get("catalogue_url")
    if url and parse_url(url).password:
        raise SettingsError(
            "catalogue_url parameter carries a password: flow parameters are stored in Prefect's database; "
            "give workers ASSET3D_CATALOGUE_URL or a Prefect Secret block named by ASSET3D_CATALOGUE_SECRET"
        )
    settings = load_settings(**{k: v for k, v in batch.items() if v is not None})
    conversion = Variable.get(settings.conversion_variable, default=None)
    if conversion is not None:
        if not isinstance(conversion, Mapping):
            raise SettingsError(f"Prefect Variable {settings.conversion_variable!r}: expected a JSON object of conversion parameters")
        explicit = {k: v for k, v in batch.items() if v is not None and k in conversion}  # a run's own preset still wins
        settings = settings.with_conversion(conversion).overlay(**explicit)
    if settings.catalogue_secret and not url:
        from prefect.blocks.system import Secret

        settings = settings.overlay(catalogue_url=str(Secret.load(settings.catalogue_secret).get()))
    return settings


def close_run_on_end(flow: Any, flow_run: Any, state: State[Any]) -> None:
    """State hook (crashed, cancelled): close the flow run's catalogue row, with the worker's settings."""
    from flows.runs import close_run_row

    try:
        url = (flow_run.parameters or {}).get("catalogue_url")
        settings = flow_settings(catalogue_url=url)
        if close_run_row(settings.resolved_catalogue_url(), flow_run, state):
            get_logger(__name__).info("closed the catalogue run of flow run %s (%s)", flow_run.id, state.name)
    except Exception as err:  # a hook must not fail the state change; `asset3d runs reconcile` closes it later
        get_logger(__name__).warning("could not close the catalogue run of flow run %s: %s", flow_run.id, describe(err)[1])


#: The flows' state hooks: a crashed or cancelled run leaves no catalogue row ``running``.
STATE_HOOKS: dict[str, Any] = {"on_crashed": [close_run_on_end], "on_cancellation": [close_run_on_end]}


def convert_photos(source: Source, settings: Settings, *, kind: str) -> dict[str, Any]:
    """Convert the photos of ``source`` with the driver; returns the batch report (`BatchSummary.as_dict`).

    Rows of earlier runs that Prefect has ended but whose process could not close them (a lost machine)
    are closed first (`flows.runs.reconcile`)."""
    from asset3d.pipeline.records import open_catalogue
    from flows.runs import reconcile

    reporter = FlowReporter(kind)
    try:
        for closed in reconcile(open_catalogue(settings.resolved_catalogue_url(), auto_migrate=settings.auto_migrate)):
            reporter.info(f"closed catalogue run {closed.run_id} ({closed.status.value}): {closed.because}")
    except Exception as err:  # the batch goes on; the next run or `asset3d runs reconcile` tries again
        reporter.warning(f"could not reconcile earlier runs: {describe(err)[1]}")
    driver = Driver(settings, PrefectRunner(settings), kind=kind, reporter=reporter, flow_run_id=str(flow_run.id) if flow_run.id else None)
    summary = driver.run(source, fan_out=fan_out(settings))
    label = source_label(source)
    create_table_artifact(summary.table(), key=_artifact_key(kind, "photos"), description=f"{kind} {label}: one row per photo")
    title, _, rest = summary.markdown().partition("\n")
    create_markdown_artifact(f"{title}\n\nSource: `{label}`\n{rest}", key=_artifact_key(kind, "summary"), description=f"{kind} {label}: summary")
    if summary.failed:  # the run's state stays Completed (run-batch's exit codes); this is what alerts match
        emit_event(
            event=FAILED_EVENT, resource=batch_resource(source_prefix(source)),
            payload={"source": label, "kind": kind, "failed": len(summary.failed), "photos": len(summary.outcomes), "counts": summary.counts()},
        )  # fmt: skip
        get_run_logger().warning("%s %s: %d of %d photos failed", FAILED_EVENT, label, len(summary.failed), len(summary.outcomes))
    return summary.as_dict()
