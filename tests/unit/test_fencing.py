"""Fencing with real job scripts and a real store: a handler that lost a job's lease (another
handler adopted it while this one was paused or cut off) touches none of its files, starts
nothing, and records nothing; and a handler is declared silent only by observers that could
write their own heartbeats the whole time."""
import os
from types import SimpleNamespace

from muleteer.job import JobState
from mules.handler_loop import JobHandler, QueueInbox
from muleteer.job_files import JobDirectoryError, JobFiles, working_directory

HANDLER = "test-handler"


def adopt(store, job, by="other-handler"):
    """What a live handler does to a silent one's job: take it under a new lease."""
    store.heartbeat(HANDLER, (HANDLER,), "webless")
    seen = store.handler_heartbeats()[HANDLER][0]
    [row] = store.adopt_orphans(by, [HANDLER], {HANDLER: seen})
    return row


def test_a_job_lost_before_its_start_is_never_started(local_ctx, start_runner, new_job):
    job = new_job("cat_lines", {"text": "x"})
    adopt(local_ctx.store, job)
    runner = start_runner(workers=1)
    runner.submit(job, local_ctx.job_conf.resolve_destination("local"))
    runner.shutdown()
    for thread in runner._threads:
        thread.join(timeout=10)
    row = local_ctx.store.get_job(job.id)
    assert (row.state, row.handler, row.working_directory) == \
        (JobState.QUEUED, "other-handler", None)
    assert not os.path.exists(working_directory(local_ctx.config.job_working_directory, job.id))


def test_a_job_lost_between_spawn_and_go_never_runs_its_tool(local_ctx, start_runner, new_job,
                                                            tmp_path, monkeypatch, wait_for):
    """The pause between starting the script and recording it running: the script waits at
    its gate, the old holder's report that it started is refused, the pipe closes, the tool
    never runs."""
    marker = tmp_path / "ran"
    job = new_job("cat_lines", {"text": "x"})
    runner = start_runner(workers=1)
    real_started = runner.lifecycle.started
    seen = {}

    def paused_then_adopted(job, external_id=None):
        seen["adopted"] = adopt(local_ctx.store, job)
        return real_started(job, external_id)

    monkeypatch.setattr(runner.lifecycle, "started", paused_then_adopted)
    # The tool would leave a marker: it must never get that far.
    job = job.with_(tool_id="raw_command", command_line=f"touch {marker}")  # no tool: run as recorded
    runner.submit(job, local_ctx.job_conf.resolve_destination("local"))
    wait_for(lambda: "adopted" in seen, what="the script to be started")
    runner.shutdown()
    for thread in runner._threads:
        thread.join(timeout=10)
    assert not marker.exists()
    row = local_ctx.store.get_job(job.id)
    assert (row.state, row.handler, row.external_id) == \
        (JobState.QUEUED, "other-handler", None)


def test_the_new_holder_starts_afresh_in_a_new_directory(local_ctx, start_runner, new_job,
                                                         wait_state):
    """A job claimed and half started by a handler that then lost it: the adopter keeps the
    old directory aside and runs the job once, in a directory of its own."""
    job = new_job("cat_lines", {"text": "once"})
    files = JobFiles(working_directory(local_ctx.config.job_working_directory, job.id))
    local_ctx.store.update_job(job.id, working_directory=files.directory)
    files.create()
    adopted = adopt(local_ctx.store, job, by=HANDLER + "-2")
    runner = start_runner()
    runner.handler_name = HANDLER + "-2"
    runner.recover(adopted, local_ctx.job_conf.resolve_destination("local"))
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.OK, row.info
    assert os.path.isdir(files.directory + ".previous")
    assert files.tail("stdout", 100) == "once\n"


def test_a_directory_that_already_exists_fails_the_job(local_ctx, start_runner, run_job,
                                                       wait_state):
    next_id = local_ctx.store.list_jobs(limit=1)[1] + 1
    planted = working_directory(local_ctx.config.job_working_directory, next_id)
    os.makedirs(planted)
    os.symlink("/etc/passwd", os.path.join(planted, "stdout"))
    job = run_job(start_runner(), "cat_lines", {"text": "x"})
    assert job.id == next_id
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.ERROR
    assert "already exists" in row.info and planted in row.info
    assert os.readlink(os.path.join(planted, "stdout")) == "/etc/passwd"


def test_job_files_never_follow_links(tmp_path):
    files = JobFiles(str(tmp_path / "jobs" / "000" / "1"))
    files.create()
    secret = tmp_path / "secret"
    secret.write_text("key")
    os.symlink(secret, files.path("stdout"))
    os.mkfifo(files.path("exit_code"))
    os.symlink(tmp_path, files.path("outputs/dir"))
    assert files.tail("stdout", 100) == ""
    assert files.exit_code() is None  # a FIFO is never opened for reading (no hang)
    assert files.open_regular("outputs/dir/secret") is None
    assert files.open_regular("../secret") is None
    with open(files.path("pid"), "w") as fh:
        fh.write("1" * 10000)  # not a pid: too big to be read whole
    assert files.pid() is None
    try:
        files.create()
    except JobDirectoryError as exc:
        assert "already exists" in str(exc)
    else:
        raise AssertionError("a second create() must fail")
    assert oct(os.stat(files.directory).st_mode & 0o777) == "0o700"


def test_silence_is_counted_only_while_the_observer_could_write(local_ctx, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("mules.handler_loop.time.monotonic", lambda: clock[0])
    local_ctx.config.handler_heartbeat_timeout = 60.0
    store = local_ctx.store
    store.heartbeat("quiet", ("quiet", "t"), "webless")
    me = JobHandler(local_ctx, "me", ("t",), "webless", QueueInbox())
    me.heartbeat()
    assert me.silent_handlers() == {}  # first look
    for _ in range(4):  # 60 s of my own heartbeats every 15 s: quiet never spoke
        clock[0] += 15
        me.heartbeat()
    assert set(me.silent_handlers()) == {"quiet"}
    # Now I could not write for 75 s (a locked database, or I was paused): start over.
    clock[0] += 75
    me.heartbeat()
    assert me.silent_handlers() == {}
    clock[0] += 15
    me.heartbeat()
    assert me.silent_handlers() == {}
    # A handler that speaks again is not silent.
    for _ in range(4):
        clock[0] += 15
        me.heartbeat()
    store.heartbeat("quiet", ("quiet", "t"), "webless")
    assert me.silent_handlers() == {}


def test_a_handler_that_died_between_running_and_go_gets_its_job_started_again(
        local_ctx, start_runner, new_job, tmp_path, wait_state, wait_for):
    """The handler recorded the job running and died before writing the go: the script
    exits at its gate (its pipe closed) leaving not_started.<pid>; the recovering handler
    starts the job again, and its tool runs once."""
    import subprocess
    marker = tmp_path / "ran"
    job = new_job("cat_lines", {"text": "x"})
    local_ctx.store.update_job(job.id, tool_id="raw_command", command_line=f"echo once >> {marker}")
    job = local_ctx.store.get_job(job.id)
    files = JobFiles(working_directory(local_ctx.config.job_working_directory, job.id))
    local_ctx.store.update_job(job.id, working_directory=files.directory)
    files.create()
    files.write_script(job, local_ctx.job_conf.resolve_destination("local"), local_ctx.config,
                       gated=True)
    gate_read, gate_write = os.pipe()
    script = subprocess.Popen(["/bin/bash", files.path("job.sh")], pass_fds=(gate_read,),
                              preexec_fn=lambda: os.dup2(gate_read, 3), start_new_session=True)
    os.close(gate_read)
    job = local_ctx.store.transition(job.id, JobState.RUNNING, handler=HANDLER,
                                     lease=job.lease, external_id=str(script.pid))
    os.close(gate_write)  # the handler dies: no go
    assert script.wait(timeout=10) == 75
    assert files.never_started(script.pid) and not marker.exists()
    runner = start_runner()
    runner.recover(local_ctx.store.get_job(job.id), local_ctx.job_conf.resolve_destination("local"))
    row = wait_state(job.id, JobState.OK, JobState.ERROR)
    assert row.state == JobState.OK, row.info
    assert marker.read_text() == "once\n"
    assert JobState.QUEUED in [h["state"] for h in local_ctx.store.history(job.id)][3:]


def test_an_exit_code_is_read_whole_or_not_at_all(tmp_path):
    # The script writes it with one `echo $rc > exit_code`: a reader may find the file
    # created and still empty, which is not an exit code yet.
    files = JobFiles(str(tmp_path / "jobs" / "000" / "2"))
    files.create()
    open(files.path("exit_code"), "w").close()
    assert files.exit_code() is None
    with open(files.path("exit_code"), "w") as fh:
        fh.write("137\n")
    assert files.exit_code() == 137


def test_a_gated_script_leaves_its_pid_to_the_database(tmp_path):
    files = JobFiles(str(tmp_path / "jobs" / "000" / "3"))
    files.create()
    job = SimpleNamespace(id=3, tool_id="t", tool_version="1", command_line="true")
    config = SimpleNamespace(umask=None, new_file_path=None, environment_setup_file=None)
    gated = open(files.write_script(job, None, config, gated=True)).read()
    assert "/pid" not in gated and "echo $rc > exit_code" in gated and " mv " not in gated
    ungated = open(files.write_script(job, None, config)).read()
    assert f"echo $$ > {files.path('pid')}" in ungated
