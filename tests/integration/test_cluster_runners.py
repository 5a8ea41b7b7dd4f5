"""The cluster runners against the real single-node clusters (scripts/cluster/up),
through the HTTP API of a real uWSGI server: one server per runner."""
import os
import re
import subprocess
import time

import pytest

from tests.conftest import MACHINE
from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import UwsgiServer, free_port

pytestmark = pytest.mark.xdist_group(MACHINE)  # Grid Engine has one slot

TORQUE_BIN = os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin")

JOB_CONFS = {
    "slurm": """<job_conf>
    <plugins><plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="2"/></plugins>
    <destinations default="slurm_small">
        <destination id="slurm_small" runner="slurm"><param id="nativeSpecification">-p debug -c 1 --mem=100</param></destination>
        <destination id="slurm_bad" runner="slurm"><param id="nativeSpecification">-p nosuchpartition</param></destination>
    </destinations>
    <tools><tool id="noop" destination="slurm_bad"/></tools>
</job_conf>""",
    "pbs": f"""<job_conf>
    <plugins><plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner" workers="2">
        <param id="bin_dir">{TORQUE_BIN}</param></plugin></plugins>
    <destinations default="torque">
        <destination id="torque" runner="pbs"><param id="Resource_List">nodes=1:ppn=1,walltime=00:10:00</param></destination>
        <destination id="torque_legacy" url="pbs:///debug/-l nodes=1:ppn=1/"/>
        <destination id="torque_bad" runner="pbs"><param id="queue">nosuchqueue</param></destination>
    </destinations>
    <tools><tool id="noop" destination="torque_bad"/><tool id="cat_lines" destination="torque_legacy"/></tools>
</job_conf>""",
    "drmaa": """<job_conf>
    <plugins><plugin id="drmaa" type="runner" load="galaxy.jobs.runners.drmaa:DRMAAJobRunner" workers="2"/></plugins>
    <destinations default="sge">
        <destination id="sge" runner="drmaa"><param id="nativeSpecification">-q all.q</param></destination>
        <destination id="sge_legacy" url="drmaa://-q all.q/"/>
        <destination id="sge_bad" runner="drmaa"><param id="nativeSpecification">-q nosuchqueue</param></destination>
    </destinations>
    <tools><tool id="noop" destination="sge_bad"/><tool id="cat_lines" destination="sge_legacy"/></tools>
</job_conf>""",
}


def on_scheduler(runner, external_id):
    """The job's state on its scheduler, or "" once the scheduler no longer lists it."""
    if runner == "drmaa":
        result = subprocess.run(["qstat", "-j", external_id], capture_output=True, text=True)
        return "listed" if result.returncode == 0 else ""
    out = subprocess.run(["squeue", "-h", "-o", "%T", "-j", external_id.split(".")[0]],
                         capture_output=True, text=True).stdout.strip()
    return "" if out in ("CANCELLED", "COMPLETED", "COMPLETING") else out


@pytest.fixture(scope="module", params=sorted(JOB_CONFS))
def cluster_server(request, tmp_path_factory):
    runner = request.param
    require_cluster(runner)
    srv = UwsgiServer(str(tmp_path_factory.mktemp(runner)), job_conf=JOB_CONFS[runner], mules=2,
                      galaxy={"job_runner_monitor_sleep": 0.5})
    srv.runner = runner
    srv.start()
    yield srv
    srv.stop()


def stdout(srv, job_id):
    return srv.http.get(f"{srv.url}/api/jobs/{job_id}/stdout", timeout=10).text


def test_a_job_ends_ok_with_its_stdout(cluster_server):
    srv = cluster_server
    job = srv.wait(srv.submit("cat_lines", text="on the cluster", times=2)["id"], timeout=90)
    assert job["state"] == "ok", job
    assert job["exit_code"] == 0 and job["runner"] == srv.runner
    assert job["external_id"]
    assert stdout(srv, job["id"]) == "on the cluster\non the cluster\n"
    assert [h["state"] for h in job["history"]] == ["new", "queued", "running", "ok"]


def test_a_failing_job_ends_error_with_its_exit_code(cluster_server):
    srv = cluster_server
    job = srv.wait(srv.submit("fail", exit_code=3)["id"], timeout=90)
    assert job["state"] == "error", job
    assert job["exit_code"] == 3
    assert "exit code 3" in job["info"]


def test_a_cancelled_running_job_ends_deleted_and_leaves_the_scheduler(cluster_server):
    srv = cluster_server
    job = srv.submit("sleep", seconds=600)
    running = srv.wait(job["id"], states=("running",), timeout=90)
    assert srv.http.delete(f"{srv.url}/api/jobs/{job['id']}", timeout=10).status_code == 200
    assert srv.wait(job["id"], timeout=30)["state"] == "deleted"
    external_id = running["external_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = on_scheduler(srv.runner, external_id)
        if not out:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{external_id} still {out} on the scheduler")


def test_a_bad_native_specification_ends_error_with_the_schedulers_message(cluster_server):
    srv = cluster_server
    job = srv.wait(srv.submit("noop")["id"], timeout=60)
    assert job["state"] == "error", job
    expected = {"slurm": "invalid partition", "pbs": "nosuchqueue",
                "drmaa": "unknown queue"}[srv.runner]
    assert expected in job["info"].lower(), job["info"]
    assert "refused" in job["info"]


def test_a_job_survives_a_server_restart_while_it_runs(cluster_server):
    srv = cluster_server
    job = srv.submit("sleep", seconds=8)  # long enough to be seen running by a busy monitor
    running = srv.wait(job["id"], states=("running",), timeout=90)
    srv.stop()
    srv.start()
    final = srv.wait(job["id"], timeout=90)
    assert final["state"] == "ok", final
    assert final["external_id"] == running["external_id"]  # re-attached, not resubmitted
    assert stdout(srv, job["id"]) == "sleeping 8 s\ndone\n"


def test_a_scheduler_that_is_down_keeps_the_job_queued_then_gives_up_clearly(tmp_path):
    """Real sbatch, pointed at a controller port where nothing listens: the job stays
    queued with the reason shown while submission is retried, then ends error saying so."""
    require_cluster("slurm")
    real_conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    dead_conf = tmp_path / "slurm.conf"
    lines = [line for line in open(real_conf).read().splitlines()
             if not line.strip().lower().startswith("slurmctldport")]
    dead_conf.write_text("\n".join(lines + [f"SlurmctldPort={free_port()}"]) + "\n")
    conf = JOB_CONFS["slurm"].replace(
        'workers="2"/>', 'workers="2"><param id="submit_retries">2</param>'
                         '<param id="submit_retry_delay">1</param></plugin>')
    srv = UwsgiServer(str(tmp_path / "srv"), job_conf=conf, mules=1,
                      env={"SLURM_CONF": str(dead_conf)}).start()
    try:
        job = srv.submit("cat_lines", text="never runs")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = srv.job(job["id"])
            if seen["info"] and "retry" in seen["info"]:
                break
            time.sleep(0.2)
        assert seen["state"] == "queued", seen
        assert "slurm unavailable" in seen["info"], seen["info"]
        assert re.search(r"retry [12] of 2", seen["info"]), seen["info"]
        final = srv.wait(job["id"], timeout=90)
        assert final["state"] == "error"
        assert final["info"].startswith("gave up after 2 retries: slurm unavailable"), final["info"]
    finally:
        srv.stop()
