"""Batch triggers: the ``asset3d.batch.arrived`` event, and a poller that emits it for new photos.

The ``convert-batch`` deployment (prefect.yaml) has an event trigger on ``asset3d.batch.arrived``; the
event's ``payload.prefix`` becomes the flow's ``source``. Prefect's open-source server has no webhooks,
so whatever learns of a new batch -- an S3 notification handler, a cron hook, `watch` -- calls `emit_batch`
(``asset3d emit-batch PREFIX``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asset3d.pipeline.photos import is_photo_key
from storage import open_store

EVENT = "asset3d.batch.arrived"


class NoServer(RuntimeError):
    """No Prefect server to send the event to (``PREFECT_API_URL`` is not set)."""


def batch_resource(prefix: str) -> dict[str, str]:
    """The event's resource: ``asset3d.batch.<hash of the prefix>``, named by the prefix."""
    digest = hashlib.sha256(prefix.encode()).hexdigest()[:16]
    return {"prefect.resource.id": f"asset3d.batch.{digest}", "prefect.resource.name": prefix}


def emit_batch(prefix: str, *, photos: int | None = None) -> str:
    """Send ``asset3d.batch.arrived`` for ``prefix`` to the Prefect server and wait until it is sent.

    Returns the event id.

    Raises
    ------
    NoServer
        ``PREFECT_API_URL`` is not set (the event would go nowhere).
    """
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise NoServer("PREFECT_API_URL is not set: there is no Prefect server to send the event to")
    payload: dict[str, Any] = {"prefix": prefix}
    if photos is not None:
        payload["photos"] = photos
    event = Event(event=EVENT, resource=batch_resource(prefix), payload=payload)

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    asyncio.run(send())
    return str(event.id)


def batch_prefix(store_uri: str, key: str, depth: int) -> str:
    """The batch a photo belongs to: its first ``depth`` folders under the source (at most its parent)."""
    folders = key.split("/")[:-1][:depth]
    return store_uri.rstrip("/") + "/" + "".join(f"{f}/" for f in folders)


def poll(source: str, seen: dict[str, str], *, depth: int = 1) -> tuple[dict[str, str], dict[str, int]]:
    """List ``source`` once; returns the new ``{key: etag}`` state and ``{prefix: new or changed photos}``."""
    store = open_store(source)
    state: dict[str, str] = {}
    changed: dict[str, int] = {}
    for info in store.list(""):
        if not is_photo_key(info.key):
            continue
        state[info.key] = info.etag
        if seen.get(info.key) != info.etag:
            prefix = batch_prefix(store.uri, info.key, depth)
            changed[prefix] = changed.get(prefix, 0) + 1
    return state, changed


def default_state_file(source: str) -> Path:
    return Path(".asset3d") / f"watch-{hashlib.sha256(source.encode()).hexdigest()[:12]}.json"


def watch(
    source: str,
    *,
    interval: float,
    depth: int = 1,
    state_file: Path | None = None,
    once: bool = False,
    baseline: bool = False,
    emit: Callable[[str, int], Any] | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Poll ``source`` every ``interval`` seconds and emit the event for each prefix with new photos.

    The last listing is kept in ``state_file`` (default ``.asset3d/watch-<hash>.json``), so a restart does
    not emit again. ``baseline`` records the current listing without emitting. Returns the number of
    events sent (after one poll with ``once``; otherwise it runs until interrupted).
    """
    path = state_file or default_state_file(source)
    seen: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    send = emit or (lambda prefix, n: emit_batch(prefix, photos=n))
    sent = 0
    first = True
    while True:
        state, changed = poll(source, seen, depth=depth)
        if baseline and first:
            log(f"baseline: {len(state)} photos under {source}, no events")
        else:
            for prefix, n in sorted(changed.items()):
                send(prefix, n)
                sent += 1
                log(f"{EVENT} {prefix} ({n} new or changed photos)")
        seen = state
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(seen, sort_keys=True))
        first = False
        if once:
            return sent
        time.sleep(interval)
