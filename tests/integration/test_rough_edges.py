"""Rough edges met by trying Muleteer as a new user would, each against a real server.

- run.sh prints the first admin's login as its last line, after uWSGI's banner, once the
  server answers (--daemon and the foreground), and writes it to the log; a missed one is
  replaced with `./run.sh --reset-password EMAIL`. run.sh runs on a scratch galaxy.yml
  (free port, everything in a temporary directory) and a stand-in venv of links to .venv
  whose install stamp is current, so it never installs anything.
- A body over the limits gets an HTTP answer at once, a JSON 413 (3 MB, 20 MB; with
  `Expect: 100-continue` too), directly from uWSGI's http router and behind nginx; a
  chunked body gets a 411 from uWSGI directly, and is read behind nginx.
- DELETE of a job that has ended, `deleted` included, is a 409.
- Every /api/* and /metrics error is JSON.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from tests.support.nginx_server import NGINX, serve_stack
from tests.support.uwsgi_server import REPO, UwsgiServer

RUN_SH = os.path.join(REPO, "run.sh")
VENV = os.path.join(REPO, ".venv")
LOGIN_LINE = re.compile(r"^muleteer: created the first admin user\. Log in as (\S+) with password "
                        r"(\S+), or use the API key (\S+) \(header x-api-key\)\. Missed it\? "
                        r"\./run\.sh --reset-password \1 sets a new password\.$")


# -- run.sh: the first admin's login ------------------------------------------------------
def venv_view(directory: str) -> str:
    """A venv run.sh takes as installed and up to date (setup-venv's stamp for
    requirements.txt), whose uwsgi is .venv's (a link: run.sh knows its master by that
    binary) and whose python runs .venv's: run.sh starts the real server, installing
    nothing."""
    if not os.access(os.path.join(VENV, "bin", "uwsgi"), os.X_OK):
        pytest.skip(f"{VENV}/bin/uwsgi is missing (./run.sh or scripts/setup-venv installs it)")
    view = os.path.join(directory, "venv")
    os.makedirs(os.path.join(view, "bin"))
    os.symlink(os.path.join(VENV, "bin", "uwsgi"), os.path.join(view, "bin", "uwsgi"))
    python = os.path.join(view, "bin", "python")
    with open(python, "w") as fh:
        fh.write(f'#!/bin/sh\nexec {VENV}/bin/python "$@"\n')
    os.chmod(python, 0o755)
    stamp = subprocess.run([os.path.join(REPO, "scripts", "setup-venv"), "--stamp", "requirements.txt"],
                           capture_output=True, text=True, check=True).stdout
    with open(os.path.join(view, ".installed-requirements.txt"), "w") as fh:
        fh.write(stamp)
    return view


class RunSh:
    """run.sh on a scratch configuration (UwsgiServer's, never started by it)."""

    def __init__(self, directory: str):
        self.server = UwsgiServer(directory)  # writes galaxy.yml: free port, paths in directory
        self.directory = directory
        self.log = os.path.join(directory, "uwsgi.log")
        self.env = dict(os.environ, MULETEER_CONFIG=self.server.config_file,
                        MULETEER_VENV=venv_view(directory), MULETEER_LOG=self.log)

    def __call__(self, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([RUN_SH, *args], env=self.env, cwd=self.directory, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              **kwargs)

    def stop(self) -> None:
        """--stop; and if the master is still there, SIGKILL by its pid file."""
        try:
            self("--stop", timeout=60)
        finally:
            try:
                with open(self.server.pidfile) as fh:
                    os.kill(int(fh.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def notes_left(self) -> list[str]:
        return [n for n in os.listdir(self.directory) if n.startswith("first-admin.")]


def log_in(url: str, email: str, password: str) -> int:
    """The login form, as a browser sends it: the status (302 to /jobs when it worked)."""
    with requests.Session() as browser:
        page = browser.get(f"{url}/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = browser.post(f"{url}/login", timeout=10, allow_redirects=False,
                                data={"email": email, "password": password, "csrf_token": token})
        return response.status_code


def test_run_sh_daemon_prints_the_first_admins_login_last_and_resets_it(tmp_path):
    run = RunSh(str(tmp_path))
    url = run.server.url
    try:
        started = run("--daemon")
        assert started.returncode == 0, started.stdout
        lines = started.stdout.rstrip("\n").splitlines()
        assert "Starting uWSGI" in started.stdout  # the banner came first...
        login = LOGIN_LINE.match(lines[-1])  # ...and the login is the very last line
        assert login, lines[-3:]
        assert lines[-2].startswith(f"muleteer: serving on {url}"), lines[-3:]
        email, password, key = login.groups()
        assert email == "admin@localhost"
        with open(run.log) as fh:
            assert lines[-1] in fh.read().splitlines()  # the login page says: "in its log"
        assert run.notes_left() == []  # the private note is gone

        me = requests.get(f"{url}/api/users/current", headers={"x-api-key": key}, timeout=10)
        assert me.status_code == 200 and me.json()["is_admin"] is True, me.text
        assert log_in(url, email, password) == 302
        hint = requests.get(f"{url}/login", timeout=10).text
        assert "./run.sh --reset-password EMAIL" in hint and "last line" in hint

        # Missed it: a new password, printed once; the old one no longer opens anything.
        reset = run("--reset-password", "Admin@Localhost", timeout=60)
        assert reset.returncode == 0, reset.stdout
        new = re.search(r"^muleteer: admin@localhost \(admin\) now logs in with new password (\S+); "
                        r"their browser sessions were ended\.$", reset.stdout, re.M)
        assert new, reset.stdout
        assert log_in(url, email, password) == 401
        assert log_in(url, email, new.group(1)) == 302
        # Or one of the admin's choosing, from standard input (not in ps or the history).
        chosen = subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "app.users", "set-password",
                                 email, "--config", run.server.config_file, "--stdin"],
                                input="a password of my own\n", capture_output=True, text=True,
                                cwd=REPO, timeout=60)
        assert chosen.returncode == 0, chosen.stderr
        assert log_in(url, email, "a password of my own") == 302
        unknown = run("--reset-password", "nobody@example.org", timeout=60)
        assert unknown.returncode == 1 and "no user nobody@example.org (admins: admin@localhost)" \
            in unknown.stdout, unknown.stdout

        # A second start makes no admin and prints no login.
        run.stop()
        again = run("--daemon")
        assert again.returncode == 0, again.stdout
        assert "first admin" not in again.stdout
        assert again.stdout.rstrip("\n").splitlines()[-1].startswith("muleteer: serving on")
    finally:
        run.stop()


def test_run_sh_in_the_foreground_prints_the_login_once_the_server_answers(tmp_path):
    run = RunSh(str(tmp_path))
    process = subprocess.Popen([RUN_SH], env=run.env, cwd=run.directory, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    lines: list[str] = []
    def read():
        for line in process.stdout:
            lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any(LOGIN_LINE.match(line.rstrip("\n")) for line in list(lines)):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        text = [line.rstrip("\n") for line in lines]
        at = next(i for i, line in enumerate(text) if LOGIN_LINE.match(line))
        # Before the login (not necessarily just before: a mule's start-up line may come
        # between run.sh's two writes).
        serving = [i for i, line in enumerate(text)
                   if line.startswith(f"muleteer: serving on {run.server.url}")]
        assert serving and serving[0] < at, text[:at + 1]
        # After uWSGI's banner and its start-up: the server was answering already.
        banner = [i for i, line in enumerate(text) if "spawned uWSGI" in line]
        assert banner and max(banner) < at, text[:at + 1]
        assert requests.get(f"{run.server.url}/api/version", timeout=10).status_code == 200
        # The foreground process is the uWSGI master itself (run.sh execs it): Ctrl-C stops it.
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) is not None
        assert run.notes_left() == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# -- oversized and chunked bodies -----------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A uWSGI server as galaxy.yml sets it up (http router -> fastrouter -> workers) and,
    if nginx is installed, nginx in front (contrib/nginx/muleteer.conf)."""
    yield from serve_stack(str(tmp_path_factory.mktemp("rough")))


# "At once": before any of the server's timeouts (a hung read would wait for one, and
# post_raw's own 20 s deadline), with room for a busy machine moving 20 MB over loopback.
AT_ONCE = 15


def post_raw(port: int, size: int, *, key: str, chunked: bool = False, expect: bool = False,
             deadline: float = 20.0) -> tuple[float, int, dict, bytes]:
    """POST a `size`-byte body to /api/jobs over one connection, as fast as the server reads
    it; returns (seconds until the whole answer came, status, headers, body). A server
    that answers before reading it all may close the connection: the answer still counts."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as conn:
        head = (f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\n"
                "Content-Type: application/json\r\n")
        head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n"
        head += "Expect: 100-continue\r\n" if expect else ""
        conn.sendall((head + "\r\n").encode())
        data = b""
        if expect:  # the interim answer comes first (or the final one: then no body is sent)
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                assert chunk, data
                data += chunk
            if data.startswith(b"HTTP/1.1 100"):
                data = data.split(b"\r\n\r\n", 1)[1]
            else:
                size = 0
        block, sent = b"x" * 65536, 0
        try:
            while sent < size:
                n = min(len(block), size - sent)
                conn.sendall(b"%x\r\n%s\r\n" % (n, block[:n]) if chunked else block[:n])
                sent += n
            if chunked:
                conn.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before the body was all sent
        while True:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", data[:head_end])
                if length and len(data) >= head_end + 4 + int(length.group(1)):
                    break
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), data[:200]
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return elapsed, int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("size", [3_000_000, 20_000_000])
@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100-continue"])
def test_an_oversized_body_gets_a_json_413_at_once_from_uwsgi(stack, size, expect):
    server, _ = stack
    elapsed, status, headers, body = post_raw(server.port, size, key=server.api_key, expect=expect)
    assert status == 413, body[:300]
    assert headers["content-type"] == "application/json"
    assert "too large" in json.loads(body)["error"]
    assert elapsed < AT_ONCE, f"answered after {elapsed:.1f} s"
    # The server is none the worse for it.
    assert server.submit("noop")["state"] == "new"


def test_a_chunked_body_gets_a_json_411_from_uwsgi(stack):
    server, _ = stack
    for size in (20, 3_000_000):
        elapsed, status, headers, body = post_raw(server.port, size, key=server.api_key, chunked=True)
        assert status == 411, body[:300]
        assert "Content-Length" in json.loads(body)["error"]
        assert elapsed < AT_ONCE, elapsed


def test_behind_nginx_oversized_bodies_get_a_json_413_and_chunked_ones_work(stack):
    server, nginx = stack
    if nginx is None:
        pytest.skip(f"{NGINX} is missing (scripts/nginx-install installs it)")
    for size in (3_000_000, 20_000_000):
        for chunked in (False, True):
            elapsed, status, headers, body = post_raw(nginx.port, size, key=server.api_key,
                                                      chunked=chunked)
            assert status == 413, (size, chunked, body[:300])
            assert headers["content-type"] == "application/json"
            assert "too large" in json.loads(body)["error"]
            assert elapsed < AT_ONCE, (size, chunked, elapsed)
    # A chunked body within the limits is read (nginx passes its length on): the job is made.
    response = requests.post(f"{nginx.url}/api/jobs", headers={"x-api-key": server.api_key,
                                                               "Content-Type": "application/json"},
                             data=iter([b'{"tool_id": ', b'"noop"}']), timeout=30)
    assert response.status_code == 201, response.text


# -- DELETE of an ended job; JSON errors ------------------------------------------------------
def test_delete_of_any_ended_job_is_a_409(stack):
    server, _ = stack
    url = f"{server.url}/api/jobs"
    done = server.wait(server.submit("noop")["id"])
    sleeper = server.submit("sleep", seconds=120)
    server.wait(sleeper["id"], states=("running",), timeout=30)
    first = server.http.delete(f"{url}/{sleeper['id']}", timeout=10)
    assert first.status_code == 200 and first.json()["state"] in ("deleting", "deleted")
    assert server.wait(sleeper["id"], timeout=30)["state"] == "deleted"
    for job, state in ((done, "ok"), (sleeper, "deleted")):
        response = server.http.delete(f"{url}/{job['id']}", timeout=10)
        assert response.status_code == 409, response.text
        assert response.json()["error"] == (f"job {job['id']} has already ended ({state}); "
                                            "nothing to cancel")


def test_every_api_and_metrics_error_is_json(stack):
    server, _ = stack
    user = server.http.post(f"{server.url}/api/users", timeout=10,
                            json={"email": "plain@example.org", "password": "a plain password"}).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=10).json()["key"]
    html = {"Accept": "text/html"}  # what a browser asks for: still JSON here
    cases = [
        ("GET", "/metrics", {"x-api-key": key, **html}, 403),   # not an admin
        ("GET", "/metrics", html, 401),
        ("GET", "/metrics", {"x-api-key": "wrong", **html}, 401),
        ("POST", "/metrics", {"x-api-key": key, **html}, 405),
        ("GET", "/api", {"x-api-key": key, **html}, 404),
        ("GET", "/api/nothing", {"x-api-key": key, **html}, 404),
        ("PUT", "/api/jobs", {"x-api-key": key, **html}, 405),
        ("GET", "/api/handlers", {"x-api-key": key, **html}, 403),
        ("GET", "/api/jobs/99999999", {"x-api-key": key, **html}, 404),
    ]
    for method, path, headers, status in cases:
        response = requests.request(method, f"{server.url}{path}", headers=headers, timeout=10)
        assert response.status_code == status, (method, path, response.status_code)
        assert response.headers["Content-Type"] == "application/json", (method, path, response.text[:200])
        assert response.json()["error"], (method, path)
    # The pages keep their HTML error pages.
    page = requests.get(f"{server.url}/jobs/99999999", headers={"x-api-key": key, **html}, timeout=10)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
