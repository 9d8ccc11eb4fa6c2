"""Retry and cache rules shared by every task.

* Retries: only for transient errors (`asset3d.pipeline.errors.is_transient`: S3 5xx and throttling,
  connection resets, timeouts, a lost database), with exponential back-off and jitter. A 403, a missing
  object, a corrupt photo or a validation failure fails at once.
* Caches: keyed on content, never on the run: the photo's ETag or SHA-256, the parameters that shape the
  result, and the weights' SHA-256. `content_key` hashes those parts into the key Prefect stores the
  result under, so a re-run (or another flow run on the same worker) reuses finished work. The pipeline
  version is part of every key: new code never reuses an old result.
* Where results live: each worker's ``PREFECT_HOME/storage`` by default. With ``result_storage_block`` set
  (the name of a prefect-aws ``S3Bucket`` block), the results worth sharing -- fetch, intake, reconstruct
  (`SHARED`) -- go to that bucket folder instead, so a re-run on any worker reuses them; they are reused for
  ``cache_days`` (the cache expiration), and an S3 lifecycle rule on the folder deletes them after that.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import timedelta
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from asset3d import __version__
from asset3d.pipeline.driver import Step
from asset3d.pipeline.errors import is_transient
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
    """``task`` with the retry count, back-off, jitter and cache lifetime of ``settings``, and, for the
    `SHARED` tasks when ``result_storage_block`` is set, that block as its result storage."""
    extra: dict[str, Any] = {}
    if settings.result_storage_block and task.name in SHARED:
        extra["result_storage"] = shared_result_storage(settings.result_storage_block)
    return task.with_options(
        retries=settings.retries,
        retry_delay_seconds=exponential_backoff(settings.retry_delay_s) if settings.retry_delay_s > 0 else 0,
        retry_jitter_factor=settings.retry_jitter,
        cache_expiration=timedelta(days=settings.cache_days) if task.cache_key_fn is not None else None,
        **extra,
    )
