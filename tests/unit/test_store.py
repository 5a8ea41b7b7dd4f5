"""muleteer/store.py: the job store on a temporary SQLite file."""
import multiprocessing
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import inspect, text

from muleteer.job import JobState
from muleteer.limits import DestinationLimit, Limits
from app.job_json import job_json
from muleteer.store import JobStore

N_JOBS = 300


def states(store, job_id):
    return [h["state"] for h in store.history(job_id)]


def test_create_job_writes_new_and_one_history_row(store):
    job, created = store.create_job(tool_id="cat_lines", tool_version="1.0.0",
                           params={"text": "hi", "times": 2}, command_line="echo hi",
                           handler_tag="main.job-handlers.1", destination_id="local",
                           runner="local")
    row = store.get_job(job.id)
    assert row.state == JobState.NEW
    assert row.handler is None
    assert row.handler_tag == "main.job-handlers.1"
    assert created and row.params == {"text": "hi", "times": 2}
    assert row.create_time == row.update_time and row.end_time is None
    history = store.history(job.id)
    assert len(history) == 1
    assert (history[0]["state"], history[0]["handler"]) == (JobState.NEW, None)
    d = job_json(row, full=True)
    assert d["handler"] == "main.job-handlers.1" and d["params"]["times"] == 2
    assert d["create_time"].endswith("Z")


def test_get_job_of_unknown_id(store):
    assert store.get_job(12345) is None


def test_claim_job_only_for_its_tags(store, make_job):
    job = make_job("gpu")
    assert store.claim_job(job.id, "h1", ["cpu", "h1"]) is None
    assert store.get_job(job.id).state == JobState.NEW
    claimed = store.claim_job(job.id, "h2", ["h2", "gpu"])
    assert claimed.state == JobState.QUEUED and claimed.handler == "h2"
    assert claimed.queued_time is not None
    assert store.claim_job(job.id, "h3", ["gpu"]) is None  # taken already
    assert states(store, job.id) == [JobState.NEW, JobState.QUEUED]
    assert store.history(job.id)[-1]["handler"] == "h2"


def test_claim_new_only_takes_jobs_for_its_tags(store, make_job):
    a, b, c, a2 = make_job("a"), make_job("b"), make_job("c"), make_job("a")
    claimed = store.claim_new("h1", ["a", "b"])
    assert [j.id for j in claimed] == [a.id, b.id, a2.id]
    assert all(j.state == JobState.QUEUED and j.handler == "h1" for j in claimed)
    assert store.get_job(c.id).state == JobState.NEW
    assert store.claim_new("h1", ["a", "b"]) == []
    assert store.claim_new("h2", []) == []
    assert [j.id for j in store.claim_new("h2", ["c"])] == [c.id]


def test_claim_new_respects_limit_and_skips_other_states(store, make_job):
    ids = [make_job("t").id for _ in range(5)]
    store.request_cancel(ids[0])  # deleted before anyone took it
    assert [j.id for j in store.claim_new("h", ["t"], limit=2)] == ids[1:3]
    assert [j.id for j in store.claim_new("h", ["t"], limit=10)] == ids[3:]


def _claim_all(store, name, tags, start, out):
    start.wait(10)
    mine = []
    while True:
        rows = store.claim_new(name, tags, limit=3)
        if not rows:
            break
        mine.extend(r.id for r in rows)
    out.put((name, mine))


def _assert_claimed_exactly_once(store, ids, results):
    claimed = [job_id for _, mine in results for job_id in mine]
    assert len(claimed) == len(ids)
    assert sorted(claimed) == sorted(ids)
    owner = {job_id: name for name, mine in results for job_id in mine}
    for job_id in ids:
        row = store.get_job(job_id)
        assert (row.state, row.handler) == (JobState.QUEUED, owner[job_id])
        assert states(store, job_id) == [JobState.NEW, JobState.QUEUED]


def test_claim_new_exactly_once_across_threads(store, make_job):
    ids = [make_job("farm").id for _ in range(N_JOBS)]
    start, out = threading.Event(), queue.Queue()
    threads = [threading.Thread(target=_claim_all, args=(store, f"h{i}", ["farm"], start, out))
               for i in range(8)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    results = [out.get_nowait() for _ in threads]
    _assert_claimed_exactly_once(store, ids, results)


def _claim_in_child(store, name, start, out):
    store.after_fork()
    _claim_all(store, name, ["farm"], start, out)


def test_claim_new_exactly_once_across_processes(store, make_job):
    ids = [make_job("farm").id for _ in range(N_JOBS)]
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(store, f"p{i}", start, out))
             for i in range(3)]
    for p in procs:
        p.start()
    try:
        start.set()
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                os.kill(p.pid, 9)
                p.join(timeout=5)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    _assert_claimed_exactly_once(store, ids, results)


def test_transition_only_from_the_given_states(store, make_job):
    job = make_job("t")
    assert store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,)) is None
    assert store.get_job(job.id).state == JobState.NEW
    assert states(store, job.id) == [JobState.NEW]  # no history for a refused move

    store.claim_job(job.id, "h", ["t"])
    row = store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,),
                           external_id="4242")
    assert row.state == JobState.RUNNING and row.external_id == "4242"
    assert row.start_time is not None and row.end_time is None
    row = store.transition(job.id, JobState.OK, from_states=(JobState.RUNNING,), exit_code=0,
                           info="fine")
    assert (row.state, row.exit_code, row.info) == (JobState.OK, 0, "fine")
    assert row.end_time is not None
    # A finished job never moves again.
    assert store.transition(job.id, JobState.ERROR,
                            from_states=(JobState.QUEUED, JobState.RUNNING)) is None
    assert states(store, job.id) == [JobState.NEW, JobState.QUEUED, JobState.RUNNING, JobState.OK]
    assert [h["handler"] for h in store.history(job.id)] == [None, "h", "h", "h"]


@pytest.mark.parametrize("end_state", [JobState.OK, JobState.ERROR])
def test_terminal_transition_of_a_deleting_job_yields_deleted(store, make_job, end_state):
    job = make_job("t")
    store.claim_job(job.id, "h", ["t"])
    store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,))
    assert store.request_cancel(job.id) == JobState.DELETING
    # Not a terminal state: a deleting job does not start running again.
    assert store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,)) is None
    # Without `deleting` allowed, the end is refused (request_cancel relies on this) ...
    assert store.transition(job.id, end_state, from_states=(JobState.RUNNING,)) is None
    # ... with it (as runners end jobs), the cancel wins.
    row = store.transition(job.id, end_state, from_states=(JobState.RUNNING, JobState.DELETING),
                           exit_code=0)
    assert row.state == JobState.DELETED
    assert row.end_time is not None
    assert states(store, job.id)[-2:] == [JobState.DELETING, JobState.DELETED]


def test_request_cancel(store, make_job):
    new, queued, running, done = (make_job("t") for _ in range(4))
    for job in (queued, running, done):
        store.claim_job(job.id, "h", ["t"])
    for job in (running, done):
        store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,))
    store.transition(done.id, JobState.OK, from_states=(JobState.RUNNING,))

    assert store.request_cancel(new.id) == JobState.DELETED
    assert store.request_cancel(queued.id) == JobState.DELETING
    assert store.request_cancel(running.id) == JobState.DELETING
    assert store.request_cancel(done.id) is None
    assert store.request_cancel(99999) is None
    assert [store.get_job(j.id).state for j in (new, queued, running, done)] == [
        JobState.DELETED, JobState.DELETING, JobState.DELETING, JobState.OK]
    assert store.get_job(new.id).end_time is not None
    assert states(store, queued.id) == [JobState.NEW, JobState.QUEUED, JobState.DELETING]


def test_cancelling_twice_leaves_the_job_deleting_for_its_handler(store, make_job):
    job = make_job("t")
    store.claim_job(job.id, "h", ["t"])
    store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,))
    assert store.request_cancel(job.id) == JobState.DELETING
    assert store.request_cancel(job.id) is None
    assert store.get_job(job.id).state == JobState.DELETING
    assert store.owned_jobs("h", states=(JobState.DELETING,))  # the handler's sweep still sees it


def test_owned_jobs(store, make_job):
    jobs = [make_job("t") for _ in range(6)]
    for job in jobs[:5]:
        store.claim_job(job.id, "h1" if job is not jobs[4] else "h2", ["t"])
    store.transition(jobs[1].id, JobState.RUNNING, from_states=(JobState.QUEUED,))
    store.request_cancel(jobs[2].id)
    store.transition(jobs[3].id, JobState.ERROR, from_states=(JobState.QUEUED,))
    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    assert ids(store.owned_jobs("h1")) == [jobs[0].id, jobs[1].id, jobs[2].id]
    assert ids(store.owned_jobs("h1", states=(JobState.DELETING,))) == [jobs[2].id]
    assert ids(store.owned_jobs("h2")) == [jobs[4].id]
    assert store.owned_jobs("nobody") == []


def test_update_job_is_not_a_state_change(store, make_job):
    job = make_job("t")
    store.update_job(job.id, working_directory="/tmp/x", external_id="7")
    row = store.get_job(job.id)
    assert (row.working_directory, row.external_id, row.state) == ("/tmp/x", "7", "new")
    assert len(store.history(job.id)) == 1


def test_heartbeat_inserts_then_updates(store):
    store.heartbeat("h1", ["h1", "fast"], "db-skip-locked")
    [first] = store.handlers()
    assert first["name"] == "h1" and first["tags"] == "h1,fast"
    assert first["strategy"] == "db-skip-locked" and first["pid"] == os.getpid()
    assert first["started"] == first["last_seen"]
    assert first["messages_failed"] == 0 and first["sweep_seconds"] is None

    store.heartbeat("h1", ["h1", "slow"], "uwsgi-mule-message", messages_failed=3,
                    sweep_seconds=0.25)
    [second] = store.handlers()
    assert second["started"] == first["started"]
    assert second["last_seen"] >= first["last_seen"]
    assert (second["tags"], second["strategy"]) == ("h1,slow", "uwsgi-mule-message")
    assert (second["messages_failed"], second["sweep_seconds"]) == (3, 0.25)

    # A restarted handler (same name, new process) says so in its first heartbeat.
    store.heartbeat("h1", ["h1"], "webless", starting=True)
    restarted = store.handlers()[0]
    assert restarted["started"] == restarted["last_seen"] >= first["started"]


def test_handlers_counts_jobs_and_unclaimed_work(store, make_job):
    store.heartbeat("h1", ["fast"], "db-skip-locked")
    store.heartbeat("h2", ["slow"], "db-skip-locked")
    a, b, c = make_job("fast"), make_job("fast"), make_job("h1")
    store.claim_job(a.id, "h1", ["fast"])
    store.claim_job(b.id, "h1", ["fast"])
    store.transition(b.id, JobState.RUNNING, from_states=(JobState.QUEUED,))
    store.claim_job(c.id, "h1", ["h1"])
    make_job("fast"), make_job("h1"), make_job("slow"), make_job("nobody")  # unclaimed
    by_name = {h["name"]: h for h in store.handlers()}
    assert list(by_name) == ["h1", "h2"]
    assert by_name["h1"]["jobs"] == {JobState.QUEUED: 2, JobState.RUNNING: 1}
    assert by_name["h1"]["unclaimed"] == 2  # one sent to tag fast, one to the name h1
    assert by_name["h2"]["jobs"] == {}
    assert by_name["h2"]["unclaimed"] == 1


def test_handlers_counts_unclaimed_once_when_the_name_is_among_the_tags(store, make_job):
    store.heartbeat("h1", ("h1", "fast"), "db-skip-locked")  # JobHandler.tags = (name, *tags)
    make_job("h1"), make_job("fast")
    assert store.handlers()[0]["unclaimed"] == 2


def test_migrate_twice_is_a_no_op(store, make_job, database_url):
    job = make_job("t")
    store.migrate()
    again = JobStore(database_url)
    try:
        again.migrate()
        with again.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = set(inspect(conn).get_table_names())
        assert len(versions) == 1
        assert {"job", "job_state_history", "handler", "alembic_version"} <= tables
        assert again.get_job(job.id).state == JobState.NEW
        assert len(again.history(job.id)) == 1
    finally:
        again.engine.dispose()


def test_sqlite_file_uses_wal_and_its_directory_is_created(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path}/deeper/dir/jobs.sqlite")
    try:
        store.migrate()
        assert (tmp_path / "deeper" / "dir" / "jobs.sqlite").exists()
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        store.engine.dispose()


def total(name, maximum, destinations=None):
    """destination_total_concurrent_jobs on one destination (or on a tag's destinations)."""
    return Limits(destination_total=(
        DestinationLimit(name, frozenset(destinations or {name}), maximum),))


def test_destination_limit_holds_when_handlers_claim_at_once(store, make_job):
    """destination_total_concurrent_jobs: 8 threads claiming 40 jobs of a destination
    limited to 3 take exactly 3; the count and the claim are one statement."""
    for _ in range(40):
        make_job("t", destination_id="small")
    def claim(i):
        return store.claim_new(f"h{i}", ["t"], limits=total("small", 3))

    with ThreadPoolExecutor(8) as pool:  # a claim's exception is raised here, not lost
        claimed = [row for rows in pool.map(claim, range(8)) for row in rows]
    assert len(claimed) == 3
    finished = claimed[0]
    store.transition(finished.id, JobState.OK, from_states=(JobState.QUEUED,))
    assert len(store.claim_new("h9", ["t"], limits=total("small", 3))) == 1


def test_claim_job_respects_the_destination_limit(store, make_job):
    jobs = [make_job("t", destination_id="small") for _ in range(3)]
    assert store.claim_job(jobs[0].id, "h", ["t"], total("small", 1))
    assert store.claim_job(jobs[1].id, "h", ["t"], total("small", 1)) is None
    assert store.claim_job(jobs[2].id, "h", ["t"], total("other", 1))  # a limit elsewhere


def test_adopt_orphans_takes_only_silent_handlers_jobs_of_my_tags(store, make_job):
    store.heartbeat("dead", ("dead", "t"), "webless")
    store.heartbeat("alive", ("alive", "t"), "webless")
    mine = [make_job("t") for _ in range(2)]
    other_tag = make_job("u")
    store.claim_job(mine[0].id, "dead", ["t"])
    store.claim_job(mine[1].id, "alive", ["t"])
    store.claim_job(other_tag.id, "dead", ["u"])
    seen = {name: last_seen for name, (last_seen, _) in store.handler_heartbeats().items()}
    store.heartbeat("alive", ("alive", "t"), "webless")  # alive spoke since it was observed
    adopted = store.adopt_orphans("me", ["t"], {"dead": seen["dead"], "alive": seen["alive"]})
    assert [j.id for j in adopted] == [mine[0].id]
    assert adopted[0].lease == 2  # claimed (1), then adopted (2)
    assert store.get_job(mine[0].id).handler == "me"
    assert store.get_job(mine[1].id).handler == "alive"
    assert store.get_job(other_tag.id).handler == "dead"  # not sent to my tags
    assert "adopted from dead" in store.history(mine[0].id)[-1]["info"]
    # Taken once: nothing is left for a second adopter.
    assert store.adopt_orphans("me2", ["t"], {"dead": seen["dead"]}) == []


def test_a_lost_lease_makes_every_write_of_the_old_holder_a_no_op(store, make_job):
    job = store.claim_job(make_job("t").id, "old", ["t"])
    store.heartbeat("old", ("old", "t"), "webless")
    seen = store.handler_heartbeats()["old"][0]
    [adopted] = store.adopt_orphans("new", ["t"], {"old": seen})
    assert adopted.lease == job.lease + 1
    assert not store.holds(job.id, job.lease, "old")
    assert store.holds(job.id, adopted.lease, "new")
    assert store.held("old", {job.id: job.lease}) == set()
    assert store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,),
                            handler="old", lease=job.lease) is None
    assert not store.update_job(job.id, lease=job.lease, external_id="stale")
    assert store.resubmit(job.id, job.lease, destination_id="b", runner="local",
                          handler_tag="t", rules=[], info="stale") is None
    row = store.get_job(job.id)
    assert (row.state, row.handler, row.external_id) == (JobState.QUEUED, "new", None)
    assert store.transition(job.id, JobState.RUNNING, from_states=(JobState.QUEUED,),
                            handler="new", lease=adopted.lease).state == JobState.RUNNING


def test_resubmit_stores_the_next_rules_and_counts_attempts(store, make_job):
    job = make_job("t", resubmit=[{"condition": "any_failure", "destination": "b"}])
    assert store.get_job(job.id).resubmit[0]["destination"] == "b"
    lease = store.claim_job(job.id, "h", ["t"]).lease
    row = store.resubmit(job.id, lease, destination_id="b", runner="local", handler_tag="t",
                         rules=[{"condition": "attempt < 3", "destination": "b"}], info="again")
    assert (row.state, row.attempt, row.destination_id, row.handler) == \
        (JobState.NEW, 2, "b", None)
    assert row.lease == lease + 1  # nobody holds a job sent back to `new`
    assert row.resubmit == [{"condition": "attempt < 3", "destination": "b"}]
    assert store.history(job.id)[-1]["info"] == "again"
    assert store.resubmit(job.id, row.lease, destination_id="b", runner="local",
                          handler_tag="t", rules=[], info="not from new") is None


def test_registered_user_limit_lets_each_user_run_only_so_many(store, make_job):
    for user_id in (1, 2):
        for _ in range(5):
            make_job("t", user_id=user_id)
    limits = Limits(registered_user=2)
    claimed = store.claim_new("h", ["t"], limits=limits)
    by_user = {}
    for row in claimed:
        by_user[row.user_id] = by_user.get(row.user_id, 0) + 1
    assert by_user == {1: 2, 2: 2}
    assert store.claim_new("h", ["t"], limits=limits) == []
    store.transition(claimed[0].id, JobState.OK, from_states=(JobState.QUEUED,))
    again = store.claim_new("h", ["t"], limits=limits)
    assert [r.user_id for r in again] == [claimed[0].user_id]


def test_user_limits_hold_when_handlers_claim_at_once(store, make_job):
    for _ in range(30):
        make_job("t", user_id=7)
    def claim(i):
        return store.claim_new(f"h{i}", ["t"], limits=Limits(registered_user=3))

    with ThreadPoolExecutor(6) as pool:
        claimed = [row for rows in pool.map(claim, range(6)) for row in rows]
    assert len(claimed) == 3


def test_destination_user_limit_applies_to_that_destination_only(store, make_job):
    for _ in range(3):
        make_job("t", user_id=1, destination_id="gpu")
        make_job("t", user_id=1, destination_id="local")
    claimed = store.claim_new("h", ["t"], limits=Limits(
        destination_user=(DestinationLimit("gpu", frozenset({"gpu"}), 1),)))
    assert sorted(r.destination_id for r in claimed) == ["gpu", "local", "local", "local"]


def test_a_tag_limit_counts_all_the_destinations_of_the_tag(store, make_job):
    for destination_id in ("a", "b", "c"):
        for _ in range(3):
            make_job("t", destination_id=destination_id)
    claimed = store.claim_new("h", ["t"], limits=total("cluster", 2, {"a", "b"}))
    assert sorted(r.destination_id for r in claimed) == ["a", "a", "c", "c", "c"]


def test_anonymous_users_have_their_own_limit(store, make_job):
    from muleteer.models import ANONYMOUS_EMAIL_DOMAIN, galaxy_user
    from muleteer.store import utcnow
    from sqlalchemy import insert
    with store.engine.begin() as conn:
        for user_id, email in ((1, "someone@example.org"), (2, "anon" + ANONYMOUS_EMAIL_DOMAIN)):
            conn.execute(insert(galaxy_user).values(id=user_id, email=email, password_hash="x",
                                                    is_admin=False, create_time=utcnow()))
    for user_id in (1, 2):
        for _ in range(4):
            make_job("t", user_id=user_id)
    claimed = store.claim_new("h", ["t"], limits=Limits(registered_user=3, anonymous_user=1))
    by_user = {}
    for row in claimed:
        by_user[row.user_id] = by_user.get(row.user_id, 0) + 1
    assert by_user == {1: 3, 2: 1}


def test_a_resubmitted_attempt_waits_for_its_delay(store, make_job):
    from datetime import timedelta
    from sqlalchemy import update
    from muleteer.models import job as job_table
    job = store.claim_job(make_job("t").id, "h", ["t"])
    row = store.resubmit(job.id, job.lease, destination_id="local", runner="local",
                         handler_tag="t", rules=[], info="again", delay=3600)
    assert row.state == JobState.NEW and row.not_before > row.update_time
    assert store.claim_new("h", ["t"]) == [] and store.claim_job(job.id, "h", ["t"]) is None
    assert store.claim_new("h", ["t"], limits=Limits(registered_user=5)) == []
    with store.engine.begin() as conn:  # an hour later
        conn.execute(update(job_table).values(not_before=row.not_before - timedelta(hours=1)))
    assert [j.id for j in store.claim_new("h", ["t"])] == [job.id]


def test_job_list_pages_by_keyset_with_filters(store, make_job, monkeypatch):
    mine = [make_job(user_id=1, tool_id="cat" if i % 2 else "noop").id for i in range(7)]
    make_job(user_id=2)  # another owner's: never on user 1's pages
    store.transition(mine[0], JobState.DELETED, from_states=(JobState.NEW,))
    pages, before = [], None
    for _ in range(5):  # 7 jobs, 3 a page: 3 pages, the last without a next
        page = store.list_jobs(user_id=1, limit=3, before=before)
        pages.append([j.id for j in page.jobs])
        if not page.more:
            break
        before = page.jobs[-1].id
    assert pages == [mine[6:3:-1], mine[3:0:-1], [mine[0]]]
    assert store.list_jobs(user_id=1, limit=3, offset=3).jobs == store.list_jobs(
        user_id=1, limit=3, before=mine[4]).jobs  # offset keeps working, to the same page
    cats = store.list_jobs(user_id=1, tool_id="cat", limit=2, before=mine[5])
    assert [j.id for j in cats.jobs] == [mine[3], mine[1]] and not cats.more
    deleted = store.list_jobs(user_id=1, state=JobState.DELETED)
    assert [j.id for j in deleted.jobs] == [mine[0]] and deleted.total == 1
    # The total is counted up to the cap, and says when there are more.
    assert store.list_jobs(user_id=1).total == 7 and store.list_jobs(user_id=1).total_exact
    monkeypatch.setattr(store, "LIST_COUNT_CAP", 5)
    capped = store.list_jobs(user_id=1)
    assert (capped.total, capped.total_exact) == (5, False)


@pytest.mark.parametrize("filters, index", [
    ({}, "ix_job_user_id_id"),
    ({"state": "ok"}, "ix_job_user_state_id"),
    ({"tool_id": "cat"}, "ix_job_user_tool_id"),
])
def test_job_list_page_query_is_served_by_an_index_in_id_order(tmp_path, filters, index):
    """SQLite's plan of one owner's page: read through the index made for it, with no sort
    (a sort means reading all of the owner's jobs first: 50 ms at 300,000)."""
    from sqlalchemy import and_, select

    from muleteer.models import job
    store = JobStore(f"sqlite:///{tmp_path}/plan.sqlite")
    store.migrate()
    where = and_(job.c.user_id == 1, job.c.id < 10**6,
                 *[job.c[name] == value for name, value in filters.items()])
    query = select(job.c.id).where(where).order_by(job.c.id.desc()).limit(51)
    compiled = query.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    assert index in plan and "TEMP B-TREE" not in plan, plan
