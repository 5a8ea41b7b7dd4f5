"""Jobs as the real user, the server's side: with real_system_username set, a user whose
jobs would have no usable system account is refused at submission (403, in the API and the
form), and one with an account submits as before. Real accounts, made with useradd."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.support.uwsgi_server import LOCAL_JOB_CONF, UwsgiServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd (a real system account)")


@pytest.fixture(scope="module")
def account():
    name = f"mtj{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    yield name
    subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory, account):
    srv = UwsgiServer(str(tmp_path_factory.mktemp("real_user")), mules=1, job_conf=LOCAL_JOB_CONF,
                      galaxy={"real_system_username": "user_email"}).start()
    yield srv
    srv.stop()


def user_session(server, email):
    import requests
    user = server.http.post(f"{server.url}/api/users", timeout=30,
                            json={"email": email, "password": "a good password"}).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=30).json()["key"]
    session = requests.Session()
    session.headers["x-api-key"] = key
    return session


def submit(server, session):
    return session.post(f"{server.url}/api/jobs", timeout=30,
                        json={"tool_id": "cat_lines", "params": {"text": "hi", "times": 1}})


def test_a_user_with_a_system_account_submits(server, account):
    answer = submit(server, user_session(server, f"{account}@example.org"))
    assert answer.status_code == 201, answer.text
    assert server.wait(answer.json()["id"])["state"] == "ok"


@pytest.mark.parametrize("email, words", [
    ("nosuchaccount1@example.org", "no system account 'nosuchaccount1'"),
    ("root@example.org", "below real_system_min_uid"),
    ("daemon@example.org", "below real_system_min_uid"),
])
def test_users_without_a_usable_account_are_refused_at_submission(server, email, words):
    jobs_before = server.http.get(f"{server.url}/api/jobs", timeout=30).json()["total"]
    answer = submit(server, user_session(server, email))
    assert answer.status_code == 403, answer.text
    assert answer.json()["field"] == "user" and words in answer.json()["error"], answer.json()
    assert server.http.get(f"{server.url}/api/jobs", timeout=30).json()["total"] == jobs_before


def test_a_mapping_file(tmp_path, account):
    (tmp_path / "accounts").write_text(f"mapped@example.org {account}\n")
    srv = UwsgiServer(str(tmp_path), mules=1, job_conf=LOCAL_JOB_CONF,
                      galaxy={"real_system_username": "accounts"}).start()
    try:
        assert submit(srv, user_session(srv, "mapped@example.org")).status_code == 201
        refused = submit(srv, user_session(srv, f"{account}@example.org"))  # not in the file
        assert refused.status_code == 403 and "not in the account mapping" in refused.json()["error"]
    finally:
        srv.stop()
