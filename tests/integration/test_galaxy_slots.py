"""GALAXY_SLOTS, GALAXY_MEMORY_MB and GALAXY_MEMORY_MB_PER_SLOT as a tool sees them: what
its scheduler gave the job (Slurm, Slurm under its TORQUE wrappers, Grid Engine), or what
its destination grants on the local runner (local_slots), through a real uWSGI server."""
import os

import pytest

from tests.conftest import MACHINE
from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import UwsgiServer

pytestmark = pytest.mark.xdist_group(MACHINE)  # Grid Engine has one slot

TORQUE_BIN = os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin")

TOOL = r"""<tool id="print_resources_{destination}" name="Print resources" version="1.0" profile="21.01">
    <command detect_errors="exit_code"><![CDATA[
echo "slots=\${GALAXY_SLOTS} configured=\${GALAXY_SLOTS_CONFIGURED:-no} mb=\${GALAXY_MEMORY_MB:-none} per_slot=\${GALAXY_MEMORY_MB_PER_SLOT:-none}"
    ]]></command>
    <inputs/>
</tool>
"""

JOB_CONF_TEMPLATE = f"""<job_conf>
    <plugins>
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="2"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="1"/>
        <plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner" workers="1">
            <param id="bin_dir">{TORQUE_BIN}</param></plugin>
        <plugin id="drmaa" type="runner" load="galaxy.jobs.runners.drmaa:DRMAAJobRunner" workers="1"/>
    </plugins>
    <destinations default="local">
        <destination id="local" runner="local"/>
        <destination id="local_two" runner="local"><param id="local_slots">2</param></destination>
        <destination id="slurm_two" runner="slurm">
            <param id="nativeSpecification">-p debug -c 2 --mem=300</param></destination>
        <destination id="slurm_per_cpu" runner="slurm">
            <param id="nativeSpecification">-p debug -c 2 --mem-per-cpu=120</param></destination>
        <destination id="torque_two" runner="pbs">
            <param id="Resource_List">nodes=1:ppn=2,mem=200mb,walltime=00:05:00</param></destination>
        <destination id="sge" runner="drmaa"><param id="nativeSpecification">-q all.q</param></destination>
    </destinations>
    <tools>
{{tools}}
    </tools>
</job_conf>"""

EXPECTED = {
    "local": "slots=1 configured=no mb=none per_slot=none",
    "local_two": "slots=2 configured=1 mb=none per_slot=none",
    "slurm_two": "slots=2 configured=1 mb=300 per_slot=150",
    "slurm_per_cpu": "slots=2 configured=1 mb=240 per_slot=120",
    "torque_two": "slots=2 configured=1 mb=200 per_slot=100",
    "sge": "slots=1 configured=1 mb=none per_slot=none",
}


JOB_CONF = JOB_CONF_TEMPLATE.replace("{tools}", "\n".join(
    f'        <tool id="print_resources_{d}" destination="{d}"/>' for d in EXPECTED))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    for runner in ("slurm", "pbs", "drmaa"):
        require_cluster(runner)
    directory = tmp_path_factory.mktemp("slots")
    tools = directory / "tools"
    tools.mkdir()
    for destination in EXPECTED:  # one tool per destination: the job conf maps each
        (tools / f"print_resources_{destination}.xml").write_text(
            TOOL.replace("{destination}", destination))
    srv = UwsgiServer(str(directory / "server"), job_conf=JOB_CONF, mules=1,
                      galaxy={"tool_path": str(tools), "job_runner_monitor_sleep": 0.5})
    srv.start()
    yield srv
    srv.stop()


def test_each_destination_gives_its_slots_and_memory(server):
    """One job per destination, all at once; each prints what it was given."""
    ids = {d: server.submit(f"print_resources_{d}")["id"] for d in EXPECTED}
    for destination, job_id in ids.items():
        job = server.wait(job_id, timeout=90)
        assert job["state"] == "ok", job
        assert job["destination"] == destination
        out = server.http.get(f"{server.url}/api/jobs/{job_id}/stdout", timeout=10).text
        assert out.strip() == EXPECTED[destination], (destination, out)
