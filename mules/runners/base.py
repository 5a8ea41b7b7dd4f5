"""What every runner shares: preparing a job's files and recording how it ended.

A runner only decides how a job script is started, watched and stopped; the
store transitions around that are the same for all of them and live here.
Every write is made under the job's lease (see mules/handler_loop.py): a runner
that lost a job to another handler changes nothing, on disk or in the store.
"""
from __future__ import annotations

import logging

from muleteer import models
from muleteer.job_files import JobFiles, working_directory
from mules.resubmit import matching_rule

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This handler no longer holds the job: another one adopted it. Drop it, touch nothing."""


class BaseRunner:
    def __init__(self, ctx, plugin, handler_name: str):
        self.ctx = ctx
        self.store = ctx.store
        self.plugin = plugin
        self.handler_name = handler_name

    # -- what a runner implements -------------------------------------------------
    def submit(self, job: dict, destination) -> None:
        raise NotImplementedError

    def cancel(self, job: dict) -> None:
        raise NotImplementedError

    def recover(self, job: dict, destination) -> None:
        raise NotImplementedError

    def stop_over_limit(self, job: dict, reason: str, info: str) -> None:
        """Stop a running job that broke a <limits> limit; it ends `error` (or is resubmitted)."""
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def tracked_jobs(self) -> list[dict]:
        """The jobs this runner keeps in memory (queued to start, or watched)."""
        return []

    def forget(self, job_id: int) -> None:
        """Stop tracking a job this handler lost (it is another handler's now)."""

    def drop_lost_jobs(self) -> None:
        jobs = {j["id"]: j["lease"] for j in self.tracked_jobs()}
        held = self.store.held(self.handler_name, jobs)
        for job_id in set(jobs) - held:
            log.warning("job %s: handler %s lost it to another handler; dropping it",
                        job_id, self.handler_name)
            self.forget(job_id)

    # -- shared -------------------------------------------------------------------
    def files(self, job: dict) -> JobFiles:
        return JobFiles(job.get("working_directory")
                        or working_directory(self.ctx.config.job_working_directory, job["id"]))

    def check_lease(self, job: dict) -> None:
        """Raise LeaseLost unless this handler still holds the job (asked of the database)."""
        if not self.store.holds(job["id"], job["lease"], self.handler_name):
            raise LeaseLost(f"job {job['id']}: handler {self.handler_name} no longer holds "
                            f"lease {job['lease']}")

    def prepare(self, job: dict, destination, gated: bool = False) -> JobFiles:
        """A new job directory with the job script, made only while this handler holds the
        job. The directory is recorded before it is made, so a directory that exists but
        that the job never recorded was made by something else: the job fails."""
        self.check_lease(job)
        files = JobFiles(working_directory(self.ctx.config.job_working_directory, job["id"]))
        if job.get("working_directory") == files.directory:
            # An earlier start of this job (a previous attempt, or a handler that stopped or
            # lost it before starting it) made it: keep it aside, start afresh.
            retired = files.retire("previous")
            if retired:
                log.info("job %s: earlier job directory kept as %s", job["id"], retired)
        elif not self.store.update_job(job["id"], lease=job["lease"],
                                       working_directory=files.directory):
            raise LeaseLost(f"job {job['id']}: lost before its directory was made")
        job["working_directory"] = files.directory
        files.create()
        files.write_script(job, destination, self.ctx.config, gated=gated)
        return files

    def mark_running(self, job: dict, external_id: str | None = None) -> bool:
        values = {"external_id": external_id} if external_id is not None else {}
        row = self.store.transition(job["id"], models.RUNNING, from_states=(models.QUEUED,),
                                    handler=self.handler_name, lease=job["lease"], **values)
        if row:
            log.info("job %s running: handler=%s destination=%s runner=%s external_id=%s",
                     job["id"], self.handler_name, job["destination_id"], job["runner"], external_id)
        return row is not None

    def finish(self, job: dict, files: JobFiles, wait: float | None = None) -> dict | None:
        """Record the end of a job from its exit-code file (waiting a bounded time for it)."""
        code = files.exit_code()
        if code is None:
            current = self.store.get_job(job["id"], retry=True)
            if current and current["state"] == models.DELETING:
                return self.end(job, models.DELETED, "cancelled by request")
            wait = self.ctx.config.exit_code_file_wait if wait is None else wait
            code = files.exit_code(wait=wait)
        if code is None:
            if files.disk_full():
                return self.end(job, models.ERROR, "the job ended without writing an exit code: "
                                                    "the disk holding its job directory "
                                                    f"({files.directory}) is full")
            return self.end(job, models.ERROR, "the job ended without writing an exit code "
                                                "(killed, or its node lost)")
        missing = files.missing_outputs(self.ctx.tools.get(job["tool_id"]))
        if code == 0 and missing:
            return self.end(job, models.ERROR, f"output(s) not produced: {', '.join(missing)}",
                            exit_code=code)
        if code == 0:
            return self.end(job, models.OK, None, exit_code=0)
        return self.end(job, models.ERROR, f"exit code {code}", exit_code=code)

    def end(self, job: dict, state: str, info: str | None, reason: str | None = None,
            **values) -> dict | None:
        """Record a job's end. A failure that one of the job's <resubmit> rules matches
        (reason: walltime_reached, memory_limit_reached, or None for other failures) goes
        back to `new` at the rule's destination instead."""
        if state == models.ERROR and self._resubmitted(job, info, reason):
            return None
        row = self.store.transition(job["id"], state,
                                    from_states=(models.QUEUED, models.RUNNING, models.DELETING),
                                    handler=self.handler_name, lease=job["lease"], info=info,
                                    **values)
        if row:
            log.info("job %s %s: handler=%s destination=%s runner=%s external_id=%s%s",
                     job["id"], row["state"], self.handler_name, job["destination_id"],
                     job["runner"], row["external_id"], f" ({info})" if info else "")
        return row

    def _resubmitted(self, job: dict, info: str | None, reason: str | None) -> bool:
        current = self.store.get_job(job["id"], retry=True) or job
        rule = matching_rule(current, reason)
        if rule is None or current["state"] not in (models.QUEUED, models.RUNNING) \
                or current["lease"] != job["lease"]:
            return False
        job_conf = self.ctx.job_conf
        try:
            destination = job_conf.resolve_destination(rule.get("destination") or current["destination_id"])
        except KeyError:
            log.warning("job %s: resubmit destination %r is no longer in job_conf.xml",
                        job["id"], rule.get("destination"))
            return False
        why = reason or "failure"
        row = self.store.resubmit(
            job["id"], job["lease"], destination_id=destination.id, runner=destination.runner,
            handler_tag=rule.get("handler") or current["handler_tag"], rules=destination.resubmit,
            info=f"attempt {current['attempt']} failed ({why}: {info}); resubmitted to {destination.id}")
        if row:
            log.info("job %s resubmitted: attempt %s -> destination %s (%s)", job["id"],
                     row["attempt"], destination.id, why)
        return row is not None
