"""What to build: one frozen options object for `meshing.build_asset`.

`AssetOptions` holds every setting of the build (preset, budgets, compression, previews, clean-up,
checks). It is hashable and `as_dict()` is JSON-ready, so a caller can derive it from its own
settings and hash it for a cache key instead of listing fields by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from meshing.errors import MeshingError
from meshing.presets import Preset, get_preset
from meshing.scale import ProductSize


@dataclass(frozen=True)
class AssetOptions:
    """Settings of one asset build.

    Attributes
    ----------
    preset
        One channel or several: a preset name (`web`, `shopify`, `amazon`, `google`, `apple`), a
        `Preset`, a comma-separated list (`"shopify,apple"`) or a tuple of them. The first is the
        asset's primary channel: it writes `<name>.glb`, the previews and the top-level metrics
        the review gate reads; every further channel writes its own file for the same asset
        (`<name>.<preset>.glb`, or `<name>.usdz` for a USDZ channel such as `apple`).
    faces
        Face budget (default: the preset's `default_faces`; never above its `max_triangles`).
    texture_size
        Texture side in pixels for textured presets (default: the preset's).
    draco
        Draco geometry compression: True, False, or None for each preset's default.
    meshopt
        EXT_meshopt_compression for the channels that accept it (web); never Draco with it.
    webp
        WebP base-colour textures (EXT_texture_webp) for the textured channels that accept them.
        Both are applied only where a channel accepts them (never amazon: Draco only); asking for
        one that no requested channel accepts is refused.
    size
        The product's real dimensions (any subset of width, height, depth, and their source);
        the model is scaled uniformly so its bounding box matches them (`meshing.scale`).
        None: unscaled, flagged `unscaled` in the metrics.
    name
        File stem of the GLB (`<name>.glb`).
    previews
        Write turntable PNGs and a contact sheet.
    preview_dir
        Folder of the previews, relative to `out_dir` (an absolute path is used as it is).
    preview_views, preview_size
        Number of turntable views and their side in pixels.
    min_component_share
        Clean-up: components under this share of the surface area are dropped as floaters.
    fill_holes
        Clean-up: close small boundary loops.
    validate
        Run the Khronos glTF-Validator (required for a publishable asset).
    color_points
        Surface samples of the colour-error metric (0 skips it).
    """

    preset: str | Preset | tuple[str | Preset, ...] = "web"
    faces: int | None = None
    texture_size: int | None = None
    draco: bool | None = None
    meshopt: bool = False
    webp: bool = False
    size: ProductSize | None = None
    name: str = "asset"
    previews: bool = True
    preview_dir: str = "previews"
    preview_views: int = 8
    preview_size: int = 512
    min_component_share: float = 0.01
    fill_holes: bool = False
    validate: bool = True
    color_points: int = 10_000

    def __post_init__(self) -> None:
        names = [p.name for p in self.channels]  # unknown names fail here, before any work
        if len(set(names)) != len(names):
            raise MeshingError("bad_input", f"preset {self.preset!r}: a channel is named twice")
        if sum(p.container == "usdz" for p in self.channels) > 1:
            raise MeshingError("bad_input", f"preset {self.preset!r}: more than one USDZ channel")
        if self.meshopt and self.draco:
            raise MeshingError("bad_input", "draco and meshopt both compress the geometry: choose one")
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise MeshingError("bad_input", f"name={self.name!r}: expected a plain file stem")
        if self.faces is not None and int(self.faces) < 4:
            raise MeshingError("bad_input", f"faces={self.faces}: need at least 4")
        if self.preview_views < 1 or self.preview_size < 16:
            raise MeshingError(
                "bad_input",
                f"preview_views={self.preview_views}, preview_size={self.preview_size}: need >= 1 view of >= 16 px",
            )
        if self.color_points < 0:
            raise MeshingError("bad_input", f"color_points={self.color_points}: must be >= 0")

    @property
    def channels(self) -> tuple[Preset, ...]:
        """Every requested channel's `Preset`, the primary first."""
        items: tuple[str | Preset, ...]
        if isinstance(self.preset, str):
            items = tuple(part.strip() for part in self.preset.split(","))
        elif isinstance(self.preset, Preset):
            items = (self.preset,)
        else:
            items = tuple(self.preset)
        if not items or any(item == "" for item in items):
            raise MeshingError("bad_input", f"preset {self.preset!r}: name at least one channel")
        return tuple(get_preset(item) for item in items)

    @property
    def resolved_preset(self) -> Preset:
        """The primary channel's `Preset`."""
        return self.channels[0]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (presets as their dicts), for logs and cache keys."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "preset":
                value = [p.as_dict() for p in self.channels]
            elif isinstance(value, ProductSize):
                value = value.as_dict()
            out[f.name] = value
        return out
