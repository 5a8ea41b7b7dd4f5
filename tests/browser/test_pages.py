"""The pages in a real headless Chromium (Playwright) against a real uWSGI server.

Every wait is bounded (Playwright's expect with a timeout); the tests never reload a page
to see a change: the pages' own JavaScript must show it. Screenshots go to
test-artifacts/screenshots/.
"""
from __future__ import annotations

import re
import socket
import time

import requests

try:
    from playwright.sync_api import expect
except ImportError:  # conftest's browser_available skips (or fails) every test, saying why
    expect = None

ACTIVE = ("new", "queued", "running")


def job_id_from(url: str) -> int:
    match = re.search(r"/jobs/(\d+)$", url)
    assert match, url
    return int(match.group(1))


def no_horizontal_overflow(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def test_log_in_through_the_form(page, server, alice, shot):
    page.goto(f"{server.url}/jobs")  # not logged in: to the login page, and back after it
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.locator("h1")).to_have_text("Log in")
    shot(page, "login")
    page.fill("#email", alice.email)
    page.fill("#password", "not the password")
    page.click("main form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    expect(page.locator("#email")).to_have_value(alice.email)
    page.fill("#password", alice.password)
    page.click("main form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/jobs$"))
    expect(page.locator("nav .who")).to_have_text(alice.email)
    expect(page.locator("nav", has_text="Handlers")).to_have_count(0)  # not an admin


def test_run_a_tool_from_its_form_and_watch_the_job_end(page, server, alice, login, shot,
                                                        hold_jobs):
    login(page, alice)
    page.get_by_role("link", name="Tools", exact=True).click()
    expect(page.locator("main h1")).to_have_text("Tools")
    shot(page, "tools")
    page.get_by_role("link", name="Repeat a line").click()
    expect(page).to_have_url(re.compile(r"/tools/cat_lines$"))
    page.get_by_label("Text").fill("hello from the browser")
    page.get_by_label("Times").fill("3")
    with hold_jobs():  # the page comes from the server while the job is active ...
        page.get_by_role("button", name="Run Repeat a line").click()
        page.wait_for_url(re.compile(r"/jobs/\d+$"))
        job_id = job_id_from(page.url)
        expect(page.locator(".flash")).to_have_text(f"Job {job_id} submitted.")
        badge = page.locator("#job-state")
        assert badge.text_content() in ACTIVE
        assert badge.get_attribute("data-active") == "1"
    # ... and its script must follow it to the end.
    expect(badge).to_have_text("ok", timeout=30_000)
    # At the end the page reloads itself once, rendered by the server with the job over.
    expect(page.locator('#job-state:not([data-active="1"])')).to_have_text("ok", timeout=10_000)
    expect(page.locator("#stdout")).to_contain_text("hello from the browser")
    assert page.locator("#stdout").text_content() == "hello from the browser\n" * 3
    expect(page.locator("#job-exit")).to_have_text("0")
    expect(page.locator("#cancel-form")).to_have_count(0)
    expect(page.locator(".history .state").last).to_have_text("ok")
    shot(page, "job")

    link = page.locator("a", has_text="download").first
    assert link.get_attribute("href") == f"/api/jobs/{job_id}/stdout"
    with page.expect_download(timeout=10_000) as download:
        link.click()
    with open(download.value.path()) as fh:
        assert fh.read() == "hello from the browser\n" * 3
    response = page.request.get(f"{server.url}{link.get_attribute('href')}")  # the page's cookies
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text() == "hello from the browser\n" * 3
    # The name the link offers (download="job-N-stdout.txt"); a Content-Disposition
    # filename in the response would override it.
    assert download.value.suggested_filename == f"job-{job_id}-stdout.txt", \
        f"saved as {download.value.suggested_filename!r}; Content-Disposition: " \
        f"{response.headers.get('content-disposition')!r}"


def test_my_jobs_table_updates_itself_and_filters_by_state(page, server, alice, bob, login, shot):
    bobs = bob.submit("noop")
    login(page, alice)
    body = page.locator("#jobs tbody")
    expect(body).not_to_contain_text("Loading")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    job_id = alice.submit("cat_lines", text="from the API", times=2)
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator(".state")).to_have_text("ok", timeout=20_000)
    expect(row.locator("td").nth(1)).to_have_text("cat_lines")
    assert page.evaluate("window.sameDocument") is True
    expect(page.locator(f'#jobs tr[data-job="{bobs}"]')).to_have_count(0)  # not hers
    expect(page.locator("#page-info")).to_contain_text(re.compile(r"1–\d+ of \d+"))
    shot(page, "jobs")

    page.select_option("#state-filter", "error")
    expect(page).to_have_url(re.compile(r"state=error"))
    expect(body).to_have_text("No error jobs.", timeout=10_000)
    page.select_option("#state-filter", "ok")
    expect(row).to_be_visible(timeout=10_000)
    states = page.locator("#jobs tbody .state")
    expect(states.first).to_have_text("ok")
    assert set(states.all_text_contents()) == {"ok"}
    assert page.evaluate("window.sameDocument") is True


def test_cancel_a_running_job(page, server, alice, login):
    login(page, alice)
    page.goto(f"{server.url}/tools/sleep")
    page.get_by_label("Seconds").fill("120")
    page.get_by_role("button", name="Run Sleep").click()
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = job_id_from(page.url)
    badge = page.locator("#job-state")
    expect(badge).to_have_text("running", timeout=15_000)  # refreshed by the page

    # Cancel asks first (a confirm() from app/static/muleteer.js): "no" sends nothing.
    questions, posts = [], []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.once("dialog", lambda d: (questions.append((d.type, d.message)), d.dismiss()))
    page.get_by_role("button", name="Cancel job").click()
    expect(badge).to_have_text("running")
    assert questions == [("confirm", f"Cancel job {job_id}? Its process is stopped and the job "
                                     "ends deleted.")], questions
    assert posts == [] and server.job(job_id)["state"] == "running"
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator(".flash")).to_have_text(f"Job {job_id} is being cancelled.")
    expect(badge).to_have_text("deleted", timeout=20_000)
    expect(page.locator("#cancel-form")).to_have_count(0)
    assert server.job(job_id)["state"] == "deleted"


def test_bad_values_show_an_error_next_to_the_field(new_context, page, server, alice, login, shot):
    jobs_before = alice.api.get(f"{server.url}/api/jobs", timeout=10).json()["total"]
    login(page, alice)
    page.goto(f"{server.url}/tools/cat_lines")
    times = page.locator('.field[data-param="times"]')
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    # In the page: the form is not sent.
    page.get_by_label("Times").fill("-5")
    page.get_by_role("button", name="Run Repeat a line").click()
    expect(times.locator(".field-error")).not_to_be_empty()
    assert posts == []
    expect(times).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.get_by_label("Times")).to_be_focused()
    expect(page).to_have_url(re.compile(r"/tools/cat_lines$"))
    shot(page, "tool_form_error")
    page.get_by_label("Times").fill("2")  # corrected: the message goes away as one types
    expect(times.locator(".field-error")).to_be_empty()

    # From the server: a text longer than allowed, with the page's limit removed.
    page.evaluate("document.getElementById('p-text').removeAttribute('maxlength')")
    page.get_by_label("Text").fill("x" * 100_001)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Run Repeat a line").click()
    assert posted.value.status == 400
    text = page.locator('.field[data-param="text"]')
    expect(text.locator(".field-error")).to_contain_text("100000")
    expect(text).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.get_by_label("Times")).to_have_value("2")  # what was typed is kept

    # From the server: no script in the page at all, the number of the first try.
    bare = new_context(java_script_enabled=False).new_page()
    login(bare, alice)
    bare.goto(f"{server.url}/tools/cat_lines")
    bare.get_by_label("Times").fill("-5")
    with bare.expect_response(lambda r: r.request.method == "POST") as posted:
        bare.get_by_role("button", name="Run Repeat a line").click()
    assert posted.value.status == 400
    field = bare.locator('.field[data-param="times"]')
    expect(field.locator(".field-error")).not_to_be_empty()
    expect(field).to_have_class(re.compile(r"\binvalid\b"))
    expect(bare.get_by_label("Times")).to_have_value("-5")
    shot(bare, "tool_form_server_error")
    assert alice.api.get(f"{server.url}/api/jobs", timeout=10).json()["total"] == jobs_before


def test_another_users_job_is_a_404_page(page, server, alice, bob, login):
    job_id = alice.submit("noop")
    login(page, bob)
    response = page.goto(f"{server.url}/jobs/{job_id}")
    assert response.status == 404
    expect(page.locator("main h1")).to_have_text("404")
    expect(page.locator("main")).to_contain_text(f"No job {job_id}.")
    expect(page.locator("main")).not_to_contain_text("noop")
    missing = page.goto(f"{server.url}/jobs/99999999")
    assert missing.status == 404  # the same answer as for a job that does not exist


def test_an_admin_sees_the_handlers(page, server, admin, alice, login, shot):
    login(page, admin)
    page.get_by_role("link", name="Handlers", exact=True).click()
    expect(page.locator("main h1")).to_have_text("Handlers")
    table = page.locator("table#handlers")
    expect(table).to_contain_text("main.job-handlers.1")
    expect(table).to_contain_text("main.job-handlers.3")
    shot(page, "handlers")
    assert alice.api.get(f"{server.url}/admin/handlers", timeout=10,
                         allow_redirects=False).status_code == 403


def test_the_login_form_works_with_the_keyboard_alone(page, server, alice):
    page.goto(f"{server.url}/login")
    for _ in range(6):  # the email field has autofocus; otherwise Tab reaches it
        if page.evaluate("document.activeElement.id") == "email":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(alice.email)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(alice.password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/jobs$"))
    expect(page.locator("nav .who")).to_have_text(alice.email)


def test_pages_fit_a_phone_screen(new_context, server, alice, login, shot):
    job_id = alice.submit("cat_lines", times=3,
                          text="a-long-word-without-any-space-" * 8 + " then ordinary words")
    server.wait(job_id, timeout=30)
    page = new_context(viewport={"width": 390, "height": 844}).new_page()
    login(page, alice)
    overflowing = {}
    for path in ("/tools", "/tools/cat_lines", "/jobs", f"/jobs/{job_id}"):
        page.goto(f"{server.url}{path}")
        if path == "/jobs":
            expect(page.locator("#jobs tbody")).not_to_contain_text("Loading")
        scroll_width, inner_width = no_horizontal_overflow(page)
        if scroll_width > inner_width + 1:
            overflowing[path] = (scroll_width, inner_width)
    expect(page.locator("#job-state")).to_have_text("ok")
    shot(page, "job_phone")
    assert not overflowing, f"pages wider than the 390 px screen (scrollWidth, innerWidth): {overflowing}"


def test_a_revalidated_stylesheet_does_not_break_the_next_page(new_context, server):
    """With the browser's cache on, as people have it: the stylesheet comes back as a 304
    from the second page on, and the pages after it must still load."""
    page = new_context(cache=True, java_script_enabled=False).new_page()
    failed = []
    page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.url}: {r.failure}"))
    for _ in range(4):
        try:
            page.goto(f"{server.url}/login")
        except Exception as exc:  # noqa: BLE001 - the failure is collected below
            failed.append(str(exc).splitlines()[0])
    # The same on one keep-alive connection, byte by byte: after a 304's header block come
    # either the next response's status line or, if the server said Connection: close,
    # nothing at all; never body bytes (a 304 has no body).
    etag = requests.get(f"{server.url}/static/muleteer.css", timeout=10).headers["ETag"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(f"GET /static/muleteer.css HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"If-None-Match: {etag}\r\n\r\n".encode())
        data, deadline = b"", time.monotonic() + 30
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            data += conn.recv(65536)
        try:
            conn.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            while data.count(b"HTTP/1.1 ") < 2 and time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server closed the connection after the 304 (checked below)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304"), head
    closes = b"connection: close" in head.lower()
    assert rest.startswith(b"HTTP/1.1 200") or (closes and rest == b""), (
        f"bytes after the 304's headers: {rest[:40]!r}; 304 headers: {head.decode(errors='replace')}")
    assert not failed, failed



def test_no_page_breaks_the_content_security_policy(page, server, admin, alice, login):
    """The pages run under `script-src 'self'` (no inline script, handler or style
    attribute): Chromium reports any violation on the console and as a securitypolicyviolation
    event; there must be none, and every page must carry the policy."""
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy violation: ' + e.violatedDirective))")
    job_id = alice.submit("cat_lines", text="csp", times=1)
    server.wait(job_id, timeout=30)
    login(page, alice)
    for path in ("/tools", "/tools/cat_lines", "/jobs", f"/jobs/{job_id}", "/account"):
        response = page.goto(f"{server.url}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY"
        if path == "/jobs":
            expect(page.locator("#jobs tbody")).not_to_contain_text("Loading")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    login(page, admin)
    for path in ("/admin/handlers", "/admin/users"):
        page.goto(f"{server.url}{path}")
    assert not violations, violations


def test_log_out_ends_the_session_for_good(new_context, server, alice, login):
    ctx = new_context()
    page = ctx.new_page()
    login(page, alice)
    cookies = ctx.cookies()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    # A copy of the cookie from before the logout, put back: it opens nothing.
    other = new_context()
    other.add_cookies(cookies)
    again = other.new_page()
    again.goto(f"{server.url}/jobs")
    expect(again).to_have_url(re.compile(r"/login\?next="))


# -- rough edges a new user meets (README, "The browser") ---------------------------------
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def shown(iso: str) -> str:
    """How every page shows an API time ("2026-11-29T14:03:07.123Z"): 2026-11-29 14:03:07 UTC."""
    return f"{iso[:10]} {iso[11:19]} UTC"


def test_times_look_the_same_on_every_page(page, server, alice, admin, login, shot):
    job_id = alice.submit("cat_lines", text="when", times=1)
    job = server.wait(job_id, timeout=30)
    login(page, alice)
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row.locator("td.time").nth(2)).not_to_be_empty(timeout=10_000)  # ended
    cells = row.locator("td.time").all_text_contents()
    assert cells == [shown(job["create_time"]), shown(job["start_time"]), shown(job["end_time"])], cells

    page.goto(f"{server.url}/jobs/{job_id}")
    history = page.locator("#history time").all_text_contents()
    assert history == [shown(h["time"]) for h in job["history"]], history
    page.goto(f"{server.url}/account")
    assert all(TIME.match(t) for t in page.locator("main time").all_text_contents())

    page.get_by_role("button", name="Log out").click()
    login(page, admin)
    for path, where in (("/admin/users", "main table time"), ("/admin/handlers", "#handlers time")):
        page.goto(f"{server.url}{path}")
        texts = page.locator(where).all_text_contents()
        assert texts and all(TIME.match(t) for t in texts), (path, texts)


def test_all_users_jobs_show_the_owner_and_fit_a_1280_px_screen(page, server, alice, admin,
                                                                   login, shot):
    job_id = alice.submit("cat_lines", text="whose", times=1)
    server.wait(job_id, timeout=30)
    login(page, admin)
    page.get_by_role("link", name="All users").click()
    expect(page).to_have_url(re.compile(r"/jobs\?all=1"))
    expect(page.locator("main h1")).to_have_text("All users' jobs")
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    expect(row.locator("td.owner")).to_have_text(alice.email, timeout=10_000)
    headers = page.locator("#jobs thead th").all_text_contents()
    assert "User" in headers
    assert len(headers) == row.locator("td").count()
    shot(page, "jobs_all_users")
    assert page.viewport_size["width"] == 1280
    scroll_width, inner_width = no_horizontal_overflow(page)
    assert scroll_width <= inner_width, (scroll_width, inner_width)
    table = page.evaluate("(() => { const s = document.querySelector('.scroll');"
                          " return [s.scrollWidth, s.clientWidth]; })()")
    assert table[0] <= table[1], f"the table scrolls sideways at 1280 px: {table}"


def test_the_history_refreshes_with_the_state_badge(page, server, alice, login, shot):
    """`sleep` runs one job at a time here (conftest.JOB_CONF): a second one waits in `new`,
    and when the first is cancelled it is queued and runs, all while its page stays open:
    the history must follow the badge without a reload."""
    first = alice.submit("sleep", seconds=60)
    second = None
    try:
        deadline = time.monotonic() + 20
        while server.job(first)["state"] != "running":
            assert time.monotonic() < deadline, server.job(first)
            time.sleep(0.2)
        second = alice.submit("sleep", seconds=8)
        login(page, alice)
        page.goto(f"{server.url}/jobs/{second}")
        badge, history = page.locator("#job-state"), page.locator("#history .state")
        expect(badge).to_have_text("new")
        assert history.all_text_contents() == ["new"]
        page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

        assert alice.api.delete(f"{server.url}/api/jobs/{first}", timeout=10).status_code == 200
        expect(badge).to_have_text("running", timeout=15_000)
        expect(history.last).to_have_text("running", timeout=5_000)
        assert history.all_text_contents() == ["new", "queued", "running"]
        assert page.evaluate("window.sameDocument") is True
        texts = page.locator("#history time").all_text_contents()
        assert len(texts) == 3 and all(TIME.match(t) for t in texts), texts
        shot(page, "job_history_refreshed")
    finally:
        for job_id in (first, second):
            if job_id is not None:
                alice.api.delete(f"{server.url}/api/jobs/{job_id}", timeout=10)
        for job_id in (first, second):
            if job_id is not None:
                server.wait(job_id, timeout=30)


def test_the_users_page_keeps_the_table_and_the_form_apart(page, server, admin, alice, login,
                                                           shot):
    login(page, admin)
    page.goto(f"{server.url}/admin/users")
    gap = page.evaluate("(() => { const t = document.querySelector('main .scroll').getBoundingClientRect();"
                        " const f = document.querySelector('main section.card').getBoundingClientRect();"
                        " return f.top - t.bottom; })()")
    assert gap >= 16, f"the Create a user form starts {gap} px below the table"
    shot(page, "users")
