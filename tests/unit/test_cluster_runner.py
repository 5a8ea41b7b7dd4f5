"""ClusterRunner's shared machinery with a fake scheduler: retries, refusals, batched
status checks, vanished jobs, walltime, the scheduler's last word on a job that failed
(settle). The real schedulers are in tests/integration."""
import os
import threading

import pytest

from muleteer.job import JobState
from muleteer.job_config import Destination, Plugin
from mules.lifecycle import MEMORY, Outcome, Usage
from mules.runners.cluster import (ACTIVE, FINISHED, PENDING, SCHEDULER_ERR, ClusterRunner,
                                   SchedulerError, Status)


class FakeScheduler(ClusterRunner):
    """Answers from a script the test controls; counts calls."""
    name = "fake"

    def __init__(self, ctx, plugin, handler_name):
        self.submit_errors = []  # raised in order by submit_script, then success
        self.states = {}  # external id -> Status; absent = unknown to the scheduler
        self.killed = []
        self.submitted = []
        self.status_callers = []  # the thread of each status call (the monitor's, or a test's)
        super().__init__(ctx, plugin, handler_name)

    def submit_script(self, job, files, destination):
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        external_id = f"x{job.id}"
        self.submitted.append(external_id)
        self.states[external_id] = Status(PENDING, "PENDING")
        return external_id

    def statuses(self, external_ids):
        self.status_calls += 1
        self.status_callers.append(threading.get_ident())
        return {i: self.states[i] for i in external_ids if i in self.states}

    def kill(self, external_id, job=None):
        self.killed.append(external_id)
        self.states.pop(external_id, None)


DESTINATION = Destination(id="local", runner="fake")


@pytest.fixture
def fake(local_ctx):
    runners = []

    def _make(**params):
        params = {"submit_retry_delay": "0.05", **{k: str(v) for k, v in params.items()}}
        runner = FakeScheduler(local_ctx, Plugin("fake", "slurm", 2, params), "test-handler")
        runners.append(runner)
        return runner

    yield _make
    for runner in runners:
        runner.shutdown()


def write_exit_code(local_ctx, job_id, code):
    job = local_ctx.store.get_job(job_id)
    with open(os.path.join(job.working_directory, "exit_code"), "w") as fh:
        fh.write(f"{code}\n")


def test_one_status_call_per_check_whatever_the_number_of_jobs(fake, local_ctx, new_job, wait_for):
    runner = fake()
    jobs = [new_job("noop") for _ in range(50)]
    for job in jobs:
        runner.submit(job, DESTINATION)
    wait_for(lambda: runner.watched_count() == 50, timeout=60, what="50 submitted jobs")
    runner.check_all()
    # The runner's monitor thread checks too, whenever it likes: count this thread's calls.
    assert runner.status_callers.count(threading.get_ident()) == 1


def test_queued_running_ok_from_the_exit_code_file(fake, local_ctx, new_job, wait_state, wait_for):
    runner = fake()
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    wait_for(lambda: runner.watched_count() == 1, what="submission")
    external_id = f"x{job.id}"
    runner.states[external_id] = Status(ACTIVE, "RUNNING")
    assert wait_state(job.id, JobState.RUNNING).external_id == external_id
    write_exit_code(local_ctx, job.id, 0)
    runner.states[external_id] = Status(FINISHED, "COMPLETED")
    row = wait_state(job.id, JobState.OK)
    assert row.exit_code == 0


def test_a_scheduler_that_is_down_is_retried_then_the_job_runs(fake, local_ctx, new_job, wait_for):
    runner = fake()
    runner.submit_errors = [SchedulerError("Unable to contact slurm controller", transient=True)] * 2
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    row = wait_for(lambda: (r := local_ctx.store.get_job(job.id)).external_id and r,
                   what="the third attempt to succeed and be recorded")
    assert runner.submitted
    assert row.state == JobState.QUEUED and row.external_id == f"x{job.id}"
    assert "submitted to fake" in row.info


def test_the_reason_is_shown_while_retrying(fake, local_ctx, new_job, wait_for):
    runner = fake(submit_retry_delay=30)
    runner.submit_errors = [SchedulerError("Unable to contact slurm controller", transient=True)]
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    row = wait_for(lambda: (r := local_ctx.store.get_job(job.id)).info and r, what="info")
    assert row.state == JobState.QUEUED
    assert "Unable to contact slurm controller" in row.info and "retry 1 of 5" in row.info


def test_giving_up_after_the_retries_is_a_clear_error(fake, local_ctx, new_job, wait_state):
    runner = fake(submit_retries=2)
    runner.submit_errors = [SchedulerError("connection refused", transient=True)] * 3
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    row = wait_state(job.id, JobState.ERROR)
    assert "gave up after 2 retries" in row.info and "connection refused" in row.info


def test_a_refusal_ends_the_job_at_once_with_the_schedulers_words(fake, new_job, wait_state):
    runner = fake()
    runner.submit_errors = [SchedulerError("invalid partition specified: nosuch")]
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    row = wait_state(job.id, JobState.ERROR)
    assert row.info == "fake refused the job: invalid partition specified: nosuch"


def test_walltime_without_an_exit_code_is_reported_as_such(fake, new_job, wait_state, wait_for):
    runner = fake()
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    wait_for(lambda: runner.watched_count() == 1, what="submission")
    runner.states[f"x{job.id}"] = Status(FINISHED, "TIMEOUT (TimeLimit)", "walltime_reached")
    row = wait_state(job.id, JobState.ERROR)
    assert row.info == "walltime reached (fake: TIMEOUT (TimeLimit))"


def test_a_job_the_scheduler_forgot_without_an_exit_code_ends_error(fake, new_job, wait_state,
                                                                     wait_for):
    runner = fake(vanished_after_checks=2)
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    wait_for(lambda: runner.watched_count() == 1, what="submission")
    del runner.states[f"x{job.id}"]
    row = wait_state(job.id, JobState.ERROR)
    assert "without writing an exit code" in row.info


def test_cancel_kills_the_scheduler_job(fake, local_ctx, new_job, wait_for):
    runner = fake()
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    wait_for(lambda: runner.watched_count() == 1, what="submission")
    assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
    runner.cancel(local_ctx.store.get_job(job.id))
    assert runner.killed == [f"x{job.id}"]
    assert local_ctx.store.get_job(job.id).state == JobState.DELETED
    assert runner.watched_count() == 0


def test_a_cancel_during_the_submission_kills_what_the_scheduler_took(fake, local_ctx,
                                                                        new_job, wait_for):
    """The cancel comes while the scheduler is taking the job (a slow sudo, a busy
    scheduler): it finds no id to kill and records the job deleted; the submitting worker
    kills the scheduler's job once it has its id, and watches nothing."""
    runner = fake()
    job = new_job("noop")

    def cancelled_meanwhile(job, files, destination):
        assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
        runner.cancel(local_ctx.store.get_job(job.id))  # no external id yet
        return FakeScheduler.submit_script(runner, job, files, destination)

    runner.submit_script = cancelled_meanwhile
    runner.submit(job, DESTINATION)
    wait_for(lambda: runner.killed == [f"x{job.id}"], what="the kill of the submitted job")
    assert local_ctx.store.get_job(job.id).state == JobState.DELETED
    assert runner.watched_count() == 0


def test_recover_reattaches_by_external_id_and_never_resubmits(fake, local_ctx, new_job,
                                                               wait_state, wait_for):
    first = fake()
    job = new_job("noop")
    first.submit(job, DESTINATION)
    wait_for(lambda: local_ctx.store.get_job(job.id).external_id, what="the external id")
    first.shutdown()
    second = fake()
    second.states = dict(first.states)
    second.recover(local_ctx.store.get_job(job.id), DESTINATION)
    write_exit_code(local_ctx, job.id, 0)
    second.states[f"x{job.id}"] = Status(FINISHED, "COMPLETED")
    assert wait_state(job.id, JobState.OK).external_id == f"x{job.id}"
    assert second.submitted == []


# -- a job's end as the scheduler explains it (settle) ------------------------------------
def record_outcomes(runner):
    """The outcomes the runner reports to its lifecycle, in order."""
    seen = []
    ended = runner.lifecycle.ended

    def spy(job, outcome):
        seen.append(outcome)
        return ended(job, outcome)
    runner.lifecycle.ended = spy
    return seen


def submitted(runner, new_job, wait_for):
    job = new_job("noop")
    runner.submit(job, DESTINATION)
    wait_for(lambda: runner.watched_count() == 1, what="submission")
    return job


def test_a_tool_killed_for_its_memory_is_memory_limit_reached_though_the_script_wrote_137(
        fake, local_ctx, new_job, wait_state, wait_for):
    """A cgroup's OOM killer ends the tool, not the script, which writes 137: the
    scheduler's last word (settle) makes it memory_limit_reached."""
    runner = fake()
    asked = []

    def settle(job, files, status, exit_code):
        asked.append((status.detail, exit_code))
        return Status(FINISHED, "OUT_OF_MEMORY (OutOfMemory)", MEMORY,
                      Usage(max_rss_bytes=10, cpu_seconds=0.5))
    runner.settle = settle
    outcomes = record_outcomes(runner)
    job = submitted(runner, new_job, wait_for)
    write_exit_code(local_ctx, job.id, 137)
    runner.states[f"x{job.id}"] = Status(FINISHED, "COMPLETED")
    row = wait_state(job.id, JobState.ERROR)
    assert asked == [("COMPLETED", 137)]
    assert row.info == ("memory limit reached (fake: OUT_OF_MEMORY (OutOfMemory)); the job "
                        "script exited with 137")
    assert outcomes == [Outcome(None, MEMORY, row.info, Usage(10, 0.5))]


def test_a_job_that_ended_0_is_ok_whatever_the_scheduler_saw(fake, local_ctx, new_job,
                                                             wait_state, wait_for):
    runner = fake()
    runner.settle = lambda job, files, status, code: Status(
        FINISHED, "OUT_OF_MEMORY", MEMORY, Usage(cpu_seconds=2.0))
    outcomes = record_outcomes(runner)
    job = submitted(runner, new_job, wait_for)
    write_exit_code(local_ctx, job.id, 0)
    runner.states[f"x{job.id}"] = Status(FINISHED, "COMPLETED")
    assert wait_state(job.id, JobState.OK, JobState.ERROR).state == JobState.OK
    assert outcomes[0].exit_code == 0 and outcomes[0].usage == Usage(cpu_seconds=2.0)


def test_a_scheduler_that_cannot_settle_leaves_the_exit_code_to_judge(fake, local_ctx, new_job,
                                                                      wait_state, wait_for):
    runner = fake()

    def settle(job, files, status, exit_code):
        raise SchedulerError("squeue timed out", transient=True)
    runner.settle = settle
    job = submitted(runner, new_job, wait_for)
    write_exit_code(local_ctx, job.id, 3)
    runner.states[f"x{job.id}"] = Status(FINISHED, "FAILED")
    row = wait_state(job.id, JobState.ERROR)
    assert row.exit_code == 3 and row.info.startswith("exit code 3"), row.info


def test_a_job_whose_end_the_scheduler_must_record_waits_for_it(fake, local_ctx, new_job,
                                                                wait_state, wait_for):
    """ends_by_exit_code False (DRMAA's own jobs: wait() tells their usage): the exit-code
    file alone does not finish the job; the scheduler's finished state does."""
    runner = fake()
    job = submitted(runner, new_job, wait_for)
    write_exit_code(local_ctx, job.id, 0)
    runner.ends_by_exit_code = lambda job: False
    runner.check_exit_codes()
    assert runner.watched_count() == 1
    assert local_ctx.store.get_job(job.id).state == JobState.QUEUED
    runner.ends_by_exit_code = lambda job: True
    runner.check_exit_codes()  # the same call finishes it when the file may
    assert wait_state(job.id, JobState.OK).exit_code == 0


def test_a_scheduler_kill_message_without_an_exit_code_explains_the_end(fake, local_ctx,
                                                                        new_job, wait_state,
                                                                        wait_for):
    """The settle() of the pbs and slurm runners reads the scheduler's words in
    scheduler.err (here as the TORQUE wrappers' walltime kill left them)."""
    runner = fake()
    runner.settle = lambda job, files, status, code: Status(
        FINISHED, *reversed(runner.scheduler_message(files))) if code is None else status
    job = submitted(runner, new_job, wait_for)
    with open(os.path.join(local_ctx.store.get_job(job.id).working_directory,
                           SCHEDULER_ERR), "w") as fh:
        fh.write("slurmstepd-vm: error: *** JOB 602 ON vm CANCELLED AT 2026-11-29T11:21:05 "
                 "DUE TO TIME LIMIT ***\n")
    runner.states[f"x{job.id}"] = Status(FINISHED, "state C")
    row = wait_state(job.id, JobState.ERROR)
    assert row.info == ("walltime reached (fake: slurmstepd-vm: error: *** JOB 602 ON vm "
                        "CANCELLED AT 2026-11-29T11:21:05 DUE TO TIME LIMIT ***)")


def test_drmaa_jobs_wait_for_the_record_of_their_end_but_not_forever(monkeypatch):
    """This session's DRMAA jobs end by wait()'s record (it has their usage); one the DRM
    lost never gets one, and its exit-code file finishes it after _RECORD_WAIT."""
    from types import SimpleNamespace

    from mules.runners import drmaa

    runner = drmaa.DrmaaRunner.__new__(drmaa.DrmaaRunner)  # no DRM session needed for this
    files = SimpleNamespace(exit_code=lambda: None)
    runner._ours, runner._exited = {"41": files, "42": files}, {}
    assert not runner.ends_by_exit_code(SimpleNamespace(external_id="41"))
    assert runner.ends_by_exit_code(SimpleNamespace(external_id="7"))  # another session's
    assert not runner._record_overdue("41", files)  # still running: no exit code
    files.exit_code = lambda: 0
    clock = [1000.0]
    monkeypatch.setattr(drmaa.time, "monotonic", lambda: clock[0])
    assert not runner._record_overdue("41", files)  # just written: the record comes soon
    clock[0] += drmaa._RECORD_WAIT
    assert runner._record_overdue("41", files)
    assert "41" not in runner._ours and "42" in runner._ours
