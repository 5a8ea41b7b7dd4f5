"""Sessions, logins, security headers and the request log, against a real uWSGI server
(and a real nginx for the nginx log): items 9-12 of the security issue.

One small server (one web worker, no mules) serves every test here but the nginx one: it
trusts 127.0.0.1 as a proxy (so X-Forwarded-For gives each login attempt an address of its
own, and X-Forwarded-Proto says https), and it logs requests with the log-format of the
repository's galaxy.yml. Requests from 127.0.0.2 (still this machine) come from a proxy
it does not trust.
"""
from __future__ import annotations

import http.client
import os
import re
import sqlite3
import time

import pytest
import requests

from tests.support.nginx_server import NGINX, start_stack
from tests.support.uwsgi_server import REPO, UwsgiServer

JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    <destinations default="local"><destination id="local" runner="local"/></destinations>
</job_conf>
"""
IDLE, MAX_AGE = 6, 14  # seconds: session_idle_timeout and session_max_age of the server
PASSWORD = "a good password"


def shipped_log_format() -> str:
    """The log-format line of the repository's galaxy.yml, as uWSGI reads it."""
    with open(os.path.join(REPO, "galaxy.yml")) as fh:
        match = re.search(r"^\s+log-format:\s*(.+)$", fh.read(), re.MULTILINE)
    assert match, "galaxy.yml has no log-format"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = UwsgiServer(
        str(tmp_path_factory.mktemp("sessions")), job_conf=JOB_CONF, mules=0, processes=1,
        galaxy={"trusted_proxies": "127.0.0.1", "login_attempts_per_10_minutes": 5,
                "session_idle_timeout": IDLE, "session_max_age": MAX_AGE,
                "admin_users": "admin@localhost, Second.Admin@Example.org"},
        uwsgi={"disable-logging": "false", "log-format": shipped_log_format()}).start()
    yield srv
    srv.stop()


def make_user(server, email):
    response = server.http.post(f"{server.url}/api/users", json={"email": email, "password": PASSWORD},
                                timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def page_token(session, url) -> str:
    page = session.get(url, timeout=10)
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def log_in(server, email, password=PASSWORD, headers=None) -> requests.Session:
    browser = requests.Session()
    browser.headers.update(headers or {})
    token = page_token(browser, f"{server.url}/login")
    response = browser.post(f"{server.url}/login", data={"email": email, "password": password,
                                                         "csrf_token": token},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return browser


def alive(session, server) -> bool:
    response = session.get(f"{server.url}/api/users/current", timeout=10)
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


# -- 9: no API key in a request log ------------------------------------------------------
def test_an_api_key_in_the_query_never_reaches_the_request_log(server):
    with open(server.logfile, "rb") as fh:
        start = len(fh.read())
    answers = [
        requests.get(f"{server.url}/api/jobs", params={"key": server.api_key}, timeout=10).status_code,
        # Spelled k%65y (as the app reads it, `key`); sent as is, without requests' normalising.
        get_from("127.0.0.1", server, "/api/jobs?k%65y=SECRETWRONG1&state=ok", {}).status,
        requests.get(f"{server.url}/static/muleteer.css?key=SECRETWRONG2", timeout=10,
                     headers={"Referer": f"{server.url}/jobs?key=SECRETREFERER"}).status_code,
        requests.get(f"{server.url}/no/such/page?key=SECRETWRONG3", timeout=10).status_code,
    ]
    assert answers == [200, 401, 200, 404]
    expected = ['"GET /api/jobs?key=[hidden] HTTP/1.1" 200',
                '"GET /api/jobs?k%65y=[hidden]&state=ok HTTP/1.1" 401',
                '"GET /static/muleteer.css?key=[hidden] HTTP/1.1" 200',
                f'"{server.url}/jobs?key=[hidden]"',  # the referer
                '"GET /no/such/page?key=[hidden] HTTP/1.1" 404']
    # The master writes the request log a moment after the answer, and other requests to this
    # shared server (the fixture's own) land in it too: wait for these lines, not for a count.
    deadline = time.monotonic() + 20
    while True:
        with open(server.logfile, "rb") as fh:
            log = fh.read()[start:].decode(errors="replace")
        if all(line in log for line in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for line in expected:
        assert line in log, log
    for secret in (server.api_key, "SECRETWRONG1", "SECRETWRONG2", "SECRETREFERER", "SECRETWRONG3"):
        assert secret not in log


def test_an_api_key_never_reaches_the_nginx_access_log(tmp_path_factory):
    if not os.access(NGINX, os.X_OK):
        if os.environ.get("MULETEER_REQUIRE_NGINX") == "1":
            pytest.fail(f"{NGINX} is missing and MULETEER_REQUIRE_NGINX=1")
        pytest.skip(f"{NGINX} is missing (scripts/nginx-install installs it)")
    server, nginx = start_stack(str(tmp_path_factory.mktemp("nginxlog")), job_conf=JOB_CONF,
                                mules=0, processes=1)
    try:
        assert requests.get(f"{nginx.url}/api/jobs", params={"key": server.api_key},
                            timeout=10).status_code == 200
        assert requests.get(f"{nginx.url}/static/muleteer.css?key=SECRETSTATIC", timeout=10,
                            headers={"Referer": f"{nginx.url}/jobs?key=SECRETREFERER"}).status_code == 200
        access_log = os.path.join(nginx.directory, "muleteer.access.log")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(access_log) as fh:
                log = fh.read()
            if log.count("\n") >= 2:
                break
            time.sleep(0.1)
    finally:
        nginx.stop()
        server.stop()
    assert '"GET /api/jobs?[hidden] HTTP/1.1" 200' in log, log
    assert '"GET /static/muleteer.css?[hidden] HTTP/1.1" 200' in log, log
    assert f'"{nginx.url}/jobs?[hidden]"' in log, log
    for secret in (server.api_key, "SECRETSTATIC", "SECRETREFERER"):
        assert secret not in log


# -- 10: one spelling of an email ----------------------------------------------------------
def test_email_variants_are_one_account_and_one_rate_limit(server):
    user = make_user(server, "  Norm@Example.ORG ")
    assert user["email"] == "norm@example.org"
    again = server.http.post(f"{server.url}/api/users", timeout=10,
                             json={"email": "NORM@example.org", "password": PASSWORD})
    assert again.status_code == 400 and "exists" in again.text
    # The right password with any spelling logs in.
    log_in(server, " NORM@example.org\t", headers={"X-Forwarded-For": "198.51.100.1"})

    def attempt(email, password, n):
        browser = requests.Session()
        # A different address each time (the server trusts 127.0.0.1 as a proxy), so only
        # the per-email count can stop the sixth attempt.
        browser.headers["X-Forwarded-For"] = f"203.0.113.{n}"
        token = page_token(browser, f"{server.url}/login")
        return browser.post(f"{server.url}/login", allow_redirects=False, timeout=10,
                            data={"email": email, "password": password, "csrf_token": token}).status_code

    variants = ["Norm@Example.org", " norm@example.org", "norm@example.org ", "\tNORM@EXAMPLE.ORG\n",
                "norm@Example.Org"]
    assert [attempt(email, "wrong password", n) for n, email in enumerate(variants, 1)] == [401] * 5
    assert attempt("norm@example.org", PASSWORD, 6) == 429
    # Another email from a fresh address is not affected.
    make_user(server, "other@example.org")
    assert attempt("other@example.org", PASSWORD, 7) == 302


def test_admin_users_emails_are_normalised_too(server):
    make_user(server, "second.admin@example.org")
    users = {u["email"]: u for u in server.http.get(f"{server.url}/api/users", timeout=10).json()}
    assert users["second.admin@example.org"]["is_admin"] is True


# -- 11: sessions that end ---------------------------------------------------------------
def test_after_logout_the_old_cookie_and_its_token_are_worthless(server):
    make_user(server, "leaver@example.org")
    browser = log_in(server, "leaver@example.org")
    token = page_token(browser, f"{server.url}/jobs")
    assert browser.get(f"{server.url}/api/users/current", timeout=10).json()["email"] == "leaver@example.org"
    old_cookie = browser.cookies.get("muleteer_session")
    # The database keeps only the SHA-256 of the session id, never the id.
    db = sqlite3.connect(os.path.join(server.directory, "database", "universe.sqlite"))
    hashes = [row[0] for row in db.execute("SELECT session_hash FROM user_session")]
    db.close()
    assert hashes and all(len(h) == 64 and h not in old_cookie for h in hashes)

    response = browser.post(f"{server.url}/logout", data={"csrf_token": token}, allow_redirects=False,
                            timeout=10)
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")

    # Someone who kept a copy of the cookie (and the page's token):
    thief = requests.Session()
    thief.cookies.set("muleteer_session", old_cookie)
    page = thief.get(f"{server.url}/jobs", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and "/login?next=" in page.headers["Location"]
    thief.cookies.set("muleteer_session", old_cookie)
    assert thief.get(f"{server.url}/api/users/current", timeout=10).status_code == 401
    thief.cookies.set("muleteer_session", old_cookie)
    api_write = thief.post(f"{server.url}/api/jobs", json={"tool_id": "noop"},
                           headers={"X-CSRFToken": token}, timeout=10)
    assert api_write.status_code == 401
    thief.cookies.set("muleteer_session", old_cookie)
    page_write = thief.post(f"{server.url}/account", data={"csrf_token": token}, timeout=10)
    assert page_write.status_code == 400 and "CSRF" in page_write.text
    # No key was made for the user by that POST.
    leaver = [u for u in server.http.get(f"{server.url}/api/users", timeout=10).json()
              if u["email"] == "leaver@example.org"][0]
    assert server.http.get(f"{server.url}/api/users/{leaver['id']}/api_keys", timeout=10).json() == []


def test_a_session_ends_after_the_idle_timeout(server):
    make_user(server, "idle@example.org")
    browser = log_in(server, "idle@example.org")
    assert alive(browser, server)
    time.sleep(IDLE + 2)
    assert not alive(browser, server)
    assert browser.get(f"{server.url}/jobs", allow_redirects=False, timeout=10).status_code == 302


def test_an_active_session_lives_past_the_idle_timeout_but_not_past_its_max_age(server):
    make_user(server, "busy@example.org")
    browser = log_in(server, "busy@example.org")
    # The session began during log_in (slow on a busy machine): at the latest, now.
    started = time.monotonic()
    # Used every second: alive well past the idle timeout...
    while time.monotonic() - started < IDLE + 3:
        assert alive(browser, server), f"ended after {time.monotonic() - started:.1f} s"
        time.sleep(1)
    # ...but never past session_max_age, however busy.
    while time.monotonic() - started < MAX_AGE + 1:
        alive(browser, server)
        time.sleep(1)
    assert not alive(browser, server)


def secure_flag(response) -> bool:
    cookie = response.getheader("Set-Cookie") if hasattr(response, "getheader") \
        else response.headers.get("Set-Cookie")
    assert cookie and cookie.startswith("muleteer_session="), cookie
    return "; Secure" in cookie


def get_from(source: str, server, path: str, headers: dict):
    """A request whose TCP connection comes from `source` (a loopback address)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def test_the_cookie_is_secure_over_https_from_a_trusted_proxy_only(server):
    https = {"X-Forwarded-Proto": "https"}
    assert secure_flag(get_from("127.0.0.1", server, "/login", https))
    assert not secure_flag(get_from("127.0.0.1", server, "/login", {}))
    # 127.0.0.2 is not in trusted_proxies: its X-Forwarded-Proto means nothing.
    assert not secure_flag(get_from("127.0.0.2", server, "/login", https))
    # A whole login through the trusted proxy over https: the session cookie is Secure
    # (Flask-WTF checks the Referer of https form posts, as browsers send it).
    # (The Cookie header by hand: requests keeps a Secure cookie from an http:// URL.)
    make_user(server, "tls@example.org")
    https["Referer"] = f"https://127.0.0.1:{server.port}/login"
    page = requests.get(f"{server.url}/login", headers=https, timeout=10)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    response = requests.post(
        f"{server.url}/login", allow_redirects=False, timeout=10,
        headers={**https, "Cookie": f"muleteer_session={page.cookies['muleteer_session']}"},
        data={"email": "tls@example.org", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.text
    assert secure_flag(response)


# -- 12: security headers ------------------------------------------------------------------
def test_every_response_has_the_security_headers(server):
    anonymous, admin = requests.Session(), server.http  # server.http sends the admin's key
    for client, path, status in [
            (anonymous, "/login", 200), (anonymous, "/api/version", 200),
            (anonymous, "/static/muleteer.css", 200), (anonymous, "/static/jobs.js", 200),
            (anonymous, "/api/jobs", 401), (anonymous, "/no/such/page", 404), (anonymous, "/jobs", 302),
            (admin, "/jobs", 200), (admin, "/admin/users", 200), (admin, "/api/jobs", 200)]:
        response = client.get(f"{server.url}{path}", allow_redirects=False, timeout=10)
        assert response.status_code == status, path
        headers = response.headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "same-origin", path
        csp = {d.split()[0]: d.split()[1:] for d in headers["Content-Security-Policy"].split("; ")}
        assert csp["script-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], path
        assert csp["default-src"] == ["'self'"] and csp["object-src"] == ["'none'"], path
