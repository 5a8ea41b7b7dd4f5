"""JobHandler (mules/handler_loop.py) without uWSGI: a real store in tmp_path (local_ctx),
a fake runner that records what the handler asks of it, an in-process inbox, and, where
time matters, a fake clock in place of the module's `time`."""
from __future__ import annotations

import logging
import threading
import types
from datetime import timedelta

import pytest

from muleteer.job import JobState
from muleteer.store import utcnow
from mules.handler_loop import JobHandler, QueueInbox
from mules.lifecycle import OUTPUT_SIZE, WALLTIME

NAME = "main.job-handlers.1"
TAG = "fast"


class FakeRunner:
    """Records every call; submit/cancel/recover may be told to raise."""

    def __init__(self, fail_on: tuple = ()):
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def _record(self, name, *args):
        self.calls.append((name, *args))
        if name in self.fail_on:
            raise RuntimeError(f"{name} exploded")

    def submit(self, job, destination):
        self._record("submit", job.id, destination.id)

    def cancel(self, job):
        self._record("cancel", job.id)

    def recover(self, job, destination):
        self._record("recover", job.id, destination.id)

    def stop_over_limit(self, job, reason, info):
        self._record("stop_over_limit", job.id, reason, info)

    def shutdown(self):
        self._record("shutdown")

    def tracked_jobs(self):
        return []

    def forget(self, job_id):
        self._record("forget", job_id)

    def drop_lost_jobs(self):
        self._record("drop_lost_jobs")

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


class Clock:
    """A stand-in for the `time` module inside mules.handler_loop: monotonic() is ours,
    sleep() does not wait (_guarded sleeps after an error)."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class ScriptedInbox:
    """An inbox that plays a script: each get() takes the next item (bytes, None, an
    exception to raise, or a callable to call); when the script is over it sets `stop`."""

    def __init__(self, stop: threading.Event, *script, clock=None):
        self.stop = stop
        self.script = list(script)
        self.clock = clock
        self.gets = 0

    def get(self, timeout: float):
        self.gets += 1
        if self.clock:
            self.clock.now += 10  # waiting for a message takes time: a sweep is due again
        if not self.script:
            self.stop.set()
            return None
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item()
        return item

    def put(self, data: bytes) -> bool:
        self.script.append(data)
        return True


@pytest.fixture
def runner():
    return FakeRunner()


@pytest.fixture
def make_handler(local_ctx, runner, monkeypatch):
    """make_handler(name=NAME, tags=(TAG,), inbox=None) -> a JobHandler whose `local` plugin is
    the fake runner (load_runner is patched: any other plugin gets a new FakeRunner)."""
    loaded = []

    def fake_load_runner(ctx, plugin, handler_name):
        loaded.append((plugin.id, handler_name))
        return runner if plugin.id == "local" else FakeRunner()

    monkeypatch.setattr("mules.handler_loop.load_runner", fake_load_runner)

    def _make(name=NAME, tags=(TAG,), inbox=None):
        handler = JobHandler(local_ctx, name, tags, "mule", inbox or QueueInbox())
        handler.interval = 0.01  # no test waits on it; keeps _guarded's pause short
        handler.loaded = loaded
        return handler
    return _make


@pytest.fixture
def handler(make_handler):
    return make_handler()


@pytest.fixture
def create(local_ctx):
    """create(handler_tag=TAG, **overrides) -> a new job (state new, no handler)."""
    def _create(handler_tag=TAG, **overrides):
        values = dict(tool_id="noop", tool_version="1.0.0", params={}, command_line="true",
                      handler_tag=handler_tag, destination_id="local", runner="local")
        values.update(overrides)
        return local_ctx.store.create_job(**values)[0]
    return _create


@pytest.fixture
def owned(local_ctx, create):
    """owned(state=QUEUED, handler=NAME, **overrides) -> a job claimed by `handler`, then
    moved to `state` (running: started now unless start_time is given)."""
    def _owned(state=JobState.QUEUED, handler=NAME, start_time=None, **overrides):
        overrides.setdefault("handler_tag", handler)
        job = create(**overrides)
        job = local_ctx.store.claim_job(job.id, handler, [overrides["handler_tag"]])
        assert job is not None and job.state == JobState.QUEUED
        if state in (JobState.RUNNING, JobState.DELETING):
            values = {"start_time": start_time} if start_time else {}
            job = local_ctx.store.transition(job.id, JobState.RUNNING, **values)
        if state == JobState.DELETING:
            assert local_ctx.store.request_cancel(job.id) == JobState.DELETING
            job = local_ctx.store.get_job(job.id)
        assert job.state == state
        return job
    return _owned


def msg(job_id) -> bytes:
    return str(job_id).encode()


# -- the loop: recover first --------------------------------------------------------------
def test_recover_runs_before_any_new_job_is_taken(local_ctx, make_handler, runner, owned,
                                                  create):
    mine = owned(JobState.RUNNING)
    stop = threading.Event()
    new = create()
    announced = create()
    inbox = ScriptedInbox(stop, msg(announced.id))
    handler = make_handler(inbox=inbox)
    handler.run(stop)
    assert runner.calls[0] == ("recover", mine.id, "local")
    assert set(runner.calls[1:3]) == {("submit", new.id, "local"),
                                      ("submit", announced.id, "local")}
    assert runner.calls[-1] == ("shutdown",)
    assert len(runner.named("submit")) == 2
    assert local_ctx.store.get_job(new.id).handler == NAME
    # the heartbeat marks a (re)start
    assert NAME in local_ctx.store.handler_heartbeats()


def test_recover_cancels_a_deleting_job_that_never_started(local_ctx, handler, runner, owned):
    job = owned(JobState.DELETING)
    local_ctx.store.update_job(job.id, external_id=None)
    handler.recover()
    assert runner.named("recover") == []
    row = local_ctx.store.get_job(job.id)
    assert row.state == JobState.DELETED
    assert "cancelled while its handler was down" in row.info


def test_recover_reattaches_a_deleting_job_with_an_external_id(local_ctx, handler, runner, owned):
    job = owned(JobState.DELETING)
    local_ctx.store.update_job(job.id, external_id="4242")
    handler.recover()
    assert runner.named("recover") == [("recover", job.id, "local")]


def test_recover_fails_a_job_whose_runner_cannot_recover_it(local_ctx, make_handler, owned):
    job = owned(JobState.RUNNING)
    handler = make_handler()
    handler.runners["local"] = FakeRunner(fail_on=("recover",))
    handler.recover()
    row = local_ctx.store.get_job(job.id)
    assert row.state == JobState.ERROR
    assert row.info == "could not recover the job: recover exploded"


# -- messages ---------------------------------------------------------------------------
def test_a_message_claims_the_job_and_submits_it_once(local_ctx, handler, runner, create):
    job = create()
    handler.on_message(msg(job.id))
    assert runner.calls == [("submit", job.id, "local")]
    row = local_ctx.store.get_job(job.id)
    assert (row.state, row.handler) == (JobState.QUEUED, NAME)
    assert handler.loaded == [("local", NAME)]  # the runner is loaded once, then reused


def test_a_message_to_the_handler_name_is_claimed(local_ctx, handler, runner, create):
    job = create(handler_tag=NAME)
    handler.on_message(msg(job.id) + b"\n")
    assert runner.calls == [("submit", job.id, "local")]


def test_a_repeated_or_stale_message_changes_nothing(local_ctx, handler, runner, create, owned):
    job = create()
    handler.on_message(msg(job.id))
    handler.on_message(msg(job.id))  # repeated
    assert runner.named("submit") == [("submit", job.id, "local")]
    # stale: the job already ended, is another handler's, or never existed
    ended = owned(JobState.RUNNING)
    local_ctx.store.transition(ended.id, JobState.OK)
    theirs = owned(JobState.RUNNING, handler="main.job-handlers.2", handler_tag=TAG)
    cancelled = create()
    local_ctx.store.request_cancel(cancelled.id)
    before = {j: local_ctx.store.get_job(j) for j in (ended.id, theirs.id, cancelled.id)}
    for job_id in (ended.id, theirs.id, cancelled.id, 999999):
        handler.on_message(msg(job_id))
    assert runner.calls == [("submit", job.id, "local")]
    assert {j: local_ctx.store.get_job(j) for j in before} == before


def test_a_message_that_is_not_a_job_id_is_ignored_and_logged(local_ctx, handler, runner,
                                                               create, caplog):
    job = create()
    caplog.set_level(logging.WARNING, logger="mules.handler_loop")
    for message in (b"hello", b"", b"1.5", b"\xff\xfe", b"x" * 500):
        handler.on_message(message)
    assert runner.calls == []
    assert local_ctx.store.get_job(job.id).state == JobState.NEW
    ignored = [r for r in caplog.records if "not a job id" in r.getMessage()]
    assert len(ignored) == 5
    assert "b'hello'" in ignored[0].getMessage()
    assert len(ignored[-1].getMessage()) < 200  # a long message is cut


def test_a_message_for_another_handlers_tag_is_not_claimed(local_ctx, handler, runner, create):
    job = create(handler_tag="slow")
    other = create(handler_tag="main.job-handlers.2")
    handler.on_message(msg(job.id))
    handler.on_message(msg(other.id))
    assert runner.calls == []
    for job_id in (job.id, other.id):
        row = local_ctx.store.get_job(job_id)
        assert (row.state, row.handler) == (JobState.NEW, None)


def test_a_message_for_my_deleting_job_stops_it(local_ctx, handler, runner, owned):
    job = owned(JobState.DELETING)
    theirs = owned(JobState.DELETING, handler="main.job-handlers.2")
    handler.on_message(msg(job.id))
    handler.on_message(msg(theirs.id))
    assert runner.calls == [("cancel", job.id)]


# -- the sweep --------------------------------------------------------------------------
def test_the_sweep_claims_new_jobs_no_message_announced(local_ctx, handler, runner, create):
    jobs = [create(), create(handler_tag=NAME), create()]
    elsewhere = create(handler_tag="slow")
    handler.sweep()
    assert sorted(runner.named("submit")) == sorted(("submit", j.id, "local") for j in jobs)
    assert local_ctx.store.get_job(elsewhere.id).handler is None
    handler.sweep()  # nothing new: nothing submitted twice
    assert len(runner.named("submit")) == 3
    assert handler.last_sweep_seconds is not None and handler.last_sweep_seconds >= 0


def test_the_sweep_stops_my_deleting_jobs_only(local_ctx, handler, runner, owned):
    mine = owned(JobState.DELETING)
    theirs = owned(JobState.DELETING, handler="main.job-handlers.2")
    running = owned(JobState.RUNNING)
    handler.sweep()
    assert runner.calls == [("cancel", mine.id)]
    assert local_ctx.store.get_job(theirs.id).state == JobState.DELETING
    assert local_ctx.store.get_job(running.id).state == JobState.RUNNING


def test_a_failed_cancel_still_ends_the_job_as_deleted(local_ctx, make_handler, owned):
    job = owned(JobState.DELETING)
    handler = make_handler()
    handler.runners["local"] = FakeRunner(fail_on=("cancel",))
    handler.sweep()
    row = local_ctx.store.get_job(job.id)
    assert row.state == JobState.DELETED
    assert row.info == "cancelled; stopping it failed: cancel exploded"


def test_a_job_whose_destination_vanished_fails_with_a_clear_info(local_ctx, handler, runner,
                                                                 create):
    job = create(destination_id="gone")
    handler.on_message(msg(job.id))
    row = local_ctx.store.get_job(job.id)
    assert row.state == JobState.ERROR
    assert row.info == (f"could not be started: destination 'gone' is no longer in "
                        f"{local_ctx.job_conf.path}")
    assert runner.calls == []


def test_a_recovered_job_whose_destination_vanished_fails(local_ctx, handler, owned):
    job = owned(JobState.RUNNING, destination_id="gone")
    handler.recover()
    row = local_ctx.store.get_job(job.id)
    assert row.state == JobState.ERROR
    assert "could not recover the job: destination 'gone' is no longer in" in row.info


def test_a_job_the_runner_cannot_submit_fails(local_ctx, make_handler, create):
    job = create()
    handler = make_handler()
    handler.runners["local"] = FakeRunner(fail_on=("submit",))
    handler.sweep()
    row = local_ctx.store.get_job(job.id)
    assert (row.state, row.info) == (JobState.ERROR, "could not be started: submit exploded")


# -- errors never end the loop ----------------------------------------------------------
def test_an_exception_in_a_step_is_logged_and_the_loop_goes_on(local_ctx, make_handler, runner,
                                                               create, monkeypatch, caplog):
    clock = Clock()
    monkeypatch.setattr("mules.handler_loop.time", clock)
    caplog.set_level(logging.ERROR, logger="mules.handler_loop")
    stop = threading.Event()
    job = create()
    inbox = ScriptedInbox(stop, RuntimeError("inbox broke"), msg(job.id), clock=clock)
    handler = make_handler(inbox=inbox)
    sweeps = []

    def broken_sweep():
        sweeps.append(clock.now)
        raise RuntimeError("sweep broke")

    handler.sweep = broken_sweep
    handler.run(stop)
    assert len(sweeps) == 3  # the loop went on after each failed sweep
    assert runner.named("submit") == [("submit", job.id, "local")]  # and read the inbox
    failures = [r for r in caplog.records if r.exc_info]
    assert any("broken_sweep failed" in r.getMessage() for r in failures)
    assert any("get failed" in r.getMessage() and "inbox broke" in str(r.exc_info[1])
               for r in failures)
    assert clock.sleeps and all(s <= 1.0 for s in clock.sleeps)
    assert runner.calls[-1] == ("shutdown",)


def test_an_exception_in_on_message_is_logged(local_ctx, handler, monkeypatch, caplog):
    monkeypatch.setattr("mules.handler_loop.time", Clock())

    def broken_claim(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(local_ctx.store, "claim_job", broken_claim)
    caplog.set_level(logging.ERROR, logger="mules.handler_loop")
    assert handler._guarded(handler.on_message, b"1") is None
    assert any("on_message failed" in r.getMessage() for r in caplog.records)


# -- heartbeats and failure detection ---------------------------------------------------
def test_every_sweep_writes_a_heartbeat(local_ctx, handler, monkeypatch):
    written = []
    real = local_ctx.store.heartbeat

    def spy(name, tags, strategy, failed=0, sweep_seconds=None, starting=False):
        written.append((name, tuple(tags), strategy, failed, sweep_seconds, starting))
        return real(name, tags, strategy, failed, sweep_seconds, starting=starting)

    monkeypatch.setattr(local_ctx.store, "heartbeat", spy)
    handler.dispatcher = types.SimpleNamespace(failed=3)
    for _ in range(3):
        handler.sweep()
    assert len(written) == 3
    assert {w[:4] for w in written} == {(NAME, (NAME, TAG), "mule", 3)}
    assert written[0][4] is None and written[1][4] is not None  # the previous sweep's time
    [row] = [h for h in local_ctx.store.handlers() if h["name"] == NAME]
    assert row["messages_failed"] == 3
    assert local_ctx.store.handler_heartbeats()[NAME][1] == (NAME, TAG)


def test_a_gap_in_my_heartbeats_drops_lost_jobs_from_every_runner(local_ctx, handler,
                                                                   monkeypatch):
    clock = Clock()
    monkeypatch.setattr("mules.handler_loop.time", clock)
    first, second = FakeRunner(), FakeRunner()
    handler.runners = {"local": first, "other": second}
    gap = handler._write_gap()
    handler.heartbeat(True)
    for _ in range(3):  # regular heartbeats: nothing to re-check
        clock.now += gap / 2
        handler.sweep()
    assert first.named("drop_lost_jobs") == second.named("drop_lost_jobs") == []
    clock.now += gap + 1  # paused, or the database was locked
    handler.sweep()
    assert first.named("drop_lost_jobs") == second.named("drop_lost_jobs") == [("drop_lost_jobs",)]
    clock.now += 1
    handler.heartbeat()
    assert len(first.named("drop_lost_jobs")) == 1


def test_drop_lost_jobs_forgets_jobs_another_handler_adopted(local_ctx, owned):
    """The runners' shared drop_lost_jobs (what revalidate() calls): jobs whose lease this
    handler lost are forgotten, the others kept."""
    from mules.runners.base import BaseRunner

    kept, lost = owned(JobState.RUNNING), owned(JobState.RUNNING)
    local_ctx.store.heartbeat(NAME, (NAME,), "mule")
    seen = local_ctx.store.handler_heartbeats()[NAME][0]
    adopted = local_ctx.store.adopt_orphans("main.job-handlers.2", [NAME], {NAME: seen})
    assert {j.id for j in adopted} == {kept.id, lost.id}
    # re-take `kept` under a new lease, as if this handler had adopted it back
    local_ctx.store.update_job(kept.id, handler=NAME)
    kept = local_ctx.store.get_job(kept.id)
    forgotten = []

    class Tracking(BaseRunner):
        def tracked_jobs(self):
            return [kept, lost]

        def forget(self, job_id):
            forgotten.append(job_id)

    Tracking(local_ctx, None, NAME).drop_lost_jobs()
    assert forgotten == [lost.id]


# -- limits -----------------------------------------------------------------------------
def test_walltime_stops_running_jobs_older_than_the_limit(local_ctx, handler, runner, owned):
    handler.walltime = 3600
    old = owned(JobState.RUNNING, start_time=utcnow() - timedelta(hours=2))
    young = owned(JobState.RUNNING)
    queued_long_ago = owned(JobState.QUEUED)
    theirs = owned(JobState.RUNNING, handler="main.job-handlers.2",
                   start_time=utcnow() - timedelta(hours=2))
    handler.sweep()
    assert runner.named("stop_over_limit") == [
        ("stop_over_limit", old.id, WALLTIME, "walltime reached (limit 1:00:00)")]
    assert {young.id, queued_long_ago.id, theirs.id}.isdisjoint(
        c[1] for c in runner.named("stop_over_limit"))


def test_no_walltime_limit_stops_nothing(local_ctx, handler, runner, owned):
    assert handler.walltime is None and handler.output_size is None  # the shipped job_conf.xml
    owned(JobState.RUNNING, start_time=utcnow() - timedelta(days=30))
    handler.sweep()
    assert runner.named("stop_over_limit") == []


def test_output_size_stops_a_job_whose_directory_grew_too_big(local_ctx, handler, runner,
                                                              owned, tmp_path):
    handler.output_size = 1000
    big_dir, small_dir = tmp_path / "big", tmp_path / "small"
    big_dir.mkdir()
    small_dir.mkdir()
    (big_dir / "out").write_bytes(b"x" * 5000)
    (small_dir / "out").write_bytes(b"x" * 10)
    big, small = owned(JobState.RUNNING), owned(JobState.RUNNING)
    local_ctx.store.update_job(big.id, working_directory=str(big_dir))
    local_ctx.store.update_job(small.id, working_directory=str(small_dir))
    handler.sweep()
    assert runner.named("stop_over_limit") == [
        ("stop_over_limit", big.id, OUTPUT_SIZE, "output size over the limit of 1000 bytes")]


def test_run_with_a_real_queue_inbox_handles_a_message_then_stops(local_ctx, make_handler,
                                                                   runner, create, wait_for):
    """The whole loop in a thread, real clock, QueueInbox: after the first sweep (the next one is
    a minute away) a job is taken only because its message arrives; bounded waits."""
    handler = make_handler()
    handler.interval = 60.0
    stop = threading.Event()
    thread = threading.Thread(target=handler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: handler.last_sweep_seconds is not None, what="the first sweep")
        job = create()
        handler.inbox.put(msg(job.id))
        wait_for(lambda: runner.named("submit"), what="the job to be submitted")
    finally:
        stop.set()
        handler.inbox.put(b"")  # wake the loop: an empty message is no job, the loop sees stop
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert runner.named("submit") == [("submit", job.id, "local")]
    assert runner.calls[-1] == ("shutdown",)
