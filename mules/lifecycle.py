"""A job's lifecycle on the handler side: the one place where a handler changes a job's state.

Runners are scheduler adapters: they start, watch and stop job scripts, and report what
they saw (started with an external id; ended with an exit code, or without one and a
reason). This module turns those reports into states: ok, error, deleted (a cancel
asked for wins over the job's own end), or a new attempt when one of the job's
<resubmit> rules matches the failure. Every write is made under the job's lease: a
handler that lost the job to another records nothing.

A job that ends (ok, error, deleted) gets its metrics recorded first (what the job
script's metrics plugins wrote in its directory, and what its runner saw it use), while
the directory is still there and before the state a client waits for: a client that sees
the job ended finds its metrics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from muleteer.dataset_files import DatasetFileError, DatasetFiles, DiskFull
from muleteer.job import Job, JobState
from muleteer.job_files import COMMAND_VERSION, STDERR, STDOUT, JobFiles, working_directory
from muleteer.store.datasets import QuotaExceeded
from muleteer.store.outputs import NewOutput
from muleteer.job_outputs import relative_path
from muleteer.resubmit import delay_seconds, matching_rule
from muleteer.tools import outputs as tool_outputs, stdio
from mules import job_command
from mules.job_account import JobAccountError, JobAccounts

log = logging.getLogger(__name__)

# Why a job ended without an exit code of its own (the names <resubmit> conditions use).
WALLTIME = "walltime_reached"
MEMORY = "memory_limit_reached"
OUTPUT_SIZE = "output_size_reached"
CANCELLED = "cancelled"
# How much of a job's stdout and stderr its row keeps (the end of each).
OUTPUT_TEXT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """What a job's processes used, as its runner saw it (the local runner's wait4, a
    DRM's resource usage); None: not seen."""
    max_rss_bytes: int | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What a runner saw at a job's end: its exit code, or None and why (reason) in words
    (detail, e.g. the scheduler's own), and what it used if the runner saw that."""
    exit_code: int | None
    reason: str | None = None
    detail: str = ""
    usage: Usage | None = None


class Lifecycle:
    def __init__(self, ctx, handler_name: str):
        self.ctx = ctx
        self.store = ctx.store
        self.handler_name = handler_name
        self.accounts = JobAccounts.from_config(ctx.config)

    def files(self, job: Job) -> JobFiles:
        return JobFiles(job.working_directory
                        or working_directory(self.ctx.config.job_working_directory, job.id))

    # -- what runners report ------------------------------------------------------------
    def started(self, job: Job, external_id: str | None = None) -> Job | None:
        """The job runs (queued -> running); None if it was cancelled or lost meanwhile."""
        values = {"external_id": external_id} if external_id is not None else {}
        row = self.store.transition(job.id, JobState.RUNNING, handler=self.handler_name,
                                    lease=job.lease, **values)
        if row:
            log.info("job %s running: handler=%s destination=%s runner=%s external_id=%s",
                     job.id, self.handler_name, job.destination_id, job.runner, external_id)
        return row

    def submitted(self, job: Job, external_id: str, info: str) -> bool:
        """A scheduler took the job: its id, recorded while this handler holds the job."""
        return self.store.update_job(job.id, lease=job.lease, external_id=external_id, info=info)

    def note(self, job: Job, info: str) -> None:
        """Why a job waits (e.g. the scheduler is down and its submission will be retried)."""
        self.store.update_job(job.id, lease=job.lease, info=info)

    def cancel_requested(self, job: Job) -> bool:
        current = self.store.get_job(job.id, retry=True)
        return bool(current and current.lease == job.lease and current.state == JobState.DELETING)

    def take_back(self, job: Job) -> str | None:
        """Before the server reads a directory the job's real user owns, hand it back to
        the server (the site's chown script); what went wrong, if anything."""
        if self.accounts is None:
            return None
        try:
            self.accounts.take_back(self.files(job).directory)
        except JobAccountError as exc:
            log.error("job %s: %s", job.id, exc)
            return f"its directory could not be taken back from its user: {exc}"
        return None

    def ended(self, job: Job, outcome: Outcome) -> Job | None:
        """Record a job's end from what its runner saw."""
        problem = self.take_back(job)
        usage = outcome.usage
        if problem:
            outcome = Outcome(None, detail=problem)
        if outcome.exit_code is None:
            if self.cancel_requested(job):
                return self.cancelled(job, "cancelled by request", usage=usage)
            return self.failed(job, outcome.detail, outcome.reason, usage=usage)
        tool = job_command.tool_of(self.ctx, job)
        if tool is None:  # a job with a recorded command of its own: its exit code decides
            if outcome.exit_code == 0:
                return self._end(job, JobState.OK, None, usage=usage, exit_code=0)
            return self.failed(job, f"exit code {outcome.exit_code}", usage=usage,
                               exit_code=outcome.exit_code)
        text = self._output_text(job)  # read once: judged here, kept in the row at the end
        verdict = stdio.judge(tool.stdio, outcome.exit_code, text.get("stdout", ""),
                              text.get("stderr", ""))
        if verdict.failed:
            reason = MEMORY if verdict.oom else None
            return self.failed(job, verdict.reason or f"exit code {outcome.exit_code}", reason,
                               usage=usage, exit_code=outcome.exit_code, **text)
        return self._ok_with_outputs(job, tool, outcome.exit_code, text, usage)

    def failed(self, job: Job, info: str, reason: str | None = None,
               usage: Usage | None = None, **values) -> Job | None:
        """The job failed; a matching <resubmit> rule sends it back to `new` instead (the
        attempt's metrics are not kept: the next attempt's will be)."""
        if self._resubmitted(job, info, reason):
            return None
        return self._end(job, JobState.ERROR, info, usage=usage, **values)

    def cancelled(self, job: Job, info: str, usage: Usage | None = None) -> Job | None:
        return self._end(job, JobState.DELETED, info, usage=usage)

    # -- internals ----------------------------------------------------------------------
    def _ok_with_outputs(self, job: Job, tool, exit_code: int, text: dict,
                         usage: Usage | None = None) -> Job | None:
        """`ok`, each output the tool makes (its filters passed) stored as a dataset of the
        job's owner, with the datasets its <discover_datasets> rules find, in one
        transaction under the lease; an output that is missing or cannot be stored (a full
        disk, the owner's quota) ends the job `error` saying why. `text`: _output_text's."""
        files, store_files = self.files(job), DatasetFiles(self.ctx.config.file_path)
        inputs = job_command.job_inputs(self.ctx, job, tool)
        formats = job_command.output_formats(job, tool, inputs)
        labels = job_command.output_names(job, tool, formats, inputs)
        wanted = [tool.output(name) for name in formats]
        made = {o.name: relative_path(o) for o in wanted if not o.discover}
        missing = files.missing_outputs(made)
        if missing:
            return self.failed(job, f"output(s) not produced: {', '.join(missing)}",
                               usage=usage, exit_code=exit_code, **text)
        found = []  # (output name, dataset name, format, relative path)
        listing = None
        for output in wanted:
            if output.discover:
                listing = files.regular_files() if listing is None else listing
                try:
                    discovered = tool_outputs.discover(output.discover, listing)
                except ValueError as exc:
                    return self.failed(job, f"output {output.name}: {exc}",
                                       usage=usage, exit_code=exit_code, **text)
                if files.is_regular(relative_path(output)):
                    found.append((output.name, labels[output.name], formats[output.name],
                                  relative_path(output)))
                for item in discovered:
                    found.append((f"{output.name}_{item.designation}",
                                  item.name or item.designation, item.format, item.path))
            else:
                found.append((output.name, labels[output.name], formats[output.name],
                              relative_path(output)))
        if job.user_id is None or not found:
            return self._end(job, JobState.OK, None, usage=usage, exit_code=exit_code, **text)
        outputs = []
        try:
            for name, label, fmt, relative in found:
                fh = files.open_regular(relative)
                if fh is None:
                    return self.failed(job, f"output {name} is not a regular file",
                                       usage=usage, exit_code=exit_code, **text)
                with fh:
                    staged = store_files.stage(fh)
                outputs.append(NewOutput(name, label, fmt, staged))
            row = self.store.end_with_outputs(job.id, job.lease, self.handler_name,
                                              job.user_id, outputs, place=store_files.commit,
                                              quota=self.ctx.config.user_quota,
                                              metrics=self._metrics(job, usage),
                                              exit_code=exit_code, **text)
        except (DiskFull, DatasetFileError, QuotaExceeded) as exc:
            return self.failed(job, f"its outputs could not be stored: {exc}",
                               usage=usage, exit_code=exit_code, **text)
        finally:
            for output in outputs:
                output.staged.discard()
        if row is None:
            if self.cancel_requested(job):
                return self.cancelled(job, "cancelled by request", usage=usage)
            return None  # another handler's now: it records the end
        log.info("job %s ok: handler=%s destination=%s runner=%s external_id=%s (outputs: %s)",
                 job.id, self.handler_name, job.destination_id, job.runner, row.external_id,
                 ", ".join(o.name for o in outputs))
        self._cleanup(row)
        return row

    def _end(self, job: Job, state: JobState, info: str | None, usage: Usage | None = None,
             **values) -> Job | None:
        self.take_back(job)  # a job failed or cancelled before its runner saw it end
        if "stdout" not in values:  # the caller has not read them (ended() has)
            values = {**self._output_text(job), **values}
        row = self.store.transition(job.id, state, handler=self.handler_name, lease=job.lease,
                                    info=info, metrics=self._metrics(job, usage), **values)
        if row:
            log.info("job %s %s: handler=%s destination=%s runner=%s external_id=%s%s",
                     job.id, row.state, self.handler_name, job.destination_id, job.runner,
                     row.external_id, f" ({info})" if info else "")
            self._cleanup(row)
        return row

    def _metrics(self, job: Job, usage: Usage | None) -> list:
        """The job's metrics, from its directory and its runner's usage, written in the
        same transaction as its end. Metrics never fail a job: a problem here is logged and
        the end recorded without them."""
        try:
            return self._job_metrics_of(job).collect(
                self.files(job), max_rss_bytes=usage.max_rss_bytes if usage else None,
                cpu_seconds=usage.cpu_seconds if usage else None)
        except Exception:
            log.exception("job %s: its metrics could not be collected", job.id)
            return []

    def _job_metrics_of(self, job: Job):
        """The plugins whose lines the job's script ran: its destination's (the one it ran
        at), or galaxy.yml's if that destination is gone from the configuration."""
        try:  # its configured destination: a job's own params play no part in its metrics
            destination = self.ctx.job_conf.resolve_destination(job.destination_id)
        except KeyError:
            destination = None
        return self.ctx.metrics_for(destination)

    def _output_text(self, job: Job) -> dict:
        """The end of the job's stdout and stderr, kept in its row (its directory may go)."""
        files = self.files(job)
        if not files.exists():
            return {}
        text = {"stdout": files.tail(STDOUT, OUTPUT_TEXT_BYTES).replace("\x00", ""),
                "stderr": files.tail(STDERR, OUTPUT_TEXT_BYTES).replace("\x00", "")}
        version = files.read_small(COMMAND_VERSION)
        if version is not None:
            text["command_version"] = version.replace("\x00", "").strip()
        return text

    def _cleanup(self, job: Job) -> None:
        """cleanup_job: remove an ended job's directory (always, or onsuccess when ok)."""
        policy = self.ctx.config.cleanup_job
        if job.working_directory and (policy == "always" or
                                      policy == "onsuccess" and job.state == JobState.OK):
            self.files(job).remove()

    def _resubmitted(self, job: Job, info: str | None, reason: str | None) -> bool:
        current = self.store.get_job(job.id, retry=True) or job
        if current.state not in (JobState.QUEUED, JobState.RUNNING) or current.lease != job.lease:
            return False
        rule = matching_rule(current, reason)
        if rule is None:
            return False
        job_conf = self.ctx.job_conf
        try:
            destination = job_conf.resolve_destination(rule.get("destination")
                                                       or current.destination_id)
        except KeyError:
            log.warning("job %s: resubmit destination %r is no longer in %s", job.id,
                        rule.get("destination"), job_conf.path)
            return False
        why = reason or "failure"
        try:
            delay = delay_seconds(rule.get("delay"), current.attempt)
        except ValueError as exc:
            log.warning("job %s: %s; resubmitting at once", job.id, exc)
            delay = 0.0
        waits = f", not before {delay:g} s from now" if delay else ""
        row = self.store.resubmit(
            job.id, job.lease, destination_id=destination.id, runner=destination.runner,
            handler_tag=rule.get("handler") or current.handler_tag, rules=destination.resubmit,
            delay=delay, info=f"attempt {current.attempt} failed ({why}: {info}); "
                              f"resubmitted to {destination.id}{waits}")
        if row:
            log.info("job %s resubmitted: attempt %s -> destination %s (%s)", job.id,
                     row.attempt, destination.id, why)
        return row is not None
