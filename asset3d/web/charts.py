"""Small inline-SVG charts for the overview page (no JavaScript, no chart library).

* `distribution_svg`: one metric over assets as a range bar (min to max), the bulk (min to 95th
  percentile) and a tick at the median;
* `status_bar_svg`: asset counts by status as one stacked bar.

Every number is formatted here and every text escaped; the result is safe to insert as markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from asset3d.web.present import fmt_number
from storage.catalogue import Distribution

#: colours by status (also used by the stylesheet's badges)
STATUS_COLOURS: dict[str, str] = {
    "needs_review": "#d97706",
    "auto_approved": "#16a34a",
    "approved": "#15803d",
    "rejected": "#dc2626",
    "failed": "#7f1d1d",
    "pending": "#6b7280",
    "superseded": "#9ca3af",
}


def distribution_svg(name: str, d: Distribution, *, width: int = 220, height: int = 26) -> str:
    """A range bar for one metric: thin line min..max, thick bar min..p95, dark tick at the median."""
    pad = 4
    span = d.max - d.min

    def x(v: float) -> float:
        return pad + (width - 2 * pad) * ((v - d.min) / span if span > 0 else 0.5)

    mid = height / 2
    title = escape(
        f"{name}: n={d.count}, min {fmt_number(d.min)}, median {fmt_number(d.median)}, "
        f"p95 {fmt_number(d.p95)}, max {fmt_number(d.max)}"
    )
    return (
        f'<svg class="dist" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
        f'<line x1="{x(d.min):.1f}" y1="{mid}" x2="{x(d.max):.1f}" y2="{mid}" stroke="#9ca3af" stroke-width="1"/>'
        f'<rect x="{x(d.min):.1f}" y="{mid - 5}" width="{max(x(d.p95) - x(d.min), 1.5):.1f}" height="10" '
        f'fill="#93c5fd"/>'
        f'<line x1="{x(d.median):.1f}" y1="{mid - 8}" x2="{x(d.median):.1f}" y2="{mid + 8}" stroke="#1e3a8a" '
        f'stroke-width="2"/>'
        f'<circle cx="{x(d.max):.1f}" cy="{mid}" r="2" fill="#374151"/></svg>'
    )


def status_bar_svg(counts: Mapping[str, int], *, width: int = 480, height: int = 18) -> str:
    """Counts by status as one stacked bar, each segment titled with its status and count."""
    total = sum(counts.values())
    parts = []
    left = 0.0
    for status, n in counts.items():
        if n <= 0 or total == 0:
            continue
        w = width * n / total
        colour = STATUS_COLOURS.get(status, "#6b7280")
        parts.append(
            f'<rect x="{left:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{colour}">'
            f"<title>{escape(status)}: {n}</title></rect>"
        )
        left += w
    if not parts:
        parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#e5e7eb"/>')
    return (
        f'<svg class="status-bar" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>assets by status</title>{"".join(parts)}</svg>'
    )
