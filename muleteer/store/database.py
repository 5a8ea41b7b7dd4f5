"""The database under the store: engine, schema migrations, and retrying a handler's writes.

Written for SQLite (the embedded default) and PostgreSQL alike: nothing is
dialect-specific except the connection set-up and the migration lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import re
import time
from datetime import datetime, timezone

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from muleteer.store.driver import DriverStatements

MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
log = logging.getLogger(__name__)
# A handler's report of what a job did is retried while the database is locked or away,
# never turned into a job error; this is how long it keeps trying before it gives up
# (the job stays as it was in the store: a later sweep or recovery still finishes it).
WRITE_RETRY_SECONDS = 3600.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(value) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


class Database:
    def __init__(self, url: str, engine_options: dict | None = None):
        """Open (not migrate) the database at `url`; a SQLite file is kept private."""
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
        self.driver = DriverStatements(self.engine)  # the per-job statements' fast path

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def after_fork(self) -> None:
        """A forked process must not reuse its parent's pooled connections."""
        self.engine.dispose(close=False)

    
    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several processes start at once."""
        if self._at_head():
            return  # as every process finds it but the first: alembic (~12 MB) not loaded
        from alembic import command
        from alembic.config import Config as AlembicConfig
        with self._migration_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7411)"))
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", MIGRATIONS)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _at_head(self) -> bool:
        """Whether the database's alembic_version is the newest migration's (False when in
        doubt: then alembic itself decides)."""
        head = head_revision()
        if head is None:
            return False
        try:
            with self.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except Exception:  # no such table yet: a new database
            return False
        return current == [head]

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


_REVISION = re.compile(r"""^(down_)?revision\s*=\s*["']?([A-Za-z0-9_]+)["']?\s*$""", re.M)


@functools.lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision of migrations/versions (the one no other revises), read from the
    files' `revision =` lines; None unless there is exactly one."""
    revisions, revised = set(), set()
    folder = os.path.join(MIGRATIONS, "versions")
    for name in os.listdir(folder):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name)) as fh:
            for down, value in _REVISION.findall(fh.read()):
                (revised if down else revisions).add(value)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets readers run beside the one writer; NORMAL sync is safe with WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
