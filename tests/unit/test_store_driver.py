"""muleteer/store/driver.py: the per-job statements run on the driver's cursor, on SQLite
and PostgreSQL. What the store's callers see must not change: rows typed as SQLAlchemy
types them, errors raised as SQLAlchemy's, a dead connection dropped."""
import os
import sqlite3
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from muleteer.job import JobState
from muleteer.job_metrics.values import JobMetric
from muleteer.models import job
from muleteer.store import JobStore, prepared
from tests.support.postgres import fresh_database


def test_a_job_read_on_the_driver_is_the_row_sqlalchemy_reads(store, make_job):
    made = make_job("a", params={"text": "é ü"})
    claimed = store.claim_job(made.id, "h1", ["a"])
    store.update_job(made.id, lease=claimed.lease, working_directory="/w", external_id="42")
    store.transition(made.id, JobState.RUNNING, handler="h1", lease=claimed.lease)
    store.transition(made.id, JobState.OK, handler="h1", lease=claimed.lease, exit_code=0,
                     metrics=[JobMetric("core", "runtime_seconds", 1.5),
                              JobMetric("env", "HOME", "/root")])
    with store.engine.connect() as conn:
        expected = dict(conn.execute(select(job).where(job.c.id == made.id)).mappings().one())
    got = store.driver.read(prepared.JOB_BY_ID, {"w_id": made.id})
    assert got == [expected]
    assert {type(got[0][c]) for c in ("create_time", "queued_time", "start_time", "end_time")} \
        == {type(expected["create_time"])}
    assert store.get_job(made.id).end_time == expected["end_time"]
    assert [h["state"] for h in store.history(made.id)] == ["new", "queued", "running", "ok"]
    assert [(m.name, m.value) for m in store.job_metrics(made.id)] == [
        ("runtime_seconds", 1.5), ("HOME", "/root")]


def test_an_in_list_of_each_length_is_bound_whole(store, make_job):
    for tags in (["x"], ["y", "x"], ["z", "y", "x"], ["w", "z", "y", "x"]):
        made = make_job("x")
        assert store.claim_job(made.id, "h1", tags).handler == "h1"
    other = make_job("elsewhere")
    assert store.claim_job(other.id, "h1", ["a", "b", "c"]) is None


def test_the_lease_and_the_state_are_checked(store, make_job):
    made = make_job("a")
    claimed = store.claim_job(made.id, "h1", ["a"])
    assert not store.update_job(made.id, lease=claimed.lease + 1, working_directory="/x")
    assert store.update_job(made.id, lease=claimed.lease, working_directory="/x")
    assert store.holds(made.id, claimed.lease, "h1")
    assert not store.holds(made.id, claimed.lease, "h2")
    assert store.transition(made.id, JobState.OK, lease=claimed.lease + 1) is None
    assert store.request_cancel(made.id) == JobState.DELETING
    # The user's cancel wins over the job's own end (the CASE compiled into the statement).
    assert store.transition(made.id, JobState.OK, lease=claimed.lease).state == JobState.DELETED


def test_a_locked_sqlite_database_is_sqlalchemys_error_and_a_handlers_write_waits(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(f"sqlite:///{path}", {"connect_args": {"timeout": 0.2}})
    store.migrate()
    try:
        made = store.create_job(tool_id="noop", tool_version="1", params={}, command_line="true",
                                handler_tag="a", destination_id="local", runner="local")[0]
        claimed = store.claim_job(made.id, "h1", ["a"])
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(OperationalError, match="locked"):
                store.update_job(made.id, working_directory="/x")  # a web request's: no retry
            threading.Timer(0.6, locker.execute, ("COMMIT",)).start()
            # A handler's write (with its lease) is retried until the lock is gone.
            assert store.transition(made.id, JobState.RUNNING, handler="h1",
                                    lease=claimed.lease).state == JobState.RUNNING
        finally:
            locker.close()
        assert store.get_job(made.id).working_directory is None  # the refused write left nothing
    finally:
        store.engine.dispose()


def test_a_dead_postgresql_connection_is_dropped_and_the_next_statement_runs():
    database_url = fresh_database(f"driver_{os.getpid()}")
    store = JobStore(database_url, {"pool_size": 1, "max_overflow": 0})
    store.migrate()
    try:
        made = store.create_job(tool_id="noop", tool_version="1", params={}, command_line="true",
                                handler_tag="a", destination_id="local", runner="local")[0]
        assert store.driver.read(prepared.JOB_BY_ID, {"w_id": made.id})  # pooled now
        with store.engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        killer = JobStore(database_url)
        try:
            with killer.engine.connect() as conn:
                assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        finally:
            killer.engine.dispose()
        with pytest.raises(OperationalError) as raised:
            store.driver.read(prepared.JOB_BY_ID, {"w_id": made.id})
        assert raised.value.connection_invalidated
        assert store.get_job(made.id).id == made.id  # on a new connection
        claimed = store.claim_job(made.id, "h1", ["a"])
        assert claimed.state == JobState.QUEUED
    finally:
        store.engine.dispose()


def test_an_insert_that_would_need_a_python_side_default_is_refused(store):
    from sqlalchemy import insert
    with pytest.raises(ValueError, match="attempt"):
        with store.driver.transaction() as cursor:
            cursor.execute(insert(job), {"tool_id": "t"})


def test_statements_built_per_call_do_not_grow_the_cache_without_end(store, make_job):
    made = make_job("a")
    for _ in range(store.driver.CACHE_SIZE + 10):
        assert store.driver.read(select(job.c.id).where(job.c.id == made.id), {}) == [
            {"id": made.id}]
    assert len(store.driver._compiled) <= store.driver.CACHE_SIZE
