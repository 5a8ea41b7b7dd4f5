"""The job server core against a real uWSGI with real mules, over HTTP."""
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from muleteer.store import JobStore
from tests.support.uwsgi_server import DEFAULT_JOB_CONF, UwsgiServer


def test_200_concurrent_jobs_all_end_ok_with_their_stdout(server):
    def submit(i):
        return server.submit("cat_lines", text=f"line-{i}", times=2)["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(submit, range(200)))
    assert len(set(ids)) == 200
    handlers = set()
    for i, job_id in enumerate(ids):
        job = server.wait(job_id, timeout=120)
        assert job["state"] == "ok", job
        assert job["exit_code"] == 0
        stdout = server.http.get(f"{server.url}/api/jobs/{job_id}/stdout", timeout=10).text
        assert stdout == f"line-{i}\nline-{i}\n"
        handlers.add(job["handler"])
        assert [h["state"] for h in job["history"]] == ["new", "queued", "running", "ok"]
    # The farm spreads the work over its mules.
    assert handlers <= {"main.job-handlers.1", "main.job-handlers.2", "main.job-handlers.3"}
    assert len(handlers) >= 2


def test_tool_mapped_to_mule_2_runs_on_mule_2(server):
    for _ in range(5):
        job = server.wait(server.submit("checksum", text="abc", algorithm="md5sum")["id"])
        assert job["state"] == "ok"
        assert job["handler"] == "main.job-handlers.2"
        assert job["handler_tag"] == "main.job-handlers.2"
    digest = server.http.get(f"{server.url}/api/jobs/{job['id']}/outputs/digest", timeout=10)
    assert digest.status_code == 200
    assert digest.text.startswith("900150983cd24fb0d6963f7d28e17f72")


def test_tool_mapped_to_web_worker_1_runs_in_web_worker_1(server):
    handlers = {h["name"]: h for h in server.http.get(f"{server.url}/api/handlers").json()["handlers"]}
    for _ in range(4):  # some of these POSTs land on worker 2, which must not take them
        job = server.wait(server.submit("word_count", text="one two three")["id"])
        assert job["state"] == "ok"
        assert job["handler"] == "main.web.1"
        history = [h for h in job["history"] if h["state"] == "running"]
        assert history[0]["handler"] == "main.web.1"
    report = server.http.get(f"{server.url}/api/jobs/{job['id']}/outputs/report", timeout=10)
    assert report.text.strip() == "3"
    assert handlers["main.web.1"]["strategy"] == "web"


def test_failing_tool_ends_error_with_its_exit_code(server):
    job = server.wait(server.submit("fail", exit_code=42, message="broken on purpose")["id"])
    assert job["state"] == "error"
    assert job["exit_code"] == 42
    assert "exit code 42" in job["info"]
    stderr = server.http.get(f"{server.url}/api/jobs/{job['id']}/stderr", timeout=10).text
    assert stderr == "broken on purpose\n"


def test_cancelled_sleep_job_ends_deleted_and_its_process_is_gone(server):
    job = server.submit("sleep", seconds=300)
    running = server.wait(job["id"], states=("running",), timeout=30)
    pid = int(running["external_id"])
    os.killpg(pid, 0)  # alive, and the leader of its own process group
    response = server.http.delete(f"{server.url}/api/jobs/{job['id']}", timeout=10)
    assert response.status_code == 200
    assert response.json()["state"] in ("deleting", "deleted")
    final = server.wait(job["id"], timeout=30)
    assert final["state"] == "deleted"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"process group {pid} still alive after cancel")
    again = server.http.delete(f"{server.url}/api/jobs/{job['id']}", timeout=10)
    assert again.status_code == 409 and "(deleted)" in again.json()["error"]  # it has ended


def test_cancel_of_a_finished_job_is_a_conflict(server):
    job = server.wait(server.submit("noop")["id"])
    response = server.http.delete(f"{server.url}/api/jobs/{job['id']}", timeout=10)
    assert response.status_code == 409
    assert "already ended" in response.json()["error"]


def test_a_job_that_was_never_messaged_still_runs(server):
    """Written the way the web side writes it, but no message is sent: the sweep runs it."""
    store = JobStore(f"sqlite:///{server.directory}/database/universe.sqlite")
    job, _ = store.create_job(tool_id="cat_lines", tool_version="1.0.0",
                              params={"text": "swept", "times": 1},
                              command_line="printf '%s\\n' swept", handler_tag="job-handlers",
                              destination_id="local", runner="local")
    final = server.wait(job.id, timeout=60)
    assert final["state"] == "ok"
    assert server.http.get(f"{server.url}/api/jobs/{job.id}/stdout").text == "swept\n"


def test_bad_input_gets_a_4xx_naming_the_field(server):
    url = f"{server.url}/api/jobs"
    before = server.http.get(url, timeout=10).json()["total"]
    cases = [
        (dict(data="{not json"), 400, "body"),
        (dict(json=[1, 2]), 400, "body"),
        (dict(json={"params": {}}), 400, "tool_id"),
        (dict(json={"tool_id": "no_such_tool"}), 400, "tool_id"),
        (dict(json={"tool_id": "cat_lines", "params": {"times": "many"}}), 400, "params.times"),
        (dict(json={"tool_id": "cat_lines", "params": {"times": -1}}), 400, "params.times"),
        (dict(json={"tool_id": "cat_lines", "params": {"colour": "red"}}), 400, "params.colour"),
        (dict(json={"tool_id": "cat_lines", "params": "text"}), 400, "params"),
        (dict(json={"tool_id": "cat_lines", "parms": {}}), 400, "parms"),
        (dict(json={"tool_id": "word_count", "params": {"mode": "-rf"}}), 400, "params.mode"),
    ]
    for kwargs, status, field in cases:
        response = server.http.post(url, timeout=10, **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        assert response.json()["field"] == field, (kwargs, response.text)
        assert field.split(".")[-1] in response.json()["error"]
    huge = server.http.post(url, data=b'{"tool_id": "cat_lines", "params": {"text": "' + b"x" * 2_000_000 + b'"}}',
                         timeout=30)
    assert huge.status_code == 413
    assert "too large" in huge.json()["error"]
    for path, status in [("/api/jobs/999999", 404), ("/api/jobs/abc", 404),
                         ("/api/jobs?state=bogus", 400), ("/api/jobs?limit=0", 400),
                         ("/api/tools/nope", 404), ("/api/nothing", 404)]:
        response = server.http.get(server.url + path, timeout=10)
        assert response.status_code == status, path
        assert "error" in response.json()
    assert server.http.get(url, timeout=10).json()["total"] == before  # nothing half-written


def test_list_jobs_filters_and_paginates(server):
    ids = [server.submit("noop")["id"] for _ in range(3)]
    for job_id in ids:
        server.wait(job_id)
    page = server.http.get(f"{server.url}/api/jobs", params={"tool_id": "noop", "limit": 2}).json()
    assert page["total"] >= 3 and len(page["jobs"]) == 2 and page["limit"] == 2
    assert all(j["tool_id"] == "noop" for j in page["jobs"])
    assert page["jobs"][0]["id"] > page["jobs"][1]["id"]
    nxt = server.http.get(f"{server.url}/api/jobs", params={"tool_id": "noop", "limit": 2, "offset": 2}).json()
    assert {j["id"] for j in nxt["jobs"]}.isdisjoint(j["id"] for j in page["jobs"])
    ok = server.http.get(f"{server.url}/api/jobs", params={"state": "ok"}).json()
    assert all(j["state"] == "ok" for j in ok["jobs"])


def test_tools_and_handlers_endpoints(server):
    tools = server.http.get(f"{server.url}/api/tools").json()
    assert {"cat_lines", "sleep", "fail", "word_count"} <= {t["id"] for t in tools}
    tool = server.http.get(f"{server.url}/api/tools/cat_lines").json()
    assert [p["name"] for p in tool["inputs"]] == ["text", "times"]
    handlers = server.http.get(f"{server.url}/api/handlers").json()["handlers"]
    names = {h["name"] for h in handlers}
    assert {"main.job-handlers.1", "main.job-handlers.2", "main.job-handlers.3",
            "main.web.1", "main.web.2"} <= names
    for h in handlers:
        assert h["last_seen"] and h["pid"] > 0


def test_output_downloads_cannot_leave_the_job_directory(server):
    job = server.wait(server.submit("noop")["id"])
    for name in ["..%2F..%2Fgalaxy.yml", "%2Fetc%2Fpasswd", "nope"]:
        response = server.http.get(f"{server.url}/api/jobs/{job['id']}/outputs/{name}", timeout=10)
        assert response.status_code == 404


def test_a_job_running_across_a_server_restart_finishes(tmp_path):
    srv = UwsgiServer(str(tmp_path)).start()
    try:
        job = srv.submit("sleep", seconds=3)
        srv.wait(job["id"], states=("running",), timeout=30)
        srv.stop()
        srv.start()
        final = srv.wait(job["id"], timeout=30)
        assert final["state"] == "ok", final
        assert srv.http.get(f"{srv.url}/api/jobs/{job['id']}/stdout").text == "sleeping 3 s\ndone\n"
    finally:
        srv.stop()


def test_a_full_mule_queue_loses_nothing_and_gives_no_5xx(tmp_path):
    """Mule 2 is stopped (SIGSTOP) while its tool is flooded: the sends that find its
    queue full fail, the clients still get 201, and every job runs once it wakes up."""
    srv = UwsgiServer(str(tmp_path)).start()
    try:
        handlers = srv.http.get(f"{srv.url}/api/handlers").json()["handlers"]
        mule2 = next(h["pid"] for h in handlers if h["name"] == "main.job-handlers.2")
        os.kill(mule2, signal.SIGSTOP)
        try:
            session = srv.session()
            ids = []
            for i in range(1500):
                response = session.post(f"{srv.url}/api/jobs", timeout=30,
                                        json={"tool_id": "checksum", "params": {"text": str(i)}})
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            deadline = time.monotonic() + 10
            failed = 0
            while time.monotonic() < deadline and not failed:
                failed = sum(h["messages_failed"] or 0 for h in
                             srv.http.get(f"{srv.url}/api/handlers").json()["handlers"])
                time.sleep(0.5)
            assert failed > 0, "the queue never filled: this test proved nothing"
        finally:
            os.kill(mule2, signal.SIGCONT)
        deadline = time.monotonic() + 300  # one mule runs all 1500: give a busy machine time
        while True:
            done = srv.http.get(f"{srv.url}/api/jobs", timeout=30,
                                params={"state": "ok", "tool_id": "checksum",
                                        "limit": 1}).json()["total"]
            if done == len(ids):
                break
            assert time.monotonic() < deadline, (
                f"{done} of {len(ids)} jobs ok after 300 s\n{srv.log_tail()}")
            time.sleep(0.5)
        states = {}
        for job_id in ids[::50] + ids[-5:]:
            job = srv.job(job_id)
            states[job["state"]] = states.get(job["state"], 0) + 1
            assert job["handler"] == "main.job-handlers.2"
        assert set(states) == {"ok"}, states
    finally:
        srv.stop()


def test_a_bad_job_conf_stops_start_up_naming_file_and_line(tmp_path):
    bad = DEFAULT_JOB_CONF.replace('<destination id="local" runner="local"/>',
                                   '<destination id="local" runner="condor"/>')
    srv = UwsgiServer(str(tmp_path), job_conf=bad)
    with pytest.raises(RuntimeError) as failure:
        srv.start(timeout=30)
    message = str(failure.value)
    assert message.startswith("uWSGI exited with 1"), message  # stopped, not respawning
    assert "job_conf.xml, line 7" in message and "condor" in message


def test_a_tool_sent_to_a_mule_that_does_not_exist_stops_start_up(tmp_path):
    conf = DEFAULT_JOB_CONF.replace("main.job-handlers.2", "main.job-handlers.9")
    srv = UwsgiServer(str(tmp_path), job_conf=conf)
    with pytest.raises(RuntimeError) as failure:
        srv.start(timeout=30)
    message = str(failure.value)
    assert message.startswith("uWSGI exited with 1"), message
    assert "main.job-handlers.9" in message and "mules [1, 2, 3]" in message


def test_metrics_show_jobs_handlers_and_latencies(server):
    job = server.wait(server.submit("fail", exit_code=2)["id"])
    server.wait(server.submit("noop")["id"])
    assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 401
    text = server.http.get(f"{server.url}/metrics", timeout=10).text
    # muleteer_jobs counts active jobs only; ended ones are in the 24 h gauge histograms
    # (a scrape reads no more than a window of the store).
    assert 'state="error"' not in text and 'state="ok"' not in text
    assert "muleteer_job_wait_seconds_bucket{le=" in text and "muleteer_job_run_seconds_gcount" in text
    assert 'muleteer_handler_heartbeat_age_seconds{handler="main.job-handlers.1",host=' in text
    assert 'muleteer_messages_failed_total{handler="main.web.1"}' in text
    assert job["state"] == "error"


def test_uwsgi_stats_server_lists_the_workers(tmp_path):
    import json
    import socket
    stats = os.path.join(str(tmp_path), "stats.sock")
    srv = UwsgiServer(str(tmp_path), uwsgi={"stats": stats}).start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(stats)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        workers = json.loads(data)["workers"]
        assert [w["id"] for w in workers] == [1, 2]
    finally:
        srv.stop()
