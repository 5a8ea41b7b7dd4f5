"""Claims: which handler takes which new job, adoption of a silent handler's jobs, and
sending a failed attempt back to `new` (resubmission).

Each job goes to exactly one handler: every claim is one conditional UPDATE that re-checks
`state = new AND handler IS NULL` and gives the job its next lease. Concurrency limits are
counted inside that same UPDATE.
"""
from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, insert, or_, select, text, update

from muleteer.job import Job, JobState
from muleteer.limits import Limits
from muleteer.models import (ANONYMOUS_EMAIL_DOMAIN, galaxy_user, handler as handler_table, job,
                             job_state_history)
from muleteer.store import prepared
from muleteer.store.database import iso, utcnow


def _ready(now):
    """A new job may be claimed: it is not a resubmitted attempt still waiting its delay."""
    return or_(job.c.not_before.is_(None), job.c.not_before <= now)


class Claims:
    def claim_new(self, handler_name: str, tags, limit: int = 200,
                  limits: Limits | None = None) -> list[Job]:
        """Take up to `limit` unclaimed new jobs sent to any of `tags` (and past their
        not_before, for a resubmitted attempt that waits for its delay).

        Each job goes to exactly one handler: the UPDATE re-checks `handler IS NULL`, and on
        PostgreSQL candidates are picked FOR UPDATE SKIP LOCKED so concurrent handlers pass
        each other by instead of waiting. Under concurrency limits, jobs are claimed one by
        one, each under its limits (see _claim_under_limits).
        """
        if limits is not None and limits.concurrency:
            return self._claim_under_limits(handler_name, tags, limit, limits)
        pending = (select(job.c.id).where(job.c.state == JobState.NEW, job.c.handler.is_(None),
                                          job.c.handler_tag.in_(list(tags)), _ready(utcnow()))
                   .order_by(job.c.id).limit(limit))
        if self.dialect == "postgresql":
            # Lock the candidates first, then update exactly those: inside one UPDATE, PostgreSQL
            # may rescan a LIMIT ... SKIP LOCKED subquery, skip the rows it just locked and
            # so claim more than `limit`.
            return self._claim(handler_name, None, pick=pending.with_for_update(skip_locked=True))
        return self._claim(handler_name, job.c.id.in_(pending.scalar_subquery()))

    def claim_job(self, job_id: int, handler_name: str, tags,
                  limits: Limits | None = None) -> Job | None:
        """Take job `job_id` if it is new, sent to one of `tags`, ready, and under the limits."""
        if limits is not None and limits.concurrency:
            claimed = self._claim_under_limits(handler_name, tags, 1, limits, job_id=job_id)
        else:
            now = utcnow()
            with self.driver.transaction() as cursor:
                rows = cursor.execute(prepared.CLAIM_ONE, prepared.params(
                    dict(handler=handler_name, queued_time=now, update_time=now),
                    id=job_id, tags=list(tags), now=now))
                claimed = self._record_claims(cursor, rows, handler_name, now)
        return claimed[0] if claimed else None

    def _claim_under_limits(self, handler_name, tags, limit, limits: Limits,
                            job_id=None) -> list[Job]:
        """Claim jobs one at a time, each the oldest whose user and destination are under
        their limits. The counts are in the claiming UPDATE, so handlers claiming at once
        cannot overrun a limit (SQLite runs one writer at a time; on PostgreSQL a
        transaction lock serialises these claims)."""
        busy = job.alias("busy")
        active = [JobState.QUEUED, JobState.RUNNING, JobState.DELETING]

        def in_use(*where):
            return (select(func.count()).select_from(busy)
                    .where(busy.c.state.in_(active), *where).scalar_subquery())

        anonymous = (select(galaxy_user.c.id)
                     .where(galaxy_user.c.id == job.c.user_id,
                            galaxy_user.c.email.like(f"%{ANONYMOUS_EMAIL_DOMAIN}")).exists())
        mine = busy.c.user_id == job.c.user_id
        conditions = []
        if limits.registered_user:
            conditions.append(or_(job.c.user_id.is_(None), anonymous,
                                  in_use(mine) < limits.registered_user))
        if limits.anonymous_user:
            conditions.append(or_(job.c.user_id.is_(None), ~anonymous,
                                  in_use(mine) < limits.anonymous_user))
        for group in limits.destination_user:
            names = sorted(group.destinations)
            conditions.append(or_(job.c.destination_id.not_in(names), job.c.user_id.is_(None),
                                  in_use(mine, busy.c.destination_id.in_(names)) < group.maximum))
        for group in limits.destination_total:
            names = sorted(group.destinations)
            conditions.append(or_(job.c.destination_id.not_in(names),
                                  in_use(busy.c.destination_id.in_(names)) < group.maximum))
        lock = (text("SELECT pg_advisory_xact_lock(hashtext('muleteer-limits'))")
                if self.dialect == "postgresql" else None)
        claimed = []
        while len(claimed) < limit:
            candidate = (select(job.c.id).where(job.c.state == JobState.NEW,
                                                job.c.handler.is_(None),
                                                job.c.handler_tag.in_(list(tags)),
                                                _ready(utcnow()), *conditions)
                         .order_by(job.c.id).limit(1))
            if job_id is not None:
                candidate = candidate.where(job.c.id == job_id)
            rows = self._claim(handler_name, job.c.id == candidate.scalar_subquery(), lock=lock)
            if not rows:
                break
            claimed += rows
        return claimed

    def _claim(self, handler_name, condition, lock=None, pick=None) -> list[Job]:
        now = utcnow()
        with self.engine.begin() as conn:
            if lock is not None:
                conn.execute(lock)
            if pick is not None:
                ids = conn.execute(pick).scalars().all()
                if not ids:
                    return []
                condition = job.c.id.in_(ids)
            stmt = (update(job).where(condition, job.c.state == JobState.NEW,
                                      job.c.handler.is_(None), _ready(now))
                    .values(state=JobState.QUEUED, handler=handler_name, queued_time=now,
                            update_time=now, lease=job.c.lease + 1)
                    .returning(*job.c))
            return self._record_claims(conn, conn.execute(stmt).mappings().all(), handler_name, now)

    @staticmethod
    def _record_claims(conn, rows, handler_name, now) -> list[Job]:
        """The jobs a claiming UPDATE ... RETURNING gave, each one's history recorded (on a
        SQLAlchemy connection or a driver cursor: both execute a list of rows)."""
        # Oldest first: RETURNING has no order on PostgreSQL.
        claimed = sorted((Job.from_row(r) for r in rows), key=lambda r: r.id)
        if claimed:
            conn.execute(prepared.HISTORY_INSERT, [
                dict(job_id=r.id, state=JobState.QUEUED, handler=handler_name, create_time=now)
                for r in claimed])
        return claimed

    def adopt_orphans(self, handler_name: str, tags, silent: dict) -> list[Job]:
        """Take over the unfinished jobs, sent to one of `tags`, of the handlers in `silent`
        (name -> the last_seen its observer saw unchanged for the whole timeout). Only while
        that heartbeat is still the one observed: a handler that spoke since keeps its jobs.
        One UPDATE per handler, each job's lease renewed: two live handlers never adopt
        the same job, and the silent one, should it wake, holds nothing."""
        adopted = []
        for victim, last_seen in silent.items():
            if victim == handler_name:
                continue
            still_silent = (select(handler_table.c.name)
                            .where(handler_table.c.name == victim,
                                   handler_table.c.last_seen == last_seen).exists())
            now = utcnow()
            stmt = (update(job).where(job.c.handler == victim, job.c.handler_tag.in_(list(tags)),
                                      job.c.state.in_([JobState.QUEUED, JobState.RUNNING,
                                                       JobState.DELETING]),
                                      still_silent)
                    .values(handler=handler_name, update_time=now, lease=job.c.lease + 1)
                    .returning(*job.c))
            with self.engine.begin() as conn:
                rows = sorted((Job.from_row(r) for r in conn.execute(stmt).mappings().all()),
                              key=lambda r: r.id)
                if rows:
                    conn.execute(insert(job_state_history), [
                        dict(job_id=r.id, state=r.state, handler=handler_name,
                             create_time=now,
                             info=f"adopted from {victim}, silent since {iso(last_seen)}")
                        for r in rows])
            adopted += rows
        return adopted

    def resubmit(self, job_id: int, lease: int, *, destination_id: str, runner: str,
                 handler_tag: str, rules: list, info: str, delay: float = 0.0) -> Job | None:
        """Send a failed attempt back to `new` at another destination, with that
        destination's resubmit rules stored on the job for the next failure; no handler
        claims it for `delay` seconds (kept in the row: a restart does not shorten it).
        Only by the holder of the job's lease; the lease moves on (nobody holds a `new` job)."""
        return self._retrying(self._resubmit, job_id, lease, destination_id, runner,
                              handler_tag, rules, info, delay)

    def _resubmit(self, job_id, lease, destination_id, runner, handler_tag, rules, info, delay):
        now = utcnow()
        not_before = now + timedelta(seconds=delay) if delay > 0 else None
        stmt = (update(job).where(job.c.id == job_id, job.c.lease == lease,
                                  job.c.state.in_([JobState.QUEUED, JobState.RUNNING]))
                .values(state=JobState.NEW, handler=None, handler_tag=handler_tag,
                        destination_id=destination_id, runner=runner, external_id=None,
                        exit_code=None, info=info, attempt=job.c.attempt + 1,
                        resubmit=json.dumps(rules), queued_time=None, start_time=None,
                        end_time=None, update_time=now, lease=job.c.lease + 1,
                        not_before=not_before, destination_params=None)
                .returning(*job.c))
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            conn.execute(insert(job_state_history).values(
                job_id=job_id, state=JobState.NEW, handler=None, info=info, create_time=now))
        return Job.from_row(row)
