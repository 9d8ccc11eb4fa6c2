"""What each stage needs from the settings: one small frozen dataclass per stage, derived from `Settings`.

Stages receive their options, never the whole `Settings`; cache keys and the catalogue's parameter hash
are computed from these dataclasses, not from hand-written field lists:

* a field marked ``param("name")`` decides the asset's bytes: it goes into `StageOptions.conversion_params`
  (hashed into the catalogue's ``params_hash``, part of the conversion key) under that name;
* a stage's cache key hashes its whole options dataclass (`as_key`), so anything that changes the stage's
  result changes its key;
* `MachineOptions` (device, dtype, batch size, model source) belong to the worker: they never enter a
  cache key or the parameter hash (the weights' SHA-256 does, in the conversion key).
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


def as_key(options: Any) -> dict[str, Any]:
    """An options dataclass as plain JSON values (a cache-key part)."""
    return _plain(dataclasses.asdict(options))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, frozenset | set) else items
    return value


@dataclass(frozen=True)
class FetchOptions:
    """Downloading one photo."""

    max_bytes: int


@dataclass(frozen=True)
class IntakeOptions:
    """Background, framing and flags (`intake.preprocess`), and the flags the policy refuses outright."""

    method: str = param("intake_method")
    foreground_ratio: float = param("foreground_ratio")
    reject_flags: tuple[str, ...] = ()


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

    @classmethod
    def from_settings(cls, s: Settings) -> StageOptions:
        review = s.review_thresholds()
        return cls(
            discover=DiscoverOptions(s.sku_pattern, s.sidecar),
            fetch=FetchOptions(s.max_photo_bytes),
            intake=IntakeOptions(s.intake_method, s.foreground_ratio, tuple(sorted(review.get("reject_intake_flags", ())))),
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


def in_flight_default(batch_size: int) -> int:
    """Photos in flight by default: two micro-batches, more when the machine's memory allows, at most 64."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        available = 4 << 30
    by_memory = int(available // 4 // PHOTO_MEMORY_BYTES)
    return max(2 * batch_size, min(64, by_memory))
