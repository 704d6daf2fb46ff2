"""Inline SVG charts for the HTML report, as pure functions of plain series.

The report must open offline as one file, so charts are SVG text built here rather than a JS
library from a CDN. Every time chart takes the same `TimeAxis`, which is what lines the charts
up under each other: one x position means one instant in every chart, so a fault window shaded
in one chart sits over the same seconds in all of them. The SVGs scale with `viewBox`, so they
keep that alignment at any page width.

Text placed in the SVG is escaped here; callers insert the result as markup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

Point = tuple[float, float]
SeriesKind = Literal["line", "step", "dots"]

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#475569")
FAULT_FILL = "#ef4444"
MAX_DOTS = 3000
LEGEND_ROW = 16


@dataclass(frozen=True)
class TimeAxis:
    """Seconds of wall time mapped onto x pixels, shared by every time chart of one report."""

    start: float
    end: float
    width: int = 960
    left: int = 64
    right: int = 20

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    def x(self, t: float) -> float:
        clamped = min(max(t, self.start), self.end)
        return self.left + (clamped - self.start) / self.span * self.plot_width

    def ticks(self, target: int = 8) -> list[tuple[float, str]]:
        """Tick positions (wall time) labelled as time since the start of the run (m:ss)."""
        step = nice_step(self.span, target)
        count = int(self.span // step) + 1
        return [(self.start + i * step, clock(i * step)) for i in range(count)]


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    color: str = PALETTE[0]
    kind: SeriesKind = "line"
    link_prefix: str = ""
    labels: Sequence[str] = ()
    radius: float = 2.6
    dash: str = ""
    width: float = 1.8


LegendItem = tuple[float, int, Series]


@dataclass(frozen=True)
class Shade:
    """A shaded interval of the time axis (a drill's fault window); `end` None: still open."""

    start: float
    end: float | None
    label: str


def clock(seconds: float) -> str:
    """0:05, 1:30, 1:02:03: short labels for seconds since the start of the run."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def nice_step(span: float, target: int) -> float:
    """The 1-2-5 step that cuts `span` into about `target` parts."""
    raw = max(span, 1e-9) / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def value_ticks(top: float, target: int = 4) -> list[float]:
    """0 and nice steps up to at least `top`; the last tick is the chart's y maximum."""
    if top <= 0:
        return [0.0, 1.0]
    step = nice_step(top, target)
    count = math.ceil(top / step - 1e-9)
    return [i * step for i in range(count + 1)]


def format_value(value: float, unit: str) -> str:
    text = f"{value:.3g}" if value < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def bin_rate(times: Iterable[float], axis: TimeAxis, bin_s: float) -> list[Point]:
    """Events per second in consecutive bins of `bin_s`, each point at its bin's middle."""
    return bin_sum(((t, 1.0) for t in times), axis, bin_s)


def bin_sum(amounts: Iterable[Point], axis: TimeAxis, bin_s: float) -> list[Point]:
    """(time, amount) summed per bin of `bin_s` and divided by it: amounts per second."""
    bins = max(1, math.ceil(axis.span / bin_s))
    totals = [0.0] * bins
    for t, amount in amounts:
        if axis.start <= t <= axis.end:
            totals[min(int((t - axis.start) // bin_s), bins - 1)] += amount
    return [(axis.start + (i + 0.5) * bin_s, total / bin_s) for i, total in enumerate(totals)]


def binned_quantile(points: Iterable[Point], axis: TimeAxis, bin_s: float, q: float) -> list[Point]:
    """The q-quantile of the y values in each bin of `bin_s` that has any; empty bins are skipped."""
    grouped: dict[int, list[float]] = {}
    for t, y in points:
        grouped.setdefault(int((t - axis.start) // bin_s), []).append(y)
    out: list[Point] = []
    for index in sorted(grouped):
        values = sorted(grouped[index])
        rank = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
        out.append((axis.start + (index + 0.5) * bin_s, values[rank]))
    return out


def choose_bin(axis: TimeAxis, target_bins: int = 60) -> float:
    """A bin width (s) giving about `target_bins` bins, never under one second."""
    return max(1.0, nice_step(axis.span, target_bins))


def time_chart(
    axis: TimeAxis,
    series: Sequence[Series],
    *,
    title: str,
    unit: str,
    shades: Sequence[Shade] = (),
    height: int = 200,
) -> str:
    """One chart on the shared time axis: grid, y ticks with `unit`, shaded windows, series, and a
    legend above the plot that wraps onto more rows (the chart grows by them) when names are long."""
    rows = legend_rows(axis, series)
    height += LEGEND_ROW * (len(rows) - 1)
    frame = _Frame(axis, height, _y_max(series), top=26 + LEGEND_ROW * (len(rows) - 1))
    parts = [
        f'<svg class="chart" viewBox="0 0 {axis.width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *frame.y_grid(unit),
        *frame.x_grid(),
        *(frame.shade(s) for s in shades),
        *(frame.draw(s) for s in series),
        frame.legend(rows),
        "</svg>",
    ]
    return "\n".join(parts)


def legend_rows(axis: TimeAxis, series: Sequence[Series]) -> list[list[LegendItem]]:
    """Legend items as (x, row, series), wrapped at the plot's right edge."""
    rows: list[list[LegendItem]] = [[]]
    x = float(axis.left)
    for s in series:
        width = 24 + sum(7.6 if c.isupper() else 6.4 for c in s.name)
        if rows[-1] and x + width > axis.width - axis.right:
            rows.append([])
            x = float(axis.left)
        rows[-1].append((x, len(rows) - 1, s))
        x += width
    return rows


def _y_max(series: Sequence[Series]) -> float:
    top = max((y for s in series for _, y in s.points), default=0.0)
    return value_ticks(top)[-1]


@dataclass(frozen=True)
class _Frame:
    """The plot area of one chart: pixel mapping for y, and the pieces drawn in it."""

    axis: TimeAxis
    height: int
    y_max: float
    top: int = 26
    bottom: int = 24

    def y(self, value: float) -> float:
        inner = self.height - self.top - self.bottom
        return self.top + inner * (1 - min(value, self.y_max) / self.y_max)

    def y_grid(self, unit: str) -> list[str]:
        lines = []
        for value in value_ticks(self.y_max):
            y = self.y(value)
            lines.append(
                f'<line class="grid" x1="{self.axis.left}" x2="{self.axis.width - self.axis.right}" '
                f'y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text class="tick" x="{self.axis.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{escape(format_value(value, unit))}</text>"
            )
        return lines

    def x_grid(self) -> list[str]:
        base = self.height - self.bottom
        return [
            f'<line class="axis" x1="{self.axis.x(t):.1f}" x2="{self.axis.x(t):.1f}" y1="{base}" '
            f'y2="{base + 4}"/><text class="tick" x="{self.axis.x(t):.1f}" y="{base + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
            for t, label in self.axis.ticks()
        ]

    def shade(self, shade: Shade) -> str:
        x0 = self.axis.x(shade.start)
        x1 = self.axis.x(shade.end if shade.end is not None else self.axis.end)
        inner = self.height - self.top - self.bottom
        label = escape(shade.label)
        return (
            f'<g class="fault"><title>fault: {label}</title>'
            f'<rect x="{x0:.1f}" y="{self.top}" width="{max(x1 - x0, 2):.1f}" height="{inner}" '
            f'fill="{FAULT_FILL}" fill-opacity="0.12" stroke="{FAULT_FILL}" stroke-opacity="0.5" '
            f'stroke-dasharray="3 3"/>'
            f'<text class="fault-label" x="{x0 + 3:.1f}" y="{self.top + 11}">{label}</text></g>'
        )

    def draw(self, series: Series) -> str:
        if series.kind == "dots":
            return self._dots(series)
        coords = self._path_coords(series)
        if not coords:
            return ""
        dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
        return (
            f'<polyline class="series" fill="none" stroke="{series.color}" '
            f'stroke-width="{series.width}"{dash} stroke-linejoin="round" points="{coords}">'
            f"<title>{escape(series.name)}</title></polyline>"
        )

    def _path_coords(self, series: Series) -> str:
        points: list[Point] = []
        for t, v in series.points:
            if series.kind == "step" and points:
                points.append((t, points[-1][1]))
            points.append((t, v))
        return " ".join(f"{self.axis.x(t):.1f},{self.y(v):.1f}" for t, v in points)

    def _dots(self, series: Series) -> str:
        stride = max(1, math.ceil(len(series.points) / MAX_DOTS))
        dots = []
        for i in range(0, len(series.points), stride):
            t, v = series.points[i]
            label = series.labels[i] if i < len(series.labels) else ""
            circle = (
                f'<circle cx="{self.axis.x(t):.1f}" cy="{self.y(v):.1f}" r="{series.radius}" '
                f'fill="{series.color}" fill-opacity="0.75"><title>{escape(label)}</title></circle>'
            )
            if series.link_prefix and label:
                circle = f'<a href="#{escape(series.link_prefix)}{escape(label.split()[0])}">{circle}</a>'
            dots.append(circle)
        return f'<g class="dots">{"".join(dots)}</g>'

    def legend(self, rows: Sequence[Sequence[LegendItem]]) -> str:
        items = []
        for x, row, s in (item for items_of_row in rows for item in items_of_row):
            y = 8 + LEGEND_ROW * row
            swatch = (
                f'<line x1="{x:.0f}" x2="{x + 10:.0f}" y1="{y + 5}" y2="{y + 5}" stroke="{s.color}" '
                f'stroke-width="2.5" stroke-dasharray="{s.dash}"/>'
                if s.dash
                else f'<rect x="{x:.0f}" y="{y}" width="10" height="10" rx="2" fill="{s.color}"/>'
            )
            items.append(f'{swatch}<text class="legend" x="{x + 14:.0f}" y="{y + 9}">{escape(s.name)}</text>')
        return f'<g class="legend">{"".join(items)}</g>'


def status_bar(counts: Mapping[str, int], colors: Mapping[str, str], width: int = 960) -> str:
    """One stacked horizontal bar of counts by status, each part titled with its number."""
    total = sum(counts.values())
    if total <= 0:
        return ""
    parts, x = [], 0.0
    for name, value in counts.items():
        if value <= 0:
            continue
        w = value / total * width
        color = colors.get(name, PALETTE[-1])
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="18" fill="{color}">'
            f"<title>{escape(name)}: {value}</title></rect>"
        )
        x += w
    return (
        f'<svg class="statusbar" viewBox="0 0 {width} 18" preserveAspectRatio="none">{"".join(parts)}</svg>'
    )
