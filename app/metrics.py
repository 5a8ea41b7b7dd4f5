"""/metrics in the Prometheus text format: what uWSGI's stats server does not show.

uWSGI's stats list web workers, but not mules, queues or jobs. Everything here is read
from the database at scrape time, so every process (web workers, mules, webless
handlers on other hosts) is counted, whichever web worker answers the scrape.
Access: admins, or the addresses in `metrics_allowed_addresses` (as uWSGI sees them:
behind nginx that is nginx's, so keep /metrics internal there). The histograms by tool
(ToolCollector) cover the jobs of a recent window only, read through reports.py's
window-bounded queries.
"""
from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from sqlalchemy import and_, case, func, select

from muleteer.job import JobState
from muleteer.models import handler as handler_table
from muleteer.models import job
from muleteer.store import utcnow
from muleteer.store.reports import PEAK_MEMORY_METRICS, seconds_between

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 21600, 86400)
# By tool: only the jobs that ended within this window, so a scrape reads that window's
# rows (by job.end_time), not a store of millions of jobs.
TOOL_WINDOW = timedelta(hours=24)
MEMORY_BUCKETS = tuple(2**27 * 2**n for n in range(12))  # 128 MiB to 256 GiB


class JobCollector:
    def __init__(self, store):
        self.store = store

    def collect(self):
        store, dialect = self.store, self.store.dialect
        with store.engine.connect() as conn:
            by_state = conn.execute(select(job.c.state, func.coalesce(job.c.handler, job.c.handler_tag),
                                           job.c.destination_id, func.count())
                                    .group_by(job.c.state, func.coalesce(job.c.handler, job.c.handler_tag),
                                              job.c.destination_id)).all()
            waits = self._histogram(conn, seconds_between(job.c.start_time, job.c.create_time, dialect),
                                    job.c.start_time.is_not(None))
            runs = self._histogram(conn, seconds_between(job.c.end_time, job.c.start_time, dialect),
                                   and_(job.c.end_time.is_not(None), job.c.start_time.is_not(None)))
            handlers = conn.execute(select(handler_table)).mappings().all()
            no_exit = conn.execute(select(job.c.destination_id, func.count())
                                   .where(job.c.state == JobState.ERROR, job.c.exit_code.is_(None))
                                   .group_by(job.c.destination_id)).all()

        jobs = GaugeMetricFamily("muleteer_jobs", "Jobs by state, handler and destination",
                                 labels=["state", "handler", "destination"])
        for state, handler, destination, count in by_state:
            jobs.add_metric([state, handler or "", destination], count)
        yield jobs
        yield self._family("muleteer_job_wait_seconds", "From submission to running", waits)
        yield self._family("muleteer_job_run_seconds", "From running to its end", runs)

        now = utcnow()
        seen = GaugeMetricFamily("muleteer_handler_heartbeat_age_seconds",
                                 "Seconds since each handler's last heartbeat",
                                 labels=["handler", "strategy", "host"])
        failed = CounterMetricFamily("muleteer_messages_failed",
                                     "Wake-up messages a web worker could not send (the sweep "
                                     "found those jobs)", labels=["handler"])
        for row in handlers:
            seen.add_metric([row["name"], row["strategy"], row["host"]],
                            (now - row["last_seen"]).total_seconds())
            if row["strategy"] == "web":
                failed.add_metric([row["name"]], row["messages_failed"] or 0)
        yield seen
        yield failed
        errors = CounterMetricFamily("muleteer_runner_errors",
                                     "Jobs that ended in error without an exit code (runner, "
                                     "scheduler or node trouble, not the tool)",
                                     labels=["destination"])
        for destination, count in no_exit:
            errors.add_metric([destination], count)
        yield errors

    @staticmethod
    def _histogram(conn, seconds, where):
        columns = [func.count(case((seconds <= b, 1))) for b in BUCKETS]
        columns += [func.count(), func.coalesce(func.sum(seconds), 0.0)]
        return conn.execute(select(*columns).where(where)).one()

    @staticmethod
    def _family(name, documentation, row):
        buckets = [(str(b), row[i]) for i, b in enumerate(BUCKETS)]
        buckets.append(("+Inf", row[len(BUCKETS)]))
        family = HistogramMetricFamily(name, documentation)
        family.add_metric([], buckets, float(row[len(BUCKETS) + 1]))
        return family


class ToolCollector:
    """Run time and peak memory by tool, of the jobs that ended in the last TOOL_WINDOW: gauge
    histograms (a job drops out once it ended longer ago), which histogram_quantile()
    reads directly, e.g. histogram_quantile(0.9, muleteer_tool_run_seconds_bucket)."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        until = utcnow()
        since = until - TOOL_WINDOW
        hours = int(TOOL_WINDOW.total_seconds() // 3600)
        yield self._family(
            "muleteer_tool_run_seconds",
            f"Run time (end - start) of the jobs that ended ok or error in the last {hours} h, "
            "by tool (only those jobs: a gauge histogram)",
            self.store.tool_run_histograms(since, until, BUCKETS), BUCKETS)
        yield self._family(
            "muleteer_tool_memory_peak_bytes",
            f"Peak memory (job metric {' or '.join(PEAK_MEMORY_METRICS)}) of the jobs that "
            f"ended in the last {hours} h and recorded it, by tool (only those jobs: a gauge "
            "histogram)",
            self.store.tool_memory_histograms(since, until, MEMORY_BUCKETS), MEMORY_BUCKETS)

    @staticmethod
    def _family(name, documentation, histograms, bounds):
        family = GaugeHistogramMetricFamily(name, documentation, labels=["tool_id"])
        for h in histograms:
            buckets = [(str(b), n) for b, n in zip(bounds, h.cumulative)]
            buckets.append(("+Inf", h.count))
            family.add_metric([h.tool_id], buckets, h.total)
        return family


def render(store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(store))
    registry.register(ToolCollector(store))
    return generate_latest(registry)
