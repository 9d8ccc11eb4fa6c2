"""Headless CPU rendering with moderngl on Mesa's software EGL (llvmpipe): no window, no GPU.

Renders a mesh with its vertex colours or base-colour texture, lit or unlit, from pinhole
cameras in OpenGL conventions (the camera looks down its -z axis). Used for turntable
previews, the contact sheet, and the input-view render that metrics compare to the photo.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from meshing.errors import MeshingError


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    Attributes
    ----------
    eye, target, up
        (3,) position, look-at point and up direction, world frame.
    fovy_deg
        Vertical field of view.
    znear, zfar
        Clip distances (positive).
    """

    eye: tuple[float, float, float]
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fovy_deg: float = 40.0
    znear: float = 0.01
    zfar: float = 100.0

    def view_matrix(self) -> np.ndarray:
        """(4, 4) world -> camera (OpenGL look-at)."""
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (self.eye, self.target, self.up))
        f = target - eye
        f /= np.linalg.norm(f)
        s = np.cross(f, up)
        if np.linalg.norm(s) < 1e-9:
            raise MeshingError("bad_input", f"camera up {self.up} is parallel to the viewing direction")
        s /= np.linalg.norm(s)
        u = np.cross(s, f)
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = s, u, -f
        m[:3, 3] = -m[:3, :3] @ eye
        return m

    def projection_matrix(self, aspect: float) -> np.ndarray:
        """(4, 4) OpenGL perspective projection for width / height = `aspect`."""
        t = 1.0 / math.tan(math.radians(self.fovy_deg) / 2.0)
        n, f = self.znear, self.zfar
        m = np.zeros((4, 4))
        m[0, 0] = t / aspect
        m[1, 1] = t
        m[2, 2] = (f + n) / (n - f)
        m[2, 3] = 2.0 * f * n / (n - f)
        m[3, 2] = -1.0
        return m


def orbit_camera(
    center: Sequence[float],
    distance: float,
    azimuth_deg: float,
    elevation_deg: float,
    *,
    fovy_deg: float = 40.0,
) -> Camera:
    """A y-up camera on a sphere around `center`; azimuth 0 looks from +z (the asset's front)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    c = np.asarray(center, dtype=np.float64)
    eye = c + distance * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    return Camera(
        eye=tuple(eye),
        target=tuple(c),
        up=(0.0, 1.0, 0.0),
        fovy_deg=fovy_deg,
        znear=max(distance * 0.01, 1e-4),
        zfar=distance * 10.0,
    )


def turntable_cameras(
    mesh: trimesh.Trimesh,
    *,
    views: int = 8,
    elevation_deg: float = 15.0,
    fovy_deg: float = 35.0,
    margin: float = 1.08,
) -> list[Camera]:
    """`views` cameras evenly around the y axis, framing the whole mesh (asset frame, y-up)."""
    if views < 1:
        raise MeshingError("bad_input", f"views={views}: need at least one")
    center = np.asarray(mesh.bounds, dtype=np.float64).mean(axis=0)
    radius = float(np.linalg.norm(np.asarray(mesh.vertices) - center, axis=1).max())
    distance = margin * max(radius, 1e-6) / math.sin(math.radians(fovy_deg) / 2.0)
    return [
        orbit_camera(center, distance, 360.0 * i / views, elevation_deg, fovy_deg=fovy_deg)
        for i in range(views)
    ]


def triposr_input_camera(*, distance: float = 1.9, fovy_deg: float = 32.5) -> Camera:
    """The photo's camera in the official z-up frame (FACTS.md): on +x looking at the origin,
    image right = +y, image up = +z; distance 1.9 with fovy about 32.5 deg."""
    return Camera(
        eye=(distance, 0.0, 0.0),
        target=(0.0, 0.0, 0.0),
        up=(0.0, 0.0, 1.0),
        fovy_deg=fovy_deg,
        znear=0.05,
        zfar=10.0,
    )


_VERTEX = """
#version 330
uniform mat4 mvp;
uniform mat4 model_view;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
    v_normal = mat3(model_view) * in_normal;
    v_color = in_color;
    v_uv = in_uv;
}
"""

_FRAGMENT = """
#version 330
uniform sampler2D base_color;
uniform bool use_texture;
uniform bool lit;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
out vec4 frag;
void main() {
    vec3 albedo = use_texture ? texture(base_color, vec2(v_uv.x, 1.0 - v_uv.y)).rgb : v_color;
    vec3 rgb = albedo;
    if (lit) {
        vec3 n = normalize(v_normal);
        if (!gl_FrontFacing) n = -n;
        // key light from the upper left of the camera, fill from the right, ambient
        float key = max(dot(n, normalize(vec3(-0.4, 0.6, 0.7))), 0.0);
        float fill = max(dot(n, normalize(vec3(0.6, 0.1, 0.5))), 0.0);
        rgb = albedo * (0.35 + 0.55 * key + 0.2 * fill);
    }
    frag = vec4(clamp(rgb, 0.0, 1.0), 1.0);
}
"""


#: one OpenGL context per thread: a standalone context is current only in the thread that made it
_contexts = threading.local()


def _context():  # noqa: ANN202 - (moderngl.Context, moderngl.Program), imported lazily
    """This thread's headless context and preview program, made on first use."""
    made = getattr(_contexts, "made", None)
    if made is None:
        made = _contexts.made = _make_context()
    return made


def _make_context():  # noqa: ANN202
    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    try:
        import moderngl
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise MeshingError("renderer_unavailable", f"moderngl is not installed: {exc}") from exc
    errors = []
    for backend in ("egl", None):
        try:
            ctx = (
                moderngl.create_standalone_context(backend=backend)
                if backend
                else moderngl.create_standalone_context()
            )
            prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
            return ctx, prog
        except Exception as exc:  # each backend fails in its own way
            errors.append(f"{backend or 'default'}: {exc}")
    raise MeshingError("renderer_unavailable", "no headless OpenGL context: " + "; ".join(errors))


def _mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray | None]:
    """Interleaved (v, 11) float32 [pos, normal, rgb, uv] and the base-colour image, if any."""
    v = np.asarray(mesh.vertices, dtype=np.float32)
    n = np.asarray(mesh.vertex_normals, dtype=np.float32)
    rgb = np.full((len(v), 3), 0.7, dtype=np.float32)
    uv = np.zeros((len(v), 2), dtype=np.float32)
    image = None
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture" and visual.uv is not None:
        material = visual.material
        tex = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        if tex is not None:
            image = np.asarray(tex.convert("RGB"), dtype=np.uint8)
            uv = np.asarray(visual.uv, dtype=np.float32)
        factor = getattr(material, "baseColorFactor", None)
        if image is None and factor is not None:
            rgb[:] = np.asarray(factor[:3], dtype=np.float32) / 255.0
    elif getattr(visual, "kind", None) == "vertex":
        rgb = np.asarray(visual.vertex_colors[:, :3], dtype=np.float32) / 255.0
    return np.ascontiguousarray(np.hstack([v, n, rgb, uv])), image


def render_views(
    mesh: trimesh.Trimesh,
    cameras: Sequence[Camera],
    *,
    width: int = 512,
    height: int = 512,
    lit: bool = True,
    samples: int = 4,
    background: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
) -> list[np.ndarray]:
    """Render the mesh from each camera.

    Parameters
    ----------
    mesh
        Mesh with vertex colours, a textured material, or neither (grey).
    cameras
        Cameras in the mesh's frame.
    width, height
        Image size in pixels.
    lit
        Simple Lambert lighting (previews) or the raw albedo (comparisons with photos).
    samples
        MSAA samples (0 for hard edges, as masks need).
    background
        RGBA clear colour in [0, 1]; alpha 0 gives a transparent background.

    Returns
    -------
    list of (height, width, 4) uint8 RGBA images, row 0 at the top; alpha 255 where the mesh is.
    """
    ctx, prog = _context()
    data, image = _mesh_arrays(mesh)
    faces = np.ascontiguousarray(np.asarray(mesh.faces, dtype=np.uint32))
    vbo = ctx.buffer(data.tobytes())
    ibo = ctx.buffer(faces.tobytes())
    vao = ctx.vertex_array(
        prog, [(vbo, "3f 3f 3f 2f", "in_pos", "in_normal", "in_color", "in_uv")], index_buffer=ibo
    )
    tex = None
    if image is not None:
        tex = ctx.texture((image.shape[1], image.shape[0]), 3, np.ascontiguousarray(image).tobytes())
        tex.build_mipmaps()
        tex.filter = (ctx.LINEAR_MIPMAP_LINEAR, ctx.LINEAR)
        tex.use(location=0)
        prog["base_color"].value = 0
    prog["use_texture"].value = image is not None
    prog["lit"].value = bool(lit)
    samples = int(samples) if samples and samples > 1 else 0
    color = ctx.renderbuffer((width, height), 4, samples=samples)
    depth = ctx.depth_renderbuffer((width, height), samples=samples)
    fbo = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
    resolve = ctx.simple_framebuffer((width, height), components=4) if samples else fbo
    out = []
    try:
        for cam in cameras:
            view = cam.view_matrix()
            mvp = cam.projection_matrix(width / height) @ view
            prog["mvp"].write(mvp.T.astype("f4").tobytes())
            prog["model_view"].write(view.T.astype("f4").tobytes())
            fbo.use()
            ctx.enable(ctx.DEPTH_TEST)
            ctx.disable(ctx.CULL_FACE)
            fbo.clear(*background, depth=1.0)
            vao.render()
            if samples:
                ctx.copy_framebuffer(resolve, fbo)
            raw = resolve.read(components=4, alignment=1)
            out.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4)[::-1].copy())
    finally:
        for obj in (vao, vbo, ibo, tex, fbo, color, depth, resolve if samples else None):
            if obj is not None:
                obj.release()
    return out


def render_mask(mesh: trimesh.Trimesh, camera: Camera, *, width: int, height: int) -> np.ndarray:
    """(height, width) bool silhouette of the mesh seen from `camera` (no anti-aliasing)."""
    rgba = render_views(mesh, [camera], width=width, height=height, lit=False, samples=0)[0]
    return rgba[..., 3] > 0


def contact_sheet(
    images: Sequence[np.ndarray],
    *,
    columns: int = 4,
    background: tuple[int, int, int] = (235, 235, 235),
    gap: int = 8,
) -> np.ndarray:
    """Tile RGBA views on a neutral background.

    Returns
    -------
    (H, W, 3) uint8
    """
    if not images:
        raise MeshingError("bad_input", "contact sheet of no images")
    h, w = images[0].shape[:2]
    rows = math.ceil(len(images) / columns)
    cols = min(columns, len(images))
    sheet = Image.new("RGB", (cols * w + (cols + 1) * gap, rows * h + (rows + 1) * gap), background)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        tile = Image.fromarray(np.asarray(img, dtype=np.uint8), mode="RGBA")
        sheet.paste(tile, (gap + c * (w + gap), gap + r * (h + gap)), tile)
    return np.asarray(sheet)


@dataclass(frozen=True)
class Previews:
    """Paths of the turntable views (in azimuth order) and of the contact sheet."""

    views: list[Path]
    contact_sheet: Path


def write_previews(
    mesh: trimesh.Trimesh,
    out_dir: str | Path,
    *,
    views: int = 8,
    size: int = 512,
    elevation_deg: float = 15.0,
    supersample: float = 1.5,
) -> Previews:
    """Turntable PNGs (transparent background) and a contact sheet of the asset (y-up frame).

    Views are rendered at `supersample` times the size and box-filtered down (anti-aliasing
    that costs less than MSAA on a software rasteriser).

    Files: `view_00.png` ... (azimuth 0 is the front, then counter-clockwise seen from above)
    and `contact_sheet.png`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cams = turntable_cameras(mesh, views=views, elevation_deg=elevation_deg)
    big = max(size, int(round(size * supersample)))
    images = render_views(mesh, cams, width=big, height=big, lit=True, samples=0)
    if big != size:
        images = [
            np.asarray(Image.fromarray(im, mode="RGBA").resize((size, size), Image.Resampling.BOX))
            for im in images
        ]
    paths = []
    for i, img in enumerate(images):
        p = out / f"view_{i:02d}.png"
        Image.fromarray(img, mode="RGBA").save(p, compress_level=1)
        paths.append(p)
    sheet = out / "contact_sheet.png"
    Image.fromarray(contact_sheet(images, columns=min(4, views))).save(sheet, compress_level=1)
    return Previews(views=paths, contact_sheet=sheet)
