"""Retried submissions (muleteer/store.py create_job with an idempotency key), on SQLite and on
PostgreSQL: the same key from the same user within 24 h gives the first job, even when the
retry races its original; another user's key is theirs; an old key starts a new job."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select, update

from muleteer.job import JobState
from muleteer.models import job, job_state_history

THREADS = 8


def submit(store, key, user_id=1, tool_id="noop"):
    """(job, created)"""
    return store.create_job(tool_id=tool_id, tool_version="1.0.0", params={},
                            command_line="true", handler_tag="job-handlers",
                            destination_id="local", runner="local", user_id=user_id,
                            idempotency_key=key)


def count(store, *where) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(job).where(*where)).scalar_one()


def test_same_key_same_user_gives_the_first_job(store):
    first, first_created = submit(store, "retry-1")
    again, again_created = submit(store, "retry-1", tool_id="cat_lines")
    assert first_created is True and again_created is False
    assert again.id == first.id and again.tool_id == "noop"
    assert again.idempotency_key == "retry-1" and again.state == JobState.NEW
    assert count(store) == 1
    assert len(store.history(first.id)) == 1  # the retry wrote nothing


def test_another_user_or_another_key_gets_a_job_of_its_own(store):
    mine, _ = submit(store, "shared", user_id=1)
    theirs, theirs_created = submit(store, "shared", user_id=2)
    other_key, other_created = submit(store, "other", user_id=1)
    no_key_results = [submit(store, None, user_id=1) for _ in range(2)]
    no_key = [j for j, _ in no_key_results]
    assert theirs_created and other_created and all(c for _, c in no_key_results)
    assert len({mine.id, theirs.id, other_key.id, *(j.id for j in no_key)}) == 5


def test_a_key_older_than_a_day_starts_a_new_job(store):
    first, _ = submit(store, "daily")
    with store.engine.begin() as conn:
        conn.execute(update(job).where(job.c.id == first.id)
                     .values(create_time=first.create_time - timedelta(hours=24, minutes=1)))
    later, later_created = submit(store, "daily")
    assert later_created and later.id != first.id
    assert submit(store, "daily")[0].id == later.id


def test_concurrent_submissions_of_one_key_make_one_job(store, monkeypatch):
    """THREADS submissions of the same key at once, each lookup slowed down so that any
    two that were not serialised would both find nothing and both insert."""
    lookup = store.idempotent_job

    def slow_lookup(*args, **kwargs):
        found = lookup(*args, **kwargs)
        time.sleep(0.1)
        return found

    monkeypatch.setattr(store, "idempotent_job", slow_lookup)
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def worker(user_id):
        try:
            barrier.wait(timeout=30)
            results.append((user_id, submit(store, "race", user_id=user_id)))
        except Exception as exc:  # reported below, with the thread's own error
            errors.append(exc)

    # Most threads race on user 1's key; one is user 2, whose key is theirs.
    threads = [threading.Thread(target=worker, args=(2 if i == 0 else 1,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(results) == THREADS
    ids_1 = {j.id for user, (j, _) in results if user == 1}
    assert len(ids_1) == 1, ids_1
    assert sum(created for user, (j, created) in results if user == 1) == 1
    assert count(store, job.c.idempotency_key == "race", job.c.user_id == 1) == 1
    assert count(store, job.c.idempotency_key == "race", job.c.user_id == 2) == 1
    with store.engine.connect() as conn:
        histories = conn.execute(select(func.count()).select_from(job_state_history)).scalar_one()
    assert histories == 2  # one `new` row per job written, none for the retries
