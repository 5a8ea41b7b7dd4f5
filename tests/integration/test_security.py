"""Users, keys and security, against a real uWSGI server: each bullet of the issue a test."""
import os
import shutil
import re
import stat

import pytest
import requests

from muleteer.tools.sanitize import sanitize_text
from tests.support.uwsgi_server import REPO, UwsgiServer

# A wrapper that does not quote its text (many old wrappers don't): Galaxy's sanitizer
# alone must keep a value inert.
UNQUOTED_TOOL = """<tool id="unquoted" name="Unquoted" version="1.0.0" profile="21.01">
    <command>echo $text</command>
    <inputs><param name="text" type="text"/></inputs>
</tool>"""

ESCAPE_TOOL = """<tool id="escape" name="Escape" version="1.0.0">
    <command>ln -s /etc/passwd out.txt</command>
    <outputs><data name="out" format="txt" from_work_dir="out.txt"/></outputs>
</tool>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("security")
    tools = directory / "tools"
    shutil.copytree(os.path.join(REPO, "tools"), tools)
    (tools / "escape.xml").write_text(ESCAPE_TOOL)
    (tools / "unquoted.xml").write_text(UNQUOTED_TOOL)
    srv = UwsgiServer(str(directory), galaxy={"tool_path": str(tools),
                                              "login_attempts_per_10_minutes": 5}).start()
    yield srv
    srv.stop()


def make_user(server, email, password="a good password"):
    user = server.http.post(f"{server.url}/api/users", json={"email": email, "password": password},
                            timeout=10).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=10).json()["key"]
    session = requests.Session()
    session.headers["x-api-key"] = key
    return user, key, session


def test_the_first_start_creates_an_admin_and_says_how_to_log_in(server):
    log = server.log_tail(400)
    assert re.search(r"created the first admin user\. Log in as admin@localhost with password \S+", log)


def test_missing_and_wrong_keys_get_the_same_401(server):
    url = f"{server.url}/api/jobs"
    missing = requests.get(url, timeout=10)
    wrong = requests.get(url, headers={"x-api-key": "not-a-key"}, timeout=10)
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == wrong.json()
    assert requests.post(url, json={"tool_id": "noop"}, timeout=10).status_code == 401
    assert requests.get(f"{server.url}/api/openapi.json", timeout=10).status_code == 200


def test_a_key_works_as_header_and_as_query_parameter(server):
    _, key, session = make_user(server, "keys@example.org")
    assert session.get(f"{server.url}/api/users/current", timeout=10).json()["email"] == "keys@example.org"
    assert requests.get(f"{server.url}/api/jobs", params={"key": key}, timeout=10).status_code == 200


def test_users_see_only_their_own_jobs_and_others_are_404(server):
    _, _, alice = make_user(server, "alice@example.org")
    _, _, bob = make_user(server, "bob@example.org")
    job = alice.post(f"{server.url}/api/jobs", json={"tool_id": "word_count", "params": {"text": "a b"}},
                     timeout=10).json()
    server.wait(job["id"])
    for path in ("", "/stdout", "/stderr", "/outputs/report"):
        assert alice.get(f"{server.url}/api/jobs/{job['id']}{path}", timeout=10).status_code == 200
        theirs = bob.get(f"{server.url}/api/jobs/{job['id']}{path}", timeout=10)
        assert theirs.status_code == 404, path
        missing = bob.get(f"{server.url}/api/jobs/99999999{path}", timeout=10)
        assert missing.status_code == 404
        assert theirs.json() == {"error": f"no job {job['id']}"}  # exactly as for a missing job
        assert missing.json() == {"error": "no job 99999999"}
    assert bob.delete(f"{server.url}/api/jobs/{job['id']}", timeout=10).status_code == 404
    assert job["id"] not in [j["id"] for j in bob.get(f"{server.url}/api/jobs", timeout=10).json()["jobs"]]
    assert job["id"] in [j["id"] for j in alice.get(f"{server.url}/api/jobs", timeout=10).json()["jobs"]]
    # Admins see everyone's (and the command line), users do not see the command line.
    everyone = server.http.get(f"{server.url}/api/jobs", params={"all": 1}, timeout=10).json()["jobs"]
    assert job["id"] in [j["id"] for j in everyone]
    assert "command_line" in server.http.get(f"{server.url}/api/jobs/{job['id']}", timeout=10).json()
    assert "command_line" not in alice.get(f"{server.url}/api/jobs/{job['id']}", timeout=10).json()
    assert bob.get(f"{server.url}/api/handlers", timeout=10).status_code == 403
    assert bob.post(f"{server.url}/api/users", json={"email": "x@y.z", "password": "12345678"},
                    timeout=10).status_code == 403


@pytest.mark.parametrize("tool_id", ["cat_lines", "unquoted"])
def test_shell_metacharacters_stay_inert_through_quoting_and_unquoting_wrappers(
        server, tmp_path, tool_id):
    """Galaxy's model: wrappers quote ('$text' in cat_lines) and every text value is
    sanitized first (quotes, newlines... mapped, $ ` ; | & and the like to X), so a value
    runs nothing whether the wrapper quotes it or not."""
    canary = tmp_path / "pwned"
    text = (f"$(touch {canary}) `touch {canary}`; touch {canary} && echo 'single' \"double\" "
            f"\\ \nsecond line $HOME | touch {canary} > {canary}")
    params = {"text": text, "times": 1} if tool_id == "cat_lines" else {"text": text}
    job = server.submit(tool_id, **params)
    final = server.wait(job["id"])
    assert not canary.exists()
    stdout = server.http.get(f"{server.url}/api/jobs/{job['id']}/stdout").text
    if tool_id == "cat_lines":
        assert final["state"] == "ok", final
        assert stdout == sanitize_text(text, None) + "\n"
    assert "$HOME" not in stdout and os.environ.get("HOME", "/root") not in stdout.replace(
        str(tmp_path), "")


def test_over_long_values_and_bodies_are_refused(server):
    url = f"{server.url}/api/jobs"
    long = server.http.post(url, json={"tool_id": "cat_lines", "params": {"text": "x" * 100_001}})
    assert long.status_code == 400 and long.json()["field"] == "params.text"
    assert server.http.post(url, data=b"{" + b" " * 2_000_000 + b"}").status_code == 413


def test_downloads_cannot_leave_the_job_directory(server):
    job = server.wait(server.submit("escape")["id"])
    response = server.http.get(f"{server.url}/api/jobs/{job['id']}/outputs/out", timeout=10)
    assert response.status_code == 404
    assert "root:" not in response.text
    for name in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "job.sh"):
        assert server.http.get(f"{server.url}/api/jobs/{job['id']}/outputs/{name}").status_code == 404


def login_page_token(session, url):
    page = session.get(f"{url}/login", timeout=10).text
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_cookies_csrf_and_the_secret_key(server):
    make_user(server, "carol@example.org", "carols password")
    browser = requests.Session()
    token = login_page_token(browser, server.url)
    no_token = browser.post(f"{server.url}/login", data={"email": "carol@example.org",
                                                          "password": "carols password"}, timeout=10)
    assert no_token.status_code == 400 and "CSRF" in no_token.text
    response = browser.post(f"{server.url}/login", allow_redirects=False, timeout=10,
                            data={"email": "carol@example.org", "password": "carols password",
                                  "csrf_token": token})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Logging in starts a new session, and with it a new token: take it from a page, as
    # a browser does.
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      browser.get(f"{server.url}/jobs", timeout=10).text).group(1)
    job = browser.post(f"{server.url}/api/jobs", json={"tool_id": "sleep", "params": {"seconds": 60}},
                       headers={"X-CSRFToken": token}, timeout=10).json()
    # A cookie-authenticated write without the token is refused; with it, it works.
    assert browser.delete(f"{server.url}/api/jobs/{job['id']}", timeout=10).status_code == 400
    assert browser.delete(f"{server.url}/api/jobs/{job['id']}", headers={"X-CSRFToken": token},
                          timeout=10).status_code == 200
    assert browser.post(f"{server.url}/api/jobs", json={"tool_id": "noop"}, timeout=10).status_code == 400
    key_file = os.path.join(server.directory, "database", "secret_key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_login_attempts_are_rate_limited_without_revealing_users(server):
    browser = requests.Session()
    token = login_page_token(browser, server.url)
    unknown = browser.post(f"{server.url}/login", timeout=10, data={
        "email": "nobody@example.org", "password": "whatever1", "csrf_token": token})
    wrong = browser.post(f"{server.url}/login", timeout=10, data={
        "email": "alice@example.org", "password": "whatever1", "csrf_token": token})
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong email or password." in unknown.text and "Wrong email or password." in wrong.text
    statuses = [browser.post(f"{server.url}/login", timeout=10, data={
        "email": "dave@example.org", "password": f"guess{i}", "csrf_token": token}).status_code
        for i in range(6)]
    assert statuses[-1] == 429 and 401 in statuses
