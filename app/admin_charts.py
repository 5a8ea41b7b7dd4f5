"""The admin's charts (/admin/charts): jobs waiting and running by destination, wait and run
time percentiles, and the tools that use the most memory, over the last 6 h, 24 h or 7 d.

The numbers come from the store's window-bounded reports (muleteer/store/reports.py); the
pictures are inline SVG drawn here on the server (app/charts.py): the page needs no script.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from flask import Blueprint, abort, current_app, render_template, request
from markupsafe import Markup

from app.auth import admin_required
from app.charts import Chart, Series, Unit, horizontal_bars, lines, stacked_bars
from muleteer.store.reports import PEAK_MEMORY_METRICS, PERCENTILES, Percentiles, TimeBuckets

admin_charts = Blueprint("admin_charts", __name__)
DESTINATIONS_SHOWN = 7  # the busiest ones; the rest are summed as "other"
TOP_TOOLS = 10


class Window(Enum):
    """The choices of ?window=: how far back, in buckets of what width."""
    HOURS_6 = "6h"
    HOURS_24 = "24h"
    DAYS_7 = "7d"

    @property
    def span(self) -> timedelta:
        return {"6h": timedelta(hours=6), "24h": timedelta(hours=24),
                "7d": timedelta(days=7)}[self.value]

    @property
    def width(self) -> timedelta:
        return {"6h": timedelta(minutes=15), "24h": timedelta(hours=1),
                "7d": timedelta(hours=6)}[self.value]

    @property
    def axis_format(self) -> str:
        return "%m-%d %H:%M" if self is Window.DAYS_7 else "%H:%M"

    @classmethod
    def parse(cls, value: str | None) -> "Window":
        if value is None:
            return cls.HOURS_24
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(w.value for w in cls)
            raise ValueError(f"window: must be one of {choices} (got {value[:40]!r})") from None


@dataclass(frozen=True)
class DestinationTimes:
    destination: str
    waits: Percentiles | None
    runs: Percentiles | None


@dataclass(frozen=True)
class ChartsPage:
    window: Window
    buckets: TimeBuckets
    bucket: str  # the buckets' width, as people read it: "15 min", "1 h"
    charts: tuple[tuple[Chart, Markup], ...]  # each chart and its SVG
    destinations: tuple[DestinationTimes, ...]


@admin_charts.get("/admin/charts")
@admin_required
def charts():
    try:
        window = Window.parse(request.args.get("window"))
    except ValueError as exc:
        abort(400, str(exc))
    page = build_page(current_app.extensions["muleteer"].store, window)
    return render_template("admin_charts.html", page=page, windows=tuple(Window),
                           seconds=Unit.SECONDS.format, percentiles=PERCENTILES,
                           memory_metrics=PEAK_MEMORY_METRICS)


def build_page(store, window: Window, now: datetime | None = None) -> ChartsPage:
    buckets = TimeBuckets.ending_now(window.span, window.width, now)
    starts = [buckets.start(i) for i in range(buckets.count)]
    labels = tuple(s.strftime(window.axis_format) for s in starts)
    tips = tuple(_span(s, s + buckets.width) for s in starts)
    activity = _busiest(store.job_activity(buckets))

    def by_destination(id, title, description, series):
        return Chart(id=id, title=title, description=description, labels=labels, tips=tips,
                     series=tuple(series), unit=Unit.COUNT, axis_title="Jobs", label_title="UTC")

    def percentiles(id, title, description, found):
        series = tuple(Series(f"p{round(p * 100)}", tuple(found[i].values[k] if i in found else None
                                                          for i in range(buckets.count)))
                       for k, p in enumerate(PERCENTILES))
        return Chart(id=id, title=title, description=description, labels=labels, tips=tips,
                     series=series, unit=Unit.SECONDS, axis_title="Time", label_title="UTC")

    width = _duration(buckets.width)
    waiting = by_destination(
        "chart-waiting", "Jobs waiting, by destination",
        f"Jobs submitted and not yet running at some time in each {width}, stacked by destination.",
        (Series(d, w) for d, w, _ in activity))
    running = by_destination(
        "chart-running", "Jobs running, by destination",
        f"Jobs running at some time in each {width}, stacked by destination.",
        (Series(d, r) for d, _, r in activity))
    waits = percentiles(
        "chart-wait", "Wait time percentiles",
        f"50th, 90th and 99th percentile of the time from submission to running, of the jobs "
        f"that started in each {width}.", store.wait_percentiles(buckets))
    runs = percentiles(
        "chart-run", "Run time percentiles",
        f"50th, 90th and 99th percentile of the run time of the jobs that ended ok or error "
        f"in each {width}.", store.run_percentiles(buckets))
    tools = store.top_memory_tools(buckets.since, buckets.until, limit=TOP_TOOLS)
    memory = Chart(
        id="chart-memory", title="Tools by peak memory",
        description=f"The {TOP_TOOLS} tools whose jobs that ended in this window had the "
                    "largest peak memory: the largest of one job, and the mean of their jobs.",
        labels=tuple(t.tool_id for t in tools),
        tips=tuple(f"{t.tool_id} ({t.jobs} job{'s' if t.jobs != 1 else ''})" for t in tools),
        series=(Series("largest", tuple(t.largest for t in tools)),
                Series("mean", tuple(t.mean for t in tools))),
        unit=Unit.BYTES, axis_title="Peak memory", label_title="Tool")
    wait_by = store.wait_percentiles_by_destination(buckets)
    run_by = store.run_percentiles_by_destination(buckets)
    destinations = tuple(DestinationTimes(d, wait_by.get(d), run_by.get(d))
                         for d in sorted(set(wait_by) | set(run_by)))
    return ChartsPage(
        window=window, buckets=buckets, bucket=width,
        charts=((waiting, stacked_bars(waiting)), (running, stacked_bars(running)),
                (waits, lines(waits)), (runs, lines(runs)), (memory, horizontal_bars(memory))),
        destinations=destinations)


def _busiest(activity) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(destination, waiting, running), the busiest DESTINATIONS_SHOWN and "other" for the
    rest: beyond a handful of colours a legend cannot be read."""
    shown = [(a.destination, a.waiting, a.running) for a in activity[:DESTINATIONS_SHOWN]]
    rest = activity[DESTINATIONS_SHOWN:]
    if rest:
        shown.append((f"other ({len(rest)})",
                      tuple(map(sum, zip(*(a.waiting for a in rest)))),
                      tuple(map(sum, zip(*(a.running for a in rest))))))
    return shown


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"


def _duration(width: timedelta) -> str:
    minutes = int(width.total_seconds() // 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"
