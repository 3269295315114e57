"""Charts drawn on the server as inline SVG: no script, no library, nothing a CSP must allow.

Only numbers and labels this module formats go into the SVG (no job-controlled text), and they are
escaped all the same. Colours are SVG presentation attributes (``fill``, ``stroke``), which a
``style-src 'self'`` policy does not govern.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from html import escape

from markupsafe import Markup

from clusterq.api.history import Bucket

WIDTH, HEIGHT = 560, 150
LEFT, BOTTOM, TOP = 44, 20, 8


def _label(start: float, bucket_s: int) -> str:
    moment = datetime.fromtimestamp(start, tz=timezone.utc)
    return moment.strftime("%H:%M" if bucket_s < 3600 else "%m-%d %H:00")


def _frame(title: str, top_label: str, first: str, last: str, body: str) -> Markup:
    plot_h = HEIGHT - BOTTOM - TOP
    svg = (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{escape(title)}</title>'
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}" stroke="#cbd2dc"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#cbd2dc"/>'
        f'<text x="{LEFT - 4}" y="{TOP + 9}" text-anchor="end" font-size="10" fill="#6b7280">{escape(top_label)}</text>'
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="10" fill="#6b7280">0</text>'
        f'<text x="{LEFT}" y="{HEIGHT - 4}" font-size="10" fill="#6b7280">{escape(first)}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end" font-size="10" fill="#6b7280">{escape(last)}</text>'
        f"{body}</svg>")
    return Markup(svg)


def _series(buckets: Sequence[Bucket], value: Callable[[Bucket], float | None], top: float, colour: str,
            name: str, dashed: bool = False) -> str:
    """A polyline of ``value`` per bucket, broken where it is None (nothing to show)."""
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    n = max(1, len(buckets) - 1)
    parts: list[list[str]] = []
    run: list[str] = []
    for i, bucket in enumerate(buckets):
        v = value(bucket)
        if v is None:
            if run:
                parts.append(run)
            run = []
            continue
        x = LEFT + plot_w * i / n
        y = TOP + plot_h - (plot_h * v / top if top else 0)
        run.append(f"{x:.1f},{y:.1f}")
    if run:
        parts.append(run)
    lines = []
    for points in parts:
        if len(points) == 1:
            cx, cy = points[0].split(",")
            lines.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{dash} '
                         f'points="{" ".join(points)}"/>')
    return f'<g data-series="{escape(name)}">{"".join(lines)}</g>'


def throughput_chart(buckets: Sequence[Bucket], bucket_s: int) -> Markup:
    """Jobs ended (finished + failed, blue) and enqueued (grey, dashed) per bucket."""
    top = max([1, *(b.ended for b in buckets), *(b.enqueued for b in buckets)])
    body = (_series(buckets, lambda b: float(b.enqueued), top, "#8a96a8", "enqueued", dashed=True)
            + _series(buckets, lambda b: float(b.ended), top, "#2f5fd0", "ended"))
    first, last = (_label(buckets[0].start, bucket_s), _label(buckets[-1].start, bucket_s)) if buckets else ("", "")
    title = f"jobs per {bucket_s // 60} min: ended (blue), enqueued (grey, dashed)"
    return _frame(title, f"{top:,}", first, last, body)


def failure_chart(buckets: Sequence[Bucket], bucket_s: int) -> Markup:
    """Failed over ended per bucket, in percent (no point where nothing ended)."""
    body = _series(buckets, lambda b: None if b.failure_rate is None else 100 * b.failure_rate, 100, "#b91c1c",
                   "failure rate")
    first, last = (_label(buckets[0].start, bucket_s), _label(buckets[-1].start, bucket_s)) if buckets else ("", "")
    return _frame("failure rate, % of the jobs that ended", "100%", first, last, body)
