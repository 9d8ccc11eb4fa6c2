"""Materials: what every primitive of an asset is drawn with.

TripoSR predicts colour only, no metalness, roughness or occlusion. Every asset therefore gets an
explicit glTF metallic-roughness material: `metallicFactor` 0 (a dielectric; without a material
viewers apply the glTF default, metallic 1.0, and the model looks washed out and metallic), the
roughness its preset states, and back-face culling on unless the mesh needs both sides drawn
(`needs_double_sided`). Presets that require the maps (amazon) carry an occlusion-roughness-metallic
texture, constant (no occlusion, the factor's roughness, not metallic) since the model predicts none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from meshing.errors import MeshingError
from meshing.metrics import topology_stats, weld_by_position

#: an open border (boundary loop) longer than this share of the bounding-box diagonal is an opening
#: a viewer can look into, so its inside (the back faces) must be drawn
DOUBLE_SIDED_MIN_OPENING = 0.25


@dataclass(frozen=True)
class MaterialSpec:
    """The material written on every primitive of one asset.

    Attributes
    ----------
    roughness
        `roughnessFactor` in [0, 1].
    metallic
        `metallicFactor` (0: TripoSR predicts no metal).
    double_sided
        glTF `doubleSided` (back faces drawn).
    orm_texture
        Add an occlusion-roughness-metallic texture (R occlusion, G roughness, B metallic), bound
        as `metallicRoughnessTexture` and `occlusionTexture`.
    """

    roughness: float
    metallic: float = 0.0
    double_sided: bool = False
    orm_texture: bool = False

    def __post_init__(self) -> None:
        for name in ("roughness", "metallic"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise MeshingError("bad_input", f"material {name}={value}: must be in [0, 1]")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DoubleSidedDecision:
    """Whether a mesh needs both sides drawn, and why.

    Attributes
    ----------
    double_sided
        The decision.
    reason
        One line naming the rule.
    largest_opening
        Length of the longest boundary loop as a share of the bounding-box diagonal.
    winding_consistent
        From `topology_stats` (welded by position).
    """

    double_sided: bool
    reason: str
    largest_opening: float
    winding_consistent: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def largest_opening(mesh: trimesh.Trimesh) -> float:
    """Length of the longest open border, as a share of the bounding-box diagonal.

    Boundary edges (one face, on the mesh welded by position) are grouped into loops by the
    vertices they share; the longest loop's total edge length is returned (0 for a closed mesh).
    """
    verts, faces = weld_by_position(mesh.vertices, mesh.faces)
    if len(faces) == 0:
        return 0.0
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, count = np.unique(edges, axis=0, return_counts=True)
    border = unique[count == 1]  # (b, 2)
    diagonal = float(np.linalg.norm(np.ptp(verts, axis=0)))
    if len(border) == 0 or diagonal <= 0:
        return 0.0
    length = np.linalg.norm(verts[border[:, 0]] - verts[border[:, 1]], axis=1)
    graph = coo_matrix((np.ones(len(border)), (border[:, 0], border[:, 1])), shape=(len(verts), len(verts)))
    _, loop = connected_components(graph, directed=False)
    return float(np.bincount(loop[border[:, 0]], weights=length).max() / diagonal)


def needs_double_sided(
    mesh: trimesh.Trimesh, *, min_opening: float = DOUBLE_SIDED_MIN_OPENING
) -> DoubleSidedDecision:
    """Decide `doubleSided` for a mesh: off unless back faces would show.

    Back faces show (1) where the winding is inconsistent (some faces point inwards and back-face
    culling would cut holes), or (2) through an opening large enough to look into: a boundary loop
    longer than `min_opening` times the bounding-box diagonal (the rim of a cup, a single sheet).
    The small holes marching cubes leaves in a closed object (flor: the longest is 3 % of the
    diagonal) keep culling on.
    """
    topo = topology_stats(mesh)
    opening = largest_opening(mesh)
    if not topo["winding_consistent"]:
        return DoubleSidedDecision(True, "winding is inconsistent", opening, False)
    if opening > min_opening:
        return DoubleSidedDecision(
            True,
            f"open border {opening:.2f} x diagonal > {min_opening} (an opening to look into)",
            opening,
            True,
        )
    return DoubleSidedDecision(
        False, f"closed or small openings (longest {opening:.3f} x diagonal <= {min_opening})", opening, True
    )


def constant_orm_image(
    size: int, *, occlusion: float = 1.0, roughness: float = 1.0, metallic: float = 0.0
) -> np.ndarray:
    """A constant occlusion-roughness-metallic map.

    With the material's factors carrying the values (`roughnessFactor` the preset's roughness,
    `metallicFactor` 0), the map holds the multipliers: occlusion 1 (none), roughness 1, metallic 0.

    Returns
    -------
    (size, size, 3) uint8: R occlusion, G roughness, B metallic.
    """
    if size < 1:
        raise MeshingError("bad_input", f"ORM map of {size} px: need at least 1")
    rgb = np.rint(np.clip([occlusion, roughness, metallic], 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.broadcast_to(rgb, (size, size, 3)).copy()
