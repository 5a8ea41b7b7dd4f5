"""The local runner: job scripts as processes of this machine.

`workers` threads (job_conf.xml) each start one job script and wait for it.
Each job gets its own session, hence its own process group, so cancel kills
everything the tool started; signals that uWSGI leaves ignored in its
processes are reset to their defaults in the job (docs/uwsgi.md).
Unlike Galaxy's local runner, a restarted handler re-attaches to the jobs it
left running, by the pid the script recorded and its exit-code file.

The job script is gated: it waits on a pipe for this handler's go, given only after
the job was marked running under this handler's lease. A handler paused between
starting the script and that write, whose job another handler adopted meanwhile,
finds its lease gone on waking and closes the pipe: the script exits before the
tool runs, so no job runs twice.

A job as its real user (mules/job_account.py) is started through sudo and the site's
external_runjob.py, which becomes the user: the gate arrives on stdin (sudo passes no
other descriptor), and signals are sent as the user (kill -- -PGID through the same
script), since the server account may not signal the user's processes.

Resources (muleteer/local_limits.py): `workers` are the cores this runner may use; a job
takes its destination's `local_slots` of them (default 1) and starts, in the order jobs
came, once that many are free. `local_memory_limit` puts the job in a memory cgroup of its
own (the kernel's OOM killer ends a job over it: memory_limit_reached), and
`local_walltime` has the runner stop the job's process group when it runs longer
(walltime_reached), the way <limits> walltime stops it.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import resource
import signal
import threading
import time

from muleteer import local_limits
from muleteer.job import JobState
from muleteer.job_files import GATE_FD, SCRIPT, JobDirectoryError
from muleteer.galaxy_slots import Granted
from muleteer.containers import CONTAINER_PARAMS
from muleteer.local_limits import CgroupUnavailable, LocalLimits
from muleteer.runner_spec import Param, RunnerSpec
from muleteer.store import utcnow
from mules.job_account import JobAccountError
from mules.job_command import JobSetupError
from mules.lifecycle import MEMORY, WALLTIME, Outcome, Usage
from mules.runners.base import BaseRunner, LeaseLost

log = logging.getLogger(__name__)

_RESET_SIGNALS = tuple(s for s in signal.valid_signals()
                       if s not in (signal.SIGKILL, signal.SIGSTOP) and s < signal.SIGRTMIN)
KILL_GRACE = 5.0


# `workers` (the plugin's attribute) are the cores its jobs share.
SPEC = RunnerSpec(
    type="local", url_form=(),  # local:///
    destination_params=(
        *CONTAINER_PARAMS,
        Param(local_limits.SLOTS, int, None, "cores a job of this destination takes of the "
              "plugin's workers, and is told of (GALAXY_SLOTS; Galaxy's name)", minimum=1),
        Param(local_limits.MEMORY_LIMIT, str, "", "memory a job may use, as sbatch --mem: MB, "
              "or with a K/M/G/T suffix (a cgroup of its own; over it the kernel kills it)",
              check=local_limits.parse_memory),  # a ValueError at load names file and line
        Param(local_limits.WALLTIME, str, "", "how long a job may run: HH:MM:SS or seconds",
              check=local_limits.parse_local_walltime)),
    doc="processes of the handler's machine")


class CorePool:
    """The cores a local runner's jobs share: a job takes its slots of them, in the order
    the jobs came (a big job is not starved by small ones behind it), and waits while too
    few are free. A waiting job may be withdrawn (cancelled, lost, shutdown)."""

    def __init__(self, total: int):
        self.total = total
        self.free = total
        self._waiting: collections.deque = collections.deque()
        self._withdrawn: set = set()
        self._cond = threading.Condition()

    def enter(self, job_id: int) -> None:
        """Take the job's place in line (then `take`, or `leave` if it will not run)."""
        with self._cond:
            self._waiting.append(job_id)

    def leave(self, job_id: int) -> None:
        """Give up the place in line of a job that will not `take` its cores."""
        with self._cond:
            if job_id in self._waiting:
                self._waiting.remove(job_id)
            self._withdrawn.discard(job_id)
            self._cond.notify_all()

    def take(self, job_id: int, slots: int) -> bool:
        """Wait, in line, for `slots` cores; False if the job was withdrawn meanwhile."""
        with self._cond:
            try:
                while not (self._waiting[0] == job_id and self.free >= slots):
                    if job_id in self._withdrawn:
                        return False
                    self._cond.wait(1.0)
                if job_id in self._withdrawn:
                    return False
                self.free -= slots
                return True
            finally:
                self._waiting.remove(job_id)
                self._withdrawn.discard(job_id)
                self._cond.notify_all()

    def hold(self, slots: int) -> None:
        """Count cores a job already uses (re-attached after a restart), free or not."""
        with self._cond:
            self.free -= slots

    def give_back(self, slots: int) -> None:
        with self._cond:
            self.free += slots
            self._cond.notify_all()

    def withdraw(self, job_id: int) -> bool:
        with self._cond:
            if job_id not in self._waiting:
                return False
            self._withdrawn.add(job_id)
            self._cond.notify_all()
            return True

    def waiting(self) -> list[int]:
        with self._cond:
            return list(self._waiting)


class LocalRunner(BaseRunner):
    requirements_on_path = True

    def __init__(self, ctx, plugin, handler_name):
        super().__init__(ctx, plugin, handler_name)
        self._queue: queue.Queue = queue.Queue()
        self._dequeue = threading.Lock()
        self._pids: dict[int, int] = {}  # job id -> pid (= process group) of running jobs
        self._watched: dict[int, tuple] = {}  # recovered jobs: job id -> (job, files, pid)
        self._held: dict[int, int] = {}  # recovered jobs: job id -> the cores they use
        self._waiting: dict[int, object] = {}  # job id -> job waiting for its cores
        self._over_limit: dict[int, tuple] = {}  # job id -> (reason, info) of a limit kill
        # local_walltime: job id -> (monotonic deadline, job, seconds allowed)
        self._deadlines: dict[int, tuple] = {}
        self.cores = CorePool(plugin.workers)
        # Job cgroups are named by this server's job directory too: servers on one machine
        # have overlapping job ids.
        self._cgroup_key = local_limits.server_key(ctx.config.job_working_directory)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"local-{i}", daemon=True)
                         for i in range(plugin.workers)]
        self._threads.append(threading.Thread(target=self._watch, name="local-watch", daemon=True))
        for thread in self._threads:
            thread.start()

    def submit(self, job, destination):
        self._queue.put((job, destination))

    def granted(self, destination):
        """GALAXY_SLOTS from local_slots (Galaxy's), GALAXY_MEMORY_MB from
        local_memory_limit (what the job's cgroup holds it to)."""
        limits = self._limits(destination)
        memory = limits.memory_bytes // (1024 * 1024) if limits.memory_bytes else None
        return Granted(slots=destination.params.get(local_limits.SLOTS), memory_mb=memory)

    def script_setup(self, job, destination):
        """With local_memory_limit: the job's own memory cgroup, made now, and the script's
        move into it."""
        limits = self._limits(destination)
        if limits.memory_bytes is None:
            return []
        try:
            parent = local_limits.cgroup_parent()
        except CgroupUnavailable as exc:
            raise JobSetupError(f"destination {destination.id}: {local_limits.MEMORY_LIMIT}: "
                                f"{exc}") from None
        cgroup = local_limits.job_cgroup(parent, self._cgroup_key, job.id, job.lease)
        try:
            cgroup.create(limits.memory_bytes, owner_uid=self._job_uid(job))
        except OSError as exc:
            raise JobSetupError(f"destination {destination.id}: the job's memory cgroup "
                                f"{cgroup.path} could not be made: {exc}") from None
        return cgroup.script_lines()

    def cancel(self, job):
        pid = self._pids.get(job.id)
        if pid is None and job.id in self._watched:
            pid = self._watched[job.id][2]
        if pid is None:
            if self.cores.withdraw(job.id):
                return  # its worker stops waiting for cores and records the cancel
            # Not started here (still in our queue, or never started): the worker that
            # dequeues it sees `deleting` and records `deleted`; nothing to kill.
            if not job.external_id and job.id not in self._queued_ids():
                self.lifecycle.cancelled(job, "cancelled before it started")
            return
        self._signal(job, pid, signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE, self._signal, (job, pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def stop_over_limit(self, job, reason, info):
        pid = self._pids.get(job.id) or (self._watched.get(job.id) or (None, None, None))[2]
        if pid is None:
            return
        with self._lock:
            if job.id in self._over_limit:
                return  # already being stopped (<limits> asks again at every sweep)
            self._over_limit[job.id] = (reason, info)
        self._signal(job, pid, signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE, self._signal, (job, pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def _start_again(self, job, destination):
        """Recorded running, but its script exited at its gate (the handler that started it
        died before saying go): the tool never ran, so it is started again."""
        row = self.store.transition(job.id, JobState.QUEUED, from_states=(JobState.RUNNING,),
                                    handler=self.handler_name, lease=job.lease,
                                    external_id=None, start_time=None,
                                    info="its handler stopped before its tool started: "
                                         "starting it again")
        if row:
            log.info("job %s: never started (pid %s exited at its gate); starting it again",
                     job.id, job.external_id)
            self.submit(row, destination)

    def _signal(self, job, pid: int, sig: int) -> None:
        """Signal the job's process group: as the job's real user when it runs as one (the
        server account may not signal their processes; the sudo in front of them is root's
        and ignores it)."""
        files = self.files(job)
        user = self.job_user(job, files)
        if user is None:
            _kill_group(pid, sig)
            return
        try:
            self.accounts.run_as_user(user, files.directory, ["/bin/kill", "-s",
                                      signal.Signals(sig).name[3:], "--", f"-{pid}"])
        except JobAccountError as exc:
            log.warning("job %s: could not signal its processes as %s: %s", job.id, user, exc)

    def _ended(self, job, files, usage: Usage | None = None):
        self.lifecycle.take_back(job)  # its real user's until now: ours before we read it
        with self._lock:
            self._deadlines.pop(job.id, None)
        if job.external_id and files.exit_code() is None and files.never_started(job.external_id):
            self._remove_cgroups(job.id)
            self._start_again(job, self.ctx.job_conf.destination_of(job))
            return
        with self._lock:
            over = self._over_limit.pop(job.id, None)
        if over:
            self._remove_cgroups(job.id)
            self.lifecycle.failed(job, over[1], over[0])
        else:
            self._report_end(job, files, usage=usage)

    def _report_end(self, job, files, wait: float | None = None, usage: Usage | None = None):
        """The job's end as its exit-code file and its memory cgroup tell it; its cgroup is
        removed (with anything the job left running in it) before the end is recorded."""
        outcome = self.outcome(job, files, wait)
        cgroups = local_limits.job_cgroups(self._cgroup_key, job.id)
        killed = [v for v in (c.verdict() for c in cgroups) if v and v.limit_reached]
        self._remove_cgroups(job.id, cgroups)
        # An OOM kill the job survived (a child it restarted) leaves its exit code to judge.
        if killed and outcome.exit_code != 0:
            verdict = killed[0]
            ended = ("the job script was killed" if outcome.exit_code is None
                     else f"the job script exited with {outcome.exit_code}")
            outcome = Outcome(None, MEMORY, f"memory limit reached (local: "
                              f"{local_limits.MEMORY_LIMIT} "
                              f"{local_limits.describe_memory(verdict.limit_bytes or 0)}: the "
                              f"kernel's OOM killer killed {verdict.oom_kills} process(es) of "
                              f"the job; {ended})")
        if usage is not None:
            outcome = dataclasses.replace(outcome, usage=usage)
        self.lifecycle.ended(job, outcome)

    def recover(self, job, destination):
        files = self.files(job)
        if job.state == JobState.QUEUED and not job.external_id:
            # Never marked running, so never given its go: a script still waiting at the
            # gate will exit when its pipe closes; end it now and start the job afresh.
            stale = _find_job_process(files.path(SCRIPT))
            if stale:
                self._signal(job, stale, signal.SIGKILL)
            self.submit(job, destination)
            return
        pid = int(job.external_id) if job.external_id else files.pid()
        alive = bool(pid) and _is_job_process(pid, files.path(SCRIPT))
        if not alive:
            self.lifecycle.take_back(job)  # a real user's, and the job is over: read it
        if files.exit_code() is not None:
            self._report_end(job, files, wait=0)  # no usage: not our child
        elif files.never_started(pid):
            self._remove_cgroups(job.id)
            self._start_again(job, destination)
        elif alive:
            log.info("job %s: re-attached to pid %s", job.id, pid)
            if job.state == JobState.QUEUED:
                job = self.lifecycle.started(job, str(pid)) or job
            try:
                limits = self._limits(destination)
            except JobSetupError as exc:
                log.warning("job %s: %s; its limits are not enforced", job.id, exc)
                limits = LocalLimits()
            self.cores.hold(limits.slots)
            with self._lock:
                self._held[job.id] = limits.slots
                self._watched[job.id] = (job, files, pid)
                if limits.walltime_seconds:
                    ran = (utcnow() - job.start_time).total_seconds() if job.start_time else 0
                    self._deadlines[job.id] = (
                        time.monotonic() + max(0.0, limits.walltime_seconds - ran), job,
                        limits.walltime_seconds)
        else:
            self._report_end(job, files, wait=self.ctx.config.exit_code_file_wait)

    def shutdown(self):
        self._stop.set()
        for job_id in self.cores.waiting():
            self.cores.withdraw(job_id)
        for _ in self._threads:
            self._queue.put(None)

    def tracked_jobs(self):
        with self._queue.mutex:
            queued = [item[0] for item in self._queue.queue if item]
        with self._lock:
            watched = [entry[0] for entry in self._watched.values()]
            waiting = list(self._waiting.values())
        return queued + waiting + watched

    def forget(self, job_id):
        # A queued one is dropped when a worker takes it (its lease is checked first).
        self.cores.withdraw(job_id)
        with self._lock:
            self._watched.pop(job_id, None)
            self._deadlines.pop(job_id, None)
            held = self._held.pop(job_id, 0)
        if held:
            self.cores.give_back(held)

    # -- internals ----------------------------------------------------------------
    def _queued_ids(self):
        with self._queue.mutex:
            queued = {item[0].id for item in self._queue.queue if item}
        with self._lock:
            return queued | set(self._waiting)

    def _limits(self, destination) -> LocalLimits:
        """The destination's limits (checked at load; a dynamic rule's params are not)."""
        try:
            return LocalLimits.of(destination.params)
        except (TypeError, ValueError) as exc:
            raise JobSetupError(f"destination {destination.id}: {exc}") from None

    def _job_uid(self, job) -> int | None:
        """The uid a job as its real user runs as (None: the server's own), which must be
        allowed to move its script into its memory cgroup."""
        if self.accounts is None:
            return None
        try:
            account = self.accounts.account_of(self.store.user_email(job.user_id))
        except JobAccountError as exc:
            raise JobSetupError(str(exc)) from None
        if account.uid == os.geteuid():
            return None
        if os.geteuid() != 0:
            raise JobSetupError(f"{local_limits.MEMORY_LIMIT}: a job as its real user "
                                f"({account.name}) joins its memory cgroup itself, which only "
                                "a server running as root can allow")
        return account.uid

    def _remove_cgroups(self, job_id: int, cgroups=None) -> None:
        for cgroup in local_limits.job_cgroups(self._cgroup_key, job_id) if cgroups is None \
                else cgroups:
            try:
                cgroup.remove()
            except OSError as exc:
                log.warning("job %s: its memory cgroup %s could not be removed: %s", job_id,
                            cgroup.path, exc)

    def _remove_own_cgroup(self, job) -> None:
        """The cgroup this start of the job made, if any (another lease's is another
        handler's, or another start's)."""
        name = f"{self._cgroup_key}-{int(job.id)}-{int(job.lease)}"
        self._remove_cgroups(job.id, [c for c in local_limits.job_cgroups(self._cgroup_key, job.id)
                                      if os.path.basename(c.path) == name])

    def _work(self):
        while True:
            # Off the queue and into the line for cores as one step: otherwise two workers
            # could enter the line in the other order than they took their jobs.
            with self._dequeue:
                item = self._queue.get()
                if item is None:
                    return
                self.cores.enter(item[0].id)
            job, destination = item
            slots = 0
            try:
                try:
                    limits = self._limits(destination)
                    if limits.slots > self.cores.total:
                        raise JobSetupError(
                            f"destination {destination.id}: {local_limits.SLOTS}={limits.slots} "
                            f"is more than the {self.cores.total} cores the local runner "
                            f"{self.plugin.id!r} may use (its workers): the job could never "
                            "start")
                except BaseException:
                    self.cores.leave(job.id)
                    raise
                with self._lock:
                    self._waiting[job.id] = job
                try:
                    taken = self.cores.take(job.id, limits.slots)
                finally:
                    with self._lock:
                        self._waiting.pop(job.id, None)
                if not taken:
                    if not self._stop.is_set() and self.lifecycle.cancel_requested(job):
                        self.lifecycle.cancelled(job, "cancelled before it started")
                    continue
                slots = limits.slots
                self._run(job, destination, limits)
            except LeaseLost as exc:
                log.warning("%s; dropping it", exc)
                self._remove_own_cgroup(job)
            except (JobDirectoryError, JobSetupError) as exc:
                log.error("job %s: %s", job.id, exc)
                self._remove_own_cgroup(job)
                self.lifecycle.failed(job, str(exc))
            except Exception as exc:  # one job's failure never stops the runner
                log.exception("job %s: local runner failed", job.id)
                self._remove_own_cgroup(job)
                self.lifecycle.failed(job, f"local runner error: {exc}")
            finally:
                self._pids.pop(job.id, None)
                if slots:
                    self.cores.give_back(slots)

    def _run(self, job, destination, limits: LocalLimits):
        current = self.store.get_job(job.id, retry=True)
        if current is None or current.lease != job.lease or current.handler != self.handler_name:
            raise LeaseLost(f"job {job.id}: handler {self.handler_name} no longer holds it")
        if current.state == JobState.DELETING:
            self.lifecycle.cancelled(job, "cancelled before it started")
            return
        if current.state != JobState.QUEUED:
            return  # cancelled (deleted) while it waited for its cores
        logs = []  # opened before a real user gets the directory (we can't open it after)
        try:
            files = self.prepare(job, destination, gated=True, lease_checked=True,
                                 before_hand_over=lambda made: logs.append(made.open_log()))
        except BaseException:
            for fd in logs:
                os.close(fd)
            raise
        script = files.path(SCRIPT)
        log_fd = logs[0]
        user = self.job_user(job, files)
        gate_read, gate_write = os.pipe()
        if gate_read in (0, 1, 2, GATE_FD):  # dup2 onto itself would keep it close-on-exec
            gate_read, old = os.dup(gate_read), gate_read
            os.close(old)
        argv = ["/bin/bash", script]
        if user is None:
            gate = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, gate_read, GATE_FD)]
        else:  # through sudo, which passes on stdin and closes every other descriptor
            argv = self.accounts.as_user(user, files.directory, argv)
            gate = [(os.POSIX_SPAWN_DUP2, gate_read, 0)]
        try:
            pid = os.posix_spawnp(argv[0], argv, os.environ,
                                  setsid=True, setsigdef=_RESET_SIGNALS, setsigmask=(),
                                  file_actions=[*gate, (os.POSIX_SPAWN_DUP2, log_fd, 1),
                                                (os.POSIX_SPAWN_DUP2, log_fd, 2)])
        except BaseException:
            os.close(gate_write)
            raise
        finally:
            os.close(log_fd)
            os.close(gate_read)
        self._pids[job.id] = pid
        try:
            started = self.lifecycle.started(job, str(pid))
            if started:
                if limits.walltime_seconds:
                    with self._lock:
                        self._deadlines[job.id] = (time.monotonic() + limits.walltime_seconds,
                                                   started, limits.walltime_seconds)
                os.write(gate_write, b"go\n")
        finally:
            os.close(gate_write)  # without a go, the script exits at its gate
        _, _, rusage = os.wait4(pid, 0)
        usage = _usage(rusage)
        if not started:
            self._remove_own_cgroup(job)
            self._not_started(job)
            return
        self._ended(started, files, usage)

    def _not_started(self, job):
        """Recording it running was refused: it was cancelled meanwhile, or it is another
        handler's now."""
        if self.lifecycle.cancel_requested(job):
            self.lifecycle.cancelled(job, "cancelled before it started")
        else:
            log.warning("job %s: handler %s lost it before starting it; not started",
                        job.id, self.handler_name)

    def _watch(self):
        """Poll the jobs re-attached after a restart (they are not our children), and stop
        the jobs past their local_walltime."""
        interval = self.ctx.config.job_runner_monitor_sleep
        while not self._stop.wait(self._until_next_check(interval)):
            self._stop_overdue()
            with self._lock:
                watched = list(self._watched.items())
            for job_id, (job, files, pid) in watched:
                if _is_job_process(pid, files.path(SCRIPT)):
                    continue
                with self._lock:
                    self._watched.pop(job_id, None)
                    held = self._held.pop(job_id, 0)
                try:
                    self._ended(job, files)
                except Exception:
                    log.exception("job %s: finishing a recovered job failed", job_id)
                finally:
                    if held:
                        self.cores.give_back(held)

    def _until_next_check(self, interval: float) -> float:
        with self._lock:
            deadlines = [entry[0] for entry in self._deadlines.values()]
        if not deadlines:
            return interval
        return min(interval, max(0.02, min(deadlines) - time.monotonic()))

    def _stop_overdue(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [(job_id, entry) for job_id, entry in self._deadlines.items()
                       if entry[0] <= now]
            for job_id, _ in overdue:
                del self._deadlines[job_id]
        for _, (_, job, seconds) in overdue:
            self.stop_over_limit(job, WALLTIME, "walltime reached (local_walltime "
                                                f"{local_limits.describe_duration(seconds)})")


def _usage(rusage) -> Usage:
    """What the job's processes used, from wait4 on its script (and what it waited for).
    ru_maxrss (KiB) of a process this one spawned starts at this process's own peak (Linux
    records the address space it was spawned from when it execs): a figure no higher than
    that says nothing about the job, and is left out."""
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Usage(max_rss_bytes=rusage.ru_maxrss * 1024 if rusage.ru_maxrss > own_peak else None,
                 cpu_seconds=rusage.ru_utime + rusage.ru_stime)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _is_job_process(pid: int, script: str) -> bool:
    """True while `pid` is alive and is this job's script (pids are reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return script.encode() in fh.read()
    except OSError:
        return False


def _find_job_process(script: str) -> int | None:
    """The job script's session leader (its subshells share its command line)."""
    found = [int(e.name) for e in os.scandir("/proc")
             if e.name.isdigit() and _is_job_process(int(e.name), script)]
    for pid in found:
        try:
            if os.getsid(pid) == pid:
                return pid
        except ProcessLookupError:
            pass
    return found[0] if found else None
