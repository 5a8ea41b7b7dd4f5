"""/metrics in the Prometheus text format: what uWSGI's stats server does not show.

uWSGI's stats list web workers, but not mules, queues or jobs. Everything here is read
from the database at scrape time, so every process (web workers, mules, webless
handlers on other hosts) is counted, whichever web worker answers the scrape.
Access: admins, or the addresses in `metrics_allowed_addresses` (as uWSGI sees them:
behind nginx that is nginx's, so keep /metrics internal there).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import and_, case, func, select

from muleteer.job import JobState
from muleteer.models import handler as handler_table
from muleteer.models import job
from muleteer.store import utcnow

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 21600, 86400)


def _seconds(later, earlier, dialect):
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


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
            waits = self._histogram(conn, _seconds(job.c.start_time, job.c.create_time, dialect),
                                    job.c.start_time.is_not(None))
            runs = self._histogram(conn, _seconds(job.c.end_time, job.c.start_time, dialect),
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


def render(store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobCollector(store))
    return generate_latest(registry)
