"""/metrics in the Prometheus text format: what uWSGI's stats server does not show.

uWSGI's stats list web workers, but not mules, queues or jobs. Everything here is read
from the database at scrape time, so every process (web workers, mules, webless
handlers on other hosts) is counted, whichever web worker answers the scrape.
Access: admins, or the addresses in `metrics_allowed_addresses` (as uWSGI sees them:
behind nginx that is nginx's, so keep /metrics internal there). What a scrape reads is
bounded whatever the store holds: job counts are of active jobs, and the histograms (all
jobs' wait and run; ToolCollector's by tool) cover the jobs that ended in a recent window,
read through the end_time index.
"""
from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily
from sqlalchemy import and_, case, func, select

from muleteer.job import ACTIVE, JobState
from muleteer.models import handler as handler_table
from muleteer.models import job
from muleteer.store import utcnow
from muleteer.store.reports import PEAK_MEMORY_METRICS, seconds_between

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 21600, 86400)
# By tool: only the jobs that ended within this window, so a scrape reads that window's
# rows (by job.end_time), not a store of millions of jobs.
TOOL_WINDOW = timedelta(hours=24)
# The wait and run histograms of all jobs: the same window, read through ix_job_end_time. A
# scrape never scans every job ever run (1.2 s at 300,000 jobs).
JOB_WINDOW = TOOL_WINDOW
MEMORY_BUCKETS = tuple(2**27 * 2**n for n in range(12))  # 128 MiB to 256 GiB


class JobCollector:
    def __init__(self, store):
        self.store = store

    def collect(self):
        store, dialect = self.store, self.store.dialect
        with store.engine.connect() as conn:
            # Active jobs only: they are few whatever the store holds (ix_job_state_id), and
            # ended jobs are counted by the windowed histograms below, not one by one.
            by_state = conn.execute(select(job.c.state, func.coalesce(job.c.handler, job.c.handler_tag),
                                           job.c.destination_id, func.count())
                                    .where(job.c.state.in_(sorted(ACTIVE)))
                                    .group_by(job.c.state, func.coalesce(job.c.handler, job.c.handler_tag),
                                              job.c.destination_id)).all()
            since = utcnow() - JOB_WINDOW
            ended = and_(job.c.end_time >= since, job.c.start_time.is_not(None))
            waits = self._histogram(conn, seconds_between(job.c.start_time, job.c.create_time, dialect),
                                    ended)
            runs = self._histogram(conn, seconds_between(job.c.end_time, job.c.start_time, dialect),
                                   ended)
            handlers = conn.execute(select(handler_table)).mappings().all()
            # ix_job_state_exit_code_destination: reads the runner errors only.
            no_exit = conn.execute(select(job.c.destination_id, func.count())
                                   .where(job.c.state == JobState.ERROR, job.c.exit_code.is_(None))
                                   .group_by(job.c.destination_id)).all()

        hours = int(JOB_WINDOW.total_seconds() // 3600)
        jobs = GaugeMetricFamily("muleteer_jobs", "Active jobs (new, queued, running, deleting...) "
                                 "by state, handler and destination",
                                 labels=["state", "handler", "destination"])
        for state, handler, destination, count in by_state:
            jobs.add_metric([state, handler or "", destination], count)
        yield jobs
        yield self._family("muleteer_job_wait_seconds",
                           f"From submission to running, of the jobs that ended in the last {hours} h "
                           "(only those jobs: a gauge histogram)", waits)
        yield self._family("muleteer_job_run_seconds",
                           f"From running to its end, of the jobs that ended in the last {hours} h "
                           "(only those jobs: a gauge histogram)", runs)

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
        family = GaugeHistogramMetricFamily(name, documentation)
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
