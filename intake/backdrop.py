"""Plain-backdrop segmentation for studio shots (white, gray or coloured seamless), no model files.

Pipeline, at an analysis resolution whose long side is ``work_size`` (the photo is area-downscaled):

1. Backdrop colour model: a quadratic colour field per channel fitted to the image border by trimmed
   least squares (so a gradient sweep is modelled and an object or shadow touching the border is
   rejected as outliers); its residual gives the noise level.
2. Colour distance to that field, thresholded with hysteresis (weak pixels are kept when connected to
   strong ones, which closes faint outlines of white-on-white objects).
3. Cast shadows: pixels that are a darkening of the backdrop with the backdrop's chroma, bounded by soft
   (low, and low relative to the local contrast) gradients, reached from the outside, and reaching the
   floor under the object, are backdrop.
4. Morphology and hole filling: small openings removed; enclosed holes filled unless they show the
   backdrop through a sharp-edged opening (a see-through hole such as a chair back).
5. OpenCV GrabCut refines the boundary from that trimap (colour models plus a contrast-sensitive
   smoothness term), restricted to the object's neighbourhood.
6. The edge is moved to the half-contrast line at full resolution (``alpha = d / d_object >= 0.5``),
   which also gives a soft edge; components much smaller than the largest are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from intake.decode import IntakeError, Reason
from intake.types import Segmentation

__all__ = [
    "MODEL_GRAY",
    "BackdropModel",
    "BackdropParams",
    "fit_backdrop",
    "on_model_gray",
    "plain_backdrop_segmentation",
]

#: The model's background gray as the official compositing writes it: int(0.5 * 255).
MODEL_GRAY = 127


@dataclass(frozen=True)
class BackdropParams:
    """Tuning of :func:`plain_backdrop_segmentation` (distances in 0-255 RGB units, sizes in analysis px).

    Attributes
    ----------
    work_size : int
        Long side of the analysis resolution.
    border_fraction : float
        Width of the border strip that models the backdrop, as a fraction of the short side.
    denoise_sigma : float
        Gaussian sigma applied before measuring colour distances (JPEG noise).
    t_low, t_high : float
        Weak and strong colour-distance thresholds of the hysteresis (floors; both also scale with
        the border noise as ``noise_k_low * sigma`` and ``noise_k_high * sigma``).
    noise_k_low, noise_k_high : float
        Noise multipliers of the thresholds.
    shadow_chroma : float
        Largest chroma deviation from the (scaled) backdrop colour of a shadow pixel.
    shadow_min_gain : float
        Darkest accepted shadow, as a fraction of the backdrop brightness.
    shadow_max_gradient : float
        Largest 3x3 morphological gradient of the colour distance inside a soft shadow.
    shadow_relative_gradient : float
        Largest such gradient relative to the local (11x11 maximum) colour distance.
    shadow_floor_margin : float
        A shadow region must reach within this fraction of the height of the object's lowest row.
    close_radius : int
        Radius of the closing that seals outlines before deciding what is enclosed.
    hole_edge : float
        Median boundary gradient above which a backdrop-coloured enclosed hole is see-through.
    grabcut_iterations : int
        GrabCut iterations.
    sure_margin, band_margin : int
        Erosion radius of the sure-foreground core and dilation radius of the uncertain band.
    refine_radius : int
        Radius (analysis px) of the local object-contrast estimate for the edge refinement.
    min_component_ratio : float
        Components smaller than this fraction of the largest are dropped.
    gray_tolerance : float
        Largest deviation of a backdrop from the model gray (127) to count as already preprocessed.
    """

    work_size: int = 512
    border_fraction: float = 0.03
    denoise_sigma: float = 0.8
    t_low: float = 4.0
    t_high: float = 10.0
    noise_k_low: float = 4.0
    noise_k_high: float = 8.0
    shadow_chroma: float = 6.0
    shadow_min_gain: float = 0.45
    shadow_max_gradient: float = 20.0
    shadow_relative_gradient: float = 0.55
    shadow_floor_margin: float = 0.02
    close_radius: int = 9
    hole_edge: float = 12.0
    grabcut_iterations: int = 3
    sure_margin: int = 2
    band_margin: int = 2
    refine_radius: int = 3
    min_component_ratio: float = 0.02
    gray_tolerance: float = 4.0


@dataclass(frozen=True)
class BackdropModel:
    """A smooth colour field fitted to the image border.

    Attributes
    ----------
    coef : np.ndarray
        ``(6, 3) float64`` coefficients of ``[1, x, y, x^2, y^2, xy]`` per RGB channel, with
        ``x, y`` the pixel centre in ``[-0.5, 0.5]`` of the image width and height.
    sigma : float
        Robust noise level of the border around the field (RGB units).
    """

    coef: np.ndarray
    sigma: float

    def field(self, h: int, w: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Evaluate the field on an ``h x w`` image, or on ``box = (x0, y0, x1, y1)`` of it.

        Returns
        -------
        np.ndarray
            ``(h', w', 3) float32`` backdrop colour.
        """
        x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
        x = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / w - 0.5)[None, :]  # (1, w')
        y = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / h - 0.5)[:, None]  # (h', 1)
        c = self.coef.astype(np.float32)
        out = np.empty((y1 - y0, x1 - x0, 3), np.float32)
        for ch in range(3):
            # separable: terms in x only, in y only, and the xy product
            out[..., ch] = (
                (c[0, ch] + c[1, ch] * x + c[3, ch] * x * x)
                + (c[2, ch] * y + c[4, ch] * y * y)
                + c[5, ch] * (y * x)
            )
        return out


def _features(xs: np.ndarray, ys: np.ndarray, h: int, w: int) -> np.ndarray:
    x = (xs + 0.5) / w - 0.5
    y = (ys + 0.5) / h - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)  # (N, 6)


def fit_backdrop(img: np.ndarray, border_fraction: float = 0.03) -> BackdropModel:
    """Fit the backdrop colour field to the border strip by trimmed least squares.

    Parameters
    ----------
    img : np.ndarray
        ``(H, W, 3)`` RGB, any real dtype (0-255 scale).
    border_fraction : float
        Strip width as a fraction of the short side (at least 2 px).

    Returns
    -------
    BackdropModel
    """
    h, w = img.shape[:2]
    b = max(2, int(round(border_fraction * min(h, w))))
    strip = np.zeros((h, w), bool)
    strip[:b] = strip[-b:] = True
    strip[:, :b] = strip[:, -b:] = True
    ys, xs = np.nonzero(strip)
    step = max(1, len(ys) // 8000)  # a few thousand samples pin six coefficients down
    ys, xs = ys[::step], xs[::step]
    X = _features(xs.astype(np.float64), ys.astype(np.float64), h, w)  # (N, 6)
    Y = img[ys, xs].astype(np.float64)  # (N, 3)
    keep = np.ones(len(ys), bool)
    # Trim the worst residuals: objects, shadows and vignettes touching the border are outliers.
    for q in (80.0, 65.0, 65.0):
        coef = np.linalg.lstsq(X[keep], Y[keep], rcond=None)[0]
        res = np.linalg.norm(Y - X @ coef, axis=1)
        keep = res <= np.percentile(res, q)
    coef = np.linalg.lstsq(X[keep], Y[keep], rcond=None)[0]
    res = np.linalg.norm(Y - X @ coef, axis=1)
    sigma = float(1.4826 * np.median(res) + 0.5)
    keep = res < max(3.0 * sigma, 4.0)
    coef = np.linalg.lstsq(X[keep], Y[keep], rcond=None)[0]
    return BackdropModel(coef=coef, sigma=sigma)


def _disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _u8(m: np.ndarray) -> np.ndarray:
    return m.astype(np.uint8)


def _border_labels(lab: np.ndarray) -> np.ndarray:
    b = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return b[b > 0]


def _hysteresis(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Weak pixels 8-connected to a strong one. ``(H, W) bool`` in and out."""
    _, lab = cv2.connectedComponents(_u8(weak), connectivity=8)
    good = np.unique(lab[strong & weak])
    return np.isin(lab, good[good > 0])


def _close(m: np.ndarray, r: int) -> np.ndarray:
    return cv2.morphologyEx(_u8(m), cv2.MORPH_CLOSE, _disc(r)).astype(bool)


def _cast_shadows(
    fg: np.ndarray, d: np.ndarray, f: np.ndarray, bg: np.ndarray, sigma: float, p: BackdropParams
) -> np.ndarray:
    """Pixels of ``fg`` that are a soft cast shadow on the backdrop. ``(H, W) bool``."""
    gain = (f * bg).sum(-1) / np.maximum((bg * bg).sum(-1), 1.0)  # (H, W) brightness ratio to the backdrop
    chroma = np.linalg.norm(f - gain[..., None] * bg, axis=-1)  # (H, W) deviation from the backdrop's hue
    darker = (chroma < max(3.0 * sigma, p.shadow_chroma)) & (gain > p.shadow_min_gain) & (gain < 1.0)
    # Softness is judged on the distance map itself: a shadow's penumbra ramps slowly, an object's
    # edge steps by most of its contrast within the 3x3 window.
    grad = cv2.morphologyEx(d, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))  # (H, W)
    local = cv2.dilate(d, np.ones((11, 11), np.uint8))
    soft = (grad < max(4.0 * sigma, p.shadow_max_gradient)) & (grad < p.shadow_relative_gradient * local)
    candidate = fg & darker & soft
    hard = fg & ~candidate
    rows = np.nonzero(hard.any(axis=1))[0]
    if not len(rows) or not candidate.any():
        return np.zeros_like(fg)
    floor = rows.max() - p.shadow_floor_margin * fg.shape[0]
    outside = ~ndimage.binary_fill_holes(_close(fg, p.close_radius))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(_u8(candidate), connectivity=4)
    touching = np.unique(lab[cv2.dilate(_u8(outside), np.ones((3, 3), np.uint8)).astype(bool)])
    touching = touching[touching > 0]
    # A contact shadow lies on the floor under the object: its region reaches the object's lowest rows.
    lowest = stats[touching, cv2.CC_STAT_TOP] + stats[touching, cv2.CC_STAT_HEIGHT] - 1
    chosen = touching[lowest >= floor]
    return np.isin(lab, chosen) & candidate


def _fill_holes(
    fg: np.ndarray, d: np.ndarray, grad: np.ndarray, t_low: float, p: BackdropParams
) -> tuple[np.ndarray, np.ndarray]:
    """Fill enclosed holes except see-through ones; return ``(filled, see_through)`` masks."""
    closed = _close(fg, p.close_radius)
    holes = ndimage.binary_fill_holes(closed) & ~closed
    n, lab = cv2.connectedComponents(_u8(holes), connectivity=4)
    if n <= 1:
        return fg, np.zeros_like(fg)
    idx = np.arange(1, n)
    ring_lab = cv2.dilate(lab.astype(np.float32), _disc(2)).astype(np.int32)
    ring_lab[holes | ~cv2.dilate(_u8(holes), _disc(2)).astype(bool)] = 0

    def majority(labels: np.ndarray, hit: np.ndarray) -> np.ndarray:
        # per label: more than half its pixels satisfy ``hit`` (a median test, via bincount)
        total = np.bincount(labels.ravel(), minlength=n)[1:]
        yes = np.bincount(labels.ravel(), weights=hit.ravel(), minlength=n)[1:]
        return (total > 0) & (yes * 2 > total)

    see_through = majority(lab, d < t_low) & majority(ring_lab, grad > p.hole_edge)
    kept = np.isin(lab, idx[see_through])
    return fg | (holes & ~kept), kept


def _grabcut(small: np.ndarray, pre: np.ndarray, keep_out: np.ndarray, p: BackdropParams) -> np.ndarray:
    """GrabCut from a trimap built around ``pre``, on the object's neighbourhood only."""
    band = cv2.dilate(_u8(pre), _disc(p.band_margin)).astype(bool)
    ys, xs = np.nonzero(band)
    pad = 8 + 2 * p.band_margin
    y0, y1 = max(0, ys.min() - pad), min(pre.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(pre.shape[1], xs.max() + pad + 1)
    gc = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    sl = (slice(y0, y1), slice(x0, x1))
    gc[band[sl]] = cv2.GC_PR_BGD
    gc[pre[sl]] = cv2.GC_PR_FGD
    gc[cv2.erode(_u8(pre), _disc(p.sure_margin)).astype(bool)[sl]] = cv2.GC_FGD
    gc[keep_out[sl]] = cv2.GC_PR_BGD
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: same photo, same mask
    try:
        cv2.grabCut(
            np.ascontiguousarray(small[sl]), gc, None, bgd, fgd, p.grabcut_iterations, cv2.GC_INIT_WITH_MASK
        )
    except cv2.error:
        # No background (or foreground) samples to model in the window: keep the colour mask.
        return pre
    out = np.zeros_like(pre)
    out[sl] = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return out


def _keep_components(m: np.ndarray, ratio: float) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(_u8(m), connectivity=8)
    if n <= 1:
        return m
    areas = stats[1:, cv2.CC_STAT_AREA]
    good = np.nonzero(areas >= ratio * areas.max())[0] + 1
    return np.isin(lab, good)


def _refine_edges(
    rgb: np.ndarray,
    mask_lo: np.ndarray,
    frozen_lo: np.ndarray,
    model: BackdropModel,
    p: BackdropParams,
) -> np.ndarray:
    """Full-resolution soft mask: upsample, then put the edge on the half-contrast line.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3) uint8`` full-resolution photo.
    mask_lo : np.ndarray
        ``(h, w) bool`` mask at the analysis resolution.
    frozen_lo : np.ndarray
        ``(h, w) bool`` pixels whose label is not refined (next to cast shadows).
    model : BackdropModel
        The backdrop field (resolution independent).

    Returns
    -------
    np.ndarray
        ``(H, W) uint8`` mask, soft on the refined edge.
    """
    H, W = rgb.shape[:2]
    h, w = mask_lo.shape
    scale = max(H / h, W / w)
    if (h, w) != (H, W):
        up = cv2.resize(mask_lo.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)  # (H, W)
        frozen = cv2.resize(_u8(frozen_lo), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
    else:
        up = mask_lo.astype(np.float32)
        frozen = frozen_lo
    binary = up >= 0.5
    r_band = max(2, int(np.ceil(p.band_margin * scale)))
    r_inner = max(1, int(round(scale)))
    r_box = max(p.refine_radius, int(round(p.refine_radius * scale)))
    mu = _u8(binary)
    band = cv2.dilate(mu, _disc(r_band)).astype(bool) & ~cv2.erode(mu, _disc(r_band)).astype(bool) & ~frozen
    out = mu * np.uint8(255)
    if not band.any():
        return out
    ys, xs = np.nonzero(band)
    pad = r_band + r_box + 2
    y0, y1 = max(0, ys.min() - pad), min(H, ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(W, xs.max() + pad + 1)
    sl = (slice(y0, y1), slice(x0, x1))
    d = _distance(rgb[sl].astype(np.float32), model.field(H, W, (x0, y0, x1, y1)))  # (h', w')
    inner = cv2.erode(mu[sl], _disc(r_inner)).astype(np.float32)
    k = (2 * r_box + 1, 2 * r_box + 1)
    num = cv2.blur(d * inner, k)
    den = cv2.blur(inner, k)
    contrast = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)  # (h', w') local object contrast
    alpha = np.where(contrast > 0, d / np.maximum(contrast, 1e-3), 0.0)
    # Noise-level estimates (under 10 % or over 90 %) snap to 0 / 255; the 0.5 level is unchanged.
    soft = np.round(np.clip((alpha - 0.1) / 0.8, 0.0, 1.0) * 255).astype(np.uint8)
    b = band[sl]
    region = out[sl]
    region[b] = soft[b]
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean RGB distance of two ``(H, W, 3) float32`` images. ``(H, W) float32``."""
    diff = a - b
    return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


def _is_on_gray(field: np.ndarray, sigma: float, tol: float) -> bool:
    return bool(np.abs(field - MODEL_GRAY).max() <= tol and sigma <= tol)


def _analysis_image(rgb: np.ndarray, p: BackdropParams) -> np.ndarray:
    """Area-downscaled copy whose long side is at most ``work_size``. ``(h, w, 3) uint8``."""
    H, W = rgb.shape[:2]
    s = min(1.0, p.work_size / max(H, W))
    if s >= 1.0:
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)


def on_model_gray(rgb: np.ndarray, params: BackdropParams = BackdropParams()) -> bool:
    """True when the photo's backdrop already is the model's gray 0.5 (an already preprocessed input).

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3) uint8`` photo.
    """
    small = _analysis_image(rgb, params)
    f = cv2.GaussianBlur(small.astype(np.float32), (0, 0), params.denoise_sigma)
    model = fit_backdrop(f, params.border_fraction)
    return _is_on_gray(model.field(*f.shape[:2]), model.sigma, params.gray_tolerance)


def plain_backdrop_segmentation(
    rgb: np.ndarray, *, name: str, params: BackdropParams = BackdropParams()
) -> Segmentation:
    """Segment the object of a studio photo on a plain backdrop.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3) uint8`` photo.
    name : str
        Input name for error messages.
    params : BackdropParams
        Tuning.

    Returns
    -------
    Segmentation
        ``mask`` ``(H, W) uint8`` (soft edges); ``confidence`` is the IoU between the colour-model
        mask and the GrabCut-refined one (1 when both agree); ``backdrop_contrast`` is the median
        colour distance of the object's pixels to the backdrop; ``on_gray`` tells an input already
        on the model's gray.

    Raises
    ------
    IntakeError
        ``no_foreground`` when nothing differs from the backdrop.
    """
    p = params
    small = _analysis_image(rgb, p)
    h, w = small.shape[:2]
    f = cv2.GaussianBlur(small.astype(np.float32), (0, 0), p.denoise_sigma)  # (h, w, 3)
    model = fit_backdrop(f, p.border_fraction)
    bg = model.field(h, w)  # (h, w, 3)
    d = _distance(f, bg)  # (h, w) colour distance to the backdrop
    sigma = model.sigma
    t_low = max(p.noise_k_low * sigma, p.t_low)
    t_high = max(p.noise_k_high * sigma, p.t_high)
    fg = _hysteresis(d > t_low, d > t_high)
    if not fg.any():
        raise IntakeError(Reason.NO_FOREGROUND, name, "no object stands out from the backdrop")
    shadow = _cast_shadows(fg, d, f, bg, sigma, p)
    fg = cv2.morphologyEx(_u8(fg & ~shadow), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    if not fg.any():
        raise IntakeError(Reason.NO_FOREGROUND, name, "only a shadow differs from the backdrop")
    grad = cv2.morphologyEx(f, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).max(-1)
    pre, see_through = _fill_holes(fg, d, grad, t_low, p)
    pre = _keep_components(pre, p.min_component_ratio)
    cut = _grabcut(small, pre, see_through, p)
    cut = _keep_components(cut, p.min_component_ratio)
    if not cut.any():
        raise IntakeError(Reason.NO_FOREGROUND, name, "the refined object mask is empty")
    agreement = float((cut & pre).sum() / max(1, (cut | pre).sum()))
    frozen = cv2.dilate(_u8(shadow), _disc(p.band_margin + 1)).astype(bool)
    mask = _refine_edges(rgb, cut, frozen, model, p)
    return Segmentation(
        mask=mask,
        method="plain-backdrop",
        confidence=agreement,
        backdrop_contrast=float(np.median(d[cut])),
        on_gray=_is_on_gray(bg, sigma, p.gray_tolerance),
    )
