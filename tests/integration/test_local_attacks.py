"""Attacks by other local accounts and by jobs, against a real uWSGI server.

The server runs as one account (root here). Another local account (uid 65534, by
`setpriv --reuid=65534 --regid=65534 --clear-groups`) must read, write and list nothing of
it: not the database, the secret key, the stats socket, nor the job directories, and must
not be able to plant a job directory of its own for the server to write through. A job,
which owns its directory, must not make the server read or write anything else through
what it leaves there: symbolic links, FIFOs, devices.

The server directory sits in a world-traversable directory (0755 in /tmp), as a checkout
in /srv would, and its database/ starts 0755, as an old installation's would: the barrier
the attacker meets is the server's own doing. setpriv needs root: without it these skip.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest
import requests

from muleteer.job_files import working_directory
from tests.support.uwsgi_server import REPO, UwsgiServer

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv: the attacks run as uid 65534 against a server of another "
           "account")

# A job that swaps its own stdout and stderr, once written, for links to the server's
# signing key (the job's stdout is still open: the name is what the server reads later).
STEAL_KEY_TOOL = """<tool id="steal_key" name="Steal the key" version="1.0.0">
    <command>echo harmless; rm -f stdout stderr; ln -s {key} stdout; ln -s {key} stderr</command>
</tool>"""

# stdout becomes a FIFO (nobody ever writes to it) and stderr /dev/zero (endless), as a
# device if the job may make one, else as a link.
FIFO_STDOUT_TOOL = """<tool id="fifo_stdout" name="FIFO stdout" version="1.0.0">
    <command>rm -f stdout stderr; mkfifo stdout; mknod stderr c 1 5 2>/dev/null || ln -s /dev/zero stderr</command>
</tool>"""

# The job script ends `echo $rc > exit_code`: a link put in place of exit_code is written
# through (the job's own doing, to its own decoy) and stays, a link the server must not follow.
EXIT_LINK_TOOL = """<tool id="exit_link" name="exit_code a link" version="1.0.0">
    <command>ln -s {decoy} exit_code</command>
</tool>"""

# A FIFO in place of exit_code: the script blocks itself opening it for writing (no
# reader, ever). The job hangs by its own hand; the handler and the server must not.
EXIT_FIFO_TOOL = """<tool id="exit_fifo" name="exit_code a FIFO" version="1.0.0">
    <command>mkfifo exit_code</command>
</tool>"""

# After the script has written exit_code and exited, a process the job left behind
# replaces exit_code with a FIFO, or with a link to /etc/passwd.
LATE_SWAP_TOOL = """<tool id="late_swap_{kind}" name="exit_code swapped late" version="1.0.0">
    <command>( while [ ! -e exit_code ]; do sleep 0.01; done; rm -f exit_code; {swap} ) &lt;/dev/null &gt;/dev/null 2&gt;&amp;1 &amp;</command>
</tool>"""

# A declared output that is a FIFO.
FIFO_OUTPUT_TOOL = """<tool id="fifo_output" name="FIFO output" version="1.0.0">
    <command>mkfifo out.txt</command>
    <outputs><data name="out" format="txt" from_work_dir="out.txt"/></outputs>
</tool>"""

ATTACKER_TEXT = "* * * * * root echo attacker-controlled-line"


@pytest.fixture(scope="module")
def root_dir():
    directory = tempfile.mkdtemp(prefix="muleteer-attacks-", dir="/tmp")
    os.chmod(directory, 0o755)  # traversable by everyone, as /srv/muleteer would be
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def server(root_dir):
    directory = os.path.join(root_dir, "server")
    os.makedirs(directory)
    os.chmod(directory, 0o755)
    database = os.path.join(directory, "database")
    os.mkdir(database)
    os.chmod(database, 0o755)  # an old installation's: the server must tighten it
    tools = os.path.join(directory, "tools")
    shutil.copytree(os.path.join(REPO, "tools"), tools)
    decoy = os.path.join(root_dir, "decoy")
    with open(decoy, "w") as fh:
        fh.write("decoy\n")
    extra = {
        "steal_key.xml": STEAL_KEY_TOOL.format(key=os.path.join(database, "secret_key")),
        "fifo_stdout.xml": FIFO_STDOUT_TOOL,
        "exit_link.xml": EXIT_LINK_TOOL.format(decoy=decoy),
        "exit_fifo.xml": EXIT_FIFO_TOOL,
        "late_swap_fifo.xml": LATE_SWAP_TOOL.format(kind="fifo", swap="mkfifo exit_code"),
        "late_swap_link.xml": LATE_SWAP_TOOL.format(kind="link", swap="ln -s /etc/passwd exit_code"),
        "fifo_output.xml": FIFO_OUTPUT_TOOL,
    }
    for name, text in extra.items():
        with open(os.path.join(tools, name), "w") as fh:
            fh.write(text)
    srv = UwsgiServer(directory, galaxy={"tool_path": tools},
                      uwsgi={"stats": os.path.join(database, "stats.sock")}).start()
    srv.decoy = decoy
    yield srv
    srv.stop()


def jobs_root(server) -> str:
    return os.path.join(server.directory, "database", "jobs")


def job_dir(server, job_id: int) -> str:
    return working_directory(jobs_root(server), job_id)


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def as_nobody(code: str, *args: str) -> dict:
    """Run Python `code` as uid/gid 65534 with no groups; it prints one JSON object."""
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "/usr/bin/python3", "-c", code, *args],
        capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# Each attempt: "ok", or the errno name it failed with.
TRY_EACH = r"""
import errno, json, os, socket, sys
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
def connect(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    finally:
        s.close()
"""


def last_job_id(server) -> int:
    jobs = server.http.get(f"{server.url}/api/jobs", params={"all": 1, "limit": 1}, timeout=30).json()
    return jobs["jobs"][0]["id"] if jobs["jobs"] else 0


def wait_state(server, job_id, states, timeout=60.0) -> dict:
    return server.wait(job_id, states=states, timeout=timeout)


def log_in(server, email: str, password: str) -> requests.Session:
    """A browser session: the login form, its CSRF token, the cookie."""
    browser = requests.Session()
    page = browser.get(f"{server.url}/login", timeout=30).text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    response = browser.post(f"{server.url}/login", allow_redirects=False, timeout=30,
                            data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.text
    return browser


@pytest.fixture(scope="module")
def user(server):
    """A user with a password (for the pages) and an API key (to submit)."""
    email, password = "mallory@example.org", "mallory's password"
    created = server.http.post(f"{server.url}/api/users", json={"email": email, "password": password},
                               timeout=30).json()
    key = server.http.post(f"{server.url}/api/users/{created['id']}/api_keys", timeout=30).json()["key"]
    api = requests.Session()
    api.headers["x-api-key"] = key
    return api, log_in(server, email, password)


def submit_as(server, api: requests.Session, tool_id: str, **params) -> int:
    response = api.post(f"{server.url}/api/jobs", json={"tool_id": tool_id, "params": params},
                        timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def assert_still_serving(server):
    assert requests.get(f"{server.url}/api/version", timeout=10).status_code == 200
    job = wait_state(server, server.submit("cat_lines", text="still here", times=1)["id"],
                     ("ok", "error"))
    assert job["state"] == "ok", job
    assert server.http.get(f"{server.url}/api/jobs/{job['id']}/stdout", timeout=10).text == "still here\n"


# -- a. modes of what the server creates -------------------------------------------------
def test_the_server_files_are_its_own_alone(server):
    job = wait_state(server, server.submit("cat_lines", text="modes", times=2)["id"], ("ok", "error"))
    assert job["state"] == "ok", job
    database = os.path.join(server.directory, "database")
    directory = job_dir(server, job["id"])
    # The job directory and every parent up to database/: no group or other bits.
    path = directory
    while True:
        assert mode(path) & 0o077 == 0, f"{path} is {mode(path):04o}"
        if path == database:
            break
        path = os.path.dirname(path)
    for name in ("stdout", "stderr", "exit_code", "job.sh"):
        assert mode(os.path.join(directory, name)) & 0o077 == 0, \
            f"{name} is {mode(os.path.join(directory, name)):04o}"
    sqlite = os.path.join(database, "universe.sqlite")
    assert mode(sqlite) == 0o600
    for suffix in ("-wal", "-shm"):
        if os.path.exists(sqlite + suffix):
            assert mode(sqlite + suffix) & 0o077 == 0, f"{suffix} is {mode(sqlite + suffix):04o}"
    assert mode(os.path.join(database, "secret_key")) == 0o600
    stats_socket = os.path.join(database, "stats.sock")
    assert stat.S_ISSOCK(os.lstat(stats_socket).st_mode)
    assert mode(stats_socket) & 0o077 == 0, f"stats.sock is {mode(stats_socket):04o}"
    # Every other socket and FIFO uWSGI made (workers, routers, master FIFO) likewise.
    for parent, _dirs, files in os.walk(server.directory):
        for name in files:
            path = os.path.join(parent, name)
            kind = os.lstat(path).st_mode
            if stat.S_ISSOCK(kind) or stat.S_ISFIFO(kind):
                assert mode(path) & 0o077 == 0, f"{path} is {mode(path):04o}"
    # database/ was 0755 before the first start: the server tightened it, and said so.
    assert re.search(r"database was mode 0755: made it 0700", server.log_tail(2000))
    # And another account indeed gets nothing.
    attempts = as_nobody(TRY_EACH + """
database, directory = sys.argv[1:3]
print(json.dumps({
    "list database": attempt(lambda: os.listdir(database)),
    "read universe.sqlite": attempt(lambda: open(os.path.join(database, "universe.sqlite"), "rb").close()),
    "read secret_key": attempt(lambda: open(os.path.join(database, "secret_key"), "rb").close()),
    "connect stats.sock": attempt(lambda: connect(os.path.join(database, "stats.sock"))),
    "read stdout": attempt(lambda: open(os.path.join(directory, "stdout"), "rb").close()),
}))
""", database, directory)
    assert attempts == {name: "EACCES" for name in attempts}, attempts


# -- b. a job directory planted before the server makes it -------------------------------
def test_another_account_cannot_plant_the_next_job_directory(server):
    wait_state(server, server.submit("noop")["id"], ("ok", "error"))  # jobs/000 exists
    next_id = last_job_id(server) + 1
    target = job_dir(server, next_id)
    attempts = as_nobody(TRY_EACH + """
target = sys.argv[1]
print(json.dumps({
    "mkdir the job directory": attempt(lambda: os.makedirs(target)),
    "symlink in its parent": attempt(lambda: os.symlink("/etc/shadow", os.path.join(os.path.dirname(target), "x"))),
    "traverse the server root": attempt(lambda: os.listdir(sys.argv[2])),
}))
""", target, server.directory)
    # The server root is open to all (0755): the refusal is the server's own database/.
    assert attempts == {"mkdir the job directory": "EACCES", "symlink in its parent": "EACCES",
                        "traverse the server root": "ok"}, attempts
    assert not os.path.lexists(target)


def test_a_planted_job_directory_fails_the_job_and_nothing_is_written_through_it(server, root_dir):
    # As root: a bug, or a race lost, left the next job's directory in place, full of links.
    secrets = os.path.join(root_dir, "root-only")
    os.makedirs(secrets, exist_ok=True)
    os.chmod(secrets, 0o700)
    existing = os.path.join(secrets, "crontab")
    with open(existing, "w") as fh:
        fh.write("# root's own file\n")
    old = time.time() - 3600
    os.utime(existing, (old, old))
    before = (open(existing).read(), os.stat(existing).st_mtime_ns)
    links = {"stdout": os.path.join(secrets, "stdout-target"),        # must not be created
             "job.log": existing,                                     # must not change
             "job.sh.tmp": os.path.join(secrets, "job-sh-target"),    # must not be created
             "exit_code": existing, "pid": existing}
    next_id = last_job_id(server) + 1
    target = job_dir(server, next_id)
    os.makedirs(target)
    for name, points_to in links.items():
        os.symlink(points_to, os.path.join(target, name))

    job = server.submit("cat_lines", text=ATTACKER_TEXT, times=1)
    assert job["id"] == next_id, "another job took the id: the planted directory missed"
    final = wait_state(server, job["id"], ("ok", "error", "deleted"))
    assert final["state"] == "error", final
    assert "already exists" in (final["info"] or ""), final
    assert (open(existing).read(), os.stat(existing).st_mtime_ns) == before
    for name in ("stdout", "job.sh.tmp"):
        assert not os.path.lexists(links[name]), f"the server wrote {links[name]} through {name}"
    for path in (links["stdout"], existing):
        assert not (os.path.exists(path) and "attacker-controlled-line" in open(path).read())
    assert sorted(os.listdir(secrets)) == ["crontab"]


# -- c. what a job leaves in its directory -----------------------------------------------
def test_a_job_cannot_show_the_secret_key_through_its_stdout(server, user):
    api, browser = user
    with open(os.path.join(server.directory, "database", "secret_key")) as fh:
        key = fh.read().strip()
    assert len(key) >= 32
    job_id = submit_as(server, api, "steal_key")
    final = wait_state(server, job_id, ("ok", "error"))
    directory = job_dir(server, job_id)
    assert os.path.islink(os.path.join(directory, "stdout")), "the attack did not take place"
    for name in ("stdout", "stderr"):
        text = api.get(f"{server.url}/api/jobs/{job_id}/{name}", timeout=30)
        assert text.status_code == 200
        assert key not in text.text
    page = browser.get(f"{server.url}/jobs/{job_id}", timeout=30)
    assert page.status_code == 200
    assert key not in page.text
    assert final["state"] in ("ok", "error")


def test_fifos_and_devices_in_place_of_stdout_and_stderr_hang_nothing(server, user):
    api, browser = user
    job_id = submit_as(server, api, "fifo_stdout")
    wait_state(server, job_id, ("ok", "error"))
    assert stat.S_ISFIFO(os.lstat(os.path.join(job_dir(server, job_id), "stdout")).st_mode)
    started = time.monotonic()
    for name in ("stdout", "stderr"):
        response = api.get(f"{server.url}/api/jobs/{job_id}/{name}", timeout=30)
        assert response.status_code == 200 and response.text == ""
    assert browser.get(f"{server.url}/jobs/{job_id}", timeout=30).status_code == 200
    assert time.monotonic() - started < 15


def test_an_exit_code_that_is_a_link_is_not_followed(server, user):
    api, _ = user
    job_id = submit_as(server, api, "exit_link")
    final = wait_state(server, job_id, ("ok", "error"))
    assert os.path.islink(os.path.join(job_dir(server, job_id), "exit_code")), \
        "the attack did not take place"
    # Read through the link, the exit code would have been the 0 the script wrote there.
    assert final["state"] == "error" and final["exit_code"] is None, final
    assert_still_serving(server)


def test_an_exit_code_replaced_after_the_job_ends_hangs_nothing(server, user):
    api, _ = user
    for kind in ("fifo", "link"):
        job_id = submit_as(server, api, f"late_swap_{kind}")
        final = wait_state(server, job_id, ("ok", "error"), timeout=90)
        # Which one depends on who was first, the handler or the job's leftover process.
        assert final["state"] in ("ok", "error"), final
        assert final["exit_code"] in (0, None), final
        assert api.get(f"{server.url}/api/jobs/{job_id}/stdout", timeout=30).status_code == 200
    assert_still_serving(server)


def test_a_job_blocked_on_its_own_fifo_exit_code_can_be_cancelled(server, user):
    api, browser = user
    job_id = submit_as(server, api, "exit_fifo")
    wait_state(server, job_id, ("running", "ok", "error"))
    time.sleep(3)  # the script is now blocked opening exit_code for writing
    assert_still_serving(server)
    assert browser.get(f"{server.url}/jobs/{job_id}", timeout=30).status_code == 200
    if server.job(job_id)["state"] == "running":
        assert api.delete(f"{server.url}/api/jobs/{job_id}", timeout=30).status_code == 200
    final = wait_state(server, job_id, ("ok", "error", "deleted"))
    assert final["state"] in ("deleted", "error"), final


def test_an_output_that_is_a_fifo_is_a_404_at_once(server, user):
    api, browser = user
    job_id = submit_as(server, api, "fifo_output")
    final = wait_state(server, job_id, ("ok", "error"))
    assert stat.S_ISFIFO(os.lstat(os.path.join(job_dir(server, job_id), "out.txt")).st_mode)
    assert final["state"] == "error", final  # a declared output that is not a file: not produced
    started = time.monotonic()
    assert api.get(f"{server.url}/api/jobs/{job_id}/outputs/out", timeout=30).status_code == 404
    assert browser.get(f"{server.url}/jobs/{job_id}", timeout=30).status_code == 200
    assert time.monotonic() - started < 15


# -- d. the processes' umask ---------------------------------------------------------------
def umask_of(pid: int) -> str:
    with open(f"/proc/{pid}/status") as fh:
        return re.search(r"^Umask:\s*(\d+)", fh.read(), re.M).group(1)


def test_every_server_process_runs_with_umask_077(server):
    with open(server.pidfile) as fh:
        master = int(fh.read().strip())
    handlers = server.http.get(f"{server.url}/api/handlers", timeout=30).json()["handlers"]
    current = [h for h in handlers if h["last_seen"] >= server.started_at]
    mules = [h["pid"] for h in current if h["name"].startswith("main.job-handlers.")]
    workers = [h["pid"] for h in current if h["name"].startswith("main.web.")]
    assert mules and workers, handlers
    with open(f"/proc/{master}/task/{master}/children") as fh:
        children = [int(pid) for pid in fh.read().split()]
    assert set(mules) | set(workers) <= set(children)
    umasks = {pid: umask_of(pid) for pid in [master, *children]}
    assert set(umasks.values()) == {"0077"}, umasks
