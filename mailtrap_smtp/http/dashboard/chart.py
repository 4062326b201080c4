"""A daily bar chart as inline SVG, drawn on the server: it needs no script (the page reads without
JavaScript and the CSP allows none inline), nothing is fetched, and it scales with the page. Pure.

Colours are classes (`s0`, `s1`, …) styled by dashboard.css, because the CSP forbids inline style.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 40, 24, 10


@dataclass(frozen=True)
class Series:
    label: str
    values: Mapping[dt.date, int]


def _ticks(top: int) -> list[int]:
    if top <= 0:
        return [0]
    step = max(1, -(-top // 4))
    return list(range(0, top + step, step))


def daily_bars(days: Sequence[dt.date], series: Sequence[Series], title: str) -> str:
    """Grouped bars, one group per day, with a y axis, every 5th date labelled, and a <title> per
    bar for pointer users (the page's table carries the same numbers for screen readers)."""
    peak = max((s.values.get(d, 0) for s in series for d in days), default=0)
    ticks = _ticks(peak)
    top = ticks[-1] or 1
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    group = plot_w / max(1, len(days))
    bar = max(1.0, (group - 2) / max(1, len(series)))
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for t in ticks:
        y = TOP + plot_h - plot_h * t / top
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{t}</text>')
    for i, day in enumerate(days):
        x0 = LEFT + i * group + 1
        for j, s in enumerate(series):
            v = s.values.get(day, 0)
            h = plot_h * v / top
            out.append(f'<rect class="s{j}" x="{x0 + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                       f'height="{h:.1f}"><title>{day.isoformat()}: {v} {escape(s.label)}</title></rect>')
        if i % 5 == 0:
            out.append(f'<text class="axis" x="{x0:.1f}" y="{HEIGHT - 6}">{day.strftime("%b %d")}</text>')
    out.append("</svg>")
    return "".join(out)
