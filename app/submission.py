"""Submitting and cancelling a job: the same steps from the API and from the browser form.

Commit first, message second: the job is in the store before any handler is told.
"""
from __future__ import annotations

import logging

from muleteer.job import Job, JobState

log = logging.getLogger(__name__)


def submit(ctx, dispatcher, tool, values: dict, user_id: int,
           idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Write a job for validated `values` of `tool`, then wake its handler.

    With an `idempotency_key` that `user_id` already used within a day, nothing is written
    and the first job is returned instead. Returns the job and whether it is new."""
    destination = ctx.job_conf.destination_for(tool.id)
    handler = dispatcher.handler_for(tool.id)
    job, created = ctx.store.create_job(tool_id=tool.id, tool_version=tool.version, params=values,
                               command_line=tool.command_line(values), handler_tag=handler,
                               destination_id=destination.id, runner=destination.runner,
                               resubmit=destination.resubmit, user_id=user_id,
                               idempotency_key=idempotency_key)
    if not created:
        log.info("job %s: a retried submission (same idempotency key) of user %s", job.id,
                 user_id)
        return job, False
    log.info("job %s new: tool=%s handler=%s destination=%s runner=%s user=%s", job.id, tool.id,
             handler, destination.id, destination.runner, user_id)
    dispatcher.notify(job.id, handler)  # after the commit, never before
    return job, True


def cancel(ctx, dispatcher, job: Job) -> JobState | None:
    """Cancel a job; returns its new state, or None if it had already ended (`ok`, `error`
    or `deleted`: the API's 409). A job already `deleting` (a cancel under way) answers
    `deleting` again: asking twice is not an error until the job has ended."""
    state = ctx.store.request_cancel(job.id)
    if state == JobState.DELETING:
        dispatcher.notify(job.id, job.handler or job.handler_tag)
    elif state is None:
        current = ctx.store.get_job(job.id)
        return current.state if current.state == JobState.DELETING else None
    return state
