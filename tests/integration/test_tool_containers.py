"""Tools in containers, through a real uWSGI server with real podman on the image that
scripts/container-image builds from Debian's packages (GNU hello in it, not on the host):

- a tool whose <container> names the image runs `hello` on the local runner and on Slurm
  (there through docker_sudo), its <version_command> too; its input and its tool directory
  read-only, the server's files out of sight, HOME and TMPDIR in its working directory,
  GALAXY_SLOTS, GALAXY_MEMORY_MB and its own variables passed in; on Slurm in the job's
  own cgroup (docker_cgroup_parent $job_cgroup); its output read through the API;
- a tool without a container gets the destination's docker_default_container_id;
- require_container refuses a tool without one, before it starts, saying why;
- a cancelled job's container is killed and removed, on the local runner and on Slurm.

This machine's quirks (crun fails on its mixed cgroups, its rlimits are below podman's
defaults) are handled as an admin would: a containers.conf named by the destination's
<env id="CONTAINERS_CONF">, see docs/containers.md.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import REPO, UwsgiServer
from tests.support.waiting import wait_for

CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""

HELLO = r"""<tool id="{id}" name="Hello from the image" version="1.0" profile="21.01">
    <requirements>
        <requirement type="package">hello</requirement>
        <container type="docker">{image}</container>
    </requirements>
    <environment_variables>
        <environment_variable name="GREETING_STYLE">friendly</environment_variable>
    </environment_variables>
    <version_command>hello --version</version_command>
    <command detect_errors="exit_code"><![CDATA[
hello -g "Hello, \$(head -n 1 '$names')" > '$greeting' &&
echo "hello: \$(command -v hello)" &&
echo "input: \$(touch '$names' 2>/dev/null && echo writable || echo read-only)" &&
echo "tool directory: \$(touch '$__tool_directory__/probe' 2>/dev/null && echo writable ||
    echo read-only)" &&
echo "server database: \$(test -e '{database}' && echo visible || echo hidden)" &&
touch "\$HOME/h" "\$TMPDIR/t" && echo "home: \$HOME" && echo "tmp: \$TMPDIR" &&
echo "slots: \$GALAXY_SLOTS" && echo "memory: \${{GALAXY_MEMORY_MB:-none}}" &&
echo "style: \$GREETING_STYLE" && echo "umask: \$(umask)" &&
echo "cgroup: \$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)"
    ]]></command>
    <inputs><param name="names" type="data" format="txt"/></inputs>
    <outputs><data name="greeting" format="txt"/></outputs>
</tool>
"""
TOOLS = {
    "hello_default": """<tool id="hello_default" name="Hello, default image" version="1.0">
    <command>hello -g 'from the default image'</command><inputs/></tool>""",
    "host_only": """<tool id="host_only" name="On the host" version="1.0">
    <command>echo on the host</command><inputs/></tool>""",
}
SLEEP = """<tool id="{id}" name="Sleep in the image" version="1.0">
    <requirements><container type="docker">{image}</container></requirements>
    <command>echo started &amp;&amp; sleep 300</command><inputs/></tool>"""

JOB_CONF = """<job_conf>
    <plugins>
        <plugin id="local" type="runner" workers="3"
                load="galaxy.jobs.runners.local:LocalJobRunner"/>
        <plugin id="slurm" type="runner" workers="1"
                load="galaxy.jobs.runners.slurm:SlurmJobRunner"/>
    </plugins>
    <destinations default="in_container">
        <destination id="in_container" runner="local">
            <param id="docker_enabled">true</param>
            <param id="docker_cmd">podman</param>
            <param id="docker_default_container_id">{image}</param>
            <param id="local_slots">2</param>
            <env id="CONTAINERS_CONF">{conf}</env>
        </destination>
        <destination id="slurm_container" runner="slurm">
            <param id="nativeSpecification">-p debug -c 1 --mem=100</param>
            <param id="docker_enabled">true</param>
            <param id="docker_cmd">podman</param>
            <param id="docker_sudo">true</param>
            <param id="docker_sudo_cmd">sudo -n --preserve-env=CONTAINERS_CONF</param>
            <param id="require_container">true</param>
            <param id="docker_cgroup_parent">$job_cgroup</param>
            <env id="CONTAINERS_CONF">{conf}</env>
        </destination>
        <destination id="strict" runner="local">
            <param id="docker_enabled">true</param>
            <param id="docker_cmd">podman</param>
            <param id="require_container">true</param>
        </destination>
    </destinations>
    <tools>
        <tool id="hello_image_slurm" destination="slurm_container"/>
        <tool id="sleep_image_slurm" destination="slurm_container"/>
        <tool id="host_only" destination="strict"/>
    </tools>
</job_conf>"""


def require_image() -> str:
    """The image scripts/container-image builds, if podman has it; run_tests.sh builds it
    and sets MULETEER_REQUIRE_CONTAINERS=1, so that a missing one fails the run."""
    name = subprocess.run([os.path.join(REPO, "scripts", "container-image"), "--name"],
                          capture_output=True, text=True, check=True).stdout.strip()
    if shutil.which("podman") and shutil.which("sudo") and subprocess.run(
            ["podman", "image", "exists", name], capture_output=True, timeout=60).returncode == 0:
        return name
    message = (f"podman, sudo or the image {name} is missing: run scripts/container-install, "
               "scripts/container-image (and scripts/sudo-install) first")
    if os.environ.get("MULETEER_REQUIRE_CONTAINERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    image = require_image()
    require_cluster("slurm")
    directory = tmp_path_factory.mktemp("containers")
    conf = directory / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    tools = directory / "tools"
    tools.mkdir()
    database = directory / "server" / "database" / "universe.sqlite"
    for tool_id in ("hello_image", "hello_image_slurm"):
        (tools / f"{tool_id}.xml").write_text(HELLO.format(id=tool_id, image=image,
                                                           database=database))
    for tool_id, text in TOOLS.items():
        (tools / f"{tool_id}.xml").write_text(text)
    for tool_id in ("sleep_image", "sleep_image_slurm"):
        (tools / f"{tool_id}.xml").write_text(SLEEP.format(id=tool_id, image=image))
    srv = UwsgiServer(str(directory / "server"), mules=1,
                      job_conf=JOB_CONF.format(image=image, conf=conf),
                      galaxy={"tool_path": str(tools), "job_runner_monitor_sleep": 0.5})
    srv.image = image
    srv.start()
    yield srv
    srv.stop()


def submit(srv, tool_id, params=None) -> int:
    answer = srv.http.post(f"{srv.url}/api/jobs", json={"tool_id": tool_id,
                                                        "params": params or {}}, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def text_of(srv, path) -> str:
    answer = srv.http.get(f"{srv.url}{path}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def slurm_cgroups() -> bool:
    """Whether the test Slurm puts jobs in cgroups (scripts/cluster/slurm-up: task/cgroup
    where the machine's memory controller allows it)."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                         timeout=30).stdout
    return any(line.split("=", 1)[-1].strip() == "task/cgroup"
               for line in out.splitlines() if line.startswith("TaskPlugin "))


def containers_of(job_id) -> list[str]:
    """The job's containers podman still has, running or not."""
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"name=^muleteer-job-{job_id}-",
                          "--format", "{{.Names}}"], capture_output=True, text=True,
                         timeout=60).stdout
    return out.split()


def test_tools_run_in_their_containers_on_the_local_runner_and_on_slurm(server):
    assert shutil.which("hello") is None  # so the program can only come from the image
    names = server.http.post(f"{server.url}/api/datasets", timeout=30, json={
        "content": "world\n", "name": "names.txt", "format": "txt"}).json()
    data = {"names": {"src": "dataset", "id": names["id"]}}
    # All at once: the two runners and the three destinations work side by side.
    jobs = {"local": submit(server, "hello_image", data),
            "slurm": submit(server, "hello_image_slurm", data),
            "default": submit(server, "hello_default"),
            "refused": submit(server, "host_only")}
    done = {where: server.wait(job_id, timeout=90) for where, job_id in jobs.items()}

    for where, slots, memory in (("local", "2", "none"), ("slurm", "1", "100")):
        job = done[where]
        assert job["state"] == "ok", (job, text_of(server, f"/api/jobs/{job['id']}/stderr"))
        assert job["runner"] == ("local" if where == "local" else "slurm")
        # From the image: asked of the host, it says "hello: command not found".
        assert job["command_version"].startswith("hello (GNU Hello)"), job
        greeting = text_of(server, f"/api/jobs/{job['id']}/outputs/greeting")
        assert greeting == "Hello, world\n"
        seen = dict(line.split(": ", 1)
                    for line in text_of(server, f"/api/jobs/{job['id']}/stdout").splitlines())
        assert seen["hello"] == "/usr/bin/hello"
        assert seen["input"] == "read-only" and seen["tool directory"] == "read-only"
        assert seen["server database"] == "hidden"
        assert seen["home"].endswith(f"/{job['id']}/home"), seen
        assert seen["tmp"].endswith(f"/{job['id']}/tmp"), seen
        assert seen["slots"] == slots and seen["memory"] == memory, seen
        assert seen["style"] == "friendly"
        assert seen["umask"] == "0077"  # galaxy.yml's, as on the host (engines use 022)
        if where == "slurm" and slurm_cgroups():  # under the job's, its memory limit applies
            assert "/job_" in seen["cgroup"] and "/libpod-" in seen["cgroup"], seen
        # --rm: gone with the job (podman's own cleanup may finish a moment after).
        wait_for(lambda: containers_of(job["id"]) == [], timeout=30, interval=0.2,
                 what=f"job {job['id']}'s container to be removed")

    default = done["default"]
    assert default["state"] == "ok", default
    assert text_of(server, f"/api/jobs/{default['id']}/stdout") == "from the default image\n"

    refused = done["refused"]
    assert refused["state"] == "error", refused
    assert ("destination strict requires a container (require_container): tool host_only "
            "names none") in refused["info"], refused["info"]
    assert "running" not in [h["state"] for h in refused["history"]]


def test_a_cancelled_job_leaves_no_container_behind(server):
    """The container runs under podman's conmon, outside the job's processes: the job
    script's watchdog kills it when the local runner or Slurm kills the job (both at once)."""
    jobs = [submit(server, tool_id) for tool_id in ("sleep_image", "sleep_image_slurm")]
    for job_id in jobs:
        server.wait(job_id, states=("running",), timeout=90)
        deadline = time.monotonic() + 90  # each its own: podman starts slowly when busy
        while not containers_of(job_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert containers_of(job_id), f"job {job_id}'s container never started"
    for job_id in jobs:
        assert server.http.delete(f"{server.url}/api/jobs/{job_id}", timeout=10).status_code == 200
    for job_id in jobs:
        assert server.wait(job_id, timeout=30)["state"] == "deleted"
    deadline = time.monotonic() + 30
    while any(containers_of(j) for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [containers_of(j) for j in jobs] == [[], []], "a container outlived its cancelled job"
