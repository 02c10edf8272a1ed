"""The report's charts as inline SVG (bars, histogram, calibration, heat cells): no scripts, no
external resources."""

from __future__ import annotations

import math
from typing import Any

from clarion.report.fmt import BLUE, e


# -- charts (inline SVG) ---------------------------------------------------------------------------
def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">'
        f"<title>{e(title)}</title>" + "".join(body) + "</svg>"
    )


def hbars(items: list[tuple[str, float, str, str]], title: str, width: int = 640, label_w: int = 150) -> str:
    """Horizontal bars: (label, value, value text, colour)."""
    if not items:
        return ""
    text_w, bar_h, gap = 90, 15, 5
    span = width - label_w - text_w
    top = max((v for _, v, _, _ in items), default=0) or 1
    height = len(items) * (bar_h + gap) + gap
    body = []
    for i, (name, value, text, colour) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(0.0, value) / top * span
        body.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 4}" text-anchor="end">{e(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}" rx="2"/>'
            f'<text x="{label_w + w + 5:.1f}" y="{y + bar_h - 4}" fill="#57606a">{e(text)}</text>'
        )
    return _svg(width, height, body, title)


def histogram(bins: list[dict[str, Any]], title: str, width: int = 330, height: int = 230) -> str:
    left, right, top, bottom = 46, 10, 12, 40
    span_x, span_y = width - left - right, height - top - bottom
    peak = max((b["customers"] for b in bins), default=0) or 1
    step = span_x / max(1, len(bins))
    body = [
        f'<line x1="{left}" y1="{top + span_y}" x2="{left + span_x}" y2="{top + span_y}" stroke="#8c959f"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + span_y}" stroke="#8c959f"/>',
    ]
    for tick in _ticks(peak):
        y = top + span_y - tick / peak * span_y
        body.append(
            f'<line x1="{left - 3}" y1="{y:.1f}" x2="{left + span_x}" y2="{y:.1f}" stroke="#eaeef2"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#57606a">{tick:,}</text>'
        )
    for i, b in enumerate(bins):
        h = b["customers"] / peak * span_y
        x = left + i * step
        tip = f"{b['from']:.1f}-{b['to']:.1f}: {b['customers']:,} customers"
        body.append(
            f'<rect x="{x + 2:.1f}" y="{top + span_y - h:.1f}" width="{step - 4:.1f}" height="{h:.1f}" '
            f'fill="{BLUE}" fill-opacity="0.8"><title>{e(tip)}</title></rect>'
        )
    for i in range(len(bins) + 1):
        if i % 2 == 0:
            x = left + i * step
            body.append(
                f'<text x="{x:.1f}" y="{top + span_y + 14}" text-anchor="middle">{i / len(bins):.1f}</text>'
            )
    body.append(
        f'<text x="{left + span_x / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        "purchase probability in the horizon</text>"
    )
    return _svg(width, height, body, title)


def calibration(points: list[dict[str, Any]], title: str, size: int = 220) -> str:
    pad = 40
    span = size - 2 * pad + 20

    def xy(p: float, o: float) -> tuple[float, float]:
        return pad + p * span, pad - 20 + span - o * span

    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    body = [
        f'<rect x="{x0}" y="{y1}" width="{span}" height="{span}" fill="none" stroke="#8c959f"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#8c959f" stroke-dasharray="4"/>',
    ]
    line = " ".join("{:.1f},{:.1f}".format(*xy(p["predicted"], p["observed"])) for p in points)
    if line:
        body.append(f'<polyline points="{line}" fill="none" stroke="{BLUE}" stroke-width="1.5"/>')
    for p in points:
        cx, cy = xy(p["predicted"], p["observed"])
        r = 2.5 + min(5.0, p["customers"] ** 0.25)
        tip = (
            f"{p['bin']}: {p['customers']:,} customers, "
            f"predicted {p['predicted']:.2f}, observed {p['observed']:.2f}"
        )
        body.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{BLUE}" fill-opacity="0.7">'
            f"<title>{e(tip)}</title></circle>"
        )
    for t in (0, 0.5, 1):
        tx, _ = xy(t, 0)
        _, ty = xy(0, t)
        body.append(f'<text x="{tx:.1f}" y="{y0 + 14:.1f}" text-anchor="middle">{t:g}</text>')
        body.append(f'<text x="{x0 - 5:.1f}" y="{ty + 4:.1f}" text-anchor="end">{t:g}</text>')
    body.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{size + 12}" text-anchor="middle">predicted</text>')
    mid = (y0 + y1) / 2
    body.append(
        f'<text x="11" y="{mid:.1f}" transform="rotate(-90 11 {mid:.1f})" '
        'text-anchor="middle">observed</text>'
    )
    return _svg(size + 10, size + 20, body, title)


def _ticks(peak: float) -> list[int]:
    if peak <= 0:
        return []
    raw = peak / 4
    mag = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = max(1, int(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)))
    return list(range(step, int(peak) + 1, step))


def _heat(value: int, peak: int, colour: tuple[int, int, int] = (31, 111, 235)) -> str:
    share = value / peak if peak else 0
    alpha = 0.08 + 0.72 * share if value else 0.0
    ink = "#fff" if share > 0.6 else "#1f2328"
    return f"background: rgba({colour[0]},{colour[1]},{colour[2]},{alpha:.2f}); color: {ink};"
