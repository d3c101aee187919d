"""Small server-side SVG line charts for job curves (same look and sizes as core/svg.py's
bar chart, no chart library, no CDN). Every text is escaped."""
import math

from django.utils.html import escape
from django.utils.safestring import mark_safe

from webapp.core.svg import BOTTOM, RIGHT, TOP

WIDTH, HEIGHT = 360, 180
LEFT = 58  # room for labels like 0.000308
MAX_POINTS = 400  # longer curves are thinned to this many points (the last point is always kept)


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else kept + [points[-1]]


def _ticks(low: float, high: float) -> list[tuple[float, str]]:
    """Four ticks, labelled with just enough digits to tell them apart."""
    values = [low + (high - low) * i / 3 for i in range(4)]
    for digits in (3, 4, 5, 6):
        labels = [f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            break
    return list(zip(values, labels))


def line_chart(points: list[tuple[float, float]], title: str, x_label: str = "step") -> str:
    """points: (step, value) in step order; an empty list draws an empty frame marked "—"."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM + 12
    points = thin([(float(x), float(y)) for x, y in points if math.isfinite(y)])
    parts = [f'<svg class="chart line-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}" data-metric="{escape(title)}">'
             f'<title>{escape(title)}</title><text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>']
    if not points:
        parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" class="tick" '
                     f'text-anchor="middle">—</text></svg>')
        return mark_safe("".join(parts))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    x1 = x1 if x1 > x0 else x0 + 1

    def sx(x: float) -> float:
        return LEFT + plot_w * (x - x0) / (x1 - x0)

    def sy(y: float) -> float:
        return TOP + plot_h * (1.0 - (y - y0) / (y1 - y0))

    for tick, label in _ticks(y0, y1):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{sy(tick) + 4:.1f}" class="tick" text-anchor="end">{label}</text>')
    base = TOP + plot_h
    parts.append(f'<text x="{LEFT}" y="{base + 16:.1f}" class="tick">{x0:g}</text>'
                 f'<text x="{WIDTH - RIGHT}" y="{base + 16:.1f}" class="tick" text-anchor="end">{x1:g} {escape(x_label)}</text>')
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    parts.append(f'<polyline points="{path}" class="curve" fill="none"/>')
    last_x, last_y = points[-1]
    parts.append(f'<circle cx="{sx(last_x):.1f}" cy="{sy(last_y):.1f}" r="3" class="curve-end">'
                 f'<title>{escape(title)} at {last_x:g}: {last_y:.4g}</title></circle>'
                 f'<text x="{WIDTH - RIGHT}" y="16" class="value" text-anchor="end">{last_y:.4g}</text></svg>')
    return mark_safe("".join(parts))
