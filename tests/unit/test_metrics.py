"""/metrics rendering on both databases (their date arithmetic differs)."""
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
    assert 'muleteer_jobs{destination="local",handler="h",state="ok"} 1.0' in text
    assert 'muleteer_jobs{destination="local",handler="t",state="new"} 1.0' in text
    assert "muleteer_job_wait_seconds_count 1.0" in text
    assert 'muleteer_job_run_seconds_bucket{le="+Inf"} 1.0' in text
    assert 'muleteer_runner_errors_total{destination="slurm"} 1.0' in text
    assert 'muleteer_messages_failed_total{handler="main.web.1"} 3.0' in text
    assert 'muleteer_handler_heartbeat_age_seconds{handler="main.web.1",host=' in text
