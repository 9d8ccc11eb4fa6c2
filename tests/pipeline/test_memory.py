"""A batch collects its photos' reference cycles as it goes (`asset3d.pipeline.memory`).

The soak (`test_reliability_soak.py`) measures the effect on a whole run; these check the mechanism: a
finished photo's cycles are gone after `COLLECT_EVERY` photos, without waiting for Python's own full
collection, and the objects set aside for the batch go back to the collector when the last batch ends.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest

from asset3d.pipeline.memory import COLLECT_EVERY, CycleCollection


class _Mesh:
    """A stand-in for a trimesh mesh: big arrays behind a cycle (the mesh and its cache point at each other)."""

    def __init__(self) -> None:
        self.vertices = np.ones((100_000, 3))
        self.cache = {"owner": self}


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    """Python's own collector off, so only `CycleCollection` can free a cycle."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _finished_photo() -> weakref.ref[_Mesh]:
    mesh = _Mesh()
    return weakref.ref(mesh)  # the last plain reference goes here: only the cycle keeps the mesh


def test_a_finished_photos_cycles_are_collected_within_a_few_photos(no_automatic_collection: None) -> None:
    with CycleCollection() as memory:
        meshes = []
        for _ in range(COLLECT_EVERY - 1):
            meshes.append(_finished_photo())
            memory.photo_done()
        assert all(m() is not None for m in meshes)  # not collected yet: the cycles hold them
        assert memory.collections == 0
        memory.photo_done()
        assert memory.collections == 1
        assert all(m() is None for m in meshes)


def test_what_lives_when_a_batch_starts_is_set_aside_until_the_last_batch_ends() -> None:
    assert gc.get_freeze_count() == 0
    # (the count only shrinks meanwhile, as set-aside objects die: it is compared with 0, not with itself)
    with CycleCollection():
        assert gc.get_freeze_count() > 0  # the modules, the model, the Prefect client: not walked at every collection
        with CycleCollection():  # an overlapping batch of the same process
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # the first batch still runs: the second did not unfreeze
    assert gc.get_freeze_count() == 0


def test_garbage_present_at_the_start_is_not_set_aside(no_automatic_collection: None) -> None:
    before = _finished_photo()
    with CycleCollection():
        assert before() is None  # collected before the freeze, not kept for the process's lifetime


def test_collecting_every_zero_photos_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CycleCollection(every=0)
