"""Reports over many jobs: the queries behind the admin's charts and /metrics by tool.

A store may hold millions of jobs, so every query here is bounded by a time window and
filters on `end_time` first: a job that overlaps a window either has not ended (NULL) or
ended after the window began. With an index on job.end_time that is one index range plus
the active jobs, never the whole table. Aggregation happens in the database (GROUP BY,
window functions for percentiles: SQLite 3.25+ and PostgreSQL alike); what comes back is a
few rows per destination, time bucket or tool.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, case, cast, func, literal, or_, select

from muleteer.job_metrics import PEAK_MEMORY_NAMES
from muleteer.job import JobState
from muleteer.models import job, job_metric_numeric
from muleteer.store.database import utcnow

# The job_metric_numeric names of a job's peak memory in bytes (Galaxy's cgroup plugin:
# cgroup v2, then v1). The one place this report knows them.
PEAK_MEMORY_METRICS = PEAK_MEMORY_NAMES  # the job metrics that mean peak memory, in bytes
PERCENTILES = (0.5, 0.9, 0.99)


def seconds_between(later, earlier, dialect: str):
    """SQL for `later - earlier` in seconds (a float), on either database."""
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


@dataclass(frozen=True)
class TimeBuckets:
    """`count` consecutive buckets of `width` from `since`."""
    since: datetime
    width: timedelta
    count: int

    @classmethod
    def ending_now(cls, span: timedelta, width: timedelta, now: datetime | None = None):
        """Buckets covering `span` up to the end of the bucket holding `now`, aligned on
        multiples of `width` (so a reload a minute later shows the same buckets)."""
        now = now or utcnow()
        step = width.total_seconds()
        epoch = datetime(1970, 1, 1)
        until = epoch + timedelta(seconds=((now - epoch).total_seconds() // step + 1) * step)
        count = int(span / width)
        if count < 1 or count * width != span:
            raise ValueError(f"a span of {span} is not a whole number of {width} buckets")
        return cls(since=until - span, width=width, count=count)

    @property
    def until(self) -> datetime:
        return self.since + self.width * self.count

    def start(self, index: int) -> datetime:
        return self.since + self.width * index


@dataclass(frozen=True)
class DestinationActivity:
    """How many jobs of a destination were waiting (submitted, not yet running) and running
    at some time within each bucket."""
    destination: str
    waiting: tuple[int, ...]
    running: tuple[int, ...]


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles (PERCENTILES) of some seconds, and how many values."""
    values: tuple[float, ...]
    jobs: int


@dataclass(frozen=True)
class ToolMemory:
    tool_id: str
    largest: float  # bytes: the largest peak of one job
    mean: float
    jobs: int


@dataclass(frozen=True)
class ToolHistogram:
    """Cumulative counts at each upper bound (as Prometheus's buckets), all, and the sum."""
    tool_id: str
    cumulative: tuple[int, ...]
    count: int
    total: float


class Reports:
    def job_activity(self, buckets: TimeBuckets) -> list[DestinationActivity]:
        """Jobs waiting and running by destination, per bucket, busiest destination first."""
        now = _time(utcnow())
        waiting_end = func.coalesce(job.c.start_time, job.c.end_time, now)
        running_end = func.coalesce(job.c.end_time, now)
        waiting = self._spans(buckets, job.c.create_time, waiting_end, [])
        running = self._spans(buckets, job.c.start_time, running_end,
                              [job.c.start_time.is_not(None)])
        activity = []
        for destination in sorted(set(waiting) | set(running)):
            activity.append(DestinationActivity(
                destination, tuple(waiting.get(destination, [0] * buckets.count)),
                tuple(running.get(destination, [0] * buckets.count))))
        activity.sort(key=lambda a: -(sum(a.waiting) + sum(a.running)))
        return activity

    def _spans(self, buckets: TimeBuckets, begin, end, where) -> dict[str, list[int]]:
        """Per destination, per bucket: the jobs whose [begin, end) overlaps it. The database
        counts jobs by (destination, first bucket, last bucket); the spans are laid out here."""
        since, until = _time(buckets.since), _time(buckets.until)
        first = case((begin < since, 0), else_=self._bucket(begin, buckets))
        last = case((end >= until, buckets.count - 1), else_=self._bucket(end, buckets))
        # Grouped outside: PostgreSQL does not see two renderings of an expression with bind
        # parameters (SELECT, GROUP BY) as the same expression.
        spans = (select(job.c.destination_id, first.label("first"), last.label("last"))
                 .where(begin < until, end >= since, *where, _ends_after(buckets.since)).subquery())
        query = (select(spans.c.destination_id, spans.c.first, spans.c.last, func.count())
                 .group_by(spans.c.destination_id, spans.c.first, spans.c.last))
        counts: dict[str, list[int]] = {}
        with self.engine.connect() as conn:
            for destination, first_index, last_index, n in conn.execute(query):
                row = counts.setdefault(destination, [0] * buckets.count)
                for index in range(max(first_index, 0), min(last_index, buckets.count - 1) + 1):
                    row[index] += n
        return counts

    def wait_percentiles(self, buckets: TimeBuckets) -> dict[int, Percentiles]:
        """Seconds from submission to running of the jobs that started in each bucket."""
        return self._percentiles(seconds_between(job.c.start_time, job.c.create_time, self.dialect),
                                 self._bucket(job.c.start_time, buckets),
                                 _within(job.c.start_time, buckets))

    def run_percentiles(self, buckets: TimeBuckets) -> dict[int, Percentiles]:
        """Seconds from running to the end of the jobs that finished (ok, error) in each bucket."""
        return self._percentiles(seconds_between(job.c.end_time, job.c.start_time, self.dialect),
                                 self._bucket(job.c.end_time, buckets), _finished_within(buckets))

    def wait_percentiles_by_destination(self, buckets: TimeBuckets) -> dict[str, Percentiles]:
        return self._percentiles(seconds_between(job.c.start_time, job.c.create_time, self.dialect),
                                 job.c.destination_id, _within(job.c.start_time, buckets))

    def run_percentiles_by_destination(self, buckets: TimeBuckets) -> dict[str, Percentiles]:
        return self._percentiles(seconds_between(job.c.end_time, job.c.start_time, self.dialect),
                                 job.c.destination_id, _finished_within(buckets))

    def _percentiles(self, seconds, key, where) -> dict:
        # Nearest rank: the p-th percentile of n sorted values is the one at rank ceil(p * n),
        # which is the smallest value whose rank is at least p * n.
        ranked = select(key.label("key"), seconds.label("seconds"),
                        func.row_number().over(partition_by=key, order_by=seconds).label("rank"),
                        func.count().over(partition_by=key).label("n")).where(*where).subquery()
        columns = [func.min(case((ranked.c.rank >= p * ranked.c.n, ranked.c.seconds)))
                   for p in PERCENTILES]
        query = select(ranked.c.key, func.count(), *columns).group_by(ranked.c.key)
        with self.engine.connect() as conn:
            return {key: Percentiles(tuple(float(v) for v in values), n)
                    for key, n, *values in conn.execute(query)}

    def top_memory_tools(self, since: datetime, until: datetime, limit: int = 10) -> list[ToolMemory]:
        """The tools whose jobs that ended in [since, until) had the largest peak memory."""
        peaks = _peak_memory_by_job(since, until)
        query = (select(peaks.c.tool_id, func.max(peaks.c.peak), func.avg(peaks.c.peak), func.count())
                 .group_by(peaks.c.tool_id)
                 .order_by(func.max(peaks.c.peak).desc(), peaks.c.tool_id).limit(limit))
        with self.engine.connect() as conn:
            return [ToolMemory(tool_id, float(largest), float(mean), n)
                    for tool_id, largest, mean, n in conn.execute(query)]

    def tool_run_histograms(self, since: datetime, until: datetime, bounds) -> list[ToolHistogram]:
        """Run time (end - start) of the jobs that finished (ok, error) in [since, until), by tool."""
        seconds = seconds_between(job.c.end_time, job.c.start_time, self.dialect)
        query = _histogram(job.c.tool_id, seconds, bounds).where(*_ended(since, until), *_finished())
        return self._histograms(query)

    def tool_memory_histograms(self, since: datetime, until: datetime, bounds) -> list[ToolHistogram]:
        """Peak memory (bytes) of the jobs that ended in [since, until) and recorded it, by tool."""
        peaks = _peak_memory_by_job(since, until)
        return self._histograms(_histogram(peaks.c.tool_id, peaks.c.peak, bounds))

    def _histograms(self, query) -> list[ToolHistogram]:
        with self.engine.connect() as conn:
            return [ToolHistogram(tool_id, tuple(counts[:-2]), counts[-2], float(counts[-1]))
                    for tool_id, *counts in conn.execute(query)]

    def _bucket(self, moment, buckets: TimeBuckets):
        """SQL for the index of the bucket holding `moment` (at or after buckets.since)."""
        seconds = seconds_between(moment, _time(buckets.since), self.dialect)
        index = seconds / buckets.width.total_seconds()
        if self.dialect == "postgresql":
            return cast(func.floor(index), Integer)
        return cast(index, Integer)  # SQLite's CAST truncates, which floors a value >= 0


def _time(value: datetime):
    return literal(value, DateTime)


def _ends_after(since: datetime):
    # The index-friendly bound every report query carries (see the module's docstring).
    return or_(job.c.end_time.is_(None), job.c.end_time >= _time(since))


def _within(moment, buckets: TimeBuckets):
    return [moment >= _time(buckets.since), moment < _time(buckets.until), _ends_after(buckets.since)]


def _finished_within(buckets: TimeBuckets):
    return [*_within(job.c.end_time, buckets), *_finished()]


def _finished():
    # A run time counts for jobs that ran to their own end (ok, error): a cancelled job's is
    # not the tool's. Said as "not deleted" (only ended jobs have an end time): a state IN
    # (...) would lead SQLite to scan every ok job by the state index instead of the window.
    return [job.c.start_time.is_not(None), job.c.state != JobState.DELETED]


def _ended(since: datetime, until: datetime):
    # Both ends, even when `until` is now: SQLite's planner (no statistics) takes a range
    # bounded on both sides as narrow enough to use the end_time index rather than scan an
    # index in GROUP BY order.
    return [job.c.end_time >= _time(since), job.c.end_time < _time(until)]


def _peak_memory_by_job(since: datetime, until: datetime):
    """Each job that ended in [since, until) with a peak-memory metric: its tool and its
    peak (the largest, should it have recorded more than one)."""
    return (select(job.c.tool_id, func.max(job_metric_numeric.c.metric_value).label("peak"))
            .select_from(job.join(job_metric_numeric, job_metric_numeric.c.job_id == job.c.id))
            .where(*_ended(since, until), job_metric_numeric.c.metric_name.in_(PEAK_MEMORY_METRICS))
            .group_by(job_metric_numeric.c.job_id, job.c.tool_id).subquery())


def _histogram(key, value, bounds):
    columns = [func.count(case((value <= bound, 1))) for bound in bounds]
    return (select(key, *columns, func.count(), func.coalesce(func.sum(value), 0.0))
            .group_by(key).order_by(key))
