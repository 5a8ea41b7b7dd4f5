"""Muleteer behind a real nginx, configured from contrib/nginx/muleteer.conf.

nginx (Debian's package: scripts/nginx-install) runs with its own generated config, pid
file, logs and temp directories in a temporary directory, on a free port of 127.0.0.1,
and passes requests to a real uWSGI over a unix socket (uwsgi_pass). The app is set up
with nginx_x_accel_redirect_base, so job files are sent by nginx (X-Accel-Redirect).

Without /usr/sbin/nginx these tests skip, unless MULETEER_REQUIRE_NGINX=1 (then they fail).
bench/bench_nginx.py uses NginxServer from here.
"""
from __future__ import annotations

import os
import time

import pytest
import requests

from muleteer.job_files import STDOUT, working_directory
from tests.support.nginx_server import ACCEL_BASE, NGINX, auth_headers, start_stack
from tests.support.uwsgi_server import UwsgiServer



# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nginx_binary():
    if os.access(NGINX, os.X_OK):
        return NGINX
    message = f"{NGINX} is missing (scripts/nginx-install installs it)"
    if os.environ.get("MULETEER_REQUIRE_NGINX") == "1":
        pytest.fail(message + " and MULETEER_REQUIRE_NGINX=1")
    pytest.skip(message)


@pytest.fixture(scope="module")
def stack(nginx_binary, tmp_path_factory):
    server, nginx = start_stack(str(tmp_path_factory.mktemp("nginx")))
    yield server, nginx
    nginx.stop()
    server.stop()


def job_directory(server: UwsgiServer, job_id: int) -> str:
    # UwsgiServer's job_working_directory is database/jobs beside its galaxy.yml.
    return working_directory(os.path.join(server.directory, "database", "jobs"), job_id)


def submit(url: str, tool_id: str, **params) -> int:
    response = requests.post(f"{url}/api/jobs", json={"tool_id": tool_id, "params": params},
                             headers=auth_headers(), timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_ok(url: str, job_id: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{url}/api/jobs/{job_id}", headers=auth_headers(), timeout=30)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["state"] in ("ok", "error", "deleted"):
            assert job["state"] == "ok", job
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s"
        time.sleep(0.1)


# -- tests ------------------------------------------------------------------------------
def test_job_and_its_stdout_through_nginx(stack):
    server, nginx = stack
    job_id = submit(nginx.url, "cat_lines", text="hello nginx", times=3)
    wait_ok(nginx.url, job_id)

    # Straight from uWSGI the app answers with an empty body and the header...
    direct = requests.get(f"{server.url}/api/jobs/{job_id}/stdout", headers=auth_headers(), timeout=30)
    assert direct.status_code == 200
    assert direct.content == b""
    stdout_path = os.path.join(job_directory(server, job_id), STDOUT)
    assert direct.headers["X-Accel-Redirect"] == ACCEL_BASE + os.path.realpath(stdout_path)
    # ...so text through nginx proves nginx followed X-Accel-Redirect and sent the file.
    through = requests.get(f"{nginx.url}/api/jobs/{job_id}/stdout", headers=auth_headers(), timeout=30)
    assert through.status_code == 200, through.text
    assert through.text == "hello nginx\n" * 3
    assert through.headers["Content-Type"].startswith("text/plain")
    assert "X-Accel-Redirect" not in through.headers


def test_output_download_through_nginx(stack):
    server, nginx = stack
    job_id = submit(nginx.url, "word_count", text="one two three four", mode="-w")
    wait_ok(nginx.url, job_id)
    report = requests.get(f"{nginx.url}/api/jobs/{job_id}/outputs/report", headers=auth_headers(),
                          timeout=30)
    assert report.status_code == 200, report.text
    assert report.text.strip() == "4"
    # The app's attachment header survives the internal redirect.
    assert "attachment" in report.headers.get("Content-Disposition", "")
    assert "report.txt" in report.headers.get("Content-Disposition", "")
    # An output the tool does not declare is still the app's JSON 404, not nginx's.
    missing = requests.get(f"{nginx.url}/api/jobs/{job_id}/outputs/nope", headers=auth_headers(),
                           timeout=30)
    assert missing.status_code == 404
    assert missing.json()["field"] == "name"


def test_accel_location_is_internal(stack):
    _, nginx = stack
    # (requests itself would resolve a "/../" before sending it, so none is tried here.)
    for path in ("/_x_accel_redirect/etc/passwd", "/_x_accel_redirect/%2Fetc/passwd"):
        response = requests.get(nginx.url + path, headers=auth_headers(), timeout=30)
        assert response.status_code == 404, (path, response.status_code)
        assert b"root:" not in response.content


def test_oversized_body_gets_the_apps_json_413(stack):
    # client_max_body_size (2m) is above the app's max_request_body (1 MiB): the client
    # gets the app's JSON error, not nginx's HTML page.
    _, nginx = stack
    body = b'{"tool_id": "cat_lines", "params": {"text": "' + b"x" * 1_200_000 + b'"}}'
    response = requests.post(f"{nginx.url}/api/jobs", data=body, timeout=30,
                             headers={"Content-Type": "application/json", **auth_headers()})
    assert response.status_code == 413
    assert "error" in response.json()
