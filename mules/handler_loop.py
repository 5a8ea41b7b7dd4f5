"""The job handler loop, the same in a mule, a web worker or a webless process.

    recover my unfinished jobs (before taking any new one)
    loop:
        wait for a message (a job id) up to the next sweep
        message -> claim that job if it is still new and meant for me; or stop it if cancelled
        every job_handler_monitor_sleep seconds: heartbeat, claim any new job meant for me
            that no message announced, stop my jobs whose cancel was requested

A message is only a wake-up call: the store says what to do, so a lost, late or
repeated message changes nothing but latency.

A claimed job is placed before it starts (place()): a dynamic destination's rule chooses
where it runs, the resources its user asked for are mapped onto that destination, and the
result is recorded on the job once, so recovery and adoption run it the same way.

Fencing: every claim or adoption gives the job a new lease, and every action on a job
(its files, its start, its state) is conditional on the lease this handler was given,
checked in the database first. A handler that was paused, or cut off from the database,
past handler_heartbeat_timeout finds its jobs adopted by others and drops them. A handler
is declared silent only by others that watched its heartbeat stay the same for the whole
timeout while they themselves could write theirs: a database locked for everyone makes
nobody silent.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import timedelta

from muleteer import job_rules
from muleteer.job import Job, JobState
from muleteer.job_files import JobFiles
from muleteer.job_resources import Resources, chosen_resources, destination_changes
from muleteer.limits import Limits
from muleteer.store import utcnow
from mules.job_account import JobAccountError
from mules.lifecycle import OUTPUT_SIZE, WALLTIME, Lifecycle
from mules.runners import RUNNER_SPECS, load_runner

log = logging.getLogger(__name__)
# Seconds between two measures of a real user's running job (each one is a sudo).
REAL_USER_SIZE_CHECK = 10.0


class QueueInbox:
    """Messages inside one process (a web worker handing jobs to its own handler thread)."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()

    def put(self, data: bytes) -> bool:
        self._queue.put(data)
        return True

    def get(self, timeout: float) -> bytes | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None


class JobHandler:
    def __init__(self, ctx, name: str, tags, strategy: str, inbox):
        self.ctx = ctx
        self.store = ctx.store
        self.name = name
        # A handler takes jobs sent to its own name or to any of its tags.
        self.tags = tuple(dict.fromkeys([name, *tags]))
        self.strategy = strategy
        self.inbox = inbox
        self.interval = ctx.config.job_handler_monitor_sleep
        self._next_adoption = 0.0
        self.runners: dict = {}
        self.limits = Limits.from_job_conf(ctx.job_conf)
        # Galaxy's max_grab: how many new jobs one sweep takes at most.
        self.max_grab = (ctx.job_conf.max_grab if ctx.job_conf else None) or 200
        self.walltime, self.output_size = self.limits.walltime, self.limits.output_size
        self.lifecycle = Lifecycle(ctx, name)
        self._sizes: dict[int, tuple[float, int]] = {}  # real users' jobs: (when, bytes)
        self.dispatcher = None  # set in a web worker: its failed sends go in the heartbeat
        self.last_sweep_seconds: float | None = None
        # Failure detection: since when (monotonic) my heartbeats have been written without
        # a gap, and each other handler's heartbeat as I first saw it unchanged, and when.
        self._writing_since: float | None = None
        self._last_write: float | None = None
        self._observed: dict[str, tuple] = {}

    # -- the loop -------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("handler %s (%s) starting, tags: %s", self.name, self.strategy, ", ".join(self.tags))
        self._guarded(self.heartbeat, True)
        self._guarded(self.recover)
        next_sweep = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_sweep:
                self._guarded(self.sweep)
                next_sweep = time.monotonic() + self.interval
            message = self._guarded(self.inbox.get, max(0.0, next_sweep - time.monotonic()))
            if message:
                self._guarded(self.on_message, message)
        for runner in self.runners.values():
            self._guarded(runner.shutdown)

    def _guarded(self, fn, *args):
        """An exception in one step is logged; it never ends the handler."""
        try:
            return fn(*args)
        except Exception:
            log.exception("handler %s: %s failed", self.name, getattr(fn, "__name__", fn))
            time.sleep(min(self.interval, 1.0))
            return None

    # -- steps ----------------------------------------------------------------------
    def on_message(self, message: bytes) -> None:
        try:
            job_id = int(message)
        except ValueError:
            log.warning("handler %s: ignoring message %r (not a job id)", self.name, message[:80])
            return
        job = self.store.claim_job(job_id, self.name, self.tags, self.limits)
        if job:
            self.start(job)
            return
        job = self.store.get_job(job_id)
        if job and job.state == JobState.DELETING and job.handler == self.name:
            self.stop(job)

    def sweep(self) -> None:
        started = time.monotonic()
        self.heartbeat()
        if time.monotonic() >= self._next_adoption:
            # Silence is measured against handler_heartbeat_timeout (60 s): looking a few
            # times per timeout is enough, and spares a write per handler per second.
            self._next_adoption = time.monotonic() + max(
                self.interval, self.ctx.config.handler_heartbeat_timeout / 4)
            self.adopt_orphans()
        for job in self.store.claim_new(self.name, self.tags, limit=self.max_grab,
                                        limits=self.limits):
            self.start(job)
        for job in self.store.owned_jobs(self.name, states=(JobState.DELETING,)):
            self.stop(job)
        if self.walltime or self.output_size:
            self.enforce_limits()
        self.last_sweep_seconds = time.monotonic() - started

    def heartbeat(self, starting: bool = False) -> None:
        failed = self.dispatcher.failed if self.dispatcher else 0
        self.store.heartbeat(self.name, self.tags, self.strategy, failed, self.last_sweep_seconds,
                             starting=starting)
        now = time.monotonic()
        if self._last_write is None or now - self._last_write > self._write_gap():
            # I could not write (a locked database, or this process was paused): others may
            # have taken my jobs meanwhile, and what I saw of others is stale.
            if self._last_write is not None:
                log.warning("handler %s: no heartbeat written for %.1f s; re-checking my jobs",
                            self.name, now - self._last_write)
                self.revalidate()
            self._writing_since = now
            self._observed.clear()
        self._last_write = now

    def _write_gap(self) -> float:
        """A silence of my own longer than this means I was not able to write."""
        return max(3 * self.interval, self.ctx.config.handler_heartbeat_timeout / 4)

    def revalidate(self) -> None:
        """Drop from the runners every job whose lease I no longer hold."""
        for runner in self.runners.values():
            runner.drop_lost_jobs()

    def recover(self) -> None:
        """Jobs this handler owned when it last stopped: re-attach, restart or finish them."""
        for job in self.store.owned_jobs(self.name):
            log.info("handler %s: recovering job %s (%s)", self.name, job.id, job.state)
            if self.unplaced(job):  # taken, but its rule had not run: nothing started
                self._start_unplaced(job)
                continue
            try:
                runner, destination = self.runner_for(job)
                if job.state == JobState.DELETING and not job.external_id:
                    self.lifecycle.cancelled(job, "cancelled while its handler was down")
                else:
                    runner.recover(job, destination)
            except Exception as exc:
                self._fail(job, f"could not recover the job: {exc}")

    def silent_handlers(self) -> dict:
        """Handlers sharing a tag with me whose heartbeat I watched stay the same for the
        whole handler_heartbeat_timeout while my own heartbeats were being written."""
        if self._writing_since is None:
            return {}
        now = time.monotonic()
        timeout = self.ctx.config.handler_heartbeat_timeout
        silent = {}
        seen = self.store.handler_heartbeats()
        for name, (last_seen, tags) in seen.items():
            if name == self.name or not set(tags) & set(self.tags) and name not in self.tags:
                continue
            previous = self._observed.get(name)
            if previous is None or previous[0] != last_seen:
                self._observed[name] = (last_seen, now)
                continue
            if now - max(previous[1], self._writing_since) >= timeout:
                silent[name] = last_seen
        for name in set(self._observed) - set(seen):
            del self._observed[name]
        return silent

    def adopt_orphans(self) -> None:
        """Jobs of a handler silent for handler_heartbeat_timeout, sent to a tag of mine:
        take them over and re-attach (Galaxy leaves them orphaned, its issue 10243)."""
        silent = self.silent_handlers()
        if not silent:
            return
        for job in self.store.adopt_orphans(self.name, self.tags, silent):
            log.warning("handler %s: adopted job %s (%s) from a silent handler",
                        self.name, job.id, job.state)
            if self.unplaced(job):
                self._start_unplaced(job)
                continue
            try:
                runner, destination = self.runner_for(job)
                runner.recover(job, destination)
            except Exception as exc:
                self._fail(job, f"could not re-attach the adopted job: {exc}")

    def enforce_limits(self) -> None:
        """walltime and output_size from <limits>, on my running jobs."""
        now = utcnow()
        running = self.store.owned_jobs(self.name, states=(JobState.RUNNING,))
        self._sizes = {j.id: self._sizes[j.id] for j in running if j.id in self._sizes}
        for job in running:
            runner, _ = self.runner_for(job)
            if self.walltime and job.start_time and \
                    (now - job.start_time).total_seconds() > self.walltime:
                runner.stop_over_limit(job, WALLTIME,
                                       f"walltime reached (limit {timedelta(seconds=self.walltime)})")
            elif self.output_size and job.working_directory and \
                    self._job_size(job) > self.output_size:
                runner.stop_over_limit(job, OUTPUT_SIZE,
                                       f"output size over the limit of {self.output_size} bytes")

    def _job_size(self, job: Job) -> int:
        """Bytes in the job's directory. One that its real user owns while it runs is not
        readable by the server: measured as that user (du through the runjob script, a
        sudo each time, so at most once per REAL_USER_SIZE_CHECK seconds a job)."""
        accounts = self.lifecycle.accounts
        user = accounts.owner_of(job.working_directory) if accounts else None
        if user is None:
            return JobFiles(job.working_directory).size()
        checked = self._sizes.get(job.id)
        if checked and time.monotonic() - checked[0] < REAL_USER_SIZE_CHECK:
            return checked[1]
        try:
            size = accounts.directory_size(user, job.working_directory)
        except JobAccountError as exc:
            log.warning("job %s: its size could not be measured: %s", job.id, exc)
            size = checked[1] if checked else 0
        self._sizes[job.id] = (time.monotonic(), size)
        return size

    # -- jobs -----------------------------------------------------------------------
    def start(self, job: Job) -> None:
        log.info("job %s queued: handler=%s destination=%s runner=%s", job.id, self.name,
                 job.destination_id, job.runner)
        try:
            job = self.place(job)
            if job is None:
                return
            runner, destination = self.runner_for(job)
            runner.submit(job, destination)
        except Exception as exc:
            log.exception("job %s: could not be started", job.id)
            self._fail(job, f"could not be started: {exc}")

    def place(self, job: Job) -> Job | None:
        """Decide where the job runs, once, before it starts: a dynamic destination's rule
        chooses a destination (and params), and the resources the job's user asked for are
        mapped onto it. Recorded on the job under its lease, so a restart or an adoption
        runs it the same way (JobConfig.destination_of). None: not to be started (its rule
        failed it, or another handler holds it now)."""
        job_conf = self.ctx.job_conf
        try:
            destination = job_conf.resolve_destination(job.destination_id)
        except KeyError:
            return job  # runner_for says so
        params, chosen = {}, None
        if destination.dynamic:
            facts = job_rules.JobFacts(job, self.store, self.ctx.tools,
                                       self.ctx.config.admin_users)
            try:
                chosen = job_rules.choose(job_conf, destination, facts)
                params = job_rules.checked_params(chosen, self._spec(chosen.destination))
            except job_rules.RuleFailed as exc:
                log.warning("job %s: %s", job.id, exc)
                self._fail(job, str(exc))
                return None
            destination = chosen.destination
        # The resources asked for, onto the destination's own params; a param the rule set
        # is the rule's (it was given the resources as resource_params).
        resources = Resources.of(chosen_resources(job.params))
        changes, unmapped = destination_changes(self._runner_type(destination),
                                                self._spec(destination), destination.params,
                                                resources)
        if unmapped:
            log.warning("job %s: %s not applied: destination %s (runner %s) has no way to ask "
                        "for it", job.id, ", ".join(unmapped), destination.id, destination.runner)
        params = {**changes, **params}
        if chosen is None and not params:
            return job
        values = dict(destination_id=destination.id, runner=destination.runner,
                      destination_params=json.dumps(params) if params else None)
        if chosen is not None:  # the chosen destination's resubmit rules, as its own jobs have
            values["resubmit"] = json.dumps(destination.resubmit)
        if not self.store.update_job(job.id, lease=job.lease, **values):
            log.warning("job %s: no longer held by %s; not started here", job.id, self.name)
            return None
        if chosen is not None:
            log.info("job %s: %s chose destination %s%s", job.id, " -> ".join(chosen.chain),
                     destination.id, f" with {params}" if params else "")
        return job.with_(destination_id=destination.id, runner=destination.runner,
                         destination_params=params,
                         resubmit=destination.resubmit if chosen is not None else job.resubmit)

    def unplaced(self, job: Job) -> bool:
        """Whether the job still waits for its dynamic destination's rule."""
        try:
            return self.ctx.job_conf.resolve_destination(job.destination_id).dynamic
        except KeyError:
            return False

    def _start_unplaced(self, job: Job) -> None:
        if job.state == JobState.DELETING:
            self.lifecycle.cancelled(job, "cancelled before it started")
        else:
            self.start(job)

    def _runner_type(self, destination) -> str:
        plugin = self.ctx.job_conf.plugins.get(destination.runner)
        return plugin.type if plugin else ""

    def _spec(self, destination):
        return RUNNER_SPECS.get(self._runner_type(destination))

    def stop(self, job: Job) -> None:
        if self.unplaced(job):
            self.lifecycle.cancelled(job, "cancelled before it started")
            return
        try:
            runner, _ = self.runner_for(job)
            runner.cancel(job)
        except Exception as exc:
            log.exception("job %s: could not be cancelled", job.id)
            self.lifecycle.cancelled(job, f"cancelled; stopping it failed: {exc}")

    def runner_for(self, job: Job):
        job_conf = self.ctx.job_conf
        try:
            destination = job_conf.destination_of(job)
        except KeyError:
            raise RuntimeError(f"destination {job.destination_id!r} is no longer in "
                               f"{job_conf.path}") from None
        plugin = job_conf.plugins.get(destination.runner)
        if plugin is None:
            raise RuntimeError(f"runner {destination.runner!r} is not a plugin in {job_conf.path}")
        if plugin.id not in self.runners:
            self.runners[plugin.id] = load_runner(self.ctx, plugin, self.name)
        return self.runners[plugin.id], destination

    def _fail(self, job: Job, info: str) -> None:
        self.lifecycle.failed(job, info)
