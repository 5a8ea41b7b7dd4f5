"""/metrics rendering on both databases (their date arithmetic differs)."""
import pytest

from muleteer.job import JobState
from app.metrics import render


def test_metrics_from_the_store(store, make_job):
    done = make_job("t", destination_id="local")
    store.claim_job(done.id, "h", ["t"])
    store.transition(done.id, JobState.RUNNING, from_states=(JobState.QUEUED,))
    store.transition(done.id, JobState.OK, from_states=(JobState.RUNNING,), exit_code=0)
    lost = make_job("t", destination_id="slurm")
    store.claim_job(lost.id, "h", ["t"])
    store.transition(lost.id, JobState.ERROR, from_states=(JobState.QUEUED,), info="node lost")
    make_job("t")
    store.heartbeat("main.web.1", ("main.web.1",), "web", messages_failed=3)
    text = render(store).decode()
    # Active jobs only (a count of every ended job was a scan of the whole table per scrape);
    # ended jobs are in the windowed histograms.
    assert 'state="ok"' not in text and 'state="error"' not in text
    assert 'muleteer_jobs{destination="local",handler="t",state="new"} 1.0' in text
    assert "# TYPE muleteer_job_wait_seconds histogram" in text
    assert "muleteer_job_wait_seconds_gcount 1.0" in text
    assert 'muleteer_job_run_seconds_bucket{le="+Inf"} 1.0' in text
    assert 'muleteer_runner_errors_total{destination="slurm"} 1.0' in text
    assert 'muleteer_messages_failed_total{handler="main.web.1"} 3.0' in text
    assert 'muleteer_handler_heartbeat_age_seconds{handler="main.web.1",host=' in text


def _ended_job(store, tool_id, run_seconds, peak=None, metric="memory.peak", ago=60.0,
               state=JobState.OK):
    """A job of `tool_id` that ran `run_seconds` and ended `ago` seconds ago (its row written
    as is, for times in the past), with its peak memory if given."""
    from datetime import timedelta

    from sqlalchemy import insert

    from muleteer.models import job, job_metric_numeric
    from muleteer.store import utcnow
    end = utcnow() - timedelta(seconds=ago)
    start = end - timedelta(seconds=run_seconds)
    with store.engine.begin() as conn:
        job_id = conn.execute(insert(job).values(
            tool_id=tool_id, tool_version="1", params="{}", command_line="true", state=state,
            handler_tag="h", destination_id="local", runner="local", create_time=start,
            update_time=end, start_time=start, end_time=end)).inserted_primary_key[0]
        if peak is not None:
            conn.execute(insert(job_metric_numeric).values(
                job_id=job_id, plugin="cgroup", metric_name=metric, metric_value=peak))


def _samples(text: str) -> dict:
    """{(sample name, tool_id, le as a float): value} of the by-tool families."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, s.labels.get("tool_id"), float(s.labels["le"]) if "le" in s.labels else None): s.value
            for family in text_string_to_metric_families(text) if family.name.startswith("muleteer_tool_")
            for s in family.samples}


def test_run_time_and_peak_memory_by_tool_of_the_last_day(store):
    gib = 2**30
    _ended_job(store, "bwa_mem", 7, peak=3 * gib)
    _ended_job(store, "bwa_mem", 400, peak=40 * gib, metric="memory.max_usage_in_bytes")
    _ended_job(store, "cat", 0.5)  # no memory metric: in the run times only
    _ended_job(store, "cat", 4000, peak=gib, ago=2 * 86400)  # ended before the window
    _ended_job(store, "cat", 90, peak=gib, state=JobState.DELETED)  # cancelled: no run time
    text = render(store).decode()
    assert "# TYPE muleteer_tool_run_seconds histogram" in text
    assert "# TYPE muleteer_tool_memory_peak_bytes histogram" in text
    assert "in the last 24 h" in text
    got = _samples(text)
    run, memory = "muleteer_tool_run_seconds", "muleteer_tool_memory_peak_bytes"
    assert got[(run + "_bucket", "bwa_mem", 5.0)] == 0
    assert got[(run + "_bucket", "bwa_mem", 10.0)] == 1
    assert got[(run + "_bucket", "bwa_mem", 300.0)] == 1
    assert got[(run + "_bucket", "bwa_mem", 1800.0)] == 2
    assert got[(run + "_gcount", "bwa_mem", None)] == 2
    assert got[(run + "_gsum", "bwa_mem", None)] == pytest.approx(407, abs=0.01)
    assert got[(run + "_bucket", "cat", 0.1)] == 0
    assert got[(run + "_bucket", "cat", 1.0)] == 1
    assert got[(run + "_gcount", "cat", None)] == 1
    assert got[(memory + "_bucket", "bwa_mem", 2147483648.0)] == 0
    assert got[(memory + "_bucket", "bwa_mem", 4294967296.0)] == 1
    assert got[(memory + "_bucket", "bwa_mem", float("inf"))] == 2
    assert got[(memory + "_gsum", "bwa_mem", None)] == 43 * gib
    assert got[(memory + "_gcount", "cat", None)] == 1  # the deleted job's peak still counts
    # The families of all jobs beside them: the same window (the job of two days ago is out).
    assert "muleteer_job_run_seconds_gcount 4.0" in text


def test_tool_histograms_are_empty_without_recent_jobs(store):
    _ended_job(store, "cat", 10, peak=1e9, ago=3 * 86400)
    text = render(store).decode()
    assert "# TYPE muleteer_tool_run_seconds histogram" in text
    assert _samples(text) == {}
