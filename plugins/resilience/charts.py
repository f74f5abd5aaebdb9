"""Inline SVG charts for HTML reports: no JavaScript, no external assets."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

STATUS_COLOURS = {"success": "#2e7d32", "failed": "#c62828", "running": "#f9a825", "skipped": "#9e9e9e"}
SERIES_COLOURS = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00")


def timeline(rows: Sequence[dict], width: int = 760, bar_h: int = 22) -> str:
    """A Gantt chart of phases: ``rows`` have ``phase``, ``status``, ``offset_s``, ``duration_s``."""
    if not rows:
        return "<p>No phase ran.</p>"
    label_w, pad = 150, 40
    total = max(r["offset_s"] + r["duration_s"] for r in rows) or 1.0
    scale = (width - label_w - pad) / total
    height = len(rows) * (bar_h + 8) + 30
    parts = [f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="phase timeline">']
    for i, r in enumerate(rows):
        y = 10 + i * (bar_h + 8)
        x = label_w + r["offset_s"] * scale
        w = max(2.0, r["duration_s"] * scale)
        colour = STATUS_COLOURS.get(r["status"], "#607d8b")
        parts.append(f'<text x="0" y="{y + bar_h * 0.7:.0f}">{escape(r["phase"])}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                     f'<title>{escape(r["phase"])}: {r["duration_s"]:.2f} s ({escape(r["status"])})</title></rect>')
        parts.append(f'<text x="{x + w + 4:.1f}" y="{y + bar_h * 0.7:.0f}" class="small">'
                     f'{r["duration_s"]:.1f} s</text>')
    axis_y = height - 8
    parts.append(f'<text x="{label_w}" y="{axis_y}" class="small">0 s</text>')
    parts.append(f'<text x="{width - pad:.0f}" y="{axis_y}" class="small" text-anchor="end">{total:.1f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    unit: str,
    thresholds: dict[str, float] | None = None,
    shade: tuple[int, int] | None = None,
    baseline: tuple[int, int] | None = None,
    width: int = 760,
    height: int = 240,
) -> str:
    """Lines over categorical x ``labels``; dashed ``thresholds``; optional shaded index ranges: ``shade`` (red:
    the fault window) and ``baseline`` (green: where the baseline was measured)."""
    values = [v for s in series.values() for v in s if v is not None] + list((thresholds or {}).values())
    if not labels or not values:
        return "<p>No data yet.</p>"
    left, right, top, bottom = 60, 50, 10, 40
    top_value = max(values) * 1.1 or 1.0
    n = len(labels)

    def px(i: int) -> float:
        return left + (i * (width - left - right) / (n - 1) if n > 1 else (width - left - right) / 2)

    def py(v: float) -> float:
        return top + (1 - v / top_value) * (height - top - bottom)

    parts = [f'<svg class="chart" width="{width}" height="{height}" role="img">']
    for band, fill in ((shade, "#ffcdd2"), (baseline, "#c8e6c9")):
        if band:
            x0, x1 = px(band[0]), px(band[1])
            parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 2):.1f}" '
                         f'height="{height - top - bottom}" fill="{fill}" opacity="0.5"/>')
    parts.append(f'<line x1="{left}" y1="{py(0):.1f}" x2="{width - right}" y2="{py(0):.1f}" stroke="#999"/>')
    parts.append(f'<text x="{left - 6}" y="{py(top_value / 1.1):.0f}" class="small" text-anchor="end">'
                 f'{top_value / 1.1:.3g} {escape(unit)}</text>')
    parts.append(f'<text x="{left - 6}" y="{py(0):.0f}" class="small" text-anchor="end">0</text>')
    for name, value in (thresholds or {}).items():
        parts.append(f'<line x1="{left}" y1="{py(value):.1f}" x2="{width - right}" y2="{py(value):.1f}" '
                     f'stroke="#c62828" stroke-dasharray="6 4"><title>{escape(name)}</title></line>')
        parts.append(f'<text x="{width - right}" y="{py(value) - 3:.0f}" class="small" text-anchor="end" '
                     f'fill="#c62828">{escape(name)}</text>')
    for k, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        coords = [(px(i), py(v)) for i, v in enumerate(points) if v is not None]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in coords:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        parts.append(f'<text x="{left + 10 + 140 * k}" y="{height - 6}" fill="{colour}">■ {escape(name)}</text>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        parts.append(f'<text x="{px(i):.1f}" y="{height - bottom + 16}" class="small" text-anchor="middle">'
                     f'{escape(labels[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)
