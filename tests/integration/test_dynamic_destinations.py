"""Dynamic destinations (Galaxy's rules) and job resource parameters, through the HTTP API of
one real uWSGI server (one mule, so one handler meets every rule): a rule by input size, a
rule by user, a rule that raises, resources asked through the API reaching a rule and a
static destination, and one Slurm job given the cores and memory its user asked for."""
import textwrap

import pytest

from tests.support.clusters import require_cluster
from tests.support.uwsgi_server import UwsgiServer

BIG = 1000  # bytes: a job reading more goes to local_big
# Every tool prints what its job was given (the job script's GALAXY_SLOTS/GALAXY_MEMORY_MB).
TOOL = """<tool id="{id}" name="{id}" version="1.0.0">
    <command>echo "slots=\\${{GALAXY_SLOTS}} memory=\\${{GALAXY_MEMORY_MB:-none}}"</command>
    <inputs><param name="input" type="data" format="data" optional="true"/></inputs>
</tool>
"""
TOOLS = ("by_size", "by_user", "broken", "static", "on_slurm")
RULES = {
    "sizes.py": """
        def by_input_size(input_size, input_datasets, big_bytes):
            assert input_size == sum(d.size for d in input_datasets)
            return "local_big" if input_size > int(big_bytes) else "local_small"
    """,
    "users.py": """
        from muleteer.job_rules import JobDestination, JobMappingException

        def by_user(user_email, roles, resource_params, tool_id):
            if user_email.startswith("blocked"):
                raise JobMappingException(f"{user_email} may not run {tool_id}")
            if "admin" in roles:
                return "local_admin"
            # What the user asked for reaches the rule: one core more than asked.
            return JobDestination(id="local_small",
                                  params={"local_slots": resource_params.get("cores", 0) + 1})
    """,
    "_helpers.py": "raise RuntimeError('files starting with _ are not rule files')\n",
    "zz_broken.py": """
        def broken(params):
            return 1 / 0
    """,
}
JOB_CONF = f"""<?xml version="1.0"?>
<job_conf>
    <plugins workers="2">
        <!-- local_slots may not be more than workers (the cores the local runner may use) -->
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="5"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner"/>
        <plugin id="dynamic"><param id="rules_module">rules</param></plugin>
    </plugins>
    <destinations default="local_small">
        <destination id="by_size" runner="dynamic">
            <param id="function">by_input_size</param>
            <param id="big_bytes">{BIG}</param>
        </destination>
        <destination id="by_user" runner="dynamic"><param id="function">by_user</param></destination>
        <destination id="broken" runner="dynamic"><param id="function">broken</param></destination>
        <destination id="local_small" runner="local"/>
        <destination id="local_big" runner="local"><param id="local_slots">2</param></destination>
        <destination id="local_admin" runner="local"><param id="local_slots">5</param></destination>
        <destination id="slurm" runner="slurm"><param id="nativeSpecification">-p debug -c 1 --mem=100</param></destination>
    </destinations>
    <resources default="basic">
        <group id="basic">cores,memory,project</group>
    </resources>
    <tools>
        <tool id="by_size" destination="by_size"/>
        <tool id="by_user" destination="by_user"/>
        <tool id="broken" destination="broken"/>
        <tool id="on_slurm" destination="slurm"/>
    </tools>
</job_conf>
"""
RESOURCE_PARAMS = """<parameters>
    <param name="cores" type="integer" label="Cores" min="1" max="4" value=""/>
    <param name="memory" type="float" label="Memory (GB)" min="0.1" max="2" value=""/>
    <param name="project" type="text" label="Project" value=""/>
</parameters>
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dynamic")
    tools, rules = directory / "tools", directory / "rules"
    tools.mkdir()
    rules.mkdir()
    for tool_id in TOOLS:
        (tools / f"{tool_id}.xml").write_text(TOOL.format(id=tool_id))
    for name, text in RULES.items():
        (rules / name).write_text(textwrap.dedent(text).lstrip())
    (directory / "job_resource_params_conf.xml").write_text(RESOURCE_PARAMS)
    server = UwsgiServer(str(directory), job_conf=JOB_CONF, mules=1, processes=1,
                         galaxy={"tool_path": str(tools), "job_runner_monitor_sleep": 0.5})
    server.start()
    yield server
    server.stop()


def user(srv, email):
    """An API session of a new (not admin) user."""
    made = srv.http.post(f"{srv.url}/api/users", timeout=10,
                         json={"email": email, "password": "a long enough password"})
    assert made.status_code == 201, made.text
    key = srv.http.post(f"{srv.url}/api/users/{made.json()['id']}/api_keys", timeout=10)
    session = srv.session()
    session.headers["x-api-key"] = key.json()["key"]
    return session


def submit(srv, session, tool_id, **params) -> int:
    response = session.post(f"{srv.url}/api/jobs", json={"tool_id": tool_id, "params": params},
                            timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def dataset(srv, session, size) -> int:
    made = session.post(f"{srv.url}/api/datasets", timeout=10,
                        json={"content": "x" * (size - 1) + "\n", "name": f"{size}.txt"})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def ended(srv, session, job_id) -> tuple[dict, str]:
    """The ended job (as its owner sees it) and its stdout."""
    job = srv.wait(job_id, timeout=60)
    assert session.get(f"{srv.url}/api/jobs/{job_id}", timeout=10).status_code == 200
    return job, srv.http.get(f"{srv.url}/api/jobs/{job_id}/stdout", timeout=10).text.strip()


def asked(**resources) -> dict:
    return {"__job_resource": {"__job_resource__select": "yes", **resources}}


def test_a_rule_sends_big_inputs_to_another_destination(srv):
    small, big = dataset(srv, srv.http, BIG), dataset(srv, srv.http, BIG + 1)
    jobs = {size: submit(srv, srv.http, "by_size", input={"src": "hda", "id": ds})
            for size, ds in (("small", small), ("big", big))}
    none = submit(srv, srv.http, "by_size")  # no input at all: input_size 0
    job, out = ended(srv, srv.http, jobs["big"])
    assert (job["state"], job["destination"], job["runner"]) == ("ok", "local_big", "local"), job
    assert out == "slots=2 memory=none"
    for job_id in (jobs["small"], none):
        job, out = ended(srv, srv.http, job_id)
        assert (job["state"], job["destination"], out) == ("ok", "local_small", "slots=1 memory=none"), job
    assert [h["state"] for h in job["history"]] == ["new", "queued", "running", "ok"]


def test_a_rule_by_user_sees_the_email_the_roles_and_the_resources_asked(srv):
    alice, blocked = user(srv, "alice@example.org"), user(srv, "blocked@example.org")
    mine = submit(srv, alice, "by_user", **asked(cores=3))
    default = submit(srv, alice, "by_user")  # "use default": no resource_params
    admins = submit(srv, srv.http, "by_user")
    refused = submit(srv, blocked, "by_user")
    job, out = ended(srv, alice, mine)
    assert (job["state"], job["destination"], out) == ("ok", "local_small", "slots=4 memory=none"), job["info"]
    assert job["params"]["__job_resource"] == {"__job_resource__select": "yes", "cores": 3,
                                               "memory": None, "project": ""}
    assert ended(srv, alice, default)[1] == "slots=1 memory=none"
    job, out = ended(srv, srv.http, admins)
    assert (job["state"], job["destination"], out) == ("ok", "local_admin", "slots=5 memory=none"), job["info"]
    job = srv.wait(refused)
    assert job["state"] == "error" and job["info"] == "blocked@example.org may not run by_user", job
    assert job["destination"] == "by_user" and job["external_id"] is None


def test_a_rule_that_raises_fails_that_job_and_the_next_job_runs(srv):
    failed = srv.wait(submit(srv, srv.http, "broken"))
    assert failed["state"] == "error", failed
    assert failed["info"] == ("rule 'broken' failed (zz_broken.py, line 2): ZeroDivisionError: "
                              "division by zero"), failed["info"]
    assert [h["state"] for h in failed["history"]] == ["new", "queued", "error"]
    # The one handler (one mule) goes on: its next job runs.
    job, out = ended(srv, srv.http, submit(srv, srv.http, "by_size"))
    assert (job["state"], job["destination"], job["handler"]) == (
        "ok", "local_small", "main.job-handlers.1"), job


def test_resources_are_offered_checked_and_reach_a_static_destination(srv):
    tool = srv.http.get(f"{srv.url}/api/tools/static", timeout=10).json()
    group = tool["inputs"][-1]
    assert group["name"] == "__job_resource" and group["test_param"]["label"] == "Job Resource Parameters"
    assert [o[1] for o in group["test_param"]["options"]] == ["no", "yes"]
    yes = next(c for c in group["cases"] if c["value"] == "yes")
    assert [(p["name"], p.get("min"), p.get("max")) for p in yes["inputs"]] == [
        ("cores", 1, 4), ("memory", 0.1, 2), ("project", None, None)]
    refused = srv.http.post(f"{srv.url}/api/jobs", timeout=10, json={
        "tool_id": "static", "params": {"__job_resource|__job_resource__select": "yes",
                                        "__job_resource|cores": 5}})
    assert refused.status_code == 400, refused.text
    assert refused.json()["field"] == "params.__job_resource|cores"
    job, out = ended(srv, srv.http, submit(srv, srv.http, "static", **asked(cores=3, project="x")))
    assert (job["state"], job["destination"], out) == ("ok", "local_small", "slots=3 memory=none"), job["info"]


def test_resources_asked_reach_sbatch(srv):
    require_cluster("slurm")
    job_id = submit(srv, srv.http, "on_slurm", **asked(cores=2, memory=0.25))
    # Both of Slurm's CPUs: it waits while another module's Slurm job holds one.
    job = srv.wait(job_id, timeout=300)
    out = srv.http.get(f"{srv.url}/api/jobs/{job_id}/stdout", timeout=10).text.strip()
    assert (job["state"], job["runner"], job["destination"]) == ("ok", "slurm", "slurm"), job
    # --cpus-per-task=2 --mem=256 replaced the destination's -c 1 --mem=100.
    assert out == "slots=2 memory=256", out
