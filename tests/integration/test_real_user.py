"""Jobs as their real users, end to end: a uWSGI server running as its own account
(not root), real accounts made with useradd, the root scripts through sudo with the
project's sudoers example, on the local runner, Slurm and PBS (Slurm's TORQUE wrappers).

A user with no usable account is refused at submission; the jobs of two users run as
their two accounts (`id -un` inside the job), read their inputs (per-job copies), and
can read neither the other's datasets nor job directories; a cancel kills the job as its
user; a restarted server finishes jobs that ran on meanwhile. Grid Engine's DRMAA runner
goes through Galaxy's two DRMAA scripts."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import requests

from tests.conftest import MACHINE
from tests.support.clusters import require_cluster
from tests.support.real_user_site import make_site
from tests.support.uwsgi_server import UwsgiServer

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("sudo"),
        reason="needs root, useradd and sudo (real system accounts; scripts/sudo-install)"),
    pytest.mark.xdist_group(MACHINE)]  # the test accounts, sudoers, Grid Engine's one slot

TORQUE_BIN = os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin")
TOOLS = {
    "whoami_cat": """<tool id="whoami_cat" name="Who runs me" version="1.0" profile="21.01">
  <command>id -un > '$out' &amp;&amp; cat '$input' >> '$out'</command>
  <inputs><param name="input" type="data" format="txt"/></inputs>
  <outputs><data name="out" format="txt"/></outputs>
</tool>""",
    "peek": """<tool id="peek" name="Peek at a path" version="1.0" profile="21.01">
  <command>if cat -- '$path' > /dev/null 2>&amp;1 || ls -- '$path' > /dev/null 2>&amp;1;
then echo READ > '$out'; else echo DENIED > '$out'; fi</command>
  <inputs><param name="path" type="text"/></inputs>
  <outputs><data name="out" format="txt"/></outputs>
</tool>""",
    "filler": """<tool id="filler" name="Fill the disk" version="1.0" profile="21.01">
  <command>head -c 3000000 /dev/zero > big &amp;&amp; sleep 120 &amp;&amp; id -un > '$out'</command>
  <inputs/>
  <outputs><data name="out" format="txt"/></outputs>
</tool>""",
    "sleeper": """<tool id="sleeper" name="Sleep" version="1.0" profile="21.01">
  <command>id -un > '$out' &amp;&amp; sleep $seconds &amp;&amp; echo slept >> '$out'</command>
  <inputs><param name="seconds" type="integer" value="1"/></inputs>
  <outputs><data name="out" format="txt"/></outputs>
</tool>""",
}
DESTINATIONS = {
    "local": '<destination id="here" runner="local"/>',
    "slurm": '<destination id="here" runner="slurm"><param id="nativeSpecification">-p debug -c 1 --mem=100</param></destination>',
    "pbs": '<destination id="here" runner="pbs"><param id="Resource_List">nodes=1:ppn=1,walltime=00:10:00</param></destination>',
    "drmaa": '<destination id="here" runner="drmaa"><param id="nativeSpecification">-q all.q</param></destination>',
}
PLUGINS = {
    "local": '<plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="2"/>',
    "slurm": '<plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="2"/>',
    "pbs": f'<plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner" workers="2"><param id="bin_dir">{TORQUE_BIN}</param></plugin>',
    "drmaa": '<plugin id="drmaa" type="runner" load="galaxy.jobs.runners.drmaa:DRMAAJobRunner" workers="2"/>',
}


# The same destinations, for nodes without the shared disk (a job left behind by a failed
# test gives up on its server within 20 s, not holding a slot of the one-node clusters).
STAGED = {
    "slurm": '<destination id="here" runner="slurm"><param id="nativeSpecification">-p debug -c 1 --mem=100</param><param id="default_file_action">remote_transfer</param><param id="staging_retry_seconds">20</param></destination>',
    "drmaa": '<destination id="here" runner="drmaa"><param id="nativeSpecification">-q all.q</param><param id="default_file_action">remote_transfer</param><param id="staging_retry_seconds">20</param></destination>',
    "pbs": '<destination id="here" runner="pbs"><param id="Resource_List">nodes=1:ppn=1,walltime=00:10:00</param><param id="default_file_action">remote_transfer</param><param id="staging_retry_seconds">20</param></destination>',
}


def job_conf(runner: str, limits: str = "", staged: bool = False) -> str:
    return (f"<job_conf><plugins>{PLUGINS[runner]}</plugins>"
            f'<destinations default="here">{(STAGED if staged else DESTINATIONS)[runner]}'
            f"</destinations>"
            f"{limits}</job_conf>")


def root_config() -> dict:
    """The DRM settings the scripts pass to the user's clients (their environment is reset)."""
    programs = ["/bin/bash", "/bin/kill", "/usr/bin/kill", "/usr/bin/du",
                shutil.which("sbatch") or "/usr/bin/sbatch",
                shutil.which("scancel") or "/usr/bin/scancel",
                os.path.join(TORQUE_BIN, "qsub"), os.path.join(TORQUE_BIN, "qdel")]
    env = [f"{name}={os.environ[name]}" for name in ("SLURM_CONF", "SGE_ROOT", "SGE_CELL",
                                                     "GLIBC_TUNABLES") if os.environ.get(name)]
    config = {"user_programs": ", ".join(programs)}
    if os.environ.get("DRMAA_LIBRARY_PATH"):
        config["drmaa_library_path"] = os.environ["DRMAA_LIBRARY_PATH"]
    if env:
        config["drm_environment"] = ", ".join(env)
    return config


@pytest.fixture(scope="module")
def site():
    made = make_site(users=2, config=root_config())
    tools = os.path.join(made.base, "tools")
    os.mkdir(tools, 0o755)
    for name, text in TOOLS.items():
        with open(os.path.join(tools, f"{name}.xml"), "w") as handle:
            handle.write(text)
        os.chmod(os.path.join(tools, f"{name}.xml"), 0o644)
    made.tools = tools
    yield made
    made.remove()


@pytest.fixture(scope="module", params=["local", "slurm", "pbs", "drmaa"])
def server(request, site):
    runner = request.param
    if runner != "local":
        require_cluster(runner)
    directory = os.path.join(site.server_directory, runner)
    srv = UwsgiServer(directory, mules=1, job_conf=job_conf(runner), env=site.env(),
                      run_as=(site.server.uid, site.server.gid),
                      galaxy={**site.galaxy_settings(runner), "tool_path": site.tools,
                              "job_runner_monitor_sleep": 0.5})
    srv.runner = runner
    srv.start()
    yield srv
    srv.stop()


def user_session(server, email):
    """A session of the user `email` (made on first use)."""
    cache = server.__dict__.setdefault("users", {})
    if email not in cache:
        user = server.http.post(f"{server.url}/api/users", timeout=30,
                                json={"email": email, "password": "a good password"}).json()
        key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys",
                               timeout=30).json()["key"]
        session = requests.Session()
        session.headers["x-api-key"] = key
        cache[email] = session
    return cache[email]


def submit(server, session, tool_id, params):
    answer = session.post(f"{server.url}/api/jobs", timeout=30,
                          json={"tool_id": tool_id, "params": params})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def upload(server, session, content):
    answer = session.post(f"{server.url}/api/datasets", timeout=30,
                          json={"content": content, "name": "in.txt", "format": "txt"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def output_text(server, session, job):
    dataset = job["outputs"]["out"]["id"]
    return session.get(f"{server.url}/api/datasets/{dataset}/display", timeout=30).text


def finished(server, session, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = session.get(f"{server.url}/api/jobs/{job_id}", timeout=30).json()
        if job["state"] in ("ok", "error", "deleted"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s\n{server.log_tail()}")


def test_two_users_jobs_run_as_their_accounts_on_their_own_inputs(server, site):
    jobs = {}
    for account in site.users:
        session = user_session(server, f"{account.name}@example.org")
        dataset = upload(server, session, f"data of {account.name}\n")
        jobs[account.name] = (session, submit(server, session, "whoami_cat",
                                              {"input": {"src": "dataset", "id": dataset["id"]}}))
    for name, (session, job_id) in jobs.items():
        job = finished(server, session, job_id)
        assert job["state"] == "ok", (job, server.log_tail())
        assert output_text(server, session, job) == f"{name}\ndata of {name}\n"
        # Its directory is the server's again, and nothing in it is anyone else's.
        directory = os.path.join(site.jobs, server.runner, "000", str(job_id))
        owners = {os.lstat(os.path.join(root, entry)).st_uid
                  for root, dirs, names in os.walk(directory) for entry in dirs + names}
        assert owners <= {site.server.uid}, owners


def test_a_user_cannot_read_another_users_datasets_or_job_directories(server, site):
    alice, bob = site.users
    alice_session = user_session(server, f"{alice.name}@example.org")
    bob_session = user_session(server, f"{bob.name}@example.org")
    dataset = upload(server, alice_session, "alice's secret\n")
    running = submit(server, alice_session, "sleeper", {"seconds": 300})  # cancelled below
    directory = os.path.join(site.jobs, server.runner, "000", str(running))
    deadline = time.monotonic() + 60
    while os.lstat(directory).st_uid != alice.uid if os.path.lexists(directory) else True:
        assert time.monotonic() < deadline, "alice's job directory was never handed to her"
        time.sleep(0.2)
    dataset_file = os.path.join(server.directory, "database", "files", "000",
                                f"dataset_{dataset['id']}.dat")
    assert os.path.isfile(dataset_file)
    for target in (dataset_file, directory, os.path.join(directory, "inputs"),
                   os.path.join(server.directory, "database", "universe.sqlite")):
        job = finished(server, bob_session, submit(server, bob_session, "peek", {"path": target}))
        assert job["state"] == "ok", job
        assert output_text(server, bob_session, job) == "DENIED\n", target
    alice_session.delete(f"{server.url}/api/jobs/{running}", timeout=30)
    assert finished(server, alice_session, running)["state"] == "deleted"


def test_a_cancel_kills_the_job_as_its_user(server, site):
    alice = site.users[0]
    session = user_session(server, f"{alice.name}@example.org")
    job_id = submit(server, session, "sleeper", {"seconds": 300})
    await_processes(server, alice, "sleep 300", running=True, timeout=60)
    assert session.delete(f"{server.url}/api/jobs/{job_id}", timeout=30).status_code in (200, 202)
    assert finished(server, session, job_id)["state"] == "deleted"
    await_processes(server, alice, "sleep 300", running=False, timeout=30)


def test_a_restarted_server_finishes_what_ran_meanwhile(server, site):
    bob = site.users[1]
    session = user_session(server, f"{bob.name}@example.org")
    job_id = submit(server, session, "sleeper", {"seconds": 4})
    await_processes(server, bob, "sleep 4", running=True, timeout=60)
    server.stop()
    time.sleep(5)  # it ends while no handler watches it
    server.start()
    session = user_session(server, f"{bob.name}@example.org")
    job = finished(server, session, job_id)
    assert job["state"] == "ok", (job, server.log_tail())
    assert output_text(server, session, job) == f"{bob.name}\nslept\n"


def await_processes(server, account, text: str, running: bool, timeout: float) -> None:
    """Wait until `account` runs (or no longer runs) a process whose command line has
    `text`: the job started, or its cancel killed it."""
    deadline = time.monotonic() + timeout
    while bool(user_processes(account, text)) != running:
        assert time.monotonic() < deadline, (
            f"{'the job never started' if running else 'its processes outlived the cancel'}"
            f"\n{server.log_tail()}")
        time.sleep(0.3)


def user_processes(account, text: str) -> list[int]:
    """Pids of `account`'s processes whose command line contains `text`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry.path).st_uid != account.uid:
                continue
            with open(os.path.join(entry.path, "cmdline"), "rb") as handle:
                if text.encode() in handle.read().replace(b"\0", b" "):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_users_without_a_usable_account_are_refused_at_submission(site):
    directory = os.path.join(site.server_directory, "refusals")
    srv = UwsgiServer(directory, mules=1, job_conf=job_conf("local"), env=site.env(),
                      run_as=(site.server.uid, site.server.gid),
                      galaxy={**site.galaxy_settings("refusals"), "tool_path": site.tools})
    srv.start()
    try:
        for email, words in (("nosuchaccount1@example.org", "no system account 'nosuchaccount1'"),
                             ("root@example.org", "below real_system_min_uid"),
                             ("daemon@example.org", "below real_system_min_uid")):
            answer = user_session(srv, email).post(
                f"{srv.url}/api/jobs", timeout=30, json={"tool_id": "sleeper",
                                                         "params": {"seconds": 1}})
            assert answer.status_code == 403, answer.text
            assert answer.json()["field"] == "user" and words in answer.json()["error"]
        assert srv.http.get(f"{srv.url}/api/jobs", timeout=30).json()["total"] == 0
        # A mapping file instead of the email's local part.
        mapping = os.path.join(directory, "accounts")
        with open(mapping, "w") as handle:
            handle.write(f"mapped@example.org {site.users[0].name}\n")
        os.chown(mapping, site.server.uid, site.server.gid)
    finally:
        srv.stop()
    mapped = UwsgiServer(os.path.join(site.server_directory, "mapped"), mules=1,
                         job_conf=job_conf("local"), env=site.env(),
                         run_as=(site.server.uid, site.server.gid),
                         galaxy={**site.galaxy_settings("mapped"), "tool_path": site.tools,
                                 "real_system_username": mapping})
    mapped.start()
    try:
        session = user_session(mapped, "mapped@example.org")
        job = finished(mapped, session, submit(mapped, session, "sleeper", {"seconds": 0}))
        assert job["state"] == "ok", (job, mapped.log_tail())
        assert output_text(mapped, session, job) == f"{site.users[0].name}\nslept\n"
        refused = user_session(mapped, f"{site.users[0].name}@example.org").post(
            f"{mapped.url}/api/jobs", timeout=30, json={"tool_id": "sleeper", "params": {}})
        assert refused.status_code == 403 and "not in the account mapping" in refused.json()["error"]
    finally:
        mapped.stop()


def test_the_output_size_limit_measures_a_running_job_as_its_user(site):
    """The server cannot read a directory its user owns: it measures it as them."""
    srv = UwsgiServer(os.path.join(site.server_directory, "limits"), mules=1, env=site.env(),
                      job_conf=job_conf("local", '<limits><limit type="output_size">1000000'
                                                 '</limit></limits>'),
                      run_as=(site.server.uid, site.server.gid),
                      galaxy={**site.galaxy_settings("limits"), "tool_path": site.tools})
    srv.start()
    try:
        alice = site.users[0]
        session = user_session(srv, f"{alice.name}@example.org")
        job = finished(srv, session, submit(srv, session, "filler", {}), timeout=90)
        assert job["state"] == "error" and "output size over the limit" in job["info"], job
        # Killed as its user (SIGKILL after a grace): gone soon, not necessarily already.
        await_processes(srv, alice, "sleep 120", running=False, timeout=30)
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=sorted(STAGED))
def staged_server(request, site):
    """A server whose jobs run staged (the node never sees the server's disk) as their
    users, who cannot read the server's directory (its account's, mode 0700)."""
    runner = request.param
    require_cluster(runner)
    srv = UwsgiServer(os.path.join(site.server_directory, f"staged-{runner}"), mules=1,
                      job_conf=job_conf(runner, staged=True), env=site.env(),
                      run_as=(site.server.uid, site.server.gid),
                      galaxy={**site.galaxy_settings(f"staged-{runner}"),
                              "tool_path": site.tools, "job_runner_monitor_sleep": 0.5,
                              "galaxy_infrastructure_url": "PLACEHOLDER"})
    with open(srv.config_file) as handle:  # the node's URL: known once the port is
        text = handle.read()
    with open(srv.config_file, "w") as handle:
        handle.write(text.replace("PLACEHOLDER", srv.url))
    srv.runner = runner
    srv.start()
    yield srv
    srv.stop()


def test_staged_jobs_run_as_their_users_without_the_servers_disk(staged_server, site):
    srv = staged_server
    assert os.stat(site.server_directory).st_mode & 0o077 == 0  # nobody else gets in
    jobs = {}
    for account in site.users:
        session = user_session(srv, f"{account.name}@example.org")
        dataset = upload(srv, session, f"staged data of {account.name}\n")
        jobs[account.name] = (session, submit(srv, session, "whoami_cat",
                                              {"input": {"src": "dataset", "id": dataset["id"]}}))
    for name, (session, job_id) in jobs.items():
        job = finished(srv, session, job_id, timeout=120)
        assert job["state"] == "ok", f"{job['info']}\n{srv.log_tail()}"
        assert output_text(srv, session, job) == f"{name}\nstaged data of {name}\n"
        # The server's job directory was never the user's.
        directory = os.path.join(site.jobs, f"staged-{srv.runner}", "000", str(job_id))
        assert os.lstat(directory).st_uid == site.server.uid


def test_a_staged_job_is_cancelled_as_its_user(staged_server, site):
    srv, alice = staged_server, site.users[0]
    session = user_session(srv, f"{alice.name}@example.org")
    job_id = submit(srv, session, "sleeper", {"seconds": 300})
    await_processes(srv, alice, "sleep 300", running=True, timeout=90)
    session.delete(f"{srv.url}/api/jobs/{job_id}", timeout=30)
    assert finished(srv, session, job_id)["state"] == "deleted"
    await_processes(srv, alice, "sleep 300", running=False, timeout=60)
