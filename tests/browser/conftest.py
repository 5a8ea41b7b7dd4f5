"""Fixtures of the browser tests: a real uWSGI server, two users and an admin made through the
API, and Debian's headless Chromium driven by Playwright.

Chromium comes from Debian (scripts/browser-install), Playwright from requirements-test.txt;
Playwright's own browser downloads are never used. Without either the tests skip, unless
MULETEER_REQUIRE_BROWSER=1 (then they fail).
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex

import pytest
import requests

from tests.support.uwsgi_server import REPO, UwsgiServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.path.join(REPO, "test-artifacts", "screenshots")
PASSWORD = "a good browser password"
# Sourced by every job script: each job stays `running` for a second, so a page opened
# right after a submission sees the job active and must refresh itself to see it end;
# and longer while a test holds the gate (`hold_jobs`), at most a minute.
JOB_ENV = """sleep 1
for _ in $(seq 600); do [ -e {gate} ] || break; sleep 0.1; done
"""
# The shipped tools, and `sleep` on a destination that runs one job at a time: a second
# sleep job waits in `new` while the first runs (the history test watches it move on).
JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins workers="4">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
    </plugins>
    <destinations default="local">
        <destination id="local" runner="local"/>
        <destination id="serial" runner="local"/>
    </destinations>
    <tools>
        <tool id="sleep" destination="serial"/>
    </tools>
    <limits>
        <limit type="destination_total_concurrent_jobs" id="serial">1</limit>
    </limits>
</job_conf>
"""


def _unavailable(reason: str):
    if os.environ.get("MULETEER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (MULETEER_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", autouse=True)
def browser_available():
    """First of all (autouse): skip, or fail, before a server is started for nothing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright is not installed in .venv (pip install -r requirements-test.txt)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (run scripts/browser-install)")


@pytest.fixture(scope="module")
def browser(browser_available):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        # A persistent context would pin one profile; launch() gives every run a new,
        # temporary user data directory and each test a fresh context (no cookies).
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("browser")
    env_file = directory / "job_env.sh"
    env_file.write_text(JOB_ENV.format(gate=shlex.quote(str(directory / "hold_jobs"))))
    srv = UwsgiServer(str(directory), job_conf=JOB_CONF,
                      galaxy={"environment_setup_file": str(env_file)}).start()
    yield srv
    srv.stop()


@pytest.fixture
def hold_jobs(server):
    """A context manager: the server's jobs stay running while it is open (a page's view of
    an active job is checked without racing the job's end on a busy machine)."""
    gate = os.path.join(server.directory, "hold_jobs")  # named in JOB_ENV

    @contextlib.contextmanager
    def held():
        open(gate, "w").close()
        try:
            yield
        finally:
            os.unlink(gate)
    return held


class User:
    def __init__(self, server, email, is_admin=False):
        response = server.http.post(f"{server.url}/api/users", timeout=10,
                                    json={"email": email, "password": PASSWORD, "is_admin": is_admin})
        assert response.status_code == 201, response.text
        self.id, self.email, self.password = response.json()["id"], email, PASSWORD
        response = server.http.post(f"{server.url}/api/users/{self.id}/api_keys", timeout=10)
        assert response.status_code == 201, response.text
        self.api = requests.Session()
        self.api.headers["x-api-key"] = response.json()["key"]
        self.url = server.url

    def submit(self, tool_id, **params) -> int:
        response = self.api.post(f"{self.url}/api/jobs", json={"tool_id": tool_id, "params": params},
                                 timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]


@pytest.fixture(scope="module")
def alice(server):
    return User(server, "alice@example.org")


@pytest.fixture(scope="module")
def bob(server):
    return User(server, "bob@example.org")


@pytest.fixture(scope="module")
def admin(server):
    return User(server, "boss@example.org", is_admin=True)


def without_http_cache(ctx):
    """No conditional requests from this context.

    The uWSGI http router with `http-auto-chunked` (no longer in galaxy.yml) answered a
    revalidated static file (304) with a chunked body, which the browser read as the next
    response (ERR_INVALID_HTTP_RESPONSE). test_a_revalidated_stylesheet_does_not_break_the_next_page
    guards that with the cache on; the other tests test what they are about, without a
    cache (Playwright turns the HTTP cache off once requests are routed).
    """
    ctx.route("**/*", lambda route: route.continue_())
    return ctx


@pytest.fixture
def new_context(browser):
    """new_context(**options): a fresh browser context (no cookies, no cache), closed after
    the test; every wait is bounded."""
    made = []

    def make(cache=False, **options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(10_000)
        ctx.set_default_navigation_timeout(15_000)
        made.append(ctx)
        return ctx if cache else without_http_cache(ctx)
    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def context(new_context):
    return new_context()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture(scope="session")
def shot():
    """shot(page, name): a full-page PNG under test-artifacts/screenshots/."""
    os.makedirs(SCREENSHOTS, exist_ok=True)

    def take(page, name):
        page.screenshot(path=os.path.join(SCREENSHOTS, re.sub(r"[^\w-]", "_", name) + ".png"),
                        full_page=True)
    return take


@pytest.fixture
def login(server):
    """login(page, user): log in through the form, as a person would; lands on My jobs."""
    def log_in(page, user):
        page.goto(f"{server.url}/login")
        page.fill("#email", user.email)
        page.fill("#password", user.password)
        page.click("main form button[type=submit]")
        page.wait_for_url(re.compile(r"/jobs$"))
    return log_in
