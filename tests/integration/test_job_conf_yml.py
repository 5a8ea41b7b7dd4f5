"""A real server (uWSGI, mules) from a Galaxy-format job_conf.yml: jobs run on the
environments it names, with their `env`, and a `resubmit` moves a failed job to a second
environment, no sooner than its `delay`. A bad job_conf.yml stops start-up naming the file, line and key path."""
import os
import shutil
from datetime import datetime

import pytest

from tests.support.uwsgi_server import REPO, UwsgiServer

JOB_CONF_YML = """
runners:
  local:
    load: galaxy.jobs.runners.local:LocalJobRunner
    workers: 2

execution:
  default: greeted
  environments:
    greeted:
      runner: local
      env:
        - name: GREETING
          value: hello from job_conf.yml
      resubmit:
        - condition: any_failure
          environment: second
          delay: 3
    second:
      runner: local
      env:
        - name: GREETING
          value: hello from the second environment

tools:
  - id: checksum
    handler: main.job-handlers.2
  - id: noop
    environment: second
"""

GREET_TOOL = """<tool id="greet" name="Greet" version="1.0.0" profile="21.01">
    <description>print $GREETING (the environment's env), then exit with a chosen code</description>
    <command>printf '%s\\n' "\\$GREETING"; exit $code</command>
    <inputs><param name="code" type="integer" value="0" min="0" max="255"/></inputs>
</tool>
"""


def tools_with_greet(directory: str) -> str:
    tool_path = os.path.join(directory, "tools")
    shutil.copytree(os.path.join(REPO, "tools"), tool_path, dirs_exist_ok=True)
    with open(os.path.join(tool_path, "greet.xml"), "w") as fh:
        fh.write(GREET_TOOL)
    return tool_path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("yml"))
    srv = UwsgiServer(directory, job_conf=JOB_CONF_YML, job_conf_file_name="job_conf.yml",
                      mules=2, processes=1,
                      galaxy={"tool_path": tools_with_greet(directory)}).start()
    yield srv
    srv.stop()


def when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.rstrip("Z"))


def stdout(server, job_id) -> str:
    return server.http.get(f"{server.url}/api/jobs/{job_id}/stdout", timeout=30).text


def test_jobs_run_on_the_default_environment_with_its_env(server):
    job = server.wait(server.submit("greet")["id"])
    assert job["state"] == "ok", job
    assert job["destination"] == "greeted"
    assert stdout(server, job["id"]) == "hello from job_conf.yml\n"


def test_a_tool_mapped_to_an_environment_runs_there(server):
    job = server.wait(server.submit("noop")["id"])
    assert (job["state"], job["destination"]) == ("ok", "second")
    checksum = server.wait(server.submit("checksum", text="abc")["id"])
    assert checksum["handler"] == "main.job-handlers.2"


def test_a_failed_job_is_resubmitted_to_the_second_environment(server):
    job = server.wait(server.submit("greet", code=3)["id"], timeout=90)
    assert job["state"] == "error" and job["exit_code"] == 3, job
    assert job["destination"] == "second"
    resubmissions = [h for h in job["history"] if h["state"] == "new" and h["info"]]
    assert len(resubmissions) == 1 and "resubmitted to second" in resubmissions[0]["info"]
    # delay: 3 -- the second attempt is queued no sooner than 3 s after the first failed.
    history = job["history"]
    failed_at = history.index(resubmissions[0])
    queued_again = next(h for h in history[failed_at:] if h["state"] == "queued")
    waited = when(queued_again["time"]) - when(resubmissions[0]["time"])
    assert waited.total_seconds() >= 3.0, (waited, history)
    # The second attempt ran with the second environment's env.
    assert stdout(server, job["id"]) == "hello from the second environment\n"


def test_a_bad_job_conf_yml_stops_start_up_naming_file_line_and_key(tmp_path):
    bad = JOB_CONF_YML.replace("workers: 2", "workers: many")
    srv = UwsgiServer(str(tmp_path), job_conf=bad, job_conf_file_name="job_conf.yml", mules=1,
                      processes=1)
    with pytest.raises(RuntimeError) as failure:
        srv.start(timeout=30)
    message = str(failure.value)
    assert message.startswith("uWSGI exited with 1"), message  # stopped, not respawning
    assert "job_conf.yml, line 5: runners.local.workers: 'many'" in message, message
