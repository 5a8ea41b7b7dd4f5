"""Staged jobs (default_file_action remote_transfer) against the real single-node Slurm
and Grid Engine (scripts/cluster/up) and a real uWSGI server.

The server's directory tree is mode 0700 (root's), and on Slurm the job runs as a fresh
account (sbatch --uid) that cannot read any of it: a server path that leaked into the
node side fails the job. The tool used reads a helper script from its own directory
($__tool_directory__), a configfile and an input dataset, so every kind of download is
exercised. Grid Engine (and the pbs runner's TORQUE wrappers) cannot run a root-submitted DRMAA job as another account (no
--uid), so there the job runs as root: the test checks the wrapper names no server path
instead.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import MACHINE
from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import REPO, UwsgiServer
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                       reason="needs root and useradd (a real system account)"),
    pytest.mark.xdist_group(MACHINE)]  # the test accounts, Grid Engine's one slot

HELPER_TOOL = """<tool id="staged_helper" name="Staged helper" version="1.0">
    <command><![CDATA[
bash '$__tool_directory__/helpers/shout.sh' '$input' '$prefix_file' > '$output'
    ]]></command>
    <configfiles>
        <configfile name="prefix_file">$prefix</configfile>
    </configfiles>
    <inputs>
        <param name="input" type="data" format="txt" label="Text"/>
        <param name="prefix" type="text" value="got:" label="Prefix"/>
    </inputs>
    <outputs>
        <data name="output" format="txt"/>
    </outputs>
</tool>
"""
HELPER_SCRIPT = """#!/bin/bash
# Each line of $1, upper-cased, after the text of the file $2.
prefix=$(cat "$2")
tr a-z A-Z < "$1" | while IFS= read -r line; do printf '%s %s\\n' "$prefix" "$line"; done
"""
# A large output (a line repeated to `size` bytes), written after `pause` seconds.
BIG_TOOL = """<tool id="staged_big" name="Staged big output" version="1.0">
    <command><![CDATA[
sleep $pause && yes '$line' | head -c $size > '$output'
    ]]></command>
    <inputs>
        <param name="line" type="text" value="staged" label="Line"/>
        <param name="size" type="integer" value="1000" min="1" label="Bytes"/>
        <param name="pause" type="integer" value="0" min="0" label="Seconds first"/>
    </inputs>
    <outputs>
        <data name="output" format="txt"/>
    </outputs>
</tool>
"""
RESTART_SIZE = 400 * 1024 * 1024
TORQUE_BIN = os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin")


def big_bytes_sha256(line: str, size: int) -> str:
    unit = (line + "\n").encode()
    digest, left = hashlib.sha256(), size
    block = unit * (1 << 20 // len(unit) + 1)
    while left > 0:
        piece = block[:min(left, len(block))]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


def job_conf(runner: str, account: str | None) -> str:
    if runner == "slurm":
        plugin = ('<plugin id="slurm" type="runner" '
                  'load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="2"/>')
        as_user = f" --uid={account} --gid={account}" if account else ""
        native = f"-p debug -c 1 --mem=200{as_user}"
    elif runner == "pbs":
        plugin = ('<plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner" '
                  f'workers="2"><param id="bin_dir">{TORQUE_BIN}</param></plugin>')
        native = "-l nodes=1:ppn=1"
    else:
        plugin = ('<plugin id="drmaa" type="runner" '
                  'load="galaxy.jobs.runners.drmaa:DRMAAJobRunner" workers="2"/>')
        native = "-q all.q"
    return f"""<job_conf>
    <plugins>{plugin}</plugins>
    <destinations default="staged">
        <destination id="staged" runner="{runner}">
            <param id="nativeSpecification">{native}</param>
            <param id="default_file_action">remote_transfer</param>
            <param id="staging_directory">/tmp</param>
        </destination>
        <destination id="staged_impatient" runner="{runner}">
            <param id="nativeSpecification">{native}</param>
            <param id="default_file_action">remote_transfer</param>
            <param id="staging_retry_seconds">3</param>
        </destination>
    </destinations>
    <tools><tool id="staged_away" destination="staged_impatient"/></tools>
</job_conf>"""


def make_server(directory: str, runner: str, account: str | None) -> UwsgiServer:
    """A server whose whole tree (tools included) is root's, mode 0700."""
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o700)
    tools = os.path.join(directory, "tools")
    shutil.copytree(os.path.join(REPO, "tools"), tools)
    os.makedirs(os.path.join(tools, "helpers"))
    with open(os.path.join(tools, "staged_helper.xml"), "w") as fh:
        fh.write(HELPER_TOOL)
    with open(os.path.join(tools, "helpers", "shout.sh"), "w") as fh:
        fh.write(HELPER_SCRIPT)
    with open(os.path.join(tools, "staged_big.xml"), "w") as fh:
        fh.write(BIG_TOOL)
    with open(os.path.join(tools, "staged_away.xml"), "w") as fh:
        fh.write(BIG_TOOL.replace('id="staged_big"', 'id="staged_away"'))
    srv = UwsgiServer(directory, job_conf=job_conf(runner, account), mules=1,
                      galaxy={"job_runner_monitor_sleep": 0.5, "tool_path": tools,
                              "galaxy_infrastructure_url": "PLACEHOLDER"})
    # The URL the node uses is the server's own: known once the server picked its port.
    with open(srv.config_file) as fh:
        text = fh.read()
    with open(srv.config_file, "w") as fh:
        fh.write(text.replace("PLACEHOLDER", srv.url))
    srv.runner = runner
    return srv


@pytest.fixture(scope="module")
def account():
    name = f"mts{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    yield name
    subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def slurm_server(tmp_path_factory, account):
    require_cluster("slurm")
    srv = make_server(str(tmp_path_factory.mktemp("staged_slurm")), "slurm", account)
    srv.account = account
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sge_server(tmp_path_factory):
    require_cluster("drmaa")
    srv = make_server(str(tmp_path_factory.mktemp("staged_sge")), "drmaa", None)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pbs_server(tmp_path_factory):
    require_cluster("pbs")
    srv = make_server(str(tmp_path_factory.mktemp("staged_pbs")), "pbs", None)
    srv.start()
    yield srv
    srv.stop()


def upload(srv, content: str, name="in.txt", fmt="txt") -> dict:
    answer = srv.http.post(f"{srv.url}/api/datasets", timeout=30,
                           json={"content": content, "name": name, "format": fmt})
    assert answer.status_code == 201, answer.text
    return answer.json()


def submit(srv, tool_id: str, params: dict) -> dict:
    answer = srv.http.post(f"{srv.url}/api/jobs", timeout=30,
                           json={"tool_id": tool_id, "params": params})
    assert answer.status_code == 201, answer.text
    return answer.json()


def display(srv, dataset_id: int) -> bytes:
    answer = srv.http.get(f"{srv.url}/api/datasets/{dataset_id}/display", timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.content


def job_directory(srv, job_id: int) -> str:
    return os.path.join(srv.directory, "database", "jobs", f"{job_id // 1000:03d}", str(job_id))


def cannot_read(account: str, path: str) -> bool:
    result = subprocess.run(["runuser", "-u", account, "--", "ls", path], capture_output=True)
    return result.returncode != 0


def run_helper(srv) -> dict:
    text = upload(srv, "alpha\nbeta\n")
    job = submit(srv, "staged_helper", {"input": {"src": "dataset", "id": text["id"]},
                                        "prefix": "node"})
    return srv.wait(job["id"], timeout=120)


def check_helper_job(srv, job: dict) -> None:
    assert job["state"] == "ok", (job, srv.log_tail())
    assert display(srv, job["outputs"]["output"]["id"]) == b"node ALPHA\nnode BETA\n"
    directory = job_directory(srv, job["id"])
    wrapper = open(os.path.join(directory, "staged.sh")).read()
    job_script = open(os.path.join(directory, "job.sh")).read()
    for text in (wrapper, job_script):
        assert srv.directory not in text and REPO not in text
    # The wrapper removes the scratch after it has sent exit_code, which ends the job.
    scratch = scratch_of(job)
    wait_for(lambda: not os.path.exists(scratch), timeout=30, what=f"the scratch {scratch} to go")
    # The results came over HTTP, with the wrapper's own log.
    assert os.path.isfile(os.path.join(directory, "staging.log"))
    assert open(os.path.join(directory, "stdout")).read() == ""


def scratch_of(job) -> str:
    """The node scratch a staged job's command names (its name carries a digest)."""
    found = re.search(r"/tmp/muleteer-job-[0-9]+-[0-9a-f]{12}", job["command_line"])
    assert found, job["command_line"]
    return found.group(0)


def test_a_staged_slurm_job_runs_as_an_account_that_cannot_read_the_server(slurm_server):
    srv = slurm_server
    assert cannot_read(srv.account, srv.directory)
    assert cannot_read(srv.account, os.path.join(srv.directory, "tools", "helpers"))
    job = run_helper(srv)
    check_helper_job(srv, job)
    assert job["runner"] == "slurm" and job["external_id"]
    user = subprocess.run(["scontrol", "show", "job", job["external_id"]], capture_output=True,
                          text=True).stdout
    assert not user or f"UserId={srv.account}(" in user  # ran as the account (if still listed)


def test_a_shipped_tool_staged_on_slurm(slurm_server):
    srv = slurm_server
    table = upload(srv, "b\t2\na\t10\nc\t1\n", "t.tsv", "tabular")
    job = srv.wait(submit(srv, "sort_tabular", {"input": {"src": "dataset", "id": table["id"]},
                                                "column": 2, "numeric": True})["id"], timeout=120)
    assert job["state"] == "ok", (job, srv.log_tail())
    assert display(srv, job["outputs"]["sorted"]["id"]) == b"c\t1\nb\t2\na\t10\n"
    # The job metrics' files, written on the node, came back with its results.
    metrics = srv.http.get(f"{srv.url}/api/jobs/{job['id']}/metrics", timeout=30)
    assert metrics.status_code == 200, metrics.text
    found = {(m["plugin"], m["name"]): m["raw_value"] for m in metrics.json()}
    assert 0 <= float(found[("core", "runtime_seconds")]) < 600, found
    assert found[("core", "galaxy_slots")] == "1", found


def test_the_staging_api_refuses_without_the_token(slurm_server):
    srv = slurm_server
    import requests
    job = submit(srv, "staged_big", {"size": 10, "pause": 0})
    base = f"{srv.url}/api/jobs/{job['id']}/staging"
    for method, path in [("get", "job/job.sh"), ("put", "files/outputs/x"),
                         ("get", "inputs/dataset_1.dat")]:
        for headers in ({}, {"Authorization": "Bearer " + "0" * 64}):
            answer = getattr(requests, method)(f"{base}/{path}", headers=headers, timeout=10)
            assert answer.status_code == 404, (method, path, answer.text)
    srv.wait(job["id"], timeout=120)


def uploading(srv, job_id, under: str = "") -> bool:
    """Whether the server is storing one of the job's uploads (under `under`) right now."""
    for _root, _dirs, names in os.walk(os.path.join(job_directory(srv, job_id), under)):
        if any(n.startswith(".muleteer-upload-") for n in names):
            return True
    return False


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_server_restart_during_the_upload_loses_nothing(slurm_server, how):
    """stop: a clean stop once the job has run (its uploads under way); kill: the whole
    server killed (SIGKILL) while it is writing the large output of the job."""
    srv = slurm_server
    job = submit(srv, "staged_big", {"line": how, "size": RESTART_SIZE, "pause": 1})
    deadline = time.monotonic() + 60
    while not srv.job(job["id"])["command_line"]:  # made when the handler prepares it
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.05)
    scratch = scratch_of(srv.job(job["id"]))
    deadline = time.monotonic() + 120
    if how == "stop":
        # The job has run once its exit code is in its scratch: the uploads start now.
        while not os.path.exists(os.path.join(scratch, "exit_code")):
            assert time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.05)
        srv.stop()
    else:
        while not uploading(srv, job["id"], "outputs"):
            assert time.monotonic() < deadline, srv.log_tail()
            assert not os.path.exists(os.path.join(job_directory(srv, job["id"]), "exit_code")), \
                "the upload was over before the test could kill the server"
            time.sleep(0.005)
        os.killpg(srv.process.pid, signal.SIGKILL)
        srv.process.wait(timeout=30)
        srv.process = None
        # What the killed server was writing is only ever a temporary file.
        assert not os.path.exists(os.path.join(job_directory(srv, job["id"]), "outputs",
                                               "output.txt"))
    time.sleep(3)
    srv.start()
    done = srv.wait(job["id"], timeout=300)
    assert done["state"] == "ok", (done, srv.log_tail())
    output = srv.http.get(f"{srv.url}/api/datasets/{done['outputs']['output']['id']}",
                          timeout=30).json()
    assert output["size"] == RESTART_SIZE
    assert output["sha256"] == big_bytes_sha256(how, RESTART_SIZE)
    log = open(os.path.join(job_directory(srv, job["id"]), "staging.log")).read()
    assert "retrying" in log, log  # the restart did fall in the uploads
    assert not uploading(srv, job["id"])  # the killed upload's temporary file was removed


def test_a_server_away_for_too_long_ends_the_job_error_saying_so(slurm_server):
    srv = slurm_server
    # The tool waits 10 s: the server's stop (graceful, slow on a busy machine) comes first.
    job_id = submit(srv, "staged_away", {"size": 100, "pause": 10})["id"]
    deadline = time.monotonic() + 60
    while not srv.job(job_id)["command_line"]:  # made when the handler prepares it
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.05)
    scratch = scratch_of(srv.job(job_id))
    while not os.path.exists(os.path.join(scratch, "job.sh")):
        assert time.monotonic() < deadline, srv.log_tail()
        time.sleep(0.1)
    srv.stop()
    # The tool ends (10 s), its uploads give up (staging_retry_seconds 3) and the wrapper
    # removes its scratch: only then does the server come back.
    deadline = time.monotonic() + 120
    while os.path.exists(scratch):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    srv.start()
    done = srv.wait(job_id, timeout=120)
    assert done["state"] == "error", done
    assert "results never arrived" in str(done), done
    assert not os.path.exists(os.path.join(job_directory(srv, job_id), "exit_code"))


def test_a_staged_grid_engine_job(sge_server):
    srv = sge_server
    job = run_helper(srv)
    check_helper_job(srv, job)
    assert job["runner"] == "drmaa"


def test_a_staged_pbs_job(pbs_server):
    """Slurm's TORQUE wrappers (as root: their qsub has no --uid)."""
    srv = pbs_server
    job = run_helper(srv)
    check_helper_job(srv, job)
    assert job["runner"] == "pbs"
