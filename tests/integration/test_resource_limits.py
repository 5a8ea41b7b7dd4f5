"""Out of memory and walltime on every runner, and resubmission on them, through the HTTP
API of one real uWSGI server whose job configuration has all four runners: a job killed
for its memory (the kernel's OOM killer in a cgroup: local and Slurm, also under its
TORQUE wrappers; Grid Engine's h_vmem) or its walltime (local_walltime; Grid Engine's
h_rt) is resubmitted, after its delay, to a bigger destination and ends ok there.

Every job is submitted when the module starts and runs side by side with the others:
each test then waits for its own. A cluster that is not up skips its tests (and fails
them under run_tests.sh, which brings the clusters up)."""
import os
import subprocess
from datetime import datetime

import pytest

from muleteer import local_limits
from tests.conftest import MACHINE
from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import UwsgiServer

pytestmark = pytest.mark.xdist_group(MACHINE)  # Grid Engine's slot(s): one module at a time

TORQUE_BIN = os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin")
DELAY = 2  # seconds a resubmitted attempt waits

# Holds `mb` MB (every page written) in `procs` processes for `hold` seconds: over a cgroup
# limit the kernel kills the biggest one; under h_vmem each process stays below the
# per-process limit while their sum is over it, so Grid Engine kills the job.
HOG = """import os, sys, time
mb, procs, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
each = mb // procs * 1024 * 1024
children = []
for _ in range(procs - 1):
    pid = os.fork()
    if pid == 0:
        block = bytearray(b"x") * each
        time.sleep(hold)
        os._exit(0)
    children.append(pid)
block = bytearray(b"x") * each
time.sleep(hold)
for pid in children:
    if os.waitpid(pid, 0)[1]:
        sys.exit("a process of the job was killed")
print("held %d MB in %d process(es)" % (mb, procs))
"""
HOG_TOOL = """<tool id="{id}" name="Hold memory" version="1.0.0">
    <command detect_errors="exit_code">python3 '$__tool_directory__/hog.py' $mb $procs $hold</command>
    <inputs>
        <param name="mb" type="integer" value="300" min="1" max="4000"/>
        <param name="procs" type="integer" value="1" min="1" max="8"/>
        <param name="hold" type="float" value="1" min="0" max="60"/>
    </inputs>
</tool>
"""
NAP_TOOL = """<tool id="{id}" name="Sleep" version="1.0.0">
    <command detect_errors="exit_code">sleep $seconds &amp;&amp; echo rested</command>
    <inputs><param name="seconds" type="float" value="1" min="0" max="600"/></inputs>
</tool>
"""
TOOLS = {"hog_local": HOG_TOOL, "hog_slurm": HOG_TOOL, "hog_pbs": HOG_TOOL, "hog_sge": HOG_TOOL,
         "nap_local": NAP_TOOL, "nap_sge": NAP_TOOL, "wide_local": NAP_TOOL}

JOB_CONF = f"""<job_conf>
    <plugins>
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="2"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="2"/>
        <plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner" workers="2">
            <param id="bin_dir">{TORQUE_BIN}</param></plugin>
        <plugin id="drmaa" type="runner" load="galaxy.jobs.runners.drmaa:DRMAAJobRunner" workers="2"/>
    </plugins>
    <destinations default="local_big">
        <destination id="local_small" runner="local">
            <param id="local_memory_limit">100M</param>
            <resubmit condition="memory_limit_reached" destination="local_big" delay="{DELAY}"/>
        </destination>
        <destination id="local_big" runner="local"><param id="local_memory_limit">1G</param></destination>
        <destination id="local_short" runner="local">
            <param id="local_walltime">00:00:02</param>
            <resubmit condition="walltime_reached" destination="local_long" delay="{DELAY}"/>
        </destination>
        <destination id="local_long" runner="local"><param id="local_walltime">60</param></destination>
        <destination id="local_wide" runner="local"><param id="local_slots">3</param></destination>
        <destination id="slurm_small" runner="slurm">
            <param id="nativeSpecification">-p debug --mem=100</param>
            <resubmit condition="memory_limit_reached" destination="slurm_big" delay="{DELAY}"/>
        </destination>
        <destination id="slurm_big" runner="slurm"><param id="nativeSpecification">-p debug --mem=600</param></destination>
        <destination id="pbs_small" runner="pbs">
            <param id="Resource_List">nodes=1:ppn=1,mem=100mb</param>
            <resubmit condition="memory_limit_reached" destination="pbs_big" delay="{DELAY}"/>
        </destination>
        <destination id="pbs_big" runner="pbs"><param id="Resource_List">nodes=1:ppn=1,mem=600mb</param></destination>
        <destination id="sge_small" runner="drmaa">
            <param id="nativeSpecification">-q all.q -l h_vmem=200M</param>
            <resubmit condition="memory_limit_reached" destination="sge_big" delay="{DELAY}"/>
        </destination>
        <destination id="sge_big" runner="drmaa"><param id="nativeSpecification">-q all.q -l h_vmem=1G</param></destination>
        <destination id="sge_short" runner="drmaa">
            <param id="nativeSpecification">-q all.q -l h_rt=2</param>
            <resubmit condition="walltime_reached" destination="sge_long" delay="{DELAY}"/>
        </destination>
        <destination id="sge_long" runner="drmaa"><param id="nativeSpecification">-q all.q</param></destination>
    </destinations>
    <tools>
        <tool id="hog_local" destination="local_small"/>
        <tool id="nap_local" destination="local_short"/>
        <tool id="wide_local" destination="local_wide"/>
        <tool id="hog_slurm" destination="slurm_small"/>
        <tool id="hog_pbs" destination="pbs_small"/>
        <tool id="hog_sge" destination="sge_small"/>
        <tool id="nap_sge" destination="sge_short"/>
    </tools>
</job_conf>"""

# Each test's job: (runner that must be up, tool, params).
JOBS = {
    "local_memory": ("local", "hog_local", {"mb": 300, "hold": 0.5}),
    # Naps well past their walltimes: a kill that comes late under load still comes first.
    "local_walltime": ("local", "nap_local", {"seconds": 15}),
    "local_too_wide": ("local", "wide_local", {"seconds": 0}),
    "slurm_memory": ("slurm", "hog_slurm", {"mb": 300, "hold": 0.5}),
    "pbs_memory": ("pbs", "hog_pbs", {"mb": 300, "hold": 0.5}),
    # 2 x 120 MB: each process well under h_vmem=200M (its per-process limit), the sum over,
    # held long enough for execd's sampling of the sum to see it on a loaded machine.
    "sge_memory": ("drmaa", "hog_sge", {"mb": 240, "procs": 2, "hold": 8}),
    # h_rt=2 kills after 3 s of wallclock (measured).
    "sge_walltime": ("drmaa", "nap_sge", {"seconds": 15}),
}


def _up(runner: str) -> bool:
    if runner == "local":
        return True
    try:
        require_cluster(runner)
        return True
    except (pytest.skip.Exception, pytest.fail.Exception):
        return False


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The server, and every test's job, submitted at once: {name: job id}."""
    directory = tmp_path_factory.mktemp("limits")
    tools = directory / "tools"
    tools.mkdir()
    (tools / "hog.py").write_text(HOG)
    for tool_id, text in TOOLS.items():
        (tools / f"{tool_id}.xml").write_text(text.format(id=tool_id))
    srv = UwsgiServer(str(directory / "srv"), job_conf=JOB_CONF, mules=2,
                      galaxy={"tool_path": str(tools), "job_runner_monitor_sleep": 0.5})
    srv.start()
    try:
        submitted = {name: srv.submit(tool, **params)["id"]
                     for name, (runner, tool, params) in JOBS.items() if _up(runner)}
        yield srv, submitted
    finally:
        srv.stop()
        _no_grid_engine_job_left(srv)


def _no_grid_engine_job_left(srv):
    """Grid Engine has few slots: a job of ours left behind blocks every later test."""
    if not os.environ.get("SGE_ROOT"):
        return
    listed = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True).stdout
    ours = [line.split()[0] for line in listed.splitlines()[2:]
            if line.split() and srv.directory in _job_directory(line.split()[0])]
    for job_id in ours:
        subprocess.run(["qdel", job_id], capture_output=True)


def _job_directory(sge_id: str) -> str:
    out = subprocess.run(["qstat", "-j", sge_id], capture_output=True, text=True).stdout
    return next((line.split(None, 1)[1] for line in out.splitlines()
                 if line.startswith("cwd:")), "")


def job_of(jobs, name: str, timeout: float = 120) -> dict:
    srv, submitted = jobs
    runner = JOBS[name][0]
    if name not in submitted:
        require_cluster(runner)  # skips, or fails under run_tests.sh, saying why
    return srv.wait(submitted[name], timeout=timeout)


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def assert_resubmitted(job: dict, reason: str, first: str, second: str, says: str) -> None:
    """Attempt 1 at `first` ended for `reason` (its words in the history), attempt 2 waited
    its delay, then ran at `second` and ended ok."""
    assert job["state"] == "ok", job
    assert job["attempt"] == 2 and job["destination"] == second, job
    states = [h["state"] for h in job["history"]]
    assert states == ["new", "queued", "running", "new", "queued", "running", "ok"], states
    resubmission = job["history"][3]
    assert resubmission["info"].startswith(f"attempt 1 failed ({reason}: "), resubmission
    assert says in resubmission["info"], resubmission["info"]
    assert f"resubmitted to {second}, not before {DELAY} s from now" in resubmission["info"]
    waited = (_time(job["history"][4]["time"]) - _time(resubmission["time"])).total_seconds()
    assert waited >= DELAY - 0.05, (waited, job["history"])
    assert first != second


def test_local_a_job_over_its_memory_is_killed_and_resubmitted_bigger(jobs):
    job = job_of(jobs, "local_memory")
    assert_resubmitted(job, "memory_limit_reached", "local_small", "local_big",
                       "memory limit reached (local: local_memory_limit 100M: the kernel's "
                       "OOM killer killed")
    srv, _ = jobs
    assert srv.http.get(f"{srv.url}/api/jobs/{job['id']}/stdout").text == \
        "held 300 MB in 1 process(es)\n"
    key = local_limits.server_key(os.path.join(srv.directory, "database", "jobs"))
    assert local_limits.job_cgroups(key, job["id"]) == []  # removed after each attempt


def test_local_a_job_past_its_walltime_is_stopped_and_resubmitted_longer(jobs):
    job = job_of(jobs, "local_walltime")
    assert_resubmitted(job, "walltime_reached", "local_short", "local_long",
                       "walltime reached (local_walltime 00:00:02)")
    first_run = (_time(job["history"][3]["time"]) - _time(job["history"][2]["time"]))
    # Stopped at its walltime (2 s), not left to finish its 15 s nap.
    assert 2 <= first_run.total_seconds() < 12, job["history"]


def test_local_a_job_asking_more_cores_than_the_runner_has_fails_saying_so(jobs):
    job = job_of(jobs, "local_too_wide", timeout=30)
    assert job["state"] == "error", job
    assert "local_slots=3 is more than the 2 cores the local runner 'local' may use" \
        in job["info"], job["info"]


def test_slurm_a_job_over_its_mem_is_oom_killed_and_resubmitted_bigger(jobs):
    job = job_of(jobs, "slurm_memory")
    assert_resubmitted(job, "memory_limit_reached", "slurm_small", "slurm_big",
                       "memory limit reached (slurm: OUT_OF_MEMORY (OutOfMemory)); the job "
                       "script exited with 137")


def test_pbs_a_job_over_its_mem_is_oom_killed_and_resubmitted_bigger(jobs):
    job = job_of(jobs, "pbs_memory")
    assert_resubmitted(job, "memory_limit_reached", "pbs_small", "pbs_big",
                       "oom-kill event")


def test_grid_engine_a_job_over_h_vmem_is_killed_and_resubmitted_bigger(jobs):
    job = job_of(jobs, "sge_memory")
    assert_resubmitted(job, "memory_limit_reached", "sge_small", "sge_big",
                       "memory limit reached (drmaa: killed by signal SIGKILL; max vmem")


def test_grid_engine_a_job_past_h_rt_is_killed_and_resubmitted_longer(jobs):
    job = job_of(jobs, "sge_walltime")
    assert_resubmitted(job, "walltime_reached", "sge_short", "sge_long",
                       "walltime reached (drmaa: killed by signal SIGKILL after")
