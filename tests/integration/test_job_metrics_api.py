"""Job metrics against a real server (one for the module) whose job_metrics_conf.xml enables
core, cgroup, hostname and uname: GET /api/jobs/N/metrics of a local job lists its runtime
and its peak memory (the local runner's wait4), the job page shows them, another user's
job is a 404, its owner sees the safe plugins and an admin all; a local job with a memory
limit and a Slurm job have their peak memory from their own cgroup."""
import os
import shutil

import pytest
import requests

from muleteer.job_metrics import PEAK_MEMORY_NAMES
from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import REPO, UwsgiServer

MIB = 2 ** 20
JOB_CONF = """<job_conf>
    <plugins>
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="2"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="1"/>
    </plugins>
    <destinations default="local">
        <destination id="local" runner="local"/>
        <destination id="local_limited" runner="local"><param id="local_memory_limit">500M</param></destination>
        <destination id="slurm" runner="slurm"><param id="nativeSpecification">-p debug -c 1 --mem=300</param></destination>
        <destination id="local_quiet" runner="local" metrics="false"/>
        <destination id="local_own" runner="local">
            <job_metrics><core/><env variables="MULETEER_METRICS_PROBE"/></job_metrics>
            <env id="MULETEER_METRICS_PROBE">set for this destination</env>
        </destination>
    </destinations>
    <tools>
        <tool id="allocate_quiet" destination="local_quiet"/>
        <tool id="allocate_own" destination="local_own"/>
        <tool id="allocate_slurm" destination="slurm"/>
        <tool id="allocate_limited" destination="local_limited"/>
    </tools>
</job_conf>"""
METRICS_CONF = """<?xml version="1.0"?>
<job_metrics>
    <core/>
    <cgroup/>
    <hostname/>
    <uname/>
</job_metrics>
"""
# bytes(...) * n: n MiB of data the process really touches (not zero pages left unmapped).
ALLOCATE = """<tool id="{id}" name="Allocate memory" version="1.0.0">
    <command>python3 -c 'b = bytes(range(256)) * ($mib * 4096); print(len(b))'</command>
    <inputs><param name="mib" type="integer" value="1" min="1" max="256"/></inputs>
</tool>
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("metrics"))
    tool_path = os.path.join(directory, "tools")
    shutil.copytree(os.path.join(REPO, "tools"), tool_path)
    for tool_id in ("allocate", "allocate_slurm", "allocate_limited", "allocate_quiet",
                    "allocate_own"):
        with open(os.path.join(tool_path, f"{tool_id}.xml"), "w") as fh:
            fh.write(ALLOCATE.format(id=tool_id))
    # Beside galaxy.yml: the default job_metrics_config_file.
    with open(os.path.join(directory, "job_metrics_conf.xml"), "w") as fh:
        fh.write(METRICS_CONF)
    srv = UwsgiServer(directory, job_conf=JOB_CONF, mules=1, processes=1,
                      galaxy={"tool_path": tool_path, "job_runner_monitor_sleep": 0.5}).start()
    yield srv
    srv.stop()


def make_user(server, email) -> requests.Session:
    user = server.http.post(f"{server.url}/api/users", timeout=10,
                            json={"email": email, "password": "a good password"}).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=10).json()["key"]
    session = requests.Session()
    session.headers["x-api-key"] = key
    return session


def submit(server, session, tool_id, **params) -> int:
    answer = session.post(f"{server.url}/api/jobs", timeout=30,
                          json={"tool_id": tool_id, "params": params})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def metrics_of(server, job_id, session=None) -> dict:
    answer = (session or server.http).get(f"{server.url}/api/jobs/{job_id}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    listed = answer.json()
    for metric in listed:  # Galaxy's shape: five strings
        assert sorted(metric) == ["name", "plugin", "raw_value", "title", "value"], metric
        assert all(isinstance(v, str) for v in metric.values()), metric
    return {(m["plugin"], m["name"]): m for m in listed}


def peak_memory(found: dict) -> int:
    peaks = [m for (plugin, name), m in found.items() if name in PEAK_MEMORY_NAMES]
    assert len(peaks) == 1, found  # one per job: the charts sum them
    return int(peaks[0]["raw_value"])


def test_a_local_jobs_metrics_list_its_runtime_and_peak_memory(server):
    alice, bob = make_user(server, "alice@metrics.org"), make_user(server, "bob@metrics.org")
    # More than the handler's own resident memory: a process spawned from the handler
    # starts with the handler's high-water mark in its ru_maxrss (the kernel carries it
    # over at exec), so only a figure above that one shows the job's own use.
    job_id = submit(server, alice, "allocate", mib=200)
    failing = submit(server, alice, "fail", exit_code=3)
    assert server.wait(job_id)["state"] == "ok", server.job(job_id)
    assert server.wait(failing)["state"] == "error"

    mine = metrics_of(server, job_id, alice)
    runtime = mine[("core", "runtime_seconds")]
    assert runtime["title"] == "Job Runtime (Wall Clock)"
    assert 0 < float(runtime["raw_value"]) < 60 and runtime["value"].endswith("seconds")
    assert mine[("core", "galaxy_slots")]["raw_value"] == "1"
    assert peak_memory(mine) >= 200 * MIB
    assert {plugin for plugin, _ in mine} == {"core", "cgroup"}  # the owner: safe plugins only
    # An admin sees every plugin's; a job that failed has its metrics too.
    everything = metrics_of(server, job_id)
    assert everything[("hostname", "hostname")]["value"] == os.uname().nodename
    assert everything[("uname", "uname")]["title"] == "Operating System"
    assert ("core", "runtime_seconds") in metrics_of(server, failing, alice)

    # Another user's job is a 404 exactly like a job that does not exist.
    theirs = bob.get(f"{server.url}/api/jobs/{job_id}/metrics", timeout=10)
    missing = bob.get(f"{server.url}/api/jobs/999999/metrics", timeout=10)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == {"error": f"no job {job_id}"}
    assert requests.get(f"{server.url}/api/jobs/{job_id}/metrics", timeout=10).status_code == 401

    page = alice.get(f"{server.url}/jobs/{job_id}", timeout=10)
    assert page.status_code == 200
    assert 'id="job-metrics"' in page.text and "Job Runtime (Wall Clock)" in page.text
    peak = next(m for (_, name), m in mine.items() if name in PEAK_MEMORY_NAMES)
    assert peak["value"].endswith(" MB") and f">{peak['value']}</dd>" in page.text
    assert "Operating System" not in page.text  # not the owner's to see
    assert "Operating System" in server.http.get(f"{server.url}/jobs/{job_id}", timeout=10).text


def test_a_slurm_jobs_peak_memory_comes_from_its_own_cgroup(server):
    require_cluster("slurm")
    job_id = submit(server, server.http, "allocate_slurm", mib=64)
    job = server.wait(job_id, timeout=90)
    assert job["state"] == "ok" and job["runner"] == "slurm", job
    found = metrics_of(server, job_id)
    assert peak_memory(found) >= 64 * MIB
    assert int(found[("cgroup", "memory.max_usage_in_bytes")]["raw_value"]) >= 64 * MIB
    # The job's own cgroup, not the machine's: its limit is the job's --mem=300.
    assert found[("cgroup", "memory.limit_in_bytes")]["raw_value"] == str(300 * MIB)
    assert found[("cgroup", "memory.limit_in_bytes")]["value"] == "300.0 MB"
    assert float(found[("core", "runtime_seconds")]["raw_value"]) > 0
    assert found[("core", "galaxy_slots")]["raw_value"] == "1"  # -c 1
    assert found[("core", "galaxy_memory_mb")]["raw_value"] == "300"  # --mem=300


def test_a_local_job_with_a_memory_limit_has_its_peak_from_its_own_cgroup(server):
    """local_memory_limit puts the job in a memory cgroup of its own (MULETEER_JOB_CGROUP):
    its peak is exact, and the runner's wait4 figure is not added beside it."""
    if os.geteuid() != 0:
        pytest.skip("the local runner makes per-job cgroups as root")
    job_id = submit(server, server.http, "allocate_limited", mib=64)
    assert server.wait(job_id)["state"] == "ok", server.job(job_id)
    found = metrics_of(server, job_id)
    assert peak_memory(found) == int(found[("cgroup", "memory.max_usage_in_bytes")]["raw_value"])
    assert 64 * MIB <= peak_memory(found) < 500 * MIB
    assert found[("cgroup", "memory.limit_in_bytes")]["raw_value"] == str(500 * MIB)


def test_a_destination_may_have_metrics_of_its_own_or_none(server):
    """Galaxy's per-destination metrics: metrics="false" collects none (not even the
    runner's figures), a <job_metrics> element replaces job_metrics_conf.xml's plugins for
    that destination's jobs; the others keep the file's."""
    quiet = server.wait(submit(server, server.http, "allocate_quiet", mib=1))
    own = server.wait(submit(server, server.http, "allocate_own", mib=1))
    usual = server.wait(submit(server, server.http, "allocate", mib=1))
    assert quiet["state"] == own["state"] == usual["state"] == "ok", (quiet, own, usual)
    assert metrics_of(server, quiet["id"]) == {}
    found = metrics_of(server, own["id"])
    assert found[("env", "MULETEER_METRICS_PROBE")]["raw_value"] == "set for this destination"
    assert ("core", "runtime_seconds") in found
    assert not {plugin for plugin, _ in found} & {"hostname", "uname"}, found
    assert {"hostname", "uname", "core"} <= {plugin for plugin, _ in metrics_of(server,
                                                                               usual["id"])}
