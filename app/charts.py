"""Charts as inline SVG drawn on the server: no script, no library, no request of their own.

Every chart is an <svg role="img"> named by its <title> and <desc>. Every bar and point has a
<title> of its own, which the browser shows on hover; the page shows the same numbers in a
table beside the chart (Chart.table) for keyboards and screen readers. Colours are SVG
presentation attributes, which the pages' Content-Security-Policy allows (it refuses style
attributes and <style>); they come from the Okabe-Ito palette, which colour-blind readers
can tell apart, and lines differ by their dashes too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from markupsafe import Markup, escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999999")
DASHES = ("", "7 4", "2 3")
# The viewBox: a chart fills its card's width (width="100%") and keeps these proportions,
# about 1:1 in a desktop page's main column.
WIDTH = 960
PLOT_HEIGHT = 180
LEFT, RIGHT, BOTTOM = 70, 16, 46
NAME_WIDTH = 240  # horizontal bars: the column of names left of the bars
NAME_LENGTH = 32  # characters of a name shown there (all of it on hover)
ROW_HEIGHT = 26
FONT = 'font-family="system-ui, sans-serif"'
LEGEND_GAP = 40  # a swatch and the space between two names (7 px a character besides)
AXIS_LABELS = 12  # at most this many labels under a time axis


class Unit(Enum):
    COUNT = "count"
    SECONDS = "seconds"
    BYTES = "bytes"

    def format(self, value: float | None) -> str:
        """A value as people read it: 3, 42 s, 3.5 min, 1.2 GiB."""
        if value is None:
            return "–"
        if self is Unit.COUNT:
            return f"{value:,.0f}"
        divisor, suffix = self.scale(value)
        return f"{_short(value / divisor)} {suffix}"

    def scale(self, value: float) -> tuple[float, str]:
        """The divisor and suffix that suit `value` (its axis ticks share them)."""
        steps = {Unit.SECONDS: ((1, "s"), (60, "min"), (3600, "h"), (86400, "d")),
                 Unit.BYTES: ((1, "B"), (2**10, "KiB"), (2**20, "MiB"), (2**30, "GiB"), (2**40, "TiB")),
                 Unit.COUNT: ((1, ""),)}[self]
        chosen = steps[0]
        for divisor, suffix in steps:
            if abs(value) >= divisor:
                chosen = (divisor, suffix)
        return chosen


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...]  # one per label; None: nothing to show there


@dataclass(frozen=True)
class Chart:
    id: str  # unique on its page: the ids of its title and description derive from it
    title: str
    description: str
    labels: tuple[str, ...]  # short, on the axis
    tips: tuple[str, ...]  # the same, in full: in each hover title and the table
    series: tuple[Series, ...]
    unit: Unit
    axis_title: str  # of the value axis
    label_title: str = ""  # of the label axis

    def __post_init__(self):
        n = len(self.labels)
        if len(self.tips) != n or any(len(s.values) != n for s in self.series):
            raise ValueError(f"chart {self.id}: every series needs one value per label")

    @property
    def empty(self) -> bool:
        """Nothing to draw: no value, or only zeros (a count of no jobs, or no bar)."""
        return not any(v for s in self.series for v in s.values)

    @property
    def valueless(self) -> bool:
        """No value at all (a line of zeros is something to show)."""
        return all(v is None for s in self.series for v in s.values)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The chart's numbers: a header, and a row per label."""
        header = [self.label_title or "", *(s.name for s in self.series)]
        rows = [[tip, *(self.unit.format(s.values[i]) for s in self.series)]
                for i, tip in enumerate(self.tips)]
        return header, rows


def stacked_bars(chart: Chart) -> Markup:
    """A bar per label, its series stacked (e.g. jobs per time bucket, by destination)."""
    totals = [sum(s.values[i] or 0 for s in chart.series) for i in range(len(chart.labels))]
    frame = _Frame(chart, max(totals, default=0), empty=chart.empty)
    parts = frame.open()
    slot = frame.plot_width / max(len(chart.labels), 1)
    for i in range(len(chart.labels)):
        base = 0.0
        for k, series in enumerate(chart.series):
            value = series.values[i] or 0
            if value <= 0:
                continue
            top, bottom = frame.y(base + value), frame.y(base)
            parts.append(f'<rect class="bar" x="{LEFT + i * slot + slot * 0.1:.1f}" y="{top:.1f}" '
                         f'width="{slot * 0.8:.1f}" height="{bottom - top:.1f}" fill="{_colour(k)}">'
                         f'{_tip(chart, series, i, value)}</rect>')
            base += value
    return frame.close(parts, slot)


def lines(chart: Chart) -> Markup:
    """A line per series over the labels (e.g. percentiles per time bucket); a None leaves a
    gap in the line."""
    frame = _Frame(chart, max((v for s in chart.series for v in s.values if v is not None), default=0),
                   empty=chart.valueless, dashed=True)
    parts = frame.open()
    slot = frame.plot_width / max(len(chart.labels), 1)
    for k, series in enumerate(chart.series):
        points = [(LEFT + (i + 0.5) * slot, frame.y(v), i, v) for i, v in enumerate(series.values)]
        for run in _runs(points):
            if len(run) > 1:
                coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in run)
                parts.append(f'<polyline class="line" points="{coordinates}" fill="none" '
                             f'stroke="{_colour(k)}" stroke-width="2"{_dash(k)}/>')
        for x, y, i, value in points:
            if value is not None:
                parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                             f'fill="{_colour(k)}">{_tip(chart, series, i, value)}</circle>')
    return frame.close(parts, slot)


def horizontal_bars(chart: Chart) -> Markup:
    """A row per label with a bar per series (e.g. the tools with the most memory)."""
    maximum = max((v for s in chart.series for v in s.values if v is not None), default=0)
    rows = max(len(chart.labels), 1)
    height = 20 + _legend_height(chart) + rows * ROW_HEIGHT + BOTTOM
    top = 20 + _legend_height(chart)
    right = WIDTH - RIGHT
    parts = _open_svg(chart, height)
    parts += _legend(chart)
    if chart.empty:
        parts.append(_nothing(top + rows * ROW_HEIGHT / 2))
        return _close(parts)
    ticks, divisor, suffix = _ticks(chart.unit, maximum)
    span = ticks[-1] or 1

    def x(value):
        return NAME_WIDTH + (right - NAME_WIDTH) * value / span

    plot_bottom = top + rows * ROW_HEIGHT
    for tick in ticks:
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{plot_bottom}" '
                     f'stroke="#dde1e8"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{plot_bottom + 16}" text-anchor="middle" '
                     f'font-size="11" fill="#5d6779">{_tick_label(tick, divisor, suffix)}</text>')
    parts.append(_text(NAME_WIDTH + (right - NAME_WIDTH) / 2, plot_bottom + 36, chart.axis_title,
                       anchor="middle"))
    thickness = (ROW_HEIGHT - 8) / max(len(chart.series), 1)
    for i, label in enumerate(chart.labels):
        row_top = top + i * ROW_HEIGHT
        parts.append(_text(NAME_WIDTH - 8, row_top + ROW_HEIGHT / 2 + 4, _clip(label, NAME_LENGTH),
                           anchor="end", tip=label, cls="name"))
        for k, series in enumerate(chart.series):
            value = series.values[i]
            if not value:
                continue
            parts.append(f'<rect class="bar" x="{NAME_WIDTH}" y="{row_top + 4 + k * thickness:.1f}" '
                         f'width="{x(value) - NAME_WIDTH:.1f}" height="{thickness - 1:.1f}" '
                         f'fill="{_colour(k)}">{_tip(chart, series, i, value)}</rect>')
    parts.append(f'<line x1="{NAME_WIDTH}" x2="{NAME_WIDTH}" y1="{top}" y2="{plot_bottom}" '
                 f'stroke="#5d6779"/>')
    return _close(parts)


class _Frame:
    """The axes of a chart with labels along the bottom and values up the side."""

    def __init__(self, chart: Chart, maximum: float, empty: bool, dashed: bool = False):
        self.chart, self.empty, self.dashed = chart, empty, dashed
        self.top = 20 + _legend_height(chart)
        self.height = self.top + PLOT_HEIGHT + BOTTOM
        self.plot_width = WIDTH - LEFT - RIGHT
        self.bottom = self.top + PLOT_HEIGHT
        self.ticks, self.divisor, self.suffix = _ticks(chart.unit, maximum)

    def y(self, value: float | None) -> float:
        span = self.ticks[-1] or 1
        return self.bottom - PLOT_HEIGHT * (value or 0) / span

    def open(self) -> list[str]:
        parts = _open_svg(self.chart, self.height) + _legend(self.chart, self.dashed)
        for tick in self.ticks:
            y = self.y(tick)
            parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="#dde1e8"/>')
            parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                         f'fill="#5d6779">{_tick_label(tick, self.divisor, self.suffix)}</text>')
        parts.append(_text(14, self.top + PLOT_HEIGHT / 2, self.chart.axis_title, anchor="middle",
                           rotate=True))
        return parts

    def close(self, parts: list[str], slot: float) -> Markup:
        chart = self.chart
        if self.empty:
            parts.append(_nothing(self.top + PLOT_HEIGHT / 2))
        every = max(1, math.ceil(len(chart.labels) / AXIS_LABELS))
        for i, label in enumerate(chart.labels):
            if i % every == 0:
                parts.append(f'<text x="{LEFT + (i + 0.5) * slot:.1f}" y="{self.bottom + 16}" '
                             f'text-anchor="middle" font-size="11" fill="#5d6779">'
                             f'{escape(label)}</text>')
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{self.bottom}" y2="{self.bottom}" '
                     f'stroke="#5d6779"/>')
        if chart.label_title:
            parts.append(_text(LEFT + self.plot_width / 2, self.bottom + 36, chart.label_title,
                               anchor="middle"))
        return _close(parts)


def _open_svg(chart: Chart, height: float) -> list[str]:
    cid = escape(chart.id)
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" viewBox="0 0 {WIDTH} '
            f'{height:.0f}" width="100%" role="img" aria-labelledby="{cid}-title {cid}-desc" {FONT}>',
            f'<title id="{cid}-title">{escape(chart.title)}</title>',
            f'<desc id="{cid}-desc">{escape(chart.description)}</desc>']


def _close(parts: list[str]) -> Markup:
    return Markup("\n".join(parts + ["</svg>"]))


def _legend_rows(chart: Chart) -> list[list[tuple[int, str]]]:
    rows, row, used = [], [], 0
    for k, series in enumerate(chart.series):
        width = LEGEND_GAP + 7 * len(series.name)
        if row and used + width > WIDTH - LEFT:
            rows.append(row)
            row, used = [], 0
        row.append((k, series.name))
        used += width
    return rows + ([row] if row else [])


def _legend_height(chart: Chart) -> int:
    return 18 * len(_legend_rows(chart))


def _legend(chart: Chart, dashed: bool = False) -> list[str]:
    """The series' names with their colours (and dashes, for lines)."""
    parts = ['<g class="legend">']
    for r, row in enumerate(_legend_rows(chart)):
        x, y = LEFT, 12 + 18 * r
        for k, name in row:
            if dashed:
                parts.append(f'<line x1="{x - 4}" x2="{x + 14}" y1="{y - 3}" y2="{y - 3}" '
                             f'stroke="{_colour(k)}" stroke-width="3"{_dash(k)}/>')
            else:
                parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="12" fill="{_colour(k)}"/>')
            parts.append(_text(x + 18, y + 1, name))
            x += LEGEND_GAP + 7 * len(name)
    parts.append("</g>")
    return parts


def _ticks(unit: Unit, maximum: float) -> tuple[list[float], float, str]:
    """Round tick values from 0 past `maximum`, in the unit's scale: (ticks, divisor, suffix)."""
    divisor, suffix = unit.scale(maximum) if maximum > 0 else (1, unit.scale(1)[1])
    top = maximum / divisor
    if top <= 0:
        return [0.0, 1.0 * divisor], divisor, suffix
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if unit is Unit.COUNT:
        step = max(1.0, math.ceil(step))
    count = math.ceil(top / step - 1e-9)
    return [i * step * divisor for i in range(count + 1)], divisor, suffix


def _tick_label(value: float, divisor: float, suffix: str) -> str:
    return escape(f"{_short(value / divisor)} {suffix}".strip())


def _short(number: float) -> str:
    """At most three significant digits, no trailing zeros: 3, 3.5, 12, 120, 0.25."""
    if number == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(number))))
    return f"{number:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{number:,.0f}"


def _tip(chart: Chart, series: Series, index: int, value: float) -> str:
    text = f"{series.name}, {chart.tips[index]}: {chart.unit.format(value)}"
    return f"<title>{escape(text)}</title>"


def _text(x: float, y: float, text: str, anchor: str = "start", rotate: bool = False,
          tip: str | None = None, cls: str | None = None) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    title = f"<title>{escape(tip)}</title>" if tip is not None and tip != text else ""
    attribute = f' class="{cls}"' if cls else ""
    return (f'<text{attribute} x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="12" '
            f'fill="#1d2330"{transform}>{escape(text)}{title}</text>')


def _nothing(y: float) -> str:
    return _text(WIDTH / 2, y, "No jobs in this window.", anchor="middle")


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _dash(index: int) -> str:
    dash = DASHES[index % len(DASHES)]
    return f' stroke-dasharray="{dash}"' if dash else ""


def _runs(points):
    """Consecutive points that have a value: the pieces of a line with gaps."""
    run = []
    for point in points:
        if point[3] is None:
            if run:
                yield run
            run = []
        else:
            run.append(point)
    if run:
        yield run
