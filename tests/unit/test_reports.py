"""muleteer/store/reports.py on SQLite and PostgreSQL: buckets, waiting and running jobs by
destination, percentiles, the tools with the most memory, histograms by tool."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from muleteer.job import JobState
from muleteer.models import job, job_metric_numeric
from muleteer.store import utcnow
from muleteer.store.reports import PEAK_MEMORY_METRICS, TimeBuckets

GIB = 2**30


def seed(store, *, tool="cat", destination="local", created, started=None, ended=None,
         state=None, peak=None, metric=PEAK_MEMORY_METRICS[0]) -> int:
    """A job row with the times given (as datetimes), and its peak memory metric."""
    state = state or (JobState.OK if ended else JobState.RUNNING if started else JobState.NEW)
    with store.engine.begin() as conn:
        job_id = conn.execute(insert(job).values(
            tool_id=tool, tool_version="1", params="{}", command_line="true", state=state,
            handler_tag="h", destination_id=destination, runner="local", create_time=created,
            update_time=ended or started or created, start_time=started, end_time=ended)
        ).inserted_primary_key[0]
        if peak is not None:
            conn.execute(insert(job_metric_numeric).values(
                job_id=job_id, plugin="cgroup", metric_name=metric, metric_value=peak))
    return job_id


@pytest.fixture
def hours():
    """Six one-hour buckets ending with the current hour, and a function from an offset in
    hours from their start to a time."""
    buckets = TimeBuckets.ending_now(timedelta(hours=6), timedelta(hours=1))
    return buckets, lambda h: buckets.since + timedelta(hours=h)


def test_buckets_are_aligned_and_end_with_the_current_one():
    now = datetime(2026, 11, 29, 14, 3, 7)
    buckets = TimeBuckets.ending_now(timedelta(hours=24), timedelta(hours=1), now=now)
    assert buckets.until == datetime(2026, 11, 29, 15) and buckets.count == 24
    assert buckets.since == datetime(2026, 11, 28, 15) and buckets.start(23) == datetime(2026, 11, 29, 14)
    week = TimeBuckets.ending_now(timedelta(days=7), timedelta(hours=6), now=now)
    assert (week.count, week.until) == (28, datetime(2026, 11, 29, 18))
    with pytest.raises(ValueError, match="whole number"):
        TimeBuckets.ending_now(timedelta(hours=5), timedelta(hours=2), now=now)


def test_waiting_and_running_jobs_by_destination(store, hours):
    buckets, at = hours
    # Waits in bucket 1 and 2, runs in 2 to 4.
    seed(store, destination="slurm", created=at(1.5), started=at(2.5), ended=at(4.5))
    # Submitted long before the window, still waiting: every bucket.
    seed(store, destination="slurm", created=at(-30))
    # Ran long ago: nothing. Still running since before the window: running everywhere.
    seed(store, destination="local", created=at(-50), started=at(-49), ended=at(-48))
    seed(store, destination="local", created=at(-3), started=at(-2))
    # Cancelled while waiting, in bucket 3: waiting in bucket 3 only.
    seed(store, destination="local", created=at(3.2), ended=at(3.4), state=JobState.DELETED)
    activity = {a.destination: a for a in store.job_activity(buckets)}
    assert set(activity) == {"slurm", "local"}
    assert activity["slurm"].waiting == (1, 2, 2, 1, 1, 1)
    assert activity["slurm"].running == (0, 0, 1, 1, 1, 0)
    assert activity["local"].waiting == (0, 0, 0, 1, 0, 0)
    assert activity["local"].running == (1, 1, 1, 1, 1, 1)
    assert [a.destination for a in store.job_activity(buckets)] == ["slurm", "local"]


def test_percentiles_are_nearest_rank_per_bucket_and_destination(store, hours):
    buckets, at = hours
    # 100 jobs start in bucket 2 after waiting 1..100 s on two destinations; they run 10 s.
    for seconds in range(1, 101):
        started = at(2.1) + timedelta(seconds=seconds)
        seed(store, destination="local" if seconds <= 50 else "slurm",
             created=started - timedelta(seconds=seconds), started=started,
             ended=started + timedelta(seconds=10))
    seed(store, created=at(4.2), started=at(4.5))  # still running: a wait, no run time
    seed(store, created=at(4.2), started=at(4.3), ended=at(4.4), state=JobState.DELETED)
    seed(store, created=at(-9), started=at(-8.5), ended=at(-8))  # before the window
    waits = store.wait_percentiles(buckets)
    assert set(waits) == {2, 4}
    assert waits[2].jobs == 100 and waits[2].values == pytest.approx((50, 90, 99), abs=0.01)
    assert waits[4].jobs == 2 and waits[4].values == pytest.approx((360, 1080, 1080), abs=0.01)
    runs = store.run_percentiles(buckets)
    assert set(runs) == {2}  # the cancelled job's run is not a run time
    assert runs[2].jobs == 100 and runs[2].values == pytest.approx((10, 10, 10), abs=0.01)
    by_destination = store.wait_percentiles_by_destination(buckets)
    assert by_destination["slurm"].values == pytest.approx((75, 95, 100), abs=0.01)
    assert by_destination["local"].jobs == 52
    assert store.run_percentiles_by_destination(buckets)["slurm"].jobs == 50


def test_tools_with_the_most_memory(store, hours):
    buckets, at = hours
    for tool, peaks in (("bwa_mem", (3 * GIB, 5 * GIB)), ("cat", (GIB / 8,)), ("sort", (GIB,))):
        for peak in peaks:
            seed(store, tool=tool, created=at(1), started=at(1.1), ended=at(1.2), peak=peak)
    # cgroup v1's name counts too; a job's larger value wins if it recorded both.
    job_id = seed(store, tool="sort", created=at(1), started=at(1.1), ended=at(1.2), peak=GIB,
                  metric="memory.max_usage_in_bytes")
    with store.engine.begin() as conn:
        conn.execute(insert(job_metric_numeric).values(job_id=job_id, plugin="cgroup",
                                                       metric_name="memory.peak", metric_value=2 * GIB))
    seed(store, tool="old", created=at(-40), started=at(-39), ended=at(-38), peak=64 * GIB)
    seed(store, tool="running", created=at(1), started=at(1.1), peak=64 * GIB)
    seed(store, tool="other_metric", created=at(1), started=at(1.1), ended=at(1.2), peak=64 * GIB,
         metric="memory.limit")
    top = store.top_memory_tools(buckets.since, buckets.until)
    assert [(t.tool_id, t.largest, t.jobs) for t in top] == [
        ("bwa_mem", 5 * GIB, 2), ("sort", 2 * GIB, 2), ("cat", GIB / 8, 1)]
    assert top[0].mean == 4 * GIB and top[1].mean == 1.5 * GIB
    assert [t.tool_id for t in store.top_memory_tools(buckets.since, buckets.until, limit=1)] == ["bwa_mem"]


def test_histograms_by_tool_count_only_the_window(store):
    now = utcnow()
    for tool, seconds in (("cat", 3), ("cat", 30), ("sort", 300)):
        seed(store, tool=tool, created=now - timedelta(seconds=seconds + 60),
             started=now - timedelta(seconds=seconds + 1), ended=now - timedelta(seconds=1),
             peak=seconds * GIB)
    seed(store, tool="cat", created=now - timedelta(days=3), started=now - timedelta(days=2),
         ended=now - timedelta(days=2) + timedelta(seconds=1), peak=GIB)
    seed(store, tool="cat", created=now, started=now, ended=now, state=JobState.DELETED)
    since = now - timedelta(hours=24)
    runs = {h.tool_id: h for h in store.tool_run_histograms(since, utcnow(), (10, 100, 1000))}
    assert set(runs) == {"cat", "sort"}
    assert (runs["cat"].cumulative, runs["cat"].count) == ((1, 2, 2), 2)
    assert runs["cat"].total == pytest.approx(33, abs=0.01)
    assert runs["sort"].cumulative == (0, 0, 1)
    memory = {h.tool_id: h for h in store.tool_memory_histograms(since, utcnow(), (4 * GIB, 64 * GIB))}
    assert (memory["cat"].cumulative, memory["cat"].count) == ((1, 2), 2)
    assert memory["sort"].cumulative == (0, 0) and memory["sort"].total == 300 * GIB
