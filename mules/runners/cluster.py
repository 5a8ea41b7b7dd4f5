"""What the cluster runners (slurm, pbs, drmaa) share: submit with retries, watch in batches.

A cluster runner only says how to submit a job script, how to ask the scheduler about
many jobs at once, and how to kill one. This module does the rest, the same way for all:

- `workers` threads submit job scripts. A scheduler that is down (SchedulerError with
  transient=True) leaves the job queued with the reason in its info and is retried with
  exponential backoff, up to `submit_retries` times, then the job ends `error` saying so.
  A refusal (a bad native specification) ends the job `error` at once with the
  scheduler's own message.
- One monitor thread asks the scheduler about ALL watched jobs in one call per
  job_runner_monitor_sleep (Galaxy's DRMAA runner asks once per job per second, which is
  what overloads schedulers), and moves jobs queued -> running -> finished.
- A finished job's result comes from the exit-code file the job script wrote; the
  scheduler's view explains a job that has none (walltime, memory, cancelled, node lost),
  or one whose tool was killed while the script lived on to write its code (a cgroup's OOM
  killer ends the biggest process, not the script): each runner's settle() asks its
  scheduler, or reads the scheduler's messages in the job's scheduler.err.
- A restarted handler re-attaches to its jobs by external id; it never resubmits them.
- Every action is under the job's lease (mules/handler_loop.py): the lease is checked just
  before the script is submitted, and a submission whose external id can no longer be
  recorded under it (another handler adopted the job meanwhile) is killed at once.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from muleteer.job import JobState
from muleteer.job_files import JobDirectoryError
from muleteer.runner_spec import Param, param_values
from muleteer.staging import STAGED_SCRIPT
from mules.job_account import JobAccountError
from mules.lifecycle import CANCELLED, MEMORY, WALLTIME, Outcome, Usage
from mules.job_command import JobSetupError
from mules.runners.base import BaseRunner, LeaseLost

log = logging.getLogger(__name__)

# Scheduler-neutral job states a runner's statuses() reports.
PENDING, ACTIVE, FINISHED = "pending", "running", "finished"

# Plugin params every cluster runner takes (each declares them in its RunnerSpec).
CLUSTER_PARAMS = (
    Param("submit_retries", int, 5, "submissions retried while the scheduler cannot be "
          "reached (exponential backoff), before the job ends `error`", minimum=0),
    Param("submit_retry_delay", float, 2.0, "seconds before the first retry; doubled each "
          "time", minimum=0),
    Param("vanished_after_checks", int, 3, "status calls that must miss a job (and find no "
          "exit-code file) before it counts as vanished", minimum=1),
    Param("exit_code_check_interval", float, 0.25, "seconds between looks for a job's "
          "exit-code file (a stat, not a scheduler call); 0 = only at status calls", minimum=0),
)
# The destination param of every cluster runner (Galaxy's name, and its snake_case alias).
NATIVE_SPECIFICATION = Param("nativeSpecification", str, "", "the scheduler's own submit "
                             "options", aliases=("native_specification",))


class SchedulerError(Exception):
    """The scheduler said no (transient=False) or could not be reached (transient=True)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass
class Status:
    state: str  # PENDING | ACTIVE | FINISHED
    detail: str = ""  # the scheduler's own words, e.g. "TIMEOUT (TimeLimit)"
    reason: str | None = None  # walltime_reached | memory_limit_reached | cancelled | None
    usage: Usage | None = None  # what the job used, when the scheduler said (DRMAA)


# The file the scheduler writes a job's own stderr to (its messages about the job too).
SCHEDULER_ERR = "scheduler.err"
# What schedulers write there when they kill a job for a limit (measured or documented):
# Slurm's slurmstepd (also under its TORQUE wrappers), TORQUE's and PBS Pro's mom.
_KILL_MESSAGES = (
    (WALLTIME, re.compile(r"DUE TO TIME LIMIT|PBS: job killed: walltime", re.IGNORECASE)),
    (MEMORY, re.compile(r"oom-kill event|out-of-memory handler|exceeded memory limit|"
                        r"PBS: job killed: [pv]?mem ", re.IGNORECASE)),
)
_EXPLAINED = {WALLTIME: "walltime reached", MEMORY: "memory limit reached",
              CANCELLED: "cancelled outside Muleteer"}


def killed_for(text: str) -> tuple[str, str] | None:
    """(reason, the scheduler's line) when a scheduler's message in `text` says it killed
    the job for its walltime or its memory."""
    for line in reversed(text.splitlines()):  # the last word is the scheduler's verdict
        for reason, pattern in _KILL_MESSAGES:
            if pattern.search(line):
                return reason, line.strip()
    return None


class ClusterRunner(BaseRunner):
    name = "cluster"

    def __init__(self, ctx, plugin, handler_name):
        super().__init__(ctx, plugin, handler_name)
        params = param_values(CLUSTER_PARAMS, plugin.params)  # typed, checked at load
        self.submit_retries = params["submit_retries"]
        self.retry_delay = params["submit_retry_delay"]
        self.vanished_after = params["vanished_after_checks"]
        # The exit-code file is the job's own word that it ended: looking for it is a stat,
        # not a scheduler call, so it is done more often than the status call (0 = never).
        self.exit_code_check = params["exit_code_check_interval"]
        self.status_calls = 0  # scheduler queries made by statuses(), for the benchmark
        self._watched: dict[int, dict] = {}  # job id -> job (with external_id)
        self._misses: dict[int, int] = {}
        self._attempts: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                         for i in range(plugin.workers)]
        self._threads.append(threading.Thread(target=self._monitor, name=f"{self.name}-monitor",
                                              daemon=True))
        for thread in self._threads:
            thread.start()

    # -- what a cluster runner implements -------------------------------------------------
    def submit_script(self, job: dict, files, destination) -> str:
        """Submit files' job script; return the scheduler's job id."""
        raise NotImplementedError

    def statuses(self, external_ids: list[str]) -> dict[str, Status]:
        """The state of many jobs in ONE scheduler call; ids it no longer knows are left out."""
        raise NotImplementedError

    def kill(self, external_id: str, job=None) -> None:
        """Kill a scheduler job (`job`: ours, to kill it as its real user when it has one)."""
        raise NotImplementedError

    def settle(self, job, files, status: Status, exit_code: int | None) -> Status:
        """The scheduler's last word on a finished job: why it ended when it was killed
        (walltime, memory), and what it used if the scheduler says. `exit_code` is the job
        script's (None: it wrote none). Runs on a worker thread and may wait a bounded time
        for the scheduler to catch up with the job's own end. Default: what was seen."""
        return status

    def ends_by_exit_code(self, job) -> bool:
        """Whether the exit-code file alone may finish the job (between status calls), or
        the scheduler's own record of its end must be awaited (it tells what it used)."""
        return True

    # -- helpers for subclasses -----------------------------------------------------------
    def run_client(self, argv: list[str], job=None, stdin=subprocess.DEVNULL):
        """Run a scheduler client; for a job that runs as its real user, as that user
        (so the scheduler accounts the job to them, and a cancel is theirs)."""
        from mules.runners import cli  # cli raises this module's SchedulerError

        try:
            user = self.job_user(job, self.files(job)) if job is not None else None
        except JobSetupError as exc:
            raise SchedulerError(str(exc)) from None
        if user is None:
            return cli.run(argv, stdin=stdin)
        program = os.path.abspath(shutil.which(argv[0]) or argv[0])
        try:
            return self.accounts.run_as_user(user, self.files(job).directory,
                                             [program, *argv[1:]], stdin=stdin)
        except JobAccountError as exc:
            raise SchedulerError(str(exc), transient=exc.transient) from None

    def run_staged_client(self, argv: list[str], job, files):
        """Submit a staged job's wrapper on the client's stdin (sbatch and qsub read it
        there): the job's user, if it has one, cannot read the server's job directory."""
        wrapper = files.open_regular(STAGED_SCRIPT)
        if wrapper is None:
            raise SchedulerError(f"{files.path(STAGED_SCRIPT)}: missing")
        with wrapper:
            return self.run_client(argv, job, stdin=wrapper)

    # -- BaseRunner ---------------------------------------------------------------------
    def submit(self, job, destination):
        self._queue.put((self._submit, job, destination))

    def cancel(self, job):
        with self._lock:
            watched = self._watched.pop(job.id, None)
        external_id = (watched or job).external_id
        if external_id:
            try:
                self.kill(external_id, job)
            except SchedulerError as exc:
                log.warning("job %s: %s could not kill %s: %s", job.id, self.name, external_id, exc)
        # Not yet submitted: the submit worker sees the cancel and does not submit it.
        self.lifecycle.cancelled(job, f"cancelled; removed from {self.name}" if external_id
                                 else "cancelled before it was submitted")

    def stop_over_limit(self, job, reason, info):
        with self._lock:
            watched = self._watched.pop(job.id, None)
        if watched is None:
            return
        try:
            self.kill(watched.external_id, job)
        except SchedulerError as exc:
            log.warning("job %s: could not kill %s: %s", job.id, watched.external_id, exc)
        self.lifecycle.failed(job, info, reason)

    def recover(self, job, destination):
        if job.external_id:
            log.info("job %s: re-attached to %s job %s", job.id, self.name, job.external_id)
            self._watch(job)
        else:
            self.submit(job, destination)

    def shutdown(self):
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)

    def tracked_jobs(self):
        with self._queue.mutex:
            queued = [item[1] for item in self._queue.queue if item]
        with self._lock:
            return queued + list(self._watched.values())

    def forget(self, job_id):
        with self._lock:
            self._watched.pop(job_id, None)
        self._misses.pop(job_id, None)
        self._attempts.pop(job_id, None)

    # -- submission ---------------------------------------------------------------------
    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, job, *args = item
            try:
                fn(job, *args)
            except LeaseLost as exc:
                log.warning("%s; dropping it", exc)
                self.forget(job.id)
            except (JobDirectoryError, JobSetupError) as exc:
                log.error("job %s: %s", job.id, exc)
                self.lifecycle.failed(job, str(exc))
            except Exception as exc:  # one job's failure never stops the runner
                log.exception("job %s: %s runner failed", job.id, self.name)
                self.lifecycle.failed(job, f"{self.name} runner error: {exc}")

    def _submit(self, job, destination, files=None):
        current = self.store.get_job(job.id, retry=True)
        if current is None or current.state != JobState.QUEUED:
            return  # cancelled (or taken care of) while it waited
        if files is None:
            files = self.prepare(job, destination)
        else:
            self.check_lease(job)  # a retry: the directory is the one made for it
        try:
            external_id = self.submit_script(job, files, destination)
        except SchedulerError as exc:
            self._submit_failed(job, destination, exc, files)
            return
        self._attempts.pop(job.id, None)
        if not self.lifecycle.submitted(job, external_id,
                                        f"submitted to {self.name} as {external_id}"):
            log.warning("job %s: handler %s lost it while submitting it; killing %s job %s",
                        job.id, self.handler_name, self.name, external_id)
            try:
                self.kill(external_id, job)
            except SchedulerError as exc:
                log.warning("job %s: could not kill %s: %s", job.id, external_id, exc)
            return
        job = job.with_(external_id=external_id)
        log.info("job %s submitted: handler=%s destination=%s runner=%s external_id=%s",
                 job.id, self.handler_name, job.destination_id, self.name, external_id)
        current = self.store.get_job(job.id, retry=True)
        if current is None or current.lease != job.lease:
            current = None
        if current is not None and current.state == JobState.DELETED:
            # Cancelled while the scheduler was taking it: that cancel had no id to kill.
            log.info("job %s: cancelled during its submission; killing %s job %s", job.id,
                     self.name, external_id)
            try:
                self.kill(external_id, job)
            except SchedulerError as exc:
                log.warning("job %s: could not kill %s: %s", job.id, external_id, exc)
            return
        if current is not None and current.state == JobState.DELETING:
            self.cancel(job)  # cancelled while we were submitting it
            return
        self._watch(job)

    def _submit_failed(self, job, destination, exc: SchedulerError, files):
        attempt = self._attempts.get(job.id, 0) + 1
        if not exc.transient:
            self._attempts.pop(job.id, None)
            self.lifecycle.failed(job, f"{self.name} refused the job: {exc}")
            return
        if attempt > self.submit_retries:
            self._attempts.pop(job.id, None)
            self.lifecycle.failed(job, f"gave up after {self.submit_retries} retries: "
                                       f"{self.name} unavailable: {exc}")
            return
        self._attempts[job.id] = attempt
        delay = min(self.retry_delay * 2 ** (attempt - 1), 300.0)
        info = (f"{self.name} unavailable: {exc}; retry {attempt} of {self.submit_retries} "
                f"in {delay:.0f} s")
        log.warning("job %s: %s", job.id, info)
        self.lifecycle.note(job, info)
        timer = threading.Timer(delay, self._queue.put, ((self._submit, job, destination, files),))
        timer.daemon = True
        timer.start()

    # -- monitoring ---------------------------------------------------------------------
    def _watch(self, job):
        with self._lock:
            self._watched[job.id] = job

    def _monitor(self):
        interval = self.ctx.config.job_runner_monitor_sleep
        tick = min(self.exit_code_check, interval) if self.exit_code_check > 0 else interval
        next_check = time.monotonic() + interval
        while not self._stop.wait(tick):
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + interval
                    self.check_all()
                elif self.exit_code_check > 0:
                    self.check_exit_codes()
            except Exception:
                log.exception("%s monitor failed", self.name)

    def check_exit_codes(self) -> None:
        """Finish the jobs whose exit-code file has appeared, without asking the scheduler."""
        with self._lock:
            jobs = list(self._watched.values())
        for job in jobs:
            if self.ends_by_exit_code(job) and self.files(job).exit_code() is not None:
                self._done(job, Status(FINISHED, "exit code written"))

    def check_all(self) -> None:
        """One scheduler call for every watched job, then act on what changed."""
        with self._lock:
            jobs = list(self._watched.values())
        if not jobs:
            return
        try:
            found = self.statuses([j.external_id for j in jobs])
        except SchedulerError as exc:
            log.warning("%s status check failed (will retry): %s", self.name, exc)
            return
        for job in jobs:
            status = found.get(job.external_id)
            if status is None:
                self._missing(job)
            elif status.state == ACTIVE and job.state == JobState.QUEUED:
                started = self.lifecycle.started(job, job.external_id)
                if started:
                    with self._lock:
                        if job.id in self._watched:
                            self._watched[job.id] = started
            elif status.state == FINISHED:
                self._done(job, status)

    def _missing(self, job):
        """The scheduler no longer knows the job (it finished long ago, or was lost)."""
        misses = self._misses.get(job.id, 0) + 1
        self._misses[job.id] = misses
        if self.files(job).exit_code() is not None or misses >= self.vanished_after:
            self._done(job, Status(FINISHED, "no longer known to the scheduler"))

    def _done(self, job, status: Status):
        with self._lock:
            if self._watched.pop(job.id, None) is None:
                return
        self._misses.pop(job.id, None)
        self._queue.put((self._finish, job, status))

    def _finish(self, job, status: Status):
        files = self.files(job)
        problem = self.lifecycle.take_back(job)  # a real user's directory: ours again first
        if problem:
            self.lifecycle.ended(job, Outcome(None, detail=problem))
            return
        if job.state == JobState.QUEUED:
            job = self.lifecycle.started(job, job.external_id) or job  # it ran between checks
        code = files.exit_code()
        try:
            status = self.settle(job, files, status, code)
        except SchedulerError as exc:
            log.warning("job %s: %s could not say how it ended: %s", job.id, self.name, exc)
        if code is None and not status.reason:
            code = files.exit_code(wait=self.ctx.config.exit_code_file_wait)
        if status.reason and code != 0:
            # Killed for a limit: no exit code, or the tool's death the script reported.
            ended = f"; the job script exited with {code}" if code is not None else ""
            self.lifecycle.ended(job, Outcome(
                None, status.reason, f"{_EXPLAINED[status.reason]} ({self.name}: "
                                     f"{status.detail}){ended}", usage=status.usage))
            return
        outcome = self.outcome(job, files, wait=0)
        if outcome.exit_code is None and files.is_regular(STAGED_SCRIPT):  # staged: said so
            outcome = Outcome(None, outcome.reason, "the staged job's results never arrived at "
                              "the server: its node could not upload them (the server was "
                              "unreachable for longer than staging_retry_seconds, or refused "
                              "them), or the job was killed first")
        if outcome.exit_code is None and status.detail:
            outcome = Outcome(None, outcome.reason,
                              f"{outcome.detail} ({self.name}: {status.detail})")
        self.lifecycle.ended(job, dataclasses.replace(outcome, usage=status.usage))

    # -- helpers for subclasses -----------------------------------------------------------
    def watched_count(self) -> int:
        with self._lock:
            return len(self._watched)

    def scheduler_message(self, files) -> tuple[str, str] | None:
        """killed_for() on the end of the job's scheduler.err (the scheduler's messages; a
        staged job's go to /dev/null)."""
        return killed_for(files.tail(SCHEDULER_ERR, 64 * 1024))

    def poll_until(self, fetch, done, wait: float = 5.0, interval: float = 0.25):
        """fetch() until done(result) or `wait` seconds passed; the last result. For a
        scheduler that records a job's end a moment after its script wrote its exit code."""
        deadline = time.monotonic() + wait
        while True:
            result = fetch()
            if done(result) or time.monotonic() >= deadline or self._stop.is_set():
                return result
            time.sleep(interval)

