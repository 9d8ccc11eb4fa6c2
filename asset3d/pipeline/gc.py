"""Cleaning up after runs that died: `asset3d gc`.

A run killed outright (SIGKILL, a lost machine) leaves two things behind, and this module finds and removes
both, as pure functions of the catalogue and the destination stores:

1. **Run rows still ``running``** whose process is gone (`dead_runs`, `close_dead_runs`). A row records the
   host and pid of its process; a row of *this* host whose pid is no longer alive (or was taken since by a
   process started after the run) is closed as ``failed``, and its leases go with it, so the next run
   converts its photos instead of reporting them as held by another run. Rows of other hosts are left to
   ``asset3d runs reconcile`` (Prefect knows whether their flow run ended) or to ``gc`` on their host.
2. **Orphaned asset folders** (`find_orphans`, `remove_orphans`): ``{dest}/{sku}/{conversion_key}/`` folders
   with files but no ``manifest.json`` and no catalogue asset (neither one whose GLB lies in the folder nor
   one with that conversion key): the files a run staged before it died, before its catalogue row was
   written. Nothing a consumer can see (no manifest) and nothing a reviewer can reach (no row).

Safe while batches run: a folder is removed only when all of these hold --

* it is an asset folder: its second segment is a conversion key (64 hex digits); nothing else in the bucket
  is ever touched;
* it has no manifest and no catalogue asset, checked once more just before its objects are deleted;
* its newest object is older than the grace period (default 24 h);
* its newest object is older than the start of every run still ``running`` (live ones, and those of other
  hosts, which gc cannot judge): a live run's staged files are never removed, whatever the grace period.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from asset3d.pipeline.publishing import MANIFEST, open_folder
from storage import ObjectInfo, open_store

if TYPE_CHECKING:  # the catalogue (SQLAlchemy) loads when gc runs, not when `asset3d --help` lists it
    from storage.catalogue import Catalogue
    from storage.catalogue.records import RunRecord

#: Default grace period: folders younger than this are never removed.
GRACE_HOURS = 24.0
_CONVERSION_KEY = re.compile(r"^[0-9a-f]{64}$")


# -- processes ---------------------------------------------------------------------------------------------


def _proc_start(pid: int) -> datetime | None:
    """When process ``pid`` started (Linux ``/proc``), or None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0], starttime fields[19]
    ticks = os.sysconf("SC_CLK_TCK")
    age_s = uptime_s - int(fields[19]) / ticks
    return datetime.now(UTC) - timedelta(seconds=age_s)


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int, *, started_before: datetime | None = None) -> bool:
    """True when a process ``pid`` runs on this host (a zombie is not alive).

    With ``started_before`` (a run's start), a process that started later than that (plus a minute of clock
    slack) is another process that took the pid over: the run's own process is gone.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if _proc_state(pid) in ("Z", "X"):
        return False
    if started_before is not None:
        began = _proc_start(pid)
        if began is not None and began > started_before + timedelta(minutes=1):
            return False
    return True


def process_gone(host: str | None, pid: int | None, *, started_before: datetime | None = None) -> bool:
    """True when ``host`` is this machine and process ``pid`` is no longer alive there.

    False for another host, or a row without host or pid: gc cannot tell, and leaves it alone.
    """
    if not host or pid is None or host != socket.gethostname():
        return False
    return not pid_alive(pid, started_before=started_before)


# -- runs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunVerdict:
    """A run still ``running``: whether gc closes it, and why (or why not)."""

    run: RunRecord
    dead: bool
    because: str


def judge_runs(cat: Catalogue) -> list[RunVerdict]:
    """Every run still ``running``, each judged dead (process gone on this host) or left alone."""
    here = socket.gethostname()
    out = []
    for run in cat.runs_in_progress():
        if not run.host or run.pid is None:
            out.append(RunVerdict(run, False, "no host or pid recorded: left to `asset3d runs reconcile`"))
        elif run.host != here:
            out.append(RunVerdict(run, False, f"runs on host {run.host}: left to `asset3d runs reconcile` or gc there"))
        elif process_gone(run.host, run.pid, started_before=run.started_at):
            out.append(RunVerdict(run, True, f"process {run.pid} on {run.host} is gone"))
        else:
            out.append(RunVerdict(run, False, f"process {run.pid} on {run.host} is alive"))
    return out


def close_dead_runs(cat: Catalogue, verdicts: Iterable[RunVerdict], *, dry_run: bool = False) -> list[RunVerdict]:
    """Close (``failed``) the runs judged dead; returns those closed (with ``dry_run``: those it would close)."""
    from storage.catalogue import RunStatus

    closed = []
    for v in verdicts:
        if v.dead and (dry_run or cat.close_run(v.run.id, RunStatus.failed)):
            closed.append(v)
    return closed


# -- orphaned folders --------------------------------------------------------------------------------------


@dataclass
class Folder:
    """One asset folder of a destination: its URI, key prefix in the store, and objects."""

    uri: str
    prefix: str
    conversion_key: str
    objects: list[ObjectInfo] = field(default_factory=list)

    @property
    def newest(self) -> datetime:
        return max(o.last_modified for o in self.objects)

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def has_manifest(self) -> bool:
        return any(o.key == f"{self.prefix}/{MANIFEST}" for o in self.objects)


@dataclass(frozen=True)
class FolderVerdict:
    """An asset folder of a destination, and whether it is an orphan to remove (or why it stays)."""

    folder: Folder
    orphan: bool
    because: str


def asset_folders(dest: str) -> list[Folder]:
    """The asset folders (``{sku}/{conversion_key}/``) of a destination and their objects; other objects
    of the store are not asset folders and are never listed here."""
    store = open_store(dest)
    folders: dict[str, Folder] = {}
    for info in store.list(""):
        parts = info.key.split("/")
        if len(parts) < 3 or not _CONVERSION_KEY.match(parts[1]):
            continue
        prefix = f"{parts[0]}/{parts[1]}"
        if prefix not in folders:
            folders[prefix] = Folder(store.uri_for(prefix), prefix, parts[1])
        folders[prefix].objects.append(info)
    return list(folders.values())


def judge_folders(
    cat: Catalogue, dest: str, *, grace: timedelta, live_since: datetime | None, now: datetime | None = None
) -> list[FolderVerdict]:
    """Every asset folder of ``dest``, each judged an orphan or kept (manifest, catalogued, too young).

    ``live_since`` is the start of the oldest run still ``running`` that gc does not close: folders written
    since then may be that run's and are kept.
    """
    now = now or datetime.now(UTC)
    store_uri = open_store(dest).uri
    folders = asset_folders(dest)
    named = cat.asset_folders(store_uri.rstrip("/") + "/")
    known_keys = cat.known_conversion_keys(f.conversion_key for f in folders)
    out = []
    for f in folders:
        if f.has_manifest:
            out.append(FolderVerdict(f, False, "has a manifest"))
        elif f.uri in named or f.conversion_key in known_keys:
            out.append(FolderVerdict(f, False, "a catalogue asset names it"))
        elif f.newest > now - grace:
            out.append(FolderVerdict(f, False, f"younger than the grace period ({_age(now - f.newest)} old)"))
        elif live_since is not None and f.newest >= live_since:
            out.append(FolderVerdict(f, False, "written since a run still running started"))
        else:
            out.append(FolderVerdict(f, True, f"no manifest, no catalogue asset, {_age(now - f.newest)} old"))
    return out


def remove_orphan(cat: Catalogue, verdict: FolderVerdict) -> int:
    """Delete the objects of an orphaned folder, after checking once more that it has no manifest and no
    catalogue asset; returns the number of objects deleted (0 when it is no longer an orphan)."""
    f = verdict.folder
    store = open_folder(f.uri)
    if store.exists(MANIFEST) or cat.known_conversion_keys([f.conversion_key]) or cat.asset_folders(f.uri + "/"):
        return 0
    deleted = 0
    for info in sorted(f.objects, key=lambda o: o.key):
        store.delete(info.key.removeprefix(f.prefix + "/"))
        deleted += 1
    return deleted


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"


# -- the whole sweep ---------------------------------------------------------------------------------------


@dataclass
class GcReport:
    """What `collect` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    runs: list[RunVerdict]
    closed: list[RunVerdict]
    folders: list[FolderVerdict]
    removed: list[FolderVerdict]
    objects_removed: int = 0
    bytes_removed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "runs_closed": [{"run_id": v.run.id, "host": v.run.host, "pid": v.run.pid, "because": v.because} for v in self.closed],
            "runs_left": [{"run_id": v.run.id, "host": v.run.host, "pid": v.run.pid, "because": v.because} for v in self.runs if not v.dead],
            "folders_removed": [{"uri": v.folder.uri, "objects": len(v.folder.objects), "bytes": v.folder.bytes, "because": v.because} for v in self.removed],
            "folders_kept": [{"uri": v.folder.uri, "because": v.because} for v in self.folders if not v.orphan],
            "objects_removed": self.objects_removed,
            "bytes_removed": self.bytes_removed,
            "seconds": round(self.seconds, 3),
        }


def collect(cat: Catalogue, dests: Sequence[str], *, grace_hours: float = GRACE_HOURS, dry_run: bool = False) -> GcReport:
    """Close dead runs, then remove orphaned asset folders of ``dests`` (with ``dry_run``: change nothing)."""
    t0 = time.perf_counter()
    runs = judge_runs(cat)
    closed = close_dead_runs(cat, runs, dry_run=dry_run)
    live = [v.run.started_at for v in runs if not v.dead]
    live_since = min(live) if live else None
    grace = timedelta(hours=grace_hours)
    folders: list[FolderVerdict] = []
    removed: list[FolderVerdict] = []
    objects = size = 0
    for dest in dests:
        verdicts = judge_folders(cat, dest, grace=grace, live_since=live_since)
        folders.extend(verdicts)
        for v in verdicts:
            if not v.orphan:
                continue
            n = len(v.folder.objects) if dry_run else remove_orphan(cat, v)
            if n:
                removed.append(v)
                objects += n
                size += v.folder.bytes
    return GcReport(dry_run, runs, closed, folders, removed, objects, size, time.perf_counter() - t0)
