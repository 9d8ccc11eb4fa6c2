"""A worker process's memory between photos: freed pages handed back, reference cycles collected in time.

Two things made a long batch grow (docs/reliability.md, the soak):

* glibc keeps the pages a decode frees in the malloc arena of the thread that freed them; with a thread per
  step each arena keeps its own. `release_freed_memory` (``malloc_trim``) hands them back after each photo.
* Meshes are reference cycles (a trimesh mesh, its cache and its visuals point at one another), so a
  photo's mesh, its normals and its previews are freed only by Python's cycle collector, not when the photo
  is done. With the hundreds of thousands of objects torch, transformers and Prefect keep alive, CPython runs
  a full collection only after tens of thousands of new long-lived objects: between two, hundreds of
  photos' meshes pile up, and the freed space is scattered over the arenas (the 500-photo soak: +24 % of
  resident memory; collected every `COLLECT_EVERY` photos: flat).

`CycleCollection` collects every `COLLECT_EVERY` finished photos during a batch. The objects alive when the
batch starts (modules, the model, the Prefect client) are set aside first (``gc.freeze``) so each collection
only walks what the batch made (about 0.1 s instead of 0.5 s); they go back to the collector when the last
batch of the process ends.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import threading
from types import TracebackType
from typing import Any

#: Finished photos between two collections (one micro-batch of the default size).
COLLECT_EVERY = 8


def release_freed_memory() -> None:
    """Hand the pages glibc's allocator keeps after a decode or a collection back to the system (``malloc_trim``).

    A decode frees up to hundreds of MB in the thread's own malloc arena, which glibc keeps for later: with
    a thread per step, each arena keeps its own, and the process grows by one big photo per thread
    (measured: 3.45 GB peak for a batch with two 49-megapixel photos, 2.4 GB with the arenas trimmed).
    Elsewhere than glibc this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, loaded once; None elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class CycleCollection:
    """A batch's cycle collections: ``with CycleCollection():`` around the batch, `photo_done` after each
    photo. Batches of one process may overlap: the first to start freezes, the last to end unfreezes."""

    _lock = threading.Lock()
    _active = 0

    def __init__(self, every: int = COLLECT_EVERY) -> None:
        if every < 1:
            raise ValueError(f"collect every {every} photos: at least 1")
        self.every = every
        self.done = 0
        self.collections = 0

    def __enter__(self) -> CycleCollection:
        with CycleCollection._lock:
            if CycleCollection._active == 0:
                gc.collect()  # what is garbage now is not set aside with the living
                gc.freeze()
            CycleCollection._active += 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with CycleCollection._lock:
            CycleCollection._active -= 1
            if CycleCollection._active == 0:
                gc.unfreeze()

    def photo_done(self) -> None:
        """Count a finished photo; every `every` photos, collect the cycles and hand the pages back."""
        self.done += 1
        if self.done % self.every == 0:
            gc.collect()
            self.collections += 1
            release_freed_memory()
