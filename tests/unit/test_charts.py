"""app/charts.py (SVG drawn on the server) and app/admin_charts.py (the admin's charts page):
the SVG parsed as XML, and the page through Flask's test client on SQLite and PostgreSQL."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import insert

from app.charts import Chart, Series, Unit, horizontal_bars, lines, stacked_bars
from muleteer.job import JobState
from muleteer.models import job, job_metric_numeric
from muleteer.store import utcnow

SVG = "{http://www.w3.org/2000/svg}"


def chart(series, unit=Unit.COUNT, labels=("a", "b", "c")):
    return Chart(id="c1", title="Jobs <running>", description="What & why", labels=labels,
                 tips=tuple(f"tip {label}" for label in labels), series=tuple(series), unit=unit,
                 axis_title="Jobs", label_title="UTC")


def parse(markup) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == SVG + "svg" and root.get("role") == "img"
    return root


def marks(root, cls):
    return [e for e in root.iter() if e.get("class") == cls]


def test_stacked_bars_draw_one_rect_per_nonzero_value_with_its_number():
    root = parse(stacked_bars(chart([Series("local", (1, 0, 3)), Series("slurm <x>", (2, 5, None))])))
    assert root.get("aria-labelledby") == "c1-title c1-desc"
    assert root.find(SVG + "title").text == "Jobs <running>"  # escaped in the markup, read back
    assert root.find(SVG + "desc").text == "What & why"
    bars = marks(root, "bar")
    assert len(bars) == 4
    tips = [b.find(SVG + "title").text for b in bars]
    assert tips == ["local, tip a: 1", "slurm <x>, tip a: 2", "slurm <x>, tip b: 5", "local, tip c: 3"]
    # Stacked: slurm's bar in "a" sits on local's, and the tallest stack (5) is the tallest bar.
    local_a, slurm_a = bars[0], bars[1]
    slurm_bottom = float(slurm_a.get("y")) + float(slurm_a.get("height"))
    assert slurm_bottom == pytest.approx(float(local_a.get("y")), abs=0.2)
    heights = [float(b.get("height")) for b in bars]
    assert heights[2] == max(heights) and heights[2] == pytest.approx(5 * heights[0], rel=0.01)
    assert {b.get("fill") for b in bars[:2]} == {"#0072B2", "#E69F00"}  # one colour per series
    texts = [t.text for t in root.iter(SVG + "text") if t.text]
    assert {"a", "b", "c", "Jobs", "UTC", "local", "slurm <x>"} <= set(texts)


def test_an_empty_chart_says_so():
    root = parse(stacked_bars(chart([Series("local", (0, 0, 0))])))
    assert marks(root, "bar") == []
    assert "No jobs in this window." in [t.text for t in root.iter(SVG + "text")]
    root = parse(horizontal_bars(chart([], unit=Unit.BYTES, labels=())))
    assert "No jobs in this window." in [t.text for t in root.iter(SVG + "text")]


def test_lines_leave_gaps_where_there_is_no_value():
    root = parse(lines(chart([Series("p50", (1.5, None, 30, 45)), Series("p99", (0.0, 7, 90, 5400))],
                             unit=Unit.SECONDS, labels=("a", "b", "c", "d"))))
    points = marks(root, "point")
    assert len(points) == 7
    assert [p.find(SVG + "title").text for p in points[:3]] == ["p50, tip a: 1.5 s", "p50, tip c: 30 s",
                                                               "p50, tip d: 45 s"]
    assert points[-1].find(SVG + "title").text == "p99, tip d: 1.5 h"
    polylines = marks(root, "line")
    assert len(polylines) == 2  # p50's line breaks at "b" (one lone point left of the gap)
    assert polylines[1].get("stroke-dasharray")  # p99 differs by its dash, not only its colour
    # The axis suits the largest value (hours); a point at 0 s is drawn (not "no jobs").
    assert {"0 h", "1.5 h"} <= {t.text for t in root.iter(SVG + "text")}
    assert "No jobs in this window." not in [t.text for t in root.iter(SVG + "text")]


def test_horizontal_bars_clip_long_names_but_keep_them_whole_on_hover():
    name = "toolshed.g2.bx.psu.edu/repos/iuc/bwa/bwa_mem/0.7.17.2"
    series = [Series("largest", (5 * 2**30, 2**29)), Series("mean", (4 * 2**30, None))]
    root = parse(horizontal_bars(chart(series, unit=Unit.BYTES, labels=(name, "cat"))))
    bars = marks(root, "bar")
    assert [b.find(SVG + "title").text for b in bars] == [
        f"largest, tip {name}: 5 GiB", f"mean, tip {name}: 4 GiB", "largest, tip cat: 512 MiB"]
    assert float(bars[0].get("width")) > float(bars[1].get("width")) > float(bars[2].get("width"))
    label = marks(root, "name")[0]
    assert label.find(SVG + "title").text == name and label.text == name[:31] + "…"


@pytest.mark.parametrize("unit, value, shown", [
    (Unit.COUNT, 1234, "1,234"), (Unit.SECONDS, 0.25, "0.25 s"), (Unit.SECONDS, 59, "59 s"),
    (Unit.SECONDS, 90, "1.5 min"), (Unit.SECONDS, 7200, "2 h"), (Unit.SECONDS, 3 * 86400, "3 d"),
    (Unit.BYTES, 512, "512 B"), (Unit.BYTES, 1.5 * 2**30, "1.5 GiB"), (Unit.BYTES, None, "–")])
def test_units_read_as_people_write_them(unit, value, shown):
    assert unit.format(value) == shown


def test_a_series_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="chart c1: every series needs one value per label"):
        chart([Series("local", (1, 2))])


# -- the page ------------------------------------------------------------------------------
ADMIN_KEY = "the-admin-key-of-the-charts-test"


@pytest.fixture
def client(tmp_path, repo, database_url):
    """A Flask test client of the app on `database_url`."""
    from app import create_app
    from mules.runners import RUNNER_SPECS
    from muleteer.context import build_context
    config_file = tmp_path / "galaxy.yml"
    config_file.write_text(
        f"galaxy:\n  database_connection: {database_url}\n"
        f"  job_config_file: {repo}/job_conf.xml\n  tool_path: {repo}/tools\n"
        f"  bootstrap_admin_api_key: {ADMIN_KEY}\n")
    ctx = build_context(str(config_file), runner_specs=RUNNER_SPECS)
    ctx.store.migrate()
    app = create_app(ctx=ctx)
    yield app.test_client(), ctx.store, app.extensions["muleteer.accounts"]
    ctx.store.engine.dispose()


def seed(store, tool, destination, created, started, ended, peak=None):
    with store.engine.begin() as conn:
        job_id = conn.execute(insert(job).values(
            tool_id=tool, tool_version="1", params="{}", command_line="true", state=JobState.OK,
            handler_tag="h", destination_id=destination, runner="local", create_time=created,
            update_time=ended, start_time=started, end_time=ended)).inserted_primary_key[0]
        if peak:
            conn.execute(insert(job_metric_numeric).values(job_id=job_id, plugin="cgroup",
                                                           metric_name="memory.peak", metric_value=peak))


def test_the_page_charts_the_window_for_admins_only(client):
    from app.admin_charts import Window, build_page
    http, store, accounts = client
    now = utcnow().replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)

    def ago(**kwargs):
        return now - timedelta(**kwargs)

    seed(store, "bwa_mem", "slurm", ago(minutes=50), ago(minutes=40), now, peak=3 * 2**30)
    seed(store, "cat<1>", "local", ago(hours=3), ago(hours=3), ago(hours=2), peak=2**28)
    seed(store, "sort", "local", ago(days=3), ago(days=3), ago(days=3), peak=9 * 2**30)

    response = http.get("/admin/charts", headers={"x-api-key": ADMIN_KEY})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert body.count("<svg ") == 5 and "<script>" not in body and "style=" not in body
    assert "cat&lt;1&gt;" in body and "cat<1>" not in body
    assert 'aria-current="true">24h<' in body

    page = build_page(store, Window.HOURS_24)
    waiting, running, waits, runs, memory = (c for c, _ in page.charts)
    assert page.buckets.count == 24 and running.labels[-1] == page.buckets.start(23).strftime("%H:%M")
    assert [s.name for s in running.series] == ["local", "slurm"]
    assert sum(running.series[1].values) == 2  # slurm's job ran across two hours
    assert memory.labels == ("bwa_mem", "cat<1>")  # the week-old "sort" is outside the window
    week = build_page(store, Window.DAYS_7)
    assert week.buckets.count == 28 and week.charts[4][0].labels[0] == "sort"
    assert [d.destination for d in week.destinations] == ["local", "slurm"]

    bad = http.get("/admin/charts?window=1y", headers={"x-api-key": ADMIN_KEY})
    assert bad.status_code == 400
    assert "window: must be one of 6h, 24h, 7d (got &#39;1y&#39;)" in bad.get_data(as_text=True)
    user = accounts.create_user("someone@example.org", "a long enough password")
    key = accounts.new_key(user["id"])
    assert http.get("/admin/charts", headers={"x-api-key": key}).status_code == 403
    anonymous = http.get("/admin/charts")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_beyond_seven_destinations_the_quietest_are_summed_as_other(store):
    from app.admin_charts import Window, build_page
    now = utcnow()
    for d in range(9):
        for _ in range(9 - d):  # d0 is the busiest
            seed(store, "cat", f"d{d}", now - timedelta(minutes=3), now - timedelta(minutes=2),
                 now - timedelta(minutes=1))
    page = build_page(store, Window.HOURS_6)
    running = page.charts[1][0]
    assert [s.name for s in running.series] == [f"d{d}" for d in range(7)] + ["other (2)"]
    assert max(running.series[-1].values) == 2 + 1  # (their minute may straddle two buckets)
    assert len(page.destinations) == 9  # the table below the charts names every one
