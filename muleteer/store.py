"""The job store: the single source of truth for jobs, their history and the handlers.

Every state change is one conditional UPDATE (`... WHERE state IN (...)`) plus a
history row in the same transaction, so two processes can never both move a job,
and claiming a job is exactly-once by construction. Written for SQLite (the
embedded default) and PostgreSQL alike: nothing here is dialect-specific except
the connection set-up and the migration lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime, timezone

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import and_, case, create_engine, event, func, insert, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from muleteer import models
from muleteer.models import job, job_state_history, handler as handler_table

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
log = logging.getLogger(__name__)
# A handler's report of what a job did is retried while the database is locked or away,
# never turned into a job error; this is how long it keeps trying before it gives up
# (the job stays as it was in the store: a later sweep or recovery still finishes it).
WRITE_RETRY_SECONDS = 3600.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(value) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


class JobStore:
    def __init__(self, url: str, engine_options: dict | None = None):
        self.url = make_url(url)
        options = dict(engine_options or {})
        if self.url.get_backend_name() == "sqlite":
            # Several processes write at once: wait for the lock rather than fail, but less
            # than uWSGI's harakiri (60 s), so a web request gets its 503 answer; a handler's
            # writes are retried past it (see _retrying).
            options.setdefault("connect_args", {}).setdefault("timeout", 30)
            database = self.url.database
            if database and database != ":memory:":
                # The file holds password and API-key hashes: 0600 in a 0700 directory,
                # whatever the umask (SQLite gives its -wal/-shm files the database's mode).
                # An existing one of ours is tightened; a shared (sticky, e.g. /tmp) or
                # foreign directory is left alone, with a warning.
                database = os.path.abspath(database)
                directory = os.path.dirname(database)
                os.makedirs(directory, mode=0o700, exist_ok=True)
                info = os.stat(directory)
                if info.st_mode & 0o077 and info.st_uid == os.geteuid() and not info.st_mode & 0o1000:
                    os.chmod(directory, 0o700)
                    log.warning("%s was mode %04o: made it 0700 (it holds the database)",
                                directory, info.st_mode & 0o7777)
                elif info.st_mode & 0o022:
                    log.warning("%s (the database's directory) is writable by other accounts",
                                directory)
                fd = os.open(database, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    info = os.fstat(fd)
                    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
                        os.fchmod(fd, 0o600)
                        log.warning("%s was mode %04o: made it 0600", database,
                                    info.st_mode & 0o7777)
                finally:
                    os.close(fd)
        self.engine = create_engine(self.url, **options)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def after_fork(self) -> None:
        """A forked process must not reuse its parent's pooled connections."""
        self.engine.dispose(close=False)

    # -- schema -------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several processes start at once."""
        with self._migration_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7411)"))
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", MIGRATIONS)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def _migration_lock(self):
        database = self.url.database if self.dialect == "sqlite" else None
        if not database or database == ":memory:":
            yield
            return
        with open(os.path.abspath(database) + ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- web side -----------------------------------------------------------------
    # A retried submission (same user, same Idempotency-Key) within this time gets the first
    # job. PostgreSQL locks a key with pg_advisory_xact_lock(IDEMPOTENCY_LOCK_SPACE,
    # hashtext(user:key)): the two-key form never meets the migrations' one-key lock (7411).
    IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
    IDEMPOTENCY_LOCK_SPACE = 7412

    def create_job(self, *, tool_id, tool_version, params, command_line, handler_tag,
                   destination_id, runner, resubmit=(), user_id=None,
                   idempotency_key=None) -> dict:
        """INSERT the job in state `new` and COMMIT; only then may anyone be told of it.

        With an `idempotency_key` (the client's Idempotency-Key), a job of the same user with
        the same key written within IDEMPOTENCY_WINDOW_SECONDS is returned instead of a new
        one. The lookup and the insert are one transaction that concurrent submissions of
        the same key go through one at a time (SQLite: BEGIN IMMEDIATE takes the write lock first;
        PostgreSQL: an advisory lock on the user and key), so a retry racing its original
        still makes one job. The returned row's `created` says which happened."""
        from datetime import timedelta
        now = utcnow()
        row = dict(tool_id=tool_id, tool_version=tool_version, params=json.dumps(params),
                   command_line=command_line, state=models.NEW, handler_tag=handler_tag,
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
                    return {**earlier, "created": False}
            job_id = conn.execute(insert(job).values(**row)).inserted_primary_key[0]
            conn.execute(insert(job_state_history).values(
                job_id=job_id, state=models.NEW, handler=None, create_time=now))
        return {**row, "id": job_id, "created": True}

    def idempotent_job(self, user_id, idempotency_key: str, since: datetime,
                       conn=None) -> dict | None:
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
        return dict(found) if found else None

    def get_job(self, job_id: int, retry: bool = False) -> dict | None:
        """The job's row; `retry` (a handler reading to decide): retried while the database
        is away, so a busy database never decides a job's fate."""
        def read():
            with self.engine.connect() as conn:
                row = conn.execute(select(job).where(job.c.id == job_id)).mappings().first()
            return dict(row) if row else None
        return self._retrying(read) if retry else read()

    def list_jobs(self, *, state=None, tool_id=None, limit=50, offset=0, user_id=None):
        """Jobs newest first; user_id limits them to one owner (None: everyone's)."""
        conditions = []
        if user_id is not None:
            conditions.append(job.c.user_id == user_id)
        if state:
            conditions.append(job.c.state == state)
        if tool_id:
            conditions.append(job.c.tool_id == tool_id)
        where = and_(True, *conditions)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(job).where(where)).scalar_one()
            rows = conn.execute(select(job).where(where).order_by(job.c.id.desc())
                                .limit(limit).offset(offset)).mappings().all()
        return [dict(r) for r in rows], total

    def history(self, job_id: int) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(job_state_history).where(job_state_history.c.job_id == job_id)
                                .order_by(job_state_history.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def request_cancel(self, job_id: int) -> str | None:
        """Cancel: a job no handler took yet ends here; a taken one goes to `deleting`
        for its handler to stop. Returns the new state, or None if nothing changed."""
        if self.transition(job_id, models.DELETED, from_states=(models.NEW,),
                           info="cancelled before a handler took it"):
            return models.DELETED
        if self.transition(job_id, models.DELETING, from_states=(models.QUEUED, models.RUNNING),
                           info="cancel requested"):
            return models.DELETING
        return None

    # -- handler side -------------------------------------------------------------
    def claim_new(self, handler_name: str, tags, limit: int = 200,
                  destination_limits: dict | None = None, user_limits=None) -> list[dict]:
        """Take up to `limit` unclaimed new jobs sent to any of `tags`.

        Each job goes to exactly one handler: the UPDATE re-checks `handler IS NULL`, and on
        PostgreSQL candidates are picked FOR UPDATE SKIP LOCKED so concurrent handlers pass
        each other by instead of waiting. Jobs of destinations with a concurrency limit are
        claimed one by one, each under its limit (see _claim_limited).
        """
        limited = dict(destination_limits or {})
        if user_limits:
            return self._claim_under_user_limits(handler_name, tags, limit, limited, user_limits)
        pending = (select(job.c.id).where(job.c.state == models.NEW, job.c.handler.is_(None),
                                          job.c.handler_tag.in_(list(tags)))
                   .order_by(job.c.id).limit(limit))
        if limited:
            pending = pending.where(job.c.destination_id.not_in(list(limited)))
        if self.dialect == "postgresql":
            # Lock the candidates first, then update exactly those: inside one UPDATE, PostgreSQL
            # may rescan a LIMIT ... SKIP LOCKED subquery, skip the rows it just locked and
            # so claim more than `limit`.
            claimed = self._claim(handler_name, None, pick=pending.with_for_update(skip_locked=True))
        else:
            claimed = self._claim(handler_name, job.c.id.in_(pending.scalar_subquery()))
        for destination_id, maximum in limited.items():
            while len(claimed) < limit:
                row = self._claim_limited(handler_name, tags, destination_id, maximum)
                if row is None:
                    break
                claimed.append(row)
        return claimed

    def claim_job(self, job_id: int, handler_name: str, tags,
                  destination_limits: dict | None = None, user_limits=None) -> dict | None:
        limited = destination_limits or {}
        if user_limits:
            claimed = self._claim_under_user_limits(handler_name, tags, 1, limited, user_limits,
                                                    job_id=job_id)
            return claimed[0] if claimed else None
        if limited:
            current = self.get_job(job_id)
            if current and current["destination_id"] in limited:
                return self._claim_limited(handler_name, tags, current["destination_id"],
                                           limited[current["destination_id"]], job_id=job_id)
        claimed = self._claim(handler_name, and_(job.c.id == job_id,
                                                 job.c.handler_tag.in_(list(tags))))
        return claimed[0] if claimed else None

    def _claim_limited(self, handler_name, tags, destination_id, maximum, job_id=None):
        """Claim one job of a limited destination only while fewer than `maximum` of its
        jobs are queued or running: the count and the claim are one UPDATE, so handlers
        claiming at once cannot overrun the limit (SQLite runs one writer at a time; on
        PostgreSQL a transaction lock per destination serialises the claims)."""
        busy = job.alias("busy")
        in_use = (select(func.count()).select_from(busy)
                  .where(busy.c.destination_id == destination_id,
                         busy.c.state.in_([models.QUEUED, models.RUNNING, models.DELETING]))
                  .scalar_subquery())
        candidate = (select(job.c.id).where(job.c.state == models.NEW, job.c.handler.is_(None),
                                            job.c.handler_tag.in_(list(tags)),
                                            job.c.destination_id == destination_id)
                     .order_by(job.c.id).limit(1))
        if job_id is not None:
            candidate = candidate.where(job.c.id == job_id)
        condition = and_(job.c.id == candidate.scalar_subquery(), in_use < maximum)
        lock = (text("SELECT pg_advisory_xact_lock(hashtext(:key))").bindparams(
                key=f"muleteer-destination:{destination_id}")
                if self.dialect == "postgresql" else None)
        claimed = self._claim(handler_name, condition, lock=lock)
        return claimed[0] if claimed else None

    def _claim_under_user_limits(self, handler_name, tags, limit, destination_limits, user_limits,
                                 job_id=None) -> list[dict]:
        """Claim jobs one at a time, each the oldest whose user (and destination) is under its
        limits: registered_user_concurrent_jobs, destination_user_concurrent_jobs. The counts
        are in the claiming UPDATE; on PostgreSQL a transaction lock serialises these claims."""
        active = [models.QUEUED, models.RUNNING, models.DELETING]
        busy = job.alias("busy")

        def in_use(*where):
            return (select(func.count()).select_from(busy)
                    .where(busy.c.state.in_(active), *where).scalar_subquery())

        conditions = []
        if user_limits.get("registered"):
            conditions.append(or_(job.c.user_id.is_(None),
                                  in_use(busy.c.user_id == job.c.user_id) < user_limits["registered"]))
        for destination_id, maximum in (user_limits.get("per_destination") or {}).items():
            conditions.append(or_(job.c.destination_id != destination_id, job.c.user_id.is_(None),
                                  in_use(busy.c.user_id == job.c.user_id,
                                         busy.c.destination_id == destination_id) < maximum))
        for destination_id, maximum in destination_limits.items():
            conditions.append(or_(job.c.destination_id != destination_id,
                                  in_use(busy.c.destination_id == destination_id) < maximum))
        candidate = (select(job.c.id).where(job.c.state == models.NEW, job.c.handler.is_(None),
                                            job.c.handler_tag.in_(list(tags)), *conditions)
                     .order_by(job.c.id).limit(1))
        if job_id is not None:
            candidate = candidate.where(job.c.id == job_id)
        lock = (text("SELECT pg_advisory_xact_lock(hashtext('muleteer-user-limits'))")
                if self.dialect == "postgresql" else None)
        claimed = []
        while len(claimed) < limit:
            rows = self._claim(handler_name, job.c.id == candidate.scalar_subquery(), lock=lock)
            if not rows:
                break
            claimed += rows
        return claimed

    def _claim(self, handler_name, condition, lock=None, pick=None) -> list[dict]:
        now = utcnow()
        with self.engine.begin() as conn:
            if lock is not None:
                conn.execute(lock)
            if pick is not None:
                ids = conn.execute(pick).scalars().all()
                if not ids:
                    return []
                condition = job.c.id.in_(ids)
            stmt = (update(job).where(condition, job.c.state == models.NEW, job.c.handler.is_(None))
                    .values(state=models.QUEUED, handler=handler_name, queued_time=now,
                            update_time=now, lease=job.c.lease + 1)
                    .returning(*job.c))
            # Oldest first: RETURNING has no order on PostgreSQL.
            rows = sorted((dict(r) for r in conn.execute(stmt).mappings().all()),
                          key=lambda r: r["id"])
            if rows:
                conn.execute(insert(job_state_history), [
                    dict(job_id=r["id"], state=models.QUEUED, handler=handler_name, create_time=now)
                    for r in rows])
        return rows

    def handler_heartbeats(self) -> dict[str, tuple[datetime, tuple[str, ...]]]:
        """Every handler's last heartbeat and tags: name -> (last_seen, tags)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(handler_table.c.name, handler_table.c.last_seen,
                                       handler_table.c.tags)).all()
        return {name: (seen, tuple(t for t in tags.split(",") if t)) for name, seen, tags in rows}

    def adopt_orphans(self, handler_name: str, tags, silent: dict) -> list[dict]:
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
                                      job.c.state.in_([models.QUEUED, models.RUNNING,
                                                       models.DELETING]),
                                      still_silent)
                    .values(handler=handler_name, update_time=now, lease=job.c.lease + 1)
                    .returning(*job.c))
            with self.engine.begin() as conn:
                rows = sorted((dict(r) for r in conn.execute(stmt).mappings().all()),
                              key=lambda r: r["id"])
                if rows:
                    conn.execute(insert(job_state_history), [
                        dict(job_id=r["id"], state=r["state"], handler=handler_name,
                             create_time=now,
                             info=f"adopted from {victim}, silent since {iso(last_seen)}")
                        for r in rows])
            adopted += rows
        return adopted

    def resubmit(self, job_id: int, lease: int, *, destination_id: str, runner: str,
                 handler_tag: str, rules: list, info: str) -> dict | None:
        """Send a failed attempt back to `new` at another destination, with that
        destination's resubmit rules stored on the job for the next failure. Only by the
        holder of the job's lease; the lease moves on (nobody holds a `new` job)."""
        return self._retrying(self._resubmit, job_id, lease, destination_id, runner,
                              handler_tag, rules, info)

    def _resubmit(self, job_id, lease, destination_id, runner, handler_tag, rules, info):
        now = utcnow()
        stmt = (update(job).where(job.c.id == job_id, job.c.lease == lease,
                                  job.c.state.in_([models.QUEUED, models.RUNNING]))
                .values(state=models.NEW, handler=None, handler_tag=handler_tag,
                        destination_id=destination_id, runner=runner, external_id=None,
                        exit_code=None, info=info, attempt=job.c.attempt + 1,
                        resubmit=json.dumps(rules), queued_time=None, start_time=None,
                        end_time=None, update_time=now, lease=job.c.lease + 1)
                .returning(*job.c))
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            conn.execute(insert(job_state_history).values(
                job_id=job_id, state=models.NEW, handler=None, info=info, create_time=now))
        return dict(row)

    def owned_jobs(self, handler_name: str, states=(models.QUEUED, models.RUNNING, models.DELETING)):
        with self.engine.connect() as conn:
            rows = conn.execute(select(job).where(job.c.handler == handler_name,
                                                  job.c.state.in_(states))
                                .order_by(job.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def transition(self, job_id: int, state: str, *, from_states, handler: str | None = None,
                   info: str | None = None, lease: int | None = None, **values) -> dict | None:
        """Move a job to `state` if it is in one of `from_states`; record history.

        A job whose cancel was requested (`deleting`) that ends becomes `deleted` (the
        user's cancel wins over the job's own end) when the caller allows `deleting` in
        from_states, as runners do. With `lease` (a handler's report), only while the job
        still carries that lease, and retried while the database is locked: a busy
        database never turns a job's real end into an error. Returns the row or None.
        """
        if lease is None:
            return self._transition(job_id, state, from_states, handler, info, None, values)
        return self._retrying(self._transition, job_id, state, from_states, handler, info,
                              lease, values)

    def _transition(self, job_id, state, from_states, handler, info, lease, values):
        now = utcnow()
        from_states = tuple(from_states)
        new_state = state
        values = dict(values, update_time=now)
        if state == models.RUNNING:
            values.setdefault("start_time", now)
        if state in models.TERMINAL:
            values.setdefault("end_time", now)
        if info is not None:
            values["info"] = info
        if state in models.TERMINAL:
            new_state = case((job.c.state == models.DELETING, models.DELETED), else_=state)
        where = [job.c.id == job_id, job.c.state.in_(from_states)]
        if lease is not None:
            where.append(job.c.lease == lease)
        stmt = update(job).where(*where).values(state=new_state, **values).returning(*job.c)
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            conn.execute(insert(job_state_history).values(
                job_id=job_id, state=row["state"], handler=handler or row["handler"],
                info=info, create_time=now))
        return dict(row)

    def update_job(self, job_id: int, lease: int | None = None, **values) -> bool:
        """Bookkeeping that is not a state change (working directory, external id); with
        `lease`, only while the job carries it. True if the row was changed."""
        def write():
            where = [job.c.id == job_id] + ([job.c.lease == lease] if lease is not None else [])
            with self.engine.begin() as conn:
                return conn.execute(update(job).where(*where)
                                    .values(update_time=utcnow(), **values)).rowcount > 0
        return write() if lease is None else self._retrying(write)

    def holds(self, job_id: int, lease: int, handler_name: str) -> bool:
        """Whether `handler_name` still holds the job under `lease`: asked before a handler
        touches a job's files or starts it."""
        def read():
            with self.engine.connect() as conn:
                return conn.execute(select(job.c.id).where(
                    job.c.id == job_id, job.c.lease == lease,
                    job.c.handler == handler_name)).first() is not None
        return self._retrying(read)

    def held(self, handler_name: str, jobs: dict[int, int]) -> set[int]:
        """Of `jobs` (id -> lease), the ids `handler_name` still holds."""
        if not jobs:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(job.c.id, job.c.lease).where(
                job.c.id.in_(list(jobs)), job.c.handler == handler_name)).all()
        return {job_id for job_id, lease in rows if jobs.get(job_id) == lease}

    def _retrying(self, fn, *args):
        """Run a handler's write, again and again while the database is locked or away."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay, warned = 0.05, 0.0
        while True:
            try:
                return fn(*args)
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise
                if time.monotonic() - warned > 30:
                    warned = time.monotonic()
                    log.warning("database busy or unreachable, retrying a job's state write "
                                "(%s): %s", getattr(fn, "__name__", fn), str(exc.orig)[:200])
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def heartbeat(self, name: str, tags, strategy: str, messages_failed: int = 0,
                  sweep_seconds: float | None = None, starting: bool = False) -> None:
        """Record that handler `name` is alive; `starting` marks a (re)start of it."""
        now = utcnow()
        values = dict(tags=",".join(tags), strategy=strategy, host=socket.gethostname(),
                      pid=os.getpid(), last_seen=now, messages_failed=messages_failed,
                      sweep_seconds=sweep_seconds)
        if starting:
            values["started"] = now
        with self.engine.begin() as conn:
            updated = conn.execute(update(handler_table).where(handler_table.c.name == name)
                                   .values(**values)).rowcount
            if not updated:
                conn.execute(insert(handler_table).values(**{"started": now, **values, "name": name}))

    def handlers(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(handler_table).order_by(handler_table.c.name)).mappings()]
            counts = conn.execute(select(job.c.handler, job.c.state, func.count())
                                  .where(job.c.handler.is_not(None))
                                  .group_by(job.c.handler, job.c.state)).all()
            waiting = conn.execute(select(job.c.handler_tag, func.count())
                                   .where(job.c.state == models.NEW, job.c.handler.is_(None))
                                   .group_by(job.c.handler_tag)).all()
        by_handler = {}
        for name, state, count in counts:
            by_handler.setdefault(name, {})[state] = count
        unclaimed = dict(waiting)
        for row in rows:
            row["jobs"] = by_handler.get(row["name"], {})
            targets = {row["name"], *row["tags"].split(",")} - {""}
            row["unclaimed"] = sum(unclaimed.get(t, 0) for t in targets)
        return rows


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets readers run beside the one writer; NORMAL sync is safe with WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def job_to_dict(row: dict, *, full: bool = False) -> dict:
    """The JSON shape of a job in the API."""
    d = {
        "id": row["id"], "tool_id": row["tool_id"], "tool_version": row["tool_version"],
        "state": row["state"], "handler": row["handler"] or row["handler_tag"],
        "handler_tag": row["handler_tag"], "destination": row["destination_id"],
        "runner": row["runner"], "external_id": row["external_id"], "exit_code": row["exit_code"],
        "user_id": row.get("user_id"), "attempt": row.get("attempt", 1),
        "info": row["info"], "create_time": iso(row["create_time"]),
        "queued_time": iso(row["queued_time"]), "start_time": iso(row["start_time"]),
        "end_time": iso(row["end_time"]), "update_time": iso(row["update_time"]),
    }
    if full:
        d["params"] = json.loads(row["params"])
        d["command_line"] = row["command_line"]
    return d
