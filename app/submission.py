"""Submitting and cancelling a job: the same steps from the API and from the browser form.

Commit first, message second: the job is in the store before any handler is told.
"""
from __future__ import annotations

import logging

from muleteer import formats
from muleteer.job import Job, JobState
from muleteer.system_users import NoSystemAccount, system_account
from muleteer.tools import params
from muleteer.tools.errors import ParamError
from muleteer.tools.model import ParamType

log = logging.getLogger(__name__)


class Refused(Exception):
    """The user may not run jobs here at all (real_system_username: no usable system
    account); the API answers 403 with this message."""


def submit(ctx, dispatcher, tool, values: dict, user_id: int,
           idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Write a job for `values` (the tree params.check_params made) of `tool`, then wake
    its handler. The handler builds the command when it prepares the job.

    With an `idempotency_key` that `user_id` already used within a day, nothing is written
    and the first job is returned instead. Returns the job and whether it is new. A data
    param naming a dataset that is not the user's, deleted, or of a format the param does not
    accept is a ParamError naming the field, as is a data_column past its dataset's columns."""
    check_system_account(ctx, user_id)
    inputs = input_datasets(ctx, tool, values, user_id)
    destination = ctx.job_conf.destination_for(tool.id)
    handler = dispatcher.handler_for(tool.id)
    job, created = ctx.store.create_job(
        tool_id=tool.id, tool_version=tool.version, params=values, command_line="",
        handler_tag=handler, destination_id=destination.id, runner=destination.runner,
        resubmit=destination.resubmit, user_id=user_id, idempotency_key=idempotency_key,
        inputs=inputs)
    if not created:
        log.info("job %s: a retried submission (same idempotency key) of user %s", job.id,
                 user_id)
        return job, False
    log.info("job %s new: tool=%s handler=%s destination=%s runner=%s user=%s", job.id, tool.id,
             handler, destination.id, destination.runner, user_id)
    dispatcher.notify(job.id, handler)  # after the commit, never before
    return job, True


def check_system_account(ctx, user_id: int) -> None:
    """With real_system_username set, a user whose jobs would have no system account to run
    as (none, or one below real_system_min_uid) is refused now, not failed later."""
    method = ctx.config.real_system_username
    if not method:
        return
    try:
        system_account(ctx.store.user_email(user_id) or "", method,
                       ctx.config.real_system_min_uid)
    except NoSystemAccount as exc:
        raise Refused(f"your jobs cannot run on this server: {exc}; ask its admins") from None


def input_datasets(ctx, tool, values: dict, user_id: int) -> list[tuple[str, int, int]]:
    """(param's flat path, dataset id, position) of every dataset the job reads, each
    checked: the user's (another user's is "no dataset N", as a missing one), not deleted,
    and of a format the param accepts (or a subclass of one); data_column values within
    their dataset's columns."""
    inputs, columns = [], {}
    for visit in params.walk(tool, values):
        if visit.param.type != ParamType.DATA or visit.value is None:
            continue
        ids = visit.value if isinstance(visit.value, list) else [visit.value]
        for position, dataset_id in enumerate(ids):
            where = f"params.{visit.path}"
            dataset = ctx.store.get_dataset(dataset_id)
            if dataset is None or dataset.user_id != user_id:
                raise ParamError(where, f"no dataset {dataset_id}")
            if dataset.deleted:
                raise ParamError(where, f"dataset {dataset_id} is deleted")
            if not formats.accepts(visit.param.formats or ("data",), dataset.format):
                raise ParamError(where, f"dataset {dataset_id} is {dataset.format}; this "
                                        f"parameter takes {', '.join(visit.param.formats)}")
            columns[dataset_id] = (getattr(dataset, "metadata", None) or {}).get("columns")
            inputs.append((visit.path, dataset_id, position))
    params.check_columns(tool, values, columns.get)
    return inputs


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
