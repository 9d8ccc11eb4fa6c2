"""Batch triggers: the ``asset3d.batch.arrived`` event, who sends it, and what a run accepts.

The ``convert-batch`` deployment (prefect.yaml) has a reactive trigger on ``asset3d.batch.arrived``: the
event's resource names the batch prefix (``prefect.resource.name``), which becomes the run's ``source``.
Three senders, all through `emit_batch`:

* `listen` (``asset3d listen --queue SQS_URL``): S3 ``ObjectCreated`` notifications from an SQS queue,
  grouped by batch prefix, one event per batch; a message is deleted only once its batches' events are sent;
* `watch` (``asset3d watch SOURCE``): the polling fallback; what it has seen is kept on the Prefect server
  (one Variable per batch prefix), so any machine can run it and a restart emits nothing twice;
* ``asset3d emit-batch PREFIX`` (cron hooks, other notification handlers).

Duplicates are Prefect's to drop: the trigger fires once per resource (one per prefix) within its window and
schedules the run after it (`flows.deploy`); the catalogue then skips every photo already converted.

Whatever sent the event, a run converts only what lies under the worker's configured sources (`admit_batch`,
at the start of both flows): the check is the worker's, never the event's or the parameters'.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from asset3d.pipeline.photos import is_photo_key
from asset3d.pipeline.settings import Settings, load_settings
from asset3d.pipeline.sources import (
    Location,
    SourceItem,
    SourceRefused,
    batch_id,
    batch_of,
    check_source,
    item_uri,
    locate,
)
from storage import open_store

EVENT = "asset3d.batch.arrived"
#: Sent at the end of a batch with failed photos (counts in the payload): what an alerting automation matches.
FAILED_EVENT = "asset3d.batch.failed"
#: The setting a deployment run reads its catalogue from; named in the SQLite refusal.
CATALOGUE_ENV = "ASSET3D_CATALOGUE_URL"


class NoServer(RuntimeError):
    """No Prefect server to send the event to (``PREFECT_API_URL`` is not set)."""


class RunRefused(RuntimeError):
    """A flow run that must not start (a source outside the allowed ones, SQLite on a work pool)."""

    reason = "run_refused"
    transient = False


# -- the event --------------------------------------------------------------------------------------------


def batch_resource(prefix: str) -> dict[str, str]:
    """The event's resource: id ``asset3d.batch.<hash>``, name the canonical prefix (``s3://b/p/``, ``file:///p/``)."""
    try:
        name = locate(prefix).uri
    except SourceRefused:
        name = prefix  # sent as given: the trigger's match and the run's check refuse it
    return {"prefect.resource.id": f"asset3d.batch.{batch_id(prefix)}", "prefect.resource.name": name}


def allowed_locations(settings: Settings) -> list[Location]:
    """The sources a batch may come from: ``allowed_sources``, else the ``source`` setting alone."""
    return [locate(uri) for uri in (settings.allowed_sources or [settings.source])]


def emit_batch(prefix: str, *, photos: int | None = None, allowed: Sequence[Location] = ()) -> str:
    """Send ``asset3d.batch.arrived`` for ``prefix`` to the Prefect server and wait until it is sent.

    Returns the event id.

    Raises
    ------
    NoServer
        ``PREFECT_API_URL`` is not set (the event would go nowhere).
    SourceRefused
        ``allowed`` is given and ``prefix`` lies under none of it (nothing is sent).
    """
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.settings import PREFECT_API_URL

    if allowed:
        check_source(prefix, [a.uri for a in allowed])
    if not PREFECT_API_URL.value():
        raise NoServer("PREFECT_API_URL is not set: there is no Prefect server to send the event to")
    resource = batch_resource(prefix)
    payload: dict[str, Any] = {"prefix": resource["prefect.resource.name"]}
    if photos is not None:
        payload["photos"] = photos
    event = Event(event=EVENT, resource=resource, payload=payload)

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    asyncio.run(send())
    return str(event.id)


# -- what a run accepts -----------------------------------------------------------------------------------


def on_work_pool() -> bool:
    """True inside a run of a deployment (a worker runs it), False for a flow called here."""
    from prefect.runtime import deployment

    return deployment.id is not None


def admit_batch(source: str | Sequence[SourceItem], settings: Settings) -> None:
    """Refuse a run before it reads anything: a source outside the worker's allowed sources, or, on a work
    pool, a SQLite catalogue (each worker would have its own).

    The allowed sources are this worker's own settings (``ASSET3D_ALLOWED_SOURCES``, else ``ASSET3D_SOURCE``;
    environment or config file), never a parameter. A flow called here without a deployment (``asset3d
    run-batch`` without ``--deployment``) is checked only when ``allowed_sources`` is set.

    Raises
    ------
    RunRefused
        With one line naming the source or the setting; the refusal is logged on the run.
    """
    from prefect import get_run_logger

    worker = load_settings()
    pooled = on_work_pool()
    try:
        if pooled or worker.allowed_sources:
            check_source(source, [a.uri for a in allowed_locations(worker)])
        if pooled:
            url = settings.resolved_catalogue_url()
            if url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite":
                raise RunRefused(
                    f"catalogue {url.split('///')[-1] or url}: a SQLite file is one worker's own, and runs on a work pool "
                    f"share one catalogue: set {CATALOGUE_ENV} to a PostgreSQL URL on every worker"
                )
    except (SourceRefused, RunRefused) as err:
        get_run_logger().error("refused, nothing converted: %s", err)
        raise RunRefused(str(err)) from None


def batch_run_name(kind: str) -> Callable[[], str]:
    """A flow-run name that carries the batch: ``convert-batch/s3://shop/incoming/batch-7/``.

    A list of photos is named by the folder they share and their count; a run without ``source`` (the
    nightly) by the worker's ``source`` setting.
    """

    def name() -> str:
        from prefect.runtime import flow_run

        source = flow_run.parameters.get("source")
        if source is None:
            try:
                source = load_settings().source
            except ValueError:
                source = "?"
        return f"{kind}/{source_label(source)}"[:250]

    return name


def source_prefix(source: str | Sequence[SourceItem]) -> str:
    """A batch's prefix: the source as given, or the folder a list of photos shares."""
    if isinstance(source, str):
        return source
    uris = [item_uri(i) for i in source]
    return os.path.commonprefix(uris).rpartition("/")[0] + "/" if uris else ""


def source_label(source: str | Sequence[SourceItem]) -> str:
    """A batch's source in one line: the prefix as given, or a list's shared folder and photo count."""
    if isinstance(source, str):
        return source
    return f"{source_prefix(source)} ({len(source)} photos)"


# -- S3 notifications through SQS: `asset3d listen` -------------------------------------------------------


def notification_objects(body: str) -> list[tuple[str, str]]:
    """The ``(bucket, key)`` of every ``ObjectCreated`` record in an SQS message body.

    Reads S3's own notification (``{"Records": [...]}``, keys URL-encoded) and the same wrapped in an SNS
    notification. A test event (``s3:TestEvent``), other event types and bodies that are not JSON give [].
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        return notification_objects(doc["Message"])
    records = doc.get("Records") if isinstance(doc, dict) else None
    out: list[tuple[str, str]] = []
    for record in records if isinstance(records, list) else []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = (s3.get("object") or {}).get("key")
        if isinstance(bucket, str) and isinstance(key, str):
            out.append((bucket, unquote_plus(key)))
    return out


def sqs_client(queue_url: str) -> Any:
    """A boto3 SQS client for ``queue_url``: its region from an AWS queue URL, its endpoint from any other.

    ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL`` win when set (boto3's own configuration chain).
    """
    import boto3
    from botocore.config import Config

    host = urlsplit(queue_url).netloc
    aws = re.match(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com", host)
    region = aws.group(1) if aws else None
    endpoint = None
    if not aws and not (os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")):
        parts = urlsplit(queue_url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
    config = Config(retries={"mode": "adaptive", "total_max_attempts": 5}, connect_timeout=5, read_timeout=30)
    return boto3.session.Session(region_name=region).client("sqs", endpoint_url=endpoint, config=config)


@dataclass
class _Batch:
    photos: set[str] = field(default_factory=set)
    receipts: set[str] = field(default_factory=set)


def listen(
    queue_url: str,
    allowed: Sequence[Location],
    *,
    depth: int = 1,
    wait_s: int = 1,
    hold_s: float = 10.0,
    once: bool = False,
    emit: Callable[[str, int], Any] | None = None,
    log: Callable[[str], None] = print,
    client: Any = None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Consume S3 ``ObjectCreated`` notifications from ``queue_url`` and emit one event per batch prefix.

    Each photo names its batch: its allowed source plus the first ``depth`` folders under it. Messages are
    collected while the queue keeps giving them (long polls of ``wait_s`` seconds), at most ``hold_s``
    seconds; then every batch seen gets one event with its photo count, and the messages whose batches were
    all sent are deleted. A message whose event failed (the server is down) is left in the queue: SQS shows
    it again after its visibility timeout, and it is sent then. Notifications of non-photos, of other event
    types, and S3's test event are deleted; photos outside every allowed source are logged and deleted.

    Returns the number of events sent (``once``: after the queue was drained once; otherwise it runs until
    ``stop()`` or an interrupt).
    """
    sqs = client or sqs_client(queue_url)
    send = emit or (lambda prefix, n: emit_batch(prefix, photos=n))
    visibility = int(max(60, 6 * hold_s))
    sent = 0
    batches: dict[str, _Batch] = {}
    waiting: dict[str, set[str]] = {}  # receipt -> the batches its message names
    started: float | None = None
    while True:
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, VisibilityTimeout=visibility
        )  # fmt: skip
        messages = reply.get("Messages", [])
        done: list[str] = []
        for message in messages:
            receipt = message["ReceiptHandle"]
            prefixes: set[str] = set()
            for bucket, key in notification_objects(message.get("Body", "")):
                if not is_photo_key(key):
                    continue
                uri = f"s3://{bucket}/{key}"
                try:
                    prefix = batch_of(uri, allowed, depth)
                except SourceRefused:
                    prefix = None
                if prefix is None:
                    log(f"refused: {uri} is outside the allowed sources ({', '.join(a.uri for a in allowed)})")
                    continue
                batches.setdefault(prefix, _Batch()).photos.add(uri)
                batches[prefix].receipts.add(receipt)
                prefixes.add(prefix)
            if prefixes:
                waiting[receipt] = prefixes
            else:
                done.append(receipt)
        if batches and started is None:
            started = time.monotonic()
        drained = not messages
        if batches and started is not None and (drained or time.monotonic() - started >= hold_s):
            ok: set[str] = set()
            for prefix, batch in sorted(batches.items()):
                try:
                    send(prefix, len(batch.photos))
                except Exception as err:  # the server is down: the messages stay, SQS shows them again
                    log(f"{EVENT} {prefix}: not sent ({err}); its notifications stay in the queue")
                    continue
                ok.add(prefix)
                sent += 1
                log(f"{EVENT} {prefix} ({len(batch.photos)} photos notified)")
            for receipt, prefixes in list(waiting.items()):
                if prefixes <= ok:
                    done.append(receipt)
            batches.clear()
            waiting.clear()
            started = None
        _delete(sqs, queue_url, done)
        if (once and drained and not batches) or stop():
            return sent


def _delete(sqs: Any, queue_url: str, receipts: Iterable[str]) -> None:
    todo = list(receipts)
    for i in range(0, len(todo), 10):  # DeleteMessageBatch takes ten at a time
        entries = [{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(todo[i : i + 10])]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


# -- polling: `asset3d watch` -----------------------------------------------------------------------------


def batch_prefix(store_uri: str, key: str, depth: int) -> str:
    """The batch a photo belongs to: its first ``depth`` folders under the source (at most its parent)."""
    folders = key.split("/")[:-1][:depth]
    return store_uri.rstrip("/") + "/" + "".join(f"{f}/" for f in folders)


def poll(source: str, *, depth: int = 1) -> dict[str, dict[str, Any]]:
    """List ``source`` once: ``{batch prefix: {"digest", "photos"}}``, the digest over its keys and ETags."""
    store = open_store(source)
    listing: dict[str, list[str]] = {}
    for info in store.list(""):
        if is_photo_key(info.key):
            listing.setdefault(batch_prefix(store.uri, info.key, depth), []).append(f"{info.key}\t{info.etag}")
    return {
        prefix: {"digest": hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest(), "photos": len(lines)}
        for prefix, lines in listing.items()
    }


class WatchState:
    """What `watch` has seen, on the Prefect server: one Variable per batch prefix of a source.

    Variable ``asset3d-watch-<source id>-<batch id>`` holds ``{"prefix", "digest", "photos"}``; a batch whose
    listing digest differs from its Variable's (or that has none) is new or changed. Every machine reads the
    same state, and a batch prefix that disappears from the listing loses its Variable.
    """

    def __init__(self, source: str) -> None:
        self.base = f"asset3d-watch-{batch_id(source)}-"

    def name(self, prefix: str) -> str:
        return self.base + batch_id(prefix)

    def load(self) -> dict[str, dict[str, Any]]:
        """``{prefix: {"digest", "photos"}}`` as last saved."""
        from prefect import get_client

        out: dict[str, dict[str, Any]] = {}
        offset = 0
        with get_client(sync_client=True) as client:
            while True:
                body = {"variables": {"name": {"like_": self.base + "%"}}, "offset": offset, "limit": 200}
                page = client.request("POST", "/variables/filter", json=body).json()
                for var in page:
                    value = var.get("value")
                    if isinstance(value, Mapping) and isinstance(value.get("prefix"), str):
                        out[value["prefix"]] = {"digest": value.get("digest"), "photos": value.get("photos")}
                if len(page) < 200:
                    return out
                offset += 200

    def save(self, prefix: str, seen: Mapping[str, Any]) -> None:
        from prefect.variables import Variable

        Variable.set(self.name(prefix), {"prefix": prefix, **seen}, overwrite=True)

    def forget(self, prefix: str) -> None:
        from prefect.variables import Variable

        Variable.unset(self.name(prefix))


def watch(
    source: str,
    *,
    interval: float,
    depth: int = 1,
    once: bool = False,
    baseline: bool = False,
    allowed: Sequence[Location] = (),
    emit: Callable[[str, int], Any] | None = None,
    log: Callable[[str], None] = print,
    state: WatchState | None = None,
) -> int:
    """Poll ``source`` every ``interval`` seconds and emit the event for each batch prefix with new photos.

    A prefix is emitted when its listing (keys and ETags) differs from what the server's `WatchState` holds;
    the state is written after the event is sent, so an event that failed is sent at the next poll.
    ``baseline`` records the current listing without emitting. Returns the number of events sent (after one
    poll with ``once``; otherwise it runs until interrupted).
    """
    memory = state or WatchState(source)
    send = emit or (lambda prefix, n: emit_batch(prefix, photos=n, allowed=allowed))
    sent = 0
    first = True
    while True:
        seen = memory.load()
        listing = poll(source, depth=depth)
        if baseline and first:
            log(f"baseline: {sum(v['photos'] for v in listing.values())} photos in {len(listing)} batches under {source}, no events")
        for prefix, now in sorted(listing.items()):
            if seen.get(prefix, {}).get("digest") == now["digest"]:
                continue
            if not (baseline and first):
                send(prefix, now["photos"])
                sent += 1
                log(f"{EVENT} {prefix} ({now['photos']} photos)")
            memory.save(prefix, now)
        for prefix in set(seen) - set(listing):
            memory.forget(prefix)
        first = False
        if once:
            return sent
        time.sleep(interval)
