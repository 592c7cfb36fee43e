"""The overview's hourly chart as inline SVG: successes and failures per hour, stacked.

Plain SVG written by hand (no chart library, no JavaScript); each bar has a <title> so the
numbers are readable on hover and by screen readers, and the whole chart has a text summary.
The axis text is HTML around the SVG, not SVG text: the SVG scales with the page (to half its
size on a phone), the text keeps its size (12 px), readable at any width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT, PAD = 720, 160, 24


@dataclass(frozen=True)
class Hour:
    label: str  # "14:00"
    ok: int
    failed: int


def hourly_svg(hours: Sequence[Hour]) -> str:
    top = max((h.ok + h.failed for h in hours), default=0) or 1
    slot = (WIDTH - PAD) / max(len(hours), 1)
    bar = max(slot * 0.7, 1.0)
    scale = (HEIGHT - PAD) / top
    labels: list[str] = []
    parts = [
        f'<figure class="chart-box"><span class="axis top" aria-hidden="true">{top}</span>'
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT - PAD + 2}" role="img" '
        f'aria-label="Deliveries per hour over the last {len(hours)} hours: '
        f'{sum(h.ok for h in hours)} succeeded, {sum(h.failed for h in hours)} failed">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}" class="base"/>',
    ]
    for index, hour in enumerate(hours):
        x = PAD + index * slot
        ok_h, failed_h = hour.ok * scale, hour.failed * scale
        y_ok = HEIGHT - PAD - ok_h
        title = escape(f"{hour.label}: {hour.ok} succeeded, {hour.failed} failed")
        parts.append(f"<g><title>{title}</title>")
        parts.append(f'<rect x="{x:.1f}" y="{y_ok:.1f}" width="{bar:.1f}" height="{ok_h:.1f}" '
                     'class="ok"/>')  # fmt: skip
        parts.append(f'<rect x="{x:.1f}" y="{y_ok - failed_h:.1f}" width="{bar:.1f}" '
                     f'height="{failed_h:.1f}" class="failed"/></g>')  # fmt: skip
        if index % 6 == 0:
            labels.append(f'<span style="left:{100 * x / WIDTH:.2f}%">{escape(hour.label)}</span>')
    parts.append(f'</svg><div class="axis hours" aria-hidden="true">{"".join(labels)}</div>')
    parts.append("</figure>")
    return "".join(parts)
