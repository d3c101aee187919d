"""A tiny server-side SVG bar chart (values in [0, 1] with confidence whiskers), so the
alignment page needs no chart library and no CDN. Every text is escaped."""
import math

from django.utils.html import escape
from django.utils.safestring import mark_safe

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 26, 46


def bar_chart(bars: list[dict], title: str, y_label: str = "agreement") -> str:
    """bars: {"label", "value", "low", "high", "n"}; NaN values draw as an empty slot marked "—"."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + plot_h * (1.0 - max(0.0, min(1.0, v)))

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" class="tick" text-anchor="end">{tick:.2f}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" class="tick" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>')
    slot = plot_w / max(len(bars), 1)
    bar_w = min(56.0, slot * 0.6)
    for i, bar in enumerate(bars):
        cx = LEFT + slot * (i + 0.5)
        value = bar.get("value", math.nan)
        label = escape(str(bar["label"]))
        parts.append(f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 16}" class="tick" text-anchor="middle">{label}</text>'
                     f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 30}" class="tick n" text-anchor="middle">'
                     f'n={int(bar.get("n", 0))}</text>')
        if value is None or math.isnan(value):
            parts.append(f'<text x="{cx:.1f}" y="{y(0) - 6:.1f}" class="tick" text-anchor="middle">—</text>')
            continue
        parts.append(f'<rect x="{cx - bar_w / 2:.1f}" y="{y(value):.1f}" width="{bar_w:.1f}" '
                     f'height="{y(0) - y(value):.1f}" class="bar"><title>{label}: {value:.3f}</title></rect>')
        low, high = bar.get("low", math.nan), bar.get("high", math.nan)
        if not (math.isnan(low) or math.isnan(high)):
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(low):.1f}" y2="{y(high):.1f}" class="whisker"/>'
                         f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y(low):.1f}" y2="{y(low):.1f}" class="whisker"/>'
                         f'<line x1="{cx - 6:.1f}" x2="{cx + 6:.1f}" y1="{y(high):.1f}" y2="{y(high):.1f}" class="whisker"/>')
        parts.append(f'<text x="{cx + bar_w / 2 + 3:.1f}" y="{y(value) + 12:.1f}" class="value">{value:.2f}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def principles_chart(rows: list[dict]) -> str:
    """The alignment page's per-principle agreement bars (rows of alignment.principle_alignment)."""
    if not rows:
        return ""
    return bar_chart([{"label": row["name"], "value": row["agreement"].value, "low": row["agreement"].low,
                       "high": row["agreement"].high, "n": row["agreement"].n} for row in rows],
                     "每条原则与人的一致率 Agreement with people per principle (pass = Good)")
