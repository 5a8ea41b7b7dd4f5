"""Jobs: write one, read them, cancel one, and every state change a handler records.

Every state change is one conditional UPDATE (`... WHERE state IN (...)`, the states
TRANSITIONS allows, and the caller's lease) plus a history row in the same transaction,
so two processes can never both move a job.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, func, insert, literal, select, text

from muleteer.job import TERMINAL, Job, JobState, sources
from muleteer.models import galaxy_user, job, job_dataset, job_state_history
from muleteer.store import prepared
from muleteer.store.database import utcnow


class JobPage(NamedTuple):
    """One page of the job list. `total` counts the matching jobs up to
    JobRecords.LIST_COUNT_CAP; `total_exact` is False when there are more than that.
    (A tuple whose first two are the jobs and the total, as list_jobs returned before.)"""
    jobs: list[Job]
    total: int
    more: bool  # whether a page follows this one
    total_exact: bool


class JobRecords:
    # A retried submission (same user, same Idempotency-Key) within this time gets the first
    # job. PostgreSQL locks a key with pg_advisory_xact_lock(IDEMPOTENCY_LOCK_SPACE,
    # hashtext(user:key)): the two-key form never meets the migrations' one-key lock (7411).
    IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
    IDEMPOTENCY_LOCK_SPACE = 7412

    def create_job(self, *, tool_id, tool_version, params, command_line, handler_tag,
                   destination_id, runner, resubmit=(), user_id=None,
                   idempotency_key=None, inputs=()) -> tuple[Job, bool]:
        """INSERT the job in state `new` and COMMIT; only then may anyone be told of it.

        With an `idempotency_key` (the client's Idempotency-Key), a job of the same user with
        the same key written within IDEMPOTENCY_WINDOW_SECONDS is returned instead of a new
        one. The lookup and the insert are one transaction that concurrent submissions of
        the same key go through one at a time (SQLite: BEGIN IMMEDIATE takes the write lock first;
        PostgreSQL: an advisory lock on the user and key), so a retry racing its original
        still makes one job. `inputs` (param name, dataset id, position) are recorded with
        it, in the same transaction. Returns the job and whether it was created now."""
        now = utcnow()
        row = dict(tool_id=tool_id, tool_version=tool_version, params=json.dumps(params),
                   command_line=command_line, state=JobState.NEW, handler_tag=handler_tag,
                   destination_id=destination_id, runner=runner, create_time=now,
                   update_time=now, attempt=1, resubmit=json.dumps(list(resubmit)),
                   user_id=user_id, idempotency_key=idempotency_key)
        with self.engine.begin() as conn:
            if idempotency_key is not None:
                if self.dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                                 {"space": self.IDEMPOTENCY_LOCK_SPACE,
                                  "key": f"{user_id}:{idempotency_key}"})
                since = now - timedelta(seconds=self.IDEMPOTENCY_WINDOW_SECONDS)
                earlier = self.idempotent_job(user_id, idempotency_key, since, conn=conn)
                if earlier is not None:
                    return earlier, False
            job_id = conn.execute(prepared.JOB_INSERT, row).inserted_primary_key[0]
            conn.execute(prepared.HISTORY_INSERT, dict(
                job_id=job_id, state=JobState.NEW, handler=None, create_time=now))
            if inputs:
                conn.execute(insert(job_dataset), [
                    dict(job_id=job_id, dataset_id=dataset_id, role="input", name=name,
                         position=position) for name, dataset_id, position in inputs])
        return Job.from_row({**row, "id": job_id}), True

    def idempotent_job(self, user_id, idempotency_key: str, since: datetime,
                       conn=None) -> Job | None:
        """The first job `user_id` submitted with `idempotency_key` since `since`, if any."""
        owner = job.c.user_id.is_(None) if user_id is None else job.c.user_id == user_id
        query = (select(job).where(owner, job.c.idempotency_key == idempotency_key,
                                   job.c.create_time >= since)
                 .order_by(job.c.id).limit(1))
        if conn is not None:
            found = conn.execute(query).mappings().first()
        else:
            with self.engine.connect() as own:
                found = own.execute(query).mappings().first()
        return Job.from_row(found) if found else None

    def user_email(self, user_id: int | None) -> str | None:
        """The email of a job's owner (what $__user_email__ and real_system_username use)."""
        if user_id is None:
            return None
        with self.engine.connect() as conn:
            return conn.execute(select(galaxy_user.c.email)
                                .where(galaxy_user.c.id == user_id)).scalar()

    def get_job(self, job_id: int, retry: bool = False) -> Job | None:
        """The job's row; `retry` (a handler reading to decide): retried while the database
        is away, so a busy database never decides a job's fate."""
        def read():
            rows = self.driver.read(prepared.JOB_BY_ID, {"w_id": job_id})
            return Job.from_row(rows[0]) if rows else None
        return self._retrying(read) if retry else read()

    # The list's `total` is counted up to this many jobs: counting an owner's 300,000 jobs on
    # every page would cost more than the page (Galaxy's /api/jobs gives no total at all).
    LIST_COUNT_CAP = 10_000

    def list_jobs(self, *, state=None, tool_id=None, limit=50, offset=0, user_id=None,
                  before: int | None = None) -> JobPage:
        """Jobs newest first (by id); user_id limits them to one owner (None: everyone's).

        `before` (a job id, the keyset cursor) starts the page after that job, so every page
        costs the same: migration 0013's indexes give the rows in id order for each filter.
        `offset` still skips rows, through the index alone (ids only), then reads the page."""
        conditions = []
        if user_id is not None:
            conditions.append(job.c.user_id == user_id)
        if state:
            conditions.append(job.c.state == state)
        if tool_id:
            conditions.append(job.c.tool_id == tool_id)
        where = and_(True, *conditions)
        page = where if before is None else and_(where, job.c.id < before)
        # One row more than asked for tells whether a next page exists without counting.
        ids = (select(job.c.id).where(page).order_by(job.c.id.desc())
               .limit(limit + 1).offset(offset))
        with self.engine.connect() as conn:
            found = conn.execute(ids).scalars().all()
            rows = conn.execute(select(job).where(job.c.id.in_(found[:limit]))
                                .order_by(job.c.id.desc())).mappings().all() if found else []
            capped = select(literal(1)).select_from(job).where(where).limit(self.LIST_COUNT_CAP + 1)
            total = conn.execute(select(func.count()).select_from(capped.subquery())).scalar_one()
        return JobPage(jobs=[Job.from_row(r) for r in rows], total=min(total, self.LIST_COUNT_CAP),
                       more=len(found) > limit,
                       total_exact=total <= self.LIST_COUNT_CAP)

    def history(self, job_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(job_state_history).where(job_state_history.c.job_id == job_id)
                                .order_by(job_state_history.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def request_cancel(self, job_id: int) -> JobState | None:
        """Cancel: a job no handler took yet ends here; a taken one goes to `deleting`
        for its handler to stop. Returns the new state, or None if nothing changed."""
        if self.transition(job_id, JobState.DELETED, from_states=(JobState.NEW,),
                           info="cancelled before a handler took it"):
            return JobState.DELETED
        if self.transition(job_id, JobState.DELETING, info="cancel requested"):
            return JobState.DELETING
        return None

    def owned_jobs(self, handler_name: str,
                   states=(JobState.QUEUED, JobState.RUNNING, JobState.DELETING)) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(job).where(job.c.handler == handler_name,
                                                  job.c.state.in_(states))
                                .order_by(job.c.id)).mappings().all()
        return [Job.from_row(r) for r in rows]

    def transition(self, job_id: int, state: JobState, *, from_states=None,
                   handler: str | None = None, info: str | None = None,
                   lease: int | None = None, metrics=(), **values) -> Job | None:
        """Move a job to `state` from any state TRANSITIONS allows (or only from
        `from_states`, a part of those); record history. Returns the job or None.

        A job whose cancel was requested (`deleting`) that ends becomes `deleted`: the
        user's cancel wins over the job's own end. With `lease` (a handler's report),
        only while the job still carries that lease, and retried while the database is
        locked: a busy database never turns a job's real end into an error. `metrics` (a
        job's end) replace the job's metrics in the same transaction.
        """
        allowed = sources(state) | ({JobState.DELETING} if state in TERMINAL else set())
        from_states = allowed if from_states is None else frozenset(from_states)
        if not from_states <= allowed:
            raise ValueError(f"no move from {sorted(from_states - allowed)} to {state} "
                             f"(see muleteer.job.TRANSITIONS)")
        if lease is None:
            return self._transition(job_id, state, from_states, handler, info, None, values,
                                    metrics)
        return self._retrying(self._transition, job_id, state, from_states, handler, info,
                              lease, values, metrics)

    def _transition(self, job_id, state, from_states, handler, info, lease, values, metrics=()):
        now = utcnow()
        values = dict(values, update_time=now)
        if state == JobState.RUNNING:
            values.setdefault("start_time", now)
        if state in TERMINAL:
            values.setdefault("end_time", now)
        if info is not None:
            values["info"] = info
        stmt = prepared.transition(state, tuple(sorted(from_states)), lease is not None,
                                   tuple(sorted(values)))
        with self.driver.transaction() as cursor:
            rows = cursor.execute(stmt, prepared.params(values, id=job_id, lease=lease))
            if not rows:
                return None
            row = rows[0]
            cursor.execute(prepared.HISTORY_INSERT, dict(
                job_id=job_id, state=row["state"], handler=handler or row["handler"],
                info=info, create_time=now))
            if metrics:
                self._write_metrics(cursor, job_id, metrics)
        return Job.from_row(row)

    def update_job(self, job_id: int, lease: int | None = None, **values) -> bool:
        """Bookkeeping that is not a state change (working directory, external id); with
        `lease`, only while the job carries it. True if the row was changed."""
        def write():
            changes = dict(values, update_time=utcnow())
            stmt = prepared.update_job(lease is not None, tuple(sorted(changes)))
            with self.driver.transaction() as cursor:
                cursor.execute(stmt, prepared.params(changes, id=job_id, lease=lease))
                return cursor.rowcount > 0
        return write() if lease is None else self._retrying(write)

    def holds(self, job_id: int, lease: int, handler_name: str) -> bool:
        """Whether `handler_name` still holds the job under `lease`: asked before a handler
        touches a job's files or starts it."""
        def read():
            return bool(self.driver.read(prepared.HOLDS, {"w_id": job_id, "w_lease": lease,
                                                          "w_handler": handler_name}))
        return self._retrying(read)

    def held(self, handler_name: str, jobs: dict[int, int]) -> set[int]:
        """Of `jobs` (id -> lease), the ids `handler_name` still holds."""
        if not jobs:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(job.c.id, job.c.lease).where(
                job.c.id.in_(list(jobs)), job.c.handler == handler_name)).all()
        return {job_id for job_id, lease in rows if jobs.get(job_id) == lease}
