"""Staged jobs (muleteer/staging.py, app/staging_api.py): the token, the destination
params, the node wrapper's text (no server path in it) and the API's refusals, through
Flask's test client on a real job directory made by the runner's prepare()."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import types

import pytest
from sqlalchemy import text

from muleteer import staging
from muleteer.job import Job, JobState
from muleteer.job_config import JobConfError, load_job_conf
from mules.runners import RUNNER_SPECS

from tests.unit.conftest import HANDLER


def staged_destination(**params):
    return types.SimpleNamespace(id="staged", env=[], params={
        "default_file_action": "remote_transfer", **params})


# -- the token ------------------------------------------------------------------------
def test_the_token_is_good_only_for_its_job_and_lease_while_the_job_lives():
    secret = b"k" * 64
    job = Job(id=7, tool_id="t", tool_version="1", handler_tag="h", destination_id="d",
              runner="slurm", command_line="", create_time=None, update_time=None,
              state=JobState.RUNNING, lease=3)
    good = staging.token(secret, 7, 3)
    assert staging.token_valid(secret, job, good)
    assert staging.token_valid(secret, job.with_(state=JobState.QUEUED), good)
    assert not staging.token_valid(secret, job.with_(lease=4), good)  # adopted: new lease
    assert not staging.token_valid(secret, job.with_(id=8), good)
    for ended in (JobState.OK, JobState.ERROR, JobState.DELETING, JobState.DELETED):
        assert not staging.token_valid(secret, job.with_(state=ended), good)
    assert not staging.token_valid(b"x" * 64, job, good)
    assert not staging.token_valid(secret, job, "")
    assert not staging.token_valid(secret, None, good)
    assert not staging.token_valid(secret, job, good[:-1] + "é")


def test_the_key_is_made_once_and_only_the_server_reads_it(tmp_path):
    config = types.SimpleNamespace(resolve=lambda p: str(tmp_path / p))
    first = staging.key(config)
    assert staging.key(config) == first and len(first) >= 32
    assert stat.S_IMODE(os.stat(tmp_path / staging.KEY_FILE).st_mode) == 0o600


# -- the destination params -----------------------------------------------------------
def job_conf(write, params: str) -> str:
    return write("job_conf.xml", f"""
        <job_conf>
            <plugins><plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner"/></plugins>
            <destinations default="d"><destination id="d" runner="slurm">{params}</destination></destinations>
        </job_conf>""")


def test_the_destination_params_load_and_bad_values_are_load_errors(write):
    conf = load_job_conf(job_conf(write, '<param id="default_file_action">remote_transfer</param>'
                                         '<param id="staging_directory">/scratch/</param>'),
                         RUNNER_SPECS)
    settings = staging.settings(conf.destinations["d"])
    assert settings == staging.Staging("/scratch", 300)
    digest = hashlib.sha256(b"t0ken").hexdigest()[:12]
    assert settings.scratch(12, "t0ken") == f"/scratch/muleteer-job-12-{digest}"
    assert staging.settings(types.SimpleNamespace(params={})) is None
    with pytest.raises(JobConfError, match="not a file action: expected none or remote_transfer"):
        load_job_conf(job_conf(write, '<param id="default_file_action">copy</param>'),
                      RUNNER_SPECS)
    with pytest.raises(JobConfError, match="absolute path"):
        load_job_conf(job_conf(write, '<param id="staging_directory">tmp</param>'), RUNNER_SPECS)
    for runner in ("slurm", "pbs", "drmaa"):
        assert RUNNER_SPECS[runner].destination_param("default_file_action") is not None


@pytest.mark.parametrize("relative, allowed", [
    ("outputs/out.txt", True), ("stdout", True), ("stderr", True), ("exit_code", True),
    ("COMMAND_VERSION", True), ("work/sub/file", True),
    ("job.sh", False), ("staged.sh", False), ("inputs/dataset_1.dat", False),
    ("configs/x", False), ("tool/helper.sh", False), ("../escape", False), ("/etc/passwd", False),
    ("outputs/../job.sh", False), ("outputs//x", False), ("outputs/.muleteer-upload-1", False),
    ("", False), ("outputs/", False)])
def test_what_a_node_may_upload(relative, allowed):
    assert staging.upload_allowed(relative) is allowed


# -- prepare(): job.sh and the wrapper as the node sees them ----------------------------
@pytest.fixture
def staged(local_ctx, new_job):
    """A queued cat_lines job prepared for a staged destination by a real runner."""
    from muleteer.job_config import Plugin
    from mules.runners.base import BaseRunner

    local_ctx.config.galaxy_infrastructure_url = "http://127.0.0.1:9/"
    runner = BaseRunner(local_ctx, Plugin(id="slurm", type="slurm", workers=1), HANDLER)
    job = new_job("cat_lines", {"text": "hello", "times": 2})
    files = runner.prepare(job, staged_destination(staging_directory="/scratch"))
    return types.SimpleNamespace(ctx=local_ctx, runner=runner, job=job, files=files)


def test_the_wrapper_and_job_script_name_no_server_path(staged, tmp_path):
    files = staged.files
    wrapper = open(files.path(staging.STAGED_SCRIPT)).read()
    job_script = open(files.path("job.sh")).read()
    for script in (wrapper, job_script):
        assert str(tmp_path) not in script  # the server's tree: database, jobs, tools, tmp
    token = staging.token(staging.key(staged.ctx.config), staged.job.id, staged.job.lease)
    scratch = staged.runner.staging(staged_destination(staging_directory="/scratch")) \
        .scratch(staged.job.id, token)
    assert scratch.startswith(f"/scratch/muleteer-job-{staged.job.id}-")
    assert f"cd {scratch} ||" in job_script and f"TMPDIR={scratch}/tmp" in job_script
    assert f"http://127.0.0.1:9/api/jobs/{staged.job.id}/staging" in wrapper
    assert not os.path.exists(files.path("inputs"))  # the node downloads them itself
    assert stat.S_IMODE(os.stat(files.path(staging.STAGED_SCRIPT)).st_mode) == 0o700
    subprocess.run(["bash", "-n", files.path(staging.STAGED_SCRIPT)], check=True)
    # The token reaches curl on its stdin, never on a command line that ps shows.
    token = staging.token(staging.key(staged.ctx.config), staged.job.id, staged.job.lease)
    token_lines = [line for line in wrapper.splitlines() if token in line]
    assert token_lines == [f"auth='header = \"Authorization: Bearer {token}\"'"]


def test_a_staged_job_without_the_servers_url_fails_naming_the_setting(local_ctx, new_job):
    from muleteer.job_config import Plugin
    from mules.job_command import JobSetupError
    from mules.runners.base import BaseRunner

    runner = BaseRunner(local_ctx, Plugin(id="slurm", type="slurm", workers=1), HANDLER)
    with pytest.raises(JobSetupError, match="galaxy_infrastructure_url"):
        runner.prepare(new_job("cat_lines", {"text": "x"}), staged_destination())


# -- the API --------------------------------------------------------------------------
@pytest.fixture
def api(staged):
    from app import create_app

    client = create_app(ctx=staged.ctx).test_client()
    token = staging.token(staging.key(staged.ctx.config), staged.job.id, staged.job.lease)
    base = f"/api/jobs/{staged.job.id}/staging"
    return types.SimpleNamespace(client=client, base=base, staged=staged,
                                 auth={"Authorization": f"Bearer {token}"})


def test_the_node_downloads_its_job_script_with_the_token(api):
    answer = api.client.get(f"{api.base}/job/job.sh", headers=api.auth)
    assert answer.status_code == 200
    assert answer.data == open(api.staged.files.path("job.sh"), "rb").read()


@pytest.mark.parametrize("path", ["job/staged.sh", "job/../job.sh", "job/outputs", "job/stdout",
                                  "inputs/dataset_1.dat", "inputs/../../x", "tool/../job_conf.xml",
                                  "tool/%2Fetc%2Fpasswd", "nothing"])
def test_what_is_not_the_jobs_to_download_is_404(api, path):
    assert api.client.get(f"{api.base}/{path}", headers=api.auth).status_code == 404


def test_no_token_a_wrong_one_or_another_jobs_is_404(api, new_job):
    other = new_job("cat_lines", {"text": "y"})
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64},
                    {"Authorization": api.auth["Authorization"].replace("Bearer", "Basic")}):
        assert api.client.get(f"{api.base}/job/job.sh", headers=headers).status_code == 404
    assert api.client.get(f"/api/jobs/{other.id}/staging/job/job.sh",
                          headers=api.auth).status_code == 404
    assert api.client.get("/api/jobs/999999/staging/job/job.sh",
                          headers=api.auth).status_code == 404


def test_uploads_are_stored_whole_and_only_where_the_job_may_write(api):
    files = api.staged.files
    put = api.client.put
    assert put(f"{api.base}/files/outputs/out.txt", data=b"result\n",
               headers=api.auth).status_code == 201
    assert open(files.path("outputs/out.txt"), "rb").read() == b"result\n"
    assert put(f"{api.base}/files/work/deep/file", data=b"x", headers=api.auth).status_code == 201
    for refused in ("job.sh", "staged.sh", "inputs/dataset_1.dat", "configs/x"):
        assert put(f"{api.base}/files/{refused}", data=b"evil",
                   headers=api.auth).status_code == 404, refused
    assert b"evil" not in open(files.path("job.sh"), "rb").read()
    # A link the server finds in the job directory is never followed.
    os.symlink("/etc", files.path("outputs/etc"))
    assert put(f"{api.base}/files/outputs/etc/evil", data=b"x",
               headers=api.auth).status_code == 404
    assert not os.path.exists("/etc/evil")
    # exit_code seals the results: nothing is taken after it.
    assert put(f"{api.base}/files/exit_code", data=b"0\n", headers=api.auth).status_code == 201
    assert put(f"{api.base}/files/outputs/late.txt", data=b"late",
               headers=api.auth).status_code == 404
    assert not [n for _r, _d, names in os.walk(files.directory) for n in names
                if n.startswith(staging.UPLOAD_PREFIX)]


def test_a_body_cut_short_stores_nothing(api):
    files = api.staged.files
    answer = api.client.put(f"{api.base}/files/outputs/cut.txt", headers=api.auth,
                            input_stream=io.BytesIO(b"only 9 b"),
                            environ_overrides={"CONTENT_LENGTH": "100"})
    assert answer.status_code in (400, 404)
    assert not os.path.exists(files.path("outputs/cut.txt"))


def test_the_token_dies_with_the_job(api):
    store = api.staged.ctx.store
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE job SET state = 'ok' WHERE id = :id"),
                     {"id": api.staged.job.id})
    assert api.client.get(f"{api.base}/job/job.sh", headers=api.auth).status_code == 404


def test_only_the_cluster_runners_stage(local_ctx, new_job):
    from muleteer.job_config import Plugin
    from mules.runners.base import BaseRunner

    local_ctx.config.galaxy_infrastructure_url = "http://127.0.0.1:9/"
    runner = BaseRunner(local_ctx, Plugin(id="local", type="local", workers=1), HANDLER)
    files = runner.prepare(new_job("cat_lines", {"text": "x"}), staged_destination())
    assert not os.path.exists(files.path(staging.STAGED_SCRIPT))
    assert f"cd {files.directory} ||" in open(files.path("job.sh")).read()
