"""mules/runners/local.py driven directly: real job scripts, a real store in tmp_path."""
import os
import resource
import signal
import subprocess
import threading

import pytest

from muleteer import local_limits
from muleteer.job import JobState
from muleteer.job_config import Destination
from muleteer.job_files import SCRIPT, STDERR, STDOUT, JobFiles, working_directory
from mules.runners import local

GROUP_GONE_TIMEOUT = 10.0  # orphans are reaped by pid 1, which can take a couple of seconds


def job_files(ctx, job_id) -> JobFiles:
    return JobFiles(ctx.store.get_job(job_id).working_directory)


def read(files: JobFiles, name: str) -> str:
    with open(files.path(name)) as fh:
        return fh.read()


def test_cat_lines_ends_ok(local_ctx, start_runner, run_job, wait_state):
    job = run_job(start_runner(), "cat_lines", {"text": "hello world", "times": 3})
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.OK, row.info
    assert row.exit_code == 0 and row.info is None
    assert row.working_directory == working_directory(
        local_ctx.config.job_working_directory, job.id)
    assert int(row.external_id) > 0
    files = job_files(local_ctx, job.id)
    assert read(files, STDOUT) == "hello world\n" * 3
    assert read(files, STDERR) == ""
    assert files.exit_code() == 0
    assert [h["state"] for h in local_ctx.store.history(job.id)] == [
        JobState.NEW, JobState.QUEUED, JobState.RUNNING, JobState.OK]


def test_job_with_an_output_file(local_ctx, start_runner, run_job, wait_state):
    job = run_job(start_runner(), "sort_lines", {"text": "b\nc\na", "reverse": True})
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.OK, row.info
    assert read(job_files(local_ctx, job.id), "outputs/sorted.txt") == "c\nb\na\n"


def test_fail_ends_error_with_its_exit_code(local_ctx, start_runner, run_job, wait_state):
    job = run_job(start_runner(), "fail", {"message": "it broke", "exit_code": 3})
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.ERROR
    assert row.exit_code == 3 and row.info.startswith("exit code 3"), row.info
    assert read(job_files(local_ctx, job.id), STDERR) == "it broke\n"


def test_job_environment(local_ctx, start_runner, run_job, wait_state):
    job = run_job(start_runner(), "environment")
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.OK, row.info
    job_id, tmpdir, cwd = read(job_files(local_ctx, job.id), STDOUT).splitlines()
    assert job_id == str(job.id)
    assert tmpdir == local_ctx.config.new_file_path
    assert cwd == row.working_directory


def wait_running(wait_for, ctx, job_id):
    """The job's row once it runs and its script is past its gate (the tool's subshell
    has opened stdout)."""
    def started():
        row = ctx.store.get_job(job_id)
        files = JobFiles(row.working_directory or "/")
        if row.state == JobState.RUNNING and files.is_regular("stdout"):
            return row
        return None
    return wait_for(started, what=f"job {job_id} to run")


def test_cancel_kills_the_whole_process_group(local_ctx, start_runner, run_job, wait_state,
                                              wait_for, group_alive, monkeypatch):
    monkeypatch.setattr(local, "KILL_GRACE", 0.5)
    runner = start_runner()
    job = run_job(runner, "sleep", {"seconds": 30})
    row = wait_running(wait_for, local_ctx, job.id)
    pgid = int(row.external_id)
    assert os.getpgid(pgid) == pgid  # the job leads its own process group
    assert job_files(local_ctx, job.id).pid() is None  # gated: its pid is in the database only

    assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
    runner.cancel(local_ctx.store.get_job(job.id))
    row = wait_state(job.id, JobState.DELETED, JobState.OK, JobState.ERROR)
    assert row.state == JobState.DELETED
    assert [h["state"] for h in local_ctx.store.history(job.id)][-2:] == [
        JobState.DELETING, JobState.DELETED]
    wait_for(lambda: not group_alive(pgid), timeout=GROUP_GONE_TIMEOUT,
             what=f"process group {pgid} to be gone")
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_cancel_kills_a_job_that_ignores_signals(local_ctx, start_runner, run_job, wait_state,
                                                 wait_for, group_alive, monkeypatch):
    # Long enough that the end is recorded (several commits, on a busy machine) first.
    monkeypatch.setattr(local, "KILL_GRACE", 5.0)
    runner = start_runner()
    job = run_job(runner, "stubborn")
    row = wait_running(wait_for, local_ctx, job.id)
    pgid = int(row.external_id)
    files = job_files(local_ctx, job.id)
    # The tool writes `ready` once its signals are ignored: its subshell's pid.
    stubborn_pid = int(wait_for(lambda: os.path.exists(files.path("ready"))
                                and read(files, "ready").strip(), what="the tool to be ready"))

    assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
    runner.cancel(local_ctx.store.get_job(job.id))
    assert wait_state(job.id, JobState.DELETED, JobState.OK, JobState.ERROR).state == JobState.DELETED
    # SIGTERM ended the job script, but the tool ignored it and still runs ...
    with open(f"/proc/{stubborn_pid}/stat") as fh:
        assert fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    # ... until SIGKILL after the grace period.
    wait_for(lambda: not group_alive(pgid), timeout=local.KILL_GRACE + GROUP_GONE_TIMEOUT,
             what=f"process group {pgid} to be gone")


def test_cancel_before_start_records_deleted(local_ctx, start_runner, new_job):
    runner = start_runner()
    job = new_job("sleep", {"seconds": 30})  # claimed, never submitted
    assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
    runner.cancel(local_ctx.store.get_job(job.id))
    row = local_ctx.store.get_job(job.id)
    assert row.state == JobState.DELETED and row.info == "cancelled before it started"


def start_script_by_hand(ctx, job, process_groups) -> tuple[JobFiles, subprocess.Popen]:
    """What LocalRunner._run does before a handler restart: write the job script, start it in
    its own session, record the pid and mark the job running."""
    from mules import job_command
    files = JobFiles(working_directory(ctx.config.job_working_directory, job.id))
    built = job_command.build(ctx, job, files, local=True)
    files.create()
    files.write_configfiles(built.configfiles)
    files.write_script(job, ctx.job_conf.resolve_destination("local"), ctx.config,
                       command=built.command, environment=built.environment)
    ctx.store.update_job(job.id, working_directory=files.directory)
    with open(files.path("job.log"), "w") as log:
        proc = subprocess.Popen(["/bin/bash", files.path(SCRIPT)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    process_groups.append(proc.pid)
    ctx.store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,),
                         external_id=str(proc.pid))
    return files, proc


def test_recover_reattaches_to_a_running_job(local_ctx, start_runner, new_job, wait_state,
                                             wait_for, process_groups):
    job = new_job("sleep", {"seconds": 5})  # still running after a runner's start, when busy
    files, proc = start_script_by_hand(local_ctx, job, process_groups)
    try:
        wait_for(lambda: files.pid() == proc.pid, what="the script to record its pid")
        runner = start_runner()  # a new runner, as after a handler restart
        runner.recover(local_ctx.store.get_job(job.id),
                       local_ctx.job_conf.resolve_destination("local"))
        assert local_ctx.store.get_job(job.id).state == JobState.RUNNING  # watched, not ended
        row = wait_state(job.id, JobState.OK, JobState.ERROR)
    finally:
        proc.wait(timeout=10)
    assert row.state == JobState.OK, row.info
    assert row.exit_code == 0 and row.external_id == str(proc.pid)
    assert read(files, STDOUT) == "sleeping 5 s\ndone\n"
    # Re-attached, not started a second time.
    assert [h["state"] for h in local_ctx.store.history(job.id)].count(JobState.RUNNING) == 1


def test_recover_of_a_job_that_vanished_without_exit_code(local_ctx, start_runner, new_job,
                                                          wait_state):
    job = new_job("sleep", {"seconds": 1})
    files = JobFiles(working_directory(local_ctx.config.job_working_directory, job.id))
    files.create()
    files.write_script(job, local_ctx.job_conf.resolve_destination("local"), local_ctx.config)
    local_ctx.store.update_job(job.id, working_directory=files.directory)
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=10)  # a pid that no longer runs this job's script
    local_ctx.store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,),
                               external_id=str(gone.pid))

    start_runner().recover(local_ctx.store.get_job(job.id),
                           local_ctx.job_conf.resolve_destination("local"))
    row = wait_state(job.id, JobState.OK, JobState.ERROR, timeout=30)
    assert row.state == JobState.ERROR
    assert row.exit_code is None
    assert "without writing an exit code" in row.info


def test_recover_of_a_job_that_ended_while_nobody_watched(local_ctx, start_runner, new_job,
                                                          wait_state, process_groups):
    job = new_job("fail", {"exit_code": 7})
    files, proc = start_script_by_hand(local_ctx, job, process_groups)
    assert proc.wait(timeout=10) == 7
    start_runner().recover(local_ctx.store.get_job(job.id),
                           local_ctx.job_conf.resolve_destination("local"))
    row = wait_state(job.id, JobState.OK, JobState.ERROR, timeout=30)
    assert (row.state, row.exit_code) == (JobState.ERROR, 7)


def test_recover_starts_a_claimed_job_that_never_started(local_ctx, start_runner, new_job,
                                                         wait_state, process_groups):
    job = new_job("cat_lines", {"text": "late", "times": 1})
    start_runner().recover(job, local_ctx.job_conf.resolve_destination("local"))
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    process_groups.append(int(row.external_id))
    assert row.state == JobState.OK, row.info
    assert read(job_files(local_ctx, job.id), STDOUT) == "late\n"


def test_job_does_not_inherit_ignored_or_blocked_signals(local_ctx, start_runner, run_job,
                                                         wait_state):
    # uWSGI leaves signals ignored (process-wide) and blocked (per thread) in the processes
    # a runner lives in; a job must start with the defaults.
    runners = []

    def start_in_a_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})  # this thread only
        runners.append(start_runner())  # its worker threads inherit the mask

    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # main thread only
    try:
        starter = threading.Thread(target=start_in_a_thread)
        starter.start()
        starter.join(timeout=10)
        job = run_job(runners[0], "signals")
        row = wait_state(job.id, JobState.OK, JobState.ERROR)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert row.state == JobState.OK, row.info
    status = dict(line.split(":", 1)
                  for line in read(job_files(local_ctx, job.id), STDOUT).splitlines())
    ignored, blocked = int(status["SigIgn"], 16), int(status["SigBlk"], 16)
    assert not ignored & (1 << (signal.SIGUSR1 - 1)), hex(ignored)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), hex(ignored)  # Python ignores SIGPIPE
    assert not blocked & (1 << (signal.SIGUSR2 - 1)), hex(blocked)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_job_that_fills_the_disk_says_so(local_ctx, start_runner, new_job, wait_state):
    """The job script cannot write its exit code on a full disk: the job's end says why."""
    jobs = local_ctx.config.job_working_directory
    os.makedirs(jobs, mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", jobs], check=True)
    try:
        job = new_job("cat_lines", {"text": "x"})
        job = job.with_(tool_id="raw_command", command_line="head -c 4000000 /dev/zero > big")
        start_runner().submit(job, local_ctx.job_conf.resolve_destination("local"))
        row = wait_state(job.id, JobState.OK, JobState.ERROR)
        assert row.state == JobState.ERROR
        assert "disk holding its job directory" in row.info and "is full" in row.info, row.info
    finally:
        subprocess.run(["umount", "-l", jobs], check=False)


# -- resources: cores (local_slots), memory (local_memory_limit), walltime ------------------
MB = 1024 * 1024


def raw_job(new_job, command: str):
    """A claimed job that runs `command` as it is (no tool: its exit code decides)."""
    return new_job("cat_lines", {"text": "x"}).with_(tool_id="raw_command", command_line=command)


def destination(**params):
    return Destination(id="limited", runner="local", params=params)


def record_outcomes(runner):
    seen = []
    ended = runner.lifecycle.ended

    def spy(job, outcome):
        seen.append((job.id, outcome))
        return ended(job, outcome)
    runner.lifecycle.ended = spy
    return seen


def test_jobs_take_their_slots_of_the_workers_in_the_order_they_came(local_ctx, start_runner,
                                                                      new_job, wait_state,
                                                                      process_groups):
    """Two cores: a 1-slot job runs; a 2-slot job waits for both; the 1-slot job behind it
    waits too (a free core is not taken ahead of it), then they run one after the other."""
    runner = start_runner(workers=2)
    first, wide, last = (raw_job(new_job, f"sleep {s}") for s in (0.8, 0.3, 0.1))
    runner.submit(first, destination())
    runner.submit(wide, destination(local_slots=2))
    runner.submit(last, destination())
    rows = {job.id: wait_state(job.id, JobState.OK, JobState.ERROR) for job in (first, wide, last)}
    process_groups.extend(int(r.external_id) for r in rows.values())
    assert all(r.state == JobState.OK for r in rows.values()), rows
    assert rows[wide.id].start_time >= rows[first.id].end_time
    assert rows[last.id].start_time >= rows[wide.id].end_time
    assert runner.cores.free == 2


def test_cores_go_in_the_order_of_the_line_not_of_the_threads(wait_for):
    """The line is what the workers entered it in, whichever thread asks first: a 1-slot
    job behind a 2-slot one waits though a core is free; a job that leaves lets it on."""
    cores = local.CorePool(2)
    for job_id in (1, 2, 3):
        cores.enter(job_id)
    took = []
    second = threading.Thread(target=lambda: took.append(("2", cores.take(2, 1))))
    second.start()  # asks before job 1 does, and waits behind it
    try:
        second.join(0.3)
        assert second.is_alive() and took == []
        assert cores.take(1, 2) and cores.free == 0
        cores.leave(3)  # never takes its cores (its setup failed): it holds nobody up
        assert cores.waiting() == [2]
        cores.give_back(2)
        second.join(30)
        assert took == [("2", True)] and cores.free == 1 and cores.waiting() == []
    finally:
        for job_id in cores.waiting():
            cores.withdraw(job_id)
        second.join(30)


def test_a_job_asking_more_slots_than_the_workers_fails_saying_so(start_runner, new_job,
                                                                   wait_state):
    runner = start_runner(workers=2)
    job = raw_job(new_job, "true")
    runner.submit(job, destination(local_slots=3))
    row = wait_state(job.id, JobState.ERROR)
    assert row.info == ("destination limited: local_slots=3 is more than the 2 cores the local "
                        "runner 'local' may use (its workers): the job could never start")
    assert runner.cores.free == 2


def test_a_job_waiting_for_cores_is_cancelled_before_it_starts(local_ctx, start_runner, new_job,
                                                               wait_state, wait_for,
                                                               process_groups, monkeypatch):
    monkeypatch.setattr(local, "KILL_GRACE", 0.5)
    runner = start_runner(workers=2)
    busy, waiting = raw_job(new_job, "sleep 30"), raw_job(new_job, "true")
    runner.submit(busy, destination(local_slots=2))
    runner.submit(waiting, destination())
    row = wait_running(wait_for, local_ctx, busy.id)
    process_groups.append(int(row.external_id))
    wait_for(lambda: runner.cores.waiting() == [waiting.id], what="the second job to wait")
    assert waiting.id in [j.id for j in runner.tracked_jobs()]
    for job in (waiting, busy):
        assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
        runner.cancel(local_ctx.store.get_job(job.id))
    assert wait_state(waiting.id, JobState.DELETED).info == "cancelled before it started"
    assert wait_state(busy.id, JobState.DELETED).state == JobState.DELETED
    assert local_ctx.store.get_job(waiting.id).external_id is None  # never started
    wait_for(lambda: runner.cores.free == 2, what="the cores to be given back")


cgroups = pytest.mark.skipif(os.geteuid() != 0 or not local_limits.hierarchy_mount(),
                             reason="needs root and the cgroup v1 memory controller")


@cgroups
def test_a_job_over_its_memory_is_killed_by_the_kernel_and_says_why(local_ctx, start_runner,
                                                                     new_job, wait_state,
                                                                     process_groups):
    runner = start_runner()
    outcomes = record_outcomes(runner)
    job = raw_job(new_job, "python3 -c 'b = bytearray(b\"x\") * (200 * 1024 * 1024)'")
    runner.submit(job, destination(local_memory_limit="64M"))
    row = wait_state(job.id, JobState.ERROR, JobState.OK, timeout=30)
    process_groups.append(int(row.external_id))
    assert row.state == JobState.ERROR
    assert row.info == ("memory limit reached (local: local_memory_limit 64M: the kernel's OOM "
                        "killer killed 1 process(es) of the job; the job script exited with 137)")
    (_, outcome), = outcomes
    assert outcome.reason == "memory_limit_reached" and outcome.exit_code is None
    assert outcome.usage.cpu_seconds > 0
    key = local_limits.server_key(local_ctx.config.job_working_directory)
    assert local_limits.job_cgroups(key, job.id) == []  # removed once the job ended


@cgroups
def test_a_job_within_its_memory_runs_in_its_cgroup_and_reports_its_usage(local_ctx,
                                                                          start_runner,
                                                                          new_job, wait_state,
                                                                          process_groups):
    runner = start_runner()
    outcomes = record_outcomes(runner)
    # More than this test process ever held: wait4's figure starts at the spawner's peak.
    size = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 100
    job = raw_job(new_job, "echo $MULETEER_JOB_CGROUP $GALAXY_MEMORY_MB; "
                           "grep :memory: /proc/self/cgroup; "
                           f"python3 -c 'b = bytearray(b\"x\") * ({size} * 1024 * 1024)'")
    runner.submit(job, destination(local_memory_limit=f"{size + 100}M"))
    row = wait_state(job.id, JobState.ERROR, JobState.OK, timeout=30)
    process_groups.append(int(row.external_id))
    assert row.state == JobState.OK, row.info
    told, cgroup = read(job_files(local_ctx, job.id), STDOUT).splitlines()
    key = local_limits.server_key(local_ctx.config.job_working_directory)
    assert told == f"1 {size + 100}"  # in its cgroup, and told its memory (GALAXY_MEMORY_MB)
    assert cgroup.endswith(f"/muleteer/{key}-{job.id}-{job.lease}"), cgroup
    (_, outcome), = outcomes
    assert outcome.exit_code == 0
    assert size * MB <= outcome.usage.max_rss_bytes < (size + 100) * MB
    assert outcome.usage.cpu_seconds > 0
    assert local_limits.job_cgroups(key, job.id) == []


def test_a_job_past_its_local_walltime_is_stopped(local_ctx, start_runner, new_job, wait_state,
                                                  wait_for, group_alive, monkeypatch):
    monkeypatch.setattr(local, "KILL_GRACE", 0.5)
    runner = start_runner()
    job = raw_job(new_job, "sleep 30")
    runner.submit(job, destination(local_walltime="1"))
    row = wait_state(job.id, JobState.ERROR, JobState.OK, timeout=60)
    assert row.state == JobState.ERROR
    assert row.info == "walltime reached (local_walltime 00:00:01)"
    # Stopped at its walltime, not left to finish its 30 s.
    assert 1 <= (row.end_time - row.start_time).total_seconds() < 20
    wait_for(lambda: not group_alive(int(row.external_id)), timeout=GROUP_GONE_TIMEOUT,
             what="the job's process group to be gone")


@cgroups
def test_recovery_of_a_job_killed_for_its_memory_while_nobody_watched(local_ctx, start_runner,
                                                                      new_job, wait_state,
                                                                      process_groups):
    """The handler was down when the kernel killed the job: the restarted one reads the
    job's cgroup, reports memory_limit_reached and removes it."""
    job = raw_job(new_job, "python3 -c 'b = bytearray(b\"x\") * (200 * 1024 * 1024)'")
    limited = destination(local_memory_limit="64M")
    from mules import job_command
    files = JobFiles(working_directory(local_ctx.config.job_working_directory, job.id))
    files.create()
    before = start_runner()
    files.write_script(job, limited, local_ctx.config, setup=before.script_setup(job, limited),
                       command=job_command.build(local_ctx, job, files, local=True).command)
    local_ctx.store.update_job(job.id, working_directory=files.directory)
    proc = subprocess.Popen(["/bin/bash", files.path(SCRIPT)], stdin=subprocess.DEVNULL,
                            start_new_session=True)
    process_groups.append(proc.pid)
    local_ctx.store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,),
                               external_id=str(proc.pid))
    assert proc.wait(timeout=30) == 137  # the tool was killed; the script wrote its code
    key = local_limits.server_key(local_ctx.config.job_working_directory)
    assert len(local_limits.job_cgroups(key, job.id)) == 1
    start_runner().recover(local_ctx.store.get_job(job.id), limited)
    row = wait_state(job.id, JobState.ERROR, JobState.OK, timeout=30)
    assert row.info.startswith("memory limit reached (local: local_memory_limit 64M"), row.info
    assert local_limits.job_cgroups(key, job.id) == []
