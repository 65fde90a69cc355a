"""Hand-written inline SVG charts (grouped bars, lines) for the report; no plotting library needed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")
WIDTH, HEIGHT = 640, 270
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 44, 48
CHAR_WIDTH = 7  # 11px sans-serif, generous so labels never touch


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `raw`."""
    if raw <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw * (1 - 1e-9):
            return factor * magnitude
    return 10 * magnitude


def _scale(y_min: float, y_max: float | None, data_max: float) -> tuple[float, float]:
    """(axis top, tick step): about five round ticks from y_min up to y_max or the data's maximum."""
    top = y_max if y_max is not None else max(data_max, y_min + 1e-9)
    step = _nice_step((top - y_min) / 5)
    if y_max is None:
        top = y_min + math.ceil((top - y_min) / step - 1e-9) * step
    return top, step


def _axis(title: str, y_min: float, y_max: float, step: float, y_format: str) -> list[str]:
    parts = [f'<text x="{LEFT}" y="16" class="t">{escape(title)}</text>']
    plot_h = HEIGHT - TOP - BOTTOM
    ticks = max(1, round((y_max - y_min) / step))
    for i in range(ticks + 1):
        value = y_min + step * i
        y = TOP + plot_h - plot_h * (value - y_min) / ((y_max - y_min) or 1.0)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="yl">{format(value, y_format)}</text>')
    return parts


def _legend(series: Sequence[str]) -> list[str]:
    """One row of swatches under the title, left to right."""
    parts, x = [], LEFT
    for index, name in enumerate(series):
        parts.append(f'<rect x="{x}" y="24" width="10" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>'
                     f'<text x="{x + 14}" y="33" class="lg">{escape(name)}</text>')
        x += 14 + CHAR_WIDTH * len(name) + 12
    return parts


def _height(value: float, y_min: float, y_max: float) -> float:
    """Pixel height of a value on an axis from y_min to y_max (clipped to the plot)."""
    plot_h = HEIGHT - TOP - BOTTOM
    span = (y_max - y_min) or 1.0
    return plot_h * min(max((value - y_min) / span, 0.0), 1.0)


def _svg(parts: list[str]) -> str:
    style = ("<style>.t{font:600 13px sans-serif}.g{stroke:#ddd}.yl{font:11px sans-serif;text-anchor:end}"
             ".xl{font:11px sans-serif;text-anchor:middle}.lg{font:11px sans-serif}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img">{style}' + "".join(parts) + "</svg>")


def bar_chart(title: str, categories: Sequence[str], series: dict[str, Sequence[float]],
              y_max: float | None = None, y_format: str = ",.0f", y_min: float = 0.0) -> str:
    """Grouped vertical bars: one group per category, one bar per series (axis from y_min, e.g. to zoom on 90-100%)."""
    top, step = _scale(y_min, y_max, max((v for vs in series.values() for v in vs), default=0))
    parts = _axis(title, y_min, top, step, y_format)
    if len(series) > 1:
        parts += _legend(list(series))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for c, category in enumerate(categories):
        x0 = LEFT + c * group_w + group_w * 0.1
        for s, (name, values) in enumerate(series.items()):
            value = values[c]
            h = _height(value, y_min, top)
            x, y = x0 + s * bar_w, TOP + plot_h - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(category)} {escape(name)}: '
                         f'{format(value, y_format)}</title></rect>')
        parts.append(f'<text x="{LEFT + (c + 0.5) * group_w:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                     f'class="xl">{escape(category)}</text>')
    return _svg(parts)


def line_chart(title: str, series: dict[str, Sequence[float]], x_label: str,
               y_max: float | None = None, y_format: str = ",.0f") -> str:
    """One polyline per series over x = 1..len(values)."""
    top, step = _scale(0.0, y_max, max((v for vs in series.values() for v in vs), default=0))
    parts = _axis(title, 0.0, top, step, y_format)
    if len(series) > 1:
        parts += _legend(list(series))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    longest = max((len(v) for v in series.values()), default=1)
    for s, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{LEFT + plot_w * i / max(longest - 1, 1):.1f},{TOP + plot_h - _height(v, 0.0, top):.1f}"
            for i, v in enumerate(values)
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[s % len(PALETTE)]}" '
                     f'stroke-width="1.5"><title>{escape(name)}</title></polyline>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - BOTTOM + 16}" class="xl">1</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - BOTTOM + 16}" class="xl">{longest}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 10}" class="xl">{escape(x_label)}</text>')
    return _svg(parts)
