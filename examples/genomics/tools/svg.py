"""Hand-written inline SVG charts (grouped bars, lines) for the report; no plotting library needed."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 48


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value`."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return value


def _axis(title: str, y_max: float, y_format: str) -> list[str]:
    parts = [f'<text x="{LEFT}" y="16" class="t">{escape(title)}</text>']
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="yl">{format(value, y_format)}</text>')
    return parts


def _legend(series: Sequence[str]) -> list[str]:
    parts, x = [], WIDTH - RIGHT
    for index in reversed(range(len(series))):
        label = escape(series[index])
        x -= 14 + 7 * len(series[index])
        parts.append(f'<rect x="{x}" y="7" width="10" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>'
                     f'<text x="{x + 13}" y="16" class="lg">{label}</text>')
    return parts


def _svg(parts: list[str]) -> str:
    style = ("<style>.t{font:600 13px sans-serif}.g{stroke:#ddd}.yl{font:11px sans-serif;text-anchor:end}"
             ".xl{font:11px sans-serif;text-anchor:middle}.lg{font:11px sans-serif}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img">{style}' + "".join(parts) + "</svg>")


def bar_chart(title: str, categories: Sequence[str], series: dict[str, Sequence[float]],
              y_max: float | None = None, y_format: str = ",.0f") -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    top = y_max if y_max is not None else _nice_max(max((v for vs in series.values() for v in vs), default=0))
    parts = _axis(title, top, y_format)
    if len(series) > 1:
        parts += _legend(list(series))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for c, category in enumerate(categories):
        x0 = LEFT + c * group_w + group_w * 0.1
        for s, (name, values) in enumerate(series.items()):
            value = values[c]
            h = plot_h * min(value / top, 1.0) if top else 0
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
    top = y_max if y_max is not None else _nice_max(max((v for vs in series.values() for v in vs), default=0))
    parts = _axis(title, top, y_format)
    if len(series) > 1:
        parts += _legend(list(series))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    longest = max((len(v) for v in series.values()), default=1)
    for s, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{LEFT + plot_w * i / max(longest - 1, 1):.1f},{TOP + plot_h - plot_h * min(v / top, 1.0):.1f}"
            for i, v in enumerate(values)
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[s % len(PALETTE)]}" '
                     f'stroke-width="1.5"><title>{escape(name)}</title></polyline>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - BOTTOM + 16}" class="xl">1</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - BOTTOM + 16}" class="xl">{longest}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 10}" class="xl">{escape(x_label)}</text>')
    return _svg(parts)
