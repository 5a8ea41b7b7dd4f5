"""What every runner shares: a job's directory and script, and reading how a job ended.

A runner is a scheduler adapter: it starts, watches and stops job scripts, and reports
what it saw to the job's lifecycle (mules/lifecycle.py), which alone changes states.
Every action is made under the job's lease (see mules/handler_loop.py): a runner that
lost a job to another handler touches none of its files.
"""
from __future__ import annotations

import logging

from muleteer.job import Job
from muleteer.job_files import JobFiles, working_directory
from mules import job_command
from mules.lifecycle import Lifecycle, Outcome

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This handler no longer holds the job: another one adopted it. Drop it, touch nothing."""


class BaseRunner:
    # The local runner runs jobs with the handler's own PATH, so a tool's package
    # requirements can be looked up before the job starts; a cluster node's PATH can't.
    requirements_on_path = False

    def __init__(self, ctx, plugin, handler_name: str):
        self.ctx = ctx
        self.store = ctx.store
        self.plugin = plugin
        self.handler_name = handler_name
        self.lifecycle = Lifecycle(ctx, handler_name)

    # -- what a runner implements -------------------------------------------------
    def submit(self, job: Job, destination) -> None:
        raise NotImplementedError

    def cancel(self, job: Job) -> None:
        raise NotImplementedError

    def recover(self, job: Job, destination) -> None:
        raise NotImplementedError

    def stop_over_limit(self, job: Job, reason: str, info: str) -> None:
        """Stop a running job that broke a <limits> limit; report it ended for `reason`."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def tracked_jobs(self) -> list[Job]:
        """The jobs this runner keeps in memory (queued to start, or watched)."""
        return []

    def forget(self, job_id: int) -> None:
        """Stop tracking a job this handler lost (it is another handler's now)."""

    # -- shared -------------------------------------------------------------------
    def drop_lost_jobs(self) -> None:
        jobs = {j.id: j.lease for j in self.tracked_jobs()}
        held = self.store.held(self.handler_name, jobs)
        for job_id in set(jobs) - held:
            log.warning("job %s: handler %s lost it to another handler; dropping it",
                        job_id, self.handler_name)
            self.forget(job_id)

    def files(self, job: Job) -> JobFiles:
        return self.lifecycle.files(job)

    def check_lease(self, job: Job) -> None:
        """Raise LeaseLost unless this handler still holds the job (asked of the database)."""
        if not self.store.holds(job.id, job.lease, self.handler_name):
            raise LeaseLost(f"job {job.id}: handler {self.handler_name} no longer holds "
                            f"lease {job.lease}")

    def prepare(self, job: Job, destination, gated: bool = False) -> JobFiles:
        """A new job directory with the job script, made only while this handler holds the
        job. The directory is recorded before it is made, so a directory that exists but
        that the job never recorded was made by something else: the job fails."""
        self.check_lease(job)
        files = JobFiles(working_directory(self.ctx.config.job_working_directory, job.id))
        built = job_command.build(self.ctx, job, files, local=self.requirements_on_path)
        recorded = {}
        if job.working_directory == files.directory:
            # An earlier start of this job (a previous attempt, or a handler that stopped or
            # lost it before starting it) made it: keep it aside, start afresh.
            retired = files.retire("previous")
            if retired:
                log.info("job %s: earlier job directory kept as %s", job.id, retired)
        else:
            recorded["working_directory"] = files.directory
        if built.command != job.command_line:
            recorded["command_line"] = built.command
        # One write for both: every write is a turn at the database's lock.
        if recorded and not self.store.update_job(job.id, lease=job.lease, **recorded):
            raise LeaseLost(f"job {job.id}: lost before its directory was made")
        files.create()
        files.write_configfiles(built.configfiles)
        files.write_script(job, destination, self.ctx.config, gated=gated, command=built.command,
                           environment=built.environment, version_command=built.version_command)
        return files

    def outcome(self, job: Job, files: JobFiles, wait: float | None = None) -> Outcome:
        """How the job script ended, from its exit-code file (waited for a bounded time:
        a shared filesystem shows it late; not when a cancel was asked for)."""
        code = files.exit_code()
        if code is None and not self.lifecycle.cancel_requested(job):
            code = files.exit_code(wait=self.ctx.config.exit_code_file_wait if wait is None
                                   else wait)
        if code is not None:
            return Outcome(code)
        if files.disk_full():
            return Outcome(None, detail="the job ended without writing an exit code: the disk "
                                        f"holding its job directory ({files.directory}) is full")
        return Outcome(None, detail="the job ended without writing an exit code "
                                    "(killed, or its node lost)")

    def finish(self, job: Job, files: JobFiles, wait: float | None = None) -> Job | None:
        """Report the end of a job whose script has exited (or vanished)."""
        return self.lifecycle.ended(job, self.outcome(job, files, wait))
