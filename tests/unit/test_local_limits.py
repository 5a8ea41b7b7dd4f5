"""muleteer/local_limits.py: the local runner's limits as destination params (parsed, and
refused at load with the file, line and param), and the per-job memory cgroup on the real
cgroup v1 memory controller of this machine (root)."""
import os
import subprocess
import sys

import pytest

from muleteer import local_limits
from muleteer.job_config import JobConfError, load_job_conf
from muleteer.local_limits import LocalLimits, MemoryCgroup, parse_local_walltime, parse_memory
from mules.runners import RUNNER_SPECS

MB = 1024 * 1024


def test_memory_sizes_read_as_sbatch_mem():
    assert parse_memory("100") == parse_memory(100) == parse_memory("100M") == 100 * MB
    assert parse_memory("2G") == parse_memory("2g") == parse_memory("2GB") == 2048 * MB
    assert parse_memory("1.5G") == 1536 * MB and parse_memory("65536K") == 64 * MB
    assert parse_memory(" 1T ") == 1024 ** 4
    for bad in ("", "lots", "100B", "-5", "1e3", "5X", "12 34"):
        with pytest.raises(ValueError, match="expected a size such as 512"):
            parse_memory(bad)
    with pytest.raises(ValueError, match="too little for a job"):
        parse_memory("1K")


def test_walltimes_read_as_limits_walltime():
    assert parse_local_walltime("00:00:02") == parse_local_walltime("2") == parse_local_walltime(2)
    assert parse_local_walltime("1:30") == 90 and parse_local_walltime("24:00:00") == 86400
    for bad in ("", "soon", "1:2:3:4", "-1", "1.5"):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_local_walltime(bad)
    with pytest.raises(ValueError, match="at least 1 second"):
        parse_local_walltime("0")


def test_limits_of_a_destination():
    assert LocalLimits.of({}) == LocalLimits(slots=1)
    assert LocalLimits.of({"local_slots": 2, "local_memory_limit": "1G",
                           "local_walltime": "00:10:00"}) == LocalLimits(2, 1024 * MB, 600)
    assert local_limits.describe_memory(100 * MB) == "100M"
    assert local_limits.describe_memory(2048 * MB) == "2G"
    assert local_limits.describe_duration(3725) == "01:02:05"


@pytest.mark.parametrize("param, value, says", [
    ("local_memory_limit", "lots", "expected a size such as 512 (MB), 512M or 2G"),
    ("local_walltime", "1:2:3:4", "expected a duration such as 24:00:00"),
    ("local_slots", "0", "expected a whole number of at least 1"),
])
def test_a_bad_limit_stops_the_job_configuration_naming_file_line_and_param(write, param,
                                                                           value, says):
    path = write("job_conf.xml", f"""
        <job_conf>
            <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
            <destinations default="local">
                <destination id="local" runner="local">
                    <param id="{param}">{value}</param>
                </destination>
            </destinations>
        </job_conf>
    """)
    with pytest.raises(JobConfError) as caught:
        load_job_conf(path, RUNNER_SPECS)
    message = str(caught.value)
    assert message.startswith(f"{path}, line 5") and param in message and says in message, message


# -- the memory cgroup, on the real controller ----------------------------------------------
def _cgroups_writable() -> bool:
    try:
        local_limits.cgroup_parent()
        return True
    except local_limits.CgroupUnavailable:
        return False


needs_cgroups = pytest.mark.skipif(not _cgroups_writable(),
                                   reason="needs a cgroup v1 memory controller it may write "
                                          "(root)")


@pytest.fixture
def cgroup(tmp_path):
    """A job cgroup of a server key unique to this test; removed at teardown."""
    key = local_limits.server_key(str(tmp_path))
    made = local_limits.job_cgroup(local_limits.cgroup_parent(), key, 7, 3)
    yield key, made
    made.remove()


def _run_in(cgroup: MemoryCgroup, code: str) -> subprocess.CompletedProcess:
    """A Python process that joins the cgroup the way a job script does, then runs `code`."""
    script = "\n".join(cgroup.script_lines() + [f"exec {sys.executable} -c '{code}'"])
    return subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True,
                          timeout=60)


@needs_cgroups
def test_a_process_over_the_limit_is_killed_and_the_cgroup_says_so(cgroup):
    key, made = cgroup
    made.create(64 * MB)
    assert [c.path for c in local_limits.job_cgroups(key, 7)] == [made.path]
    within = _run_in(made, "b = bytearray(b\"x\") * (16 * 1024 * 1024)")
    assert within.returncode == 0, within.stderr
    verdict = made.verdict()
    assert verdict.limit_bytes == 64 * MB and not verdict.limit_reached
    assert 16 * MB <= verdict.peak_bytes < 64 * MB
    over = _run_in(made, "b = bytearray(b\"x\") * (200 * 1024 * 1024)")
    assert over.returncode == -9  # the kernel's OOM killer: SIGKILL
    verdict = made.verdict()
    assert verdict.limit_reached and verdict.oom_kills == 1
    assert verdict.peak_bytes == 64 * MB  # it reached its limit


@needs_cgroups
def test_create_starts_afresh_and_remove_kills_what_is_left(cgroup, wait_for):
    key, made = cgroup
    made.create(64 * MB)
    _run_in(made, "b = bytearray(b\"x\") * (200 * 1024 * 1024)")
    assert made.verdict().oom_kills == 1
    made.create(128 * MB)  # a new start of the job: the old counters must not speak for it
    assert made.verdict().oom_kills == 0 and made.verdict().limit_bytes == 128 * MB
    assert os.stat(made.path).st_mode & 0o777 == 0o700  # no other account reads it
    # A process the job left behind keeps the cgroup busy: remove() kills it first.
    script = "\n".join(made.script_lines() + ["exec sleep 60"])
    left = subprocess.Popen(["/bin/bash", "-c", script])
    try:
        # Wait until the child has joined: removing the cgroup before that would only test
        # that a job cannot join a cgroup that is gone.
        def joined():
            assert left.poll() is None, f"the child ended ({left.returncode}) before joining"
            with open(os.path.join(made.path, "cgroup.procs")) as fh:
                return str(left.pid) in fh.read().split()
        wait_for(joined, timeout=20, interval=0.01, what="the child to join the cgroup")
        made.remove()
        assert left.wait(timeout=10) == -9
    finally:
        if left.poll() is None:
            left.kill()
    assert not made.exists() and made.verdict() is None
    assert local_limits.job_cgroups(key, 7) == []
    made.remove()  # removing it twice is no error


@needs_cgroups
def test_a_job_as_its_real_user_may_join_its_own_cgroup(cgroup):
    _, made = cgroup
    made.create(64 * MB, owner_uid=65534)
    assert os.stat(os.path.join(made.path, "cgroup.procs")).st_uid == 65534
    assert os.stat(made.path).st_mode & 0o777 == 0o711


def test_the_script_lines_quote_the_path():
    lines = MemoryCgroup("/sys/fs/cgroup/memory/muleteer/it's-1-2").script_lines()
    assert lines[0].startswith("echo $$ > '/sys/fs/cgroup/memory/muleteer/it'\\''s-1-2/cgroup.procs'"
                               " || {")
    assert lines[1] == "export MULETEER_JOB_CGROUP=1"


def test_without_a_memory_controller_the_limit_is_refused_saying_why(monkeypatch):
    monkeypatch.setattr(local_limits, "hierarchy_mount", lambda: "")
    with pytest.raises(local_limits.CgroupUnavailable, match="no cgroup v1 memory controller"):
        local_limits.cgroup_parent()
    assert local_limits.job_cgroups("k", 1) == []


def test_a_server_that_may_not_write_cgroups_is_refused_saying_what_to_do(monkeypatch, tmp_path):
    mount = tmp_path / "memory"
    mount.mkdir()
    monkeypatch.setattr(local_limits, "hierarchy_mount", lambda: str(mount))
    monkeypatch.setattr(local_limits, "own_cgroup", lambda: "/system.slice/galaxy.service")
    monkeypatch.setattr(local_limits.os, "makedirs", _refused)
    with pytest.raises(local_limits.CgroupUnavailable) as caught:
        local_limits.cgroup_parent()
    assert "run it as root, or delegate its own memory cgroup" in str(caught.value)
    assert f"{mount} or {mount}/system.slice/galaxy.service" in str(caught.value)


def _refused(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
