"""The job list of a real server over many jobs: keyset pages through `next`, `offset`,
the bounded total, and /metrics' job figures bounded by a window (issue 15)."""
from datetime import timedelta

import pytest
import requests
from sqlalchemy import insert

from app.accounts import Accounts
from muleteer.config import load_config
from muleteer.models import job
from muleteer.store import JobStore, utcnow
from tests.support.uwsgi_server import UwsgiServer

ALICE_JOBS = 30
JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    <destinations default="local"><destination id="local" runner="local"/></destinations>
</job_conf>
"""


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """A server whose store holds finished jobs of alice (30: ten a year old, and one in
    three an error) and of bob (5), written before it starts."""
    srv = UwsgiServer(str(tmp_path_factory.mktemp("pages")), job_conf=JOB_CONF,
                      mules=1, processes=1)
    store = JobStore(load_config(srv.config_file).database_connection)
    store.migrate()
    accounts = Accounts(store.engine)
    # The admin the server's bootstrap key acts as (the test's srv.http).
    accounts.create_user("admin@example.org", "a long enough password", is_admin=True)
    keys = {}
    for name in ("alice", "bob"):
        user = accounts.create_user(f"{name}@example.org", "a long enough password")
        keys[name] = (user["id"], accounts.new_key(user["id"]))
    now = utcnow()
    rows = []
    for k in range(ALICE_JOBS + 5):
        owner = keys["alice" if k < ALICE_JOBS else "bob"][0]
        ended = now - (timedelta(days=365) if k < 10 else timedelta(minutes=5))
        rows.append(dict(tool_id="cat" if k % 2 else "noop", tool_version="1", params="{}",
                         command_line="true", state="error" if k % 3 == 0 else "ok",
                         handler_tag="h", handler="h", destination_id="local", runner="local",
                         exit_code=1 if k % 3 == 0 else 0, create_time=ended - timedelta(seconds=1.7),
                         start_time=ended - timedelta(seconds=1), end_time=ended,
                         update_time=ended, user_id=owner))
    with store.engine.begin() as conn:
        conn.execute(insert(job), rows)
    store.engine.dispose()
    srv.start()
    sessions = {}
    for name, (_, key) in keys.items():
        sessions[name] = requests.Session()
        sessions[name].headers["x-api-key"] = key
    yield srv, sessions
    srv.stop()


def walk(srv, session, path):
    """Every page from `path` on through `next` (at most 50 pages)."""
    pages = []
    for _ in range(50):
        page = session.get(srv.url + path, timeout=30)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        path = pages[-1]["next"]
        if path is None:
            return pages
    raise AssertionError(f"no last page after 50: {pages[-1]}")


def test_next_links_reach_every_job_once_newest_first(listed):
    srv, sessions = listed
    pages = walk(srv, sessions["alice"], "/api/jobs?limit=7")
    ids = [j["id"] for p in pages for j in p["jobs"]]
    assert len(pages) == 5 and [len(p["jobs"]) for p in pages] == [7, 7, 7, 7, 2]
    assert len(ids) == ALICE_JOBS and ids == sorted(set(ids), reverse=True)  # none twice
    assert all(p["total"] == ALICE_JOBS and p["total_exact"] for p in pages)
    assert "before=" in pages[0]["next"] and "limit=7" in pages[0]["next"]
    # `offset` keeps working, and lands on the same page as the cursor.
    third = sessions["alice"].get(srv.url + "/api/jobs", params={"limit": 7, "offset": 14}).json()
    assert third["jobs"] == pages[2]["jobs"] and third["offset"] == 14
    # The filters go along in the link: alice's errors, by tool too.
    errors = walk(srv, sessions["alice"], "/api/jobs?limit=3&state=error&tool_id=cat")
    found = [j for p in errors for j in p["jobs"]]
    assert found and all(j["state"] == "error" and j["tool_id"] == "cat" for j in found)
    assert len(found) == 5  # k = 3, 9, 15, 21, 27
    # Another user's pages hold only theirs.
    bobs = walk(srv, sessions["bob"], "/api/jobs?limit=2")
    assert {j["id"] for p in bobs for j in p["jobs"]}.isdisjoint(ids)
    assert sum(len(p["jobs"]) for p in bobs) == 5


@pytest.mark.parametrize("value", ["0", "-3", "x", "1e3"])
def test_a_bad_cursor_is_a_400_naming_it(listed, value):
    srv, sessions = listed
    answer = sessions["alice"].get(srv.url + "/api/jobs", params={"before": value}, timeout=30)
    assert answer.status_code == 400 and answer.json()["field"] == "before", answer.text


def test_metrics_count_active_jobs_and_the_window_of_ended_ones(listed):
    srv, _ = listed
    text = srv.http.get(srv.url + "/metrics", timeout=30).text
    assert 'state="ok"' not in text  # ended jobs are not counted one by one
    # The 25 jobs that ended 5 minutes ago; not the 10 of a year ago.
    assert "muleteer_job_run_seconds_gcount 25.0" in text
    # Waits of 0.7 s: clear of the bucket edges (SQLite's julianday arithmetic is not exact).
    assert 'muleteer_job_wait_seconds_bucket{le="0.5"} 0.0' in text
    assert 'muleteer_job_wait_seconds_bucket{le="1"} 25.0' in text
