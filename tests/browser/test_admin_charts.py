"""The admin's charts page (/admin/charts) in headless Chromium against a real uWSGI server:
jobs written into its database with times in the past (and one real job it ran), drawn as
server-side SVG; the window switched by its links; a non-admin refused.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import insert

from muleteer.job import JobState
from muleteer.models import job, job_metric_numeric
from muleteer.store import JobStore, utcnow
from tests.support.uwsgi_server import LOCAL_JOB_CONF, UwsgiServer

try:
    from playwright.sync_api import expect
except ImportError:  # conftest's browser_available skips (or fails) every test, saying why
    expect = None

GIB = 2**30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own server (conftest's alice and admin are made on it): one web worker
    and one mule are enough here, and start faster."""
    directory = tmp_path_factory.mktemp("charts")
    srv = UwsgiServer(str(directory), job_conf=LOCAL_JOB_CONF, mules=1, processes=1).start()
    yield srv
    srv.stop()


def _seed(store, tool, destination, created, started, ended, peak=None):
    with store.engine.begin() as conn:
        job_id = conn.execute(insert(job).values(
            tool_id=tool, tool_version="1", params="{}", command_line="true", state=JobState.OK,
            handler_tag="main.job-handlers.1", destination_id=destination, runner="slurm",
            create_time=created, update_time=ended, start_time=started, end_time=ended,
            handler="main.job-handlers.1")).inserted_primary_key[0]
        if peak:
            conn.execute(insert(job_metric_numeric).values(
                job_id=job_id, plugin="cgroup", metric_name="memory.peak", metric_value=peak))


@pytest.fixture(scope="module")
def history(server, alice):
    """Jobs of the past hours and days, in the server's own database, and one real job; the
    start of the hour they are set off.

    Times are set off the start of the current hour, never on a bucket's edge, so the counts
    below hold whichever hour or quarter the page is drawn in."""
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    store = JobStore(f"sqlite:///{server.directory}/database/universe.sqlite")
    try:
        # Two slurm jobs running across two hours (four quarters): from 3:10 to 2:20 ago.
        for tool, peak in (("bwa_mem", 6 * GIB), ("samtools_sort", 2 * GIB)):
            _seed(store, tool, "slurm", hour - timedelta(hours=3, minutes=50),
                  hour - timedelta(hours=3, minutes=10), hour - timedelta(hours=2, minutes=20), peak)
        # Three days ago: in the week's window only.
        _seed(store, "old_tool", "slurm", hour - timedelta(days=3), hour - timedelta(days=3),
              hour - timedelta(days=3) + timedelta(minutes=5), 12 * GIB)
    finally:
        store.engine.dispose()
    job_id = alice.submit("noop")
    assert server.wait(job_id, timeout=30)["state"] == "ok"
    return hour


def open_charts(page, server, admin, login):
    login(page, admin)
    page.get_by_role("link", name="Charts", exact=True).click()
    expect(page.locator("main h1")).to_have_text("Charts")


def test_an_admin_sees_the_jobs_as_charts_and_switches_the_window(page, server, admin, history,
                                                                  login, shot):
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    open_charts(page, server, admin, login)
    assert re.search(r"/admin/charts$", page.url)
    expect(page.locator('nav[aria-label="Main"] a[aria-current="page"]')).to_have_text("Charts")
    expect(page.locator('#windows a[aria-current="true"]')).to_have_text("24h")
    for chart in ("waiting", "running", "wait", "run", "memory"):
        svg = page.locator(f"svg#chart-{chart}")
        expect(svg).to_be_visible()
        assert svg.get_attribute("role") == "img"
        assert svg.get_attribute("aria-labelledby") == f"chart-{chart}-title chart-{chart}-desc"
    running = page.locator("#chart-running")
    # The slurm jobs ran in two hours; the real job ran on "local" in this hour.
    expect(running.locator("rect.bar", has_text="slurm,")).to_have_count(2)
    expect(running.locator("rect.bar", has_text="local,").first).to_be_attached()
    tip = running.locator("rect.bar", has_text="slurm,").first.locator("title").text_content()
    assert re.fullmatch(r"slurm, \d{4}-\d\d-\d\d \d\d:00–\d\d:00 UTC: 2", tip), tip
    # Run time: three percentiles for the hour the slurm jobs ended and for the real job's.
    expect(page.locator("#chart-run circle.point")).to_have_count(6)
    memory = page.locator("#chart-memory")
    # Largest and mean of each seeded tool (the real job may have its own, with job metrics on).
    expect(memory.locator("rect.bar", has_text="bwa_mem (")).to_have_count(2)
    expect(memory.locator("rect.bar", has_text="samtools_sort (")).to_have_count(2)
    expect(memory).not_to_contain_text("old_tool")
    first = memory.locator("rect.bar").first.locator("title").text_content()
    assert first == "largest, bwa_mem (1 job): 6 GiB"
    page.locator("#chart-memory + p + details summary, #chart-memory ~ details summary").first.click()
    expect(page.locator("section", has=memory).locator("table")).to_contain_text("samtools_sort (1 job)")
    shot(page, "admin_charts")

    page.get_by_role("link", name="7d", exact=True).click()
    expect(page).to_have_url(re.compile(r"/admin/charts\?window=7d$"))
    expect(page.locator('#windows a[aria-current="true"]')).to_have_text("7d")
    expect(memory.locator("rect.bar", has_text="old_tool (")).to_have_count(2)
    expect(memory.locator("text.name").first).to_have_text("old_tool")  # the largest, on top
    # Six-hour buckets (from 00:00 UTC): the five minutes of old_tool's job, three days ago.
    old = history - timedelta(days=3)
    old = old.replace(hour=old.hour - old.hour % 6)
    expect(running.locator("rect.bar", has_text=f"slurm, {old:%Y-%m-%d %H}:00–")).to_have_count(1)
    page.get_by_role("link", name="6h", exact=True).click()
    expect(page).to_have_url(re.compile(r"window=6h$"))
    expect(running.locator("rect.bar", has_text="slurm,")).to_have_count(4)  # quarters of an hour
    expect(memory).not_to_contain_text("old_tool")
    assert not violations, violations
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the charts shrink to fit
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    response = page.goto(f"{server.url}/admin/charts?window=forever")
    assert response.status == 400
    expect(page.locator("main")).to_contain_text("window: must be one of 6h, 24h, 7d (got 'forever')")


def test_a_user_who_is_not_an_admin_gets_no_charts(page, server, alice, login):
    login(page, alice)
    expect(page.locator("nav").get_by_role("link", name="Charts")).to_have_count(0)
    response = page.goto(f"{server.url}/admin/charts")
    assert response.status == 403
    expect(page.locator("main h1")).to_have_text("403")
    expect(page.locator("svg")).to_have_count(0)


def test_metrics_by_tool_from_the_same_server(server, history):
    """/metrics of the real server (no browser needed; its jobs are here): run time and peak
    memory by tool, of the last day's jobs only."""
    from prometheus_client.parser import text_string_to_metric_families
    response = server.http.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    samples = {(s.name, s.labels.get("tool_id"), s.labels.get("le")): s.value
               for family in text_string_to_metric_families(response.text)
               if family.name.startswith("muleteer_tool_") for s in family.samples}
    assert samples[("muleteer_tool_run_seconds_gcount", "noop", None)] == 1  # the real job
    assert samples[("muleteer_tool_run_seconds_gsum", "bwa_mem", None)] == pytest.approx(50 * 60, abs=1)
    assert samples[("muleteer_tool_memory_peak_bytes_bucket", "bwa_mem", "4294967296")] == 0
    assert samples[("muleteer_tool_memory_peak_bytes_bucket", "bwa_mem", "8589934592")] == 1
    assert ("muleteer_tool_run_seconds_gcount", "old_tool", None) not in samples  # three days ago
