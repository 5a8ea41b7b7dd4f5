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
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import threading

from muleteer.job import JobState
from muleteer.job_files import GATE_FD, SCRIPT, JobDirectoryError
from muleteer.galaxy_slots import Granted
from muleteer.containers import CONTAINER_PARAMS
from muleteer.runner_spec import Param, RunnerSpec
from mules.job_account import JobAccountError
from mules.job_command import JobSetupError
from mules.runners.base import BaseRunner, LeaseLost

log = logging.getLogger(__name__)

_RESET_SIGNALS = tuple(s for s in signal.valid_signals()
                       if s not in (signal.SIGKILL, signal.SIGSTOP) and s < signal.SIGRTMIN)
KILL_GRACE = 5.0

# `workers` (the plugin's attribute) is how many jobs run at once.
SPEC = RunnerSpec(
    type="local", url_form=(),  # local:///
    destination_params=(*CONTAINER_PARAMS, 
        Param("local_slots", int, None, "cores a job of this destination is given "
              "(GALAXY_SLOTS; Galaxy's name)", minimum=1),),
    doc="processes of the handler's machine")


class LocalRunner(BaseRunner):
    requirements_on_path = True
    def __init__(self, ctx, plugin, handler_name):
        super().__init__(ctx, plugin, handler_name)
        self._queue: queue.Queue = queue.Queue()
        self._pids: dict[int, int] = {}  # job id -> pid (= process group) of running jobs
        self._watched: dict[int, tuple] = {}  # recovered jobs: job id -> (job, files, pid)
        self._over_limit: dict[int, tuple] = {}  # job id -> (reason, info) of a limit kill
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"local-{i}", daemon=True)
                         for i in range(plugin.workers)]
        self._threads.append(threading.Thread(target=self._watch, name="local-watch", daemon=True))
        self._stop = threading.Event()
        for thread in self._threads:
            thread.start()

    def submit(self, job, destination):
        self._queue.put((job, destination))

    def granted(self, destination):
        return Granted(slots=destination.params.get("local_slots"))

    def cancel(self, job):
        pid = self._pids.get(job.id)
        if pid is None and job.id in self._watched:
            pid = self._watched[job.id][2]
        if pid is None:
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

    def _ended(self, job, files):
        self.lifecycle.take_back(job)  # its real user's until now: ours before we read it
        if job.external_id and files.exit_code() is None and files.never_started(job.external_id):
            self._start_again(job, self.ctx.job_conf.destination_of(job))
            return
        over = self._over_limit.pop(job.id, None)
        if over:
            self.lifecycle.failed(job, over[1], over[0])
        else:
            self.finish(job, files)

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
            self.finish(job, files, wait=0)
        elif files.never_started(pid):
            self._start_again(job, destination)
        elif alive:
            log.info("job %s: re-attached to pid %s", job.id, pid)
            if job.state == JobState.QUEUED:
                job = self.lifecycle.started(job, str(pid)) or job
            with self._lock:
                self._watched[job.id] = (job, files, pid)
        else:
            self.finish(job, files, wait=self.ctx.config.exit_code_file_wait)

    def shutdown(self):
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)

    def tracked_jobs(self):
        with self._queue.mutex:
            queued = [item[0] for item in self._queue.queue if item]
        with self._lock:
            watched = [entry[0] for entry in self._watched.values()]
        return queued + watched

    def forget(self, job_id):
        # A queued one is dropped when a worker takes it (its lease is checked first).
        with self._lock:
            self._watched.pop(job_id, None)

    # -- internals ----------------------------------------------------------------
    def _queued_ids(self):
        with self._queue.mutex:
            return {item[0].id for item in self._queue.queue if item}

    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, destination = item
            try:
                self._run(job, destination)
            except LeaseLost as exc:
                log.warning("%s; dropping it", exc)
            except (JobDirectoryError, JobSetupError) as exc:
                log.error("job %s: %s", job.id, exc)
                self.lifecycle.failed(job, str(exc))
            except Exception as exc:  # one job's failure never stops the runner
                log.exception("job %s: local runner failed", job.id)
                self.lifecycle.failed(job, f"local runner error: {exc}")
            finally:
                self._pids.pop(job.id, None)

    def _run(self, job, destination):
        current = self.store.get_job(job.id, retry=True)
        if current is None or current.lease != job.lease or current.handler != self.handler_name:
            raise LeaseLost(f"job {job.id}: handler {self.handler_name} no longer holds it")
        if current.state == JobState.DELETING:
            self.lifecycle.cancelled(job, "cancelled before it started")
            return
        logs = []  # opened before a real user gets the directory (we can't open it after)
        try:
            files = self.prepare(job, destination, gated=True,
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
                os.write(gate_write, b"go\n")
        finally:
            os.close(gate_write)  # without a go, the script exits at its gate
        os.waitpid(pid, 0)
        if not started:
            self._not_started(job)
            return
        self._ended(started, files)

    def _not_started(self, job):
        """Recording it running was refused: it was cancelled meanwhile, or it is another
        handler's now."""
        if self.lifecycle.cancel_requested(job):
            self.lifecycle.cancelled(job, "cancelled before it started")
        else:
            log.warning("job %s: handler %s lost it before starting it; not started",
                        job.id, self.handler_name)

    def _watch(self):
        """Poll the jobs re-attached after a restart (they are not our children)."""
        interval = self.ctx.config.job_runner_monitor_sleep
        while not self._stop.wait(interval):
            with self._lock:
                watched = list(self._watched.items())
            for job_id, (job, files, pid) in watched:
                if _is_job_process(pid, files.path(SCRIPT)):
                    continue
                with self._lock:
                    self._watched.pop(job_id, None)
                try:
                    self._ended(job, files)
                except Exception:
                    log.exception("job %s: finishing a recovered job failed", job_id)


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
