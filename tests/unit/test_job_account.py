"""mules/job_account.py with stand-in scripts (the real ones, through sudo, are in
tests/integration/test_real_user*.py): what it passes them, and how it reads their
answers and refusals."""
from __future__ import annotations

import dataclasses
import os
import pwd

import pytest

from mules import job_account
from mules.job_account import JobAccountError, JobAccounts
from muleteer.system_users import SystemAccount


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o700)
    return str(path)


@pytest.fixture
def accounts(tmp_path):
    log = tmp_path / "calls"
    record = f'printf "%s\\n" "$*" >> {log}'
    me = pwd.getpwuid(os.geteuid())
    made = JobAccounts(
        chown=(script(tmp_path, "chown", record),),
        runjob=(script(tmp_path, "runjob", record + '\nshift 3\nexec "$@"'),),
        drmaa_runjob=(script(tmp_path, "drun", record + "\necho 'warning: x' >&2\necho 4242"),),
        drmaa_killjob=(script(tmp_path, "dkill",
                              'echo "drmaa_external_killjob.py: refused: no such job" >&2; exit 1'),),
        method="user_email", min_uid=1000,
        server=SystemAccount(me.pw_name, me.pw_uid, me.pw_gid))
    object.__setattr__(made, "log", log)  # where the stand-ins write what they got
    return made


def calls(accounts):
    return accounts.log.read_text().splitlines()


def test_hand_over_and_run_as_the_user_pass_what_the_scripts_expect(accounts, tmp_path):
    user = SystemAccount("alice", 1234, 1234)
    accounts.hand_over("/jobs/000/7", user)
    result = accounts.run_as_user("alice", "/jobs/000/7", ["/bin/echo", "hi"])
    assert result.stdout == "hi\n" and result.returncode == 0
    assert calls(accounts) == ["/jobs/000/7 alice 1234", "alice /jobs/000/7 -- /bin/echo hi"]


def test_take_back_only_a_directory_someone_else_owns(accounts, tmp_path):
    accounts.take_back(str(tmp_path))  # the server's own: nothing to do
    accounts.take_back(str(tmp_path / "gone"))
    assert not accounts.log.exists()


def test_a_programs_own_failure_is_its_result_a_scripts_refusal_an_error(accounts, tmp_path):
    failed = accounts.run_as_user("alice", "/j", ["/bin/sh", "-c", "echo no >&2; exit 1"])
    assert failed.returncode == 1  # sbatch's refusal: the caller reads it
    refusal = script(tmp_path, "refusing", 'echo "external_runjob.py: refused: /bin/sh is not '
                                           'one of the user_programs" >&2; exit 1')
    refusing = dataclasses.replace(accounts, runjob=(refusal,))
    with pytest.raises(JobAccountError, match="refused: /bin/sh is not one of the user_programs"):
        refusing.run_as_user("alice", "/j", ["/bin/sh", "-c", "true"])


def test_drmaa_submit_reads_the_id_and_a_refusal_is_an_error(accounts):
    assert accounts.drmaa_submit("alice", "/tmp/t.json", staged=True) == "4242"
    assert calls(accounts)[-1] == "--staged alice /tmp/t.json"
    with pytest.raises(JobAccountError, match="killing DRM job 5 as alice: .*no such job"):
        accounts.drmaa_kill("alice", "5")


def test_directory_size_and_a_hung_script_is_transient(accounts, tmp_path, monkeypatch):
    (tmp_path / "data").write_bytes(b"x" * 5000)
    assert accounts.directory_size("alice", str(tmp_path)) >= 5000
    monkeypatch.setattr(job_account, "SCRIPT_TIMEOUT", 0.2)
    with pytest.raises(JobAccountError) as info:
        accounts.run_as_user("alice", "/j", ["/bin/sleep", "5"])
    assert info.value.transient and "did not finish" in str(info.value)
