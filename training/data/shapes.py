"""Product-like shapes as signed distance functions with procedural colours.

Every shape is built in its own local frame (z up, metres-free units of about 1) from a few
primitives combined by union and subtraction. A `Shape` is pure data plus two pure functions of
points: `sdf(points) -> (N,)` (negative inside) and `color(points) -> (N, 3)`; meshing, posing and
rendering live in `training.data.render`.

Kinds: carton, can, bottle, jar, ball, cone, mug (with a handle), stool, chair; each with random
proportions, base colours, stripes and printed-label patterns drawn from a `numpy.random.Generator`,
so one generator state gives one shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray
SDF = Callable[[Array], Array]
ColorFn = Callable[[Array], Array]

KINDS: tuple[str, ...] = ("carton", "can", "bottle", "jar", "ball", "cone", "mug", "stool", "chair")


# -- primitives (points (N, 3) -> signed distance (N,)) -------------------------------------------
def sd_box(p: Array, half: Array, rounding: float = 0.0) -> Array:
    """Box of half extents `half` (3,) centred at the origin, edges rounded by `rounding`."""
    q = np.abs(p) - (np.asarray(half) - rounding)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(axis=-1), 0.0)
    return outside + inside - rounding


def sd_cylinder(p: Array, radius: float, z0: float, z1: float, rounding: float = 0.0) -> Array:
    """Vertical cylinder of `radius` between heights z0 < z1, edges rounded by `rounding`."""
    zc, hh = 0.5 * (z0 + z1), 0.5 * (z1 - z0)
    d = np.stack([np.hypot(p[:, 0], p[:, 1]) - (radius - rounding), np.abs(p[:, 2] - zc) - (hh - rounding)], -1)
    return np.minimum(d.max(axis=-1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=-1) - rounding


def sd_sphere(p: Array, center: Array, radius: float) -> Array:
    return np.linalg.norm(p - np.asarray(center), axis=-1) - radius


def sd_frustum(p: Array, z0: float, z1: float, r0: float, r1: float) -> Array:
    """Capped cone between heights z0 < z1 with radii r0 (bottom) and r1 (top)."""
    h = 0.5 * (z1 - z0)
    qx = np.hypot(p[:, 0], p[:, 1])
    qy = p[:, 2] - 0.5 * (z0 + z1)
    k1 = np.array([r1, h])
    k2 = np.array([r1 - r0, 2.0 * h])
    ca_x = qx - np.minimum(qx, np.where(qy < 0.0, r0, r1))
    ca_y = np.abs(qy) - h
    t = np.clip(((k1[0] - qx) * k2[0] + (k1[1] - qy) * k2[1]) / float(k2 @ k2), 0.0, 1.0)
    cb_x = qx - k1[0] + k2[0] * t
    cb_y = qy - k1[1] + k2[1] * t
    sign = np.where((cb_x < 0.0) & (ca_y < 0.0), -1.0, 1.0)
    return sign * np.sqrt(np.minimum(ca_x**2 + ca_y**2, cb_x**2 + cb_y**2))


def sd_capsule(p: Array, a: Array, b: Array, radius: float) -> Array:
    """Segment a-b (3,) thickened by `radius`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pa, ba = p - a, b - a
    h = np.clip(pa @ ba / float(ba @ ba), 0.0, 1.0)
    return np.linalg.norm(pa - h[:, None] * ba, axis=-1) - radius


def sd_torus_x(p: Array, center: Array, major: float, minor: float) -> Array:
    """Torus whose axis is the x axis through `center` (it lies in the y-z plane)."""
    q = p - np.asarray(center)
    return np.hypot(np.hypot(q[:, 1], q[:, 2]) - major, q[:, 0]) - minor


# -- colours -----------------------------------------------------------------------------------
def _random_color(rng: np.random.Generator, *, bright: bool = False) -> Array:
    """A saturated product colour (HSV with random hue) as (3,) RGB in [0, 1]."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(0.45, 0.95) if not bright else rng.uniform(0.6, 1.0)
    v = rng.uniform(0.35, 0.95) if not bright else rng.uniform(0.7, 1.0)
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p_, q_, t_ = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t_, p_), (q_, v, p_), (p_, v, t_), (p_, q_, v), (t_, p_, v), (v, p_, q_)][i]
    return np.array(rgb, dtype=np.float64)


@dataclass(frozen=True)
class Pattern:
    """Decoration of a part: horizontal stripes and a printed label band.

    The label spans heights [label_z0, label_z1] and shows bars or a checker of `ink` on `paper`,
    indexed by the angle around the z axis and the height (so it wraps cylinders and boxes alike).
    """

    base: tuple[float, float, float]
    stripe: tuple[float, float, float] | None = None
    stripe_freq: float = 0.0
    stripe_duty: float = 0.5
    label_z: tuple[float, float] | None = None
    paper: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ink: tuple[float, float, float] = (0.0, 0.0, 0.0)
    label_style: str = "bars"  # bars | checker | blocks
    label_freq: float = 8.0

    def __call__(self, p: Array) -> Array:
        out = np.broadcast_to(np.asarray(self.base), (len(p), 3)).copy()
        z = p[:, 2]
        if self.stripe is not None and self.stripe_freq > 0:
            on = np.mod(z * self.stripe_freq, 1.0) < self.stripe_duty
            out[on] = self.stripe
        if self.label_z is not None:
            z0, z1 = self.label_z
            inside = (z >= z0) & (z <= z1)
            ang = (np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi) + 0.5) * self.label_freq
            v = (z - z0) / max(z1 - z0, 1e-6)
            if self.label_style == "bars":
                ink = (np.mod(ang, 1.0) < 0.35) & (v > 0.2) & (v < 0.8)
            elif self.label_style == "checker":
                ink = (np.floor(ang) + np.floor(v * 3.0)).astype(np.int64) % 2 == 0
            else:  # blocks: a "title" block and two "text" lines
                a = np.mod(ang, self.label_freq) / self.label_freq
                ink = ((v > 0.55) & (v < 0.85) & (a > 0.1) & (a < 0.4)) | (
                    (np.abs(v - 0.3) < 0.05) & (np.mod(a * 40.0, 1.0) < 0.7)
                )
            lab = np.where(ink[:, None], np.asarray(self.ink), np.asarray(self.paper))
            out[inside] = lab[inside]
        return out


def _pattern(rng: np.random.Generator, z0: float, z1: float, *, label: float = 0.6, stripes: float = 0.4) -> Pattern:
    """A random decoration for a part spanning heights z0..z1."""
    base = _random_color(rng)
    kw: dict[str, Any] = {"base": tuple(base)}
    if rng.uniform() < stripes:
        kw.update(stripe=tuple(_random_color(rng, bright=True)), stripe_freq=rng.uniform(3.0, 9.0) / max(z1 - z0, 1e-3),
                  stripe_duty=rng.uniform(0.2, 0.5))
    if rng.uniform() < label:
        h = z1 - z0
        c = rng.uniform(z0 + 0.3 * h, z0 + 0.7 * h)
        half = rng.uniform(0.15, 0.3) * h
        kw.update(label_z=(c - half, c + half), paper=tuple(_random_color(rng, bright=True)),
                  ink=tuple(_random_color(rng) * 0.4), label_style=str(rng.choice(["bars", "checker", "blocks"])),
                  label_freq=float(rng.integers(3, 12)))
    return Pattern(**kw)


# -- shapes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One primitive of a shape: its distance function and its colour."""

    name: str
    sdf: SDF
    color: ColorFn
    subtract: bool = False  # carve this part out of everything before it


@dataclass(frozen=True)
class Shape:
    """A product: parts combined in order (union, or subtraction for carved parts).

    Attributes
    ----------
    kind : one of `KINDS`
    parts : the primitives
    bounds : (2, 3) local box that contains the shape
    params : the drawn proportions (JSON-ready)
    """

    kind: str
    parts: tuple[Part, ...]
    bounds: Array
    params: dict[str, Any] = field(default_factory=dict)

    def sdf(self, p: Array) -> Array:
        """(N, 3) local points -> (N,) signed distance (negative inside)."""
        d = np.full(len(p), np.inf)
        for part in self.parts:
            d = np.maximum(d, -part.sdf(p)) if part.subtract else np.minimum(d, part.sdf(p))
        return d

    def color(self, p: Array) -> Array:
        """(N, 3) local points -> (N, 3) RGB in [0, 1]: the colour of the nearest added part."""
        solid = [part for part in self.parts if not part.subtract]
        dist = np.stack([np.abs(part.sdf(p)) for part in solid], axis=0)  # (P, N)
        owner = dist.argmin(axis=0)
        out = np.empty((len(p), 3))
        for i, part in enumerate(solid):
            sel = owner == i
            if sel.any():
                out[sel] = part.color(p[sel])
        # carved surfaces (a mug's inside) take the colour of the nearest solid part as well
        return np.clip(out, 0.0, 1.0)


def _solid(color: Array | tuple[float, float, float]) -> ColorFn:
    c = np.asarray(color, dtype=np.float64)
    return lambda p: np.broadcast_to(c, (len(p), 3)).copy()


def _carton(rng: np.random.Generator) -> Shape:
    half = np.array([rng.uniform(0.12, 0.4), rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.55)])
    r = rng.uniform(0.005, 0.04)
    pat = _pattern(rng, -half[2], half[2], label=0.7)
    parts = (Part("body", lambda p: sd_box(p, half, r), pat),)
    return Shape("carton", parts, np.stack([-half, half]), {"half": half.tolist(), "rounding": r})


def _can(rng: np.random.Generator) -> Shape:
    rad, h = rng.uniform(0.15, 0.3), rng.uniform(0.35, 0.6)
    rim = rng.uniform(0.01, 0.025)
    body = _pattern(rng, 0.0, h, label=0.8)
    metal = _solid(np.full(3, rng.uniform(0.6, 0.85)))
    parts = (
        Part("body", lambda p: sd_cylinder(p, rad, rim, h - rim, 0.01), body),
        Part("lid", lambda p: sd_cylinder(p, rad * 0.92, h - rim - 0.01, h, 0.005), metal),
        Part("base", lambda p: sd_cylinder(p, rad * 0.92, 0.0, rim + 0.01, 0.005), metal),
    )
    b = np.array([[-rad, -rad, 0.0], [rad, rad, h]])
    return Shape("can", parts, b, {"radius": rad, "height": h})


def _bottle(rng: np.random.Generator) -> Shape:
    rad = rng.uniform(0.1, 0.22)
    body_h = rng.uniform(0.35, 0.6)
    shoulder = rng.uniform(0.08, 0.2)
    neck_r = rng.uniform(0.035, 0.07) if rad > 0.08 else rad * 0.6
    neck_h = rng.uniform(0.06, 0.15)
    cap_h = rng.uniform(0.04, 0.09)
    z_s, z_n = body_h, body_h + shoulder
    z_c = z_n + neck_h
    glass = _pattern(rng, 0.0, body_h, label=0.8, stripes=0.2)
    cap = _solid(_random_color(rng))
    parts = (
        Part("body", lambda p: sd_cylinder(p, rad, 0.0, z_s + 0.005, 0.02), glass),
        Part("shoulder", lambda p: sd_frustum(p, z_s, z_n + 0.005, rad, neck_r), glass),
        Part("neck", lambda p: sd_cylinder(p, neck_r, z_n - 0.005, z_c, 0.0), glass),
        Part("cap", lambda p: sd_cylinder(p, neck_r * 1.25, z_c - 0.01, z_c + cap_h, 0.008), cap),
    )
    b = np.array([[-rad, -rad, 0.0], [rad, rad, z_c + cap_h]])
    return Shape("bottle", parts, b, {"radius": rad, "body_height": body_h, "neck_radius": neck_r, "height": z_c + cap_h})


def _jar(rng: np.random.Generator) -> Shape:
    rad, h = rng.uniform(0.18, 0.35), rng.uniform(0.25, 0.5)
    lid_h = rng.uniform(0.05, 0.1)
    body = _pattern(rng, 0.0, h, label=0.9, stripes=0.2)
    lid = _pattern(rng, h, h + lid_h, label=0.0, stripes=0.5)
    parts = (
        Part("body", lambda p: sd_cylinder(p, rad, 0.0, h, 0.04), body),
        Part("lid", lambda p: sd_cylinder(p, rad * 1.04, h - 0.01, h + lid_h, 0.015), lid),
    )
    b = np.array([[-rad * 1.04, -rad * 1.04, 0.0], [rad * 1.04, rad * 1.04, h + lid_h]])
    return Shape("jar", parts, b, {"radius": rad, "height": h, "lid_height": lid_h})


def _ball(rng: np.random.Generator) -> Shape:
    rad = rng.uniform(0.2, 0.45)
    c1, c2 = _random_color(rng), _random_color(rng, bright=True)
    segments = int(rng.integers(2, 7))
    style = str(rng.choice(["segments", "equator", "plain"]))

    def color(p: Array) -> Array:
        ang = np.arctan2(p[:, 1], p[:, 0])
        if style == "segments":
            on = np.mod(np.floor((ang / np.pi + 1.0) * segments), 2) == 0
        elif style == "equator":
            on = np.abs(p[:, 2]) < 0.25 * rad
        else:
            on = np.zeros(len(p), dtype=bool)
        return np.where(on[:, None], c2, c1)

    parts = (Part("ball", lambda p: sd_sphere(p, (0.0, 0.0, 0.0), rad), color),)
    return Shape("ball", parts, np.array([[-rad] * 3, [rad] * 3]), {"radius": rad, "style": style})


def _cone(rng: np.random.Generator) -> Shape:
    r0, h = rng.uniform(0.15, 0.35), rng.uniform(0.4, 0.8)
    r1 = rng.uniform(0.02, 0.3) * r0
    base = rng.uniform() < 0.5
    plate_h = 0.04 if base else 0.0
    body = _pattern(rng, plate_h, h, label=0.0, stripes=0.8)
    parts: list[Part] = [Part("cone", lambda p: sd_frustum(p, plate_h, h, r0, r1), body)]
    half = r0 * 1.15
    if base:
        parts.append(Part("base", lambda p: sd_box(p - np.array([0.0, 0.0, 0.02]), np.array([half, half, 0.02]), 0.01),
                          _solid(_random_color(rng) * 0.5)))
    hb = half if base else r0
    b = np.array([[-hb, -hb, 0.0], [hb, hb, h]])
    return Shape("cone", tuple(parts), b, {"radius": r0, "top_radius": r1, "height": h, "base": bool(base)})


def _mug(rng: np.random.Generator) -> Shape:
    rad, h = rng.uniform(0.15, 0.28), rng.uniform(0.25, 0.45)
    wall = rng.uniform(0.025, 0.04)
    major = rng.uniform(0.28, 0.38) * h
    minor = rng.uniform(0.025, 0.04)
    zc = 0.5 * h
    body = _pattern(rng, 0.0, h, label=0.5, stripes=0.4)
    handle = _solid(_random_color(rng))
    inner = _solid(np.asarray(body.base) * 0.8)
    centre = np.array([0.0, rad, zc])
    parts = (
        Part("body", lambda p: sd_cylinder(p, rad, 0.0, h, 0.01), body),
        Part("handle", lambda p: sd_torus_x(p, centre, major, minor), handle),
        Part("cavity", lambda p: sd_cylinder(p, rad - wall, wall, h + 0.1, 0.01), inner, subtract=True),
    )
    b = np.array([[-rad, -rad, 0.0], [rad, rad + major + minor, h]])
    return Shape("mug", parts, b, {"radius": rad, "height": h, "wall": wall, "handle": [major, minor]})


def _stool(rng: np.random.Generator) -> Shape:
    rad = rng.uniform(0.2, 0.35)
    h = rng.uniform(0.4, 0.75)
    seat_t = rng.uniform(0.04, 0.08)
    legs = int(rng.integers(3, 5))
    leg_r = rng.uniform(0.025, 0.04)
    splay = rng.uniform(0.0, 0.25) * rad
    seat = _pattern(rng, h - seat_t, h, label=0.0, stripes=0.0)
    wood = _solid(_random_color(rng))
    parts: list[Part] = [Part("seat", lambda p: sd_cylinder(p, rad, h - seat_t, h, 0.015), seat)]
    phase = rng.uniform(0, 2 * np.pi)
    top_r, foot_r = rad * 0.7, rad * 0.7 + splay
    for k in range(legs):
        a = phase + 2 * np.pi * k / legs
        top = np.array([top_r * np.cos(a), top_r * np.sin(a), h - seat_t])
        foot = np.array([foot_r * np.cos(a), foot_r * np.sin(a), leg_r])
        parts.append(Part(f"leg{k}", lambda p, t=top, f=foot: sd_capsule(p, t, f, leg_r), wood))
    ext = max(rad, foot_r + leg_r)
    b = np.array([[-ext, -ext, 0.0], [ext, ext, h]])
    return Shape("stool", tuple(parts), b, {"radius": rad, "height": h, "legs": legs})


def _chair(rng: np.random.Generator) -> Shape:
    w, d = rng.uniform(0.2, 0.3), rng.uniform(0.2, 0.3)  # half width (y), half depth (x)
    seat_h = rng.uniform(0.35, 0.5)
    seat_t = rng.uniform(0.03, 0.06)
    back_h = rng.uniform(0.3, 0.5)
    back_t = rng.uniform(0.03, 0.05)
    leg = rng.uniform(0.02, 0.035)
    seat_col = _pattern(rng, seat_h - seat_t, seat_h, label=0.0, stripes=0.0)
    frame = _solid(_random_color(rng))
    back_col = _pattern(rng, seat_h, seat_h + back_h, label=0.0, stripes=0.5)
    seat_c = np.array([0.0, 0.0, seat_h - seat_t / 2])
    back_c = np.array([-d + back_t, 0.0, seat_h + back_h / 2])
    parts: list[Part] = [
        Part("seat", lambda p: sd_box(p - seat_c, np.array([d, w, seat_t / 2]), 0.01), seat_col),
        Part("back", lambda p: sd_box(p - back_c, np.array([back_t, w, back_h / 2]), 0.01), back_col),
    ]
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = np.array([sx * (d - leg), sy * (w - leg), (seat_h - seat_t) / 2])
            parts.append(Part(f"leg{sx}{sy}", lambda p, c=c: sd_box(p - c, np.array([leg, leg, (seat_h - seat_t) / 2 + 0.005]), 0.005), frame))
    b = np.array([[-d, -w, 0.0], [d, w, seat_h + back_h]])
    return Shape("chair", tuple(parts), b, {"half_width": w, "half_depth": d, "seat_height": seat_h, "back_height": back_h})


BUILDERS: dict[str, Callable[[np.random.Generator], Shape]] = {
    "carton": _carton,
    "can": _can,
    "bottle": _bottle,
    "jar": _jar,
    "ball": _ball,
    "cone": _cone,
    "mug": _mug,
    "stool": _stool,
    "chair": _chair,
}


def make_shape(kind: str, rng: np.random.Generator) -> Shape:
    """Draw one shape of `kind` (one of `KINDS`) from `rng`."""
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown shape kind {kind!r} (known: {', '.join(KINDS)})") from None
    return builder(rng)
