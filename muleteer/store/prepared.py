"""The statements a handler runs for every job, built once per shape and reused.

Building a SQLAlchemy statement costs more than running it on SQLite: reading a job's row
took 0.44 ms of CPU built per call and 0.16 ms built once (the statement and its cache key
are made once; only the parameters change). A handler runs about a dozen per job, so the
hot ones are built here (and run by store/driver.py on the driver's cursor), each with its
parameters as bindparams:
  w_* : values in the WHERE clause (never a column's name: an UPDATE executed with a
        parameter named like a column would also SET that column);
  v_* : values SET or inserted, typed as their column (a datetime stays a datetime).
"""
from __future__ import annotations

import functools

from sqlalchemy import bindparam, case, insert, or_, select, update

from muleteer.job import TERMINAL, JobState
from muleteer.models import job, job_state_history

HISTORY_INSERT = insert(job_state_history)
JOB_INSERT = insert(job)
JOB_BY_ID = select(job).where(job.c.id == bindparam("w_id"))
HOLDS = select(job.c.id).where(job.c.id == bindparam("w_id"), job.c.lease == bindparam("w_lease"),
                               job.c.handler == bindparam("w_handler"))


def set_values(columns) -> dict:
    """{column: its v_ bindparam}, for .values()."""
    return {name: bindparam(f"v_{name}", type_=job.c[name].type) for name in columns}


def params(values: dict, **where) -> dict:
    """The execute() parameters of values set (v_*) and conditions (w_*); a condition given
    as None is one the statement does not have (a lease not checked)."""
    return {**{f"v_{k}": v for k, v in values.items()},
            **{f"w_{k}": v for k, v in where.items() if v is not None}}


@functools.lru_cache(maxsize=None)
def transition(state: JobState, from_states: tuple, with_lease: bool, columns: tuple):
    """UPDATE job SET state (and `columns`) WHERE id, state IN from_states [, lease]
    RETURNING the row. A job whose cancel was requested that ends becomes `deleted`."""
    new_state = (case((job.c.state == JobState.DELETING, JobState.DELETED), else_=state)
                 if state in TERMINAL else state)
    where = [job.c.id == bindparam("w_id"), job.c.state.in_(from_states)]
    if with_lease:
        where.append(job.c.lease == bindparam("w_lease"))
    return (update(job).where(*where).values(state=new_state, **set_values(columns))
            .returning(*job.c))


@functools.lru_cache(maxsize=None)
def update_job(with_lease: bool, columns: tuple):
    """UPDATE job SET `columns` WHERE id [, lease]."""
    where = [job.c.id == bindparam("w_id")]
    if with_lease:
        where.append(job.c.lease == bindparam("w_lease"))
    return update(job).where(*where).values(**set_values(columns))


# Take one new job sent to one of w_tags, ready (past its not_before), nobody's yet.
CLAIM_ONE = (update(job)
             .where(job.c.id == bindparam("w_id"),
                    job.c.handler_tag.in_(bindparam("w_tags", expanding=True)),
                    job.c.state == JobState.NEW, job.c.handler.is_(None),
                    or_(job.c.not_before.is_(None),
                        job.c.not_before <= bindparam("w_now", type_=job.c.not_before.type)))
             .values(state=JobState.QUEUED, lease=job.c.lease + 1,
                     **set_values(("handler", "queued_time", "update_time")))
             .returning(*job.c))
