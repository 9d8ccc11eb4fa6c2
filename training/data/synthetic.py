"""Synthetic product objects: ground-truth mesh, conditioning view, supervision views and 3D samples.

One object is a pure function of `(seed, index)`: its generator is `numpy.random.default_rng([seed,
index])`, so object i of a seed is the same whatever the count, and the same seed gives identical files.

Steps for one object:

1. draw a shape (`training.data.shapes`) of kind `KINDS[(seed + index) % len(KINDS)]`;
2. mesh its signed distance with marching cubes (PyMCubes) on a grid padded with outside values, so
   the mesh is closed (watertight), then colour the vertices with the shape's procedural colours;
3. pose it: a random turn about z (any angle) and a tilt toward the camera of 0-25 deg (a photo
   taken from slightly above), then scale and shift it so that, seen from the input camera (+x,
   distance 1.9, fovy 32.5 deg), its projected box is centred and its longer side spans 0.85 of the
   image: the framing of the intake stage, so framing the render changes it by at most a pixel;
4. render (moderngl on Mesa's software EGL, `meshing.preview`): the conditioning view (lit, MSAA,
   framed by `intake.framing.frame_object` on gray 0.5) and `views` supervision views (unlit
   albedo, i.e. the colours a view-independent field can reproduce, composited on white, with masks);
5. 3D samples for occupancy supervision: surface points with their colours, points near the surface
   (Gaussian offsets of two scales) and uniform points in the scene box, labelled inside / outside by
   the signed distance the mesh was made from.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mcubes
import numpy as np
import trimesh

from training.data.cameras import (
    FOREGROUND_RATIO,
    INPUT_DISTANCE,
    INPUT_FOVY_DEG,
    CameraSpec,
    input_camera,
    orbit_camera,
)
from training.data.shapes import KINDS, Shape, make_shape

SCENE_RADIUS = 0.87
MAX_EXTENT = 0.82  # every vertex stays inside [-0.82, 0.82]^3, well within the scene box


@dataclass(frozen=True)
class SynthConfig:
    """What one object is made of (stored in `dataset.json`)."""

    cond_size: int = 512
    view_size: int = 128
    views: int = 6
    mesh_resolution: int = 72  # marching-cubes cells along the shape's longest side
    n_surface: int = 8192
    n_near: int = 8192  # per noise scale
    near_sigmas: tuple[float, ...] = (0.01, 0.04)
    n_uniform: int = 8192
    max_tilt_deg: float = 25.0
    view_elevation_deg: tuple[float, float] = (-10.0, 45.0)


@dataclass
class SyntheticObject:
    """Everything written for one object (arrays in memory; `write_object` stores them)."""

    name: str
    kind: str
    mesh: trimesh.Trimesh  # official frame, vertex colours
    cond_image: np.ndarray  # (S, S, 3) uint8, framed on gray 127
    cond_mask: np.ndarray  # (S, S) uint8
    cond_camera: CameraSpec
    view_images: list[np.ndarray]  # (V, V, 3) uint8 over white
    view_masks: list[np.ndarray]  # (V, V) uint8
    view_cameras: list[CameraSpec]
    samples: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def object_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def object_name(index: int) -> str:
    return f"{index:06d}"


# -- geometry ----------------------------------------------------------------------------------
def mesh_from_sdf(shape: Shape, resolution: int = 100) -> trimesh.Trimesh:
    """Closed triangle mesh of the shape's zero level set, in its local frame.

    The grid spans the shape's bounds plus three cells on each side, so the field is positive on the
    grid's border and marching cubes closes every surface.
    """
    lo, hi = shape.bounds
    step = float((hi - lo).max()) / resolution
    lo, hi = lo - 3 * step, hi + 3 * step
    axes = [np.arange(lo[k], hi[k] + 0.5 * step, step) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (nx, ny, nz, 3)
    d = shape.sdf(grid.reshape(-1, 3)).reshape(grid.shape[:3])
    verts, faces = mcubes.marching_cubes(np.ascontiguousarray(-d), 0.0)  # inside positive
    verts = verts * step + lo
    mesh = trimesh.Trimesh(vertices=verts, faces=faces.astype(np.int64), process=False)  # merging would pinch
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def rotation_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def rotation_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def frame_transform(points: np.ndarray, *, distance: float = INPUT_DISTANCE, fovy_deg: float = INPUT_FOVY_DEG,
                    ratio: float = FOREGROUND_RATIO, iterations: int = 6) -> tuple[float, np.ndarray]:
    """Scale s and shift t (3,) such that s p + t, seen from the input camera, is framed like intake.

    The projected box of the points is centred in the image and its longer side spans `ratio` of it.

    Parameters
    ----------
    points : (N, 3) float, posed but unscaled

    Returns
    -------
    s, t with world = s * points + t
    """
    tan = math.tan(math.radians(fovy_deg) / 2.0)
    lo, hi = points.min(axis=0), points.max(axis=0)
    s = ratio * tan * distance / (0.5 * float(max(hi[1] - lo[1], hi[2] - lo[2])))
    t = -s * (lo + hi) / 2.0
    for _ in range(iterations):
        p = s * points + t
        depth = distance - p[:, 0]
        u, v = p[:, 1] / depth / tan, p[:, 2] / depth / tan  # NDC in [-1, 1]
        span = max(u.max() - u.min(), v.max() - v.min())
        k = 2.0 * ratio / span
        c = (p.min(axis=0) + p.max(axis=0)) / 2.0
        s, t = s * k, (t - c) * k + c
        p = s * points + t
        depth = distance - p[:, 0]
        u, v = p[:, 1] / depth / tan, p[:, 2] / depth / tan
        xc = distance - float(np.median(depth))
        t = t - np.array([0.0, (u.max() + u.min()) / 2.0 * tan * (distance - xc), (v.max() + v.min()) / 2.0 * tan * (distance - xc)])
    return float(s), t


# -- rendering ---------------------------------------------------------------------------------
def preview_camera(camera: CameraSpec):  # noqa: ANN201 - meshing.preview.Camera
    """The same camera for `meshing.preview`'s renderer."""
    from meshing.preview import Camera

    m = camera.matrix
    eye = m[:3, 3]
    return Camera(eye=tuple(eye), target=tuple(eye - m[:3, 2]), up=tuple(m[:3, 1]), fovy_deg=camera.fovy_deg,
                  znear=0.05, zfar=10.0)


def render_rgba(mesh: trimesh.Trimesh, cameras: list[CameraSpec], *, lit: bool, samples: int = 4) -> list[np.ndarray]:
    """(H, W, 4) float RGBA, colour straight (not premultiplied) and alpha the pixel coverage."""
    from meshing.preview import render_views

    size = cameras[0].width
    if any(c.width != size or c.height != size for c in cameras):
        raise ValueError("render_rgba: all cameras of one call must share one square size")
    raw = render_views(mesh, [preview_camera(c) for c in cameras], width=size, height=size, lit=lit, samples=samples)
    out = []
    for im in raw:
        rgba = im.astype(np.float64) / 255.0
        a = rgba[..., 3:4]
        rgb = np.where(a > 0, rgba[..., :3] / np.maximum(a, 1e-6), 0.0)  # resolve averaged over a black clear
        out.append(np.concatenate([np.clip(rgb, 0.0, 1.0), a], axis=-1))
    return out


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


# -- one object --------------------------------------------------------------------------------
def make_object(seed: int, index: int, cfg: SynthConfig | None = None) -> SyntheticObject:
    """Build object `index` of dataset `seed` (pure: same arguments, same arrays)."""
    from intake.framing import frame_object

    cfg = cfg or SynthConfig()
    rng = object_rng(seed, index)
    kind = KINDS[(seed + index) % len(KINDS)]
    for _attempt in range(20):
        shape = make_shape(kind, rng)
        local = mesh_from_sdf(shape, cfg.mesh_resolution)
        yaw = float(rng.uniform(-180.0, 180.0))
        tilt = float(rng.uniform(0.0, cfg.max_tilt_deg))
        rot = rotation_y(tilt) @ rotation_z(yaw)
        centre = (shape.bounds[0] + shape.bounds[1]) / 2.0
        posed = (np.asarray(local.vertices) - centre) @ rot.T
        s, t = frame_transform(posed)
        world = s * posed + t
        if np.abs(world).max() <= MAX_EXTENT:
            break
    else:  # pragma: no cover - the proportions are drawn so that this does not happen
        raise RuntimeError(f"object {index} of seed {seed}: no pose fits the scene box")

    def to_local(p: np.ndarray) -> np.ndarray:
        return ((p - t) / s) @ rot + centre

    colors = shape.color(np.asarray(local.vertices))
    mesh = trimesh.Trimesh(vertices=world, faces=np.asarray(local.faces), process=False,
                           vertex_colors=np.concatenate([_to_u8(colors), np.full((len(world), 1), 255, np.uint8)], 1))

    # conditioning view, framed like the intake stage
    cond_cam = input_camera(cfg.cond_size)
    rgba = render_rgba(mesh, [cond_cam], lit=True)[0]
    cond_image, cond_mask, _ = frame_object(_to_u8(rgba[..., :3]), _to_u8(rgba[..., 3]), foreground_ratio=FOREGROUND_RATIO,
                                            size=cfg.cond_size)

    # supervision views: unlit albedo over white, and masks
    cams = []
    for k in range(cfg.views):
        az = 360.0 * k / cfg.views + float(rng.uniform(0.0, 360.0 / cfg.views))
        el = float(rng.uniform(*cfg.view_elevation_deg))
        cams.append(orbit_camera(az, el, size=cfg.view_size))
    views = render_rgba(mesh, cams, lit=False)
    view_images = [_to_u8(v[..., :3] * v[..., 3:4] + (1.0 - v[..., 3:4])) for v in views]
    view_masks = [_to_u8(v[..., 3]) for v in views]

    # 3D samples, labelled by the signed distance the mesh was made from
    surf, _ = trimesh.sample.sample_surface(mesh, cfg.n_surface, seed=int(rng.integers(2**31)))
    surf = np.asarray(surf)
    near = [surf[rng.integers(len(surf), size=cfg.n_near)] + rng.normal(0.0, sig, (cfg.n_near, 3)) for sig in cfg.near_sigmas]
    uniform = rng.uniform(-SCENE_RADIUS, SCENE_RADIUS, (cfg.n_uniform, 3))
    points = np.clip(np.concatenate([*near, uniform]), -SCENE_RADIUS, SCENE_RADIUS)
    inside = shape.sdf(to_local(points)) < 0.0
    samples = {
        "surface_points": surf.astype(np.float32),
        "surface_colors": _to_u8(shape.color(to_local(surf))),
        "points": points.astype(np.float32),
        "occupancy": inside.astype(np.uint8),
    }
    meta = {
        "name": object_name(index),
        "seed": int(seed),
        "index": int(index),
        "kind": kind,
        "params": shape.params,
        "pose": {"yaw_deg": yaw, "tilt_deg": tilt, "scale": s, "shift": t.tolist(), "local_centre": centre.tolist()},
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "watertight": bool(mesh.is_watertight),
    }
    return SyntheticObject(object_name(index), kind, mesh, cond_image, cond_mask, cond_cam, view_images, view_masks,
                           cams, samples, meta)


# -- files -------------------------------------------------------------------------------------
DATASET_FILE = "dataset.json"
LAYOUT_VERSION = 1


def write_object(obj: SyntheticObject, folder: Path) -> None:
    """Write one object's files (layout: docs/training.md)."""
    from PIL import Image
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    obj.mesh.export(folder / "mesh.ply", file_type="ply", encoding="binary")
    Image.fromarray(obj.cond_image).save(folder / "cond.png")
    Image.fromarray(obj.cond_mask).save(folder / "cond_mask.png")
    for k, (im, m) in enumerate(zip(obj.view_images, obj.view_masks, strict=True)):
        Image.fromarray(im).save(folder / f"view_{k:02d}.png")
        Image.fromarray(m).save(folder / f"mask_{k:02d}.png")
    cameras = {"cond": obj.cond_camera.to_json(), "views": [c.to_json() for c in obj.view_cameras]}
    (folder / "cameras.json").write_text(json.dumps(cameras, indent=1) + "\n")
    save_file({k: np.ascontiguousarray(v) for k, v in obj.samples.items()}, str(folder / "samples.safetensors"))
    (folder / "meta.json").write_text(json.dumps(obj.meta, indent=1, sort_keys=True) + "\n")


def make_dataset(seed: int, count: int, out: str | Path, cfg: SynthConfig | None = None, *, start: int = 0,
                 progress: bool = False) -> Path:
    """Write `count` objects of dataset `seed` under `out` (objects/NNNNNN/ plus dataset.json)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    cfg = cfg or SynthConfig()
    out = Path(out)
    (out / "objects").mkdir(parents=True, exist_ok=True)
    names, kinds = [], []
    indices = range(start, start + count)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="objects", unit="obj")
    for i in indices:
        obj = make_object(seed, i, cfg)
        write_object(obj, out / "objects" / obj.name)
        names.append(obj.name)
        kinds.append(obj.kind)
    info = {
        "layout_version": LAYOUT_VERSION,
        "seed": int(seed),
        "count": int(count),
        "start": int(start),
        "config": asdict(cfg),
        "kinds": sorted(set(kinds)),
        "objects": names,
        "conventions": {
            "frame": "official TripoSR world frame: z up, the photo seen from +x (image right = +y, up = +z)",
            "scene_radius": SCENE_RADIUS,
            "cameras": "OpenGL camera-to-world c2w, f = 0.5 H / tan(fovy / 2), pixel centres at +0.5",
        },
    }
    (out / DATASET_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return out
