"""Handler strategies and never losing a job, with real uWSGI and real webless handlers."""
import time

import pytest

from tests.support.postgres import fresh_database
from tests.support.uwsgi_server import (UwsgiServer, WeblessHandler, runs_per_job,
                                        tools_with_marker)

WEBLESS_CONF = """<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="4"/></plugins>
    <handlers default="handlers">
        <handler id="handler0" tags="handlers"/>
        <handler id="handler1" tags="handlers"/>
    </handlers>
    <destinations default="local"><destination id="local" runner="local"/></destinations>
</job_conf>"""


def webless_server(tmp_path, job_conf=WEBLESS_CONF, database="sqlite", **galaxy):
    tool_path, markers = tools_with_marker(str(tmp_path))
    if database == "postgresql":
        galaxy["database_connection"] = fresh_database(f"it_{tmp_path.name}")
    srv = UwsgiServer(str(tmp_path), job_conf=job_conf, mules=0,
                      galaxy={"tool_path": tool_path, "handler_heartbeat_timeout": 3, **galaxy})
    return srv, markers


def submit_many(srv, n, **params):
    session = srv.session()
    ids = []
    for _ in range(n):
        response = session.post(f"{srv.url}/api/jobs", json={"tool_id": "marker", "params": params},
                                timeout=30)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def wait_all_ok(srv, ids, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = srv.http.get(f"{srv.url}/api/jobs", params={"state": "ok", "tool_id": "marker",
                                                         "limit": 1}).json()["total"]
        if ok >= len(ids):
            return
        time.sleep(0.3)
    states = {}
    for job_id in ids:
        state = srv.job(job_id)["state"]
        states[state] = states.get(state, 0) + 1
    raise AssertionError(f"not all ok after {timeout} s: {states}\n{srv.log_tail()}")


def test_all_in_one_the_web_worker_that_takes_a_job_runs_it(tmp_path):
    conf = """<job_conf><destinations default="local"><destination id="local" runner="local"/></destinations></job_conf>"""
    srv = UwsgiServer(str(tmp_path), job_conf=conf, mules=0).start()
    try:
        handlers = set()
        for _ in range(6):
            job = srv.wait(srv.submit("cat_lines", text="aio")["id"])
            assert job["state"] == "ok"
            assert job["handler"] == job["handler_tag"]  # taken by the worker it was sent to
            handlers.add(job["handler"])
        assert handlers <= {"main.web.1", "main.web.2"}
        strategies = {h["name"]: h["strategy"] for h in srv.http.get(f"{srv.url}/api/handlers").json()["handlers"]}
        assert strategies.get("main.web.1") == "web"
        assert not any(name.startswith("main.job-handlers") for name in strategies)
    finally:
        srv.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_webless_handlers_share_a_backlog_and_run_each_job_once(tmp_path, database):
    # 20 a sweep (Galaxy's max_grab): the first handler up cannot take the whole backlog
    # in its first sweeps before the second has started (it did, once claims got cheaper).
    conf = WEBLESS_CONF.replace('<handlers default="handlers">',
                                '<handlers default="handlers" max_grab="20">')
    srv, markers = webless_server(tmp_path, job_conf=conf, database=database)
    srv.start()
    handlers = [WeblessHandler(srv.config_file, f"handler{i}") for i in range(2)]
    try:
        ids = submit_many(srv, 300)  # a backlog before any handler runs
        for handler in handlers:
            handler.start()
        wait_all_ok(srv, ids)
        runs = runs_per_job(markers)
        assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}
        taken = {srv.job(job_id)["handler"] for job_id in ids}
        assert taken == {"handler0", "handler1"}
        info = {h["name"]: h for h in srv.http.get(f"{srv.url}/api/handlers").json()["handlers"]}
        assert info["handler0"]["strategy"] == "webless" and info["handler0"]["pid"] > 0
    finally:
        for handler in handlers:
            handler.stop()
        srv.stop()


def test_a_webless_handler_runs_jobs_without_loading_the_web_stack(tmp_path):
    """The handler side imports the core and mules/, never Flask: Python's own import log
    (-X importtime) of a webless handler that ran a job names no flask module."""
    srv, _ = webless_server(tmp_path)
    srv.start()
    handler = WeblessHandler(srv.config_file, "handler0", env={"PYTHONPROFILEIMPORTTIME": "1"})
    handler.start()
    try:
        job = srv.wait(srv.submit("marker")["id"], timeout=60)
        assert job["state"] == "ok" and job["handler"] == "handler0"
    finally:
        handler.stop()
        srv.stop()
    with open(handler.log_file) as fh:
        imported = [line.rsplit("|", 1)[-1].strip() for line in fh if line.startswith("import time:")]
    assert "mules.handler_loop" in imported and "muleteer.store" in imported
    assert not [m for m in imported if m.split(".")[0] in ("flask", "flask_wtf", "werkzeug", "app")]


def test_a_dead_webless_handlers_jobs_are_adopted_and_finish(tmp_path):
    srv, markers = webless_server(tmp_path)
    srv.start()
    first = WeblessHandler(srv.config_file, "handler0").start()
    second = WeblessHandler(srv.config_file, "handler1")
    try:
        running = srv.submit("marker", seconds=6)
        srv.wait(running["id"], states=("running",), timeout=30)
        assert srv.job(running["id"])["handler"] == "handler0"
        first.kill()  # kill -9: no goodbye, its heartbeat just stops
        waiting = submit_many(srv, 20)
        second.start()
        final = srv.wait(running["id"], timeout=60)
        assert final["state"] == "ok" and final["handler"] == "handler1"
        assert any("adopted" in (h["info"] or "") for h in final["history"])
        wait_all_ok(srv, [running["id"], *waiting])
        assert set(runs_per_job(markers).values()) == {1}  # re-attached, not run again
    finally:
        first.stop()
        second.stop()
        srv.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_destination_total_concurrent_jobs_is_never_exceeded(tmp_path, database):
    conf = WEBLESS_CONF.replace("</job_conf>", """<limits>
        <limit type="destination_total_concurrent_jobs" id="local">2</limit></limits></job_conf>""")
    srv, markers = webless_server(tmp_path, job_conf=conf, database=database)
    srv.start()
    handlers = [WeblessHandler(srv.config_file, f"handler{i}") for i in range(2)]
    try:
        # A backlog first: submissions slower than a job (a busy machine) cannot keep the
        # peak under the limit, so a peak of 2 shows the limit, not the pace.
        ids = submit_many(srv, 10, seconds=0.7)
        for handler in handlers:
            handler.start()
        wait_all_ok(srv, ids)
        # The most jobs holding a slot (claimed to finished) at any one moment, from the
        # times the store recorded; at equal times an end frees its slot before a claim.
        events = []
        for job_id in ids:
            job = srv.job(job_id)
            events += [(job["queued_time"], 1), (job["end_time"], -1)]
        peak = busy = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):
            busy += step
            peak = max(peak, busy)
        assert peak == 2, peak
        wait_all_ok(srv, ids)
    finally:
        for handler in handlers:
            handler.stop()
        srv.stop()


RESUBMIT_CONF = """<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    <handlers default="handlers"><handler id="handler0" tags="handlers"/></handlers>
    <destinations default="first">
        <destination id="first" runner="local">
            <resubmit condition="walltime_reached or any_failure" destination="second"/>
        </destination>
        <destination id="second" runner="local">
            <resubmit condition="any_failure and attempt &lt; 3" destination="second"/>
        </destination>
    </destinations>
    <limits><limit type="walltime">00:00:02</limit></limits>
</job_conf>"""


def test_resubmit_rules_are_followed_on_every_attempt(tmp_path):
    srv, markers = webless_server(tmp_path, job_conf=RESUBMIT_CONF)
    srv.start()
    handler = WeblessHandler(srv.config_file, "handler0").start()
    try:
        job = srv.wait(srv.submit("fail", exit_code=5)["id"], timeout=60)
        assert job["state"] == "error" and job["exit_code"] == 5
        assert job["destination"] == "second"
        resubmissions = [h for h in job["history"] if h["state"] == "new" and h["info"]]
        assert len(resubmissions) == 2  # first -> second, second -> second; the 3rd attempt ends it
        assert "resubmitted to second" in resubmissions[0]["info"]

        slow = srv.wait(srv.submit("sleep", seconds=30)["id"], timeout=60)
        assert slow["state"] == "error" and "walltime reached" in slow["info"]
        assert [h["info"] for h in slow["history"] if h["state"] == "new" and h["info"]][0] \
            .startswith("attempt 1 failed (walltime_reached")
    finally:
        handler.stop()
        srv.stop()


def test_kill_9_of_a_webless_handler_with_1000_jobs_in_flight_loses_nothing(tmp_path):
    srv, markers = webless_server(tmp_path)
    srv.start()
    handlers = [WeblessHandler(srv.config_file, f"handler{i}").start() for i in range(2)]
    try:
        ids = submit_many(srv, 1000, seconds=0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until handler0 holds unfinished work
            if any(srv.job(i)["handler"] == "handler0" and srv.job(i)["state"] in ("queued", "running")
                   for i in ids[-200:]):
                break
            time.sleep(0.1)
        handlers[0].kill()
        wait_all_ok(srv, ids, timeout=240)
        runs = runs_per_job(markers)
        assert sorted(runs) == sorted(ids)
        twice = {job_id: n for job_id, n in runs.items() if n != 1}
        assert not twice, f"ran more than once: {twice}"
    finally:
        for handler in handlers:
            handler.stop()
        srv.stop()
