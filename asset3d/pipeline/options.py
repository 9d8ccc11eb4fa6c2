"""What each stage needs from the settings: one small frozen dataclass per stage, derived from `Settings`.

Stages receive their options, never the whole `Settings`; cache keys and the catalogue's parameter hash
are computed from these dataclasses, not from hand-written field lists:

* a field marked ``param("name")`` decides the asset's bytes: it goes into `StageOptions.conversion_params`
  (hashed into the catalogue's ``params_hash``, part of the conversion key) under that name;
* a stage's cache key hashes its whole options dataclass (`as_key`), so anything that changes the stage's
  result changes its key;
* `MachineOptions` (device, dtype, batch size, model source) belong to the worker: they never enter a
  cache key or the parameter hash (the weights' SHA-256 does, in the conversion key); nor does a field
  marked ``machine(...)`` (the worker's pixel budget);
* the time and memory bounds (docs/reliability.md): `Deadlines` per stage, `in_flight_default` photos in
  flight, `step_threads` threads for the steps, and the decoded-pixel limits of fetch and intake.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshing.scale import ProductSize

if TYPE_CHECKING:
    from asset3d.pipeline.settings import Settings


def param(name: str) -> Any:
    """A dataclass field that decides the asset's bytes, hashed under ``name`` in the conversion parameters."""
    return field(metadata={"param": name})


def machine(default: Any) -> Any:
    """A dataclass field that belongs to the worker, not to the result: `as_key` leaves it out."""
    return field(default=default, metadata={"machine": True})


def as_key(options: Any) -> dict[str, Any]:
    """An options dataclass as plain JSON values (a cache-key part), without its ``machine`` fields."""
    data = dataclasses.asdict(options)
    for f in dataclasses.fields(options):
        if f.metadata.get("machine"):
            del data[f.name]
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, frozenset | set) else items
    return value


@dataclass(frozen=True)
class FetchOptions:
    """Downloading one photo: its size cap, and the decoded-pixel limits of the check that it decodes."""

    max_bytes: int
    #: larger photos (width x height, from the header) are refused before decoding
    max_pixels: int = 50_000_000
    #: decoded pixels of all photos of this process at once (`asset3d.pipeline.photos.PIXELS`)
    pixel_budget: int = machine(100_000_000)


@dataclass(frozen=True)
class IntakeOptions:
    """Background, framing and flags (`intake.preprocess`), and the flags the policy refuses outright."""

    method: str = param("intake_method")
    foreground_ratio: float = param("foreground_ratio")
    reject_flags: tuple[str, ...] = ()
    #: larger photos are refused before decoding; see `FetchOptions`
    max_pixels: int = 50_000_000
    pixel_budget: int = machine(100_000_000)


@dataclass(frozen=True)
class ReconstructOptions:
    """Surface extraction from the model's field."""

    mc_resolution: int = param("mc_resolution")
    mc_threshold: float = param("mc_threshold")


@dataclass(frozen=True)
class MachineOptions:
    """Where and how this worker runs the model (never part of an asset's identity)."""

    model: str
    device: str
    dtype: str
    batch_size: int


@dataclass(frozen=True)
class BuildOptions:
    """Mesh -> GLB, previews, metrics, and the review gate's thresholds."""

    preset: str = param("preset")
    faces: int | None = param("faces")
    texture_size: int | None = param("texture_size")
    preview_views: int = param("preview_views")
    preview_size: int = param("preview_size")
    review: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishOptions:
    """Where assets are published."""

    dest: str


@dataclass(frozen=True)
class DiscoverOptions:
    """How photos are named: SKU rules."""

    sku_pattern: str | None
    sidecar: str | None


@dataclass(frozen=True)
class Deadlines:
    """Seconds one photo may spend in each stage, counted from the stage's first attempt, retries included.

    A failed attempt is tried again (if its error is transient) only when the retry, waiting ``delay_s`` and
    lasting as long as the attempt that just failed, still ends before the deadline (`allows_retry`): a
    download that stalls for its read timeouts fails within ``fetch`` seconds instead of holding its place
    for every retry. A single attempt is not interrupted (its own bounds are the S3 timeouts); a stage
    without a deadline here (catalogue writes) keeps its plain retry count.
    """

    fetch: float = 120.0
    intake: float = 300.0
    reconstruct: float = 900.0  # one micro-batch
    build: float = 600.0
    publish: float = 300.0  # the files, and the manifest (release), each

    def of(self, stage: str) -> float | None:
        """The deadline of ``stage`` (a `asset3d.pipeline.vocabulary.Stage` value), or None."""
        name = str(stage)
        return float(getattr(self, name)) if name in _DEADLINE_STAGES else None

    def allows_retry(self, stage: str, *, elapsed_s: float, attempt_s: float, delay_s: float) -> bool:
        """Whether a retry of ``stage`` still fits: ``elapsed_s`` since its first attempt began, the failed
        attempt took ``attempt_s``, the next one starts after ``delay_s`` (its largest jittered value)."""
        deadline = self.of(stage)
        return deadline is None or elapsed_s + delay_s + attempt_s <= deadline


_DEADLINE_STAGES = frozenset(f.name for f in dataclasses.fields(Deadlines))


@dataclass(frozen=True)
class StageOptions:
    """Every stage's options for one run, derived from the settings (`from_settings`)."""

    discover: DiscoverOptions
    fetch: FetchOptions
    intake: IntakeOptions
    reconstruct: ReconstructOptions
    machine: MachineOptions
    build: BuildOptions
    publish: PublishOptions
    #: photos between download and build at once (bounded memory); see `in_flight_default`
    max_in_flight: int
    #: the real-world size given for every photo of the run (flags), before the sidecar's and the catalogue's
    product_size: ProductSize | None = None
    #: the weights every photo of the run must be converted with (a server's conversion parameters)
    weights_sha256: str | None = None
    #: how long a claim on a conversion lasts (an overlapping run leaves claimed photos alone)
    lease_s: float = 3600.0
    #: each stage's time bound for one photo (retries stop once it would be passed)
    deadlines: Deadlines = field(default_factory=Deadlines)
    #: how long photos ready for reconstruction wait for the rest of their micro-batch
    batch_wait_s: float = 10.0

    @classmethod
    def from_settings(cls, s: Settings) -> StageOptions:
        review = s.review_thresholds()
        budget = s.pixel_budget or pixel_budget_default(s.max_photo_pixels)
        return cls(
            discover=DiscoverOptions(s.sku_pattern, s.sidecar),
            fetch=FetchOptions(s.max_photo_bytes, s.max_photo_pixels, budget),
            intake=IntakeOptions(
                s.intake_method, s.foreground_ratio, tuple(sorted(review.get("reject_intake_flags", ()))), s.max_photo_pixels, budget
            ),
            reconstruct=ReconstructOptions(s.mc_resolution, s.mc_threshold),
            machine=MachineOptions(s.model, s.device, s.dtype, s.batch_size),
            build=BuildOptions(s.preset, s.faces, s.texture_size, s.preview_views, s.preview_size, _plain(review)),
            publish=PublishOptions(s.dest),
            max_in_flight=s.max_in_flight or in_flight_default(s.batch_size),
            product_size=(
                ProductSize(s.width_m, s.height_m, s.depth_m, source="flag") if (s.width_m or s.height_m or s.depth_m) else None
            ),
            weights_sha256=s.weights_sha256,
            lease_s=s.lease_s,
            batch_wait_s=s.batch_wait_s,
            deadlines=Deadlines(s.deadline_fetch_s, s.deadline_intake_s, s.deadline_reconstruct_s, s.deadline_build_s, s.deadline_publish_s),
        )

    def conversion_params(self) -> dict[str, Any]:
        """The parameters that decide an asset's bytes, by name (hashed into the catalogue's ``params_hash``)."""
        out: dict[str, Any] = {}
        for stage in (self.intake, self.reconstruct, self.build):
            for f in dataclasses.fields(stage):
                if "param" in f.metadata:
                    out[f.metadata["param"]] = getattr(stage, f.name)
        return out


#: Memory one photo may hold between download and build (decoded pixels, model input, mesh), for the default.
PHOTO_MEMORY_BYTES = 256 << 20


#: Peak bytes per decoded pixel of one photo in intake (decoded RGB, segmentation fields, framing): 31 B
#: measured on a 49-megapixel JPEG (1.55 GB above the process's baseline); the fetch's decode check takes 13.
BYTES_PER_DECODED_PIXEL = 32
#: Threads for concurrent steps, at most: downloads and uploads wait on the network, intake uses the cores,
#: reconstructions and builds queue on the model's and the renderer's locks; more threads only wait.
STEP_THREADS = 16


def _available_memory() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return 4 << 30


def in_flight_default(batch_size: int) -> int:
    """Photos in flight by default: two micro-batches, more when the machine's memory allows, at most 64."""
    by_memory = int(_available_memory() // 4 // PHOTO_MEMORY_BYTES)
    return max(2 * batch_size, min(64, by_memory))


def pixel_budget_default(max_photo_pixels: int) -> int:
    """Decoded pixels a worker process holds at once by default: what a quarter of its free memory allows
    (`BYTES_PER_DECODED_PIXEL`), and at least one photo of the largest accepted size."""
    return max(max_photo_pixels, _available_memory() // 4 // BYTES_PER_DECODED_PIXEL)


def step_threads(max_in_flight: int) -> int:
    """Threads for the steps of a batch with ``max_in_flight`` photos: one per photo, at most `STEP_THREADS`
    (and at least 2, so a catalogue write never waits behind a download)."""
    return max(2, min(max_in_flight, STEP_THREADS))
