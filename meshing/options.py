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
        `web`, `shopify`, `amazon` or a `Preset`.
    faces
        Face budget (default: the preset's `default_faces`; never above its `max_triangles`).
    texture_size
        Texture side in pixels for textured presets (default: the preset's).
    draco
        Draco geometry compression: True, False, or None for the preset's default.
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

    preset: str | Preset = "web"
    faces: int | None = None
    texture_size: int | None = None
    draco: bool | None = None
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
        get_preset(self.preset)  # unknown names fail here, before any work
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
    def resolved_preset(self) -> Preset:
        """The `Preset` this build targets."""
        return get_preset(self.preset)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (a `Preset` as its own dict), for logs and cache keys."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.as_dict() if isinstance(value, Preset | ProductSize) else value
        return out
