"""Retry and cache rules shared by every task.

* Retries: only for transient errors (`asset3d.pipeline.errors.is_transient`: S3 5xx and throttling,
  connection resets, timeouts, a lost database), with exponential back-off and jitter. A 403, a missing
  object, a corrupt photo or a validation failure fails at once. A stage with a deadline (fetch, intake,
  reconstruct, build, publish: `asset3d.pipeline.options.Deadlines`) is not retried once the retry would
  end after it (`DeadlineRetry`, the rule `InlineRunner` follows too). Prefect's ``timeout_seconds`` is
  not used: the tasks are sync functions on a thread pool, where Prefect cannot interrupt a blocking call
  (the timeout is raised into the thread once the call returns, with a warning on every task run), so
  each attempt is bounded by its own I/O timeouts (`storage.s3`) instead.
* Threads: the flows run their tasks on `step_task_runner`, a thread pool of
  `asset3d.pipeline.options.STEP_THREADS` (Prefect's default pool has no bound: a thread per task).
* Caches: keyed on content, never on the run: the photo's ETag or SHA-256, the parameters that shape the
  result, and the weights' SHA-256. `content_key` hashes those parts into the key Prefect stores the
  result under, so a re-run (or another flow run on the same worker) reuses finished work. The pipeline
  version is part of every key: new code never reuses an old result.
* Not in memory: Prefect keeps each persisted result of a flow run in an in-memory cache of 1,000 records,
  which for a batch means the downloads, pixels, meshes and GLBs of its last 1,000 steps, for as long as the
  run lasts (the 500-photo soak: +84 % of resident memory). The configured tasks turn it off
  (``cache_result_in_memory=False``): a result reaches the driver in its task's state, and a cache hit is
  read from storage.
* Where results live: each worker's ``PREFECT_HOME/storage`` by default. With ``result_storage_block`` set
  (the name of a prefect-aws ``S3Bucket`` block), the results worth sharing -- fetch, intake, reconstruct
  (`SHARED`) -- go to that bucket folder instead, so a re-run on any worker reuses them; they are reused for
  ``cache_days`` (the cache expiration), and an S3 lifecycle rule on the folder deletes them after that.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from asset3d import __version__
from asset3d.pipeline.driver import STAGE_OF, Step
from asset3d.pipeline.errors import is_transient
from asset3d.pipeline.options import STEP_THREADS, Deadlines
from asset3d.pipeline.settings import Settings

#: Defaults of the decorators; `configured` replaces them with the settings of a run.
RETRIES = 3
RETRY_DELAY_S = 2.0
RETRY_JITTER = 0.5
CACHE_FOR = timedelta(days=7)
#: The tasks whose results are worth sharing between workers (downloads, intake, reconstructions).
SHARED = frozenset({Step.fetch.value, Step.intake.value, Step.reconstruct.value})


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's ``retry_condition_fn``: retry when the task's exception is transient."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by the failed state
        return is_transient(exc)
    return False


class DeadlineRetry:
    """Prefect's ``retry_condition_fn`` for a stage with a deadline: retry a transient error only while the
    retry fits before the deadline (`Deadlines.allows_retry`), counted from the task run's first attempt.

    Prefect calls it before the task run leaves its running state: ``task_run.start_time`` is when the first
    attempt began, ``task_run.state`` the running state of the attempt that just failed.
    """

    def __init__(self, stage: str, deadlines: Deadlines) -> None:
        self.stage, self.deadlines = stage, deadlines

    def __repr__(self) -> str:
        return f"DeadlineRetry({self.stage!r}, {self.deadlines.of(self.stage)} s)"

    def __call__(self, task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
        if not retry_transient(task, task_run, state):
            return False
        now = datetime.now(UTC)
        first = task_run.start_time or now
        attempt = task_run.state.timestamp if task_run.state is not None else first
        return self.deadlines.allows_retry(
            self.stage,
            elapsed_s=(now - first).total_seconds(),
            attempt_s=(now - attempt).total_seconds(),
            delay_s=_next_delay(task, task_run.run_count),
        )


def _next_delay(task: Task[..., Any], run_count: int) -> float:
    """The longest wait Prefect may put before the next attempt (its delay, jitter included)."""
    delays = task.retry_delay_seconds
    if isinstance(delays, Sequence):
        delay = float(delays[min(max(run_count - 1, 0), len(delays) - 1)]) if delays else 0.0
    else:
        delay = float(delays or 0)
    return delay * (1.0 + float(task.retry_jitter_factor or 0.0))


def step_task_runner() -> ThreadPoolTaskRunner[Any]:
    """The flows' task runner: `STEP_THREADS` threads (the driver admits ``max_in_flight`` photos; a
    photo runs one step at a time, so more threads would only wait on the model and the renderer)."""
    return ThreadPoolTaskRunner(max_workers=STEP_THREADS)


def content_key(stage: str, *parts: Any) -> str:
    """A cache key: SHA-256 of the stage name, the pipeline version and the JSON of the content parts."""
    text = json.dumps([stage, __version__, *parts], sort_keys=True, default=str, separators=(",", ":"))
    return f"asset3d-{stage}-" + hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def shared_result_storage(block_name: str) -> Any:
    """The prefect-aws ``S3Bucket`` block named ``block_name`` (loaded once per process).

    Raises
    ------
    ValueError
        No such block on the server (the message names the setting).
    """
    from prefect_aws import S3Bucket

    try:
        return S3Bucket.load(block_name)
    except ValueError as err:
        raise ValueError(f"result_storage_block {block_name!r}: no S3Bucket block of that name on the Prefect server ({err})") from None


def configured(task: Task[Any, Any], settings: Settings) -> Task[Any, Any]:
    """``task`` with the retry count, back-off, jitter and cache lifetime of ``settings``, the deadline of
    its stage (`DeadlineRetry`), and, for the `SHARED` tasks when ``result_storage_block`` is set, that
    block as its result storage."""
    extra: dict[str, Any] = {}
    if settings.result_storage_block and task.name in SHARED:
        extra["result_storage"] = shared_result_storage(settings.result_storage_block)
    try:
        stage = STAGE_OF.get(Step(task.name))
    except ValueError:  # not a step of the driver
        stage = None
    deadlines = settings.stage_options().deadlines
    if stage is not None and deadlines.of(stage) is not None:
        extra["retry_condition_fn"] = DeadlineRetry(stage, deadlines)
    return task.with_options(
        retries=settings.retries,
        retry_delay_seconds=exponential_backoff(settings.retry_delay_s) if settings.retry_delay_s > 0 else 0,
        retry_jitter_factor=settings.retry_jitter,
        cache_expiration=timedelta(days=settings.cache_days) if task.cache_key_fn is not None else None,
        cache_result_in_memory=False,
        **extra,
    )
